//! Disclosure packages over HTTP; the feature itself is [`crate::disclosure`], described for
//! people in `docs/DISCLOSURES.md`:
//!
//! - `POST /api/v1/disclosures` (the patient, or an operator for a patient): 201 with the
//!   package's summary, `Location` the bundle's URL;
//! - `GET /api/v1/disclosures?patient=`: what was sent, to whom, and when it was fetched;
//! - `GET /api/v1/disclosures/{id}/bundle` (the recipient only; others get 404): the stored
//!   bytes with [`SIGNATURE_HEADER`], until the package expires, its retrieval limit is
//!   reached or the patient's consents no longer permit it (then 410);
//! - `GET /api/v1/disclosures/{id}/signature` (the recipient only): the detached JWS.

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use serde::Serialize;
use utoipa::ToSchema;

use super::auth::{ClientCaller, Reader};
use super::error::{ApiError, FHIR_JSON};
use super::openapi::schemas::{Bundle, Problem};
use super::{AppState, audit};
use crate::disclosure::{self, Created, NewDisclosure, Summary};
use crate::records::index;

/// The response header carrying the detached JWS.
pub const SIGNATURE_HEADER: &str = "X-JWS-Signature";

/// A patient's packages.
#[derive(Debug, Serialize, ToSchema)]
pub struct DisclosureList {
    /// Newest first.
    pub disclosures: Vec<Summary>,
}

/// `POST /api/v1/disclosures`: freezes, signs and records a package of the patient's records
/// for one recipient.
#[utoipa::path(
    tag = "disclosures",
    security(("operator" = []), ("patient" = [])),
    responses(
        (status = 201, description = "Created; `Location` is the bundle's URL", body = Created),
        (status = 400, description = "`invalid_json`, `invalid_patient`, `missing_patient`, `invalid_selection`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`: a patient discloses only their own records", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`unknown_recipient`, `recipient_role_not_allowed`, `purpose_not_allowed`, `invalid_policy`, `invalid_expires`, `invalid_max_retrievals`, `empty_selection`, `selection_too_large`, `invalid_reference`, `not_a_record_of_the_patient`, `selection_not_permitted`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/disclosures")]
pub async fn create(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    body: Json<NewDisclosure>,
) -> Result<HttpResponse, ApiError> {
    let mut ask = body.into_inner();
    let patient = disclosure::patient_for(&reader.principal, ask.patient.take())?;
    let created = disclosure::create(
        &state,
        &reader.principal,
        &audit::request_id(&req),
        &patient,
        ask,
    )
    .await?;
    Ok(HttpResponse::Created()
        .insert_header((
            LOCATION,
            format!("/api/v1/disclosures/{}/bundle", created.id),
        ))
        .json(created))
}

/// `GET /api/v1/disclosures?patient=`: the patient's packages, newest first, each with what
/// it holds and when it was fetched. Not audited: it holds ids only, like the access log.
#[utoipa::path(
    tag = "disclosures",
    security(("operator" = []), ("patient" = [])),
    params(("patient" = Option<String>, Query, description = "The patient (id or `Patient/id`); required for operators, implied for a patient")),
    responses(
        (status = 200, description = "The patient's packages", body = DisclosureList),
        (status = 400, description = "`invalid_query`, `invalid_patient`, `missing_patient`", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "`forbidden`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/disclosures")]
pub async fn for_patient(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut named = None;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "patient" => {
                named = Some(
                    index::patient_id_from_reference(&value).unwrap_or_else(|| value.into_owned()),
                )
            }
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "the only parameter is `patient`",
                ));
            }
        }
    }
    let patient = disclosure::patient_for(&reader.principal, named)?;
    let packages = disclosure::list(&state, &patient).await?;
    Ok(HttpResponse::Ok().json(DisclosureList {
        disclosures: packages,
    }))
}

/// `GET /api/v1/disclosures/{id}/bundle`: the frozen bundle, for its recipient, with its
/// signature in [`SIGNATURE_HEADER`].
#[utoipa::path(
    tag = "disclosures",
    security(("client" = [])),
    responses(
        (status = 200, description = "The frozen document Bundle, byte for byte as signed", body = Bundle, content_type = "application/fhir+json",
            headers(("X-JWS-Signature" = String, description = "Detached JWS (RFC 7515 appendix F) over the body, EdDSA, `kid` in the gateway JWKS"))),
        (status = 404, description = "`unknown_disclosure`: no such package, or not for this client", body = Problem, content_type = "application/problem+json"),
        (status = 410, description = "`disclosure_expired`, `retrieval_limit_reached`, `disclosure_revoked`, `disclosure_withdrawn`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/disclosures/{id}/bundle")]
pub async fn fetch_bundle(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let served = disclosure::fetch(&state, &claims, &audit::request_id(&req), &path).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .insert_header((SIGNATURE_HEADER, served.signature))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(served.bundle))
}

/// `GET /api/v1/disclosures/{id}/signature`: the detached JWS, for the recipient. It holds no
/// record content, so it stays available after the package expires, for later checks.
#[utoipa::path(
    tag = "disclosures",
    security(("client" = [])),
    responses(
        (status = 200, description = "The detached JWS", body = String, content_type = "text/plain"),
        (status = 404, description = "`unknown_disclosure`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/disclosures/{id}/signature")]
pub async fn fetch_signature(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let signature = disclosure::signature(&state, &claims, &path).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(signature))
}
