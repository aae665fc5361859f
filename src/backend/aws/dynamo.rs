//! [`Connections`] and [`Messages`] on DynamoDB (table layout in `migrations/`).
//!
//! One file on purpose for now: both tables share the item mapping and error
//! classification here, and the sessions work is changing this file; split it
//! (connections / messages) after that lands.

use std::collections::HashMap;

use async_trait::async_trait;
use aws_sdk_dynamodb::types::AttributeValue;

use super::{classify, written};
use crate::backend::{
    BackendError, Connection, Connections, ErrorKind, Messages, Page, Position, Result, Resumable,
    StoredKey, StoredKeys, StoredMessage,
};
use crate::envelope::Sender;

type Item = HashMap<String, AttributeValue>;

/// GSI on `sessionId` (DESIGN.md).
pub const BY_SESSION_INDEX: &str = "bySession";
/// GSI on `userId` (DESIGN.md).
pub const BY_USER_INDEX: &str = "byUser";

fn s(v: impl Into<String>) -> AttributeValue {
    AttributeValue::S(v.into())
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn get_s(item: &Item, key: &str) -> Option<String> {
    item.get(key).and_then(|v| v.as_s().ok()).cloned()
}

fn get_n(item: &Item, key: &str) -> Option<i64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<f64>().ok())
        .map(|f| f as i64)
}

fn bad_item(op: &'static str, what: &str) -> BackendError {
    BackendError::new(
        ErrorKind::Validation,
        op,
        format!("stored item has no {what}"),
    )
}

/// Encodes a LastEvaluatedKey (string attributes only, as in our tables) as an
/// opaque cursor.
fn encode_cursor(key: &Item) -> Option<String> {
    let map: HashMap<&str, &str> = key
        .iter()
        .filter_map(|(k, v)| Some((k.as_str(), v.as_s().ok()?.as_str())))
        .collect();
    serde_json::to_string(&map).ok()
}

fn decode_cursor(op: &'static str, cursor: &str) -> Result<Item> {
    let map: HashMap<String, String> = serde_json::from_str(cursor)
        .map_err(|e| BackendError::new(ErrorKind::Validation, op, format!("bad cursor: {e}")))?;
    Ok(map.into_iter().map(|(k, v)| (k, s(v))).collect())
}

/// The connections table.
#[derive(Clone, Debug)]
pub struct DynamoConnections {
    client: aws_sdk_dynamodb::Client,
    table: String,
    page_size: Option<u32>,
}

impl DynamoConnections {
    /// Table `table`; each Query page holds at most `page_size` items.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String, page_size: Option<u32>) -> Self {
        DynamoConnections {
            client,
            table,
            page_size,
        }
    }

    fn to_item(c: &Connection) -> Item {
        let mut item = Item::from([
            ("connectionId".into(), s(&c.connection_id)),
            ("sessionId".into(), s(&c.session_id)),
            ("connectedAt".into(), n(c.connected_at)),
            ("expiresAt".into(), n(c.expires_at)),
        ]);
        let optional = [
            ("userId", &c.user_id),
            ("domainName", &c.domain_name),
            ("stage", &c.stage),
            ("sourceIp", &c.source_ip),
        ];
        for (k, v) in optional {
            // An empty string cannot be a GSI key in DynamoDB: leave it out.
            if let Some(v) = v.as_ref().filter(|v| !v.is_empty()) {
                item.insert(k.into(), s(v));
            }
        }
        item
    }

    fn from_item(op: &'static str, item: &Item) -> Result<Connection> {
        Ok(Connection {
            connection_id: get_s(item, "connectionId")
                .ok_or_else(|| bad_item(op, "connectionId"))?,
            session_id: get_s(item, "sessionId").ok_or_else(|| bad_item(op, "sessionId"))?,
            user_id: get_s(item, "userId"),
            connected_at: get_n(item, "connectedAt").unwrap_or(0),
            expires_at: get_n(item, "expiresAt").unwrap_or(i64::MAX),
            domain_name: get_s(item, "domainName"),
            stage: get_s(item, "stage"),
            source_ip: get_s(item, "sourceIp"),
        })
    }

    async fn query_index(
        &self,
        op: &'static str,
        index: &str,
        key: &str,
        value: &str,
        cursor: Option<String>,
    ) -> Result<Page<Connection>> {
        let start = cursor
            .as_deref()
            .map(|c| decode_cursor(op, c))
            .transpose()?;
        let out = self
            .client
            .query()
            .table_name(&self.table)
            .index_name(index)
            .key_condition_expression("#k = :v")
            .expression_attribute_names("#k", key)
            .expression_attribute_values(":v", s(value))
            .set_exclusive_start_key(start)
            .set_limit(self.page_size.map(|p| p as i32))
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        // DynamoDB deletes expired items up to days late; like the embedded
        // tables, never hand out a connection past its TTL.
        let now = crate::sync::now_secs();
        let items = out
            .items()
            .iter()
            .map(|i| Self::from_item(op, i))
            .filter(|c| c.as_ref().map_or(true, |c| c.expires_at > now))
            .collect::<Result<Vec<_>>>()?;
        Ok(Page {
            items,
            next: out.last_evaluated_key().and_then(encode_cursor),
        })
    }
}

