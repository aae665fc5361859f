//! The shared state of a running worker and what happens to a message after
//! `handle`: group tasks, delete, back off, dead-letter, release.

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::held::{Held, InHand};
use super::lease::Leases;
use super::{Groups, Handler, Next, Outcome, Submitted, WorkerSettings};
use crate::backend::{BackendError, MAX_BATCH, OutgoingMessage, Queue, QueueMessage};
use crate::sync::{lock, now_ms};
use crate::telemetry::trace::{ATTR_TRACEPARENT, ATTR_TRACESTATE};
use crate::telemetry::{Health, Metrics};

pub(super) struct Core {
    pub(super) queue: Arc<dyn Queue>,
    pub(super) dlq: Arc<dyn Queue>,
    pub(super) handler: Handler,
    pub(super) settings: WorkerSettings,
    pub(super) metrics: Arc<Metrics>,
    pub(super) health: Arc<Health>,
    pub(super) leases: Arc<Leases>,
    pub(super) in_hand: Arc<InHand>,
    pub(super) groups: Mutex<Groups<Held>>,
    pub(super) slots: Arc<Semaphore>,
    pub(super) acks: mpsc::Sender<Held>,
    pub(super) tasks: TaskTracker,
    /// Drain started: receive nothing new, start nothing new.
    pub(super) stop_new: CancellationToken,
    /// Grace period nearly over: cut off running work and release it.
    pub(super) cut_off: CancellationToken,
}

impl Core {
    /// Hands received messages to their groups, starting group tasks as slots allow.
    pub(super) async fn submit(self: &Arc<Self>, held: Vec<Held>) {
        let mut release = Vec::new();
        {
            let mut groups = lock(&self.groups);
            for h in held {
                let group = h.msg.group_id.clone();
                match groups.submit(&group, h) {
                    Submitted::Start(g) => {
                        self.tasks.spawn(group_task(self.clone(), g));
                    }
                    Submitted::Queued => {}
                    Submitted::Release(h) => release.push(h),
                }
            }
        }
        self.release(release, "drain").await;
    }

    /// Makes messages visible again at once (they were not started).
    pub(super) async fn release(&self, held: Vec<Held>, why: &str) {
        for chunk in held.chunks(MAX_BATCH) {
            let handles: Vec<String> = chunk.iter().map(Held::receipt).collect();
            for h in &handles {
                self.leases.remove(h);
            }
            let entries: Vec<(&str, Duration)> = handles
                .iter()
                .map(|h| (h.as_str(), Duration::ZERO))
                .collect();
            let outcome = match self.queue.change_visibility_batch(&entries).await {
                Ok(results) if results.iter().all(Result::is_ok) => "ok",
                Ok(_) | Err(_) => "failed",
            };
            self.metrics
                .visibility_changes
                .with_label_values(&["release", outcome])
                .inc_by(chunk.len() as u64);
            tracing::debug!(count = chunk.len(), why, outcome, "released messages");
        }
    }

    /// Leaves a failed message invisible for `after`, so the group retries then.
    async fn back_off(&self, held: Held, after: Duration) {
        let receipt = held.receipt();
        self.leases.remove(&receipt);
        let outcome = match self.queue.change_visibility(&receipt, after).await {
            Ok(()) => "ok",
            Err(e) => {
                tracing::warn!(error = %e, "could not set retry backoff; the message returns after its visibility timeout");
                "failed"
            }
        };
        self.metrics
            .visibility_changes
            .with_label_values(&["backoff", outcome])
            .inc();
    }

