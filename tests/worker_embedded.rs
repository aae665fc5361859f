//! The real worker (`switchboard::app::run_worker`) on the embedded queue and
//! tables, posting through the real `aws-sdk-apigatewaymanagement` client to
//! the test @connections server: per-group order across concurrently handled
//! groups, 410 pruning (and the pruned member's leave), storage for
//! history, and dead-lettering of poison.

mod support;

use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use switchboard::app::{WorkerBackends, run_worker};
use switchboard::backend::aws::AwsBackend;
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{
    Connection, Connections, Messages, OutgoingMessage, Queue, ReceiveRequest,
};
use switchboard::cli::{Cli, Command};
use switchboard::ops::migrate::Names;
use switchboard::worker_config::WorkerConfig;

use support::connections_server::ConnectionsServer;
use support::embedded::TempDir;

const GROUPS: usize = 6;
const PER_GROUP: usize = 20;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

fn envelope(id: &str, session: &str, sender: &str, n: usize) -> String {
    serde_json::json!({
        "v": 1,
        "id": id,
        "action": "sendMessage",
        "sessionId": session,
        "sender": { "connectionId": sender, "userId": format!("user-{sender}") },
        // Now: the stored copy's TTL counts from here (7 days' retention).
        "receivedAt": now_ms() + n as i64,
        "payload": { "n": n },
    })
    .to_string()
}

