//! [`Queue`] with SQS FIFO semantics on the embedded database.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::Notify;
use tokio::time::Instant;

use super::db::{Db, sql_error};
use crate::backend::{
    BackendError, ErrorKind, MAX_BATCH, OutgoingMessage, Queue, QueueInfo, QueueMessage,
    ReceiveRequest, Result,
};

/// How embedded queues are addressed: `embedded://<queue name>`.
pub const URL_PREFIX: &str = "embedded://";

/// SQS keeps a deduplication id for 5 minutes after the first send.
pub(super) const DEDUP_WINDOW_MS: i64 = 5 * 60 * 1000;
/// SQS's longest visibility timeout, and the longest a receive can stay in flight.
const MAX_VISIBILITY: Duration = Duration::from_secs(12 * 3600);
/// SQS's longest long poll (WaitTimeSeconds).
const MAX_WAIT: Duration = Duration::from_secs(20);
/// SQS's default MaximumMessageSize (body plus attribute names and values).
const MAX_MESSAGE_BYTES: usize = 256 * 1024;
/// SQS allows 10 message attributes.
const MAX_ATTRIBUTES: usize = 10;
/// SQS looks for available groups among the first 20,000 messages only (a
/// deep backlog in blocked groups hides the groups behind it); so do we, which
/// also bounds the cost of a receive.
const GROUP_SCAN_LIMIT: i64 = 20_000;
/// MessageGroupId and MessageDeduplicationId: 1 to 128 characters.
const MAX_ID_CHARS: usize = 128;

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
    fn as_str(self) -> &'static str {
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

fn invalid(op: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, op, message)
}

/// The queue name of `url_or_name` (`embedded://name` or `name`), checked like
/// an SQS FIFO queue name.
pub(super) fn queue_name(url_or_name: &str) -> Result<String> {
    let name = url_or_name.strip_prefix(URL_PREFIX).unwrap_or(url_or_name);
    let stem = name.strip_suffix(".fifo");
    let ok = stem.is_some_and(|s| {
        !s.is_empty()
            && name.len() <= 80
            && s.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
    });
    if !ok {
        return Err(invalid(
            "embedded.GetQueueUrl",
            format!(
                "`{url_or_name}` is not an embedded FIFO queue: expected embedded://NAME.fifo, NAME of up to 75 letters, digits, - and _"
            ),
        ));
    }
    Ok(name.to_owned())
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX / 4)
}

/// One embedded FIFO queue. Cheap to clone; all handles to one queue share
/// its long-poll wake-ups.
#[derive(Clone, Debug)]
pub struct EmbeddedQueue {
    db: Db,
    name: Arc<str>,
    url: String,
    notify: Arc<Notify>,
}

/// The stored settings of a queue.
struct QueueRow {
    retention_ms: i64,
    visibility_ms: i64,
    dedup_scope: String,
    dead_letter_queue: Option<String>,
    max_receive_count: Option<i64>,
}

fn load(conn: &Connection, op: &'static str, name: &str) -> Result<QueueRow> {
    conn.prepare_cached(
        "SELECT retention_ms, visibility_timeout_ms, dedup_scope, dead_letter_queue, max_receive_count
         FROM queues WHERE name = ?1",
    )
    .and_then(|mut s| {
        s.query_row([name], |r| {
            Ok(QueueRow {
                retention_ms: r.get(0)?,
                visibility_ms: r.get(1)?,
                dedup_scope: r.get(2)?,
                dead_letter_queue: r.get(3)?,
                max_receive_count: r.get(4)?,
            })
        })
        .optional()
    })
    .map_err(|e| sql_error(op, e))?
    .ok_or_else(|| {
        BackendError::new(
            ErrorKind::NotFound,
            op,
            format!("queue {URL_PREFIX}{name} does not exist (NonExistentQueue)"),
        )
    })
}

