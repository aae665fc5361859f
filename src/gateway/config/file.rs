//! The configuration file as written (one struct per TOML section) and the
//! context errors about it need. `load.rs` checks it into a `GatewayConfig`.

use std::collections::BTreeMap;

use serde::Deserialize;
use toml::Spanned;

use super::integration::IntegrationSection;
use crate::usage::UsageError;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct File {
    #[serde(default)]
    pub(super) api: ApiSection,
    pub(super) routes: Option<Vec<Spanned<RouteSection>>>,
    pub(super) stages: Option<BTreeMap<String, Spanned<StageSection>>>,
    #[serde(default)]
    pub(super) authorizers: BTreeMap<String, Spanned<AuthorizerSection>>,
    #[serde(default)]
    pub(super) usage_plans: BTreeMap<String, Spanned<UsagePlanSection>>,
    #[serde(default)]
    pub(super) limits: LimitsSection,
    pub(super) tls: Option<Spanned<TlsSection>>,
    #[serde(default)]
    pub(super) management: ManagementSection,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ApiSection {
    pub(super) route_selection_expression: Option<Spanned<String>>,
    pub(super) api_key_selection_expression: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RouteSection {
    pub(super) key: String,
    pub(super) integration: IntegrationSection,
    pub(super) route_response_selection_expression: Option<String>,
    pub(super) authorizer: Option<Spanned<String>>,
    #[serde(default)]
    pub(super) api_key_required: bool,
    pub(super) throttle: Option<Spanned<ThrottleSection>>,
}

/// `{ rate = 100.0, burst = 50 }`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct ThrottleSection {
    pub(super) rate: f64,
    pub(super) burst: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct StageSection {
    pub(super) throttle: Option<Spanned<ThrottleSection>>,
    #[serde(default)]
    pub(super) ip_allow: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) ip_deny: Vec<Spanned<String>>,
    #[serde(default)]
    pub(super) trusted_proxy: bool,
    pub(super) connect_throttle_per_ip: Option<Spanned<ThrottleSection>>,
    #[serde(default)]
    pub(super) route_throttle: BTreeMap<String, Spanned<ThrottleSection>>,
    #[serde(default)]
    pub(super) allowed_origins: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct AuthorizerSection {
    pub(super) identity_sources: Spanned<Vec<Spanned<String>>>,
    pub(super) algorithms: Spanned<Vec<Spanned<String>>>,
    pub(super) secret: Option<Spanned<String>>,
    pub(super) jwks: Option<Spanned<String>>,
    pub(super) issuer: Option<String>,
    #[serde(default)]
    pub(super) audience: Vec<String>,
    pub(super) token_use: Option<String>,
    #[serde(default)]
    pub(super) allowed_users: Vec<String>,
    #[serde(default)]
    pub(super) allowed_groups: Vec<String>,
    pub(super) user_claim: Option<String>,
    pub(super) groups_claim: Option<String>,
    pub(super) session_claim: Option<String>,
    pub(super) api_key_claim: Option<String>,
    pub(super) cache_ttl_secs: Option<Spanned<u64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct UsagePlanSection {
    pub(super) stages: Vec<Spanned<String>>,
    pub(super) throttle: Option<Spanned<ThrottleSection>>,
    pub(super) quota: Option<Spanned<QuotaSection>>,
    pub(super) api_keys: Vec<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct QuotaSection {
    pub(super) limit: u64,
    pub(super) period: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TlsSection {
    pub(super) cert: Spanned<String>,
    pub(super) key: Spanned<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct LimitsSection {
    pub(super) message_bytes: Option<Spanned<u64>>,
    pub(super) frame_bytes: Option<Spanned<u64>>,
    pub(super) idle_timeout_secs: Option<Spanned<u64>>,
    pub(super) max_connection_secs: Option<Spanned<u64>>,
    pub(super) outbound_buffer_frames: Option<Spanned<u64>>,
    pub(super) new_connections_per_second: Option<Spanned<u64>>,
    pub(super) header_timeout_secs: Option<Spanned<u64>>,
    pub(super) body_timeout_secs: Option<Spanned<u64>>,
    pub(super) keepalive_timeout_secs: Option<Spanned<u64>>,
    pub(super) max_handshakes: Option<Spanned<u64>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ManagementSection {
    pub(super) bind: Option<Spanned<String>>,
    pub(super) access_key_id: Option<Spanned<String>>,
    pub(super) secret_access_key: Option<Spanned<String>>,
}

/// Line of a byte offset, 1-based.
fn line_of(text: &str, offset: usize) -> usize {
    text[..offset.min(text.len())].matches('\n').count() + 1
}

/// What errors need: the text (for line numbers) and its name.
pub(super) struct Ctx<'a> {
    pub(super) text: &'a str,
    pub(super) origin: &'a str,
}

impl Ctx<'_> {
    /// An error about the text at `span`.
    pub(super) fn err(
        &self,
        span: std::ops::Range<usize>,
        msg: impl std::fmt::Display,
    ) -> UsageError {
        UsageError(format!(
            "{} line {}: {msg}",
            self.origin,
            line_of(self.text, span.start)
        ))
    }

    pub(super) fn range(
        &self,
        v: &Option<Spanned<u64>>,
        key: &str,
        min: u64,
        max: u64,
        default: u64,
    ) -> Result<u64, UsageError> {
        match v {
            None => Ok(default),
            Some(s) if (min..=max).contains(s.get_ref()) => Ok(*s.get_ref()),
            Some(s) => Err(self.err(
                s.span(),
                format!(
                    "`{key}` = {} is out of range: use {min} to {max}",
                    s.get_ref()
                ),
            )),
        }
    }
}
