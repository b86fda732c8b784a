//! FHIR Bulk Data export (`docs/EXPORT.md`): the kick-off of a research study (`GET`, or
//! `POST` with a `Parameters` body, `/fhir/Group/{study}/$export`) or of a patient's own copy
//! (`GET /fhir/Patient/$export`), its status (`GET` and `DELETE /fhir/$export-status/{job}`)
//! and its files (`GET /fhir/$export-file/{job}/{file}`), which answer only the job's owner.
//! Each handler reads the request, calls one function of [`crate::export`] and renders.

use std::io::Read;
use std::time::Duration;

use actix_web::http::header::{CONTENT_LOCATION, EXPIRES, HttpDate, RETRY_AFTER};
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, delete, get, post};
use serde_json::json;

use super::auth::{Caller, ClientCaller};
use super::body::FhirJson;
use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::error::{DomainError, ErrorKind};
use crate::export::{self, JobView, KickOff, NDJSON, Owner};
use crate::records::outcome;

/// Bytes read per chunk of a download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

/// The preferences of a `Prefer` header (RFC 7240), lower-cased, without parameters.
fn preferences(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|p| p.split(';').next())
        .map(|p| p.trim().to_ascii_lowercase().replace(' ', ""))
        .collect()
}

fn informational(message: &str) -> String {
    json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": message}]}).to_string()
}

/// A domain error as the client sees it; a busy gateway says when to come back.
fn refused(e: DomainError) -> ApiError {
    let busy = e.kind == ErrorKind::TooMany;
    let mut error = ApiError::from(e);
    if busy {
        error.retry_after = Some(export::BUSY_RETRY_AFTER_SECS);
    }
    error
}

