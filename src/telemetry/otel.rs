//! Trace export (feature `otel`): the `tracing` spans of a message become
//! OpenTelemetry spans, batched and sent as OTLP/HTTP (JSON) to
//! `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (or `OTEL_EXPORTER_OTLP_ENDPOINT` +
//! `/v1/traces`). The SDK reads the rest of the standard variables:
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER(_ARG)`
//! and `OTEL_BSP_*` (queue size, batch size, delay).
//!
//! The hot path never waits on export: finished spans go into the batch
//! processor's bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`, default 2048; spans
//! beyond it are dropped), which its own thread drains. The HTTP client is
//! the hyper + rustls one the AWS SDK already builds, on a one-thread
//! runtime of its own. A failing collector is reported once per
//! [`WARN_EVERY`], with the count of failures since the last warning.

use std::str::FromStr;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, UNIX_EPOCH};

use async_trait::async_trait;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, SpanKind, TraceContextExt as _, TraceFlags, TraceId,
    TraceState, Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_http::{HttpClient, HttpError, Request, Response};
use opentelemetry_otlp::{Protocol, WithExportConfig as _, WithHttpConfig as _};
use opentelemetry_sdk::trace::{SdkTracer, SdkTracerProvider};
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use super::trace::{TraceContext, own_ids, random_span_id};

/// At most one warning about failed exports per this interval.
pub const WARN_EVERY: Duration = Duration::from_secs(60);
/// One export request's deadline (`OTEL_EXPORTER_OTLP_TIMEOUT` is not read:
/// the request runs on our client).
const EXPORT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest collector answer read.
const MAX_ANSWER: usize = 64 * 1024;

static PROVIDER: OnceLock<(SdkTracerProvider, SdkTracer)> = OnceLock::new();

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// The OTLP client: requests run on a runtime of their own, so that export
/// works from the batch processor's thread and never competes with the
/// worker's tasks.
#[derive(Debug, Clone)]
struct ExportClient {
    http: HttpsClient,
    runtime: tokio::runtime::Handle,
    failures: Arc<Mutex<Failures>>,
}

#[derive(Debug, Default)]
struct Failures {
    last_warning: Option<Instant>,
    since: u64,
}

impl ExportClient {
    fn new() -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        std::thread::Builder::new()
            .name("otlp-export".into())
            .spawn(move || runtime.block_on(std::future::pending::<()>()))?;
        let builder = crate::tls::connector_builder("OTLP endpoints");
        let connector = builder.https_or_http().enable_http1().build();
        Ok(ExportClient {
            http: Client::builder(TokioExecutor::new()).build(connector),
            runtime: handle,
            failures: Arc::default(),
        })
    }

    fn failed(&self, why: &str) {
        let mut f = crate::sync::lock(&self.failures);
        f.since += 1;
        let due = f.last_warning.is_none_or(|t| t.elapsed() >= WARN_EVERY);
        if due {
            tracing::warn!(
                failed_exports = f.since,
                error = why,
                "cannot export traces to the OTLP endpoint; spans are dropped (next warning in at most {}s)",
                WARN_EVERY.as_secs()
            );
            f.last_warning = Some(Instant::now());
            f.since = 0;
        }
    }
}

#[async_trait]
impl HttpClient for ExportClient {
    async fn send_bytes(&self, request: Request<Bytes>) -> Result<Response<Bytes>, HttpError> {
        let http = self.http.clone();
        let (parts, body) = request.into_parts();
        let request = Request::from_parts(parts, Full::new(body));
        let call = async move {
            let answer = tokio::time::timeout(EXPORT_TIMEOUT, http.request(request))
                .await
                .map_err(|_| HttpError::from("the OTLP endpoint did not answer in time"))??;
            let (parts, body) = answer.into_parts();
            let body = Limited::new(body, MAX_ANSWER)
                .collect()
                .await
                .map_err(|e| HttpError::from(e.to_string()))?
                .to_bytes();
            Ok::<_, HttpError>(Response::from_parts(parts, body))
        };
        let result = match self.runtime.spawn(call).await {
            Ok(r) => r,
            Err(e) => Err(HttpError::from(e.to_string())),
        };
        match &result {
            Err(e) => self.failed(&e.to_string()),
            Ok(r) if !r.status().is_success() => self.failed(&format!("HTTP {}", r.status())),
            Ok(_) => {}
        }
        result
    }
}

/// New trace ids as without export (epoch seconds first, so X-Ray accepts
/// them too); random span ids.
#[derive(Debug)]
struct XrayCompatibleIds;

