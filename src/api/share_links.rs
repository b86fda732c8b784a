//! SMART Health Links over HTTP; the feature is [`crate::shl`], described for people in
//! `docs/PATIENT_RIGHTS.md`.
//!
//! The patient's side (a bearer token; a delegate allowed `send_evidence` and `read_records`):
//! - `POST /api/v1/share-links`: `label`, `passcode`, `expires` or `lifetime_days`,
//!   `max_uses`. 201 with the `shlink:/` link, its payload and its QR code: the only time
//!   the key is shown.
//! - `GET /api/v1/share-links`: the links, without keys or files.
//! - `DELETE /api/v1/share-links/{id}`: deactivates one; its next fetch is 404.
//!
//! The receiver's side (no token: the 256-bit manifest URL is the capability; rate-limited
//! per source address):
//! - `POST /api/v1/shl/{id}`: the manifest request of the specification.
//! - `GET /api/v1/shl/files/{ticket}`: the encrypted file (`application/jose`), once.
//!
//! Receivers are often web pages on another origin, so both routes answer with
//! `Access-Control-Allow-Origin: *` (every answer, errors included) and a CORS preflight
//! (`OPTIONS`). That opens nothing: neither route reads a cookie or a token, the capability is
//! the URL itself, and no answer carries credentials.

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::StatusCode;
use actix_web::http::header::HeaderValue;
use actix_web::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_MAX_AGE, CACHE_CONTROL,
};
use actix_web::middleware::{Next, from_fn};
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, delete, get, options, post};
use serde_json::json;

use super::auth::Caller;
use super::error::{ApiError, PROBLEM_JSON};
use super::openapi::schemas::{Problem, ShareLinkList};
use super::{AppState, audit, throttle};
use crate::shl::fetch::{ManifestAnswer, ManifestRequest};
use crate::shl::{self, Created, LinkView, NewShareLink};

/// `POST /api/v1/share-links`.
#[utoipa::path(
    tag = "share-links",
    security(("patient" = [])),
    request_body = NewShareLink,
    responses(
        (status = 201, description = "The link: `link` (`shlink:/...`), its `payload`, `qr_svg`; the key is shown only here", body = Created),
        (status = 400, description = "`invalid_label`, `invalid_passcode`, `invalid_expires`, `invalid_max_uses`", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`too_many_share_links`: 20 links already work; deactivate one first", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/share-links")]
pub async fn create(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    body: Json<NewShareLink>,
) -> Result<HttpResponse, ApiError> {
    let created = shl::create(
        &state,
        &principal,
        body.into_inner(),
        &audit::request_id(&req),
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(created))
}

/// `GET /api/v1/share-links`.
#[utoipa::path(
    tag = "share-links",
    security(("patient" = [])),
    responses(
        (status = 200, description = "`{\"share_links\": [...]}`, newest first: uses, expiry, status; never a key or a file", body = ShareLinkList),
    )
)]
#[get("/api/v1/share-links")]
pub async fn list(
    state: Data<AppState>,
    Caller(principal): Caller,
) -> Result<HttpResponse, ApiError> {
    let links = shl::list(&state, &principal).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(json!({"share_links": links})))
}

