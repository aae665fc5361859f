//! `store`: the message into the messages table, in queue order, with the
//! session's next `seq`.

use crate::backend::{Appended, Position, StoredMessage};
use crate::envelope::Envelope;

use super::{ActionError, Actions};

impl Actions {
    /// Stores the message after the session's previous one and returns its
    /// `seq`. A group is handled one message at a time in queue order, so
    /// every message already stored at or after this one's `received_at` came
    /// before it in the queue, or is this very message (a redelivery: a crash
    /// between storing and deleting can hand back several finished messages
    /// of a group at once). [`crate::backend::Messages::append`] reads those
    /// keys and the session's `seq` counter consistently, finds a redelivery
    /// by id (which keeps its `seq`) and places a new message after all of
    /// them with the next `seq`; the write is conditional on both, so the
    /// history keeps queue order and `seq` has no gap and no repeat even with
    /// several workers.
    pub(super) async fn store(&self, env: &Envelope) -> Result<Option<u64>, ActionError> {
        let msg = StoredMessage {
            session_id: env.session_id.clone(),
            id: env.id.clone(),
            action: env.action.clone(),
            sender: env.sender.clone(),
            received_at: env.received_at,
            // Both set by `append`.
            position: Position::at(env.received_at),
            seq: None,
            payload: env.payload.clone(),
            expires_at: env.received_at / 1000 + self.settings.retention.as_secs() as i64,
        };
        match self
            .messages
            .append(msg)
            .await
            .map_err(ActionError::backend("store"))?
        {
            Appended::Stored(seq) => Ok(Some(seq)),
            Appended::Already(seq) => {
                tracing::debug!(?seq, "message already stored (redelivery)");
                Ok(seq)
            }
        }
    }
}
