//! API Gateway WebSocket proxy events and proxy responses, in the JSON shape AWS
//! sends to (and expects from) a Lambda proxy integration.
//!
//! The field names and nesting follow real events (`tests/fixtures/apigw-ws-*.json`):
//! `$connect` carries headers and query string, messages carry `body`, `$disconnect`
//! carries `disconnectStatusCode`/`disconnectReason`. Fields AWS sends that we do not
//! use (`extendedRequestId`, `messageDirection`, the many `identity.*` nulls) are kept
//! where cheap and ignored otherwise, so a real event always deserializes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Which lifecycle event an invocation is for (`requestContext.eventType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum EventType {
    /// `$connect`: the upgrade request, before the socket is open.
    Connect,
    /// A client frame routed to a custom route or `$default`.
    Message,
    /// `$disconnect`: after the socket closed, best effort.
    Disconnect,
}

/// One API Gateway WebSocket proxy event (what a Lambda proxy integration receives).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WebSocketEvent {
    /// Headers, query string and stage variables (`$connect` only but stage
    /// variables); flattened, so the JSON is AWS's.
    #[serde(flatten)]
    pub request: RequestParameters,
    /// Who, where and what: connection, route, stage, identity, authorizer output.
    pub request_context: RequestContext,
    /// The client's frame (messages only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether `body` is base64 (binary frames; the local gateway never sends them).
    #[serde(default)]
    pub is_base64_encoded: bool,
}

/// The request fields an upgrade request's proxy event and its authorizer event
/// share, at the top level of both (`headers`, `multiValueHeaders`,
/// `queryStringParameters`, `multiValueQueryStringParameters`, `stageVariables`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestParameters {
    /// Request headers of the upgrade request (last value wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, String>>,
    /// Every value of every header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_value_headers: Option<BTreeMap<String, Vec<String>>>,
    /// Query string of the upgrade request (last value wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_string_parameters: Option<BTreeMap<String, String>>,
    /// Every value of every query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multi_value_query_string_parameters: Option<BTreeMap<String, Vec<String>>>,
    /// Stage variables, when the stage defines any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stage_variables: Option<BTreeMap<String, String>>,
}

impl RequestParameters {
    /// A header, by case-insensitive name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .as_ref()?
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A query string parameter (names are case-sensitive, as on API Gateway).
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query_string_parameters
            .as_ref()?
            .get(name)
            .map(String::as_str)
    }
}

/// `requestContext` of a WebSocket proxy event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestContext {
    /// Selected route: `$connect`, `$disconnect`, `$default` or a custom key.
    pub route_key: String,
    /// CONNECT, MESSAGE or DISCONNECT.
    pub event_type: EventType,
    /// The connection, as used by the @connections API.
    pub connection_id: String,
    /// Unique per invocation; the envelope id and SQS deduplication id.
    pub request_id: String,
    /// Same as `requestId` on WebSocket APIs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extended_request_id: Option<String>,
    /// Server-side id of the frame (messages only; `null` otherwise).
    #[serde(default)]
    pub message_id: Option<String>,
    /// Always `IN`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_direction: Option<String>,
    /// CLF time, e.g. `13/Dec/2020:10:17:47 +0000`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request_time: Option<String>,
    /// When API Gateway received the request or frame, epoch ms.
    pub request_time_epoch: i64,
    /// When the connection was opened, epoch ms.
    pub connected_at: i64,
    /// The API's domain (`{apiId}.execute-api.{region}.amazonaws.com` on AWS).
    pub domain_name: String,
    /// The stage that holds the connection.
    pub stage: String,
    /// The API's id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_id: Option<String>,
    /// The caller.
    pub identity: Identity,
    /// Output of the `$connect` authorizer (`principalId` and its `context`
    /// entries, flattened); present on every event of an authorized connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authorizer: Option<Map<String, Value>>,
    /// Close code (`$disconnect` only), e.g. 1000, 1001, 1005, 1006.
    #[serde(default)]
    pub disconnect_status_code: Option<i64>,
    /// Close reason (`$disconnect` only).
    #[serde(default)]
    pub disconnect_reason: Option<String>,
}

/// `requestContext.identity`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Identity {
    /// Client IP address.
    #[serde(default)]
    pub source_ip: String,
    /// The upgrade request's User-Agent (`null` when absent).
    #[serde(default)]
    pub user_agent: Option<String>,
}

impl RequestContext {
    /// A string value of the authorizer output (`context.<key>`); numbers and
    /// booleans, which API Gateway also allows there, are given as text.
    pub fn authorizer_value(&self, key: &str) -> Option<String> {
        match self.authorizer.as_ref()?.get(key)? {
            Value::String(s) => Some(s.clone()),
            Value::Number(n) => Some(n.to_string()),
            Value::Bool(b) => Some(b.to_string()),
            _ => None,
        }
    }
}

impl WebSocketEvent {
    /// A query string parameter of the upgrade request.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.request.query(name)
    }
}

/// What a proxy integration returns.
///
/// For `$connect` a non-2xx `statusCode` rejects the handshake; for routes with a
/// route response, `body` is sent to the client as one frame.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ProxyResponse {
    /// HTTP status; API Gateway treats a missing one as 200.
    #[serde(default = "ok")]
    pub status_code: u16,
    /// Response headers (on `$connect`, e.g. `Sec-WebSocket-Protocol`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Body: the route response frame, or the handshake's error text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// Whether `body` is base64.
    #[serde(default)]
    pub is_base64_encoded: bool,
}

fn ok() -> u16 {
    200
}

impl ProxyResponse {
    /// A response with `status` and no body.
    pub fn status(status: u16) -> Self {
        ProxyResponse {
            status_code: status,
            headers: BTreeMap::new(),
            body: None,
            is_base64_encoded: false,
        }
    }

    /// A response with `status` and a JSON body.
    pub fn json(status: u16, body: &Value) -> Self {
        ProxyResponse {
            body: Some(body.to_string()),
            ..Self::status(status)
        }
    }

    /// Whether the status is 2xx.
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status_code)
    }
}
