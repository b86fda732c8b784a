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
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

use super::AppState;
use super::error::ApiError;
use super::observe::RequestId;
use super::openapi::schemas::Problem;
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

/// `GET /api/v1/audit/checkpoint`: the newest signed checkpoint.
#[utoipa::path(
    tag = "audit",
    responses(
        (status = 200, description = "A C2SP signed note: origin, tree size, root hash (base64), blank line, Ed25519 signature lines", body = String, content_type = "text/plain"),
        (status = 404, description = "`empty_log`: the audit log has no entries yet", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/audit/checkpoint")]
pub async fn checkpoint(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let st = state.clone();
    let latest = crate::cpus::spawn_blocking(move || st.checkpoints.latest(&store))
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

/// `GET /api/v1/audit/verifier-key`: the key checkpoint signatures verify with.
#[utoipa::path(
    tag = "audit",
    responses((status = 200, description = "A C2SP note verifier key (`name+hash+base64`), one line", body = String, content_type = "text/plain"))
)]
#[get("/api/v1/audit/verifier-key")]
pub async fn verifier_key(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(format!("{}\n", state.checkpoints.verifier_key()))
}

/// Query of the inclusion proof endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct InclusionQuery {
    /// The leaf (entry sequence number), below `tree_size`.
    index: u64,
    /// The size of the tree the proof is for (a checkpoint's size).
    tree_size: u64,
}

/// Query of the consistency proof endpoint.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ConsistencyQuery {
    /// The older tree size, at least 1.
    from: u64,
    /// The newer tree size, at most the log's.
    to: u64,
}

/// An RFC 9162 inclusion proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct InclusionProof {
    /// The leaf.
    pub leaf_index: u64,
    /// The tree size.
    pub tree_size: u64,
    /// The audit path, base64 SHA-256 hashes, leaf to root.
    pub proof: Vec<String>,
}

/// An RFC 9162 consistency proof.
#[derive(Debug, Serialize, ToSchema)]
pub struct ConsistencyProof {
    /// The older tree size.
    pub first: u64,
    /// The newer tree size.
    pub second: u64,
    /// The proof, base64 SHA-256 hashes.
    pub proof: Vec<String>,
}

/// `GET /api/v1/audit/proofs/inclusion?index=&tree_size=`.
#[utoipa::path(
    tag = "audit",
    responses(
        (status = 200, description = "The proof", body = InclusionProof),
        (status = 400, description = "`invalid_query` (missing or non-integer parameter) or `invalid_proof_request` (index or size out of range)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
    Ok(HttpResponse::Ok().json(InclusionProof {
        leaf_index: index,
        tree_size,
        proof,
    }))
}

/// `GET /api/v1/audit/proofs/consistency?from=&to=`.
#[utoipa::path(
    tag = "audit",
    responses(
        (status = 200, description = "The proof", body = ConsistencyProof),
        (status = 400, description = "`invalid_query` (missing or non-integer parameter) or `invalid_proof_request` (sizes out of range)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
    Ok(HttpResponse::Ok().json(ConsistencyProof {
        first: from,
        second: to,
        proof,
    }))
}
