//! Operations endpoints: liveness, readiness and metrics. None needs a token and none
//! reveals data: readiness says only whether the database answers and is migrated.

use actix_web::http::StatusCode;
use actix_web::web::Data;
use actix_web::{HttpResponse, get};
use serde_json::json;

use super::AppState;
use super::error::ApiError;

/// `GET /healthz`: the process is up.
#[get("/healthz")]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

/// `GET /readyz`: the database answers and no migration is pending.
#[get("/readyz")]
pub async fn readyz(state: Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.store.clone();
    let pending = tokio::task::spawn_blocking(move || store.pending_migrations())
        .await
        .map_err(ApiError::internal)?;
    match pending {
        Ok(0) => Ok(HttpResponse::Ok().json(json!({"status": "ready"}))),
        Ok(n) => Err(ApiError::fhir(
            StatusCode::SERVICE_UNAVAILABLE,
            "transient",
            "migrations_pending",
            format!("{n} database migrations are pending; run `consentgate migrate`"),
        )
        .as_problem()),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Err(ApiError::fhir(
                StatusCode::SERVICE_UNAVAILABLE,
                "transient",
                "database_unavailable",
                "the database does not answer",
            )
            .as_problem())
        }
    }
}

/// `GET /metrics`: Prometheus text format.
#[get("/metrics")]
pub async fn metrics(state: Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}
