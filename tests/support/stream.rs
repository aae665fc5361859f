//! A message stream for the fault suite, seeded straight into an embedded
//! store: `groups` sessions with `recipients` connections each, and
//! `per_group` `sendMessage` envelopes per session, interleaved across
//! sessions as clients would send them. Everything sent is in the [`Ledger`].

use std::collections::BTreeMap;

use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{Connection, Connections, OutgoingMessage, Queue};
use switchboard::ops::migrate::Names;

use super::ledger::Ledger;

/// The shape of a stream.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    /// Message groups (sessions).
    pub groups: usize,
    /// Messages per group.
    pub per_group: usize,
    /// Connections per session.
    pub recipients: usize,
}

impl Plan {
    /// Messages in all groups.
    pub fn messages(&self) -> usize {
        self.groups * self.per_group
    }

    /// Deliveries when every message reaches every member once.
    pub fn deliveries(&self) -> usize {
        self.messages() * self.recipients
    }
}

/// `n` from environment variable `var` when set (the heavy variants), else `default`.
pub fn env_or(var: &str, default: usize) -> usize {
    match std::env::var(var) {
        Ok(v) => v
            .parse()
            .unwrap_or_else(|_| panic!("{var}={v}: not a number")),
        Err(_) => default,
    }
}

/// Whether `SWITCHBOARD_HEAVY_FAULTS=1`: the heavy variants of the fault suite.
pub fn heavy() -> bool {
    std::env::var("SWITCHBOARD_HEAVY_FAULTS").is_ok_and(|v| v == "1")
}

/// Session name of group `g`.
pub fn group(g: usize) -> String {
    format!("room-{g:03}")
}

/// Message id of message `i` of group `g`.
pub fn message_id(g: usize, i: usize) -> String {
    format!("room-{g:03}-m{i:05}")
}

/// Connection id of member `r` of group `g`.
pub fn recipient(g: usize, r: usize) -> String {
    format!("c{g:03}-{r}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64
}

/// An envelope v1 body as the send handler writes it (no callback: the
/// worker gets `--callback-url`).
pub fn envelope(id: &str, session: &str, sender: &str, n: usize) -> String {
    serde_json::json!({
        "v": 1,
        "id": id,
        "action": "sendMessage",
        "sessionId": session,
        "sender": { "connectionId": sender, "userId": format!("user-{sender}") },
        "receivedAt": now_ms(),
        "payload": { "n": n },
    })
    .to_string()
}

/// A seeded stream: the ledger and who is in which group.
pub struct Seeded {
    /// What was sent.
    pub ledger: Ledger,
    /// Recipient → group.
    pub members: BTreeMap<String, String>,
}

/// Creates the default queues and tables in `store` (as `switchboard worker
/// --data-dir` would), stores the members and sends the stream. `poison(g, i)`
/// may replace message `i` of group `g` by a body that must be dead-lettered.
/// Groups are sent concurrently, each in order, so the store's group commit
/// batches the writes.
pub async fn seed(
    store: &EmbeddedStore,
    plan: Plan,
    poison: impl Fn(usize, usize) -> Option<String>,
) -> Seeded {
    let names = Names::default();
    let migrated = store
        .migrate(&names)
        .await
        .expect("migrate the embedded store");
    let queue = store.queue(&migrated.queue_url).unwrap();
    let conns = store.connections(&names.connections_table, None);
    let mut ledger = Ledger::new();
    let mut members = BTreeMap::new();
    let mut bodies: Vec<Vec<(String, String)>> = Vec::new();
    for g in 0..plan.groups {
        let session = group(g);
        for r in 0..plan.recipients {
            let id = recipient(g, r);
            conns
                .put(&Connection {
                    connection_id: id.clone(),
                    session_id: session.clone(),
                    user_id: Some(format!("user-{id}")),
                    connected_at: 1000 + r as i64,
                    expires_at: 4_102_444_800, // 2100-01-01
                    domain_name: Some("127.0.0.1".into()),
                    stage: Some("test".into()),
                    source_ip: Some("127.0.0.1".into()),
                })
                .await
                .expect("put connection");
            members.insert(id, session.clone());
        }
        let mut list = Vec::new();
        for i in 0..plan.per_group {
            let id = message_id(g, i);
            let body = match poison(g, i) {
                Some(body) => {
                    ledger.sent_poison(&session, &id);
                    body
                }
                None => {
                    ledger.sent(&session, &id);
                    envelope(&id, &session, &recipient(g, 0), i)
                }
            };
            list.push((id, body));
        }
        bodies.push(list);
    }
    let mut sends = tokio::task::JoinSet::new();
    for (g, list) in bodies.into_iter().enumerate() {
        let queue = queue.clone();
        sends.spawn(async move {
            for (id, body) in list {
                queue
                    .send(&OutgoingMessage {
                        body,
                        group_id: group(g),
                        dedup_id: id,
                        attributes: Default::default(),
                    })
                    .await
                    .expect("send to the embedded queue");
            }
        });
    }
    while let Some(r) = sends.join_next().await {
        r.expect("sender task");
    }
    Seeded { ledger, members }
}

/// The real worker (`switchboard::app::run_worker`, as `switchboard worker
/// --data-dir` runs it) on `store`, in this process.
pub struct InProcessWorker {
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<Result<(), switchboard::Error>>,
    /// Where `/metrics` answers.
    pub metrics_addr: std::net::SocketAddr,
}

impl InProcessWorker {
    /// Starts on the default queue and tables of `store` (on disk), posting to
    /// `callback`, with 1 s long polls; `extra` flags come last.
    pub async fn start(store: &EmbeddedStore, callback: &str, extra: &[&str]) -> Self {
        use clap::Parser;
        use switchboard::cli::{Cli, Command};
        let dir = store
            .path()
            .and_then(|p| p.parent())
            .expect("an on-disk store (the worker's --data-dir)")
            .to_str()
            .unwrap()
            .to_owned();
        let mut argv = vec![
            "switchboard",
            "worker",
            "--data-dir",
            &dir,
            "--queue-url",
            super::process::EMBEDDED_QUEUE,
            "--callback-url",
            callback,
            "--wait-time-seconds",
            "1",
        ];
        argv.extend_from_slice(extra);
        let Command::Worker(args) = Cli::try_parse_from(argv).expect("valid flags").command else {
            unreachable!("worker subcommand")
        };
        let config =
            switchboard::worker_config::WorkerConfig::from_args(&args).expect("valid config");
        let backends = switchboard::app::embedded_backends(store, &config)
            .await
            .expect("embedded backends");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics_addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let join = tokio::spawn(switchboard::app::run_worker(
            backends,
            config,
            listener,
            async {
                let _ = rx.await;
            },
        ));
        InProcessWorker {
            stop: Some(tx),
            join,
            metrics_addr,
        }
    }

    /// One sample (or the sum of a labelled family) of `/metrics`.
    pub async fn metric(&self, sample: &str) -> f64 {
        super::process::metric(self.metrics_addr, "/metrics", sample).await
    }

    /// Drains and waits for the worker to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(std::time::Duration::from_secs(40), &mut self.join)
            .await
            .expect("worker drained within its grace period")
            .expect("worker task")
            .expect("worker result");
    }
}