#[async_trait]
impl Connections for DynamoConnections {
    async fn put(&self, conn: &Connection) -> Result<()> {
        self.client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::to_item(conn)))
            .send()
            .await
            .map_err(|e| classify("dynamodb.PutItem", e))?;
        Ok(())
    }

    async fn get(&self, connection_id: &str) -> Result<Option<Connection>> {
        const OP: &str = "dynamodb.GetItem";
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| classify(OP, e))?;
        let now = crate::sync::now_secs();
        out.item()
            .map(|i| Self::from_item(OP, i))
            .transpose()
            .map(|c| c.filter(|c| c.expires_at > now))
    }

    async fn delete(&self, connection_id: &str) -> Result<()> {
        self.client
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(connection_id))
            .send()
            .await
            .map_err(|e| classify("dynamodb.DeleteItem", e))?;
        Ok(())
    }

    async fn delete_if_same(&self, conn: &Connection) -> Result<bool> {
        let res = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key("connectionId", s(&conn.connection_id))
            .condition_expression("connectedAt = :c AND sessionId = :s")
            .expression_attribute_values(":c", n(conn.connected_at))
            .expression_attribute_values(":s", s(&conn.session_id))
            .send()
            .await;
        written("dynamodb.DeleteItem", res)
    }

    async fn by_session(
        &self,
        session_id: &str,
        cursor: Option<String>,
    ) -> Result<Page<Connection>> {
        self.query_index(
            "dynamodb.Query(bySession)",
            BY_SESSION_INDEX,
            "sessionId",
            session_id,
            cursor,
        )
        .await
    }

    async fn by_user(&self, user_id: &str, cursor: Option<String>) -> Result<Page<Connection>> {
        self.query_index(
            "dynamodb.Query(byUser)",
            BY_USER_INDEX,
            "userId",
            user_id,
            cursor,
        )
        .await
    }
}

/// Sort key of a session's sequence counter item in the messages table: `~`
/// sorts after every message key (they start with digits), so the consistent
/// range read of the store step returns the counter with the newest keys, and
/// a backward query meets it first.
pub const SEQ_COUNTER_SK: &str = "~seq";

/// The counter item's attribute holding the session's last assigned `seq`.
const LAST_SEQ: &str = "lastSeq";

fn get_u(item: &Item, key: &str) -> Option<u64> {
    item.get(key)
        .and_then(|v| v.as_n().ok())
        .and_then(|n| n.parse::<u64>().ok())
}

fn is_counter(item: &Item) -> bool {
    item.get("sk")
        .and_then(|v| v.as_s().ok())
        .map(String::as_str)
        == Some(SEQ_COUNTER_SK)
}

/// The messages table.
#[derive(Clone, Debug)]
pub struct DynamoMessages {
    client: aws_sdk_dynamodb::Client,
    table: String,
}

/// Runs `query` page after page, handing each item to `visit`, until
/// `visit` says `false` or the items end.
async fn each_item(
    op: &'static str,
    query: aws_sdk_dynamodb::operation::query::builders::QueryFluentBuilder,
    mut visit: impl FnMut(&Item) -> Result<bool> + Send,
) -> Result<()> {
    let mut start: Option<Item> = None;
    loop {
        let out = query
            .clone()
            .set_exclusive_start_key(start.take())
            .send()
            .await
            .map_err(|e| classify(op, e))?;
        for item in out.items() {
            if !visit(item)? {
                return Ok(());
            }
        }
        match out.last_evaluated_key() {
            Some(k) => start = Some(k.clone()),
            None => return Ok(()),
        }
    }
}

