//! The @connections management API at `/{stage}/@connections/{connectionId}`:
//! POST (one frame to the client), GET (connection info), DELETE (close).
//!
//! Errors carry `x-amzn-ErrorType` and a JSON `message`, so the real
//! `aws-sdk-apigatewaymanagement` client maps them to its typed errors:
//! GoneException (410), PayloadTooLargeException (413), LimitExceededException
//! (429), ForbiddenException (403). Who may call is `[management]`: loopback
//! callers only (signatures not checked), or callers whose SigV4 signature
//! verifies with the configured credentials ([`super::sigv4`]).

use std::net::SocketAddr;
use std::time::SystemTime;

use axum::Json;
use axum::body::{Body, to_bytes};
use axum::extract::ws::{Message, Utf8Bytes};
use axum::extract::{ConnectInfo, FromRequestParts, Path, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::json;

use super::config::Management;
use super::ids::new_id;
use super::origin::{self, LocalAddr};
use super::registry::PostOutcome;
use super::sigv4::{self, SigV4Error};
use super::{DeleteOutcome, Gateway};
use crate::clock::iso_time;

/// A management request as received (everything but the body): the
/// connection it is about and what the access checks look at.
pub(super) struct Call {
    peer: SocketAddr,
    stage: String,
    id: String,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    /// The address the request came in on (for the `Host` check).
    local: Option<SocketAddr>,
}

impl<S: Send + Sync> FromRequestParts<S> for Call {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Response> {
        let ConnectInfo(peer) = ConnectInfo::<SocketAddr>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        let Path((stage, id)) = Path::<(String, String)>::from_request_parts(parts, state)
            .await
            .map_err(IntoResponse::into_response)?;
        Ok(Call {
            peer,
            stage,
            id,
            // `Call` is the handlers' only use of the parts (the body is
            // extracted apart), so they are moved out, not copied.
            method: std::mem::take(&mut parts.method),
            uri: std::mem::take(&mut parts.uri),
            headers: std::mem::take(&mut parts.headers),
            local: parts.extensions.get::<LocalAddr>().map(|l| l.0),
        })
    }
}

/// An error answer the SDK understands.
fn error(status: StatusCode, error_type: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-ErrorType", error_type.to_owned()),
            ("x-amzn-RequestId", new_id()),
        ],
        Json(json!({ "message": message })),
    )
        .into_response()
}

fn gone(id: &str) -> Response {
    error(
        StatusCode::GONE,
        "GoneException",
        &format!("connection {id} is not connected"),
    )
}

fn ok(status: StatusCode) -> Response {
    (status, [("x-amzn-RequestId", new_id())]).into_response()
}

/// Counts a request by operation and the outcome its status stands for.
fn counted(gw: &Gateway, op: &str, resp: Response) -> Response {
    let outcome = match resp.status().as_u16() {
        200..=299 => "ok",
        403 => "forbidden",
        410 => "gone",
        413 => "too_large",
        429 => "throttled",
        _ => "other",
    };
    gw.inner
        .metrics
        .management
        .with_label_values(&[op, outcome])
        .inc();
    resp
}

/// The refusal for callers on an address `[management]` does not answer,
/// and for cross-site requests (a foreign `Origin`; a `Host` that is not
/// loopback or the listen address while calls are unsigned: [`origin`]).
fn address_refusal(gw: &Gateway, call: &Call) -> Option<Response> {
    let unsigned = matches!(gw.config().management, Management::Loopback);
    if let Some(check) = origin::management(&call.headers, call.local, unsigned) {
        gw.inner
            .metrics
            .cross_site
            .with_label_values(&["management", check.label()])
            .inc();
        tracing::info!(peer = %call.peer, check = check.label(), "@connections request refused: cross-site");
        return Some(error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            match check {
                origin::CrossSite::Origin => {
                    "the @connections API does not answer requests from web pages of other origins"
                }
                origin::CrossSite::Host => {
                    "the @connections API only answers requests addressed to loopback or the listen address (Host)"
                }
            },
        ));
    }
    let loopback = super::edge::ip::canonical(call.peer.ip()).is_loopback();
    let loopback_only = match &gw.config().management {
        Management::Loopback => true,
        Management::SigV4 { any_address, .. } => !any_address,
    };
    (loopback_only && !loopback).then(|| {
        error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            "the @connections API only answers callers on loopback ([management] bind = \"loopback\")",
        )
    })
}

