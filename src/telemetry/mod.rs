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
    #[cfg(feature = "otel")]
    if init_with_export(filter.clone(), json) {
        return;
    }
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

/// With `otel` and an OTLP endpoint in the environment: logs as without,
/// plus the spans of `switchboard` at info and above exported. Whether it
/// installed the subscriber.
#[cfg(feature = "otel")]
fn init_with_export(filter: EnvFilter, json: bool) -> bool {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt as _;
    use tracing_subscriber::util::SubscriberInitExt as _;

    let tracer = match otel::tracer() {
        Ok(Some(t)) => t,
        Ok(None) => return false,
        Err(e) => {
            eprintln!("warning: traces are not exported: {e}");
            return false;
        }
    };
    let logs = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let logs = if json {
        logs.json().flatten_event(true).with_filter(filter).boxed()
    } else {
        logs.with_filter(filter).boxed()
    };
    let spans = tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_filter(EnvFilter::new("switchboard=info"));
    let _ = tracing_subscriber::registry()
        .with(logs)
        .with(spans)
        .try_init();
    true
}

/// Exports the spans queued so far, off the async threads; for a Lambda
/// function, which is frozen between invocations. Nothing to do without `otel`.
pub async fn flush() {
    #[cfg(feature = "otel")]
    let _ = tokio::task::spawn_blocking(otel::flush).await;
}

/// Flushes what is still to be exported (the `otel` feature's queued spans);
/// call once at the end of a command. Nothing to do without `otel`.
pub fn shutdown() {
    #[cfg(feature = "otel")]
    otel::shutdown();
}

// The two calls that link a span to a trace context. They live here, above
// both `trace` (the context) and `otel` (the exporter that uses it), and
// pick the exporter's ids when the `otel` feature is on.

/// Makes `span` the continuation of `parent` — or the root of a new trace —
/// and returns the context to pass on (whose span id is `span`'s). Records
/// the trace id in the span's `trace_id` field, which every log line inside
/// the span carries; `span` should declare it (`trace_id = Empty`).
pub fn continue_trace(
    span: &tracing::Span,
    parent: Option<&trace::TraceContext>,
) -> trace::TraceContext {
    #[cfg(feature = "otel")]
    let ctx = otel::attach(span, parent);
    #[cfg(not(feature = "otel"))]
    let ctx = trace::own_ids(parent);
    span.record("trace_id", ctx.trace_id_hex().as_str());
    ctx
}

/// The time `parent`'s message waited in the queue, from `sent_ms` to
/// `now_ms` (epoch ms): with `otel` an exported span of exactly that
/// interval, child of `parent`; the context returned is that span's, the
/// parent of the handling that follows.
pub fn queue_wait(parent: &trace::TraceContext, sent_ms: i64, now_ms: i64) -> trace::TraceContext {
    #[cfg(feature = "otel")]
    return otel::queue_wait(parent, sent_ms, now_ms);
    #[cfg(not(feature = "otel"))]
    {
        let _ = (sent_ms, now_ms);
        parent.child()
    }
}
