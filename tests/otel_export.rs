//! Trace export (feature `otel`) from the real `switchboard dev` process to
//! a test OTLP/HTTP receiver: one client message is one trace from the edge
//! span through the queue wait and the steps to the fan-out; a poison
//! message's trace ends in the dead-letter event with its reason; a
//! collector that is down costs the worker nothing but one warning per
//! interval.
#![cfg(feature = "otel")]

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::json;
use support::embedded::TempDir;
use support::eventually;
use support::otlp::{Receiver, Span};
use support::process::DevProc;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const HANDSHAKE_SPAN: &str = "00f067aa0ba902b7";

type Client = support::ws::Client;

/// A connection whose handshake carries a `traceparent` (a browser's or a
/// proxy's trace).
async fn connect_traced(url: &str) -> Client {
    let mut req = url.into_client_request().unwrap();
    req.headers_mut().insert(
        "traceparent",
        format!("00-{TRACE_ID}-{HANDSHAKE_SPAN}-01")
            .parse()
            .unwrap(),
    );
    let (client, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.status(), 101);
    client
}

async fn next_of_type(c: &mut Client, kind: &str) -> serde_json::Value {
    tokio::time::timeout(Duration::from_secs(30), async {
        loop {
            let f = support::ws::next_json(c).await;
            if f["type"] == kind {
                return f;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no `{kind}` frame within 30 s"))
}

fn env(endpoint: &str) -> Vec<(&'static str, String)> {
    vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT", endpoint.to_owned()),
        ("OTEL_SERVICE_NAME", "switchboard-test".to_owned()),
        // Export soon after the spans end.
        ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
    ]
}

async fn dev(dir: &TempDir, env: &[(&'static str, String)]) -> DevProc {
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    DevProc::start_with_env(dir.path(), &[], &env).await
}

fn one<'a>(spans: &'a [Span], what: &str, pick: impl Fn(&Span) -> bool) -> &'a Span {
    let found: Vec<&Span> = spans.iter().filter(|s| pick(s)).collect();
    assert_eq!(found.len(), 1, "one {what} span in {spans:#?}");
    found[0]
}

fn step<'a>(spans: &'a [Span], name: &str) -> &'a Span {
    one(spans, name, |s| {
        s.name == name && s.attr("step") == Some(name)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_message_is_one_trace_from_the_edge_to_the_broadcast() {
    let receiver = Receiver::start().await;
    let dir = TempDir::new("otel-trace");
    let dev = dev(&dir, &env(&receiver.endpoint())).await;
    let mut c = connect_traced(&dev.ws_url("room-t")).await;
    c.send(Message::text(
        json!({"action": "sendMessage", "data": {"text": "hi"}}).to_string(),
    ))
    .await
    .unwrap();
    let frame = next_of_type(&mut c, "message").await;
    assert_eq!(frame["payload"]["text"], "hi");

    let spans = eventually(Duration::from_secs(30), "the trace exported", || async {
        let t = receiver.trace(TRACE_ID);
        let names = [
            "send",
            "queue_wait",
            "handle",
            "store",
            "broadcast",
            "fanout",
        ];
        names
            .iter()
            .all(|n| t.iter().any(|s| s.name == *n))
            .then_some(t)
    })
    .await;
    let send = one(&spans, "send", |s| s.name == "send");
    let wait = one(&spans, "queue_wait", |s| s.name == "queue_wait");
    let handle = one(&spans, "handle", |s| s.name == "handle");
    let store = step(&spans, "store");
    let broadcast = step(&spans, "broadcast");
    let fanout = one(&spans, "fanout", |s| s.name == "fanout");
    // Parent links, edge first: the handshake's span → the edge span → the
    // time in the queue → the handling → its steps → the fan-out.
    assert_eq!(
        send.parent_id, HANDSHAKE_SPAN,
        "the edge continues the handshake"
    );
    assert_eq!(wait.parent_id, send.span_id);
    assert_eq!(handle.parent_id, wait.span_id);
    assert_eq!(store.parent_id, handle.span_id);
    assert_eq!(broadcast.parent_id, handle.span_id);
    assert_eq!(fanout.parent_id, broadcast.span_id);
    // And in that order in time; the wait spans from the send to the handling.
    // (SentTimestamp has millisecond resolution.)
    let ms = |ns: u64| ns / 1_000_000;
    assert!(ms(send.start_ns) <= ms(wait.start_ns), "{send:?} {wait:?}");
    assert!(
        wait.end_ns <= handle.start_ns + 1_000_000,
        "{wait:?} {handle:?}"
    );
    assert!(
        store.end_ns <= broadcast.start_ns,
        "{store:?} {broadcast:?}"
    );
    assert_eq!(fanout.attr("recipients"), Some("1"), "{fanout:?}");
    assert_eq!(fanout.attr("ok"), Some("1"), "{fanout:?}");
    assert_eq!(handle.attr("action"), Some("sendMessage"));
    assert_eq!(handle.attr("trace_id"), Some(TRACE_ID));
    assert!(spans.iter().all(|s| s.service == "switchboard-test"));
    // Every log line of the message carries the trace id (its span's field).
    let logged = dev
        .proc
        .log()
        .lines()
        .filter(|l| l.contains(frame["id"].as_str().unwrap()))
        .filter(|l| l.contains("\"spans\""))
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(
        logged.iter().all(|l| l.contains(TRACE_ID)),
        "log lines without the trace id: {logged:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_poison_messages_trace_ends_in_the_dead_letter_with_its_reason() {
    let receiver = Receiver::start().await;
    let dir = TempDir::new("otel-poison");
    let dev = dev(&dir, &env(&receiver.endpoint())).await;
    let mut c = connect_traced(&dev.ws_url("room-p")).await;
    // `direct` without `data.to`: accepted at the edge, refused by the step.
    c.send(Message::text(
        json!({"action": "direct", "data": {"text": "to nobody"}}).to_string(),
    ))
    .await
    .unwrap();
    let error = next_of_type(&mut c, "error").await;
    assert_eq!(error["code"], "bad_request", "{error}");

    let handle = eventually(Duration::from_secs(30), "the handle span", || async {
        receiver
            .trace(TRACE_ID)
            .into_iter()
            .find(|s| s.name == "handle" && !s.events.is_empty())
    })
    .await;
    let (name, attrs) = handle.events.last().unwrap();
    assert_eq!(name, "dead letter", "{handle:#?}");
    let get = |k: &str| {
        attrs
            .iter()
            .find(|(key, _)| key == k)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(get("kind"), Some("bad_request"), "{attrs:?}");
    assert!(get("reason").is_some_and(|r| r.contains("to")), "{attrs:?}");
    let send = one(&receiver.trace(TRACE_ID), "send", |s| s.name == "send").clone();
    assert_eq!(send.parent_id, HANDSHAKE_SPAN);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collector_that_is_down_costs_one_warning_per_interval_and_no_delivery() {
    // A port that was free a moment ago: nothing listens there.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let dir = TempDir::new("otel-down");
    let mut vars = env(&format!("http://{closed}"));
    // Small batches, often: many failed exports during the test.
    vars.push(("OTEL_BSP_MAX_EXPORT_BATCH_SIZE", "16".to_owned()));
    vars.push(("OTEL_BSP_MAX_QUEUE_SIZE", "256".to_owned()));
    let dev = dev(&dir, &vars).await;
    let mut sender = support::ws::connect(&dev.ws_url("room-d")).await;
    let mut member = support::ws::connect(&dev.ws_url("room-d")).await;
    let rss_before = dev.proc.rss_kib();
    const N: usize = 400;
    let started = tokio::time::Instant::now();
    for i in 0..N {
        sender
            .send(Message::text(
                json!({"action": "sendMessage", "data": {"n": i}}).to_string(),
            ))
            .await
            .unwrap();
    }
    let mut got = 0;
    while got < N {
        let f = tokio::time::timeout(Duration::from_secs(60), member.next())
            .await
            .expect("deliveries keep coming")
            .unwrap()
            .unwrap();
        if let Message::Text(t) = f {
            let v: serde_json::Value = serde_json::from_str(&t).unwrap();
            if v["type"] == "message" {
                assert_eq!(v["payload"]["n"], got, "in order");
                got += 1;
            }
        }
    }
    let took = started.elapsed();
    // Failed exports happened (the warning), and only one warning in the interval.
    dev.proc
        .log_line(Duration::from_secs(30), "cannot export traces")
        .await;
    let warnings = dev
        .proc
        .log()
        .lines()
        .filter(|l| l.contains("cannot export traces"))
        .count();
    assert_eq!(warnings, 1, "one warning per interval");
    assert!(took < Duration::from_secs(30), "{N} messages took {took:?}");
    let rss_after = dev.proc.rss_kib();
    assert!(
        rss_after < rss_before + 64 * 1024,
        "memory bounded: {rss_before} KiB → {rss_after} KiB"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_flushes_the_spans_still_queued() {
    let receiver = Receiver::start().await;
    let dir = TempDir::new("otel-flush");
    let mut vars = env(&receiver.endpoint());
    // No scheduled export during the test: only the flush at exit sends.
    vars.retain(|(k, _)| *k != "OTEL_BSP_SCHEDULE_DELAY");
    vars.push(("OTEL_BSP_SCHEDULE_DELAY", "600000".to_owned()));
    let mut dev = dev(&dir, &vars).await;
    let mut c = connect_traced(&dev.ws_url("room-f")).await;
    c.send(Message::text(
        json!({"action": "sendMessage", "data": {"text": "bye"}}).to_string(),
    ))
    .await
    .unwrap();
    next_of_type(&mut c, "message").await;
    assert_eq!(receiver.requests(), 0, "nothing exported before the exit");
    dev.proc.sigterm();
    let status = dev.proc.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "{status:?}");
    let names: Vec<String> = receiver
        .trace(TRACE_ID)
        .into_iter()
        .map(|s| s.name)
        .collect();
    for want in ["send", "queue_wait", "handle", "store", "broadcast"] {
        assert!(names.iter().any(|n| n == want), "{want} flushed: {names:?}");
    }
}
