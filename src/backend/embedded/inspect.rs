//! Read-mostly views of the embedded store for the `dev` console: queue
//! depths and the busiest groups, dead letters looked at without receiving
//! them (a receive would bump their receive count and hide them), one dead
//! letter deleted by message id, and every connection and session.
//!
//! SQS and DynamoDB have no cheap equivalent of these (no peek, no scan
//! worth paying for every second), which is why they are embedded-only.

use std::collections::BTreeMap;

use rusqlite::params;
use serde::Serialize;

use super::EmbeddedStore;
use super::error::sql_error;
use super::index::Change;
use super::queue::{depth, queue_name};
use super::tables::{CONNECTION_COLUMNS, connection_of};
use crate::backend::{BackendError, Connection, ErrorKind, Result};
use crate::sync::lock;

/// How many messages a queue holds, as SQS's `ApproximateNumberOf*` report it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct QueueDepth {
    /// Ready to be received.
    pub visible: u64,
    /// Received and not yet deleted or released.
    pub in_flight: u64,
    /// Sent with a delay that has not passed. Always 0: the embedded queue,
    /// like the FIFO queues `migrate` creates, has no delivery delay.
    pub delayed: u64,
    /// The groups with the most messages, most first (at most the limit asked).
    pub busiest_groups: Vec<GroupBacklog>,
}

/// Messages waiting in one message group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct GroupBacklog {
    /// MessageGroupId (the session).
    pub group: String,
    /// Messages of the group in the queue (visible or in flight).
    pub messages: u64,
}

/// A message looked at in place.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PeekedMessage {
    /// Queue-assigned message id.
    pub message_id: String,
    /// MessageGroupId.
    pub group: String,
    /// The body as sent.
    pub body: String,
    /// String message attributes (`reason`, `errorType`, ... on dead letters).
    pub attributes: BTreeMap<String, String>,
    /// When it entered this queue, epoch ms.
    pub sent_at: i64,
    /// Receives so far.
    pub receive_count: u32,
    /// Whether someone holds it now (a worker, a replay).
    pub in_flight: bool,
}

/// A session as the tables know it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct SessionSummary {
    /// The session id.
    pub session_id: String,
    /// Connections stored for it (not expired).
    pub members: u64,
    /// Messages stored for it (not expired).
    pub stored: u64,
    /// Newest stored message's `receivedAt`, epoch ms.
    pub last_message_at: Option<i64>,
}

impl EmbeddedStore {
    /// Depths of the queue at `url` and its `top` busiest groups.
    pub async fn queue_depth(&self, url: &str, top: usize) -> Result<QueueDepth> {
        const OP: &str = "embedded.QueueDepth";
        let name = queue_name(url)?;
        let now = self.db.clock.now_ms();
        let index = self.db.index();
        self.db
            .call(OP, move |_conn| {
                let (visible, in_flight) = depth(&index, &name, now);
                let busiest_groups = lock(&index).queue(&name).map_or_else(Vec::new, |m| {
                    m.busiest(top)
                        .into_iter()
                        .map(|(group, messages)| GroupBacklog { group, messages })
                        .collect()
                });
                Ok(QueueDepth {
                    visible,
                    in_flight,
                    delayed: 0,
                    busiest_groups,
                })
            })
            .await
    }

