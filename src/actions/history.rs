//! `history`: the session's last stored messages, to the sender.

use serde_json::Value;

use crate::envelope::{Envelope, HistoryFrame, MessageFrame};

use super::{ActionError, Actions, encode};

impl Actions {
    pub(super) async fn history(&self, env: &Envelope) -> Result<(), ActionError> {
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
            messages: stored
                .iter()
                .map(|m| {
                    MessageFrame::new(
                        &m.id,
                        &m.session_id,
                        &m.action,
                        &m.sender,
                        m.received_at,
                        &m.payload,
                    )
                })
                .collect(),
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
