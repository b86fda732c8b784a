//! Bulk Data export jobs (`export_jobs`) and the batched reads an export walks: the patients
//! who hold consents, their consents and Patient records a page at a time, and their
//! resources in bounded keyset pages across many patients at once.
//!
//! A job's row is its whole shared state: any instance answers a status request from it, and
//! the worker (on the instance that accepted the job) moves it along. Every transition is a
//! conditional `UPDATE ... WHERE status = 'running'`, so a cancellation, a completion and a
//! stale-heartbeat failure cannot overwrite each other: whichever lands first wins and the
//! others see that nothing was updated.

use diesel::prelude::*;

use super::schema::{export_jobs, resources};
use super::{DbConn, StoreError, write_tx};

/// Where a job is in its life. Stored as text; [`JobStatus::as_str`] and
/// [`JobStatus::parse`] are the only places the words appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobStatus {
    /// The worker is on it.
    Running,
    /// The files are ready.
    Complete,
    /// It stopped with an error (code and message on the row).
    Failed,
    /// The client cancelled it, or deleted it after completion.
    Cancelled,
}

impl JobStatus {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            JobStatus::Running => "running",
            JobStatus::Complete => "complete",
            JobStatus::Failed => "failed",
            JobStatus::Cancelled => "cancelled",
        }
    }

    /// The status a stored word names.
    pub fn parse(text: &str) -> Option<JobStatus> {
        [
            JobStatus::Running,
            JobStatus::Complete,
            JobStatus::Failed,
            JobStatus::Cancelled,
        ]
        .into_iter()
        .find(|s| s.as_str() == text)
    }
}

/// Who owns a job: a recipient client (a study's export) or a person (their own copy).
/// Stored as text; [`OwnerKind::as_str`] is the only place the words appear.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OwnerKind {
    /// A recipient client; the job's `client_id` is the client's id.
    Client,
    /// A person; the job's `client_id` is `Patient/{id}` or `RelatedPerson/{id}`.
    Person,
}

impl OwnerKind {
    /// The stored word.
    pub fn as_str(self) -> &'static str {
        match self {
            OwnerKind::Client => "client",
            OwnerKind::Person => "person",
        }
    }

    /// The kind a stored word names.
    pub fn parse(text: &str) -> Option<OwnerKind> {
        [OwnerKind::Client, OwnerKind::Person]
            .into_iter()
            .find(|k| k.as_str() == text)
    }
}

/// One export job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = export_jobs)]
struct Row {
    id: String,
    client_id: String,
    study: String,
    purpose: String,
    request_url: String,
    types: String,
    since_micros: Option<i64>,
    status: String,
    transaction_time: i64,
    heartbeat: i64,
    patients_done: i64,
    patients_total: Option<i64>,
    output_files: Option<String>,
    error_code: Option<String>,
    error_message: Option<String>,
    completed: Option<i64>,
    expires: Option<i64>,
    owner_kind: String,
}

/// One export job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportJobRow {
    /// UUIDv7.
    pub id: String,
    /// Whether a client or a person owns the job.
    pub owner_kind: OwnerKind,
    /// The owner's key: the client that started the job, or the person (`Patient/{id}`,
    /// `RelatedPerson/{id}`); the only one that sees it.
    pub client_id: String,
    /// The study Group's id; for a person's job, the id of the patient exported.
    pub study: String,
    /// The purpose of use of the kick-off token.
    pub purpose: String,
    /// The kick-off URL (the manifest's `request`).
    pub request_url: String,
    /// `_type`, comma-separated; empty for every type.
    pub types: String,
    /// `_since`, microseconds since the epoch.
    pub since_micros: Option<i64>,
    /// Where the job is.
    pub status: JobStatus,
    /// When the job was accepted (the manifest's `transactionTime`).
    pub transaction_time: i64,
    /// The worker's latest sign of life.
    pub heartbeat: i64,
    /// Candidate patients handled so far.
    pub patients_done: i64,
    /// Candidate patients in all, once counted.
    pub patients_total: Option<i64>,
    /// The files of a complete job (JSON; its shape belongs to `export::files`).
    pub output_files: Option<String>,
    /// A stable code once failed.
    pub error_code: Option<String>,
    /// A client-safe message once failed.
    pub error_message: Option<String>,
    /// When the job completed.
    pub completed: Option<i64>,
    /// When the files stop being served.
    pub expires: Option<i64>,
}

