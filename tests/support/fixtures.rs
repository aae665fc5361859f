//! The API Gateway WebSocket event fixtures (real shapes, captured in 2024)
//! and [`fresh`], which moves their times to now.

use serde_json::{Value, json};

/// `$connect` proxy event.
pub const CONNECT: &str = include_str!("../fixtures/apigw-ws-connect.json");
/// A custom-route (`sendMessage`) message event.
pub const MESSAGE: &str = include_str!("../fixtures/apigw-ws-message.json");
/// A `$default` message event.
pub const DEFAULT: &str = include_str!("../fixtures/apigw-ws-default.json");
/// `$disconnect` event.
pub const DISCONNECT: &str = include_str!("../fixtures/apigw-ws-disconnect.json");
/// The `$connect` REQUEST authorizer event.
pub const AUTHORIZER: &str = include_str!("../fixtures/apigw-ws-authorizer.json");

/// A fixture with its times moved to now: a connection record from 2024 is
/// long past its TTL, and the tables never return expired connections.
pub fn fresh(fixture: &str) -> Value {
    let mut event: Value = serde_json::from_str(fixture).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    event["requestContext"]["connectedAt"] = json!(now - 1000);
    event["requestContext"]["requestTimeEpoch"] = json!(now);
    event
}
