//! What the worker does with a message: the steps of a route's pipeline
//! (`store`, `broadcast`, `direct`, `reply`, `history`) and the fan-out they use.

pub mod fanout;
mod pipeline;

pub use fanout::{Delivery, Fanout, FanoutReport, RetryPolicy};
pub use pipeline::{Pipelines, Step};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use serde_json::Value;

use crate::backend::{BackendError, Connection, Connections, Messages, Position, StoredMessage};
use crate::envelope::{AckFrame, Envelope, ErrorFrame, HistoryFrame, MessageFrame};

/// Largest frame the @connections API accepts (PostToConnection: 128 KiB).
pub const MAX_FRAME_BYTES: usize = 128 * 1024;

/// Settings of the steps.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionSettings {
    /// Overrides the envelope's callback: the @connections endpoint for every message.
    pub callback_url: Option<String>,
    /// Messages returned by `history` when `data.limit` is absent.
    pub history_default: usize,
    /// Most messages `history` returns.
    pub history_max: usize,
    /// How long stored messages are kept (their `expiresAt`).
    pub retention: Duration,
    /// Most userIds + connectionIds one `direct` message may name.
    pub max_direct_targets: usize,
}

impl Default for ActionSettings {
    fn default() -> Self {
        ActionSettings {
            callback_url: None,
            history_default: 50,
            history_max: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_direct_targets: 100,
        }
    }
}

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A table or queue call failed; retriable or not by its kind.
    #[error("{step}: {source}")]
    Backend {
        /// The step (store, broadcast, ...).
        step: &'static str,
        /// The backend error.
        #[source]
        source: BackendError,
    },
    /// The message can never succeed (bad `data`, frame too large).
    #[error("{message}")]
    BadRequest {
        /// Error frame code.
        code: &'static str,
        /// Explanation for the sender and the DLQ.
        message: String,
    },
    /// Nowhere to deliver to.
    #[error("no @connections endpoint: the envelope has no callback and --callback-url is not set")]
    NoEndpoint,
}

impl ActionError {
    /// Whether the message should be retried later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ActionError::Backend { source, .. } if source.is_retriable())
    }

    /// Fixed label for metrics and the DLQ `errorType` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionError::Backend { source, .. } => source.kind.as_str(),
            ActionError::BadRequest { code, .. } => code,
            ActionError::NoEndpoint => "no_endpoint",
        }
    }

    fn backend(step: &'static str) -> impl FnOnce(BackendError) -> ActionError {
        move |source| ActionError::Backend { step, source }
    }

    fn bad(code: &'static str, message: impl Into<String>) -> ActionError {
        ActionError::BadRequest {
            code,
            message: message.into(),
        }
    }
}

/// Runs steps against the tables and the fan-out.
#[derive(Clone)]
pub struct Actions {
    messages: Arc<dyn Messages>,
    fanout: Fanout,
    settings: ActionSettings,
}

