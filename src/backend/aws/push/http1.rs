//! The lean client's transport: keep-alive HTTP/1.1 connections to one
//! @connections endpoint, for one request shape (a `POST` with a
//! `Content-Length` body), driven by the task that sends.
//!
//! A general client (hyper-util's pooled one, used here before) hands each
//! request to a separate connection task through a channel and wakes the
//! caller back through another: two task switches and a few allocations per
//! request, about a third of the client's CPU in the fan-out profile. Here the
//! sending task checks a connection out of the endpoint's idle list, writes
//! the request head and body in one `write` (bodies over
//! [`COPY_BODY_UNDER`]: two), reads and parses the answer itself (`httparse`,
//! the parser hyper uses), and puts the connection back. Nothing is
//! allocated per request once the connection's buffers have grown.
//!
//! Answers are read whole: `Content-Length` or chunked bodies (kept only for
//! error answers, up to [`MAX_BODY`]), interim `1xx` answers skipped, bodies
//! delimited by the end of the connection read to it. A connection that
//! answered `Connection: close`, spoke HTTP/1.0, sent more than one answer or
//! failed in any way is dropped, never reused. An idle connection the server
//! has closed is noticed when it is checked out (polled once without
//! waiting) and dropped; if the server closes it just then and the request
//! cannot be written, it goes out on a new connection, as hyper's pool retries
//! a request it could not send. Once a request is written, a failure is the
//! caller's to retry (the fan-out's per-recipient retries): the server may
//! have acted on it. Idle connections are dropped after [`IDLE_TIMEOUT`].

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::{Buf, Bytes, BytesMut};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

/// Idle connections older than this are not reused (hyper's pool default).
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// Bodies up to this size are copied behind the head: one write per request.
const COPY_BODY_UNDER: usize = 16 * 1024;
/// The most of an answer's body kept (error answers: their JSON message);
/// longer bodies are read and dropped.
const MAX_BODY: usize = 64 * 1024;
/// The largest answer head read.
const MAX_HEAD: usize = 64 * 1024;
/// Answer headers parsed.
const MAX_HEADERS: usize = 64;
/// Read buffer growth step.
const READ_CHUNK: usize = 4 * 1024;

/// Where one endpoint's connections go.
pub(super) struct Origin {
    host: String,
    port: u16,
    /// `Some` for `https://`.
    tls: Option<(TlsConnector, ServerName<'static>)>,
    connect_timeout: Duration,
    idle: Mutex<Vec<Conn>>,
}

/// What came back, as far as the lean client needs it.
pub(super) struct Answer {
    pub status: u16,
    /// `x-amzn-ErrorType` (error answers only).
    pub error_type: Option<String>,
    /// `Date` (error answers only).
    pub date: Option<String>,
    /// The body of an error answer, up to [`MAX_BODY`]; empty for 2xx.
    pub body: Bytes,
}

/// Why an exchange failed.
#[derive(Debug)]
pub(super) enum SendError {
    Connect(std::io::Error),
    ConnectTimeout,
    Io(std::io::Error),
    /// The answer is not HTTP/1.x as we read it.
    Protocol(String),
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connecting: {e}"),
            SendError::ConnectTimeout => f.write_str("connecting: timed out"),
            SendError::Io(e) => write!(f, "{e}"),
            SendError::Protocol(m) => write!(f, "bad answer: {m}"),
        }
    }
}

enum Io {
    Plain(TcpStream),
    Tls(Box<TlsStream<TcpStream>>),
}

struct Conn {
    io: Io,
    read: BytesMut,
    write: Vec<u8>,
    idle_since: Instant,
}

