//! Rows of amendment requests (`crate::amendment`). Every change of state is one conditional
//! `UPDATE` (`... WHERE status = 'pending'`, `... AND extended_at IS NULL`, ...), so of two
//! concurrent answers, on any instance, exactly one wins and the other sees `false`.

use diesel::prelude::*;

use super::schema::amendments;
use super::{DbConn, StoreError};

/// One stored amendment request.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = amendments)]
pub struct AmendmentRow {
    /// UUIDv7.
    pub id: String,
    /// Whose record.
    pub patient_id: String,
    /// The record's type.
    pub resource_type: String,
    /// The record's id.
    pub resource_id: String,
    /// The version disputed.
    pub version_id: i64,
    /// The data source that supplied it; `None`: the operators answer.
    pub source_client: Option<String>,
    /// `pending`, `accepted` or `denied`.
    pub status: String,
    /// `Patient/{id}` or `RelatedPerson/{id}`.
    pub requested_by: String,
    /// The patient's words: what is wrong.
    pub what_is_wrong: String,
    /// The patient's words: the correction asked for.
    pub proposed_correction: String,
    /// When it was asked, microseconds since the epoch.
    pub created: i64,
    /// When the answer is due.
    pub due: i64,
    /// When the deadline was extended (once at most).
    pub extended_at: Option<i64>,
    /// Why, in the source's words.
    pub extension_reason: Option<String>,
    /// When the gateway flagged it overdue and told the patient.
    pub overdue_at: Option<i64>,
    /// When it was answered.
    pub answered_at: Option<i64>,
    /// Who answered: a client id or `operator`.
    pub answered_by: Option<String>,
    /// Why it was denied, in the source's words.
    pub denial_reason: Option<String>,
    /// The corrected version, on acceptance.
    pub corrected_version: Option<i64>,
    /// The Provenance linking both versions.
    pub provenance_id: Option<String>,
    /// The statement of disagreement's DocumentReference id.
    pub statement_id: Option<String>,
    /// The statement, in the patient's words.
    pub statement: Option<String>,
    /// When it was filed.
    pub statement_at: Option<i64>,
}

impl std::fmt::Debug for AmendmentRow {
    /// Ids and states only: the free text is the patient's and the source's.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmendmentRow")
            .field("id", &self.id)
            .field("patient_id", &self.patient_id)
            .field("resource_type", &self.resource_type)
            .field("resource_id", &self.resource_id)
            .field("status", &self.status)
            .finish_non_exhaustive()
    }
}

/// Stores a new request.
pub fn insert(conn: &mut DbConn, row: &AmendmentRow) -> Result<(), StoreError> {
    diesel::insert_into(amendments::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// One request.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<AmendmentRow>, StoreError> {
    Ok(amendments::table
        .filter(amendments::id.eq(id))
        .select(AmendmentRow::as_select())
        .first(conn)
        .optional()?)
}

/// Whose requests a listing shows.
#[derive(Debug, Clone)]
pub enum Listing {
    /// One patient's.
    Patient(String),
    /// The queue of one data source (`Some`) or of the operators (`None`: no known source).
    Queue(Option<String>),
    /// Every request (an operator's view).
    All,
}

/// Requests, newest first; `pending_only` narrows to unanswered ones.
pub fn list(
    conn: &mut DbConn,
    listing: &Listing,
    pending_only: bool,
    limit: i64,
) -> Result<Vec<AmendmentRow>, StoreError> {
    let mut query = amendments::table
        .select(AmendmentRow::as_select())
        .order(amendments::id.desc())
        .limit(limit)
        .into_boxed();
    match listing {
        Listing::Patient(p) => query = query.filter(amendments::patient_id.eq(p.clone())),
        Listing::Queue(Some(client)) => {
            query = query.filter(amendments::source_client.eq(client.clone()))
        }
        Listing::Queue(None) => query = query.filter(amendments::source_client.is_null()),
        Listing::All => {}
    }
    if pending_only {
        query = query.filter(amendments::status.eq("pending"));
    }
    Ok(query.load(conn)?)
}

/// The request `id`, only while it is pending: the target of every answer's conditional
/// update.
type Pending<'a> = diesel::dsl::Filter<
    diesel::dsl::Filter<amendments::table, diesel::dsl::Eq<amendments::id, &'a str>>,
    diesel::dsl::Eq<amendments::status, &'static str>,
>;

fn pending(id: &str) -> Pending<'_> {
    amendments::table
        .filter(amendments::id.eq(id))
        .filter(amendments::status.eq("pending"))
}

