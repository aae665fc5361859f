//! `switchboard replay-dlq`: moves dead letters back to the queue they came
//! from, one message group at a time and in each group's order.
//!
//! For every message received from the dead-letter queue:
//! 1. send the body to the target queue, with the same MessageGroupId, a
//!    deduplication id derived from the dead letter's message id (see
//!    [`replay_dedup_id`]) and the attributes described in [`replay_attributes`];
//! 2. only once that send succeeded, delete it from the dead-letter queue.
//!
//! A crash between 1 and 2 leaves a message in both queues: at most the
//! messages in flight are duplicated, none is lost, and a rerun within SQS's
//! 5-minute deduplication window re-sends them under the same deduplication id,
//! so SQS drops the second copy. Delivery stays at-least-once either way and
//! every frame carries the envelope id, so clients drop what they saw twice.
//!
//! Order: a FIFO queue hands out a group's next message only after the one
//! before it is deleted (or released), so receiving, sending and deleting one
//! message after another keeps each group's dead-letter order. When a send
//! fails, the rest of that group stays in the dead-letter queue for the next
//! run rather than overtaking the failed message.
//!
//! Messages it must not move now (other groups under `--group`, the rest of a
//! group after a failure, everything in `--dry-run`) are held in flight until
//! the end of the run, so the queue keeps handing out the others, and then
//! released (visibility 0).
//!
//! A run ends when the dead-letter queue has nothing new to hand out. A copy
//! it sent that fails again comes back as a new dead letter while the run is
//! still going (the worker's dead letter names it in `sourceMessageId`; a
//! queue's redrive keeps its message id): it is held too, and left for the
//! next run, so a poison message is moved once per run, not back and forth.

//!
//! Files: this one has the options, the events and the summary; `attributes.rs`
//! what a replayed copy carries (deduplication id, attributes); `order.rs` the
//! receive loop that keeps each group's order and holds back what must not move.

mod attributes;
mod order;

use std::time::Duration;

use crate::backend::{BackendError, Queue};
pub use attributes::{
    ATTR_DEAD_LETTER_REASON, ATTR_REPLAY_OF, ATTR_REPLAYED_AT, DEAD_LETTER_ATTRIBUTES,
    replay_attributes, replay_dedup_id,
};

/// What to move, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayOptions {
    /// Most messages to take out of the dead-letter queue (moved or failed).
    pub max: Option<usize>,
    /// Move only this message group; the others stay where they are.
    pub group: Option<String>,
    /// Report what would move; send and delete nothing.
    pub dry_run: bool,
    /// How long received messages stay invisible to others. Messages held back
    /// stay invisible this long when the process dies before releasing them.
    pub visibility: Duration,
    /// Long-poll wait of each receive; an empty receive ends the run.
    pub wait: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        ReplayOptions {
            max: None,
            group: None,
            dry_run: false,
            visibility: Duration::from_secs(5 * 60),
            wait: Duration::from_secs(2),
        }
    }
}

/// Why a message was left in the dead-letter queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SkipReason {
    /// Another group than `--group`.
    OtherGroup,
    /// An earlier message of its group failed in this run.
    GroupFailed,
    /// A copy this run sent that came back dead (dead-lettered again by the
    /// worker, or moved back by the queue's redrive): moving it again in
    /// the same run could go round for as long as the worker keeps up.
    DeadAgain,
}

/// What happened to one message, in the order it happened.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// Sent to the target queue and deleted from the dead-letter queue.
    Moved {
        /// Message group.
        group: String,
        /// Dead letter's message id.
        id: String,
        /// Message id in the target queue.
        new_id: String,
    },
    /// Dry run: would be moved.
    WouldMove {
        /// Message group.
        group: String,
        /// Dead letter's message id.
        id: String,
        /// The `reason` attribute, when the worker dead-lettered it (SQS's own
        /// redrive after maxReceiveCount sets none).
        reason: Option<String>,
    },
    /// Left in the dead-letter queue.
    Skipped {
        /// Message group.
        group: String,
        /// Dead letter's message id.
        id: String,
        /// Why.
        why: SkipReason,
    },
    /// Not moved (send failed), or moved but not deleted (delete failed: it is
    /// now in both queues). Either way it is still in the dead-letter queue.
    Failed {
        /// Message group.
        group: String,
        /// Dead letter's message id.
        id: String,
        /// What went wrong.
        error: String,
    },
}

/// Counts of a run: the summary line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    /// Moved (or, in a dry run, would be moved).
    pub moved: usize,
    /// Left in the dead-letter queue on purpose.
    pub skipped: usize,
    /// Left in the dead-letter queue because a call failed.
    pub failed: usize,
    /// Whether this was a dry run.
    pub dry_run: bool,
}

impl Summary {
    /// The one-line summary every run prints.
    pub fn line(&self) -> String {
        if self.dry_run {
            format!(
                "dry run: would move {}, skipped {}, failed {} (nothing was changed)",
                self.moved, self.skipped, self.failed
            )
        } else {
            format!(
                "moved {}, skipped {}, failed {}",
                self.moved, self.skipped, self.failed
            )
        }
    }
}

/// A run that could not go on (the dead-letter queue could not be read).
#[derive(Debug, thiserror::Error)]
#[error("{source}; stopped after: {}", summary.line())]
pub struct ReplayError {
    /// The failure.
    pub source: BackendError,
    /// What was done before it.
    pub summary: Summary,
}

/// Moves dead letters from `dlq` to `target` as described in the module docs.
/// `on_event` is called once per message as it is decided. Returns the counts;
/// an `Err` means the run stopped early because the dead-letter queue could not
/// be read (what was moved before stays moved).
pub async fn replay(
    dlq: &dyn Queue,
    target: &dyn Queue,
    opts: &ReplayOptions,
    mut on_event: impl FnMut(&Event),
) -> Result<Summary, ReplayError> {
    let mut state = order::State::new(opts.dry_run);
    let result = order::run(dlq, target, opts, &mut state, &mut on_event).await;
    order::release(dlq, &mut state).await;
    match result {
        Ok(()) => Ok(state.summary),
        Err(source) => Err(ReplayError {
            source,
            summary: state.summary,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_lines() {
        let s = Summary {
            moved: 3,
            skipped: 2,
            failed: 1,
            dry_run: false,
        };
        assert_eq!(s.line(), "moved 3, skipped 2, failed 1");
        let d = Summary { dry_run: true, ..s };
        assert!(d.line().starts_with("dry run: would move 3"));
    }
}
