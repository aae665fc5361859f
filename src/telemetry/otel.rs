//! OpenTelemetry export (feature `otel`).

use super::trace::{TraceContext, own_ids};

pub(super) fn attach(_span: &tracing::Span, parent: Option<&TraceContext>) -> TraceContext {
    own_ids(parent)
}

pub(super) fn queue_wait(parent: &TraceContext, _sent_ms: i64, _now_ms: i64) -> TraceContext {
    parent.child()
}
