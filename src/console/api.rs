//! The console's JSON API (docs/dev.md lists every call and field): the
//! overview, connections (and disconnect), sessions, queue and metrics; the
//! dead-letter calls are in `dead_letters`. Reads are GETs; actions are
//! POSTs, each logged with the caller.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;

use axum::Json;
use axum::extract::{ConnectInfo, Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use serde_json::{Value, json};

use super::Console;
use crate::backend::{Connection, Messages};
use crate::gateway::DeleteOutcome;

/// What the console shows without the embedded store.
const NO_STORE: &str = "not available: this process runs no embedded store (switchboard gateway \
                        on AWS); the queue, the tables and the dead letters are in SQS and \
                        DynamoDB (see the AWS console, `switchboard replay-dlq`)";
/// Most connections read from the table per request.
const MAX_CONNECTIONS: usize = 10_000;

pub(super) fn unavailable() -> Response {
    Json(json!({ "available": false, "reason": NO_STORE })).into_response()
}

pub(super) fn failed(e: impl std::fmt::Display) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        Json(json!({ "error": e.to_string() })),
    )
        .into_response()
}

pub(super) fn answer(status: StatusCode, body: Value) -> Response {
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
            // `lastSeq`: the newest message's `seq`; `null` for messages
            // stored before sequence numbers existed (the page hides it).
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

/// `GET /@console/api/metrics`: the last five minutes, one sample a second.
pub(super) async fn metrics(State(c): State<Console>) -> Response {
    let samples = crate::sync::lock(&c.inner.sampler).samples();
    Json(json!({ "intervalSecs": 1, "samples": samples })).into_response()
}
