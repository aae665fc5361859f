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

pub mod command;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use crate::backend::{
    BackendError, MAX_BATCH, OutgoingMessage, Queue, QueueMessage, ReceiveRequest,
};

/// Attributes the worker sets on a dead letter (`worker::Core::dead_letter`).
/// They describe the dead-lettering, not the message, so they are not copied
/// onto the replayed message; `reason` is carried over as
/// [`ATTR_DEAD_LETTER_REASON`].
pub const DEAD_LETTER_ATTRIBUTES: &[&str] = &[
    "reason",
    "errorType",
    "sourceMessageId",
    "sourceQueue",
    "receiveCount",
    "deadLetteredAt",
];

/// On a replayed message: the dead letter's message id.
pub const ATTR_REPLAY_OF: &str = "replayOf";
/// On a replayed message: when it was replayed, epoch ms.
pub const ATTR_REPLAYED_AT: &str = "replayedAt";
/// On a replayed message: the `reason` the worker gave when dead-lettering it.
pub const ATTR_DEAD_LETTER_REASON: &str = "deadLetterReason";

/// SQS's limit of message attributes per message.
const MAX_ATTRIBUTES: usize = 10;
/// SQS's limit on MessageDeduplicationId.
const MAX_DEDUP_ID: usize = 128;
/// Prefix of every replayed message's deduplication id.
const DEDUP_PREFIX: &str = "replay-";

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

/// The deduplication id of the replayed copy of dead letter `dlq_message_id`.
///
/// Derived from the dead letter's message id, which SQS assigns anew to every
/// message it stores, because:
/// - the original deduplication id (the envelope id) may still be inside the
///   target queue's 5-minute window when a poison message is fixed and
///   replayed quickly, and SQS would silently drop the replay;
/// - a rerun after a crash between send and delete re-sends the same dead
///   letter with the same id, so SQS drops that duplicate (within 5 minutes);
/// - a replayed message that is dead-lettered again gets a new dead-letter
///   message id, so replaying it again is not swallowed either.
pub fn replay_dedup_id(dlq_message_id: &str) -> Result<String, String> {
    let id = format!("{DEDUP_PREFIX}{dlq_message_id}");
    if id.len() > MAX_DEDUP_ID {
        return Err(format!(
            "message id `{dlq_message_id}` is too long for a deduplication id ({} > {MAX_DEDUP_ID} characters)",
            id.len()
        ));
    }
    Ok(id)
}

