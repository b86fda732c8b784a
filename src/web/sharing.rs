//! "My sharing" and "Share": the patient's consents in plain words with a Revoke button, and
//! the guided grant. The share form posts to a preview (the decision engine's answer over
//! the patient's own records, [`crate::sharing::preview::share`]) that carries the choices
//! on to the confirming post; only that post stores a consent
//! ([`crate::sharing::consents::grant`]).

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::requests;
use super::words::{self, CATEGORIES, category_name, category_system};
use super::{PageError, Signed, field, fields, form, page, query, see_other};
use crate::access_request::decide;
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::auth::clients::Client;
use crate::auth::registry;
use crate::consent::Coding;
use crate::consent::grant::{Basis, Grant};
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::sharing::consents::{self, ConsentFilter, WriteError};
use crate::sharing::preview;
use crate::sign_in::session::Session;
use crate::store::identity;

/// The purposes the form offers.
pub(super) const PURPOSES: &[&str] = &["TREAT", "ETREAT", "HPAYMT", "HRESCH", "CAREMGT", "PATRQT"];
/// The kinds of record the form offers, and their names.
pub(super) const KINDS: &[(&str, &str)] = &[
    ("Condition", "Conditions and diagnoses"),
    ("Observation", "Test results and measurements"),
    ("MedicationRequest", "Prescriptions"),
    ("Immunization", "Vaccinations"),
    ("AllergyIntolerance", "Allergies"),
    ("Procedure", "Procedures"),
    ("DiagnosticReport", "Reports"),
    ("Encounter", "Visits"),
];

#[derive(Template)]
#[template(path = "web/sharing.html")]
struct SharingPage {
    current: &'static str,
    csrf: String,
    consents: Vec<words::ConsentLine>,
}

struct Pick {
    code: String,
    words: String,
    chosen: bool,
}

struct Recipient {
    id: String,
    name: String,
    organization: String,
    chosen: bool,
}

struct Sensitive {
    code: &'static str,
    words: &'static str,
    hint: &'static str,
    chosen: bool,
}

#[derive(Template)]
#[template(path = "web/share.html")]
struct SharePage {
    current: &'static str,
    csrf: String,
    search: String,
    recipients: Vec<Recipient>,
    purposes: Vec<Pick>,
    kinds: Vec<Pick>,
    sensitive: Vec<Sensitive>,
    from: String,
    to: String,
    until: String,
    /// When answering an access request: what it asks for, in words.
    answering: Option<String>,
    /// The request answered, or empty.
    request: String,
}

#[derive(Template)]
#[template(path = "web/preview.html")]
struct PreviewPage {
    current: &'static str,
    csrf: String,
    sentence: String,
    summary: String,
    visible: Vec<String>,
    hidden: Vec<String>,
    notes: Vec<String>,
    carried: Vec<(String, String)>,
    change: String,
}

/// Every active client the patient may pick, by organisation.
pub(super) async fn directory(state: &AppState) -> Result<Vec<Client>, DomainError> {
    let rows = state.store.run(identity::list_clients).await?;
    let mut clients = rows
        .into_iter()
        .map(registry::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    clients.sort_by(|a, b| (&a.organization, &a.name).cmp(&(&b.organization, &b.name)));
    Ok(clients)
}

fn names_of(clients: &[Client]) -> BTreeMap<String, String> {
    clients
        .iter()
        .map(|c| {
            let known = if c.organization.is_empty() {
                c.name.clone()
            } else {
                c.organization.clone()
            };
            (format!("Device/{}", c.id), known)
        })
        .collect()
}

/// `GET /sharing`: the patient's consents.
#[get("/sharing")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let stored = consents::search(
        &state,
        &session.principal(),
        &session.patient,
        &ConsentFilter::default(),
    )
    .await?;
    let names = names_of(&directory(&state).await?);
    let mut lines: Vec<words::ConsentLine> = stored
        .iter()
        .map(|c| words::describe(c, &names, state.purposes.hierarchy()))
        .collect();
    // In effect first; then by id (time-ordered ids: newest last).
    lines.sort_by_key(|l| !l.revocable);
    page(
        StatusCode::OK,
        &SharingPage {
            current: "sharing",
            csrf: session.csrf,
            consents: lines,
        },
    )
}

