//! Bulk Data export jobs (`export_jobs`) and the two reads an export walks: the patients who
//! hold consents, and one patient's resources in bounded batches.
//!
//! A job's row is its whole shared state: any instance answers a status request from it, and
//! the worker (on the instance that accepted the job) moves it along. Every transition is a
//! conditional `UPDATE ... WHERE status = 'running'`, so a cancellation, a completion and a
//! stale-heartbeat failure cannot overwrite each other: whichever lands first wins and the
//! others see that nothing was updated.

use diesel::prelude::*;

use super::schema::{export_jobs, resources};
use super::{DbConn, StoreError, write_tx};

/// The job is being worked on.
pub const RUNNING: &str = "running";
/// The files are ready.
pub const COMPLETE: &str = "complete";
/// The job stopped with an error.
pub const FAILED: &str = "failed";
/// The client cancelled the job, or deleted it after completion.
pub const CANCELLED: &str = "cancelled";

/// One export job as stored.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = export_jobs)]
pub struct ExportJobRow {
    /// UUIDv7.
    pub id: String,
    /// The client that started the job; the only one that sees it.
    pub client_id: String,
    /// The study Group's id.
    pub study: String,
    /// The purpose of use of the kick-off token.
    pub purpose: String,
    /// The kick-off URL (the manifest's `request`).
    pub request_url: String,
    /// `_type`, comma-separated; empty for every type.
    pub types: String,
    /// `_since`, microseconds since the epoch.
    pub since_micros: Option<i64>,
    /// [`RUNNING`], [`COMPLETE`], [`FAILED`] or [`CANCELLED`].
    pub status: String,
    /// When the job was accepted (the manifest's `transactionTime`).
    pub transaction_time: i64,
    /// The worker's latest sign of life.
    pub heartbeat: i64,
    /// Candidate patients handled so far.
    pub patients_done: i64,
    /// Candidate patients in all, once counted.
    pub patients_total: Option<i64>,
    /// JSON array of `{"type", "count"}` once complete.
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

/// Stores a new job, unless the client already runs `per_client` live jobs or the gateway
/// runs `overall` (live: running with a heartbeat at or after `live_since`). Returns whether
/// it was stored.
pub fn insert_if_capacity(
    conn: &mut DbConn,
    row: &ExportJobRow,
    live_since: i64,
    per_client: i64,
    overall: i64,
) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        let live = export_jobs::table
            .filter(export_jobs::status.eq(RUNNING))
            .filter(export_jobs::heartbeat.ge(live_since));
        let all: i64 = live.count().get_result(conn)?;
        let mine: i64 = live
            .filter(export_jobs::client_id.eq(&row.client_id))
            .count()
            .get_result(conn)?;
        if all >= overall || mine >= per_client {
            return Ok(false);
        }
        diesel::insert_into(export_jobs::table)
            .values(row)
            .execute(conn)?;
        Ok(true)
    })
}

/// A job of `client_id` (another client's job is `None`, as if it did not exist).
pub fn find(
    conn: &mut DbConn,
    id: &str,
    client_id: &str,
) -> Result<Option<ExportJobRow>, StoreError> {
    Ok(export_jobs::table
        .filter(export_jobs::id.eq(id))
        .filter(export_jobs::client_id.eq(client_id))
        .first::<ExportJobRow>(conn)
        .optional()?)
}

/// The status of a job, whoever owns it (for the worker and the clean-up).
pub fn status_of(conn: &mut DbConn, id: &str) -> Result<Option<String>, StoreError> {
    Ok(export_jobs::table
        .filter(export_jobs::id.eq(id))
        .select(export_jobs::status)
        .first::<String>(conn)
        .optional()?)
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
                .filter(export_jobs::status.eq(RUNNING)),
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
                .filter(export_jobs::status.eq(RUNNING)),
        )
        .set((
            export_jobs::status.eq(COMPLETE),
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
            .filter(export_jobs::status.eq(RUNNING))
            .filter(export_jobs::heartbeat.lt(stale_before.unwrap_or(i64::MAX)));
        Ok(diesel::update(target)
            .set((
                export_jobs::status.eq(FAILED),
                export_jobs::error_code.eq(Some(code)),
                export_jobs::error_message.eq(Some(message)),
                export_jobs::completed.eq(Some(now)),
            ))
            .execute(conn)?
            == 1)
    })
}

/// Cancels (or deletes) a job of `client_id` in any state but cancelled; `false` when there
/// was none.
pub fn cancel(conn: &mut DbConn, id: &str, client_id: &str, now: i64) -> Result<bool, StoreError> {
    write_tx(conn, |conn| {
        Ok(diesel::update(
            export_jobs::table
                .filter(export_jobs::id.eq(id))
                .filter(export_jobs::client_id.eq(client_id))
                .filter(export_jobs::status.ne(CANCELLED)),
        )
        .set((
            export_jobs::status.eq(CANCELLED),
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
            .filter(export_jobs::id.eq_any(chunk.to_vec()))
            .select((export_jobs::id, export_jobs::status, export_jobs::expires))
            .load(conn)?;
        for id in chunk {
            let keep = known.iter().any(|(k, status, expires)| {
                k == id
                    && (status == RUNNING
                        || (status == COMPLETE && expires.is_none_or(|e| e > now)))
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
        query = query.filter(resources::patient_id.gt(after.to_string()));
    }
    let ids: Vec<Option<String>> = query.load(conn)?;
    Ok(ids.into_iter().flatten().collect())
}

/// Which of one patient's resources a page reads.
#[derive(Debug, Clone, Default)]
pub struct PatientPage {
    /// The patient.
    pub patient_id: String,
    /// Only these types, when not empty.
    pub types: Vec<String>,
    /// Only resources updated after this instant (microseconds), when set.
    pub since: Option<i64>,
    /// Keyset paging: only (type, id) after this.
    pub after: Option<(String, String)>,
    /// Most rows returned.
    pub limit: i64,
}

/// One page of a patient's current resources as (type, id, body), ordered by type and id.
pub fn patient_resources(
    conn: &mut DbConn,
    page: &PatientPage,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let mut query = resources::table
        .filter(resources::patient_id.eq(page.patient_id.clone()))
        .select((resources::resource_type, resources::id, resources::body))
        .order((resources::resource_type.asc(), resources::id.asc()))
        .limit(page.limit)
        .into_boxed();
    if !page.types.is_empty() {
        query = query.filter(resources::resource_type.eq_any(page.types.clone()));
    }
    if let Some(since) = page.since {
        query = query.filter(resources::last_updated.gt(since));
    }
    if let Some((ty, id)) = &page.after {
        query = query.filter(
            resources::resource_type
                .gt(ty.clone())
                .or(resources::resource_type
                    .eq(ty.clone())
                    .and(resources::id.gt(id.clone()))),
        );
    }
    Ok(query.load(conn)?)
}
