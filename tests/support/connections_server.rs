//! A test server speaking the API Gateway management API (`@connections`), driven
//! by the real `aws-sdk-apigatewaymanagement` client. It records every POST, and
//! answers 410 GoneException for ids it is told are gone and 429
//! LimitExceededException (or 500) a given number of times on demand. It can
//! also reset the TCP connection of a POST without answering (RST, as a crashed
//! or overloaded front end does), per id or for every POST during an outage.

use std::collections::{HashMap, HashSet};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::connect_info::Connected;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::serve::IncomingStream;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Notify, oneshot};
use tokio::time::Instant;

/// One POST the server accepted.
#[derive(Debug, Clone, PartialEq)]
pub struct Post {
    /// Stage from the path.
    pub stage: String,
    /// Connection id from the path.
    pub connection_id: String,
    /// Body, parsed as JSON.
    pub frame: serde_json::Value,
    /// Whether the request carried a SigV4 Authorization header.
    pub signed: bool,
}

#[derive(Default)]
struct Inner {
    posts: Vec<Post>,
    /// Distinct (connection id, frame id) pairs of `message` frames accepted.
    distinct: HashSet<(String, String)>,
    gone: HashSet<String>,
    /// id → remaining 429 answers.
    throttle: HashMap<String, u32>,
    /// id → remaining 500 answers.
    fail: HashMap<String, u32>,
    /// id → remaining connection resets.
    reset: HashMap<String, u32>,
    /// Until then, every POST gets the outage's faults in turn.
    outage: Option<(Instant, Vec<Fault>)>,
    /// Refused POSTs by fault, and per (connection id, frame id).
    refused: HashMap<Fault, u32>,
    refused_per_message: HashMap<(String, String), u32>,
    /// Every request (including refused ones), per id.
    attempts: HashMap<String, u32>,
    /// Latency added to every POST (a slow API).
    latency: Duration,
}

/// A refused POST.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Fault {
    /// 429 LimitExceededException.
    Throttle,
    /// 500 InternalServerError.
    Fail,
    /// The TCP connection is reset without an answer.
    Reset,
}

/// Handle to a running test @connections server.
#[derive(Clone)]
pub struct ConnectionsServer {
    inner: Arc<Mutex<Inner>>,
    changed: Arc<Notify>,
    /// Base URL without stage, e.g. `http://127.0.0.1:5555`.
    pub base_url: String,
    stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

fn error(status: StatusCode, kind: &str, message: &str) -> Response {
    (
        status,
        [
            ("x-amzn-ErrorType", kind),
            ("content-type", "application/json"),
        ],
        serde_json::json!({ "message": message }).to_string(),
    )
        .into_response()
}

impl ConnectionsServer {
    /// Starts on 127.0.0.1 with a free port.
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let server = ConnectionsServer {
            inner: Arc::default(),
            changed: Arc::default(),
            base_url,
            stop: Arc::default(),
        };
        let app = Router::new()
            .route(
                "/{stage}/@connections/{id}",
                post(post_to_connection)
                    .get(get_connection)
                    .delete(delete_connection),
            )
            .with_state(server.clone());
        let (tx, rx) = oneshot::channel::<()>();
        *server.stop.lock().unwrap() = Some(tx);
        tokio::spawn(async move {
            axum::serve(
                ResettableListener(listener),
                app.into_make_service_with_connect_info::<ResetSwitch>(),
            )
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await
            .unwrap();
        });
        server
    }

    /// The @connections endpoint for `stage`, as the worker's `--callback-url`.
    pub fn endpoint(&self, stage: &str) -> String {
        format!("{}/{stage}", self.base_url)
    }

    /// From now on, `id` answers 410 GoneException.
    pub fn set_gone(&self, id: &str) {
        self.inner.lock().unwrap().gone.insert(id.to_owned());
    }

    /// The next `times` posts to `id` answer 429 LimitExceededException.
    pub fn throttle(&self, id: &str, times: u32) {
        self.inner
            .lock()
            .unwrap()
            .throttle
            .insert(id.to_owned(), times);
    }

    /// The next `times` posts to `id` answer 500.
    pub fn fail(&self, id: &str, times: u32) {
        self.inner.lock().unwrap().fail.insert(id.to_owned(), times);
    }

