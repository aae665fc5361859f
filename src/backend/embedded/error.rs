//! SQLite errors as [`BackendError`]s. A leaf: every other file of the
//! embedded store maps its SQLite errors through here.

use rusqlite::ErrorCode;

use crate::backend::{BackendError, ErrorKind};

/// Classifies a SQLite error like the AWS errors: what retrying can fix.
pub(super) fn sql_error(op: &'static str, e: rusqlite::Error) -> BackendError {
    let kind = match e.sqlite_error_code() {
        Some(
            ErrorCode::DatabaseBusy
            | ErrorCode::DatabaseLocked
            | ErrorCode::SystemIoFailure
            | ErrorCode::DiskFull
            | ErrorCode::OutOfMemory,
        ) => ErrorKind::Server,
        Some(ErrorCode::PermissionDenied | ErrorCode::ReadOnly) => ErrorKind::AccessDenied,
        Some(ErrorCode::ConstraintViolation | ErrorCode::TooBig) => ErrorKind::Validation,
        _ => ErrorKind::Other,
    };
    BackendError::new(kind, op, e.to_string())
}
