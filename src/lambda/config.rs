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

use clap::ValueEnum;
use jsonwebtoken::Algorithm;

use crate::config::UsageError;
use crate::handlers::authorizer::{
    ALGORITHMS, AuthorizerConfig, ClaimNames, IdentitySource, JwksSource, MIN_SECRET_BYTES, Secret,
    is_hmac, jwks_has_key_for,
};
use crate::handlers::{HandlerKind, HandlerSettings};
use crate::telemetry::LogFormat;

/// `auto` (JSON unless stderr is a terminal), `json` or `pretty`; every function.
pub const LOG_FORMAT: &str = "SWITCHBOARD_LOG_FORMAT";
/// The connections table (connect, disconnect, send); default `switchboard-connections`.
pub const CONNECTIONS_TABLE: &str = "SWITCHBOARD_CONNECTIONS_TABLE";
/// The inbound FIFO queue's URL (send; required).
pub const QUEUE_URL: &str = "SWITCHBOARD_QUEUE_URL";
/// The custom route keys `$default` lists to clients (default), comma-separated;
/// default `sendMessage,history,direct`.
pub const ACTIONS: &str = "SWITCHBOARD_ACTIONS";

/// The authorizer's variables, one per `[authorizers.NAME]` key.
pub mod auth {
    /// Where the token is, e.g. `route.request.querystring.token` (required;
    /// the same list as the API Gateway authorizer's `IdentitySource`).
    pub const IDENTITY_SOURCES: &str = "SWITCHBOARD_AUTH_IDENTITY_SOURCES";
    /// Accepted `alg` values, e.g. `RS256` (required).
    pub const ALGORITHMS: &str = "SWITCHBOARD_AUTH_ALGORITHMS";
    /// The HS256/384/512 secret itself (at least 32 bytes).
    pub const SECRET: &str = "SWITCHBOARD_AUTH_SECRET";
    /// RS/PS/ES keys: an `https://` JWKS URL, or a JWKS file in the zip.
    pub const JWKS: &str = "SWITCHBOARD_AUTH_JWKS";
    /// Required `iss`.
    pub const ISSUER: &str = "SWITCHBOARD_AUTH_ISSUER";
    /// Accepted `aud` (or Cognito `client_id`) values.
    pub const AUDIENCE: &str = "SWITCHBOARD_AUTH_AUDIENCE";
    /// Required `token_use` (Cognito: `id` or `access`).
    pub const TOKEN_USE: &str = "SWITCHBOARD_AUTH_TOKEN_USE";
    /// Users allowed in; others get a Deny.
    pub const ALLOWED_USERS: &str = "SWITCHBOARD_AUTH_ALLOWED_USERS";
    /// Groups allowed in; others get a Deny.
    pub const ALLOWED_GROUPS: &str = "SWITCHBOARD_AUTH_ALLOWED_GROUPS";
    /// The user id claim (default `sub`).
    pub const USER_CLAIM: &str = "SWITCHBOARD_AUTH_USER_CLAIM";
    /// The groups claim (default `cognito:groups`).
    pub const GROUPS_CLAIM: &str = "SWITCHBOARD_AUTH_GROUPS_CLAIM";
    /// The session claim (default `sessionId`).
    pub const SESSION_CLAIM: &str = "SWITCHBOARD_AUTH_SESSION_CLAIM";
    /// The claim answered as `usageIdentifierKey` (usage plans).
    pub const API_KEY_CLAIM: &str = "SWITCHBOARD_AUTH_API_KEY_CLAIM";

    /// Every authorizer variable.
    pub const ALL: [&str; 13] = [
        IDENTITY_SOURCES,
        ALGORITHMS,
        SECRET,
        JWKS,
        ISSUER,
        AUDIENCE,
        TOKEN_USE,
        ALLOWED_USERS,
        ALLOWED_GROUPS,
        USER_CLAIM,
        GROUPS_CLAIM,
        SESSION_CLAIM,
        API_KEY_CLAIM,
    ];
}

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
            Function::Connect | Function::Disconnect => vars.push(CONNECTIONS_TABLE),
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
    Authorizer(AuthorizerConfig),
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
            return authorizer_config(env).map(FunctionConfig::Authorizer);
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
            _ => None,
        };
        let mut settings = HandlerSettings::default();
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

