//! The seams between the worker and the outside world: a FIFO [`Queue`], the
//! [`Connections`] and [`Messages`] tables and the [`Push`] transport (@connections).
//!
//! `aws` implements them on SQS, DynamoDB and the API Gateway management API;
//! `embedded` implements all but `Push` on a local SQLite database. The
//! worker only sees these traits, so the same code runs on any implementation.
//!
//! Over 400 lines: the four seam traits and the shared record types they
//! pass belong together; each implementation lives in `aws/` or `embedded/`.

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

use crate::envelope::{Envelope, Sender};

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
    /// SentTimestamp, epoch ms, when the queue reports it (the start of the
    /// message's queue wait).
    pub sent_at_ms: Option<i64>,
    /// String message attributes (e.g. `reason` on dead letters, the W3C
    /// `traceparent`).
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

impl OutgoingMessage {
    /// `env` as a queue message: the group is its session, the deduplication
    /// id its id (DESIGN.md), no attributes.
    pub fn of_envelope(env: &Envelope) -> OutgoingMessage {
        OutgoingMessage {
            body: serde_json::to_string(env).expect("an envelope always encodes"),
            group_id: env.session_id.clone(),
            dedup_id: env.id.clone(),
            attributes: BTreeMap::new(),
        }
    }
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
    /// Position in the session's history (kept in the sort key).
    pub position: Position,
    /// Opaque client payload.
    pub payload: Value,
    /// TTL attribute, epoch seconds.
    pub expires_at: i64,
    /// The session's sequence number of this message: 1 for its first stored
    /// message, then +1 in queue order. `None` for messages stored before
    /// sequence numbers existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
}

impl StoredMessage {
    /// Sort key: see [`Position::sort_key`].
    pub fn sort_key(&self) -> String {
        self.position.sort_key(&self.id)
    }
}

/// Where a message sits in its session's history: a millisecond, then a
/// tie-break for messages placed in the same millisecond.
///
/// A message goes at its `receivedAt`, or right after the session's newest
/// message when that one sorts at or after it (frames received in the same
/// millisecond — API Gateway's `requestTimeEpoch` has ms resolution — or a
/// gateway clock behind another's). Ties take the next `seq` in the same
/// millisecond rather than the next millisecond, so a burst never pushes
/// later positions ahead of the clock.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Position {
    /// Epoch ms.
    pub ms: i64,
    /// 0, or the tie-break within `ms`.
    pub seq: u32,
}

impl Position {
    /// The largest tie-break (six digits in the sort key).
    pub const MAX_SEQ: u32 = 999_999;

    /// The first position at `ms`.
    pub fn at(ms: i64) -> Position {
        Position { ms, seq: 0 }
    }

    /// The position of a message received at `received_at` that goes after
    /// `newest` (the session's newest stored message), if any.
    pub fn after(received_at: i64, newest: Option<Position>) -> Position {
        match newest {
            // Six digits keep byte order; a millionth tie moves on a millisecond.
            Some(n) if n.ms >= received_at && n.seq < Self::MAX_SEQ => Position {
                ms: n.ms,
                seq: n.seq + 1,
            },
            Some(n) if n.ms >= received_at => Position::at(n.ms + 1),
            _ => Position::at(received_at),
        }
    }

    /// The sort key of message `id` here: DESIGN.md's `{receivedAt:013}#{id}`,
    /// with `.{seq:06}` before the `#` for a tie. Byte order is history order:
    /// `#` sorts before `.`, so `T#a` < `T.000001#b` < `T.000002#c` < `T+1#d`.
    pub fn sort_key(self, id: &str) -> String {
        if self.seq == 0 {
            format!("{:013}#{id}", self.ms)
        } else {
            format!("{:013}.{:06}#{id}", self.ms, self.seq)
        }
    }

    /// The smallest sort key at `ms` or later (a Query's lower bound).
    pub fn lower_bound(ms: i64) -> String {
        format!("{ms:013}")
    }

