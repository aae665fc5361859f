//! Gateway configurations shared by the gateway suites: the `whoami` route
//! and a `$disconnect` integration that reports each close to a
//! [`Recorder`], read back with [`disconnect_of`].

use std::time::Duration;

use serde_json::Value;
use switchboard::gateway::GatewayConfig;

use super::recorder::{Recorded, Recorder};

/// The `whoami` mock route [`super::ws::whoami`] asks: answers the caller's
/// connection id.
pub const WHOAMI_ROUTE: &str = r#"
[[routes]]
key = "whoami"
integration = { type = "mock", response_template = "$context.connectionId" }
route_response_selection_expression = "$default"
"#;

/// `whoami`, then `routes` (more `[[routes]]` tables, may be empty), then an
/// `http` `$disconnect` integration that POSTs `{"id", "code", "reason"}` of
/// every close to `backend`'s `/disconnect`.
pub fn reporting_config(backend: &Recorder, routes: &str) -> GatewayConfig {
    GatewayConfig::parse(
        &format!(
            r#"{WHOAMI_ROUTE}{routes}
[[routes]]
key = "$disconnect"
integration = {{ type = "http", uri = "{}", request_template = "{{\"id\": \"$context.connectionId\", \"code\": $context.disconnectStatusCode, \"reason\": \"$context.disconnectReason\"}}" }}
"#,
            backend.url("/disconnect")
        ),
        "test config",
    )
    .unwrap()
}

/// The `$disconnect` report (code, reason) for connection `id` of a
/// [`reporting_config`] gateway; panics if none arrives within `deadline`.
pub async fn disconnect_of(backend: &Recorder, id: &str, deadline: Duration) -> (u64, String) {
    super::eventually(deadline, "the $disconnect report", || async {
        backend
            .requests_to("/disconnect")
            .into_iter()
            .find_map(|r: Recorded| {
                let v: Value = serde_json::from_str(&r.body).ok()?;
                (v["id"] == id).then(|| {
                    (
                        v["code"].as_u64().unwrap(),
                        v["reason"].as_str().unwrap().to_owned(),
                    )
                })
            })
    })
    .await
}
