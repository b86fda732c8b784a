//! Client registry endpoints (operator only): `POST/GET /api/v1/clients`,
//! `GET/DELETE /api/v1/clients/{id}`. A removed client's tokens stop working at once: every
//! request checks the registration.

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpResponse, delete, get, post};
use serde_json::json;

use super::AppState;
use super::auth::Operator;
use super::error::ApiError;
use crate::auth::clients::{Client, NewClient, Role};
use crate::auth::now_secs;
use crate::store::identity::{self, ClientRow};

/// A stored row back into a client.
pub fn client_from_row(row: ClientRow) -> Result<Client, ApiError> {
    let corrupt = || ApiError::internal(format!("client {} is stored malformed", row.id));
    Ok(Client {
        role: Role::parse(&row.role).ok_or_else(corrupt)?,
        jwks: match &row.jwks {
            Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt())?),
            None => None,
        },
        purposes: serde_json::from_str(&row.purposes).map_err(|_| corrupt())?,
        resources: serde_json::from_str(&row.resources).map_err(|_| corrupt())?,
        acts_as: serde_json::from_str(&row.acts_as).map_err(|_| corrupt())?,
        jwks_url: row.jwks_url,
        id: row.id,
        name: row.name,
        organization: row.organization,
        created_at: row.created_at,
    })
}

/// A client into a row.
pub fn client_to_row(client: &Client) -> ClientRow {
    ClientRow {
        id: client.id.clone(),
        name: client.name.clone(),
        organization: client.organization.clone(),
        role: client.role.as_str().to_string(),
        jwks: client.jwks.as_ref().map(|j| j.to_string()),
        jwks_url: client.jwks_url.clone(),
        purposes: serde_json::Value::from(client.purposes.clone()).to_string(),
        resources: serde_json::Value::from(client.resources.clone()).to_string(),
        created_at: client.created_at,
        removed_at: None,
        acts_as: serde_json::Value::from(client.acts_as.clone()).to_string(),
    }
}

/// Registers a client; shared by the API and the CLI.
pub fn register(
    conn: &mut crate::store::DbConn,
    new: NewClient,
    state_roles: &crate::config::RolePurposes,
    catalog: &crate::auth::purposes::PurposeCatalog,
) -> Result<Client, ApiError> {
    let client = new.validate(state_roles, catalog).map_err(|e| {
        ApiError::fhir(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            "invalid_client_registration",
            e.to_string(),
        )
        .as_problem()
    })?;
    identity::insert_client(conn, &client_to_row(&client))?;
    Ok(client)
}

/// `POST /api/v1/clients`.
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
        .run(move |conn| register(conn, new, &roles, catalog))
        .await?;
    tracing::info!(client_id = %client.id, role = client.role.as_str(), operator = %operator.subject, "client registered");
    Ok(HttpResponse::Created()
        .insert_header(("Location", format!("/api/v1/clients/{}", client.id)))
        .json(client))
}

/// `GET /api/v1/clients`.
#[get("/api/v1/clients")]
pub async fn list(state: Data<AppState>, _operator: Operator) -> Result<HttpResponse, ApiError> {
    let rows = state.store.run(identity::list_clients).await?;
    let clients = rows
        .into_iter()
        .map(client_from_row)
        .collect::<Result<Vec<_>, _>>()?;
    Ok(HttpResponse::Ok().json(json!({ "clients": clients })))
}

fn unknown_client() -> ApiError {
    ApiError::fhir(
        StatusCode::NOT_FOUND,
        "not-found",
        "unknown_client",
        "no such client",
    )
    .as_problem()
}

/// `GET /api/v1/clients/{id}`.
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
    Ok(HttpResponse::Ok().json(client_from_row(row)?))
}

/// `DELETE /api/v1/clients/{id}`: removal; its tokens stop working at the next request.
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
