//! The console's JSON API (docs/dev.md lists every call and field). Reads
//! are GETs; the three actions are POSTs, each logged with the caller.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use crate::backend::embedded::PeekedMessage;
use crate::backend::{Connection, Messages, Queue};
use crate::gateway::DeleteOutcome;
use crate::ops::replay::{Event, ReplayOptions, replay as replay_dlq};

/// What the console shows without the embedded store.
const NO_STORE: &str = "not available: this process runs no embedded store (switchboard gateway \
                        on AWS); the queue, the tables and the dead letters are in SQS and \
                        DynamoDB (see the AWS console, `switchboard replay-dlq`)";
/// Most connections read from the table per request.
const MAX_CONNECTIONS: usize = 10_000;
/// Most dead letters listed.
const MAX_DEAD_LETTERS: usize = 100;
/// Bytes of a dead letter's body shown.
const BODY_SHOWN: usize = 2048;

fn unavailable() -> Response {
    Json(json!({ "available": false, "reason": NO_STORE })).into_response()
}

fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// `GET /@console/api/overview`: what runs and what the console can show.
pub(super) async fn overview(State(c): State<Console>) -> Response {
    let store = c.inner.store.as_ref();
    Json(json!({
        "mode": if store.is_some() { "dev" } else { "gateway" },
        "stages": c.inner.gateway.config().stages,
        "store": store.map(|s| json!({
            "queueUrl": s.queue_url,
            "dlqUrl": s.dlq_url,
            "connectionsTable": s.connections_table,
            "messagesTable": s.messages_table,
        })),
        "unavailable": if store.is_some() { Value::Null } else { json!(NO_STORE) },
    }))
    .into_response()
}

#[derive(Deserialize)]
pub(super) struct ListQuery {
    #[serde(default)]
    q: String,
    limit: Option<usize>,
}

/// `GET /@console/api/connections?q=&limit=`: counts per stage and session,
/// and the connections matching `q` (id, user, session, source IP).
pub(super) async fn connections(State(c): State<Console>, Query(q): Query<ListQuery>) -> Response {
    let live = c.inner.gateway.connections();
    let stored: Option<HashMap<String, Connection>> = match &c.inner.store {
        None => None,
        Some(s) => match s
            .store
            .all_connections(&s.connections_table, MAX_CONNECTIONS)
            .await
        {
            Ok(all) => Some(
                all.into_iter()
                    .map(|c| (c.connection_id.clone(), c))
                    .collect(),
            ),
            Err(e) => return failed(e),
        },
    };
    let mut by_stage: BTreeMap<&str, u64> = BTreeMap::new();
    let mut by_session: BTreeMap<&str, u64> = BTreeMap::new();
    let needle = q.q.trim().to_lowercase();
    let limit = q.limit.unwrap_or(200).min(1000);
    let mut items = Vec::new();
    let mut matched = 0;
    for info in &live {
        *by_stage.entry(info.stage.as_str()).or_default() += 1;
        let row = stored.as_ref().and_then(|m| m.get(&info.connection_id));
        if let Some(r) = row {
            *by_session.entry(r.session_id.as_str()).or_default() += 1;
        }
        let session = row.map(|r| r.session_id.as_str());
        let user = row
            .and_then(|r| r.user_id.as_deref())
            .or(info.principal_id.as_deref());
        let hit = needle.is_empty()
            || [
                Some(info.connection_id.as_str()),
                Some(info.source_ip.as_str()),
                session,
                user,
            ]
            .into_iter()
            .flatten()
            .any(|v| v.to_lowercase().contains(&needle));
        if !hit {
            continue;
        }
        matched += 1;
        if items.len() < limit {
            items.push(json!({
                "connectionId": info.connection_id,
                "stage": info.stage,
                "sessionId": session,
                "userId": user,
                "sourceIp": info.source_ip,
                "userAgent": info.user_agent,
                "connectedAt": info.connected_at,
                "lastActiveAt": info.last_active_at,
                "open": info.open,
            }));
        }
    }
    Json(json!({
        "total": live.len(),
        "byStage": by_stage,
        "bySession": stored.as_ref().map(|_| &by_session),
        "matched": matched,
        "items": items,
        "truncated": matched > items.len(),
        "sessionsUnavailable": if stored.is_some() { Value::Null } else { json!(NO_STORE) },
    }))
    .into_response()
}

