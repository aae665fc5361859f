//! Deletes finished messages, in batches of up to 10 when several are ready.

use std::sync::Arc;
use std::time::Duration;

use backon::{BackoffBuilder, ExponentialBuilder};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::held::Held;
use super::lease::Leases;
use crate::backend::{MAX_BATCH, Queue};
use crate::telemetry::Metrics;

/// Delete calls under way at once.
const CONCURRENT_BATCHES: usize = 4;
/// Attempts per batch for transient failures.
const ATTEMPTS: u32 = 3;

/// Runs until `close` is cancelled and every queued delete is done.
pub(super) async fn run(
    queue: Arc<dyn Queue>,
    leases: Arc<Leases>,
    metrics: Arc<Metrics>,
    mut rx: mpsc::Receiver<Held>,
    close: CancellationToken,
) {
    let mut batches = JoinSet::new();
    loop {
        let first = tokio::select! {
            h = rx.recv() => match h { Some(h) => h, None => break },
            _ = close.cancelled(), if !rx.is_closed() => {
                // No new deletes can come; drain what is queued.
                rx.close();
                continue;
            }
        };
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(h) => batch.push(h),
                Err(_) => break,
            }
        }
        if batches.len() >= CONCURRENT_BATCHES {
            batches.join_next().await;
        }
        batches.spawn(delete(
            queue.clone(),
            leases.clone(),
            metrics.clone(),
            batch,
        ));
    }
    while batches.join_next().await.is_some() {}
}

async fn delete(
    queue: Arc<dyn Queue>,
    leases: Arc<Leases>,
    metrics: Arc<Metrics>,
    mut batch: Vec<Held>,
) {
    // 100 ms, then 200 ms, each plus up to as much again of jitter, so that
    // workers that failed together do not retry together.
    let mut delays = ExponentialBuilder::default()
        .with_min_delay(Duration::from_millis(100))
        .with_max_delay(Duration::from_secs(1))
        .with_max_times(ATTEMPTS as usize - 1)
        .with_jitter()
        .build();
    for attempt in 1..=ATTEMPTS {
        let receipts: Vec<String> = batch.iter().map(Held::receipt).collect();
        let handles: Vec<&str> = receipts.iter().map(String::as_str).collect();
        let results = match queue.delete_batch(&handles).await {
            Ok(r) => r,
            Err(e) => handles.iter().map(|_| Err(e.clone())).collect(),
        };
        let mut retry = Vec::new();
        for ((held, receipt), result) in batch.into_iter().zip(&receipts).zip(results) {
            match result {
                Ok(()) => {
                    metrics.deletes.with_label_values(&["ok"]).inc();
                    leases.remove(receipt);
                }
                Err(e) if e.is_retriable() && attempt < ATTEMPTS => retry.push(held),
                Err(e) => {
                    // It will be redelivered (a duplicate, flagged by its id).
                    metrics.deletes.with_label_values(&["failed"]).inc();
                    tracing::warn!(message_id = %held.msg.message_id, error = %e, "could not delete a finished message");
                    leases.remove(receipt);
                }
            }
        }
        if retry.is_empty() {
            return;
        }
        batch = retry;
        // `attempt < ATTEMPTS` above: one of the ATTEMPTS - 1 delays is left.
        if let Some(delay) = delays.next() {
            tokio::time::sleep(delay).await;
        }
    }
}
