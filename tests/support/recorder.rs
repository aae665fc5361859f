//! An HTTP server standing in for an integration backend (`http_proxy`/`http`):
//! records every request and answers what the test says, optionally holding
//! the answer until released.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::{Notify, Semaphore, oneshot};

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// Method.
    pub method: Method,
    /// Path and query.
    pub uri: String,
    /// Headers.
    pub headers: HeaderMap,
    /// Body as text.
    pub body: String,
}

/// What a path answers.
#[derive(Clone)]
pub struct Reply {
    /// Status.
    pub status: u16,
    /// Body.
    pub body: String,
    /// Extra headers.
    pub headers: Vec<(String, String)>,
    /// When set, the answer waits for a permit.
    pub hold: Option<Arc<Semaphore>>,
}

impl Reply {
    /// `status` with `body`.
    pub fn new(status: u16, body: &str) -> Self {
        Reply {
            status,
            body: body.to_owned(),
            headers: Vec::new(),
            hold: None,
        }
    }
}

#[derive(Clone)]
pub struct Recorder {
    requests: Arc<Mutex<Vec<Recorded>>>,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    changed: Arc<Notify>,
    /// `http://127.0.0.1:port`.
    pub base_url: String,
    _stop: Arc<Mutex<Option<oneshot::Sender<()>>>>,
}

impl Recorder {
    /// Starts on a free 127.0.0.1 port; unknown paths answer 200 with no body.
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base_url = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let r = Recorder {
            requests: Arc::default(),
            replies: Arc::default(),
            changed: Arc::default(),
            base_url,
            _stop: Arc::new(Mutex::new(Some(tx))),
        };
        let app = Router::new().fallback(record).with_state(r.clone());
        tokio::spawn(async move {
            axum::serve(listener, app)
                .with_graceful_shutdown(async {
                    let _ = rx.await;
                })
                .await
                .unwrap();
        });
        r
    }

    /// `base_url` + `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    /// From now on `path` answers `reply`.
    pub fn reply(&self, path: &str, reply: Reply) {
        self.replies.lock().unwrap().insert(path.to_owned(), reply);
    }

    /// Requests to `path` so far.
    pub fn requests_to(&self, path: &str) -> Vec<Recorded> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.uri.split('?').next() == Some(path))
            .cloned()
            .collect()
    }

    /// Waits until `path` received `n` requests; returns them.
    pub async fn wait_for(&self, path: &str, n: usize, deadline: Duration) -> Vec<Recorded> {
        let end = tokio::time::Instant::now() + deadline;
        loop {
            let notified = self.changed.notified();
            let got = self.requests_to(path);
            if got.len() >= n {
                return got;
            }
            if tokio::time::timeout_at(end, notified).await.is_err() {
                panic!(
                    "timed out after {deadline:?} waiting for {n} requests to {path}: got {}",
                    got.len()
                );
            }
        }
    }
}

async fn record(
    State(r): State<Recorder>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_owned();
    r.requests.lock().unwrap().push(Recorded {
        method,
        uri: uri.to_string(),
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    });
    r.changed.notify_waiters();
    let reply = r.replies.lock().unwrap().get(&path).cloned();
    let Some(reply) = reply else {
        return StatusCode::OK.into_response();
    };
    if let Some(hold) = &reply.hold {
        let _permit = hold.acquire().await;
    }
    let mut resp = (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
    for (k, v) in reply.headers {
        resp.headers_mut().insert(
            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
            v.parse().unwrap(),
        );
    }
    resp
}
