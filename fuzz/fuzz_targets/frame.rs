//! A client's text frame, as the gateway handles it: route selection, then
//! the send handler's `envelope_for`. Never panics; a frame is either an
//! envelope the worker accepts or a 4xx refusal whose body is an `error`
//! frame with a code and a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::envelope::Envelope;
use switchboard::gateway::route::RouteSelection;
use switchboard::handlers::{WebSocketEvent, envelope_for};

const EVENT: &str = include_str!("../../tests/fixtures/apigw-ws-message.json");

fuzz_target!(|data: &[u8]| {
    let frame = String::from_utf8_lossy(data).into_owned();
    let selection = RouteSelection::parse("$request.body.action").unwrap();
    let mut event: WebSocketEvent = serde_json::from_str(EVENT).unwrap();
    if let Some(key) = selection.select(&frame) {
        event.request_context.route_key = key;
    }
    event.body = Some(frame);
    match envelope_for(&event, "room", Some("alice".into())) {
        Ok(env) => {
            Envelope::parse(&serde_json::to_string(&env).unwrap()).expect("the worker accepts it");
        }
        Err(refusal) => {
            assert!((400..500).contains(&refusal.status_code));
            let body: serde_json::Value =
                serde_json::from_str(refusal.body.as_deref().unwrap()).expect("a JSON error frame");
            assert_eq!(body["type"], "error");
            assert!(body["code"].as_str().is_some_and(|c| !c.is_empty()));
            assert!(body["message"].as_str().is_some_and(|m| !m.is_empty()));
        }
    }
});
