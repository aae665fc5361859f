//! The edge logic behind the WebSocket API: `$connect`, `$disconnect`, custom
//! routes (`sendMessage`, `history`, `direct`, ...) and `$default`.
//!
//! One implementation, fed API Gateway WebSocket proxy events ([`WebSocketEvent`])
//! and answering proxy responses ([`ProxyResponse`]): the local gateway calls it
//! in-process with the same event JSON a Lambda function receives on AWS.
//!
//! Client mistakes (no session, unknown connection, payload too large) are
//! answered with a 4xx response whose body is an `error` frame, and nothing is
//! written. Backend failures are errors ([`HandlerError`]): on AWS the invocation
//! fails and API Gateway answers `Internal server error`, and so does the gateway.

pub mod authorizer;
mod connect;
pub mod event;
mod send;

pub use connect::{connection_record, validate_session};
pub use event::{
    EventType, Identity, ProxyResponse, RequestContext, RequestParameters, WebSocketEvent,
};
pub use send::envelope_for;

use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::backend::{BackendError, Connections, Queue};
use crate::envelope::ErrorFrame;

/// API Gateway closes every WebSocket connection after 2 hours.
pub const MAX_CONNECTION_DURATION: Duration = Duration::from_secs(2 * 3600);

/// Added to the connection TTL so that clock skew between the gateway and the
/// table never expires a live connection early.
pub const TTL_SLACK: Duration = Duration::from_secs(10 * 60);

/// Which handler to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandlerKind {
    /// `$connect`: store the connection.
    Connect,
    /// `$disconnect`: delete it.
    Disconnect,
    /// A custom route: enqueue envelope v1.
    Send,
    /// `$default`: tell the sender which actions exist.
    Default,
}

impl HandlerKind {
    /// Every handler, by its config name.
    pub const ALL: [(&'static str, HandlerKind); 4] = [
        ("connect", HandlerKind::Connect),
        ("disconnect", HandlerKind::Disconnect),
        ("send", HandlerKind::Send),
        ("default", HandlerKind::Default),
    ];

    /// The name used in the gateway configuration (`handler = "send"`).
    pub fn name(self) -> &'static str {
        match self {
            HandlerKind::Connect => "connect",
            HandlerKind::Disconnect => "disconnect",
            HandlerKind::Send => "send",
            HandlerKind::Default => "default",
        }
    }

    /// The handler a single Lambda function would run for `event`.
    pub fn for_event(event: &WebSocketEvent) -> Self {
        match event.request_context.event_type {
            EventType::Connect => HandlerKind::Connect,
            EventType::Disconnect => HandlerKind::Disconnect,
            EventType::Message if event.request_context.route_key == "$default" => {
                HandlerKind::Default
            }
            EventType::Message => HandlerKind::Send,
        }
    }
}

impl FromStr for HandlerKind {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .iter()
            .find(|(name, _)| *name == s)
            .map(|(_, k)| *k)
            .ok_or_else(|| {
                format!("unknown builtin handler `{s}`: use connect, disconnect, send or default")
            })
    }
}

/// Why a handler could not answer (the invocation fails; the client sees
/// `Internal server error`).
#[derive(Debug, thiserror::Error)]
pub enum HandlerError {
    /// The event is not an API Gateway WebSocket proxy event.
    #[error("not an API Gateway WebSocket proxy event: {0}")]
    BadEvent(#[from] serde_json::Error),
    /// The queue or the connections table failed.
    #[error(transparent)]
    Backend(#[from] BackendError),
}

/// Settings of the handlers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HandlerSettings {
    /// The custom route keys, listed to clients by `$default`.
    pub known_actions: Vec<String>,
    /// How long a connection record lives (its `expiresAt`).
    pub connection_ttl: Duration,
    /// The API's AWS Region (the Lambda functions take `AWS_REGION`). With
    /// it, a frame that came in through a custom domain names the API's own
    /// `{apiId}.execute-api.{region}.amazonaws.com` endpoint as its callback:
    /// the @connections API is served there, and a custom domain's path is
    /// its API mapping, not the stage. `None` (the local gateway): the
    /// event's domain as it is.
    pub region: Option<String>,
    /// Whether `$connect` / `$disconnect` also put a `$join` / `$leave`
    /// event in the session's FIFO group (one more queue send each, and a
    /// table read on `$disconnect`). Off here; `switchboard gateway`, `dev`
    /// and the Lambda functions turn it on unless `--presence-events off`.
    pub presence_events: bool,
}

impl Default for HandlerSettings {
    fn default() -> Self {
        HandlerSettings {
            known_actions: crate::envelope::DEFAULT_ACTIONS
                .iter()
                .map(|a| (*a).to_owned())
                .collect(),
            connection_ttl: MAX_CONNECTION_DURATION + TTL_SLACK,
            region: None,
            presence_events: false,
        }
    }
}

/// The handlers with their backends: the FIFO queue and the connections table.
#[derive(Clone)]
pub struct Handlers {
    queue: Arc<dyn Queue>,
    connections: Arc<dyn Connections>,
    settings: HandlerSettings,
}

impl std::fmt::Debug for Handlers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Handlers")
            .field("queue", &self.queue.url())
            .field("settings", &self.settings)
            .finish()
    }
}