impl Origin {
    /// `host` as in the URL (IPv6 in brackets), `tls` for `https://`.
    pub(super) fn new(
        host: &str,
        port: u16,
        tls: Option<Arc<rustls::ClientConfig>>,
        connect_timeout: Duration,
    ) -> Result<Self, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let tls = match tls {
            None => None,
            Some(config) => {
                let name = ServerName::try_from(bare.to_owned())
                    .map_err(|e| format!("`{bare}` is not a TLS server name: {e}"))?;
                Some((TlsConnector::from(config), name))
            }
        };
        Ok(Origin {
            host: bare.to_owned(),
            port,
            tls,
            connect_timeout,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Sends the request whose head `head` writes (into an empty buffer)
    /// and whose body is `body`, and reads the answer.
    pub(super) async fn send(
        &self,
        head: impl Fn(&mut Vec<u8>),
        body: &Bytes,
    ) -> Result<Answer, SendError> {
        if let Some(mut conn) = self.checkout() {
            match conn.exchange(&head, body).await {
                Ok((answer, reuse)) => {
                    self.checkin(conn, reuse);
                    return Ok(answer);
                }
                // Closed by the server while idle: on a new connection.
                Err(Exchange::Stale(_)) => {}
                Err(Exchange::Failed(e)) => return Err(e),
            }
        }
        let mut conn = self.connect().await?;
        match conn.exchange(&head, body).await {
            Ok((answer, reuse)) => {
                self.checkin(conn, reuse);
                Ok(answer)
            }
            Err(Exchange::Stale(e) | Exchange::Failed(e)) => Err(e),
        }
    }

    /// Sends `n` requests on one connection, all written at once (HTTP/1.1
    /// pipelining, RFC 9112 §9.3), and reads their answers in order. `head`
    /// writes request `i`'s head; every request carries `body`, which is
    /// copied behind each head. The answers come back in the order of the
    /// requests; once one fails (the server closed the connection, answered
    /// `Connection: close` or sent something we cannot read) the ones after
    /// it fail too: the server may not have seen them, and may have acted on
    /// them, so they are the caller's to retry, as with [`Origin::send`].
    pub(super) async fn send_many(
        &self,
        n: usize,
        head: impl Fn(usize, &mut Vec<u8>),
        body: &Bytes,
    ) -> Vec<Result<Answer, SendError>> {
        if let Some(mut conn) = self.checkout() {
            match conn.exchange_many(n, &head, body).await {
                Ok((answers, reuse)) => {
                    self.checkin(conn, reuse);
                    return answers;
                }
                // Closed by the server while idle: on a new connection.
                Err(_stale) => {}
            }
        }
        let mut conn = match self.connect().await {
            Ok(conn) => conn,
            Err(e) => return failed_all(n, &e),
        };
        match conn.exchange_many(n, &head, body).await {
            Ok((answers, reuse)) => {
                self.checkin(conn, reuse);
                answers
            }
            Err(e) => failed_all(n, &e),
        }
    }

    /// The newest idle connection still usable; the look at the socket and
    /// the close of a dead one happen outside the lock.
    fn checkout(&self) -> Option<Conn> {
        loop {
            let mut conn = crate::sync::lock(&self.idle).pop()?;
            if conn.idle_since.elapsed() < IDLE_TIMEOUT && conn.still_open() {
                return Some(conn);
            }
        }
    }

    fn checkin(&self, mut conn: Conn, reuse: bool) {
        if reuse {
            let now = Instant::now();
            conn.idle_since = now;
            let mut idle = crate::sync::lock(&self.idle);
            // The list is oldest first; expired ones are dropped when the
            // oldest has expired (one clock read per request, not one per
            // idle connection).
            if idle
                .first()
                .is_some_and(|c| now.duration_since(c.idle_since) >= IDLE_TIMEOUT)
            {
                idle.retain(|c| now.duration_since(c.idle_since) < IDLE_TIMEOUT);
            }
            idle.push(conn);
        }
    }

    async fn connect(&self) -> Result<Conn, SendError> {
        let tcp = tokio::time::timeout(
            self.connect_timeout,
            TcpStream::connect((self.host.as_str(), self.port)),
        )
        .await
        .map_err(|_| SendError::ConnectTimeout)?
        .map_err(SendError::Connect)?;
        tcp.set_nodelay(true).map_err(SendError::Connect)?;
        let io = match &self.tls {
            None => Io::Plain(tcp),
            Some((connector, name)) => {
                let tls = tokio::time::timeout(
                    self.connect_timeout,
                    connector.connect(name.clone(), tcp),
                )
                .await
                .map_err(|_| SendError::ConnectTimeout)?
                .map_err(SendError::Connect)?;
                Io::Tls(Box::new(tls))
            }
        };
        Ok(Conn {
            io,
            read: BytesMut::new(),
            write: Vec::new(),
            idle_since: Instant::now(),
        })
    }
}

/// Writes `head` then `body` and flushes (a no-op on a plain socket; TLS
/// sends what it buffered).
async fn write_parts<S: AsyncWrite + Unpin>(
    s: &mut S,
    head: &[u8],
    body: &[u8],
) -> std::io::Result<()> {
    s.write_all(head).await?;
    if !body.is_empty() {
        s.write_all(body).await?;
    }
    s.flush().await
}

/// A failed exchange: `Stale` if the request could not be written (on a
/// reused connection: closed by the server while idle, so the server has
/// not seen it); `Failed` once it was written.
enum Exchange {
    Stale(SendError),
    Failed(SendError),
}

/// How the answer's body ends.
enum Length {
    None,
    Fixed(usize),
    Chunked,
    UntilClose,
}

impl Conn {
    /// Whether an idle connection is still usable: polled once without
    /// waiting, it has nothing to give. An end of stream or an error (the
    /// server closed it while it was idle; over TLS also its `close_notify`)
    /// or bytes nobody asked for mean it is not. No syscall when tokio knows
    /// the socket has nothing to read; over TLS a session ticket waiting is
    /// taken in by rustls and the poll still finds nothing.
    fn still_open(&mut self) -> bool {
        use tokio::io::AsyncRead;
        let mut byte = [0u8; 1];
        let mut buf = tokio::io::ReadBuf::new(&mut byte);
        let mut cx = std::task::Context::from_waker(std::task::Waker::noop());
        let polled = match &mut self.io {
            Io::Plain(s) => std::pin::Pin::new(s).poll_read(&mut cx, &mut buf),
            Io::Tls(s) => std::pin::Pin::new(s.as_mut()).poll_read(&mut cx, &mut buf),
        };
        polled.is_pending()
    }

    async fn read_more(&mut self) -> std::io::Result<usize> {
        self.read.reserve(READ_CHUNK);
        match &mut self.io {
            Io::Plain(s) => s.read_buf(&mut self.read).await,
            Io::Tls(s) => s.read_buf(&mut self.read).await,
        }
    }

    async fn write_all(&mut self, body: &[u8]) -> std::io::Result<()> {
        match &mut self.io {
            Io::Plain(s) => write_parts(s, &self.write, body).await,
            Io::Tls(s) => write_parts(s.as_mut(), &self.write, body).await,
        }
    }

    /// `n` requests written at once and their answers; `Err` only if they
    /// could not be written (nothing was sent).
    async fn exchange_many(
        &mut self,
        n: usize,
        head: &impl Fn(usize, &mut Vec<u8>),
        body: &Bytes,
    ) -> Result<(Vec<Result<Answer, SendError>>, bool), SendError> {
        self.write.clear();
        for i in 0..n {
            head(i, &mut self.write);
            self.write.extend_from_slice(body);
        }
        self.write_all(&[]).await.map_err(SendError::Io)?;
        self.read.clear();
        let mut answers = Vec::with_capacity(n);
        let mut reuse = true;
        for _ in 0..n {
            if !reuse {
                answers.push(Err(SendError::Io(std::io::Error::new(
                    std::io::ErrorKind::ConnectionAborted,
                    "the connection ended before this pipelined request was answered",
                ))));
                continue;
            }
            match self.answer().await {
                Ok((answer, keep)) => {
                    reuse = keep;
                    answers.push(Ok(answer));
                }
                Err(e) => {
                    reuse = false;
                    answers.push(Err(e));
                }
            }
        }
        // Bytes past the last answer: not ours to interpret; do not reuse.
        Ok((answers, reuse && self.read.is_empty()))
    }

    /// One request and its answer; whether the connection can be reused.
    async fn exchange(
        &mut self,
        head: &impl Fn(&mut Vec<u8>),
        body: &Bytes,
    ) -> Result<(Answer, bool), Exchange> {
        self.write.clear();
        head(&mut self.write);
        let rest: &[u8] = if body.len() < COPY_BODY_UNDER {
            self.write.extend_from_slice(body);
            &[]
        } else {
            body
        };
        if let Err(e) = self.write_all(rest).await {
            return Err(Exchange::Stale(SendError::Io(e)));
        }
        self.read.clear();
        match self.read_more().await {
            Ok(0) => {
                return Err(Exchange::Failed(SendError::Io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before an answer",
                ))));
            }
            Ok(_) => {}
            Err(e) => return Err(Exchange::Failed(SendError::Io(e))),
        }
        let (answer, reuse) = self.answer().await.map_err(Exchange::Failed)?;
        // Bytes past the answer: not ours to interpret; do not reuse.
        Ok((answer, reuse && self.read.is_empty()))
    }

