//! Edge security: what the gateway checks before a request reaches a route's
//! integration, in API Gateway's order. On `$connect`: the stage's IP rules
//! (like WAF), the new-connection limits, the stage and route throttles, the
//! authorizer, the API key and its usage plan. On each message: the stage and
//! route throttles and, for routes that require one, the connection's API key.
//! Each refusal carries API Gateway's status and message and a metrics reason.
//! The mapping to AWS and what each control does not stop: docs/security.md.
//!
//! Over 400 lines only by its tests (the code is about 300), which check the
//! order of the controls end to end.

mod api_keys;
mod authorize;
pub mod ip;
pub mod throttle;

pub use api_keys::{ApiKeys, KeyState, Metered, period_index};
pub use authorize::{AuthRefusal, Authorized, GatewayAuthorizer};

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use axum::http::StatusCode;

use super::config::{GatewayConfig, Route, StageSettings};
use crate::handlers::authorizer::AuthorizerEvent;
use throttle::{Bucket, KeyedBuckets, client_key};

/// Why a request was refused: the label of
/// `switchboard_gateway_rejections_total{reason}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// The address is in the stage's `ip_deny`.
    IpDenied,
    /// The stage has an `ip_allow` list without the address.
    IpNotAllowed,
    /// `[limits] new_connections_per_second` exceeded.
    ConnectionRate,
    /// The stage's `connect_throttle_per_ip` exceeded for the address.
    IpRate,
    /// The stage's throttle exceeded.
    StageThrottled,
    /// The route's throttle exceeded.
    RouteThrottled,
    /// An identity source of the authorizer is missing.
    MissingIdentity,
    /// The authorizer refused the token.
    Unauthorized,
    /// The authorizer's policy denies the request.
    Denied,
    /// The authorizer failed.
    AuthorizerError,
    /// The route requires an API key and none came.
    ApiKeyMissing,
    /// The API key is not in a usage plan of the stage.
    ApiKeyInvalid,
    /// The usage plan's throttle exceeded for the key.
    PlanThrottled,
    /// The usage plan's quota is used up for the key.
    QuotaExceeded,
}

impl Reason {
    /// Every reason, for exporting the metric at zero.
    pub const ALL: [Reason; 14] = [
        Reason::IpDenied,
        Reason::IpNotAllowed,
        Reason::ConnectionRate,
        Reason::IpRate,
        Reason::StageThrottled,
        Reason::RouteThrottled,
        Reason::MissingIdentity,
        Reason::Unauthorized,
        Reason::Denied,
        Reason::AuthorizerError,
        Reason::ApiKeyMissing,
        Reason::ApiKeyInvalid,
        Reason::PlanThrottled,
        Reason::QuotaExceeded,
    ];

    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::IpDenied => "ip_denied",
            Reason::IpNotAllowed => "ip_not_allowed",
            Reason::ConnectionRate => "connection_rate",
            Reason::IpRate => "ip_rate",
            Reason::StageThrottled => "stage_throttled",
            Reason::RouteThrottled => "route_throttled",
            Reason::MissingIdentity => "missing_identity",
            Reason::Unauthorized => "unauthorized",
            Reason::Denied => "denied",
            Reason::AuthorizerError => "authorizer_error",
            Reason::ApiKeyMissing => "api_key_missing",
            Reason::ApiKeyInvalid => "api_key_invalid",
            Reason::PlanThrottled => "plan_throttled",
            Reason::QuotaExceeded => "quota_exceeded",
        }
    }

    /// The status and message API Gateway answers with.
    pub fn answer(self) -> (StatusCode, &'static str, &'static str) {
        use Reason::*;
        match self {
            IpDenied | IpNotAllowed | Denied | ApiKeyMissing | ApiKeyInvalid => {
                (StatusCode::FORBIDDEN, "Forbidden", "ForbiddenException")
            }
            MissingIdentity | Unauthorized => (
                StatusCode::UNAUTHORIZED,
                "Unauthorized",
                "UnauthorizedException",
            ),
            ConnectionRate | IpRate | StageThrottled | RouteThrottled | PlanThrottled => (
                StatusCode::TOO_MANY_REQUESTS,
                "Too Many Requests",
                "TooManyRequestsException",
            ),
            QuotaExceeded => (
                StatusCode::TOO_MANY_REQUESTS,
                "Limit Exceeded",
                "LimitExceededException",
            ),
            AuthorizerError => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal server error",
                "AuthorizerFailureException",
            ),
        }
    }
}

/// One stage's rules and buckets.
#[derive(Debug)]
struct StageGuard {
    settings: StageSettings,
    bucket: Bucket,
    routes: HashMap<String, Bucket>,
    per_ip: Option<KeyedBuckets<IpAddr>>,
}