fn encode(frame: &impl Serialize) -> Result<Bytes, ActionError> {
    let bytes = serde_json::to_vec(frame)
        .map_err(|e| ActionError::bad("internal", format!("cannot encode frame: {e}")))?;
    if bytes.len() > MAX_FRAME_BYTES {
        return Err(ActionError::bad(
            "payload_too_large",
            format!(
                "the frame would be {} bytes; @connections accepts at most {MAX_FRAME_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(Bytes::from(bytes))
}

impl Actions {
    /// Steps over `messages` and `fanout` (which holds the connections table).
    pub fn new(messages: Arc<dyn Messages>, fanout: Fanout, settings: ActionSettings) -> Self {
        Actions {
            messages,
            fanout,
            settings,
        }
    }

    fn connections(&self) -> &Arc<dyn Connections> {
        self.fanout.connections()
    }

    /// The @connections endpoint for this message.
    pub fn endpoint(&self, env: &Envelope) -> Option<String> {
        self.settings
            .callback_url
            .clone()
            .or_else(|| env.callback.as_ref().map(|c| c.endpoint()))
    }

    fn require_endpoint(&self, env: &Envelope) -> Result<String, ActionError> {
        self.endpoint(env).ok_or(ActionError::NoEndpoint)
    }

    /// Runs `steps` in order; stops at the first failure.
    pub async fn run(&self, env: &Envelope, steps: &[Step]) -> Result<(), ActionError> {
        for step in steps {
            match step {
                Step::Store => self.store(env).await?,
                Step::Broadcast { exclude_sender } => self.broadcast(env, *exclude_sender).await?,
                Step::Direct => self.direct(env).await?,
                Step::Reply => self.reply(env).await?,
                Step::History => self.history(env).await?,
            }
        }
        Ok(())
    }

    /// Best effort: tells the sender its message failed. Never fails the message.
    pub async fn notify_error(&self, env: &Envelope, code: &str, message: &str) {
        let Some(endpoint) = self.endpoint(env) else {
            return;
        };
        let Ok(frame) = encode(&ErrorFrame::new(&env.id, code, message)) else {
            return;
        };
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, frame)
            .await;
    }

    /// Stores the message after the session's previous one. A group is handled
    /// one message at a time in queue order, so every message already stored
    /// at or after this one's `received_at` came before it in the queue, or is
    /// this very message (a redelivery: a crash between storing and deleting
    /// can hand back several finished messages of a group at once). One
    /// consistent range read of those keys finds a redelivery by id and places
    /// a new message after all of them, so the history keeps queue order even
    /// for frames received in the same millisecond, with several workers too.
    async fn store(&self, env: &Envelope) -> Result<(), ActionError> {
        let later = self
            .messages
            .keys_since(&env.session_id, env.received_at)
            .await
            .map_err(ActionError::backend("store"))?;
        if later.iter().any(|k| k.id == env.id) {
            tracing::debug!("message already stored (redelivery)");
            return Ok(());
        }
        let newest = later.iter().map(|k| k.position).max();
        let position = Position::after(env.received_at, newest);
        let msg = StoredMessage {
            session_id: env.session_id.clone(),
            id: env.id.clone(),
            action: env.action.clone(),
            sender: env.sender.clone(),
            received_at: env.received_at,
            position,
            payload: env.payload.clone(),
            expires_at: env.received_at / 1000 + self.settings.retention.as_secs() as i64,
        };
        let written = self
            .messages
            .put_if_absent(&msg)
            .await
            .map_err(ActionError::backend("store"))?;
        if !written {
            tracing::debug!("message already stored (redelivery)");
        }
        Ok(())
    }

    async fn broadcast(&self, env: &Envelope, exclude_sender: bool) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let frame = encode(&MessageFrame::from_envelope(env))?;
        let exclude = exclude_sender.then_some(env.sender.connection_id.as_str());
        let report = self
            .fanout
            .to_session(&endpoint, &env.session_id, frame, exclude)
            .await
            .map_err(ActionError::backend("broadcast"))?;
        log_report("broadcast", &report);
        Ok(())
    }

    async fn direct(&self, env: &Envelope) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let targets = DirectTargets::from_payload(&env.payload, self.settings.max_direct_targets)?;
        let frame = encode(&MessageFrame::from_envelope(env))?;
        let mut recipients: BTreeMap<String, Connection> = BTreeMap::new();
        for user in &targets.user_ids {
            let mut cursor = None;
            loop {
                let page = self
                    .connections()
                    .by_user(user, cursor)
                    .await
                    .map_err(ActionError::backend("direct"))?;
                for c in page.items {
                    if c.session_id == env.session_id {
                        recipients.insert(c.connection_id.clone(), c);
                    }
                }
                match page.next {
                    Some(n) => cursor = Some(n),
                    None => break,
                }
            }
        }
        for id in &targets.connection_ids {
            if recipients.contains_key(id) {
                continue;
            }
            let conn = self
                .connections()
                .get(id)
                .await
                .map_err(ActionError::backend("direct"))?;
            // Only connections of the same session: a client cannot reach into
            // other sessions by naming their connection ids.
            if let Some(c) = conn.filter(|c| c.session_id == env.session_id) {
                recipients.insert(c.connection_id.clone(), c);
            }
        }
        let recipients: Vec<Connection> = recipients.into_values().collect();
        let report = self
            .fanout
            .to_connections(&endpoint, recipients, frame)
            .await;
        log_report("direct", &report);
        Ok(())
    }

    async fn reply(&self, env: &Envelope) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let frame = encode(&AckFrame {
            kind: "ack".into(),
            id: env.id.clone(),
            session_id: env.session_id.clone(),
            action: env.action.clone(),
        })?;
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, frame)
            .await;
        Ok(())
    }

    async fn history(&self, env: &Envelope) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let limit = match env.payload.get("limit") {
            None | Some(Value::Null) => self.settings.history_default,
            Some(v) => match v.as_u64() {
                Some(n) if n >= 1 => (n as usize).min(self.settings.history_max),
                _ => {
                    return Err(ActionError::bad(
                        "bad_request",
                        format!("data.limit must be a positive integer, got {v}"),
                    ));
                }
            },
        };
        let stored = self
            .messages
            .latest(&env.session_id, limit)
            .await
            .map_err(ActionError::backend("history"))?;
        let mut frame = HistoryFrame {
            kind: "history".into(),
            id: env.id.clone(),
            session_id: env.session_id.clone(),
            messages: stored.iter().map(stored_frame).collect(),
        };
        // Drop the oldest messages until the frame fits in one @connections post.
        let bytes = loop {
            match encode(&frame) {
                Ok(b) => break b,
                Err(_) if !frame.messages.is_empty() => {
                    frame.messages.remove(0);
                }
                Err(e) => return Err(e),
            }
        };
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, bytes)
            .await;
        Ok(())
    }
}