impl EmbeddedQueue {
    /// A handle to queue `name` (which need not exist yet: calls on a missing
    /// queue fail with [`ErrorKind::NotFound`], like SQS's NonExistentQueue).
    pub(super) fn new(db: Db, name: String) -> Self {
        EmbeddedQueue {
            notify: db.notify(&name),
            url: format!("{URL_PREFIX}{name}"),
            name: name.into(),
            db,
        }
    }

    /// Creates the queue, or brings an existing one's settings in line.
    pub(super) async fn create(db: Db, name: String, settings: QueueSettings) -> Result<Self> {
        const OP: &str = "embedded.CreateQueue";
        let name = queue_name(&name)?;
        if settings.visibility_timeout > MAX_VISIBILITY {
            return Err(invalid(OP, "VisibilityTimeout must be at most 12 hours"));
        }
        if !(Duration::from_secs(60)..=Duration::from_secs(14 * 24 * 3600))
            .contains(&settings.retention)
        {
            return Err(invalid(
                OP,
                "MessageRetentionPeriod must be 60 seconds to 14 days",
            ));
        }
        let redrive = match &settings.redrive {
            None => None,
            Some(r) => {
                if !(1..=1000).contains(&r.max_receive_count) {
                    return Err(invalid(OP, "maxReceiveCount must be 1 to 1000"));
                }
                let dlq = queue_name(&r.dead_letter_queue)?;
                if dlq == name {
                    return Err(invalid(OP, "a queue cannot be its own dead-letter queue"));
                }
                Some((dlq, i64::from(r.max_receive_count)))
            }
        };
        let now = db.clock.now_ms();
        let row_name = name.clone();
        db.call(OP, move |conn| {
            if let Some((dlq, _)) = &redrive {
                load(conn, OP, dlq).map_err(|_| {
                    invalid(
                        OP,
                        format!(
                            "dead-letter queue {URL_PREFIX}{dlq} does not exist: create it first"
                        ),
                    )
                })?;
            }
            conn.prepare_cached(
                "INSERT INTO queues (name, visibility_timeout_ms, retention_ms, dedup_scope,
                     dead_letter_queue, max_receive_count, created_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (name) DO UPDATE SET
                     visibility_timeout_ms = excluded.visibility_timeout_ms,
                     retention_ms = excluded.retention_ms,
                     dedup_scope = excluded.dedup_scope,
                     dead_letter_queue = excluded.dead_letter_queue,
                     max_receive_count = excluded.max_receive_count",
            )
            .and_then(|mut s| {
                s.execute(params![
                    row_name,
                    ms(settings.visibility_timeout),
                    ms(settings.retention),
                    settings.dedup_scope.as_str(),
                    redrive.as_ref().map(|(d, _)| d.as_str()),
                    redrive.as_ref().map(|(_, m)| *m),
                    now,
                ])
            })
            .map_err(|e| sql_error(OP, e))?;
            Ok(())
        })
        .await?;
        Ok(EmbeddedQueue::new(db, name))
    }

    /// The queue's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// What one receive transaction found.
struct Received {
    messages: Vec<QueueMessage>,
    /// Set when nothing was returned: when the earliest message in flight
    /// becomes visible again (a reason to look again before the wait ends).
    next_visible_ms: Option<i64>,
    /// Messages moved to this dead-letter queue.
    dead_lettered: Option<(String, usize)>,
}

fn new_token() -> String {
    format!("{:032x}", fastrand::u128(..))
}

/// A random (version 4) UUID, the shape of SQS message ids.
fn new_message_id() -> String {
    let r = fastrand::u128(..);
    let r = (r & !(0xf << 76)) | (0x4 << 76);
    let r = (r & !(0x3 << 62)) | (0x2 << 62);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        r >> 96,
        (r >> 80) & 0xffff,
        (r >> 64) & 0xffff,
        (r >> 48) & 0xffff,
        r & 0xffff_ffff_ffff
    )
}

