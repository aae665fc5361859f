//! The `$connect` REQUEST authorizer: validates a JWT from the request and
//! answers an IAM policy, like a Lambda authorizer in front of a Cognito user
//! pool or Auth0. One implementation: the local gateway runs it in-process on
//! the same event JSON ([`AuthorizerEvent`]) API Gateway sends a Lambda
//! authorizer, and answers the same response ([`AuthorizerResponse`]).
//!
//! - HS256/384/512 with a shared secret; RS*/PS*/ES256/ES384 with keys from a
//!   JWKS file or URL ([`JwksSource`]). The algorithm must be one of the
//!   configured ones, and the key is chosen by the algorithm's family from its
//!   own source, so a token cannot switch RS256 to HS256 and sign with the
//!   public key; `alg: none` does not parse at all.
//! - `exp` is required; `exp`, `nbf`, `iss`, `aud` (or Cognito access tokens'
//!   `client_id`) and `token_use` are checked.
//! - A token that fails any check is [`AuthorizerError::Unauthorized`] (401,
//!   what a Lambda authorizer signals by failing with `Unauthorized`); a valid
//!   token whose user or groups are not allowed gets a Deny policy (403); keys
//!   that cannot be fetched are [`AuthorizerError::Failed`] (500).
//! - The context carries `userId` (the user claim) and `sessionId` when the
//!   token has one; `usageIdentifierKey` the API key claim when configured.

mod claims;
mod event;
mod jwks;
/// Test tokens, shared with the integration tests.
#[cfg(test)]
#[path = "../../../tests/support/jwt.rs"]
pub(crate) mod test_jwt;
#[cfg(test)]
mod tests;

pub use event::{
    AuthorizerEvent, AuthorizerResponse, Effect, OneOrMany, PolicyDocument, Statement,
    wildcard_match,
};
pub use jwks::JwksSource;

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Map, Value};

use jwks::KeyStore;

/// The algorithms an authorizer may accept, by their JOSE names.
pub const ALGORITHMS: [(&str, Algorithm); 11] = [
    ("HS256", Algorithm::HS256),
    ("HS384", Algorithm::HS384),
    ("HS512", Algorithm::HS512),
    ("RS256", Algorithm::RS256),
    ("RS384", Algorithm::RS384),
    ("RS512", Algorithm::RS512),
    ("PS256", Algorithm::PS256),
    ("PS384", Algorithm::PS384),
    ("PS512", Algorithm::PS512),
    ("ES256", Algorithm::ES256),
    ("ES384", Algorithm::ES384),
];

/// Whether `set` has a key that can verify `alg` tokens.
pub fn jwks_has_key_for(set: &jsonwebtoken::jwk::JwkSet, alg: Algorithm) -> bool {
    set.keys.iter().any(|k| jwks::fits(k, alg))
}

/// Whether `alg` verifies with a shared secret (HS*) rather than a public key.
pub fn is_hmac(alg: Algorithm) -> bool {
    matches!(alg, Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)
}

/// Shortest HMAC secret accepted: a key as long as the hash output (RFC 7518
/// section 3.2 requires at least 256 bits for HS256).
pub const MIN_SECRET_BYTES: usize = 32;

/// Where the token is read from, as API Gateway names identity sources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// `route.request.header.<Name>` (case-insensitive). For `Authorization`,
    /// a `Bearer ` prefix is removed.
    Header(String),
    /// `route.request.querystring.<name>`: what browsers can send, since they
    /// cannot set headers on a WebSocket handshake.
    Query(String),
}

impl IdentitySource {
    /// Parses `route.request.header.X` or `route.request.querystring.X`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let valid = |n: &str| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        };
        if let Some(name) = s.strip_prefix("route.request.header.")
            && valid(name)
        {
            return Ok(IdentitySource::Header(name.to_owned()));
        }
        if let Some(name) = s.strip_prefix("route.request.querystring.")
            && valid(name)
        {
            return Ok(IdentitySource::Query(name.to_owned()));
        }
        Err(format!(
            "identity source `{s}`: use route.request.header.<Name> or \
             route.request.querystring.<name> (e.g. route.request.querystring.token)"
        ))
    }

    /// The source's value in `event`, when present and not empty.
    pub fn value<'e>(&self, event: &'e AuthorizerEvent) -> Option<&'e str> {
        match self {
            IdentitySource::Header(name) => event.header(name),
            IdentitySource::Query(name) => event.query(name),
        }
        .filter(|v| !v.trim().is_empty())
    }
}

