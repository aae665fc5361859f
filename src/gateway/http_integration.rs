//! `http_proxy` and `http` integrations: one HTTP request per event to a
//! configured `http://` URL, through hyper-util's client (the one the AWS SDK
//! already builds).
//!
//! Like API Gateway, the frame is the request body (`http` can reshape it with a
//! `request_template`), and nothing else is sent unless `request_parameters` map
//! it: e.g. `"integration.request.header.connectionId" = "context.connectionId"`.
//! On `$connect`, `http_proxy` also forwards the client's request headers.

use std::collections::BTreeMap;

use axum::http::{HeaderName, HeaderValue, Method, Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

use super::integration::{Template, context_value, context_variable};
use super::route::{json_path, scalar};
use crate::handlers::{EventType, ProxyResponse, WebSocketEvent};

/// Largest integration response read; a route response frame is at most 128 KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

/// Where an `http`/`http_proxy` integration sends requests.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// `http://host:port/path`.
    pub uri: Uri,
    /// Request method (default POST).
    pub method: Method,
    parameters: Vec<(Target, Source)>,
    template: Option<Template>,
    forward_connect_headers: bool,
}

#[derive(Debug, Clone, PartialEq)]
enum Target {
    Header(HeaderName),
    Query(String),
}

#[derive(Debug, Clone, PartialEq)]
enum Source {
    Static(String),
    Context(&'static str),
    Header(String),
    Query(String),
    Body(Vec<String>),
}

fn parse_target(key: &str) -> Result<Target, String> {
    if let Some(name) = key.strip_prefix("integration.request.header.") {
        return HeaderName::from_bytes(name.as_bytes())
            .map(Target::Header)
            .map_err(|_| format!("`{name}` is not a valid header name"));
    }
    if let Some(name) = key.strip_prefix("integration.request.querystring.")
        && !name.is_empty()
    {
        return Ok(Target::Query(name.to_owned()));
    }
    Err(format!(
        "request parameter `{key}`: use integration.request.header.<name> or \
         integration.request.querystring.<name>"
    ))
}

fn parse_source(value: &str) -> Result<Source, String> {
    if let Some(s) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) {
        return Ok(Source::Static(s.to_owned()));
    }
    if let Some(name) = value.strip_prefix("context.") {
        return context_variable(name)
            .map(Source::Context)
            .ok_or_else(|| format!("unknown context variable `{name}`"));
    }
    if let Some(name) = value.strip_prefix("route.request.header.") {
        return Ok(Source::Header(name.to_ascii_lowercase()));
    }
    if let Some(name) = value.strip_prefix("route.request.querystring.") {
        return Ok(Source::Query(name.to_owned()));
    }
    if let Some(path) = value.strip_prefix("route.request.body.") {
        return Ok(Source::Body(path.split('.').map(str::to_owned).collect()));
    }
    Err(format!(
        "request parameter value `{value}`: use 'static text', context.<variable>, \
         route.request.header.<name>, route.request.querystring.<name> or route.request.body.<path>"
    ))
}

impl HttpSpec {
    /// Checks a configured endpoint.
    pub(super) fn new(
        uri: &str,
        method: Option<&str>,
        parameters: &BTreeMap<String, String>,
        template: Option<&str>,
        forward_connect_headers: bool,
    ) -> Result<Self, String> {
        let parsed: Uri = uri
            .parse()
            .map_err(|e| format!("uri `{uri}` is not a URL: {e}"))?;
        match parsed.scheme_str() {
            Some("http") if parsed.host().is_some() => {}
            Some("https") => {
                return Err(format!(
                    "uri `{uri}`: the local gateway calls http:// endpoints only"
                ));
            }
            _ => return Err(format!("uri `{uri}` must be http://host[:port]/path")),
        }
        let method = match method {
            None => Method::POST,
            Some(m) => Method::from_bytes(m.to_ascii_uppercase().as_bytes())
                .map_err(|_| format!("method `{m}` is not an HTTP method"))?,
        };
        let parameters = parameters
            .iter()
            .map(|(k, v)| Ok((parse_target(k)?, parse_source(v)?)))
            .collect::<Result<Vec<_>, String>>()?;
        Ok(HttpSpec {
            uri: parsed,
            method,
            parameters,
            template: template.map(Template::parse).transpose()?,
            forward_connect_headers,
        })
    }
}

