//! Smaller deviations an outside probe found (issue 15, item 5): frames that
//! are not JSON, malformed `Sec-WebSocket-Key`s, close codes a client may
//! not send.

mod support;

use std::time::Duration;

use futures::SinkExt;
use support::embedded::TempDir;
use support::secure::{Secured, accepted, config_text, request};
use support::unique;
use support::ws::{next_close, next_json, send};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const DEFAULT_ROUTE: &str = r#"
[[routes]]
key = "$default"
integration = { type = "builtin", handler = "default" }
route_response_selection_expression = "$default"
"#;

async fn start() -> Secured {
    Secured::start(
        &config_text("", "", DEFAULT_ROUTE),
        TempDir::new("sb-edge-cases"),
        &[],
    )
    .await
}

#[tokio::test]
async fn frames_that_are_not_json_are_told_so() {
    let s = start().await;
    let mut c = accepted(request(&s.url("dev", &unique("room"), ""), &[])).await;
    let deep = "[".repeat(200) + &"]".repeat(200);
    for frame in [
        "1e400",
        r#"{"action":"x","data":"\ud800"}"#,
        deep.as_str(),
        "{",
    ] {
        send(&mut c, frame).await;
        let answer = next_json(&mut c).await;
        assert_eq!(answer["code"], "unknown_route", "{frame}: {answer}");
        let message = answer["message"].as_str().unwrap();
        assert!(
            message.starts_with("the frame is not valid JSON ("),
            "{frame}: {message}"
        );
    }
    // Valid JSON without a route keeps its message.
    send(&mut c, r#"{"action":"nope"}"#).await;
    let answer = next_json(&mut c).await;
    assert!(
        answer["message"]
            .as_str()
            .unwrap()
            .starts_with("no route for this frame"),
        "{answer}"
    );
}

/// A raw handshake with `key`; the status line's code.
async fn handshake_status(addr: std::net::SocketAddr, key: &str) -> u16 {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(
        format!(
            "GET /dev?session=r1 HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {key}\r\n\r\n"
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 12];
    s.read_exact(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[9..12]).parse().unwrap()
}

#[tokio::test]
async fn a_malformed_websocket_key_is_a_bad_request() {
    let s = start().await;
    let addr = s.gw.addr;
    for key in [
        "abc",
        "not base64!",
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "AAAAAAAAAAAAAAAAAAAAAA==",
    ] {
        let want = if key == "AAAAAAAAAAAAAAAAAAAAAA==" {
            101
        } else {
            400
        };
        assert_eq!(handshake_status(addr, key).await, want, "key {key}");
    }
}

#[tokio::test]
async fn close_codes_a_client_may_not_send_are_protocol_errors() {
    let s = start().await;
    for code in [999u16, 1005] {
        let mut c = accepted(request(&s.url("dev", &unique("room"), ""), &[])).await;
        c.send(Message::Close(Some(CloseFrame {
            code: CloseCode::from(code),
            reason: "".into(),
        })))
        .await
        .unwrap();
        let answer = next_close(&mut c, Duration::from_secs(10))
            .await
            .expect("a close answer");
        assert_eq!(u16::from(answer.code), 1002, "after {code}");
        assert_eq!(answer.reason.as_str(), "Protocol violation");
    }
    support::eventually(Duration::from_secs(10), "both closes counted", || async {
        (s.metric("switchboard_gateway_closes_total{reason=\"protocol\"}") == 2).then_some(())
    })
    .await;
    assert_eq!(
        s.metric("switchboard_gateway_closes_total{reason=\"client\"}"),
        0
    );
}
