//! The long-polling receivers.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBackoff, ExponentialBuilder};

use super::held::Held;
use super::state::Core;
use crate::backend::{MAX_BATCH, ReceiveRequest};

/// How long a receive under way may still take once the drain started.
const DRAIN_RECEIVE_GRACE: Duration = Duration::from_millis(500);

/// The longest base delay between failed receives (jitter adds up to as much
/// again, so at most 10 s).
const RECEIVE_BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Delays after failed receives in a row: 200 ms doubling up to 5 s, each plus
/// up to as much again of jitter, so pollers (and workers) that failed
/// together do not all come back at once. Without an end: a poller retries
/// until the queue answers or the drain starts.
fn receive_backoff() -> ExponentialBackoff {
    ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(200))
        .with_max_delay(RECEIVE_BACKOFF_MAX)
        .without_max_times()
        .with_jitter()
        .build()
}

/// One long-polling receiver.
pub(super) async fn poll(core: Arc<Core>, index: usize) {
    let mut delays = receive_backoff();
    loop {
        // Backpressure: receive only as many messages as there is room for.
        // Biased: once the drain started, a free slot must not win the race
        // and start another long poll (each one delays the exit by `wait`).
        let first = tokio::select! {
            biased;
            _ = core.stop_new.cancelled() => return,
            p = core.slots.clone().acquire_owned() => match p { Ok(p) => p, Err(_) => return },
        };
        let mut slots = vec![first];
        while slots.len() < MAX_BATCH {
            match core.slots.clone().try_acquire_owned() {
                Ok(p) => slots.push(p),
                Err(_) => break,
            }
        }
        let req = ReceiveRequest {
            max_messages: slots.len() as u32,
            wait: core.settings.wait,
            visibility: core.settings.visibility,
        };
        // A receive under way when the drain starts gets a moment to bring what
        // it already has (released at once by `submit`), then it is abandoned:
        // waiting out a 20 s long poll would delay every stop. An abandoned
        // receive whose answer was already on its way hides at most 10 messages
        // for one visibility timeout; none is lost.
        let abandon = async {
            core.stop_new.cancelled().await;
            tokio::time::sleep(DRAIN_RECEIVE_GRACE).await;
        };
        let result = tokio::select! {
            r = core.queue.receive(req) => r,
            _ = abandon => return,
            _ = core.cut_off.cancelled() => return,
        };
        match result {
            Ok(messages) => {
                delays = receive_backoff();
                core.health.set_polling(true);
                let result = if messages.is_empty() {
                    "empty"
                } else {
                    "messages"
                };
                core.metrics.polls.with_label_values(&[result]).inc();
                core.metrics.messages_received.inc_by(messages.len() as u64);
                let held: Vec<Held> = messages
                    .into_iter()
                    .zip(slots)
                    .filter_map(|(msg, slot)| core.in_hand.take(msg, slot))
                    .collect();
                core.submit(held).await;
            }
            Err(e) => {
                drop(slots);
                core.health.set_polling(false);
                core.metrics.polls.with_label_values(&["error"]).inc();
                core.metrics
                    .poll_errors
                    .with_label_values(&[e.kind.as_str()])
                    .inc();
                let delay = delays.next().unwrap_or(RECEIVE_BACKOFF_MAX);
                tracing::warn!(poller = index, error = %e, ?delay, "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = core.stop_new.cancelled() => return,
                }
            }
        }
    }
}
