//! The queue's transactions: each runs inside one group-commit transaction
//! of the store (see `db`), so it sees and leaves a consistent queue.
//!
//! Over 400 lines because send, receive (with redrive), visibility changes and
//! deletes share the row loading and handle checks below and are read together
//! to check the FIFO rules; a third of it is the receive path alone.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};

use super::settings::{DedupScope, MAX_VISIBILITY, URL_PREFIX, invalid, ms};
use crate::backend::embedded::dedup::{self, Dedup};
use crate::backend::embedded::error::sql_error;
use crate::backend::embedded::index::{Change, QueueIndex};
use crate::backend::embedded::schema::DEDUP_WINDOW_MS;
use crate::backend::{BackendError, ErrorKind, OutgoingMessage, QueueMessage, Result};
use crate::sync::lock;

/// SQS looks for available groups among the first 20,000 messages only (a
/// deep backlog in blocked groups hides the groups behind it); so do we, which
/// also bounds the cost of a receive.
const GROUP_SCAN_LIMIT: usize = 20_000;

/// The stored settings of a queue.
pub(super) struct QueueRow {
    pub(super) retention_ms: i64,
    pub(super) visibility_ms: i64,
    pub(super) dedup_scope: String,
    pub(super) dead_letter_queue: Option<String>,
    pub(super) max_receive_count: Option<i64>,
}

pub(super) fn load(conn: &Connection, op: &'static str, name: &str) -> Result<QueueRow> {
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

/// What one receive transaction found.
pub(super) struct Received {
    pub(super) messages: Vec<QueueMessage>,
    /// Set when nothing was returned: when the earliest message in flight
    /// becomes visible again (a reason to look again before the wait ends).
    pub(super) next_visible_ms: Option<i64>,
    /// Messages moved to this dead-letter queue.
    pub(super) dead_lettered: Option<(String, usize)>,
}

/// 128 random bits from the thread's cryptographic generator (rand's
/// `ThreadRng`: ChaCha12 seeded from the operating system and reseeded from it
/// as it goes). A receipt handle is a capability (whoever holds it can delete
/// or hide the message), so it must not be guessable from earlier ones, as a
/// fast non-cryptographic generator's output would be. Not a read of the OS
/// generator per call: that was a `getrandom` system call per send and per
/// receive on the store's one writer thread.
fn random_u128() -> u128 {
    rand::rng().random()
}

fn new_token() -> String {
    format!("{:032x}", random_u128())
}

/// A random (version 4) UUID, the shape of SQS message ids.
fn new_message_id() -> String {
    let r = random_u128();
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

pub(super) fn receive_tx(
    conn: &Connection,
    index: &Mutex<QueueIndex>,
    name: &str,
    max: usize,
    visibility_ms: i64,
    now: i64,
) -> Result<Received> {
    const OP: &str = "embedded.ReceiveMessage";
    let q = load(conn, OP, name)?;
    let redrive = q.dead_letter_queue.clone().zip(q.max_receive_count);
    let mut index = lock(index);
    let mut out = Vec::new();
    let mut changes = Vec::new();
    let mut moved = 0;
    if let Some(m) = index.queue(name) {
        // FIFO: a group with any message in flight returns nothing more.
        let skip = m.held_groups(now);
        // Groups in the order of their oldest message, as SQS serves them.
        for group in m.groups_in_order(GROUP_SCAN_LIMIT) {
            if out.len() >= max {
                break;
            }
            if skip.contains(group) {
                continue;
            }
            // Like SQS, fill the batch from one group before the next.
            for seq in m.group(group) {
                if out.len() >= max {
                    break;
                }
                let taken = take(
                    conn,
                    name,
                    (seq, group),
                    &q,
                    redrive.as_ref(),
                    (visibility_ms, now),
                    &mut changes,
                )?;
                match taken {
                    Taken::Message(msg) => out.push(*msg),
                    Taken::Moved => moved += 1,
                    Taken::Gone => {}
                }
            }
        }
    }
    // Every statement succeeded: the index takes the changes on.
    index.apply(changes);
    let next_visible_ms = if out.is_empty() {
        index.queue(name).and_then(|m| m.next_visible(now))
    } else {
        None
    };
    Ok(Received {
        messages: out,
        next_visible_ms,
        dead_lettered: redrive.filter(|_| moved > 0).map(|(d, _)| (d, moved)),
    })
}

/// What became of one message a receive looked at.
enum Taken {
    /// Received: hidden, with a new receipt handle.
    Message(Box<QueueMessage>),
    /// Moved to the dead-letter queue.
    Moved,
    /// Past retention and deleted, or not there.
    Gone,
}

/// Receives message `seq` of `group`, or moves or deletes it when the queue's
/// settings say so; the index changes go to `changes`.
fn take(
    conn: &Connection,
    name: &str,
    (seq, group): (i64, &Arc<str>),
    q: &QueueRow,
    redrive: Option<&(String, i64)>,
    (visibility_ms, now): (i64, i64),
    changes: &mut Vec<Change>,
) -> Result<Taken> {
    const OP: &str = "embedded.ReceiveMessage";
    let sql = |e| sql_error(OP, e);
    type Row = (String, String, String, String, i64, i64);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT message_id, dedup_id, body, attributes, receive_count, sent_at_ms
             FROM queue_messages WHERE seq = ?1",
        )
        .and_then(|mut s| {
            s.query_row([seq], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                ))
            })
            .optional()
        })
        .map_err(sql)?;
    let gone = Change::Remove {
        queue: name.to_owned(),
        seq,
    };
    let Some((message_id, dedup_id, body, attributes, count, sent_at)) = row else {
        // Not in the table: the index forgets it rather than fail every
        // receive of the queue (it cannot happen while both are kept equal).
        tracing::warn!(
            queue = name,
            seq,
            "a queue message in the index is not in the table; dropped from the index"
        );
        changes.push(gone);
        return Ok(Taken::Gone);
    };
    if sent_at + q.retention_ms <= now {
        // Past retention: SQS deletes it rather than delivering it.
        conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
            .and_then(|mut s| s.execute([seq]))
            .map_err(sql)?;
        changes.push(gone);
        return Ok(Taken::Gone);
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
            let moved = conn.last_insert_rowid();
            conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")?
                .execute([seq])?;
            Ok(moved)
        })
        .map(|moved| {
            changes.push(gone);
            changes.push(Change::Insert {
                queue: dlq.clone(),
                seq: moved,
                group: group.clone(),
            });
        })
        .map_err(sql)?;
        return Ok(Taken::Moved);
    }
    let token = new_token();
    let until_ms = now + visibility_ms;
    conn.prepare_cached(
        "UPDATE queue_messages SET receive_count = receive_count + 1, receipt = ?2,
             received_at_ms = ?3, invisible_until_ms = ?4
         WHERE seq = ?1",
    )
    .and_then(|mut s| s.execute(params![seq, token, now, until_ms]))
    .map_err(sql)?;
    changes.push(Change::Hide {
        queue: name.to_owned(),
        seq,
        until_ms,
    });
    let attributes: BTreeMap<String, String> =
        serde_json::from_str(&attributes).unwrap_or_default();
    Ok(Taken::Message(Box::new(QueueMessage {
        message_id,
        receipt_handle: format!("{seq}:{token}"),
        body,
        group_id: group.to_string(),
        dedup_id: Some(dedup_id),
        receive_count: u32::try_from(count + 1).unwrap_or(u32::MAX),
        sent_at_ms: Some(sent_at),
        attributes,
    })))
}

