//! "Send evidence": a disclosure package ([`crate::disclosure::create`]) built from a form:
//! recipient, purpose, which records (kinds and a start date), until when, how many fetches.
//! The patient first sees the list of records that will leave
//! ([`crate::sharing::preview::evidence`]), then confirms; the page lists every package
//! with when each fetch happened ([`crate::disclosure::list`]).

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::sharing::{KINDS, PURPOSES, directory};
use super::words::{CATEGORIES, day, purpose_words};
use super::{PageError, Signed, field, fields, page, see_other};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::disclosure::{Filter, NewDisclosure, Selection, Status};
use crate::error::DomainError;
use crate::sharing::preview::{self, RecordLine};

/// The authorization a package sent from the page names: the patient's own request here.
const PAGE_AUTHORIZATION: &str = "urn:consentgate:patient-page:send-evidence";

struct Sent {
    who: String,
    purpose: String,
    status: &'static str,
    expires: String,
    count: usize,
    fetches: Vec<String>,
    allowed: i64,
}

struct Choice {
    value: String,
    words: String,
}

#[derive(Template)]
#[template(path = "web/evidence.html")]
struct EvidencePage {
    current: &'static str,
    csrf: String,
    recipients: Vec<Choice>,
    purposes: Vec<Choice>,
    kinds: Vec<Choice>,
    sensitive: Vec<(&'static str, &'static str, &'static str)>,
    sent: Vec<Sent>,
}

#[derive(Template)]
#[template(path = "web/evidence_preview.html")]
struct EvidencePreviewPage {
    current: &'static str,
    csrf: String,
    leaving: Vec<RecordLine>,
    withheld: usize,
    carried: Vec<(String, String)>,
}

/// `GET /evidence`: the form and the packages sent.
#[get("/evidence")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    let packages = crate::disclosure::list(&state, &session.patient).await?;
    let sent = packages
        .into_iter()
        .map(|p| Sent {
            who: match (&p.recipient.organization, &p.recipient.name) {
                (Some(org), Some(name)) => format!("{org} ({name})"),
                _ => p.recipient.id.clone(),
            },
            purpose: purpose_words(&p.purpose).to_lowercase(),
            status: match p.status {
                Status::Active => "Can still be fetched",
                Status::Expired => "Expired",
                Status::Exhausted => "Fetched as often as allowed",
                Status::Revoked => "Taken back",
            },
            expires: day(&p.expires),
            count: p.resources.as_array().map_or(0, Vec::len),
            fetches: p.retrievals.iter().map(|t| t.replace('T', " ")).collect(),
            allowed: p.max_retrievals,
        })
        .collect();
    let recipients = directory(&state)
        .await?
        .into_iter()
        .map(|c| Choice {
            words: format!("{} ({})", c.organization, c.name),
            value: c.id,
        })
        .collect();
    page(
        StatusCode::OK,
        &EvidencePage {
            current: "evidence",
            csrf: session.csrf,
            recipients,
            purposes: PURPOSES
                .iter()
                .map(|p| Choice {
                    value: p.to_string(),
                    words: purpose_words(p),
                })
                .collect(),
            kinds: KINDS
                .iter()
                .map(|(code, words)| Choice {
                    value: code.to_string(),
                    words: words.to_string(),
                })
                .collect(),
            sensitive: CATEGORIES.to_vec(),
            sent,
        },
    )
}

/// The package the form describes.
fn ask_of(pairs: &[(String, String)]) -> Result<NewDisclosure, DomainError> {
    let until = field(pairs, "until");
    if until.len() != 10 {
        return Err(DomainError::invalid(
            "invalid_expires",
            "choose the last day they may fetch it",
        ));
    }
    let types: Vec<String> = fields(pairs, "kind")
        .into_iter()
        .map(str::to_string)
        .collect();
    if types.is_empty() {
        return Err(DomainError::invalid(
            "no_kinds",
            "tick at least one kind of record",
        ));
    }
    let since = Some(field(pairs, "since").to_string()).filter(|s| !s.is_empty());
    // Sensitive categories stay out unless ticked.
    let shared = fields(pairs, "sensitive");
    let exclude_labels = CATEGORIES
        .iter()
        .filter(|(code, _, _)| !shared.contains(code))
        .map(|(code, _, _)| code.to_string())
        .collect();
    Ok(NewDisclosure {
        patient: None,
        recipient: field(pairs, "recipient").to_string(),
        purpose: field(pairs, "purpose").to_string(),
        policy: PAGE_AUTHORIZATION.to_string(),
        selection: Selection {
            resources: None,
            filter: Some(Filter {
                types,
                since,
                exclude_labels,
            }),
        },
        expires: format!("{until}T23:59:59Z"),
        max_retrievals: field(pairs, "fetches").parse().map_err(|_| {
            DomainError::invalid(
                "invalid_retrievals",
                "how many fetches: a number from 1 to 100",
            )
        })?,
    })
}

const CHOICES: [&str; 7] = [
    "recipient",
    "purpose",
    "kind",
    "sensitive",
    "since",
    "until",
    "fetches",
];

/// `POST /evidence/preview`: the records that will leave.
#[post("/evidence/preview")]
pub async fn preview_page(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let session = signed.0;
    let shown = preview::evidence(
        &state,
        &session.principal(),
        &request_id(&req),
        &session.patient,
        ask_of(&pairs)?,
    )
    .await?;
    page(
        StatusCode::OK,
        &EvidencePreviewPage {
            current: "evidence",
            csrf: session.csrf,
            leaving: shown.leaving,
            withheld: shown.withheld.len(),
            carried: pairs
                .into_iter()
                .filter(|(k, _)| CHOICES.contains(&k.as_str()))
                .collect(),
        },
    )
}

/// `POST /evidence`: creates the package.
#[post("/evidence")]
pub async fn send(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let session = signed.0;
    crate::disclosure::create(
        &state,
        &session.principal(),
        &request_id(&req),
        &session.patient,
        ask_of(&pairs)?,
    )
    .await?;
    Ok(see_other("/evidence").finish())
}
