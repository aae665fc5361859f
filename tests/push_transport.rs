//! The lean @connections client's own HTTP/1.1 transport against scripted
//! 127.0.0.1 servers (real sockets; each answer written byte for byte):
//! keep-alive reuse, a connection the server closed while it was idle
//! (dropped unused; one the server reset after reading the request is an
//! error for the fan-out to retry: tests/faults_connections.rs),
//! `Connection: close`, chunked and close-delimited error bodies, interim
//! `100 Continue`, bodies larger than one write, garbage answers,
//! `https://` with rustls, and pipelined posts (`post_frame_many`: all
//! written before the first answer, answers read in order, a pipeline cut
//! short).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use aws_config::{BehaviorVersion, Region};
use aws_credential_types::Credentials;
use bytes::Bytes;
use switchboard::backend::aws::LeanPush;
use switchboard::backend::{ErrorKind, Frame, Push};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// What the server does with request `n` (0-based, over all connections):
/// the bytes it answers, and whether it closes the connection after them.
type Script = Arc<dyn Fn(usize, &Request) -> (Vec<u8>, bool) + Send + Sync>;

#[derive(Debug, Clone)]
struct Request {
    head: String,
    body: Vec<u8>,
}

struct Server {
    url: String,
    connections: Arc<AtomicUsize>,
    /// Connections the server has closed.
    closed: Arc<AtomicUsize>,
    /// Each close (a script's `true`) waits for a permit: the test decides
    /// when the server closes ([`Server::close_one`]).
    closer: Arc<tokio::sync::Semaphore>,
    requests: Arc<std::sync::Mutex<Vec<Request>>>,
}

fn ok() -> (Vec<u8>, bool) {
    (
        b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n".to_vec(),
        false,
    )
}

/// Reads more of the connection into `buf`; `None` at its end.
async fn more<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<()> {
    (s.read_buf(buf).await.ok()? > 0).then_some(())
}

/// Reads one request (head and `content-length` body); `None` at the end
/// of the connection.
async fn read_request<S: AsyncRead + Unpin>(s: &mut S, buf: &mut Vec<u8>) -> Option<Request> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8(buf[..end].to_vec()).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .map_or(0, |v| v.parse().unwrap());
            while buf.len() < end + 4 + len {
                more(s, buf).await?;
            }
            let body = buf[end + 4..end + 4 + len].to_vec();
            buf.drain(..end + 4 + len);
            return Some(Request { head, body });
        }
        more(s, buf).await?;
    }
}

async fn serve_connection<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    script: Script,
    count: Arc<AtomicUsize>,
    requests: Arc<std::sync::Mutex<Vec<Request>>>,
    closed: Arc<AtomicUsize>,
    closer: Arc<tokio::sync::Semaphore>,
    batch: usize,
) {
    let mut buf = Vec::new();
    loop {
        // `batch` requests are read before the first is answered: a client
        // that waits for an answer before it sends the next request would
        // wait forever.
        let mut got = Vec::new();
        while got.len() < batch {
            match read_request(&mut s, &mut buf).await {
                Some(req) => got.push(req),
                None => break,
            }
        }
        if got.is_empty() {
            return;
        }
        let mut answers = Vec::new();
        let mut close = false;
        for req in got {
            let n = count.fetch_add(1, Ordering::SeqCst);
            let (answer, closes) = script(n, &req);
            requests.lock().unwrap().push(req);
            answers.extend_from_slice(&answer);
            if closes {
                close = true;
                break;
            }
        }
        if s.write_all(&answers).await.is_err() || s.flush().await.is_err() {
            return;
        }
        if close {
            if let Ok(p) = closer.acquire().await {
                p.forget();
            }
            let _ = s.shutdown().await;
            closed.fetch_add(1, Ordering::SeqCst);
            return;
        }
    }
}

impl Server {
    async fn start(script: Script, tls: Option<tokio_rustls::TlsAcceptor>) -> Server {
        Server::start_batched(script, tls, 1).await
    }

