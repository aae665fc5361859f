//! The edge handlers fed the real-shape proxy event fixtures, against the AWS
//! backend on moto: `$connect` stores the connection with its TTL, custom
//! routes put envelope v1 on the FIFO queue, `$disconnect` deletes.
#![cfg(feature = "aws-tests")]

mod support;

use std::sync::Arc;

use serde_json::{Value, json};
use support::aws::{self, Stack, connection_item, peek_all};
use switchboard::backend::aws::AwsBackend;
use switchboard::backend::{Connections, Queue};
use switchboard::envelope::Envelope;
use switchboard::handlers::{
    HandlerError, HandlerKind, HandlerSettings, Handlers, ProxyResponse, WebSocketEvent,
};

use support::fixtures::{
    CONNECT as CONNECT_FIXTURE, DEFAULT, DISCONNECT, MESSAGE as MESSAGE_FIXTURE,
};

/// A fixture with its times moved to now, as the JSON text a function gets.
fn fresh(fixture: &str) -> String {
    support::fixtures::fresh(fixture).to_string()
}

async fn setup(prefix: &str) -> (AwsBackend, Stack, Handlers) {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, prefix).await;
    let handlers = Handlers::new(
        Arc::new(backend.queue(&stack.queue_url)),
        Arc::new(backend.connections(&stack.names.connections_table, None)),
        HandlerSettings::default(),
    );
    (backend, stack, handlers)
}

fn body(r: &ProxyResponse) -> Value {
    serde_json::from_str(r.body.as_deref().expect("a body")).expect("JSON body")
}

#[tokio::test]
async fn connect_stores_the_connection_with_its_ttl_and_disconnect_deletes_it() {
    let connect = fresh(CONNECT_FIXTURE);
    let (backend, stack, handlers) = setup("hconn").await;
    let event: WebSocketEvent = serde_json::from_str(&connect).unwrap();
    let ctx = &event.request_context;

    let r = handlers
        .handle_json(HandlerKind::Connect, &connect)
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
    let item = connection_item(&backend, &stack, &ctx.connection_id)
        .await
        .expect("stored");
    let s = |k: &str| item[k].as_s().unwrap().clone();
    let n = |k: &str| item[k].as_n().unwrap().parse::<i64>().unwrap();
    assert_eq!(s("sessionId"), "room1");
    assert_eq!(n("connectedAt"), ctx.connected_at);
    // Connect time + 2 h (API Gateway's maximum) + 10 min slack, epoch seconds.
    assert_eq!(n("expiresAt"), ctx.connected_at / 1000 + 7200 + 600);
    assert_eq!(s("domainName"), ctx.domain_name);
    assert_eq!(s("stage"), "dev");
    assert_eq!(s("sourceIp"), "203.0.113.10");
    assert!(
        !item.contains_key("userId"),
        "anonymous connections have no userId"
    );
    let ttl = backend
        .dynamodb()
        .describe_time_to_live()
        .table_name(&stack.names.connections_table)
        .send()
        .await
        .unwrap();
    assert_eq!(
        ttl.time_to_live_description().unwrap().attribute_name(),
        Some("expiresAt")
    );
    // Visible through the GSI the worker fans out with.
    let conns = backend.connections(&stack.names.connections_table, None);
    let page = conns.by_session("room1", None).await.unwrap();
    assert_eq!(page.items.len(), 1);

    let r = handlers
        .handle_json(HandlerKind::Disconnect, DISCONNECT)
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
    assert!(item_absent(&backend, &stack, &ctx.connection_id).await);
    // Idempotent: a second $disconnect (a retry) succeeds too.
    let r = handlers
        .handle_json(HandlerKind::Disconnect, DISCONNECT)
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
}

async fn item_absent(backend: &AwsBackend, stack: &Stack, id: &str) -> bool {
    connection_item(backend, stack, id).await.is_none()
}

#[tokio::test]
async fn connect_without_a_session_is_refused_and_stores_nothing() {
    let connect = fresh(CONNECT_FIXTURE);
    let (backend, stack, handlers) = setup("hnosess").await;
    let mut event: Value = serde_json::from_str(&connect).unwrap();
    event
        .as_object_mut()
        .unwrap()
        .remove("queryStringParameters");
    event
        .as_object_mut()
        .unwrap()
        .remove("multiValueQueryStringParameters");
    let r = handlers
        .handle_json(HandlerKind::Connect, &event.to_string())
        .await
        .unwrap();
    assert_eq!(r.status_code, 400);
    assert_eq!(body(&r)["code"], "missing_session");
    let id = event["requestContext"]["connectionId"].as_str().unwrap();
    assert!(item_absent(&backend, &stack, id).await);
}

