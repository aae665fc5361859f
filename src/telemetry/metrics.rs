//! Every metric the process exports, defined in one place (catalogue in
//! docs/metrics.md). Labels come from small fixed sets; never ids.

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts,
    Registry, TextEncoder,
};

/// The worker's metrics, registered in their own registry (one per worker, so
/// tests can run several workers in one process).
#[derive(Clone, Debug)]
pub struct Metrics {
    registry: Registry,
    /// Messages received from the queue.
    pub messages_received: IntCounter,
    /// Messages received again while a copy was still in hand (merged, handled once).
    pub duplicate_receives: IntCounter,
    /// Messages handled, by `action` and `outcome` (done, retried, dead).
    pub messages: IntCounterVec,
    /// Time in `handle` per message, by `action`.
    pub handle_duration: HistogramVec,
    /// Final outcome per recipient: ok, gone, throttled, failed.
    pub deliveries: IntCounterVec,
    /// Retried @connections posts, by `error_type`.
    pub delivery_retries: IntCounterVec,
    /// Time of one @connections post (each attempt).
    pub delivery_duration: Histogram,
    /// Connection items deleted after a 410 Gone.
    pub connections_pruned: IntCounter,
    /// Message groups being worked on now.
    pub groups_in_flight: IntGauge,
    /// Messages received and not yet deleted or released.
    pub messages_in_hand: IntGauge,
    /// Receive calls, by `result` (messages, empty, error).
    pub polls: IntCounterVec,
    /// Failed receive calls, by `error_type`.
    pub poll_errors: IntCounterVec,
    /// Messages sent to the dead-letter queue, by `reason` kind.
    pub dead_letters: IntCounterVec,
    /// Deletes after processing, by `outcome` (ok, failed).
    pub deletes: IntCounterVec,
    /// Visibility changes, by `purpose` (extend, backoff, release) and `outcome`.
    pub visibility_changes: IntCounterVec,
    /// Failed backend calls by `error_type` (store, query, prune, dlq, ...).
    pub backend_errors: IntCounterVec,
    /// Presence events (`$join` / `$leave`) handled, by `event` (join, leave)
    /// and `outcome` (announced; off: `--presence-events off` dropped it);
    /// and the leaves of pruned connections the worker enqueued itself
    /// (`leave`, enqueued / enqueue_failed).
    pub presence_events: IntCounterVec,
}

