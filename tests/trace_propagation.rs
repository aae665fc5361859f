//! Trace context from the edge through the queue (issue 14, propagation
//! without an exporter): the send handler continues a frame's `traceparent`,
//! the FIFO queue carries it (a message attribute, and X-Ray's
//! `AWSTraceHeader` system attribute on SQS), the worker's dead letter keeps
//! it and so does the copy `replay-dlq` sends back. On moto (feature
//! `aws-tests`) and on the embedded queue.

mod support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;
use switchboard::backend::embedded::{EmbeddedQueue, EmbeddedStore};
use switchboard::backend::{Connection, Connections, Queue, ReceiveRequest};
use switchboard::handlers::{HandlerKind, HandlerSettings, Handlers};
use switchboard::ops::migrate::Names;
use switchboard::ops::replay::{self, ReplayOptions};
use switchboard::telemetry::trace::TraceContext;

const TRACEPARENT: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
const TRACESTATE: &str = "vendor=opaque-1";
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

/// The message fixture as connection `conn` sends `action` with a
/// `traceparent`/`tracestate` header from its integration.
fn traced_frame(conn: &str, action: &str) -> String {
    let mut e = support::fixtures::fresh(support::fixtures::MESSAGE);
    e["requestContext"]["connectionId"] = json!(conn);
    e["requestContext"]["routeKey"] = json!(action);
    e["requestContext"]["requestId"] = json!(support::unique("req"));
    e["body"] = json!(json!({"action": action, "data": {"text": "hi"}}).to_string());
    e["headers"] = json!({"traceparent": TRACEPARENT, "tracestate": TRACESTATE});
    e.to_string()
}

fn connection(id: &str, session: &str) -> Connection {
    let now =
        support::fixtures::fresh(support::fixtures::MESSAGE)["requestContext"]["requestTimeEpoch"]
            .as_i64()
            .unwrap();
    Connection {
        connection_id: id.into(),
        session_id: session.into(),
        user_id: None,
        connected_at: now,
        expires_at: now / 1000 + 3600,
        domain_name: None,
        stage: None,
        source_ip: None,
    }
}

/// The handler's context: same trace, a new span (the edge span), the state kept.
fn assert_continues_the_frame(attrs: &BTreeMap<String, String>) -> TraceContext {
    let t = TraceContext::from_attributes(attrs).expect("a valid traceparent attribute");
    assert_eq!(t.trace_id_hex(), TRACE_ID, "{attrs:?}");
    assert_ne!(
        attrs["traceparent"], TRACEPARENT,
        "the edge span is a child of the frame's, not the same span"
    );
    assert_eq!(
        attrs.get("tracestate").map(String::as_str),
        Some(TRACESTATE)
    );
    t
}

fn peek() -> ReceiveRequest {
    ReceiveRequest {
        max_messages: 10,
        wait: Duration::ZERO,
        // Visible again at once: the test only looks.
        visibility: Duration::ZERO,
    }
}

/// An in-memory embedded store with queue `q.fifo` (DLQ `q-dlq.fifo`) and
/// connection `c1` of `room1`, and the edge handlers on them.
async fn embedded_edge() -> (EmbeddedStore, EmbeddedQueue, EmbeddedQueue, Handlers) {
    let store = EmbeddedStore::in_memory().await.unwrap();
    let m = store
        .migrate(&Names {
            connections_table: "c".into(),
            messages_table: "m".into(),
            queue: "q.fifo".into(),
            dlq: "q-dlq.fifo".into(),
        })
        .await
        .unwrap();
    let queue = store.queue(&m.queue_url).unwrap();
    let dlq = store.queue(&m.dlq_url).unwrap();
    let conns = store.connections("c", None);
    conns.put(&connection("c1", "room1")).await.unwrap();
    let handlers = Handlers::new(
        Arc::new(queue.clone()),
        Arc::new(conns),
        HandlerSettings::default(),
    );
    (store, queue, dlq, handlers)
}

#[tokio::test]
async fn the_embedded_queue_keeps_the_trace_through_a_redrive_and_a_replay() {
    let (_store, queue, dlq, handlers) = embedded_edge().await;
    let r = handlers
        .handle_json(HandlerKind::Send, &traced_frame("c1", "sendMessage"))
        .await
        .unwrap();
    assert_eq!(r.status_code, 200, "{r:?}");

    let got = queue.receive(peek()).await.unwrap();
    assert_eq!(got.len(), 1);
    let edge = assert_continues_the_frame(&got[0].attributes);
    assert!(
        got[0].sent_at_ms.is_some(),
        "SentTimestamp for the queue wait"
    );

    // Received past maxReceiveCount: the queue's redrive moves it, attributes and all.
    let max = queue.info().await.unwrap().max_receive_count.unwrap();
    for _ in 1..=max {
        queue.receive(peek()).await.unwrap();
    }
    assert!(queue.receive(peek()).await.unwrap().is_empty(), "moved");
    let dead = dlq.receive(peek()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        TraceContext::from_attributes(&dead[0].attributes),
        Some(edge.clone())
    );

    let opts = ReplayOptions {
        wait: Duration::ZERO,
        ..ReplayOptions::default()
    };
    let s = replay::replay(&dlq, &queue, &opts, |_| {}).await.unwrap();
    assert_eq!(s.moved, 1);
    let back = queue.receive(peek()).await.unwrap();
    assert_eq!(back.len(), 1);
    assert_eq!(
        TraceContext::from_attributes(&back[0].attributes),
        Some(edge)
    );
}

