//! The size boundary of a sent message (issue 15, item 3): every `data`
//! size from 130,800 to 131,072 bytes either arrives or is refused with
//! `payload_too_large` at once by the edge; nothing reaches the dead-letter
//! queue. Before, the edge accepted sizes whose message frame the worker
//! then could not post (130,914 to 131,040 bytes) and dead-lettered them.

mod support;

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use support::dev::Dev;
use support::process::metric;
use support::ws::{Client, connect, next_json};
use switchboard::handlers::{WebSocketEvent, envelope_for};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

/// Sends `text` in frames of at most 32 KiB (the gateway's frame limit).
async fn send_fragmented(c: &mut Client, text: &str) {
    let chunks: Vec<&[u8]> = text.as_bytes().chunks(32 * 1024).collect();
    for (i, chunk) in chunks.iter().enumerate() {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let frame = Frame::message(chunk.to_vec(), opcode, i + 1 == chunks.len());
        c.send(Message::Frame(frame)).await.expect("send frame");
    }
}

/// A `data` string whose JSON encoding is `size` bytes.
fn data_of(size: usize) -> String {
    "x".repeat(size - 2)
}

/// The handler's answer to a message event carrying `body` (for sizes whose
/// whole client message the gateway itself would refuse with 1009).
fn edge_answer(body: &str) -> Option<(u16, Value)> {
    let mut event: WebSocketEvent =
        serde_json::from_str(include_str!("fixtures/apigw-ws-message.json")).unwrap();
    event.body = Some(body.to_owned());
    match envelope_for(&event, "room", Some("u1".into()), None) {
        Ok(_) => None,
        Err(r) => Some((
            r.status_code,
            serde_json::from_str(r.body.as_deref().unwrap()).unwrap(),
        )),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_size_near_the_limit_is_delivered_or_refused_at_once() {
    let dev = Dev::in_memory().await;
    let addr = dev.addr;
    let mut c = connect(&dev.url("boundary")).await;

    let (mut delivered, mut refused, mut at_edge) = (0, 0, 0);
    for size in 130_800..=131_072usize {
        let message = json!({"action": "sendMessage", "data": data_of(size)}).to_string();
        if message.len() > 128 * 1024 {
            // The gateway would close the connection (1009): ask the edge
            // handler directly, which must refuse it, not let it through.
            let (status, frame) = edge_answer(&message)
                .unwrap_or_else(|| panic!("data of {size} bytes passed the edge"));
            assert_eq!(
                (status, frame["code"].as_str()),
                (413, Some("payload_too_large"))
            );
            at_edge += 1;
            continue;
        }
        send_fragmented(&mut c, &message).await;
        let frame = tokio::time::timeout(Duration::from_secs(10), next_json(&mut c))
            .await
            .unwrap_or_else(|_| panic!("no answer for data of {size} bytes"));
        match frame["type"].as_str() {
            Some("message") => {
                assert_eq!(frame["payload"].as_str().map(str::len), Some(size - 2));
                delivered += 1;
            }
            Some("error") if frame["code"] == "payload_too_large" => refused += 1,
            _ => panic!("data of {size} bytes: {frame}"),
        }
    }
    eprintln!("delivered {delivered}, refused {refused}, refused at the edge only {at_edge}");
    assert!(delivered > 0 && refused > 0);

    // Nothing was dead-lettered, and the queue is drained.
    let dead = metric(addr, "/metrics", "switchboard_dead_letters_total").await;
    assert_eq!(dead, 0.0);
    dev.stop().await;
}
