//! The SMART Backend Services token endpoint below HTTP: authenticating a client by its
//! `private_key_jwt` assertion (registration, keys, signature, claims, replay cache), choosing
//! the purpose of use, granting scopes and signing the access token, and reading a token back
//! for revocation and introspection.
//!
//! Refusals are RFC 6749 section 5.2 errors ([`TokenRefusal`]) with generic descriptions: a
//! client learns that its assertion failed, not which check, so a probe learns nothing.

use std::sync::Arc;

use jsonwebtoken::jwk::JwkSet;
use serde::Deserialize;

use super::assertion::{self, AssertionRules};
use super::clients::{Client, PurposeRefusal, Role, parse_jwks};
use super::tokens::{self, AccessClaims, Expectation};
use super::{now_secs, scopes};
use crate::gateway::Gateway;
use crate::store::{StoreError, identity};

/// What a token request without a purpose is told (RFC 6749 descriptions are plain text).
const PURPOSE_REQUIRED: &str = "a purpose of use is required: send purpose_of_use=<v3 ActReason \
     code> with the token request or the hl7-b2b extension in the assertion; or ask the operator \
     to register a default_purpose for this client";

/// The client-assertion type RFC 7523 defines.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// An RFC 6749 error: the RFC's code and a generic description.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{error}: {description}")]
pub struct TokenRefusal {
    /// The RFC's error code (`invalid_client`, `invalid_request`, ...).
    pub error: &'static str,
    /// A generic description.
    pub description: &'static str,
}

impl TokenRefusal {
    /// A refusal with this code and description.
    pub fn new(error: &'static str, description: &'static str) -> Self {
        TokenRefusal { error, description }
    }

    /// Client authentication failed (which check is not said).
    pub fn invalid_client() -> Self {
        TokenRefusal::new("invalid_client", "client authentication failed")
    }
}

impl From<StoreError> for TokenRefusal {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                TokenRefusal::new("temporarily_unavailable", "the database is busy; retry")
            }
            other => {
                tracing::error!(error = %other, "token endpoint storage failure");
                TokenRefusal::new("server_error", "an internal error occurred")
            }
        }
    }
}

impl From<crate::error::DomainError> for TokenRefusal {
    fn from(e: crate::error::DomainError) -> Self {
        match e.kind {
            crate::error::ErrorKind::Unavailable => {
                TokenRefusal::new("temporarily_unavailable", "the database is busy; retry")
            }
            _ => TokenRefusal::new("server_error", "an internal error occurred"),
        }
    }
}

/// A token request, as the form carries it.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
pub struct TokenRequest {
    /// Must be `client_credentials`.
    pub grant_type: Option<String>,
    /// Must be [`JWT_BEARER`].
    pub client_assertion_type: Option<String>,
    /// The client's signed assertion.
    pub client_assertion: Option<String>,
    /// Requested SMART v2 scopes.
    pub scope: Option<String>,
    /// The purpose of use, if the client names one.
    pub purpose_of_use: Option<String>,
    /// A break-glass justification.
    pub justification: Option<String>,
}

/// An issued access token.
#[derive(Debug, Clone)]
pub struct Issued {
    /// Its claims.
    pub claims: AccessClaims,
    /// The signed JWT.
    pub token: String,
    /// Its lifetime in seconds.
    pub lifetime: i64,
}

