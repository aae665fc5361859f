//! [`Connections`] and [`Messages`] with the keys, indexes and TTL behaviour of
//! the DynamoDB tables in `migrations/` (0001 connections, 0002 messages).
//!
//! One file over 400 lines on purpose: both tables share the row mapping and
//! page cursors here, and the sessions work is changing this file now; split
//! it (connections / messages) after that lands.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use rusqlite::{Connection as Sql, OptionalExtension, Row, params};

use super::db::Db;
use super::error::sql_error;
use crate::backend::{
    Appended, BackendError, Connection, Connections, ErrorKind, Messages, Page, Position, Result,
    Resumable, StoredKey, StoredKeys, StoredMessage,
};
use crate::envelope::Sender;

/// Connections per page when none is configured (DynamoDB's limit is 1 MB of
/// items, some thousands of connections; a page here costs nothing extra).
pub const DEFAULT_PAGE_SIZE: u32 = 1000;

/// DynamoDB's item size limit.
const MAX_ITEM_BYTES: usize = 400 * 1024;

fn invalid(op: &'static str, message: impl Into<String>) -> BackendError {
    BackendError::new(ErrorKind::Validation, op, message)
}

/// Now in epoch seconds, the unit of the `expiresAt` TTL attributes.
fn now_secs(db: &Db) -> i64 {
    db.clock.now_ms().div_euclid(1000)
}

/// The connections table: key `connectionId`, lookups by `sessionId` and
/// `userId` (the `bySession` / `byUser` GSIs), TTL on `expiresAt`.
#[derive(Clone, Debug)]
pub struct EmbeddedConnections {
    db: Db,
    table: Arc<str>,
    page_size: u32,
}

pub(super) const CONNECTION_COLUMNS: &str =
    "connection_id, session_id, user_id, connected_at, expires_at, domain_name, stage, source_ip";

pub(super) fn connection_of(r: &Row<'_>) -> rusqlite::Result<Connection> {
    Ok(Connection {
        connection_id: r.get(0)?,
        session_id: r.get(1)?,
        user_id: r.get(2)?,
        connected_at: r.get(3)?,
        expires_at: r.get(4)?,
        domain_name: r.get(5)?,
        stage: r.get(6)?,
        source_ip: r.get(7)?,
    })
}

/// A page cursor: the index key and the last connection id, like DynamoDB's
/// LastEvaluatedKey of a GSI query. Opaque to callers.
fn encode_cursor(index_attr: &str, index_value: &str, last: &str) -> String {
    let key = BTreeMap::from([(index_attr, index_value), ("connectionId", last)]);
    serde_json::to_string(&key).unwrap_or_default()
}

fn decode_cursor(
    op: &'static str,
    cursor: &str,
    index_attr: &str,
    index_value: &str,
) -> Result<String> {
    let key: BTreeMap<String, String> = serde_json::from_str(cursor)
        .map_err(|e| invalid(op, format!("bad cursor `{cursor}`: {e}")))?;
    if key.get(index_attr).map(String::as_str) != Some(index_value) {
        return Err(invalid(
            op,
            format!(
                "cursor `{cursor}` belongs to another query (expected {index_attr} = {index_value})"
            ),
        ));
    }
    key.get("connectionId")
        .cloned()
        .ok_or_else(|| invalid(op, format!("bad cursor `{cursor}`: no connectionId")))
}

impl EmbeddedConnections {
    pub(super) fn new(db: Db, table: &str, page_size: Option<u32>) -> Self {
        EmbeddedConnections {
            db,
            table: table.into(),
            page_size: page_size.unwrap_or(DEFAULT_PAGE_SIZE).max(1),
        }
    }

