//! "Delegates": the people the patient lets act for them (a parent, a guardian, a carer, a
//! holder of a power of attorney), what each may do and until when; naming one and revoking.
//!
//! Each form calls the same domain function as `/api/v1/delegations`
//! ([`crate::delegation::manage`]), so the rules are the API's: a parent or guardian only
//! for a minor, at least one action, an end in the future; every step audited and told.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::words::day;
use super::{PageError, Signed, field, fields, page, see_other};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::delegation::manage::{self, DelegationView, NewDelegation};
use crate::delegation::model::{Action, Relationship};
use crate::error::DomainError;

/// The relationships the form offers, in words.
const RELATIONSHIPS: [(&str, &str); 4] = [
    ("carer", "A carer"),
    ("power_of_attorney", "Someone holding my power of attorney"),
    ("parent", "A parent (for a child)"),
    ("guardian", "A legal guardian (for a child)"),
];

/// What a delegate may do, in words.
fn action_words(action: Action) -> &'static str {
    match action {
        Action::ReadRecords => "see my records, my summary and my own copy",
        Action::ViewAccessLog => "see who looked at my records, and my notifications",
        Action::ManageConsents => "share my records and take sharing back",
        Action::AnswerRequests => "answer requests to see my records",
        Action::SendEvidence => "send evidence and share my summary by link",
        Action::RequestAmendments => "ask for corrections of my records",
    }
}

/// A delegation as the page lists it.
struct Delegate {
    id: String,
    who: String,
    reference: String,
    may: Vec<&'static str>,
    period: String,
    active: bool,
    status: &'static str,
}

fn delegate(view: DelegationView) -> Delegate {
    let who = RELATIONSHIPS
        .iter()
        .find(|(code, _)| *code == view.relationship)
        .map_or("Someone", |(_, words)| words);
    let period = match &view.end {
        Some(end) => format!("from {} until {}", day(&view.start), day(end)),
        None => format!("from {}, with no end date", day(&view.start)),
    };
    Delegate {
        who: who.to_string(),
        may: view.actions.iter().map(|a| action_words(*a)).collect(),
        period,
        active: view.status == "active",
        status: match view.status {
            "active" => "In effect",
            "ended_at_majority" => "Ended: you came of age",
            _ => "Revoked",
        },
        reference: view.delegate,
        id: view.id,
    }
}

#[derive(Template)]
#[template(path = "web/delegates.html")]
struct DelegatesPage {
    current: &'static str,
    csrf: String,
    delegates: Vec<Delegate>,
    relationships: Vec<(&'static str, &'static str)>,
    actions: Vec<(&'static str, &'static str)>,
}

/// `GET /delegates`: the patient's delegates and the form naming one.
#[get("/delegates")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let found = manage::list(&state.gateway, &session.principal(), &session.patient).await?;
    page(
        StatusCode::OK,
        &DelegatesPage {
            current: "delegates",
            csrf: session.csrf,
            delegates: found.into_iter().map(delegate).collect(),
            relationships: RELATIONSHIPS.to_vec(),
            actions: Action::ALL
                .into_iter()
                .map(|a| (a.as_str(), action_words(a)))
                .collect(),
        },
    )
}

/// What the form asks for, as the API takes it.
fn ask_of(pairs: &[(String, String)]) -> Result<NewDelegation, DomainError> {
    let relationship = Relationship::parse(field(pairs, "relationship")).ok_or_else(|| {
        DomainError::invalid("invalid_delegation", "choose how they relate to you")
    })?;
    let actions = fields(pairs, "action")
        .into_iter()
        .map(|code| {
            Action::parse(code)
                .ok_or_else(|| DomainError::invalid("invalid_delegation", "unknown action"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let end = field(pairs, "end");
    Ok(NewDelegation {
        patient: None,
        related_person_id: None,
        name: Some(field(pairs, "name").to_string()),
        relationship,
        actions,
        start: None,
        end: (!end.is_empty()).then(|| end.to_string()),
        legal_document: None,
    })
}

/// `POST /delegates`: names a delegate.
#[post("/delegates")]
pub async fn create(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let ask = ask_of(&pairs)?;
    manage::create(
        &state.gateway,
        &signed.0.principal(),
        ask,
        &request_id(&req),
    )
    .await?;
    Ok(see_other("/delegates").finish())
}

/// `POST /delegates/{id}/revoke`: the delegate's very next request is refused.
#[post("/delegates/{id}/revoke")]
pub async fn revoke(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, _) = Signed::posted(&state, &req, &body).await?;
    manage::revoke(
        &state.gateway,
        &signed.0.principal(),
        &id,
        &request_id(&req),
    )
    .await?;
    Ok(see_other("/delegates").finish())
}
