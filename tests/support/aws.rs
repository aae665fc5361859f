//! The AWS backend pointed at moto's server (`scripts/test.sh` starts it and
//! sets `SWITCHBOARD_TEST_AWS_ENDPOINT`).

use switchboard::backend::aws::AwsBackend;
use switchboard::ops::migrate;

/// moto's own URL, e.g. `http://127.0.0.1:5123`.
pub fn moto_url() -> String {
    std::env::var("SWITCHBOARD_TEST_AWS_ENDPOINT").expect(
        "aws-tests need SWITCHBOARD_TEST_AWS_ENDPOINT pointing at moto_server: run scripts/test.sh",
    )
}

/// The AWS endpoint tests use: moto behind this process's serialising proxy
/// (`fault_proxy.rs` says why), started once on its own thread and runtime so
/// it outlives every test's runtime.
pub fn endpoint() -> String {
    static PROXY: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    PROXY
        .get_or_init(|| {
            let upstream = moto_url();
            let (tx, rx) = std::sync::mpsc::channel();
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .expect("proxy runtime");
                rt.block_on(async {
                    let proxy = super::fault_proxy::FaultProxy::start_serializing(&upstream).await;
                    tx.send(proxy.url.clone()).expect("report proxy URL");
                    std::future::pending::<()>().await
                })
            });
            rx.recv().expect("moto proxy started")
        })
        .clone()
}

/// The AWS backend on moto (through [`endpoint`]).
pub async fn backend() -> AwsBackend {
    AwsBackend::new(super::sdk::config(Some(&endpoint())).await)
}

/// Tables and queues of one test, with unique names, created by `migrate`.
#[derive(Debug, Clone)]
pub struct Stack {
    /// Names used.
    pub names: migrate::Names,
    /// Inbound queue URL.
    pub queue_url: String,
    /// Dead-letter queue URL.
    pub dlq_url: String,
}

/// The raw item of connection `id` in the stack's connections table (a
/// consistent read), to check the attributes as DynamoDB holds them.
pub async fn connection_item(
    backend: &AwsBackend,
    stack: &Stack,
    id: &str,
) -> Option<std::collections::HashMap<String, aws_sdk_dynamodb::types::AttributeValue>> {
    backend
        .dynamodb()
        .get_item()
        .table_name(&stack.names.connections_table)
        .key(
            "connectionId",
            aws_sdk_dynamodb::types::AttributeValue::S(id.into()),
        )
        .consistent_read(true)
        .send()
        .await
        .unwrap()
        .item
}

/// Names for one test: `prefix-<unique>-connections`, ... and FIFO queues.
pub fn names(prefix: &str) -> migrate::Names {
    let base = super::unique(prefix);
    migrate::Names {
        connections_table: format!("{base}-connections"),
        messages_table: format!("{base}-messages"),
        queue: format!("{base}-inbound.fifo"),
        dlq: format!("{base}-inbound-dlq.fifo"),
    }
}

/// Runs `switchboard migrate` (the library function) against `backend` with
/// unique names.
pub async fn migrated_stack(backend: &AwsBackend, prefix: &str) -> Stack {
    let names = names(prefix);
    let report = migrate::run(backend, &names, std::time::Duration::from_secs(60), |_| {})
        .await
        .expect("migrate on moto");
    Stack {
        names,
        queue_url: report.queue_url,
        dlq_url: report.dlq_url,
    }
}

/// A gateway on 127.0.0.1 whose builtin handlers use `stack`'s queue and
/// connections table on `backend`.
pub async fn gateway(
    backend: &AwsBackend,
    stack: &Stack,
    config: switchboard::gateway::GatewayConfig,
) -> super::ws::TestGateway {
    let connections = backend.connections(&stack.names.connections_table, None);
    super::ws::TestGateway::start(
        config,
        Some(switchboard::gateway::HandlerBackend {
            queue: std::sync::Arc::new(backend.queue(&stack.queue_url)),
            connections: std::sync::Arc::new(connections),
        }),
    )
    .await
}

use std::net::SocketAddr;
use std::time::Duration;

