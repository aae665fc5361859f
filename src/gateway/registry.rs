//! The gateway's open connections, by id: what the @connections API posts to,
//! reads and closes.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Message;
use serde_json::{Map, Value};
use tokio::sync::mpsc;
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
    /// The API key the connection presented, with its usage plan's meters.
    pub(crate) api_key: Option<Arc<KeyState>>,
    /// The API's domain as the client addressed it.
    pub domain_name: String,
    last_active: AtomicI64,
    open: AtomicBool,
    outbound: mpsc::Sender<Message>,
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
    ) -> (Self, mpsc::Receiver<Message>) {
        let (tx, rx) = mpsc::channel(buffer);
        let handle = ConnHandle {
            id,
            stage,
            connected_at,
            source_ip: caller.source_ip,
            user_agent: caller.user_agent,
            authorizer: caller.authorizer,
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
        match self.outbound.try_send(msg) {
            Ok(()) => {
                self.touch();
                PostOutcome::Sent
            }
            Err(mpsc::error::TrySendError::Full(_)) => PostOutcome::Full,
            Err(mpsc::error::TrySendError::Closed(_)) => PostOutcome::Gone,
        }
    }

    /// Queues a frame of the gateway's own (route responses, error frames),
    /// waiting for room; false when the connection is gone.
    pub async fn reply(&self, msg: Message) -> bool {
        self.outbound.send(msg).await.is_ok()
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

    /// Connections known now (connecting or open).
    pub fn len(&self) -> usize {
        crate::sync::lock(&self.map).len()
    }
}
