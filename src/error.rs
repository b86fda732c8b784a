//! The domain layer's one error type.
//!
//! Workflows between HTTP and storage (`release`, `disclosure`, `export`, `access_request`,
//! ...) return [`DomainError`]: a [`ErrorKind`] that says what went wrong in the domain's
//! terms, a stable snake_case code clients can rely on, and a message that names ids, element
//! paths and codes, never a value from a record. Only `api/error.rs` turns a kind into an
//! HTTP status (one table), so no domain module knows HTTP.
//!
//! Lower layers keep their own errors ([`RecordError`], [`StoreError`], [`AuditError`],
//! [`DeidError`]); each converts with `From`, so `?` works across the boundary. When to use
//! which: a workflow function returns `DomainError`; a closure handed to
//! [`crate::store::Store::run`] returns whatever its callee returns (`RecordError`,
//! `StoreError` or `DomainError`), never an HTTP error.

use crate::audit::log::AuditError;
use crate::deid::DeidError;
use crate::records::RecordError;
use crate::store::StoreError;

/// What kind of failure; `api/error.rs` maps each to one HTTP status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed (400).
    Invalid,
    /// The caller is not authenticated (401).
    Unauthorized,
    /// The caller may not do this (403).
    Forbidden,
    /// Nothing the caller may see is there (404); hidden and missing alike.
    NotFound,
    /// A concurrent change won, or the state does not allow it now (409).
    Conflict,
    /// It was there but is gone for good: expired, used up, deleted (410).
    Gone,
    /// Too large or too many for the explicit limits (413).
    TooLarge,
    /// Well-formed but cannot be processed (422).
    Unprocessable,
    /// The caller has asked too often (429).
    TooMany,
    /// A dependency (database, audit log) cannot serve now; retrying may work (503).
    Unavailable,
    /// A defect or an unexpected failure; the detail went to the log (500).
    Internal,
}

/// A failure of a domain workflow, with its kind, stable code and client-safe message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct DomainError {
    /// What kind of failure.
    pub kind: ErrorKind,
    /// Stable snake_case code.
    pub code: &'static str,
    /// What went wrong, without patient data or internal causes.
    pub message: String,
}

impl DomainError {
    /// A failure of `kind` with this code and message.
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        DomainError {
            kind,
            code,
            message: message.into(),
        }
    }

    /// A malformed request.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, code, message)
    }

    /// A request that may not be made by this caller.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Forbidden, code, message)
    }

    /// Nothing there that the caller may see.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, code, message)
    }

    /// Well-formed but not processable.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unprocessable, code, message)
    }

    /// Not possible in the current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Conflict, code, message)
    }

    /// Gone for good.
    pub fn gone(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Gone, code, message)
    }

    /// A dependency cannot serve now.
    pub fn unavailable(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Unavailable, code, message)
    }

    /// An unexpected failure: the detail goes to the log (with the request's span), the client
    /// sees a generic message.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        Self::new(
            ErrorKind::Internal,
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<RecordError> for DomainError {
    fn from(e: RecordError) -> Self {
        match e {
            RecordError::Invalid { code, message } => Self::invalid(code, message),
            RecordError::Unprocessable { code, message } => Self::unprocessable(code, message),
            RecordError::Forbidden { code, message } => Self::forbidden(code, message),
            RecordError::NotFound { code, message } => Self::not_found(code, message),
            RecordError::Conflict { code, message } => Self::conflict(code, message),
            RecordError::Store(store) => store.into(),
        }
    }
}

impl From<StoreError> for DomainError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(reason) => {
                tracing::warn!(reason = %reason, "database unavailable");
                Self::unavailable("unavailable", "the database is busy; retry shortly")
            }
            StoreError::Conflict => Self::conflict(
                "concurrent_update",
                "a concurrent request changed the same data; retry",
            ),
            other => Self::internal(other),
        }
    }
}

impl From<AuditError> for DomainError {
    fn from(e: AuditError) -> Self {
        match e {
            AuditError::Invalid(e) => Self::internal(format!("audit entry refused: {e}")),
            other => {
                tracing::error!(error = %other, "audit append failed");
                Self::unavailable(
                    "audit_unavailable",
                    "the audit log cannot record this request; retry shortly",
                )
            }
        }
    }
}

impl From<DeidError> for DomainError {
    fn from(e: DeidError) -> Self {
        // Configuration and key problems are the operator's: the detail is logged (paths and
        // codes only), the client learns that nothing was sent.
        tracing::error!(code = e.code(), error = %e, "de-identification failed");
        Self::internal(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lower_errors_keep_their_codes_and_kinds() {
        let cases = [
            (
                DomainError::from(RecordError::invalid("bad_thing", "x")),
                ErrorKind::Invalid,
                "bad_thing",
            ),
            (
                RecordError::not_found("not_found", "x").into(),
                ErrorKind::NotFound,
                "not_found",
            ),
            (
                RecordError::unprocessable("too_many_consents", "x").into(),
                ErrorKind::Unprocessable,
                "too_many_consents",
            ),
            (
                StoreError::Unavailable("pool".into()).into(),
                ErrorKind::Unavailable,
                "unavailable",
            ),
            (
                StoreError::Conflict.into(),
                ErrorKind::Conflict,
                "concurrent_update",
            ),
            (
                AuditError::Unavailable.into(),
                ErrorKind::Unavailable,
                "audit_unavailable",
            ),
            (
                StoreError::Task("boom".into()).into(),
                ErrorKind::Internal,
                "internal_error",
            ),
        ];
        for (error, kind, code) in cases {
            assert_eq!((error.kind, error.code), (kind, code), "{error}");
        }
    }

    #[test]
    fn internal_causes_stay_out_of_the_message() {
        let e = DomainError::from(StoreError::Task("secret path /var/x".into()));
        assert!(!e.message.contains("secret"));
    }
}
