//! Custom routes write envelope v1 to the FIFO queue; `$default` tells the
//! sender which actions exist.

use serde_json::{Value, json};
use tracing::Instrument;

use super::{HandlerError, Handlers, ProxyResponse, WebSocketEvent, refuse};
use crate::backend::OutgoingMessage;
use crate::envelope::API_GATEWAY_MESSAGE_BYTES as MAX_FRAME_BYTES;
use crate::envelope::{
    Callback, ENVELOPE_VERSION, Envelope, LEAVE_ACTION, MAX_PAYLOAD_BYTES, MessageFrame, Sender,
    encoded_len, leave_id,
};
use crate::telemetry::trace::{ATTR_TRACEPARENT, ATTR_TRACESTATE, TraceContext, XRAY_HEADER};

/// The envelope for a message event whose connection belongs to `session_id`,
/// or the refusal to send back. The envelope is checked exactly as the worker
/// will check it, so nothing is enqueued that the worker would dead-letter.
pub fn envelope_for(
    event: &WebSocketEvent,
    session_id: &str,
    user_id: Option<String>,
    region: Option<&str>,
) -> Result<Envelope, ProxyResponse> {
    let ctx = &event.request_context;
    let id = &ctx.request_id;
    if event.is_base64_encoded {
        return Err(refuse(
            400,
            id,
            "binary_not_supported",
            "binary frames are not supported: send JSON text frames",
        ));
    }
    let body = event.body.as_deref().unwrap_or_default();
    let frame: Value = serde_json::from_str(body).map_err(|e| {
        refuse(
            400,
            id,
            "bad_request",
            format!("the frame is not JSON ({e}): send {{\"action\": \"...\", \"data\": ...}}"),
        )
    })?;
    let payload = frame.get("data").cloned().unwrap_or(Value::Null);
    let size = encoded_len(&payload);
    if size > MAX_PAYLOAD_BYTES {
        return Err(refuse(
            413,
            id,
            "payload_too_large",
            format!("`data` is {size} bytes encoded; the limit is {MAX_PAYLOAD_BYTES}"),
        ));
    }
    let envelope = Envelope {
        v: ENVELOPE_VERSION,
        id: id.clone(),
        action: ctx.route_key.clone(),
        session_id: session_id.to_owned(),
        sender: Sender {
            connection_id: ctx.connection_id.clone(),
            user_id,
        },
        callback: Some(Callback {
            domain_name: callback_domain(ctx, region),
            stage: ctx.stage.clone(),
        }),
        received_at: ctx.request_time_epoch,
        payload,
    };
    // The worker delivers the payload inside a message frame (id, session,
    // action, sender, time around it), and @connections takes at most
    // 128 KiB: a `data` just under its own limit made a frame over it, which
    // the worker dead-lettered. Measure the exact frame it will build.
    // The largest `seq` the store step could add is counted too.
    let frame_len =
        serde_json::to_vec(&MessageFrame::from_envelope(&envelope).with_seq(Some(u64::MAX)))
            .map(|f| f.len())
            .unwrap_or(usize::MAX);
    if frame_len > MAX_FRAME_BYTES {
        return Err(refuse(
            413,
            id,
            "payload_too_large",
            format!(
                "`data` is {size} bytes encoded; with the message frame around it that is \
                 {frame_len} bytes, over the {MAX_FRAME_BYTES} a WebSocket message may have"
            ),
        ));
    }
    let text = serde_json::to_string(&envelope).expect("an envelope always encodes");
    Envelope::parse(&text).map_err(|e| refuse(400, id, e.kind(), e.to_string()))
}

/// The host of the @connections API for frames of this event: the event's
/// `domainName` when it is the API's execute-api endpoint (or the region is
/// not known), else — a custom domain — `{apiId}.execute-api.{region}.amazonaws.com`
/// (`.com.cn` in the China regions). Posting through a custom domain fails
/// unless its API mapping happens to be the stage name; the execute-api
/// endpoint always serves @connections.
fn callback_domain(ctx: &super::RequestContext, region: Option<&str>) -> String {
    let domain = &ctx.domain_name;
    match (ctx.api_id.as_deref(), region) {
        (Some(api), Some(region))
            if !api.is_empty() && !region.is_empty() && !domain.contains(".execute-api.") =>
        {
            let suffix = if region.starts_with("cn-") {
                "amazonaws.com.cn"
            } else {
                "amazonaws.com"
            };
            format!("{api}.execute-api.{region}.{suffix}")
        }
        _ => domain.clone(),
    }
}