    /// The next `times` posts to `id` have their TCP connection reset
    /// without an answer (the request is not recorded).
    pub fn reset(&self, id: &str, times: u32) {
        self.inner
            .lock()
            .unwrap()
            .reset
            .insert(id.to_owned(), times);
    }

    /// For `length` from now, every POST is refused, cycling through
    /// `faults` (an outage of the whole API).
    pub fn outage(&self, length: Duration, faults: &[Fault]) {
        assert!(!faults.is_empty());
        self.inner.lock().unwrap().outage = Some((Instant::now() + length, faults.to_vec()));
    }

    /// Refused POSTs so far, by fault.
    pub fn refused(&self, fault: Fault) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .refused
            .get(&fault)
            .copied()
            .unwrap_or(0)
    }

    /// The most refusals any one (connection, frame id) got.
    pub fn most_refusals_per_message(&self) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .refused_per_message
            .values()
            .copied()
            .max()
            .unwrap_or(0)
    }

    /// Every POST takes `latency` from now on (a slow @connections API).
    pub fn set_latency(&self, latency: Duration) {
        self.inner.lock().unwrap().latency = latency;
    }

    /// Every accepted POST, in arrival order.
    pub fn posts(&self) -> Vec<Post> {
        self.inner.lock().unwrap().posts.clone()
    }

    /// Accepted POSTs to `id`, in arrival order.
    pub fn posts_to(&self, id: &str) -> Vec<serde_json::Value> {
        self.inner
            .lock()
            .unwrap()
            .posts
            .iter()
            .filter(|p| p.connection_id == id)
            .map(|p| p.frame.clone())
            .collect()
    }

    /// Requests to `id`, accepted or not.
    pub fn attempts(&self, id: &str) -> u32 {
        self.inner
            .lock()
            .unwrap()
            .attempts
            .get(id)
            .copied()
            .unwrap_or(0)
    }

    /// Waits until `pred(posts)` holds, or panics after `deadline`.
    pub async fn wait_until(&self, deadline: Duration, what: &str, pred: impl Fn(&[Post]) -> bool) {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            if pred(&self.inner.lock().unwrap().posts) {
                return;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                let n = self.inner.lock().unwrap().posts.len();
                panic!("timed out after {deadline:?} waiting for {what} ({n} posts so far)");
            }
        }
    }

    /// Distinct (connection, frame id) pairs of `message` frames accepted so
    /// far: deliveries without redeliveries.
    pub fn distinct(&self) -> usize {
        self.inner.lock().unwrap().distinct.len()
    }

    /// Accepted POSTs so far, redeliveries included.
    pub fn post_count(&self) -> usize {
        self.inner.lock().unwrap().posts.len()
    }

    /// Waits until `n` distinct (connection, `message` frame id) pairs were accepted.
    pub async fn wait_distinct(&self, n: usize, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            let have = self.distinct();
            if have >= n {
                return;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                panic!(
                    "timed out after {deadline:?} waiting for {n} distinct deliveries ({have} so far)"
                );
            }
        }
    }

    /// The ids of the `message` frames each connection received, in arrival order.
    pub fn received(&self) -> HashMap<String, Vec<String>> {
        let mut out: HashMap<String, Vec<String>> = HashMap::new();
        for p in &self.inner.lock().unwrap().posts {
            if p.frame["type"] != "message" {
                continue;
            }
            if let Some(id) = p.frame["id"].as_str() {
                out.entry(p.connection_id.clone())
                    .or_default()
                    .push(id.to_owned());
            }
        }
        out
    }

    /// Stops the server.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

impl Inner {
    /// The fault this POST gets, if any (counted).
    fn fault_for(&mut self, id: &str, body: &[u8]) -> Option<Fault> {
        let take = |m: &mut HashMap<String, u32>| match m.get_mut(id) {
            Some(n) if *n > 0 => {
                *n -= 1;
                true
            }
            _ => false,
        };
        let fault = if let Some((until, faults)) = &self.outage {
            (Instant::now() < *until).then(|| {
                let n: u32 = self.refused.values().sum();
                faults[n as usize % faults.len()]
            })
        } else {
            None
        };
        let fault = fault.or_else(|| {
            if take(&mut self.throttle) {
                Some(Fault::Throttle)
            } else if take(&mut self.fail) {
                Some(Fault::Fail)
            } else if take(&mut self.reset) {
                Some(Fault::Reset)
            } else {
                None
            }
        })?;
        *self.refused.entry(fault).or_default() += 1;
        let frame_id = serde_json::from_slice::<serde_json::Value>(body)
            .ok()
            .and_then(|v| v["id"].as_str().map(str::to_owned))
            .unwrap_or_default();
        *self
            .refused_per_message
            .entry((id.to_owned(), frame_id))
            .or_default() += 1;
        Some(fault)
    }
}

