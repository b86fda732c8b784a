//! The client registry: registering recipient clients, and reading their registrations back
//! from storage. Shared by the API, the CLI and every workflow that needs a client.

use crate::decision::Requester;
use crate::error::DomainError;
use crate::store::DbConn;
use crate::store::identity::{self, ClientRow};
use crate::store::resources::CurrentRow;

use super::clients::{Client, NewClient, Role};
use super::purposes::PurposeCatalog;
use crate::config::RolePurposes;

/// A stored row back into a client; a row that does not parse is an internal error.
pub fn from_row(row: ClientRow) -> Result<Client, DomainError> {
    let corrupt = || DomainError::internal(format!("client {} is stored malformed", row.id));
    Ok(Client {
        role: Role::parse(&row.role).ok_or_else(corrupt)?,
        jwks: match &row.jwks {
            Some(text) => Some(serde_json::from_str(text).map_err(|_| corrupt())?),
            None => None,
        },
        purposes: serde_json::from_str(&row.purposes).map_err(|_| corrupt())?,
        resources: serde_json::from_str(&row.resources).map_err(|_| corrupt())?,
        acts_as: serde_json::from_str(&row.acts_as).map_err(|_| corrupt())?,
        default_purpose: row.default_purpose,
        jwks_url: row.jwks_url,
        id: row.id,
        name: row.name,
        organization: row.organization,
        created_at: row.created_at,
    })
}

/// A client into a row.
pub fn to_row(client: &Client) -> ClientRow {
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
        default_purpose: client.default_purpose.clone(),
    }
}

/// Validates and stores a registration (422 `invalid_client_registration` naming the field).
pub fn register(
    conn: &mut DbConn,
    new: NewClient,
    roles: &RolePurposes,
    catalog: &PurposeCatalog,
) -> Result<Client, DomainError> {
    let client = new
        .validate(roles, catalog)
        .map_err(|e| DomainError::unprocessable("invalid_client_registration", e.to_string()))?;
    identity::insert_client(conn, &to_row(&client))?;
    Ok(client)
}

/// The requester facts of a client whose token `jti` still holds (client registered and not
/// removed, token not revoked), read in one statement; `None` otherwise.
pub fn live_requester(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
) -> Result<Option<Requester>, DomainError> {
    identity::live_requester(conn, client_id, jti)?
        .map(|stored| requester_of(client_id, stored))
        .transpose()
}

/// [`live_requester`] and, in the same statement, the context version of `patient`
/// (`store::resources::context_version`).
pub fn live_requester_and_version(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    patient: &str,
) -> Result<Option<(Requester, i64)>, DomainError> {
    identity::live_requester_and_version(conn, client_id, jti, patient)?
        .map(|(stored, version)| Ok((requester_of(client_id, stored)?, version)))
        .transpose()
}

/// [`live_requester`] and, in the same statement, the current resource `resource_type/id`
/// with its patient's context version (`store::identity::live_requester_and_resource`).
pub fn live_requester_and_resource(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<(Requester, Option<CurrentRow>)>, DomainError> {
    identity::live_requester_and_resource(conn, client_id, jti, resource_type, id)?
        .map(|(stored, row)| Ok((requester_of(client_id, stored)?, row)))
        .transpose()
}

/// The requester facts of a client's stored `(role, organization, acts_as)`.
fn requester_of(
    client_id: &str,
    (role, organization, acts_as): identity::StoredRequester,
) -> Result<Requester, DomainError> {
    let corrupt = || DomainError::internal(format!("client {client_id} is stored malformed"));
    let role = Role::parse(&role).ok_or_else(corrupt)?;
    let acts_as: Vec<String> = serde_json::from_str(&acts_as).map_err(|_| corrupt())?;
    Ok(Requester::new(client_id, role, organization, acts_as))
}

/// The registration of a client that is still registered (not removed); `None` otherwise.
pub fn active(conn: &mut DbConn, client_id: &str) -> Result<Option<Client>, DomainError> {
    identity::active_client(conn, client_id)?
        .map(from_row)
        .transpose()
}
