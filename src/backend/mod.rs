//! The seams between the worker and the outside world: a FIFO [`Queue`], the
//! [`Connections`] and [`Messages`] tables and the [`Push`] transport (@connections).
//!
//! `aws` implements them on SQS, DynamoDB and the API Gateway management API;
//! `embedded` implements all but `Push` on a local SQLite database. The
//! worker only sees these traits, so the same code runs on any implementation.

pub mod aws;
pub mod embedded;
mod error;

pub use error::{BackendError, ErrorKind};

use std::collections::BTreeMap;
use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::envelope::Sender;

/// Result of a backend call.
pub type Result<T, E = BackendError> = std::result::Result<T, E>;

/// SQS's batch limit for receive, delete and change-visibility calls.
pub const MAX_BATCH: usize = 10;

/// A message received from a FIFO queue and not yet deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueMessage {
    /// Queue-assigned id, unique per send.
    pub message_id: String,
    /// Handle for delete / change visibility of this receive.
    pub receipt_handle: String,
    /// Raw body, exactly as sent.
    pub body: String,
    /// MessageGroupId (the session).
    pub group_id: String,
    /// MessageDeduplicationId, when the queue reports it.
    pub dedup_id: Option<String>,
    /// ApproximateReceiveCount: 1 on the first delivery.
    pub receive_count: u32,
    /// String message attributes (e.g. `reason` on dead letters).
    pub attributes: BTreeMap<String, String>,
}

/// A message to send to a FIFO queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutgoingMessage {
    /// Body, sent unchanged.
    pub body: String,
    /// MessageGroupId.
    pub group_id: String,
    /// MessageDeduplicationId.
    pub dedup_id: String,
    /// String message attributes.
    pub attributes: BTreeMap<String, String>,
}

/// What a receive asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReceiveRequest {
    /// 1..=10 messages.
    pub max_messages: u32,
    /// Long-poll wait, 0..=20 s.
    pub wait: Duration,
    /// Visibility timeout given to the received messages.
    pub visibility: Duration,
}

/// Settings of a queue that the worker needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueueInfo {
    /// Whether it is a FIFO queue.
    pub fifo: bool,
    /// Default visibility timeout.
    pub visibility_timeout: Duration,
    /// URL of the dead-letter queue from the RedrivePolicy, if any.
    pub dead_letter_url: Option<String>,
    /// maxReceiveCount of the RedrivePolicy, if any.
    pub max_receive_count: Option<u32>,
    /// ApproximateNumberOfMessages (visible).
    pub approximate_messages: u64,
    /// ApproximateNumberOfMessagesNotVisible (in flight).
    pub approximate_in_flight: u64,
}

/// A FIFO queue. One value per queue URL.
#[async_trait]
pub trait Queue: Send + Sync + 'static {
    /// The queue's URL (or name, for embedded queues).
    fn url(&self) -> &str;

    /// Long-polls for up to `req.max_messages` messages.
    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<QueueMessage>>;

    /// Deletes up to 10 messages; one result per receipt handle, in order.
    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<Vec<Result<()>>>;

    /// Sets the visibility timeout of up to 10 messages; one result per entry.
    async fn change_visibility_batch(
        &self,
        entries: &[(&str, Duration)],
    ) -> Result<Vec<Result<()>>>;

    /// Sends one message; returns the queue-assigned message id.
    async fn send(&self, msg: &OutgoingMessage) -> Result<String>;

    /// Reads the queue's settings; also the readiness probe.
    async fn info(&self) -> Result<QueueInfo>;

    /// Sets the visibility timeout of one message.
    async fn change_visibility(&self, receipt_handle: &str, timeout: Duration) -> Result<()> {
        self.change_visibility_batch(&[(receipt_handle, timeout)])
            .await?
            .pop()
            .unwrap_or(Ok(()))
    }
}

/// One open WebSocket connection, as stored in the connections table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Connection {
    /// API Gateway connection id (partition key).
    pub connection_id: String,
    /// Session it joined (GSI `bySession`).
    pub session_id: String,
    /// Authenticated user (GSI `byUser`), absent for anonymous connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user_id: Option<String>,
    /// Connect time, epoch ms. Identifies this connection for conditional deletes.
    pub connected_at: i64,
    /// TTL attribute, epoch seconds.
    pub expires_at: i64,
    /// API Gateway domain that holds the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain_name: Option<String>,
    /// API Gateway stage that holds the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage: Option<String>,
    /// Client IP at connect time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_ip: Option<String>,
}

