//! OAuth endpoints: the SMART Backend Services token endpoint (`client_credentials` with a
//! `private_key_jwt` assertion), revocation (RFC 7009) and introspection (RFC 7662). The
//! checks are [`crate::auth::token_endpoint`]'s; these handlers add rate limits, audit every
//! issue and refusal, and render RFC 6749 errors (`{"error", "error_description"}`, 400, or 401
//! for `invalid_client`).

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, HttpResponse, ResponseError, post};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;

use super::auth::{authenticate, bearer};
use super::openapi::schemas::OAuthError as OAuthErrorBody;
use super::throttle::{rate_limits, throttled_token, throttled_token_address};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::token_endpoint::{self, TokenRequest, authenticate_client};
use crate::auth::{Principal, assertion};

pub use crate::auth::token_endpoint::{JWT_BEARER, TokenRefusal as OAuthError};

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        match self.error {
            "invalid_client" => StatusCode::UNAUTHORIZED,
            "server_error" => StatusCode::INTERNAL_SERVER_ERROR,
            "temporarily_unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.error == "invalid_client" {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"consentgate\""));
        }
        if self.error == "temporarily_unavailable" {
            response.insert_header((
                actix_web::http::header::RETRY_AFTER,
                super::error::RETRY_AFTER_SECS.to_string(),
            ));
        }
        response
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({"error": self.error, "error_description": self.description}))
    }
}

/// The token request form.
pub type TokenForm = TokenRequest;

/// An issued access token (RFC 6749 section 5.1, with SMART's purpose of use).
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenResponse {
    /// The access token (`at+jwt`, RFC 9068), at most 300 s.
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Lifetime in seconds.
    pub expires_in: i64,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The purpose of use (v3 ActReason code).
    pub purpose_of_use: String,
    /// Whether the gateway chose the purpose because the request named none.
    pub purpose_of_use_defaulted: bool,
}

/// `POST /oauth/token`: SMART Backend Services, `client_credentials` with a
/// `private_key_jwt` assertion.
#[utoipa::path(
    tag = "oauth",
    request_body(content = TokenForm, content_type = "application/x-www-form-urlencoded"),
    responses(
        (status = 200, description = "The access token; `Cache-Control: no-store`", body = TokenResponse),
        (status = 400, description = "`invalid_request`, `invalid_grant`, `invalid_scope`, `unauthorized_client` or `unsupported_grant_type`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: the assertion did not authenticate a registered client", body = OAuthErrorBody),
        (status = 429, description = "`too_many_requests`; carries `Retry-After`", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable` (the audit log or database); carries `Retry-After`", body = OAuthErrorBody),
    )
)]
#[post("/oauth/token")]
pub async fn issue_token(
    state: Data<AppState>,
    req: HttpRequest,
    form: Form<TokenForm>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.into_inner();
    let claimed = form
        .client_assertion
        .as_deref()
        .and_then(assertion::claimed_client_id);
    if let Some(response) = throttled_token_address(&req) {
        return Ok(response);
    }
    let outcome = token_endpoint::issue(&state, form).await;
    // Per client once it has authenticated: a token over the allowance is dropped unsent.
    if let (Ok(issued), Some(limits)) = (&outcome, rate_limits(&req))
        && let Err(t) = limits.check_token_client(&issued.claims.client_id)
    {
        return Ok(throttled_token(t));
    }
    // Every issue and every refusal is on the record.
    let request_id = audit::request_id(&req);
    let entry = match &outcome {
        Ok(issued) => {
            let claims = &issued.claims;
            let mut e = audit::entry_for(
                &Principal::Client(Box::new(claims.clone())),
                AuditAction::Token,
                AuditOutcome::Success,
                request_id,
            );
            e.detail.insert("event".into(), "issued".into());
            e.detail.insert("token_id".into(), claims.jti.clone());
            e
        }
        Err(err) => {
            let mut e = audit::anonymous_entry(
                claimed.as_deref(),
                AuditAction::Refusal,
                AuditOutcome::Denied,
                request_id,
            );
            e.detail.insert("event".into(), "token_refused".into());
            e.detail.insert("error".into(), err.error.to_string());
            e
        }
    };
    if let Err(e) = state.audit.record(entry).await {
        tracing::error!(error = %e, "token event could not be audited");
        return Err(OAuthError::new(
            "temporarily_unavailable",
            "the audit log is unavailable; retry",
        ));
    }
    let issued = outcome?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(TokenResponse {
            access_token: issued.token,
            token_type: "Bearer",
            expires_in: issued.lifetime,
            scope: issued.claims.scope,
            purpose_of_use: issued.claims.purpose_of_use,
            purpose_of_use_defaulted: issued.claims.purpose_defaulted,
        }))
}

/// The form of revocation and introspection requests: the operator authenticates with a
/// bearer token, a client with its assertion in the form.
#[derive(Debug, Deserialize, ToSchema)]
pub struct TokenQueryForm {
    token: Option<String>,
    #[allow(dead_code)]
    token_type_hint: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
}

/// Who asks to revoke or introspect: the operator, or a client (for its own tokens).
enum Asker {
    Operator,
    Client(String),
}

async fn asker(
    state: &AppState,
    req: &HttpRequest,
    form: &TokenQueryForm,
) -> Result<Asker, OAuthError> {
    if form.client_assertion.is_some() {
        let (client, _) = authenticate_client(
            state,
            form.client_assertion_type.as_deref(),
            form.client_assertion.as_deref(),
        )
        .await?;
        return Ok(Asker::Client(client.id));
    }
    let presented = bearer(req).ok_or_else(OAuthError::invalid_client)?;
    match authenticate(state, &presented).await {
        Ok(Principal::Operator { .. }) => Ok(Asker::Operator),
        _ => Err(OAuthError::invalid_client()),
    }
}

/// `POST /oauth/revoke` (RFC 7009): always 200 once the asker is authenticated.
#[utoipa::path(
    tag = "oauth",
    security(("operator" = []), ()),
    request_body(content = TokenQueryForm, content_type = "application/x-www-form-urlencoded",
        description = "An operator sends its bearer token; a client sends `client_assertion_type` and `client_assertion` (its own tokens only)"),
    responses(
        (status = 200, description = "Revoked, or nothing to revoke (RFC 7009)"),
        (status = 400, description = "`invalid_request`: no `token`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: neither an operator token nor a client assertion that authenticates", body = OAuthErrorBody),
        (status = 429, description = "`too_many_requests`; carries `Retry-After`", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`; carries `Retry-After`", body = OAuthErrorBody),
    )
)]
#[post("/oauth/revoke")]
pub async fn revoke(
    state: Data<AppState>,
    req: HttpRequest,
    form: Form<TokenQueryForm>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.into_inner();
    if form.client_assertion.is_some()
        && let Some(response) = throttled_token_address(&req)
    {
        return Ok(response);
    }
    let asker = asker(&state, &req, &form).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    let only_client = match &asker {
        Asker::Operator => None,
        Asker::Client(id) => Some(id.as_str()),
    };
    token_endpoint::revoke(&state, only_client, &token, &audit::request_id(&req)).await?;
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish())
}