fn counter(r: &Registry, name: &str, help: &str) -> IntCounter {
    let c = IntCounter::new(name, help).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn counter_vec(r: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric");
    r.register(Box::new(c.clone())).expect("unique metric");
    c
}

fn gauge(r: &Registry, name: &str, help: &str) -> IntGauge {
    let g = IntGauge::new(name, help).expect("valid metric");
    r.register(Box::new(g.clone())).expect("unique metric");
    g
}

/// Buckets from 1 ms to 30 s: @connections posts take milliseconds, a message
/// with a large fan-out or a slow backend takes seconds.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Self {
        let r = Registry::new();
        let handle_duration = HistogramVec::new(
            HistogramOpts::new(
                "switchboard_handle_duration_seconds",
                "Time to run one message's pipeline",
            )
            .buckets(BUCKETS.to_vec()),
            &["action"],
        )
        .expect("valid metric");
        r.register(Box::new(handle_duration.clone()))
            .expect("unique metric");
        let delivery_duration = Histogram::with_opts(
            HistogramOpts::new(
                "switchboard_delivery_duration_seconds",
                "Time of one @connections POST attempt",
            )
            .buckets(BUCKETS.to_vec()),
        )
        .expect("valid metric");
        r.register(Box::new(delivery_duration.clone()))
            .expect("unique metric");
        let m = Metrics {
            messages_received: counter(
                &r,
                "switchboard_messages_received_total",
                "Messages received from the queue",
            ),
            duplicate_receives: counter(
                &r,
                "switchboard_duplicate_receives_total",
                "Messages received again while still in hand (merged, handled once)",
            ),
            messages: counter_vec(
                &r,
                "switchboard_messages_total",
                "Messages handled, by action and outcome (done, retried, dead)",
                &["action", "outcome"],
            ),
            handle_duration,
            deliveries: counter_vec(
                &r,
                "switchboard_deliveries_total",
                "Final outcome per recipient (ok, gone, throttled, failed)",
                &["outcome"],
            ),
            delivery_retries: counter_vec(
                &r,
                "switchboard_delivery_retries_total",
                "@connections posts retried, by error type",
                &["error_type"],
            ),
            delivery_duration,
            connections_pruned: counter(
                &r,
                "switchboard_connections_pruned_total",
                "Connection items deleted after 410 Gone",
            ),
            groups_in_flight: gauge(
                &r,
                "switchboard_groups_in_flight",
                "Message groups being worked on",
            ),
            messages_in_hand: gauge(
                &r,
                "switchboard_messages_in_hand",
                "Messages received and not yet deleted or released",
            ),
            polls: counter_vec(
                &r,
                "switchboard_polls_total",
                "Receive calls by result (messages, empty, error)",
                &["result"],
            ),
            poll_errors: counter_vec(
                &r,
                "switchboard_poll_errors_total",
                "Failed receive calls by error type",
                &["error_type"],
            ),
            dead_letters: counter_vec(
                &r,
                "switchboard_dead_letters_total",
                "Messages sent to the dead-letter queue, by reason",
                &["reason"],
            ),
            deletes: counter_vec(
                &r,
                "switchboard_deletes_total",
                "Queue deletes after processing, by outcome",
                &["outcome"],
            ),
            visibility_changes: counter_vec(
                &r,
                "switchboard_visibility_changes_total",
                "Visibility changes by purpose (extend, backoff, release) and outcome",
                &["purpose", "outcome"],
            ),
            backend_errors: counter_vec(
                &r,
                "switchboard_backend_errors_total",
                "Failed table and queue calls (and handler panics) by step and error type",
                &["step", "error_type"],
            ),
            presence_events: counter_vec(
                &r,
                "switchboard_presence_events_total",
                "Presence events ($join/$leave) by event (join, leave) and outcome (announced, off; enqueued, enqueue_failed: a leave the worker sent for a connection it pruned)",
                &["event", "outcome"],
            ),
            registry: r,
        };
        m.init_known_labels();
        m
    }

    /// Creates the series of every known label value at zero, so dashboards and
    /// alerts (`rate()`, `increase()`) see them before the first event.
    fn init_known_labels(&self) {
        const RETRIABLE: &[&str] = &["throttled", "server", "timeout", "network"];
        const ALL_KINDS: &[&str] = &[
            "throttled",
            "server",
            "timeout",
            "network",
            "validation",
            "access_denied",
            "not_found",
            "too_large",
            "gone",
            "condition_failed",
            "other",
        ];
        for o in ["ok", "gone", "throttled", "failed"] {
            self.deliveries.with_label_values(&[o]);
        }
        for k in RETRIABLE {
            self.delivery_retries.with_label_values(&[k]);
        }
        for r in ["messages", "empty", "error"] {
            self.polls.with_label_values(&[r]);
        }
        for k in ALL_KINDS {
            self.poll_errors.with_label_values(&[k]);
        }
        for r in [
            "malformed",
            "unknown_version",
            "invalid",
            "payload_too_large",
            "unknown_action",
            "bad_request",
            "no_endpoint",
        ] {
            self.dead_letters.with_label_values(&[r]);
        }
        for o in ["ok", "failed"] {
            self.deletes.with_label_values(&[o]);
        }
        for e in ["join", "leave"] {
            for o in ["announced", "off"] {
                self.presence_events.with_label_values(&[e, o]);
            }
        }
        for o in ["enqueued", "enqueue_failed"] {
            self.presence_events.with_label_values(&["leave", o]);
        }
        for p in ["extend", "backoff", "release"] {
            for o in ["ok", "failed"] {
                self.visibility_changes.with_label_values(&[p, o]);
            }
        }
        for step in [
            "store",
            "broadcast",
            "direct",
            "history",
            "resume",
            "presence",
            "announce",
            "prune",
            "leave",
            "dead_letter",
        ] {
            for k in RETRIABLE {
                self.backend_errors.with_label_values(&[step, k]);
            }
        }
    }

    /// Creates the per-action series of a configured route key at zero.
    pub fn init_action(&self, action: &str) {
        self.handle_duration.with_label_values(&[action]);
        for o in ["done", "retried", "dead"] {
            self.messages.with_label_values(&[action, o]);
        }
    }

    /// The registry, for adding process-specific collectors.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding gathered families into memory only fails on invalid metrics,
        // which `new` rules out.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::Metrics;

    #[test]
    fn renders_every_family_with_its_help() {
        let m = Metrics::new();
        m.messages.with_label_values(&["sendMessage", "done"]).inc();
        m.deliveries.with_label_values(&["ok"]).inc_by(3);
        let text = m.render();
        assert!(
            text.contains(r#"switchboard_deliveries_total{outcome="gone"} 0"#),
            "known labels start at 0"
        );
        assert!(
            text.contains(r#"switchboard_messages_total{action="sendMessage",outcome="done"} 1"#)
        );
        assert!(text.contains(r#"switchboard_deliveries_total{outcome="ok"} 3"#));
        assert!(text.contains("# TYPE switchboard_groups_in_flight gauge"));
    }
}
