//! Rows of access requests: a recipient asks a patient for access, the patient approves or
//! declines. A request whose identifier matched no single Patient is stored `unmatched`, with
//! no patient, and is listed to operators only.
//!
//! A decision is one conditional `UPDATE ... WHERE status = 'pending'` ([`decide`]), so of
//! two concurrent approvals (on any instance) exactly one wins; call it in the transaction
//! that stores what the decision creates (the Consent), so both commit or neither does.

use diesel::prelude::*;

use super::schema::{access_requests, clients};
use super::{DbConn, StoreError};

/// Where a request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestStatus {
    /// Waiting for the patient.
    Pending,
    /// The patient approved; a Consent was created.
    Approved,
    /// The patient declined.
    Declined,
    /// The identifier matched no Patient, or several; nobody but an operator sees it.
    Unmatched,
}

impl RequestStatus {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Approved => "approved",
            Self::Declined => "declined",
            Self::Unmatched => "unmatched",
        }
    }

    /// The status of a stored code.
    pub fn parse(code: &str) -> Option<RequestStatus> {
        Some(match code {
            "pending" => Self::Pending,
            "approved" => Self::Approved,
            "declined" => Self::Declined,
            "unmatched" => Self::Unmatched,
            _ => return None,
        })
    }
}

/// One stored request.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = access_requests)]
pub struct AccessRequestRow {
    /// UUIDv7, time-ordered; the listing's cursor.
    pub id: String,
    /// The requesting client.
    pub client_id: String,
    /// The matched Patient; `None` when unmatched.
    pub patient_id: Option<String>,
    /// A [`RequestStatus`] code.
    pub status: String,
    /// The identifier's system, as sent.
    pub identifier_system: String,
    /// The identifier's value, as sent.
    pub identifier_value: String,
    /// The purpose of use asked for (v3 ActReason code).
    pub purpose: String,
    /// JSON array of FHIR resource types.
    pub data_classes: String,
    /// Start of the requested data period (FHIR date or dateTime).
    pub period_start: Option<String>,
    /// End of the requested data period.
    pub period_end: Option<String>,
    /// The recipient's free text.
    pub reason: String,
    /// When it was made, microseconds since the epoch.
    pub created: i64,
    /// When it was approved or declined.
    pub decided_at: Option<i64>,
    /// `patient` or `operator`.
    pub decided_by: Option<String>,
    /// The Consent created on approval.
    pub consent_id: Option<String>,
}

impl std::fmt::Debug for AccessRequestRow {
    /// Leaves out the identifier and the reason: patient data and free text.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRequestRow")
            .field("id", &self.id)
            .field("client_id", &self.client_id)
            .field("patient_id", &self.patient_id)
            .field("status", &self.status)
            .field("purpose", &self.purpose)
            .field("consent_id", &self.consent_id)
            .finish_non_exhaustive()
    }
}

/// What a listing shows of the requesting client.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct RequesterRow {
    /// Display name.
    pub name: String,
    /// Organisation.
    pub organization: String,
    /// Role.
    pub role: String,
}

/// A request with its client.
pub type Listed = (AccessRequestRow, RequesterRow);

/// Stores a new request. Call inside the transaction that also enqueues its notification.
pub fn insert(conn: &mut DbConn, row: &AccessRequestRow) -> Result<(), StoreError> {
    diesel::insert_into(access_requests::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// One request with its client.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<Listed>, StoreError> {
    Ok(access_requests::table
        .inner_join(clients::table)
        .filter(access_requests::id.eq(id))
        .select((
            AccessRequestRow::as_select(),
            (clients::name, clients::organization, clients::role),
        ))
        .first::<Listed>(conn)
        .optional()?)
}

/// A page of requests.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    /// Only this patient's.
    pub patient_id: Option<String>,
    /// Only requests with this status.
    pub status: Option<RequestStatus>,
    /// Keyset paging: ids below this one.
    pub before: Option<String>,
    /// Most rows.
    pub limit: i64,
}

/// Requests, newest first.
pub fn list(conn: &mut DbConn, q: &ListQuery) -> Result<Vec<Listed>, StoreError> {
    let mut query = access_requests::table
        .inner_join(clients::table)
        .select((
            AccessRequestRow::as_select(),
            (clients::name, clients::organization, clients::role),
        ))
        .order(access_requests::id.desc())
        .limit(q.limit)
        .into_boxed();
    if let Some(patient) = &q.patient_id {
        query = query.filter(access_requests::patient_id.eq(patient.clone()));
    }
    if let Some(status) = q.status {
        query = query.filter(access_requests::status.eq(status.as_str()));
    }
    if let Some(before) = &q.before {
        query = query.filter(access_requests::id.lt(before.clone()));
    }
    Ok(query.load::<Listed>(conn)?)
}

/// The outcome of a pending request.
#[derive(Debug, Clone)]
pub struct Decided<'a> {
    /// The request.
    pub id: &'a str,
    /// [`RequestStatus::Approved`] or [`RequestStatus::Declined`].
    pub status: RequestStatus,
    /// When, microseconds since the epoch.
    pub at: i64,
    /// `patient` or `operator`.
    pub by: &'a str,
    /// The Consent created, on approval.
    pub consent_id: Option<&'a str>,
}

/// Records the outcome of a request still pending; `false` when it was not pending (already
/// decided, perhaps concurrently on another instance), and then nothing changes.
pub fn decide(conn: &mut DbConn, d: &Decided<'_>) -> Result<bool, StoreError> {
    let changed = diesel::update(
        access_requests::table
            .filter(access_requests::id.eq(d.id))
            .filter(access_requests::status.eq(RequestStatus::Pending.as_str())),
    )
    .set((
        access_requests::status.eq(d.status.as_str()),
        access_requests::decided_at.eq(Some(d.at)),
        access_requests::decided_by.eq(Some(d.by)),
        access_requests::consent_id.eq(d.consent_id),
    ))
    .execute(conn)?;
    Ok(changed == 1)
}
