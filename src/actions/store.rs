//! `store`: the message into the messages table, in queue order.

use crate::backend::{Position, StoredMessage};
use crate::envelope::Envelope;

use super::{ActionError, Actions};

impl Actions {
    /// Stores the message after the session's previous one. A group is handled
    /// one message at a time in queue order, so every message already stored
    /// at or after this one's `received_at` came before it in the queue, or is
    /// this very message (a redelivery: a crash between storing and deleting
    /// can hand back several finished messages of a group at once). One
    /// consistent range read of those keys finds a redelivery by id and places
    /// a new message after all of them, so the history keeps queue order even
    /// for frames received in the same millisecond, with several workers too.
    pub(super) async fn store(&self, env: &Envelope) -> Result<(), ActionError> {
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
}