impl Handlers {
    /// Handlers writing to `queue` and `connections`.
    pub fn new(
        queue: Arc<dyn Queue>,
        connections: Arc<dyn Connections>,
        settings: HandlerSettings,
    ) -> Self {
        Handlers {
            queue,
            connections,
            settings,
        }
    }

    /// The settings.
    pub fn settings(&self) -> &HandlerSettings {
        &self.settings
    }

    /// Runs handler `kind` on an event given as JSON, exactly as a Lambda
    /// function receives it.
    pub async fn handle_json(
        &self,
        kind: HandlerKind,
        event: &str,
    ) -> Result<ProxyResponse, HandlerError> {
        let event: WebSocketEvent = serde_json::from_str(event)?;
        self.handle(kind, &event).await
    }

    /// Runs handler `kind` on `event`.
    #[tracing::instrument(skip_all, fields(
        handler = kind.name(),
        route = %event.request_context.route_key,
        connection = %event.request_context.connection_id,
        request = %event.request_context.request_id,
    ))]
    pub async fn handle(
        &self,
        kind: HandlerKind,
        event: &WebSocketEvent,
    ) -> Result<ProxyResponse, HandlerError> {
        let result = match kind {
            HandlerKind::Connect => connect::connect(self, event).await,
            HandlerKind::Disconnect => connect::disconnect(self, event).await,
            HandlerKind::Send => send::send(self, event).await,
            HandlerKind::Default => Ok(send::default_route(self, event)),
        };
        match &result {
            Ok(r) if r.is_success() => tracing::debug!(status = r.status_code, "handled"),
            Ok(r) => tracing::info!(status = r.status_code, body = ?r.body, "refused"),
            Err(e) => tracing::warn!(error = %e, "handler failed"),
        }
        result
    }
}

/// A refusal: a 4xx response whose body is an `error` frame about request `id`.
pub(crate) fn refuse(
    status: u16,
    id: &str,
    code: &str,
    message: impl Into<String>,
) -> ProxyResponse {
    let frame = ErrorFrame::new(id, code, message);
    ProxyResponse::json(status, &json!(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_fixture_deserializes_and_picks_its_handler() {
        let cases = [
            (
                include_str!("../../tests/fixtures/apigw-ws-connect.json"),
                HandlerKind::Connect,
            ),
            (
                include_str!("../../tests/fixtures/apigw-ws-message.json"),
                HandlerKind::Send,
            ),
            (
                include_str!("../../tests/fixtures/apigw-ws-default.json"),
                HandlerKind::Default,
            ),
            (
                include_str!("../../tests/fixtures/apigw-ws-disconnect.json"),
                HandlerKind::Disconnect,
            ),
        ];
        for (json, kind) in cases {
            let event: WebSocketEvent = serde_json::from_str(json).unwrap();
            assert_eq!(HandlerKind::for_event(&event), kind);
            // What we serialize reads back the same (the gateway's events go
            // through JSON exactly like on AWS).
            let again: WebSocketEvent =
                serde_json::from_str(&serde_json::to_string(&event).unwrap()).unwrap();
            assert_eq!(again, event);
        }
        let d: WebSocketEvent = serde_json::from_str(include_str!(
            "../../tests/fixtures/apigw-ws-disconnect.json"
        ))
        .unwrap();
        assert_eq!(d.request_context.disconnect_status_code, Some(1001));
        assert_eq!(
            d.request_context.disconnect_reason.as_deref(),
            Some("Going away")
        );
    }

    #[test]
    fn handler_names_round_trip() {
        for (name, kind) in HandlerKind::ALL {
            assert_eq!(name.parse::<HandlerKind>().unwrap(), kind);
            assert_eq!(kind.name(), name);
        }
        assert!(
            "sned"
                .parse::<HandlerKind>()
                .unwrap_err()
                .contains("connect, disconnect")
        );
    }
}