    /// A server that reads `batch` requests on a connection before it
    /// answers the first of them.
    async fn start_batched(
        script: Script,
        tls: Option<tokio_rustls::TlsAcceptor>,
        batch: usize,
    ) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let url = match tls {
            Some(_) => format!("https://localhost:{port}/dev"),
            None => format!("http://127.0.0.1:{port}/dev"),
        };
        let connections = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(std::sync::Mutex::new(Vec::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let closed = Arc::new(AtomicUsize::new(0));
        // Closes at once unless the test holds them (`hold_closes`).
        let closer = Arc::new(tokio::sync::Semaphore::new(
            tokio::sync::Semaphore::MAX_PERMITS,
        ));
        let (c, r, d, k) = (
            connections.clone(),
            requests.clone(),
            closed.clone(),
            closer.clone(),
        );
        tokio::spawn(async move {
            while let Ok((s, _)) = listener.accept().await {
                c.fetch_add(1, Ordering::SeqCst);
                let (script, count, r, d, k) = (
                    script.clone(),
                    count.clone(),
                    r.clone(),
                    d.clone(),
                    k.clone(),
                );
                let tls = tls.clone();
                tokio::spawn(async move {
                    match tls {
                        Some(acceptor) => {
                            if let Ok(s) = acceptor.accept(s).await {
                                serve_connection(s, script, count, r, d, k, batch).await;
                            }
                        }
                        None => serve_connection(s, script, count, r, d, k, batch).await,
                    }
                });
            }
        });
        Server {
            url,
            connections,
            closed,
            closer,
            requests,
        }
    }

    /// From now on the server closes a connection only when told to
    /// ([`Server::close_one`]).
    fn hold_closes(&self) {
        self.closer
            .forget_permits(tokio::sync::Semaphore::MAX_PERMITS);
    }

    /// Lets one held close go ahead and waits (up to 10 s) until the server
    /// has closed `n` connections in all.
    async fn close_one(&self, n: usize) {
        self.closer.add_permits(1);
        self.closed(n).await;
    }

    /// Waits (up to 10 s) until the server has closed `n` connections.
    async fn closed(&self, n: usize) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while self.closed.load(Ordering::SeqCst) < n {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the server closed {} of {n} connections",
                self.closed.load(Ordering::SeqCst)
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}

async fn client() -> LeanPush {
    let sdk = aws_config::defaults(BehaviorVersion::latest())
        .region(Region::new("eu-west-1"))
        .credentials_provider(Credentials::new("AKIDEXAMPLE", "secret", None, None, "t"))
        .load()
        .await;
    LeanPush::new(&sdk, Duration::from_secs(10))
}

#[tokio::test]
async fn connections_are_kept_alive_and_reused() {
    let server = Server::start(Arc::new(|_, _| ok()), None).await;
    let push = client().await;
    for i in 0..20 {
        push.post(&server.url, &format!("c{i}"), Bytes::from_static(b"hi"))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 1, "one keep-alive connection");
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests.len(), 20);
    assert!(
        requests[7]
            .head
            .starts_with("POST /dev/@connections/c7 HTTP/1.1\r\n"),
        "{}",
        requests[7].head
    );
    assert_eq!(requests[7].body, b"hi");
}

#[tokio::test]
async fn a_connection_closed_while_idle_is_replaced_without_an_error() {
    // Answers each request, then closes without saying so: the next request
    // finds the connection gone and goes out on a new one.
    let server = Server::start(Arc::new(|_, _| (ok().0, true)), None).await;
    server.hold_closes();
    let push = client().await;
    for i in 0..5 {
        push.post(&server.url, &format!("c{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap_or_else(|e| panic!("post {i}: {e}"));
        server.close_one(i + 1).await;
    }
    assert_eq!(server.requests.lock().unwrap().len(), 5, "each sent once");
    assert_eq!(server.connections(), 5);
}

#[tokio::test]
async fn connection_close_answers_are_not_reused() {
    let server = Server::start(
        Arc::new(|_, _| {
            (
                b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n".to_vec(),
                false,
            )
        }),
        None,
    )
    .await;
    let push = client().await;
    for i in 0..3 {
        push.post(&server.url, &format!("c{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 3);
}

#[tokio::test]
async fn chunked_and_close_delimited_error_bodies_are_read() {
    let server = Server::start(
        Arc::new(|n, _| match n {
            // 410 with its JSON split over chunks, a chunk extension and a trailer.
            0 => (
                b"HTTP/1.1 410 Gone\r\nx-amzn-ErrorType: GoneException\r\ntransfer-encoding: chunked\r\n\r\n\
                  7;ext=1\r\n{\"messa\r\n10\r\nge\":\"went away\"}\r\n0\r\nx-trailer: 1\r\n\r\n"
                    .to_vec(),
                false,
            ),
            // The same connection, reused after the chunked answer.
            1 => ok(),
            // An HTTP/1.0 answer delimited by the end of the connection.
            _ => (
                b"HTTP/1.0 429 Too Many Requests\r\n\r\n{\"__type\":\"LimitExceededException\",\"message\":\"slow down\"}"
                    .to_vec(),
                true,
            ),
        }),
        None,
    )
    .await;
    let push = client().await;
    let gone = push
        .post(&server.url, "a", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(gone.kind, ErrorKind::Gone, "{gone}");
    assert!(gone.to_string().contains("went away"), "{gone}");
    push.post(&server.url, "b", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(server.connections(), 1, "reused after a chunked answer");
    let slow = push
        .post(&server.url, "c", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(slow.kind, ErrorKind::Throttled, "{slow}");
    assert!(slow.to_string().contains("slow down"), "{slow}");
}

#[tokio::test]
async fn interim_answers_are_skipped_and_large_bodies_arrive_whole() {
    let server = Server::start(
        Arc::new(|_, _| {
            (
                b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok"
                    .to_vec(),
                false,
            )
        }),
        None,
    )
    .await;
    let push = client().await;
    // 100 KiB: longer than the client copies behind the head.
    let big: Vec<u8> = (0..100 * 1024).map(|i| (i % 251) as u8).collect();
    push.post(&server.url, "big", Bytes::from(big.clone()))
        .await
        .unwrap();
    push.post(&server.url, "small", Bytes::from_static(b"s"))
        .await
        .unwrap();
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests[0].body, big);
    assert!(
        requests[0].head.contains("content-length: 102400\r\n"),
        "{}",
        requests[0].head
    );
    assert_eq!(requests[1].body, b"s");
    assert_eq!(server.connections(), 1);
}

#[tokio::test]
async fn a_garbled_answer_is_a_network_error_and_the_next_post_works() {
    let server = Server::start(
        Arc::new(|n, _| match n {
            0 => (b"SMTP ready\r\n\r\n".to_vec(), false),
            1 => (
                b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n".to_vec(),
                false,
            ),
            _ => ok(),
        }),
        None,
    )
    .await;
    let push = client().await;
    for id in ["a", "b"] {
        let err = push
            .post(&server.url, id, Bytes::from_static(b"x"))
            .await
            .unwrap_err();
        assert_eq!(err.kind, ErrorKind::Network, "{err}");
        assert!(err.is_retriable());
    }
    push.post(&server.url, "c", Bytes::from_static(b"x"))
        .await
        .unwrap();
    assert_eq!(
        server.connections(),
        3,
        "a garbled connection is not reused"
    );
}

#[tokio::test]
async fn https_endpoints_are_reached_over_rustls() {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).unwrap();
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let key = rustls_pki_types::PrivateKeyDer::try_from(ck.signing_key.serialize_der()).unwrap();
    let server_config = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![ck.cert.der().clone()], key)
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(server_config));
    let server = Server::start(Arc::new(|_, _| ok()), Some(acceptor.clone())).await;

    let mut roots = rustls::RootCertStore::empty();
    roots.add(ck.cert.der().clone()).unwrap();
    let trusting = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let push = client().await.with_tls_config(trusting);
    for i in 0..3 {
        push.post(&server.url, &format!("t{i}"), Bytes::from_static(b"secret"))
            .await
            .unwrap();
    }
    assert_eq!(server.connections(), 1);
    assert_eq!(server.requests.lock().unwrap()[2].body, b"secret");

    // A TLS server that closes each connection after the client has read its
    // answer (its `close_notify`, then the end of the stream): the next post
    // takes a new connection, without an error.
    let closing = Server::start(Arc::new(|_, _| (ok().0, true)), Some(acceptor)).await;
    closing.hold_closes();
    for i in 0..3 {
        push.post(&closing.url, &format!("t{i}"), Bytes::from_static(b"x"))
            .await
            .unwrap_or_else(|e| panic!("post {i} after a close_notify: {e}"));
        closing.close_one(i + 1).await;
    }
    assert_eq!(closing.connections(), 3);

    // The platform's roots do not trust a self-signed certificate.
    let err = client()
        .await
        .post(&server.url, "t", Bytes::from_static(b"x"))
        .await
        .unwrap_err();
    assert_eq!(err.kind, ErrorKind::Network, "{err}");
    assert!(err.to_string().contains("certificate"), "{err}");
}

fn error_answer(status: &str, error_type: &str) -> Vec<u8> {
    let body = format!("{{\"message\":\"{error_type}\"}}");
    format!(
        "HTTP/1.1 {status}\r\nx-amzn-ErrorType: {error_type}\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[tokio::test]
async fn pipelined_posts_go_out_together_and_their_answers_are_matched_in_order() {
    // Six requests read before any is answered: only a client that sends
    // them all before it reads gets answers.
    let server = Server::start_batched(
        Arc::new(|n, _| match n % 6 {
            1 => (error_answer("410 Gone", "GoneException"), false),
            3 => (
                error_answer("429 Too Many Requests", "LimitExceededException"),
                false,
            ),
            _ => ok(),
        }),
        None,
        6,
    )
    .await;
    let push = client().await;
    let ids = ["p0", "p/1", "p+2", "p=3", "pé4", "p5"];
    let frame = Frame::new(Bytes::from_static(b"{\"to\":\"all\"}"));
    for round in 0..2 {
        let results = tokio::time::timeout(
            Duration::from_secs(10),
            push.post_frame_many(&server.url, &ids, &frame),
        )
        .await
        .expect("the six requests went out before the first answer was read");
        let kinds: Vec<_> = results
            .iter()
            .map(|r| r.as_ref().err().map(|e| e.kind))
            .collect();
        assert_eq!(
            kinds,
            [
                None,
                Some(ErrorKind::Gone),
                None,
                Some(ErrorKind::Throttled),
                None,
                None
            ],
            "round {round}"
        );
    }
    assert_eq!(server.connections(), 1, "one keep-alive connection, reused");
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests.len(), 12);
    // Each pipelined request is the request a single post sends.
    assert!(
        requests[1]
            .head
            .starts_with("POST /dev/@connections/p%2F1 HTTP/1.1\r\n"),
        "{}",
        requests[1].head
    );
    assert!(
        requests[4]
            .head
            .starts_with("POST /dev/@connections/p%C3%A94 HTTP/1.1\r\n"),
        "{}",
        requests[4].head
    );
    assert!(requests.iter().all(|r| r.body == b"{\"to\":\"all\"}"));
}

#[tokio::test]
async fn a_pipelined_request_signs_and_reads_as_a_single_post() {
    // The same client, clock and id: the pipelined request's head equals
    // the single post's byte for byte.
    let server = Server::start(Arc::new(|_, _| ok()), None).await;
    let at = std::time::UNIX_EPOCH + Duration::from_secs(1_764_000_000);
    let push = client().await.with_clock(Arc::new(move || at));
    let frame = Frame::new(Bytes::from_static(b"same"));
    push.post_frame(&server.url, "a=b", &frame).await.unwrap();
    let results = push
        .post_frame_many(&server.url, &["a=b", "c"], &frame)
        .await;
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let requests = server.requests.lock().unwrap();
    assert_eq!(requests[0].head, requests[1].head);
    assert_ne!(requests[1].head, requests[2].head);
}

/// A pipeline of `n` whose second answer is `second` (the server closes
/// the connection after it when `closes`): the first `ok` requests
/// succeed, the rest are network errors the fan-out retries, and the next
/// pipeline goes out on a new connection.
async fn a_broken_pipeline(second: &'static [u8], closes: bool, n: usize, ok_count: usize) {
    let server = Server::start_batched(
        Arc::new(move |i, _| match i {
            1 => (second.to_vec(), closes),
            _ => ok(),
        }),
        None,
        n,
    )
    .await;
    let push = client().await;
    let frame = Frame::new(Bytes::from_static(b"x"));
    let ids: Vec<String> = (0..n).map(|i| format!("c{i}")).collect();
    let ids: Vec<&str> = ids.iter().map(String::as_str).collect();
    // The server answers only once it has the whole pipeline: a client
    // that waits for an answer before sending the next request times out.
    let pipelined = || {
        tokio::time::timeout(
            Duration::from_secs(10),
            push.post_frame_many(&server.url, &ids, &frame),
        )
    };
    let results = pipelined().await.expect("sent as one pipeline");
    for (i, r) in results.iter().enumerate() {
        if i < ok_count {
            assert!(r.is_ok(), "{i}: {r:?}");
        } else {
            let e = r.as_ref().unwrap_err();
            assert_eq!(e.kind, ErrorKind::Network, "{i}: {e}");
            assert!(e.is_retriable());
        }
    }
    let again = pipelined().await.expect("sent as one pipeline");
    assert!(again.iter().all(Result::is_ok), "{again:?}");
    assert_eq!(server.connections(), 2, "a broken connection is not reused");
}

#[tokio::test]
async fn a_pipeline_cut_short_fails_the_requests_left_unanswered() {
    // Two of five answered, the second with `connection: close`.
    a_broken_pipeline(
        b"HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 0\r\n\r\n",
        true,
        5,
        2,
    )
    .await;
}

#[tokio::test]
async fn a_garbled_answer_in_a_pipeline_fails_it_from_there_on() {
    a_broken_pipeline(
        b"HTTP/1.1 200 OK\r\ncontent-length: nope\r\n\r\n",
        false,
        3,
        1,
    )
    .await;
}
