//! Exactly one `$leave` per connection when the worker prunes a closing
//! member's record around its `$disconnect` (docs/envelope.md, "Join and
//! leave events"): between a close and its `$disconnect`, @connections
//! already answers 410, and a fan-out in that window prunes the record
//! `$disconnect` learns the session from. The edge handlers (as the gateway
//! and the Lambda functions run them), the worker's steps and fan-out, the
//! embedded queue and tables, and a test @connections server that answers
//! 410 for the closed member. Each interleaving is forced with a signal, not
//! left to timing.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};
use support::connections_server::ConnectionsServer;
use switchboard::actions::{ActionSettings, Actions, Fanout, RetryPolicy, Step};
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{
    Connection, Connections, Page, Queue, QueueMessage, ReceiveRequest, Result as BackendResult,
};
use switchboard::envelope::Envelope;
use switchboard::handlers::{HandlerKind, HandlerSettings, Handlers};
use switchboard::migrations::Names;
use switchboard::telemetry::Metrics;
use tokio::sync::{Notify, oneshot};

const CONNECT: &str = include_str!("fixtures/apigw-ws-connect.json");
const DISCONNECT: &str = include_str!("fixtures/apigw-ws-disconnect.json");
/// The session of the connect fixture (`?session=room1`).
const ROOM: &str = "room1";

/// The edge and the worker on one embedded store.
struct Rig {
    queue: Arc<dyn Queue>,
    table: Arc<dyn Connections>,
    server: ConnectionsServer,
    actions: Actions,
    metrics: Arc<Metrics>,
}

impl Rig {
    async fn start() -> Rig {
        let store = EmbeddedStore::in_memory().await.unwrap();
        let names = Names::default();
        let migrated = store.migrate(&names).await.unwrap();
        let queue: Arc<dyn Queue> = Arc::new(store.queue(&migrated.queue_url).unwrap());
        let table: Arc<dyn Connections> =
            Arc::new(store.connections(&names.connections_table, None));
        let server = ConnectionsServer::start().await;
        let metrics = Arc::new(Metrics::new());
        // As `serve_worker` builds it with presence events on.
        let fanout = Fanout::new(
            Arc::new(switchboard::app::local_push().await.push()),
            table.clone(),
            4,
            RetryPolicy::default(),
            metrics.clone(),
        )
        .with_leaves(queue.clone());
        let settings = ActionSettings {
            callback_url: Some(server.endpoint("dev")),
            ..ActionSettings::default()
        };
        let actions = Actions::new(
            Arc::new(store.messages(&names.messages_table)),
            fanout,
            settings,
        );
        Rig {
            queue,
            table,
            server,
            actions,
            metrics,
        }
    }

    /// The edge handlers with presence events on, over `table`.
    fn handlers(&self, table: Arc<dyn Connections>) -> Handlers {
        let settings = HandlerSettings {
            presence_events: true,
            ..HandlerSettings::default()
        };
        Handlers::new(self.queue.clone(), table, settings)
    }

    /// The worker fans a chat message of `from` out to the session.
    async fn broadcast_from(&self, from: &str) {
        let env = envelope(&json!({
            "v": 1, "id": support::unique("msg"), "action": "sendMessage", "sessionId": ROOM,
            "sender": {"connectionId": from}, "receivedAt": 1,
            "payload": {"text": "hi"}
        }));
        self.actions
            .run(
                &env,
                &[Step::Broadcast {
                    exclude_sender: false,
                }],
            )
            .await
            .unwrap();
    }

    /// Everything in the queue, received and deleted (FIFO: a group's next
    /// messages come once those in flight are deleted).
    async fn drain(&self) -> Vec<QueueMessage> {
        let mut all = Vec::new();
        loop {
            let got = self
                .queue
                .receive(ReceiveRequest {
                    max_messages: 10,
                    wait: Duration::ZERO,
                    visibility: Duration::from_secs(30),
                })
                .await
                .unwrap();
            if got.is_empty() {
                return all;
            }
            let handles: Vec<&str> = got.iter().map(|m| m.receipt_handle.as_str()).collect();
            for r in self.queue.delete_batch(&handles).await.unwrap() {
                r.unwrap();
            }
            all.extend(got);
        }
    }