    /// The position and id in a sort key (`None` if it is not one of ours).
    pub fn parse(sort_key: &str) -> Option<(Position, &str)> {
        let (pos, id) = sort_key.split_once('#')?;
        let position = match pos.split_once('.') {
            Some((ms, seq)) => Position {
                ms: ms.parse().ok()?,
                seq: seq.parse().ok()?,
            },
            None => Position::at(pos.parse().ok()?),
        };
        Some((position, id))
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
    /// The keys of every message of a session positioned at `from_ms` or
    /// later (expired or not), in history order, and the session's last
    /// assigned `seq`, read together (strongly consistent). The store step
    /// uses it to find a redelivered message, and the position and `seq` of a
    /// new one.
    async fn keys_since(&self, session_id: &str, from_ms: i64) -> Result<StoredKeys>;
    /// Stores `msg` (whose `seq` is `Some(n)`) and moves the session's last
    /// `seq` from `n - 1` to `n`, atomically: only if no message has its key
    /// and the last `seq` is still `n - 1`. Returns whether it was written
    /// (false: nothing was written).
    async fn put_sequenced(&self, msg: &StoredMessage) -> Result<bool>;
    /// The `store` step: stores `msg` after every message of its session
    /// positioned at its `received_at` or later, with the session's next
    /// `seq` (both set here), unless a message with its id is among those
    /// (a redelivery, which keeps its `seq`). This default reads
    /// ([`Messages::keys_since`]) and then writes conditionally
    /// ([`Messages::put_sequenced`]), two round trips; a store that can do
    /// both in one transaction overrides it. A write that loses the race to
    /// another writer of the session fails with [`ErrorKind::Throttled`]
    /// (the queue hands the message back and it is placed again).
    async fn append(&self, mut msg: StoredMessage) -> Result<Appended> {
        const OP: &str = "store";
        let read = self.keys_since(&msg.session_id, msg.received_at).await?;
        if let Some(seq) = read.seq_of(&msg.id) {
            return Ok(Appended::Already(seq));
        }
        let seq = read.place(&mut msg);
        if self.put_sequenced(&msg).await? {
            return Ok(Appended::Stored(seq));
        }
        // Someone else wrote between the read and the write: a worker that
        // stored this very message (then it has its seq now), or another
        // message of the session (a lapsed visibility).
        let again = self.keys_since(&msg.session_id, msg.received_at).await?;
        again.seq_of(&msg.id).map(Appended::Already).ok_or_else(|| {
            BackendError::new(
                ErrorKind::Throttled,
                OP,
                "the session's seq moved while storing: retrying",
            )
        })
    }
    /// For `resume`: the session's last `seq` and its live messages with a
    /// `seq` above `since`, oldest first — at most the newest `max` of them
    /// (strongly consistent).
    async fn since_seq(&self, session_id: &str, since: u64, max: usize) -> Result<Resumable>;
}

/// What [`Messages::keys_since`] read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StoredKeys {
    /// The keys, in history order.
    pub keys: Vec<StoredKey>,
    /// The session's last assigned `seq` (0: none yet).
    pub last_seq: u64,
}

impl StoredKeys {
    /// `Some(its seq)` if message `id` is among the keys (`Some(None)` for one
    /// stored before sequence numbers existed).
    pub fn seq_of(&self, id: &str) -> Option<Option<u64>> {
        self.keys.iter().find(|k| k.id == id).map(|k| k.seq)
    }

    /// Places `msg` after every key read and gives it the next `seq`, which
    /// it returns.
    pub fn place(&self, msg: &mut StoredMessage) -> u64 {
        let newest = self.keys.iter().map(|k| k.position).max();
        msg.position = Position::after(msg.received_at, newest);
        let seq = self.last_seq + 1;
        msg.seq = Some(seq);
        seq
    }
}

/// What [`Messages::append`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Appended {
    /// Stored now, with this `seq`.
    Stored(u64),
    /// Stored before (a redelivery), with the `seq` it got then (`None` for
    /// a message stored before sequence numbers existed).
    Already(Option<u64>),
}

/// What [`Messages::since_seq`] read.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Resumable {
    /// The session's last assigned `seq` (0: none yet).
    pub last_seq: u64,
    /// Live messages with a `seq` above the requested one, oldest first.
    pub messages: Vec<StoredMessage>,
}

/// The key of a stored message: its id and position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredKey {
    /// Message id.
    pub id: String,
    /// Where it sits in the history.
    pub position: Position,
    /// Its sequence number, if it has one.
    pub seq: Option<u64>,
}

impl StoredKey {
    /// The key encoded in an item's sort key; an item without one of ours is
    /// an error of operation `op`.
    pub fn of_sort_key(op: &'static str, sort_key: Option<&str>) -> Result<StoredKey> {
        let (position, id) = sort_key
            .and_then(Position::parse)
            .ok_or_else(|| BackendError::new(ErrorKind::Other, op, "an item without a valid sk"))?;
        Ok(StoredKey {
            id: id.to_owned(),
            position,
            seq: None,
        })
    }
}

/// The @connections transport: posts one frame to one connection.
#[async_trait]
pub trait Push: Send + Sync + 'static {
    /// POSTs `data` to `{endpoint}/@connections/{connection_id}`. A connection that
    /// no longer exists fails with [`ErrorKind::Gone`].
    async fn post(&self, endpoint: &str, connection_id: &str, data: Bytes) -> Result<()>;

    /// Like [`Push::post`] for a frame that many recipients get: a transport
    /// may keep what it derives from the bytes (the SigV4 payload hash) in
    /// the [`Frame`] and reuse it for every recipient.
    async fn post_frame(&self, endpoint: &str, connection_id: &str, frame: &Frame) -> Result<()> {
        self.post(endpoint, connection_id, frame.bytes().clone())
            .await
    }

    /// [`Push::post_frame`] to each of `connection_ids` (one attempt each);
    /// the results in their order. A transport may send them together (the
    /// lean client pipelines them on one HTTP/1.1 connection); by default
    /// they are posted concurrently.
    async fn post_frame_many(
        &self,
        endpoint: &str,
        connection_ids: &[&str],
        frame: &Frame,
    ) -> Vec<Result<()>> {
        post_each(self, endpoint, connection_ids, frame).await
    }
}