/// `POST /sharing/{id}/revoke`: takes a consent back at once.
#[post("/sharing/{id}/revoke")]
pub async fn revoke(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, _) = Signed::posted(&state, &req, &body).await?;
    consents::revoke(&state, &signed.0.principal(), &request_id(&req), &id).await?;
    Ok(see_other("/sharing").finish())
}

/// The form's choices, echoed back into a form or carried through the preview.
fn share_page(
    clients: &[Client],
    csrf: String,
    search: &str,
    pairs: &[(String, String)],
) -> SharePage {
    let needle = search.to_lowercase();
    let chosen_kinds = fields(pairs, "kind");
    let chosen_sensitive = fields(pairs, "sensitive");
    let purpose = field(pairs, "purpose");
    SharePage {
        current: "share",
        csrf,
        search: search.to_string(),
        recipients: clients
            .iter()
            .filter(|c| needle.is_empty() || c.organization.to_lowercase().contains(&needle))
            .map(|c| Recipient {
                id: c.id.clone(),
                name: c.name.clone(),
                organization: c.organization.clone(),
                chosen: field(pairs, "recipient") == c.id,
            })
            .collect(),
        purposes: PURPOSES
            .iter()
            .map(|code| Pick {
                code: code.to_string(),
                words: words::purpose_words(code),
                chosen: purpose == *code,
            })
            .collect(),
        kinds: KINDS
            .iter()
            .map(|(code, name)| Pick {
                code: code.to_string(),
                words: name.to_string(),
                chosen: chosen_kinds.contains(code),
            })
            .collect(),
        sensitive: CATEGORIES
            .iter()
            .map(|(code, name, hint)| Sensitive {
                code,
                words: name,
                hint,
                chosen: chosen_sensitive.contains(code),
            })
            .collect(),
        from: field(pairs, "from").to_string(),
        to: field(pairs, "to").to_string(),
        until: field(pairs, "until").to_string(),
        answering: None,
        request: String::new(),
    }
}

/// `GET /share?q=&recipient=&purpose=...`: the guided form (prefilled from the query).
#[get("/share")]
pub async fn form_page(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let pairs = query(&req);
    let clients = directory(&state).await?;
    let request = field(&pairs, "request");
    let answering = if request.is_empty() {
        None
    } else {
        let asked = requests::pending(&state, &session, request, &request_id(&req)).await?;
        Some(requests::asked(&asked).sentence)
    };
    let mut shown = share_page(&clients, session.csrf, field(&pairs, "q"), &pairs);
    shown.answering = answering;
    shown.request = request.to_string();
    page(StatusCode::OK, &shown)
}

/// The grant the form describes: the patient's choices, or, answering an access request,
/// exactly what the approval will store ([`decide::grant_for`]) with the chosen end.
async fn proposed(
    state: &AppState,
    session: &Session,
    pairs: &[(String, String)],
    rid: &str,
) -> Result<Grant, PageError> {
    let request = field(pairs, "request");
    if request.is_empty() {
        return Ok(grant_of(session.patient.as_str(), pairs)?);
    }
    let asked = requests::pending(state, session, request, rid).await?;
    let until = date_or_none(pairs, "until")?;
    Ok(decide::grant_for(
        &asked,
        &session.patient,
        "preview",
        now_micros(),
        until.as_deref(),
    ))
}

fn date_or_none(pairs: &[(String, String)], name: &str) -> Result<Option<String>, DomainError> {
    let value = field(pairs, name).trim();
    if value.is_empty() {
        return Ok(None);
    }
    let ok = value.len() == 10
        && value.bytes().enumerate().all(|(i, b)| match i {
            4 | 7 => b == b'-',
            _ => b.is_ascii_digit(),
        });
    if ok {
        Ok(Some(value.to_string()))
    } else {
        Err(DomainError::invalid(
            "invalid_date",
            "write dates as YYYY-MM-DD",
        ))
    }
}

