//! [`Queue`] with SQS FIFO semantics on the embedded database: the public
//! types and the async side (long polling, wake-ups) here, the transactions in
//! `sql`, the request checks in `checks`.

mod checks;
mod settings;
mod sql;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rusqlite::params;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::db::Db;
use super::error::sql_error;
use super::index::{Change, QueueIndex};
use crate::backend::{
    MAX_BATCH, OutgoingMessage, Queue, QueueInfo, QueueMessage, ReceiveRequest, Result,
};
use crate::sync::lock;
pub(super) use checks::queue_name;
use checks::{check_batch, check_message, sqs_chars};
pub use settings::{DedupScope, QueueSettings, Redrive, URL_PREFIX};
use settings::{MAX_VISIBILITY, MAX_WAIT, invalid, ms};
use sql::{Received, change_one, check_handle, load, receive_tx, send_tx};

/// How many messages of queue `name` are visible and how many in flight at `now`.
pub(super) fn depth(index: &Mutex<QueueIndex>, name: &str, now: i64) -> (u64, u64) {
    lock(index).queue(name).map_or((0, 0), |m| m.depth(now))
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
            let index = self.db.index();
            let found = self
                .db
                .call_then(
                    OP,
                    move |conn| receive_tx(conn, &index, &name, max, visibility_ms, now),
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
        let index = self.db.index();
        self.db
            .call_then(
                OP,
                move |conn| {
                    let mut results = Vec::with_capacity(handles.len());
                    let mut changes = Vec::new();
                    for h in &handles {
                        let r = check_handle(conn, OP, &name, h, now).and_then(|found| {
                            if let Some((seq, _)) = found {
                                conn.prepare_cached("DELETE FROM queue_messages WHERE seq = ?1")
                                    .and_then(|mut s| s.execute([seq]))
                                    .map_err(|e| sql_error(OP, e))?;
                                changes.push(Change::Remove {
                                    queue: name.to_string(),
                                    seq,
                                });
                            }
                            // A message already gone counts as deleted, like SQS.
                            Ok(())
                        });
                        results.push(r);
                    }
                    lock(&index).apply(changes);
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
        let index = self.db.index();
        self.db
            .call_then(
                OP,
                move |conn| {
                    let mut results = Vec::with_capacity(entries.len());
                    let mut changes = Vec::new();
                    for (h, timeout) in &entries {
                        let r = change_one(conn, OP, &name, h, *timeout, now);
                        results.push(r.map(|c| changes.push(c)));
                    }
                    lock(&index).apply(changes);
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
        let (dedup, index) = (self.db.dedup(), self.db.index());
        let (id, _) = self
            .db
            .call_then(
                OP,
                move |conn| send_tx(conn, (&dedup, &index), &name, &msg, now),
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
        let index = self.db.index();
        self.db
            .call(OP, move |conn| {
                let q = load(conn, OP, &name)?;
                let (visible, in_flight) = depth(&index, &name, now);
                Ok(QueueInfo {
                    fifo: true,
                    visibility_timeout: Duration::from_millis(
                        u64::try_from(q.visibility_ms).unwrap_or(0),
                    ),
                    dead_letter_url: q.dead_letter_queue.map(|d| format!("{URL_PREFIX}{d}")),
                    max_receive_count: q.max_receive_count.and_then(|m| u32::try_from(m).ok()),
                    approximate_messages: visible,
                    approximate_in_flight: in_flight,
                })
            })
            .await
    }
}