/// [`Push::post_frame`] to each of `connection_ids`, concurrently; the
/// results in their order.
pub async fn post_each<P: Push + ?Sized>(
    push: &P,
    endpoint: &str,
    connection_ids: &[&str],
    frame: &Frame,
) -> Vec<Result<()>> {
    let each = connection_ids
        .iter()
        .map(|id| push.post_frame(endpoint, id, frame));
    futures::future::join_all(each).await
}

/// A frame's bytes, shared by every recipient of one message, and their
/// SHA-256 (lowercase hex, SigV4's payload hash), computed at most once.
#[derive(Debug, Clone, Default)]
pub struct Frame {
    bytes: Bytes,
    sha256_hex: std::sync::Arc<std::sync::OnceLock<[u8; 64]>>,
}

impl Frame {
    /// A frame of `bytes`.
    pub fn new(bytes: Bytes) -> Self {
        Frame {
            bytes,
            sha256_hex: std::sync::Arc::default(),
        }
    }

    /// The bytes posted.
    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    /// Lowercase hex SHA-256 of the bytes; hashed on first use only.
    pub fn sha256_hex(&self) -> &str {
        let hex = self.sha256_hex.get_or_init(|| {
            let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &self.bytes);
            hex_lower(digest.as_ref())
        });
        // Only ASCII hex digits are ever stored.
        std::str::from_utf8(hex).unwrap_or_default()
    }
}

/// Lowercase hex of a 32-byte digest.
pub(crate) fn hex_lower(digest: &[u8]) -> [u8; 64] {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = [b'0'; 64];
    for (i, b) in digest.iter().take(32).enumerate() {
        out[2 * i] = HEX[usize::from(b >> 4)];
        out[2 * i + 1] = HEX[usize::from(b & 0xf)];
    }
    out
}

impl From<Bytes> for Frame {
    fn from(bytes: Bytes) -> Self {
        Frame::new(bytes)
    }
}

#[cfg(test)]
mod position_tests {
    use super::Position;

    #[test]
    fn sort_keys_sort_in_history_order_and_parse_back() {
        let t = 1_700_000_000_000;
        let positions = [
            Position::at(t),
            Position { ms: t, seq: 1 },
            Position { ms: t, seq: 2 },
            Position { ms: t, seq: 10 },
            Position::at(t + 1),
            Position {
                ms: t + 1,
                seq: 999_999,
            },
            Position::at(t + 2),
        ];
        // Ids that would sort the other way round.
        let keys: Vec<String> = positions
            .iter()
            .zip(["z", "y", "x", "w", "v", "u", "t"])
            .map(|(p, id)| p.sort_key(id))
            .collect();
        assert_eq!(
            keys[0], "1700000000000#z",
            "DESIGN.md's format without a tie"
        );
        assert_eq!(keys[1], "1700000000000.000001#y");
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, keys);
        for (key, p) in keys.iter().zip(positions) {
            assert_eq!(Position::parse(key).unwrap().0, p);
            assert!(key.as_str() >= Position::lower_bound(p.ms).as_str());
            assert!(key.as_str() < Position::lower_bound(p.ms + 1).as_str());
        }
        assert_eq!(Position::parse("1700000000000#a#b").unwrap().1, "a#b");
        assert_eq!(Position::parse("not-a-key"), None);
    }

    #[test]
    fn a_message_goes_at_its_time_or_right_after_the_newest() {
        let t = 1_700_000_000_000;
        assert_eq!(Position::after(t, None), Position::at(t));
        assert_eq!(
            Position::after(t, Some(Position::at(t - 1))),
            Position::at(t)
        );
        let tie = Position::after(t, Some(Position { ms: t, seq: 3 }));
        assert_eq!(tie, Position { ms: t, seq: 4 });
        // A clock behind: after the newest, in its millisecond.
        let behind = Position::after(t - 5, Some(Position::at(t)));
        assert_eq!(behind, Position { ms: t, seq: 1 });
        let full = Position {
            ms: t,
            seq: Position::MAX_SEQ,
        };
        assert_eq!(Position::after(t, Some(full)), Position::at(t + 1));
        assert!(full.sort_key("a") < Position::at(t + 1).sort_key("a"));
    }
}
