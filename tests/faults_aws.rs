//! Fault suite, AWS throttling: a fault-injecting proxy between the worker's
//! SDK clients and moto answers DynamoDB `Query` and `TransactWriteItems` (the store), and SQS
//! `ReceiveMessage` and `DeleteMessageBatch`, with throttling errors, the way
//! AWS sheds load. The worker backs off (the poller, the message's visibility,
//! the delete batch) and loses nothing: every message reaches every member,
//! in group order, and the queue drains.
#![cfg(feature = "aws-tests")]

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard::backend::Queue;
use switchboard::backend::aws::AwsBackend;

use support::aws::{self, connect_all, message, send_all, spawn_worker, worker_config};
use support::connections_server::ConnectionsServer;
use support::fault_proxy::{Fault, FaultProxy};
use support::ledger::Ledger;
use support::stream::{env_or, heavy};

const GROUPS: usize = 4;
const RECIPIENTS: usize = 2;

/// (X-Amz-Target, HTTP status, AWS error code, how many requests get it).
const FAULTS: &[(&str, u16, &str, u32)] = &[
    (
        "DynamoDB_20120810.Query",
        400,
        "ProvisionedThroughputExceededException",
        6,
    ),
    // The store step: message + seq counter in one transaction.
    (
        "DynamoDB_20120810.TransactWriteItems",
        400,
        "ThrottlingException",
        6,
    ),
    ("AmazonSQS.ReceiveMessage", 400, "RequestThrottled", 4),
    (
        "AmazonSQS.DeleteMessageBatch",
        400,
        "ThrottlingException",
        4,
    ),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_dynamodb_and_sqs_calls_are_backed_off_and_nothing_is_lost() {
    // moto is slow (AWS-STAND-INS.md): keep the backlog to a few dozen.
    let per_group = env_or("FAULTS_AWS_PER_GROUP", if heavy() { 50 } else { 12 });
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "faults-aws").await;
    let conns = backend.connections(&stack.names.connections_table, None);
    let mut members = BTreeMap::new();
    let mut ledger = Ledger::new();
    let mut messages = Vec::new();
    for g in 0..GROUPS {
        let session = format!("room-{g}");
        let ids: Vec<String> = (0..RECIPIENTS).map(|r| format!("c{g}-{r}")).collect();
        connect_all(&conns, &session, &ids).await;
        for id in ids {
            members.insert(id, session.clone());
        }
    }
    for i in 0..per_group {
        for g in 0..GROUPS {
            let session = format!("room-{g}");
            let id = format!("{session}-m{i:03}");
            ledger.sent(&session, &id);
            messages.push(message(
                &id,
                "sendMessage",
                &session,
                &format!("c{g}-0"),
                serde_json::json!({"n": i}),
            ));
        }
    }
    send_all(&backend, &stack.queue_url, &messages).await;

    // The worker reaches moto only through the fault proxy.
    let proxy = FaultProxy::start(&aws::endpoint()).await;
    for (target, status, code, times) in FAULTS {
        proxy.inject(
            target,
            Fault {
                status: *status,
                error_type: code,
                times: *times,
            },
        );
    }
    let worker_backend = AwsBackend::new(support::sdk::config(Some(&proxy.url)).await);
    let server = ConnectionsServer::start().await;
    let started = Instant::now();
    let worker = spawn_worker(
        &worker_backend,
        worker_config(&stack, &server.endpoint("test"), &["--retry-base", "200ms"]),
    )
    .await;
    let deliveries = GROUPS * per_group * RECIPIENTS;
    server
        .wait_distinct(deliveries, Duration::from_secs(180))
        .await;
    let elapsed = started.elapsed();

    // Every injected fault was served (the worker met them all) ...
    for (target, _, _, times) in FAULTS {
        assert!(
            proxy.seen(target) > *times,
            "{target}: {} requests, {times} of them throttled",
            proxy.seen(target)
        );
    }
    // ... and backed off: the poller after a throttled receive, a message
    // whose store or lookup was throttled by changing its visibility.
    let poll_errors = worker
        .metric(r#"switchboard_poll_errors_total{error_type="throttled"}"#)
        .await;
    assert!(
        poll_errors >= 1.0,
        "throttled receives counted: {poll_errors}"
    );
    let retried: f64 = worker
        .metric(r#"switchboard_messages_total{action="sendMessage",outcome="retried"}"#)
        .await;
    assert!(
        retried >= 1.0,
        "throttled store or lookup retried the message later"
    );
    let backoffs = worker
        .metric(r#"switchboard_visibility_changes_total{outcome="ok",purpose="backoff"}"#)
        .await;
    assert_eq!(
        backoffs, retried,
        "each retry backed off through its visibility"
    );

    // Nothing lost, order kept; the queue drains and nothing was dead-lettered.
    let verdict = ledger.verify(&members, &server.received());
    support::eventually(Duration::from_secs(60), "the queue drained", || async {
        let info = backend.queue(&stack.queue_url).info().await.ok()?;
        (info.approximate_messages == 0 && info.approximate_in_flight == 0).then_some(())
    })
    .await;
    let dlq = backend.queue(&stack.dlq_url).info().await.unwrap();
    assert_eq!(dlq.approximate_messages, 0, "nothing dead-lettered");
    println!(
        "AWS throttling: {} messages in {GROUPS} groups, {deliveries} deliveries in {elapsed:.1?}; \
         injected {:?}; {poll_errors} throttled receives, {retried} messages retried with backoff; \
         {} redeliveries",
        GROUPS * per_group,
        FAULTS
            .iter()
            .map(|(t, _, _, n)| (*t, *n))
            .collect::<Vec<_>>(),
        verdict.redelivered.len()
    );
    worker.stop().await;
}
