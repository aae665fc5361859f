//! /healthz, /readyz and /metrics of the running worker.
#![cfg(feature = "aws-tests")]

mod support;

use std::time::Duration;

use support::aws::{self, Rig, spawn_worker, worker_config};
use switchboard::backend::aws::AwsBackend;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_when_polling_and_every_metric_family_is_exported() {
    let rig = Rig::start("telemetry").await;
    let worker = rig.worker(&[]).await;
    assert_eq!(worker.http_get("/healthz").await.0, 200);
    support::eventually(Duration::from_secs(20), "ready", || async {
        (worker.http_get("/readyz").await.0 == 200).then_some(())
    })
    .await;
    let (status, body) = worker.http_get("/metrics").await;
    assert_eq!(status, 200);
    for family in [
        "switchboard_messages_received_total",
        "switchboard_duplicate_receives_total",
        "switchboard_messages_total",
        "switchboard_handle_duration_seconds",
        "switchboard_deliveries_total",
        "switchboard_delivery_retries_total",
        "switchboard_delivery_duration_seconds",
        "switchboard_connections_pruned_total",
        "switchboard_groups_in_flight",
        "switchboard_messages_in_hand",
        "switchboard_polls_total",
        "switchboard_poll_errors_total",
        "switchboard_dead_letters_total",
        "switchboard_deletes_total",
        "switchboard_visibility_changes_total",
        "switchboard_backend_errors_total",
    ] {
        assert!(
            body.contains(&format!("# HELP {family} ")),
            "{family} missing"
        );
    }
    support::eventually(
        Duration::from_secs(20),
        "an empty long poll counted",
        || async {
            (worker
                .metric(r#"switchboard_polls_total{result="empty"}"#)
                .await
                >= 1.0)
                .then_some(())
        },
    )
    .await;
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alive_but_not_ready_while_the_queue_is_unreachable_and_stops_promptly() {
    // A port nothing listens on: the queue endpoint is down.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", dead.local_addr().unwrap());
    drop(dead);
    let backend = AwsBackend::new(support::sdk::config(Some(&url)).await);
    let stack = aws::Stack {
        names: aws::names("down"),
        queue_url: format!("{url}/123456789012/down.fifo"),
        dlq_url: format!("{url}/123456789012/down-dlq.fifo"),
    };
    let worker = spawn_worker(
        &backend,
        worker_config(&stack, "http://127.0.0.1:9/test", &[]),
    )
    .await;
    support::eventually(Duration::from_secs(10), "telemetry up", || async {
        (worker.http_get("/healthz").await.0 == 200).then_some(())
    })
    .await;
    assert_eq!(worker.http_get("/readyz").await.0, 503);
    worker.stop().await;
}