#[cfg(feature = "aws-tests")]
mod aws {
    use super::*;
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    use support::aws::Rig;
    use support::eventually;

    /// `(message attributes, AWSTraceHeader)` of the one message in `url`,
    /// left visible.
    async fn look(rig: &Rig, url: &str) -> (BTreeMap<String, String>, Option<String>) {
        let out = rig
            .backend
            .sqs()
            .receive_message()
            .queue_url(url)
            .visibility_timeout(0)
            .wait_time_seconds(1)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        let [m] = out.messages() else {
            panic!("one message in {url}: {:?}", out.messages());
        };
        let attrs = m
            .message_attributes()
            .into_iter()
            .flatten()
            .map(|(k, v)| (k.clone(), v.string_value().unwrap_or_default().to_owned()))
            .collect();
        let xray = m
            .attributes()
            .and_then(|a| a.get(&MessageSystemAttributeName::AwsTraceHeader))
            .cloned();
        (attrs, xray)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn traceparent_survives_sqs_the_dead_letter_and_a_replay() {
        let rig = Rig::start("trace").await;
        rig.connect("room1", &["c1".to_owned()]).await;
        let queue = rig.backend.queue(&rig.stack.queue_url);
        let dlq = rig.backend.queue(&rig.stack.dlq_url);
        let handlers = Handlers::new(
            Arc::new(queue.clone()),
            rig.conns.clone(),
            HandlerSettings::default(),
        );
        // `shout` is no route of the worker: the message is poison.
        let r = handlers
            .handle_json(HandlerKind::Send, &traced_frame("c1", "shout"))
            .await
            .unwrap();
        assert_eq!(r.status_code, 200, "{r:?}");

        let (attrs, xray) = look(&rig, &rig.stack.queue_url).await;
        let edge = assert_continues_the_frame(&attrs);
        assert_eq!(
            xray.as_deref(),
            Some(edge.xray().as_str()),
            "AWSTraceHeader"
        );
        assert!(
            xray.unwrap()
                .starts_with("Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;")
        );

        let worker = rig.worker(&[]).await;
        eventually(
            Duration::from_secs(60),
            "the poison dead-lettered",
            || async { (dlq.info().await.unwrap().approximate_messages == 1).then_some(()) },
        )
        .await;
        worker.stop().await;
        let (dead, dead_xray) = look(&rig, &rig.stack.dlq_url).await;
        assert!(
            dead["reason"].contains("unknown action `shout`"),
            "{dead:?}"
        );
        assert_eq!(TraceContext::from_attributes(&dead), Some(edge.clone()));
        assert_eq!(dead_xray, Some(edge.xray()));

        let opts = ReplayOptions {
            wait: Duration::from_secs(1),
            ..ReplayOptions::default()
        };
        let s = replay::replay(&dlq, &queue, &opts, |_| {}).await.unwrap();
        assert_eq!((s.moved, s.failed), (1, 0));
        let (back, back_xray) = look(&rig, &rig.stack.queue_url).await;
        assert_eq!(TraceContext::from_attributes(&back), Some(edge.clone()));
        assert_eq!(back_xray, Some(edge.xray()));
        assert!(back["deadLetterReason"].contains("shout"), "{back:?}");
    }
}

/// The send function continues the invocation's X-Ray trace (the runtime's
/// `_X_AMZN_TRACE_ID`, also in the invocation context) when the frame has
/// no trace of its own.
#[cfg(feature = "lambda")]
#[tokio::test]
async fn the_send_function_continues_the_invocations_xray_trace() {
    let (_store, queue, _dlq, handlers) = embedded_edge().await;
    let mut frame: serde_json::Value =
        serde_json::from_str(&traced_frame("c1", "sendMessage")).unwrap();
    frame["headers"] = serde_json::Value::Null;
    let mut context = lambda_runtime::Context::default();
    context.xray_trace_id =
        Some("Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1".into());
    let event = lambda_runtime::LambdaEvent::new(serde_json::from_value(frame).unwrap(), context);
    let r = switchboard::lambda::edge(&handlers, HandlerKind::Send, event)
        .await
        .unwrap();
    assert_eq!(r.status_code, 200, "{r:?}");
    let got = queue.receive(peek()).await.unwrap();
    let t = TraceContext::from_attributes(&got[0].attributes).unwrap();
    assert_eq!(t.trace_id_hex(), "5759e988bd862e3fe1be46a994272793");
    assert_ne!(
        t.span_id, *b"\x53\x99\x5c\x3f\x42\xcd\x8a\xd8",
        "a span of its own"
    );
}