impl From<&ExportJobRow> for Row {
    fn from(j: &ExportJobRow) -> Row {
        Row {
            id: j.id.clone(),
            client_id: j.client_id.clone(),
            study: j.study.clone(),
            purpose: j.purpose.clone(),
            request_url: j.request_url.clone(),
            types: j.types.clone(),
            since_micros: j.since_micros,
            status: j.status.as_str().to_string(),
            transaction_time: j.transaction_time,
            heartbeat: j.heartbeat,
            patients_done: j.patients_done,
            patients_total: j.patients_total,
            output_files: j.output_files.clone(),
            error_code: j.error_code.clone(),
            error_message: j.error_message.clone(),
            completed: j.completed,
            expires: j.expires,
            owner_kind: j.owner_kind.as_str().to_string(),
        }
    }
}

impl TryFrom<Row> for ExportJobRow {
    type Error = StoreError;

    fn try_from(r: Row) -> Result<ExportJobRow, StoreError> {
        let status = JobStatus::parse(&r.status)
            .ok_or_else(|| StoreError::Task(format!("export job {} has no known status", r.id)))?;
        let owner_kind = OwnerKind::parse(&r.owner_kind)
            .ok_or_else(|| StoreError::Task(format!("export job {} has no known owner", r.id)))?;
        Ok(ExportJobRow {
            owner_kind,
            id: r.id,
            client_id: r.client_id,
            study: r.study,
            purpose: r.purpose,
            request_url: r.request_url,
            types: r.types,
            since_micros: r.since_micros,
            status,
            transaction_time: r.transaction_time,
            heartbeat: r.heartbeat,
            patients_done: r.patients_done,
            patients_total: r.patients_total,
            output_files: r.output_files,
            error_code: r.error_code,
            error_message: r.error_message,
            completed: r.completed,
            expires: r.expires,
        })
    }
}

fn running() -> &'static str {
    JobStatus::Running.as_str()
}

/// Stores a new job, unless the client already runs `per_client` live jobs or the gateway
/// runs `overall` (live: running with a heartbeat at or after `live_since`). Returns whether
/// it was stored.
pub fn insert_if_capacity(
    conn: &mut DbConn,
    job: &ExportJobRow,
    live_since: i64,
    per_client: i64,
    overall: i64,
) -> Result<bool, StoreError> {
    let row = Row::from(job);
    write_tx(conn, |conn| {
        let live = export_jobs::table
            .filter(export_jobs::status.eq(running()))
            .filter(export_jobs::heartbeat.ge(live_since));
        let all: i64 = live.count().get_result(conn)?;
        let mine: i64 = live
            .filter(export_jobs::owner_kind.eq(&row.owner_kind))
            .filter(export_jobs::client_id.eq(&row.client_id))
            .count()
            .get_result(conn)?;
        if all >= overall || mine >= per_client {
            return Ok(false);
        }
        diesel::insert_into(export_jobs::table)
            .values(&row)
            .execute(conn)?;
        Ok(true)
    })
}

/// A job of the owner `(kind, key)` (anyone else's job is `None`, as if it did not exist).
pub fn find(
    conn: &mut DbConn,
    id: &str,
    owner: (OwnerKind, &str),
) -> Result<Option<ExportJobRow>, StoreError> {
    export_jobs::table
        .filter(export_jobs::id.eq(id))
        .filter(export_jobs::owner_kind.eq(owner.0.as_str()))
        .filter(export_jobs::client_id.eq(owner.1))
        .first::<Row>(conn)
        .optional()?
        .map(ExportJobRow::try_from)
        .transpose()
}

