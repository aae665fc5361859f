//! `switchboard dev` in-process for the console tests, and a small HTTP
//! client for the console's page and JSON API (the page's token, POSTs with
//! and without it).

use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use serde_json::Value;
use switchboard::app::{DevConfig, run_dev};
use switchboard::backend::embedded::EmbeddedStore;
use switchboard::backend::{OutgoingMessage, Queue};
use switchboard::gateway::GatewayConfig;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The DLQ `dev` creates (the default names of `migrations/`).
pub const DLQ_URL: &str = "embedded://switchboard-inbound-dlq.fifo";

/// A running `dev` on an in-memory store the test keeps a handle to.
pub struct Dev {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The store it runs on.
    pub store: EmbeddedStore,
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<Result<(), switchboard::Error>>,
}

impl Dev {
    /// Starts `dev` with the default API on 127.0.0.1:0.
    pub async fn start() -> Self {
        Self::start_with(GatewayConfig::default(), true).await
    }

    /// Starts `dev` with `gateway`; `open_console`: wait for the console to
    /// answer without credentials (else for the port to answer at all).
    pub async fn start_with(gateway: GatewayConfig, open_console: bool) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let store = EmbeddedStore::in_memory().await.unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let config = DevConfig {
            gateway,
            pipelines: Default::default(),
        };
        let join = tokio::spawn(run_dev(config, store.clone(), listener, async {
            let _ = rx.await;
        }));
        let dev = Dev {
            addr,
            store,
            stop: Some(tx),
            join,
        };
        // Ready once the console answers (the queues exist by then).
        super::eventually(Duration::from_secs(20), "the console answers", || async {
            let (status, _) = raw(dev.addr, "GET", "/@console/api/queue", &[], "").await?;
            (status == 200 || !open_console).then_some(())
        })
        .await;
        dev
    }

    /// `ws://…/dev?session=SESSION`.
    pub fn ws_url(&self, session: &str) -> String {
        format!("ws://{}/dev?session={session}", self.addr)
    }

    /// `http://…` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Puts a dead letter on the DLQ as SQS's redrive leaves one: the body
    /// and group as sent, no attributes.
    pub async fn dead_letter(&self, group: &str, body: &str, dedup: &str) -> String {
        self.store
            .queue(DLQ_URL)
            .unwrap()
            .send(&OutgoingMessage {
                body: body.to_owned(),
                group_id: group.to_owned(),
                dedup_id: dedup.to_owned(),
                attributes: Default::default(),
            })
            .await
            .unwrap()
    }

    /// Stops it and checks it stopped cleanly.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(30), &mut self.join)
            .await
            .expect("dev stopped in time")
            .unwrap()
            .expect("dev result");
    }
}

/// One HTTP/1.1 request; `None` when the connection failed.
pub async fn raw(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Option<(u16, Bytes)> {
    let stream = tokio::net::TcpStream::connect(addr).await.ok()?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake::<_, Full<Bytes>>(
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .ok()?;
    tokio::spawn(conn);
    let mut req = axum::http::Request::builder().method(method).uri(path);
    if !headers.iter().any(|(k, _)| k.eq_ignore_ascii_case("host")) {
        req = req.header("host", addr.to_string());
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(Full::new(Bytes::from(body.to_owned()))).unwrap();
    let resp = sender.send_request(req).await.ok()?;
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.ok()?.to_bytes();
    Some((status, bytes))
}

/// The console of a running `dev`, with the token of its page.
pub struct ConsoleClient {
    /// Where it is.
    pub addr: SocketAddr,
    /// The page's token.
    pub token: String,
}

impl ConsoleClient {
    /// Loads the page and reads its token.
    pub async fn open(addr: SocketAddr) -> Self {
        let (status, page) = raw(addr, "GET", "/@console/", &[], "").await.unwrap();
        assert_eq!(status, 200);
        let page = String::from_utf8(page.to_vec()).unwrap();
        let token = page
            .split_once("name=\"console-token\" content=\"")
            .and_then(|(_, rest)| rest.split_once('"'))
            .map(|(t, _)| t.to_owned())
            .expect("the page carries a token");
        assert_eq!(token.len(), 64, "{token}");
        ConsoleClient { addr, token }
    }

    /// GET `/@console/api` + `path`, expecting 200 and JSON.
    pub async fn get(&self, path: &str) -> Value {
        let (status, body) = raw(self.addr, "GET", &format!("/@console/api{path}"), &[], "")
            .await
            .unwrap();
        assert_eq!(
            status,
            200,
            "GET {path}: {}",
            String::from_utf8_lossy(&body)
        );
        serde_json::from_slice(&body).unwrap()
    }

    /// POST `/@console/api` + `path` with the token (and `extra` headers).
    pub async fn post(&self, path: &str, body: &str, extra: &[(&str, &str)]) -> (u16, Value) {
        let mut headers = vec![
            ("x-switchboard-console-token", self.token.as_str()),
            ("content-type", "application/json"),
        ];
        headers.extend_from_slice(extra);
        self.post_with(path, body, &headers).await
    }

    /// POST with exactly `headers`.
    pub async fn post_with(
        &self,
        path: &str,
        body: &str,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, bytes) = raw(
            self.addr,
            "POST",
            &format!("/@console/api{path}"),
            headers,
            body,
        )
        .await
        .unwrap();
        (
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        )
    }
}