impl DynamoMessages {
    /// Table `table`.
    pub fn new(client: aws_sdk_dynamodb::Client, table: String) -> Self {
        DynamoMessages { client, table }
    }

    /// Hands session `session_id`'s items to `visit` newest first (its
    /// counter item first), read consistently `page` at a time, until `visit`
    /// says `false` or the items end.
    async fn newest_first(
        &self,
        op: &'static str,
        session_id: &str,
        page: usize,
        visit: impl FnMut(&Item) -> Result<bool> + Send,
    ) -> Result<()> {
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("sessionId = :s")
            .expression_attribute_values(":s", s(session_id))
            .scan_index_forward(false)
            .consistent_read(true)
            .limit(i32::try_from(page).unwrap_or(i32::MAX));
        each_item(op, query, visit).await
    }

    fn to_item(m: &StoredMessage) -> Item {
        let mut sender = Item::from([("connectionId".into(), s(&m.sender.connection_id))]);
        if let Some(u) = &m.sender.user_id {
            sender.insert("userId".into(), s(u));
        }
        let mut item = Item::from([
            ("sessionId".into(), s(&m.session_id)),
            ("sk".into(), s(m.sort_key())),
            ("id".into(), s(&m.id)),
            ("action".into(), s(&m.action)),
            ("sender".into(), AttributeValue::M(sender)),
            ("receivedAt".into(), n(m.received_at)),
            // Opaque JSON kept as text: DynamoDB numbers and empty strings would
            // not round-trip every JSON value.
            ("payload".into(), s(m.payload.to_string())),
            ("expiresAt".into(), n(m.expires_at)),
        ]);
        if let Some(seq) = m.seq {
            item.insert("seq".into(), AttributeValue::N(seq.to_string()));
        }
        item
    }

    fn from_item(op: &'static str, item: &Item) -> Result<StoredMessage> {
        let sender = item
            .get("sender")
            .and_then(|v| v.as_m().ok())
            .ok_or_else(|| bad_item(op, "sender"))?;
        Ok(StoredMessage {
            session_id: get_s(item, "sessionId").ok_or_else(|| bad_item(op, "sessionId"))?,
            id: get_s(item, "id").ok_or_else(|| bad_item(op, "id"))?,
            action: get_s(item, "action").unwrap_or_default(),
            sender: Sender {
                connection_id: get_s(sender, "connectionId").unwrap_or_default(),
                user_id: get_s(sender, "userId"),
            },
            received_at: get_n(item, "receivedAt").unwrap_or(0),
            position: get_s(item, "sk")
                .and_then(|sk| Position::parse(&sk).map(|(p, _)| p))
                .or_else(|| get_n(item, "receivedAt").map(Position::at))
                .unwrap_or_default(),
            payload: get_s(item, "payload")
                .and_then(|p| serde_json::from_str(&p).ok())
                .unwrap_or(serde_json::Value::Null),
            expires_at: get_n(item, "expiresAt").unwrap_or(i64::MAX),
            seq: get_u(item, "seq"),
        })
    }
}

#[async_trait]
impl Messages for DynamoMessages {
    async fn put_if_absent(&self, msg: &StoredMessage) -> Result<bool> {
        let res = self
            .client
            .put_item()
            .table_name(&self.table)
            .set_item(Some(Self::to_item(msg)))
            .condition_expression("attribute_not_exists(sk)")
            .send()
            .await;
        written("dynamodb.PutItem", res)
    }

