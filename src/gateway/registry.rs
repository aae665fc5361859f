//! The gateway's open connections, by id: what the @connections API posts to,
//! reads and closes.
//!
//! Over 400 lines: the connection handle, its outbound queue and the registry
//! share private state (the queue's byte accounting and close reason); split
//! them when a second user of the outbound queue appears.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message;
use serde_json::{Map, Value};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use super::edge::KeyState;
use crate::sync::now_ms;

/// Who is connecting: what the handshake and the edge checks established.
#[derive(Debug, Default, Clone)]
pub struct Caller {
    /// Client IP (after `trusted_proxy`).
    pub source_ip: String,
    /// Client User-Agent.
    pub user_agent: Option<String>,
    /// The authorizer's context, `principalId` included.
    pub authorizer: Option<Map<String, Value>>,
    /// The API key, if one of a usage plan of the stage was presented.
    pub(crate) api_key: Option<Arc<KeyState>>,
    /// The handshake's `traceparent`/`tracestate` headers, passed with every
    /// message event so each frame's trace continues the handshake's.
    pub trace_headers: BTreeMap<String, String>,
}

/// Why the gateway closes a connection: the close frame it sends and what the
/// `$disconnect` event reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CloseReason {
    /// WebSocket close code.
    pub code: u16,
    /// Close frame reason and `disconnectReason`.
    pub reason: &'static str,
    /// Metrics label.
    pub label: &'static str,
}

impl CloseReason {
    /// DELETE on @connections (API Gateway: 1000 "Connection Closed Normally").
    pub const DELETED: CloseReason = CloseReason {
        code: 1000,
        reason: "Connection Closed Normally",
        label: "deleted",
    };
    /// Idle timeout, maximum duration, gateway shutdown.
    pub const GOING_AWAY: CloseReason = CloseReason {
        code: 1001,
        reason: "Going away",
        label: "going_away",
    };
    /// A binary frame: API Gateway WebSocket APIs here take text only.
    pub const BINARY: CloseReason = CloseReason {
        code: 1003,
        reason: "Binary frames are not supported",
        label: "binary",
    };
    /// Invalid UTF-8 in a text frame.
    pub const BAD_TEXT: CloseReason = CloseReason {
        code: 1007,
        reason: "Invalid frame payload data",
        label: "bad_text",
    };
    /// A frame or message over the limits.
    pub const TOO_BIG: CloseReason = CloseReason {
        code: 1009,
        reason: "Message too big",
        label: "too_big",
    };
    /// Any other protocol violation.
    pub const PROTOCOL: CloseReason = CloseReason {
        code: 1002,
        reason: "Protocol error",
        label: "protocol",
    };
}

/// One connection known to the gateway.
#[derive(Debug)]
pub struct ConnHandle {
    /// Connection id.
    pub id: String,
    /// Stage it connected to.
    pub stage: String,
    /// Connect time, epoch ms.
    pub connected_at: i64,
    /// Client IP.
    pub source_ip: String,
    /// Client User-Agent.
    pub user_agent: Option<String>,
    /// Authorizer output for every event of this connection
    /// (`requestContext.authorizer`).
    pub authorizer: Option<Map<String, Value>>,
    /// The handshake's trace headers ([`Caller::trace_headers`]).
    pub trace_headers: BTreeMap<String, String>,
    /// The API key the connection presented, with its usage plan's meters.
    pub(crate) api_key: Option<Arc<KeyState>>,
    /// The API's domain as the client addressed it.
    pub domain_name: String,
    last_active: AtomicI64,
    open: AtomicBool,
    outbound: Arc<Outbound>,
    closing: CancellationToken,
    close_reason: Mutex<Option<CloseReason>>,
}

/// What a post to a connection found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PostOutcome {
    /// Queued for sending.
    Sent,
    /// Unknown or closed (410).
    Gone,
    /// Still in `$connect` (403).
    Connecting,
    /// The client does not read fast enough; its buffer is full (429).
    Full,
}

impl ConnHandle {
    /// A handle in the connecting state (to be shared in an `Arc` once its
    /// caller is known), and the receiver of its outbound frames.
    pub fn new(
        id: String,
        stage: String,
        domain_name: String,
        caller: Caller,
        connected_at: i64,
        buffer: usize,
    ) -> (Self, OutboundReceiver) {
        let tx = Arc::new(Outbound {
            queue: Mutex::default(),
            ready: Notify::new(),
            room: Notify::new(),
            capacity: buffer.max(1),
        });
        let rx = OutboundReceiver(tx.clone());
        let handle = ConnHandle {
            id,
            stage,
            connected_at,
            source_ip: caller.source_ip,
            user_agent: caller.user_agent,
            authorizer: caller.authorizer,
            trace_headers: caller.trace_headers,
            api_key: caller.api_key,
            domain_name,
            last_active: AtomicI64::new(connected_at),
            open: AtomicBool::new(false),
            outbound: tx,
            closing: CancellationToken::new(),
            close_reason: Mutex::new(None),
        };
        (handle, rx)
    }

