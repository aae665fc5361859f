//! Frame and message size limits, binary frames and the idle timeout on a
//! gateway whose `$connect` writes connection records: each abuse closes the
//! connection with API Gateway's code, and `$disconnect` removes the record
//! (no connection is left behind for fan-out to find).

mod support;

use std::time::Duration;

use futures::SinkExt;
use support::embedded::TempDir;
use support::secure::{Secured, accepted, config_text, request};
use support::unique;
use support::ws::{Client, next_close, next_text, send, whoami};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{Data, OpCode};

async fn start(limits: &str) -> Secured {
    Secured::start(
        &config_text("", "", &format!("[limits]\n{limits}")),
        TempDir::new("sb-sec-limits"),
        &[],
    )
    .await
}

async fn record_gone(s: &Secured, session: &str) {
    support::eventually(
        Duration::from_secs(10),
        "the record to be deleted",
        || async { s.records(session).await.is_empty().then_some(()) },
    )
    .await;
}

/// A connected client and its session, with its record checked.
async fn connected(s: &Secured) -> (Client, String) {
    let room = unique("room");
    let c = accepted(request(&s.url("dev", &room, ""), &[])).await;
    assert_eq!(s.records(&room).await.len(), 1);
    (c, room)
}

fn code(close: Option<tokio_tungstenite::tungstenite::protocol::CloseFrame>) -> u16 {
    u16::from(close.expect("a close frame").code)
}

#[tokio::test]
async fn oversized_frames_and_messages_close_with_1009() {
    let s = start("message_bytes = 4096\nframe_bytes = 1024\n").await;

    let (mut c, room) = connected(&s).await;
    send(&mut c, "x".repeat(1025)).await;
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);
    record_gone(&s, &room).await;

    // Four frames of 1024 bytes: 4096 is fine, one more byte is not.
    let (mut c, room) = connected(&s).await;
    let id = whoami(&mut c).await;
    for (i, last) in [(0, false), (1, false), (2, false), (3, true)] {
        let opcode = if i == 0 {
            OpCode::Data(Data::Text)
        } else {
            OpCode::Data(Data::Continue)
        };
        let mut chunk = vec![b'y'; 1024];
        if last {
            chunk.push(b'y');
        }
        let frame = Frame::message(chunk, opcode, last);
        c.send(Message::Frame(frame)).await.unwrap();
    }
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);
    record_gone(&s, &room).await;
    assert_eq!(id.len(), 16);
    s.gw.stop().await;
}

#[tokio::test]
async fn binary_frames_close_with_1003() {
    let s = start("").await;
    let (mut c, room) = connected(&s).await;
    c.send(Message::Binary(vec![0xde, 0xad, 0xbe, 0xef].into()))
        .await
        .unwrap();
    let close = next_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert_eq!(u16::from(close.code), 1003);
    assert_eq!(close.reason.as_str(), "Binary frames are not supported");
    record_gone(&s, &room).await;
    s.gw.stop().await;
}

#[tokio::test]
async fn idle_connections_close_with_1001_and_their_record_goes() {
    let s = start("idle_timeout_secs = 1\n").await;
    let (mut c, room) = connected(&s).await;
    // Activity keeps it open...
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        send(&mut c, r#"{"action":"ping"}"#).await;
        assert_eq!(next_text(&mut c).await, "pong");
    }
    // ...silence closes it.
    let quiet = tokio::time::Instant::now();
    let close = next_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(
        quiet.elapsed() >= Duration::from_millis(800),
        "closed too early"
    );
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "Going away");
    record_gone(&s, &room).await;
    s.gw.stop().await;
}
