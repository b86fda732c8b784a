//! The patient page (`GET /` and below): server-rendered HTML for the person the gateway
//! exists for. A second HTTP layer beside [`crate::api`], sharing its state, request ids and
//! audit trail, with the same rule: handlers parse, call one domain function, render.
//!
//! - [`sign_in`]: the sign-in page, the OpenID Connect callback, sign-out, and the HTTP
//!   face of the development issuer ([`crate::sign_in::dev_issuer`]).
//! - [`sharing`]: "My sharing" (consents in plain words, revoke) and "Share" (the guided
//!   grant with the decision preview before the patient confirms).
//! - [`evidence`]: "Send evidence", a signed disclosure package, with the records that
//!   will leave shown first and every fetch listed afterwards.
//! - [`looked`]: "Who looked", the access log with each entry's inclusion proof checked
//!   (on the server, and the page says so) against the signed checkpoint; CSV download.
//! - [`notifications`]: the feed, mark as read, the webhook setting.
//! - [`requests`]: access requests waiting for the patient; approve through the share form,
//!   decline at once.
//! - [`summary_links`]: "Share my summary", SMART Health Links to the patient's summary:
//!   make one (the link and its QR code shown once), list, deactivate.
//! - [`words`]: consents as sentences a person reads.
//!
//! Every answer carries the page's security headers ([`secure`]): a Content-Security-Policy
//! with no inline script, HSTS, `frame-ancestors 'none'`, `no-store`. Every form posting
//! while signed in carries the session's CSRF token ([`Signed::check`]). Failures render as
//! an HTML page with the right status ([`PageError`]), never problem+json: the person
//! reading them is in a browser. Bodies and query strings are parsed here, not by actix's
//! extractors, so a malformed one is a page too.

pub mod delegates;
pub mod evidence;
pub mod looked;
pub mod notifications;
pub mod records;
pub mod requests;
pub mod sharing;
pub mod sign_in;
pub mod summary_links;
pub mod words;

use actix_web::http::StatusCode;
use actix_web::http::header::{self, HeaderValue};
use actix_web::web::{Data, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, ResponseError, get};
use askama::Template;

use crate::api::AppState;
use crate::api::error::status_of;
use crate::error::DomainError;
use crate::sign_in::session::{self, Session};

/// The session cookie (`__Host-`: Secure, Path=/, no Domain; a sibling host cannot set it).
pub const SESSION_COOKIE: &str = "__Host-consentgate-session";
/// The cookie binding a sign-in to the browser that started it.
pub const BINDING_COOKIE: &str = "__Host-consentgate-sign-in";
/// The policy every answer carries: scripts and styles only from this origin, forms post
/// only here, no framing.
pub const CSP: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; \
    connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";
/// Largest form body read, in bytes.
const MAX_FORM_BYTES: usize = 16 * 1024;

/// Registers the page's routes.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(stylesheet)
        .service(sign_in::home)
        .service(sign_in::start)
        .service(sign_in::callback)
        .service(sign_in::sign_out)
        .service(sign_in::discovery)
        .service(sign_in::authorize)
        .service(sign_in::choose)
        .service(sign_in::token)
        .service(sharing::list)
        .service(sharing::revoke)
        .service(sharing::form_page)
        .service(sharing::preview_page)
        .service(sharing::confirm)
        .service(requests::list)
        .service(requests::decline)
        .service(looked::list)
        .service(looked::csv)
        .service(notifications::list)
        .service(notifications::mark_read)
        .service(notifications::webhook)
        .service(evidence::list)
        .service(evidence::preview_page)
        .service(evidence::send)
        .service(records::list)
        .service(records::download)
        .service(records::correct_form)
        .service(records::correct)
        .service(records::disagree)
        .service(delegates::list)
        .service(delegates::create)
        .service(delegates::revoke)
        .service(summary_links::list)
        .service(summary_links::create)
        .service(summary_links::deactivate);
}

/// Strict-Transport-Security of every answer, pages and API alike: a year, subdomains too.
pub const HSTS: &str = "max-age=31536000; includeSubDomains";

/// Adds the security headers every page answer carries.
pub fn secure(builder: &mut HttpResponseBuilder) -> &mut HttpResponseBuilder {
    builder
        .insert_header((header::CONTENT_SECURITY_POLICY, CSP))
        .insert_header((header::STRICT_TRANSPORT_SECURITY, HSTS))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
}

/// A rendered page with status `status`.
pub fn page(status: StatusCode, template: &impl Template) -> Result<HttpResponse, PageError> {
    let html = template
        .render()
        .map_err(|e| PageError::from(DomainError::internal(format!("rendering a page: {e}"))))?;
    Ok(secure(&mut HttpResponse::build(status))
        .content_type("text/html; charset=utf-8")
        .body(html))
}

/// A 303 to `location` (after a form post, or into and out of sign-in).
pub fn see_other(location: &str) -> HttpResponseBuilder {
    let mut builder = HttpResponse::SeeOther();
    secure(&mut builder).insert_header((header::LOCATION, location));
    builder
}

/// A `Set-Cookie` value for a `__Host-` cookie: HttpOnly, Secure, SameSite=Lax.
pub fn cookie(name: &str, value: &str, max_age_secs: i64) -> String {
    format!("{name}={value}; Path=/; Max-Age={max_age_secs}; HttpOnly; Secure; SameSite=Lax")
}

