//! `GET /{stage}` with `Upgrade: websocket`: the edge checks (IP rules,
//! throttles, authorizer, API key; [`super::edge`]), then `$connect` while
//! the client waits, then accepts (101) or rejects the handshake with the
//! refusal's or the integration's status, as API Gateway does.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::ws::WebSocketUpgrade;

/// Read chunk of each WebSocket (see `read_buffer_size` below): allocated
/// for every connection, so most of an idle one's memory (bench/gateway.sh).
const READ_CHUNK: usize = 2 * 1024;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::Gateway;
use super::config::ApiKeySource;
use super::connection;
use super::edge::{AuthRefusal, Reason, ip};
use super::events::{connect_event, method_arn};
use super::ids::new_id;
use super::registry::{Caller, ConnHandle};
use crate::handlers::ProxyResponse;
use crate::handlers::authorizer::AuthorizerEvent;
use crate::sync::now_ms;

fn message(status: StatusCode, text: &str) -> Response {
    (status, Json(json!({ "message": text }))).into_response()
}

/// The answer to a handshake an edge check refused, counted and logged.
fn rejected(gw: &Gateway, reason: Reason, stage: &str, ip: &str) -> Response {
    let metrics = &gw.inner.metrics;
    metrics.connections.with_label_values(&["rejected"]).inc();
    metrics
        .rejections
        .with_label_values(&["connect", reason.label()])
        .inc();
    tracing::info!(%stage, %ip, reason = reason.label(), "handshake rejected");
    let (status, text, error_type) = reason.answer();
    let mut response = message(status, text);
    response
        .headers_mut()
        .insert("x-amzn-errortype", HeaderValue::from_static(error_type));
    response
}

