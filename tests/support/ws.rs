//! WebSocket test clients (tokio-tungstenite, the version axum's `ws` uses) and
//! the local gateway running in-process on 127.0.0.1:0.

use std::net::SocketAddr;
use std::time::Duration;

use aws_sdk_apigatewaymanagement::config::{BehaviorVersion, Credentials, Region};
use futures::{SinkExt, StreamExt};
use switchboard::gateway::{self, Gateway, GatewayConfig, HandlerBackend};
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// A client connection.
pub type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a test waits for one expected frame.
pub const FRAME_DEADLINE: Duration = Duration::from_secs(10);

/// The gateway serving on a free 127.0.0.1 port.
pub struct TestGateway {
    /// Where it listens.
    pub addr: SocketAddr,
    /// The embedded gateway.
    pub gateway: Gateway,
    stop: Option<oneshot::Sender<()>>,
    join: JoinHandle<std::io::Result<()>>,
}

impl TestGateway {
    /// Starts `config` with `backend` (for builtin routes).
    pub async fn start(config: GatewayConfig, backend: Option<HandlerBackend>) -> Self {
        let gateway = Gateway::new(config, backend).expect("valid gateway");
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = oneshot::channel::<()>();
        let join = tokio::spawn(gateway::run(listener, gateway.clone(), async {
            let _ = rx.await;
        }));
        TestGateway {
            addr,
            gateway,
            stop: Some(tx),
            join,
        }
    }

    /// `ws://addr/{path}`, e.g. `dev?session=room1`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}/{path}", self.addr)
    }

    /// The @connections endpoint of `stage`, e.g. for the worker's `--callback-url`.
    pub fn endpoint(&self, stage: &str) -> String {
        format!("http://{}/{stage}", self.addr)
    }

    /// The real management client for `stage`, SigV4-signing with test
    /// credentials, retries off.
    pub fn management(&self, stage: &str) -> aws_sdk_apigatewaymanagement::Client {
        let conf = aws_sdk_apigatewaymanagement::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new("us-east-1"))
            .credentials_provider(Credentials::new("test", "test", None, None, "tests"))
            .endpoint_url(self.endpoint(stage))
            .retry_config(aws_sdk_apigatewaymanagement::config::retry::RetryConfig::disabled())
            .build();
        aws_sdk_apigatewaymanagement::Client::from_conf(conf)
    }

    /// Shuts down (connections get 1001 and `$disconnect`) and waits for `run`.
    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        tokio::time::timeout(Duration::from_secs(30), &mut self.join)
            .await
            .expect("gateway stopped within 30 s")
            .expect("gateway task")
            .expect("gateway result");
    }
}

/// Connects, panicking on failure.
pub async fn connect(url: &str) -> Client {
    let (client, resp) = tokio_tungstenite::connect_async(url)
        .await
        .unwrap_or_else(|e| panic!("connect {url}: {e}"));
    assert_eq!(resp.status(), 101);
    client
}

/// Tries a handshake; on refusal returns the HTTP status and body.
pub async fn refused(url: &str) -> (u16, String) {
    match tokio_tungstenite::connect_async(url).await {
        Ok(_) => panic!("handshake to {url} was accepted"),
        Err(tungstenite::Error::Http(resp)) => (
            resp.status().as_u16(),
            String::from_utf8_lossy(resp.body().as_deref().unwrap_or_default()).into_owned(),
        ),
        Err(e) => panic!("handshake to {url} failed without an HTTP answer: {e}"),
    }
}

/// The next text frame (pings and pongs skipped); panics on close or timeout.
pub async fn next_text(c: &mut Client) -> String {
    let deadline = tokio::time::Instant::now() + FRAME_DEADLINE;
    loop {
        match tokio::time::timeout_at(deadline, c.next()).await {
            Err(_) => panic!("no text frame within {FRAME_DEADLINE:?}"),
            Ok(Some(Ok(Message::Text(t)))) => return t.to_string(),
            Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => continue,
            Ok(other) => panic!("expected a text frame, got {other:?}"),
        }
    }
}

/// The next text frame parsed as JSON.
pub async fn next_json(c: &mut Client) -> serde_json::Value {
    let t = next_text(c).await;
    serde_json::from_str(&t).unwrap_or_else(|e| panic!("frame is not JSON ({e}): {t}"))
}