/// Records progress and a heartbeat; `false` when the job is no longer running (cancelled,
/// or failed by a stale-heartbeat check), which tells the worker to stop.
pub fn beat(
    conn: &mut DbConn,
    id: &str,
    now: i64,
    done: i64,
    total: Option<i64>,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        Ok(diesel::update(
            export_jobs::table
                .filter(export_jobs::id.eq(id))
                .filter(export_jobs::status.eq(running())),
        )
        .set((
            export_jobs::heartbeat.eq(now),
            export_jobs::patients_done.eq(done),
            export_jobs::patients_total.eq(total),
        ))
        .execute(conn)?
            == 1)
    })
}

/// Marks a running job complete; `false` when it was no longer running.
pub fn complete(
    conn: &mut DbConn,
    id: &str,
    output_files: &str,
    now: i64,
    expires: i64,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        Ok(diesel::update(
            export_jobs::table
                .filter(export_jobs::id.eq(id))
                .filter(export_jobs::status.eq(running())),
        )
        .set((
            export_jobs::status.eq(JobStatus::Complete.as_str()),
            export_jobs::heartbeat.eq(now),
            export_jobs::output_files.eq(Some(output_files)),
            export_jobs::completed.eq(Some(now)),
            export_jobs::expires.eq(Some(expires)),
        ))
        .execute(conn)?
            == 1)
    })
}

/// Marks a running job failed; `false` when it was no longer running. With `stale_before`,
/// only when its heartbeat is older than that (the worker is presumed dead).
pub fn fail(
    conn: &mut DbConn,
    id: &str,
    code: &str,
    message: &str,
    now: i64,
    stale_before: Option<i64>,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let target = export_jobs::table
            .filter(export_jobs::id.eq(id))
            .filter(export_jobs::status.eq(running()))
            .filter(export_jobs::heartbeat.lt(stale_before.unwrap_or(i64::MAX)));
        Ok(diesel::update(target)
            .set((
                export_jobs::status.eq(JobStatus::Failed.as_str()),
                export_jobs::error_code.eq(Some(code)),
                export_jobs::error_message.eq(Some(message)),
                export_jobs::completed.eq(Some(now)),
            ))
            .execute(conn)?
            == 1)
    })
}

/// Cancels (or deletes) a job of the owner `(kind, key)` in any state but cancelled;
/// `false` when there was none.
pub fn cancel(
    conn: &mut DbConn,
    id: &str,
    owner: (OwnerKind, &str),
    now: i64,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        Ok(diesel::update(
            export_jobs::table
                .filter(export_jobs::id.eq(id))
                .filter(export_jobs::owner_kind.eq(owner.0.as_str()))
                .filter(export_jobs::client_id.eq(owner.1))
                .filter(export_jobs::status.ne(JobStatus::Cancelled.as_str())),
        )
        .set((
            export_jobs::status.eq(JobStatus::Cancelled.as_str()),
            export_jobs::completed.eq(Some(now)),
        ))
        .execute(conn)?
            == 1)
    })
}

/// Of `ids`, those whose files may be removed: unknown, cancelled, failed, or expired.
pub fn removable(conn: &mut DbConn, ids: &[String], now: i64) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        let known: Vec<(String, String, Option<i64>)> = export_jobs::table
            .filter(export_jobs::id.eq_any(chunk))
            .select((export_jobs::id, export_jobs::status, export_jobs::expires))
            .load(conn)?;
        for id in chunk {
            let keep = known.iter().any(|(k, status, expires)| {
                k == id
                    && match JobStatus::parse(status) {
                        Some(JobStatus::Running) => true,
                        Some(JobStatus::Complete) => expires.is_none_or(|e| e > now),
                        _ => false,
                    }
            });
            if !keep {
                out.push(id.clone());
            }
        }
    }
    Ok(out)
}