fn receive_tx(
    conn: &Connection,
    name: &str,
    max: usize,
    visibility_ms: i64,
    now: i64,
) -> Result<Received> {
    const OP: &str = "embedded.ReceiveMessage";
    let sql = |e| sql_error(OP, e);
    let q = load(conn, OP, name)?;
    let redrive = q.dead_letter_queue.clone().zip(q.max_receive_count);

    // FIFO: a group with any message in flight returns nothing more.
    let mut skip: HashSet<String> = {
        let mut s = conn
            .prepare_cached(
                "SELECT DISTINCT group_id FROM queue_messages
                 WHERE queue = ?1 AND invisible_until_ms > ?2",
            )
            .map_err(sql)?;
        s.query_map(params![name, now], |r| r.get(0))
            .map_err(sql)?
            .collect::<rusqlite::Result<_>>()
            .map_err(sql)?
    };
    let mut out = Vec::new();
    let mut moved = 0;
    loop {
        // Groups in the order of their oldest message, as SQS serves them.
        let mut groups = Vec::new();
        let mut scanned_all = true;
        {
            let mut s = conn
                .prepare_cached(
                    "SELECT group_id FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?2",
                )
                .map_err(sql)?;
            let mut rows = s.query(params![name, GROUP_SCAN_LIMIT]).map_err(sql)?;
            while let Some(row) = rows.next().map_err(sql)? {
                let g: String = row.get(0).map_err(sql)?;
                if skip.insert(g.clone()) {
                    groups.push(g);
                    if groups.len() >= max - out.len() {
                        scanned_all = false;
                        break;
                    }
                }
            }
        }
        for group in &groups {
            // Like SQS, fill the batch from one group before the next.
            take_from_group(
                conn,
                name,
                group,
                &q,
                redrive.as_ref(),
                (max, visibility_ms, now),
                &mut out,
                &mut moved,
            )?;
            if out.len() >= max {
                break;
            }
        }
        if out.len() >= max || scanned_all {
            break;
        }
    }
    let next_visible_ms = if out.is_empty() {
        conn.prepare_cached(
            "SELECT MIN(invisible_until_ms) FROM queue_messages
             WHERE queue = ?1 AND invisible_until_ms > ?2",
        )
        .and_then(|mut s| s.query_row(params![name, now], |r| r.get(0)))
        .map_err(sql)?
    } else {
        None
    };
    Ok(Received {
        messages: out,
        next_visible_ms,
        dead_lettered: redrive.filter(|_| moved > 0).map(|(d, _)| (d, moved)),
    })
}

#[allow(clippy::too_many_arguments)]
fn take_from_group(
    conn: &Connection,
    name: &str,
    group: &str,
    q: &QueueRow,
    redrive: Option<&(String, i64)>,
    (max, visibility_ms, now): (usize, i64, i64),
    out: &mut Vec<QueueMessage>,
    moved: &mut usize,
) -> Result<()> {
    const OP: &str = "embedded.ReceiveMessage";
    let sql = |e| sql_error(OP, e);
    type Row = (i64, String, String, String, String, i64, i64);
    let mut after_seq = 0_i64;
    while out.len() < max {
        let want = max - out.len();
        let rows: Vec<Row> = conn
            .prepare_cached(
                "SELECT seq, message_id, dedup_id, body, attributes, receive_count, sent_at_ms
                 FROM queue_messages WHERE queue = ?1 AND group_id = ?2 AND seq > ?3
                 ORDER BY seq LIMIT ?4",
            )
            .and_then(|mut s| {
                s.query_map(params![name, group, after_seq, want as i64], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect()
            })
            .map_err(sql)?;
        let exhausted = rows.len() < want;
        for (seq, message_id, dedup_id, body, attributes, count, sent_at) in rows {
            after_seq = seq;
            if sent_at + q.retention_ms <= now {
                // Past retention: SQS deletes it rather than delivering it.
                conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
                    .and_then(|mut s| s.execute([seq]))
                    .map_err(sql)?;
                continue;
            }
            if let Some((dlq, _)) = redrive.filter(|(_, m)| count >= *m) {
                // The receive that would exceed maxReceiveCount moves it instead.
                // FIFO DLQs restart the retention clock at the move (SQS docs).
                conn.prepare_cached(
                    "INSERT INTO queue_messages (queue, message_id, group_id, dedup_id, body,
                         attributes, sent_at_ms, receive_count)
                     SELECT ?1, message_id, group_id, dedup_id, body, attributes, ?2, receive_count
                     FROM queue_messages WHERE seq = ?3",
                )
                .and_then(|mut s| s.execute(params![dlq, now, seq]))
                .and_then(|_| {
                    conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")?
                        .execute([seq])
                })
                .map_err(sql)?;
                *moved += 1;
                continue;
            }
            let token = new_token();
            conn.prepare_cached(
                "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?2,
                     received_at_ms = ?3, invisible_until_ms = ?4
                 WHERE seq = ?1",
            )
            .and_then(|mut s| s.execute(params![seq, token, now, now + visibility_ms]))
            .map_err(sql)?;
            let attributes: BTreeMap<String, String> =
                serde_json::from_str(&attributes).unwrap_or_default();
            out.push(QueueMessage {
                message_id,
                receipt_handle: format!("{seq}:{token}"),
                body,
                group_id: group.to_owned(),
                dedup_id: Some(dedup_id),
                receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
                attributes,
            });
        }
        if exhausted {
            break;
        }
    }
    Ok(())
}