impl std::fmt::Display for IdentitySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IdentitySource::Header(n) => write!(f, "route.request.header.{n}"),
            IdentitySource::Query(n) => write!(f, "route.request.querystring.{n}"),
        }
    }
}

/// A shared secret; its bytes never appear in `Debug` output or logs.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(Arc<[u8]>);

impl Secret {
    /// Wraps secret bytes.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Self {
        Secret(Arc::from(bytes.into()))
    }

    /// The bytes.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret(<{} bytes>)", self.0.len())
    }
}

/// Which claims carry what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimNames {
    /// The user id (`principalId`, context `userId`); default `sub`.
    pub user: String,
    /// The user's groups (array or space-separated string); default `cognito:groups`.
    pub groups: String,
    /// The session to join, when the token names one; default `sessionId`.
    pub session: String,
    /// The API key to meter (`usageIdentifierKey`), when configured.
    pub api_key: Option<String>,
}

impl Default for ClaimNames {
    fn default() -> Self {
        ClaimNames {
            user: "sub".into(),
            groups: "cognito:groups".into(),
            session: "sessionId".into(),
            api_key: None,
        }
    }
}

/// What an authorizer accepts.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthorizerConfig {
    /// Every one must be present (API Gateway answers 401 otherwise); the
    /// token is read from the first.
    pub identity_sources: Vec<IdentitySource>,
    /// Accepted `alg` values.
    pub algorithms: Vec<Algorithm>,
    /// The HS* secret.
    pub secret: Option<Secret>,
    /// The RS*/PS*/ES* keys.
    pub jwks: Option<JwksSource>,
    /// Required `iss`, exactly.
    pub issuer: Option<String>,
    /// Accepted `aud` values (or `client_id`, for Cognito access tokens);
    /// empty = not checked.
    pub audience: Vec<String>,
    /// Required `token_use` (`id` or `access` for Cognito).
    pub token_use: Option<String>,
    /// Users allowed in; empty = any.
    pub allowed_users: Vec<String>,
    /// Groups allowed in (a user in any of them is); empty = any.
    pub allowed_groups: Vec<String>,
    /// Claim names.
    pub claims: ClaimNames,
    /// Clock skew allowed on `exp` and `nbf`.
    pub leeway: Duration,
    /// Least time between two JWKS refreshes caused by unknown key ids.
    pub jwks_refresh_interval: Duration,
    /// A fetched JWKS older than this is fetched again.
    pub jwks_max_age: Duration,
}

impl AuthorizerConfig {
    /// A config accepting `algorithms` from the first of `identity_sources`,
    /// no keys yet; the other settings at their defaults (60 s leeway; JWKS
    /// refreshed at most every 30 s for unknown keys, and after an hour).
    pub fn new(identity_sources: Vec<IdentitySource>, algorithms: Vec<Algorithm>) -> Self {
        AuthorizerConfig {
            identity_sources,
            algorithms,
            secret: None,
            jwks: None,
            issuer: None,
            audience: Vec::new(),
            token_use: None,
            allowed_users: Vec::new(),
            allowed_groups: Vec::new(),
            claims: ClaimNames::default(),
            leeway: Duration::from_secs(60),
            jwks_refresh_interval: Duration::from_secs(30),
            jwks_max_age: Duration::from_secs(3600),
        }
    }
}

/// Why the authorizer gave no policy.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthorizerError {
    /// The token is missing, malformed, forged, expired or not for this API:
    /// 401 (a Lambda authorizer fails with the message `Unauthorized`).
    #[error("Unauthorized: {0}")]
    Unauthorized(String),
    /// The authorizer could not decide (keys unreachable, bad event): 500.
    #[error("authorizer failed: {0}")]
    Failed(String),
}

/// An authorizer's answer and how long it may be reused.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What a Lambda authorizer returns.
    pub response: AuthorizerResponse,
    /// The token's `exp` (epoch seconds): a cached answer must not outlive it.
    pub expires_at: Option<i64>,
}

/// A configured authorizer, with its JWKS cache.
pub struct Authorizer {
    config: AuthorizerConfig,
    keys: Option<KeyStore>,
}

impl std::fmt::Debug for Authorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authorizer")
            .field("config", &self.config)
            .finish()
    }
}

fn unauthorized(why: impl Into<String>) -> AuthorizerError {
    AuthorizerError::Unauthorized(why.into())
}

impl Authorizer {
    /// An authorizer for `config`.
    pub fn new(config: AuthorizerConfig) -> Self {
        let keys = config
            .jwks
            .clone()
            .map(|source| KeyStore::new(source, config.jwks_refresh_interval, config.jwks_max_age));
        Authorizer { config, keys }
    }

