//! SDK error → [`ErrorKind`]: the one place that knows how AWS reports failures.

use aws_sdk_sqs::config::http::HttpResponse;
use aws_sdk_sqs::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::backend::{BackendError, ErrorKind};

/// Classifies an SDK error of operation `op`.
pub(crate) fn classify<E>(op: &'static str, err: SdkError<E, HttpResponse>) -> BackendError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let kind = match &err {
        SdkError::ConstructionFailure(_) => ErrorKind::Validation,
        SdkError::TimeoutError(_) => ErrorKind::Timeout,
        SdkError::DispatchFailure(d) => {
            if d.is_timeout() {
                ErrorKind::Timeout
            } else if d.is_user() {
                ErrorKind::Validation
            } else {
                // io errors and "other" transport failures: connection refused,
                // reset, TLS, DNS. The next attempt may well work.
                ErrorKind::Network
            }
        }
        SdkError::ResponseError(r) => {
            let status = r.raw().status().as_u16();
            if status >= 400 {
                ErrorKind::from_status_and_code(status, None)
            } else {
                // A 2xx we could not parse: a proxy or a truncated body.
                ErrorKind::Server
            }
        }
        SdkError::ServiceError(s) => {
            ErrorKind::from_status_and_code(s.raw().status().as_u16(), s.err().code())
        }
        _ => ErrorKind::Other,
    };
    BackendError::new(kind, op, DisplayErrorContext(&err).to_string())
}

/// The outcome of a conditional write of operation `op`: `Ok(true)` if it
/// was written, `Ok(false)` if its condition failed, else the classified error.
pub(crate) fn written<T, E>(
    op: &'static str,
    res: Result<T, SdkError<E, HttpResponse>>,
) -> Result<bool, BackendError>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    match res {
        Ok(_) => Ok(true),
        Err(e) => match classify(op, e) {
            err if err.kind == ErrorKind::ConditionFailed => Ok(false),
            err => Err(err),
        },
    }
}
