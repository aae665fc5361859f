//! Validation of `[authorizers.NAME]`: identity sources, algorithms, the
//! secret (from the environment) and the JWKS (a file read now, or a URL).

use std::time::Duration;

use jsonwebtoken::Algorithm;
use toml::Spanned;

use super::file::{AuthorizerSection, Ctx};
use super::security::DEFAULT_AUTHORIZER_CACHE_TTL;
use super::validate::secret;
use super::{AuthorizerSettings, Environment, aws_limits};
use crate::handlers::authorizer::{
    ALGORITHMS, AuthorizerConfig, ClaimNames, IdentitySource, JwksSource, MIN_SECRET_BYTES,
    is_hmac, jwks_has_key_for,
};
use crate::usage::UsageError;

/// One `[authorizers.NAME]` table, with its secret and JWKS file read.
pub(super) fn authorizer(
    cx: &Ctx<'_>,
    env: &Environment<'_>,
    name: &str,
    section: Spanned<AuthorizerSection>,
) -> Result<AuthorizerSettings, UsageError> {
    let span = section.span();
    let a = section.into_inner();
    let at = |what: &str| format!("authorizers.{name}.{what}");
    let mut sources = Vec::new();
    for s in a.identity_sources.get_ref() {
        sources.push(
            IdentitySource::parse(s.get_ref())
                .map_err(|e| cx.err(s.span(), format!("{}: {e}", at("identity_sources"))))?,
        );
    }
    if sources.is_empty() {
        return Err(cx.err(
            a.identity_sources.span(),
            format!(
                "{} is empty: name where the token is, e.g. \
                 [\"route.request.querystring.token\"]",
                at("identity_sources")
            ),
        ));
    }
    let mut algorithms = Vec::new();
    for s in a.algorithms.get_ref() {
        let alg = match ALGORITHMS.iter().find(|(n, _)| *n == s.get_ref()) {
            Some((_, alg)) => *alg,
            None if s.get_ref().eq_ignore_ascii_case("none") => {
                return Err(cx.err(
                    s.span(),
                    format!(
                        "{}: `none` is never accepted: tokens must be signed",
                        at("algorithms")
                    ),
                ));
            }
            None => {
                let names: Vec<&str> = ALGORITHMS.iter().map(|(n, _)| *n).collect();
                return Err(cx.err(
                    s.span(),
                    format!(
                        "{}: unknown algorithm `{}`: use {}",
                        at("algorithms"),
                        s.get_ref(),
                        names.join(", ")
                    ),
                ));
            }
        };
        if !algorithms.contains(&alg) {
            algorithms.push(alg);
        }
    }
    if algorithms.is_empty() {
        return Err(cx.err(
            a.algorithms.span(),
            format!("{} is empty: e.g. [\"RS256\"]", at("algorithms")),
        ));
    }
    let wants_secret = algorithms.iter().any(|a| is_hmac(*a));
    let wants_keys = algorithms.iter().any(|a| !is_hmac(*a));
    let secret = match (&a.secret, wants_secret) {
        (Some(s), true) => {
            let secret = secret(cx, env, s, &at("secret"))?;
            if secret.expose().len() < MIN_SECRET_BYTES {
                return Err(cx.err(
                    s.span(),
                    format!(
                        "{}: the secret is {} bytes; HS algorithms need at least {MIN_SECRET_BYTES} \
                         (RFC 7518): use a longer random secret",
                        at("secret"),
                        secret.expose().len()
                    ),
                ));
            }
            Some(secret)
        }
        (None, true) => {
            return Err(cx.err(
                span,
                format!(
                    "{}: HS algorithms need secret = \"env:VARIABLE\"",
                    at("secret")
                ),
            ));
        }
        (Some(s), false) => {
            return Err(cx.err(
                s.span(),
                format!(
                    "{}: no HS algorithm is listed, so the secret would never be used: remove it",
                    at("secret")
                ),
            ));
        }
        (None, false) => None,
    };
    let jwks = match (&a.jwks, wants_keys) {
        (Some(j), true) => Some(jwks(cx, env, j, &at("jwks"), &algorithms)?),
        (None, true) => {
            return Err(cx.err(
                span,
                format!(
                    "{}: RS/PS/ES algorithms need jwks = \"<file>\" or \"https://.../jwks.json\"",
                    at("jwks")
                ),
            ));
        }
        (Some(j), false) => {
            return Err(cx.err(
                j.span(),
                format!("{}: no RS/PS/ES algorithm is listed, so the keys would never be used: remove it", at("jwks")),
            ));
        }
        (None, false) => None,
    };
    let cache_ttl = match &a.cache_ttl_secs {
        None => DEFAULT_AUTHORIZER_CACHE_TTL,
        Some(t) if *t.get_ref() <= aws_limits::MAX_AUTHORIZER_TTL.as_secs() => {
            Duration::from_secs(*t.get_ref())
        }
        Some(t) => {
            return Err(cx.err(
                t.span(),
                format!(
                    "{} = {} is out of range: use 0 (off) to 3600 (API Gateway's maximum)",
                    at("cache_ttl_secs"),
                    t.get_ref()
                ),
            ));
        }
    };
    let defaults = ClaimNames::default();
    let mut config = AuthorizerConfig::new(sources, algorithms);
    config.secret = secret;
    config.jwks = jwks;
    config.issuer = a.issuer;
    config.audience = a.audience;
    config.token_use = a.token_use;
    config.allowed_users = a.allowed_users;
    config.allowed_groups = a.allowed_groups;
    config.claims = ClaimNames {
        user: a.user_claim.unwrap_or(defaults.user),
        groups: a.groups_claim.unwrap_or(defaults.groups),
        session: a.session_claim.unwrap_or(defaults.session),
        api_key: a.api_key_claim,
    };
    Ok(AuthorizerSettings { config, cache_ttl })
}

/// `jwks = "file"` (read and checked now) or an http(s) URL (fetched on use).
fn jwks(
    cx: &Ctx<'_>,
    env: &Environment<'_>,
    j: &Spanned<String>,
    key: &str,
    algorithms: &[Algorithm],
) -> Result<JwksSource, UsageError> {
    let value = j.get_ref();
    if value.starts_with("http://") || value.starts_with("https://") {
        let uri: axum::http::Uri = value
            .parse()
            .ok()
            .filter(|u: &axum::http::Uri| u.host().is_some())
            .ok_or_else(|| cx.err(j.span(), format!("{key}: `{value}` is not a URL")))?;
        return Ok(JwksSource::Url(uri));
    }
    let path = env.path(value);
    let text = std::fs::read_to_string(&path).map_err(|e| {
        cx.err(
            j.span(),
            format!(
                "{key}: cannot read {}: {e}: give a JWKS file or an https:// URL",
                path.display()
            ),
        )
    })?;
    let set = JwksSource::parse_document(&text)
        .map_err(|e| cx.err(j.span(), format!("{key}: {}: {e}", path.display())))?;
    let usable: Vec<Algorithm> = algorithms
        .iter()
        .copied()
        .filter(|a| !is_hmac(*a))
        .filter(|a| jwks_has_key_for(&set, *a))
        .collect();
    if usable.is_empty() {
        return Err(cx.err(
            j.span(),
            format!(
                "{key}: {} has no key for {:?}: check `kty`, `crv`, `alg` and `use` of its keys",
                path.display(),
                algorithms
                    .iter()
                    .filter(|a| !is_hmac(**a))
                    .collect::<Vec<_>>()
            ),
        ));
    }
    Ok(JwksSource::Keys(set))
}