/// The refusal for requests without a valid signature (when `[management]`
/// has credentials) and for unknown stages; `body` is the request's body.
fn refusal(gw: &Gateway, call: &Call, body: &[u8]) -> Option<Response> {
    if let Management::SigV4 { credentials, .. } = &gw.config().management {
        let checked = sigv4::verify(
            &call.method,
            &call.uri,
            &call.headers,
            body,
            credentials,
            SystemTime::now(),
        );
        if let Err(e) = checked {
            let (label, error_type) = match e {
                SigV4Error::Missing => ("missing", "MissingAuthenticationTokenException"),
                SigV4Error::Invalid(_) => ("invalid", "InvalidSignatureException"),
            };
            gw.inner
                .metrics
                .management_auth
                .with_label_values(&[label])
                .inc();
            tracing::info!(peer = %call.peer, error = %e, "@connections request refused: SigV4");
            return Some(error(StatusCode::FORBIDDEN, error_type, &e.to_string()));
        }
    }
    if !gw.config().stages.contains(&call.stage) {
        return Some(error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            &format!("no stage `{}`", call.stage),
        ));
    }
    None
}

/// PostToConnection: the raw body becomes one frame (text when it is UTF-8).
async fn post_inner(gw: &Gateway, call: &Call, body: Body) -> Response {
    let id = call.id.as_str();
    if let Some(r) = address_refusal(gw, call) {
        return r;
    }
    let limit = gw.config().limits.message_bytes;
    let too_large = || {
        error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "PayloadTooLargeException",
            &format!("the payload is over {limit} bytes"),
        )
    };
    // Read one byte past the limit to tell "at the limit" from "over it".
    // The signature covers the body, so it is read (bounded) before the
    // signature is checked.
    let data = match to_bytes(body, limit + 1).await {
        Ok(data) => data,
        // `[limits] body_timeout_secs`: the connection is closed after this.
        Err(e) if super::listener::is_body_timeout(&e) => {
            return error(
                StatusCode::REQUEST_TIMEOUT,
                "RequestTimeoutException",
                &e.to_string(),
            );
        }
        Err(_) => return too_large(),
    };
    if data.len() > limit {
        return too_large();
    }
    if let Some(r) = refusal(gw, call, &data) {
        return r;
    }
    let Some(handle) = gw.inner.registry.get(id) else {
        return gone(id);
    };
    // The body's bytes become the frame as they are (UTF-8 is checked, not copied).
    let frame = match Utf8Bytes::try_from(data.clone()) {
        Ok(text) => Message::Text(text),
        Err(_) => Message::Binary(data),
    };
    match handle.post(frame) {
        PostOutcome::Sent => ok(StatusCode::OK),
        PostOutcome::Gone => gone(id),
        PostOutcome::Connecting => error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            &format!("connection {id} is still connecting ($connect has not finished)"),
        ),
        PostOutcome::Full => error(
            StatusCode::TOO_MANY_REQUESTS,
            "LimitExceededException",
            &format!("connection {id} is not reading: its outbound buffer is full"),
        ),
    }
}

/// GetConnection: `connectedAt`, `identity`, `lastActiveAt` (ISO 8601).
async fn get_inner(gw: &Gateway, call: &Call) -> Response {
    let id = call.id.as_str();
    if let Some(r) = address_refusal(gw, call).or_else(|| refusal(gw, call, b"")) {
        return r;
    }
    let Some(handle) = gw.inner.registry.get(id).filter(|h| !h.is_closing()) else {
        return gone(id);
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = new_id().parse() {
        headers.insert("x-amzn-RequestId", v);
    }
    (
        headers,
        Json(json!({
            "connectedAt": iso_time(handle.connected_at),
            "identity": {
                "sourceIp": handle.source_ip,
                "userAgent": handle.user_agent,
            },
            "lastActiveAt": iso_time(handle.last_active()),
        })),
    )
        .into_response()
}

/// DeleteConnection: closes the connection (1000), answers 204.
async fn delete_inner(gw: &Gateway, call: &Call) -> Response {
    let id = call.id.as_str();
    if let Some(r) = address_refusal(gw, call).or_else(|| refusal(gw, call, b"")) {
        return r;
    }
    match gw.delete_connection(id) {
        DeleteOutcome::Deleted => ok(StatusCode::NO_CONTENT),
        DeleteOutcome::Gone => gone(id),
        DeleteOutcome::Connecting => error(
            StatusCode::FORBIDDEN,
            "ForbiddenException",
            &format!("connection {id} is still connecting ($connect has not finished)"),
        ),
    }
}

/// PostToConnection.
pub(super) async fn post(State(gw): State<Gateway>, call: Call, body: Body) -> Response {
    let resp = post_inner(&gw, &call, body).await;
    counted(&gw, "post", resp)
}

/// GetConnection.
pub(super) async fn get(State(gw): State<Gateway>, call: Call) -> Response {
    let resp = get_inner(&gw, &call).await;
    counted(&gw, "get", resp)
}

/// DeleteConnection.
pub(super) async fn delete(State(gw): State<Gateway>, call: Call) -> Response {
    let resp = delete_inner(&gw, &call).await;
    counted(&gw, "delete", resp)
}
