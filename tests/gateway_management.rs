//! The gateway's @connections API through the real `aws-sdk-apigatewaymanagement`
//! client (SigV4-signed): POST, GET, DELETE and the typed errors the worker
//! relies on (GoneException, PayloadTooLargeException, LimitExceededException,
//! ForbiddenException).

mod support;

use std::time::Duration;

use aws_sdk_apigatewaymanagement::primitives::Blob;
use futures::StreamExt;
use support::gateway::{disconnect_of, reporting_config};
use support::recorder::Recorder;
use support::ws::{TestGateway, connect, next_close, next_text, whoami};
use tokio_tungstenite::tungstenite::Message;

const MAX: usize = 128 * 1024;

fn data(bytes: impl Into<Vec<u8>>) -> Blob {
    Blob::new(bytes.into())
}

#[tokio::test]
async fn post_get_delete_through_the_sdk() {
    let backend = Recorder::start().await;
    let gw = TestGateway::start(reporting_config(&backend, ""), None).await;
    let before = std::time::SystemTime::now();
    let mut c = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = gw.ws_url("dev").into_client_request().unwrap();
        req.headers_mut()
            .insert("User-Agent", "sdk-test/1.0".parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap().0
    };
    let id = whoami(&mut c).await;
    let mgmt = gw.management("dev");

    // POST: the raw body arrives as one text frame, byte for byte.
    let body = r#"{"type":"message","payload":{"text":"hi"}}"#;
    mgmt.post_to_connection()
        .connection_id(&id)
        .data(data(body))
        .send()
        .await
        .expect("post");
    assert_eq!(next_text(&mut c).await, body);
    // Exactly 128 KiB is allowed.
    let at_limit = "x".repeat(MAX);
    mgmt.post_to_connection()
        .connection_id(&id)
        .data(data(at_limit.clone()))
        .send()
        .await
        .expect("post of 128 KiB");
    assert_eq!(next_text(&mut c).await.len(), MAX);

    // GET: connectedAt, identity, lastActiveAt as the SDK parses them.
    let info = mgmt
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("get");
    let connected = info.connected_at().expect("connectedAt");
    let since = connected.secs()
        - before
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
    assert!(
        (0..=60).contains(&since),
        "connectedAt {connected} is now-ish"
    );
    assert!(info.last_active_at().expect("lastActiveAt") >= connected);
    let identity = info.identity().expect("identity");
    assert_eq!(identity.source_ip(), Some("127.0.0.1"));
    assert_eq!(identity.user_agent(), Some("sdk-test/1.0"));

    // DELETE: 204, the client gets 1000, $disconnect runs with it.
    mgmt.delete_connection()
        .connection_id(&id)
        .send()
        .await
        .expect("delete");
    let close = next_close(&mut c, Duration::from_secs(5))
        .await
        .expect("close frame");
    assert_eq!(u16::from(close.code), 1000);
    assert_eq!(close.reason.as_str(), "Connection Closed Normally");
    assert_eq!(
        disconnect_of(&backend, &id, Duration::from_secs(5)).await,
        (1000, "Connection Closed Normally".into())
    );
    assert_eq!(
        backend.requests_to("/disconnect").len(),
        1,
        "one report, for this connection"
    );

    // Gone now, for every operation.
    let err = mgmt
        .post_to_connection()
        .connection_id(&id)
        .data(data("late"))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_gone_exception(),
        "{err:?}"
    );
    let err = mgmt
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_gone_exception(),
        "{err:?}"
    );
    let err = mgmt
        .delete_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_gone_exception(),
        "{err:?}"
    );

    // Every call was counted, by operation and outcome.
    let metrics = gw.gateway.metrics().render();
    for sample in [
        r#"switchboard_gateway_connections_total{outcome="accepted"} 1"#,
        "switchboard_gateway_connections_open 0",
        r#"switchboard_gateway_closes_total{reason="deleted"} 1"#,
        r#"switchboard_gateway_management_requests_total{op="post",outcome="ok"} 2"#,
        r#"switchboard_gateway_management_requests_total{op="post",outcome="gone"} 1"#,
        r#"switchboard_gateway_management_requests_total{op="get",outcome="ok"} 1"#,
        r#"switchboard_gateway_management_requests_total{op="delete",outcome="ok"} 1"#,
        r#"switchboard_gateway_messages_total{outcome="routed"} 1"#,
    ] {
        assert!(metrics.contains(sample), "missing {sample} in\n{metrics}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn typed_errors_for_unknown_ids_and_oversized_payloads() {
    let backend = Recorder::start().await;
    let gw = TestGateway::start(reporting_config(&backend, ""), None).await;
    let mgmt = gw.management("dev");
    let err = mgmt
        .post_to_connection()
        .connection_id("L0SM9cOFvHcCIhw=")
        .data(data("hello"))
        .send()
        .await
        .unwrap_err();
    let service = err.as_service_error().expect("a service error");
    assert!(service.is_gone_exception(), "{err:?}");
    assert_eq!(err.raw_response().unwrap().status().as_u16(), 410);

    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    let err = mgmt
        .post_to_connection()
        .connection_id(&id)
        .data(data(vec![b'x'; MAX + 1]))
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error()
            .unwrap()
            .is_payload_too_large_exception(),
        "{err:?}"
    );
    // Nothing was delivered; the connection is still fine.
    assert_eq!(whoami(&mut c).await, id);

    // Another stage's endpoint does not exist.
    let err = gw
        .management("prod")
        .get_connection()
        .connection_id(&id)
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_forbidden_exception(),
        "{err:?}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_gets_429_and_does_not_slow_others() {
    let backend = Recorder::start().await;
    let mut cfg = reporting_config(&backend, "");
    cfg.limits.outbound_buffer_frames = 4;
    let gw = TestGateway::start(cfg, None).await;
    let mgmt = gw.management("dev");
    let mut stalled = connect(&gw.ws_url("dev")).await;
    let stalled_id = whoami(&mut stalled).await;
    let mut healthy = connect(&gw.ws_url("dev")).await;
    let healthy_id = whoami(&mut healthy).await;

    // `stalled` never reads again: once the socket buffers are full, its
    // outbound buffer fills and posts are refused with 429.
    let frame = "y".repeat(MAX);
    let mut throttled = false;
    for _ in 0..2000 {
        match mgmt
            .post_to_connection()
            .connection_id(&stalled_id)
            .data(data(frame.clone()))
            .send()
            .await
        {
            Ok(_) => continue,
            Err(e) => {
                assert!(
                    e.as_service_error().unwrap().is_limit_exceeded_exception(),
                    "{e:?}"
                );
                assert_eq!(e.raw_response().unwrap().status().as_u16(), 429);
                throttled = true;
                break;
            }
        }
    }
    assert!(
        throttled,
        "posts to a client that does not read were never refused"
    );

    // Meanwhile the other connection is served at once.
    mgmt.post_to_connection()
        .connection_id(&healthy_id)
        .data(data("still here"))
        .send()
        .await
        .expect("post to a healthy client");
    assert_eq!(next_text(&mut healthy).await, "still here");

    // The stalled client, reading again, gets what was accepted, in order.
    let first = tokio::time::timeout(Duration::from_secs(10), stalled.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(matches!(first, Message::Text(t) if t.len() == MAX));
    gw.stop().await;
}