/// The gateway's edge checks and their state (buckets, caches, quotas).
#[derive(Debug)]
pub struct Edge {
    new_connections: Bucket,
    stages: HashMap<String, StageGuard>,
    authorizers: HashMap<String, GatewayAuthorizer>,
    keys: ApiKeys,
}

impl Edge {
    /// The checks `config` asks for.
    pub fn new(config: &GatewayConfig) -> Self {
        let per_second = config.limits.new_connections_per_second;
        let stages = config
            .stages
            .iter()
            .map(|name| {
                let settings = config.stage(name).clone();
                let routes = config
                    .routes
                    .values()
                    .filter_map(|r| {
                        let limit = settings
                            .route_throttle
                            .get(&r.key)
                            .copied()
                            .or(r.throttle)?;
                        Some((r.key.clone(), Bucket::new(limit)))
                    })
                    .collect();
                let guard = StageGuard {
                    bucket: Bucket::new(settings.throttle),
                    per_ip: settings.connect_throttle_per_ip.map(KeyedBuckets::new),
                    routes,
                    settings,
                };
                (name.clone(), guard)
            })
            .collect();
        Edge {
            new_connections: Bucket::new(super::config::Throttle {
                rate: f64::from(per_second),
                burst: per_second,
            }),
            stages,
            authorizers: config
                .authorizers
                .iter()
                .map(|(n, s)| (n.clone(), GatewayAuthorizer::new(s)))
                .collect(),
            keys: ApiKeys::new(config),
        }
    }

    fn guard(&self, stage: &str) -> Option<&StageGuard> {
        self.stages.get(stage)
    }

    /// The stage's IP rules: the first check of every handshake.
    pub fn check_ip(&self, stage: &str, ip: IpAddr) -> Result<(), Reason> {
        let Some(g) = self.guard(stage) else {
            return Ok(());
        };
        ip::check(&g.settings, ip).map_err(|r| match r {
            ip::IpRefusal::Denied => Reason::IpDenied,
            ip::IpRefusal::NotAllowed => Reason::IpNotAllowed,
        })
    }

    /// New-connection limits (all stages, then per address), then the stage's
    /// and the `$connect` route's throttles.
    pub fn throttle_connect(&self, stage: &str, ip: IpAddr) -> Result<(), Reason> {
        self.new_connections
            .try_take()
            .map_err(|_| Reason::ConnectionRate)?;
        let Some(g) = self.guard(stage) else {
            return Ok(());
        };
        if let Some(per_ip) = &g.per_ip {
            per_ip
                .try_take(&client_key(ip))
                .map_err(|_| Reason::IpRate)?;
        }
        self.throttle_route(g, "$connect")
    }

    fn throttle_route(&self, g: &StageGuard, route: &str) -> Result<(), Reason> {
        g.bucket.try_take().map_err(|_| Reason::StageThrottled)?;
        if let Some(b) = g.routes.get(route) {
            b.try_take().map_err(|_| Reason::RouteThrottled)?;
        }
        Ok(())
    }

    /// Runs the authorizer `name` on the handshake.
    pub async fn authorize(
        &self,
        name: &str,
        event: &AuthorizerEvent,
    ) -> Result<Authorized, (Reason, AuthRefusal)> {
        let Some(a) = self.authorizers.get(name) else {
            // Config validation makes this unreachable; fail closed anyway.
            return Err((Reason::AuthorizerError, AuthRefusal::Failed));
        };
        a.authorize(event).await.map_err(|r| {
            let reason = match r {
                AuthRefusal::MissingIdentity => Reason::MissingIdentity,
                AuthRefusal::Unauthorized => Reason::Unauthorized,
                AuthRefusal::Denied { .. } => Reason::Denied,
                AuthRefusal::Failed => Reason::AuthorizerError,
            };
            (reason, r)
        })
    }

    /// The API key of a handshake: looked up when presented; required when
    /// the route says so (missing or unknown → 403) and then metered.
    pub fn api_key(
        &self,
        stage: &str,
        presented: Option<&str>,
        required: bool,
        now_ms: i64,
    ) -> Result<Option<Arc<KeyState>>, Reason> {
        let presented = presented.filter(|k| !k.is_empty());
        let key = presented.and_then(|k| self.keys.lookup(stage, k));
        if !required {
            return Ok(key);
        }
        let Some(key) = key else {
            return Err(if presented.is_some() {
                Reason::ApiKeyInvalid
            } else {
                Reason::ApiKeyMissing
            });
        };
        meter(&key, now_ms)?;
        Ok(Some(key))
    }