/// The authorizer's configuration, checked like `[authorizers.NAME]`: at
/// least one identity source and algorithm, never `none`; a secret of at
/// least 32 bytes exactly when an HS algorithm is listed; keys exactly when
/// an RS/PS/ES algorithm is; a JWKS file read now and holding a usable key.
pub fn authorizer_config(env: &LambdaEnv) -> Result<AuthorizerConfig, UsageError> {
    let err = |name: &str, what: String| UsageError(format!("{name}: {what}"));
    let sources = env
        .list(auth::IDENTITY_SOURCES)
        .iter()
        .map(|s| IdentitySource::parse(s).map_err(|e| err(auth::IDENTITY_SOURCES, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if sources.is_empty() {
        return Err(err(
            auth::IDENTITY_SOURCES,
            "not set: name where the token is, the same as the API Gateway authorizer's \
             IdentitySource (e.g. route.request.querystring.token)"
                .into(),
        ));
    }
    let mut algorithms: Vec<Algorithm> = Vec::new();
    for name in env.list(auth::ALGORITHMS) {
        let alg = algorithm(&name).map_err(|e| err(auth::ALGORITHMS, e))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(err(
            auth::ALGORITHMS,
            "not set: e.g. RS256 (with SWITCHBOARD_AUTH_JWKS) or HS256 (with \
             SWITCHBOARD_AUTH_SECRET)"
                .into(),
        ));
    }
    let wants_secret = algorithms.iter().any(|a| is_hmac(*a));
    let wants_keys = algorithms.iter().any(|a| !is_hmac(*a));
    let secret = match (env.get(auth::SECRET), wants_secret) {
        (Some(s), true) if s.len() < MIN_SECRET_BYTES => {
            return Err(err(
                auth::SECRET,
                format!(
                    "the secret is {} bytes; HS algorithms need at least {MIN_SECRET_BYTES} \
                     (RFC 7518): use a longer random secret",
                    s.len()
                ),
            ));
        }
        (Some(s), true) => Some(Secret::new(s)),
        (None, true) => {
            return Err(err(
                auth::SECRET,
                "not set: HS algorithms need the shared secret".into(),
            ));
        }
        (Some(_), false) => {
            return Err(err(
                auth::SECRET,
                "no HS algorithm is listed, so the secret would never be used: remove it".into(),
            ));
        }
        (None, false) => None,
    };
    let jwks = match (env.get(auth::JWKS), wants_keys) {
        (Some(j), true) => Some(jwks(j, &algorithms).map_err(|e| err(auth::JWKS, e))?),
        (None, true) => {
            return Err(err(
                auth::JWKS,
                "not set: RS/PS/ES algorithms need a JWKS URL \
                 (https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json) or file"
                    .into(),
            ));
        }
        (Some(_), false) => {
            return Err(err(
                auth::JWKS,
                "no RS/PS/ES algorithm is listed, so the keys would never be used: remove it"
                    .into(),
            ));
        }
        (None, false) => None,
    };
    let defaults = ClaimNames::default();
    let claim = |name: &str, default: String| env.get(name).map(str::to_owned).unwrap_or(default);
    let mut config = AuthorizerConfig::new(sources, algorithms);
    config.secret = secret;
    config.jwks = jwks;
    config.issuer = env.get(auth::ISSUER).map(str::to_owned);
    config.audience = env.list(auth::AUDIENCE);
    config.token_use = env.get(auth::TOKEN_USE).map(str::to_owned);
    config.allowed_users = env.list(auth::ALLOWED_USERS);
    config.allowed_groups = env.list(auth::ALLOWED_GROUPS);
    config.claims = ClaimNames {
        user: claim(auth::USER_CLAIM, defaults.user),
        groups: claim(auth::GROUPS_CLAIM, defaults.groups),
        session: claim(auth::SESSION_CLAIM, defaults.session),
        api_key: env.get(auth::API_KEY_CLAIM).map(str::to_owned),
    };
    Ok(config)
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    if let Some((_, alg)) = ALGORITHMS.iter().find(|(n, _)| *n == name) {
        return Ok(*alg);
    }
    if name.eq_ignore_ascii_case("none") {
        return Err("`none` is never accepted: tokens must be signed".into());
    }
    let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
    Err(format!(
        "unknown algorithm `{name}`: use {}",
        names.join(", ")
    ))
}

/// An http(s) URL (fetched on first use, then cached) or a JWKS file, read
/// and checked now (in a zip it sits under `/var/task`, the working directory).
fn jwks(value: &str, algorithms: &[Algorithm]) -> Result<JwksSource, String> {
    if value.starts_with("http://") || value.starts_with("https://") {
        return value
            .parse::<axum::http::Uri>()
            .ok()
            .filter(|u| u.host().is_some())
            .map(JwksSource::Url)
            .ok_or_else(|| format!("`{value}` is not a URL"));
    }
    let text = std::fs::read_to_string(value)
        .map_err(|e| format!("cannot read {value}: {e}: give a JWKS file or an https:// URL"))?;
    let set = JwksSource::parse_document(&text).map_err(|e| format!("{value}: {e}"))?;
    let asymmetric: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| !is_hmac(*a))
        .collect();
    if !asymmetric.iter().any(|a| jwks_has_key_for(&set, *a)) {
        return Err(format!(
            "{value} has no key for {asymmetric:?}: check `kty`, `crv`, `alg` and `use` of its keys"
        ));
    }
    Ok(JwksSource::Keys(set))
}

#[cfg(test)]
mod tests;
