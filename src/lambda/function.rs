//! One invocation of each function: what the binaries' `service_fn` calls.
//!
//! Errors become the invocation's error (`errorType`, `errorMessage`), which
//! API Gateway turns into `Internal server error` (a 500 on `$connect`); the
//! one exception is the authorizer's `Unauthorized`, which API Gateway
//! answers with 401.

use lambda_runtime::{Diagnostic, LambdaEvent};

use crate::handlers::authorizer::{
    Authorizer, AuthorizerError, AuthorizerEvent, AuthorizerResponse,
};
use crate::handlers::{HandlerError, HandlerKind, Handlers, ProxyResponse, WebSocketEvent};
use crate::telemetry::trace::{XRAY_ENV, XRAY_HEADER};

/// Connect, disconnect, default or send, as the function of `kind`:
/// `$connect` stores the connection (400 with an `error` frame when the
/// session is missing or invalid), `$disconnect` deletes it (idempotent),
/// `$default` answers the sender with the actions that exist, and a custom
/// route (`sendMessage`, `history`, `direct`, ...) enqueues envelope v1 on the
/// FIFO queue. An event of another route fails the invocation.
pub async fn edge(
    handlers: &Handlers,
    kind: HandlerKind,
    event: LambdaEvent<WebSocketEvent>,
) -> Result<ProxyResponse, Diagnostic> {
    let xray = event
        .context
        .xray_trace_id
        .clone()
        .or_else(|| std::env::var(XRAY_ENV).ok());
    let mut event = event.payload;
    // The invocation's X-Ray trace is the parent of the edge span unless
    // the event carries a trace of its own (`handlers::send::incoming_trace`).
    if let Some(xray) = xray.filter(|x| !x.is_empty()) {
        event
            .request
            .headers
            .get_or_insert_with(Default::default)
            .entry(XRAY_HEADER.to_owned())
            .or_insert(xray);
    }
    // A function wired to the wrong route would, say, store a connection
    // record for a `$disconnect`: refuse instead, loudly.
    let expected = HandlerKind::for_event(&event);
    if expected != kind {
        let message = format!(
            "this is the {} function, but the event is a {:?} on route {}: \
             wire it to the right route (deploy/template.json shows how)",
            kind.name(),
            event.request_context.event_type,
            event.request_context.route_key
        );
        tracing::error!(handler = kind.name(), "{message}");
        return Err(Diagnostic {
            error_type: "Switchboard.WrongRoute".into(),
            error_message: message,
        });
    }
    let result = handlers.handle(kind, &event).await;
    // Frozen after the answer: export this invocation's spans now.
    crate::telemetry::flush().await;
    result.map_err(|e| {
        let error_type = match e {
            HandlerError::BadEvent(_) => "Switchboard.BadEvent",
            HandlerError::Backend(_) => "Switchboard.BackendError",
        };
        Diagnostic {
            error_type: error_type.into(),
            error_message: e.to_string(),
        }
    })
}

/// The `$connect` REQUEST authorizer: an Allow or Deny policy on the event's
/// `methodArn` with `principalId` and a string-valued `context`; a token that
/// fails a check fails the invocation with the message `Unauthorized`, which
/// API Gateway answers with 401 (the reason goes to the log, not to the
/// client); keys that cannot be had fail it otherwise (500).
pub async fn authorizer(
    authorizer: &Authorizer,
    event: LambdaEvent<AuthorizerEvent>,
) -> Result<AuthorizerResponse, Diagnostic> {
    let event = event.payload;
    let connection = &event.request_context.connection_id;
    match authorizer.authorize(&event).await {
        Ok(decision) => {
            let response = decision.response;
            let allowed = response.policy_document.allows(&event.method_arn);
            tracing::info!(
                %connection,
                principal = %response.principal_id,
                effect = if allowed { "Allow" } else { "Deny" },
                "authorized"
            );
            Ok(response)
        }
        Err(AuthorizerError::Unauthorized(why)) => {
            tracing::info!(%connection, reason = %why, "unauthorized");
            Err(Diagnostic {
                error_type: "Unauthorized".into(),
                // Exactly this text: API Gateway maps it to 401.
                error_message: "Unauthorized".into(),
            })
        }
        Err(AuthorizerError::Failed(why)) => {
            tracing::error!(%connection, error = %why, "authorizer failed");
            Err(Diagnostic {
                error_type: "Switchboard.AuthorizerFailed".into(),
                error_message: why,
            })
        }
    }
}
