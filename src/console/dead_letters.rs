//! The console's dead-letter calls: the list (read in place), replay (the
//! code of `replay-dlq`, order kept) and delete.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use super::api::{answer, failed, unavailable};
use crate::backend::Queue;
use crate::backend::embedded::PeekedMessage;
use crate::ops::replay::{Event, ReplayOptions, replay as replay_dlq};

/// Most dead letters listed.
const MAX_DEAD_LETTERS: usize = 100;
/// Bytes of a dead letter's body shown.
const BODY_SHOWN: usize = 2048;

/// The first `BODY_SHOWN` bytes of `body`, cut at a character boundary.
fn shown(body: &str) -> &str {
    if body.len() <= BODY_SHOWN {
        return body;
    }
    let mut end = BODY_SHOWN;
    while !body.is_char_boundary(end) {
        end -= 1;
    }
    &body[..end]
}

fn dead_letter_json(m: &PeekedMessage, replay_takes: usize) -> Value {
    let body = shown(&m.body);
    json!({
        "messageId": m.message_id,
        "group": m.group,
        "sentAt": m.sent_at,
        "receiveCount": m.receive_count,
        "inFlight": m.in_flight,
        "attributes": m.attributes,
        "body": body,
        "bodyBytes": m.body.len(),
        "bodyTruncated": body.len() < m.body.len(),
        "replayTakes": replay_takes,
    })
}

/// `GET /@console/api/dead-letters`: the oldest dead letters, in place.
pub(super) async fn list(State(c): State<Console>) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let (peeked, depth) = (
        s.store.peek(&s.dlq_url, MAX_DEAD_LETTERS).await,
        s.store.queue_depth(&s.dlq_url, 0).await,
    );
    let (peeked, depth) = match (peeked, depth) {
        (Ok(p), Ok(d)) => (p, d),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let mut in_group: HashMap<&str, usize> = HashMap::new();
    let items: Vec<Value> = peeked
        .iter()
        .map(|m| {
            let n = in_group.entry(m.group.as_str()).or_default();
            *n += 1;
            dead_letter_json(m, *n)
        })
        .collect();
    Json(json!({
        "available": true,
        "total": depth.visible + depth.in_flight,
        "items": items,
    }))
    .into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
pub(super) struct ReplayRequest {
    /// Replay this dead letter (and the earlier ones of its group, which
    /// must go first); absent: replay all.
    message_id: Option<String>,
}

fn event_json(e: &Event) -> Value {
    match e {
        Event::Moved { group, id, new_id } => {
            json!({ "event": "moved", "group": group, "messageId": id, "newMessageId": new_id })
        }
        Event::WouldMove { group, id, .. } => {
            json!({ "event": "wouldMove", "group": group, "messageId": id })
        }
        Event::Skipped { group, id, why } => {
            json!({ "event": "skipped", "group": group, "messageId": id, "why": format!("{why:?}") })
        }
        Event::Failed { group, id, error } => {
            json!({ "event": "failed", "group": group, "messageId": id, "error": error })
        }
    }
}

/// `POST /@console/api/dead-letters/replay` `{"messageId": …}` or `{}`:
/// moves dead letters back to the inbound queue with `replay-dlq`'s code.
pub(super) async fn replay(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    body: Bytes,
) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let req: ReplayRequest = if body.iter().all(u8::is_ascii_whitespace) {
        ReplayRequest::default()
    } else {
        match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                return answer(
                    StatusCode::BAD_REQUEST,
                    json!({ "error": format!("the body must be {{}} or {{\"messageId\": \"…\"}}: {e}") }),
                );
            }
        }
    };
    let _one_at_a_time = c.inner.replaying.lock().await;
    let opts = match &req.message_id {
        None => ReplayOptions::default(),
        Some(id) => match s.store.place_in_group(&s.dlq_url, id).await {
            Ok(Some((group, takes))) => ReplayOptions {
                group: Some(group),
                max: Some(usize::try_from(takes).unwrap_or(usize::MAX)),
                ..ReplayOptions::default()
            },
            Ok(None) => {
                return answer(
                    StatusCode::NOT_FOUND,
                    json!({ "error": format!("no dead letter {id}") }),
                );
            }
            Err(e) => return failed(e),
        },
    };
    // The embedded DLQ answers at once: no need to long-poll it.
    let opts = ReplayOptions {
        wait: Duration::ZERO,
        visibility: Duration::from_secs(60),
        ..opts
    };
    let (dlq, target) = match (s.store.queue(&s.dlq_url), s.store.queue(&s.queue_url)) {
        (Ok(d), Ok(t)) => (d, t),
        (Err(e), _) | (_, Err(e)) => return failed(e),
    };
    let mut events = Vec::new();
    let result = replay_dlq(&dlq, &target, &opts, |e| {
        tracing::info!(action = "replay", %peer, event = ?e, "console action");
        events.push(event_json(e));
    })
    .await;
    let summary = match &result {
        Ok(s) => *s,
        Err(e) => e.summary,
    };
    tracing::info!(action = "replay", %peer, to = %target.url(), summary = %summary.line(), "console action");
    let body = json!({
        "moved": summary.moved,
        "skipped": summary.skipped,
        "failed": summary.failed,
        "summary": summary.line(),
        "events": events,
        "error": result.err().map(|e| e.to_string()),
    });
    answer(StatusCode::OK, body)
}

/// `POST /@console/api/dead-letters/{id}/delete`: drops one dead letter.
pub(super) async fn delete(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let deleted = s.store.delete_message(&s.dlq_url, &id).await;
    tracing::info!(action = "delete_dead_letter", message_id = %id, %peer, result = ?deleted, "console action");
    match deleted {
        Ok(true) => answer(StatusCode::OK, json!({ "deleted": id })),
        Ok(false) => answer(
            StatusCode::NOT_FOUND,
            json!({ "error": format!("no dead letter {id}") }),
        ),
        Err(e) if e.kind == crate::backend::ErrorKind::ConditionFailed => {
            answer(StatusCode::CONFLICT, json!({ "error": e.to_string() }))
        }
        Err(e) => failed(e),
    }
}
