//! The plots' data: once a second the console reads the metrics catalogue
//! (the same registry `/metrics` renders) and keeps the last five minutes of
//! per-second rates in a ring. Nothing here counts on its own: a series is
//! what the metric says, or `null` when this process does not have that
//! metric (`switchboard gateway` runs no worker).

use std::collections::{BTreeMap, VecDeque};

use prometheus::Registry;
use prometheus::proto::{MetricFamily, MetricType};
use serde::Serialize;

/// Samples kept: one a second for five minutes.
pub const KEEP: usize = 300;

/// Seconds of delivery-latency observations a p50/p99 point covers (one
/// second holds too few POSTs in a quiet `dev` to say anything).
const QUANTILE_WINDOW: usize = 10;

/// One second of the system.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Sample {
    /// When it was taken, epoch ms.
    pub t: i64,
    /// Client messages the gateway received (`switchboard_gateway_messages_total`).
    pub messages_in: Option<f64>,
    /// Recipients the worker finished (`switchboard_deliveries_total`).
    pub deliveries: Option<f64>,
    /// Median @connections POST time over the last 10 s, ms
    /// (`switchboard_delivery_duration_seconds`).
    pub delivery_p50_ms: Option<f64>,
    /// 99th percentile of the same, ms.
    pub delivery_p99_ms: Option<f64>,
    /// Connections pruned after 410 Gone (`switchboard_connections_pruned_total`).
    pub pruned: Option<f64>,
    /// @connections calls the gateway answered 429
    /// (`switchboard_gateway_management_requests_total{outcome="throttled"}`).
    pub throttled: Option<f64>,
    /// Handshakes refused by the edge, by reason
    /// (`switchboard_gateway_rejections_total{phase="connect"}`); zero reasons left out.
    pub rejections: BTreeMap<String, f64>,
}

/// Counter totals read at one instant.
#[derive(Debug, Clone, Default)]
struct Totals {
    messages_in: Option<f64>,
    deliveries: Option<f64>,
    pruned: Option<f64>,
    throttled: Option<f64>,
    rejections: BTreeMap<String, f64>,
    /// Delivery-duration buckets: (upper bound s, cumulative count).
    buckets: Option<Vec<(f64, f64)>>,
}

fn label<'a>(m: &'a prometheus::proto::Metric, name: &str) -> Option<&'a str> {
    m.get_label()
        .iter()
        .find(|l| l.name() == name)
        .map(|l| l.value())
}

/// The sum of a counter family's series that `keep` accepts.
fn counter_sum(
    family: Option<&MetricFamily>,
    keep: impl Fn(&prometheus::proto::Metric) -> bool,
) -> Option<f64> {
    let f = family?;
    Some(
        f.get_metric()
            .iter()
            .filter(|m| keep(m))
            .map(|m| m.get_counter().get_value())
            .sum(),
    )
}

fn totals(families: &[MetricFamily]) -> Totals {
    let by_name: BTreeMap<&str, &MetricFamily> = families.iter().map(|f| (f.name(), f)).collect();
    let get = |n: &str| by_name.get(n).copied();
    let mut rejections = BTreeMap::new();
    if let Some(f) = get("switchboard_gateway_rejections_total") {
        for m in f.get_metric() {
            if label(m, "phase") == Some("connect")
                && let Some(reason) = label(m, "reason")
            {
                *rejections.entry(reason.to_owned()).or_insert(0.0) += m.get_counter().get_value();
            }
        }
    }
    let buckets = get("switchboard_delivery_duration_seconds")
        .filter(|f| f.get_field_type() == MetricType::HISTOGRAM)
        .and_then(|f| f.get_metric().first())
        .map(|m| {
            m.get_histogram()
                .get_bucket()
                .iter()
                .map(|b| (b.upper_bound(), b.cumulative_count() as f64))
                .collect()
        });
    Totals {
        messages_in: counter_sum(get("switchboard_gateway_messages_total"), |_| true),
        deliveries: counter_sum(get("switchboard_deliveries_total"), |_| true),
        pruned: counter_sum(get("switchboard_connections_pruned_total"), |_| true),
        throttled: counter_sum(get("switchboard_gateway_management_requests_total"), |m| {
            label(m, "outcome") == Some("throttled")
        }),
        rejections,
        buckets,
    }
}