    /// Reads the answer whose first bytes are in the buffer (or, when it is
    /// empty, on the connection); whether the connection can be reused after
    /// it. What follows the answer stays in the buffer.
    async fn answer(&mut self) -> Result<(Answer, bool), SendError> {
        loop {
            let (status, head_len, length, reuse, error_type, date) = loop {
                let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
                let mut resp = httparse::Response::new(&mut headers);
                match resp.parse(&self.read) {
                    Ok(httparse::Status::Complete(n)) => {
                        let status = resp.code.unwrap_or(0);
                        let mut length = None;
                        let mut chunked = false;
                        let mut reuse = resp.version == Some(1);
                        let mut error_type = None;
                        let mut date = None;
                        let failed = !(200..300).contains(&status);
                        for h in resp.headers.iter() {
                            let value = std::str::from_utf8(h.value).unwrap_or_default().trim();
                            if h.name.eq_ignore_ascii_case("content-length") {
                                length = Some(value.parse::<usize>().map_err(|_| {
                                    SendError::Protocol(format!("content-length `{value}`"))
                                })?);
                            } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                                chunked = value
                                    .rsplit(',')
                                    .next()
                                    .is_some_and(|c| c.trim().eq_ignore_ascii_case("chunked"));
                            } else if h.name.eq_ignore_ascii_case("connection") {
                                if value
                                    .split(',')
                                    .any(|t| t.trim().eq_ignore_ascii_case("close"))
                                {
                                    reuse = false;
                                }
                            } else if failed && h.name.eq_ignore_ascii_case("x-amzn-errortype") {
                                error_type = Some(value.to_owned());
                            } else if failed && h.name.eq_ignore_ascii_case("date") {
                                date = Some(value.to_owned());
                            }
                        }
                        let length =
                            if status == 204 || status == 304 || (100..200).contains(&status) {
                                Length::None
                            } else if chunked {
                                Length::Chunked
                            } else if let Some(n) = length {
                                Length::Fixed(n)
                            } else {
                                reuse = false;
                                Length::UntilClose
                            };
                        break (status, n, length, reuse, error_type, date);
                    }
                    Ok(httparse::Status::Partial) => {}
                    Err(e) => return Err(SendError::Protocol(e.to_string())),
                }
                if self.read.len() > MAX_HEAD {
                    return Err(SendError::Protocol("answer head too large".into()));
                }
                self.fill().await?;
            };
            self.read.advance(head_len);
            if (100..200).contains(&status) {
                continue;
            }
            let keep = !(200..300).contains(&status);
            let mut body = BytesMut::new();
            match length {
                Length::None => {}
                Length::Fixed(n) => self.body_bytes(n, keep.then_some(&mut body)).await?,
                Length::Chunked => loop {
                    match httparse::parse_chunk_size(&self.read) {
                        Ok(httparse::Status::Complete((used, size))) => {
                            self.read.advance(used);
                            let size = usize::try_from(size)
                                .map_err(|_| SendError::Protocol("chunk too large".into()))?;
                            if size == 0 {
                                self.trailers().await?;
                                break;
                            }
                            self.body_bytes(size, keep.then_some(&mut body)).await?;
                            while self.read.len() < 2 {
                                self.fill().await?;
                            }
                            if &self.read[..2] != b"\r\n" {
                                return Err(SendError::Protocol("chunk without CRLF".into()));
                            }
                            self.read.advance(2);
                        }
                        Ok(httparse::Status::Partial) => self.fill().await?,
                        Err(_) => return Err(SendError::Protocol("bad chunk size".into())),
                    }
                },
                Length::UntilClose => loop {
                    let take = self.read.len();
                    keep_some(&mut body, &self.read[..take], keep);
                    self.read.clear();
                    if self.read_more().await.map_err(SendError::Io)? == 0 {
                        break;
                    }
                },
            }
            return Ok((
                Answer {
                    status,
                    error_type,
                    date,
                    body: body.freeze(),
                },
                reuse,
            ));
        }
    }

    async fn fill(&mut self) -> Result<(), SendError> {
        match self.read_more().await {
            Ok(0) => Err(SendError::Io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed inside an answer",
            ))),
            Ok(_) => Ok(()),
            Err(e) => Err(SendError::Io(e)),
        }
    }

    /// Consumes `n` body bytes, keeping them in `into` (up to [`MAX_BODY`]).
    async fn body_bytes(
        &mut self,
        mut n: usize,
        mut into: Option<&mut BytesMut>,
    ) -> Result<(), SendError> {
        loop {
            let take = n.min(self.read.len());
            if let Some(b) = into.as_deref_mut() {
                keep_some(b, &self.read[..take], true);
            }
            self.read.advance(take);
            n -= take;
            if n == 0 {
                return Ok(());
            }
            self.fill().await?;
        }
    }

    /// The trailer section after the last chunk, up to its empty line.
    async fn trailers(&mut self) -> Result<(), SendError> {
        loop {
            if let Some(end) = self.read.windows(2).position(|w| w == b"\r\n") {
                self.read.advance(end + 2);
                if end == 0 {
                    return Ok(());
                }
                continue;
            }
            if self.read.len() > MAX_HEAD {
                return Err(SendError::Protocol("trailers too large".into()));
            }
            self.fill().await?;
        }
    }
}

/// The same failure for each of `n` requests.
fn failed_all(n: usize, e: &SendError) -> Vec<Result<Answer, SendError>> {
    (0..n)
        .map(|_| {
            Err(match e {
                SendError::Connect(io) => {
                    SendError::Connect(std::io::Error::new(io.kind(), io.to_string()))
                }
                SendError::ConnectTimeout => SendError::ConnectTimeout,
                SendError::Io(io) => SendError::Io(std::io::Error::new(io.kind(), io.to_string())),
                SendError::Protocol(m) => SendError::Protocol(m.clone()),
            })
        })
        .collect()
}

fn keep_some(body: &mut BytesMut, bytes: &[u8], keep: bool) {
    if keep && body.len() < MAX_BODY {
        let room = MAX_BODY - body.len();
        body.extend_from_slice(&bytes[..bytes.len().min(room)]);
    }
}
