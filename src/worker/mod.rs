//! The FIFO consumer: pollers receive, the scheduler keeps each message group in
//! order, [`Handler::handle`] runs a message once, and the loop acknowledges:
//! delete (batched) after success, dead-letter poison, back off on transient
//! failure, extend visibility while work goes on, and drain on shutdown.

mod acker;
mod handle;
mod held;
mod lease;
mod poll;
mod scheduler;
mod state;

pub use handle::{Backoff, Handler, Outcome};
pub use scheduler::{Groups, Next, Submitted};

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Semaphore, mpsc};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use self::state::Core;
use crate::backend::{MAX_BATCH, Queue};
use crate::telemetry::{Health, Metrics};
use held::InHand;
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

/// The consumer. Build it, then [`Worker::run`] it until shutdown.
pub struct Worker {
    queue: Arc<dyn Queue>,
    dlq: Arc<dyn Queue>,
    handler: Handler,
    settings: WorkerSettings,
    metrics: Arc<Metrics>,
    health: Arc<Health>,
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
        let in_hand = InHand::new(leases.clone(), &self.metrics);
        let core = Arc::new(Core {
            in_hand,
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
            core.tasks.spawn(poll::poll(core.clone(), i));
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
        let waiting = crate::sync::lock(&core.groups).drain();
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