    /// The checks of one message on `route`.
    pub fn check_message(
        &self,
        stage: &str,
        route: &Route,
        key: Option<&KeyState>,
        now_ms: i64,
    ) -> Result<(), Reason> {
        if let Some(g) = self.guard(stage) {
            self.throttle_route(g, &route.key)?;
        }
        if route.api_key_required {
            let key = key.ok_or(Reason::ApiKeyMissing)?;
            meter(key, now_ms)?;
        }
        Ok(())
    }
}

fn meter(key: &KeyState, now_ms: i64) -> Result<(), Reason> {
    key.meter(now_ms).map_err(|m| match m {
        Metered::Throttled => Reason::PlanThrottled,
        Metered::OverQuota => Reason::QuotaExceeded,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn edge(text: &str) -> (GatewayConfig, Edge) {
        let config = GatewayConfig::parse(text, "t").unwrap();
        let edge = Edge::new(&config);
        (config, edge)
    }

    #[tokio::test(start_paused = true)]
    async fn connection_throttles_refuse_then_recover_as_the_buckets_refill() {
        let (_, e) = edge(
            r#"
[stages.dev]
throttle = { rate = 1.0, burst = 2 }
[stages.ip]
connect_throttle_per_ip = { rate = 0.5, burst = 1 }
"#,
        );
        let a: IpAddr = "198.51.100.1".parse().unwrap();
        let b: IpAddr = "198.51.100.2".parse().unwrap();
        assert_eq!(e.throttle_connect("dev", a), Ok(()));
        assert_eq!(e.throttle_connect("dev", b), Ok(()));
        assert_eq!(e.throttle_connect("dev", a), Err(Reason::StageThrottled));
        tokio::time::advance(Duration::from_millis(999)).await;
        assert_eq!(e.throttle_connect("dev", a), Err(Reason::StageThrottled));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert_eq!(e.throttle_connect("dev", a), Ok(()));

        // Per address: another address is not held back.
        assert_eq!(e.throttle_connect("ip", a), Ok(()));
        assert_eq!(e.throttle_connect("ip", a), Err(Reason::IpRate));
        assert_eq!(e.throttle_connect("ip", b), Ok(()));
        tokio::time::advance(Duration::from_secs(2)).await;
        assert_eq!(e.throttle_connect("ip", a), Ok(()));

        // The gateway-wide limit comes first, for every stage.
        let (_, e) = edge("[limits]\nnew_connections_per_second = 2\n");
        assert_eq!(e.throttle_connect("dev", a), Ok(()));
        assert_eq!(e.throttle_connect("dev", b), Ok(()));
        assert_eq!(e.throttle_connect("dev", b), Err(Reason::ConnectionRate));
        tokio::time::advance(Duration::from_millis(500)).await;
        assert_eq!(e.throttle_connect("dev", b), Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn messages_are_throttled_per_route_and_metered_per_key() {
        let key = data_encoding::HEXLOWER.encode(&crate::gateway::config::KeyHash::of("k").0);
        let (config, e) = edge(&format!(
            r#"
[[routes]]
key = "ping"
integration = {{ type = "mock" }}
throttle = {{ rate = 1.0, burst = 1 }}
api_key_required = true
[stages.dev]
[usage_plans.p]
stages = ["dev"]
quota = {{ limit = 3, period = "DAY" }}
api_keys = ["sha256:{key}"]
"#
        ));
        let ping = &config.routes["ping"];
        let now = crate::sync::now_ms();
        assert_eq!(
            e.check_message("dev", ping, None, now),
            Err(Reason::ApiKeyMissing)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        let k = e.api_key("dev", Some("k"), false, now).unwrap().unwrap();
        assert_eq!(e.check_message("dev", ping, Some(&k), now), Ok(()));
        assert_eq!(
            e.check_message("dev", ping, Some(&k), now),
            Err(Reason::RouteThrottled)
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(e.check_message("dev", ping, Some(&k), now), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(e.check_message("dev", ping, Some(&k), now), Ok(()));
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            e.check_message("dev", ping, Some(&k), now),
            Err(Reason::QuotaExceeded)
        );
        // Unknown and missing keys on a handshake that requires one.
        assert_eq!(
            e.api_key("dev", Some("guess"), true, now).unwrap_err(),
            Reason::ApiKeyInvalid
        );
        assert_eq!(
            e.api_key("dev", None, true, now).unwrap_err(),
            Reason::ApiKeyMissing
        );
        assert!(
            e.api_key("dev", Some("guess"), false, now)
                .unwrap()
                .is_none()
        );
    }

    #[test]
    fn reasons_are_the_metric_catalogue() {
        let labels: Vec<&str> = Reason::ALL.iter().map(|r| r.label()).collect();
        assert_eq!(labels, crate::telemetry::REJECTION_REASONS);
    }
}