/// The value of cookie `name` the browser sent, if any.
pub fn cookie_value(req: &HttpRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.to_string())
}

/// The query string as pairs.
pub fn query(req: &HttpRequest) -> Vec<(String, String)> {
    form_urlencoded::parse(req.query_string().as_bytes())
        .into_owned()
        .collect()
}

/// A form body as pairs (refused when larger than [`MAX_FORM_BYTES`]).
pub fn form(body: &[u8]) -> Result<Vec<(String, String)>, PageError> {
    if body.len() > MAX_FORM_BYTES {
        return Err(PageError::from(DomainError::invalid(
            "form_too_large",
            "the form is larger than this page accepts",
        )));
    }
    Ok(form_urlencoded::parse(body).into_owned().collect())
}

/// The first value of field `name`, or the empty string.
pub fn field<'a>(pairs: &'a [(String, String)], name: &str) -> &'a str {
    pairs
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .unwrap_or_default()
}

/// Every value of field `name` (checkbox groups).
pub fn fields<'a>(pairs: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    pairs
        .iter()
        .filter(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
        .collect()
}

/// The signed-in patient, or the redirect to the sign-in page.
pub struct Signed(pub Session);

impl Signed {
    /// The session of the request's cookie; `Err` is the answer to give instead (to `/`).
    pub async fn of(state: &Data<AppState>, req: &HttpRequest) -> Result<Signed, PageError> {
        let cookie = cookie_value(req, SESSION_COOKIE).unwrap_or_default();
        match session::find(state, &cookie).await? {
            Some(session) => Ok(Signed(session)),
            None => Err(PageError::SignInFirst),
        }
    }

    /// The session of a posted form and the form's fields, refused when the form does not
    /// carry the session's CSRF token: what every form handler asks first.
    pub async fn posted(
        state: &Data<AppState>,
        req: &HttpRequest,
        body: &[u8],
    ) -> Result<(Signed, Vec<(String, String)>), PageError> {
        let signed = Signed::of(state, req).await?;
        let pairs = form(body)?;
        signed.check(&pairs)?;
        Ok((signed, pairs))
    }

    /// Refuses a form that does not carry this session's CSRF token.
    pub fn check(&self, pairs: &[(String, String)]) -> Result<(), PageError> {
        if self.0.csrf_matches(field(pairs, "csrf")) {
            Ok(())
        } else {
            Err(PageError::from(DomainError::forbidden(
                "csrf_mismatch",
                "this form is stale or did not come from this page; open the page again",
            )))
        }
    }
}

/// Why a page could not be shown.
#[derive(Debug)]
pub enum PageError {
    /// No live session: back to the sign-in page.
    SignInFirst,
    /// A domain failure, shown as a page with its status.
    Failed(DomainError),
    /// Too many sign-in attempts from this address: 429 with `Retry-After` (seconds).
    Throttled(u64),
}

impl From<DomainError> for PageError {
    fn from(e: DomainError) -> Self {
        PageError::Failed(e)
    }
}

impl std::fmt::Display for PageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PageError::SignInFirst => f.write_str("sign in first"),
            PageError::Failed(e) => write!(f, "{}: {}", e.code, e.message),
            PageError::Throttled(_) => f.write_str("too many sign-in attempts"),
        }
    }
}

#[derive(Template)]
#[template(path = "web/error.html")]
struct ErrorPage<'a> {
    title: &'a str,
    message: &'a str,
}

impl ResponseError for PageError {
    fn status_code(&self) -> StatusCode {
        match self {
            PageError::SignInFirst => StatusCode::SEE_OTHER,
            PageError::Failed(e) => status_of(e.kind),
            PageError::Throttled(_) => StatusCode::TOO_MANY_REQUESTS,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let e = match self {
            PageError::SignInFirst => return see_other("/").finish(),
            PageError::Throttled(secs) => {
                let page = ErrorPage {
                    title: "Too many attempts",
                    message: "There were too many sign-in attempts from your network. Wait a minute and try again.",
                };
                let mut builder = HttpResponse::build(StatusCode::TOO_MANY_REQUESTS);
                return secure(&mut builder)
                    .insert_header((actix_web::http::header::RETRY_AFTER, secs.to_string()))
                    .content_type("text/html; charset=utf-8")
                    .body(page.render().unwrap_or_default());
            }
            PageError::Failed(e) => e,
        };
        let status = self.status_code();
        let title = match status.as_u16() {
            400 | 422 => "That did not work",
            401 => "Sign-in failed",
            403 => "Not allowed",
            404 | 410 => "Not found",
            503 => "Try again shortly",
            _ => "Something went wrong",
        };
        // Internal details stay in the log, never on the page.
        let message = if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
            tracing::error!(code = e.code, "patient page failed: {}", e.message);
            "The gateway could not do this. Nothing was changed; try again later."
        } else {
            e.message.as_str()
        };
        let rendered = ErrorPage { title, message }.render().unwrap_or_default();
        let mut builder = HttpResponse::build(status);
        secure(&mut builder)
            .content_type("text/html; charset=utf-8")
            .body(rendered)
    }
}

/// `GET /static/page.css`.
#[get("/static/page.css")]
pub async fn stylesheet() -> HttpResponse {
    let mut builder = HttpResponse::Ok();
    secure(&mut builder)
        .insert_header((header::CACHE_CONTROL, HeaderValue::from_static("no-cache")))
        .content_type("text/css; charset=utf-8")
        .body(include_str!("../../static/page.css"))
}
