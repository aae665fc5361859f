//! The HTTP side of the listener: hyper serving the gateway's router on every
//! accepted connection, with the limits a slow or idle client must not get
//! around (`[limits]` `header_timeout_secs`, `body_timeout_secs`,
//! `keepalive_timeout_secs`, `max_handshakes`; docs/gateway.md).
//!
//! Without them a client that sends half a request line and waits held its
//! socket forever, and a few hundred such clients used up the process's file
//! descriptors (a slowloris): nobody else could connect, and nothing said so.
//! Each connection now goes through phases, and the socket's reads fail once
//! the phase's deadline passes:
//!
//! - **handshake**: from accept until the first request's headers are read:
//!   `header_timeout`. At most `max_handshakes` connections are in this phase
//!   at once; further clients wait in the kernel's accept queue, where they
//!   cost the process no file descriptor.
//! - **headers** of a later request, from its first byte: `header_timeout`.
//! - **body**: the request body must arrive within `body_timeout` of its
//!   headers (a timed-out body fails the handler's read, see [`TimedBody`]).
//! - **in request**: the handler runs (an integration may take 29 s): no deadline.
//! - **keep-alive**: between a response and the next request's first byte:
//!   `keepalive_timeout`.
//! - **upgraded** (a WebSocket): no deadline here; the gateway's own idle and
//!   duration limits apply.
//!
//! The accept loop also watches the process's file descriptors
//! ([`FdWatch`]): near the limit it logs a warning (at most every 10 s) and
//! counts it, so the condition the probe found is no longer silent. (The
//! descriptor table is grown to the limit before the runtime starts:
//! [`crate::fds::reserve_table`].)
//!
//! Over 500 lines: about 10 are its unit tests; the accept loop, the
//! handshake cap and the descriptor watch share the per-connection deadlines.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{Request, StatusCode};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::config::Limits;
use super::origin::LocalAddr;
use super::tls::TlsListener;
use crate::fds;
use crate::telemetry::GatewayMetrics;

/// Where connections come from: plain TCP, or TLS streams (handshaken by
/// [`TlsListener`], which has its own handshake cap and timeout).
pub(super) enum Source {
    /// `ws://`, `http://`.
    Plain(TcpListener),
    /// `wss://`, `https://`.
    Tls(TlsListener),
}

/// The phase of a connection (see the module docs).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(u8)]
enum Phase {
    Handshake = 0,
    Headers = 1,
    InRequest = 2,
    KeepAlive = 3,
    Upgraded = 4,
}

/// A connection's phase and when it began, shared by the socket wrapper and
/// the service.
struct ConnState {
    phase: AtomicU8,
    since: Mutex<Instant>,
    /// Released when the first request's headers are complete.
    handshake: Mutex<Option<OwnedSemaphorePermit>>,
    /// The reader waiting without a deadline: a new phase may bring one, so
    /// it is woken to look again (else it would wait on the socket alone).
    reader: Mutex<Option<std::task::Waker>>,
}

impl ConnState {
    fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Handshake,
            1 => Phase::Headers,
            2 => Phase::InRequest,
            3 => Phase::KeepAlive,
            _ => Phase::Upgraded,
        }
    }

    fn enter(&self, phase: Phase) {
        *crate::sync::lock(&self.since) = Instant::now();
        self.phase.store(phase as u8, Ordering::Release);
        if phase != Phase::Handshake {
            crate::sync::lock(&self.handshake).take();
        }
        if let Some(w) = crate::sync::lock(&self.reader).take() {
            w.wake();
        }
    }
}

/// The socket of one connection: reads fail with `TimedOut` once the
/// current phase's deadline has passed.
struct Deadlined<IO> {
    io: IO,
    state: Arc<ConnState>,
    limits: Limits,
    metrics: GatewayMetrics,
    sleep: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl<IO> Deadlined<IO> {
    fn deadline(&self) -> Option<(Instant, &'static str)> {
        let since = *crate::sync::lock(&self.state.since);
        match self.state.phase() {
            Phase::Handshake | Phase::Headers => {
                Some((since + self.limits.header_timeout, "header"))
            }
            Phase::KeepAlive => Some((since + self.limits.keepalive_timeout, "keepalive")),
            Phase::InRequest | Phase::Upgraded => None,
        }
    }
}

impl<IO: AsyncRead + Unpin> AsyncRead for Deadlined<IO> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                // The next request's first byte ends the keep-alive wait.
                if buf.filled().len() > before && this.state.phase() == Phase::KeepAlive {
                    this.state.enter(Phase::Headers);
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                // Registered before the phase is read, so a phase change
                // after this point wakes this read.
                *crate::sync::lock(&this.state.reader) = Some(cx.waker().clone());
                let Some((deadline, phase)) = this.deadline() else {
                    this.sleep = None;
                    return Poll::Pending;
                };
                let deadline = tokio::time::Instant::from_std(deadline);
                let sleep = this
                    .sleep
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
                if sleep.deadline() != deadline {
                    sleep.as_mut().reset(deadline);
                }
                match sleep.as_mut().poll(cx) {
                    Poll::Pending => Poll::Pending,
                    Poll::Ready(()) => {
                        this.metrics.http_timeouts.with_label_values(&[phase]).inc();
                        tracing::debug!(phase, "HTTP read timed out: connection closed");
                        Poll::Ready(Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            format!("no complete request {phase} in time"),
                        )))
                    }
                }
            }
        }
    }
}

