//! The whole path on moto: WebSocket clients → local gateway → builtin handlers
//! → SQS FIFO + DynamoDB → the real worker → the gateway's own @connections API
//! (through `aws-sdk-apigatewaymanagement`) → the clients.
#![cfg(feature = "aws-tests")]

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::aws::{self, spawn_worker, worker_config};
use support::ws::{Client, connect, send};
use switchboard::backend::Connections;
use switchboard::gateway::GatewayConfig;

/// The worker long-polls moto (slow under load): allow for it.
const DELIVERY: Duration = Duration::from_secs(60);

async fn next_frame(c: &mut Client) -> Value {
    use futures::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(DELIVERY, c.next()).await {
            Err(_) => panic!("no frame within {DELIVERY:?}"),
            Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(&t).unwrap(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected a text frame, got {other:?}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn members_of_a_session_receive_its_messages_and_no_one_else_does() {
    let backend = aws::backend().await;
    let stack = aws::migrated_stack(&backend, "e2e").await;
    let conns: Arc<dyn Connections> =
        Arc::new(backend.connections(&stack.names.connections_table, None));
    let gw = aws::gateway(&backend, &stack, GatewayConfig::default()).await;
    let worker = spawn_worker(&backend, worker_config(&stack, &gw.endpoint("dev"), &[])).await;

    let room_a = support::unique("room-a");
    let room_b = support::unique("room-b");
    let mut a1 = connect(&gw.ws_url(&format!("dev?session={room_a}"))).await;
    let mut a2 = connect(&gw.ws_url(&format!("dev?session={room_a}"))).await;
    let mut b1 = connect(&gw.ws_url(&format!("dev?session={room_b}"))).await;
    // $connect finished before the handshake did: both records are there.
    let members = conns.by_session(&room_a, None).await.unwrap().items;
    assert_eq!(members.len(), 2);

    send(&mut a1, r#"{"action":"sendMessage","data":{"text":"hi"}}"#).await;
    let got1 = next_frame(&mut a1).await;
    let got2 = next_frame(&mut a2).await;
    assert_eq!(got1, got2, "both members get the same frame");
    assert_eq!(got1["type"], "message");
    assert_eq!(got1["sessionId"], room_a.as_str());
    assert_eq!(got1["action"], "sendMessage");
    assert_eq!(got1["payload"], json!({"text": "hi"}));
    assert_eq!(
        got1["id"].as_str().unwrap().len(),
        16,
        "the gateway's requestId"
    );
    let sender = got1["from"]["connectionId"].as_str().unwrap();
    assert!(members.iter().any(|m| m.connection_id == sender));

    // b1 is in another session: the first frame it gets is its own message.
    send(
        &mut b1,
        r#"{"action":"sendMessage","data":{"text":"only b"}}"#,
    )
    .await;
    let got_b = next_frame(&mut b1).await;
    assert_eq!(got_b["sessionId"], room_b.as_str());
    assert_eq!(got_b["payload"], json!({"text": "only b"}));

    // An unknown action is answered by $default at once, by the gateway.
    send(&mut a2, r#"{"action":"shout"}"#).await;
    let err = next_frame(&mut a2).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["code"], "unknown_route");
    assert_eq!(
        err["actions"],
        json!(["direct", "history", "presence", "resume", "sendMessage"])
    );

    // history goes through the queue and the worker to the sender only.
    send(&mut a2, r#"{"action":"history"}"#).await;
    let history = next_frame(&mut a2).await;
    assert_eq!(history["type"], "history");
    assert_eq!(history["messages"][0]["payload"], json!({"text": "hi"}));

    // Closing removes the connection record ($disconnect).
    a2.close(None).await.unwrap();
    support::eventually(Duration::from_secs(20), "a2's record deleted", || async {
        let left = conns.by_session(&room_a, None).await.unwrap().items;
        (left.len() == 1).then_some(())
    })
    .await;

    worker.stop().await;
    gw.stop().await;
    // Shutdown ran $disconnect for the rest.
    for room in [&room_a, &room_b] {
        assert!(
            conns.by_session(room, None).await.unwrap().items.is_empty(),
            "{room}"
        );
    }
}