/// A receipt handle checked against the stored message: its sequence number,
/// or `None` when the message is gone (deleted, moved or expired).
fn check_handle(
    conn: &Connection,
    op: &'static str,
    name: &str,
    handle: &str,
    now: i64,
) -> Result<Option<(i64, i64)>> {
    let parsed = handle.split_once(':').and_then(|(seq, token)| {
        let seq: i64 = seq.parse().ok()?;
        (token.len() == 32 && token.bytes().all(|b| b.is_ascii_hexdigit())).then_some((seq, token))
    });
    let Some((seq, token)) = parsed else {
        return Err(invalid(
            op,
            format!("ReceiptHandleIsInvalid: `{handle}` is not a valid receipt handle"),
        ));
    };
    let row: Option<(String, Option<String>, i64, Option<i64>)> = conn
        .prepare_cached(
            "SELECT queue, receipt, invisible_until_ms, received_at_ms
             FROM queue_messages WHERE seq = ?1",
        )
        .and_then(|mut s| {
            s.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()
        })
        .map_err(|e| sql_error(op, e))?;
    let Some((queue, receipt, invisible_until, received_at)) = row else {
        return Ok(None);
    };
    if queue != name {
        return Err(invalid(
            op,
            format!("ReceiptHandleIsInvalid: `{handle}` is not valid for this queue"),
        ));
    }
    // A FIFO receipt handle expires with its visibility timeout and when the
    // message is received again: only the latest receive may act on it.
    if receipt.as_deref() != Some(token) || invisible_until <= now {
        return Err(invalid(
            op,
            format!("InvalidParameterValue: receipt handle `{handle}` has expired"),
        ));
    }
    Ok(Some((seq, received_at.unwrap_or(now))))
}

fn check_batch(op: &'static str, n: usize) -> Result<()> {
    if n > MAX_BATCH {
        return Err(invalid(
            op,
            format!("TooManyEntriesInBatchRequest: {n} entries, at most {MAX_BATCH}"),
        ));
    }
    Ok(())
}

/// SQS replaces characters outside XML's set with U+FFFD instead of failing.
fn sqs_chars(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '\t' | '\n' | '\r' => c,
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => '\u{fffd}',
            c => c,
        })
        .collect()
}

