//! A test OTLP/HTTP trace receiver: `POST /v1/traces` with the JSON encoding
//! (what the `otel` feature's exporter sends), spans kept flat for the test
//! to look at. Binds 127.0.0.1 only.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde_json::Value;

/// One received span.
#[derive(Debug, Clone, PartialEq)]
pub struct Span {
    /// 32 hex digits.
    pub trace_id: String,
    /// 16 hex digits.
    pub span_id: String,
    /// 16 hex digits; empty for a root span.
    pub parent_id: String,
    /// Span name.
    pub name: String,
    /// Start, ns since the epoch.
    pub start_ns: u64,
    /// End, ns since the epoch.
    pub end_ns: u64,
    /// String forms of the attributes.
    pub attributes: Vec<(String, String)>,
    /// Events: name and attributes.
    pub events: Vec<(String, Vec<(String, String)>)>,
    /// `service.name` of the resource.
    pub service: String,
}

impl Span {
    /// An attribute's value.
    pub fn attr(&self, key: &str) -> Option<&str> {
        self.attributes
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

/// What the handler shares: the spans and the count of requests.
type Shared = (Arc<Mutex<Vec<Span>>>, Arc<Mutex<usize>>);

/// The receiver; spans accumulate until the test ends.
pub struct Receiver {
    /// Where it listens: `http://{addr}` is the OTLP endpoint.
    pub addr: SocketAddr,
    spans: Arc<Mutex<Vec<Span>>>,
    requests: Arc<Mutex<usize>>,
}

fn text(v: &Value) -> String {
    // AnyValue: {"stringValue": ..} | {"intValue": ..} | {"boolValue": ..} | ...
    match v.as_object().and_then(|o| o.values().next()) {
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => String::new(),
    }
}

fn attributes(v: &Value) -> Vec<(String, String)> {
    v.as_array()
        .into_iter()
        .flatten()
        .map(|kv| {
            (
                kv["key"].as_str().unwrap_or_default().to_owned(),
                text(&kv["value"]),
            )
        })
        .collect()
}

fn ns(v: &Value) -> u64 {
    match v {
        Value::String(s) => s.parse().unwrap_or(0),
        other => other.as_u64().unwrap_or(0),
    }
}

fn id(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_ascii_lowercase()
}

/// The spans of one export request (OTLP JSON `ExportTraceServiceRequest`).
pub fn parse(body: &Value) -> Vec<Span> {
    let mut out = Vec::new();
    for rs in body["resourceSpans"].as_array().into_iter().flatten() {
        let service = attributes(&rs["resource"]["attributes"])
            .into_iter()
            .find(|(k, _)| k == "service.name")
            .map(|(_, v)| v)
            .unwrap_or_default();
        for ss in rs["scopeSpans"].as_array().into_iter().flatten() {
            for s in ss["spans"].as_array().into_iter().flatten() {
                out.push(Span {
                    trace_id: id(&s["traceId"]),
                    span_id: id(&s["spanId"]),
                    parent_id: id(&s["parentSpanId"]),
                    name: s["name"].as_str().unwrap_or_default().to_owned(),
                    start_ns: ns(&s["startTimeUnixNano"]),
                    end_ns: ns(&s["endTimeUnixNano"]),
                    attributes: attributes(&s["attributes"]),
                    events: s["events"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|e| {
                            (
                                e["name"].as_str().unwrap_or_default().to_owned(),
                                attributes(&e["attributes"]),
                            )
                        })
                        .collect(),
                    service: service.clone(),
                });
            }
        }
    }
    out
}

impl Receiver {
    /// Starts listening on a free port.
    pub async fn start() -> Self {
        let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
        let requests: Arc<Mutex<usize>> = Arc::default();
        let app = Router::new()
            .route(
                "/v1/traces",
                post(
                    |State((spans, requests)): State<Shared>, body: Bytes| async move {
                        *requests.lock().unwrap() += 1;
                        let Ok(v) = serde_json::from_slice::<Value>(&body) else {
                            return (StatusCode::BAD_REQUEST, "not OTLP JSON");
                        };
                        spans.lock().unwrap().extend(parse(&v));
                        (StatusCode::OK, "{}")
                    },
                ),
            )
            .with_state((spans.clone(), requests.clone()));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Receiver {
            addr,
            spans,
            requests,
        }
    }

    /// The OTLP endpoint (`OTEL_EXPORTER_OTLP_ENDPOINT`).
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<Span> {
        self.spans.lock().unwrap().clone()
    }

    /// The spans of one trace.
    pub fn trace(&self, trace_id: &str) -> Vec<Span> {
        self.spans()
            .into_iter()
            .filter(|s| s.trace_id == trace_id)
            .collect()
    }

    /// Export requests received.
    pub fn requests(&self) -> usize {
        *self.requests.lock().unwrap()
    }
}
