//! Visibility heartbeat: every message in hand (running or waiting) has its
//! visibility extended before it runs out, so SQS does not hand it to another
//! consumer while we still work on it or on an earlier message of its group.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::backend::{ErrorKind, MAX_BATCH, Queue};
use crate::telemetry::Metrics;

/// Receipt handles in hand and when their visibility runs out.
#[derive(Debug)]
pub struct Leases {
    deadlines: Mutex<HashMap<String, Instant>>,
    visibility: Duration,
}

impl Leases {
    /// Leases of `visibility` each.
    pub fn new(visibility: Duration) -> Self {
        Leases {
            deadlines: Mutex::default(),
            visibility,
        }
    }

    /// A message was received now with `visibility`.
    pub fn add(&self, receipt_handle: &str) {
        let deadline = Instant::now() + self.visibility;
        self.lock().insert(receipt_handle.to_owned(), deadline);
    }

    /// The message was deleted or released: stop extending it.
    pub fn remove(&self, receipt_handle: &str) {
        self.lock().remove(receipt_handle);
    }

    /// Messages in hand.
    pub(super) fn held(&self) -> usize {
        self.lock().len()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        // The map stays consistent even if a holder panicked mid-insert.
        crate::sync::lock(&self.deadlines)
    }

    /// How often the keeper looks, and how early before the deadline it extends.
    fn timing(&self) -> (Duration, Duration) {
        let tick = (self.visibility / 6).clamp(Duration::from_millis(200), Duration::from_secs(5));
        let margin = (self.visibility / 3).max(tick * 2);
        (tick, margin)
    }

    /// Extends leases close to their deadline until `stop`.
    pub async fn keep(
        self: Arc<Self>,
        queue: Arc<dyn Queue>,
        metrics: Arc<Metrics>,
        stop: CancellationToken,
    ) {
        let (tick, margin) = self.timing();
        loop {
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = stop.cancelled() => return,
            }
            let now = Instant::now();
            let due: Vec<String> = self
                .lock()
                .iter()
                .filter(|(_, d)| d.saturating_duration_since(now) < margin)
                .map(|(h, _)| h.clone())
                .collect();
            for chunk in due.chunks(MAX_BATCH) {
                let entries: Vec<(&str, Duration)> = chunk
                    .iter()
                    .map(|h| (h.as_str(), self.visibility))
                    .collect();
                let results = match queue.change_visibility_batch(&entries).await {
                    Ok(r) => r,
                    Err(e) => chunk.iter().map(|_| Err(e.clone())).collect(),
                };
                let extended_to = Instant::now() + self.visibility;
                let mut map = self.lock();
                for (handle, result) in chunk.iter().zip(results) {
                    let outcome = match result {
                        Ok(()) => {
                            if let Some(d) = map.get_mut(handle) {
                                *d = extended_to;
                            }
                            "ok"
                        }
                        Err(e) => {
                            tracing::warn!(error = %e, "could not extend visibility");
                            if e.kind == ErrorKind::Validation {
                                // The receipt handle expired: the message is back in
                                // the queue and will be redelivered; stop trying.
                                map.remove(handle);
                            }
                            "failed"
                        }
                    };
                    metrics
                        .visibility_changes
                        .with_label_values(&["extend", outcome])
                        .inc();
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Leases;
    use std::time::Duration;

    #[test]
    fn extends_well_before_the_deadline() {
        let l = Leases::new(Duration::from_secs(30));
        assert_eq!(
            l.timing(),
            (Duration::from_secs(5), Duration::from_secs(10))
        );
        let short = Leases::new(Duration::from_secs(1));
        let (tick, margin) = short.timing();
        assert_eq!(tick, Duration::from_millis(200));
        assert!(margin >= tick * 2);
    }
}
