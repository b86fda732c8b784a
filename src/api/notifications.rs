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
//! Marking read and choosing where notifications go are the patient's decisions, so an
//! operator may look but not do either. An operator's look at a patient's feed is audited;
//! a patient's look at their own is not (it discloses nothing to anyone else).

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, delete, get, post, put};
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::audit;
use super::auth::Reader;
use super::error::ApiError;
use crate::audit::{AuditAction, AuditOutcome};
use crate::notify::{self, webhook};
use crate::records::dates::{format_instant, now_micros};
use crate::store::notifications::{self as rows, FeedQuery, WebhookRow};
use crate::store::write_tx;

/// Page size when `limit` is absent.
const DEFAULT_LIMIT: i64 = 50;
/// Largest honoured `limit`.
const MAX_LIMIT: i64 = 200;

fn problem(status: StatusCode, code: &'static str, msg: &str) -> ApiError {
    ApiError::new(status, code, msg.to_string())
}

/// Who may act on patient `patient_id`'s notifications.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// The patient themself or an operator.
    PatientOrOperator,
    /// The patient themself only.
    PatientOnly,
}

/// Checks the path's patient id and that `reader` may act on it.
fn authorize(reader: &Reader, patient_id: &str, allowed: Allowed) -> Result<(), ApiError> {
    if !notify::is_fhir_id(patient_id) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_patient_id",
            "the patient id must be a FHIR id",
        ));
    }
    match (&reader.only_patient, allowed) {
        (Some(own), _) if own == patient_id => Ok(()),
        (Some(_), _) => Err(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a patient reaches only their own notifications",
        )),
        (None, Allowed::PatientOrOperator) => Ok(()),
        (None, Allowed::PatientOnly) => Err(problem(
            StatusCode::FORBIDDEN,
            "patient_only",
            "only the patient may do this",
        )),
    }
}

fn bad_query(message: &str) -> ApiError {
    problem(StatusCode::BAD_REQUEST, "invalid_query", message)
}

fn unknown_notification() -> ApiError {
    problem(
        StatusCode::NOT_FOUND,
        "unknown_notification",
        "the patient has no such notification",
    )
}

fn no_webhook() -> ApiError {
    problem(
        StatusCode::NOT_FOUND,
        "no_webhook",
        "the patient has no webhook registered",
    )
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
    let patient_id = path.into_inner();
    authorize(&reader, &patient_id, Allowed::PatientOrOperator)?;
    let query = parse_feed_query(&patient_id, req.query_string())?;
    let page = FeedQuery {
        limit: query.limit + 1,
        ..query.clone()
    };
    let (mut found, unread) = state
        .store
        .run(move |conn| {
            let found = rows::feed(conn, &page)?;
            let unread = rows::unread_count(conn, &page.patient_id)?;
            Ok::<_, ApiError>((found, unread))
        })
        .await?;
    let more = found.len() as i64 > query.limit;
    found.truncate(query.limit as usize);
    let next = match found.last() {
        Some(last) if more => Some(next_link(&query, &last.id)),
        _ => None,
    };
    if reader.only_patient.is_none() {
        let mut entry = audit::entry_for(
            &reader.principal,
            AuditAction::Read,
            AuditOutcome::Success,
            audit::request_id(&req),
        );
        entry.patient_id = Some(patient_id.clone());
        entry.detail.insert("view".into(), "notifications".into());
        entry.detail.insert("count".into(), found.len().to_string());
        audit::record(&state, entry).await?;
    }
    let items: Vec<_> = found.iter().map(|row| notify::view(row, true)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({ "notifications": items, "unread": unread, "next": next })))
}

/// `POST /api/v1/patients/{id}/notifications/{nid}/read`: idempotent; keeps the first time.
#[post("/api/v1/patients/{id}/notifications/{nid}/read")]
pub async fn mark_read(
    state: Data<AppState>,
    reader: Reader,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (patient_id, nid) = path.into_inner();
    authorize(&reader, &patient_id, Allowed::PatientOnly)?;
    let nid = uuid::Uuid::parse_str(&nid)
        .map_err(|_| unknown_notification())?
        .hyphenated()
        .to_string();
    let row = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                Ok::<_, ApiError>(rows::mark_read(conn, &patient_id, &nid, now_micros())?)
            })
        })
        .await?
        .ok_or_else(unknown_notification)?;
    Ok(HttpResponse::Ok().json(notify::view(&row, true)))
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
    let patient_id = path.into_inner();
    authorize(&reader, &patient_id, Allowed::PatientOrOperator)?;
    let row = state
        .store
        .run(move |conn| Ok::<_, ApiError>(rows::webhook(conn, &patient_id)?))
        .await?
        .ok_or_else(no_webhook)?;
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
    let patient_id = path.into_inner();
    authorize(&reader, &patient_id, Allowed::PatientOnly)?;
    let url = webhook::validate_url(&body.url).map_err(|e| {
        problem(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_webhook_url",
            &e.to_string(),
        )
    })?;
    let secret =
        webhook::new_secret().map_err(|_| ApiError::internal("secret generation failed"))?;
    let row = WebhookRow {
        patient_id: patient_id.clone(),
        url,
        secret,
        created: now_micros(),
    };
    let stored = row.clone();
    let replaced = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                Ok::<_, ApiError>(rows::put_webhook(conn, &stored)?)
            })
        })
        .await?;
    tracing::info!(patient_id = %patient_id, replaced, "notification webhook registered");
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
    let patient_id = path.into_inner();
    authorize(&reader, &patient_id, Allowed::PatientOrOperator)?;
    let target = patient_id.clone();
    let removed = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                Ok::<_, ApiError>(rows::delete_webhook(conn, &target)?)
            })
        })
        .await?;
    if !removed {
        return Err(no_webhook());
    }
    tracing::info!(patient_id = %patient_id, "notification webhook removed");
    Ok(HttpResponse::NoContent().finish())
}
