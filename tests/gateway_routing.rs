//! Route selection, route responses, error frames and the `$connect` handshake
//! of the local gateway, through real WebSocket clients and real HTTP backends.

mod support;

use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};
use support::gateway::WHOAMI_ROUTE as WHOAMI;
use support::recorder::{Recorder, Reply};
use support::ws::{TestGateway, connect, next_json, next_text, refused, send, whoami};
use switchboard::gateway::GatewayConfig;
use tokio::sync::Semaphore;

async fn gateway(toml: &str) -> TestGateway {
    let config = GatewayConfig::parse(toml, "test config").expect("valid test config");
    TestGateway::start(config, None).await
}

#[tokio::test]
async fn nested_paths_select_routes_and_everything_else_goes_to_default() {
    let gw = gateway(
        r#"
[api]
route_selection_expression = "$request.body.meta.kind"
[[routes]]
key = "chat"
integration = { type = "mock", response_template = "chat got $input.body" }
route_response_selection_expression = "$default"
[[routes]]
key = "$default"
integration = { type = "mock", response_template = "default for $context.routeKey" }
route_response_selection_expression = "$default"
"#,
    )
    .await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let cases = [
        (
            r#"{"meta":{"kind":"chat"},"n":1}"#,
            r#"chat got {"meta":{"kind":"chat"},"n":1}"#,
        ),
        (r#"{"meta":{}}"#, "default for $default"),
        (r#"{"meta":{"kind":"other"}}"#, "default for $default"),
        (r#"{"meta":{"kind":"$connect"}}"#, "default for $default"),
        (r#"{"meta":"chat"}"#, "default for $default"),
        ("not json at all", "default for $default"),
    ];
    for (frame, want) in cases {
        send(&mut c, frame).await;
        assert_eq!(next_text(&mut c).await, want, "frame {frame}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn combined_expressions_select_on_several_paths() {
    let gw = gateway(
        r#"
[api]
route_selection_expression = "${request.body.type}/${request.body.op}"
[[routes]]
key = "room/join"
integration = { type = "mock", response_template = "joined" }
route_response_selection_expression = "$default"
[[routes]]
key = "$default"
integration = { type = "mock", response_template = "default" }
route_response_selection_expression = "$default"
"#,
    )
    .await;
    let mut c = connect(&gw.ws_url("dev")).await;
    for (frame, want) in [
        (r#"{"type":"room","op":"join"}"#, "joined"),
        (r#"{"type":"room"}"#, "default"),
        (r#"{"type":"room","op":"leave"}"#, "default"),
    ] {
        send(&mut c, frame).await;
        assert_eq!(next_text(&mut c).await, want, "frame {frame}");
    }
    gw.stop().await;
}

#[tokio::test]
async fn no_match_without_default_answers_forbidden_like_api_gateway() {
    let gw = gateway(WHOAMI).await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    send(&mut c, r#"{"action":"nope"}"#).await;
    let frame = next_json(&mut c).await;
    assert_eq!(frame["message"], "Forbidden");
    assert_eq!(frame["connectionId"], id.as_str());
    let request_id = frame["requestId"].as_str().unwrap();
    assert_eq!(request_id.len(), 16, "{request_id}");
    assert_eq!(frame.as_object().unwrap().len(), 3, "{frame}");
    // Not JSON: no route either.
    send(&mut c, "hello").await;
    assert_eq!(next_json(&mut c).await["message"], "Forbidden");
    let metrics = gw.gateway.metrics().render();
    assert!(
        metrics.contains(r#"switchboard_gateway_messages_total{outcome="no_route"} 2"#),
        "{metrics}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn integration_failures_answer_internal_server_error_and_quiet_routes_answer_nothing() {
    let backend = Recorder::start().await;
    backend.reply(
        "/slow",
        Reply {
            hold: Some(Arc::new(Semaphore::new(0))),
            ..Reply::new(200, "too late")
        },
    );
    // A port nothing listens on.
    let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let closed_url = format!("http://{}/", closed.local_addr().unwrap());
    drop(closed);
    let gw = gateway(&format!(
        r#"{WHOAMI}
[[routes]]
key = "slow"
integration = {{ type = "http_proxy", uri = "{}", timeout_ms = 100 }}
route_response_selection_expression = "$default"
[[routes]]
key = "down"
integration = {{ type = "http_proxy", uri = "{closed_url}" }}
[[routes]]
key = "quiet"
integration = {{ type = "mock", response_template = "never sent: no route response" }}
"#,
        backend.url("/slow")
    ))
    .await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    for action in ["slow", "down"] {
        send(&mut c, json!({ "action": action }).to_string()).await;
        let frame = next_json(&mut c).await;
        assert_eq!(frame["message"], "Internal server error", "{action}");
        assert_eq!(frame["connectionId"], id.as_str());
        assert_eq!(frame["requestId"].as_str().unwrap().len(), 16);
    }
    // No route response: the next frame is the answer to the next request.
    send(&mut c, r#"{"action":"quiet"}"#).await;
    assert_eq!(whoami(&mut c).await, id);
    gw.stop().await;
}

#[tokio::test]
async fn http_integrations_get_the_frame_and_mapped_parameters() {
    let backend = Recorder::start().await;
    backend.reply("/order", Reply::new(200, r#"{"type":"ack"}"#));
    let gw = gateway(&format!(
        r#"{WHOAMI}
[[routes]]
key = "order"
integration = {{ type = "http_proxy", uri = "{order}", request_parameters = {{ "integration.request.header.connectionId" = "context.connectionId", "integration.request.querystring.route" = "context.routeKey", "integration.request.header.x-item" = "route.request.body.item.sku", "integration.request.header.x-static" = "'fixed value'" }} }}
route_response_selection_expression = "$default"
[[routes]]
key = "wrapped"
integration = {{ type = "http", uri = "{wrapped}", method = "PUT", request_template = "{{\"from\": \"$context.connectionId\", \"frame\": $input.body}}" }}
"#,
        order = backend.url("/order"),
        wrapped = backend.url("/wrapped"),
    ))
    .await;
    let mut c = connect(&gw.ws_url("dev")).await;
    let id = whoami(&mut c).await;
    let frame = r#"{"action":"order","item":{"sku":"A-1"}}"#;
    send(&mut c, frame).await;
    assert_eq!(next_json(&mut c).await, json!({"type": "ack"}));
    let req = &backend.wait_for("/order", 1, Duration::from_secs(5)).await[0];
    assert_eq!(req.method, "POST");
    assert_eq!(req.body, frame);
    assert_eq!(req.uri, "/order?route=order");
    assert_eq!(req.headers["connectionid"], id.as_str());
    assert_eq!(req.headers["x-item"], "A-1");
    assert_eq!(req.headers["x-static"], "fixed value");

    send(&mut c, r#"{"action":"wrapped","n":1}"#).await;
    let req = &backend
        .wait_for("/wrapped", 1, Duration::from_secs(5))
        .await[0];
    assert_eq!(req.method, "PUT");
    let body: Value = serde_json::from_str(&req.body).unwrap();
    assert_eq!(
        body,
        json!({"from": id, "frame": {"action": "wrapped", "n": 1}})
    );
    gw.stop().await;
}

#[tokio::test]
async fn connect_refusals_reject_the_handshake_with_their_status() {
    let backend = Recorder::start().await;
    backend.reply("/connect", Reply::new(500, "backend broke"));
    backend.reply(
        "/hang",
        Reply {
            hold: Some(Arc::new(Semaphore::new(0))),
            ..Reply::new(200, "")
        },
    );
    let cases = [
        (
            r#"integration = { type = "mock", status_code = 403, response_template = "{\"message\": \"go away\"}" }"#.to_owned(),
            403,
            r#"{"message": "go away"}"#,
        ),
        (
            format!(r#"integration = {{ type = "http_proxy", uri = "{}" }}"#, backend.url("/connect")),
            500,
            "backend broke",
        ),
        (
            format!(
                r#"integration = {{ type = "http_proxy", uri = "{}", timeout_ms = 100 }}"#,
                backend.url("/hang")
            ),
            500,
            r#"{"message":"Internal server error"}"#,
        ),
    ];
    for (integration, status, body) in cases {
        let gw = gateway(&format!("[[routes]]\nkey = \"$connect\"\n{integration}\n")).await;
        assert_eq!(
            refused(&gw.ws_url("dev")).await,
            (status, body.to_owned()),
            "{integration}"
        );
        assert_eq!(
            gw.gateway.connection_count(),
            0,
            "refused connections are forgotten"
        );
        gw.stop().await;
    }
    // Unknown stage.
    let gw = gateway(WHOAMI).await;
    let (status, body) = refused(&gw.ws_url("prod")).await;
    assert_eq!(status, 404);
    assert!(
        body.contains("no stage `prod`") && body.contains("dev"),
        "{body}"
    );
    gw.stop().await;
}

#[tokio::test]
async fn connect_holds_the_upgrade_and_passes_query_headers_and_subprotocol() {
    let backend = Recorder::start().await;
    let gate = Arc::new(Semaphore::new(0));
    backend.reply(
        "/connect",
        Reply {
            hold: Some(gate.clone()),
            headers: vec![("Sec-WebSocket-Protocol".into(), "chat.v1".into())],
            ..Reply::new(200, "")
        },
    );
    let gw = gateway(&format!(
        r#"
[[routes]]
key = "$connect"
integration = {{ type = "http_proxy", uri = "{}", request_parameters = {{ "integration.request.header.connectionId" = "context.connectionId", "integration.request.header.session" = "route.request.querystring.session" }} }}
"#,
        backend.url("/connect")
    ))
    .await;
    let url = gw.ws_url("dev?session=room1");
    let client = tokio::spawn(async move {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().unwrap();
        req.headers_mut()
            .insert("Sec-WebSocket-Protocol", "chat.v1".parse().unwrap());
        req.headers_mut()
            .insert("User-Agent", "switchboard-tests".parse().unwrap());
        tokio_tungstenite::connect_async(req).await
    });
    let req = backend
        .wait_for("/connect", 1, Duration::from_secs(5))
        .await
        .remove(0);
    assert_eq!(req.headers["session"], "room1");
    assert_eq!(
        req.headers["user-agent"], "switchboard-tests",
        "client headers are forwarded"
    );
    let id = req.headers["connectionid"].to_str().unwrap().to_owned();

    // Still in $connect: the connection exists but cannot be posted to.
    let mgmt = gw.management("dev");
    let err = mgmt
        .post_to_connection()
        .connection_id(&id)
        .data(b"early".to_vec().into())
        .send()
        .await
        .unwrap_err();
    assert!(
        err.as_service_error().unwrap().is_forbidden_exception(),
        "{err:?}"
    );
    assert!(!client.is_finished(), "the handshake waits for $connect");

    gate.add_permits(1);
    let (mut c, resp) = client.await.unwrap().expect("accepted after $connect");
    assert_eq!(resp.headers()["sec-websocket-protocol"], "chat.v1");
    mgmt.post_to_connection()
        .connection_id(&id)
        .data(b"welcome".to_vec().into())
        .send()
        .await
        .expect("post after $connect");
    assert_eq!(next_text(&mut c).await, "welcome");
    gw.stop().await;
}
