//! One message, handled once: parse the envelope, run its route's pipeline,
//! decide the outcome. No queue calls here; the loop around it acknowledges.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::Instrument;

use crate::actions::{ActionError, Actions, Pipelines};
use crate::backend::QueueMessage;
use crate::envelope::Envelope;
use crate::sync::now_ms;
use crate::telemetry::Metrics;
use crate::telemetry::trace::TraceContext;

/// What to do with a message after handling it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Finished: delete it.
    Done,
    /// Transient failure: keep it, make it visible again after `after` (its group
    /// stays blocked meanwhile: that is FIFO).
    Retry {
        /// Backoff before the next attempt.
        after: Duration,
        /// Why, for logs.
        reason: String,
    },
    /// Can never succeed: send the raw body to the DLQ with `reason`, then delete.
    Dead {
        /// Why, for the DLQ `reason` attribute.
        reason: String,
        /// Fixed label (`malformed`, `unknown_action`, ...) for metrics and `errorType`.
        kind: &'static str,
    },
}

impl Outcome {
    fn label(&self) -> &'static str {
        match self {
            Outcome::Done => "done",
            Outcome::Retry { .. } => "retried",
            Outcome::Dead { .. } => "dead",
        }
    }
}

/// Exponential backoff for retried messages, by receive count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// Delay after the first failed receive.
    pub base: Duration,
    /// Cap.
    pub max: Duration,
}

impl Default for Backoff {
    /// The worker's defaults: `--retry-base 2s`, `--retry-max 5m`.
    fn default() -> Self {
        Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(300),
        }
    }
}

impl Backoff {
    /// `base * 2^(receive_count-1)`, capped at `max`, in whole seconds (the
    /// unit of SQS visibility timeouts), at least one second.
    pub fn delay(&self, receive_count: u32) -> Duration {
        let exp = receive_count.saturating_sub(1).min(20);
        let d = self.base.saturating_mul(1 << exp).min(self.max);
        Duration::from_secs(d.as_secs_f64().ceil().max(1.0) as u64)
    }
}

/// Handles messages: envelope → pipeline → [`Outcome`].
#[derive(Clone)]
pub struct Handler {
    actions: Actions,
    pipelines: Pipelines,
    backoff: Backoff,
    metrics: Arc<Metrics>,
}

impl Handler {
    /// A handler running `pipelines` with `actions`.
    pub fn new(
        actions: Actions,
        pipelines: Pipelines,
        backoff: Backoff,
        metrics: Arc<Metrics>,
    ) -> Self {
        for action in pipelines.keys().chain(["unknown", "invalid"]) {
            metrics.init_action(action);
        }
        Handler {
            actions,
            pipelines,
            backoff,
            metrics,
        }
    }

    /// Handles one message once.
    pub async fn handle(&self, msg: &QueueMessage) -> Outcome {
        let started = Instant::now();
        let span = tracing::info_span!(
            "handle",
            otel.name = "handle",
            otel.kind = "consumer",
            trace_id = tracing::field::Empty,
            group = %msg.group_id,
            message_id = %msg.message_id,
            receive_count = msg.receive_count,
            queue_wait_ms = tracing::field::Empty,
            id = tracing::field::Empty,
            action = tracing::field::Empty,
        );
        // The trace the edge started: the time in the queue (from SentTimestamp)
        // is its next span, and handling continues from there.
        let now = now_ms();
        let parent =
            TraceContext::from_attributes(&msg.attributes).map(|edge| match msg.sent_at_ms {
                Some(sent) => crate::telemetry::queue_wait(&edge, sent, now),
                None => edge,
            });
        if let Some(sent) = msg.sent_at_ms {
            span.record("queue_wait_ms", now.saturating_sub(sent).max(0));
        }
        crate::telemetry::continue_trace(&span, parent.as_ref());
        let (label, outcome) = self.handle_inner(msg).instrument(span.clone()).await;
        self.metrics
            .handle_duration
            .with_label_values(&[label])
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .messages
            .with_label_values(&[label, outcome.label()])
            .inc();
        span.in_scope(|| match &outcome {
            Outcome::Done => tracing::debug!("done"),
            Outcome::Retry { after, reason } => tracing::warn!(?after, %reason, "will retry"),
            Outcome::Dead { reason, kind } => tracing::warn!(%kind, %reason, "dead letter"),
        });
        outcome
    }

    async fn handle_inner<'a>(&'a self, msg: &QueueMessage) -> (&'a str, Outcome) {
        let env = match Envelope::parse(&msg.body) {
            Ok(env) => env,
            Err(e) => {
                return (
                    "invalid",
                    Outcome::Dead {
                        reason: e.to_string(),
                        kind: e.kind(),
                    },
                );
            }
        };
        let span = tracing::Span::current();
        span.record("id", env.id.as_str());
        span.record("action", env.action.as_str());
        if env.session_id != msg.group_id {
            tracing::warn!(session = %env.session_id, "sessionId differs from the message group; order is kept per group");
        }
        let Some((label, steps)) = self.pipelines.route(&env.action) else {
            let known: Vec<&str> = self.pipelines.keys().collect();
            let reason = format!(
                "unknown action `{}`; known actions: {}",
                env.action,
                known.join(", ")
            );
            self.actions
                .notify_error(&env, "unknown_action", &reason)
                .await;
            return (
                "unknown",
                Outcome::Dead {
                    reason,
                    kind: "unknown_action",
                },
            );
        };
        let outcome = match self.actions.run(&env, steps).await {
            Ok(()) => Outcome::Done,
            Err(e) if e.is_retriable() => Outcome::Retry {
                after: self.backoff.delay(msg.receive_count),
                reason: e.to_string(),
            },
            Err(e) => {
                // Client mistakes are explained; internal failures are not leaked.
                let text = match &e {
                    ActionError::BadRequest { message, .. } => message.clone(),
                    _ => "the message could not be processed".to_owned(),
                };
                self.actions.notify_error(&env, e.kind(), &text).await;
                Outcome::Dead {
                    reason: e.to_string(),
                    kind: e.kind(),
                }
            }
        };
        (label, outcome)
    }
}

#[cfg(test)]
mod tests {
    use super::Backoff;
    use std::time::Duration;

    #[test]
    fn backoff_doubles_per_receive_and_caps() {
        let b = Backoff {
            base: Duration::from_secs(2),
            max: Duration::from_secs(60),
        };
        let got: Vec<u64> = (1..=7).map(|n| b.delay(n).as_secs()).collect();
        assert_eq!(got, [2, 4, 8, 16, 32, 60, 60]);
        assert_eq!(b.delay(0).as_secs(), 2);
        assert_eq!(b.delay(u32::MAX).as_secs(), 60);
        let small = Backoff {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        assert_eq!(
            small.delay(1),
            Duration::from_secs(1),
            "at least one second"
        );
    }
}