    /// The `$leave` messages now in the queue (the rest is drained too).
    async fn leaves(&self) -> Vec<(QueueMessage, Envelope)> {
        self.drain()
            .await
            .into_iter()
            .map(|m| {
                let env = Envelope::parse(&m.body).unwrap();
                (m, env)
            })
            .filter(|(_, env)| env.action == "$leave")
            .collect()
    }

    /// The `leave` frames connection `to` was posted.
    fn leave_frames_to(&self, to: &str) -> Vec<Value> {
        self.server
            .posts_to(to)
            .into_iter()
            .filter(|f| f["type"] == "leave")
            .collect()
    }

    fn presence_metric(&self, outcome: &str) -> u64 {
        self.metrics
            .presence_events
            .with_label_values(&["leave", outcome])
            .get()
    }
}

fn envelope(v: &Value) -> Envelope {
    Envelope::parse(&v.to_string()).unwrap()
}

/// A fixture event of connection `id` now (a record connected in the
/// fixture's 2024 would have expired), with a request id of its own.
fn event(fixture: &str, id: &str) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let mut e: Value = serde_json::from_str(fixture).unwrap();
    let ctx = &mut e["requestContext"];
    ctx["connectionId"] = id.into();
    ctx["requestId"] = support::unique("req").into();
    ctx["connectedAt"] = now.into();
    ctx["requestTimeEpoch"] = now.into();
    e.to_string()
}

async fn run(h: &Handlers, kind: HandlerKind, fixture: &str, id: &str) {
    let r = h.handle_json(kind, &event(fixture, id)).await.unwrap();
    assert_eq!(r.status_code, 200, "{kind:?} of {id}: {r:?}");
}

/// The one leave of `id` in `leaves`, checked for the shape `$disconnect`
/// gives it: same id and deduplication id, the member's session and user.
fn the_one_leave_of(id: &str, leaves: &[(QueueMessage, Envelope)]) -> Envelope {
    let of_id: Vec<_> = leaves
        .iter()
        .filter(|(_, env)| env.sender.connection_id == id)
        .collect();
    assert_eq!(of_id.len(), 1, "leaves of {id}: {leaves:#?}");
    let (msg, env) = of_id[0].clone();
    assert_eq!(env.id, format!("$leave:{id}"));
    assert_eq!(msg.dedup_id.as_deref(), Some(env.id.as_str()));
    assert_eq!(msg.group_id, ROOM);
    assert_eq!(env.session_id, ROOM);
    assert_eq!(env.payload, Value::Null);
    assert!(env.callback.is_some(), "{env:?}");
    env
}

#[tokio::test]
async fn a_member_pruned_before_its_disconnect_reads_its_record_still_gets_one_leave() {
    let rig = Rig::start().await;
    let edge = rig.handlers(rig.table.clone());
    run(&edge, HandlerKind::Connect, CONNECT, "a").await;
    run(&edge, HandlerKind::Connect, CONNECT, "b").await;
    // b closed: @connections answers 410 for it, its $disconnect has not run.
    rig.server.set_gone("b");
    rig.broadcast_from("a").await;
    assert_eq!(rig.table.get("b").await.unwrap(), None, "b pruned");
    // Now b's $disconnect: no record to learn the session from.
    run(&edge, HandlerKind::Disconnect, DISCONNECT, "b").await;

    let leaves = rig.leaves().await;
    let leave = the_one_leave_of("b", &leaves);
    assert_eq!(leaves.len(), 1, "{leaves:#?}");
    assert_eq!(rig.presence_metric("enqueued"), 1);
    // The worker names the API it posted to.
    let callback = leave.callback.as_ref().unwrap();
    assert_eq!(
        format!("http://{}/{}", callback.domain_name, callback.stage),
        rig.server.endpoint("dev")
    );
    // And it is announced like the edge's: a hears b leave, once.
    rig.actions.run(&leave, &[Step::Announce]).await.unwrap();
    let frames = rig.leave_frames_to("a");
    assert_eq!(frames.len(), 1, "{frames:?}");
    assert_eq!(frames[0]["connectionId"], "b");
    assert_eq!(frames[0]["sessionId"], ROOM);
    assert!(rig.leave_frames_to("b").is_empty());
}