/// The trace a client frame continues, when one is known: a `traceparent`
/// (and `tracestate`) header the integration passes (the local gateway passes
/// the `$connect` handshake's), then the same in the authorizer's context
/// (API Gateway hands it to every event of the connection), then X-Ray's
/// `X-Amzn-Trace-Id` (the Lambda functions put their `_X_AMZN_TRACE_ID`
/// there). Invalid values are ignored: the frame starts a new trace.
pub fn incoming_trace(event: &WebSocketEvent) -> Option<TraceContext> {
    let ctx = &event.request_context;
    let header = |name| event.request.header(name).map(str::to_owned);
    let from_header = header(ATTR_TRACEPARENT)
        .and_then(|tp| TraceContext::parse(&tp, header(ATTR_TRACESTATE).as_deref()));
    from_header
        .or_else(|| {
            let tp = ctx.authorizer_value(ATTR_TRACEPARENT)?;
            TraceContext::parse(&tp, ctx.authorizer_value(ATTR_TRACESTATE).as_deref())
        })
        .or_else(|| TraceContext::from_xray(event.request.header(XRAY_HEADER)?))
}

/// Puts a presence event (`$join` / `$leave`) of connection `conn` in its
/// session's FIFO group, so the worker announces it in order with the
/// session's messages. A join's id is the `$connect` event's request id
/// (unique per event, so a retried invocation is deduplicated); a leave's is
/// [`leave_id`], the one a worker that prunes the connection's record uses
/// too, so the queue keeps one leave per connection whoever sends first.
pub(super) async fn enqueue_presence(
    h: &Handlers,
    event: &WebSocketEvent,
    action: &str,
    conn: &crate::backend::Connection,
) -> Result<(), HandlerError> {
    let ctx = &event.request_context;
    let id = if action == LEAVE_ACTION {
        leave_id(&conn.connection_id)
    } else {
        ctx.request_id.clone()
    };
    let envelope = Envelope::presence_event(
        id,
        action,
        conn.session_id.clone(),
        Sender {
            connection_id: conn.connection_id.clone(),
            user_id: conn.user_id.clone(),
        },
        Some(Callback {
            domain_name: callback_domain(ctx, h.settings.region.as_deref()),
            stage: ctx.stage.clone(),
        }),
        ctx.request_time_epoch,
    );
    h.queue
        .send(&OutgoingMessage::of_envelope(&envelope))
        .await?;
    Ok(())
}

pub(super) async fn send(
    h: &Handlers,
    event: &WebSocketEvent,
) -> Result<ProxyResponse, HandlerError> {
    let ctx = &event.request_context;
    // One span per client frame: the edge of the message's trace.
    let span = tracing::info_span!(
        "send",
        otel.name = "send",
        otel.kind = "producer",
        trace_id = tracing::field::Empty,
        id = %ctx.request_id,
        action = %ctx.route_key,
        connection = %ctx.connection_id,
    );
    let trace = crate::telemetry::continue_trace(&span, incoming_trace(event).as_ref());
    send_traced(h, event, trace).instrument(span).await
}

async fn send_traced(
    h: &Handlers,
    event: &WebSocketEvent,
    trace: TraceContext,
) -> Result<ProxyResponse, HandlerError> {
    let ctx = &event.request_context;
    // An authorizer that put the session in its context saves a table read.
    let (session, user) = match ctx.authorizer_value("sessionId") {
        Some(session) => (session, ctx.authorizer_value("userId")),
        None => match h.connections.get(&ctx.connection_id).await? {
            Some(conn) => (
                conn.session_id,
                ctx.authorizer_value("userId").or(conn.user_id),
            ),
            None => {
                return Ok(refuse(
                    403,
                    &ctx.request_id,
                    "unknown_connection",
                    format!(
                        "connection {} has no record (it was never stored by $connect, or it \
                         expired): reconnect",
                        ctx.connection_id
                    ),
                ));
            }
        },
    };
    let envelope = match envelope_for(event, &session, user, h.settings.region.as_deref()) {
        Ok(e) => e,
        Err(refusal) => return Ok(refusal),
    };
    let mut message = OutgoingMessage::of_envelope(&envelope);
    // The worker continues the trace from here (SQS passes the attribute).
    trace.write_attributes(&mut message.attributes);
    let message_id = h.queue.send(&message).await?;
    tracing::debug!(%message_id, session = %envelope.session_id, "enqueued");
    Ok(ProxyResponse::status(200))
}