/// The upgrade handler.
pub(super) async fn upgrade(
    State(gw): State<Gateway>,
    Path(stage): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Query(query): Query<Vec<(String, String)>>,
    headers: HeaderMap,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let config = gw.config();
    if !config.stages.contains(&stage) {
        return message(
            StatusCode::NOT_FOUND,
            &format!(
                "no stage `{stage}`: connect to ws://host:port/{{stage}} with one of: {}",
                config.stages.join(", ")
            ),
        );
    }
    let edge = &gw.inner.edge;
    let client = ip::client_ip(peer, &headers, config.stage(&stage).trusted_proxy);
    let source_ip = client.to_string();
    // IP rules come first, as a WAF in front of the API would.
    if let Err(reason) = edge.check_ip(&stage, client) {
        return rejected(&gw, reason, &stage, &source_ip);
    }
    // `[stages.X] allowed_origins`: off by default, as on API Gateway.
    let allowed = &config.stage(&stage).allowed_origins;
    if !allowed.is_empty() && !super::origin::handshake_allowed(&headers, allowed) {
        let metrics = &gw.inner.metrics;
        metrics.connections.with_label_values(&["rejected"]).inc();
        metrics
            .cross_site
            .with_label_values(&["connect", "origin"])
            .inc();
        tracing::info!(%stage, ip = %source_ip, "handshake rejected: Origin not in allowed_origins");
        return message(StatusCode::FORBIDDEN, "Forbidden");
    }
    let ws = match ws {
        Ok(ws) => ws,
        Err(rejection) => return rejection.into_response(),
    };
    // RFC 6455 4.2.1: the key is a base64-encoded 16-byte nonce, else 400
    // (axum only checks that the header is there).
    let key_ok = headers
        .get(header::SEC_WEBSOCKET_KEY)
        .and_then(|k| data_encoding::BASE64.decode(k.as_bytes()).ok())
        .is_some_and(|k| k.len() == 16);
    if !key_ok {
        return message(
            StatusCode::BAD_REQUEST,
            "Sec-WebSocket-Key must be a base64-encoded 16-byte nonce (RFC 6455 section 4.2.1)",
        );
    }
    if gw.inner.shutdown.is_cancelled() {
        return message(
            StatusCode::SERVICE_UNAVAILABLE,
            "the gateway is shutting down",
        );
    }
    if let Err(reason) = edge.throttle_connect(&stage, client) {
        return rejected(&gw, reason, &stage, &source_ip);
    }
    let domain_name = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let user_agent = headers
        .get(header::USER_AGENT)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned);
    let connected_at = now_ms();
    let request_id = new_id();
    let (mut conn, outbound) = ConnHandle::new(
        new_id(),
        stage.clone(),
        domain_name,
        Caller {
            source_ip: source_ip.clone(),
            user_agent,
            trace_headers: trace_headers(&headers),
            ..Caller::default()
        },
        connected_at,
        config.limits.outbound_buffer_frames,
    );
    let route = config.routes.get("$connect");

    // The authorizer sees the $connect request as a REQUEST authorizer event.
    let mut usage_identifier_key = None;
    if let Some(name) = route.and_then(|r| r.authorizer.as_deref()) {
        let event = connect_event(&conn, &headers, &query, request_id.clone(), connected_at);
        let event = AuthorizerEvent::for_connect(&event, method_arn(&stage, "$connect"));
        match edge.authorize(name, &event).await {
            Ok(authorized) => {
                let cache = if authorized.cached { "hit" } else { "miss" };
                gw.inner
                    .metrics
                    .authorizer
                    .with_label_values(&["allow", cache])
                    .inc();
                conn.authorizer = Some(authorized.context);
                usage_identifier_key = authorized.usage_identifier_key;
            }
            Err((reason, refusal)) => {
                let counted = match refusal {
                    AuthRefusal::Denied { cached } => Some(("deny", cached)),
                    // Unauthorized and failed answers are never cached.
                    AuthRefusal::Unauthorized => Some(("unauthorized", false)),
                    AuthRefusal::Failed => Some(("error", false)),
                    // The authorizer did not run.
                    AuthRefusal::MissingIdentity => None,
                };
                if let Some((result, cached)) = counted {
                    let cache = if cached { "hit" } else { "miss" };
                    gw.inner
                        .metrics
                        .authorizer
                        .with_label_values(&[result, cache])
                        .inc();
                }
                return rejected(&gw, reason, &stage, &source_ip);
            }
        }
    }
    let presented = match config.api_key_source {
        ApiKeySource::Header => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned),
        ApiKeySource::Authorizer => usage_identifier_key,
    };
    let required = route.is_some_and(|r| r.api_key_required);
    match edge.api_key(&stage, presented.as_deref(), required, connected_at) {
        Ok(key) => conn.api_key = key,
        Err(reason) => return rejected(&gw, reason, &stage, &source_ip),
    }

    let handle = loop {
        let handle = Arc::new(conn);
        // 88 random bits: a collision is practically impossible, but cheap to rule out.
        if gw.inner.registry.insert(handle.clone()) {
            break handle;
        }
        conn = Arc::try_unwrap(handle).expect("a handle the registry refused is ours alone");
        conn.id = new_id();
    };
    let event = connect_event(&handle, &headers, &query, request_id, connected_at);
    let answer = match route {
        None => Ok(ProxyResponse::status(200)),
        Some(route) => gw.inner.invoker.invoke(&route.integration, &event).await,
    };
    let answer = match answer {
        Ok(a) if a.is_success() => a,
        Ok(a) => {
            gw.inner.registry.remove(&handle.id);
            gw.inner
                .metrics
                .connections
                .with_label_values(&["refused"])
                .inc();
            tracing::info!(connection = %handle.id, status = a.status_code, "$connect refused");
            return rejection(&a);
        }
        Err(e) => {
            gw.inner.registry.remove(&handle.id);
            gw.inner
                .metrics
                .connections
                .with_label_values(&["failed"])
                .inc();
            tracing::warn!(connection = %handle.id, error = %e, "$connect integration failed");
            return message(StatusCode::INTERNAL_SERVER_ERROR, "Internal server error");
        }
    };
    handle.mark_open();
    gw.inner
        .metrics
        .connections
        .with_label_values(&["accepted"])
        .inc();
    gw.inner.metrics.open.inc();
    tracing::info!(connection = %handle.id, %stage, ip = %handle.source_ip, "connected");

    let limits = config.limits;
    let (gw_ok, gw_failed) = (gw.clone(), gw.clone());
    let (h_ok, h_failed) = (handle.clone(), handle);
    // Tokens keep `run` from returning before these tasks end.
    let (t_ok, t_failed) = (gw.inner.tasks.token(), gw.inner.tasks.token());
    let mut response = ws
        // tungstenite allocates its read buffer up front, 128 KiB by default:
        // most of an idle connection's memory. Messages larger than a chunk
        // are still read (over several chunks); the limits below still apply.
        .read_buffer_size(READ_CHUNK)
        .max_message_size(limits.message_bytes)
        .max_frame_size(limits.frame_bytes)
        .on_failed_upgrade(move |e| {
            tracing::warn!(connection = %h_failed.id, error = %e, "upgrade failed after $connect");
            gw_failed.inner.registry.remove(&h_failed.id);
            gw_failed.inner.metrics.open.dec();
            gw_failed
                .inner
                .metrics
                .closes
                .with_label_values(&["abnormal"])
                .inc();
            let tasks = gw_failed.inner.tasks.clone();
            tasks.spawn(async move {
                let _t = t_failed;
                connection::disconnect(&gw_failed, &h_failed, 1006, "Connection closed abnormally")
                    .await;
            });
        })
        .on_upgrade(move |socket| async move {
            let _t = t_ok;
            connection::run(gw_ok, h_ok, socket, outbound).await;
        });
    // A $connect integration chooses the subprotocol, as on API Gateway.
    for (name, value) in &answer.headers {
        if name.eq_ignore_ascii_case("sec-websocket-protocol")
            && let Ok(v) = HeaderValue::from_str(value)
        {
            response
                .headers_mut()
                .insert(HeaderName::from_static("sec-websocket-protocol"), v);
        }
    }
    response
}

/// The handshake refusal for a non-2xx `$connect` answer: its status and body.
fn rejection(answer: &ProxyResponse) -> Response {
    let status = StatusCode::from_u16(answer.status_code).unwrap_or(StatusCode::FORBIDDEN);
    let body = answer.body.clone().unwrap_or_default();
    let content_type = if serde_json::from_str::<serde_json::Value>(&body).is_ok() {
        "application/json"
    } else {
        "text/plain; charset=utf-8"
    };
    (status, [(header::CONTENT_TYPE, content_type)], body).into_response()
}

/// The handshake's W3C trace headers (`traceparent`, `tracestate`), when it
/// has them: every frame of the connection continues that trace.
fn trace_headers(headers: &HeaderMap) -> BTreeMap<String, String> {
    use crate::telemetry::trace::{ATTR_TRACEPARENT, ATTR_TRACESTATE};
    [ATTR_TRACEPARENT, ATTR_TRACESTATE]
        .into_iter()
        .filter_map(|name| {
            let value = headers.get(name)?.to_str().ok()?;
            Some((name.to_owned(), value.to_owned()))
        })
        .collect()
}