/// The attributes of the replayed copy: the dead letter's own attributes except
/// the worker's dead-letter metadata ([`DEAD_LETTER_ATTRIBUTES`]), then
/// `replayOf`, `replayedAt` and `deadLetterReason` while SQS's limit of 10
/// attributes leaves room (the message's own attributes come first).
///
/// `reason` is not kept under its own name: on the target queue it would make
/// the message look like a dead letter, and a second dead-lettering writes a
/// fresh `reason` of its own.
pub fn replay_attributes(msg: &QueueMessage, now_ms: i64) -> BTreeMap<String, String> {
    let mut out: BTreeMap<String, String> = msg
        .attributes
        .iter()
        .filter(|(k, _)| !DEAD_LETTER_ATTRIBUTES.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let mut extra = vec![
        (ATTR_REPLAY_OF, msg.message_id.clone()),
        (ATTR_REPLAYED_AT, now_ms.to_string()),
    ];
    if let Some(reason) = msg.attributes.get("reason") {
        extra.push((ATTR_DEAD_LETTER_REASON, reason.clone()));
    }
    for (k, v) in extra {
        if out.len() >= MAX_ATTRIBUTES {
            break;
        }
        out.entry(k.to_owned()).or_insert(v);
    }
    out
}

/// A message kept in flight until the end of the run, then released.
struct Held {
    receipt_handle: String,
}

#[derive(Default)]
struct State {
    summary: Summary,
    /// Every dead letter seen, by message id: counts each message once even
    /// when it is received again after its visibility timeout.
    seen: HashSet<String>,
    /// Messages held back, by message id (latest receipt handle).
    held: HashMap<String, Held>,
    /// Groups with a failure in this run: the rest of them stays put.
    failed_groups: HashSet<String>,
}

impl State {
    fn attempted(&self) -> usize {
        self.summary.moved + self.summary.failed
    }
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
    let mut state = State {
        summary: Summary {
            dry_run: opts.dry_run,
            ..Summary::default()
        },
        ..State::default()
    };
    let result = run(dlq, target, opts, &mut state, &mut on_event).await;
    release(dlq, &mut state).await;
    match result {
        Ok(()) => Ok(state.summary),
        Err(source) => Err(ReplayError {
            source,
            summary: state.summary,
        }),
    }
}

async fn run(
    dlq: &dyn Queue,
    target: &dyn Queue,
    opts: &ReplayOptions,
    state: &mut State,
    on_event: &mut impl FnMut(&Event),
) -> Result<(), BackendError> {
    loop {
        let want = match opts.max {
            Some(max) if state.attempted() >= max => return Ok(()),
            Some(max) => (max - state.attempted()).min(MAX_BATCH),
            None => MAX_BATCH,
        };
        let req = ReceiveRequest {
            max_messages: want as u32,
            wait: opts.wait,
            visibility: opts.visibility,
        };
        let batch = (|| dlq.receive(req))
            .retry(
                ExponentialBuilder::default()
                    .with_min_delay(Duration::from_millis(200))
                    .with_max_delay(Duration::from_secs(5))
                    .with_max_times(4),
            )
            .when(BackendError::is_retriable)
            .notify(|e, after| tracing::warn!(error = %e, ?after, "receive failed; retrying"))
            .await?;
        // Empty: nothing left that is visible. Only messages seen before: the
        // held ones came back after their visibility timeout, so every
        // message has been looked at.
        if batch.is_empty() || batch.iter().all(|m| state.seen.contains(&m.message_id)) {
            for m in batch {
                hold(state, m);
            }
            return Ok(());
        }
        // Within a batch, SQS returns a group's messages in order: split by group
        // (keeping that order) and move different groups concurrently.
        let mut groups: Vec<(String, Vec<QueueMessage>)> = Vec::new();
        for m in batch {
            match groups.iter_mut().find(|(g, _)| *g == m.group_id) {
                Some((_, ms)) => ms.push(m),
                None => groups.push((m.group_id.clone(), vec![m])),
            }
        }
        let mut to_move = Vec::new();
        for (group, messages) in groups {
            let mut moving = Vec::new();
            for m in messages {
                let first_time = state.seen.insert(m.message_id.clone());
                let skip = if opts.group.as_ref().is_some_and(|g| *g != group) {
                    Some(SkipReason::OtherGroup)
                } else if state.failed_groups.contains(&group) {
                    Some(SkipReason::GroupFailed)
                } else {
                    None
                };
                match skip {
                    Some(why) => {
                        if first_time {
                            state.summary.skipped += 1;
                            on_event(&Event::Skipped {
                                group: group.clone(),
                                id: m.message_id.clone(),
                                why,
                            });
                        }
                        hold(state, m);
                    }
                    None if opts.dry_run => {
                        if first_time {
                            state.summary.moved += 1;
                            on_event(&Event::WouldMove {
                                group: group.clone(),
                                id: m.message_id.clone(),
                                reason: m.attributes.get("reason").cloned(),
                            });
                        }
                        hold(state, m);
                    }
                    None => moving.push(m),
                }
            }
            if !moving.is_empty() {
                to_move.push(move_group(target, dlq, group, moving));
            }
        }
        for (group, outcomes) in futures::future::join_all(to_move).await {
            for outcome in outcomes {
                match outcome {
                    Moved::Done { id, new_id } => {
                        state.summary.moved += 1;
                        on_event(&Event::Moved {
                            group: group.clone(),
                            id,
                            new_id,
                        });
                    }
                    Moved::Failed { msg, error } => {
                        state.summary.failed += 1;
                        state.failed_groups.insert(group.clone());
                        tracing::error!(group = %group, id = %msg.message_id, %error, "not replayed");
                        on_event(&Event::Failed {
                            group: group.clone(),
                            id: msg.message_id.clone(),
                            error,
                        });
                        hold(state, msg);
                    }
                    Moved::NotTried(msg) => {
                        state.summary.skipped += 1;
                        on_event(&Event::Skipped {
                            group: group.clone(),
                            id: msg.message_id.clone(),
                            why: SkipReason::GroupFailed,
                        });
                        hold(state, msg);
                    }
                }
            }
        }
    }
}

fn hold(state: &mut State, m: QueueMessage) {
    state.held.insert(
        m.message_id,
        Held {
            receipt_handle: m.receipt_handle,
        },
    );
}

enum Moved {
    Done { id: String, new_id: String },
    Failed { msg: QueueMessage, error: String },
    NotTried(QueueMessage),
}

/// Moves one group's messages of a batch, in order; stops at the first failure.
async fn move_group(
    target: &dyn Queue,
    dlq: &dyn Queue,
    group: String,
    messages: Vec<QueueMessage>,
) -> (String, Vec<Moved>) {
    let mut out = Vec::with_capacity(messages.len());
    let mut failed = false;
    for m in messages {
        if failed {
            out.push(Moved::NotTried(m));
            continue;
        }
        match move_one(target, dlq, &m).await {
            Ok(new_id) => out.push(Moved::Done {
                id: m.message_id,
                new_id,
            }),
            Err(error) => {
                failed = true;
                out.push(Moved::Failed { msg: m, error });
            }
        }
    }
    (group, out)
}

/// Send, then delete. Err: the message is still in the dead-letter queue.
async fn move_one(target: &dyn Queue, dlq: &dyn Queue, m: &QueueMessage) -> Result<String, String> {
    if m.group_id.is_empty() {
        return Err("the dead letter has no MessageGroupId (not from a FIFO queue)".into());
    }
    let out = OutgoingMessage {
        body: m.body.clone(),
        group_id: m.group_id.clone(),
        dedup_id: replay_dedup_id(&m.message_id)?,
        attributes: replay_attributes(m, crate::sync::now_ms()),
    };
    let new_id = target
        .send(&out)
        .await
        .map_err(|e| format!("send to {} failed: {e}", target.url()))?;
    let deleted = dlq
        .delete_batch(&[m.receipt_handle.as_str()])
        .await
        .and_then(|mut r| r.pop().unwrap_or(Ok(())));
    if let Err(e) = deleted {
        return Err(format!(
            "sent to {} as {new_id}, but the delete from the dead-letter queue failed ({e}): \
             it is in both queues now; a rerun within 5 minutes is deduplicated",
            target.url()
        ));
    }
    Ok(new_id)
}

/// Makes every held message visible again.
async fn release(dlq: &dyn Queue, state: &mut State) {
    let held: Vec<Held> = state.held.drain().map(|(_, h)| h).collect();
    for chunk in held.chunks(MAX_BATCH) {
        let entries: Vec<(&str, Duration)> = chunk
            .iter()
            .map(|h| (h.receipt_handle.as_str(), Duration::ZERO))
            .collect();
        let failures = match dlq.change_visibility_batch(&entries).await {
            Ok(results) => results.iter().filter(|r| r.is_err()).count(),
            Err(_) => chunk.len(),
        };
        if failures > 0 {
            // Not lost: they become visible when their visibility timeout ends.
            tracing::warn!(
                count = failures,
                "could not release held dead letters; they reappear after their visibility timeout"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_letter(attrs: &[(&str, &str)]) -> QueueMessage {
        QueueMessage {
            message_id: "5fea7756-0ea4-451a-a703-a558b933e274".into(),
            receipt_handle: "rh".into(),
            body: "{}".into(),
            group_id: "room-1".into(),
            dedup_id: Some("orig".into()),
            receive_count: 1,
            attributes: attrs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        }
    }

    #[test]
    fn dedup_id_is_derived_from_the_dead_letter_id() {
        assert_eq!(
            replay_dedup_id("5fea7756-0ea4-451a-a703-a558b933e274").unwrap(),
            "replay-5fea7756-0ea4-451a-a703-a558b933e274"
        );
        assert_eq!(replay_dedup_id("a"), replay_dedup_id("a"), "stable");
        assert!(replay_dedup_id(&"x".repeat(122)).is_err());
        assert!(replay_dedup_id(&"x".repeat(121)).is_ok());
    }

    #[test]
    fn worker_metadata_is_dropped_and_reason_renamed() {
        let m = dead_letter(&[
            ("reason", "unknown action `shout`"),
            ("errorType", "unknown_action"),
            ("sourceMessageId", "abc"),
            ("sourceQueue", "http://q/in.fifo"),
            ("receiveCount", "1"),
            ("deadLetteredAt", "1"),
            ("traceparent", "00-1-2-01"),
        ]);
        let a = replay_attributes(&m, 42);
        assert_eq!(
            a.keys().map(String::as_str).collect::<Vec<_>>(),
            ["deadLetterReason", "replayOf", "replayedAt", "traceparent"]
        );
        assert_eq!(a["deadLetterReason"], "unknown action `shout`");
        assert_eq!(a["replayOf"], m.message_id);
        assert_eq!(a["replayedAt"], "42");
    }

    #[test]
    fn sqs_redriven_letters_have_no_reason() {
        let a = replay_attributes(&dead_letter(&[]), 1);
        assert!(!a.contains_key("deadLetterReason"));
        assert!(a.contains_key("replayOf"));
    }

    #[test]
    fn own_attributes_win_over_replay_metadata_at_the_limit() {
        let own: Vec<(String, String)> = (0..9).map(|i| (format!("a{i}"), "v".into())).collect();
        let refs: Vec<(&str, &str)> = own
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .chain([("reason", "r")])
            .collect();
        let a = replay_attributes(&dead_letter(&refs), 1);
        assert_eq!(a.len(), 10);
        assert!(a.contains_key("replayOf"));
        assert!(!a.contains_key("replayedAt"));
    }

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