pub(super) fn default_route(h: &Handlers, event: &WebSocketEvent) -> ProxyResponse {
    let actions = &h.settings.known_actions;
    let example = actions.first().map(String::as_str).unwrap_or("sendMessage");
    // A frame that is not JSON at all (a number out of range such as 1e400,
    // a lone surrogate escape, nesting past the parser's limit) is routed
    // here too, as on API Gateway; say so rather than "no route".
    let not_json = event
        .body
        .as_deref()
        // `Value`, not `IgnoredAny`: skipping does not check number ranges
        // or escapes.
        .map(|b| serde_json::from_str::<serde_json::Value>(b).err())
        .unwrap_or(None);
    let why = match not_json {
        Some(e) => format!("the frame is not valid JSON ({e})"),
        None => "no route for this frame".to_owned(),
    };
    let message = format!(
        "{why}: send {{\"action\": \"{example}\", \"data\": ...}} with action one of {}",
        actions.join(", ")
    );
    let mut frame = json!({
        "type": "error",
        "id": event.request_context.request_id,
        "code": "unknown_route",
        "message": message,
    });
    frame["actions"] = json!(actions);
    ProxyResponse::json(400, &frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MESSAGE: &str = include_str!("../../tests/fixtures/apigw-ws-message.json");

    fn event() -> WebSocketEvent {
        serde_json::from_str(MESSAGE).unwrap()
    }

    #[test]
    fn envelope_from_the_real_message_event() {
        let e = event();
        let env = envelope_for(&e, "room1", Some("alice".into()), None).unwrap();
        let ctx = &e.request_context;
        assert_eq!(env.v, 1);
        assert_eq!(env.id, ctx.request_id);
        assert_eq!(env.action, "sendMessage");
        assert_eq!(env.session_id, "room1");
        assert_eq!(env.sender.connection_id, ctx.connection_id);
        assert_eq!(env.sender.user_id.as_deref(), Some("alice"));
        let cb = env.callback.unwrap();
        assert_eq!(cb.domain_name, ctx.domain_name);
        assert_eq!(cb.stage, ctx.stage);
        assert_eq!(env.received_at, ctx.request_time_epoch);
        assert_eq!(env.payload, json!({"text": "hi"}));
    }

    #[test]
    fn a_custom_domain_is_answered_through_the_apis_execute_api_endpoint() {
        let mut e = event();
        let api = e.request_context.api_id.clone().unwrap();
        let own = e.request_context.domain_name.clone();
        let callback = |e: &WebSocketEvent, region| {
            envelope_for(e, "s", None, region)
                .unwrap()
                .callback
                .unwrap()
                .domain_name
        };
        // The execute-api endpoint itself stays as it is, region or not.
        assert_eq!(callback(&e, Some("us-east-1")), own);
        e.request_context.domain_name = "chat.example.com".into();
        assert_eq!(
            callback(&e, Some("eu-west-1")),
            format!("{api}.execute-api.eu-west-1.amazonaws.com")
        );
        assert_eq!(
            callback(&e, Some("cn-north-1")),
            format!("{api}.execute-api.cn-north-1.amazonaws.com.cn")
        );
        // Without a region (the local gateway) or an API id: as received.
        assert_eq!(callback(&e, None), "chat.example.com");
        e.request_context.api_id = None;
        assert_eq!(callback(&e, Some("eu-west-1")), "chat.example.com");
    }

    #[test]
    fn a_frame_continues_the_header_then_the_authorizer_then_xray_trace() {
        let tp = |t: &str| format!("00-{t}-00f067aa0ba902b7-01");
        let (a, b, c) = (
            "4bf92f3577b34da6a3ce929d0e0e4736",
            "5bf92f3577b34da6a3ce929d0e0e4736",
            "5759e988bd862e3fe1be46a994272793",
        );
        let mut e = event();
        assert_eq!(incoming_trace(&e), None, "none: a new trace");
        e.request.headers = Some(
            [(
                "X-Amzn-Trace-Id".to_owned(),
                "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"
                    .to_owned(),
            )]
            .into(),
        );
        let id = |e: &WebSocketEvent| incoming_trace(e).map(|t| t.trace_id_hex());
        assert_eq!(id(&e).as_deref(), Some(c));
        e.request_context.authorizer = Some(
            json!({"traceparent": tp(b), "tracestate": "k=v"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(id(&e).as_deref(), Some(b));
        assert_eq!(incoming_trace(&e).unwrap().state.as_deref(), Some("k=v"));
        let headers = e.request.headers.as_mut().unwrap();
        headers.insert("Traceparent".into(), "00-not-a-trace".into());
        assert_eq!(id(&e).as_deref(), Some(b), "an invalid header is ignored");
        let headers = e.request.headers.as_mut().unwrap();
        headers.insert("Traceparent".into(), tp(a));
        assert_eq!(id(&e).as_deref(), Some(a));
    }

    #[test]
    fn missing_data_is_a_null_payload() {
        let mut e = event();
        e.body = Some(r#"{"action":"history"}"#.into());
        assert_eq!(
            envelope_for(&e, "s", None, None).unwrap().payload,
            Value::Null
        );
    }

    #[test]
    fn bad_frames_are_refused() {
        let code = |r: ProxyResponse| {
            let v: Value = serde_json::from_str(r.body.as_deref().unwrap()).unwrap();
            (r.status_code, v["code"].as_str().unwrap().to_owned())
        };
        let mut e = event();
        e.body = Some("not json".into());
        assert_eq!(
            code(envelope_for(&e, "s", None, None).unwrap_err()),
            (400, "bad_request".into())
        );

        let big = "x".repeat(MAX_PAYLOAD_BYTES);
        e.body = Some(json!({"action": "sendMessage", "data": big}).to_string());
        assert_eq!(
            code(envelope_for(&e, "s", None, None).unwrap_err()),
            (413, "payload_too_large".into())
        );

        let mut e = event();
        e.request_context.request_id = "r".repeat(129);
        assert_eq!(
            code(envelope_for(&e, "s", None, None).unwrap_err()),
            (400, "invalid".into())
        );
    }
}