/// `GET /fhir/Group/{study}/$export`: starts an export (202 with `Content-Location`).
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    params(
        ("id" = String, Path, description = "The study's Group id"),
        ("Prefer" = String, Header, description = "Must be `respond-async`"),
        ("_outputFormat" = Option<String>, Query, description = "`application/fhir+ndjson` (the only one)"),
        ("_type" = Option<String>, Query, description = "Resource types, comma-separated"),
        ("_since" = Option<String>, Query, description = "Only resources updated after this FHIR instant"),
        ("_typeFilter" = Option<String>, Query, description = "`Type?search` filters (the search parameters the gateway supports), comma-separated"),
    ),
    responses(
        (status = 202, description = "Accepted; `Content-Location` is the status URL", headers(("Content-Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`respond_async_required`, `duplicate_parameter`, `unsupported_output_format`, `invalid_type`, `invalid_since`, `unsupported_parameter`, `unknown_parameter`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: no such study for this researcher", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 429, description = "`too_many_exports`; carries `Retry-After`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Group/{id}/$export")]
pub async fn kick_off(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    start(state, claims, req, path.into_inner(), None).await
}

/// `POST /fhir/Group/{study}/$export` with a FHIR `Parameters` body (Bulk Data v2): the same
/// kick-off, its parameters in the body (size and depth limited by [`FhirJson`]).
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    params(
        ("id" = String, Path, description = "The study's Group id"),
        ("Prefer" = String, Header, description = "`respond-async`, optionally with `handling=lenient`"),
    ),
    request_body(content = crate::api::openapi::schemas::Resource, description = "A FHIR `Parameters` resource: `_outputFormat`, `_type`, `_since`, `_typeFilter`, `patient`", content_type = "application/fhir+json"),
    responses(
        (status = 202, description = "Accepted; `Content-Location` is the status URL", headers(("Content-Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`respond_async_required`, `invalid_parameters`, `invalid_type_filter`, `unsupported_type_filter`, and the GET kick-off's codes", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: no such study for this researcher", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "The body is not JSON", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 429, description = "`too_many_exports`; carries `Retry-After`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[post("/Group/{id}/$export")]
pub async fn kick_off_post(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<String>,
    FhirJson(body): FhirJson,
) -> Result<HttpResponse, ApiError> {
    start(state, claims, req, path.into_inner(), Some(body)).await
}

/// `GET /fhir/Patient/$export`: a patient (or a delegate allowed `read_records`) starts an
/// export of their own records, identified, as `$everything` gives them.
#[utoipa::path(
    tag = "fhir",
    security(("patient" = [])),
    params(
        ("Prefer" = String, Header, description = "Must be `respond-async`"),
        ("_outputFormat" = Option<String>, Query, description = "`application/fhir+ndjson` (the only one)"),
        ("_type" = Option<String>, Query, description = "Resource types, comma-separated"),
        ("_since" = Option<String>, Query, description = "Only resources updated after this FHIR instant"),
        ("_typeFilter" = Option<String>, Query, description = "`Type?search` filters (the search parameters the gateway supports), comma-separated"),
    ),
    responses(
        (status = 202, description = "Accepted; `Content-Location` is the status URL", headers(("Content-Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`respond_async_required`, `duplicate_parameter`, `unsupported_output_format`, `invalid_type`, `invalid_since`, `unsupported_parameter`, `unknown_parameter`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden`: a client or an operator (the export is a person's own); `outside_delegation`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 429, description = "`too_many_exports`; carries `Retry-After`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Patient/$export")]
pub async fn kick_off_own(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let asked = asked(&state, &req, String::new(), None);
    let status_url = export::kick_off_own(&state, &state.export_worker, &principal, asked)
        .await
        .map_err(refused)?;
    Ok(accepted(status_url))
}

fn asked(
    state: &AppState,
    req: &HttpRequest,
    study: String,
    parameters: Option<serde_json::Value>,
) -> KickOff {
    let prefer = preferences(req);
    KickOff {
        study,
        query: req.query_string().to_string(),
        parameters,
        lenient: prefer.iter().any(|p| p == "handling=lenient"),
        respond_async: prefer.iter().any(|p| p == "respond-async"),
        request_url: format!("{}{}", state.base_url, req.uri()),
        request_id: audit::request_id(req),
    }
}

fn accepted(status_url: String) -> HttpResponse {
    HttpResponse::Accepted()
        .insert_header((CONTENT_LOCATION, status_url))
        .content_type(FHIR_JSON)
        .body(informational(
            "the export was accepted; poll the Content-Location URL",
        ))
}

async fn start(
    state: Data<AppState>,
    claims: crate::auth::tokens::AccessClaims,
    req: HttpRequest,
    study: String,
    parameters: Option<serde_json::Value>,
) -> Result<HttpResponse, ApiError> {
    let asked = asked(&state, &req, study, parameters);
    let status_url = export::kick_off(&state, &state.export_worker, &claims, asked)
        .await
        .map_err(refused)?;
    Ok(accepted(status_url))
}

/// `GET /fhir/$export-status/{job}`: progress (202), the manifest (200) or the error (500).
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("patient" = [])),
    responses(
        (status = 200, description = "Complete: the Bulk Data manifest; `Expires` says until when the files are kept", body = crate::api::openapi::schemas::ExportManifest, content_type = "application/json"),
        (status = 202, description = "Running; `X-Progress` and `Retry-After`"),
        (status = 404, description = "`not_found`: no such job for this caller (another client's or person's answers the same)", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 500, description = "The job failed; the OperationOutcome says why", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/$export-status/{job}")]
pub async fn status(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owner = Owner::of(&principal)?;
    match export::status(&state, &owner, &path.into_inner()).await? {
        JobView::Running { done, total } => {
            let total = total.map_or_else(|| "?".to_string(), |t| t.to_string());
            Ok(HttpResponse::Accepted()
                .insert_header(("X-Progress", format!("patients {done}/{total}")))
                .insert_header((RETRY_AFTER, export::RETRY_AFTER_SECS))
                .finish())
        }
        JobView::Complete { manifest, expires } => {
            let mut response = HttpResponse::Ok();
            if let Some(expires) = expires {
                let at = std::time::UNIX_EPOCH
                    + Duration::from_micros(u64::try_from(expires).unwrap_or(0));
                response.insert_header((EXPIRES, HttpDate::from(at)));
            }
            Ok(response
                .content_type("application/json")
                .body(manifest.to_string()))
        }
        JobView::Failed { code, message } => Ok(HttpResponse::InternalServerError()
            .content_type(FHIR_JSON)
            .body(outcome::operation_outcome("exception", &code, &message).to_string())),
    }
}

/// `DELETE /fhir/$export-status/{job}`: cancels a running job or deletes a finished one.
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("patient" = [])),
    responses(
        (status = 202, description = "Cancelled (or deleted) and its files removed", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[delete("/$export-status/{job}")]
pub async fn cancel(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let owner = Owner::of(&principal)?;
    export::cancel(&state, &owner, &path.into_inner()).await?;
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .body(informational(
            "the export was cancelled and its files removed",
        )))
}

/// `GET /fhir/$export-file/{job}/{file}`: one output (or `error`) file, streamed.
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("patient" = [])),
    params(
        ("job" = String, Path, description = "The job id"),
        ("file" = String, Path, description = "`{Type}.ndjson`, or the error file the manifest names"),
    ),
    responses(
        (status = 200, description = "One resource per line: de-identified for a study, as stored for a patient's own copy (or one OperationOutcome per line)", body = String, content_type = "application/fhir+ndjson"),
        (status = 404, description = "`not_found`: no such file, or not this client's, or expired", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/$export-file/{job}/{file}")]
pub async fn download(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (job, name) = path.into_inner();
    let request_id = audit::request_id(&req);
    let file = export::open_file(&state, &principal, &job, &name, &request_id).await?;
    let chunks = futures_util::stream::unfold(Some(file), |open| async move {
        let mut file = open?;
        let read = crate::cpus::spawn_blocking(move || {
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok(HttpResponse::Ok().content_type(NDJSON).streaming(chunks))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefer_header_preferences() {
        let req = actix_web::test::TestRequest::default()
            .insert_header(("prefer", "respond-async, handling=lenient"))
            .to_http_request();
        assert_eq!(preferences(&req), ["respond-async", "handling=lenient"]);
        let req = actix_web::test::TestRequest::default()
            .insert_header(("Prefer", "Respond-Async; wait=10"))
            .to_http_request();
        assert_eq!(preferences(&req), ["respond-async"]);
    }
}