use clap::Parser;
use switchboard::app::run_worker_on_aws;
use switchboard::backend::{Connection, Connections};
use switchboard::cli::{Cli, Command};
use switchboard::worker_config::WorkerConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A worker running in this process, stopped by [`RunningWorker::stop`].
pub struct RunningWorker {
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), switchboard::Error>>,
    /// Where /metrics, /healthz and /readyz answer.
    pub metrics_addr: SocketAddr,
}

impl RunningWorker {
    /// Starts the drain and waits for the worker to return.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(40), &mut self.join)
            .await
            .expect("worker drained within its grace period")
            .expect("worker task")
            .expect("worker result");
    }

    /// GET `path` on the telemetry port; returns (status, body).
    pub async fn http_get(&self, path: &str) -> (u16, String) {
        http_get(self.metrics_addr, path).await
    }

    /// The value of one sample of `/metrics`, e.g.
    /// `switchboard_deliveries_total{outcome="ok"}`; 0 when absent.
    pub async fn metric(&self, sample: &str) -> f64 {
        super::process::metric(self.metrics_addr, "/metrics", sample).await
    }
}

pub use super::process::http_get;

/// The worker's configuration from real command-line flags: the stack's queue
/// and tables, `callback_url`, 1 s long polls, one poller (see below), plus
/// `extra` flags (later flags win).
pub fn worker_config(stack: &Stack, callback_url: &str, extra: &[&str]) -> WorkerConfig {
    let mut argv = vec![
        "switchboard".to_owned(),
        "worker".to_owned(),
        "--queue-url".to_owned(),
        stack.queue_url.clone(),
        "--callback-url".to_owned(),
        callback_url.to_owned(),
        "--connections-table".to_owned(),
        stack.names.connections_table.clone(),
        "--messages-table".to_owned(),
        stack.names.messages_table.clone(),
        "--wait-time-seconds".to_owned(),
        "1".to_owned(),
        "--shutdown-grace".to_owned(),
        "10s".to_owned(),
        // moto's ReceiveMessage is not atomic: two concurrent receives can return
        // the same message, or two messages of one group (measured: duplicates and
        // swapped pairs with 2 pollers). SQS hands out a group's next message only
        // after the previous one is deleted or visible again, so on AWS (and on the
        // embedded queue) several pollers keep order; on moto, one poller.
        "--pollers".to_owned(),
        "1".to_owned(),
    ];
    argv.extend(extra.iter().map(|s| s.to_string()));
    let Command::Worker(args) = Cli::try_parse_from(argv).expect("valid flags").command else {
        unreachable!("worker subcommand")
    };
    WorkerConfig::from_args(&args).expect("valid worker config")
}

/// Starts the real worker (as `switchboard worker` runs it) on `backend`.
pub async fn spawn_worker(backend: &AwsBackend, config: WorkerConfig) -> RunningWorker {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let metrics_addr = listener.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let backend = backend.clone();
    let join = tokio::spawn(async move {
        run_worker_on_aws(&backend, config, listener, async {
            let _ = rx.await;
        })
        .await
    });
    RunningWorker {
        stop: Some(tx),
        join,
        metrics_addr,
    }
}

/// An envelope v1 body, as the send handler writes it (no callback: tests give
/// the worker `--callback-url`).
pub fn envelope(
    id: &str,
    action: &str,
    session: &str,
    sender: &str,
    payload: serde_json::Value,
) -> String {
    serde_json::json!({
        "v": 1,
        "id": id,
        "action": action,
        "sessionId": session,
        "sender": { "connectionId": sender, "userId": format!("user-{sender}") },
        "receivedAt": std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_millis() as i64,
        "payload": payload,
    })
    .to_string()
}

/// Sends `(group, dedup id, body)` messages in order, 10 per SendMessageBatch.
pub async fn send_all(
    backend: &AwsBackend,
    queue_url: &str,
    messages: &[(String, String, String)],
) {
    use aws_sdk_sqs::types::SendMessageBatchRequestEntry;
    for chunk in messages.chunks(10) {
        let entries = chunk
            .iter()
            .enumerate()
            .map(|(i, (group, dedup, body))| {
                SendMessageBatchRequestEntry::builder()
                    .id(i.to_string())
                    .message_body(body)
                    .message_group_id(group)
                    .message_deduplication_id(dedup)
                    .build()
                    .unwrap()
            })
            .collect::<Vec<_>>();
        let out = backend
            .sqs()
            .send_message_batch()
            .queue_url(queue_url)
            .set_entries(Some(entries))
            .send()
            .await
            .expect("SendMessageBatch");
        assert!(out.failed().is_empty(), "send failed: {:?}", out.failed());
    }
}

