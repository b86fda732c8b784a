//! Corrections over HTTP; the rules live in [`crate::amendment`].
//!
//! - `POST /api/v1/amendments` (the patient, or a delegate allowed `request_amendments`):
//!   `record` (`Type/id`), `what_is_wrong`, `proposed_correction`. 201 with the request.
//! - `GET /api/v1/amendments` (`?pending=true`): the patient's requests; a data source's queue
//!   (the requests about records it supplied); every request for an operator.
//! - `GET /api/v1/amendments/{id}`.
//! - `POST /api/v1/amendments/{id}/answer` (the data source that supplied the record, or an
//!   operator): `{"decision": "accept",
//!   "resource": {...}}`, `{"decision": "deny", "reason": "..."}` or
//!   `{"decision": "extend", "reason": "..."}`.
//! - `POST /api/v1/amendments/{id}/disagreement` (after a denial): `statement`. 201.

use actix_web::web::{Data, Json, Path, Query};
use actix_web::{HttpRequest, HttpResponse, get, post};
use serde::Deserialize;
use serde_json::json;

use super::auth::Caller;
use super::error::ApiError;
use super::openapi::schemas::Problem;
use super::{AppState, audit};
use crate::amendment::dispute::NewStatement;
use crate::amendment::{self, NewAmendment, answer::Answer};

/// `POST /api/v1/amendments`.
#[utoipa::path(
    tag = "amendments",
    security(("patient" = []), ("operator" = []), ("client" = [])),
    responses(
        (status = 201, description = "The request, filed; the answerer has 60 days", body = Object),
        (status = 400, description = "`invalid_amendment`, `invalid_record`, `not_the_record`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: no such record of this patient", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/amendments")]
pub async fn create(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    body: Json<NewAmendment>,
) -> Result<HttpResponse, ApiError> {
    let filed = amendment::file(
        &state,
        &principal,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(filed))
}

/// The listing's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only requests not yet answered.
    #[serde(default)]
    pending: bool,
}

/// `GET /api/v1/amendments`.
#[utoipa::path(
    tag = "amendments",
    security(("patient" = []), ("operator" = []), ("client" = [])),
    params(ListQuery),
    responses(
        (status = 200, description = "`{\"amendments\": [...]}`: the caller's requests (the patient's own; a data source's queue, the requests about the records it supplied, without the patient or the requester; all for an operator)", body = Object),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: a recipient client has no requests", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/amendments")]
pub async fn list(
    state: Data<AppState>,
    Caller(principal): Caller,
    query: Query<ListQuery>,
) -> Result<HttpResponse, ApiError> {
    let items = amendment::list(&state, &principal, query.pending).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"amendments": items})))
}

/// `GET /api/v1/amendments/{id}`.
#[utoipa::path(
    tag = "amendments",
    security(("patient" = []), ("operator" = []), ("client" = [])),
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request (for a data source, without the patient or the requester)", body = Object),
        (status = 404, description = "`unknown_amendment`: missing, or not about a record the calling data source supplied", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/amendments/{id}")]
pub async fn show(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let found = amendment::show(&state, &principal, &path).await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(found))
}

/// `POST /api/v1/amendments/{id}/answer`.
#[utoipa::path(
    tag = "amendments",
    security(("operator" = []), ("client" = [])),
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 200, description = "The request, answered; `answered_by` names the answerer", body = Object),
        (status = 400, description = "`invalid_amendment`, `not_the_record`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden` (a patient or a delegate); for a data source's acceptance: `insufficient_scope` (its token cannot update the record's type)", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_amendment`: missing, or (for a data source) not about a record it supplied", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`amendment_answered`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/amendments/{id}/answer")]
pub async fn answer(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
    body: Json<Answer>,
) -> Result<HttpResponse, ApiError> {
    let answered = amendment::answer::answer(
        &state,
        &principal,
        &path,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(answered))
}

/// `POST /api/v1/amendments/{id}/disagreement`: the patient's statement after a denial.
#[utoipa::path(
    tag = "amendments",
    security(("patient" = [])),
    params(("id" = String, Path, description = "The request id")),
    responses(
        (status = 201, description = "The statement of disagreement, filed; it travels with the record from now on", body = Object),
        (status = 404, description = "`unknown_amendment`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`not_disputable`: the request was not denied", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/amendments/{id}/disagreement")]
pub async fn disagree(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
    body: Json<NewStatement>,
) -> Result<HttpResponse, ApiError> {
    let filed = amendment::dispute::file(
        &state,
        &principal,
        &path,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header(("Cache-Control", "no-store"))
        .json(filed))
}
