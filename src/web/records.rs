//! "My records": the patient's own copy and their corrections, on the page.
//!
//! - The records the gateway holds for them, newest first ([`crate::release::direct::everything`],
//!   audited as their own access like `$everything`), each with "Report a mistake", and the
//!   whole copy as a download (a FHIR `collection` Bundle).
//! - The corrections they asked for ([`crate::amendment::list`]): status, due date, overdue,
//!   the answer; after a denial, the statement of disagreement ([`crate::amendment::dispute`]).
//!
//! Each form calls the same domain function as `POST /api/v1/amendments` and its
//! `/disagreement`, so the page adds no rule of its own.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;
use serde_json::{Value, json};

use super::words::day;
use super::{PageError, Signed, field, page, secure, see_other};
use crate::amendment::dispute::{self, NewStatement};
use crate::amendment::{self, AmendmentView, NewAmendment};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::fhir_time::{format_instant, now_micros};
use crate::release::direct;
use crate::sharing::preview::{RecordLine, describe};

/// Most records the page lists; the download holds them all.
const LISTED: usize = 300;

/// A correction as the page shows it.
struct Correction {
    id: String,
    record: String,
    what_is_wrong: String,
    proposed: String,
    asked: String,
    status: String,
    due: String,
    overdue: bool,
    reason: Option<String>,
    may_disagree: bool,
    disagreed: bool,
}

#[derive(Template)]
#[template(path = "web/records.html")]
struct RecordsPage {
    current: &'static str,
    csrf: String,
    records: Vec<RecordLine>,
    more: usize,
    corrections: Vec<Correction>,
}

#[derive(Template)]
#[template(path = "web/correct.html")]
struct CorrectPage {
    current: &'static str,
    csrf: String,
    record: RecordLine,
}

/// The status of a request in words.
fn status_words(view: &AmendmentView) -> String {
    match view.status.as_str() {
        "pending" if view.extended_at.is_some() => {
            "Waiting for an answer (the deadline was extended)"
        }
        "pending" => "Waiting for an answer",
        "accepted" => "Corrected",
        "denied" => "Refused",
        _ => "Closed",
    }
    .to_string()
}

fn correction(view: AmendmentView) -> Correction {
    // `Type/id/_history/n`: the page names the record, not its version.
    let record = view
        .record
        .split("/_history")
        .next()
        .unwrap_or_default()
        .to_string();
    Correction {
        status: status_words(&view),
        may_disagree: view.status == "denied" && view.statement.is_none(),
        disagreed: view.statement.is_some(),
        reason: view.denial_reason.or(view.extension_reason),
        id: view.id,
        record,
        what_is_wrong: view.what_is_wrong,
        proposed: view.proposed_correction,
        asked: day(&view.created),
        due: day(&view.due),
        overdue: view.overdue,
    }
}

/// The signed-in patient's own records, newest first.
async fn own_records(
    state: &AppState,
    signed: &Signed,
    req: &HttpRequest,
) -> Result<Vec<Value>, PageError> {
    let patient = signed.0.patient.clone();
    let principal = signed.0.principal();
    Ok(direct::everything(state, &principal, &request_id(req), &patient).await?)
}

/// `GET /records`: the records and the corrections.
#[get("/records")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let signed = Signed::of(&state, &req).await?;
    let resources = own_records(&state, &signed, &req).await?;
    let mut records: Vec<RecordLine> = resources.iter().map(describe).collect();
    records.sort_by(|a, b| b.date.cmp(&a.date));
    let more = records.len().saturating_sub(LISTED);
    records.truncate(LISTED);
    for r in &mut records {
        r.date = r.date.as_deref().map(day);
    }
    let asked = amendment::list(&state.gateway, &signed.0.principal(), false).await?;
    page(
        StatusCode::OK,
        &RecordsPage {
            current: "records",
            csrf: signed.0.csrf.clone(),
            records,
            more,
            corrections: asked.into_iter().map(correction).collect(),
        },
    )
}

/// `GET /records/download`: the patient's own copy as one FHIR `collection` Bundle.
#[get("/records/download")]
pub async fn download(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let signed = Signed::of(&state, &req).await?;
    let resources = own_records(&state, &signed, &req).await?;
    let base = state.fhir_base();
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "collection",
        "timestamp": format_instant(now_micros()),
        "entry": resources.into_iter().map(|r| {
            let url = format!("{base}/{}/{}", r["resourceType"].as_str().unwrap_or_default(), r["id"].as_str().unwrap_or_default());
            json!({"fullUrl": url, "resource": r})
        }).collect::<Vec<_>>(),
    });
    Ok(secure(&mut HttpResponse::Ok())
        .content_type("application/fhir+json")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"my-records.json\"",
        ))
        .body(bundle.to_string()))
}

/// `GET /records/{type}/{id}/correct`: the form asking for a correction of one record.
#[get("/records/{type}/{id}/correct")]
pub async fn correct_form(
    state: Data<AppState>,
    req: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, PageError> {
    let signed = Signed::of(&state, &req).await?;
    let (ty, id) = path.into_inner();
    let principal = signed.0.principal();
    // Read as the patient: another patient's record, or a missing one, is the same 404.
    let resource = direct::read(&state, &principal, &request_id(&req), &ty, &id).await?;
    page(
        StatusCode::OK,
        &CorrectPage {
            current: "records",
            csrf: signed.0.csrf.clone(),
            record: describe(&resource),
        },
    )
}

/// `POST /records/{type}/{id}/correct`: files the request.
#[post("/records/{type}/{id}/correct")]
pub async fn correct(
    state: Data<AppState>,
    req: HttpRequest,
    path: Path<(String, String)>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let (ty, id) = path.into_inner();
    let ask = NewAmendment {
        record: format!("{ty}/{id}"),
        what_is_wrong: field(&pairs, "what_is_wrong").to_string(),
        proposed_correction: field(&pairs, "proposed_correction").to_string(),
    };
    amendment::file(
        &state.gateway,
        &signed.0.principal(),
        ask,
        &request_id(&req),
    )
    .await?;
    Ok(see_other("/records#corrections").finish())
}

/// `POST /records/corrections/{id}/disagreement`: the statement of disagreement.
#[post("/records/corrections/{id}/disagreement")]
pub async fn disagree(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let ask = NewStatement {
        statement: field(&pairs, "statement").to_string(),
    };
    dispute::file(
        &state.gateway,
        &signed.0.principal(),
        &id,
        ask,
        &request_id(&req),
    )
    .await?;
    Ok(see_other("/records#corrections").finish())
}
