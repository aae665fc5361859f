//! API Gateway's connection limits and close behaviour on the local gateway:
//! text only (1003), frame and message sizes (1009), ping/pong, idle timeout
//! and maximum duration (1001), and `$disconnect` after every kind of close.

mod support;

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use support::gateway::{disconnect_of, reporting_config};
use support::recorder::Recorder;
use support::ws::{Client, TestGateway, connect, next_close, next_text, send, whoami};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::Frame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};

/// A `$default` route echoing the body (`echo <body>`), beside whoami and the
/// `$disconnect` report of [`reporting_config`].
const ECHO: &str = r#"
[[routes]]
key = "$default"
integration = { type = "mock", response_template = "echo $input.body" }
route_response_selection_expression = "$default"
"#;

/// How long a test waits for a `$disconnect` report.
const REPORT: Duration = Duration::from_secs(10);

/// Sends `text` as `parts` fragments.
async fn send_fragmented(c: &mut Client, text: &str, parts: usize) {
    let bytes = text.as_bytes();
    let size = bytes.len().div_ceil(parts);
    let chunks: Vec<&[u8]> = bytes.chunks(size).collect();
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

fn code(close: Option<CloseFrame>) -> u16 {
    u16::from(close.expect("a close frame with a code").code)
}

#[tokio::test]
async fn default_limits_are_api_gateways() {
    let backend = Recorder::start().await;
    let gw = TestGateway::start(reporting_config(&backend, ECHO), None).await;

    // 128 KiB in 32 KiB frames is fine (the echo prefix makes the answer longer).
    let mut c = connect(&gw.ws_url("dev")).await;
    let message = "m".repeat(128 * 1024);
    send_fragmented(&mut c, &message, 4).await;
    assert_eq!(next_text(&mut c).await.len(), "echo ".len() + message.len());

    // One byte more closes with 1009.
    let id = whoami(&mut c).await;
    send_fragmented(&mut c, &"m".repeat(128 * 1024 + 1), 5).await;
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);
    assert_eq!(
        disconnect_of(&backend, &id, REPORT).await,
        (1009, "Message too big".into())
    );

    // A single frame over 32 KiB closes with 1009 too.
    let mut c = connect(&gw.ws_url("dev")).await;
    send(&mut c, "f".repeat(32 * 1024 + 1)).await;
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);

    // Exactly 32 KiB in one frame is fine.
    let mut c = connect(&gw.ws_url("dev")).await;
    send(&mut c, "f".repeat(32 * 1024)).await;
    assert_eq!(next_text(&mut c).await.len(), "echo ".len() + 32 * 1024);
    gw.stop().await;
}

#[tokio::test]
async fn binary_frames_close_with_1003_and_pings_are_answered() {
    let backend = Recorder::start().await;
    let gw = TestGateway::start(reporting_config(&backend, ECHO), None).await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;

    c.send(Message::Ping(b"are you there".to_vec().into()))
        .await
        .unwrap();
    let pong = tokio::time::timeout(Duration::from_secs(5), c.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(pong, Message::Pong(b"are you there".to_vec().into()));

    c.send(Message::Binary(vec![1, 2, 3].into())).await.unwrap();
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1003);
    assert_eq!(disconnect_of(&backend, &id, REPORT).await.0, 1003);
    gw.stop().await;
}

#[tokio::test]
async fn configured_limits_apply() {
    let backend = Recorder::start().await;
    let mut cfg = reporting_config(&backend, ECHO);
    cfg.limits.message_bytes = 1000;
    cfg.limits.frame_bytes = 256;
    let gw = TestGateway::start(cfg, None).await;

    let mut c = connect(&gw.ws_url("dev")).await;
    send_fragmented(&mut c, &"a".repeat(1000), 4).await;
    assert_eq!(next_text(&mut c).await.len(), 1005);
    send_fragmented(&mut c, &"a".repeat(1001), 4).await;
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);

    let mut c = connect(&gw.ws_url("dev")).await;
    send(&mut c, "b".repeat(257)).await;
    assert_eq!(code(next_close(&mut c, Duration::from_secs(5)).await), 1009);
    gw.stop().await;
}

#[tokio::test]
async fn idle_connections_close_with_1001_and_activity_keeps_them_open() {
    let backend = Recorder::start().await;
    let mut cfg = reporting_config(&backend, ECHO);
    cfg.limits.idle_timeout = Duration::from_millis(400);
    let gw = TestGateway::start(cfg, None).await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    // Active for 1.5 s, three idle timeouts long: every request is answered.
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert_eq!(whoami(&mut c).await, id);
    }
    let quiet_since = tokio::time::Instant::now();
    let close = next_close(&mut c, Duration::from_secs(5)).await.unwrap();
    assert!(
        quiet_since.elapsed() >= Duration::from_millis(250),
        "closed too early"
    );
    assert_eq!(u16::from(close.code), 1001);
    assert_eq!(close.reason.as_str(), "Going away");
    assert_eq!(
        disconnect_of(&backend, &id, REPORT).await,
        (1001, "Going away".into())
    );
    gw.stop().await;
}

#[tokio::test]
async fn connections_close_at_the_maximum_duration_even_when_active() {
    let backend = Recorder::start().await;
    let mut cfg = reporting_config(&backend, ECHO);
    cfg.limits.max_connection = Duration::from_millis(600);
    let gw = TestGateway::start(cfg, None).await;
    let opened = tokio::time::Instant::now();
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    let closed = loop {
        send(&mut c, r#"{"action":"whoami"}"#).await;
        match tokio::time::timeout(Duration::from_secs(5), c.next())
            .await
            .unwrap()
        {
            Some(Ok(Message::Text(_))) => {
                assert!(opened.elapsed() < Duration::from_secs(5), "never closed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Some(Ok(Message::Close(f))) => break f,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert!(opened.elapsed() >= Duration::from_millis(550));
    assert_eq!(code(closed), 1001);
    assert_eq!(disconnect_of(&backend, &id, REPORT).await.0, 1001);
    gw.stop().await;
}

#[tokio::test]
async fn disconnect_runs_after_every_kind_of_close() {
    let backend = Recorder::start().await;
    let gw = TestGateway::start(reporting_config(&backend, ECHO), None).await;

    // Client close with a code and reason.
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    c.close(Some(CloseFrame {
        code: CloseCode::from(4000),
        reason: "bye".into(),
    }))
    .await
    .unwrap();
    assert_eq!(
        disconnect_of(&backend, &id, REPORT).await,
        (4000, "bye".into())
    );

    // Client close without a status.
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    c.close(None).await.unwrap();
    assert_eq!(
        disconnect_of(&backend, &id, REPORT).await,
        (1005, "Client-side close frame status not set".into())
    );

    // The client vanishes without a close frame.
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    drop(c);
    assert_eq!(disconnect_of(&backend, &id, REPORT).await.0, 1006);

    // The gateway shuts down: the client gets 1001, $disconnect has run when
    // `run` returns.
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    let reader = tokio::spawn(async move { next_close(&mut c, Duration::from_secs(10)).await });
    gw.stop().await;
    assert!(
        backend
            .requests_to("/disconnect")
            .iter()
            .any(|r| r.body.contains(&id) && r.body.contains("1001")),
        "$disconnect ran before shutdown finished"
    );
    assert_eq!(code(reader.await.unwrap()), 1001);
}
