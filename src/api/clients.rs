//! Client registry endpoints (operator only): `POST/GET /api/v1/clients`,
//! `GET/DELETE /api/v1/clients/{id}`. A removed client's tokens stop working at once: every
//! request checks the registration.

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, post};
use serde::Serialize;
use utoipa::ToSchema;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use super::openapi::schemas::Problem;
use crate::auth::clients::{Client, NewClient};
use crate::auth::now_secs;
use crate::auth::registry;
use crate::store::identity;

/// Every registered client.
#[derive(Debug, Serialize, ToSchema)]
pub struct ClientList {
    /// The clients.
    pub clients: Vec<Client>,
}

/// `POST /api/v1/clients`: registers a recipient client or data source.
#[utoipa::path(
    tag = "clients",
    security(("operator" = [])),
    responses(
        (status = 201, description = "Registered; `Location` names it", body = Client),
        (status = 400, description = "`invalid_json`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "`invalid_client_registration`: the role, keys, purposes or resources do not hold together", body = Problem, content_type = "application/problem+json"),
    )
)]
#[post("/api/v1/clients")]
pub async fn create(
    state: Data<AppState>,
    operator: Operator,
    body: Json<NewClient>,
) -> Result<HttpResponse, ApiError> {
    let new = body.into_inner();
    let roles = state.settings.roles.clone();
    let catalog = state.purposes;
    let client = state
        .store
        .run(move |conn| registry::register(conn, new, &roles, catalog))
        .await?;
    tracing::info!(client_id = %client.id, role = client.role.as_str(), operator = %operator.subject, "client registered");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/clients/{}", client.id)))
        .json(client))
}

/// `GET /api/v1/clients`: every registered client.
#[utoipa::path(
    tag = "clients",
    security(("operator" = [])),
    responses((status = 200, description = "The registry", body = ClientList))
)]
#[get("/api/v1/clients")]
pub async fn list(state: Data<AppState>, _operator: Operator) -> Result<HttpResponse, ApiError> {
    let rows = state.store.run(identity::list_clients).await?;
    let clients = rows
        .into_iter()
        .map(registry::from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(ClientList { clients }))
}

fn unknown_client() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "unknown_client", "no such client")
}

/// `GET /api/v1/clients/{id}`.
#[utoipa::path(
    tag = "clients",
    security(("operator" = [])),
    responses(
        (status = 200, description = "The client", body = Client),
        (status = 404, description = "`unknown_client`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[get("/api/v1/clients/{id}")]
pub async fn show(
    state: Data<AppState>,
    _operator: Operator,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let row = state
        .store
        .run(move |conn| identity::active_client(conn, &id))
        .await?
        .ok_or_else(unknown_client)?;
    Ok(HttpResponse::Ok().json(registry::from_row(row)?))
}

/// `DELETE /api/v1/clients/{id}`: removal; its tokens stop working at the next request.
#[utoipa::path(
    tag = "clients",
    security(("operator" = [])),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, description = "`unknown_client`", body = Problem, content_type = "application/problem+json"),
    )
)]
#[delete("/api/v1/clients/{id}")]
pub async fn remove(
    state: Data<AppState>,
    operator: Operator,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let target = id.clone();
    let removed = state
        .store
        .run(move |conn| identity::remove_client(conn, &target, now_secs()))
        .await?;
    if !removed {
        return Err(unknown_client());
    }
    tracing::info!(client_id = %id, operator = %operator.subject, "client removed");
    Ok(HttpResponse::NoContent().finish())
}
