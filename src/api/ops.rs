//! Operations endpoints: liveness, readiness and metrics. None needs a token and none
//! reveals data: readiness says only whether the database answers, is migrated and takes a
//! write, and whether the audit writer makes progress.

use std::time::Duration;

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use serde::Serialize;

use super::AppState;
use super::error::ApiError;
use crate::audit::log::Stalled;
use crate::store::{StoreError, write_tx};

/// The body of `/healthz` and `/readyz`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    /// `ok` (healthz) or `ready` (readyz).
    pub status: &'static str,
}

/// `GET /healthz`: the process is up.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The process is up", body = Health, example = json!({"status": "ok"})))
)]
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(Health { status: "ok" })
}

/// How long one audit batch may take to commit before readiness gives up on the writer.
const AUDIT_STUCK_AFTER: Duration = Duration::from_secs(10);
/// How long the readiness probe waits for the database.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Why the gateway is not ready; the stable code of the 503.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum NotReady {
    MigrationsPending(usize),
    DatabaseUnavailable,
    DatabaseNotWritable,
    AuditWriter(Stalled),
}

/// Checks that the database answers, is migrated and takes a write, and that the audit
/// writer makes progress: an instance that cannot audit cannot serve patient data.
async fn readiness(state: &AppState) -> Result<(), NotReady> {
    state
        .audit
        .progress(AUDIT_STUCK_AFTER)
        .map_err(NotReady::AuditWriter)?;
    let store = state.store.clone();
    let probe = crate::cpus::spawn_blocking(move || {
        let pending = store
            .pending_migrations()
            .map_err(|_| NotReady::DatabaseUnavailable)?;
        if pending > 0 {
            return Err(NotReady::MigrationsPending(pending));
        }
        // An empty write transaction: on SQLite it takes the write lock, so a lock that
        // nobody releases shows here.
        let mut conn = store.conn().map_err(|_| NotReady::DatabaseUnavailable)?;
        write_tx(&mut conn, |_| Ok::<_, StoreError>(())).map_err(|_| NotReady::DatabaseNotWritable)
    });
    match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
        Ok(Ok(result)) => result,
        Ok(Err(_)) => Err(NotReady::DatabaseUnavailable),
        Err(_) => Err(NotReady::DatabaseNotWritable),
    }
}

/// `GET /readyz`: 200 when [`readiness`] holds, else 503 with the reason's code.
#[utoipa::path(
    tag = "operations",
    responses(
        (status = 200, description = "Ready to serve", body = Health, example = json!({"status": "ready"})),
        (status = 503, description = "Not ready: `migrations_pending`, `database_unavailable`, `database_not_writable` or `audit_writer_stalled`; carries `Retry-After`",
            body = super::openapi::schemas::Problem, content_type = "application/problem+json"),
    )
)]
#[get("/readyz")]
pub async fn readyz(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let (code, message) = match readiness(&state).await {
        Ok(()) => return Ok(HttpResponse::Ok().json(Health { status: "ready" })),
        Err(NotReady::MigrationsPending(n)) => (
            "migrations_pending",
            format!("{n} database migrations are pending; run `consentgate migrate`"),
        ),
        Err(NotReady::DatabaseUnavailable) => (
            "database_unavailable",
            "the database does not answer".into(),
        ),
        Err(NotReady::DatabaseNotWritable) => (
            "database_not_writable",
            "the database does not take a write in time".into(),
        ),
        Err(NotReady::AuditWriter(stalled)) => ("audit_writer_stalled", stalled.to_string()),
    };
    tracing::warn!(code, "readiness check failed");
    Err(ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        code,
        message,
    ))
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "Prometheus text exposition format 0.0.4", body = String, content_type = "text/plain"))
)]
#[get("/metrics")]
pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