/// The grant the form's choices describe.
fn grant_of(patient: &str, pairs: &[(String, String)]) -> Result<Grant, DomainError> {
    let recipient = field(pairs, "recipient");
    if recipient.is_empty() {
        return Err(DomainError::invalid(
            "no_recipient",
            "pick who may see your records",
        ));
    }
    let purpose = field(pairs, "purpose");
    if !PURPOSES.contains(&purpose) {
        return Err(DomainError::invalid(
            "unknown_purpose",
            "pick what the sharing is for",
        ));
    }
    let classes = fields(pairs, "kind")
        .into_iter()
        .map(|k| {
            KINDS
                .iter()
                .find(|(code, _)| *code == k)
                .map(|(code, _)| code.to_string())
                .ok_or_else(|| DomainError::invalid("unknown_kind", "pick kinds from the list"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let shared_labels = fields(pairs, "sensitive")
        .into_iter()
        .map(|code| {
            category_system(code)
                .map(|system| Coding::new(system, code))
                .ok_or_else(|| {
                    DomainError::invalid("unknown_category", "pick categories from the list")
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Grant {
        id: "new".into(),
        patient: patient.to_string(),
        recipient: format!("Device/{recipient}"),
        purpose: purpose.to_string(),
        action: None,
        classes,
        instances: Vec::new(),
        data_period: (date_or_none(pairs, "from")?, date_or_none(pairs, "to")?),
        shared_labels,
        start: now_micros(),
        end: date_or_none(pairs, "until")?,
        basis: Basis::OptIn,
        identifier: None,
    })
}

/// The choices to carry from the preview to the confirming post.
fn carried(pairs: &[(String, String)]) -> Vec<(String, String)> {
    const CHOICES: [&str; 8] = [
        "request",
        "recipient",
        "purpose",
        "kind",
        "from",
        "to",
        "sensitive",
        "until",
    ];
    pairs
        .iter()
        .filter(|(name, _)| CHOICES.contains(&name.as_str()))
        .cloned()
        .collect()
}

/// `POST /share/preview`: what the grant would let them see, before confirming.
#[post("/share/preview")]
pub async fn preview_page(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let pairs = form(&body)?;
    Signed(session.clone()).check(&pairs)?;
    let rid = request_id(&req);
    let grant = proposed(&state, &session, &pairs, &rid).await?;
    let shown = preview::share(&state, &session.principal(), &rid, &grant).await?;
    let names = names_of(&directory(&state).await?);
    let line = words::describe(&grant.to_fhir(), &names, state.purposes.hierarchy());
    let summary = format!(
        "They will see {} of your {} records; {}",
        shown.visible_count(),
        shown.total,
        stay_hidden(shown.hidden_count(), "sensitive")
    );
    let hidden = shown
        .hidden_sensitive
        .iter()
        .map(|(code, n)| stay_hidden(*n, category_name(code)))
        .collect();
    let mut notes = Vec::new();
    if shown.deidentified {
        notes.push("What they see has names, addresses and dates removed first.".into());
    }
    if shown.minimum_necessary {
        notes.push("They see only the minimum needed for the purpose.".into());
    }
    if shown.not_covered > 0 {
        notes.push(format!(
            "{} other records are outside this sharing.",
            shown.not_covered
        ));
    }
    let carried = carried(&pairs);
    let change = format!(
        "/share?{}",
        form_urlencoded::Serializer::new(String::new())
            .extend_pairs(carried.iter())
            .finish()
    );
    page(
        StatusCode::OK,
        &PreviewPage {
            current: "share",
            csrf: session.csrf,
            sentence: line.sentence,
            summary,
            visible: shown
                .visible
                .iter()
                .map(|(ty, n)| format!("{n} × {ty}"))
                .collect(),
            hidden,
            notes,
            carried,
            change,
        },
    )
}

/// `POST /share`: stores the grant the patient confirmed.
#[post("/share")]
pub async fn confirm(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let session = signed.0;
    let rid = request_id(&req);
    let request = field(&pairs, "request");
    if !request.is_empty() {
        let until = date_or_none(&pairs, "until")?;
        decide::approve(
            &state,
            &session.principal(),
            request,
            until.as_deref(),
            &rid,
        )
        .await?;
        return Ok(see_other("/sharing").finish());
    }
    let grant = grant_of(session.patient.as_str(), &pairs)?;
    consents::grant(&state, &session.principal(), &rid, grant.to_fhir())
        .await
        .map_err(|e| match e {
            WriteError::Failed(e) => e,
            WriteError::Defects(_) => DomainError::unprocessable(
                "invalid_share",
                "these choices do not make a valid consent",
            ),
        })?;
    Ok(see_other("/sharing").finish())
}

/// "1 HIV status record stays hidden.", "6 mental health records stay hidden."
fn stay_hidden(n: usize, kind: &str) -> String {
    if n == 1 {
        format!("1 {kind} record stays hidden.")
    } else {
        format!("{n} {kind} records stay hidden.")
    }
}
