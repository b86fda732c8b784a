//! Access requests over HTTP: a recipient asks a patient for access; the patient approves
//! (a Consent is created from the request) or declines. The rules live in
//! [`crate::access_request`]; these handlers parse, call one function there and render.
//!
//! - `POST /api/v1/access-requests` (a recipient client): patient identifier, purpose, data
//!   classes, data period, reason. Always `202 {"id", "status": "submitted"}`, the same bytes
//!   whether the identifier matched one Patient, none or several: the domain hands back the
//!   new id only, so this handler cannot tell.
//! - `GET /api/v1/access-requests?status=&patient=&limit=&before=`: a patient's own requests,
//!   or (operator) all of them; newest first, paged by request id.
//! - `GET /api/v1/access-requests/{id}`: the requesting client sees the status only; the
//!   patient and an operator see the whole request.
//! - `POST /api/v1/access-requests/{id}/approve` `{"expires": dateTime}` (optional body) and
//!   `.../decline` (the patient, or an operator acting for them): once only, then 409.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, get, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::{Caller, ClientCaller, Reader};
use super::error::ApiError;
use super::openapi::schemas::{AccessRequestList, AccessRequestView, Problem};
use super::{AppState, audit};
use crate::access_request::{self as requests, ListQuery, NewRequest, Reviewer, view};
use crate::auth::Principal;
use crate::error::{DomainError, ErrorKind};

/// The optional body of `.../approve`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// When the consent ends (FHIR dateTime); open-ended when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

/// A domain 401 answers with the bearer challenge the extractors give.
fn api_error(e: DomainError) -> ApiError {
    match e.kind {
        ErrorKind::Unauthorized => ApiError::unauthorized(),
        _ => e.into(),
    }
}

fn no_store(mut response: HttpResponseBuilder) -> HttpResponseBuilder {
    response.insert_header(("Cache-Control", "no-store"));
    response
}

/// The answer to a new request: the same whether or not the patient was found.
#[derive(Debug, Serialize, ToSchema)]
pub struct Submitted {
    /// The request id.
    pub id: String,
    /// `submitted`.
    pub status: &'static str,
}

/// One page of requests (its schema is [`AccessRequestList`]).
#[derive(Debug, Serialize)]
pub struct AccessRequestPage {
    /// The requests, newest first.
    pub access_requests: Vec<Value>,
    /// The next page's URL, if any.
    pub next: Option<String>,
}

/// `POST /api/v1/access-requests`: a recipient client asks a patient for access.
#[utoipa::path(
    tag = "access-requests",
    security(("client" = [])),
    responses(
        (status = 202, description = "Submitted; `Location` names the request. The same answer whether the identifier matched one patient, none or several", body = Submitted),
        (status = 400, description = "`invalid_json`: not the JSON this endpoint takes", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_identifier`, `unknown_purpose`, `purpose_not_allowed`, `invalid_data_classes`, `unknown_data_class`, `data_class_not_allowed`, `invalid_period`, `invalid_reason`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/access-requests")]
pub async fn create(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    body: Json<NewRequest>,
) -> Result<HttpResponse, ApiError> {
    let principal = Principal::Client(Box::new(claims));
    let id = requests::submit(
        &state,
        &principal,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await
    .map_err(api_error)?;
    Ok(no_store(HttpResponse::Accepted())
        .insert_header(("Location", format!("/api/v1/access-requests/{id}")))
        .json(Submitted {
            id,
            status: "submitted",
        }))
}

/// `GET /api/v1/access-requests`: a patient's own requests, or (operator) all of them;
/// newest first.
#[utoipa::path(
    tag = "access-requests",
    security(("operator" = []), ("patient" = [])),
    params(
        ("status" = Option<String>, Query, description = "`pending`, `approved`, `declined` or `unmatched`; every status when absent"),
        ("patient" = Option<String>, Query, description = "Only this patient's requests (id or `Patient/id`); a patient may name only themself"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"),
        ("before" = Option<String>, Query, description = "Paging: requests older than this request id (from `next`)"),
    ),
    responses(
        (status = 200, description = "One page of requests", body = AccessRequestList),
        (status = 400, description = "`invalid_query`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/access-requests")]
pub async fn list(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let reviewer = Reviewer::of(&reader.principal)?;
    let query = ListQuery::parse(req.query_string(), &reviewer)?;
    let page = requests::list(&state, &reader.principal, &query, &audit::request_id(&req)).await?;
    let next = page
        .next
        .map(|next| format!("/api/v1/access-requests?{}", next.query_string()));
    let items: Vec<Value> = page
        .requests
        .iter()
        .map(|r| view(r, page.audience))
        .collect();
    Ok(no_store(HttpResponse::Ok()).json(AccessRequestPage {
        access_requests: items,
        next,
    }))
}

/// `GET /api/v1/access-requests/{id}`: the requesting client sees the status only; the
/// patient and an operator see the whole request.
#[utoipa::path(
    tag = "access-requests",
    security(("operator" = []), ("patient" = []), ("client" = [])),
    responses(
        (status = 200, description = "The request as the caller may see it", body = AccessRequestView),
        (status = 404, description = "`unknown_access_request`: no such request, or not the caller's", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/access-requests/{id}")]
pub async fn show(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (request, audience) =
        requests::show(&state, &principal, &path, &audit::request_id(&req)).await?;
    Ok(no_store(HttpResponse::Ok()).json(view(&request, audience)))
}

/// The approval body: empty, or `{"expires": dateTime}`.
fn parse_approval(bytes: &[u8]) -> Result<Approval, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Approval::default());
    }
    serde_json::from_slice(bytes).map_err(|e| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the JSON this endpoint takes: {e}"),
        )
    })
}

/// `POST /api/v1/access-requests/{id}/approve`: creates the Consent the request asked for.
#[utoipa::path(
    tag = "access-requests",
    security(("operator" = []), ("patient" = [])),
    request_body(content = Option<Approval>, content_type = "application/json", description = "Empty, or when the consent ends"),
    responses(
        (status = 200, description = "Approved; `consent` names the new Consent", body = AccessRequestView),
        (status = 400, description = "`invalid_json`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_access_request`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`access_request_not_pending`: decided already", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_expires`, `invalid_consent`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/access-requests/{id}/approve")]
pub async fn approve(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let approval = parse_approval(&body)?;
    let (request, audience) = requests::approve(
        &state,
        &reader.principal,
        &path,
        approval.expires.as_deref(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(no_store(HttpResponse::Ok()).json(view(&request, audience)))
}

/// `POST /api/v1/access-requests/{id}/decline`.
#[utoipa::path(
    tag = "access-requests",
    security(("operator" = []), ("patient" = [])),
    responses(
        (status = 200, description = "Declined", body = AccessRequestView),
        (status = 404, description = "`unknown_access_request`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`access_request_not_pending`: decided already", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/access-requests/{id}/decline")]
pub async fn decline(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (request, audience) =
        requests::decline(&state, &reader.principal, &path, &audit::request_id(&req)).await?;
    Ok(no_store(HttpResponse::Ok()).json(view(&request, audience)))
}