/// The shared HTTP client.
#[derive(Clone, Debug)]
pub struct HttpClient(Client<HttpConnector, Full<Bytes>>);

impl HttpClient {
    /// A pooling HTTP/1.1 client.
    pub fn new() -> Self {
        HttpClient(Client::builder(TokioExecutor::new()).build_http())
    }

    /// Sends `event` to `spec`; the error says why no answer came.
    pub async fn call(
        &self,
        spec: &HttpSpec,
        event: &WebSocketEvent,
    ) -> Result<ProxyResponse, String> {
        let body = match &spec.template {
            Some(t) => t.render(event),
            None => event.body.clone().unwrap_or_default(),
        };
        let mut headers: Vec<(HeaderName, String)> = Vec::new();
        let mut query: Vec<(String, String)> = Vec::new();
        for (target, source) in &spec.parameters {
            let Some(value) = source_value(source, event) else {
                continue;
            };
            match target {
                Target::Header(h) => headers.push((h.clone(), value)),
                Target::Query(q) => query.push((q.clone(), value)),
            }
        }
        let uri = with_query(&spec.uri, &query)?;
        let mut req = Request::builder().method(spec.method.clone()).uri(uri);
        if spec.forward_connect_headers && event.request_context.event_type == EventType::Connect {
            for (name, value) in event.headers.iter().flatten() {
                let lower = name.to_ascii_lowercase();
                let hop = ["host", "connection", "upgrade", "content-length"]
                    .contains(&lower.as_str())
                    || lower.starts_with("sec-websocket-");
                if !hop {
                    req = req.header(name.as_str(), value.as_str());
                }
            }
        }
        if !body.is_empty() {
            req = req.header(header::CONTENT_TYPE, "application/json");
        }
        for (name, value) in headers {
            let value = HeaderValue::from_str(&value)
                .map_err(|_| format!("value for header {name} is not a valid header value"))?;
            req = req.header(name, value);
        }
        let req = req
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let resp = self
            .0
            .request(req)
            .await
            .map_err(|e| format!("{} {}: {e}", spec.method, spec.uri))?;
        let status = resp.status().as_u16();
        let mut out_headers = BTreeMap::new();
        if let Some(p) = resp.headers().get(header::SEC_WEBSOCKET_PROTOCOL)
            && let Ok(p) = p.to_str()
        {
            out_headers.insert("Sec-WebSocket-Protocol".to_owned(), p.to_owned());
        }
        let bytes = Limited::new(resp.into_body(), MAX_RESPONSE_BYTES)
            .collect()
            .await
            .map_err(|e| format!("reading the answer of {}: {e}", spec.uri))?
            .to_bytes();
        let text = String::from_utf8(bytes.to_vec())
            .map_err(|_| format!("the answer of {} is not UTF-8 text", spec.uri))?;
        Ok(ProxyResponse {
            status_code: status,
            headers: out_headers,
            body: Some(text).filter(|t| !t.is_empty()),
            is_base64_encoded: false,
        })
    }
}

impl Default for HttpClient {
    fn default() -> Self {
        Self::new()
    }
}

fn source_value(source: &Source, event: &WebSocketEvent) -> Option<String> {
    match source {
        Source::Static(s) => Some(s.clone()),
        Source::Context(name) => Some(context_value(event, name)),
        Source::Header(name) => event
            .headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.clone()),
        Source::Query(name) => event.query(name).map(str::to_owned),
        Source::Body(path) => {
            let body: serde_json::Value = serde_json::from_str(event.body.as_deref()?).ok()?;
            scalar(json_path(&body, path)?)
        }
    }
}

fn with_query(uri: &Uri, extra: &[(String, String)]) -> Result<Uri, String> {
    if extra.is_empty() {
        return Ok(uri.clone());
    }
    let mut pq = uri.path().to_owned();
    let mut pairs: Vec<String> = uri.query().map(|q| vec![q.to_owned()]).unwrap_or_default();
    for (k, v) in extra {
        pairs.push(format!("{}={}", encode(k), encode(v)));
    }
    pq.push('?');
    pq.push_str(&pairs.join("&"));
    let mut parts = uri.clone().into_parts();
    parts.path_and_query = Some(pq.parse().map_err(|e| format!("bad query string: {e}"))?);
    Uri::from_parts(parts).map_err(|e| format!("bad URL: {e}"))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
fn encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