#[tokio::test]
async fn a_member_pruned_after_its_disconnect_read_its_record_gets_one_leave_too() {
    let rig = Rig::start().await;
    let paused = Arc::new(PausedAfterGet::new(rig.table.clone()));
    let edge = rig.handlers(paused.clone());
    run(&edge, HandlerKind::Connect, CONNECT, "a").await;
    run(&edge, HandlerKind::Connect, CONNECT, "b").await;
    rig.server.set_gone("b");
    // b's $disconnect reads its record and is held there...
    let (read, resume) = paused.arm();
    let disconnect = tokio::spawn({
        let edge = edge.clone();
        async move { run(&edge, HandlerKind::Disconnect, DISCONNECT, "b").await }
    });
    read.await.unwrap();
    // ...while the worker prunes it and sends its leave...
    rig.broadcast_from("a").await;
    assert_eq!(rig.presence_metric("enqueued"), 1);
    // ...then $disconnect deletes and sends the leave it read: the same id.
    resume.notify_one();
    disconnect.await.unwrap();

    let leaves = rig.leaves().await;
    the_one_leave_of("b", &leaves);
    assert_eq!(leaves.len(), 1, "{leaves:#?}");
    assert_eq!(rig.table.get("b").await.unwrap(), None);
}

#[tokio::test]
async fn a_disconnect_before_any_prune_sends_the_only_leave() {
    let rig = Rig::start().await;
    let edge = rig.handlers(rig.table.clone());
    run(&edge, HandlerKind::Connect, CONNECT, "a").await;
    run(&edge, HandlerKind::Connect, CONNECT, "b").await;
    rig.server.set_gone("b");
    run(&edge, HandlerKind::Disconnect, DISCONNECT, "b").await;
    // b has no record now: nothing to prune, no second leave.
    rig.broadcast_from("a").await;
    assert_eq!(rig.presence_metric("enqueued"), 0);

    let leaves = rig.leaves().await;
    let leave = the_one_leave_of("b", &leaves);
    assert_eq!(leaves.len(), 1, "{leaves:#?}");
    // The edge's callback: the event's API.
    let callback = leave.callback.unwrap();
    assert_eq!(
        callback.domain_name,
        "a1b2c3d4e5.execute-api.eu-west-1.amazonaws.com"
    );
}

/// The connections table, with `get` held once after it read, until told to
/// go on: `$disconnect` paused between reading the record and deleting it.
struct PausedAfterGet {
    inner: Arc<dyn Connections>,
    armed: Mutex<Option<(oneshot::Sender<()>, Arc<Notify>)>>,
}

impl PausedAfterGet {
    fn new(inner: Arc<dyn Connections>) -> Self {
        PausedAfterGet {
            inner,
            armed: Mutex::new(None),
        }
    }

    /// Holds the next `get`: the receiver fires once it has read, the
    /// `Notify` lets it return.
    fn arm(&self) -> (oneshot::Receiver<()>, Arc<Notify>) {
        let (tx, rx) = oneshot::channel();
        let resume = Arc::new(Notify::new());
        *self.armed.lock().unwrap() = Some((tx, resume.clone()));
        (rx, resume)
    }
}

#[async_trait]
impl Connections for PausedAfterGet {
    async fn put(&self, conn: &Connection) -> BackendResult<()> {
        self.inner.put(conn).await
    }

    async fn get(&self, connection_id: &str) -> BackendResult<Option<Connection>> {
        let read = self.inner.get(connection_id).await;
        let armed = self.armed.lock().unwrap().take();
        if let Some((read_done, resume)) = armed {
            let _ = read_done.send(());
            resume.notified().await;
        }
        read
    }

    async fn delete(&self, connection_id: &str) -> BackendResult<()> {
        self.inner.delete(connection_id).await
    }

    async fn delete_if_same(&self, conn: &Connection) -> BackendResult<bool> {
        self.inner.delete_if_same(conn).await
    }

    async fn by_session(
        &self,
        session_id: &str,
        cursor: Option<String>,
    ) -> BackendResult<Page<Connection>> {
        self.inner.by_session(session_id, cursor).await
    }

    async fn by_user(
        &self,
        user_id: &str,
        cursor: Option<String>,
    ) -> BackendResult<Page<Connection>> {
        self.inner.by_user(user_id, cursor).await
    }
}
