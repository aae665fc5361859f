//! The local gateway's metrics (catalogue in docs/gateway.md). Labels come from
//! small fixed sets; never connection ids, stages or route keys.

use prometheus::{Encoder, IntCounter, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Why the edge refused a handshake or a message (`reason` of
/// `switchboard_gateway_rejections_total`; docs/security.md).
pub const REJECTION_REASONS: [&str; 14] = [
    "ip_denied",
    "ip_not_allowed",
    "connection_rate",
    "ip_rate",
    "stage_throttled",
    "route_throttled",
    "missing_identity",
    "unauthorized",
    "denied",
    "authorizer_error",
    "api_key_missing",
    "api_key_invalid",
    "plan_throttled",
    "quota_exceeded",
];

/// Counters of the gateway: handshakes, messages, closes, @connections calls.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    /// Handshakes by `outcome`: accepted, rejected (by an edge check:
    /// IP rules, throttles, authorizer, API key), refused ($connect non-2xx),
    /// failed ($connect integration error).
    pub connections: IntCounterVec,
    /// Edge refusals by `phase` (connect, message) and `reason`
    /// ([`REJECTION_REASONS`]).
    pub rejections: IntCounterVec,
    /// Authorizer decisions by `result` (allow, deny, unauthorized, error)
    /// and `cache` (hit, miss).
    pub authorizer: IntCounterVec,
    /// @connections requests refused by SigV4 verification, by `reason`
    /// (missing, invalid).
    pub management_auth: IntCounterVec,
    /// Connections open now.
    pub open: IntGauge,
    /// Client messages by `outcome`: routed, rejected (edge security),
    /// no_route, integration_error.
    pub messages: IntCounterVec,
    /// Closes by `reason`: client, abnormal, deleted, going_away, binary,
    /// too_big, bad_text, protocol.
    pub closes: IntCounterVec,
    /// @connections requests by `op` (post, get, delete) and `outcome` (ok,
    /// gone, forbidden, too_large, throttled).
    pub management: IntCounterVec,
    /// HTTP connections closed because a read deadline passed, by `phase`
    /// (header, keepalive) — body timeouts are answered 408 and counted as
    /// `body` (`[limits]` `*_timeout_secs`).
    pub http_timeouts: IntCounterVec,
    /// File descriptors the process has open (read after accepts, at most
    /// twice a second; Linux only).
    pub open_fds: IntGauge,
    /// The process's soft file-descriptor limit (`ulimit -n`).
    pub fd_limit: IntGauge,
    /// Times the gateway found itself at 80 % or more of its file-descriptor
    /// limit, or failed to accept for want of descriptors.
    pub fd_pressure: IntCounter,
    /// Requests refused as cross-site, by `surface` (management, connect, console)
    /// and `check` (origin, host): a foreign `Origin`, or a `Host` that is
    /// not loopback or the listen address (DNS rebinding).
    pub cross_site: IntCounterVec,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

fn vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

impl GatewayMetrics {
    /// Metrics in a registry of their own.
    pub fn new() -> Self {
        Self::registered_in(&Registry::new())
    }

    /// Metrics added to `registry` (e.g. the worker's, for one `/metrics`).
    pub fn registered_in(registry: &Registry) -> Self {
        let r = registry;
        let open = IntGauge::new(
            "switchboard_gateway_connections_open",
            "WebSocket connections open on the local gateway",
        )
        .expect("valid metric");
        r.register(Box::new(open.clone())).expect("unique metric");
        let gauge = |name: &str, help: &str| {
            let g = IntGauge::new(name, help).expect("valid metric");
            r.register(Box::new(g.clone())).expect("unique metric");
            g
        };
        let open_fds = gauge(
            "switchboard_gateway_open_fds",
            "File descriptors the process has open",
        );
        let fd_limit = gauge(
            "switchboard_gateway_fd_limit",
            "The process's soft file-descriptor limit",
        );
        let fd_pressure = IntCounter::new(
            "switchboard_gateway_fd_pressure_total",
            "Times the process was at 80% or more of its file-descriptor limit, or could not accept",
        )
        .expect("valid metric");
        r.register(Box::new(fd_pressure.clone()))
            .expect("unique metric");
        let m = GatewayMetrics {
            registry: registry.clone(),
            connections: vec(
                r,
                "switchboard_gateway_connections_total",
                "Handshakes by outcome (accepted, rejected, refused, failed)",
                &["outcome"],
            ),
            rejections: vec(
                r,
                "switchboard_gateway_rejections_total",
                "Handshakes and messages refused by edge security, by phase and reason",
                &["phase", "reason"],
            ),
            authorizer: vec(
                r,
                "switchboard_gateway_authorizer_total",
                "Authorizer decisions by result and cache use",
                &["result", "cache"],
            ),
            management_auth: vec(
                r,
                "switchboard_gateway_management_auth_failures_total",
                "@connections requests refused by SigV4 verification, by reason",
                &["reason"],
            ),
            open,
            messages: vec(
                r,
                "switchboard_gateway_messages_total",
                "Client messages by outcome (routed, rejected, no_route, integration_error)",
                &["outcome"],
            ),
            closes: vec(
                r,
                "switchboard_gateway_closes_total",
                "Closed connections by reason",
                &["reason"],
            ),
            management: vec(
                r,
                "switchboard_gateway_management_requests_total",
                "@connections requests by operation and outcome",
                &["op", "outcome"],
            ),
            http_timeouts: vec(
                r,
                "switchboard_gateway_http_timeouts_total",
                "HTTP connections cut by a read deadline, by phase (header, body, keepalive)",
                &["phase"],
            ),
            open_fds,
            fd_limit,
            fd_pressure,
            cross_site: vec(
                r,
                "switchboard_gateway_cross_site_refusals_total",
                "Requests refused for a foreign Origin or Host, by surface and check",
                &["surface", "check"],
            ),
        };
        // Export every known label value at 0, so rates and alerts work
        // before the first event.
        for o in ["accepted", "rejected", "refused", "failed"] {
            m.connections.with_label_values(&[o]);
        }
        for phase in ["connect", "message"] {
            for reason in REJECTION_REASONS {
                m.rejections.with_label_values(&[phase, reason]);
            }
        }
        for result in ["allow", "deny", "unauthorized", "error"] {
            for cache in ["hit", "miss"] {
                m.authorizer.with_label_values(&[result, cache]);
            }
        }
        for reason in ["missing", "invalid"] {
            m.management_auth.with_label_values(&[reason]);
        }
        for o in ["routed", "rejected", "no_route", "integration_error"] {
            m.messages.with_label_values(&[o]);
        }
        for r in [
            "client",
            "abnormal",
            "deleted",
            "going_away",
            "binary",
            "too_big",
            "bad_text",
            "protocol",
        ] {
            m.closes.with_label_values(&[r]);
        }
        for phase in ["header", "body", "keepalive"] {
            m.http_timeouts.with_label_values(&[phase]);
        }
        for surface in ["management", "connect", "console"] {
            for check in ["origin", "host"] {
                m.cross_site.with_label_values(&[surface, check]);
            }
        }
        for op in ["post", "get", "delete"] {
            for o in ["ok", "gone", "forbidden", "too_large", "throttled"] {
                m.management.with_label_values(&[op, o]);
            }
        }
        m
    }

    /// The registry these metrics are in.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition format of the whole registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
