//! Sessions that survive reconnects (issue 12) on the embedded store:
//! `switchboard dev` in-process with real WebSocket clients. `seq` on stored
//! messages, `resume` (contiguous, split at 128 KiB with `more`, `complete:
//! false` past retention, bad input refused), `presence` and join/leave.
//! The same resume scenario runs on moto in `tests/sessions_aws.rs`.

mod support;

use std::time::Duration;

use serde_json::Value;
use support::dev::Dev;
use support::process::metric;
use support::sessions::{
    bad_resumes_are_refused, messages, next_of, resume_after_reconnect, resume_all, say, seq_texts,
    store_kept_past_retention,
};
use support::ws::{Client, connect, send};
use switchboard::backend::Queue;
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::gateway::GatewayConfig;
use switchboard::migrations::Names;

const DEADLINE: Duration = Duration::from_secs(30);

/// `dev` on `store`, presence events on or off.
async fn start(store: EmbeddedStore, presence_events: bool) -> Dev {
    let gateway = GatewayConfig {
        presence_events,
        ..GatewayConfig::default()
    };
    Dev::start(gateway, store).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reconnecting_client_resumes_exactly_what_it_missed() {
    let dev = start(EmbeddedStore::in_memory().await.unwrap(), false).await;
    resume_after_reconnect(&dev.url(&support::unique("resume")), DEADLINE).await;
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_over_128_kib_comes_in_several_frames_with_more() {
    let dev = start(EmbeddedStore::in_memory().await.unwrap(), false).await;
    let mut c = connect(&dev.url("big")).await;
    // 8 × 30,000 bytes: about 240 KB, two or more frames.
    let big = |i: usize| format!("{i}-{}", "x".repeat(30_000));
    for i in 0..8 {
        say(&mut c, &big(i)).await;
    }
    let live = seq_texts(&messages(&mut c, 8, DEADLINE).await);
    assert_eq!(live.last().unwrap().0, 8);
    let r = resume_all(&mut c, 0, DEADLINE).await;
    assert!(r.frames.len() >= 2, "{:?}", r.frames);
    for f in &r.frames[..r.frames.len() - 1] {
        assert_eq!(f["more"], true, "{f}");
    }
    assert_eq!(r.frames.last().unwrap()["more"], false);
    assert!(r.frames.iter().all(|f| f["complete"] == true));
    let got = seq_texts(&r.messages);
    let want: Vec<(u64, String)> = (0..8).map(|i| (i as u64 + 1, big(i))).collect();
    assert_eq!(got, want);
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_past_retention_says_complete_false_and_bad_input_is_refused() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let table = store.messages("switchboard-messages");
    // Messages 1 and 2 are past their TTL, 3 to 5 are kept.
    store_kept_past_retention(&table, 5).await;
    let dev = start(store, false).await;
    let mut c = connect(&dev.url("kept")).await;

    let r = resume_all(&mut c, 0, DEADLINE).await;
    assert_eq!(
        seq_texts(&r.messages),
        (3..=5).map(|s| (s, format!("m{s}"))).collect::<Vec<_>>()
    );
    assert_eq!(r.frames[0]["complete"], false, "{}", r.frames[0]);
    assert_eq!(r.frames[0]["last"], 5);
    // From 2 on, nothing is missing.
    let r = resume_all(&mut c, 2, DEADLINE).await;
    assert_eq!(r.messages.len(), 3);
    assert_eq!(r.frames[0]["complete"], true);
    // Up to date: an empty, complete answer.
    let r = resume_all(&mut c, 5, DEADLINE).await;
    assert!(r.messages.is_empty());
    assert_eq!(r.frames[0]["complete"], true);

    bad_resumes_are_refused(&mut c, 5, DEADLINE).await;
    dev.stop().await;
}

/// Sends `presence` and returns the answer.
async fn presence(c: &mut Client) -> Value {
    send(c, r#"{"action":"presence"}"#).await;
    next_of(c, "presence", DEADLINE).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn presence_lists_the_members_and_join_leave_reach_the_others() {
    let dev = start(EmbeddedStore::in_memory().await.unwrap(), true).await;
    let room = support::unique("room");
    let mut a = connect(&dev.url(&room)).await;
    let mut b = connect(&dev.url(&room)).await;
    // a hears b join; b hears nothing of its own join.
    let join = next_of(&mut a, "join", DEADLINE).await;
    assert_eq!(join["sessionId"], room.as_str());
    let b_id = join["connectionId"].as_str().unwrap().to_owned();
    let mut c = connect(&dev.url(&room)).await;
    for member in [&mut a, &mut b] {
        let j = next_of(member, "join", DEADLINE).await;
        assert_ne!(j["connectionId"], b_id.as_str());
        assert!(j["at"].as_i64().unwrap() > 0);
    }
    let p = presence(&mut c).await;
    assert_eq!(p["count"], 3, "{p}");
    let members = p["members"].as_array().unwrap();
    assert_eq!(members.len(), 3);
    assert!(members.iter().any(|m| m["connectionId"] == b_id.as_str()));
    assert!(
        members
            .iter()
            .all(|m| m["connectedAt"].as_i64().unwrap() > 0)
    );

    b.close(None).await.unwrap();
    for member in [&mut a, &mut c] {
        let l = next_of(member, "leave", DEADLINE).await;
        assert_eq!(l["connectionId"], b_id.as_str());
    }
    assert_eq!(presence(&mut a).await["count"], 2);
    // A join never reaches the one who joins: c's first frames were its
    // own presence answer, and no join of itself came before it.
    dev.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mass_close_yields_one_leave_event_per_connection() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let dev = start(store.clone(), true).await;
    let leaves = "switchboard_presence_events_total{event=\"leave\",outcome=\"announced\"}";
    let joins = "switchboard_presence_events_total{event=\"join\",outcome=\"announced\"}";
    // 1,000 connections in 20 sessions of 50.
    let mut clients = Vec::new();
    for i in 0..1000 {
        clients.push(connect(&dev.url(&format!("mass-{}", i % 20))).await);
    }
    support::counter_reaches(Duration::from_secs(120), "1000 joins", 1000.0, || {
        metric(dev.addr, "/metrics", joins)
    })
    .await;
    // Every client closes at once.
    futures::future::join_all(clients.iter_mut().map(|c| c.close(None))).await;
    drop(clients);
    support::counter_reaches(Duration::from_secs(120), "1000 leaves", 1000.0, || {
        metric(dev.addr, "/metrics", leaves)
    })
    .await;
    // Exactly 1,000 once everything settled: the stop waits for every
    // $disconnect, a leave sent twice would be counted by the worker or
    // still be in the queue.
    let metrics = dev.metrics.clone();
    dev.stop().await;
    let announced = metrics
        .presence_events
        .with_label_values(&["leave", "announced"])
        .get();
    assert_eq!(announced, 1000);
    let queue_url = store.migrate(&Names::default()).await.unwrap().queue_url;
    let left = store.queue(&queue_url).unwrap().info().await.unwrap();
    assert_eq!(
        (left.approximate_messages, left.approximate_in_flight),
        (0, 0),
        "nothing left in the queue"
    );
}