/// One page of a query; `next` continues it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    /// Items of this page.
    pub items: Vec<T>,
    /// Opaque cursor for the next page; `None` on the last page.
    pub next: Option<String>,
}

/// The connections table.
#[async_trait]
pub trait Connections: Send + Sync + 'static {
    /// Stores (or replaces) a connection.
    async fn put(&self, conn: &Connection) -> Result<()>;
    /// Reads one connection.
    async fn get(&self, connection_id: &str) -> Result<Option<Connection>>;
    /// Deletes a connection unconditionally (`$disconnect`).
    async fn delete(&self, connection_id: &str) -> Result<()>;
    /// Deletes exactly this connection: only while the stored item still has the
    /// same `connectedAt`. Returns whether an item was deleted.
    async fn delete_if_same(&self, conn: &Connection) -> Result<bool>;
    /// One page of the connections of a session (GSI `bySession`).
    async fn by_session(
        &self,
        session_id: &str,
        cursor: Option<String>,
    ) -> Result<Page<Connection>>;
    /// One page of the connections of a user (GSI `byUser`).
    async fn by_user(&self, user_id: &str, cursor: Option<String>) -> Result<Page<Connection>>;
}

/// A message as kept in the messages table for history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StoredMessage {
    /// Session (partition key).
    pub session_id: String,
    /// Message id.
    pub id: String,
    /// Route key it was sent with.
    pub action: String,
    /// Sender.
    pub sender: Sender,
    /// When the gateway received it, epoch ms.
    pub received_at: i64,
    /// Position in the session's history, epoch ms: `received_at`, or 1 ms after
    /// the session's previous message when that one sorts at or after it (two
    /// frames in the same millisecond). Kept in the sort key.
    pub sort_ms: i64,
    /// Opaque client payload.
    pub payload: Value,
    /// TTL attribute, epoch seconds.
    pub expires_at: i64,
}

impl StoredMessage {
    /// Sort key: zero-padded sort time (ms), `#`, id, so that sort order is the
    /// session's message order.
    pub fn sort_key(&self) -> String {
        format!("{:013}#{}", self.sort_ms, self.id)
    }

    /// The sort time encoded in a sort key (`None` if it is not one of ours).
    pub fn sort_ms_of(sort_key: &str) -> Option<i64> {
        sort_key.split_once('#')?.0.parse().ok()
    }
}

/// The messages table.
#[async_trait]
pub trait Messages: Send + Sync + 'static {
    /// Stores a message unless one with the same key exists. Returns whether it
    /// was written (false: a redelivery of a message already stored).
    async fn put_if_absent(&self, msg: &StoredMessage) -> Result<bool>;
    /// The newest `limit` messages of a session, returned oldest first; reads
    /// the latest writes (strongly consistent).
    async fn latest(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>>;
    /// The keys of every message of a session that sorts at or after
    /// `from_ms` (expired or not), in sort order; reads the latest writes
    /// (strongly consistent). The store step uses it to find a redelivered
    /// message and the position of a new one.
    async fn keys_since(&self, session_id: &str, from_ms: i64) -> Result<Vec<StoredKey>>;
}

/// Where a stored message sits in its session's history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Message id.
    pub id: String,
    /// Its sort time (see [`StoredMessage::sort_ms`]).
    pub sort_ms: i64,
}

impl StoredKey {
    /// The key encoded in a sort key (`None` if it is not one of ours).
    pub fn of_sort_key(sort_key: &str) -> Option<StoredKey> {
        let (ms, id) = sort_key.split_once('#')?;
        Some(StoredKey {
            id: id.to_owned(),
            sort_ms: ms.parse().ok()?,
        })
    }
}

/// The @connections transport: posts one frame to one connection.
#[async_trait]
pub trait Push: Send + Sync + 'static {
    /// POSTs `data` to `{endpoint}/@connections/{connection_id}`. A connection that
    /// no longer exists fails with [`ErrorKind::Gone`].
    async fn post(&self, endpoint: &str, connection_id: &str, data: Bytes) -> Result<()>;
}