impl<IO: AsyncWrite + Unpin> AsyncWrite for Deadlined<IO> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

/// The error of a request body that did not arrive within `body_timeout`.
#[derive(Debug, thiserror::Error)]
#[error("the request body did not arrive within {0:?}")]
pub struct BodyTimeout(pub Duration);

/// A request body that fails with [`BodyTimeout`] once its deadline passes.
pub(super) struct TimedBody {
    inner: Incoming,
    limit: Duration,
    sleep: Pin<Box<tokio::time::Sleep>>,
    timeouts: prometheus::IntCounter,
}

impl TimedBody {
    fn new(inner: Incoming, limit: Duration, timeouts: prometheus::IntCounter) -> Self {
        TimedBody {
            inner,
            limit,
            sleep: Box::pin(tokio::time::sleep(limit)),
            timeouts,
        }
    }
}

impl Body for TimedBody {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        ready!(this.sleep.as_mut().poll(cx));
        this.timeouts.inc();
        Poll::Ready(Some(Err(BodyTimeout(this.limit).into())))
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// Whether `err` (from reading a request body) is a [`BodyTimeout`].
pub(super) fn is_body_timeout(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut e = Some(err);
    while let Some(cur) = e {
        if cur.is::<BodyTimeout>() {
            return true;
        }
        e = cur.source();
    }
    false
}

/// Serves `router` on `source` until `stop` is cancelled, then shuts every
/// HTTP connection down gracefully and waits for them (WebSockets are
/// detached by then and closed by the gateway's drain).
pub(super) async fn serve(
    source: Source,
    router: Router,
    limits: Limits,
    metrics: GatewayMetrics,
    stop: CancellationToken,
) {
    let slots = Arc::new(Semaphore::new(limits.max_handshakes));
    let conns = TaskTracker::new();
    let mut fds = FdWatch::new(metrics.clone());
    let mut source = source;
    loop {
        // The permit comes before accept: while every slot is taken, new
        // clients stay in the kernel's accept queue.
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => p.expect("the semaphore is never closed"),
            _ = stop.cancelled() => break,
        };
        let accepted = tokio::select! {
            a = accept(&mut source) => a,
            _ = stop.cancelled() => break,
        };
        fds.check();
        let (io, peer, local) = match accepted {
            Ok(a) => a,
            Err(e) => {
                if is_connection_error(&e) {
                    continue;
                }
                // Out of file descriptors, most likely: say so, then wait a
                // little for some to close (as axum does), without spinning.
                fds.accept_failed(&e);
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                    _ = stop.cancelled() => break,
                }
                continue;
            }
        };
        let state = Arc::new(ConnState {
            phase: AtomicU8::new(Phase::Handshake as u8),
            since: Mutex::new(Instant::now()),
            handshake: Mutex::new(Some(permit)),
            reader: Mutex::new(None),
        });
        let io = Deadlined {
            io,
            state: state.clone(),
            limits,
            metrics: metrics.clone(),
            sleep: None,
        };
        conns.spawn(connection(
            io,
            (peer, local),
            state,
            router.clone(),
            limits.body_timeout,
            metrics.clone(),
            stop.clone(),
        ));
    }
    conns.close();
    conns.wait().await;
}

/// One connection: hyper's HTTP/1.1 with upgrades, the service marking phases.
async fn connection(
    io: Deadlined<Box<dyn Io>>,
    (peer, local): (SocketAddr, Option<SocketAddr>),
    state: Arc<ConnState>,
    router: Router,
    body_timeout: Duration,
    metrics: GatewayMetrics,
    stop: CancellationToken,
) {
    let body_timeouts = metrics.http_timeouts.with_label_values(&["body"]);
    let tower = TowerToHyperService::new(router);
    let svc_state = state.clone();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        svc_state.enter(Phase::InRequest);
        let mut req = req.map(|b| TimedBody::new(b, body_timeout, body_timeouts.clone()));
        req.extensions_mut().insert(ConnectInfo(peer));
        if let Some(local) = local {
            req.extensions_mut().insert(LocalAddr(local));
        }
        let call = hyper::service::Service::call(&tower, req);
        let state = svc_state.clone();
        async move {
            let response = call.await?;
            if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                state.enter(Phase::Upgraded);
            } else {
                state.enter(Phase::KeepAlive);
            }
            Ok::<_, Infallible>(response)
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        // The socket wrapper enforces the header deadline, phase by phase;
        // hyper's own timer would also cut kept-alive connections at it.
        .header_read_timeout(None)
        // Pipelined requests (dev's worker sends its posts so) are
        // answered in one write, not one per request.
        .pipeline_flush(true)
        .serve_connection(TokioIo::new(io), service)
        .with_upgrades();
    let mut conn = std::pin::pin!(conn);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::trace!(%peer, error = %e, "HTTP connection ended");
            }
            return;
        }
        _ = stop.cancelled() => {}
    }
    conn.as_mut().graceful_shutdown();
    let _ = conn.await;
    drop(state);
}

