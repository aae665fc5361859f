//! A test server speaking the API Gateway management API (`@connections`), driven
//! by the real `aws-sdk-apigatewaymanagement` client. It records every POST, and
//! answers 410 GoneException for ids it is told are gone and 429
//! LimitExceededException (or 500) a given number of times on demand.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::net::TcpListener;
use tokio::sync::{Notify, oneshot};

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
    gone: HashSet<String>,
    /// id → remaining 429 answers.
    throttle: HashMap<String, u32>,
    /// id → remaining 500 answers.
    fail: HashMap<String, u32>,
    /// Every request (including refused ones), per id.
    attempts: HashMap<String, u32>,
    /// Latency added to every POST (a slow API).
    latency: Duration,
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
            axum::serve(listener, app)
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

    /// Stops the server.
    pub fn stop(&self) {
        if let Some(tx) = self.stop.lock().unwrap().take() {
            let _ = tx.send(());
        }
    }
}

async fn post_to_connection(
    State(s): State<ConnectionsServer>,
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
        if inner.gone.contains(&id) {
            error(StatusCode::GONE, "GoneException", "connection is gone")
        } else if let Some(n) = inner.throttle.get_mut(&id).filter(|n| **n > 0) {
            *n -= 1;
            error(
                StatusCode::TOO_MANY_REQUESTS,
                "LimitExceededException",
                "slow down",
            )
        } else if let Some(n) = inner.fail.get_mut(&id).filter(|n| **n > 0) {
            *n -= 1;
            error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServerError",
                "boom",
            )
        } else {
            let signed = headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.starts_with("AWS4-HMAC-SHA256"));
            let frame = serde_json::from_slice(&body).unwrap_or(serde_json::Value::Null);
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