    /// The configuration.
    pub fn config(&self) -> &AuthorizerConfig {
        &self.config
    }

    /// The values of every identity source, or `None` when one is missing or
    /// empty: API Gateway then answers 401 without invoking the authorizer.
    /// The values are also the key of cached answers.
    pub fn identity<'e>(&self, event: &'e AuthorizerEvent) -> Option<Vec<&'e str>> {
        self.config
            .identity_sources
            .iter()
            .map(|s| s.value(event))
            .collect()
    }

    /// The token: the first identity source's value, without `Bearer `.
    fn token<'e>(&self, event: &'e AuthorizerEvent) -> Option<&'e str> {
        let source = self.config.identity_sources.first()?;
        let value = source.value(event)?.trim();
        Some(match source {
            IdentitySource::Header(_) => match value.get(..7) {
                Some(p) if p.eq_ignore_ascii_case("bearer ") => value[7..].trim_start(),
                _ => value,
            },
            IdentitySource::Query(_) => value,
        })
    }

    /// Runs the authorizer on an event given as JSON, exactly as a Lambda
    /// authorizer receives it.
    pub async fn authorize_json(&self, event: &str) -> Result<AuthorizerResponse, AuthorizerError> {
        let event: AuthorizerEvent = serde_json::from_str(event)
            .map_err(|e| AuthorizerError::Failed(format!("not a REQUEST authorizer event: {e}")))?;
        Ok(self.authorize(&event).await?.response)
    }

    /// Validates the event's token and answers Allow or Deny on its `methodArn`.
    pub async fn authorize(&self, event: &AuthorizerEvent) -> Result<Decision, AuthorizerError> {
        if let Some(missing) = self
            .config
            .identity_sources
            .iter()
            .find(|s| s.value(event).is_none())
        {
            return Err(unauthorized(format!("no {missing}")));
        }
        let token = self
            .token(event)
            .ok_or_else(|| unauthorized("no identity source configured"))?;
        let claims = self.verify(token).await?;
        claims::decide(&self.config, &event.method_arn, claims)
    }

    /// Checks the signature and the registered claims; the claims on success.
    async fn verify(&self, token: &str) -> Result<Map<String, Value>, AuthorizerError> {
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| unauthorized(format!("malformed token: {e}")))?;
        let alg = header.alg;
        if !self.config.algorithms.contains(&alg) {
            return Err(unauthorized(format!(
                "algorithm {alg:?} is not accepted here"
            )));
        }
        let key = if is_hmac(alg) {
            match &self.config.secret {
                Some(s) => DecodingKey::from_secret(s.expose()),
                None => return Err(unauthorized(format!("no secret for {alg:?}"))),
            }
        } else {
            let Some(keys) = &self.keys else {
                return Err(unauthorized(format!("no keys for {alg:?}")));
            };
            keys.key(header.kid.as_deref(), alg)
                .await?
                .ok_or_else(|| unauthorized("no key matches the token's kid"))?
        };
        let mut validation = Validation::new(alg);
        validation.leeway = self.config.leeway.as_secs();
        validation.validate_exp = true;
        validation.validate_nbf = true;
        // Audience: `aud` or Cognito's `client_id`, checked in `claims`.
        validation.validate_aud = false;
        validation.set_required_spec_claims(&["exp"]);
        if let Some(iss) = &self.config.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        let data = jsonwebtoken::decode::<Map<String, Value>>(token, &key, &validation)
            .map_err(|e| unauthorized(describe(e.kind())))?;
        Ok(data.claims)
    }
}

/// A short reason for a failed validation, without token contents.
fn describe(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::ExpiredSignature => "token expired".into(),
        ErrorKind::ImmatureSignature => "token not valid yet (nbf)".into(),
        ErrorKind::InvalidIssuer => "wrong issuer".into(),
        ErrorKind::InvalidSignature => "bad signature".into(),
        ErrorKind::InvalidAlgorithm => "algorithm does not fit the key".into(),
        ErrorKind::MissingRequiredClaim(c) => format!("missing claim `{c}`"),
        ErrorKind::InvalidClaimFormat(c) => format!("malformed claim `{c}`"),
        ErrorKind::Base64(_)
        | ErrorKind::Json(_)
        | ErrorKind::Utf8(_)
        | ErrorKind::InvalidToken => "malformed token".into(),
        other => format!("invalid token ({other:?})"),
    }
}
