//! Trace context: W3C `traceparent`/`tracestate` and X-Ray's trace header,
//! carried from the edge through the queue to the worker (always on), and
//! the link between a [`tracing`] span and that context.
//!
//! Without the `otel` feature the ids are our own: a span continuing a
//! context gets a fresh span id under the same trace id, recorded in the
//! span's `trace_id` field so every log line of the message carries it.
//! With `otel`, `telemetry::otel` (through `telemetry::continue_trace`) makes the spans OpenTelemetry spans whose
//! remote parent is the context, and the ids passed on are theirs.

use std::collections::BTreeMap;

/// Message attribute carrying the W3C `traceparent`.
pub const ATTR_TRACEPARENT: &str = "traceparent";
/// Message attribute carrying the W3C `tracestate`.
pub const ATTR_TRACESTATE: &str = "tracestate";
/// Header in which Lambda functions and X-Ray pass the trace
/// (`Root=1-...;Parent=...;Sampled=1`).
pub const XRAY_HEADER: &str = "X-Amzn-Trace-Id";
/// The environment variable the Lambda runtime sets per invocation.
pub const XRAY_ENV: &str = "_X_AMZN_TRACE_ID";
/// W3C limit on `tracestate` (32 members of at most 256 characters, ~8 KiB);
/// longer values are dropped rather than propagated.
const MAX_TRACESTATE: usize = 8192;

/// One point in a trace: the trace, the span that is the parent of what
/// comes next, whether it is sampled, and the vendors' `tracestate`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    /// 16 bytes, never all zero.
    pub trace_id: [u8; 16],
    /// 8 bytes, never all zero.
    pub span_id: [u8; 8],
    /// The `sampled` trace flag.
    pub sampled: bool,
    /// W3C `tracestate`, passed on unchanged.
    pub state: Option<String>,
}

fn hex(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(HEX[usize::from(b >> 4)] as char);
        s.push(HEX[usize::from(b & 0xf)] as char);
    }
    s
}

/// Lowercase hex of exactly `N` bytes (W3C forbids upper case).
fn unhex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != 2 * N {
        return None;
    }
    let digit = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (digit(pair[0])? << 4) | digit(pair[1])?;
    }
    Some(out)
}

fn nonzero<const N: usize>(id: [u8; N]) -> Option<[u8; N]> {
    id.iter().any(|b| *b != 0).then_some(id)
}

pub(crate) fn random_span_id() -> [u8; 8] {
    loop {
        if let Some(id) = nonzero(rand::random::<[u8; 8]>()) {
            return id;
        }
    }
}

impl TraceContext {
    /// A new trace. The first four bytes of the trace id are the epoch
    /// seconds, so that it is also a valid X-Ray trace id.
    pub fn new_root() -> Self {
        let mut trace_id: [u8; 16] = rand::random();
        let secs = u32::try_from(crate::sync::now_ms() / 1000).unwrap_or(u32::MAX);
        trace_id[..4].copy_from_slice(&secs.to_be_bytes());
        TraceContext {
            trace_id,
            span_id: random_span_id(),
            sampled: true,
            state: None,
        }
    }

    /// The next span in the same trace: a new span id, everything else kept.
    pub fn child(&self) -> Self {
        TraceContext {
            span_id: random_span_id(),
            ..self.clone()
        }
    }

    /// Parses a W3C `traceparent` (`00-{32 hex}-{16 hex}-{2 hex}`); a later
    /// version is read by its first four fields, as the spec asks. `None`
    /// for anything invalid (then a new trace starts).
    pub fn parse(traceparent: &str, tracestate: Option<&str>) -> Option<Self> {
        let tp = traceparent.trim();
        let mut parts = tp.split('-');
        let version = unhex::<1>(parts.next()?)?[0];
        let trace_id = nonzero(unhex::<16>(parts.next()?)?)?;
        let span_id = nonzero(unhex::<8>(parts.next()?)?)?;
        let flags = unhex::<1>(parts.next()?)?[0];
        // Version 255 is invalid; version 00 has exactly four fields.
        if version == 0xff || (version == 0 && parts.next().is_some()) {
            return None;
        }
        let state = tracestate
            .map(str::trim)
            .filter(|s| !s.is_empty() && s.len() <= MAX_TRACESTATE)
            .map(str::to_owned);
        Some(TraceContext {
            trace_id,
            span_id,
            sampled: flags & 1 == 1,
            state,
        })
    }

    /// Parses X-Ray's `Root=1-{8 hex}-{24 hex};Parent={16 hex};Sampled=1`
    /// (other fields, such as `Lineage`, are ignored). Without a `Parent`
    /// the context gets a random span id: the trace is continued, its
    /// parent is unknown.
    pub fn from_xray(header: &str) -> Option<Self> {
        let (mut root, mut parent, mut sampled) = (None, None, true);
        for field in header.split(';') {
            let (k, v) = field.trim().split_once('=')?;
            match k.trim() {
                "Root" => root = Some(v.trim()),
                "Parent" => parent = Some(v.trim()),
                "Sampled" => sampled = v.trim() != "0",
                _ => {}
            }
        }
        let mut root = root?.split('-');
        if root.next()? != "1" {
            return None;
        }
        let epoch = root.next()?;
        let unique = root.next()?;
        if root.next().is_some() {
            return None;
        }
        let trace_id = nonzero(unhex::<16>(
            &format!("{epoch}{unique}").to_ascii_lowercase(),
        )?)?;
        let span_id = match parent {
            Some(p) => nonzero(unhex::<8>(&p.to_ascii_lowercase())?)?,
            None => random_span_id(),
        };
        Some(TraceContext {
            trace_id,
            span_id,
            sampled,
            state: None,
        })
    }

