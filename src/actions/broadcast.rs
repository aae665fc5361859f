//! `broadcast`: the message to every connection of its session.

use crate::envelope::{Envelope, MessageFrame};

use super::{ActionError, Actions, encode, log_report};

impl Actions {
    pub(super) async fn broadcast(
        &self,
        env: &Envelope,
        seq: Option<u64>,
        exclude_sender: bool,
    ) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let frame = encode(&MessageFrame::from_envelope(env).with_seq(seq))?;
        let exclude = exclude_sender.then_some(env.sender.connection_id.as_str());
        let report = self
            .fanout
            .to_session(&endpoint, &env.session_id, frame, exclude)
            .await
            .map_err(ActionError::backend("broadcast"))?;
        log_report("broadcast", &report);
        Ok(())
    }
}
