//! An HTTP proxy in front of moto that injects failures into chosen AWS
//! operations (by `X-Amz-Target`, e.g. `DynamoDB_20120810.PutItem`), so tests
//! see real throttling and 5xx answers from a real SDK client.
//!
//! It can also serialise SQS calls that moto does not make thread-safe: moto's
//! DeleteMessage rebuilds the queue's message list without a lock while
//! SendMessage appends under one, so concurrent deletes can bring a deleted
//! message back and a delete racing a send can lose the sent message (seen here:
//! a message redelivered one visibility timeout after its group moved on).
//! SQS itself has no such races. Long polls are never serialised.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;

/// An injected answer.
#[derive(Debug, Clone)]
pub struct Fault {
    /// HTTP status.
    pub status: u16,
    /// AWS error type, e.g. `ThrottlingException`.
    pub error_type: &'static str,
    /// How many requests get it.
    pub times: u32,
}

#[derive(Clone)]
struct ProxyState {
    upstream: String,
    client: Client<HttpConnector, http_body_util::Full<bytes::Bytes>>,
    faults: Arc<Mutex<HashMap<String, Fault>>>,
    seen: Arc<Mutex<HashMap<String, u32>>>,
    /// Held while forwarding a call moto must not run concurrently.
    serial: Option<Arc<tokio::sync::Mutex<()>>>,
    /// target → (requests let through before holding, requests held so far).
    holds: Arc<Mutex<HashMap<String, (u32, u32)>>>,
}

/// SQS operations that add to or rebuild moto's message list.
const MOTO_UNSAFE: &[&str] = &[
    "AmazonSQS.SendMessage",
    "AmazonSQS.SendMessageBatch",
    "AmazonSQS.DeleteMessage",
    "AmazonSQS.DeleteMessageBatch",
];

/// Handle to a running proxy.
#[derive(Clone)]
pub struct FaultProxy {
    state: ProxyState,
    /// The proxy's URL, for `AWS_ENDPOINT_URL`-style configuration.
    pub url: String,
}

impl FaultProxy {
    /// Starts a proxy to `upstream` on 127.0.0.1.
    pub async fn start(upstream: &str) -> Self {
        Self::start_with(upstream, false).await
    }

    /// Starts a proxy that also runs moto's thread-unsafe SQS calls one at a time.
    pub async fn start_serializing(upstream: &str) -> Self {
        Self::start_with(upstream, true).await
    }

    async fn start_with(upstream: &str, serialize: bool) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = ProxyState {
            upstream: upstream.trim_end_matches('/').to_owned(),
            client: Client::builder(TokioExecutor::new()).build_http(),
            faults: Arc::default(),
            seen: Arc::default(),
            serial: serialize.then(Arc::default),
            holds: Arc::default(),
        };
        let app = Router::new().fallback(forward).with_state(state.clone());
        tokio::spawn(async move { axum::serve(listener, app).await });
        FaultProxy { state, url }
    }

    /// The next `fault.times` requests for `target` get `fault` instead of moto's answer.
    pub fn inject(&self, target: &str, fault: Fault) {
        self.state
            .faults
            .lock()
            .unwrap()
            .insert(target.to_owned(), fault);
    }

    /// After `pass` more requests for `target` went through, every further one
    /// is held: never answered (until its client goes away). Simulates a
    /// process that dies in the middle of a call sequence.
    pub fn hold_after(&self, target: &str, pass: u32) {
        self.state
            .holds
            .lock()
            .unwrap()
            .insert(target.to_owned(), (pass, 0));
    }

    /// Requests for `target` being held now (or that were held).
    pub fn held(&self, target: &str) -> u32 {
        self.state
            .holds
            .lock()
            .unwrap()
            .get(target)
            .map(|(_, held)| *held)
            .unwrap_or(0)
    }

    /// Requests seen for `target` (answered by a fault or forwarded).
    pub fn seen(&self, target: &str) -> u32 {
        self.state
            .seen
            .lock()
            .unwrap()
            .get(target)
            .copied()
            .unwrap_or(0)
    }
}

async fn forward(State(s): State<ProxyState>, req: Request) -> Response {
    let target = req
        .headers()
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    *s.seen.lock().unwrap().entry(target.clone()).or_default() += 1;
    let hold = match s.holds.lock().unwrap().get_mut(&target) {
        Some((pass, _)) if *pass > 0 => {
            *pass -= 1;
            false
        }
        Some((_, held)) => {
            *held += 1;
            true
        }
        None => false,
    };
    if hold {
        return std::future::pending().await;
    }
    let fault = {
        let mut faults = s.faults.lock().unwrap();
        match faults.get_mut(&target) {
            Some(f) if f.times > 0 => {
                f.times -= 1;
                Some(f.clone())
            }
            _ => None,
        }
    };
    if let Some(f) = fault {
        let body = serde_json::json!({
            "__type": format!("com.amazonaws.dynamodb.v20120810#{}", f.error_type),
            "message": "injected by the test proxy",
        });
        return (
            StatusCode::from_u16(f.status).unwrap(),
            [
                ("x-amzn-ErrorType", f.error_type),
                ("content-type", "application/x-amz-json-1.0"),
            ],
            body.to_string(),
        )
            .into_response();
    }
    let (mut parts, body) = req.into_parts();
    let bytes = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(_) => return StatusCode::BAD_REQUEST.into_response(),
    };
    let path = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    parts.uri = format!("{}{path}", s.upstream).parse::<Uri>().unwrap();
    parts.headers.remove("host");
    let upstream = hyper::Request::from_parts(parts, http_body_util::Full::new(bytes));
    let _serial = match &s.serial {
        Some(m) if MOTO_UNSAFE.contains(&target.as_str()) => Some(m.lock().await),
        _ => None,
    };
    match s.client.request(upstream).await {
        Ok(resp) => resp.map(Body::new).into_response(),
        Err(e) => (StatusCode::BAD_GATEWAY, e.to_string()).into_response(),
    }
}