/// Stores connections `ids` in `session` (connectedAt = 1000 + index).
pub async fn connect_all(
    conns: &dyn Connections,
    session: &str,
    ids: &[String],
) -> Vec<Connection> {
    let mut out = Vec::new();
    for (i, id) in ids.iter().enumerate() {
        let c = Connection {
            connection_id: id.clone(),
            session_id: session.to_owned(),
            user_id: Some(format!("user-{id}")),
            connected_at: 1000 + i as i64,
            expires_at: 4_102_444_800, // 2100-01-01
            domain_name: Some("127.0.0.1".into()),
            stage: Some("test".into()),
            source_ip: Some("127.0.0.1".into()),
        };
        conns.put(&c).await.expect("put connection");
        out.push(c);
    }
    out
}

/// Every message of a queue right now (receives until empty, deleting nothing:
/// messages become visible again after `visibility`).
pub async fn peek_all(backend: &AwsBackend, queue_url: &str) -> Vec<aws_sdk_sqs::types::Message> {
    use aws_sdk_sqs::types::MessageSystemAttributeName;
    let mut all = Vec::new();
    for _ in 0..50 {
        let out = backend
            .sqs()
            .receive_message()
            .queue_url(queue_url)
            .max_number_of_messages(10)
            .visibility_timeout(30)
            .message_system_attribute_names(MessageSystemAttributeName::All)
            .message_attribute_names("All")
            .send()
            .await
            .expect("ReceiveMessage");
        if out.messages().is_empty() {
            break;
        }
        all.extend(out.messages().iter().cloned());
    }
    all
}

/// `(group, dedup id, body)` of an envelope v1 (see [`envelope`]) as the send
/// handler enqueues it: group = `session`, dedup id = `id`. What [`send_all`]
/// takes.
pub fn message(
    id: &str,
    action: &str,
    session: &str,
    sender: &str,
    payload: serde_json::Value,
) -> (String, String, String) {
    (
        session.to_owned(),
        id.to_owned(),
        envelope(id, action, session, sender, payload),
    )
}

/// One worker test's parts on moto: the backend, a migrated stack, a test
/// @connections server (stage `test`) and the stack's connections table.
pub struct Rig {
    /// The AWS backend on moto.
    pub backend: AwsBackend,
    /// The test's tables and queues.
    pub stack: Stack,
    /// Where the worker posts.
    pub server: super::connections_server::ConnectionsServer,
    /// The stack's connections table.
    pub conns: std::sync::Arc<dyn Connections>,
}

impl Rig {
    /// Migrates a stack named after `prefix` and starts the @connections server.
    pub async fn start(prefix: &str) -> Self {
        let backend = backend().await;
        let stack = migrated_stack(&backend, prefix).await;
        let server = super::connections_server::ConnectionsServer::start().await;
        let conns = std::sync::Arc::new(backend.connections(&stack.names.connections_table, None));
        Rig {
            backend,
            stack,
            server,
            conns,
        }
    }

    /// Stores connections `ids` in `session` (see [`connect_all`]).
    pub async fn connect(&self, session: &str, ids: &[String]) -> Vec<Connection> {
        connect_all(self.conns.as_ref(), session, ids).await
    }

    /// Starts the real worker on this stack, posting to the server, with
    /// `extra` flags (see [`worker_config`]).
    pub async fn worker(&self, extra: &[&str]) -> RunningWorker {
        spawn_worker(
            &self.backend,
            worker_config(&self.stack, &self.server.endpoint("test"), extra),
        )
        .await
    }

    /// Sends `(group, dedup id, body)` messages to the inbound queue in order
    /// (see [`send_all`]).
    pub async fn send_all(&self, messages: &[(String, String, String)]) {
        send_all(&self.backend, &self.stack.queue_url, messages).await
    }

    /// Sends one envelope v1 (see [`message`]).
    pub async fn send(
        &self,
        id: &str,
        action: &str,
        session: &str,
        sender: &str,
        payload: serde_json::Value,
    ) {
        self.send_all(&[message(id, action, session, sender, payload)])
            .await
    }
}
