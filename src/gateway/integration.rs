//! Integrations at run time: what runs for a route. `builtin` (the
//! [`crate::handlers`], in-process, fed the same proxy event JSON as on AWS),
//! `http_proxy` and `http` (an HTTP endpoint, see [`super::http_integration`]) and
//! `mock` (a fixed answer). Their configuration is [`super::config::Integration`].
//!
//! Every invocation is bounded by the integration's timeout (50 ms–29 s, API
//! Gateway's range; default 29 s). A timeout, a failed call or a handler error is
//! an [`IntegrationError`]: the client gets `Internal server error`.

use std::time::Duration;

use super::config::{Integration, IntegrationSpec};
use super::http_integration::HttpClient;
use crate::handlers::{Handlers, ProxyResponse, WebSocketEvent};

/// Why an invocation failed.
#[derive(Debug, thiserror::Error)]
pub enum IntegrationError {
    /// No answer within the integration timeout.
    #[error("integration timed out after {0:?}")]
    Timeout(Duration),
    /// The call failed (connection refused, bad answer, handler error).
    #[error("integration failed: {0}")]
    Failed(String),
}

/// Runs integrations.
#[derive(Clone, Debug)]
pub struct Invoker {
    handlers: Option<Handlers>,
    http: HttpClient,
}

impl Invoker {
    /// An invoker; `handlers` serve the `builtin` integrations.
    pub fn new(handlers: Option<Handlers>) -> Self {
        Invoker {
            handlers,
            http: HttpClient::new(),
        }
    }

    /// Invokes `integration` for `event`, within its timeout.
    pub async fn invoke(
        &self,
        integration: &Integration,
        event: &WebSocketEvent,
    ) -> Result<ProxyResponse, IntegrationError> {
        let call = async {
            match &integration.spec {
                IntegrationSpec::Builtin(kind) => {
                    let handlers = self.handlers.as_ref().ok_or_else(|| {
                        IntegrationError::Failed("no backend for builtin handlers".into())
                    })?;
                    // The same JSON a Lambda function receives.
                    let json = serde_json::to_string(event)
                        .map_err(|e| IntegrationError::Failed(e.to_string()))?;
                    handlers
                        .handle_json(*kind, &json)
                        .await
                        .map_err(|e| IntegrationError::Failed(e.to_string()))
                }
                IntegrationSpec::HttpProxy(spec) | IntegrationSpec::Http(spec) => self
                    .http
                    .call(spec, event)
                    .await
                    .map_err(IntegrationError::Failed),
                IntegrationSpec::Mock {
                    status_code,
                    response_template,
                } => Ok(ProxyResponse {
                    body: response_template.as_ref().map(|t| t.render(event)),
                    ..ProxyResponse::status(*status_code)
                }),
            }
        };
        tokio::time::timeout(integration.timeout, call)
            .await
            .map_err(|_| IntegrationError::Timeout(integration.timeout))?
    }
}
