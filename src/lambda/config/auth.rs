//! The authorizer's variables, one per key of `[authorizers.NAME]`
//! (`SWITCHBOARD_AUTH_<KEY>`), and the configuration they make.

use jsonwebtoken::Algorithm;

use super::LambdaEnv;
use crate::handlers::authorizer::{
    ALGORITHMS as JOSE_ALGORITHMS, AuthorizerConfig, ClaimNames, IdentitySource, JwksSource,
    MIN_SECRET_BYTES, Secret, is_hmac, jwks_has_key_for,
};
use crate::usage::UsageError;

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

/// The authorizer's configuration, checked like `[authorizers.NAME]`: at
/// least one identity source and algorithm, never `none`; a secret of at
/// least 32 bytes exactly when an HS algorithm is listed; keys exactly when
/// an RS/PS/ES algorithm is; a JWKS file read now and holding a usable key.
pub fn authorizer_config(env: &LambdaEnv) -> Result<AuthorizerConfig, UsageError> {
    let err = |name: &str, what: String| UsageError(format!("{name}: {what}"));
    let sources = env
        .list(IDENTITY_SOURCES)
        .iter()
        .map(|s| IdentitySource::parse(s).map_err(|e| err(IDENTITY_SOURCES, e)))
        .collect::<Result<Vec<_>, _>>()?;
    if sources.is_empty() {
        return Err(err(
            IDENTITY_SOURCES,
            "not set: name where the token is, the same as the API Gateway authorizer's \
             IdentitySource (e.g. route.request.querystring.token)"
                .into(),
        ));
    }
    let mut algorithms: Vec<Algorithm> = Vec::new();
    for name in env.list(ALGORITHMS) {
        let alg = algorithm(&name).map_err(|e| err(ALGORITHMS, e))?;
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(err(
            ALGORITHMS,
            "not set: e.g. RS256 (with SWITCHBOARD_AUTH_JWKS) or HS256 (with \
             SWITCHBOARD_AUTH_SECRET)"
                .into(),
        ));
    }
    let wants_secret = algorithms.iter().any(|a| is_hmac(*a));
    let wants_keys = algorithms.iter().any(|a| !is_hmac(*a));
    let secret = match (env.get(SECRET), wants_secret) {
        (Some(s), true) if s.len() < MIN_SECRET_BYTES => {
            return Err(err(
                SECRET,
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
                SECRET,
                "not set: HS algorithms need the shared secret".into(),
            ));
        }
        (Some(_), false) => {
            return Err(err(
                SECRET,
                "no HS algorithm is listed, so the secret would never be used: remove it".into(),
            ));
        }
        (None, false) => None,
    };
    let jwks = match (env.get(JWKS), wants_keys) {
        (Some(j), true) => Some(jwks(j, &algorithms).map_err(|e| err(JWKS, e))?),
        (None, true) => {
            return Err(err(
                JWKS,
                "not set: RS/PS/ES algorithms need a JWKS URL \
                 (https://cognito-idp.REGION.amazonaws.com/POOL/.well-known/jwks.json) or file"
                    .into(),
            ));
        }
        (Some(_), false) => {
            return Err(err(
                JWKS,
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
    config.issuer = env.get(ISSUER).map(str::to_owned);
    config.audience = env.list(AUDIENCE);
    config.token_use = env.get(TOKEN_USE).map(str::to_owned);
    config.allowed_users = env.list(ALLOWED_USERS);
    config.allowed_groups = env.list(ALLOWED_GROUPS);
    config.claims = ClaimNames {
        user: claim(USER_CLAIM, defaults.user),
        groups: claim(GROUPS_CLAIM, defaults.groups),
        session: claim(SESSION_CLAIM, defaults.session),
        api_key: env.get(API_KEY_CLAIM).map(str::to_owned),
    };
    Ok(config)
}

fn algorithm(name: &str) -> Result<Algorithm, String> {
    if let Some((_, alg)) = JOSE_ALGORITHMS.iter().find(|(n, _)| *n == name) {
        return Ok(*alg);
    }
    if name.eq_ignore_ascii_case("none") {
        return Err("`none` is never accepted: tokens must be signed".into());
    }
    let names: Vec<&str> = JOSE_ALGORITHMS.iter().map(|(n, _)| *n).collect();
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
