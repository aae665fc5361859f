//! The binary's command line: a bad flag exits 2 with one line that says what to
//! fix; help and version exit 0. No AWS needed.

use std::process::Command;

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(args)
        .env_remove("SWITCHBOARD_QUEUE_URL")
        .output()
        .expect("run switchboard");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

const FIFO: &str = "https://sqs.eu-west-1.amazonaws.com/123456789012/switchboard-inbound.fifo";

#[test]
fn bad_flags_exit_2_with_one_line_naming_the_fix() {
    let cases: &[(&[&str], &str)] = &[
        (&["worker"], "--queue-url"),
        (
            &[
                "worker",
                "--queue-url",
                "https://sqs.eu-west-1.amazonaws.com/1/inbound",
            ],
            "ending in .fifo",
        ),
        (
            &["worker", "--queue-url", FIFO, "--metrics-addr", "nowhere"],
            "IP:PORT",
        ),
        (
            &["worker", "--queue-url", FIFO, "--max-groups", "0"],
            "at least 1",
        ),
        (
            &["worker", "--queue-url", FIFO, "--fanout-concurrency", "0"],
            "at least 1",
        ),
        (
            &["worker", "--queue-url", FIFO, "--shutdown-grace", "5x"],
            "unknown unit",
        ),
        (
            &["worker", "--queue-url", FIFO, "--wait-time-seconds", "21"],
            "--wait-time-seconds",
        ),
        (
            &[
                "worker",
                "--queue-url",
                FIFO,
                "--route",
                "sendMessage=store,shout",
            ],
            "unknown step `shout`",
        ),
        (
            &["worker", "--queue-url", FIFO, "--history-limit", "500"],
            "--history-max",
        ),
        (&["migrate", "--queue-name", "plain"], "ending in .fifo"),
        (&["teleport"], "teleport"),
    ];
    for (args, hint) in cases {
        let (code, stdout, stderr) = run(args);
        assert_eq!(code, 2, "{args:?}: {stderr}");
        assert!(stdout.is_empty(), "{args:?}: {stdout}");
        assert_eq!(
            stderr.trim_end().lines().count(),
            1,
            "{args:?} printed more than one line:\n{stderr}"
        );
        assert!(stderr.contains(hint), "{args:?}: {stderr}");
    }
}

#[test]
fn environment_variables_set_flags_and_are_validated_the_same_way() {
    let out = Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .arg("worker")
        .env(
            "SWITCHBOARD_QUEUE_URL",
            "https://sqs.eu-west-1.amazonaws.com/1/inbound",
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("ending in .fifo"));
}

#[test]
fn help_and_version_exit_0() {
    let (code, stdout, _) = run(&["--help"]);
    assert_eq!(code, 0);
    assert!(stdout.contains("worker") && stdout.contains("migrate"));
    let (code, stdout, _) = run(&["worker", "--help"]);
    assert_eq!(code, 0);
    assert!(
        stdout.contains("SWITCHBOARD_MAX_GROUPS"),
        "flags show their env var"
    );
    let (code, stdout, _) = run(&["--version"]);
    assert_eq!(code, 0);
    assert!(stdout.starts_with("switchboard "));
}

#[test]
fn dev_says_when_its_state_directory_is_not_writable() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("sb-cli-ro-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    // Under `timeout`: before the check, dev (as root) started and ran on.
    let out = Command::new("timeout")
        .arg("20")
        .arg(env!("CARGO_BIN_EXE_switchboard"))
        .args(["dev", "--data-dir", dir.to_str().unwrap()])
        .args(["--listen", "127.0.0.1:0"])
        .output()
        .expect("run switchboard");
    let code = out.status.code().unwrap_or(-1);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("is not writable"), "{stderr}");
    assert!(stderr.contains("--ephemeral"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
}
