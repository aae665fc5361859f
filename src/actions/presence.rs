//! `presence`: who is in the session, to the sender; `announce`: a member's
//! `join` / `leave` (the `$join` / `$leave` events the edge enqueues) to the
//! session's other members.

use crate::envelope::{
    Envelope, JOIN_ACTION, LEAVE_ACTION, Member, PresenceEventFrame, PresenceFrame,
};

use super::{ActionError, Actions, encode, log_report};

impl Actions {
    pub(super) async fn presence(&self, env: &Envelope) -> Result<(), ActionError> {
        let endpoint = self.require_endpoint(env)?;
        let mut frame = PresenceFrame {
            kind: "presence".into(),
            id: env.id.clone(),
            session_id: env.session_id.clone(),
            count: 0,
            members: Vec::new(),
        };
        // Every page is read for the exact count; the first 100 are listed.
        let mut cursor = None;
        loop {
            let page = self
                .connections()
                .by_session(&env.session_id, cursor)
                .await
                .map_err(ActionError::backend("presence"))?;
            frame.count += page.items.len() as u64;
            let room = PresenceFrame::MAX_MEMBERS.saturating_sub(frame.members.len());
            frame
                .members
                .extend(page.items.into_iter().take(room).map(|c| Member {
                    connection_id: c.connection_id,
                    user_id: c.user_id,
                    connected_at: c.connected_at,
                }));
            match page.next {
                Some(n) => cursor = Some(n),
                None => break,
            }
        }
        let bytes = encode(&frame)?;
        self.fanout
            .to_connection_id(&endpoint, &env.sender.connection_id, bytes)
            .await;
        Ok(())
    }

    pub(super) async fn announce(&self, env: &Envelope) -> Result<(), ActionError> {
        let event = match env.action.as_str() {
            JOIN_ACTION => "join",
            LEAVE_ACTION => "leave",
            other => {
                return Err(ActionError::bad(
                    "bad_request",
                    format!(
                        "announce runs on {JOIN_ACTION} and {LEAVE_ACTION} events, not `{other}`"
                    ),
                ));
            }
        };
        let counter = self.fanout.metrics().presence_events.clone();
        if !self.settings.presence_events {
            counter.with_label_values(&[event, "off"]).inc();
            return Ok(());
        }
        let endpoint = self.require_endpoint(env)?;
        let frame = encode(&PresenceEventFrame {
            kind: event.into(),
            session_id: env.session_id.clone(),
            connection_id: env.sender.connection_id.clone(),
            user_id: env.sender.user_id.clone(),
            at: env.received_at,
        })?;
        // Never to the connection that joins (it may not be postable yet) or
        // leaves (it is gone).
        let report = self
            .fanout
            .to_session(
                &endpoint,
                &env.session_id,
                frame,
                Some(env.sender.connection_id.as_str()),
            )
            .await
            .map_err(ActionError::backend("announce"))?;
        log_report("announce", &report);
        counter.with_label_values(&[event, "announced"]).inc();
        Ok(())
    }
}
