//! What each Lambda function reads from its environment, validated once at
//! cold start. The variables are the ones `deploy/template.json` sets; the
//! authorizer's mirror the keys of `[authorizers.NAME]` in
//! `switchboard.example.toml` (`SWITCHBOARD_AUTH_<KEY>`), with lists written
//! comma-separated.
//!
//! Two rules that differ from the command line, both because a function's
//! environment is written once, in a template, and read by nobody else:
//! - an empty value counts as unset (CloudFormation cannot leave a variable
//!   out conditionally, so an optional parameter arrives as `""`);
//! - a `SWITCHBOARD_*` variable the function does not read is an error, like
//!   an unknown key in `switchboard.toml`: a misspelt `SWITCHBOARD_AUTH_ISUER`
//!   would otherwise switch the issuer check off without a word.

use std::collections::BTreeMap;

use crate::handlers::authorizer::AuthorizerConfig;
use crate::handlers::{HandlerKind, HandlerSettings};
use crate::telemetry::LogFormat;
use crate::usage::UsageError;
use clap::ValueEnum;

/// `auto` (JSON unless stderr is a terminal), `json` or `pretty`; every function.
pub const LOG_FORMAT: &str = "SWITCHBOARD_LOG_FORMAT";
/// The connections table (connect, disconnect, send); default `switchboard-connections`.
pub const CONNECTIONS_TABLE: &str = "SWITCHBOARD_CONNECTIONS_TABLE";
/// The inbound FIFO queue's URL (send; required).
pub const QUEUE_URL: &str = "SWITCHBOARD_QUEUE_URL";
/// The custom route keys `$default` lists to clients (default), comma-separated;
/// default `sendMessage,history,direct,resume,presence`.
pub const ACTIONS: &str = "SWITCHBOARD_ACTIONS";
/// `on` or `off` (connect, disconnect): also put a `$join` / `$leave` event in
/// the session's FIFO group (`SWITCHBOARD_QUEUE_URL` then required). Default:
/// on when the function is given `SWITCHBOARD_QUEUE_URL`, off otherwise.
pub const PRESENCE_EVENTS: &str = "SWITCHBOARD_PRESENCE_EVENTS";

/// The authorizer's variables and configuration.
pub mod auth;

pub use auth::authorizer_config;

/// The five Lambda functions, one binary each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Function {
    /// `$connect`: stores the connection.
    Connect,
    /// `$disconnect`: deletes it.
    Disconnect,
    /// `$default`: tells the sender which actions exist.
    Default,
    /// The custom routes: enqueue envelope v1.
    Send,
    /// The `$connect` REQUEST authorizer.
    Authorizer,
}

impl Function {
    /// Every function.
    pub const ALL: [Function; 5] = [
        Function::Connect,
        Function::Disconnect,
        Function::Default,
        Function::Send,
        Function::Authorizer,
    ];

    /// The binary (and zip) name: `switchboard-connect`, ...
    pub fn binary(self) -> &'static str {
        match self {
            Function::Connect => "switchboard-connect",
            Function::Disconnect => "switchboard-disconnect",
            Function::Default => "switchboard-default",
            Function::Send => "switchboard-send",
            Function::Authorizer => "switchboard-authorizer",
        }
    }

    /// The handler it runs; `None` for the authorizer.
    pub fn handler(self) -> Option<HandlerKind> {
        match self {
            Function::Connect => Some(HandlerKind::Connect),
            Function::Disconnect => Some(HandlerKind::Disconnect),
            Function::Default => Some(HandlerKind::Default),
            Function::Send => Some(HandlerKind::Send),
            Function::Authorizer => None,
        }
    }

    /// The `SWITCHBOARD_*` variables it reads.
    pub fn env_vars(self) -> Vec<&'static str> {
        let mut vars = vec![LOG_FORMAT];
        match self {
            Function::Connect | Function::Disconnect => {
                vars.extend([CONNECTIONS_TABLE, QUEUE_URL, PRESENCE_EVENTS])
            }
            Function::Send => vars.extend([QUEUE_URL, CONNECTIONS_TABLE]),
            Function::Default => vars.push(ACTIONS),
            Function::Authorizer => vars.extend(auth::ALL),
        }
        vars
    }
}

/// A function's environment: the variables it was started with.
#[derive(Debug, Clone, Default)]
pub struct LambdaEnv {
    vars: BTreeMap<String, String>,
}

impl LambdaEnv {
    /// The process environment (variables that are not UTF-8 are skipped:
    /// none of ours can be).
    pub fn process() -> Self {
        Self::from_pairs(
            std::env::vars_os()
                .filter_map(|(k, v)| Some((k.into_string().ok()?, v.into_string().ok()?))),
        )
    }

    /// An environment from name/value pairs (tests, the template check).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Self {
        LambdaEnv {
            vars: pairs
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
        }
    }

    /// A variable's value, trimmed; `None` when unset or empty.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.vars
            .get(name)
            .map(|v| v.trim())
            .filter(|v| !v.is_empty())
    }

    /// A comma-separated list (empty items dropped).
    fn list(&self, name: &str) -> Vec<String> {
        self.get(name)
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `SWITCHBOARD_*` variables that `function` does not read.
    pub fn unknown(&self, function: Function) -> Vec<&str> {
        let known = function.env_vars();
        self.vars
            .keys()
            .map(String::as_str)
            .filter(|k| k.starts_with("SWITCHBOARD_") && !known.contains(k))
            .collect()
    }
}

