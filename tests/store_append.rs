//! `Messages::append`, the `store` step: the embedded store's one-transaction
//! override and the trait's default (read, then conditional write; what the
//! DynamoDB table runs) give the same answers, and the default loses a race
//! to another writer safely. The default runs here over the embedded table
//! through a wrapper that forwards every call but `append`, and can slip
//! another writer's message in between the read and the write.

use std::sync::Mutex;

use async_trait::async_trait;
use serde_json::json;
use switchboard::backend::embedded::{EmbeddedMessages, EmbeddedStore};
use switchboard::backend::{
    Appended, ErrorKind, Messages, Position, Result, Resumable, StoredKeys, StoredMessage,
};
use switchboard::envelope::Sender;

const T: i64 = 1_700_000_000_000;

/// A message as the store step hands it over: position and seq unset.
fn message(id: &str, received_at: i64) -> StoredMessage {
    StoredMessage {
        session_id: "s".into(),
        id: id.into(),
        action: "sendMessage".into(),
        sender: Sender {
            connection_id: "c".into(),
            user_id: None,
        },
        received_at,
        position: Position::at(received_at),
        payload: json!({ "text": id }),
        // Live: `latest` leaves out what is past its TTL.
        expires_at: 4_000_000_000,
        seq: None,
    }
}

/// The embedded table behind the trait's default `append`; `cut_in`, if
/// set, is appended by "another worker" right after the next read.
struct ReadThenWrite {
    inner: EmbeddedMessages,
    cut_in: Mutex<Option<StoredMessage>>,
}

#[async_trait]
impl Messages for ReadThenWrite {
    async fn put_if_absent(&self, msg: &StoredMessage) -> Result<bool> {
        self.inner.put_if_absent(msg).await
    }
    async fn latest(&self, session_id: &str, limit: usize) -> Result<Vec<StoredMessage>> {
        self.inner.latest(session_id, limit).await
    }
    async fn keys_since(&self, session_id: &str, from_ms: i64) -> Result<StoredKeys> {
        let read = self.inner.keys_since(session_id, from_ms).await?;
        let cut_in = self.cut_in.lock().unwrap().take();
        if let Some(other) = cut_in {
            self.inner.append(other).await?;
        }
        Ok(read)
    }
    async fn put_sequenced(&self, msg: &StoredMessage) -> Result<bool> {
        self.inner.put_sequenced(msg).await
    }
    async fn since_seq(&self, session_id: &str, since: u64, max: usize) -> Result<Resumable> {
        self.inner.since_seq(session_id, since, max).await
    }
}

async fn embedded() -> EmbeddedMessages {
    EmbeddedStore::in_memory()
        .await
        .unwrap()
        .messages("switchboard-messages")
}

async fn default() -> ReadThenWrite {
    ReadThenWrite {
        inner: embedded().await,
        cut_in: Mutex::new(None),
    }
}

/// The ids and seqs of session `s`'s history, oldest first.
async fn history(table: &dyn Messages) -> Vec<(String, Option<u64>)> {
    table
        .latest("s", 100)
        .await
        .unwrap()
        .into_iter()
        .map(|m| (m.id, m.seq))
        .collect()
}

/// New messages get the next seq, a redelivery keeps its own, a message
/// whose clock is behind the newest goes after it.
async fn appends_in_order(table: &dyn Messages) {
    assert_eq!(
        table.append(message("a", T)).await.unwrap(),
        Appended::Stored(1)
    );
    assert_eq!(
        table.append(message("b", T)).await.unwrap(),
        Appended::Stored(2)
    );
    assert_eq!(
        table.append(message("a", T)).await.unwrap(),
        Appended::Already(Some(1))
    );
    assert_eq!(
        table.append(message("c", T - 5)).await.unwrap(),
        Appended::Stored(3)
    );
    assert_eq!(
        table.append(message("d", T + 10)).await.unwrap(),
        Appended::Stored(4)
    );
    assert_eq!(
        history(table).await,
        [("a", 1), ("b", 2), ("c", 3), ("d", 4)].map(|(id, seq)| (id.to_owned(), Some(seq)))
    );
}

#[tokio::test]
async fn the_embedded_append_and_the_default_agree() {
    appends_in_order(&embedded().await).await;
    appends_in_order(&default().await).await;
}

#[tokio::test]
async fn the_default_append_that_loses_a_race_stores_nothing_and_asks_for_a_retry() {
    let table = default().await;
    table.append(message("a", T)).await.unwrap();
    *table.cut_in.lock().unwrap() = Some(message("other", T + 1));
    let err = table.append(message("b", T + 2)).await.unwrap_err();
    assert_eq!(err.kind, ErrorKind::Throttled, "{err}");
    assert_eq!(
        history(&table).await,
        [("a", 1), ("other", 2)].map(|(id, seq)| (id.to_owned(), Some(seq)))
    );
    // Handed back by the queue, it goes after the message that won.
    assert_eq!(
        table.append(message("b", T + 2)).await.unwrap(),
        Appended::Stored(3)
    );
}

#[tokio::test]
async fn the_default_append_that_loses_to_the_same_message_keeps_its_seq() {
    let table = default().await;
    table.append(message("a", T)).await.unwrap();
    // Another worker holding the same message (a lapsed visibility) stores it first.
    *table.cut_in.lock().unwrap() = Some(message("b", T + 1));
    assert_eq!(
        table.append(message("b", T + 1)).await.unwrap(),
        Appended::Already(Some(2))
    );
    assert_eq!(
        history(&table).await,
        [("a", 1), ("b", 2)].map(|(id, seq)| (id.to_owned(), Some(seq)))
    );
}