fn check_message(op: &'static str, msg: &OutgoingMessage) -> Result<()> {
    let id_ok = |s: &str| {
        !s.is_empty()
            && s.chars().count() <= MAX_ID_CHARS
            && s.bytes().all(|b| b.is_ascii_graphic())
    };
    if !id_ok(&msg.group_id) {
        return Err(invalid(
            op,
            format!(
                "MessageGroupId `{}` must be 1 to 128 printable ASCII characters",
                msg.group_id
            ),
        ));
    }
    if !id_ok(&msg.dedup_id) {
        return Err(invalid(
            op,
            format!(
                "MessageDeduplicationId `{}` must be 1 to 128 printable ASCII characters",
                msg.dedup_id
            ),
        ));
    }
    if msg.body.is_empty() {
        return Err(invalid(op, "the message body must not be empty"));
    }
    if msg.attributes.len() > MAX_ATTRIBUTES {
        return Err(invalid(
            op,
            format!(
                "{} message attributes, at most {MAX_ATTRIBUTES}",
                msg.attributes.len()
            ),
        ));
    }
    for (k, v) in &msg.attributes {
        let lower = k.to_ascii_lowercase();
        let name_ok = !k.is_empty()
            && k.len() <= 256
            && k.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_-.".contains(&b))
            && !k.starts_with('.')
            && !k.ends_with('.')
            && !k.contains("..")
            && !lower.starts_with("aws.")
            && !lower.starts_with("amazon.");
        if !name_ok {
            return Err(invalid(
                op,
                format!("`{k}` is not a valid message attribute name"),
            ));
        }
        if v.is_empty() {
            return Err(invalid(
                op,
                format!("message attribute `{k}` has an empty value"),
            ));
        }
    }
    let size = msg.body.len()
        + msg
            .attributes
            .iter()
            .map(|(k, v)| k.len() + "String".len() + v.len())
            .sum::<usize>();
    if size > MAX_MESSAGE_BYTES {
        return Err(invalid(
            op,
            format!("the message is {size} bytes; SQS accepts at most {MAX_MESSAGE_BYTES}"),
        ));
    }
    Ok(())
}

#[async_trait]
impl Queue for EmbeddedQueue {
    fn url(&self) -> &str {
        &self.url
    }

    async fn receive(&self, req: ReceiveRequest) -> Result<Vec<QueueMessage>> {
        const OP: &str = "embedded.ReceiveMessage";
        if !(1..=MAX_BATCH as u32).contains(&req.max_messages) {
            return Err(invalid(
                OP,
                format!(
                    "MaxNumberOfMessages must be 1 to 10: got {}",
                    req.max_messages
                ),
            ));
        }
        if req.visibility > MAX_VISIBILITY {
            return Err(invalid(OP, "VisibilityTimeout must be at most 12 hours"));
        }
        // Capped like the SQS backend caps WaitTimeSeconds.
        let deadline = Instant::now() + req.wait.min(MAX_WAIT);
        let max = req.max_messages as usize;
        let visibility_ms = ms(req.visibility);
        loop {
            // Registered before looking, so a send that commits after the look
            // still wakes this poll.
            let notified = self.notify.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            let now = self.db.clock.now_ms();
            let name = self.name.clone();
            let db = self.db.clone();
            let found = self
                .db
                .call_then(
                    OP,
                    move |conn| receive_tx(conn, &name, max, visibility_ms, now),
                    move |r: &Received| {
                        if let Some((dlq, _)) = &r.dead_lettered {
                            db.notify(dlq).notify_waiters();
                        }
                    },
                )
                .await?;
            if let Some((dlq, n)) = &found.dead_lettered {
                tracing::info!(queue = %self.url, dead_letter_queue = %dlq, count = n, "moved messages past maxReceiveCount to the dead-letter queue");
            }
            if !found.messages.is_empty() || Instant::now() >= deadline {
                return Ok(found.messages);
            }
            let wake = found
                .next_visible_ms
                .map_or(deadline, |t| self.db.clock.instant_at(t).min(deadline));
            tokio::select! {
                _ = &mut notified => {}
                _ = tokio::time::sleep_until(wake) => {}
            }
        }
    }

