//! Fan-out through the real @connections client: 410 prunes exactly the gone
//! connections (and the worker announces their leaves), 429/5xx are retried
//! per recipient, sessions larger than one Query page reach everyone once;
//! the first two also with posts pipelined (`--fanout-pipeline`). SQS and
//! DynamoDB on moto.
#![cfg(feature = "aws-tests")]

mod support;

use std::time::Duration;

use support::aws::{Rig, message};

fn ids(prefix: &str, n: usize) -> Vec<String> {
    (0..n).map(|i| format!("{prefix}{i}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gone_connections_are_pruned_exactly_and_the_sender_only_when_it_is_gone() {
    gone_connections_are_pruned(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_posts_prune_gone_connections_exactly() {
    gone_connections_are_pruned(&["--fanout-pipeline", "3"]).await;
}

async fn gone_connections_are_pruned(flags: &[&str]) {
    let s = Rig::start("gone").await;
    let members = ids("m", 5);
    s.connect("room", &members).await;
    // Another session's connection must never be touched.
    s.connect("other-room", &["x0".to_owned()]).await;
    s.server.set_gone("m1");
    s.server.set_gone("m3");

    let worker = s.worker(flags).await;
    // m0 sends: m1 and m3 are gone.
    s.send(
        "msg-1",
        "sendMessage",
        "room",
        "m0",
        serde_json::json!({"text": "hi"}),
    )
    .await;
    s.server
        .wait_until(Duration::from_secs(30), "3 live members got msg-1", |p| {
            p.len() >= 3
        })
        .await;
    support::eventually(Duration::from_secs(30), "m1 and m3 pruned", || async {
        let m1 = s.conns.get("m1").await.unwrap();
        let m3 = s.conns.get("m3").await.unwrap();
        (m1.is_none() && m3.is_none()).then_some(())
    })
    .await;
    for live in ["m0", "m2", "m4", "x0"] {
        assert!(
            s.conns.get(live).await.unwrap().is_some(),
            "{live} must stay"
        );
    }
    // The records are gone before the worker counts them; a gone delivery is
    // counted after its record is pruned.
    support::counter_reaches(Duration::from_secs(10), "gone deliveries", 2.0, || {
        worker.metric(r#"switchboard_deliveries_total{outcome="gone"}"#)
    })
    .await;
    assert_eq!(
        worker.metric("switchboard_connections_pruned_total").await,
        2.0
    );

    // Now the sender itself is gone: its item goes, nobody else's.
    s.server.set_gone("m0");
    s.send(
        "msg-2",
        "sendMessage",
        "room",
        "m0",
        serde_json::json!({"text": "bye"}),
    )
    .await;
    s.server
        .wait_until(Duration::from_secs(30), "m2 and m4 got msg-2", |p| {
            p.iter().filter(|p| p.frame["id"] == "msg-2").count() >= 2
        })
        .await;
    support::eventually(Duration::from_secs(30), "sender m0 pruned", || async {
        s.conns.get("m0").await.unwrap().is_none().then_some(())
    })
    .await;
    for live in ["m2", "m4", "x0"] {
        assert!(
            s.conns.get(live).await.unwrap().is_some(),
            "{live} must stay"
        );
    }
    let frames_to = |id: &str, kind: &str| -> Vec<serde_json::Value> {
        s.server
            .posts_to(id)
            .into_iter()
            .filter(|f| f["type"] == kind)
            .collect()
    };
    assert_eq!(frames_to("m2", "message").len(), 2);
    // No $disconnect ran for the pruned members: the worker sent their
    // leaves (through SQS), and each reached the live members once.
    support::eventually(
        Duration::from_secs(30),
        "the pruned members' leaves",
        || {
            let n = frames_to("m4", "leave").len() + frames_to("m2", "leave").len();
            async move { (n >= 6).then_some(()) }
        },
    )
    .await;
    for live in ["m2", "m4"] {
        let mut left: Vec<String> = frames_to(live, "leave")
            .iter()
            .map(|f| f["connectionId"].as_str().unwrap().to_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["m0", "m1", "m3"], "{live}");
    }
    assert!(
        frames_to("x0", "leave").is_empty(),
        "another session's member"
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn throttled_recipients_are_retried_and_one_failing_recipient_does_not_redeliver_to_all() {
    throttled_recipients_are_retried(&[]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pipelined_posts_are_retried_per_recipient() {
    // All four recipients in one pipeline; the retries go one by one.
    throttled_recipients_are_retried(&["--fanout-pipeline", "4"]).await;
}

async fn throttled_recipients_are_retried(flags: &[&str]) {
    let s = Rig::start("throttle").await;
    let members = ids("t", 4);
    s.connect("room", &members).await;
    s.server.throttle("t1", 2); // recovers on the third attempt
    s.server.fail("t2", 1); // one 500, then fine
    s.server.throttle("t3", 100); // never recovers within the retries

    let worker = s
        .worker(&[&["--push-retries", "3", "--push-retry-base", "10ms"], flags].concat())
        .await;
    s.send(
        "msg-1",
        "sendMessage",
        "room",
        "t0",
        serde_json::json!({"text": "hi"}),
    )
    .await;
    // A marker message after it: when the marker is delivered, msg-1 is done.
    s.send(
        "msg-2",
        "sendMessage",
        "room",
        "t0",
        serde_json::json!({"text": "marker"}),
    )
    .await;
    support::eventually(Duration::from_secs(30), "both messages done", || async {
        let done = worker
            .metric(r#"switchboard_messages_total{action="sendMessage",outcome="done"}"#)
            .await;
        (done == 2.0).then_some(())
    })
    .await;

    let ids_for = |c: &str| -> Vec<String> {
        s.server
            .posts_to(c)
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        ids_for("t0"),
        ["msg-1", "msg-2"],
        "delivered once, not again for t3's sake"
    );
    assert_eq!(ids_for("t1")[0], "msg-1");
    assert_eq!(ids_for("t2")[0], "msg-1");
    assert!(!ids_for("t3").contains(&"msg-1".to_owned()));
    assert_eq!(
        s.server.attempts("t1") as usize,
        3 + ids_for("t1").len() - 1
    );
    // t3: first attempt + 3 retries for msg-1; having exhausted its retries it
    // gets a single attempt for the marker, so it does not hold up the session.
    assert_eq!(s.server.attempts("t3"), 5);
    assert_eq!(
        worker
            .metric(r#"switchboard_deliveries_total{outcome="throttled"}"#)
            .await,
        2.0
    );
    // t1: 2, t3: 3 (msg-1) + 0 (marker).
    assert_eq!(
        worker
            .metric(r#"switchboard_delivery_retries_total{error_type="throttled"}"#)
            .await,
        5.0
    );
    assert_eq!(
        worker
            .metric(r#"switchboard_delivery_retries_total{error_type="server"}"#)
            .await,
        1.0
    );
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_session_larger_than_one_query_page_reaches_everyone_once() {
    let s = Rig::start("pages").await;
    let members = ids("p", 45);
    s.connect("big-room", &members).await;
    let worker = s
        .worker(&["--query-page-size", "7", "--fanout-concurrency", "4"])
        .await;
    s.send(
        "big-1",
        "sendMessage",
        "big-room",
        "p0",
        serde_json::json!({"text": "all"}),
    )
    .await;
    s.server
        .wait_until(Duration::from_secs(60), "45 deliveries", |p| p.len() >= 45)
        .await;
    // The next message proves nothing else is still on its way for big-1.
    s.send(
        "big-2",
        "sendMessage",
        "big-room",
        "p0",
        serde_json::json!({}),
    )
    .await;
    s.server
        .wait_until(Duration::from_secs(60), "90 deliveries", |p| p.len() >= 90)
        .await;
    for m in &members {
        let got: Vec<_> = s
            .server
            .posts_to(m)
            .iter()
            .map(|f| f["id"].clone())
            .collect();
        assert_eq!(got, ["big-1", "big-2"], "{m}");
    }
    assert_eq!(s.server.posts().len(), 90);
    worker.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broadcast_can_exclude_the_sender_and_direct_reaches_only_named_members_of_the_session() {
    let s = Rig::start("direct").await;
    s.connect("room", &ids("d", 4)).await;
    s.connect("elsewhere", &["e0".to_owned()]).await;
    let worker = s
        .worker(&["--route", "announce=broadcast:exclude-sender"])
        .await;
    let msgs = vec![
        message("a-1", "announce", "room", "d0", serde_json::json!({})),
        message(
            "w-1",
            "direct",
            "room",
            "d0",
            // d2 by user id, d3 by connection id; e0 is in another session.
            serde_json::json!({"to": {"userIds": ["user-d2"], "connectionIds": ["d3", "e0"]}}),
        ),
    ];
    s.send_all(&msgs).await;
    s.server
        .wait_until(Duration::from_secs(30), "announce + direct", |p| {
            p.len() >= 5
        })
        .await;
    let got = |c: &str| -> Vec<String> {
        s.server
            .posts_to(c)
            .iter()
            .map(|f| f["id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(
        got("d0"),
        Vec::<String>::new(),
        "sender excluded, not a direct target"
    );
    assert_eq!(got("d1"), ["a-1"]);
    assert_eq!(got("d2"), ["a-1", "w-1"]);
    assert_eq!(got("d3"), ["a-1", "w-1"]);
    assert!(got("e0").is_empty(), "direct never crosses sessions");
    worker.stop().await;
}
