//! What the worker does with a message: the steps of a route's pipeline
//! (`store`, `broadcast`, `direct`, `reply`, `history`, `resume`, `presence`
//! with `announce`, one file each) and the fan-out they use.

mod broadcast;
mod direct;
mod error;
pub mod fanout;
mod history;
mod leave;
mod pipeline;
mod presence;
mod reply;
mod resume;
mod store;

pub use error::ActionError;
pub use fanout::{Delivery, Fanout, FanoutReport, RetryPolicy};
pub use pipeline::{Pipelines, Step};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde::Serialize;
use tracing::Instrument;

use crate::backend::{Connections, Messages, StoredMessage};
use crate::envelope::{API_GATEWAY_MESSAGE_BYTES, Envelope, ErrorFrame, MessageFrame};

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
    /// Most messages one `resume` looks back (older ones are a gap:
    /// `complete: false`).
    pub resume_max: usize,
    /// Whether `$join` / `$leave` events are announced to the session
    /// (off: they are dropped, and counted).
    pub presence_events: bool,
}

impl Default for ActionSettings {
    fn default() -> Self {
        ActionSettings {
            callback_url: None,
            history_default: 50,
            history_max: 100,
            retention: Duration::from_secs(7 * 24 * 3600),
            max_direct_targets: 100,
            resume_max: 1000,
            presence_events: true,
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

    /// Runs `steps` in order; stops at the first failure. The `seq` given
    /// by `store` goes on the message frames of the steps after it.
    pub async fn run(&self, env: &Envelope, steps: &[Step]) -> Result<(), ActionError> {
        let mut seq = None;
        for step in steps {
            // One span per step, named after it (`store`, `broadcast`, ...).
            let name = step.to_string();
            let span = tracing::info_span!("step", otel.name = %name, step = %name);
            async {
                match step {
                    Step::Store => seq = self.store(env).await?,
                    Step::Broadcast { exclude_sender } => {
                        self.broadcast(env, seq, *exclude_sender).await?
                    }
                    Step::Direct => self.direct(env, seq).await?,
                    Step::Reply => self.reply(env).await?,
                    Step::History => self.history(env).await?,
                    Step::Resume => self.resume(env).await?,
                    Step::Presence => self.presence(env).await?,
                    Step::Announce => self.announce(env).await?,
                }
                Ok::<(), ActionError>(())
            }
            .instrument(span)
            .await?;
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
}

/// A frame as JSON, refused when @connections would not accept it.
fn encode(frame: &impl Serialize) -> Result<Bytes, ActionError> {
    let bytes = serde_json::to_vec(frame)
        .map_err(|e| ActionError::bad("internal", format!("cannot encode frame: {e}")))?;
    if bytes.len() > API_GATEWAY_MESSAGE_BYTES {
        return Err(ActionError::bad(
            "payload_too_large",
            format!(
                "the frame would be {} bytes; @connections accepts at most {API_GATEWAY_MESSAGE_BYTES}",
                bytes.len()
            ),
        ));
    }
    Ok(Bytes::from(bytes))
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

/// The `message` frame of a stored message, with its `seq` (history and resume).
fn stored_frame(m: &StoredMessage) -> MessageFrame {
    MessageFrame::new(
        &m.id,
        &m.session_id,
        &m.action,
        &m.sender,
        m.received_at,
        &m.payload,
    )
    .with_seq(m.seq)
}
