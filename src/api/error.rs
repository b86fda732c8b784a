//! The HTTP layer's one error type and how it is shown to clients.
//!
//! Use [`ApiError`] in every handler. FHIR endpoints answer with an `OperationOutcome`,
//! the management API (`/api/v1`, operations) with RFC 9457 `problem+json`; both carry a
//! stable snake_case code. Internal failures answer 500 with a generic message while the
//! detail goes to the log with the request id: clients never see internal causes.
//! A 503 (storage or the audit writer unavailable) always carries `Retry-After`; so does a
//! 429 from a rate limit, with the limiter's wait.

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::records::RecordError;
use crate::records::outcome;

/// Media type of FHIR JSON responses.
pub const FHIR_JSON: &str = "application/fhir+json; charset=utf-8";
/// Media type of RFC 9457 problem details.
pub const PROBLEM_JSON: &str = "application/problem+json";
/// `Retry-After` of a 503: the pool reconnects and the audit writer retries within this.
pub const UNAVAILABLE_RETRY_AFTER_SECS: u64 = 2;

/// Which error body a failure is shown as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// FHIR `OperationOutcome`.
    Fhir,
    /// RFC 9457 problem details.
    Problem,
}

/// A failure of a request, with its status, stable code and client-safe message.
#[derive(Debug, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// FHIR issue type (`invalid`, `not-found`, ...).
    pub issue_type: &'static str,
    /// Stable snake_case code clients can rely on.
    pub code: &'static str,
    /// What went wrong, without patient data or internal causes.
    pub message: String,
    /// How the body is written.
    pub flavor: Flavor,
    /// Sets `WWW-Authenticate` on a 401.
    pub challenge: Option<&'static str>,
    /// Seconds for `Retry-After` (a 503 without one gets [`UNAVAILABLE_RETRY_AFTER_SECS`]).
    pub retry_after: Option<u64>,
}

impl ApiError {
    /// A FHIR-flavoured error.
    pub fn fhir(
        status: StatusCode,
        issue_type: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        ApiError {
            status,
            issue_type,
            code,
            message: message.into(),
            flavor: Flavor::Fhir,
            challenge: None,
            retry_after: None,
        }
    }

    /// 429 from a rate limit, with the wait in `Retry-After`.
    pub fn too_many_requests(retry_after_secs: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after_secs),
            ..ApiError::fhir(
                StatusCode::TOO_MANY_REQUESTS,
                "throttled",
                "too_many_requests",
                format!("too many requests; retry after {retry_after_secs} seconds"),
            )
        }
    }

    /// The same error in the flavour of the route at `path`: OperationOutcome under `/fhir`,
    /// problem+json everywhere else.
    pub fn in_flavor_of(mut self, path: &str) -> Self {
        self.flavor = if path == "/fhir" || path.starts_with("/fhir/") {
            Flavor::Fhir
        } else {
            Flavor::Problem
        };
        self
    }

    /// The same error shown as problem+json.
    pub fn as_problem(mut self) -> Self {
        self.flavor = Flavor::Problem;
        self
    }

    /// 401 with a bearer challenge.
    pub fn unauthorized() -> Self {
        ApiError {
            challenge: Some("Bearer realm=\"consentgate\", error=\"invalid_token\""),
            ..ApiError::fhir(
                StatusCode::UNAUTHORIZED,
                "login",
                "unauthorized",
                "a valid bearer token is required",
            )
        }
    }

    /// 404 for a path no route serves.
    pub fn no_route() -> Self {
        ApiError::fhir(
            StatusCode::NOT_FOUND,
            "not-supported",
            "no_such_endpoint",
            "no endpoint is served at this path with this method",
        )
    }

    /// 500, logged by the caller's span; the client sees nothing specific.
    pub fn internal(detail: impl std::fmt::Display) -> Self {
        tracing::error!(error = %detail, "internal error");
        ApiError::fhir(
            StatusCode::INTERNAL_SERVER_ERROR,
            "exception",
            "internal_error",
            "an internal error occurred; it has been logged",
        )
    }
}

impl From<RecordError> for ApiError {
    fn from(e: RecordError) -> Self {
        let (status, issue_type, code, message) = outcome::describe(&e);
        if status >= 500 {
            // Log the real cause; `describe` already replaced it with a generic message.
            tracing::error!(error = %e, code, "request failed");
        }
        ApiError::fhir(
            StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            issue_type,
            code,
            message,
        )
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        ApiError::from(RecordError::Store(e))
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status);
        if let Some(challenge) = self.challenge {
            response.insert_header((
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static(challenge),
            ));
        }
        let retry_after = self
            .retry_after
            .or((self.status == StatusCode::SERVICE_UNAVAILABLE)
                .then_some(UNAVAILABLE_RETRY_AFTER_SECS));
        if let Some(secs) = retry_after {
            response.insert_header((header::RETRY_AFTER, secs.to_string()));
        }
        match self.flavor {
            Flavor::Fhir => response.content_type(FHIR_JSON).body(
                outcome::operation_outcome(self.issue_type, self.code, &self.message).to_string(),
            ),
            Flavor::Problem => response.content_type(PROBLEM_JSON).body(
                json!({
                    "type": format!("https://consentgate.dev/problems/{}", self.code),
                    "title": self.code.replace('_', " "),
                    "status": self.status.as_u16(),
                    "detail": self.message,
                    "code": self.code,
                })
                .to_string(),
            ),
        }
    }
}