    async fn put_sequenced(&self, msg: &StoredMessage) -> Result<bool> {
        use aws_sdk_dynamodb::types::{Put, TransactWriteItem, Update};
        const OP: &str = "dynamodb.TransactWriteItems(store)";
        let seq = msg.seq.ok_or_else(|| {
            BackendError::new(ErrorKind::Validation, OP, "the message has no seq")
        })?;
        let put = Put::builder()
            .table_name(&self.table)
            .set_item(Some(Self::to_item(msg)))
            .condition_expression("attribute_not_exists(sk)")
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))?;
        // The counter moves from exactly seq - 1: a message stored meanwhile
        // (another worker after a lapsed visibility) cancels this one.
        let mut update = Update::builder()
            .table_name(&self.table)
            .key("sessionId", s(&msg.session_id))
            .key("sk", s(SEQ_COUNTER_SK))
            .update_expression("SET #last = :next")
            .expression_attribute_names("#last", LAST_SEQ)
            .expression_attribute_values(":next", AttributeValue::N(seq.to_string()));
        update = if seq <= 1 {
            update.condition_expression("attribute_not_exists(#last)")
        } else {
            update
                .condition_expression("#last = :prev")
                .expression_attribute_values(":prev", AttributeValue::N((seq - 1).to_string()))
        };
        let update = update
            .build()
            .map_err(|e| BackendError::new(ErrorKind::Validation, OP, e.to_string()))?;
        let res = self
            .client
            .transact_write_items()
            .transact_items(TransactWriteItem::builder().put(put).build())
            .transact_items(TransactWriteItem::builder().update(update).build())
            .send()
            .await;
        match res {
            Ok(_) => Ok(true),
            Err(e) => {
                // A failed condition cancels the transaction; any other
                // cancellation reason (a conflicting transaction, throttling)
                // is worth a retry.
                let conditional = e
                    .as_service_error()
                    .and_then(|se| match se {
                        aws_sdk_dynamodb::operation::transact_write_items::TransactWriteItemsError::TransactionCanceledException(c) => Some(c),
                        _ => None,
                    })
                    .map(|c| {
                        c.cancellation_reasons()
                            .iter()
                            .any(|r| r.code() == Some("ConditionalCheckFailed"))
                    });
                match conditional {
                    Some(true) => Ok(false),
                    Some(false) => Err(BackendError::new(
                        ErrorKind::Throttled,
                        OP,
                        "the transaction was cancelled (a conflicting write): retry",
                    )),
                    None => Err(classify(OP, e)),
                }
            }
        }
    }

    async fn since_seq(&self, session_id: &str, since: u64, max: usize) -> Result<Resumable> {
        const OP: &str = "dynamodb.Query(messages resume)";
        let now = crate::sync::now_secs();
        let mut out = Resumable::default();
        // seq grows with the sort key, so the messages above `since` are the
        // newest ones; stop at the first at or below it.
        self.newest_first(OP, session_id, max.min(999) + 2, |item| {
            if is_counter(item) {
                out.last_seq = get_u(item, LAST_SEQ).unwrap_or(0);
                return Ok(true);
            }
            match get_u(item, "seq") {
                Some(seq) if seq > since && out.messages.len() < max => {
                    let m = Self::from_item(OP, item)?;
                    if m.expires_at > now {
                        out.messages.push(m);
                    }
                    Ok(true)
                }
                _ => Ok(false),
            }
        })
        .await?;
        out.messages.reverse();
        Ok(out)
    }

    async fn latest(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>> {
        const OP: &str = "dynamodb.Query(messages)";
        let now = crate::sync::now_secs();
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        // Expired items may still be returned by DynamoDB; skip them and read on
        // until `limit` live ones (or the end). One more per page: the
        // session's counter item comes first.
        self.newest_first(OP, session_id, limit.saturating_add(1), |item| {
            if !is_counter(item) {
                let m = Self::from_item(OP, item)?;
                if m.expires_at > now {
                    out.push(m);
                }
            }
            Ok(out.len() < limit)
        })
        .await?;
        out.reverse();
        Ok(out)
    }

    async fn keys_since(&self, session_id: &str, from_ms: i64) -> Result<StoredKeys> {
        const OP: &str = "dynamodb.Query(messages keys)";
        let mut keys = StoredKeys::default();
        let query = self
            .client
            .query()
            .table_name(&self.table)
            .key_condition_expression("sessionId = :s AND sk >= :from")
            .expression_attribute_values(":s", s(session_id))
            .expression_attribute_values(":from", s(Position::lower_bound(from_ms)))
            .projection_expression("sk, #seq, #last")
            .expression_attribute_names("#seq", "seq")
            .expression_attribute_names("#last", LAST_SEQ)
            .consistent_read(true);
        each_item(OP, query, |item| {
            if is_counter(item) {
                keys.last_seq = get_u(item, LAST_SEQ).unwrap_or(0);
            } else {
                let mut key = StoredKey::of_sort_key(OP, get_s(item, "sk").as_deref())?;
                key.seq = get_u(item, "seq");
                keys.keys.push(key);
            }
            Ok(true)
        })
        .await?;
        Ok(keys)
    }
}