    /// The W3C `traceparent` (version 00).
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            hex(&self.trace_id),
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The trace in X-Ray's header format (SQS's `AWSTraceHeader`).
    pub fn xray(&self) -> String {
        let t = hex(&self.trace_id);
        format!(
            "Root=1-{}-{};Parent={};Sampled={}",
            &t[..8],
            &t[8..],
            hex(&self.span_id),
            u8::from(self.sampled)
        )
    }

    /// The trace id, 32 lowercase hex digits (the `trace_id` of log lines).
    pub fn trace_id_hex(&self) -> String {
        hex(&self.trace_id)
    }

    /// The context carried by message attributes (`traceparent`, and
    /// `tracestate` beside it), if there is a valid one.
    pub fn from_attributes(attributes: &BTreeMap<String, String>) -> Option<Self> {
        let tp = attributes.get(ATTR_TRACEPARENT)?;
        Self::parse(tp, attributes.get(ATTR_TRACESTATE).map(String::as_str))
    }

    /// Writes `traceparent` (and `tracestate`, when there is one) into
    /// message attributes.
    pub fn write_attributes(&self, attributes: &mut BTreeMap<String, String>) {
        attributes.insert(ATTR_TRACEPARENT.to_owned(), self.traceparent());
        if let Some(state) = &self.state {
            attributes.insert(ATTR_TRACESTATE.to_owned(), state.clone());
        }
    }
}

/// Without an exporter: a child of `parent`, or a new trace.
pub(crate) fn own_ids(parent: Option<&TraceContext>) -> TraceContext {
    match parent {
        Some(p) => p.child(),
        None => TraceContext::new_root(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TP: &str = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";

    #[test]
    fn traceparent_round_trips_and_bad_ones_are_refused() {
        let c = TraceContext::parse(TP, Some("rojo=00f067aa0ba902b7")).unwrap();
        assert_eq!(c.traceparent(), TP);
        assert_eq!(c.trace_id_hex(), "4bf92f3577b34da6a3ce929d0e0e4736");
        assert!(c.sampled);
        assert_eq!(c.state.as_deref(), Some("rojo=00f067aa0ba902b7"));
        let unsampled = TP.replace("-01", "-00");
        assert!(!TraceContext::parse(&unsampled, None).unwrap().sampled);
        // A future version with more fields is read by its first four.
        assert!(
            TraceContext::parse(&format!("{}-extra", TP.replacen("00", "01", 1)), None).is_some()
        );
        for bad in [
            "",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-x",
            "00-4bf92f3577b34da6a3ce929d0e0e473-600f067aa0ba902b7-01",
        ] {
            assert_eq!(TraceContext::parse(bad, None), None, "{bad}");
        }
    }

    #[test]
    fn xray_header_maps_to_the_same_trace() {
        let c = TraceContext::parse(TP, None).unwrap();
        let x = c.xray();
        assert_eq!(
            x,
            "Root=1-4bf92f35-77b34da6a3ce929d0e0e4736;Parent=00f067aa0ba902b7;Sampled=1"
        );
        assert_eq!(TraceContext::from_xray(&x).unwrap(), c);
        let lambda = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=0;Lineage=a87bd80c:0";
        let l = TraceContext::from_xray(lambda).unwrap();
        assert_eq!(l.trace_id_hex(), "5759e988bd862e3fe1be46a994272793");
        assert!(!l.sampled);
        let no_parent =
            TraceContext::from_xray("Root=1-5759e988-bd862e3fe1be46a994272793").unwrap();
        assert_eq!(no_parent.trace_id, l.trace_id);
        assert_eq!(
            TraceContext::from_xray("Root=2-5759e988-bd862e3fe1be46a994272793"),
            None
        );
        assert_eq!(TraceContext::from_xray("Parent=53995c3f42cd8ad8"), None);
    }

    #[test]
    fn new_traces_are_valid_xray_ids_and_children_keep_the_trace() {
        let root = TraceContext::new_root();
        let secs = u32::from_be_bytes(root.trace_id[..4].try_into().unwrap());
        let now = (crate::sync::now_ms() / 1000) as u32;
        assert!(now - secs <= 1, "epoch seconds first: {secs} vs {now}");
        let child = root.child();
        assert_eq!(child.trace_id, root.trace_id);
        assert_ne!(child.span_id, root.span_id);
        let mut attrs = BTreeMap::new();
        TraceContext {
            state: Some("a=b".into()),
            ..child.clone()
        }
        .write_attributes(&mut attrs);
        let back = TraceContext::from_attributes(&attrs).unwrap();
        assert_eq!(back.span_id, child.span_id);
        assert_eq!(back.state.as_deref(), Some("a=b"));
    }
}