/// How many distinct patients own Consent resources.
pub fn consenting_patient_count(conn: &mut DbConn) -> Result<i64, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq("Consent"))
        .filter(resources::patient_id.is_not_null())
        .select(diesel::dsl::count(resources::patient_id).aggregate_distinct())
        .get_result(conn)?)
}

/// The next `limit` distinct patients owning Consent resources, in id order, after `after`.
pub fn consenting_patients(
    conn: &mut DbConn,
    after: Option<&str>,
    limit: i64,
) -> Result<Vec<String>, StoreError> {
    let mut query = resources::table
        .filter(resources::resource_type.eq("Consent"))
        .filter(resources::patient_id.is_not_null())
        .select(resources::patient_id)
        .distinct()
        .order(resources::patient_id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(after) = after {
        query = query.filter(resources::patient_id.gt(after));
    }
    let ids: Vec<Option<String>> = query.load(conn)?;
    Ok(ids.into_iter().flatten().collect())
}

/// A stored resource as an export reads it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct StoredResource {
    /// The patient it belongs to.
    pub patient_id: String,
    /// Its type.
    pub resource_type: String,
    /// Its id.
    pub id: String,
    /// When its current version was stored (microseconds).
    pub last_updated: i64,
    /// The stored JSON.
    pub body: String,
}

/// The current resources of `resource_type` owned by `patients`, in (patient, id) order:
/// their consents, their Patient records. One query for the whole page of patients.
pub fn of_type_for(
    conn: &mut DbConn,
    resource_type: &str,
    patients: &[String],
) -> Result<Vec<StoredResource>, StoreError> {
    if patients.is_empty() {
        return Ok(Vec::new());
    }
    Ok(resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::patient_id.eq_any(patients))
        .select((
            resources::patient_id.assume_not_null(),
            resources::resource_type,
            resources::id,
            resources::last_updated,
            resources::body,
        ))
        .order((resources::patient_id.asc(), resources::id.asc()))
        .load(conn)?)
}

/// Which resources of a page of patients one read returns.
#[derive(Debug, Clone, Default)]
pub struct ResourcePage {
    /// The patients.
    pub patients: Vec<String>,
    /// Only these types, when not empty.
    pub types: Vec<String>,
    /// Never these types (read apart: the Patient records).
    pub except: Vec<String>,
    /// Only resources updated after this instant (microseconds), when set.
    pub since: Option<i64>,
    /// Keyset paging: only (patient, type, id) after this.
    pub after: Option<(String, String, String)>,
    /// Most rows returned.
    pub limit: i64,
}

/// One page of the current resources of many patients, ordered by (patient, type, id): one
/// query however many patients the page holds.
pub fn resources_of(
    conn: &mut DbConn,
    page: &ResourcePage,
) -> Result<Vec<StoredResource>, StoreError> {
    if page.patients.is_empty() || page.limit <= 0 {
        return Ok(Vec::new());
    }
    let mut query = resources::table
        .filter(resources::patient_id.eq_any(&page.patients))
        .select((
            resources::patient_id.assume_not_null(),
            resources::resource_type,
            resources::id,
            resources::last_updated,
            resources::body,
        ))
        .order((
            resources::patient_id.asc(),
            resources::resource_type.asc(),
            resources::id.asc(),
        ))
        .limit(page.limit)
        .into_boxed();
    if !page.types.is_empty() {
        query = query.filter(resources::resource_type.eq_any(&page.types));
    }
    if !page.except.is_empty() {
        query = query.filter(resources::resource_type.ne_all(&page.except));
    }
    if let Some(since) = page.since {
        query = query.filter(resources::last_updated.gt(since));
    }
    if let Some((patient, ty, id)) = &page.after {
        query = query.filter(
            resources::patient_id
                .gt(patient)
                .or(resources::patient_id
                    .eq(patient)
                    .and(resources::resource_type.gt(ty)))
                .or(resources::patient_id
                    .eq(patient)
                    .and(resources::resource_type.eq(ty))
                    .and(resources::id.gt(id))),
        );
    }
    Ok(query.load(conn)?)
}
