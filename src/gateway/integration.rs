//! Integrations: what runs for a route. `builtin` (the [`crate::handlers`],
//! in-process, fed the same proxy event JSON as on AWS), `http_proxy` and `http`
//! (an HTTP endpoint, see [`super::http_integration`]) and `mock` (a fixed answer).
//!
//! Every invocation is bounded by the integration's timeout (50 ms–29 s, API
//! Gateway's range; default 29 s). A timeout, a failed call or a handler error is
//! an [`IntegrationError`]: the client gets `Internal server error`.

use std::time::Duration;

use serde::Deserialize;
use std::collections::BTreeMap;

use super::config::aws_limits;
use super::http_integration::{HttpClient, HttpSpec};
use crate::handlers::{HandlerKind, Handlers, ProxyResponse, WebSocketEvent};

/// A configured integration.
#[derive(Debug, Clone, PartialEq)]
pub struct Integration {
    /// What it calls.
    pub spec: IntegrationSpec,
    /// How long an invocation may take.
    pub timeout: Duration,
}

/// The kinds of integration.
#[derive(Debug, Clone, PartialEq)]
pub enum IntegrationSpec {
    /// A builtin handler, in-process (AWS_PROXY to the Lambda code on AWS).
    Builtin(HandlerKind),
    /// HTTP_PROXY: the frame is POSTed as is; the answer is passed back.
    HttpProxy(HttpSpec),
    /// HTTP: like `http_proxy`, with an optional request template.
    Http(HttpSpec),
    /// MOCK: answers `status_code` and the rendered `response_template`.
    Mock {
        /// Status (non-2xx on `$connect` rejects the handshake).
        status_code: u16,
        /// Route response body.
        response_template: Option<Template>,
    },
}

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// No answer within the integration timeout.
    #[error("integration timed out after {0:?}")]
    Timeout(Duration),
    /// The call failed (connection refused, bad answer, handler error).
    #[error("integration failed: {0}")]
    Failed(String),
}

/// `integration = { type = ..., ... }` as written.
#[derive(Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum IntegrationSection {
    Builtin {
        handler: String,
        timeout_ms: Option<u64>,
    },
    HttpProxy {
        uri: String,
        method: Option<String>,
        timeout_ms: Option<u64>,
        #[serde(default)]
        request_parameters: BTreeMap<String, String>,
    },
    Http {
        uri: String,
        method: Option<String>,
        timeout_ms: Option<u64>,
        #[serde(default)]
        request_parameters: BTreeMap<String, String>,
        request_template: Option<String>,
    },
    Mock {
        status_code: Option<u16>,
        response_template: Option<String>,
        timeout_ms: Option<u64>,
    },
}

fn timeout(ms: Option<u64>) -> Result<Duration, String> {
    let Some(ms) = ms else {
        return Ok(aws_limits::MAX_TIMEOUT);
    };
    let d = Duration::from_millis(ms);
    if d < aws_limits::MIN_TIMEOUT || d > aws_limits::MAX_TIMEOUT {
        return Err(format!(
            "timeout_ms = {ms} is out of API Gateway's range: use 50 to 29000"
        ));
    }
    Ok(d)
}

impl Integration {
    /// A builtin handler with the default timeout.
    pub fn builtin(kind: HandlerKind) -> Self {
        Integration {
            spec: IntegrationSpec::Builtin(kind),
            timeout: aws_limits::MAX_TIMEOUT,
        }
    }

    /// A mock answering `status_code` and `template`.
    pub fn mock(status_code: u16, template: Option<&str>) -> Result<Self, String> {
        Ok(Integration {
            spec: IntegrationSpec::Mock {
                status_code,
                response_template: template.map(Template::parse).transpose()?,
            },
            timeout: aws_limits::MAX_TIMEOUT,
        })
    }

    pub(super) fn from_section(s: IntegrationSection) -> Result<Self, String> {
        Ok(match s {
            IntegrationSection::Builtin {
                handler,
                timeout_ms,
            } => Integration {
                spec: IntegrationSpec::Builtin(handler.parse()?),
                timeout: timeout(timeout_ms)?,
            },
            IntegrationSection::HttpProxy {
                uri,
                method,
                timeout_ms,
                request_parameters,
            } => Integration {
                spec: IntegrationSpec::HttpProxy(HttpSpec::new(
                    &uri,
                    method.as_deref(),
                    &request_parameters,
                    None,
                    true,
                )?),
                timeout: timeout(timeout_ms)?,
            },
            IntegrationSection::Http {
                uri,
                method,
                timeout_ms,
                request_parameters,
                request_template,
            } => Integration {
                spec: IntegrationSpec::Http(HttpSpec::new(
                    &uri,
                    method.as_deref(),
                    &request_parameters,
                    request_template.as_deref(),
                    false,
                )?),
                timeout: timeout(timeout_ms)?,
            },
            IntegrationSection::Mock {
                status_code,
                response_template,
                timeout_ms,
            } => {
                let status_code = status_code.unwrap_or(200);
                if !(100..=599).contains(&status_code) {
                    return Err(format!("status_code = {status_code} is not an HTTP status"));
                }
                Integration {
                    timeout: timeout(timeout_ms)?,
                    ..Integration::mock(status_code, response_template.as_deref())?
                }
            }
        })
    }
}