impl opentelemetry_sdk::trace::IdGenerator for XrayCompatibleIds {
    fn new_trace_id(&self) -> TraceId {
        TraceId::from_bytes(TraceContext::new_root().trace_id)
    }

    fn new_span_id(&self) -> SpanId {
        SpanId::from_bytes(random_span_id())
    }
}

/// Whether the environment asks for export: an OTLP endpoint is set, and
/// neither `OTEL_SDK_DISABLED=true` nor `OTEL_TRACES_EXPORTER=none`.
fn wanted() -> bool {
    let var = |k| {
        std::env::var(k)
            .ok()
            .filter(|v: &String| !v.trim().is_empty())
    };
    let endpoint = var("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .or_else(|| var("OTEL_EXPORTER_OTLP_ENDPOINT"))
        .is_some();
    endpoint
        && var("OTEL_SDK_DISABLED").is_none_or(|v| !v.eq_ignore_ascii_case("true"))
        && var("OTEL_TRACES_EXPORTER").is_none_or(|v| v != "none")
}

/// The exporting layer, if the environment asks for export; `Err` says why
/// it could not be set up (the caller logs it once logging works).
pub(super) fn tracer() -> Result<Option<SdkTracer>, String> {
    if !wanted() {
        return Ok(None);
    }
    let client = ExportClient::new().map_err(|e| format!("no export thread: {e}"))?;
    let exporter = opentelemetry_otlp::SpanExporter::builder()
        .with_http()
        .with_protocol(Protocol::HttpJson)
        .with_http_client(client)
        .build()
        .map_err(|e| format!("bad OTLP exporter settings: {e}"))?;
    let provider = SdkTracerProvider::builder()
        .with_batch_exporter(exporter)
        .with_id_generator(XrayCompatibleIds)
        .build();
    let tracer = provider.tracer("switchboard");
    let _ = PROVIDER.set((provider, tracer.clone()));
    Ok(Some(tracer))
}

/// Flushes the spans still queued and stops the exporter (SIGTERM, end of
/// a command). Waits at most the export timeout.
pub(super) fn shutdown() {
    if let Some((provider, _)) = PROVIDER.get()
        && let Err(e) = provider.shutdown()
    {
        tracing::warn!(error = %e, "traces not flushed at shutdown");
    }
}

/// Exports what is queued now (a Lambda function, frozen between
/// invocations, calls it at the end of each).
pub(super) fn flush() {
    if let Some((provider, _)) = PROVIDER.get()
        && let Err(e) = provider.force_flush()
    {
        tracing::debug!(error = %e, "traces not flushed");
    }
}

fn remote(parent: &TraceContext) -> Context {
    let flags = if parent.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    let state = parent
        .state
        .as_deref()
        .and_then(|s| TraceState::from_str(s).ok())
        .unwrap_or_default();
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from_bytes(parent.trace_id),
        SpanId::from_bytes(parent.span_id),
        flags,
        true,
        state,
    ))
}

fn ours(sc: &SpanContext, state: Option<String>) -> Option<TraceContext> {
    sc.is_valid().then(|| TraceContext {
        trace_id: sc.trace_id().to_bytes(),
        span_id: sc.span_id().to_bytes(),
        sampled: sc.is_sampled(),
        state,
    })
}

/// `span` as an OpenTelemetry span under `parent`; its context, or our own
/// ids when the span is not exported (export off, or the span filtered out).
pub(super) fn attach(span: &tracing::Span, parent: Option<&TraceContext>) -> TraceContext {
    if PROVIDER.get().is_none() {
        return own_ids(parent);
    }
    if let Some(p) = parent {
        let _ = span.set_parent(remote(p));
    }
    let state = parent.and_then(|p| p.state.clone());
    ours(span.context().span().span_context(), state).unwrap_or_else(|| own_ids(parent))
}

/// An exported `queue_wait` span from `sent_ms` to `now_ms` under `parent`.
pub(super) fn queue_wait(parent: &TraceContext, sent_ms: i64, now_ms: i64) -> TraceContext {
    let Some((_, tracer)) = PROVIDER.get() else {
        return parent.child();
    };
    let at = |ms: i64| UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    let end = now_ms.max(sent_ms);
    let mut span = tracer
        .span_builder("queue_wait")
        .with_kind(SpanKind::Internal)
        .with_start_time(at(sent_ms))
        .with_attributes([KeyValue::new("queue.wait_ms", end - sent_ms)])
        .start_with_context(tracer, &remote(parent));
    let sc = span.span_context().clone();
    span.end_with_timestamp(at(end));
    ours(&sc, parent.state.clone()).unwrap_or_else(|| parent.child())
}
