//! "Share my summary": SMART Health Links to the patient's International Patient Summary
//! ([`crate::shl`]). The form makes a link (label, passcode, days, uses); the answer to it
//! is the only page that shows the link and its QR code, since the key is not stored. The QR
//! code is an SVG element inside that HTML answer: the Content-Security-Policy governs
//! scripts, styles and fetched images, and an inline `<svg>` of paths is none of them, so
//! the policy stays as strict as on every other page. The list shows each link's state and
//! deactivates one.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::words::day;
use super::{PageError, Signed, field, page, see_other};
use crate::api::AppState;
use crate::api::audit::request_id;
use crate::error::DomainError;
use crate::shl::{self, LinkView, NewShareLink};
use crate::sign_in::session::Session;

/// A link as the list shows it.
struct Listed {
    id: String,
    label: String,
    state: String,
    details: String,
    active: bool,
}

/// The link just made, shown once.
struct Made {
    link: String,
    qr_svg: String,
    limits: String,
}

#[derive(Template)]
#[template(path = "web/summary_links.html")]
struct LinksPage {
    current: &'static str,
    csrf: String,
    made: Option<Made>,
    links: Vec<Listed>,
}

fn listed(link: &LinkView) -> Listed {
    let state = match link.status {
        "active" => "works".to_string(),
        "expired" => "expired".to_string(),
        "used_up" => "used up".to_string(),
        "locked" => "locked after too many wrong passcodes".to_string(),
        _ => "deactivated".to_string(),
    };
    let mut details = format!(
        "Made {}. Opened {} time{}",
        day(&link.created),
        link.uses,
        if link.uses == 1 { "" } else { "s" }
    );
    if let Some(max) = link.max_uses {
        details.push_str(&format!(" of {max}"));
    }
    if let Some(expires) = &link.expires {
        details.push_str(&format!("; works until {}", day(expires)));
    }
    details.push_str(if link.passcode {
        "; needs a passcode."
    } else {
        "; no passcode."
    });
    Listed {
        id: link.id.clone(),
        label: link
            .label
            .clone()
            .unwrap_or_else(|| "Health summary".into()),
        state,
        details,
        active: link.active,
    }
}

async fn render(
    state: &AppState,
    session: Session,
    made: Option<Made>,
) -> Result<HttpResponse, PageError> {
    let links = shl::list(state, &session.principal()).await?;
    page(
        StatusCode::OK,
        &LinksPage {
            current: "summary-links",
            csrf: session.csrf,
            made,
            links: links.iter().map(listed).collect(),
        },
    )
}

/// `GET /summary-links`.
#[get("/summary-links")]
pub async fn list(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let Signed(session) = Signed::of(&state, &req).await?;
    render(&state, session, None).await
}

/// A whole number from a form field; empty is `None`.
fn number(value: &str, code: &'static str, what: &str) -> Result<Option<i64>, PageError> {
    let v = value.trim();
    if v.is_empty() {
        return Ok(None);
    }
    v.parse()
        .map(Some)
        .map_err(|_| DomainError::invalid(code, format!("{what} must be a whole number")).into())
}

/// `POST /summary-links`: makes a link and shows it, with its QR code, this once.
#[post("/summary-links")]
pub async fn create(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, pairs) = Signed::posted(&state, &req, &body).await?;
    let text = |name: &str| Some(field(&pairs, name).to_string()).filter(|v| !v.is_empty());
    let ask = NewShareLink {
        label: text("label"),
        passcode: text("passcode"),
        expires: None,
        lifetime_days: number(field(&pairs, "days"), "invalid_expires", "The days")?,
        max_uses: number(
            field(&pairs, "uses"),
            "invalid_max_uses",
            "The number of times",
        )?,
    };
    let session = signed.0;
    let created = shl::create(&state, &session.principal(), ask, &request_id(&req)).await?;
    let mut limits = format!(
        "It holds {} records and works until {}",
        created.share_link.resource_count,
        created
            .share_link
            .expires
            .as_deref()
            .map(day)
            .unwrap_or_default()
    );
    if let Some(max) = created.share_link.max_uses {
        limits.push_str(&format!(
            ", for {max} opening{}",
            if max == 1 { "" } else { "s" }
        ));
    }
    limits.push_str(if created.share_link.passcode {
        ", with the passcode you chose."
    } else {
        "."
    });
    let made = Made {
        link: created.link,
        qr_svg: created.qr_svg,
        limits,
    };
    render(&state, session, Some(made)).await
}

/// `POST /summary-links/{id}/deactivate`.
#[post("/summary-links/{id}/deactivate")]
pub async fn deactivate(
    state: Data<AppState>,
    req: HttpRequest,
    id: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    let (signed, _) = Signed::posted(&state, &req, &body).await?;
    shl::deactivate(&state, &signed.0.principal(), &id, &request_id(&req)).await?;
    Ok(see_other("/summary-links").finish())
}
