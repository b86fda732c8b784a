//! FHIR `OperationOutcome` bodies and the status each record error answers with.
//!
//! Both the HTTP layer (whole-request errors) and Bundle processing (per-entry results of a
//! batch) describe failures the same way, so the mapping lives here, once.

use serde_json::{Value, json};

use super::RecordError;
use crate::store::StoreError;

/// The code system of the gateway's stable error codes.
pub const ERROR_CODE_SYSTEM: &str = "https://consentgate.dev/fhir/CodeSystem/error";

/// Status, FHIR issue type, stable code and a client-safe message for an error.
pub fn describe(error: &RecordError) -> (u16, &'static str, &'static str, String) {
    let (status, code, message) = match error {
        RecordError::Invalid { code, message } => (400, *code, message.clone()),
        RecordError::Unprocessable { code, message } => (422, *code, message.clone()),
        RecordError::Forbidden { code, message } => (403, *code, message.clone()),
        RecordError::NotFound { code, message } => (404, *code, message.clone()),
        RecordError::Conflict { code, message } => (409, *code, message.clone()),
        RecordError::Store(StoreError::Unavailable(_)) => (
            503,
            "unavailable",
            "the database is busy; retry shortly".into(),
        ),
        RecordError::Store(StoreError::Conflict) => (
            409,
            "concurrent_update",
            "a concurrent request changed the same data; retry".into(),
        ),
        RecordError::Store(_) => (
            500,
            "internal_error",
            "an internal error occurred; it has been logged".into(),
        ),
    };
    (status, issue_type(status, code), code, message)
}

/// The FHIR issue type of a failure: the one table from HTTP status (and, for a few 400s, the
/// stable code) to `OperationOutcome.issue.code`, used by whole-request errors (`api/error.rs`)
/// and by the per-entry outcomes of a batch alike.
pub fn issue_type(status: u16, code: &str) -> &'static str {
    match (status, code) {
        (400, "too_deep" | "body_too_large" | "too_many_entries") => "too-costly",
        (
            400,
            "unsupported_search_parameter" | "unsupported_bundle_type" | "unsupported_method",
        ) => "not-supported",
        (400, "invalid_json" | "empty_body") => "structure",
        (400, _) => "invalid",
        (401, _) => "login",
        (403, _) => "forbidden",
        (404, "no_such_endpoint") => "not-supported",
        (404 | 410, _) => "not-found",
        (405, _) => "not-supported",
        (406 | 415, _) => "not-supported",
        (409 | 412, _) => "conflict",
        (413, _) => "too-costly",
        (422, _) => "processing",
        (429, _) => "throttled",
        (503, _) => "transient",
        _ => "exception",
    }
}

/// An `OperationOutcome` with one error issue.
pub fn operation_outcome(issue_type: &str, code: &str, message: &str) -> Value {
    json!({
        "resourceType": "OperationOutcome",
        "issue": [{
            "severity": "error",
            "code": issue_type,
            "details": {
                "coding": [{"system": ERROR_CODE_SYSTEM, "code": code}],
                "text": message
            },
            "diagnostics": message
        }]
    })
}

/// The `OperationOutcome` for a record error.
pub fn for_error(error: &RecordError) -> Value {
    let (_, issue, code, message) = describe(error);
    operation_outcome(issue, code, &message)
}

/// The reason phrase FHIR Bundle responses use after a status code.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        200 => "OK",
        201 => "Created",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        409 => "Conflict",
        412 => "Precondition Failed",
        422 => "Unprocessable Entity",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    }
}
