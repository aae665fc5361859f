//! The `integration = { type = ..., ... }` of a route, as written and as checked:
//! `builtin`, `http_proxy`, `http` and `mock`. `gateway::integration` runs them;
//! this is only their configuration, so config never imports the runtime.

use std::collections::BTreeMap;
use std::time::Duration;

use axum::http::{HeaderName, Method, Uri};
use serde::Deserialize;

use super::aws_limits;
use crate::gateway::template::{Template, context_variable};
use crate::handlers::HandlerKind;

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

/// Where an `http`/`http_proxy` integration sends requests.
#[derive(Debug, Clone, PartialEq)]
pub struct HttpSpec {
    /// `http://host:port/path`.
    pub uri: Uri,
    /// Request method (default POST).
    pub method: Method,
    pub(in crate::gateway) parameters: Vec<(Target, Source)>,
    pub(in crate::gateway) template: Option<Template>,
    pub(in crate::gateway) forward_connect_headers: bool,
}

/// Where a request parameter goes.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::gateway) enum Target {
    Header(HeaderName),
    Query(String),
}

/// Where a request parameter's value comes from.
#[derive(Debug, Clone, PartialEq)]
pub(in crate::gateway) enum Source {
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
    fn new(
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