/// A connection's byte stream, plain or TLS.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// An accepted connection: its stream, the peer and the local address.
type Accepted = (Box<dyn Io>, SocketAddr, Option<SocketAddr>);

async fn accept(source: &mut Source) -> io::Result<Accepted> {
    match source {
        Source::Plain(l) => {
            let (tcp, peer) = l.accept().await?;
            // As axum::serve: small responses and frames go out at once.
            let _ = tcp.set_nodelay(true);
            let local = tcp.local_addr().ok();
            Ok((Box::new(tcp), peer, local))
        }
        Source::Tls(l) => {
            let (tls, peer) = axum::serve::Listener::accept(l).await;
            let local = tls.get_ref().0.local_addr().ok();
            Ok((Box::new(tls), peer, local))
        }
    }
}

/// Errors of one incoming connection (skip it), not of the listener.
fn is_connection_error(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::ConnectionRefused
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::ConnectionReset
    )
}

/// Share of the descriptor limit in use from which the gateway warns.
const FD_WARN_SHARE: f64 = 0.8;
/// At most one file-descriptor warning this often.
const FD_WARN_EVERY: Duration = Duration::from_secs(10);
/// The descriptor count is read at most this often (it lists /proc/self/fd).
const FD_CHECK_EVERY: Duration = Duration::from_millis(500);

/// The process's open file descriptors against its limit (Linux: /proc; on
/// other systems the watch is off).
struct FdWatch {
    metrics: GatewayMetrics,
    limit: Option<u64>,
    last_check: Option<Instant>,
    last_warn: Option<Instant>,
}

impl FdWatch {
    fn new(metrics: GatewayMetrics) -> Self {
        let limit = fds::soft_limit();
        if let Some(l) = limit {
            metrics.fd_limit.set(i64::try_from(l).unwrap_or(i64::MAX));
        }
        FdWatch {
            metrics,
            limit,
            last_check: None,
            last_warn: None,
        }
    }

    /// After an accept: counts the open descriptors (rate-limited) and warns
    /// when they near the limit.
    fn check(&mut self) {
        let Some(limit) = self.limit else { return };
        if self
            .last_check
            .is_some_and(|t| t.elapsed() < FD_CHECK_EVERY)
        {
            return;
        }
        self.last_check = Some(Instant::now());
        let Some(open) = fds::open() else { return };
        self.metrics
            .open_fds
            .set(i64::try_from(open).unwrap_or(i64::MAX));
        if open as f64 >= limit as f64 * FD_WARN_SHARE {
            self.pressure(open, limit, None);
        }
    }

    /// An accept failed for a reason other than the client's.
    fn accept_failed(&mut self, e: &io::Error) {
        let open = fds::open();
        if let Some(o) = open {
            self.metrics
                .open_fds
                .set(i64::try_from(o).unwrap_or(i64::MAX));
        }
        self.pressure(open.unwrap_or(0), self.limit.unwrap_or(0), Some(e));
    }

    fn pressure(&mut self, open: u64, limit: u64, error: Option<&io::Error>) {
        self.metrics.fd_pressure.inc();
        if self.last_warn.is_some_and(|t| t.elapsed() < FD_WARN_EVERY) {
            return;
        }
        self.last_warn = Some(Instant::now());
        match error {
            Some(e) => tracing::warn!(
                open_fds = open,
                fd_limit = limit,
                error = %e,
                "cannot accept connections: near or at the file-descriptor limit (raise `ulimit -n`, or lower limits.max_handshakes)"
            ),
            None => tracing::warn!(
                open_fds = open,
                fd_limit = limit,
                "near the file-descriptor limit: new connections will soon fail (raise `ulimit -n`, or lower limits.max_handshakes)"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_timed_out_body_is_recognised_through_wrapping() {
        let inner: axum::BoxError = BodyTimeout(Duration::from_secs(1)).into();
        let wrapped = axum::Error::new(inner);
        assert!(is_body_timeout(&wrapped));
        assert!(!is_body_timeout(&io::Error::other("x")));
    }
}
