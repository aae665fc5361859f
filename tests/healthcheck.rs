//! `switchboard healthcheck`, the container health check of the ECS task
//! definition, run as a process against the real telemetry server.

use std::sync::Arc;

use switchboard::telemetry::{Health, Metrics, serve};

struct Ran {
    code: i32,
    stderr: String,
}

async fn healthcheck(args: &[&str], env: &[(&str, String)]) -> Ran {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"));
    cmd.arg("healthcheck")
        .args(args)
        .env_remove("SWITCHBOARD_METRICS_ADDR")
        .env("SWITCHBOARD_LOG_FORMAT", "json");
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().await.expect("run switchboard");
    Ran {
        code: out.status.code().expect("exited"),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[tokio::test]
async fn exit_0_while_healthz_answers_1_otherwise() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let health = Arc::new(Health::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(serve(
        listener,
        Arc::new(Metrics::new()),
        health.clone(),
        async {
            let _ = stopped.await;
        },
    ));

    let r = healthcheck(&["--metrics-addr", &addr], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);
    // The same address from the worker's own variable, as in the task definition.
    let r = healthcheck(&[], &[("SWITCHBOARD_METRICS_ADDR", addr.clone())]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // /readyz is 503 until the worker has polled the queue.
    let r = healthcheck(&["--metrics-addr", &addr, "--path", "/readyz"], &[]).await;
    assert_eq!(r.code, 1);
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);
    assert!(r.stderr.contains("503"), "{}", r.stderr);
    health.set_polling(true);
    let r = healthcheck(&["--metrics-addr", &addr, "--path", "/readyz"], &[]).await;
    assert_eq!(r.code, 0, "{}", r.stderr);

    // Nothing listening: unhealthy, one line.
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
    let r = healthcheck(&["--metrics-addr", &addr], &[]).await;
    assert_eq!(r.code, 1);
    assert!(r.stderr.starts_with("error: http://"), "{}", r.stderr);
    assert_eq!(
        r.stderr.matches("refused").count(),
        1,
        "said once: {}",
        r.stderr
    );
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.stderr);

    // Only the two health paths exist: anything else is a usage error.
    let r = healthcheck(&["--metrics-addr", &addr, "--path", "/metrics"], &[]).await;
    assert_eq!(r.code, 2, "{}", r.stderr);
}
