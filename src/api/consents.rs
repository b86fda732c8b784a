//! Consents: `POST /fhir/Consent`, `GET /fhir/Consent?patient=&status=&actor=&purpose=`,
//! `GET/PUT /fhir/Consent/{id}`, `POST /fhir/Consent/{id}/$revoke`. The workflow (who may,
//! ownership, versions, audit) is [`crate::sharing::consents`]; these handlers parse and
//! render.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, LOCATION};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post, put};
use serde_json::{Value, json};

use super::auth::Reader;
use super::body::FhirJson;
use super::error::{ApiError, FHIR_JSON};
use super::openapi::schemas::{Bundle, OperationOutcome, Resource};
use super::{AppState, audit};
use crate::ids::PatientId;
use crate::records::RecordError;
use crate::records::ingest::Stored;
use crate::records::outcome::ERROR_CODE_SYSTEM;
use crate::records::validate;
use crate::sharing::consents::{self, ConsentFilter, WriteError};

/// The OperationOutcome for a consent's defects, one issue each.
fn defects_outcome(defects: &crate::consent::ConsentDefects) -> HttpResponse {
    let issues: Vec<Value> = defects
        .defects
        .iter()
        .map(|d| {
            json!({
                "severity": "error",
                "code": "invalid",
                "details": {
                    "coding": [{"system": ERROR_CODE_SYSTEM, "code": d.kind.code()}],
                    "text": d.to_string()
                },
                "diagnostics": d.to_string(),
                "expression": [d.expression()]
            })
        })
        .collect();
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY)
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "OperationOutcome", "issue": issues}).to_string())
}

/// A refused write: every defect of an invalid consent, or the error.
fn refused(e: WriteError) -> Result<HttpResponse, ApiError> {
    match e {
        WriteError::Defects(defects) => Ok(defects_outcome(&defects)),
        WriteError::Failed(e) => Err(e.into()),
    }
}

fn stored_response(status: StatusCode, base: &str, stored: &Stored) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((LOCATION, format!("{base}/{}", stored.location())))
        .insert_header((ETAG, stored.etag()))
        .body(stored.body.to_string())
}

/// `POST /fhir/Consent`: records a patient's consent.
#[utoipa::path(
    tag = "consents",
    security(("operator" = []), ("patient" = [])),
    request_body(content = Resource, content_type = "application/fhir+json", description = "A FHIR R4 Consent (`application/fhir+json` or `application/json`)"),
    responses(
        (status = 201, description = "Recorded; `Location` and `ETag` name the version", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_json`, `empty_body`, `too_deep`, `not_a_resource`, `type_mismatch`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden`: a patient records only their own consents", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "`unsupported_media_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 422, description = "One issue per defect of the Consent, each with its stable code and FHIRPath", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[post("/Consent")]
pub async fn create(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    FhirJson(consent): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let request_id = audit::request_id(&req);
    match consents::grant(&state, &reader.principal, &request_id, consent).await {
        Ok(stored) => Ok(stored_response(
            StatusCode::CREATED,
            &state.fhir_base(),
            &stored,
        )),
        Err(e) => refused(e),
    }
}

/// `PUT /fhir/Consent/{id}`: a new version; the patient may not move a consent to another
/// patient.
#[utoipa::path(
    tag = "consents",
    security(("operator" = []), ("patient" = [])),
    request_body(content = Resource, content_type = "application/fhir+json", description = "A FHIR R4 Consent (`application/fhir+json` or `application/json`)"),
    responses(
        (status = 200, description = "A new version", body = Resource, content_type = "application/fhir+json"),
        (status = 201, description = "Created under this id", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_json`, `id_mismatch`, `invalid_id`, ...", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: not the patient's consent", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "`unsupported_media_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 422, description = "One issue per defect of the Consent; `conflicting_patient`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[put("/Consent/{id}")]
pub async fn update(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
    FhirJson(consent): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let request_id = audit::request_id(&req);
    match consents::revise(&state, &reader.principal, &request_id, &path, consent).await {
        Ok(stored) => {
            let status = if stored.created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            Ok(stored_response(status, &state.fhir_base(), &stored))
        }
        Err(e) => refused(e),
    }
}

/// `GET /fhir/Consent/{id}`.
#[utoipa::path(
    tag = "consents",
    security(("operator" = []), ("patient" = [])),
    responses(
        (status = 200, description = "The Consent's current version", body = Resource, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Consent/{id}")]
pub async fn read(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let body = consents::read(&state, &reader.principal, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string()))
}

/// `POST /fhir/Consent/{id}/$revoke`: status becomes `inactive`, as a new version.
#[utoipa::path(
    tag = "consents",
    security(("operator" = []), ("patient" = [])),
    responses(
        (status = 200, description = "The new, inactive version; the next request of any recipient sees the change", body = Resource, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[post("/Consent/{id}/$revoke")]
pub async fn revoke(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let request_id = audit::request_id(&req);
    let stored = consents::revoke(&state, &reader.principal, &request_id, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(stored.body.to_string()))
}

/// `GET /fhir/Consent?patient=&status=&actor=&purpose=`: a patient's consents (a patient
/// token implies its own patient).
#[utoipa::path(
    tag = "consents",
    security(("operator" = []), ("patient" = [])),
    params(
        ("patient" = Option<String>, Query, description = "The patient (id or `Patient/id`); required for operators, implied for a patient"),
        ("status" = Option<String>, Query, description = "Consent status"),
        ("actor" = Option<String>, Query, description = "A reference the consent names as actor"),
        ("purpose" = Option<String>, Query, description = "A purpose of use (v3 ActReason)"),
        ("_count" = Option<String>, Query, description = "Accepted and ignored: every match is returned"),
    ),
    responses(
        (status = 200, description = "A searchset Bundle of Consents", body = Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "`missing_patient`, `invalid_patient`, `unsupported_search_parameter`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden`: a patient names another patient", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Consent")]
pub async fn search(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut patient = reader.only_patient.clone();
    let mut filter = ConsentFilter::default();
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "patient" => {
                patient =
                    Some(crate::records::index::patient_id_from_reference(&value).unwrap_or(value));
            }
            "status" => filter.status = Some(value),
            "actor" => filter.actor = Some(value),
            "purpose" => filter.purpose = Some(value),
            "_count" | "_format" => {}
            other => {
                return Err(RecordError::invalid(
                    "unsupported_search_parameter",
                    format!(
                        "search parameter `{}` is not supported on Consent",
                        validate::printable(other, 40)
                    ),
                )
                .into());
            }
        }
    }
    let patient =
        patient.ok_or_else(|| RecordError::invalid("missing_patient", "`patient` is required"))?;
    let patient = PatientId::parse(&patient)
        .map_err(|_| RecordError::invalid("invalid_patient", "`patient` must be a FHIR id"))?;
    let mut found = consents::search(&state, &reader.principal, &patient, &filter).await?;
    crate::records::internal::directives_first(&mut found);
    let base = state.fhir_base();
    let entries: Vec<Value> = found
        .into_iter()
        .map(|v| {
            let id = v["id"].as_str().unwrap_or_default().to_string();
            json!({"fullUrl": format!("{base}/Consent/{id}"), "resource": v, "search": {"mode": "match"}})
        })
        .collect();
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}).to_string()))
}
