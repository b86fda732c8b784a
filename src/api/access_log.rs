//! The log read back over HTTP: the patient's accounting of disclosures and the FHIR
//! AuditEvent view. What they show, and why, is in [`crate::accounting`]; these handlers
//! parse, call one function there and render (content negotiation, the `Link` header).
//!
//! - `GET /api/v1/patients/{id}/access-log`: JSON, or CSV (RFC 4180) with `?format=csv` or
//!   `Accept: text/csv`. Errors are problem+json.
//! - `GET /fhir/AuditEvent?patient=&agent=&date=&_count=&_cursor=` and
//!   `GET /fhir/AuditEvent/{sequence}`. Errors are OperationOutcomes.

use actix_web::http::header::{ACCEPT, LINK};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get};
use serde_json::Value;

use super::AppState;
use super::auth::Reader;
use super::error::{ApiError, FHIR_JSON};
use super::openapi::schemas::{AccessLog, Bundle, OperationOutcome, Problem, Resource};
use crate::accounting::{self, Format, Viewer};

/// CSV when asked for by `format`, or by an `Accept` header naming `text/csv`.
fn wants_csv(req: &HttpRequest, format: Option<Format>) -> bool {
    match format {
        Some(f) => f == Format::Csv,
        None => req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv")),
    }
}

/// `GET /api/v1/patients/{id}/access-log`: the patient's accounting of disclosures, newest
/// first, each entry with its inclusion proof's inputs.
#[utoipa::path(
    tag = "access-log",
    security(("operator" = []), ("patient" = [])),
    params(
        ("id" = String, Path, description = "The patient id (a patient may name only themself)"),
        ("since" = Option<String>, Query, description = "Recorded on or after (FHIR date or dateTime)"),
        ("until" = Option<String>, Query, description = "Recorded on or before (FHIR date or dateTime)"),
        ("recipient" = Option<String>, Query, description = "Only disclosures to this client id"),
        ("_count" = inline(Option<crate::api::openapi::schemas::PageSize>), Query, description = "Page size (capped by the configured maximum)"),
        ("before" = Option<u64>, Query, description = "Paging: entries below this log sequence number (from `next`)"),
        ("format" = Option<String>, Query, description = "`json` (default) or `csv`; `Accept: text/csv` also selects CSV"),
    ),
    responses(
        (status = 200, description = "The accounting; `Link: <next>; rel=\"next\"` when there is more", content(
            (AccessLog = "application/json"),
            (String = "text/csv"),
        )),
        (status = 400, description = "`invalid_date`, `invalid_recipient`, `invalid_count`, `invalid_cursor`, `unsupported_format`, `unknown_parameter`, `repeated_parameter`, `invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/patients/{id}/access-log")]
pub async fn access_log(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let patient = accounting::log_subject(&Viewer::of(&reader.principal)?, &path)?;
    let query = accounting::parse_log_query(req.query_string(), &state.settings.limits)?;
    let csv = wants_csv(&req, query.format);
    let log = accounting::access_log(&state.gateway, &patient, &query).await?;
    let mut response = HttpResponse::Ok();
    response.insert_header(("Cache-Control", "no-store"));
    if let Some(next) = &log.next {
        response.insert_header((LINK, format!("<{next}>; rel=\"next\"")));
    }
    if csv {
        return Ok(response
            .content_type("text/csv; charset=utf-8; header=present")
            .body(log.to_csv()));
    }
    Ok(response.json(log.to_json()))
}

fn fhir_ok(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string())
}

/// `GET /fhir/AuditEvent?patient=&agent=&date=&_count=&_cursor=`: the log as FHIR
/// AuditEvents (BALP), newest first.
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("patient" = [])),
    params(
        ("patient" = Option<String>, Query, description = "Only entries about this patient (id or `Patient/id`); a patient token implies its own"),
        ("agent" = Option<String>, Query, description = "Only entries by this client id"),
        ("date" = Option<String>, Query, description = "Recorded date with a FHIR prefix (`eq`, `ge`, `gt`, `le`, `lt`); may repeat"),
        ("_count" = inline(Option<crate::api::openapi::schemas::PageSize>), Query, description = "Page size (capped by the configured maximum)"),
        ("_cursor" = Option<String>, Query, description = "Paging token from a `next` link"),
    ),
    responses(
        (status = 200, description = "A searchset Bundle of AuditEvents", body = Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_search_value`, `unsupported_search_parameter`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/AuditEvent")]
pub async fn search_audit_events(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = accounting::parse_event_query(req.query_string(), &state.settings.limits)?;
    let viewer = Viewer::of(&reader.principal)?;
    let bundle = accounting::search_events(&state, &viewer, &query).await?;
    Ok(fhir_ok(&bundle))
}

/// `GET /fhir/AuditEvent/{sequence}`. Only all-digit ids are log entries; any other id
/// falls through to the generic read of a stored resource (an AuditEvent a data source
/// sent, or an official example).
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("patient" = [])),
    params(("id" = u64, Path, description = "The log sequence number (all digits; other ids are stored AuditEvents, read by the generic read)")),
    responses(
        (status = 200, description = "The AuditEvent", body = Resource, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: no such entry, or not the caller's to see", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/AuditEvent/{id:\\d+}")]
pub async fn read_audit_event(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let viewer = Viewer::of(&reader.principal)?;
    let event = accounting::read_event(&state, &viewer, &path).await?;
    Ok(fhir_ok(&event))
}
