//! The receive loop of a replay: receives from the dead-letter queue, moves
//! each group's messages in order (groups concurrently), holds back what must
//! not move now and releases it at the end.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use backon::{ExponentialBuilder, Retryable};

use super::attributes::{replay_attributes, replay_dedup_id};
use super::{Event, ReplayOptions, SkipReason, Summary};
use crate::backend::{
    BackendError, MAX_BATCH, OutgoingMessage, Queue, QueueMessage, ReceiveRequest,
};

/// A message kept in flight until the end of the run, then released.
struct Held {
    receipt_handle: String,
}

#[derive(Default)]
pub(super) struct State {
    pub(super) summary: Summary,
    /// Every dead letter seen, by message id: counts each message once even
    /// when it is received again after its visibility timeout.
    seen: HashSet<String>,
    /// Messages held back, by message id (latest receipt handle).
    held: HashMap<String, Held>,
    /// Groups with a failure in this run: the rest of them stays put.
    failed_groups: HashSet<String>,
    /// Message ids of the copies this run sent to the target queue.
    sent: HashSet<String>,
}

impl State {
    pub(super) fn new(dry_run: bool) -> Self {
        State {
            summary: Summary {
                dry_run,
                ..Summary::default()
            },
            ..State::default()
        }
    }

    fn attempted(&self) -> usize {
        self.summary.moved + self.summary.failed
    }

    /// Whether dead letter `m` is a copy this run sent, back again: by its
    /// own id (a redrive keeps it) or the worker's `sourceMessageId`.
    fn sent_this_run(&self, m: &QueueMessage) -> bool {
        self.sent.contains(&m.message_id)
            || m.attributes
                .get("sourceMessageId")
                .is_some_and(|id| self.sent.contains(id))
    }
}

pub(super) async fn run(
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
                } else if state.sent_this_run(&m) {
                    Some(SkipReason::DeadAgain)
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
                        state.sent.insert(new_id.clone());
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
pub(super) async fn release(dlq: &dyn Queue, state: &mut State) {
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
