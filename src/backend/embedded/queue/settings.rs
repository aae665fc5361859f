//! What an embedded queue is: its address, settings and SQS's limits, and the
//! small helpers every part of the queue uses. A leaf below `mod.rs`, `sql.rs`
//! and `checks.rs`.

use std::time::Duration;

use crate::backend::{BackendError, ErrorKind};

/// How embedded queues are addressed: `embedded://<queue name>`.
pub const URL_PREFIX: &str = "embedded://";

/// SQS's longest visibility timeout, and the longest a receive can stay in flight.
pub(super) const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest long poll (WaitTimeSeconds).
pub(super) const MAX_WAIT: Duration = Duration::from_secs(20);

/// Settings of an embedded FIFO queue: the SQS attributes it honours.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueSettings {
    /// `VisibilityTimeout`: reported by `info()`; receives give their own.
    pub visibility_timeout: Duration,
    /// `MessageRetentionPeriod`: messages older than this are deleted.
    pub retention: Duration,
    /// `DeduplicationScope`.
    pub dedup_scope: DedupScope,
    /// `RedrivePolicy`: where a message goes after too many receives.
    pub redrive: Option<Redrive>,
}

impl Default for QueueSettings {
    /// SQS's defaults: 30 s visibility, 4 days retention, queue-wide dedup, no DLQ.
    fn default() -> Self {
        QueueSettings {
            visibility_timeout: Duration::from_secs(30),
            retention: Duration::from_secs(4 * 24 * 3600),
            dedup_scope: DedupScope::Queue,
            redrive: None,
        }
    }
}

/// Within what a MessageDeduplicationId must be unique (SQS `DeduplicationScope`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DedupScope {
    /// One id space for the whole queue (`queue`, SQS's default).
    Queue,
    /// One id space per message group (`messageGroup`, our inbound queue's).
    MessageGroup,
}

impl DedupScope {
    pub(super) fn as_str(self) -> &'static str {
        match self {
            DedupScope::Queue => "queue",
            DedupScope::MessageGroup => "messageGroup",
        }
    }
}

/// A redrive policy: after `max_receive_count` receives, the next receive moves
/// the message to `dead_letter_queue` instead of returning it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Redrive {
    /// Name or `embedded://` URL of the dead-letter queue; it must exist.
    pub dead_letter_queue: String,
    /// 1 to 1000, like SQS.
    pub max_receive_count: u32,
}

pub(super) fn invalid(op: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, op, message)
}

pub(super) fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}
