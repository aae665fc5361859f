//! `reply`: an `ack` frame to the sender.

use crate::envelope::{AckFrame, Envelope};

use super::{ActionError, Actions, encode};

impl Actions {
    pub(super) async fn reply(&self, env: &Envelope) -> Result<(), ActionError> {
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
}
