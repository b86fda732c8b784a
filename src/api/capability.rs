//! `GET /fhir/metadata`: the CapabilityStatement, built from the same lists the code uses.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use serde_json::json;

use super::AppState;
use super::error::FHIR_JSON;
use super::openapi::schemas::Resource;
use crate::records::resource_types::R4_RESOURCE_TYPES;

/// The search parameters every type supports (see `records::search`).
const SEARCH_PARAMS: &[(&str, &str, &str)] = &[
    ("_id", "token", "Logical id"),
    (
        "patient",
        "reference",
        "The patient the resource belongs to (alias: subject)",
    ),
    (
        "date",
        "date",
        "The resource's clinical date, with FHIR prefixes eq, gt, ge, lt, le, sa, eb",
    ),
    (
        "code",
        "token",
        "The clinical code (code, vaccineCode, medicationCodeableConcept; type for documents and encounters)",
    ),
    ("category", "token", "The category"),
    ("identifier", "token", "A business identifier"),
    ("_security", "token", "A security label in meta.security"),
    (
        "_lastUpdated",
        "date",
        "When the gateway stored the current version",
    ),
];

/// The canonical definition of the group-level Bulk Data export.
pub const GROUP_EXPORT: &str = "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export";
/// The canonical definition of the patient-level Bulk Data export (served for the caller's
/// own records only).
pub const PATIENT_EXPORT: &str =
    "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export";
/// The canonical definition of `Patient/$everything`.
pub const PATIENT_EVERYTHING: &str = "http://hl7.org/fhir/OperationDefinition/Patient-everything";
/// The definition of `Consent/{id}/$revoke` (the gateway's own).
pub const CONSENT_REVOKE: &str = "https://consentgate.dev/fhir/OperationDefinition/consent-revoke";
/// The Bulk Data IG's server CapabilityStatement, which this one instantiates.
pub const BULK_DATA_SERVER: &str = "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data";

/// The operations served on one type: none at system level (export is served for a study's
/// Group, and for a patient's own records at `Patient/$export`).
fn operations_on(resource_type: &str) -> Vec<serde_json::Value> {
    match resource_type {
        "Group" => vec![json!({"name": "export", "definition": GROUP_EXPORT})],
        "Patient" => vec![
            json!({"name": "everything", "definition": PATIENT_EVERYTHING}),
            json!({"name": "export", "definition": PATIENT_EXPORT}),
        ],
        "Consent" => vec![json!({"name": "revoke", "definition": CONSENT_REVOKE})],
        _ => Vec::new(),
    }
}

/// `GET /fhir/metadata`: the CapabilityStatement.
#[utoipa::path(
    tag = "fhir",
    responses((status = 200, description = "The CapabilityStatement (public)", body = Resource, content_type = "application/fhir+json"))
)]
#[get("/metadata")]
pub async fn metadata(state: Data<AppState>) -> HttpResponse {
    let params: Vec<_> = SEARCH_PARAMS
        .iter()
        .map(|(name, kind, doc)| json!({"name": name, "type": kind, "documentation": doc}))
        .collect();
    let resources: Vec<_> = R4_RESOURCE_TYPES
        .iter()
        .map(|ty| {
            let mut resource = json!({
                "type": ty,
                "versioning": "versioned",
                "readHistory": false,
                "updateCreate": true,
                "conditionalCreate": true,
                "conditionalUpdate": true,
                "interaction": [
                    {"code": "read"}, {"code": "vread"}, {"code": "update"},
                    {"code": "create"}, {"code": "search-type"}
                ],
                "searchParam": params,
            });
            // FHIR forbids empty arrays: only types with operations list them.
            let operations = operations_on(ty);
            if !operations.is_empty() {
                resource["operation"] = json!(operations);
            }
            resource
        })
        .collect();
    let body = json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-29",
        "kind": "instance",
        "instantiates": [BULK_DATA_SERVER],
        "software": {"name": "consentgate", "version": env!("CARGO_PKG_VERSION")},
        "implementation": {
            "description": "consentgate: a consent-managed health-data-sharing gateway",
            "url": state.fhir_base()
        },
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "rest": [{
            "mode": "server",
            "documentation": "Records in are written by operators and by data sources (SMART Backend Services tokens with write scopes only; a data source reads nothing and updates only the records it supplied); recipients read through consent checks (SMART Backend Services tokens), patients read their own records. Searches return no total and page with `_cursor` links; a resource the caller may not see answers exactly like a missing one.",
            "security": {
                "cors": false,
                "service": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/restful-security-service", "code": "SMART-on-FHIR"}]}],
                "description": "Bearer tokens over TLS 1.2 or 1.3: SMART Backend Services (see /.well-known/smart-configuration) for recipient clients and data sources, OpenID Connect for patients and operators."
            },
            "resource": resources,
            "interaction": [{"code": "transaction"}, {"code": "batch"}]
        }]
    });
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string())
}