    async fn query_index(
        &self,
        op: &'static str,
        column: &'static str,
        index_attr: &'static str,
        value: &str,
        cursor: Option<String>,
    ) -> Result<Page<Connection>> {
        let after = cursor
            .as_deref()
            .map(|c| decode_cursor(op, c, index_attr, value))
            .transpose()?
            .unwrap_or_default();
        let (table, value) = (self.table.clone(), value.to_owned());
        let (page_size, now) = (self.page_size as usize, now_secs(&self.db));
        self.db
            .call(op, move |conn| {
                let sql = format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections
                     WHERE tbl = ?1 AND {column} = ?2 AND connection_id > ?3 AND expires_at >= ?4
                     ORDER BY connection_id LIMIT ?5"
                );
                let mut items: Vec<Connection> = conn
                    .prepare_cached(&sql)
                    .and_then(|mut s| {
                        s.query_map(
                            params![table, value, after, now, page_size as i64 + 1],
                            connection_of,
                        )?
                        .collect()
                    })
                    .map_err(|e| sql_error(op, e))?;
                // One item more than a page tells whether another page exists,
                // so the last page never comes with a cursor to an empty one.
                let next = if items.len() > page_size {
                    items.truncate(page_size);
                    items
                        .last()
                        .map(|c| encode_cursor(index_attr, &value, &c.connection_id))
                } else {
                    None
                };
                Ok(Page { items, next })
            })
            .await
    }
}

