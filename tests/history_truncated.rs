//! `history` with one oversized neighbour (issue 15, item 4): a message that
//! is delivered live but cannot fit in a 128 KiB history frame is left out,
//! the frame says `"truncated": true`, and smaller messages around it stay.
//! Before, the step dropped messages oldest first until the frame fit, so
//! one large message emptied the history. `switchboard dev` in-process on
//! the embedded store.

mod support;

use std::time::Duration;

use futures::SinkExt;
use serde_json::{Value, json};
use support::dev::Dev;
use support::ws::{Client, connect, next_json};
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

/// The next frame of `kind`, skipping others.
async fn next_of(c: &mut Client, kind: &str) -> Value {
    tokio::time::timeout(Duration::from_secs(15), async {
        loop {
            let f = next_json(c).await;
            if f["type"] == kind {
                return f;
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("no {kind} frame"))
}

/// Sends `data` and waits for it to come back (stored by then).
async fn say(c: &mut Client, data: Value) {
    send_fragmented(
        c,
        &json!({"action": "sendMessage", "data": data}).to_string(),
    )
    .await;
    let f = next_of(c, "message").await;
    assert_eq!(f["payload"], data);
}

/// The payloads of a history answer (texts, or the size of a long string),
/// and its `truncated` flag.
async fn history(c: &mut Client) -> (Vec<String>, bool) {
    c.send(Message::text(r#"{"action":"history","data":{}}"#))
        .await
        .unwrap();
    let f = next_of(c, "history").await;
    let items = f["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| match &m["payload"] {
            Value::String(s) => format!("{} bytes", s.len()),
            p => p["text"].as_str().unwrap_or("?").to_owned(),
        })
        .collect();
    (items, f["truncated"] == true)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_oversized_message_is_left_out_and_the_rest_stay() {
    let dev = Dev::in_memory().await;
    let mut c = connect(&dev.url("hist")).await;

    say(&mut c, json!({"text": "A-small"})).await;
    // Delivered live (its message frame fits), too large for a history frame.
    say(&mut c, json!("x".repeat(130_880))).await;
    assert_eq!(history(&mut c).await, (vec!["A-small".to_owned()], true));
    say(&mut c, json!({"text": "C-small"})).await;
    assert_eq!(
        history(&mut c).await,
        (vec!["A-small".to_owned(), "C-small".to_owned()], true)
    );

    dev.stop().await;
}
