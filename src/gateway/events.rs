//! Builds the proxy events API Gateway would send for a connection: `$connect`
//! (with headers and query string), messages (with `body`) and `$disconnect`
//! (with the close code and reason).

use std::collections::BTreeMap;

use axum::http::HeaderMap;

use super::ids::new_id;
use super::registry::ConnHandle;
use crate::clock::clf_time;
use crate::handlers::{EventType, Identity, RequestContext, RequestParameters, WebSocketEvent};

/// The API id the local gateway reports (`requestContext.apiId`).
pub const LOCAL_API_ID: &str = "local";

/// The method ARN of a route, as API Gateway gives it to authorizers:
/// `arn:aws:execute-api:{region}:{account}:{apiId}/{stage}/{routeKey}`; the
/// local gateway's region is `local` and its account twelve zeros.
pub fn method_arn(stage: &str, route_key: &str) -> String {
    format!("arn:aws:execute-api:local:000000000000:{LOCAL_API_ID}/{stage}/{route_key}")
}

fn context(
    handle: &ConnHandle,
    route_key: &str,
    event_type: EventType,
    request_id: String,
    now: i64,
) -> RequestContext {
    RequestContext {
        route_key: route_key.to_owned(),
        event_type,
        connection_id: handle.id.clone(),
        extended_request_id: Some(request_id.clone()),
        request_id,
        message_id: None,
        message_direction: Some("IN".into()),
        request_time: Some(clf_time(now)),
        request_time_epoch: now,
        connected_at: handle.connected_at,
        domain_name: handle.domain_name.clone(),
        stage: handle.stage.clone(),
        api_id: Some(LOCAL_API_ID.into()),
        identity: Identity {
            source_ip: handle.source_ip.clone(),
            user_agent: handle.user_agent.clone(),
        },
        authorizer: handle.authorizer.clone(),
        disconnect_status_code: None,
        disconnect_reason: None,
    }
}

/// `Sec-WebSocket-Key` as API Gateway spells header names (hyper lowercases them).
fn title_case(name: &str) -> String {
    name.split('-')
        .map(|part| {
            let mut c = part.chars();
            match c.next() {
                Some(first) => first.to_ascii_uppercase().to_string() + c.as_str(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// The `$connect` event of an upgrade request.
pub fn connect_event(
    handle: &ConnHandle,
    headers: &HeaderMap,
    query: &[(String, String)],
    request_id: String,
    now: i64,
) -> WebSocketEvent {
    let mut single = BTreeMap::new();
    let mut multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let name = title_case(name.as_str());
        let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
        single.insert(name.clone(), value.clone());
        multi.entry(name).or_default().push(value);
    }
    let mut q_single = BTreeMap::new();
    let mut q_multi: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in query {
        q_single.insert(k.clone(), v.clone());
        q_multi.entry(k.clone()).or_default().push(v.clone());
    }
    WebSocketEvent {
        request: RequestParameters {
            headers: (!single.is_empty()).then_some(single),
            multi_value_headers: (!multi.is_empty()).then_some(multi),
            query_string_parameters: (!q_single.is_empty()).then_some(q_single),
            multi_value_query_string_parameters: (!q_multi.is_empty()).then_some(q_multi),
            stage_variables: None,
        },
        request_context: context(handle, "$connect", EventType::Connect, request_id, now),
        body: None,
        is_base64_encoded: false,
    }
}

/// The event of one client frame routed to `route_key`.
pub fn message_event(
    handle: &ConnHandle,
    route_key: &str,
    body: String,
    request_id: String,
    now: i64,
) -> WebSocketEvent {
    let mut ctx = context(handle, route_key, EventType::Message, request_id, now);
    ctx.message_id = Some(new_id());
    // API Gateway passes no headers with messages; ours passes the
    // handshake's trace headers, as an integration may.
    let headers = &handle.trace_headers;
    WebSocketEvent {
        request: RequestParameters {
            headers: (!headers.is_empty()).then(|| headers.clone()),
            ..RequestParameters::default()
        },
        request_context: ctx,
        body: Some(body),
        is_base64_encoded: false,
    }
}

/// The `$disconnect` event after a close with `code` and `reason`.
pub fn disconnect_event(handle: &ConnHandle, code: u16, reason: &str, now: i64) -> WebSocketEvent {
    let mut ctx = context(handle, "$disconnect", EventType::Disconnect, new_id(), now);
    ctx.disconnect_status_code = Some(i64::from(code));
    ctx.disconnect_reason = Some(reason.to_owned());
    WebSocketEvent {
        request: RequestParameters::default(),
        request_context: ctx,
        body: None,
        is_base64_encoded: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_title_cased() {
        assert_eq!(title_case("sec-websocket-key"), "Sec-Websocket-Key");
        assert_eq!(title_case("host"), "Host");
        assert_eq!(title_case("x-amzn-trace-id"), "X-Amzn-Trace-Id");
    }
}
