//! A stand-in for the Lambda Runtime API, the HTTP API a `provided.al2023`
//! function polls (version 2018-06-01): enough to run one of our binaries
//! as Lambda does. `GET /runtime/invocation/next` hands out the queued
//! events one at a time, with the headers Lambda sends (request id,
//! deadline, function ARN, trace id), and then holds the next poll open, as
//! Lambda freezes an idle environment; `POST .../{id}/response`,
//! `.../{id}/error` and `/runtime/init/error` are recorded as [`Outcome`]s.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::{get, post};
use serde_json::Value;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;

/// What the function posted back.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// `POST /runtime/invocation/{id}/response`.
    Response {
        /// The invocation.
        request_id: String,
        /// The function's answer.
        body: Value,
    },
    /// `POST /runtime/invocation/{id}/error`.
    Error {
        /// The invocation.
        request_id: String,
        /// `Lambda-Runtime-Function-Error-Type`.
        error_type: Option<String>,
        /// `{"errorType": ..., "errorMessage": ...}`.
        body: Value,
    },
    /// `POST /runtime/init/error`.
    InitError {
        /// `Lambda-Runtime-Function-Error-Type`.
        error_type: Option<String>,
        /// `{"errorType": ..., "errorMessage": ...}`.
        body: Value,
    },
}

struct Shared {
    events: Mutex<mpsc::UnboundedReceiver<(String, Value)>>,
    outcomes: mpsc::UnboundedSender<Outcome>,
}

/// A running Runtime API on 127.0.0.1; stopped when dropped.
pub struct RuntimeApi {
    /// Where it listens (`AWS_LAMBDA_RUNTIME_API`).
    pub addr: SocketAddr,
    events: mpsc::UnboundedSender<(String, Value)>,
    outcomes: Mutex<mpsc::UnboundedReceiver<Outcome>>,
    server: JoinHandle<()>,
}

impl Drop for RuntimeApi {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl RuntimeApi {
    /// Starts it on a free port.
    pub async fn start() -> Self {
        let (events_tx, events_rx) = mpsc::unbounded_channel();
        let (outcomes_tx, outcomes_rx) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            events: Mutex::new(events_rx),
            outcomes: outcomes_tx,
        });
        let app = Router::new()
            .route("/2018-06-01/runtime/invocation/next", get(next))
            .route(
                "/2018-06-01/runtime/invocation/{id}/response",
                post(response),
            )
            .route("/2018-06-01/runtime/invocation/{id}/error", post(error))
            .route("/2018-06-01/runtime/init/error", post(init_error))
            .with_state(shared);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        RuntimeApi {
            addr,
            events: events_tx,
            outcomes: Mutex::new(outcomes_rx),
            server,
        }
    }

    /// Queues one invocation of `event` with request id `request_id`.
    pub fn invoke(&self, request_id: &str, event: Value) {
        self.events
            .send((request_id.to_owned(), event))
            .expect("runtime API running");
    }

    /// The next thing the function posted, within `deadline`.
    pub async fn outcome(&self, deadline: Duration) -> Outcome {
        tokio::time::timeout(deadline, self.outcomes.lock().await.recv())
            .await
            .unwrap_or_else(|_| panic!("nothing posted to the runtime API within {deadline:?}"))
            .expect("runtime API running")
    }

    /// The variables Lambda gives every function (`AWS_LAMBDA_RUNTIME_API`
    /// pointing here), for function `name`.
    pub fn lambda_env(&self, name: &str) -> Vec<(String, String)> {
        [
            ("AWS_LAMBDA_RUNTIME_API", self.addr.to_string()),
            ("AWS_LAMBDA_FUNCTION_NAME", name.to_owned()),
            ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128".to_owned()),
            ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST".to_owned()),
            ("AWS_LAMBDA_LOG_GROUP_NAME", format!("/aws/lambda/{name}")),
            (
                "AWS_LAMBDA_LOG_STREAM_NAME",
                "2026/11/27/[$LATEST]0123456789abcdef".to_owned(),
            ),
            ("LAMBDA_TASK_ROOT", "/var/task".to_owned()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v))
        .collect()
    }
}

async fn next(State(shared): State<Arc<Shared>>) -> impl IntoResponse {
    // Held open when no event is queued: an idle, frozen environment.
    let Some((request_id, event)) = shared.events.lock().await.recv().await else {
        return (StatusCode::GONE, HeaderMap::new(), String::new());
    };
    let deadline_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis()
        + 10_000;
    let mut headers = HeaderMap::new();
    headers.insert("content-type", "application/json".parse().unwrap());
    headers.insert("lambda-runtime-aws-request-id", request_id.parse().unwrap());
    headers.insert(
        "lambda-runtime-deadline-ms",
        deadline_ms.to_string().parse().unwrap(),
    );
    headers.insert(
        "lambda-runtime-invoked-function-arn",
        "arn:aws:lambda:us-east-1:123456789012:function:switchboard-test"
            .parse()
            .unwrap(),
    );
    headers.insert(
        "lambda-runtime-trace-id",
        "Root=1-6746f1a0-0f1e2d3c4b5a69788796a5b4;Parent=53995c3f42cd8ad8;Sampled=0"
            .parse()
            .unwrap(),
    );
    (StatusCode::OK, headers, event.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("posted body is not JSON ({e}): {body}"))
}

fn error_type(headers: &HeaderMap) -> Option<String> {
    headers
        .get("lambda-runtime-function-error-type")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

async fn response(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    body: String,
) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::Response {
        request_id,
        body: json(&body),
    });
    StatusCode::ACCEPTED
}

async fn error(
    State(shared): State<Arc<Shared>>,
    Path(request_id): Path<String>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::Error {
        request_id,
        error_type: error_type(&headers),
        body: json(&body),
    });
    StatusCode::ACCEPTED
}

async fn init_error(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: String,
) -> StatusCode {
    let _ = shared.outcomes.send(Outcome::InitError {
        error_type: error_type(&headers),
        body: json(&body),
    });
    StatusCode::ACCEPTED
}