/// `DELETE /api/v1/share-links/{id}`.
#[utoipa::path(
    tag = "share-links",
    security(("patient" = [])),
    params(("id" = String, Path, description = "The link's public id (from the listing)")),
    responses(
        (status = 200, description = "The link, deactivated", body = LinkView),
        (status = 404, description = "`unknown_share_link`: no such link of this patient", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api/v1/share-links/{id}")]
pub async fn deactivate(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let link = shl::deactivate(&state, &principal, &path, &audit::request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(link))
}

/// The 429 of a source address that opened too many links.
fn throttled(req: &HttpRequest) -> Result<(), ApiError> {
    let Some(limits) = throttle::rate_limits(req) else {
        return Ok(());
    };
    limits
        .check_share_link(throttle::source_address(req, &limits))
        .map_err(|t| ApiError::too_many_requests(t.retry_after_secs()))
}

/// `POST /api/v1/shl/{id}`: the manifest (SMART Health Links specification).
#[utoipa::path(
    tag = "share-links",
    params(("id" = String, Path, description = "The link's secret id (the manifest URL from the `shlink:/` payload)")),
    request_body = ManifestRequest,
    responses(
        (status = 200, description = "`{\"files\": [{\"contentType\": \"application/fhir+json\", \"location\" | \"embedded\"}]}`", body = Object),
        (status = 400, description = "`invalid_recipient`, `invalid_passcode`", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "`wrong_passcode`: a missing or wrong passcode; the problem carries `remainingAttempts` (an integer, the specification's member), and the link is deactivated when none remain", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_share_link`: unknown, expired, deactivated or used up, alike", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests` from this address; carries `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/shl/{id}", wrap = "from_fn(any_origin)")]
pub async fn manifest(
    state: Data<AppState>,
    req: HttpRequest,
    path: Path<String>,
    body: Json<ManifestRequest>,
) -> Result<HttpResponse, ApiError> {
    throttled(&req)?;
    let answer =
        shl::fetch::manifest(&state, &path, body.into_inner(), &audit::request_id(&req)).await?;
    Ok(match answer {
        ManifestAnswer::Files(manifest) => HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(manifest),
        // Problem details with the member the specification names.
        ManifestAnswer::WrongPasscode { remaining_attempts } => {
            HttpResponse::build(StatusCode::UNAUTHORIZED)
                .insert_header((CACHE_CONTROL, "no-store"))
                .content_type(PROBLEM_JSON)
                .body(
                    json!({
                        "type": "https://consentgate.dev/problems/wrong_passcode",
                        "title": "wrong passcode",
                        "status": 401,
                        "detail": "the passcode is missing or wrong",
                        "code": "wrong_passcode",
                        "remainingAttempts": remaining_attempts,
                    })
                    .to_string(),
                )
        }
    })
}

/// `GET /api/v1/shl/files/{ticket}`: the encrypted file, once, within minutes of the manifest.
#[utoipa::path(
    tag = "share-links",
    params(("ticket" = String, Path, description = "The single-use ticket from the manifest's `location`")),
    responses(
        (status = 200, description = "The compact JWE (`alg: dir`, `enc: A256GCM`, `cty: application/fhir+json`)", body = String, content_type = "application/jose"),
        (status = 404, description = "`unknown_share_link`: unknown, used or expired ticket, or the link was deactivated", body = Problem, content_type = "application/problem+json"),
        (status = 429, description = "`too_many_requests` from this address; carries `Retry-After`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/shl/files/{ticket}", wrap = "from_fn(any_origin)")]
pub async fn file(
    state: Data<AppState>,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    throttled(&req)?;
    let jwe = shl::fetch::file(&state, &path, &audit::request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .content_type("application/jose")
        .body(jwe))
}

/// `Access-Control-Allow-Origin: *` on every answer of a receiver's route, its errors (a
/// refused body, an unknown link) included: a handler's or extractor's error is rendered here
/// so that the header can be added to it.
async fn any_origin(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let asked = req.request().clone();
    let mut answer = match next.call(req).await {
        Ok(answer) => answer.map_into_boxed_body(),
        Err(e) => ServiceResponse::new(asked, e.error_response()),
    };
    answer
        .headers_mut()
        .insert(ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    Ok(answer)
}

/// The CORS preflight of a browser receiver: `method` with a JSON body, from any origin.
fn preflight(method: &'static str) -> HttpResponse {
    HttpResponse::NoContent()
        .insert_header((ACCESS_CONTROL_ALLOW_ORIGIN, "*"))
        .insert_header((ACCESS_CONTROL_ALLOW_METHODS, method))
        .insert_header((ACCESS_CONTROL_ALLOW_HEADERS, "content-type"))
        .insert_header((ACCESS_CONTROL_MAX_AGE, "86400"))
        .finish()
}

/// `OPTIONS /api/v1/shl/{id}`: the manifest request's CORS preflight.
#[utoipa::path(
    tag = "share-links",
    params(("id" = String, Path, description = "The link's secret id")),
    responses((status = 204, description = "CORS preflight: any origin may `POST` with a JSON body")),
)]
#[options("/api/v1/shl/{id}")]
pub async fn manifest_preflight() -> HttpResponse {
    preflight("POST")
}

/// `OPTIONS /api/v1/shl/files/{ticket}`: the file request's CORS preflight.
#[utoipa::path(
    tag = "share-links",
    params(("ticket" = String, Path, description = "The single-use ticket")),
    responses((status = 204, description = "CORS preflight: any origin may `GET`")),
)]
#[options("/api/v1/shl/files/{ticket}")]
pub async fn file_preflight() -> HttpResponse {
    preflight("GET")
}
