//! Sessions that survive reconnects (issue 12) on moto: the local gateway
//! with the builtin handlers, SQS FIFO + DynamoDB, the real worker. `seq` is
//! assigned through the `~seq` counter item in one TransactWriteItems; a
//! resume after a reconnect returns exactly the missed messages; a resume
//! past retention says `complete: false`; bad input is refused; presence
//! events go through the queue.
#![cfg(feature = "aws-tests")]

mod support;

use std::time::Duration;

use support::aws::{self, spawn_worker, worker_config};
use support::sessions::{
    bad_resumes_are_refused, next_of, now_secs, resume_after_reconnect, resume_all, seq_texts,
    store_kept_past_retention, stored,
};
use support::ws::{TestGateway, connect, send};
use switchboard::backend::Messages;
use switchboard::gateway::GatewayConfig;

/// The worker long-polls moto (slow under load): allow for it.
const DEADLINE: Duration = Duration::from_secs(60);

async fn gateway(
    backend: &switchboard::backend::aws::AwsBackend,
    stack: &aws::Stack,
    presence_events: bool,
) -> TestGateway {
    let config = GatewayConfig {
        presence_events,
        ..GatewayConfig::default()
    };
    aws::gateway(backend, stack, config).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reconnecting_client_resumes_exactly_what_it_missed_on_dynamodb() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "resume").await;
    let gw = gateway(&backend, &stack, false).await;
    let worker = spawn_worker(&backend, worker_config(&stack, &gw.endpoint("dev"), &[])).await;
    let room = support::unique("room");
    resume_after_reconnect(&gw.ws_url(&format!("dev?session={room}")), DEADLINE).await;

    // The counter item holds the last seq and stays out of history.
    let mut c = connect(&gw.ws_url(&format!("dev?session={room}"))).await;
    send(&mut c, r#"{"action":"history","data":{"limit":100}}"#).await;
    let h = next_of(&mut c, "history", DEADLINE).await;
    let seqs: Vec<u64> = h["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=58).collect::<Vec<_>>());
    bad_resumes_are_refused(&mut c, 58, DEADLINE).await;

    worker.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sequencing_is_atomic_and_a_resume_past_retention_is_not_complete() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "retention").await;
    let table = backend.messages(&stack.names.messages_table);
    // DynamoDB's TTL deletes late (moto never): 1 and 2 are expired, not gone.
    // The counter is checked with the message: a stale expected seq, or a
    // message key that exists, writes nothing.
    store_kept_past_retention(&table, 4).await;
    let now = now_secs();
    let mut other = stored("kept", 3, now + 3600);
    other.id = "m3-again".into();
    assert!(!table.put_sequenced(&other).await.unwrap());
    let keys = table.keys_since("kept", 0).await.unwrap();
    assert_eq!(keys.last_seq, 4);
    assert_eq!(
        keys.keys.iter().map(|k| k.seq).collect::<Vec<_>>(),
        (1..=4).map(Some).collect::<Vec<_>>()
    );
    assert_eq!(table.latest("kept", 10).await.unwrap().len(), 2);

    let gw = gateway(&backend, &stack, false).await;
    let worker = spawn_worker(&backend, worker_config(&stack, &gw.endpoint("dev"), &[])).await;
    let mut c = connect(&gw.ws_url("dev?session=kept")).await;
    let r = resume_all(&mut c, 0, DEADLINE).await;
    assert_eq!(
        seq_texts(&r.messages),
        vec![(3, "m3".to_owned()), (4, "m4".to_owned())]
    );
    assert_eq!(r.frames[0]["complete"], false, "{}", r.frames[0]);
    assert_eq!(r.frames[0]["last"], 4);
    let r = resume_all(&mut c, 2, DEADLINE).await;
    assert_eq!(r.frames[0]["complete"], true);
    // The next stored message takes 5.
    support::sessions::say(&mut c, "new").await;
    let m = next_of(&mut c, "message", DEADLINE).await;
    assert_eq!(m["seq"], 5, "{m}");

    worker.stop().await;
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn presence_and_join_leave_through_sqs() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "presence").await;
    let gw = gateway(&backend, &stack, true).await;
    let worker = spawn_worker(&backend, worker_config(&stack, &gw.endpoint("dev"), &[])).await;
    let room = support::unique("room");
    let url = gw.ws_url(&format!("dev?session={room}"));
    let mut a = connect(&url).await;
    let mut b = connect(&url).await;
    let join = next_of(&mut a, "join", DEADLINE).await;
    let b_id = join["connectionId"].as_str().unwrap().to_owned();
    let mut c = connect(&url).await;
    next_of(&mut a, "join", DEADLINE).await;
    send(&mut c, r#"{"action":"presence"}"#).await;
    let p = next_of(&mut c, "presence", DEADLINE).await;
    assert_eq!(p["count"], 3, "{p}");
    assert_eq!(p["members"].as_array().unwrap().len(), 3);
    b.close(None).await.unwrap();
    let leave = next_of(&mut a, "leave", DEADLINE).await;
    assert_eq!(leave["connectionId"], b_id.as_str());
    support::counter_reaches(DEADLINE, "one leave", 1.0, || {
        worker.metric("switchboard_presence_events_total{event=\"leave\",outcome=\"announced\"}")
    })
    .await;
    worker.stop().await;
    gw.stop().await;
}
