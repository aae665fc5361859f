//! Failure paths on moto: poison messages go to the DLQ with their reason and do
//! not block their group; unknown actions tell the sender; a retriable store
//! failure keeps the message (and its group) until the store works again.
#![cfg(feature = "aws-tests")]

mod support;

use std::time::Duration;

use support::aws::{
    self, Rig, connect_all, envelope, message, peek_all, send_all, spawn_worker, worker_config,
};
use support::connections_server::ConnectionsServer;
use support::fault_proxy::{Fault, FaultProxy};
use switchboard::backend::aws::AwsBackend;
use switchboard::backend::{Messages, Queue};

fn attr(m: &aws_sdk_sqs::types::Message, name: &str) -> String {
    m.message_attributes()
        .and_then(|a| a.get(name))
        .and_then(|v| v.string_value())
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_and_unknown_messages_are_dead_lettered_with_their_reason_and_do_not_block_the_group()
 {
    let rig = Rig::start("poison").await;
    let (backend, stack, server) = (&rig.backend, &rig.stack, &rig.server);
    rig.connect("room", &["a".to_owned(), "b".to_owned()]).await;
    let worker = rig.worker(&[]).await;

    let v2 = r#"{"v":2,"id":"x","action":"sendMessage","sessionId":"room","sender":{"connectionId":"a"},"receivedAt":1}"#;
    let msgs = vec![
        message(
            "m1",
            "sendMessage",
            "room",
            "a",
            serde_json::json!({"n": 1}),
        ),
        (
            "room".to_owned(),
            "bad-json".to_owned(),
            "{not json".to_owned(),
        ),
        ("room".to_owned(), "bad-v".to_owned(), v2.to_owned()),
        (
            "room".to_owned(),
            "shout".to_owned(),
            envelope("shout-1", "shout", "room", "a", serde_json::json!({})),
        ),
        message(
            "m2",
            "sendMessage",
            "room",
            "a",
            serde_json::json!({"n": 2}),
        ),
    ];
    rig.send_all(&msgs).await;

    server
        .wait_until(Duration::from_secs(30), "m2 delivered to b", |p| {
            p.iter()
                .any(|p| p.connection_id == "b" && p.frame["id"] == "m2")
        })
        .await;
    let to_b: Vec<_> = server
        .posts_to("b")
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(
        to_b,
        ["m1", "m2"],
        "the group went on past the poison messages, in order"
    );
    let to_a = server.posts_to("a");
    let error = to_a
        .iter()
        .find(|f| f["type"] == "error")
        .expect("the sender of the unknown action got an error frame");
    assert_eq!(error["id"], "shout-1");
    assert_eq!(error["code"], "unknown_action");
    assert!(
        error["message"].as_str().unwrap().contains("sendMessage"),
        "lists known actions: {error}"
    );

    let dead = support::eventually(Duration::from_secs(30), "3 dead letters", || async {
        let all = peek_all(backend, &stack.dlq_url).await;
        (all.len() >= 3).then_some(all)
    })
    .await;
    assert_eq!(dead.len(), 3);
    let by_body = |b: &str| dead.iter().find(|m| m.body() == Some(b)).expect(b);
    let m = by_body("{not json");
    assert!(
        attr(m, "reason").contains("not valid JSON"),
        "{}",
        attr(m, "reason")
    );
    assert_eq!(attr(m, "errorType"), "malformed");
    let m = by_body(v2);
    assert!(attr(m, "reason").contains("unsupported envelope version 2"));
    assert_eq!(attr(m, "errorType"), "unknown_version");
    let shout = dead
        .iter()
        .find(|m| m.body().unwrap().contains("shout-1"))
        .unwrap();
    assert!(attr(shout, "reason").contains("unknown action `shout`"));
    for m in &dead {
        assert_eq!(
            m.attributes()
                .and_then(|a| a.get(&aws_sdk_sqs::types::MessageSystemAttributeName::MessageGroupId))
                .map(String::as_str),
            Some("room"),
            "dead letters keep their group"
        );
        assert!(!attr(m, "sourceMessageId").is_empty());
    }
    // A dead letter is on the DLQ before the worker counts it.
    for reason in ["malformed", "unknown_action"] {
        let sample = format!(r#"switchboard_dead_letters_total{{reason="{reason}"}}"#);
        support::counter_reaches(Duration::from_secs(10), reason, 1.0, || {
            worker.metric(&sample)
        })
        .await;
    }
    worker.stop().await;

    let left = backend.queue(&stack.queue_url).info().await.unwrap();
    assert_eq!(
        left.approximate_messages + left.approximate_in_flight,
        0,
        "everything was deleted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retriable_store_failure_keeps_the_message_and_its_group_until_it_succeeds() {
    let proxy = FaultProxy::start(&aws::endpoint()).await;
    let direct = aws::backend().await;
    let stack = aws::migrated_stack(&direct, "storefail").await;
    // The worker talks to moto through the proxy; the SDK gives up after 2 attempts.
    let faulty = AwsBackend::new(support::sdk::config(Some(&proxy.url)).await);
    let server = ConnectionsServer::start().await;
    let conns = direct.connections(&stack.names.connections_table, None);
    connect_all(&conns, "room", &["a".to_owned()]).await;
    // Two handles' worth of failures (2 SDK attempts each).
    proxy.inject(
        "DynamoDB_20120810.TransactWriteItems",
        Fault {
            status: 500,
            error_type: "InternalServerError",
            times: 4,
        },
    );
    let worker = spawn_worker(
        &faulty,
        worker_config(&stack, &server.endpoint("test"), &["--retry-base", "3s"]),
    )
    .await;
    let msgs = vec![
        message(
            "m1",
            "sendMessage",
            "room",
            "a",
            serde_json::json!({"n": 1}),
        ),
        message(
            "m2",
            "sendMessage",
            "room",
            "a",
            serde_json::json!({"n": 2}),
        ),
    ];
    send_all(&direct, &stack.queue_url, &msgs).await;

    support::eventually(Duration::from_secs(30), "first retry", || async {
        let r = worker
            .metric(r#"switchboard_messages_total{action="sendMessage",outcome="retried"}"#)
            .await;
        (r >= 1.0).then_some(())
    })
    .await;
    // During the backoff both messages are still on the queue (m1 invisible, m2
    // held back behind it) and nothing was delivered.
    let info = direct.queue(&stack.queue_url).info().await.unwrap();
    assert_eq!(
        info.approximate_messages + info.approximate_in_flight,
        2,
        "{info:?}"
    );
    assert!(
        server.posts().is_empty(),
        "nothing delivered while the store fails"
    );

    server
        .wait_until(Duration::from_secs(60), "m1 and m2 delivered", |p| {
            p.len() >= 2
        })
        .await;
    let got: Vec<_> = server
        .posts_to("a")
        .iter()
        .map(|f| f["id"].clone())
        .collect();
    assert_eq!(got, ["m1", "m2"]);
    assert_eq!(
        worker
            .metric(r#"switchboard_messages_total{action="sendMessage",outcome="retried"}"#)
            .await,
        2.0
    );
    assert!(proxy.seen("DynamoDB_20120810.TransactWriteItems") >= 6);
    let stored = direct
        .messages(&stack.names.messages_table)
        .latest("room", 10)
        .await
        .unwrap();
    let ids: Vec<_> = stored.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, ["m1", "m2"]);
    assert!(
        peek_all(&direct, &stack.dlq_url).await.is_empty(),
        "nothing dead-lettered"
    );
    worker.stop().await;
}
