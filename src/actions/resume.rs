//! `resume`: the stored messages after the sender's last `seq`, to the sender.
//! It runs in the session's FIFO group, so the messages it returns end
//! exactly where the live stream the client receives begins.

use serde_json::Value;

use crate::envelope::{API_GATEWAY_MESSAGE_BYTES, Envelope, ResumedFrame};

use super::{ActionError, Actions, stored_frame};

/// `data.since` of a resume request: a non-negative integer.
fn since_of(payload: &Value) -> Result<u64, ActionError> {
    match payload.get("since") {
        Some(v) => v.as_u64().ok_or_else(|| {
            ActionError::bad(
                "bad_request",
                format!(
                    "data.since must be the last seq you hold, a non-negative integer (0 = everything retained), got {v}"
                ),
            )
        }),
        None => Err(ActionError::bad(
            "bad_request",
            "resume needs data.since: the last seq you hold (0 = everything retained)",
        )),
    }
}

impl Actions {
    pub(super) async fn resume(&self, env: &Envelope) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let since = since_of(&env.payload)?;
        let read = self
            .messages
            .since_seq(&env.session_id, since, self.settings.resume_max)
            .await
            .map_err(ActionError::backend("resume"))?;
        if since > read.last_seq {
            return Err(ActionError::bad(
                "bad_request",
                format!(
                    "data.since is {since}, beyond the session's latest seq {}",
                    read.last_seq
                ),
            ));
        }
        // Complete when every seq from since + 1 to the latest is here.
        let complete = read.messages.len() as u64 == read.last_seq - since
            && read
                .messages
                .iter()
                .zip(since + 1..)
                .all(|(m, want)| m.seq == Some(want));
        let messages = read.messages.iter().map(stored_frame).collect();
        let frame = ResumedFrame {
            kind: "resumed".into(),
            id: env.id.clone(),
            session_id: env.session_id.clone(),
            since,
            last: read.last_seq,
            messages: Vec::new(),
            more: false,
            complete,
        };
        let (frame, bytes) = frame
            .fitting(messages, API_GATEWAY_MESSAGE_BYTES)
            .map_err(|e| ActionError::bad("internal", format!("cannot encode frame: {e}")))?;
        tracing::debug!(
            since,
            last = frame.last,
            sent = frame.messages.len(),
            more = frame.more,
            complete = frame.complete,
            "resumed"
        );
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, bytes.into())
            .await;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::since_of;
    use serde_json::json;

    #[test]
    fn since_must_be_a_non_negative_integer() {
        assert_eq!(since_of(&json!({"since": 0})).unwrap(), 0);
        assert_eq!(since_of(&json!({"since": 42})).unwrap(), 42);
        for bad in [
            json!({"since": -1}),
            json!({"since": "3"}),
            json!({"since": 1.5}),
            json!({"since": null}),
            json!({}),
            json!(null),
        ] {
            let e = since_of(&bad).unwrap_err();
            assert_eq!(e.kind(), "bad_request", "{bad}");
        }
    }
}
