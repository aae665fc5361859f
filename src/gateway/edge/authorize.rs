//! The gateway's side of a REQUEST authorizer, as API Gateway runs one: it
//! refuses a request missing an identity source (401) without invoking the
//! authorizer, caches answers per identity for the configured TTL, evaluates
//! the returned policy against the request's method ARN (Deny → 403), and
//! turns the answer into `requestContext.authorizer`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::time::Instant;

use crate::gateway::config::AuthorizerSettings;
use crate::handlers::authorizer::{
    Authorizer, AuthorizerError, AuthorizerEvent, AuthorizerResponse,
};

/// Most cached answers per authorizer; when full, expired ones go, and if
/// none has expired the cache starts over.
const MAX_CACHED: usize = 10_000;

/// Why a handshake was not authorized.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuthRefusal {
    /// An identity source is missing or empty: 401, the authorizer did not run.
    MissingIdentity,
    /// The authorizer refused the token: 401.
    Unauthorized,
    /// The policy does not allow the method ARN: 403. `cached`: the answer
    /// came from the cache.
    Denied {
        /// Whether the Deny was reused from the cache.
        cached: bool,
    },
    /// The authorizer failed or answered something unusable: 500.
    Failed,
}

/// An allowed handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Authorized {
    /// `requestContext.authorizer`: the context, `principalId` and
    /// `integrationLatency` (ms).
    pub context: Map<String, Value>,
    /// The authorizer's `usageIdentifierKey`.
    pub usage_identifier_key: Option<String>,
    /// Whether the answer came from the cache.
    pub cached: bool,
}

struct Cached {
    response: AuthorizerResponse,
    until: Instant,
}

/// A configured authorizer with its answer cache.
pub struct GatewayAuthorizer {
    authorizer: Authorizer,
    ttl: Duration,
    cache: Mutex<HashMap<[u8; 32], Cached>>,
}

impl std::fmt::Debug for GatewayAuthorizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GatewayAuthorizer")
            .field("ttl", &self.ttl)
            .finish()
    }
}

/// The cache key of an identity on a stage: a hash, so that tokens are not
/// kept as keys. Per stage, so that an answer for one stage's method ARN is
/// not reused (and then denied) on another.
fn identity_key(stage: &str, values: &[&str]) -> [u8; 32] {
    let mut ctx = aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256);
    for v in std::iter::once(&stage).chain(values) {
        ctx.update(&(v.len() as u64).to_be_bytes());
        ctx.update(v.as_bytes());
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(ctx.finish().as_ref());
    out
}

impl GatewayAuthorizer {
    /// The authorizer of `settings`.
    pub fn new(settings: &AuthorizerSettings) -> Self {
        GatewayAuthorizer {
            authorizer: Authorizer::new(settings.config.clone()),
            ttl: settings.cache_ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Authorizes one `$connect`.
    pub async fn authorize(&self, event: &AuthorizerEvent) -> Result<Authorized, AuthRefusal> {
        let Some(identity) = self.authorizer.identity(event) else {
            return Err(AuthRefusal::MissingIdentity);
        };
        let key = identity_key(&event.request_context.stage, &identity);
        if let Some(response) = self.cached(&key) {
            return finish(event, response, 0, true);
        }
        let started = std::time::Instant::now();
        let decision = match self.authorizer.authorize(event).await {
            Ok(d) => d,
            Err(AuthorizerError::Unauthorized(why)) => {
                tracing::info!(connection = %event.request_context.connection_id, reason = %why, "authorizer: Unauthorized");
                return Err(AuthRefusal::Unauthorized);
            }
            Err(AuthorizerError::Failed(why)) => {
                tracing::warn!(connection = %event.request_context.connection_id, error = %why, "authorizer failed");
                return Err(AuthRefusal::Failed);
            }
        };
        let latency = started.elapsed().as_millis() as u64;
        if !self.ttl.is_zero() {
            // Never reuse an answer past the token's own expiry.
            let left = decision
                .expires_at
                .map(|exp| {
                    Duration::from_secs(u64::try_from(exp - crate::sync::now_secs()).unwrap_or(0))
                })
                .unwrap_or(self.ttl);
            let keep = self.ttl.min(left);
            if !keep.is_zero() {
                self.store(key, decision.response.clone(), keep);
            }
        }
        finish(event, decision.response, latency, false)
    }

    fn cached(&self, key: &[u8; 32]) -> Option<AuthorizerResponse> {
        if self.ttl.is_zero() {
            return None;
        }
        let cache = crate::sync::lock(&self.cache);
        cache
            .get(key)
            .filter(|c| c.until > Instant::now())
            .map(|c| c.response.clone())
    }

    fn store(&self, key: [u8; 32], response: AuthorizerResponse, keep: Duration) {
        let now = Instant::now();
        let mut cache = crate::sync::lock(&self.cache);
        if cache.len() >= MAX_CACHED {
            cache.retain(|_, c| c.until > now);
            if cache.len() >= MAX_CACHED {
                cache.clear();
            }
        }
        cache.insert(
            key,
            Cached {
                response,
                until: now + keep,
            },
        );
    }
}

/// Evaluates the policy and builds `requestContext.authorizer`.
fn finish(
    event: &AuthorizerEvent,
    response: AuthorizerResponse,
    latency_ms: u64,
    cached: bool,
) -> Result<Authorized, AuthRefusal> {
    if !response.policy_document.allows(&event.method_arn) {
        tracing::info!(connection = %event.request_context.connection_id, principal = %response.principal_id, "authorizer: Deny");
        return Err(AuthRefusal::Denied { cached });
    }
    // API Gateway accepts only strings, numbers and booleans in the context.
    if let Some((k, _)) = response
        .context
        .iter()
        .find(|(_, v)| !(v.is_string() || v.is_number() || v.is_boolean()))
    {
        tracing::warn!(key = %k, "authorizer context value is not a string, number or boolean");
        return Err(AuthRefusal::Failed);
    }
    let mut context = response.context;
    context.insert("principalId".into(), Value::String(response.principal_id));
    context.insert("integrationLatency".into(), Value::from(latency_ms));
    Ok(Authorized {
        context,
        usage_identifier_key: response.usage_identifier_key,
        cached,
    })
}
