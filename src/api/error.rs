//! The HTTP layer's one error type and how it is shown to clients.
//!
//! Every handler and extractor fails with an [`ApiError`]: an HTTP status, a stable
//! snake_case code and a client-safe message. Domain errors ([`DomainError`],
//! [`RecordError`], [`StoreError`]) convert with `From`, through one table from
//! [`ErrorKind`] to status ([`status_of`]); the FHIR issue type comes from the one table in
//! [`outcome::issue_type`], shared with the per-entry outcomes of a batch.
//!
//! Which body a failure gets is decided by the route's scope, not by the code that failed:
//! under `/fhir` an `OperationOutcome`, everywhere else RFC 9457 `problem+json`
//! ([`Flavor::for_path`], applied by the `observe` middleware to every error response).
//! `/oauth` answers with RFC 6749 errors of its own (`oauth::OAuthError`). Internal failures
//! answer 500 with a generic message while the detail goes to the log with the request id:
//! clients never see internal causes.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};

use super::openapi::schemas::Problem;
use crate::error::{DomainError, ErrorKind};
use crate::records::RecordError;
use crate::records::outcome;

/// Media type of FHIR JSON responses.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// Seconds a client should wait before retrying a 503.
pub const RETRY_AFTER_SECS: u32 = 2;

/// Which error body a failure is shown as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// FHIR `OperationOutcome`.
    Fhir,
    /// RFC 9457 problem details.
    Problem,
}

impl Flavor {
    /// The flavour of the routes at `path`: FHIR under `/fhir`, problem details elsewhere.
    pub fn for_path(path: &str) -> Flavor {
        if path == "/fhir" || path.starts_with("/fhir/") {
            Flavor::Fhir
        } else {
            Flavor::Problem
        }
    }
}

/// The HTTP status of each kind of domain failure: the one table.
pub fn status_of(kind: ErrorKind) -> StatusCode {
    match kind {
        ErrorKind::Invalid => StatusCode::BAD_REQUEST,
        ErrorKind::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorKind::Forbidden => StatusCode::FORBIDDEN,
        ErrorKind::NotFound => StatusCode::NOT_FOUND,
        ErrorKind::Conflict => StatusCode::CONFLICT,
        ErrorKind::Gone => StatusCode::GONE,
        ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorKind::Unprocessable => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorKind::TooMany => StatusCode::TOO_MANY_REQUESTS,
        ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// A failure of a request, with its status, stable code and client-safe message.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code clients can rely on.
    pub code: &'static str,
    /// What went wrong, without patient data or internal causes.
    pub message: String,
    /// Sets `WWW-Authenticate` on a 401.
    pub challenge: Option<&'static str>,
    /// Seconds for `Retry-After` (a 503 without one gets [`RETRY_AFTER_SECS`]).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// An error with this status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError {
            status,
            code,
            message: message.into(),
            challenge: None,
            retry_after: None,
        }
    }

    /// 429 from a rate limit, with the wait in `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::new(
                StatusCode::TOO_MANY_REQUESTS,
                "too_many_requests",
                format!("too many requests; retry after {retry_after_secs} seconds"),
            )
        }
    }

    /// 401 with a bearer challenge.
    pub fn unauthorized() -> Self {
        ApiError {
            challenge: Some("Bearer realm=\"consentgate\", error=\"invalid_token\""),
            ..ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthorized",
                "a valid bearer token is required",
            )
        }
    }

    /// 404 for a path no route serves.
    pub fn no_route() -> Self {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "no_such_endpoint",
            "no endpoint is served at this path with this method",
        )
    }

    /// 500, logged by the caller's span; the client sees nothing specific.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        DomainError::internal(detail).into()
    }

    /// The FHIR issue type of this failure.
    pub fn issue_type(&self) -> &'static str {
        outcome::issue_type(self.status.as_u16(), self.code)
    }

    /// The response in `flavor`.
    pub fn render(&self, flavor: Flavor) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(challenge) = self.challenge {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        if let Some(secs) = self.retry_after {
            response.insert_header((header::RETRY_AFTER, secs));
        } else if self.status == StatusCode::SERVICE_UNAVAILABLE {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        match flavor {
            Flavor::Fhir => response.content_type(FHIR_JSON).body(
                outcome::operation_outcome(self.issue_type(), self.code, &self.message).to_string(),
            ),
            Flavor::Problem => response.content_type(PROBLEM_JSON).body(
                serde_json::to_string(&Problem {
                    kind: format!("https://consentgate.dev/problems/{}", self.code),
                    title: self.code.replace('_', " "),
                    status: self.status.as_u16(),
                    detail: self.message.clone(),
                    code: self.code.to_string(),
                })
                .unwrap_or_default(),
            ),
        }
    }
}

impl From<DomainError> for ApiError {
    fn from(e: DomainError) -> Self {
        let mut error = ApiError::new(status_of(e.kind), e.code, e.message);
        if e.kind == ErrorKind::Unauthorized {
            // RFC 6750: every 401 carries the bearer challenge.
            error.challenge = ApiError::unauthorized().challenge;
        }
        error
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let (status, _, code, message) = outcome::describe(&e);
        if status >= 500 {
            // Log the real cause; `describe` already replaced it with a generic message.
            tracing::error!(error = %e, code, "request failed");
        }
        ApiError::new(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            message,
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        DomainError::from(e).into()
    }
}

impl From<crate::audit::log::AuditError> for ApiError {
    fn from(e: crate::audit::log::AuditError) -> Self {
        DomainError::from(e).into()
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    /// Problem details; the `observe` middleware re-renders every error response in the
    /// flavour of its route, so this default shows only where no route applies.
    fn error_response(&self) -> HttpResponse {
        self.render(Flavor::Problem)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scope_decides_the_flavour() {
        for (path, flavor) in [
            ("/fhir", Flavor::Fhir),
            ("/fhir/Patient/1", Flavor::Fhir),
            ("/fhirx", Flavor::Problem),
            ("/api/v1/decisions", Flavor::Problem),
            ("/readyz", Flavor::Problem),
            ("/", Flavor::Problem),
        ] {
            assert_eq!(Flavor::for_path(path), flavor, "{path}");
        }
    }

    #[test]
    fn kinds_map_to_one_status_each() {
        let error: ApiError = DomainError::gone("disclosure_expired", "x").into();
        assert_eq!(error.status, StatusCode::GONE);
        assert_eq!(error.issue_type(), "not-found");
        let busy: ApiError = DomainError::unavailable("unavailable", "x").into();
        let response = busy.render(Flavor::Fhir);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert!(response.headers().contains_key(header::RETRY_AFTER));
    }
}
