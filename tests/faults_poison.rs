//! Fault suite, poison messages: about one message in ten of a stream is one
//! the worker can never handle (not JSON, not an object, unknown version,
//! missing or oversized fields, payload over 128 KiB, unknown action, bad
//! `direct` data). Each goes to the dead-letter queue with its reason and
//! kind, in its group's order, keeping its group id; the senders of unknown
//! actions and bad requests get an `error` frame; and every other message
//! of every group is still delivered, in order: the group goes on.

mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Queue, ReceiveRequest};
use switchboard::ops::migrate::Names;

use support::connections_server::ConnectionsServer;
use support::embedded::TempDir;
use support::stream::{self, InProcessWorker, Plan, env_or, heavy, recipient};

/// The `errorType` each poison kind (the index into this list) is dead-lettered with.
const KINDS: &[&str] = &[
    "malformed",
    "malformed",
    "unknown_version",
    "invalid",
    "invalid",
    "payload_too_large",
    "unknown_action",
    "bad_request",
];

fn envelope(
    id: &str,
    action: &str,
    session: &str,
    sender: &str,
    payload: serde_json::Value,
) -> serde_json::Value {
    serde_json::json!({
        "v": 1, "id": id, "action": action, "sessionId": session,
        "sender": { "connectionId": sender }, "receivedAt": 1_732_723_200_123_i64,
        "payload": payload,
    })
}

/// The poison body of kind `k` for message `id` (every body names `id`).
fn poison_body(k: usize, id: &str, session: &str, sender: &str) -> String {
    match k {
        0 => format!("{{not json {id}"),
        1 => serde_json::json!([id, 1, 2]).to_string(),
        2 => {
            let mut e = envelope(id, "sendMessage", session, sender, serde_json::json!({}));
            e["v"] = serde_json::json!(2);
            e.to_string()
        }
        3 => {
            let mut e = envelope(id, "sendMessage", session, sender, serde_json::json!({}));
            e.as_object_mut().unwrap().remove("sender");
            e.to_string()
        }
        4 => {
            // 129 characters: over SQS's limit for deduplication ids.
            let long = format!("{id}{}", "x".repeat(129 - id.len()));
            envelope(&long, "sendMessage", session, sender, serde_json::json!({})).to_string()
        }
        5 => envelope(
            id,
            "sendMessage",
            session,
            sender,
            serde_json::json!("x".repeat(128 * 1024)),
        )
        .to_string(),
        6 => envelope(id, "shout", session, sender, serde_json::json!({})).to_string(),
        7 => envelope(id, "direct", session, sender, serde_json::json!({"to": 5})).to_string(),
        _ => unreachable!(),
    }
}

/// Message `i` of group `g` is poison of this kind, or not poison.
fn poison_kind(g: usize, i: usize) -> Option<usize> {
    ((i * 7 + g * 3) % 10 == 3).then_some((i / 10 + g) % KINDS.len())
}

