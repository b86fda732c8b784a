//! "Notifications": the patient's feed ([`crate::notify::inbox::feed`]) in words, newest
//! first, with "Mark as read", and the webhook setting (where else notifications go).
//! The webhook's signing secret is shown once, on the page that registers it.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;
use serde_json::Value;

use super::words::purpose_words;
use super::{PageError, Signed, field, page, see_other};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::error::ErrorKind;
use crate::notify::inbox;
use crate::store::notifications::FeedQuery;

/// Most notifications the page lists.
const LISTED: i64 = 50;

struct Notice {
    id: String,
    sentence: String,
    created: String,
    unread: bool,
    break_glass: bool,
}

#[derive(Template)]
#[template(path = "web/notifications.html")]
struct NotificationsPage {
    current: &'static str,
    csrf: String,
    notices: Vec<Notice>,
    unread: i64,
    webhook: Option<String>,
    new_secret: Option<String>,
}

/// A notification in words, from its summary; `names` maps client ids to the names a
/// person knows.
fn sentence(item: &Value, names: &BTreeMap<String, String>) -> String {
    let s = &item["summary"];
    match item["kind"].as_str() {
        Some("access_request") => {
            "Someone asked to see your records. Answer on the Requests page.".to_string()
        }
        Some("share_link") => match s["step"].as_str() {
            Some("created") => "A link to your health summary was made.".to_string(),
            Some("deactivated") => "A link to your health summary was deactivated.".to_string(),
            Some("locked") => {
                "A link to your health summary was locked after too many wrong passcodes."
                    .to_string()
            }
            _ => format!(
                "Someone opened a link to your health summary ({} records). See Who looked.",
                s["resource_count"].as_u64().unwrap_or(0)
            ),
        },
        _ => {
            let client = s["client_id"].as_str().unwrap_or_default();
            let who = names
                .get(client)
                .map(String::as_str)
                .or(s["organisation"].as_str().filter(|o| !o.is_empty()))
                .unwrap_or("A recipient");
            let types: Vec<&str> = s["resource_types"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            let mut text = format!(
                "{who} received {} of your records ({}) for {}.",
                s["resource_count"].as_u64().unwrap_or(0),
                types.join(", "),
                purpose_words(s["purpose_of_use"].as_str().unwrap_or_default()).to_lowercase()
            );
            if s["break_glass"] == true {
                text.insert_str(0, "Emergency access: ");
            }
            text
        }
    }
}

async fn render(
    state: &Data<AppState>,
    req: &HttpRequest,
    new_secret: Option<String>,
) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(state, req).await?;
    let principal = session.principal();
    let query = FeedQuery {
        patient_id: session.patient.to_string(),
        unread_only: false,
        before: None,
        limit: LISTED,
    };
    let found = inbox::feed(
        state,
        &principal,
        &request_id(req),
        &session.patient,
        &query,
    )
    .await?;
    let registered = match inbox::webhook(state, &principal, &session.patient).await {
        Ok(row) => Some(row.url),
        Err(e) if e.kind == ErrorKind::NotFound => None,
        Err(e) => return Err(e.into()),
    };
    let names: BTreeMap<String, String> = super::sharing::directory(state)
        .await?
        .into_iter()
        .map(|c| (c.id, format!("{} ({})", c.organization, c.name)))
        .collect();
    page(
        StatusCode::OK,
        &NotificationsPage {
            current: "notifications",
            csrf: session.csrf,
            notices: found
                .items
                .iter()
                .map(|item| Notice {
                    id: item["id"].as_str().unwrap_or_default().to_string(),
                    sentence: sentence(item, &names),
                    created: item["created"]
                        .as_str()
                        .unwrap_or_default()
                        .replace('T', " "),
                    unread: item["read_at"].is_null(),
                    break_glass: item["summary"]["break_glass"] == true,
                })
                .collect(),
            unread: found.unread,
            webhook: registered,
            new_secret,
        },
    )
}

/// `GET /notifications`.
#[get("/notifications")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    render(&state, &req, None).await
}

/// `POST /notifications/{id}/read`.
#[post("/notifications/{id}/read")]
pub async fn mark_read(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, _) = Signed::posted(&state, &req, &body).await?;
    inbox::mark_read(&state, &signed.0.principal(), &signed.0.patient, &id).await?;
    Ok(see_other("/notifications").finish())
}

/// `POST /notifications/webhook`: registers (or, with `remove`, removes) the webhook.
#[post("/notifications/webhook")]
pub async fn webhook(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let (principal, patient) = (signed.0.principal(), signed.0.patient.clone());
    if !field(&pairs, "remove").is_empty() {
        inbox::delete_webhook(&state, &principal, &patient).await?;
        return Ok(see_other("/notifications").finish());
    }
    let (row, _) = inbox::put_webhook(&state, &principal, &patient, field(&pairs, "url")).await?;
    render(&state, &req, Some(row.secret)).await
}