    async fn delete_batch(&self, receipt_handles: &[&str]) -> Result<Vec<Result<()>>> {
        const OP: &str = "embedded.DeleteMessageBatch";
        check_batch(OP, receipt_handles.len())?;
        if receipt_handles.is_empty() {
            return Ok(Vec::new());
        }
        let handles: Vec<String> = receipt_handles.iter().map(|h| (*h).to_owned()).collect();
        let name = self.name.clone();
        let now = self.db.clock.now_ms();
        let notify = self.notify.clone();
        self.db
            .call_then(
                OP,
                move |conn| {
                    let mut results = Vec::with_capacity(handles.len());
                    for h in &handles {
                        let r = check_handle(conn, OP, &name, h, now).and_then(|found| {
                            if let Some((seq, _)) = found {
                                conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
                                    .and_then(|mut s| s.execute([seq]))
                                    .map_err(|e| sql_error(OP, e))?;
                            }
                            // A message already gone counts as deleted, like SQS.
                            Ok(())
                        });
                        results.push(r);
                    }
                    Ok(results)
                },
                // A delete can unblock the rest of a group.
                move |r: &Vec<Result<()>>| {
                    if r.iter().any(Result::is_ok) {
                        notify.notify_waiters();
                    }
                },
            )
            .await
    }

    async fn change_visibility_batch(
        &self,
        entries: &[(&str, Duration)],
    ) -> Result<Vec<Result<()>>> {
        const OP: &str = "embedded.ChangeMessageVisibilityBatch";
        check_batch(OP, entries.len())?;
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        let entries: Vec<(String, Duration)> =
            entries.iter().map(|(h, t)| ((*h).to_owned(), *t)).collect();
        let name = self.name.clone();
        let now = self.db.clock.now_ms();
        let notify = self.notify.clone();
        self.db
            .call_then(
                OP,
                move |conn| {
                    let mut results = Vec::with_capacity(entries.len());
                    for (h, timeout) in &entries {
                        let r = change_one(conn, OP, &name, h, *timeout, now);
                        results.push(r);
                    }
                    Ok(results)
                },
                move |r: &Vec<Result<()>>| {
                    if r.iter().any(Result::is_ok) {
                        notify.notify_waiters();
                    }
                },
            )
            .await
    }

    async fn send(&self, msg: &OutgoingMessage) -> Result<String> {
        const OP: &str = "embedded.SendMessage";
        check_message(OP, msg)?;
        let msg = OutgoingMessage {
            body: sqs_chars(&msg.body),
            attributes: msg
                .attributes
                .iter()
                .map(|(k, v)| (k.clone(), sqs_chars(v)))
                .collect(),
            ..msg.clone()
        };
        let name = self.name.clone();
        let now = self.db.clock.now_ms();
        let notify = self.notify.clone();
        let (id, _) = self
            .db
            .call_then(
                OP,
                move |conn| send_tx(conn, &name, &msg, now),
                move |(_, new): &(String, bool)| {
                    if *new {
                        notify.notify_waiters();
                    }
                },
            )
            .await?;
        Ok(id)
    }

