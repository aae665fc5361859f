//! Why a step failed, and whether the message is worth retrying.

use crate::backend::BackendError;

/// Why a step failed.
#[derive(Debug, thiserror::Error)]
pub enum ActionError {
    /// A table or queue call failed; retriable or not by its kind.
    #[error("{step}: {source}")]
    Backend {
        /// The step (store, broadcast, ...).
        step: &'static str,
        /// The backend error.
        #[source]
        source: BackendError,
    },
    /// The message can never succeed (bad `data`, frame too large).
    #[error("{message}")]
    BadRequest {
        /// Error frame code.
        code: &'static str,
        /// Explanation for the sender and the DLQ.
        message: String,
    },
    /// Nowhere to deliver to.
    #[error("no @connections endpoint: the envelope has no callback and --callback-url is not set")]
    NoEndpoint,
}

impl ActionError {
    /// Whether the message should be retried later.
    pub fn is_retriable(&self) -> bool {
        matches!(self, ActionError::Backend { source, .. } if source.is_retriable())
    }

    /// Fixed label for metrics and the DLQ `errorType` attribute.
    pub fn kind(&self) -> &'static str {
        match self {
            ActionError::Backend { source, .. } => source.kind.as_str(),
            ActionError::BadRequest { code, .. } => code,
            ActionError::NoEndpoint => "no_endpoint",
        }
    }

    pub(super) fn backend(step: &'static str) -> impl FnOnce(BackendError) -> ActionError {
        move |source| ActionError::Backend { step, source }
    }

    pub(super) fn bad(code: &'static str, message: impl Into<String>) -> ActionError {
        ActionError::BadRequest {
            code,
            message: message.into(),
        }
    }
}
