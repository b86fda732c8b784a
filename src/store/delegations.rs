//! Rows of delegations (`crate::delegation`). At most one delegation per RelatedPerson is in
//! force (a unique partial index); ending one is a conditional `UPDATE ... WHERE ended_at IS
//! NULL`, so it happens once whatever runs concurrently.

use diesel::prelude::*;

use super::schema::delegations;
use super::{DbConn, StoreError};

/// One stored delegation.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = delegations)]
pub struct DelegationRow {
    /// UUIDv7.
    pub id: String,
    /// The patient who delegates.
    pub patient_id: String,
    /// The delegate's RelatedPerson id.
    pub related_person_id: String,
    /// `parent`, `guardian`, `power_of_attorney` or `carer`.
    pub relationship: String,
    /// JSON array of action codes.
    pub actions: String,
    /// From when, microseconds since the epoch.
    pub period_start: i64,
    /// Until when, if bounded.
    pub period_end: Option<i64>,
    /// `Patient/{id}` or `operator`.
    pub created_by: String,
    /// The legal document an operator named.
    pub legal_document: Option<String>,
    /// When it was made.
    pub created: i64,
    /// When it ended.
    pub ended_at: Option<i64>,
    /// `revoked` or `majority`.
    pub ended_reason: Option<String>,
}

/// Stores a new delegation; a second one in force for the same RelatedPerson is a
/// [`StoreError::Conflict`].
pub fn insert(conn: &mut DbConn, row: &DelegationRow) -> Result<(), StoreError> {
    diesel::insert_into(delegations::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// One delegation.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<DelegationRow>, StoreError> {
    Ok(delegations::table
        .filter(delegations::id.eq(id))
        .select(DelegationRow::as_select())
        .first(conn)
        .optional()?)
}

/// The delegation of `related_person` not yet ended, if any.
pub fn live_for(
    conn: &mut DbConn,
    related_person: &str,
) -> Result<Option<DelegationRow>, StoreError> {
    Ok(delegations::table
        .filter(delegations::related_person_id.eq(related_person))
        .filter(delegations::ended_at.is_null())
        .select(DelegationRow::as_select())
        .first(conn)
        .optional()?)
}

/// A patient's delegations, newest first.
pub fn for_patient(
    conn: &mut DbConn,
    patient: &str,
    limit: i64,
) -> Result<Vec<DelegationRow>, StoreError> {
    Ok(delegations::table
        .filter(delegations::patient_id.eq(patient))
        .select(DelegationRow::as_select())
        .order(delegations::id.desc())
        .limit(limit)
        .load(conn)?)
}

/// Every delegation not yet ended whose relationship is one of `relationships`.
pub fn live_with(
    conn: &mut DbConn,
    relationships: &[&str],
    limit: i64,
) -> Result<Vec<DelegationRow>, StoreError> {
    Ok(delegations::table
        .filter(delegations::ended_at.is_null())
        .filter(delegations::relationship.eq_any(relationships))
        .select(DelegationRow::as_select())
        .order(delegations::id.asc())
        .limit(limit)
        .load(conn)?)
}

/// Ends a delegation in force; `false` when it had already ended.
pub fn end(conn: &mut DbConn, id: &str, at: i64, reason: &str) -> Result<bool, StoreError> {
    let changed = diesel::update(
        delegations::table
            .filter(delegations::id.eq(id))
            .filter(delegations::ended_at.is_null()),
    )
    .set((
        delegations::ended_at.eq(Some(at)),
        delegations::ended_reason.eq(Some(reason)),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}