/// Runs integrations.
#[derive(Clone, Debug)]
pub struct Invoker {
    handlers: Option<Handlers>,
    http: HttpClient,
}

impl Invoker {
    /// An invoker; `handlers` serve the `builtin` integrations.
    pub fn new(handlers: Option<Handlers>) -> Self {
        Invoker {
            handlers,
            http: HttpClient::new(),
        }
    }

    /// Invokes `integration` for `event`, within its timeout.
    pub async fn invoke(
        &self,
        integration: &Integration,
        event: &WebSocketEvent,
    ) -> Result<ProxyResponse, IntegrationError> {
        let call = async {
            match &integration.spec {
                IntegrationSpec::Builtin(kind) => {
                    let handlers = self.handlers.as_ref().ok_or_else(|| {
                        IntegrationError::Failed("no backend for builtin handlers".into())
                    })?;
                    // The same JSON a Lambda function receives.
                    let json = serde_json::to_string(event)
                        .map_err(|e| IntegrationError::Failed(e.to_string()))?;
                    handlers
                        .handle_json(*kind, &json)
                        .await
                        .map_err(|e| IntegrationError::Failed(e.to_string()))
                }
                IntegrationSpec::HttpProxy(spec) | IntegrationSpec::Http(spec) => self
                    .http
                    .call(spec, event)
                    .await
                    .map_err(IntegrationError::Failed),
                IntegrationSpec::Mock {
                    status_code,
                    response_template,
                } => Ok(ProxyResponse {
                    body: response_template.as_ref().map(|t| t.render(event)),
                    ..ProxyResponse::status(*status_code)
                }),
            }
        };
        tokio::time::timeout(integration.timeout, call)
            .await
            .map_err(|_| IntegrationError::Timeout(integration.timeout))?
    }
}

/// A text template with `$context.<variable>` and `$input.body` placeholders
/// (the subset of API Gateway's mapping templates the local gateway supports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Context(&'static str),
    InputBody,
}

/// The `$context` variables a template or request parameter may use.
pub const CONTEXT_VARIABLES: [&str; 14] = [
    "connectionId",
    "requestId",
    "messageId",
    "routeKey",
    "eventType",
    "stage",
    "domainName",
    "apiId",
    "connectedAt",
    "requestTimeEpoch",
    "identity.sourceIp",
    "identity.userAgent",
    "disconnectStatusCode",
    "disconnectReason",
];

/// Looks a context variable up by name.
pub fn context_variable(name: &str) -> Option<&'static str> {
    CONTEXT_VARIABLES.iter().copied().find(|v| *v == name)
}

/// The value of context variable `name` for `event` (empty when absent).
pub fn context_value(event: &WebSocketEvent, name: &str) -> String {
    let c = &event.request_context;
    match name {
        "connectionId" => c.connection_id.clone(),
        "requestId" => c.request_id.clone(),
        "messageId" => c.message_id.clone().unwrap_or_default(),
        "routeKey" => c.route_key.clone(),
        "eventType" => serde_json::to_value(c.event_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        "stage" => c.stage.clone(),
        "domainName" => c.domain_name.clone(),
        "apiId" => c.api_id.clone().unwrap_or_default(),
        "connectedAt" => c.connected_at.to_string(),
        "requestTimeEpoch" => c.request_time_epoch.to_string(),
        "identity.sourceIp" => c.identity.source_ip.clone(),
        "identity.userAgent" => c.identity.user_agent.clone().unwrap_or_default(),
        "disconnectStatusCode" => c
            .disconnect_status_code
            .map(|c| c.to_string())
            .unwrap_or_default(),
        "disconnectReason" => c.disconnect_reason.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

impl Template {
    /// Parses a template; unknown `$context` variables are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            pieces.push(Piece::Text(rest[..i].to_owned()));
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$input.body") {
                pieces.push(Piece::InputBody);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("$context.") {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(after.len());
                let name = after[..len].trim_end_matches('.');
                let var = context_variable(name).ok_or_else(|| {
                    format!(
                        "unknown template variable `$context.{name}`: use one of {} or $input.body",
                        CONTEXT_VARIABLES.join(", ")
                    )
                })?;
                pieces.push(Piece::Context(var));
                rest = &after[name.len()..];
            } else {
                pieces.push(Piece::Text("$".into()));
                rest = &rest[1..];
            }
        }
        pieces.push(Piece::Text(rest.to_owned()));
        pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
        Ok(Template(pieces))
    }

    /// The template with `event`'s values filled in.
    pub fn render(&self, event: &WebSocketEvent) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Context(name) => out.push_str(&context_value(event, name)),
                Piece::InputBody => out.push_str(event.body.as_deref().unwrap_or_default()),
            }
        }
        out
    }
}
