//! Discovery: the gateway's JWKS, the SMART configuration, and `whoami` for integrators.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Caller;
use crate::auth::Principal;

/// A JSON Web Key Set (RFC 7517): the gateway's Ed25519 signing keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct Jwks {
    /// The keys (`kty` `OKP`, `crv` `Ed25519`, `alg` `EdDSA`, `use` `sig`, `kid`, `x`).
    pub keys: Vec<serde_json::Value>,
}

/// `GET /.well-known/jwks.json`: the gateway's public keys (retired ones until they lapse).
#[utoipa::path(
    tag = "discovery",
    responses((status = 200, description = "The JWKS; cacheable for 300 s", body = Jwks))
)]
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.auth.keyring.jwks())
}

/// The SMART configuration (SMART App Launch 2.x, the backend services parts).
#[derive(Debug, Serialize, ToSchema)]
pub struct SmartConfiguration {
    /// The token issuer.
    pub issuer: String,
    /// Where the gateway's keys are.
    pub jwks_uri: String,
    /// `POST` here for an access token.
    pub token_endpoint: String,
    /// `private_key_jwt`.
    pub token_endpoint_auth_methods_supported: Vec<&'static str>,
    /// Algorithms client assertions may be signed with.
    pub token_endpoint_auth_signing_alg_values_supported: Vec<&'static str>,
    /// `client_credentials`.
    pub grant_types_supported: Vec<&'static str>,
    /// SMART v2 system scopes.
    pub scopes_supported: Vec<&'static str>,
    /// RFC 7009 revocation.
    pub revocation_endpoint: String,
    /// RFC 7662 introspection.
    pub introspection_endpoint: String,
    /// SMART capabilities.
    pub capabilities: Vec<&'static str>,
    /// None: no authorization-code flow for clients.
    pub code_challenge_methods_supported: Vec<&'static str>,
}

/// `GET /.well-known/smart-configuration` (SMART App Launch 2.x, backend services parts).
#[utoipa::path(
    tag = "discovery",
    responses((status = 200, description = "The SMART configuration", body = SmartConfiguration))
)]
#[get("/.well-known/smart-configuration")]
pub async fn smart_configuration(state: Data<AppState>) -> HttpResponse {
    let base = &state.base_url;
    HttpResponse::Ok().json(SmartConfiguration {
        issuer: state.auth.issuer.clone(),
        jwks_uri: format!("{base}/.well-known/jwks.json"),
        token_endpoint: state.auth.token_url.clone(),
        token_endpoint_auth_methods_supported: vec!["private_key_jwt"],
        token_endpoint_auth_signing_alg_values_supported: vec!["RS384", "ES384", "ES256", "EdDSA"],
        grant_types_supported: vec!["client_credentials"],
        // `system/*.read` is the SMART v1 spelling; it is granted as `system/*.rs`. The write
        // scopes are a data source's only (`system/*.write` is granted as `system/*.cu`).
        scopes_supported: vec![
            "system/*.rs",
            "system/*.r",
            "system/*.s",
            "system/*.read",
            "system/*.cu",
            "system/*.c",
            "system/*.u",
            "system/*.write",
        ],
        revocation_endpoint: format!("{base}/oauth/revoke"),
        introspection_endpoint: format!("{base}/oauth/introspect"),
        capabilities: vec!["client-confidential-asymmetric", "permission-v2"],
        code_challenge_methods_supported: vec![],
    })
}

/// What the gateway understood of the caller's token.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Whoami {
    /// A recipient client (or data source) with a gateway access token.
    Client {
        /// The client id.
        client_id: String,
        /// Its role.
        role: String,
        /// Its organisation.
        organization: String,
        /// Granted scopes, space-separated.
        scope: String,
        /// The token's purpose of use.
        purpose_of_use: String,
        /// Whether the gateway chose the purpose because the token request named none.
        purpose_of_use_defaulted: bool,
        /// Whether the token is a break-glass token.
        break_glass: bool,
        /// Expiry, seconds since the epoch.
        expires_at: i64,
    },
    /// A patient.
    Patient {
        /// The Patient resource id.
        patient: String,
    },
    /// An operator.
    Operator {
        /// The operator's account.
        subject: String,
    },
    /// A delegate (a RelatedPerson) acting for a patient within a delegation.
    Delegate {
        /// `RelatedPerson/{id}`.
        delegate: String,
        /// The patient they act for.
        patient: String,
        /// The delegation in force.
        delegation: String,
        /// What the delegation allows (snake_case action codes).
        actions: Vec<String>,
    },
}

/// `GET /api/v1/whoami`: what the gateway understood of the caller's token.
#[utoipa::path(
    tag = "discovery",
    security(("operator" = []), ("patient" = []), ("client" = [])),
    responses((status = 200, description = "The caller as the gateway sees it", body = Whoami))
)]
#[get("/api/v1/whoami")]
pub async fn whoami(Caller(principal): Caller) -> HttpResponse {
    let body = match principal {
        Principal::Client(c) => Whoami::Client {
            client_id: c.client_id,
            role: c.role,
            organization: c.organization,
            scope: c.scope,
            purpose_of_use: c.purpose_of_use,
            purpose_of_use_defaulted: c.purpose_defaulted,
            break_glass: c.justification.is_some(),
            expires_at: c.exp,
        },
        Principal::Patient { patient_id, .. } => Whoami::Patient {
            patient: patient_id,
        },
        Principal::Operator { subject } => Whoami::Operator { subject },
        Principal::Delegate(d) => Whoami::Delegate {
            delegate: d.reference(),
            patient: d.patient_id.clone(),
            delegation: d.delegation_id.clone(),
            actions: d.actions.iter().map(|a| a.as_str().to_string()).collect(),
        },
    };
    HttpResponse::Ok().json(body)
}
