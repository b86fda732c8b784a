//! Discovery: the gateway's JWKS, the SMART configuration, and `whoami` for integrators.

use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use serde_json::json;

use super::AppState;
use super::auth::Caller;
use crate::auth::Principal;

/// `GET /.well-known/jwks.json`: the gateway's public keys (retired ones until they lapse).
#[get("/.well-known/jwks.json")]
pub async fn jwks(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header(("Cache-Control", "public, max-age=300"))
        .json(state.auth.keyring.jwks())
}

/// `GET /.well-known/smart-configuration` (SMART App Launch 2.x, backend services parts).
#[get("/.well-known/smart-configuration")]
pub async fn smart_configuration(state: Data<AppState>) -> HttpResponse {
    let base = &state.base_url;
    HttpResponse::Ok().json(json!({
        "issuer": state.auth.issuer,
        "jwks_uri": format!("{base}/.well-known/jwks.json"),
        "token_endpoint": state.auth.token_url,
        "token_endpoint_auth_methods_supported": ["private_key_jwt"],
        "token_endpoint_auth_signing_alg_values_supported": ["RS384", "ES384", "ES256", "EdDSA"],
        "grant_types_supported": ["client_credentials"],
        // `system/*.read` is the SMART v1 spelling; it is granted as `system/*.rs`.
        "scopes_supported": ["system/*.rs", "system/*.r", "system/*.s", "system/*.read"],
        "revocation_endpoint": format!("{base}/oauth/revoke"),
        "introspection_endpoint": format!("{base}/oauth/introspect"),
        "capabilities": ["client-confidential-asymmetric", "permission-v2"],
        "code_challenge_methods_supported": [],
    }))
}

/// `GET /api/v1/whoami`: what the gateway understood of the caller's token.
#[get("/api/v1/whoami")]
pub async fn whoami(Caller(principal): Caller) -> HttpResponse {
    let body = match principal {
        Principal::Client(c) => json!({
            "kind": "client",
            "client_id": c.client_id,
            "role": c.role,
            "organization": c.organization,
            "scope": c.scope,
            "purpose_of_use": c.purpose_of_use,
            "purpose_of_use_defaulted": c.purpose_defaulted,
            "break_glass": c.justification.is_some(),
            "expires_at": c.exp,
        }),
        Principal::Patient { patient_id, .. } => json!({"kind": "patient", "patient": patient_id}),
        Principal::Operator { subject } => json!({"kind": "operator", "subject": subject}),
    };
    HttpResponse::Ok().json(body)
}