/// Records an acceptance of a pending request; `false` when it was no longer pending.
pub fn accept(
    conn: &mut DbConn,
    id: &str,
    at: i64,
    by: &str,
    corrected_version: i64,
    provenance_id: &str,
) -> Result<bool, StoreError> {
    let changed = diesel::update(pending(id))
        .set((
            amendments::status.eq("accepted"),
            amendments::answered_at.eq(Some(at)),
            amendments::answered_by.eq(Some(by)),
            amendments::corrected_version.eq(Some(corrected_version)),
            amendments::provenance_id.eq(Some(provenance_id)),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Records a denial of a pending request; `false` when it was no longer pending.
pub fn deny(
    conn: &mut DbConn,
    id: &str,
    at: i64,
    by: &str,
    reason: &str,
) -> Result<bool, StoreError> {
    let changed = diesel::update(pending(id))
        .set((
            amendments::status.eq("denied"),
            amendments::answered_at.eq(Some(at)),
            amendments::answered_by.eq(Some(by)),
            amendments::denial_reason.eq(Some(reason)),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Extends the deadline of a pending, never-extended request to `due`; `false` otherwise.
pub fn extend(
    conn: &mut DbConn,
    id: &str,
    at: i64,
    due: i64,
    reason: &str,
) -> Result<bool, StoreError> {
    let changed = diesel::update(pending(id).filter(amendments::extended_at.is_null()))
        .set((
            amendments::due.eq(due),
            amendments::extended_at.eq(Some(at)),
            amendments::extension_reason.eq(Some(reason)),
            amendments::overdue_at.eq(None::<i64>),
        ))
        .execute(conn)?;
    Ok(changed == 1)
}

/// Files the statement of disagreement of a denied request that has none; `false` otherwise.
pub fn file_statement(
    conn: &mut DbConn,
    id: &str,
    at: i64,
    statement_id: &str,
    statement: &str,
) -> Result<bool, StoreError> {
    let changed = diesel::update(
        amendments::table
            .filter(amendments::id.eq(id))
            .filter(amendments::status.eq("denied"))
            .filter(amendments::statement_id.is_null()),
    )
    .set((
        amendments::statement_id.eq(Some(statement_id)),
        amendments::statement.eq(Some(statement)),
        amendments::statement_at.eq(Some(at)),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Pending requests past their deadline that were not yet flagged, oldest first.
pub fn newly_overdue(
    conn: &mut DbConn,
    now: i64,
    limit: i64,
) -> Result<Vec<AmendmentRow>, StoreError> {
    Ok(amendments::table
        .filter(amendments::status.eq("pending"))
        .filter(amendments::due.lt(now))
        .filter(amendments::overdue_at.is_null())
        .select(AmendmentRow::as_select())
        .order(amendments::due.asc())
        .limit(limit)
        .load(conn)?)
}

/// Flags a pending request overdue once; `false` when another instance did first.
pub fn flag_overdue(conn: &mut DbConn, id: &str, at: i64) -> Result<bool, StoreError> {
    let changed = diesel::update(pending(id).filter(amendments::overdue_at.is_null()))
        .set(amendments::overdue_at.eq(Some(at)))
        .execute(conn)?;
    Ok(changed == 1)
}

/// The requests of `patient` that carry a statement of disagreement.
pub fn disputed(conn: &mut DbConn, patient: &str) -> Result<Vec<AmendmentRow>, StoreError> {
    // The selection names its backend, so each arm builds its own query.
    Ok(on_backend!(conn, c => amendments::table
        .filter(amendments::patient_id.eq(patient))
        .filter(amendments::statement_id.is_not_null())
        .select(AmendmentRow::as_select())
        .order(amendments::id.asc())
        .load(c))?)
}