    async fn info(&self) -> Result<QueueInfo> {
        const OP: &str = "embedded.GetQueueAttributes";
        let name = self.name.clone();
        let now = self.db.clock.now_ms();
        self.db
            .call(OP, move |conn| {
                let q = load(conn, OP, &name)?;
                let (visible, in_flight): (i64, i64) = conn
                    .prepare_cached(
                        "SELECT COUNT(*) FILTER (WHERE invisible_until_ms <= ?2),
                                COUNT(*) FILTER (WHERE invisible_until_ms > ?2)
                         FROM queue_messages WHERE queue = ?1",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![name, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    })
                    .map_err(|e| sql_error(OP, e))?;
                Ok(QueueInfo {
                    fifo: true,
                    visibility_timeout: Duration::from_millis(
                        u64::try_from(q.visibility_ms).unwrap_or(0),
                    ),
                    dead_letter_url: q.dead_letter_queue.map(|d| format!("{URL_PREFIX}{d}")),
                    max_receive_count: q.max_receive_count.and_then(|m| u32::try_from(m).ok()),
                    approximate_messages: u64::try_from(visible).unwrap_or(0),
                    approximate_in_flight: u64::try_from(in_flight).unwrap_or(0),
                })
            })
            .await
    }
}

fn change_one(
    conn: &Connection,
    op: &'static str,
    name: &str,
    handle: &str,
    timeout: Duration,
    now: i64,
) -> Result<()> {
    if timeout > MAX_VISIBILITY {
        return Err(invalid(op, "VisibilityTimeout must be at most 12 hours"));
    }
    let Some((seq, received_at)) = check_handle(conn, op, name, handle, now)? else {
        return Err(invalid(
            op,
            format!("MessageNotInflight: the message of `{handle}` is not in flight"),
        ));
    };
    let until = now + ms(timeout);
    if until > received_at + ms(MAX_VISIBILITY) {
        return Err(invalid(
            op,
            "a message can stay in flight at most 12 hours after it was received",
        ));
    }
    conn.prepare_cached("UPDATE queue_messages SET invisible_until_ms = ?2 WHERE seq = ?1")
        .and_then(|mut s| s.execute(params![seq, until]))
        .map_err(|e| sql_error(op, e))?;
    Ok(())
}

/// Stores a message unless its deduplication id was seen within the window;
/// returns its message id and whether it is new.
fn send_tx(
    conn: &Connection,
    name: &str,
    msg: &OutgoingMessage,
    now: i64,
) -> Result<(String, bool)> {
    const OP: &str = "embedded.SendMessage";
    let sql = |e| sql_error(OP, e);
    let q = load(conn, OP, name)?;
    let scope = if q.dedup_scope == DedupScope::MessageGroup.as_str() {
        msg.group_id.as_str()
    } else {
        ""
    };
    let seen: Option<(String, i64)> = conn
        .prepare_cached(
            "SELECT message_id, expires_at_ms FROM queue_dedup
             WHERE queue = ?1 AND scope = ?2 AND dedup_id = ?3",
        )
        .and_then(|mut s| {
            s.query_row(params![name, scope, msg.dedup_id], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })
        .map_err(sql)?;
    if let Some((id, expires)) = seen {
        if expires > now {
            // Accepted and dropped, like SQS: the window counts from the first send.
            return Ok((id, false));
        }
    }
    let id = new_message_id();
    let attributes = serde_json::to_string(&msg.attributes)
        .map_err(|e| BackendError::new(ErrorKind::Other, OP, e.to_string()))?;
    conn.prepare_cached(
        "INSERT OR REPLACE INTO queue_dedup (queue, scope, dedup_id, message_id, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| {
        s.execute(params![
            name,
            scope,
            msg.dedup_id,
            id,
            now + DEDUP_WINDOW_MS
        ])
    })
    .map_err(sql)?;
    conn.prepare_cached(
        "INSERT INTO queue_messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![name, id, msg.group_id, msg.dedup_id, msg.body, attributes, now])
    })
    .map_err(sql)?;
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_urls() {
        assert_eq!(queue_name("embedded://a-b_1.fifo").unwrap(), "a-b_1.fifo");
        assert_eq!(queue_name("a.fifo").unwrap(), "a.fifo");
        for bad in [
            "a",
            "embedded://a",
            ".fifo",
            "a b.fifo",
            "https://sqs/1/a.fifo",
        ] {
            let e = queue_name(bad).unwrap_err();
            assert_eq!(e.kind, ErrorKind::Validation, "{bad}");
        }
    }

    #[test]
    fn message_ids_look_like_sqs_ones() {
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_message_id());
    }

    #[test]
    fn invalid_characters_become_replacement_characters() {
        assert_eq!(sqs_chars("a\u{0}b\tc\u{ffff}"), "a\u{fffd}b\tc\u{fffd}");
    }
}
