//! OAuth endpoints: the SMART Backend Services token endpoint (`client_credentials` with a
//! `private_key_jwt` assertion), revocation (RFC 7009) and introspection (RFC 7662).
//!
//! Errors follow RFC 6749 section 5.2: `{"error": ..., "error_description": ...}`, 400, or
//! 401 for `invalid_client`. Descriptions are generic on purpose: a client learns that its
//! assertion failed, not which check, so a probe learns nothing.

use std::sync::Arc;

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, PRAGMA};
use actix_web::web::{Data, Form};
use actix_web::{HttpRequest, HttpResponse, ResponseError, post};
use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;
use serde_json::json;

use super::auth::{authenticate, bearer};
use super::error::ApiError;
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::assertion::{self, AssertionRules};
use crate::auth::clients::{Client, PurposeRefusal, Role, parse_jwks};
use crate::auth::tokens::{self, AccessClaims, Expectation};
use crate::auth::{Principal, now_secs, scopes};
use crate::store::identity;

/// What a token request without a purpose is told (RFC 6749 descriptions are plain text).
const PURPOSE_REQUIRED: &str = "a purpose of use is required: send purpose_of_use=<v3 ActReason \
     code> with the token request or the hl7-b2b extension in the assertion; or ask the operator \
     to register a default_purpose for this client";

/// The client-assertion type RFC 7523 defines.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RFC 6749 error.
#[derive(Debug, thiserror::Error)]
#[error("{error}: {description}")]
pub struct OAuthError {
    /// The RFC's error code.
    pub error: &'static str,
    /// A generic description.
    pub description: &'static str,
}

impl OAuthError {
    fn new(error: &'static str, description: &'static str) -> Self {
        OAuthError { error, description }
    }

    fn invalid_client() -> Self {
        OAuthError::new("invalid_client", "client authentication failed")
    }
}

impl ResponseError for OAuthError {
    fn status_code(&self) -> StatusCode {
        if self.error == "invalid_client" {
            StatusCode::UNAUTHORIZED
        } else if self.error == "server_error" {
            StatusCode::INTERNAL_SERVER_ERROR
        } else if self.error == "temporarily_unavailable" {
            StatusCode::SERVICE_UNAVAILABLE
        } else {
            StatusCode::BAD_REQUEST
        }
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        if self.error == "invalid_client" {
            response.insert_header(("WWW-Authenticate", "Bearer realm=\"consentgate\""));
        }
        response
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({"error": self.error, "error_description": self.description}))
    }
}

impl From<ApiError> for OAuthError {
    fn from(e: ApiError) -> Self {
        if e.status == StatusCode::SERVICE_UNAVAILABLE {
            OAuthError::new("temporarily_unavailable", "the database is busy; retry")
        } else {
            OAuthError::new("server_error", "an internal error occurred")
        }
    }
}

impl From<crate::store::StoreError> for OAuthError {
    fn from(e: crate::store::StoreError) -> Self {
        OAuthError::from(ApiError::from(e))
    }
}

/// The token request form.
#[derive(Debug, Deserialize)]
pub struct TokenForm {
    grant_type: Option<String>,
    client_assertion_type: Option<String>,
    client_assertion: Option<String>,
    scope: Option<String>,
    purpose_of_use: Option<String>,
    justification: Option<String>,
}