fn stored_frame(m: &StoredMessage) -> MessageFrame {
    MessageFrame {
        kind: "message".into(),
        id: m.id.clone(),
        session_id: m.session_id.clone(),
        action: m.action.clone(),
        from: crate::envelope::FrameSender {
            user_id: m.sender.user_id.clone(),
            connection_id: m.sender.connection_id.clone(),
        },
        sent_at: m.received_at,
        payload: m.payload.clone(),
    }
}

fn log_report(step: &str, r: &FanoutReport) {
    if r.failed + r.throttled > 0 {
        tracing::warn!(
            step,
            ok = r.ok,
            gone = r.gone,
            throttled = r.throttled,
            failed = r.failed,
            "fan-out finished with failed recipients"
        );
    } else {
        tracing::debug!(step, ok = r.ok, gone = r.gone, "fan-out finished");
    }
}

/// `data.to` of a `direct` message.
#[derive(Debug, Default, PartialEq, Eq)]
struct DirectTargets {
    user_ids: Vec<String>,
    connection_ids: Vec<String>,
}

impl DirectTargets {
    fn from_payload(payload: &Value, max: usize) -> Result<Self, ActionError> {
        let bad = |m: &str| ActionError::bad("bad_request", m);
        let to = payload.get("to").ok_or_else(|| {
            bad("direct needs data.to = {\"userIds\": [...], \"connectionIds\": [...]}")
        })?;
        let list = |key: &str| -> Result<Vec<String>, ActionError> {
            match to.get(key) {
                None | Some(Value::Null) => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| {
                        i.as_str()
                            .filter(|s| !s.is_empty())
                            .map(str::to_owned)
                            .ok_or_else(|| {
                                bad(&format!("data.to.{key} must hold non-empty strings"))
                            })
                    })
                    .collect(),
                Some(_) => Err(bad(&format!("data.to.{key} must be an array of strings"))),
            }
        };
        let t = DirectTargets {
            user_ids: list("userIds")?,
            connection_ids: list("connectionIds")?,
        };
        let n = t.user_ids.len() + t.connection_ids.len();
        if n == 0 {
            return Err(bad("data.to names no userIds and no connectionIds"));
        }
        if n > max {
            return Err(bad(&format!(
                "data.to names {n} recipients; at most {max} are allowed"
            )));
        }
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn direct_targets_parse_and_validate() {
        let t = DirectTargets::from_payload(
            &json!({"to": {"userIds": ["bob"], "connectionIds": ["c1", "c2"]}}),
            100,
        )
        .unwrap();
        assert_eq!(t.user_ids, ["bob"]);
        assert_eq!(t.connection_ids, ["c1", "c2"]);

        for (payload, text) in [
            (json!(null), "needs data.to"),
            (json!({"to": {}}), "names no userIds"),
            (json!({"to": {"userIds": "bob"}}), "must be an array"),
            (json!({"to": {"userIds": [1]}}), "non-empty strings"),
            (
                json!({"to": {"connectionIds": ["a", "b", "c"]}}),
                "at most 2",
            ),
        ] {
            let err = DirectTargets::from_payload(&payload, 2).unwrap_err();
            assert!(err.to_string().contains(text), "{payload}: {err}");
            assert!(!err.is_retriable());
            assert_eq!(err.kind(), "bad_request");
        }
    }
}
