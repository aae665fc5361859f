//! Fills an embedded store (as `switchboard worker --data-dir` and `switchboard
//! dev --data-dir` keep it) for the benchmarks: sessions with connections and
//! queued messages. Run by bench/*.sh:
//!
//!   cargo bench --bench seed -- DIR SESSIONS CONNECTIONS_PER_SESSION MESSAGES_PER_SESSION PAYLOAD_BYTES
//!
//! Each session's messages are sent in order and carry `payload.seq`, so a
//! sink can check order.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Connection, Connections, OutgoingMessage, Queue};
use switchboard::ops::migrate::Names;

fn arg(args: &[String], i: usize, what: &str) -> usize {
    args.get(i)
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("argument {i} ({what}) must be a number"))
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let dir = args
        .first()
        .expect("usage: seed DIR SESSIONS CONNS MSGS PAYLOAD_BYTES");
    let sessions = arg(&args, 1, "sessions");
    let per_session = arg(&args, 2, "connections per session");
    let messages = arg(&args, 3, "messages per session");
    let payload_bytes = arg(&args, 4, "payload bytes");

    let store = EmbeddedStore::open(dir).await.expect("open store");
    let names = Names::default();
    let migrated = store.migrate(&names).await.expect("migrate");
    let conns = store.connections(&names.connections_table, None);
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap();
    let started = std::time::Instant::now();
    // Concurrent writes share the embedded store's group commits.
    let puts = (0..sessions).flat_map(|s| (0..per_session).map(move |c| (s, c)));
    futures::stream::iter(puts)
        .map(|(s, c)| {
            let conns = &conns;
            async move {
                conns
                    .put(&Connection {
                        connection_id: format!("c{s:05}x{c:06}AAAAAAAA="),
                        session_id: format!("s{s:05}"),
                        user_id: Some(format!("u{c}")),
                        connected_at: now.as_millis() as i64,
                        expires_at: (now + Duration::from_secs(3 * 3600)).as_secs() as i64,
                        domain_name: Some("127.0.0.1".into()),
                        stage: Some("bench".into()),
                        source_ip: Some("127.0.0.1".into()),
                    })
                    .await
                    .expect("put connection")
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;
    let queue = store.queue(&migrated.queue_url).expect("queue");
    let text = "x".repeat(payload_bytes);
    // Each session's messages in order; sessions concurrently.
    futures::stream::iter(0..sessions)
        .map(|s| {
            let (queue, text) = (&queue, &text);
            async move {
                let session = format!("s{s:05}");
                for i in 0..messages {
                    let id = format!("{session}-m{i:06}");
                    let body = serde_json::json!({
                        "v": 1, "id": id, "action": "sendMessage", "sessionId": session,
                        "sender": {"connectionId": format!("c{s:05}x000000AAAAAAAA="), "userId": "u0"},
                        // 1 ms apart, like a session sending 1,000 frames/s
                        // (more than an SQS FIFO group takes).
                        "receivedAt": now.as_millis() as i64 + i as i64,
                        "payload": {"seq": i, "text": text},
                    });
                    queue
                        .send(&OutgoingMessage {
                            body: body.to_string(),
                            group_id: session.clone(),
                            dedup_id: id,
                            attributes: Default::default(),
                        })
                        .await
                        .expect("send");
                }
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<()>>()
        .await;
    eprintln!(
        "seeded {sessions} sessions x {per_session} connections, {messages} messages each, in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}