/// `POST /@console/api/connections/{id}/disconnect`: the @connections DELETE.
pub(super) async fn disconnect(
    State(c): State<Console>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Path(id): Path<String>,
) -> Response {
    let outcome = c.inner.gateway.delete_connection(&id);
    tracing::info!(action = "disconnect", connection_id = %id, %peer, ?outcome, "console action");
    match outcome {
        DeleteOutcome::Deleted => answer(StatusCode::OK, json!({ "disconnected": id })),
        DeleteOutcome::Gone => answer(
            StatusCode::GONE,
            json!({ "error": format!("connection {id} is not connected") }),
        ),
        DeleteOutcome::Connecting => answer(
            StatusCode::FORBIDDEN,
            json!({ "error": format!("connection {id} is still connecting ($connect has not finished)") }),
        ),
    }
}

/// `GET /@console/api/sessions`: sessions with members or stored messages.
pub(super) async fn sessions(State(c): State<Console>, Query(q): Query<ListQuery>) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let limit = q.limit.unwrap_or(100).min(1000);
    match s
        .store
        .sessions(&s.connections_table, &s.messages_table, limit)
        .await
    {
        Ok(items) => Json(json!({ "available": true, "items": items })).into_response(),
        Err(e) => failed(e),
    }
}

#[derive(Deserialize)]
pub(super) struct HistoryQuery {
    limit: Option<usize>,
}

/// `GET /@console/api/sessions/{id}/history?limit=`: the newest stored
/// messages, oldest first, as the messages table holds them.
pub(super) async fn history(
    State(c): State<Console>,
    Path(session): Path<String>,
    Query(q): Query<HistoryQuery>,
) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let limit = q.limit.unwrap_or(20).clamp(1, 100);
    let messages = s.store.messages(&s.messages_table);
    match messages.latest(&session, limit).await {
        Ok(items) => {
            let items: Vec<Value> = items
                .iter()
                .map(|m| serde_json::to_value(m).unwrap_or(Value::Null))
                .collect();
            // OPTIONAL `lastSeq`: the newest message's `seq`, once stored
            // messages carry one (the sessions/seq work adds it to
            // `StoredMessage`); `null` until then, and the page hides it.
            let last_seq = items
                .last()
                .and_then(|m| m.get("seq"))
                .filter(|v| v.is_u64())
                .cloned()
                .unwrap_or(Value::Null);
            Json(json!({
                "available": true,
                "sessionId": session,
                "messages": items,
                "lastSeq": last_seq,
            }))
            .into_response()
        }
        Err(e) => failed(e),
    }
}

/// `GET /@console/api/queue`: depths of the inbound queue and the DLQ, with
/// the busiest groups.
pub(super) async fn queue(State(c): State<Console>) -> Response {
    let Some(s) = &c.inner.store else {
        return unavailable();
    };
    let inbound = s.store.queue_depth(&s.queue_url, 10).await;
    let dlq = s.store.queue_depth(&s.dlq_url, 10).await;
    match (inbound, dlq) {
        (Ok(inbound), Ok(dlq)) => Json(json!({
            "available": true,
            "inbound": { "url": s.queue_url, "depth": inbound },
            "dlq": { "url": s.dlq_url, "depth": dlq },
        }))
        .into_response(),
        (Err(e), _) | (_, Err(e)) => failed(e),
    }
}

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
pub(super) async fn dead_letters(State(c): State<Console>) -> Response {
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
pub(super) async fn delete_dead_letter(
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

/// `GET /@console/api/metrics`: the last five minutes, one sample a second.
pub(super) async fn metrics(State(c): State<Console>) -> Response {
    let samples = crate::sync::lock(&c.inner.sampler).samples();
    Json(json!({ "intervalSecs": 1, "samples": samples })).into_response()
}
