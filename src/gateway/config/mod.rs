//! The gateway's configuration: one TOML file (`--config`) with API Gateway's own
//! names (`[api]`, `[[routes]]`, `[stages.*]`, `[authorizers.*]`,
//! `[usage_plans.*]`, `[limits]`, `[tls]`, `[management]`), or the built-in
//! default. Everything is checked here, key files and secrets included; a
//! mistake is a [`UsageError`] naming the file, the line and what to write
//! instead.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use super::route::RouteSelection;
use crate::handlers::HandlerKind;
use crate::usage::{UsageError, toml_error};

mod file;
mod integration;
mod load;
mod security;
#[cfg(test)]
mod security_tests;
#[cfg(test)]
mod tests;
mod validate;
mod validate_authorizer;

pub use security::{
    ApiKeySource, AuthorizerSettings, DEFAULT_AUTHORIZER_CACHE_TTL, Environment, KeyHash,
    Management, ManagementCredentials, Quota, QuotaPeriod, StageSettings, Throttle, TlsSettings,
    UsagePlan,
};

pub use integration::{HttpSpec, Integration, IntegrationSpec};
pub(super) use integration::{Source, Target};

use file::File;

/// API Gateway's WebSocket limits, the defaults of `[limits]`.
pub mod aws_limits {
    use std::time::Duration;
    /// Largest message (all frames of it): 128 KiB.
    pub const MESSAGE_BYTES: usize = crate::envelope::API_GATEWAY_MESSAGE_BYTES;
    /// Largest frame: 32 KiB.
    pub const FRAME_BYTES: usize = 32 * 1024;
    /// Idle connection timeout: 10 minutes.
    pub const IDLE_TIMEOUT: Duration = Duration::from_secs(600);
    /// Maximum connection duration: 2 hours.
    pub const MAX_CONNECTION: Duration = Duration::from_secs(7200);
    /// Integration timeout range: 50 ms to 29 s.
    pub const MIN_TIMEOUT: Duration = Duration::from_millis(50);
    /// Integration timeout range: 50 ms to 29 s (also the default).
    pub const MAX_TIMEOUT: Duration = Duration::from_millis(29_000);
    /// New connections per second per account and Region: 500.
    pub const NEW_CONNECTIONS_PER_SECOND: u32 = 500;
    /// Longest authorizer result cache: 1 hour.
    pub const MAX_AUTHORIZER_TTL: Duration = Duration::from_secs(3600);
}

/// The HTTP listener's own limits (slow or idle clients), the defaults of
/// the `[limits]` keys of the same names. AWS does not publish these for
/// API Gateway's front end; docs/gateway.md says where the values come from.
pub mod listener_limits {
    use std::time::Duration;
    /// A request's headers must arrive within this (the TLS handshake has the same).
    pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
    /// A request's body must arrive within this.
    pub const BODY_TIMEOUT: Duration = Duration::from_secs(30);
    /// A kept-alive connection with no next request for this long is closed.
    pub const KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(60);
    /// Connections accepted but without a complete first request at once;
    /// more wait in the kernel's accept queue (no file descriptor of ours).
    pub const MAX_HANDSHAKES: usize = 256;
}

/// The default route keys of a Switchboard API.
pub use crate::envelope::DEFAULT_ACTIONS;

/// A validated gateway configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayConfig {
    /// `[api] route_selection_expression`, parsed.
    pub route_selection: RouteSelection,
    /// Routes by key.
    pub routes: BTreeMap<String, Route>,
    /// Stage names: the first path segment of the WebSocket URL.
    pub stages: Vec<String>,
    /// `[stages.NAME]` settings; a stage without an entry has the defaults.
    pub stage_settings: BTreeMap<String, StageSettings>,
    /// `[authorizers.NAME]`.
    pub authorizers: BTreeMap<String, AuthorizerSettings>,
    /// `[usage_plans.NAME]`.
    pub usage_plans: BTreeMap<String, UsagePlan>,
    /// `[api] api_key_selection_expression`.
    pub api_key_source: ApiKeySource,
    /// `[limits]`.
    pub limits: Limits,
    /// `[tls]`: serve `wss://` and `https://` only.
    pub tls: Option<TlsSettings>,
    /// `[management]`.
    pub management: Management,
    /// Whether the builtin `$connect` / `$disconnect` handlers also put a
    /// `$join` / `$leave` event in the session's FIFO group. Not a file key:
    /// `--presence-events` of `gateway` and `dev` sets it (default on there);
    /// off in a configuration built in code.
    pub presence_events: bool,
}

/// One route.
#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    /// `$connect`, `$disconnect`, `$default` or a custom key.
    pub key: String,
    /// What runs for it.
    pub integration: Integration,
    /// Whether the integration's response body is sent back to the client
    /// (`route_response_selection_expression = "$default"`).
    pub route_response: bool,
    /// The authorizer (a name in [`GatewayConfig::authorizers`]); `$connect` only.
    pub authorizer: Option<String>,
    /// Whether requests need an API key of a usage plan of the stage.
    pub api_key_required: bool,
    /// This route's token bucket, per stage.
    pub throttle: Option<Throttle>,
}

