//! `history`: the session's last stored messages, to the sender.

use serde_json::Value;

use crate::envelope::{API_GATEWAY_MESSAGE_BYTES, Envelope, HistoryFrame};

use super::{ActionError, Actions, stored_frame};

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
        let messages = stored.iter().map(stored_frame).collect();
        // Only what cannot fit in one @connections post is left out (the
        // frame says `truncated`); one large message never empties it.
        let (_, bytes) = HistoryFrame::fitting(
            &env.id,
            &env.session_id,
            messages,
            API_GATEWAY_MESSAGE_BYTES,
        )
        .map_err(|e| ActionError::bad("internal", format!("cannot encode frame: {e}")))?;
        let bytes = bytes::Bytes::from(bytes);
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, bytes)
            .await;
        Ok(())
    }
}
