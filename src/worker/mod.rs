//! The FIFO consumer: pollers receive, the scheduler keeps each message group in
//! order, [`Handler::handle`] runs a message once, and the loop acknowledges:
//! delete (batched) after success, dead-letter poison, back off on transient
//! failure, extend visibility while work goes on, and drain on shutdown.

mod acker;
mod handle;
mod lease;
mod scheduler;

pub use handle::{Backoff, Handler, Outcome};
pub use scheduler::{Groups, Next, Submitted};

use std::collections::BTreeMap;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::FutureExt;
use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::backend::{
    BackendError, MAX_BATCH, OutgoingMessage, Queue, QueueMessage, ReceiveRequest,
};
use crate::telemetry::{Health, Metrics};
use lease::Leases;

/// How the consumer runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkerSettings {
    /// Concurrent long-polling receivers.
    pub pollers: usize,
    /// Most message groups handled at once.
    pub max_groups: usize,
    /// Long-poll wait per receive (SQS maximum: 20 s).
    pub wait: Duration,
    /// Visibility timeout asked for on receive; renewed while in hand.
    pub visibility: Duration,
    /// Time from the shutdown signal to exit.
    pub shutdown_grace: Duration,
    /// Most messages received and not yet finished.
    pub max_in_hand: usize,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        WorkerSettings {
            pollers: 2,
            max_groups: 64,
            wait: Duration::from_secs(20),
            visibility: Duration::from_secs(30),
            shutdown_grace: Duration::from_secs(25),
            max_in_hand: 128,
        }
    }
}

/// What a worker run did, for logs and tests.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DrainReport {
    /// Messages still in hand at exit (0 unless the grace period ran out while a
    /// delete or release was pending; those become visible again on their own).
    pub left_in_hand: usize,
    /// Whether running messages had to be cut off at the end of the grace period.
    pub cut_off: bool,
}

/// A message in hand: counts against `max_in_hand` until dropped.
struct Held {
    msg: QueueMessage,
    _slot: OwnedSemaphorePermit,
    gauge: IntGauge,
}

impl Drop for Held {
    fn drop(&mut self) {
        self.gauge.dec();
    }
}

/// The consumer. Build it, then [`Worker::run`] it until shutdown.
pub struct Worker {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
    handler: Handler,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
}

struct Core {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
    handler: Handler,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
    leases: Arc<Leases>,
    groups: Mutex<Groups<Held>>,
    slots: Arc<Semaphore>,
    acks: mpsc::Sender<Held>,
    tasks: TaskTracker,
    /// Drain started: receive nothing new, start nothing new.
    stop_new: CancellationToken,
    /// Grace period nearly over: cut off running work and release it.
    cut_off: CancellationToken,
}

impl Worker {
    /// A worker consuming `queue`, dead-lettering to `dlq`.
    pub fn new(
        queue: Arc<dyn Queue>,
        dlq: Arc<dyn Queue>,
        handler: Handler,
        settings: WorkerSettings,
        metrics: Arc<Metrics>,
        health: Arc<Health>,
    ) -> Self {
        Worker {
            queue,
            dlq,
            handler,
            settings,
            metrics,
            health,
        }
    }

    /// Consumes until `shutdown` completes, then drains within the grace period:
    /// stop receiving, release what has not started, let running messages finish
    /// (or cut them off and release them near the end), delete what finished.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> DrainReport {
        let (ack_tx, ack_rx) = mpsc::channel(self.settings.max_in_hand.max(MAX_BATCH));
        let leases = Arc::new(Leases::new(self.settings.visibility));
        let core = Arc::new(Core {
            slots: Arc::new(Semaphore::new(self.settings.max_in_hand.max(1))),
            groups: Mutex::new(Groups::new(self.settings.max_groups)),
            queue: self.queue,
            dlq: self.dlq,
            handler: self.handler,
            settings: self.settings,
            metrics: self.metrics,
            health: self.health,
            leases: leases.clone(),
            acks: ack_tx,
            tasks: TaskTracker::new(),
            stop_new: CancellationToken::new(),
            cut_off: CancellationToken::new(),
        });

