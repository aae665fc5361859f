//! The local gateway's metrics (catalogue in docs/gateway.md). Labels come from
//! small fixed sets; never connection ids, stages or route keys.

use prometheus::{Encoder, IntCounterVec, IntGauge, Opts, Registry, TextEncoder};

/// Counters of the gateway: handshakes, messages, closes, @connections calls.
#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    registry: Registry,
    /// Handshakes by `outcome`: accepted, refused ($connect non-2xx), failed
    /// ($connect integration error).
    pub connections: IntCounterVec,
    /// Connections open now.
    pub open: IntGauge,
    /// Client messages by `outcome`: routed, no_route, integration_error.
    pub messages: IntCounterVec,
    /// Closes by `reason`: client, abnormal, deleted, going_away, binary,
    /// too_big, bad_text, protocol.
    pub closes: IntCounterVec,
    /// @connections requests by `op` (post, get, delete) and `outcome` (ok,
    /// gone, forbidden, too_large, throttled).
    pub management: IntCounterVec,
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
        let m = GatewayMetrics {
            registry: registry.clone(),
            connections: vec(
                r,
                "switchboard_gateway_connections_total",
                "Handshakes by outcome (accepted, refused, failed)",
                &["outcome"],
            ),
            open,
            messages: vec(
                r,
                "switchboard_gateway_messages_total",
                "Client messages by outcome (routed, no_route, integration_error)",
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
        };
        // Export every known label value at 0, so rates and alerts work
        // before the first event.
        for o in ["accepted", "refused", "failed"] {
            m.connections.with_label_values(&[o]);
        }
        for o in ["routed", "no_route", "integration_error"] {
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
        for op in ["post", "get", "delete"] {
            for o in ["ok", "gone", "forbidden", "too_large", "throttled"] {
                m.management.with_label_values(&[op, o]);
            }
        }
        m
    }

    /// Prometheus text exposition format of the whole registry.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
