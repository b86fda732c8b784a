//! Which routes a delegate may reach, and under which delegated action: one table, default
//! deny. The `Caller` extractor consults it for every request of a delegate, before any
//! handler runs, so a route nobody listed here (a new one included) is closed to delegates
//! until someone decides what it needs. Domain functions check the same actions again
//! (`auth::Principal::may`) where a workflow has a patient to check them for.

use actix_web::http::{Method, StatusCode};

use super::error::ApiError;
use crate::auth::Principal;
use crate::delegation::Action;

/// What a route asks of a delegate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gate {
    /// Open to any delegate (who am I).
    Open,
    /// Open when the delegation allows this action.
    Needs(Action),
    /// Never a delegate's.
    Closed,
}

/// The routes open to delegates: (method, route pattern, action).
const ROUTES: &[(&str, &str, Gate)] = &[
    ("GET", "/api/v1/whoami", Gate::Open),
    // The patient's records and own copy.
    ("GET", "/fhir/{type}", Gate::Needs(Action::ReadRecords)),
    ("GET", "/fhir/{type}/{id}", Gate::Needs(Action::ReadRecords)),
    (
        "GET",
        "/fhir/{type}/{id}/_history/{version}",
        Gate::Needs(Action::ReadRecords),
    ),
    (
        "GET",
        "/fhir/Patient/{id}/$everything",
        Gate::Needs(Action::ReadRecords),
    ),
    (
        "GET",
        "/fhir/Patient/{id}/$summary",
        Gate::Needs(Action::ReadRecords),
    ),
    // The patient's own Bulk Data export; its jobs answer only the delegate who started them.
    (
        "GET",
        "/fhir/Patient/$export",
        Gate::Needs(Action::ReadRecords),
    ),
    (
        "GET",
        "/fhir/$export-status/{job}",
        Gate::Needs(Action::ReadRecords),
    ),
    (
        "DELETE",
        "/fhir/$export-status/{job}",
        Gate::Needs(Action::ReadRecords),
    ),
    (
        "GET",
        "/fhir/$export-file/{job}/{file}",
        Gate::Needs(Action::ReadRecords),
    ),
    // The accounting of disclosures and the notification feed.
    (
        "GET",
        "/api/v1/patients/{id}/access-log",
        Gate::Needs(Action::ViewAccessLog),
    ),
    (
        "GET",
        "/fhir/AuditEvent",
        Gate::Needs(Action::ViewAccessLog),
    ),
    (
        "GET",
        "/fhir/AuditEvent/{id:\\d+}",
        Gate::Needs(Action::ViewAccessLog),
    ),
    (
        "GET",
        "/api/v1/patients/{id}/notifications",
        Gate::Needs(Action::ViewAccessLog),
    ),
    (
        "POST",
        "/api/v1/patients/{id}/notifications/{nid}/read",
        Gate::Needs(Action::ViewAccessLog),
    ),
    // Consents and the decision preview.
    ("GET", "/fhir/Consent", Gate::Needs(Action::ManageConsents)),
    (
        "GET",
        "/fhir/Consent/{id}",
        Gate::Needs(Action::ManageConsents),
    ),
    ("POST", "/fhir/Consent", Gate::Needs(Action::ManageConsents)),
    (
        "PUT",
        "/fhir/Consent/{id}",
        Gate::Needs(Action::ManageConsents),
    ),
    (
        "POST",
        "/fhir/Consent/{id}/$revoke",
        Gate::Needs(Action::ManageConsents),
    ),
    (
        "POST",
        "/api/v1/decisions",
        Gate::Needs(Action::ManageConsents),
    ),
    // Recipients' access requests.
    (
        "GET",
        "/api/v1/access-requests",
        Gate::Needs(Action::AnswerRequests),
    ),
    (
        "GET",
        "/api/v1/access-requests/{id}",
        Gate::Needs(Action::AnswerRequests),
    ),
    (
        "POST",
        "/api/v1/access-requests/{id}/approve",
        Gate::Needs(Action::AnswerRequests),
    ),
    (
        "POST",
        "/api/v1/access-requests/{id}/decline",
        Gate::Needs(Action::AnswerRequests),
    ),
    // Evidence.
    (
        "POST",
        "/api/v1/disclosures",
        Gate::Needs(Action::SendEvidence),
    ),
    (
        "GET",
        "/api/v1/disclosures",
        Gate::Needs(Action::SendEvidence),
    ),
    // Amendments.
    (
        "POST",
        "/api/v1/amendments",
        Gate::Needs(Action::RequestAmendments),
    ),
    (
        "GET",
        "/api/v1/amendments",
        Gate::Needs(Action::RequestAmendments),
    ),
    (
        "GET",
        "/api/v1/amendments/{id}",
        Gate::Needs(Action::RequestAmendments),
    ),
    (
        "POST",
        "/api/v1/amendments/{id}/disagreement",
        Gate::Needs(Action::RequestAmendments),
    ),
];

/// What `method` on the route `pattern` asks of a delegate.
pub fn gate(method: &Method, pattern: Option<&str>) -> Gate {
    let Some(pattern) = pattern else {
        return Gate::Closed;
    };
    ROUTES
        .iter()
        .find(|(m, p, _)| *m == method.as_str() && *p == pattern)
        .map_or(Gate::Closed, |(_, _, g)| *g)
}

/// Lets a delegate through to this route only within its delegation; anyone else passes.
pub fn admit(
    principal: &Principal,
    method: &Method,
    pattern: Option<&str>,
) -> Result<(), ApiError> {
    let Principal::Delegate(_) = principal else {
        return Ok(());
    };
    match gate(method, pattern) {
        Gate::Open => Ok(()),
        Gate::Needs(action) => principal.may(action).map_err(ApiError::from),
        Gate::Closed => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "outside_delegation",
            "a delegate may not use this endpoint",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unlisted_routes_are_closed_to_delegates() {
        assert_eq!(gate(&Method::POST, Some("/fhir")), Gate::Closed);
        assert_eq!(
            gate(&Method::POST, Some("/api/v1/delegations")),
            Gate::Closed
        );
        assert_eq!(
            gate(&Method::PUT, Some("/api/v1/patients/{id}/webhook")),
            Gate::Closed
        );
        assert_eq!(gate(&Method::GET, None), Gate::Closed);
        assert_eq!(
            gate(&Method::GET, Some("/api/v1/patients/{id}/access-log")),
            Gate::Needs(Action::ViewAccessLog)
        );
        assert_eq!(
            gate(&Method::PUT, Some("/fhir/{type}/{id}")),
            Gate::Closed,
            "writing records is never a delegate's"
        );
    }
}