    /// Up to `limit` messages of the queue at `url`, oldest first, without
    /// receiving them.
    pub async fn peek(&self, url: &str, limit: usize) -> Result<Vec<PeekedMessage>> {
        const OP: &str = "embedded.Peek";
        let name = queue_name(url)?;
        let now = self.db.clock.now_ms();
        self.db
            .call(OP, move |conn| {
                conn.prepare_cached(
                    "SELECT message_id, group_id, body, attributes, sent_at_ms, receive_count,
                            invisible_until_ms > ?2
                     FROM queue_messages WHERE queue = ?1 ORDER BY seq LIMIT ?3",
                )
                .and_then(|mut s| {
                    s.query_map(params![name, now, limit as i64], |r| {
                        let attributes: String = r.get(3)?;
                        Ok(PeekedMessage {
                            message_id: r.get(0)?,
                            group: r.get(1)?,
                            body: r.get(2)?,
                            attributes: serde_json::from_str(&attributes).unwrap_or_default(),
                            sent_at: r.get(4)?,
                            receive_count: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                            in_flight: r.get(6)?,
                        })
                    })?
                    .collect()
                })
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }

    /// The group of message `message_id` in the queue at `url` and its place
    /// in that group: 1 for the group's oldest message. `None`: not there.
    pub async fn place_in_group(
        &self,
        url: &str,
        message_id: &str,
    ) -> Result<Option<(String, u64)>> {
        const OP: &str = "embedded.PlaceInGroup";
        let name = queue_name(url)?;
        let id = message_id.to_owned();
        self.db
            .call(OP, move |conn| {
                conn.prepare_cached(
                    "SELECT m.group_id,
                            (SELECT COUNT(*) FROM queue_messages o
                             WHERE o.queue = m.queue AND o.group_id = m.group_id AND o.seq <= m.seq)
                     FROM queue_messages m WHERE m.queue = ?1 AND m.message_id = ?2",
                )
                .and_then(|mut s| {
                    rusqlite::OptionalExtension::optional(s.query_row(params![name, id], |r| {
                        Ok((
                            r.get::<_, String>(0)?,
                            u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                        ))
                    }))
                })
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }

    /// Deletes message `message_id` from the queue at `url` unless someone
    /// holds it. `Ok(false)`: no such message. A held message is refused
    /// with [`ErrorKind::ConditionFailed`] (its holder will delete or release it).
    pub async fn delete_message(&self, url: &str, message_id: &str) -> Result<bool> {
        const OP: &str = "embedded.DeleteMessageById";
        let name = queue_name(url)?;
        let id = message_id.to_owned();
        let now = self.db.clock.now_ms();
        let notify = self.db.notify(&name);
        let index = self.db.index();
        self.db
            .call_then(
                OP,
                move |conn| {
                    let sql = |e| sql_error(OP, e);
                    let held: Option<bool> = conn
                        .prepare_cached(
                            "SELECT invisible_until_ms > ?3 FROM queue_messages
                             WHERE queue = ?1 AND message_id = ?2",
                        )
                        .and_then(|mut s| {
                            rusqlite::OptionalExtension::optional(
                                s.query_row(params![name, id, now], |r| r.get(0)),
                            )
                        })
                        .map_err(sql)?;
                    match held {
                        None => Ok(false),
                        Some(true) => Err(BackendError::new(
                            ErrorKind::ConditionFailed,
                            OP,
                            format!("message {id} is in flight: try again when it is released"),
                        )),
                        Some(false) => {
                            let seqs: Vec<i64> = conn
                                .prepare_cached(
                                    "DELETE FROM queue_messages WHERE queue = ?1 AND message_id = ?2
                                     RETURNING seq",
                                )
                                .and_then(|mut s| {
                                    s.query_map(params![name, id], |r| r.get(0))?.collect()
                                })
                                .map_err(sql)?;
                            lock(&index).apply(
                                seqs.into_iter()
                                    .map(|seq| Change::Remove {
                                        queue: name.clone(),
                                        seq,
                                    })
                                    .collect(),
                            );
                            Ok(true)
                        }
                    }
                },
                // A delete can unblock the rest of a group.
                move |deleted: &bool| {
                    if *deleted {
                        notify.notify_waiters();
                    }
                },
            )
            .await
    }

    /// Up to `limit` unexpired connections of table `table`, by connection id.
    pub async fn all_connections(&self, table: &str, limit: usize) -> Result<Vec<Connection>> {
        const OP: &str = "embedded.Scan(connections)";
        let table = table.to_owned();
        let now = self.db.clock.now_ms().div_euclid(1000);
        self.db
            .call(OP, move |conn| {
                conn.prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS}
                     FROM connections WHERE tbl = ?1 AND expires_at >= ?2
                     ORDER BY connection_id LIMIT ?3"
                ))
                .and_then(|mut s| {
                    s.query_map(params![table, now, limit as i64], connection_of)?
                        .collect()
                })
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }

    /// Up to `limit` sessions with members or stored messages (connections
    /// table `connections`, messages table `messages`), most members first.
    pub async fn sessions(
        &self,
        connections: &str,
        messages: &str,
        limit: usize,
    ) -> Result<Vec<SessionSummary>> {
        const OP: &str = "embedded.Sessions";
        let (connections, messages) = (connections.to_owned(), messages.to_owned());
        let now = self.db.clock.now_ms().div_euclid(1000);
        self.db
            .call(OP, move |conn| {
                conn.prepare_cached(
                    "WITH m AS (SELECT session_id, COUNT(*) AS members FROM connections
                                WHERE tbl = ?1 AND expires_at >= ?3 GROUP BY session_id),
                          s AS (SELECT session_id, COUNT(*) AS stored, MAX(received_at) AS last
                                FROM stored_messages
                                WHERE tbl = ?2 AND expires_at >= ?3 GROUP BY session_id),
                          ids AS (SELECT session_id FROM m UNION SELECT session_id FROM s)
                     SELECT ids.session_id, COALESCE(m.members, 0), COALESCE(s.stored, 0), s.last
                     FROM ids LEFT JOIN m USING (session_id) LEFT JOIN s USING (session_id)
                     ORDER BY 2 DESC, 3 DESC, 1 LIMIT ?4",
                )
                .and_then(|mut s| {
                    s.query_map(params![connections, messages, now, limit as i64], |r| {
                        Ok(SessionSummary {
                            session_id: r.get(0)?,
                            members: u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
                            stored: u64::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                            last_message_at: r.get(3)?,
                        })
                    })?
                    .collect()
                })
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }
}
