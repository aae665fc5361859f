//! Messages in hand: received and not yet deleted or released. Each holds a slot
//! of `max_in_hand` and a lease (visibility heartbeat) on its newest receipt handle.
//!
//! A message can be received again while still in hand: its visibility lapsed
//! (a heartbeat that could not reach SQS), or a stand-in without atomic receives
//! (moto) gave it to two concurrent polls. SQS then deletes it only with the newest
//! receipt handle. So a second copy is merged into the first: one message, handled
//! once, acknowledged with the newest handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use prometheus::{IntCounter, IntGauge};
use tokio::sync::OwnedSemaphorePermit;

use super::lease::Leases;
use crate::backend::QueueMessage;
use crate::sync::lock;
use crate::telemetry::Metrics;

/// The newest receipt handle of a message in hand.
#[derive(Debug)]
struct Receipt(Mutex<String>);

/// Registry of the messages in hand, by message id.
pub(super) struct InHand {
    by_id: Mutex<HashMap<String, Arc<Receipt>>>,
    leases: Arc<Leases>,
    gauge: IntGauge,
    duplicates: IntCounter,
}

impl InHand {
    pub(super) fn new(leases: Arc<Leases>, metrics: &Metrics) -> Arc<Self> {
        Arc::new(InHand {
            by_id: Mutex::default(),
            leases,
            gauge: metrics.messages_in_hand.clone(),
            duplicates: metrics.duplicate_receives.clone(),
        })
    }

    /// Takes a just received message into hand; `None` if it was already in hand
    /// (then that copy now uses this receipt handle, and `slot` is given back).
    pub(super) fn take(
        self: &Arc<Self>,
        msg: QueueMessage,
        slot: OwnedSemaphorePermit,
    ) -> Option<Held> {
        let mut by_id = lock(&self.by_id);
        if let Some(existing) = by_id.get(&msg.message_id) {
            let old = std::mem::replace(&mut *lock(&existing.0), msg.receipt_handle.clone());
            self.leases.remove(&old);
            self.leases.add(&msg.receipt_handle);
            self.duplicates.inc();
            tracing::warn!(message_id = %msg.message_id, "received a message already in hand; keeping one copy");
            return None;
        }
        let receipt = Arc::new(Receipt(Mutex::new(msg.receipt_handle.clone())));
        by_id.insert(msg.message_id.clone(), receipt.clone());
        self.leases.add(&msg.receipt_handle);
        self.gauge.inc();
        Some(Held {
            msg,
            receipt,
            _slot: slot,
            registry: self.clone(),
        })
    }
}

/// A message in hand. Dropping it gives its slot back; its lease must have been
/// removed by whoever deleted or released it.
pub(super) struct Held {
    /// The message as first received (its `receipt_handle` may be stale: use
    /// [`Held::receipt`]).
    pub(super) msg: QueueMessage,
    receipt: Arc<Receipt>,
    _slot: OwnedSemaphorePermit,
    registry: Arc<InHand>,
}

impl Held {
    /// The newest receipt handle.
    pub(super) fn receipt(&self) -> String {
        lock(&self.receipt.0).clone()
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut by_id = lock(&self.registry.by_id);
        if by_id
            .get(&self.msg.message_id)
            .is_some_and(|r| Arc::ptr_eq(r, &self.receipt))
        {
            by_id.remove(&self.msg.message_id);
        }
        self.registry.gauge.dec();
    }
}