    /// `$connect` succeeded: posts are accepted from now on.
    pub fn mark_open(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    /// Whether `$connect` finished (posts and deletes are allowed).
    pub fn post_allowed(&self) -> bool {
        self.open.load(Ordering::SeqCst)
    }

    /// Records activity now (GetConnection's `lastActiveAt`).
    pub fn touch(&self) {
        self.last_active.store(now_ms(), Ordering::Relaxed);
    }

    /// Last activity, epoch ms.
    pub fn last_active(&self) -> i64 {
        self.last_active.load(Ordering::Relaxed)
    }

    /// Queues a frame without waiting.
    pub fn post(&self, msg: Message) -> PostOutcome {
        if self.closing.is_cancelled() {
            return PostOutcome::Gone;
        }
        if !self.open.load(Ordering::SeqCst) {
            return PostOutcome::Connecting;
        }
        match self.outbound.try_push(msg) {
            Ok(()) => {
                self.touch();
                PostOutcome::Sent
            }
            Err(Refused::Full(_)) => PostOutcome::Full,
            Err(Refused::Closed) => PostOutcome::Gone,
        }
    }

    /// Queues a frame of the gateway's own (route responses, error frames),
    /// waiting for room; false when the connection is gone.
    pub async fn reply(&self, mut msg: Message) -> bool {
        loop {
            let room = self.outbound.room.notified();
            tokio::pin!(room);
            room.as_mut().enable();
            match self.outbound.try_push(msg) {
                Ok(()) => return true,
                Err(Refused::Closed) => return false,
                Err(Refused::Full(m)) => msg = m,
            }
            room.await;
        }
    }

    /// Asks the connection to close; the first reason wins.
    pub fn close(&self, reason: CloseReason) {
        let mut r = crate::sync::lock(&self.close_reason);
        if r.is_none() {
            *r = Some(reason);
        }
        drop(r);
        self.closing.cancel();
    }

    /// The reason given to [`close`](Self::close), if any.
    pub fn close_reason(&self) -> Option<CloseReason> {
        crate::sync::lock(&self.close_reason).clone()
    }

    /// Resolves when [`close`](Self::close) was called.
    pub async fn closing(&self) {
        self.closing.cancelled().await
    }

    /// Whether [`close`](Self::close) was called.
    pub fn is_closing(&self) -> bool {
        self.closing.is_cancelled()
    }
}

/// A connection's outbound frames, at most `capacity` waiting. Memory is
/// held only while frames wait: a tokio mpsc channel would allocate a
/// 32-slot block (about 2 KiB) up front for every connection, idle or not.
#[derive(Debug)]
pub struct Outbound {
    queue: Mutex<Queue>,
    /// Wakes the writer: a frame arrived or the queue closed.
    ready: Notify,
    /// Wakes repliers waiting for room.
    room: Notify,
    capacity: usize,
}

#[derive(Debug, Default)]
struct Queue {
    frames: VecDeque<Message>,
    /// The writer is gone: nothing will be sent any more.
    closed: bool,
}

enum Refused {
    Full(Message),
    Closed,
}

impl Outbound {
    fn try_push(&self, msg: Message) -> Result<(), Refused> {
        let mut q = crate::sync::lock(&self.queue);
        if q.closed {
            return Err(Refused::Closed);
        }
        if q.frames.len() >= self.capacity {
            return Err(Refused::Full(msg));
        }
        q.frames.push_back(msg);
        drop(q);
        self.ready.notify_one();
        Ok(())
    }
}

/// The writer's end of a connection's [`Outbound`] frames; dropping it
/// closes the queue (posts then find the connection gone).
#[derive(Debug)]
pub struct OutboundReceiver(Arc<Outbound>);

impl OutboundReceiver {
    /// The next frame, waiting for one.
    pub async fn recv(&mut self) -> Option<Message> {
        loop {
            let ready = self.0.ready.notified();
            tokio::pin!(ready);
            ready.as_mut().enable();
            match self.pop() {
                Ok(m) => return Some(m),
                Err(true) => return None,
                Err(false) => ready.await,
            }
        }
    }

    /// The next frame if one is waiting now.
    pub fn try_recv(&mut self) -> Option<Message> {
        self.pop().ok()
    }