/// A receipt handle checked against the stored message: its sequence number,
/// or `None` when the message is gone (deleted, moved or expired).
pub(super) fn check_handle(
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

pub(super) fn change_one(
    conn: &Connection,
    op: &'static str,
    name: &str,
    handle: &str,
    timeout: Duration,
    now: i64,
) -> Result<Change> {
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
    Ok(Change::Hide {
        queue: name.to_owned(),
        seq,
        until_ms: until,
    })
}

/// Stores a message unless its deduplication id was seen within the window;
/// returns its message id and whether it is new.
pub(super) fn send_tx(
    conn: &Connection,
    (dedup, index): (&Mutex<Dedup>, &Mutex<QueueIndex>),
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
    let key = dedup::key(name, scope, &msg.dedup_id);
    let mut seen = lock(dedup);
    if let Some(row) = seen.lookup(key, now) {
        // The row must also say so: a key is a hash, and the row is the truth.
        let first: Option<String> = conn
            .prepare_cached(
                "SELECT message_id FROM queue_dedup_log
                 WHERE id = ?1 AND queue = ?2 AND scope = ?3 AND dedup_id = ?4",
            )
            .and_then(|mut s| {
                s.query_row(params![row, name, scope, msg.dedup_id], |r| r.get(0))
                    .optional()
            })
            .map_err(sql)?;
        if let Some(id) = first {
            // Accepted and dropped, like SQS: the window counts from the first send.
            return Ok((id, false));
        }
    }
    let id = new_message_id();
    let attributes = serde_json::to_string(&msg.attributes)
        .map_err(|e| BackendError::new(ErrorKind::Other, OP, e.to_string()))?;
    let expires = now + DEDUP_WINDOW_MS;
    conn.prepare_cached(
        "INSERT INTO queue_dedup_log (queue, scope, dedup_id, message_id, expires_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![name, scope, msg.dedup_id, id, expires]))
    .map_err(sql)?;
    let row = conn.last_insert_rowid();
    conn.prepare_cached(
        "INSERT INTO queue_messages (queue, message_id, group_id, dedup_id, body, attributes, sent_at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
    )
    .and_then(|mut s| {
        s.execute(params![name, id, msg.group_id, msg.dedup_id, msg.body, attributes, now])
    })
    .map_err(sql)?;
    let seq = conn.last_insert_rowid();
    // Last, once nothing can fail: a failed job leaves both as they were.
    seen.record(key, row, expires);
    let mut index = lock(index);
    let group = index
        .group_name(name, &msg.group_id)
        .unwrap_or_else(|| msg.group_id.as_str().into());
    index.apply(vec![Change::Insert {
        queue: name.to_owned(),
        seq,
        group,
    }]);
    Ok((id, true))
}

#[cfg(test)]
mod tests {
    use super::new_message_id;

    #[test]
    fn message_ids_look_like_sqs_ones() {
        let id = new_message_id();
        assert_eq!(id.len(), 36);
        assert_eq!(&id[14..15], "4");
        assert_ne!(id, new_message_id());
    }
}