/// An introspection answer (RFC 7662): `{"active": false}`, or the token's claims.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct Introspection {
    /// Whether the token is valid now (and the asker may know about it).
    pub active: bool,
    /// Granted scopes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    /// The client the token was issued to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// `Bearer`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token_type: Option<&'static str>,
    /// Expiry, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// Issue time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    /// Not before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// The client id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sub: Option<String>,
    /// The FHIR base the token is for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aud: Option<String>,
    /// The gateway.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    /// The token id.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    /// The client's role.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The purpose of use.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose_of_use: Option<String>,
    /// Whether the gateway chose the purpose.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub purpose_of_use_defaulted: Option<bool>,
    /// The break-glass justification, for a break-glass token.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// `POST /oauth/introspect` (RFC 7662).
#[utoipa::path(
    tag = "oauth",
    security(("operator" = []), ()),
    request_body(content = TokenQueryForm, content_type = "application/x-www-form-urlencoded",
        description = "An operator sends its bearer token; a client sends `client_assertion_type` and `client_assertion` (its own tokens only)"),
    responses(
        (status = 200, description = "The token's state; `Cache-Control: no-store`", body = Introspection),
        (status = 400, description = "`invalid_request`: no `token`", body = OAuthErrorBody),
        (status = 401, description = "`invalid_client`: neither an operator token nor a client assertion that authenticates", body = OAuthErrorBody),
        (status = 429, description = "`too_many_requests`; carries `Retry-After`", body = OAuthErrorBody),
        (status = 500, description = "`server_error`", body = OAuthErrorBody),
        (status = 503, description = "`temporarily_unavailable`; carries `Retry-After`", body = OAuthErrorBody),
    )
)]
#[post("/oauth/introspect")]
pub async fn introspect(
    state: Data<AppState>,
    req: HttpRequest,
    form: Form<TokenQueryForm>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.into_inner();
    if form.client_assertion.is_some()
        && let Some(response) = throttled_token_address(&req)
    {
        return Ok(response);
    }
    let asker = asker(&state, &req, &form).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    let inactive = || {
        HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(Introspection::default())
    };
    let Ok(Principal::Client(claims)) = authenticate(&state, &token).await else {
        return Ok(inactive());
    };
    if let Asker::Client(id) = &asker
        && *id != claims.client_id
    {
        return Ok(inactive());
    }
    let claims = *claims;
    let body = Introspection {
        active: true,
        scope: Some(claims.scope),
        client_id: Some(claims.client_id),
        token_type: Some("Bearer"),
        exp: Some(claims.exp),
        iat: Some(claims.iat),
        nbf: Some(claims.nbf),
        sub: Some(claims.sub),
        aud: Some(claims.aud),
        iss: Some(claims.iss),
        jti: Some(claims.jti),
        role: Some(claims.role),
        purpose_of_use: Some(claims.purpose_of_use),
        purpose_of_use_defaulted: Some(claims.purpose_defaulted),
        justification: claims.justification,
    };
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body))
}