        let stop_leases = CancellationToken::new();
        let lease_task = tokio::spawn(leases.clone().keep(
            core.queue.clone(),
            core.metrics.clone(),
            stop_leases.clone(),
        ));
        let close_acks = CancellationToken::new();
        let acker_task = tokio::spawn(acker::run(
            core.queue.clone(),
            leases.clone(),
            core.metrics.clone(),
            ack_rx,
            close_acks.clone(),
        ));
        for i in 0..core.settings.pollers.max(1) {
            core.tasks.spawn(poll(core.clone(), i));
        }
        tracing::info!(
            queue = core.queue.url(),
            pollers = core.settings.pollers,
            max_groups = core.settings.max_groups,
            "worker started"
        );

        shutdown.await;
        let grace = core.settings.shutdown_grace;
        let deadline = Instant::now() + grace;
        // Leave time at the end to release what was cut off and flush deletes.
        let cut_at = deadline - (grace / 5).min(Duration::from_secs(3));
        tracing::info!(?grace, "draining");
        core.health.set_draining();
        core.stop_new.cancel();
        let waiting = lock(&core.groups).drain();
        core.release(waiting, "drain").await;

        core.tasks.close();
        let mut report = DrainReport::default();
        if tokio::time::timeout_at(cut_at, core.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!("grace period nearly over: releasing messages still running");
            report.cut_off = true;
            core.cut_off.cancel();
            let _ = tokio::time::timeout_at(deadline, core.tasks.wait()).await;
        }
        close_acks.cancel();
        drop(core);
        if tokio::time::timeout_at(deadline, acker_task).await.is_err() {
            tracing::warn!("grace period over with deletes pending");
        }
        stop_leases.cancel();
        let _ = lease_task.await;
        report.left_in_hand = leases.held();
        tracing::info!(left_in_hand = report.left_in_hand, "worker stopped");
        report
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_ms() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0)
}

/// One long-polling receiver.
async fn poll(core: Arc<Core>, index: usize) {
    let mut failures: u32 = 0;
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
        // A receive under way when the drain starts is allowed to finish (what
        // it brings is released at once) unless the grace period runs out.
        let result = tokio::select! {
            r = core.queue.receive(req) => r,
            _ = core.cut_off.cancelled() => return,
        };
        match result {
            Ok(messages) => {
                failures = 0;
                core.health.set_polling(true);
                let result = if messages.is_empty() {
                    "empty"
                } else {
                    "messages"
                };
                core.metrics.polls.with_label_values(&[result]).inc();
                core.metrics.messages_received.inc_by(messages.len() as u64);
                let mut held = Vec::with_capacity(messages.len());
                for (msg, slot) in messages.into_iter().zip(slots) {
                    core.leases.add(&msg.receipt_handle);
                    core.metrics.messages_in_hand.inc();
                    held.push(Held {
                        msg,
                        _slot: slot,
                        gauge: core.metrics.messages_in_hand.clone(),
                    });
                }
                core.submit(held).await;
            }
            Err(e) => {
                failures += 1;
                drop(slots);
                core.health.set_polling(false);
                core.metrics.polls.with_label_values(&["error"]).inc();
                core.metrics
                    .poll_errors
                    .with_label_values(&[e.kind.as_str()])
                    .inc();
                let delay = Duration::from_millis(200 * 2u64.pow(failures.min(6)))
                    .min(Duration::from_secs(10));
                tracing::warn!(poller = index, error = %e, ?delay, "receive failed");
                tokio::select! {
                    _ = tokio::time::sleep(delay) => {}
                    _ = core.stop_new.cancelled() => return,
                }
            }
        }
    }
}

impl Core {
    /// Hands received messages to their groups, starting group tasks as slots allow.
    async fn submit(self: &Arc<Self>, held: Vec<Held>) {
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
    async fn release(&self, held: Vec<Held>, why: &str) {
        for chunk in held.chunks(MAX_BATCH) {
            let entries: Vec<(&str, Duration)> = chunk
                .iter()
                .map(|h| (h.msg.receipt_handle.as_str(), Duration::ZERO))
                .collect();
            for h in chunk {
                self.leases.remove(&h.msg.receipt_handle);
            }
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
        self.leases.remove(&held.msg.receipt_handle);
        let outcome = match self
            .queue
            .change_visibility(&held.msg.receipt_handle, after)
            .await
        {
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
fn group_task(core: Arc<Core>, group: String) -> Pin<Box<dyn Future<Output = ()> + Send>> {
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
        core.leases.remove(&held.msg.receipt_handle);
    }
}