impl Route {
    /// A route with no authorizer, API key or throttle.
    pub fn new(key: impl Into<String>, integration: Integration, route_response: bool) -> Self {
        Route {
            key: key.into(),
            integration,
            route_response,
            authorizer: None,
            api_key_required: false,
            throttle: None,
        }
    }
}

/// Per-connection limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest client message; larger ones close the connection with 1009.
    pub message_bytes: usize,
    /// Largest client frame; larger ones close the connection with 1009.
    pub frame_bytes: usize,
    /// A connection without client frames for this long is closed (1001).
    pub idle_timeout: Duration,
    /// Every connection is closed this long after it opened (1001).
    pub max_connection: Duration,
    /// Frames queued for a client that does not read before @connections
    /// answers 429 LimitExceededException.
    pub outbound_buffer_frames: usize,
    /// New connections per second, all stages together (bursts of as many);
    /// more are refused with 429.
    pub new_connections_per_second: u32,
    /// HTTP: a request whose headers are not complete this long after the
    /// connection opened (or its first byte arrived) is dropped.
    pub header_timeout: Duration,
    /// HTTP: a request whose body is not complete this long after its
    /// headers is answered 408 and the connection closed.
    pub body_timeout: Duration,
    /// HTTP: a kept-alive connection idle this long between requests is closed.
    pub keepalive_timeout: Duration,
    /// HTTP: accepted connections that have not sent a complete first
    /// request, at most; further clients wait in the accept queue.
    pub max_handshakes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            message_bytes: aws_limits::MESSAGE_BYTES,
            frame_bytes: aws_limits::FRAME_BYTES,
            idle_timeout: aws_limits::IDLE_TIMEOUT,
            max_connection: aws_limits::MAX_CONNECTION,
            outbound_buffer_frames: 64,
            new_connections_per_second: aws_limits::NEW_CONNECTIONS_PER_SECOND,
            header_timeout: listener_limits::HEADER_TIMEOUT,
            body_timeout: listener_limits::BODY_TIMEOUT,
            keepalive_timeout: listener_limits::KEEPALIVE_TIMEOUT,
            max_handshakes: listener_limits::MAX_HANDSHAKES,
        }
    }
}

impl Default for GatewayConfig {
    /// Stage `dev`; `$connect`, `$disconnect`, `$default`, `sendMessage`,
    /// `history` and `direct` on the builtin handlers; API Gateway's limits.
    fn default() -> Self {
        let builtin = |h| Integration::builtin(h);
        let mut routes = BTreeMap::new();
        let mut add = |key: &str, integration, route_response| {
            routes.insert(key.to_owned(), Route::new(key, integration, route_response));
        };
        add("$connect", builtin(HandlerKind::Connect), false);
        add("$disconnect", builtin(HandlerKind::Disconnect), false);
        add("$default", builtin(HandlerKind::Default), true);
        for key in DEFAULT_ACTIONS {
            // With a route response the client hears about refusals
            // (payload too large, unknown connection); success sends nothing.
            add(key, builtin(HandlerKind::Send), true);
        }
        GatewayConfig {
            route_selection: RouteSelection::parse("$request.body.action").expect("valid"),
            routes,
            stages: vec!["dev".into()],
            stage_settings: BTreeMap::new(),
            authorizers: BTreeMap::new(),
            usage_plans: BTreeMap::new(),
            api_key_source: ApiKeySource::Header,
            limits: Limits::default(),
            tls: None,
            management: Management::Loopback,
            presence_events: false,
        }
    }
}

impl GatewayConfig {
    /// Reads and validates a configuration file; relative paths in it start
    /// at its directory, `env:` secrets come from the process environment.
    pub fn load(path: &Path) -> Result<Self, UsageError> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            UsageError(format!(
                "cannot read gateway config {}: {e}",
                path.display()
            ))
        })?;
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        let env = Environment {
            base_dir: dir,
            ..Environment::process()
        };
        Self::parse_in(&text, &path.display().to_string(), &env)
    }

    /// Parses and validates configuration text; `origin` names it in errors.
    /// Paths are relative to the working directory, `env:` secrets come from
    /// the process environment.
    pub fn parse(text: &str, origin: &str) -> Result<Self, UsageError> {
        Self::parse_in(text, origin, &Environment::process())
    }

    /// Like [`parse`](Self::parse), with files and variables from `env`.
    pub fn parse_in(text: &str, origin: &str, env: &Environment<'_>) -> Result<Self, UsageError> {
        let file: File = toml::from_str(text)
            .map_err(|e| UsageError(format!("{origin}{}", toml_error(text, &e))))?;
        file.validate(text, origin, env)
    }

    /// The settings of `stage` (the defaults when it has no table).
    pub fn stage(&self, stage: &str) -> &StageSettings {
        self.stage_settings
            .get(stage)
            .unwrap_or(&security::DEFAULT_STAGE)
    }

    /// The custom route keys (not `$connect`, `$disconnect`, `$default`).
    pub fn custom_route_keys(&self) -> Vec<String> {
        self.routes
            .keys()
            .filter(|k| !k.starts_with('$'))
            .cloned()
            .collect()
    }

    /// Whether any route runs a builtin handler (which needs a queue and table).
    pub fn uses_builtin(&self) -> bool {
        self.routes
            .values()
            .any(|r| matches!(r.integration.spec, IntegrationSpec::Builtin(_)))
    }
}