/// Prometheus's `histogram_quantile`: linear within the bucket holding the
/// rank; `None` without observations.
pub fn quantile(q: f64, buckets: &[(f64, f64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total <= 0.0 {
        return None;
    }
    let rank = q * total;
    let mut lower = (0.0, 0.0);
    for &(upper, count) in buckets {
        if count >= rank {
            if upper.is_infinite() {
                // Above the largest finite bound: report that bound.
                return Some(lower.0);
            }
            let in_bucket = count - lower.1;
            let frac = if in_bucket > 0.0 {
                (rank - lower.1) / in_bucket
            } else {
                0.0
            };
            return Some(lower.0 + (upper - lower.0) * frac);
        }
        lower = (upper, count);
    }
    Some(lower.0)
}

fn delta(now: Option<f64>, before: Option<f64>) -> Option<f64> {
    Some((now? - before.unwrap_or(0.0)).max(0.0))
}

/// The ring of samples and what the next one is measured from.
#[derive(Debug, Default)]
pub struct Sampler {
    ring: VecDeque<Sample>,
    last: Option<Totals>,
    /// Bucket totals of the last [`QUANTILE_WINDOW`] + 1 ticks.
    bucket_history: VecDeque<Vec<(f64, f64)>>,
}

impl Sampler {
    /// Reads `registry` now (epoch ms `t`) and appends the second since the
    /// previous read; the first read only sets the baseline.
    pub fn tick(&mut self, registry: &Registry, t: i64) {
        let now = totals(&registry.gather());
        if let Some(b) = &now.buckets {
            self.bucket_history.push_back(b.clone());
            while self.bucket_history.len() > QUANTILE_WINDOW + 1 {
                self.bucket_history.pop_front();
            }
        }
        let Some(before) = self.last.replace(now.clone()) else {
            return;
        };
        let window: Option<Vec<(f64, f64)>> =
            match (self.bucket_history.front(), self.bucket_history.back()) {
                (Some(first), Some(last)) if self.bucket_history.len() > 1 => Some(
                    last.iter()
                        .zip(first)
                        .map(|((ub, c), (_, c0))| (*ub, (c - c0).max(0.0)))
                        .collect(),
                ),
                _ => None,
            };
        let q = |p: f64| {
            window
                .as_deref()
                .and_then(|w| quantile(p, w))
                .map(|s| s * 1000.0)
        };
        let rejections = now
            .rejections
            .iter()
            .filter_map(|(reason, n)| {
                let d = n - before.rejections.get(reason).copied().unwrap_or(0.0);
                (d > 0.0).then(|| (reason.clone(), d))
            })
            .collect();
        self.ring.push_back(Sample {
            t,
            messages_in: delta(now.messages_in, before.messages_in),
            deliveries: delta(now.deliveries, before.deliveries),
            delivery_p50_ms: q(0.5),
            delivery_p99_ms: q(0.99),
            pruned: delta(now.pruned, before.pruned),
            throttled: delta(now.throttled, before.throttled),
            rejections,
        });
        while self.ring.len() > KEEP {
            self.ring.pop_front();
        }
    }

    /// The samples kept, oldest first.
    pub fn samples(&self) -> Vec<Sample> {
        self.ring.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::telemetry::{GatewayMetrics, Metrics};

    #[test]
    fn quantiles_interpolate_like_prometheus() {
        let b = [
            (0.01, 0.0),
            (0.1, 50.0),
            (1.0, 100.0),
            (f64::INFINITY, 100.0),
        ];
        assert_eq!(quantile(0.5, &b), Some(0.1));
        let p25 = quantile(0.25, &b).unwrap();
        assert!((p25 - 0.055).abs() < 1e-9, "{p25}");
        assert_eq!(quantile(0.5, &[(1.0, 0.0), (f64::INFINITY, 0.0)]), None);
        assert_eq!(
            quantile(0.99, &[(1.0, 0.0), (f64::INFINITY, 5.0)]),
            Some(1.0)
        );
    }

    #[test]
    fn samples_are_per_second_deltas_of_the_catalogue() {
        let metrics = Metrics::new();
        let gw = GatewayMetrics::registered_in(metrics.registry());
        let mut s = Sampler::default();
        s.tick(metrics.registry(), 0);
        assert!(s.samples().is_empty(), "the first read is the baseline");
        gw.messages.with_label_values(&["routed"]).inc_by(3);
        metrics.deliveries.with_label_values(&["ok"]).inc_by(5);
        metrics.delivery_duration.observe(0.004);
        gw.rejections
            .with_label_values(&["connect", "ip_denied"])
            .inc();
        s.tick(metrics.registry(), 1000);
        s.tick(metrics.registry(), 2000);
        let got = s.samples();
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].messages_in, Some(3.0));
        assert_eq!(got[0].deliveries, Some(5.0));
        assert_eq!(got[0].rejections.get("ip_denied"), Some(&1.0));
        assert_eq!(got[1].messages_in, Some(0.0));
        assert!(got[1].rejections.is_empty());
        let p50 = got[1]
            .delivery_p50_ms
            .expect("one observation in the window");
        assert!(p50 > 0.0 && p50 <= 5.0, "{p50}");

        // A gateway alone has no worker metrics: those series are null.
        let mut g = Sampler::default();
        let r = prometheus::Registry::new();
        let _gw = GatewayMetrics::registered_in(&r);
        g.tick(&r, 0);
        g.tick(&r, 1000);
        assert_eq!(g.samples()[0].deliveries, None);
        assert_eq!(g.samples()[0].messages_in, Some(0.0));
    }
}