/// Authenticates a client by its assertion: registration, keys, signature, claims, replay.
pub async fn authenticate_client(
    gateway: &Gateway,
    assertion_type: Option<&str>,
    assertion: Option<&str>,
) -> Result<(Client, assertion::AssertionClaims), TokenRefusal> {
    if assertion_type != Some(JWT_BEARER) {
        return Err(TokenRefusal::new(
            "invalid_request",
            "client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ));
    }
    let assertion = assertion
        .filter(|a| !a.is_empty())
        .ok_or_else(|| TokenRefusal::new("invalid_request", "client_assertion is required"))?
        .to_string();
    let settings = &gateway.settings.auth;
    if assertion.len() > settings.max_token_bytes {
        return Err(TokenRefusal::invalid_client());
    }
    let client_id =
        assertion::claimed_client_id(&assertion).ok_or_else(TokenRefusal::invalid_client)?;
    let lookup = client_id.clone();
    let row = gateway
        .store
        .run(move |conn| identity::active_client(conn, &lookup))
        .await?
        .ok_or_else(TokenRefusal::invalid_client)?;
    let client =
        crate::auth::registry::from_row(row).map_err(|_| TokenRefusal::invalid_client())?;
    let jwks: Arc<JwkSet> =
        match (&client.jwks, &client.jwks_url) {
            (Some(inline), _) => {
                Arc::new(parse_jwks(inline).map_err(|_| TokenRefusal::invalid_client())?)
            }
            (None, Some(url)) => {
                let kid = jsonwebtoken::decode_header(&assertion)
                    .ok()
                    .and_then(|h| h.kid);
                gateway.auth.fetcher.get(url, kid.as_deref()).await.map_err(|e| {
                tracing::warn!(client_id = %client.id, error = %e, "client JWKS unavailable");
                TokenRefusal::invalid_client()
            })?
            }
            (None, None) => return Err(TokenRefusal::invalid_client()),
        };
    let now = now_secs();
    let claims = assertion::verify(
        &assertion,
        &jwks,
        &AssertionRules {
            client_id: &client.id,
            token_url: &gateway.auth.token_url,
            now,
            max_lifetime_secs: settings.assertion_max_lifetime_secs as i64,
            skew_secs: settings.clock_skew_secs,
            max_bytes: settings.max_token_bytes,
        },
    )
    .map_err(|e| {
        tracing::info!(client_id = %client.id, reason = %e, "client assertion refused");
        TokenRefusal::invalid_client()
    })?;
    // The replay cache is a table every instance shares; an id is kept until its assertion
    // expires (plus skew), after which the assertion could not verify anyway.
    let (id, jti, keep_until) = (
        client.id.clone(),
        claims.jti.clone(),
        claims.exp + settings.clock_skew_secs as i64,
    );
    let fresh = gateway
        .store
        .run(move |conn| identity::remember_assertion(conn, &id, &jti, keep_until, now))
        .await?;
    if !fresh {
        tracing::info!(client_id = %client.id, "client assertion replayed");
        return Err(TokenRefusal::invalid_client());
    }
    Ok((client, claims))
}

/// Checks a token request and signs the token; the caller audits the outcome.
pub async fn issue(gateway: &Gateway, form: TokenRequest) -> Result<Issued, TokenRefusal> {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return Err(TokenRefusal::new(
            "unsupported_grant_type",
            "only client_credentials is supported",
        ));
    }
    let (client, assertion) = authenticate_client(
        gateway,
        form.client_assertion_type.as_deref(),
        form.client_assertion.as_deref(),
    )
    .await?;
    let asked = form
        .purpose_of_use
        .clone()
        .filter(|p| !p.is_empty())
        .or_else(|| assertion.b2b_purpose());
    let catalog = &gateway.purposes;
    let chosen = client
        .purpose_for_token(asked.as_deref(), catalog, &gateway.settings.roles)
        .map_err(|refusal| match refusal {
            PurposeRefusal::Missing => TokenRefusal::new("invalid_request", PURPOSE_REQUIRED),
            PurposeRefusal::NotAllowed => TokenRefusal::new(
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
            return Err(TokenRefusal::new(
                "invalid_scope",
                "emergency access is for clinicians only",
            ));
        }
        match &justification {
            None => {
                return Err(TokenRefusal::new(
                    "invalid_request",
                    "emergency access needs a justification",
                ));
            }
            Some(j) if j.chars().count() > gateway.settings.auth.max_justification_chars => {
                return Err(TokenRefusal::new(
                    "invalid_request",
                    "the justification is too long",
                ));
            }
            Some(_) => {}
        }
    }
    // A data source sends records in and reads nothing; a recipient reads and writes nothing.
    let access = match client.role {
        Role::DataSource => scopes::Access::Write,
        _ => scopes::Access::Read,
    };
    let granted = scopes::grant(
        form.scope.as_deref().unwrap_or_default(),
        &client.resources,
        access,
    );
    if granted.is_empty() {
        return Err(TokenRefusal::new(
            "invalid_scope",
            "none of the requested scopes can be granted",
        ));
    }
    let now = now_secs();
    let lifetime = if break_glass {
        gateway.settings.auth.break_glass_lifetime_secs as i64
    } else {
        gateway.settings.auth.access_token_lifetime_secs as i64
    };
    let claims = AccessClaims {
        iss: gateway.auth.issuer.clone(),
        sub: client.id.clone(),
        aud: gateway.auth.fhir_audience.clone(),
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
    let token = tokens::sign(&gateway.auth.keyring, tokens::ACCESS_TOKEN_TYP, &claims)
        .map_err(|_| TokenRefusal::new("server_error", "no signing key"))?;
    tracing::info!(client_id = %client.id, purpose = %claims.purpose_of_use, break_glass, "access token issued");
    Ok(Issued {
        claims,
        token,
        lifetime,
    })
}
/// Reads an access token's claims if the gateway signed it (expired tokens included, so they
/// can still be revoked or reported inactive).
pub fn access_claims(gateway: &Gateway, token: &str) -> Option<AccessClaims> {
    tokens::verify::<AccessClaims>(
        &gateway.auth.keyring,
        token,
        &Expectation {
            typ: tokens::ACCESS_TOKEN_TYP,
            issuer: &gateway.auth.issuer,
            audience: &gateway.auth.fhir_audience,
            skew_secs: gateway.settings.auth.clock_skew_secs,
            allow_expired: true,
        },
    )
    .ok()
}

/// Revokes `token` if the gateway signed it and `only_client` (a client revoking its own
/// tokens; `None` for an operator) may: it is refused on every instance from the next request
/// (RFC 7009: anything else is silently ignored). The revocation is audited.
pub async fn revoke(
    gateway: &Gateway,
    only_client: Option<&str>,
    token: &str,
    request_id: &str,
) -> Result<(), TokenRefusal> {
    let Some(claims) = access_claims(gateway, token) else {
        return Ok(());
    };
    if only_client.is_some_and(|id| id != claims.client_id) {
        return Ok(());
    }
    let (jti, exp) = (claims.jti.clone(), claims.exp);
    gateway
        .store
        .run(move |conn| identity::revoke_token(conn, &jti, exp))
        .await?;
    tracing::info!(client_id = %claims.client_id, jti = %claims.jti, "access token revoked");
    let token_id = claims.jti.clone();
    let mut entry = super::Principal::Client(Box::new(claims)).audit_entry(
        crate::audit::AuditAction::Token,
        crate::audit::AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.detail.insert("event".into(), "revoked".into());
    entry.detail.insert("token_id".into(), token_id);
    gateway
        .record(entry)
        .await
        .map_err(|_| TokenRefusal::new("temporarily_unavailable", "retry"))?;
    Ok(())
}
