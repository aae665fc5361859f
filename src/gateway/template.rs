//! Templates and context variables: `$context.<variable>` and `$input.body`, the
//! subset of API Gateway's mapping templates the local gateway supports. Used by
//! `mock` response templates, `http` request templates and request parameters.

use crate::handlers::WebSocketEvent;

/// A text template with `$context.<variable>` and `$input.body` placeholders
/// (the subset of API Gateway's mapping templates the local gateway supports).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Context(&'static str),
    InputBody,
}

/// The `$context` variables a template or request parameter may use.
pub const CONTEXT_VARIABLES: [&str; 14] = [
    "connectionId",
    "requestId",
    "messageId",
    "routeKey",
    "eventType",
    "stage",
    "domainName",
    "apiId",
    "connectedAt",
    "requestTimeEpoch",
    "identity.sourceIp",
    "identity.userAgent",
    "disconnectStatusCode",
    "disconnectReason",
];

/// Looks a context variable up by name.
pub fn context_variable(name: &str) -> Option<&'static str> {
    CONTEXT_VARIABLES.iter().copied().find(|v| *v == name)
}

/// The value of context variable `name` for `event` (empty when absent).
pub fn context_value(event: &WebSocketEvent, name: &str) -> String {
    let c = &event.request_context;
    match name {
        "connectionId" => c.connection_id.clone(),
        "requestId" => c.request_id.clone(),
        "messageId" => c.message_id.clone().unwrap_or_default(),
        "routeKey" => c.route_key.clone(),
        "eventType" => serde_json::to_value(c.event_type)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        "stage" => c.stage.clone(),
        "domainName" => c.domain_name.clone(),
        "apiId" => c.api_id.clone().unwrap_or_default(),
        "connectedAt" => c.connected_at.to_string(),
        "requestTimeEpoch" => c.request_time_epoch.to_string(),
        "identity.sourceIp" => c.identity.source_ip.clone(),
        "identity.userAgent" => c.identity.user_agent.clone().unwrap_or_default(),
        "disconnectStatusCode" => c
            .disconnect_status_code
            .map(|c| c.to_string())
            .unwrap_or_default(),
        "disconnectReason" => c.disconnect_reason.clone().unwrap_or_default(),
        _ => String::new(),
    }
}

impl Template {
    /// Parses a template; unknown `$context` variables are errors.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(i) = rest.find('$') {
            pieces.push(Piece::Text(rest[..i].to_owned()));
            rest = &rest[i..];
            if let Some(after) = rest.strip_prefix("$input.body") {
                pieces.push(Piece::InputBody);
                rest = after;
            } else if let Some(after) = rest.strip_prefix("$context.") {
                let len = after
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '.'))
                    .unwrap_or(after.len());
                let name = after[..len].trim_end_matches('.');
                let var = context_variable(name).ok_or_else(|| {
                    format!(
                        "unknown template variable `$context.{name}`: use one of {} or $input.body",
                        CONTEXT_VARIABLES.join(", ")
                    )
                })?;
                pieces.push(Piece::Context(var));
                rest = &after[name.len()..];
            } else {
                pieces.push(Piece::Text("$".into()));
                rest = &rest[1..];
            }
        }
        pieces.push(Piece::Text(rest.to_owned()));
        pieces.retain(|p| !matches!(p, Piece::Text(t) if t.is_empty()));
        Ok(Template(pieces))
    }

    /// The template with `event`'s values filled in.
    pub fn render(&self, event: &WebSocketEvent) -> String {
        let mut out = String::new();
        for piece in &self.0 {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Context(name) => out.push_str(&context_value(event, name)),
                Piece::InputBody => out.push_str(event.body.as_deref().unwrap_or_default()),
            }
        }
        out
    }
}
