//! `store`: the message into the messages table, in queue order, with the
//! session's next `seq`.

use crate::backend::{BackendError, ErrorKind, Position, StoredKeys, StoredMessage};
use crate::envelope::Envelope;

use super::{ActionError, Actions};

impl Actions {
    /// Stores the message after the session's previous one and returns its
    /// `seq`. A group is handled one message at a time in queue order, so
    /// every message already stored at or after this one's `received_at` came
    /// before it in the queue, or is this very message (a redelivery: a crash
    /// between storing and deleting can hand back several finished messages
    /// of a group at once). One consistent range read of those keys and of
    /// the session's `seq` counter finds a redelivery by id (which keeps its
    /// `seq`) and places a new message after all of them with the next `seq`;
    /// the write is conditional on both, so the history keeps queue order and
    /// `seq` has no gap and no repeat even with several workers.
    pub(super) async fn store(&self, env: &Envelope) -> Result<Option<u64>, ActionError> {
        let read = self.read_keys(env).await?;
        if let Some(seq) = stored_seq(&read, env) {
            tracing::debug!(?seq, "message already stored (redelivery)");
            return Ok(seq);
        }
        let newest = read.keys.iter().map(|k| k.position).max();
        let seq = read.last_seq + 1;
        let msg = StoredMessage {
            session_id: env.session_id.clone(),
            id: env.id.clone(),
            action: env.action.clone(),
            sender: env.sender.clone(),
            received_at: env.received_at,
            position: Position::after(env.received_at, newest),
            payload: env.payload.clone(),
            expires_at: env.received_at / 1000 + self.settings.retention.as_secs() as i64,
            seq: Some(seq),
        };
        let written = self
            .messages
            .put_sequenced(&msg)
            .await
            .map_err(ActionError::backend("store"))?;
        if written {
            return Ok(Some(seq));
        }
        // Someone else wrote between the read and the write: a worker that
        // stored this very message (then it has its seq now), or another
        // message of the session (a lapsed visibility): retry from the queue.
        let again = self.read_keys(env).await?;
        match stored_seq(&again, env) {
            Some(seq) => {
                tracing::debug!(?seq, "message stored concurrently (redelivery)");
                Ok(seq)
            }
            None => Err(ActionError::backend("store")(BackendError::new(
                ErrorKind::Throttled,
                "store",
                "the session's seq moved while storing: retrying",
            ))),
        }
    }

    async fn read_keys(&self, env: &Envelope) -> Result<StoredKeys, ActionError> {
        self.messages
            .keys_since(&env.session_id, env.received_at)
            .await
            .map_err(ActionError::backend("store"))
    }
}

/// `Some(its seq)` if this message is already stored (`Some(None)` for one
/// stored before sequence numbers existed).
fn stored_seq(read: &StoredKeys, env: &Envelope) -> Option<Option<u64>> {
    read.keys.iter().find(|k| k.id == env.id).map(|k| k.seq)
}
