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
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::AppState;
use super::audit;
use super::auth::Reader;
use super::error::ApiError;
use super::openapi::schemas::{Notification, Problem};
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

/// One page of the feed.
#[derive(Debug, Serialize, ToSchema)]
pub struct Feed {
    /// Newest first (each as [`crate::notify::view`] shows it).
    #[schema(value_type = Vec<Notification>)]
    pub notifications: Vec<Value>,
    /// How many are unread in all.
    pub unread: i64,
    /// The next page's URL, if any.
    pub next: Option<String>,
}

/// A patient's webhook registration, without its secret.
#[derive(Debug, Serialize, ToSchema)]
pub struct Webhook {
    /// The patient.
    pub patient_id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When it was registered (FHIR instant).
    pub created: String,
}

/// A registration just made: the signing secret is shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct WebhookCreated {
    /// The patient.
    pub patient_id: String,
    /// Where notifications are POSTed.
    pub url: String,
    /// When it was registered (FHIR instant).
    pub created: String,
    /// The HMAC-SHA256 key deliveries are signed with; never shown again.
    pub secret: String,
}

/// `GET /api/v1/patients/{id}/notifications`: the feed, newest first.
#[utoipa::path(
    tag = "notifications",
    security(("operator" = []), ("patient" = [])),
    params(
        ("unread" = Option<bool>, Query, description = "Only unread notifications"),
        ("limit" = Option<u32>, Query, description = "Page size, 1 to 200 (default 50)"),
        ("before" = Option<String>, Query, description = "Paging: notifications older than this notification id (from `next`)"),
    ),
    responses(
        (status = 200, description = "One page of the feed", body = Feed),
        (status = 400, description = "`invalid_query`, `invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
    )
)]
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
        .json(Feed {
            notifications: page.items,
            unread: page.unread,
            next,
        }))
}

/// `POST /api/v1/patients/{id}/notifications/{nid}/read`: idempotent; keeps the first time.
#[utoipa::path(
    tag = "notifications",
    security(("patient" = []), ("operator" = [])),
    responses(
        (status = 200, description = "The notification, read", body = Notification),
        (status = 400, description = "`invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`unknown_notification`", body = Problem, content_type = "application/problem+json"),
    )
)]
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
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct WebhookRequest {
    /// Where notifications are POSTed; https only.
    pub url: String,
}

/// `GET /api/v1/patients/{id}/webhook`: the registration without its secret.
#[utoipa::path(
    tag = "notifications",
    security(("operator" = []), ("patient" = [])),
    responses(
        (status = 200, description = "The registration", body = Webhook),
        (status = 400, description = "`invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no_webhook`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/patients/{id}/webhook")]
pub async fn show_webhook(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_of(&path)?;
    let row = inbox::webhook(&state, &reader.principal, &patient).await?;
    Ok(HttpResponse::Ok().json(Webhook {
        patient_id: row.patient_id,
        url: row.url,
        created: format_instant(row.created),
    }))
}

/// `PUT /api/v1/patients/{id}/webhook`: 201 when new, 200 when replaced; the answer holds
/// the new secret, which is never shown again.
#[utoipa::path(
    tag = "notifications",
    security(("patient" = []), ("operator" = [])),
    responses(
        (status = 200, description = "Replaced; the new secret", body = WebhookCreated),
        (status = 201, description = "Registered; the secret", body = WebhookCreated),
        (status = 400, description = "`invalid_json`, `invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The URL is not an https URL the gateway may call (`invalid_webhook_url`, ...)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
        .json(WebhookCreated {
            patient_id: row.patient_id,
            url: row.url,
            created: format_instant(row.created),
            secret: row.secret,
        }))
}

/// `DELETE /api/v1/patients/{id}/webhook`: 204; pending deliveries are cancelled.
#[utoipa::path(
    tag = "notifications",
    security(("patient" = []), ("operator" = [])),
    responses(
        (status = 204, description = "Removed; pending deliveries cancelled"),
        (status = 400, description = "`invalid_patient_id`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`no_webhook`", body = Problem, content_type = "application/problem+json"),
    )
)]
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