    /// Sends the raw body to the DLQ with the reason as message attributes.
    async fn dead_letter(
        &self,
        msg: &QueueMessage,
        reason: &str,
        kind: &str,
    ) -> Result<(), BackendError> {
        let mut attributes = BTreeMap::new();
        // SQS attribute values may be long, but a reason is for humans: keep it short.
        let reason: String = reason.chars().take(1024).collect();
        attributes.insert("reason".to_owned(), reason);
        attributes.insert("errorType".to_owned(), kind.to_owned());
        attributes.insert("sourceMessageId".to_owned(), msg.message_id.clone());
        attributes.insert("sourceQueue".to_owned(), self.queue.url().to_owned());
        attributes.insert("receiveCount".to_owned(), msg.receive_count.to_string());
        attributes.insert("deadLetteredAt".to_owned(), now_ms().to_string());
        // The dead letter stays in the message's trace, and so does its replay.
        for name in [ATTR_TRACEPARENT, ATTR_TRACESTATE] {
            if let Some(v) = msg.attributes.get(name) {
                attributes.insert(name.to_owned(), v.clone());
            }
        }
        let out = OutgoingMessage {
            body: msg.body.clone(),
            group_id: if msg.group_id.is_empty() {
                "unknown".to_owned()
            } else {
                msg.group_id.clone()
            },
            // Unique per original send, so a later dead-lettering of a replayed
            // copy (which has a new message id) is not swallowed by deduplication.
            dedup_id: msg.message_id.clone(),
            attributes,
        };
        self.dlq.send(&out).await.map(|_| ())
    }
}

/// [`run_group`] as a boxed future: group tasks start other groups' tasks.
pub(super) fn group_task(
    core: Arc<Core>,
    group: String,
) -> Pin<Box<dyn Future<Output = ()> + Send>> {
    Box::pin(run_group(core, group))
}

/// Runs one group's messages one after another until none is left.
async fn run_group(core: Arc<Core>, group: String) {
    core.metrics.groups_in_flight.inc();
    let mut next = lock(&core.groups).next(&group);
    loop {
        let held = match next {
            Next::Item(h) => h,
            Next::Finished { start, release } => {
                for g in start {
                    core.tasks.spawn(group_task(core.clone(), g));
                }
                core.release(release, "drain").await;
                break;
            }
        };
        // A panic in a step is a bug; it must not take the group (and its leases)
        // down with it. Retried like a transient failure: if it keeps panicking,
        // SQS's redrive moves the message to the DLQ after maxReceiveCount.
        let handled = AssertUnwindSafe(core.handler.handle(&held.msg)).catch_unwind();
        let outcome = tokio::select! {
            o = handled => o.unwrap_or_else(|_| {
                core.metrics.backend_errors.with_label_values(&["handle", "panic"]).inc();
                tracing::error!(message_id = %held.msg.message_id, "handling panicked; retrying later");
                Outcome::Retry {
                    after: Duration::from_secs(u64::from(held.msg.receive_count.max(1)).min(60)),
                    reason: "handling panicked".to_owned(),
                }
            }),
            _ = core.cut_off.cancelled() => {
                // Partly done work is redelivered: delivery is at-least-once and
                // every frame carries the message id.
                core.release(vec![held], "cut off").await;
                next = lock(&core.groups).abandon(&group);
                continue;
            }
        };
        match outcome {
            Outcome::Done => ack(&core, held).await,
            Outcome::Dead { reason, kind } => {
                match core.dead_letter(&held.msg, &reason, kind).await {
                    Ok(()) => {
                        core.metrics.dead_letters.with_label_values(&[kind]).inc();
                        ack(&core, held).await;
                    }
                    Err(e) => {
                        // Not deleted: it comes back, and after maxReceiveCount
                        // SQS's redrive moves it to the DLQ itself.
                        core.metrics
                            .backend_errors
                            .with_label_values(&["dead_letter", e.kind.as_str()])
                            .inc();
                        tracing::error!(error = %e, "could not send to the dead-letter queue; retrying later");
                        let after =
                            Duration::from_secs(u64::from(held.msg.receive_count.max(1)).min(60));
                        core.back_off(held, after).await;
                        next = lock(&core.groups).abandon(&group);
                        continue;
                    }
                }
            }
            Outcome::Retry { after, .. } => {
                core.back_off(held, after).await;
                next = lock(&core.groups).abandon(&group);
                continue;
            }
        }
        next = lock(&core.groups).next(&group);
    }
    core.metrics.groups_in_flight.dec();
}

async fn ack(core: &Core, held: Held) {
    if let Err(mpsc::error::SendError(held)) = core.acks.send(held).await {
        // The acker is gone only after the drain gave up waiting; the message
        // will be redelivered after its visibility timeout.
        core.leases.remove(&held.receipt());
    }
}
