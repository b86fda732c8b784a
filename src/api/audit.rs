//! Audit: recording what requests do, and reading the log back.
//!
//! - [`entry_for`] and [`record`]: how handlers append an entry (and wait until it is
//!   durable) before a response that carries patient data leaves.
//! - `GET /api/v1/audit/checkpoint`: the newest signed checkpoint (C2SP signed note, text).
//! - `GET /api/v1/audit/verifier-key`: the key to check checkpoint signatures with.
//! - `GET /api/v1/audit/proofs/inclusion?index=&tree_size=` and
//!   `GET /api/v1/audit/proofs/consistency?from=&to=`: RFC 9162 proofs (base64 hashes).
//!
//! Checkpoints and proofs are public: they hold hashes only, and third parties must be able
//! to check the log without an account.

use actix_web::http::StatusCode;
use actix_web::web::{Data, Query};
use actix_web::{HttpMessage, HttpRequest, HttpResponse, get};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::json;

use super::AppState;
use super::error::ApiError;
use super::observe::RequestId;
use crate::audit::stored;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;

/// The request id of a request (set by the observation middleware).
pub fn request_id(req: &HttpRequest) -> String {
    req.extensions()
        .get::<RequestId>()
        .map(|r| r.0.clone())
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// A new entry for what `principal` did.
pub fn entry_for(
    principal: &Principal,
    action: AuditAction,
    outcome: AuditOutcome,
    request_id: String,
) -> AuditEntry {
    principal.audit_entry(action, outcome, request_id)
}

/// An entry for an event with no authenticated principal (a refused token request).
pub fn anonymous_entry(
    client_id: Option<&str>,
    action: AuditAction,
    outcome: AuditOutcome,
    request_id: String,
) -> AuditEntry {
    AuditEntry::anonymous(client_id, action, outcome, request_id)
}

/// Appends `entry` and waits until it is durable. A failure means the caller must not send
/// patient data: it answers 503 instead.
pub async fn record(state: &AppState, entry: AuditEntry) -> Result<u64, ApiError> {
    Ok(state.record(entry).await?)
}

/// `GET /api/v1/audit/checkpoint`.
#[get("/api/v1/audit/checkpoint")]
pub async fn checkpoint(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let st = state.clone();
    let latest = tokio::task::spawn_blocking(move || st.checkpoints.latest(&store))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    match latest {
        Some(row) => Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .insert_header(("Cache-Control", "no-cache"))
            .body(row.note)),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "empty_log",
            "the audit log has no entries yet",
        )),
    }
}

/// `GET /api/v1/audit/verifier-key`.
#[get("/api/v1/audit/verifier-key")]
pub async fn verifier_key(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.checkpoints.verifier_key()))
}

/// Query of the inclusion proof endpoint.
#[derive(Debug, Deserialize)]
pub struct InclusionQuery {
    index: u64,
    tree_size: u64,
}

/// Query of the consistency proof endpoint.
#[derive(Debug, Deserialize)]
pub struct ConsistencyQuery {
    from: u64,
    to: u64,
}

/// `GET /api/v1/audit/proofs/inclusion?index=&tree_size=`.
#[get("/api/v1/audit/proofs/inclusion")]
pub async fn inclusion(
    state: Data<AppState>,
    query: Query<InclusionQuery>,
) -> Result<HttpResponse, ApiError> {
    let InclusionQuery { index, tree_size } = query.into_inner();
    let proof = state
        .store
        .run(move |conn| stored::inclusion(conn, index, tree_size))
        .await?;
    let proof: Vec<String> = proof.iter().map(|h| STANDARD.encode(h)).collect();
    Ok(HttpResponse::Ok()
        .json(json!({"leaf_index": index, "tree_size": tree_size, "proof": proof})))
}

/// `GET /api/v1/audit/proofs/consistency?from=&to=`.
#[get("/api/v1/audit/proofs/consistency")]
pub async fn consistency(
    state: Data<AppState>,
    query: Query<ConsistencyQuery>,
) -> Result<HttpResponse, ApiError> {
    let ConsistencyQuery { from, to } = query.into_inner();
    let proof = state
        .store
        .run(move |conn| stored::consistency(conn, from, to))
        .await?;
    let proof: Vec<String> = proof.iter().map(|h| STANDARD.encode(h)).collect();
    Ok(HttpResponse::Ok().json(json!({"first": from, "second": to, "proof": proof})))
}