/// The ledger id a dead letter's body names.
fn named_id(body: &str) -> String {
    let at = body.find("room-").expect("the body names its message");
    body[at..at + "room-000-m00000".len()].to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn poison_is_dead_lettered_with_its_reason_in_group_order_and_the_group_goes_on() {
    let plan = Plan {
        groups: 20,
        per_group: env_or("FAULTS_POISON_PER_GROUP", if heavy() { 500 } else { 30 }),
        recipients: 2,
    };
    let dir = TempDir::new("faults-poison");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let seeded = stream::seed(&store, plan, |g, i| {
        let k = poison_kind(g, i)?;
        Some(poison_body(
            k,
            &stream::message_id(g, i),
            &stream::group(g),
            &recipient(g, 0),
        ))
    })
    .await;
    let poison_total: usize = seeded
        .ledger
        .groups()
        .iter()
        .map(|g| seeded.ledger.poison(g).len())
        .sum();
    let server = ConnectionsServer::start().await;
    let started = Instant::now();
    let worker = InProcessWorker::start(&store, &server.endpoint("test"), &[]).await;
    let deliveries = seeded.ledger.total() * plan.recipients;
    server
        .wait_distinct(deliveries, Duration::from_secs(120))
        .await;
    let elapsed = started.elapsed();

    // The groups went on: every other message delivered, in order, once.
    let verdict = seeded.ledger.verify(&seeded.members, &server.received());
    assert!(verdict.redelivered.is_empty(), "{:?}", verdict.redelivered);

    // Every poison message is in the DLQ, with its reason and kind, in its
    // group's order.
    let dlq = store
        .queue(&format!("embedded://{}", Names::default().dlq))
        .unwrap();
    let mut dead: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut got = 0;
    let deadline = Instant::now() + Duration::from_secs(60);
    while got < poison_total {
        assert!(
            Instant::now() < deadline,
            "only {got} of {poison_total} dead letters"
        );
        let batch = dlq
            .receive(ReceiveRequest {
                max_messages: 10,
                wait: Duration::from_secs(1),
                visibility: Duration::from_secs(60),
            })
            .await
            .unwrap();
        for m in &batch {
            let id = named_id(&m.body);
            let group = seeded.ledger.group_of(&id).unwrap();
            assert_eq!(m.group_id, group, "a dead letter keeps its group");
            let (g, i) = (group[5..].parse().unwrap(), id[10..].parse().unwrap());
            let kind = KINDS[poison_kind(g, i).expect("a poison message")];
            assert_eq!(m.attributes["errorType"], kind, "{id}: {:?}", m.attributes);
            assert!(!m.attributes["reason"].is_empty(), "{id}: a reason");
            assert_eq!(m.attributes["sourceQueue"], stream_queue_url());
            assert_eq!(
                m.attributes["receiveCount"], "1",
                "dead-lettered on the first receive"
            );
            dead.entry(m.group_id.clone()).or_default().push(id);
            *by_kind.entry(kind.to_owned()).or_default() += 1;
            got += 1;
        }
        let handles: Vec<&str> = batch.iter().map(|m| m.receipt_handle.as_str()).collect();
        for chunk in handles.chunks(10) {
            for r in dlq.delete_batch(chunk).await.unwrap() {
                r.unwrap();
            }
        }
    }
    for g in seeded.ledger.groups() {
        let empty = Vec::new();
        assert_eq!(
            dead.get(&g).unwrap_or(&empty).as_slice(),
            seeded.ledger.poison(&g),
            "{g}: every poison message dead-lettered, in send order"
        );
    }
    // A dead letter is on the DLQ before the worker counts it.
    for (kind, n) in &by_kind {
        let sample = format!(r#"switchboard_dead_letters_total{{reason="{kind}"}}"#);
        support::counter_reaches(Duration::from_secs(10), kind, *n as f64, || {
            worker.metric(&sample)
        })
        .await;
    }

    // Senders of unknown actions and bad `direct` data were told, once each.
    for g in 0..plan.groups {
        let errors: Vec<(String, String)> = server
            .posts_to(&recipient(g, 0))
            .iter()
            .filter(|f| f["type"] == "error")
            .map(|f| {
                (
                    f["id"].as_str().unwrap().to_owned(),
                    f["code"].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        let want: Vec<(String, String)> = (0..plan.per_group)
            .filter_map(|i| {
                let kind = KINDS[poison_kind(g, i)?];
                matches!(kind, "unknown_action" | "bad_request")
                    .then(|| (stream::message_id(g, i), kind.to_owned()))
            })
            .collect();
        assert_eq!(errors, want, "error frames to the sender of group {g}");
    }
    // The last messages are delivered (or dead-lettered) before their deletes.
    let inbound = store.queue(stream_queue_url()).unwrap();
    support::eventually(
        Duration::from_secs(10),
        "the inbound queue drained",
        || async {
            let info = inbound.info().await.unwrap();
            (info.approximate_messages == 0 && info.approximate_in_flight == 0).then_some(())
        },
    )
    .await;
    println!(
        "poison: {} messages in {} groups, {poison_total} of them poison ({by_kind:?}); \
         {} deliveries in order in {elapsed:.2?}",
        plan.messages(),
        plan.groups,
        verdict.delivered,
    );
    worker.stop().await;
}

fn stream_queue_url() -> &'static str {
    support::process::EMBEDDED_QUEUE
}
