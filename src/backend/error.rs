//! One error type for every backend, with the kind that decides what the worker
//! does next: retry later, give up (dead-letter), or prune a gone connection.

use std::fmt;

/// What kind of failure a backend call hit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// Throttling / rate limit (429, ThrottlingException, ...). Retriable.
    Throttled,
    /// Server-side failure (5xx). Retriable.
    Server,
    /// The call timed out. Retriable.
    Timeout,
    /// Connection refused / reset / DNS. Retriable.
    Network,
    /// The request is invalid (4xx validation). Not retriable.
    Validation,
    /// Credentials or permissions are wrong. Not retriable.
    AccessDenied,
    /// Table, queue or item does not exist. Not retriable.
    NotFound,
    /// Payload over a service limit (413). Not retriable.
    TooLarge,
    /// The @connections target is gone (410). Prune, don't retry.
    Gone,
    /// A conditional write did not match. Not an error for idempotent writes.
    ConditionFailed,
    /// Anything else. Not retriable.
    Other,
}

impl ErrorKind {
    /// Whether retrying the same call later can succeed.
    pub fn is_retriable(self) -> bool {
        matches!(
            self,
            Self::Throttled | Self::Server | Self::Timeout | Self::Network
        )
    }

    /// Fixed label for metrics (`error_type`) and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Throttled => "throttled",
            Self::Server => "server",
            Self::Timeout => "timeout",
            Self::Network => "network",
            Self::Validation => "validation",
            Self::AccessDenied => "access_denied",
            Self::NotFound => "not_found",
            Self::TooLarge => "too_large",
            Self::Gone => "gone",
            Self::ConditionFailed => "condition_failed",
            Self::Other => "other",
        }
    }

    /// Kind for an HTTP status and an AWS error code, as returned by SQS,
    /// DynamoDB and the API Gateway management API.
    pub fn from_status_and_code(status: u16, code: Option<&str>) -> Self {
        if let Some(code) = code
            && let Some(kind) = Self::from_code(code)
        {
            return kind;
        }
        match status {
            410 => Self::Gone,
            413 => Self::TooLarge,
            429 => Self::Throttled,
            401 | 403 => Self::AccessDenied,
            404 => Self::NotFound,
            408 => Self::Timeout,
            500..=599 => Self::Server,
            400..=499 => Self::Validation,
            _ => Self::Other,
        }
    }

    fn from_code(code: &str) -> Option<Self> {
        // SQS's query-protocol codes carry a prefix, e.g.
        // `AWS.SimpleQueueService.NonExistentQueue`.
        let code = code.rsplit('.').next().unwrap_or(code);
        Some(match code {
            "ThrottlingException"
            | "Throttling"
            | "ThrottledException"
            | "RequestThrottled"
            | "RequestThrottledException"
            | "TooManyRequestsException"
            | "ProvisionedThroughputExceededException"
            | "RequestLimitExceeded"
            | "LimitExceededException"
            | "KmsThrottled"
            | "KMSThrottlingException"
            | "SlowDown" => Self::Throttled,
            "InternalServerError"
            | "InternalError"
            | "InternalFailure"
            | "ServiceUnavailable"
            | "ServiceUnavailableException" => Self::Server,
            "RequestTimeout" | "RequestTimeoutException" => Self::Timeout,
            "GoneException" => Self::Gone,
            "PayloadTooLargeException" => Self::TooLarge,
            "ConditionalCheckFailedException" => Self::ConditionFailed,
            "AccessDenied"
            | "AccessDeniedException"
            | "ForbiddenException"
            | "UnrecognizedClientException"
            | "InvalidSignatureException"
            | "InvalidClientTokenId"
            | "MissingAuthenticationToken"
            | "ExpiredTokenException"
            | "InvalidSecurity" => Self::AccessDenied,
            "ResourceNotFoundException" | "NonExistentQueue" | "QueueDoesNotExist" => {
                Self::NotFound
            }
            "ValidationException"
            | "ValidationError"
            | "InvalidParameterValue"
            | "InvalidParameterValueException"
            | "MissingParameter"
            | "InvalidAttributeValue"
            | "InvalidMessageContents"
            | "BadRequestException"
            | "ReceiptHandleIsInvalid"
            | "InvalidBatchEntryId"
            | "BatchEntryIdsNotDistinct"
            | "TooManyEntriesInBatchRequest"
            | "SerializationException" => Self::Validation,
            _ => return None,
        })
    }
}

impl fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A failed backend call: which operation, what kind of failure, and the detail.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{op} failed ({kind}): {message}")]
pub struct BackendError {
    /// Decides retry / dead-letter / prune.
    pub kind: ErrorKind,
    /// The operation, e.g. `sqs.ReceiveMessage`.
    pub op: &'static str,
    /// Detail from the service or the transport.
    pub message: String,
}

impl BackendError {
    /// A new error.
    pub fn new(kind: ErrorKind, op: &'static str, message: impl Into<String>) -> Self {
        BackendError {
            kind,
            op,
            message: message.into(),
        }
    }

    /// Whether retrying later can succeed.
    pub fn is_retriable(&self) -> bool {
        self.kind.is_retriable()
    }
}

#[cfg(test)]
mod tests {
    use super::ErrorKind::{self, *};

    #[test]
    fn codes_decide_before_status() {
        let cases: &[(u16, Option<&str>, ErrorKind)] = &[
            (400, Some("ThrottlingException"), Throttled),
            (
                400,
                Some("ProvisionedThroughputExceededException"),
                Throttled,
            ),
            (
                400,
                Some("AWS.SimpleQueueService.RequestThrottled"),
                Throttled,
            ),
            (429, Some("LimitExceededException"), Throttled),
            (410, Some("GoneException"), Gone),
            (413, Some("PayloadTooLargeException"), TooLarge),
            (403, Some("ForbiddenException"), AccessDenied),
            (400, Some("AccessDeniedException"), AccessDenied),
            (
                400,
                Some("ConditionalCheckFailedException"),
                ConditionFailed,
            ),
            (400, Some("ResourceNotFoundException"), NotFound),
            (
                400,
                Some("AWS.SimpleQueueService.NonExistentQueue"),
                NotFound,
            ),
            (400, Some("ValidationException"), Validation),
            (400, Some("ReceiptHandleIsInvalid"), Validation),
            (500, Some("InternalServerError"), Server),
            (503, Some("ServiceUnavailable"), Server),
            (500, None, Server),
            (502, Some("SomethingNew"), Server),
            (429, None, Throttled),
            (410, None, Gone),
            (404, None, NotFound),
            (400, Some("SomethingNew"), Validation),
        ];
        for (status, code, want) in cases {
            assert_eq!(
                ErrorKind::from_status_and_code(*status, *code),
                *want,
                "{status} {code:?}"
            );
        }
    }

    #[test]
    fn only_transient_kinds_are_retriable() {
        for k in [Throttled, Server, Timeout, Network] {
            assert!(k.is_retriable(), "{k}");
        }
        for k in [
            Validation,
            AccessDenied,
            NotFound,
            TooLarge,
            Gone,
            ConditionFailed,
            Other,
        ] {
            assert!(!k.is_retriable(), "{k}");
        }
    }
}
