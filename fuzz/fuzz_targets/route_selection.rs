//! Route selection: the input is an expression, a newline, and a frame.
//! Parsing any expression and selecting on any frame never panics; a key is
//! only ever selected from a JSON frame; a refusal says what to write.
#![no_main]

use libfuzzer_sys::fuzz_target;
use switchboard::gateway::route::RouteSelection;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let (expr, frame) = text.split_once('\n').unwrap_or((&text, ""));
    let is_json = serde_json::from_str::<serde_json::Value>(frame).is_ok();
    match RouteSelection::parse(expr) {
        Ok(sel) => {
            if sel.select(frame).is_some() {
                assert!(is_json);
            }
        }
        Err(e) => assert!(!e.is_empty()),
    }
    let default = RouteSelection::parse("$request.body.action").unwrap();
    if default.select(frame).is_some() {
        assert!(is_json);
    }
});
