//! The `store` step keeps a session's history in queue order, also for frames
//! received in the same millisecond (API Gateway's `requestTimeEpoch` has ms
//! resolution and request ids are random), and stores a redelivery once, also
//! when a crash hands back several stored messages of the group at once.
//! Real embedded tables and DynamoDB on moto; the step is run as the worker
//! runs it.

mod support;

use std::sync::Arc;

use switchboard::actions::{ActionSettings, Actions, Fanout, RetryPolicy, Step};
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Connections, Messages};
use switchboard::envelope::Envelope;
use switchboard::telemetry::Metrics;

fn envelope(id: &str, received_at: i64) -> Envelope {
    Envelope::parse(
        &serde_json::json!({
            "v": 1, "id": id, "action": "sendMessage", "sessionId": "room",
            "sender": {"connectionId": "c1"}, "receivedAt": received_at,
            "payload": {"text": id}
        })
        .to_string(),
    )
    .unwrap()
}

#[tokio::test]
async fn same_millisecond_messages_keep_queue_order_and_redeliveries_are_stored_once() {
    let store = EmbeddedStore::in_memory().await.unwrap();
    check_history(
        Arc::new(store.messages("switchboard-messages")),
        Arc::new(store.connections("switchboard-connections", None)),
    )
    .await;
}

/// The same on DynamoDB (moto): the range read of the keys is a Query on the
/// sort key.
#[cfg(feature = "aws-tests")]
#[tokio::test]
async fn same_on_dynamodb() {
    let backend = support::aws::backend().await;
    let stack = support::aws::migrated_stack(&backend, "history").await;
    check_history(
        Arc::new(backend.messages(&stack.names.messages_table)),
        Arc::new(backend.connections(&stack.names.connections_table, None)),
    )
    .await;
}

async fn check_history(messages: Arc<dyn Messages>, connections: Arc<dyn Connections>) {
    let push = switchboard::app::local_push().await.push();
    let metrics = Arc::new(Metrics::new());
    let fanout = Fanout::new(
        Arc::new(push),
        connections,
        4,
        RetryPolicy::default(),
        metrics,
    );
    let actions = Actions::new(messages.clone(), fanout, ActionSettings::default());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    // Runs the store step on each (id, receivedAt) in queue order.
    let store = async |queue: &[(&str, i64)]| {
        for (id, at) in queue {
            actions
                .run(&envelope(id, *at), &[Step::Store])
                .await
                .unwrap();
        }
    };
    // Ids chosen so that sorting by id would reverse them.
    store(&[("zz", now), ("yy", now), ("xx", now), ("ww", now)]).await;
    // An earlier receivedAt queued later still comes after them.
    store(&[("aa", now - 5)]).await;
    // A redelivery of the newest message is not stored again.
    store(&[("aa", now - 5)]).await;
    store(&[("later", now + 1000)]).await;
    // A crash between storing and deleting hands back several finished
    // messages of the group at once, older ones first: none is stored again.
    store(&[
        ("xx", now),
        ("ww", now),
        ("aa", now - 5),
        ("later", now + 1000),
    ])
    .await;

    let history = messages.latest("room", 100).await.unwrap();
    let got: Vec<&str> = history.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(got, ["zz", "yy", "xx", "ww", "aa", "later"]);
    // Ties take the next seq in their millisecond, not the next millisecond:
    // a burst does not push later messages ahead of the clock.
    let positions: Vec<(i64, u32)> = history
        .iter()
        .map(|m| (m.position.ms, m.position.seq))
        .collect();
    assert_eq!(
        positions,
        [
            (now, 0),
            (now, 1),
            (now, 2),
            (now, 3),
            (now, 4),
            (now + 1000, 0)
        ]
    );
    // The stored sort keys are DESIGN.md's `{receivedAt:013}#{id}` without a tie.
    assert_eq!(history[0].sort_key(), format!("{now:013}#zz"));
    assert_eq!(history[5].sort_key(), format!("{:013}#later", now + 1000));
    assert!(
        history.iter().take(5).all(|m| m.received_at <= now),
        "receivedAt itself is kept"
    );
}