/// Authenticates a client by its assertion: registration, keys, signature, claims, replay.
async fn authenticate_client(
    state: &AppState,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<(Client, assertion::AssertionClaims), OAuthError> {
    if assertion_type != Some(JWT_BEARER) {
        return Err(OAuthError::new(
            "invalid_request",
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let assertion = assertion
        .filter(|a| !a.is_empty())
        .ok_or_else(|| OAuthError::new("invalid_request", "client_assertion is required"))?
        .to_string();
    let settings = &state.settings.auth;
    if assertion.len() > settings.max_token_bytes {
        return Err(OAuthError::invalid_client());
    }
    let client_id =
        assertion::claimed_client_id(&assertion).ok_or_else(OAuthError::invalid_client)?;
    let lookup = client_id.clone();
    let row = state
        .store
        .run(move |conn| identity::active_client(conn, &lookup))
        .await?
        .ok_or_else(OAuthError::invalid_client)?;
    let client = crate::auth::registry::from_row(row).map_err(|_| OAuthError::invalid_client())?;
    let jwks: Arc<JwkSet> =
        match (&client.jwks, &client.jwks_url) {
            (Some(inline), _) => {
                Arc::new(parse_jwks(inline).map_err(|_| OAuthError::invalid_client())?)
            }
            (None, Some(url)) => {
                let kid = jsonwebtoken::decode_header(&assertion)
                    .ok()
                    .and_then(|h| h.kid);
                state.auth.fetcher.get(url, kid.as_deref()).await.map_err(|e| {
                tracing::warn!(client_id = %client.id, error = %e, "client JWKS unavailable");
                OAuthError::invalid_client()
            })?
            }
            (None, None) => return Err(OAuthError::invalid_client()),
        };
    let now = now_secs();
    let claims = assertion::verify(
        &assertion,
        &jwks,
        &AssertionRules {
            client_id: &client.id,
            token_url: &state.auth.token_url,
            now,
            max_lifetime_secs: settings.assertion_max_lifetime_secs as i64,
            skew_secs: settings.clock_skew_secs,
            max_bytes: settings.max_token_bytes,
        },
    )
    .map_err(|e| {
        tracing::info!(client_id = %client.id, reason = %e, "client assertion refused");
        OAuthError::invalid_client()
    })?;
    // The replay cache is a table every instance shares; an id is kept until its assertion
    // expires (plus skew), after which the assertion could not verify anyway.
    let (id, jti, keep_until) = (
        client.id.clone(),
        claims.jti.clone(),
        claims.exp + settings.clock_skew_secs as i64,
    );
    let fresh = state
        .store
        .run(move |conn| identity::remember_assertion(conn, &id, &jti, keep_until, now))
        .await?;
    if !fresh {
        tracing::info!(client_id = %client.id, "client assertion replayed");
        return Err(OAuthError::invalid_client());
    }
    Ok((client, claims))
}

/// `POST /oauth/token`.
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
    let outcome = issue(&state, form).await;
    // Every issue and every refusal is on the record.
    let request_id = audit::request_id(&req);
    let entry = match &outcome {
        Ok((claims, _)) => {
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
    outcome.map(|(_, response)| response)
}

/// Checks a token request and signs the token; the caller audits the outcome.
async fn issue(
    state: &AppState,
    form: TokenForm,
) -> Result<(AccessClaims, HttpResponse), OAuthError> {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(OAuthError::new(
            "unsupported_grant_type",
            "only client_credentials is supported",
        ));
    }
    let (client, assertion) = authenticate_client(
        state,
        form.client_assertion_type.as_deref(),
        form.client_assertion.as_deref(),
    )
    .await?;
    let asked = form
        .purpose_of_use
        .clone()
        .filter(|p| !p.is_empty())
        .or_else(|| assertion.b2b_purpose());
    let catalog = &state.purposes;
    let chosen = client
        .purpose_for_token(asked.as_deref(), catalog, &state.settings.roles)
        .map_err(|refusal| match refusal {
            PurposeRefusal::Missing => OAuthError::new("invalid_request", PURPOSE_REQUIRED),
            PurposeRefusal::NotAllowed => OAuthError::new(
                "invalid_scope",
                "the purpose of use is not allowed for this client",
            ),
        })?;
    let purpose = chosen.code;
    let break_glass = catalog.is_a(&purpose, "ETREAT");
    let justification = form
        .justification
        .as_deref()
        .map(str::trim)
        .filter(|j| !j.is_empty())
        .map(str::to_string);
    if break_glass {
        if client.role != Role::Clinician {
            return Err(OAuthError::new(
                "invalid_scope",
                "emergency access is for clinicians only",
            ));
        }
        match &justification {
            None => {
                return Err(OAuthError::new(
                    "invalid_request",
                    "emergency access needs a justification",
                ));
            }
            Some(j) if j.chars().count() > state.settings.auth.max_justification_chars => {
                return Err(OAuthError::new(
                    "invalid_request",
                    "the justification is too long",
                ));
            }
            Some(_) => {}
        }
    }
    let granted = scopes::grant(form.scope.as_deref().unwrap_or_default(), &client.resources);
    if granted.is_empty() {
        return Err(OAuthError::new(
            "invalid_scope",
            "none of the requested scopes can be granted",
        ));
    }
    let now = now_secs();
    let lifetime = if break_glass {
        state.settings.auth.break_glass_lifetime_secs as i64
    } else {
        state.settings.auth.access_token_lifetime_secs as i64
    };
    let claims = AccessClaims {
        iss: state.auth.issuer.clone(),
        sub: client.id.clone(),
        aud: state.auth.fhir_audience.clone(),
        exp: now + lifetime,
        iat: now,
        nbf: now,
        jti: uuid::Uuid::now_v7().to_string(),
        client_id: client.id.clone(),
        role: client.role.as_str().to_string(),
        organization: client.organization.clone(),
        scope: granted.join(" "),
        purpose_of_use: purpose,
        purpose_defaulted: chosen.defaulted,
        justification: if break_glass { justification } else { None },
    };
    let token = tokens::sign(&state.auth.keyring, tokens::ACCESS_TOKEN_TYP, &claims)
        .map_err(|_| OAuthError::new("server_error", "no signing key"))?;
    tracing::info!(client_id = %client.id, purpose = %claims.purpose_of_use, break_glass, "access token issued");
    let response = HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((PRAGMA, "no-cache"))
        .json(json!({
            "access_token": token,
            "token_type": "Bearer",
            "expires_in": lifetime,
            "scope": claims.scope,
            "purpose_of_use": claims.purpose_of_use,
            "purpose_of_use_defaulted": claims.purpose_defaulted,
        }));
    Ok((claims, response))
}

/// The form of revocation and introspection requests.
#[derive(Debug, Deserialize)]
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

/// Reads an access token's claims if the gateway signed it (expired tokens included, so they
/// can still be revoked or reported inactive).
fn access_claims(state: &AppState, token: &str) -> Option<AccessClaims> {
    tokens::verify::<AccessClaims>(
        &state.auth.keyring,
        token,
        &Expectation {
            typ: tokens::ACCESS_TOKEN_TYP,
            issuer: &state.auth.issuer,
            audience: &state.auth.fhir_audience,
            skew_secs: state.settings.auth.clock_skew_secs,
            allow_expired: true,
        },
    )
    .ok()
}

/// `POST /oauth/revoke` (RFC 7009): always 200 once the asker is authenticated.
#[post("/oauth/revoke")]
pub async fn revoke(
    state: Data<AppState>,
    req: HttpRequest,
    form: Form<TokenQueryForm>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.into_inner();
    let asker = asker(&state, &req, &form).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    if let Some(claims) = access_claims(&state, &token) {
        let permitted = match &asker {
            Asker::Operator => true,
            Asker::Client(id) => *id == claims.client_id,
        };
        if permitted {
            let (jti, exp) = (claims.jti.clone(), claims.exp);
            state
                .store
                .run(move |conn| identity::revoke_token(conn, &jti, exp))
                .await?;
            tracing::info!(client_id = %claims.client_id, jti = %claims.jti, "access token revoked");
            let mut entry = audit::entry_for(
                &Principal::Client(Box::new(claims.clone())),
                AuditAction::Token,
                AuditOutcome::Success,
                audit::request_id(&req),
            );
            entry.detail.insert("event".into(), "revoked".into());
            entry.detail.insert("token_id".into(), claims.jti.clone());
            if state.audit.record(entry).await.is_err() {
                return Err(OAuthError::new("temporarily_unavailable", "retry"));
            }
        }
    }
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .finish())
}

/// `POST /oauth/introspect` (RFC 7662).
#[post("/oauth/introspect")]
pub async fn introspect(
    state: Data<AppState>,
    req: HttpRequest,
    form: Form<TokenQueryForm>,
) -> Result<HttpResponse, OAuthError> {
    let form = form.into_inner();
    let asker = asker(&state, &req, &form).await?;
    let token = form
        .token
        .ok_or_else(|| OAuthError::new("invalid_request", "token is required"))?;
    let inactive = || {
        HttpResponse::Ok()
            .insert_header((CACHE_CONTROL, "no-store"))
            .json(json!({"active": false}))
    };
    let Ok(Principal::Client(claims)) = authenticate(&state, &token).await else {
        return Ok(inactive());
    };
    if let Asker::Client(id) = &asker
        && *id != claims.client_id
    {
        return Ok(inactive());
    }
    let mut body = json!({
        "active": true,
        "scope": claims.scope,
        "client_id": claims.client_id,
        "token_type": "Bearer",
        "exp": claims.exp,
        "iat": claims.iat,
        "nbf": claims.nbf,
        "sub": claims.sub,
        "aud": claims.aud,
        "iss": claims.iss,
        "jti": claims.jti,
        "role": claims.role,
        "purpose_of_use": claims.purpose_of_use,
        "purpose_of_use_defaulted": claims.purpose_defaulted,
    });
    if let Some(j) = &claims.justification {
        body["justification"] = json!(j);
    }
    Ok(HttpResponse::Ok()
        .insert_header((CACHE_CONTROL, "no-store"))
        .json(body))
}