    /// Takes the oldest frame; `Err(closed)` when there is none.
    fn pop(&self) -> Result<Message, bool> {
        let mut q = crate::sync::lock(&self.0.queue);
        let Some(m) = q.frames.pop_front() else {
            return Err(q.closed);
        };
        if q.frames.is_empty() {
            // Give the buffer back: an idle connection keeps none.
            q.frames = VecDeque::new();
        }
        drop(q);
        self.0.room.notify_one();
        Ok(m)
    }
}

impl Drop for OutboundReceiver {
    fn drop(&mut self) {
        let mut q = crate::sync::lock(&self.0.queue);
        q.closed = true;
        q.frames = VecDeque::new();
        drop(q);
        self.0.room.notify_waiters();
    }
}

/// One connection as the console lists it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ConnectionInfo {
    /// Connection id.
    pub connection_id: String,
    /// Stage it connected to.
    pub stage: String,
    /// Connect time, epoch ms.
    pub connected_at: i64,
    /// Last frame in or out, epoch ms.
    pub last_active_at: i64,
    /// Client IP.
    pub source_ip: String,
    /// Client User-Agent.
    pub user_agent: Option<String>,
    /// The authorizer's `principalId`, if an authorizer ran.
    pub principal_id: Option<String>,
    /// Whether `$connect` finished.
    pub open: bool,
}

/// Every connection of one gateway.
#[derive(Debug, Default)]
pub struct Registry {
    map: Mutex<HashMap<String, Arc<ConnHandle>>>,
}

impl Registry {
    /// Adds a connection; false if the id is taken.
    pub fn insert(&self, handle: Arc<ConnHandle>) -> bool {
        let mut map = crate::sync::lock(&self.map);
        if map.contains_key(&handle.id) {
            return false;
        }
        map.insert(handle.id.clone(), handle);
        true
    }

    /// Looks a connection up.
    pub fn get(&self, id: &str) -> Option<Arc<ConnHandle>> {
        crate::sync::lock(&self.map).get(id).cloned()
    }

    /// Forgets a connection.
    pub fn remove(&self, id: &str) {
        crate::sync::lock(&self.map).remove(id);
    }

    /// Asks every connection to close with `reason`.
    pub fn close_all(&self, reason: CloseReason) {
        let all: Vec<_> = crate::sync::lock(&self.map).values().cloned().collect();
        for h in all {
            h.close(reason.clone());
        }
    }

    /// Every connection known now, open or connecting, by connection id.
    pub fn snapshot(&self) -> Vec<ConnectionInfo> {
        let all: Vec<_> = crate::sync::lock(&self.map).values().cloned().collect();
        let mut out: Vec<ConnectionInfo> = all
            .iter()
            .filter(|h| !h.is_closing())
            .map(|h| ConnectionInfo {
                connection_id: h.id.clone(),
                stage: h.stage.clone(),
                connected_at: h.connected_at,
                last_active_at: h.last_active(),
                source_ip: h.source_ip.clone(),
                user_agent: h.user_agent.clone(),
                principal_id: h
                    .authorizer
                    .as_ref()
                    .and_then(|a| a.get("principalId"))
                    .and_then(|p| p.as_str())
                    .map(str::to_owned),
                open: h.post_allowed(),
            })
            .collect();
        out.sort_by(|a, b| a.connection_id.cmp(&b.connection_id));
        out
    }

    /// Connections known now (connecting or open).
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.map).len()
    }
}

#[cfg(test)]
mod outbound_tests {
    use super::*;

    fn open_handle(buffer: usize) -> (Arc<ConnHandle>, OutboundReceiver) {
        let (h, rx) = ConnHandle::new(
            "id".into(),
            "dev".into(),
            "localhost".into(),
            Caller::default(),
            0,
            buffer,
        );
        h.mark_open();
        (Arc::new(h), rx)
    }

    #[tokio::test]
    async fn bounded_in_order_and_gone_once_the_writer_is() {
        let (h, mut rx) = open_handle(2);
        assert_eq!(h.post(Message::text("a")), PostOutcome::Sent);
        assert_eq!(h.post(Message::text("b")), PostOutcome::Sent);
        assert_eq!(h.post(Message::text("c")), PostOutcome::Full);
        // A reply waits for room, then goes after what was queued.
        let replier = {
            let h = h.clone();
            tokio::spawn(async move { h.reply(Message::text("r")).await })
        };
        assert_eq!(rx.recv().await, Some(Message::text("a")));
        assert!(replier.await.unwrap());
        assert_eq!(rx.recv().await, Some(Message::text("b")));
        assert_eq!(rx.recv().await, Some(Message::text("r")));
        // The writer waits for the next frame.
        let waiting = tokio::spawn(async move {
            let m = rx.recv().await;
            (m, rx)
        });
        tokio::task::yield_now().await;
        assert_eq!(h.post(Message::text("d")), PostOutcome::Sent);
        let (m, rx) = waiting.await.unwrap();
        assert_eq!(m, Some(Message::text("d")));
        // Without a writer the connection is gone, for posts and replies.
        drop(rx);
        assert_eq!(h.post(Message::text("e")), PostOutcome::Gone);
        assert!(!h.reply(Message::text("f")).await);
    }
}