/// The worker's settings from real flags. The queue and tables come from
/// [`WorkerBackends`]; `--queue-url` is required by the parser only.
fn config(callback_url: &str) -> WorkerConfig {
    let argv = [
        "switchboard",
        "worker",
        "--queue-url",
        "http://127.0.0.1/unused-see-worker-backends.fifo",
        "--callback-url",
        callback_url,
        "--wait-time-seconds",
        "1",
        "--shutdown-grace",
        "10s",
        "--max-groups",
        "4",
        "--pollers",
        "2",
    ];
    let Command::Worker(args) = Cli::try_parse_from(argv).expect("valid flags").command else {
        unreachable!("worker subcommand")
    };
    WorkerConfig::from_args(&args).expect("valid worker config")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_keeps_group_order_and_prunes_gone_connections_on_the_embedded_backend() {
    let dir = TempDir::new("worker-embedded");
    let store = EmbeddedStore::open(dir.path()).await.unwrap();
    let base = support::unique("w");
    let names = Names {
        connections_table: format!("{base}-connections"),
        messages_table: format!("{base}-messages"),
        queue: format!("{base}-inbound.fifo"),
        dlq: format!("{base}-inbound-dlq.fifo"),
    };
    let migrated = store.migrate(&names).await.unwrap();
    let queue = store.queue(&migrated.queue_url).unwrap();
    // Small pages: the fan-out has to follow cursors.
    let conns = store.connections(&names.connections_table, Some(2));
    let messages = store.messages(&names.messages_table);

    let server = ConnectionsServer::start().await;
    let mut members: Vec<(String, Vec<String>)> = Vec::new();
    for g in 0..GROUPS {
        let session = format!("room-{g}");
        let ids: Vec<String> = (0..3).map(|i| format!("c{g}-{i}")).collect();
        for (i, id) in ids.iter().enumerate() {
            conns
                .put(&Connection {
                    connection_id: id.clone(),
                    session_id: session.clone(),
                    user_id: Some(format!("user-{id}")),
                    connected_at: 1000 + i as i64,
                    expires_at: 4_102_444_800,
                    domain_name: Some("127.0.0.1".into()),
                    stage: Some("dev".into()),
                    source_ip: Some("127.0.0.1".into()),
                })
                .await
                .unwrap();
        }
        members.push((session, ids));
    }
    // One member of room-0 vanished without a close: 410 on the first post.
    let gone = "c0-2";
    server.set_gone(gone);

    let push = AwsBackend::new(support::sdk::config(None).await).push();
    let dlq_store = store.clone();
    let backends = WorkerBackends {
        queue: Arc::new(queue.clone()),
        open_queue: Box::new(move |url| Ok(Arc::new(dlq_store.queue(url)?) as Arc<dyn Queue>)),
        connections: Arc::new(conns.clone()),
        messages: Arc::new(messages.clone()),
        push: Arc::new(push),
    };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = tokio::spawn(run_worker(
        backends,
        config(&server.endpoint("dev")),
        listener,
        async {
            let _ = stopped.await;
        },
    ));

    // Interleaved across groups, while the worker consumes; plus one poison
    // message in room-3 that must go to the DLQ without blocking the group.
    for i in 0..PER_GROUP {
        for (g, (session, ids)) in members.iter().enumerate() {
            let id = format!("{session}-m{i:02}");
            let body = if g == 3 && i == 5 {
                "{not json".to_owned()
            } else {
                envelope(&id, session, &ids[0], i)
            };
            queue
                .send(&OutgoingMessage {
                    body,
                    group_id: session.clone(),
                    dedup_id: id,
                    attributes: Default::default(),
                })
                .await
                .unwrap();
        }
    }

    let live_members = GROUPS * 3 - 1;
    let expected = live_members * PER_GROUP - 3; // room-3 lost one message to the DLQ
    server
        .wait_until(
            Duration::from_secs(60),
            "every message delivered to every live member",
            |p| p.iter().filter(|p| p.frame["type"] == "message").count() >= expected,
        )
        .await;

    for (g, (session, ids)) in members.iter().enumerate() {
        let want: Vec<String> = (0..PER_GROUP)
            .filter(|i| !(g == 3 && *i == 5))
            .map(|i| format!("{session}-m{i:02}"))
            .collect();
        for id in ids.iter().filter(|id| id.as_str() != gone) {
            let got: Vec<String> = server
                .posts_to(id)
                .iter()
                .filter(|f| f["type"] == "message")
                .map(|f| f["id"].as_str().unwrap().to_owned())
                .collect();
            assert_eq!(
                got, want,
                "{id} of {session}: out of order, missing or twice"
            );
        }
    }
    assert!(server.posts_to(gone).is_empty());
    assert_eq!(
        server.attempts(gone),
        1,
        "pruned after the first 410, never tried again"
    );
    assert!(
        conns.get(gone).await.unwrap().is_none(),
        "the gone connection's item was deleted"
    );
    assert!(conns.get("c0-0").await.unwrap().is_some());
    assert!(
        server.posts().iter().all(|p| p.signed),
        "SigV4-signed posts"
    );

    // Stored for history, in order.
    let stored = messages.latest("room-1", 100).await.unwrap();
    assert_eq!(stored.len(), PER_GROUP);
    assert_eq!(stored[0].id, "room-1-m00");

    // The poison message is in the DLQ with its reason; the queue drains.
    let dlq = store.queue(&migrated.dlq_url).unwrap();
    let dead = dlq
        .receive(ReceiveRequest {
            max_messages: 10,
            wait: Duration::from_secs(5),
            visibility: Duration::from_secs(30),
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].body, "{not json");
    assert_eq!(dead[0].group_id, "room-3");
    assert!(dead[0].attributes.contains_key("reason"), "{dead:?}");
    support::eventually(Duration::from_secs(20), "the queue drained", || {
        let queue = queue.clone();
        async move {
            let info = queue.info().await.ok()?;
            (info.approximate_messages == 0 && info.approximate_in_flight == 0).then_some(())
        }
    })
    .await;

    // The pruned member's leave (the worker sends it: no $disconnect ran)
    // reached room-0's live members once.
    for id in ["c0-0", "c0-1"] {
        let leaves: Vec<_> = server
            .posts_to(id)
            .into_iter()
            .filter(|f| f["type"] == "leave")
            .collect();
        assert_eq!(leaves.len(), 1, "{id}: {leaves:?}");
        assert_eq!(leaves[0]["connectionId"], gone);
        assert_eq!(leaves[0]["userId"], "user-c0-2");
    }

    let _ = stop.send(());
    tokio::time::timeout(Duration::from_secs(20), worker)
        .await
        .expect("worker drained within its grace period")
        .expect("worker task")
        .expect("worker result");
}
