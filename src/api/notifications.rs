//! Patient notifications (see `docs/NOTIFICATIONS.md`):
//!
//! - `GET /api/v1/patients/{id}/notifications?unread=true&limit=&before=`: the feed, newest
//!   first, paged by notification id (the patient or an operator);
//! - `POST /api/v1/patients/{id}/notifications/{nid}/read`: marks one read (the patient);
//! - `GET /api/v1/patients/{id}/webhook`: the registration, without its secret (the patient
//!   or an operator);
//! - `PUT /api/v1/patients/{id}/webhook` `{"url": "https://..."}`: registers or replaces the
//!   webhook and answers the new signing secret, once (the patient);
//! - `DELETE /api/v1/patients/{id}/webhook`: removes it and cancels pending deliveries (the
//!   patient, or an operator stopping a misbehaving endpoint).
//!
//! Who may do what, and the audit of an operator's look, are [`crate::notify::inbox`]'s.

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::audit;
use super::auth::Reader;
use super::error::ApiError;
use crate::ids::PatientId;
use crate::notify::inbox;
use crate::records::dates::format_instant;
use crate::store::notifications::FeedQuery;

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;
/// Largest honoured `limit`.
const MAX_LIMIT: i64 = 200;

fn bad_query(message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// The patient id of the path.
fn patient_of(path: &str) -> Result<PatientId, ApiError> {
    PatientId::parse(path).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_patient_id",
            "the patient id must be a FHIR id",
        )
    })
}

/// The feed's query: `unread`, `limit`, `before`; anything else is refused.
fn parse_feed_query(patient_id: &str, query: &str) -> Result<FeedQuery, ApiError> {
    let mut q = FeedQuery {
        patient_id: patient_id.to_string(),
        unread_only: false,
        before: None,
        limit: DEFAULT_LIMIT,
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "unread" => {
                q.unread_only = match value.as_ref() {
                    "true" => true,
                    "false" => false,
                    _ => return Err(bad_query("unread must be true or false")),
                }
            }
            "limit" => {
                q.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad_query("limit must be an integer from 1 to 200"))?;
            }
            "before" => {
                let id = uuid::Uuid::parse_str(&value)
                    .map_err(|_| bad_query("before must be a notification id"))?;
                q.before = Some(id.hyphenated().to_string());
            }
            _ => return Err(bad_query("unknown parameter; use unread, limit or before")),
        }
    }
    Ok(q)
}

/// The link to the page after `last_id`.
fn next_link(q: &FeedQuery, last_id: &str) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    if q.unread_only {
        query.append_pair("unread", "true");
    }
    query.append_pair("limit", &q.limit.to_string());
    query.append_pair("before", last_id);
    format!(
        "/api/v1/patients/{}/notifications?{}",
        q.patient_id,
        query.finish()
    )
}

/// `GET /api/v1/patients/{id}/notifications`.
#[get("/api/v1/patients/{id}/notifications")]
pub async fn feed(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&path)?;
    let query = parse_feed_query(patient.as_str(), req.query_string())?;
    let page = inbox::feed(
        &state,
        &reader.principal,
        &audit::request_id(&req),
        &patient,
        &query,
    )
    .await?;
    let next = page
        .next_before
        .as_deref()
        .map(|last| next_link(&query, last));
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "notifications": page.items, "unread": page.unread, "next": next })))
}

/// `POST /api/v1/patients/{id}/notifications/{nid}/read`: idempotent; keeps the first time.
#[post("/api/v1/patients/{id}/notifications/{nid}/read")]
pub async fn mark_read(
    state: Data<AppState>,
    reader: Reader,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (patient, nid) = path.into_inner();
    let patient = patient_of(&patient)?;
    let view = inbox::mark_read(&state, &reader.principal, &patient, &nid).await?;
    Ok(HttpResponse::Ok().json(view))
}

/// Body of `PUT /api/v1/patients/{id}/webhook`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where notifications are POSTed; https only.
    pub url: String,
}

/// `GET /api/v1/patients/{id}/webhook`: the registration without its secret.
#[get("/api/v1/patients/{id}/webhook")]
pub async fn show_webhook(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&path)?;
    let row = inbox::webhook(&state, &reader.principal, &patient).await?;
    Ok(HttpResponse::Ok().json(json!({
        "patient_id": row.patient_id,
        "url": row.url,
        "created": format_instant(row.created),
    })))
}

/// `PUT /api/v1/patients/{id}/webhook`: 201 when new, 200 when replaced; the answer holds
/// the new secret, which is never shown again.
#[put("/api/v1/patients/{id}/webhook")]
pub async fn put_webhook(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
    body: Json<WebhookRequest>,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&path)?;
    let (row, replaced) =
        inbox::put_webhook(&state, &reader.principal, &patient, &body.url).await?;
    let status = if replaced {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(HttpResponse::build(status)
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({
            "patient_id": row.patient_id,
            "url": row.url,
            "created": format_instant(row.created),
            "secret": row.secret,
        })))
}

/// `DELETE /api/v1/patients/{id}/webhook`: 204; pending deliveries are cancelled.
#[delete("/api/v1/patients/{id}/webhook")]
pub async fn delete_webhook(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&path)?;
    inbox::delete_webhook(&state, &reader.principal, &patient).await?;
    Ok(HttpResponse::NoContent().finish())
}