/// Waits for the server's close frame (text frames before it are skipped);
/// panics if the connection stays open past the deadline.
pub async fn next_close(c: &mut Client, deadline: Duration) -> Option<CloseFrame> {
    let end = tokio::time::Instant::now() + deadline;
    loop {
        match tokio::time::timeout_at(end, c.next()).await {
            Err(_) => panic!("connection still open after {deadline:?}"),
            Ok(Some(Ok(Message::Close(f)))) => return f,
            Ok(Some(Ok(_))) => continue,
            Ok(Some(Err(e))) => panic!("connection failed instead of closing: {e}"),
            Ok(None) => panic!("connection ended without a close frame"),
        }
    }
}

/// Sends a text frame.
pub async fn send(c: &mut Client, text: impl Into<String>) {
    c.send(Message::text(text.into())).await.expect("send");
}

/// Asks the gateway for this connection's id through a `whoami` mock route
/// (`response_template = "$context.connectionId"`).
pub async fn whoami(c: &mut Client) -> String {
    send(c, r#"{"action":"whoami"}"#).await;
    next_text(c).await
}

/// What a [`Member`] received: every JSON frame with its arrival time.
#[derive(Default)]
pub struct Inbox {
    frames: std::sync::Mutex<Vec<(serde_json::Value, tokio::time::Instant)>>,
    changed: tokio::sync::Notify,
    ended: std::sync::atomic::AtomicBool,
}

impl Inbox {
    /// `payload.text` of every `message` frame, in arrival order.
    pub fn texts(&self) -> Vec<String> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .filter(|(f, _)| f["type"] == "message")
            .filter_map(|(f, _)| f["payload"]["text"].as_str().map(str::to_owned))
            .collect()
    }

    /// Every frame so far.
    pub fn frames(&self) -> Vec<serde_json::Value> {
        self.frames
            .lock()
            .unwrap()
            .iter()
            .map(|(f, _)| f.clone())
            .collect()
    }

    /// Whether the connection ended (closed or failed).
    pub fn ended(&self) -> bool {
        self.ended.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Waits for the `message` frame whose `payload.text` is `text`; returns
    /// when it arrived.
    pub async fn wait_text(&self, text: &str, deadline: Duration) -> tokio::time::Instant {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            if let Some(at) = self
                .frames
                .lock()
                .unwrap()
                .iter()
                .find(|(f, _)| f["type"] == "message" && f["payload"]["text"] == text)
                .map(|(_, at)| *at)
            {
                return at;
            }
            if self.ended() {
                panic!("the connection ended before {text} arrived");
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                panic!("no message {text} within {deadline:?}");
            }
        }
    }

    /// Waits until the connection ended.
    pub async fn wait_ended(&self, deadline: Duration) {
        let end = tokio::time::Instant::now() + deadline;
        while !self.ended() {
            let notified = self.changed.notified();
            if self.ended() {
                return;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                panic!("the connection still open after {deadline:?}");
            }
        }
    }
}

/// A session member that reads every frame in the background (so it never
/// holds up the gateway) and can send.
pub struct Member {
    /// The sending half.
    pub sink: futures::stream::SplitSink<Client, Message>,
    /// What it received.
    pub inbox: std::sync::Arc<Inbox>,
}

impl Member {
    /// Connects to `url` and starts reading.
    pub async fn join(url: &str) -> Self {
        let (sink, mut stream) = connect(url).await.split();
        let inbox = std::sync::Arc::new(Inbox::default());
        let reader = inbox.clone();
        tokio::spawn(async move {
            while let Some(Ok(m)) = stream.next().await {
                if let Message::Text(t) = m
                    && let Ok(v) = serde_json::from_str(&t)
                {
                    reader
                        .frames
                        .lock()
                        .unwrap()
                        .push((v, tokio::time::Instant::now()));
                    reader.changed.notify_waiters();
                }
            }
            reader
                .ended
                .store(true, std::sync::atomic::Ordering::SeqCst);
            reader.changed.notify_waiters();
        });
        Member { sink, inbox }
    }

    /// Sends `{"action":"sendMessage","data":{"text":TEXT, ...extra}}`.
    pub async fn say(&mut self, text: &str, extra: serde_json::Value) {
        let mut data = serde_json::json!({ "text": text });
        if let serde_json::Value::Object(more) = extra {
            data.as_object_mut().unwrap().extend(more);
        }
        let frame = serde_json::json!({"action": "sendMessage", "data": data});
        self.sink
            .send(Message::text(frame.to_string()))
            .await
            .expect("send");
    }
}
