//! The checks after the signature: audience, token use, who may come in, and
//! the answer built from the claims.

use serde_json::{Map, Value};

use super::{
    AuthorizerConfig, AuthorizerError, AuthorizerResponse, Decision, Effect, PolicyDocument,
};

fn text<'c>(claims: &'c Map<String, Value>, name: &str) -> Option<&'c str> {
    claims.get(name).and_then(Value::as_str)
}

/// `aud` (a string or a list) or, for Cognito access tokens, `client_id`.
fn audience_ok(config: &AuthorizerConfig, claims: &Map<String, Value>) -> bool {
    if config.audience.is_empty() {
        return true;
    }
    let listed = |v: &str| config.audience.iter().any(|a| a == v);
    match claims.get("aud") {
        Some(Value::String(a)) => listed(a),
        Some(Value::Array(list)) => list.iter().filter_map(Value::as_str).any(listed),
        Some(_) => false,
        None => text(claims, "client_id").is_some_and(listed),
    }
}

/// Groups as a JSON list (Cognito) or a space-separated string (some IdPs).
fn groups(claims: &Map<String, Value>, name: &str) -> Vec<String> {
    match claims.get(name) {
        Some(Value::Array(list)) => list
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(Value::String(s)) => s.split_whitespace().map(str::to_owned).collect(),
        _ => Vec::new(),
    }
}

/// The answer for verified `claims`.
pub(super) fn decide(
    config: &AuthorizerConfig,
    method_arn: &str,
    claims: Map<String, Value>,
) -> Result<Decision, AuthorizerError> {
    let unauthorized = |why: String| Err(AuthorizerError::Unauthorized(why));
    if !audience_ok(config, &claims) {
        return unauthorized("wrong audience".into());
    }
    if let Some(expected) = &config.token_use
        && text(&claims, "token_use") != Some(expected.as_str())
    {
        return unauthorized(format!("token_use is not `{expected}`"));
    }
    let user = match claims.get(&config.claims.user) {
        Some(Value::String(u)) if !u.is_empty() => u.clone(),
        _ => return unauthorized(format!("no `{}` claim", config.claims.user)),
    };
    let user_ok = config.allowed_users.is_empty() || config.allowed_users.contains(&user);
    let group_ok = config.allowed_groups.is_empty()
        || groups(&claims, &config.claims.groups)
            .iter()
            .any(|g| config.allowed_groups.contains(g));
    let effect = if user_ok && group_ok {
        Effect::Allow
    } else {
        Effect::Deny
    };
    let mut context = Map::new();
    context.insert("userId".into(), Value::String(user.clone()));
    if let Some(session) = text(&claims, &config.claims.session).filter(|s| !s.is_empty()) {
        context.insert("sessionId".into(), Value::String(session.to_owned()));
    }
    let usage_identifier_key = config
        .claims
        .api_key
        .as_deref()
        .and_then(|c| text(&claims, c))
        .map(str::to_owned);
    Ok(Decision {
        response: AuthorizerResponse {
            principal_id: user,
            policy_document: PolicyDocument::single(effect, method_arn),
            context,
            usage_identifier_key,
        },
        expires_at: claims.get("exp").and_then(Value::as_i64),
    })
}