#[tokio::test]
async fn send_puts_envelope_v1_on_the_fifo_queue() {
    let connect = fresh(CONNECT_FIXTURE);
    let message = fresh(MESSAGE_FIXTURE);
    let (backend, stack, handlers) = setup("hsend").await;
    handlers
        .handle_json(HandlerKind::Connect, &connect)
        .await
        .unwrap();
    let event: WebSocketEvent = serde_json::from_str(&message).unwrap();
    let ctx = &event.request_context;

    let r = handlers
        .handle_json(HandlerKind::Send, &message)
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
    assert_eq!(r.body, None, "success sends nothing back");
    // A retried invocation (same requestId) is deduplicated by SQS.
    handlers
        .handle_json(HandlerKind::Send, &message)
        .await
        .unwrap();

    let messages = peek_all(&backend, &stack.queue_url).await;
    assert_eq!(messages.len(), 1, "one message for one requestId");
    let m = &messages[0];
    let attr = |a| m.attributes().unwrap()[&a].clone();
    use aws_sdk_sqs::types::MessageSystemAttributeName as A;
    assert_eq!(attr(A::MessageGroupId), "room1");
    assert_eq!(attr(A::MessageDeduplicationId), ctx.request_id);
    let env = Envelope::parse(m.body().unwrap()).expect("the worker accepts it");
    assert_eq!(
        serde_json::to_value(&env).unwrap(),
        json!({
            "v": 1,
            "id": ctx.request_id,
            "action": "sendMessage",
            "sessionId": "room1",
            "sender": { "connectionId": ctx.connection_id },
            "callback": { "domainName": ctx.domain_name, "stage": "dev" },
            "receivedAt": ctx.request_time_epoch,
            "payload": { "text": "hi" },
        })
    );
}

#[tokio::test]
async fn the_authorizer_context_supplies_session_and_user() {
    let message = fresh(MESSAGE_FIXTURE);
    let (backend, stack, handlers) = setup("hauth").await;
    // No connection record at all: the authorizer's context is enough.
    let mut event: Value = serde_json::from_str(&message).unwrap();
    event["requestContext"]["authorizer"] =
        json!({"principalId": "alice", "userId": "alice", "sessionId": "vip-room"});
    let r = handlers
        .handle_json(HandlerKind::Send, &event.to_string())
        .await
        .unwrap();
    assert_eq!(r.status_code, 200);
    let messages = peek_all(&backend, &stack.queue_url).await;
    let env = Envelope::parse(messages[0].body().unwrap()).unwrap();
    assert_eq!(env.session_id, "vip-room");
    assert_eq!(env.sender.user_id.as_deref(), Some("alice"));
}

#[tokio::test]
async fn refused_messages_enqueue_nothing() {
    let connect = fresh(CONNECT_FIXTURE);
    let message = fresh(MESSAGE_FIXTURE);
    let (backend, stack, handlers) = setup("hrefuse").await;
    // Unknown connection: nothing stored for it.
    let r = handlers
        .handle_json(HandlerKind::Send, &message)
        .await
        .unwrap();
    assert_eq!(r.status_code, 403);
    assert_eq!(body(&r)["code"], "unknown_connection");

    // Payload over 128 KiB.
    handlers
        .handle_json(HandlerKind::Connect, &connect)
        .await
        .unwrap();
    let mut event: Value = serde_json::from_str(&message).unwrap();
    event["body"] =
        json!(json!({"action": "sendMessage", "data": "x".repeat(128 * 1024)}).to_string());
    let r = handlers
        .handle_json(HandlerKind::Send, &event.to_string())
        .await
        .unwrap();
    assert_eq!(r.status_code, 413);
    assert_eq!(body(&r)["code"], "payload_too_large");
    assert!(peek_all(&backend, &stack.queue_url).await.is_empty());
}

#[tokio::test]
async fn default_lists_the_known_actions() {
    let (_backend, _stack, handlers) = setup("hdefault").await;
    let r = handlers
        .handle_json(HandlerKind::Default, DEFAULT)
        .await
        .unwrap();
    let frame = body(&r);
    assert_eq!(frame["type"], "error");
    assert_eq!(frame["code"], "unknown_route");
    assert_eq!(frame["id"], "CjQoAFlLDoEFd9A=");
    assert_eq!(
        frame["actions"],
        json!(["sendMessage", "history", "direct", "resume", "presence"])
    );
    assert!(
        frame["message"]
            .as_str()
            .unwrap()
            .contains("sendMessage, history, direct")
    );
}

#[tokio::test]
async fn backend_failures_are_errors_not_refusals() {
    let connect = fresh(CONNECT_FIXTURE);
    let message = fresh(MESSAGE_FIXTURE);
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "hfail").await;
    let missing_queue = format!("{}-missing.fifo", stack.queue_url.trim_end_matches(".fifo"));
    let handlers = Handlers::new(
        Arc::new(backend.queue(missing_queue)) as Arc<dyn Queue>,
        Arc::new(backend.connections(&stack.names.connections_table, None)) as Arc<dyn Connections>,
        HandlerSettings::default(),
    );
    handlers
        .handle_json(HandlerKind::Connect, &connect)
        .await
        .unwrap();
    let err = handlers
        .handle_json(HandlerKind::Send, &message)
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::Backend(_)), "{err}");
    let err = handlers
        .handle_json(HandlerKind::Send, "{\"not\": \"an event\"}")
        .await
        .unwrap_err();
    assert!(matches!(err, HandlerError::BadEvent(_)), "{err}");
}
