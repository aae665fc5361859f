//! SIGTERM mid-stream to the real `switchboard worker` binary: it stops polling,
//! finishes or releases what it holds, exits 0 within the grace period, and no
//! message is lost: each is delivered, or visible again for the next worker.
#![cfg(feature = "aws-tests")]

mod support;

use std::collections::{HashMap, HashSet};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::aws::{self, Rig, message};
use switchboard::backend::Queue;

const GROUPS: usize = 10;
const PER_GROUP: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_stream_drains_within_the_grace_period_and_loses_nothing() {
    let rig = Rig::start("sigterm").await;
    let (backend, stack, server) = (&rig.backend, &rig.stack, &rig.server);
    server.set_latency(Duration::from_millis(40));
    let mut sent = Vec::new();
    for g in 0..GROUPS {
        let session = format!("room-{g}");
        rig.connect(&session, &[format!("c{g}")]).await;
    }
    for i in 0..PER_GROUP {
        for g in 0..GROUPS {
            let session = format!("room-{g}");
            let id = format!("{session}-m{i:02}");
            sent.push(message(
                &id,
                "sendMessage",
                &session,
                &format!("c{g}"),
                serde_json::json!({}),
            ));
        }
    }
    rig.send_all(&sent).await;

    let grace = Duration::from_secs(8);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_switchboard"))
        .args(["worker", "--queue-url", &stack.queue_url])
        .args(["--callback-url", &server.endpoint("test")])
        .args(["--connections-table", &stack.names.connections_table])
        .args(["--messages-table", &stack.names.messages_table])
        .args([
            "--metrics-addr",
            "127.0.0.1:0",
            "--wait-time-seconds",
            "1",
            "--max-groups",
            "4",
        ])
        .args(["--shutdown-grace", "8s"])
        // One poller on moto: see support::aws::worker_config.
        .args(["--pollers", "1"])
        .env("AWS_ENDPOINT_URL", aws::endpoint())
        .env("AWS_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SWITCHBOARD_LOG_FORMAT", "json")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("start switchboard worker");

    server
        .wait_until(Duration::from_secs(60), "some deliveries", |p| {
            p.len() >= 30
        })
        .await;
    let pid = child.id().expect("pid").to_string();
    let signalled = Instant::now();
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(kill.success());
    let status = tokio::time::timeout(grace + Duration::from_secs(5), child.wait())
        .await
        .expect("worker exited after SIGTERM")
        .unwrap();
    let took = signalled.elapsed();
    let mut log = String::new();
    tokio::io::AsyncReadExt::read_to_string(child.stderr.as_mut().unwrap(), &mut log)
        .await
        .unwrap();
    assert!(status.success(), "exit status {status:?}; log:\n{log}");
    assert!(took < grace + Duration::from_secs(1), "drain took {took:?}");
    assert!(
        log.contains("SIGTERM received") && log.contains("worker stopped"),
        "{log}"
    );
    assert!(
        log.lines().all(|l| l.starts_with('{')),
        "JSON logs when not a terminal:\n{log}"
    );

    // Right after exit nothing is held invisible: every message was deleted after
    // its delivery or released.
    let info = backend.queue(&stack.queue_url).info().await.unwrap();
    assert_eq!(info.approximate_in_flight, 0, "{info:?}");
    let delivered: HashSet<String> = server
        .posts()
        .iter()
        .map(|p| p.frame["id"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        delivered.len() < GROUPS * PER_GROUP,
        "SIGTERM came mid-stream"
    );
    assert_eq!(
        delivered.len() as u64 + info.approximate_messages,
        (GROUPS * PER_GROUP) as u64,
        "every message is either delivered or back in the queue"
    );

    // A new worker delivers the rest, and every group's order held across the restart.
    server.set_latency(Duration::ZERO);
    let worker = rig.worker(&[]).await;
    server
        .wait_until(Duration::from_secs(120), "all messages delivered", |p| {
            p.iter()
                .map(|p| p.frame["id"].as_str().unwrap_or_default())
                .collect::<HashSet<_>>()
                .len()
                >= GROUPS * PER_GROUP
        })
        .await;
    worker.stop().await;
    let mut seen: HashMap<String, Vec<String>> = HashMap::new();
    for p in server.posts() {
        let id = p.frame["id"].as_str().unwrap().to_owned();
        let list = seen.entry(p.connection_id.clone()).or_default();
        // A duplicate may only be a redelivery of the message just before.
        if list.last() == Some(&id) {
            continue;
        }
        assert!(!list.contains(&id), "{id} delivered again out of order");
        list.push(id);
    }
    for g in 0..GROUPS {
        let want: Vec<String> = (0..PER_GROUP)
            .map(|i| format!("room-{g}-m{i:02}"))
            .collect();
        assert_eq!(seen[&format!("c{g}")], want);
    }
}
