//! "Who looked": the patient's access log ([`crate::accounting::access_log`]), newest
//! first, filterable by recipient and date, break-glass entries highlighted, with a CSV
//! download of the same page.
//!
//! Each entry's inclusion in the signed log is checked here, on the server, and the page
//! says so in those words: the checkpoint note's Ed25519 signature against the gateway's
//! verifier key, then the RFC 9162 inclusion proof of the entry's leaf hash up to the
//! checkpoint's root. A check by the gateway of its own log proves less than one the
//! patient runs; the page links the checkpoint, the verifier key and each proof, and the
//! CSV carries what `consentgate audit verify` (or any RFC 9162 verifier) needs.

use actix_web::http::StatusCode;
use actix_web::http::header;
use actix_web::web::Data;
use actix_web::{HttpRequest, HttpResponse, get};
use askama::Template;
use serde_json::Value;

use super::words::purpose_words;
use super::{PageError, Signed, page, secure};
use crate::accounting::{self, AccessLog};
use crate::api::AppState;
use crate::audit::stored;
use crate::audit::{Hash, NoteVerifier, leaf_hash, verify_inclusion, verify_note};
use crate::error::DomainError;

/// One entry as the page shows it.
struct Line {
    date: String,
    who: String,
    what: String,
    purpose: String,
    break_glass: Option<String>,
    verified: bool,
    proof_url: String,
}

#[derive(Template)]
#[template(path = "web/looked.html")]
struct LookedPage {
    current: &'static str,
    csrf: String,
    lines: Vec<Line>,
    recipients: Vec<(String, String, bool)>,
    since: String,
    until: String,
    csv: String,
    checkpoint_size: Option<i64>,
}

/// The filter fields that are filled in, as a query string for the access log.
fn filters(req: &HttpRequest) -> Vec<(String, String)> {
    super::query(req)
        .into_iter()
        .filter(|(k, v)| matches!(k.as_str(), "recipient" | "since" | "until") && !v.is_empty())
        .collect()
}

fn encoded(pairs: &[(String, String)]) -> String {
    form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs.iter())
        .finish()
}

async fn log_of(
    state: &Data<AppState>,
    req: &HttpRequest,
) -> Result<(Signed, AccessLog, Vec<(String, String)>), PageError> {
    let signed = Signed::of(state, req).await?;
    let pairs = filters(req);
    let query = accounting::parse_log_query(&encoded(&pairs), &state.settings.limits)?;
    let log = accounting::access_log(&state.gateway, &signed.0.patient, &query).await?;
    Ok((signed, log, pairs))
}

/// Which entries (leaf index, canonical bytes) are in the log under the signed checkpoint
/// `note`: the signature first, then each inclusion proof against its root.
async fn verified(
    state: &AppState,
    note: &str,
    leaves: Vec<(u64, String)>,
) -> Result<Vec<bool>, DomainError> {
    let verifier = NoteVerifier::from_vkey(&state.checkpoints.verifier_key())
        .map_err(|e| DomainError::internal(format!("the verifier key: {e}")))?;
    let Ok(checkpoint) = verify_note(note, &verifier) else {
        return Ok(vec![false; leaves.len()]);
    };
    let (size, root): (u64, Hash) = (checkpoint.size(), *checkpoint.root());
    state
        .store
        .run(move |conn| {
            leaves
                .iter()
                .map(|(index, body)| {
                    if *index >= size {
                        return Ok(false);
                    }
                    let proof = stored::inclusion(conn, *index, size)?;
                    Ok(verify_inclusion(
                        &leaf_hash(body.as_bytes()),
                        *index,
                        size,
                        &proof,
                        &root,
                    ))
                })
                .collect::<Result<Vec<_>, DomainError>>()
        })
        .await
}

fn line(entry: &Value, verified: bool) -> Line {
    let r = &entry["recipient"];
    let who = match (r["organisation"].as_str(), r["client_name"].as_str()) {
        (Some(org), Some(name)) if !org.is_empty() => format!("{org} ({name})"),
        (_, Some(name)) => name.to_string(),
        _ if r["kind"] == "operator" => "The gateway's operators".to_string(),
        _ if r["kind"] == "share_link" => format!(
            "“{}”, through a link to your health summary",
            r["named"].as_str().unwrap_or_default()
        ),
        _ => r["client_id"].as_str().unwrap_or_default().to_string(),
    };
    let what = entry["disclosed"]["resource_types"]
        .as_object()
        .map(|types| {
            types
                .iter()
                .map(|(ty, n)| format!("{n} × {ty}"))
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    Line {
        date: entry["date"].as_str().unwrap_or_default().replace('T', " "),
        who,
        what: format!("{}: {what}", entry["action"].as_str().unwrap_or_default()),
        purpose: purpose_words(entry["purpose_of_use"].as_str().unwrap_or_default()),
        break_glass: (entry["break_glass"] == true).then(|| {
            entry["justification"]
                .as_str()
                .unwrap_or_default()
                .to_string()
        }),
        verified,
        proof_url: entry["inclusion"]["proof_url"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    }
}

/// `GET /looked?recipient=&since=&until=`: the access log.
#[get("/looked")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let (Signed(session), log, pairs) = log_of(&state, &req).await?;
    let json = log.to_json();
    let entries = json["disclosures"].as_array().cloned().unwrap_or_default();
    let leaves = entries
        .iter()
        .map(|e| {
            (
                e["inclusion"]["leaf_index"].as_u64().unwrap_or(u64::MAX),
                e["inclusion"]["entry"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            )
        })
        .collect();
    let checks = match json["checkpoint"]["note"].as_str() {
        Some(note) => verified(&state, note, leaves).await?,
        None => vec![false; entries.len()],
    };
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
            .unwrap_or_default()
    };
    page(
        StatusCode::OK,
        &LookedPage {
            current: "looked",
            csrf: session.csrf,
            lines: entries
                .iter()
                .zip(checks)
                .map(|(e, ok)| line(e, ok))
                .collect(),
            recipients: super::sharing::directory(&state)
                .await?
                .into_iter()
                .map(|c| {
                    let chosen = c.id == value("recipient");
                    (c.id, format!("{} ({})", c.organization, c.name), chosen)
                })
                .collect(),
            since: value("since"),
            until: value("until"),
            csv: format!("/looked.csv?{}", encoded(&pairs)),
            checkpoint_size: json["checkpoint"]["size"].as_i64(),
        },
    )
}

/// `GET /looked.csv?...`: the same page as CSV.
#[get("/looked.csv")]
pub async fn csv(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let (_, log, _) = log_of(&state, &req).await?;
    Ok(secure(&mut HttpResponse::Ok())
        .content_type("text/csv; charset=utf-8; header=present")
        .insert_header((
            header::CONTENT_DISPOSITION,
            "attachment; filename=\"who-looked.csv\"",
        ))
        .body(log.to_csv()))
}