#[async_trait]
impl Connections for EmbeddedConnections {
    async fn put(&self, conn: &Connection) -> Result<()> {
        const OP: &str = "embedded.PutItem(connections)";
        if conn.connection_id.is_empty() || conn.session_id.is_empty() {
            // DynamoDB refuses empty strings as table or index keys.
            return Err(invalid(OP, "connectionId and sessionId must not be empty"));
        }
        let table = self.table.clone();
        let mut c = conn.clone();
        // An empty userId cannot be a GSI key: stored as absent, as on DynamoDB.
        c.user_id = c.user_id.filter(|u| !u.is_empty());
        self.db
            .call(OP, move |sql| {
                sql.prepare_cached(&format!(
                    "INSERT OR REPLACE INTO connections (tbl, {CONNECTION_COLUMNS})
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
                ))
                .and_then(|mut s| {
                    s.execute(params![
                        table,
                        c.connection_id,
                        c.session_id,
                        c.user_id,
                        c.connected_at,
                        c.expires_at,
                        c.domain_name,
                        c.stage,
                        c.source_ip
                    ])
                })
                .map_err(|e| sql_error(OP, e))?;
                Ok(())
            })
            .await
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>> {
        const OP: &str = "embedded.GetItem(connections)";
        let (table, id, now) = (
            self.table.clone(),
            connection_id.to_owned(),
            now_secs(&self.db),
        );
        self.db
            .call(OP, move |sql| {
                sql.prepare_cached(&format!(
                    "SELECT {CONNECTION_COLUMNS} FROM connections
                     WHERE tbl = ?1 AND connection_id = ?2 AND expires_at >= ?3"
                ))
                .and_then(|mut s| {
                    s.query_row(params![table, id, now], connection_of)
                        .optional()
                })
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }

    async fn delete(&self, connection_id: &str) -> Result<()> {
        const OP: &str = "embedded.DeleteItem(connections)";
        let (table, id) = (self.table.clone(), connection_id.to_owned());
        self.db
            .call(OP, move |sql| {
                sql.prepare_cached("DELETE FROM connections WHERE tbl = ?1 AND connection_id = ?2")
                    .and_then(|mut s| s.execute(params![table, id]))
                    .map_err(|e| sql_error(OP, e))?;
                Ok(())
            })
            .await
    }

    async fn delete_if_same(&self, conn: &Connection) -> Result<bool> {
        const OP: &str = "embedded.DeleteItem(connections)";
        let table = self.table.clone();
        let c = conn.clone();
        self.db
            .call(OP, move |sql| {
                // The condition of the DynamoDB backend: connectedAt and sessionId.
                sql.prepare_cached(
                    "DELETE FROM connections WHERE tbl = ?1 AND connection_id = ?2
                     AND connected_at = ?3 AND session_id = ?4",
                )
                .and_then(|mut s| {
                    s.execute(params![
                        table,
                        c.connection_id,
                        c.connected_at,
                        c.session_id
                    ])
                })
                .map(|n| n == 1)
                .map_err(|e| sql_error(OP, e))
            })
            .await
    }

    async fn by_session(
        &self,
        session_id: &str,
        cursor: Option<String>,
    ) -> Result<Page<Connection>> {
        self.query_index(
            "embedded.Query(bySession)",
            "session_id",
            "sessionId",
            session_id,
            cursor,
        )
        .await
    }

    async fn by_user(&self, user_id: &str, cursor: Option<String>) -> Result<Page<Connection>> {
        self.query_index(
            "embedded.Query(byUser)",
            "user_id",
            "userId",
            user_id,
            cursor,
        )
        .await
    }
}

/// The messages table: key `sessionId` + `sk`, TTL on `expiresAt`.
#[derive(Clone, Debug)]
pub struct EmbeddedMessages {
    db: Db,
    table: Arc<str>,
}

impl EmbeddedMessages {
    pub(super) fn new(db: Db, table: &str) -> Self {
        EmbeddedMessages {
            db,
            table: table.into(),
        }
    }
}

fn stored_of(op: &'static str, r: &Row<'_>) -> rusqlite::Result<Result<StoredMessage>> {
    let sender: String = r.get(3)?;
    let payload: String = r.get(5)?;
    let decoded = serde_json::from_str::<Sender>(&sender)
        .and_then(|sender| Ok((sender, serde_json::from_str::<serde_json::Value>(&payload)?)));
    Ok(match decoded {
        Ok((sender, payload)) => Ok(StoredMessage {
            session_id: r.get(0)?,
            id: r.get(1)?,
            action: r.get(2)?,
            sender,
            received_at: r.get(4)?,
            position: match Position::parse(&r.get::<_, String>(7)?) {
                Some((p, _)) => p,
                None => Position::at(r.get(4)?),
            },
            payload,
            expires_at: r.get(6)?,
            seq: r.get::<_, Option<i64>>(8)?.map(|s| s as u64),
        }),
        Err(e) => Err(BackendError::new(
            ErrorKind::Other,
            op,
            format!("stored message is not readable: {e}"),
        )),
    })
}

const STORED_COLUMNS: &str =
    "session_id, id, action, sender, received_at, payload, expires_at, sk, seq";

fn last_seq(sql: &Sql, op: &'static str, table: &str, session: &str) -> Result<u64> {
    sql.prepare_cached("SELECT last FROM message_seqs WHERE tbl = ?1 AND session_id = ?2")
        .and_then(|mut s| {
            s.query_row(params![table, session], |r| r.get::<_, i64>(0))
                .optional()
        })
        .map(|l| l.unwrap_or(0) as u64)
        .map_err(|e| sql_error(op, e))
}

/// A message with its JSON columns, checked like a DynamoDB item.
struct Encoded {
    msg: StoredMessage,
    sender: String,
    payload: String,
}

impl Encoded {
    fn new(op: &'static str, msg: StoredMessage) -> Result<Encoded> {
        if msg.session_id.is_empty() {
            return Err(invalid(op, "sessionId must not be empty"));
        }
        let sender = serde_json::to_string(&msg.sender)
            .map_err(|e| BackendError::new(ErrorKind::Other, op, e.to_string()))?;
        let payload = msg.payload.to_string();
        let size = msg.session_id.len()
            + msg.id.len()
            + msg.action.len()
            + sender.len()
            + payload.len()
            + 64;
        if size > MAX_ITEM_BYTES {
            return Err(invalid(
                op,
                format!(
                    "the item would be {size} bytes; DynamoDB items are at most {MAX_ITEM_BYTES}"
                ),
            ));
        }
        Ok(Encoded {
            msg,
            sender,
            payload,
        })
    }
}

/// Inserts `e` unless its key exists; whether it was inserted.
fn insert_stored(sql: &Sql, op: &'static str, table: &str, e: &Encoded) -> Result<bool> {
    let m = &e.msg;
    // Like `attribute_not_exists(sk)`: an item with this key, expired
    // or not, stays as it is.
    sql.prepare_cached(
        "INSERT INTO stored_messages (tbl, session_id, sk, id, action, sender,
             received_at, payload, expires_at, seq)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (tbl, session_id, sk) DO NOTHING",
    )
    .and_then(|mut s| {
        s.execute(params![
            table,
            m.session_id,
            m.sort_key(),
            m.id,
            m.action,
            e.sender,
            m.received_at,
            e.payload,
            m.expires_at,
            m.seq.map(|s| s as i64)
        ])
    })
    .map(|n| n == 1)
    .map_err(|e| sql_error(op, e))
}

/// Stores `e` (whose `seq` is `Some(n)`) and moves the session's last `seq`
/// from `n - 1` to `n`, only if it is still `n - 1` and no message has its
/// key; whether it was written.
fn write_sequenced(sql: &Sql, op: &'static str, table: &str, e: &Encoded) -> Result<bool> {
    let m = &e.msg;
    let seq = m.seq.ok_or_else(|| invalid(op, "the message has no seq"))?;
    if last_seq(sql, op, table, &m.session_id)? != seq - 1 {
        return Ok(false);
    }
    if !insert_stored(sql, op, table, e)? {
        return Ok(false);
    }
    sql.prepare_cached(
        "INSERT INTO message_seqs (tbl, session_id, last) VALUES (?1, ?2, ?3)
         ON CONFLICT (tbl, session_id) DO UPDATE SET last = excluded.last",
    )
    .and_then(|mut s| s.execute(params![table, m.session_id, seq as i64]))
    .map_err(|e| sql_error(op, e))?;
    Ok(true)
}

/// The keys of session `session`'s messages from sort key `from` on, in
/// history order, and its last `seq`.
fn read_keys(
    sql: &Sql,
    op: &'static str,
    table: &str,
    session: &str,
    from: &str,
) -> Result<StoredKeys> {
    let rows: Vec<(String, Option<i64>)> = sql
        .prepare_cached(
            "SELECT sk, seq FROM stored_messages
             WHERE tbl = ?1 AND session_id = ?2 AND sk >= ?3
             ORDER BY sk",
        )
        .and_then(|mut s| {
            s.query_map(params![table, session, from], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })?
            .collect()
        })
        .map_err(|e| sql_error(op, e))?;
    let keys = rows
        .iter()
        .map(|(sk, seq)| {
            let mut key = StoredKey::of_sort_key(op, Some(sk))?;
            key.seq = seq.map(|s| s as u64);
            Ok(key)
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(StoredKeys {
        keys,
        last_seq: last_seq(sql, op, table, session)?,
    })
}

#[async_trait]
impl Messages for EmbeddedMessages {
    async fn put_sequenced(&self, msg: &StoredMessage) -> Result<bool> {
        const OP: &str = "embedded.TransactWriteItems(store)";
        let (row, table) = (Encoded::new(OP, msg.clone())?, self.table.clone());
        // One job is one savepoint: the counter check, the insert and the
        // counter update commit together or not at all.
        self.db
            .call(OP, move |sql: &Sql| write_sequenced(sql, OP, &table, &row))
            .await
    }

    /// The read and the conditional write in one job (one transaction): the
    /// single connection serialises them, so nothing comes in between.
    async fn append(&self, msg: StoredMessage) -> Result<Appended> {
        const OP: &str = "embedded.TransactWriteItems(store)";
        let (mut row, table) = (Encoded::new(OP, msg)?, self.table.clone());
        self.db
            .call(OP, move |sql: &Sql| {
                let m = &row.msg;
                let from = Position::lower_bound(m.received_at);
                let read = read_keys(sql, OP, &table, &m.session_id, &from)?;
                if let Some(seq) = read.seq_of(&m.id) {
                    return Ok(Appended::Already(seq));
                }
                let seq = read.place(&mut row.msg);
                if write_sequenced(sql, OP, &table, &row)? {
                    Ok(Appended::Stored(seq))
                } else {
                    Err(BackendError::new(
                        ErrorKind::Throttled,
                        OP,
                        "the session's seq moved while storing: retrying",
                    ))
                }
            })
            .await
    }

    async fn since_seq(&self, session_id: &str, since: u64, max: usize) -> Result<Resumable> {
        const OP: &str = "embedded.Query(messages resume)";
        let (table, session, now) = (
            self.table.clone(),
            session_id.to_owned(),
            now_secs(&self.db),
        );
        self.db
            .call(OP, move |sql| {
                let last = last_seq(sql, OP, &table, &session)?;
                let mut messages = Vec::new();
                // As on DynamoDB: seq grows with the sort key (a message is
                // placed after every message of its session), so the ones
                // above `since` are the newest; walk back from the newest and
                // stop at the first at or below it (or without one: stored
                // before sequence numbers existed). No index on seq to keep
                // up on every write.
                let mut stmt = sql
                    .prepare_cached(&format!(
                        "SELECT {STORED_COLUMNS} FROM stored_messages
                         WHERE tbl = ?1 AND session_id = ?2
                         ORDER BY sk DESC"
                    ))
                    .map_err(|e| sql_error(OP, e))?;
                let mut rows = stmt
                    .query(params![table, session])
                    .map_err(|e| sql_error(OP, e))?;
                while messages.len() < max {
                    let Some(row) = rows.next().map_err(|e| sql_error(OP, e))? else {
                        break;
                    };
                    match row.get::<_, Option<i64>>(8).map_err(|e| sql_error(OP, e))? {
                        Some(seq) if seq > since as i64 => {}
                        _ => break,
                    }
                    let expires_at: i64 = row.get(6).map_err(|e| sql_error(OP, e))?;
                    if expires_at >= now {
                        messages.push(stored_of(OP, row).map_err(|e| sql_error(OP, e))??);
                    }
                }
                messages.reverse();
                Ok(Resumable {
                    last_seq: last,
                    messages,
                })
            })
            .await
    }

    async fn put_if_absent(&self, msg: &StoredMessage) -> Result<bool> {
        const OP: &str = "embedded.PutItem(messages)";
        let (row, table) = (Encoded::new(OP, msg.clone())?, self.table.clone());
        self.db
            .call(OP, move |sql: &Sql| insert_stored(sql, OP, &table, &row))
            .await
    }

    async fn keys_since(&self, session_id: &str, from_ms: i64) -> Result<StoredKeys> {
        const OP: &str = "embedded.Query(messages keys)";
        let (table, session, from) = (
            self.table.clone(),
            session_id.to_owned(),
            Position::lower_bound(from_ms),
        );
        self.db
            .call(OP, move |sql| read_keys(sql, OP, &table, &session, &from))
            .await
    }

    async fn latest(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>> {
        const OP: &str = "embedded.Query(messages)";
        let (table, session, now) = (
            self.table.clone(),
            session_id.to_owned(),
            now_secs(&self.db),
        );
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.db
            .call(OP, move |sql| {
                let rows: Vec<Result<StoredMessage>> = sql
                    .prepare_cached(&format!(
                        "SELECT {STORED_COLUMNS} FROM stored_messages
                         WHERE tbl = ?1 AND session_id = ?2 AND expires_at >= ?3
                         ORDER BY sk DESC LIMIT ?4"
                    ))
                    .and_then(|mut s| {
                        s.query_map(params![table, session, now, limit], |r| stored_of(OP, r))?
                            .collect()
                    })
                    .map_err(|e| sql_error(OP, e))?;
                let mut out = rows.into_iter().collect::<Result<Vec<_>>>()?;
                out.reverse();
                Ok(out)
            })
            .await
    }
}
