//! Rows of the identity tables: clients, revoked tokens, the assertion replay cache.

use diesel::prelude::*;

use super::resources::CurrentRow;
use super::schema::{assertion_jtis, clients, patient_context_versions, resources, revoked_tokens};
use super::{DbConn, StoreError};

/// A client row as stored (JSON columns still text).
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = clients)]
pub struct ClientRow {
    /// Client id.
    pub id: String,
    /// Display name.
    pub name: String,
    /// Organisation.
    pub organization: String,
    /// Role name.
    pub role: String,
    /// Inline JWKS (JSON).
    pub jwks: Option<String>,
    /// JWKS URL.
    pub jwks_url: Option<String>,
    /// JSON array of purposes.
    pub purposes: String,
    /// JSON array of resource types.
    pub resources: String,
    /// Seconds since the epoch.
    pub created_at: i64,
    /// Set when removed.
    pub removed_at: Option<i64>,
    /// JSON array of the references the client acts as.
    pub acts_as: String,
    /// The purpose of use of a token request that names none.
    pub default_purpose: Option<String>,
}

/// Stores a new client.
pub fn insert_client(conn: &mut DbConn, row: &ClientRow) -> Result<(), StoreError> {
    diesel::insert_into(clients::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// An active (not removed) client.
pub fn active_client(conn: &mut DbConn, id: &str) -> Result<Option<ClientRow>, StoreError> {
    let query = clients::table
        .filter(clients::id.eq(id))
        .filter(clients::removed_at.is_null());
    Ok(on_backend!(conn, c => query.first::<ClientRow>(c).optional())?)
}

/// The client `client_id`, not removed, whose token `jti` is not revoked.
#[diesel::dsl::auto_type(no_type_alias)]
fn live<'a>(client_id: &'a str, jti: &'a str) -> _ {
    clients::id
        .eq(client_id)
        .and(clients::removed_at.is_null())
        .and(diesel::dsl::not(diesel::dsl::exists(
            revoked_tokens::table.filter(revoked_tokens::jti.eq(jti)),
        )))
}

/// What a decision needs of a registered client, as stored: `(role, organization, acts_as)`.
pub type StoredRequester = (String, String, String);

/// The [`StoredRequester`] of a client whose token still holds: `None` when the client is
/// unknown or removed, or the token (`jti`) revoked. One fixed statement, run on every
/// recipient request.
pub fn live_requester(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
) -> Result<Option<StoredRequester>, StoreError> {
    let query = clients::table.filter(live(client_id, jti)).select((
        clients::role,
        clients::organization,
        clients::acts_as,
    ));
    Ok(on_backend!(conn, c => query.first::<StoredRequester>(c).optional())?)
}

/// [`live_requester`] and, in the same statement, the context version of `patient_id`
/// (`resources::context_version`; 0 for a patient never written). One fixed statement, run
/// on every recipient request about one patient: on PostgreSQL a round trip fewer.
pub fn live_requester_and_version(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    patient_id: &str,
) -> Result<Option<(StoredRequester, i64)>, StoreError> {
    let query = clients::table
        .left_join(
            patient_context_versions::table.on(patient_context_versions::patient_id.eq(patient_id)),
        )
        .filter(live(client_id, jti))
        .select((
            (clients::role, clients::organization, clients::acts_as),
            patient_context_versions::version.nullable(),
        ));
    let found = on_backend!(conn, c => query
        .first::<(StoredRequester, Option<i64>)>(c)
        .optional())?;
    Ok(found.map(|(requester, version)| (requester, version.unwrap_or(0))))
}

/// [`live_requester`] and, in the same statement, the current resource
/// `resource_type/id` with the context version of the patient it is stored under
/// (`resources::read_with_context_version`): all a recipient's read asks of the database
/// when the patient's context is cached. One statement is one snapshot on both backends, so
/// SQLite needs no `BEGIN` and `COMMIT` around it and PostgreSQL one round trip.
/// `None` when the requester is refused (as [`live_requester`]); the row is `None` when the
/// resource is not stored.
pub fn live_requester_and_resource(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<(StoredRequester, Option<CurrentRow>)>, StoreError> {
    // Owned: diesel asks the inner join's condition of a nested join to be `'static`.
    let (resource_type, id) = (resource_type.to_string(), id.to_string());
    let query = clients::table
        .left_join(
            resources::table.on(resources::resource_type
                .eq(resource_type)
                .and(resources::id.eq(id))),
        )
        .left_join(
            patient_context_versions::table.on(patient_context_versions::patient_id
                .nullable()
                .eq(resources::patient_id)),
        )
        .filter(live(client_id, jti))
        .select((
            (clients::role, clients::organization, clients::acts_as),
            resources::body.nullable(),
            resources::facts.nullable(),
            resources::patient_id.nullable(),
            patient_context_versions::version.nullable(),
        ));
    type Row = (
        StoredRequester,
        Option<String>,
        Option<String>,
        Option<String>,
        Option<i64>,
    );
    let found = on_backend!(conn, c => query.first::<Row>(c).optional())?;
    Ok(found.map(|(requester, body, facts, patient_id, version)| {
        let row = body.map(|body| CurrentRow {
            body,
            facts,
            patient_id,
            version: version.unwrap_or(0),
        });
        (requester, row)
    }))
}

/// Every active client, oldest first.
pub fn list_clients(conn: &mut DbConn) -> Result<Vec<ClientRow>, StoreError> {
    Ok(clients::table
        .filter(clients::removed_at.is_null())
        .order(clients::created_at.asc())
        .load::<ClientRow>(conn)?)
}

/// Marks a client removed; returns whether it was active.
pub fn remove_client(conn: &mut DbConn, id: &str, now: i64) -> Result<bool, StoreError> {
    Ok(diesel::update(
        clients::table
            .filter(clients::id.eq(id))
            .filter(clients::removed_at.is_null()),
    )
    .set(clients::removed_at.eq(Some(now)))
    .execute(conn)?
        == 1)
}

/// Records a revoked token id until it would have expired anyway.
pub fn revoke_token(conn: &mut DbConn, jti: &str, expires_at: i64) -> Result<(), StoreError> {
    let already = revoked_tokens::table
        .filter(revoked_tokens::jti.eq(jti))
        .count()
        .get_result::<i64>(conn)?;
    if already == 0 {
        diesel::insert_into(revoked_tokens::table)
            .values((
                revoked_tokens::jti.eq(jti),
                revoked_tokens::expires_at.eq(expires_at),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// Records an assertion id; `false` when it was seen before (a replay). The primary key
/// makes this atomic across instances: of two concurrent uses, exactly one inserts.
pub fn remember_assertion(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    // Expired ids can never be replayed (their assertions no longer verify): drop them.
    diesel::delete(assertion_jtis::table.filter(assertion_jtis::expires_at.lt(now)))
        .execute(conn)?;
    diesel::delete(revoked_tokens::table.filter(revoked_tokens::expires_at.lt(now)))
        .execute(conn)?;
    let inserted = diesel::insert_into(assertion_jtis::table)
        .values((
            assertion_jtis::client_id.eq(client_id),
            assertion_jtis::jti.eq(jti),
            assertion_jtis::expires_at.eq(expires_at),
        ))
        .execute(conn);
    match inserted.map_err(StoreError::from) {
        Ok(_) => Ok(true),
        Err(StoreError::Conflict) => Ok(false),
        Err(e) => Err(e),
    }
}
