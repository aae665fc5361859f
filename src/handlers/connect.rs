//! `$connect` stores the connection; `$disconnect` deletes it.

use std::time::Duration;

use super::{HandlerError, Handlers, ProxyResponse, WebSocketEvent, refuse};
use crate::backend::Connection;
use crate::envelope::{JOIN_ACTION, LEAVE_ACTION, MAX_ID_CHARS};

/// Checks a session id: it becomes the SQS MessageGroupId, so it must be 1–128
/// characters of ASCII letters, digits and punctuation (the SQS rule).
pub fn validate_session(session: &str) -> Result<(), String> {
    if session.is_empty() {
        return Err("the session id is empty".into());
    }
    let chars = session.chars().count();
    if chars > MAX_ID_CHARS {
        return Err(format!(
            "the session id is {chars} characters long; at most {MAX_ID_CHARS} are allowed \
             (the SQS message group id limit)"
        ));
    }
    if let Some(bad) = session.chars().find(|c| !c.is_ascii_graphic()) {
        return Err(format!(
            "the session id contains {bad:?}; use ASCII letters, digits and punctuation \
             (the SQS message group id rules)"
        ));
    }
    Ok(())
}

/// The connection record for a `$connect` event, or the refusal to send back.
///
/// The session comes from the authorizer's `sessionId` when there is one (it
/// was vouched for), else from `?session=`; the user from the authorizer's
/// `userId`. `expiresAt` is the connect time plus `ttl`, in epoch seconds.
pub fn connection_record(
    event: &WebSocketEvent,
    ttl: Duration,
) -> Result<Connection, ProxyResponse> {
    let ctx = &event.request_context;
    let session = ctx
        .authorizer_value("sessionId")
        .or_else(|| event.query("session").map(str::to_owned));
    let Some(session) = session else {
        return Err(refuse(
            400,
            &ctx.request_id,
            "missing_session",
            "no session: connect with ?session=<id> (e.g. wss://host/stage?session=room1)",
        ));
    };
    if let Err(problem) = validate_session(&session) {
        return Err(refuse(400, &ctx.request_id, "invalid_session", problem));
    }
    let user_id = ctx.authorizer_value("userId").filter(|u| !u.is_empty());
    let connected_at = if ctx.connected_at > 0 {
        ctx.connected_at
    } else {
        ctx.request_time_epoch
    };
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2);
    Ok(Connection {
        connection_id: ctx.connection_id.clone(),
        session_id: session,
        user_id,
        connected_at,
        expires_at: connected_at.div_euclid(1000) + ttl_secs,
        domain_name: Some(ctx.domain_name.clone()).filter(|d| !d.is_empty()),
        stage: Some(ctx.stage.clone()).filter(|s| !s.is_empty()),
        source_ip: Some(ctx.identity.source_ip.clone()).filter(|s| !s.is_empty()),
    })
}

pub(super) async fn connect(
    h: &Handlers,
    event: &WebSocketEvent,
) -> Result<ProxyResponse, HandlerError> {
    let record = match connection_record(event, h.settings.connection_ttl) {
        Ok(r) => r,
        Err(refusal) => return Ok(refusal),
    };
    h.connections.put(&record).await?;
    if h.settings.presence_events {
        super::send::enqueue_presence(h, event, JOIN_ACTION, &record).await?;
    }
    tracing::info!(session = %record.session_id, user = ?record.user_id, "connected");
    Ok(ProxyResponse::status(200))
}

pub(super) async fn disconnect(
    h: &Handlers,
    event: &WebSocketEvent,
) -> Result<ProxyResponse, HandlerError> {
    let id = &event.request_context.connection_id;
    // With presence events the record names the session the member leaves
    // (a `$disconnect` event does not); none: it was pruned or never stored.
    let leaving = if h.settings.presence_events {
        h.connections.get(id).await?
    } else {
        None
    };
    // Unconditional and idempotent: deleting a missing item succeeds.
    h.connections.delete(id).await?;
    if let Some(conn) = leaving {
        super::send::enqueue_presence(h, event, LEAVE_ACTION, &conn).await?;
    }
    tracing::info!(
        code = ?event.request_context.disconnect_status_code,
        reason = ?event.request_context.disconnect_reason,
        "disconnected"
    );
    Ok(ProxyResponse::status(200))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::handlers::HandlerSettings;

    const CONNECT: &str = include_str!("../../tests/fixtures/apigw-ws-connect.json");

    fn event() -> WebSocketEvent {
        serde_json::from_str(CONNECT).unwrap()
    }

    fn ttl() -> Duration {
        HandlerSettings::default().connection_ttl
    }

    fn error_code(r: &ProxyResponse) -> String {
        let v: serde_json::Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
        assert_eq!(v["type"], "error");
        v["code"].as_str().unwrap().to_owned()
    }

    #[test]
    fn record_from_the_real_connect_event() {
        let e = event();
        let c = connection_record(&e, ttl()).unwrap();
        assert_eq!(c.connection_id, e.request_context.connection_id);
        assert_eq!(c.session_id, "room1");
        assert_eq!(c.user_id, None);
        assert_eq!(c.connected_at, e.request_context.connected_at);
        // 2 h API Gateway maximum + 10 min slack, in seconds.
        assert_eq!(
            c.expires_at,
            e.request_context.connected_at / 1000 + 2 * 3600 + 600
        );
        assert_eq!(
            c.domain_name.as_deref(),
            Some(e.request_context.domain_name.as_str())
        );
        assert_eq!(c.stage.as_deref(), Some("dev"));
        assert_eq!(c.source_ip.as_deref(), Some("203.0.113.10"));
    }

    #[test]
    fn authorizer_context_wins_over_the_query_string() {
        let mut e = event();
        e.request_context.authorizer = Some(
            serde_json::json!({"principalId": "alice", "userId": "alice", "sessionId": "vip"})
                .as_object()
                .unwrap()
                .clone(),
        );
        let c = connection_record(&e, ttl()).unwrap();
        assert_eq!(c.session_id, "vip");
        assert_eq!(c.user_id.as_deref(), Some("alice"));
    }

    #[test]
    fn missing_or_invalid_sessions_are_refused_with_400() {
        let mut e = event();
        e.request.query_string_parameters = None;
        let r = connection_record(&e, ttl()).unwrap_err();
        assert_eq!(r.status_code, 400);
        assert_eq!(error_code(&r), "missing_session");
        assert!(r.body.as_deref().unwrap().contains("?session="));

        for bad in ["", "has space", &"x".repeat(129), "naïve"] {
            e.request.query_string_parameters = Some(
                [("session".to_owned(), bad.to_owned())]
                    .into_iter()
                    .collect(),
            );
            let r = connection_record(&e, ttl()).unwrap_err();
            assert_eq!(r.status_code, 400, "{bad:?}");
            assert_eq!(error_code(&r), "invalid_session", "{bad:?}");
        }
        let longest = "x".repeat(128);
        e.request.query_string_parameters =
            Some([("session".to_owned(), longest)].into_iter().collect());
        assert!(connection_record(&e, ttl()).is_ok());
    }
}