async fn post_to_connection(
    State(s): State<ConnectionsServer>,
    ConnectInfo(switch): ConnectInfo<ResetSwitch>,
    Path((stage, id)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let latency = s.inner.lock().unwrap().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let response = {
        let mut inner = s.inner.lock().unwrap();
        *inner.attempts.entry(id.clone()).or_default() += 1;
        let gone = inner.gone.contains(&id);
        let fault = if gone {
            None
        } else {
            inner.fault_for(&id, &body)
        };
        if gone {
            error(StatusCode::GONE, "GoneException", "connection is gone")
        } else if fault == Some(Fault::Throttle) {
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "slow down",
            )
        } else if fault == Some(Fault::Fail) {
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "boom",
            )
        } else if fault == Some(Fault::Reset) {
            // Whatever is returned here is never written: the connection's
            // next write fails and hyper drops it, with an RST.
            switch.trip();
            StatusCode::OK.into_response()
        } else {
            let signed = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
            let frame: serde_json::Value =
                serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
            if let (Some("message"), Some(frame_id)) =
                (frame["type"].as_str(), frame["id"].as_str())
            {
                inner.distinct.insert((id.clone(), frame_id.to_owned()));
            }
            inner.posts.push(Post {
                stage,
                connection_id: id,
                frame,
                signed,
            });
            StatusCode::OK.into_response()
        }
    };
    s.changed.notify_waiters();
    response
}

async fn get_connection(
    Path((_stage, id)): Path<(String, String)>,
    State(s): State<ConnectionsServer>,
) -> Response {
    if s.inner.lock().unwrap().gone.contains(&id) {
        return error(StatusCode::GONE, "GoneException", "connection is gone");
    }
    axum::Json(serde_json::json!({
        "connectedAt": "2024-11-27T15:00:00Z",
        "identity": { "sourceIp": "127.0.0.1", "userAgent": "test" },
        "lastActiveAt": "2024-11-27T15:00:00Z"
    }))
    .into_response()
}

async fn delete_connection(
    Path((_stage, id)): Path<(String, String)>,
    State(s): State<ConnectionsServer>,
) -> Response {
    s.inner.lock().unwrap().gone.insert(id);
    StatusCode::NO_CONTENT.into_response()
}

/// Resets one accepted TCP connection: once tripped, every read or write on
/// it fails and the socket is closed with SO_LINGER 0, so the client gets an
/// RST instead of an answer.
#[derive(Clone, Debug, Default)]
pub struct ResetSwitch(Arc<AtomicBool>);

impl ResetSwitch {
    fn trip(&self) {
        self.0.store(true, Ordering::SeqCst);
    }

    fn tripped(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }
}

struct ResettableListener(TcpListener);

impl axum::serve::Listener for ResettableListener {
    type Io = ResettableStream;
    type Addr = (SocketAddr, ResetSwitch);

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            if let Ok((tcp, peer)) = self.0.accept().await {
                let switch = ResetSwitch::default();
                let io = ResettableStream {
                    tcp,
                    switch: switch.clone(),
                };
                return (io, (peer, switch));
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok((self.0.local_addr()?, ResetSwitch::default()))
    }
}

impl Connected<IncomingStream<'_, ResettableListener>> for ResetSwitch {
    fn connect_info(stream: IncomingStream<'_, ResettableListener>) -> Self {
        stream.remote_addr().1.clone()
    }
}

struct ResettableStream {
    tcp: TcpStream,
    switch: ResetSwitch,
}

impl ResettableStream {
    fn check(&self) -> io::Result<()> {
        if self.switch.tripped() {
            // Closing now sends an RST rather than a FIN.
            let _ = self.tcp.set_zero_linger();
            return Err(io::Error::new(
                io::ErrorKind::ConnectionReset,
                "reset by the test",
            ));
        }
        Ok(())
    }
}

impl AsyncRead for ResettableStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for ResettableStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.check()?;
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}