/// The validated configuration of one function.
#[derive(Debug, Clone, PartialEq)]
pub enum FunctionConfig {
    /// Connect, disconnect, default or send.
    Edge(EdgeConfig),
    /// The authorizer.
    Authorizer(Box<AuthorizerConfig>),
}

/// What an edge function (connect, disconnect, default, send) needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeConfig {
    /// Which function (connect, disconnect, default or send).
    pub function: Function,
    /// The connections table; `None` for default, which touches no table.
    pub connections_table: Option<String>,
    /// The inbound FIFO queue; send only.
    pub queue_url: Option<String>,
    /// Handler settings (the actions `$default` lists).
    pub settings: HandlerSettings,
}

impl EdgeConfig {
    /// The handler it runs.
    pub fn kind(&self) -> HandlerKind {
        self.function
            .handler()
            .expect("an edge config is never the authorizer's")
    }
}

impl FunctionConfig {
    /// Reads and checks `function`'s configuration from `env`.
    pub fn from_env(function: Function, env: &LambdaEnv) -> Result<Self, UsageError> {
        if let Some(name) = env.unknown(function).first() {
            return Err(UsageError(format!(
                "{name} is not read by {}: remove it or fix its name (it reads {})",
                function.binary(),
                function.env_vars().join(", ")
            )));
        }
        log_format(env)?;
        if function == Function::Authorizer {
            return authorizer_config(env).map(|c| FunctionConfig::Authorizer(Box::new(c)));
        }
        let connections_table = match function {
            Function::Default => None,
            _ => Some(
                env.get(CONNECTIONS_TABLE)
                    .unwrap_or("switchboard-connections")
                    .to_owned(),
            ),
        };
        let queue_url = match function {
            Function::Send => Some(queue_url(env)?),
            Function::Connect | Function::Disconnect if env.get(QUEUE_URL).is_some() => {
                Some(queue_url(env)?)
            }
            _ => None,
        };
        let mut settings = HandlerSettings::default();
        if matches!(function, Function::Connect | Function::Disconnect) {
            settings.presence_events = match env.get(PRESENCE_EVENTS) {
                None => queue_url.is_some(),
                Some("off") => false,
                Some("on") if queue_url.is_some() => true,
                Some("on") => {
                    return Err(UsageError(format!(
                        "{PRESENCE_EVENTS} is on but {QUEUE_URL} is not set: presence                          events go to the inbound FIFO queue; set it, or turn them off"
                    )));
                }
                Some(v) => {
                    return Err(UsageError(format!(
                        "{PRESENCE_EVENTS}: `{v}` is not on or off"
                    )));
                }
            };
        }
        if function == Function::Send {
            // Set by Lambda itself: the callback of frames that came in
            // through a custom domain (HandlerSettings::region).
            settings.region = env.get("AWS_REGION").map(str::to_owned);
        }
        if function == Function::Default {
            let actions = env.list(ACTIONS);
            if let Some(bad) = actions
                .iter()
                .find(|a| a.starts_with('$') || a.chars().any(char::is_whitespace))
            {
                return Err(UsageError(format!(
                    "{ACTIONS}: `{bad}` is not a custom route key: list the API's custom \
                     routes, e.g. sendMessage,history,direct"
                )));
            }
            if !actions.is_empty() {
                settings.known_actions = actions;
            }
        }
        Ok(FunctionConfig::Edge(EdgeConfig {
            function,
            connections_table,
            queue_url,
            settings,
        }))
    }
}

/// `SWITCHBOARD_LOG_FORMAT`, default `auto`.
pub fn log_format(env: &LambdaEnv) -> Result<LogFormat, UsageError> {
    match env.get(LOG_FORMAT) {
        None => Ok(LogFormat::Auto),
        Some(v) => LogFormat::from_str(v, true).map_err(|_| {
            UsageError(format!(
                "{LOG_FORMAT}: `{v}` is not a log format: use json (CloudWatch), auto or pretty"
            ))
        }),
    }
}

fn queue_url(env: &LambdaEnv) -> Result<String, UsageError> {
    let url = env.get(QUEUE_URL).ok_or_else(|| {
        UsageError(format!(
            "{QUEUE_URL} is not set: give the inbound FIFO queue's URL \
             (https://sqs.REGION.amazonaws.com/ACCOUNT/NAME.fifo)"
        ))
    })?;
    if url.starts_with("embedded://") {
        return Err(UsageError(format!(
            "{QUEUE_URL}: `{url}` is an embedded queue; a Lambda function needs an SQS FIFO queue URL"
        )));
    }
    crate::cli::fifo_queue_url(url).map_err(|e| UsageError(format!("{QUEUE_URL}: {e}")))
}

#[cfg(test)]
mod tests;
