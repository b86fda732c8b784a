//! Delegates over HTTP; the rules live in [`crate::delegation`].
//!
//! - `POST /api/v1/delegations` (the patient, or an operator with `legal_document`): name a
//!   delegate: `related_person_id` or `name`, `relationship`, `actions`, `start`, `end`.
//!   Answers 201 with the delegation; its `delegate` (`RelatedPerson/{id}`) is what the
//!   delegate's identity provider puts in `fhirUser`.
//! - `GET /api/v1/patients/{id}/delegations`: the patient's delegations (or an operator's
//!   look at them).
//! - `POST /api/v1/delegations/{id}/revoke`: ends it; the delegate's next request is refused.

use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::openapi::schemas::Problem;
use super::{AppState, audit};
use crate::delegation::{self, NewDelegation};
use crate::ids::PatientId;

/// `POST /api/v1/delegations`.
#[utoipa::path(
    tag = "delegations",
    security(("patient" = []), ("operator" = [])),
    responses(
        (status = 201, description = "The delegation; its `delegate` is the `fhirUser` of the delegate's sign-in", body = Object),
        (status = 400, description = "`invalid_delegation`, ...", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`legal_document_required`, `outside_delegation`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/delegations")]
pub async fn create(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    body: Json<NewDelegation>,
) -> Result<HttpResponse, ApiError> {
    let created = delegation::create(
        &state,
        &principal,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(created))
}

/// `GET /api/v1/patients/{id}/delegations`.
#[utoipa::path(
    tag = "delegations",
    security(("patient" = []), ("operator" = [])),
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 200, description = "`{\"delegations\": [...]}`", body = Object),
        (status = 400, description = "`invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/patients/{id}/delegations")]
pub async fn list(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let patient = PatientId::parse(&path)
        .map_err(|_| crate::error::DomainError::invalid("invalid_patient_id", "not a FHIR id"))?;
    let items = delegation::list(&state, &principal, &patient).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"delegations": items})))
}

/// `POST /api/v1/delegations/{id}/revoke`.
#[utoipa::path(
    tag = "delegations",
    security(("patient" = []), ("operator" = [])),
    params(("id" = String, Path, description = "The delegation id")),
    responses(
        (status = 200, description = "The delegation, ended; the delegate's next request is refused", body = Object),
        (status = 404, description = "`not_found`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/delegations/{id}/revoke")]
pub async fn revoke(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let ended = delegation::revoke(&state, &principal, &path, &audit::request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(ended))
}
