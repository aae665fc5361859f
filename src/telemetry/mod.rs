//! Logs (`tracing`), traces (`trace`: W3C trace context; exported with the
//! `otel` feature), metrics (Prometheus) and the health endpoints.

mod gateway_metrics;
mod http;
mod metrics;
#[cfg(feature = "otel")]
mod otel;
pub mod trace;

pub use gateway_metrics::{GatewayMetrics, REJECTION_REASONS};
pub use http::{Health, router, serve};
pub use metrics::Metrics;

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// JSON when stderr is not a terminal (CloudWatch, files), pretty otherwise.
    Auto,
    /// One JSON object per line.
    Json,
    /// Human-readable.
    Pretty,
}

/// Installs the global subscriber: level from `RUST_LOG` (default `info`), logs
/// on stderr so that stdout stays for command output.
pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let json = match format {
        LogFormat::Json => true,
        LogFormat::Pretty => false,
        LogFormat::Auto => !std::io::stderr().is_terminal(),
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    // A second init (tests) keeps the first subscriber.
    let _ = if json {
        builder.json().flatten_event(true).try_init()
    } else {
        builder.try_init()
    };
}
