//! Signing in and out of the patient page, and the development issuer's HTTP face.
//!
//! The sign-in buttons are links (`GET /sign-in/start`), not forms: starting a sign-in
//! changes nothing a forger could use, and the callback is bound to the browser that
//! started it by [`super::BINDING_COOKIE`]. The development issuer's sign-in form carries
//! its request id, a random secret only that page knows, which serves as its CSRF token.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data};
use actix_web::{HttpRequest, HttpResponse, get, post};
use askama::Template;

use super::{
    BINDING_COOKIE, PageError, SESSION_COOKIE, Signed, cookie, cookie_value, field, form, page,
    query, secure, see_other,
};
use crate::api::AppState;
use crate::error::DomainError;
use crate::sign_in::dev_issuer::{self, AuthorizeRequest, PatientChoice, TokenRequest};
use crate::sign_in::relying_party::{self, SIGN_IN_LIFETIME_SECS};
use crate::sign_in::session;

/// A sign-in button.
struct Button {
    href: String,
    name: String,
}

#[derive(Template)]
#[template(path = "web/sign_in.html")]
struct SignInPage {
    issuers: Vec<Button>,
    unavailable: Option<&'static str>,
}

#[derive(Template)]
#[template(path = "web/dev_issuer.html")]
struct DevIssuerPage {
    request: String,
    patients: Vec<PatientChoice>,
}

fn callback_uri(state: &AppState) -> String {
    format!("{}/sign-in/callback", state.base_url)
}

/// `GET /`: the sign-in page, or the patient's sharing when signed in.
#[get("/")]
pub async fn home(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    if Signed::of(&state, &req).await.is_ok() {
        return Ok(see_other("/sharing").finish());
    }
    let issuers = relying_party::issuers(&state)
        .into_iter()
        .map(|c| Button {
            href: format!(
                "/sign-in/start?{}",
                form_urlencoded::Serializer::new(String::new())
                    .append_pair("issuer", &c.issuer)
                    .finish()
            ),
            name: c.name,
        })
        .collect();
    let unavailable = relying_party::unavailable_reason(&state);
    let status = if unavailable.is_some() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    };
    page(
        status,
        &SignInPage {
            issuers,
            unavailable,
        },
    )
}

/// The sign-in rate limit per source address (`rate_limits.sign_in_per_address`), checked
/// before any issuer or code is looked at, so a flood costs no database work.
fn throttle(req: &HttpRequest) -> Result<(), PageError> {
    let Some(limits) = crate::api::throttle::rate_limits(req) else {
        return Ok(());
    };
    limits
        .check_sign_in(crate::api::throttle::source_address(req, &limits))
        .map_err(|t| PageError::Throttled(t.retry_after_secs()))
}

/// `GET /sign-in/start?issuer=`: to the issuer's authorization endpoint.
#[get("/sign-in/start")]
pub async fn start(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    throttle(&req)?;
    let pairs = query(&req);
    let started =
        relying_party::start(&state, field(&pairs, "issuer"), &callback_uri(&state)).await?;
    Ok(see_other(&started.authorize_url)
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            cookie(BINDING_COOKIE, &started.binding, SIGN_IN_LIFETIME_SECS),
        ))
        .finish())
}

/// `GET /sign-in/callback?code=&state=`: back from the issuer; opens the session.
#[get("/sign-in/callback")]
pub async fn callback(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    throttle(&req)?;
    let pairs = query(&req);
    if !field(&pairs, "error").is_empty() {
        return Err(DomainError::new(
            crate::error::ErrorKind::Unauthorized,
            "sign_in_refused",
            "the sign-in service did not sign you in; start again",
        )
        .into());
    }
    let binding = cookie_value(&req, BINDING_COOKIE);
    let who = relying_party::finish(
        &state,
        field(&pairs, "state"),
        field(&pairs, "code"),
        binding.as_deref(),
    )
    .await?;
    let (value, _) = session::open(&state, who).await?;
    let lifetime = state.settings.web.session_lifetime_secs as i64;
    Ok(see_other("/sharing")
        .append_header((
            actix_web::http::header::SET_COOKIE,
            cookie(SESSION_COOKIE, &value, lifetime),
        ))
        .append_header((
            actix_web::http::header::SET_COOKIE,
            cookie(BINDING_COOKIE, "", 0),
        ))
        .finish())
}

/// `POST /sign-out`: ends the session at once.
#[post("/sign-out")]
pub async fn sign_out(
    state: Data<AppState>,
    req: HttpRequest,
    body: Bytes,
) -> Result<HttpResponse, PageError> {
    Signed::posted(&state, &req, &body).await?;
    let value = cookie_value(&req, SESSION_COOKIE).unwrap_or_default();
    session::close(&state, &value).await?;
    Ok(see_other("/")
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            cookie(SESSION_COOKIE, "", 0),
        ))
        .finish())
}

/// `GET /dev-issuer/.well-known/openid-configuration`.
#[get("/dev-issuer/.well-known/openid-configuration")]
pub async fn discovery(state: Data<AppState>) -> Result<HttpResponse, PageError> {
    let document = dev_issuer::discovery(&state)?;
    Ok(secure(&mut HttpResponse::Ok()).json(document))
}

/// `GET /dev-issuer/authorize`: the demo sign-in page.
#[get("/dev-issuer/authorize")]
pub async fn authorize(state: Data<AppState>, req: HttpRequest) -> Result<HttpResponse, PageError> {
    let pairs = query(&req);
    let ask = AuthorizeRequest {
        response_type: field(&pairs, "response_type").into(),
        client_id: field(&pairs, "client_id").into(),
        redirect_uri: field(&pairs, "redirect_uri").into(),
        state: field(&pairs, "state").into(),
        nonce: field(&pairs, "nonce").into(),
        code_challenge: field(&pairs, "code_challenge").into(),
        code_challenge_method: field(&pairs, "code_challenge_method").into(),
        scope: field(&pairs, "scope").into(),
    };
    let request = dev_issuer::authorize(&state, ask).await?;
    let patients = dev_issuer::patients(&state).await?;
    page(StatusCode::OK, &DevIssuerPage { request, patients })
}

/// `POST /dev-issuer/choose`: the person picked a patient; back to the relying party.
#[post("/dev-issuer/choose")]
pub async fn choose(state: Data<AppState>, body: Bytes) -> Result<HttpResponse, PageError> {
    let pairs = form(&body)?;
    let back =
        dev_issuer::choose(&state, field(&pairs, "request"), field(&pairs, "patient")).await?;
    Ok(see_other(&back).finish())
}

/// `POST /dev-issuer/token`: the code for tokens (OAuth JSON, errors as RFC 6749 5.2).
#[post("/dev-issuer/token")]
pub async fn token(state: Data<AppState>, body: Bytes) -> Result<HttpResponse, PageError> {
    let pairs = form(&body)?;
    let ask = TokenRequest {
        grant_type: field(&pairs, "grant_type").into(),
        code: field(&pairs, "code").into(),
        redirect_uri: field(&pairs, "redirect_uri").into(),
        client_id: field(&pairs, "client_id").into(),
        code_verifier: field(&pairs, "code_verifier").into(),
    };
    Ok(match dev_issuer::exchange(&state, ask).await {
        Ok(tokens) => secure(&mut HttpResponse::Ok()).json(tokens),
        Err(e) => secure(&mut HttpResponse::BadRequest()).json(serde_json::json!({
            "error": e.error,
            "error_description": e.description,
        })),
    })
}
