//! "Requests": access requests waiting for the patient. Approve opens the share form
//! answering the request (what was asked for is fixed; the patient chooses until when and
//! sees the decision preview first); Decline answers at once.
//!
//! Approving stores the consent through [`crate::access_request::decide::approve`], so the
//! consent and the request's new status commit together, exactly as through the API.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::words::{day, purpose_words};
use super::{PageError, Signed, page, see_other};
use crate::access_request::decide;
use crate::access_request::model::AccessRequest;
use crate::access_request::read::{self, ListQuery};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::sign_in::session::Session;
use crate::store::access_requests::RequestStatus;

/// Most pending requests the page lists.
const LISTED: i64 = 50;

/// A request as the page shows it.
pub struct Asked {
    /// The request id.
    pub id: String,
    /// Who asks, for what, in words.
    pub sentence: String,
    /// Why, in the recipient's words.
    pub reason: String,
}

/// What `request` asks for, in words.
pub fn asked(request: &AccessRequest) -> Asked {
    let who = if request.requester.organization.is_empty() {
        request.requester.name.clone()
    } else {
        format!(
            "{} ({})",
            request.requester.organization, request.requester.name
        )
    };
    let mut sentence = format!(
        "{who} asks to see your {} for {}",
        request.data_classes.join(", "),
        purpose_words(&request.purpose).to_lowercase()
    );
    if let Some(from) = &request.period.0 {
        sentence.push_str(&format!(", dated from {}", day(from)));
    }
    if let Some(to) = &request.period.1 {
        sentence.push_str(&format!(", dated up to {}", day(to)));
    }
    sentence.push('.');
    Asked {
        id: request.id.clone(),
        sentence,
        reason: request.reason.clone(),
    }
}

#[derive(Template)]
#[template(path = "web/requests.html")]
struct RequestsPage {
    current: &'static str,
    csrf: String,
    requests: Vec<Asked>,
}

/// The pending request `id` of the signed-in patient.
pub async fn pending(
    state: &AppState,
    session: &Session,
    id: &str,
    rid: &str,
) -> Result<AccessRequest, PageError> {
    let (request, _) = read::show(state, &session.principal(), id, rid).await?;
    if request.status != RequestStatus::Pending {
        return Err(crate::error::DomainError::conflict(
            "already_decided",
            "this request has already been answered",
        )
        .into());
    }
    Ok(request)
}

/// `GET /requests`: pending access requests.
#[get("/requests")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let query = ListQuery {
        patient: Some(session.patient.clone()),
        status: Some(RequestStatus::Pending),
        before: None,
        limit: LISTED,
    };
    let found = read::list(&state, &session.principal(), &query, &request_id(&req)).await?;
    page(
        StatusCode::OK,
        &RequestsPage {
            current: "requests",
            csrf: session.csrf,
            requests: found.requests.iter().map(asked).collect(),
        },
    )
}

/// `POST /requests/{id}/decline`.
#[post("/requests/{id}/decline")]
pub async fn decline(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, _) = Signed::posted(&state, &req, &body).await?;
    decide::decline(&state, &signed.0.principal(), &id, &request_id(&req)).await?;
    Ok(see_other("/requests").finish())
}
