//! `switchboard gateway` as a user runs it: configuration mistakes exit 2 with
//! one line, a good configuration serves until SIGTERM and exits 0.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::embedded::TempDir;
use support::ws::{connect, whoami};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_switchboard");

/// The config file in a directory that is removed when the guard drops.
fn write_config(name: &str, text: &str) -> (TempDir, std::path::PathBuf) {
    let dir = TempDir::new("sb-gw-cli");
    let path = dir.path().join(name);
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

async fn run_to_exit(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(args)
        .env_remove("SWITCHBOARD_QUEUE_URL")
        .env_remove("SWITCHBOARD_GATEWAY_CONFIG")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn configuration_mistakes_exit_2_with_one_line() {
    let (_dir, path) = write_config("gw.toml", "[limits]\nidle_timeout_secs = 5\nidel = 1\n");
    let (code, stderr) = run_to_exit(&["gateway", "--config", path.to_str().unwrap()]).await;
    assert_eq!(code, 2, "{stderr}");
    let last = stderr.trim_end().lines().last().unwrap();
    assert!(
        last.contains("gw.toml line 3: unknown field `idel`"),
        "{stderr}"
    );

    // The default routes use builtin handlers, which need the queue.
    let (code, stderr) = run_to_exit(&["gateway", "--listen", "127.0.0.1:0"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--queue-url"), "{stderr}");

    let (code, stderr) = run_to_exit(&["gateway", "--config", "/nonexistent/gw.toml"]).await;
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("cannot read gateway config /nonexistent/gw.toml"),
        "{stderr}"
    );
}

#[tokio::test]
async fn serves_a_configured_api_until_sigterm() {
    let (_dir, path) = write_config(
        "gw.toml",
        r#"
[[routes]]
key = "whoami"
integration = { type = "mock", response_template = "$context.connectionId" }
route_response_selection_expression = "$default"
[stages.local]
"#,
    );
    // A free port: bind, read it, release it for the child.
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mut child = Command::new(BIN)
        .args(["--log-format", "json", "gateway", "--config"])
        .arg(&path)
        .args(["--listen", &listen])
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let url = format!("ws://{listen}/local");
    let mut client = support::eventually(Duration::from_secs(30), "the gateway to listen", || {
        let url = url.clone();
        async move {
            tokio_tungstenite::connect_async(&url)
                .await
                .ok()
                .map(|(c, _)| c)
        }
    })
    .await;
    assert_eq!(whoami(&mut client).await.len(), 16);
    let mut second = connect(&url).await;
    assert_eq!(whoami(&mut second).await.len(), 16);

    let pid = child.id().unwrap().to_string();
    let status = Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(status.success());
    let exit = tokio::time::timeout(Duration::from_secs(20), child.wait())
        .await
        .expect("exits after SIGTERM")
        .unwrap();
    assert_eq!(exit.code(), Some(0));
}
