//! `http_proxy` and `http` integrations: one HTTP request per event to a
//! configured `http://` URL, through hyper-util's client (the one the AWS SDK
//! already builds).
//!
//! Like API Gateway, the frame is the request body (`http` can reshape it with a
//! `request_template`), and nothing else is sent unless `request_parameters` map
//! it: e.g. `"integration.request.header.connectionId" = "context.connectionId"`.
//! On `$connect`, `http_proxy` also forwards the client's request headers.

use std::collections::BTreeMap;

use axum::http::{HeaderName, HeaderValue, Request, Uri, header};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};

use super::config::{HttpSpec, Source, Target};
use super::route::{json_path, scalar};
use super::template::context_value;
use crate::handlers::{EventType, ProxyResponse, WebSocketEvent};

/// Largest integration response read; a route response frame is at most 128 KiB.
const MAX_RESPONSE_BYTES: usize = 1024 * 1024;

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
            for (name, value) in event.request.headers.iter().flatten() {
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
        Source::Header(name) => event.request.header(name).map(str::to_owned),
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

/// Everything but RFC 3986's unreserved characters is percent-encoded in a query.
const QUERY_VALUE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

fn encode(s: &str) -> String {
    utf8_percent_encode(s, QUERY_VALUE).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_parameters_are_added_percent_encoded() {
        let uri: Uri = "http://127.0.0.1:9/p?a=1".parse().unwrap();
        let extra = [("k y".to_owned(), "a&b=ü~-._/".to_owned())];
        assert_eq!(
            with_query(&uri, &extra).unwrap().to_string(),
            "http://127.0.0.1:9/p?a=1&k%20y=a%26b%3D%C3%BC~-._%2F"
        );
        assert_eq!(with_query(&uri, &[]).unwrap(), uri);
    }
}
