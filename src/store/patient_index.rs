//! The patient index of the audit log: which entries are about a patient, and which of those
//! call for a notification, kept a step behind the log's commits.
//!
//! Two indexes on `audit_entries` itself made every group commit write, per patient in the
//! batch, a leaf of each: with the entries in flight about 64 patients, most of a commit's
//! pages (`docs/PERFORMANCE.md`, "Twelfth step" and "Fourteenth step"). Instead the audit
//! writer adds many commits' entries at once to two tables of its own ([`extend`]), sorted by
//! patient, so a patient's leaf is written once for all of them, and moves a cursor
//! (`audit_patient_index.next_seq`) in the same transaction. Every entry below the cursor is
//! in the index; the entries from it on, the log's tail, are read from `audit_entries` by
//! sequence. A reader takes the cursor first and asks each part for its side of it, so the
//! answer is complete and without duplicates whatever the indexer does meanwhile, on either
//! backend and at any isolation level: the tail is the table itself, and everything below a
//! cursor once read was indexed in the transaction that moved it.
//!
//! The index is derived from the entries and never the record: an indexed row whose entry
//! no longer names the patient (a tampered log, which verification reports) is not shown.

use diesel::prelude::*;

use super::audit::{EntryFilter, EntryRow};
use super::schema::{
    audit_entries, audit_head, audit_patient_entries, audit_patient_index, audit_patient_notices,
    notification_reads,
};
use super::{DbConn, StoreError};

/// Rows inserted per statement: one statement parsed per chunk, not per row.
const INSERT_CHUNK: usize = 256;

/// The first sequence not yet in the index: entries below it are found through the index,
/// the rest from the table.
pub fn next_seq(conn: &mut DbConn) -> Result<i64, StoreError> {
    let query = audit_patient_index::table
        .filter(audit_patient_index::id.eq(1))
        .select(audit_patient_index::next_seq);
    Ok(on_backend!(conn, c => query.first(c))?)
}

/// An entry about a patient, as the index files it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct IndexKey {
    /// The patient.
    pub patient_id: String,
    /// The entry's sequence.
    pub seq: i64,
    /// When it was recorded (micros), the feed's order.
    pub recorded: i64,
    /// Whether it calls for a notification.
    pub notice: bool,
}

impl IndexKey {
    /// The key of a stored entry, if it is about a patient.
    pub fn of(row: &EntryRow) -> Option<IndexKey> {
        Some(IndexKey {
            patient_id: row.patient_id.clone()?,
            seq: row.seq,
            recorded: row.recorded,
            notice: row.notice.is_some(),
        })
    }
}

/// The cursor, locked for this transaction on PostgreSQL, so two instances' indexers take
/// turns (on SQLite the `IMMEDIATE` transaction holds the write lock already).
fn locked_cursor(conn: &mut DbConn) -> Result<i64, StoreError> {
    match conn {
        DbConn::Postgresql(c) => Ok(audit_patient_index::table
            .filter(audit_patient_index::id.eq(1))
            .select(audit_patient_index::next_seq)
            .for_update()
            .first(c)?),
        DbConn::Sqlite(_) => next_seq(conn),
    }
}

/// The log's committed size, as the head row states it: every entry below it has committed
/// (appends commit in sequence order under the head's lock), so none is passed over.
fn committed_size(conn: &mut DbConn) -> Result<i64, StoreError> {
    let query = audit_head::table
        .filter(audit_head::id.eq(1))
        .select(audit_head::size);
    Ok(on_backend!(conn, c => query.first(c))?)
}

/// Adds the committed entries from the cursor on, at most `limit`, read from the table, and
/// moves the cursor past them, in the caller's write transaction; how many sequences it
/// covered.
pub fn extend(conn: &mut DbConn, limit: i64) -> Result<i64, StoreError> {
    let from = locked_cursor(conn)?;
    let to = committed_size(conn)?.min(from.saturating_add(limit.max(0)));
    if to <= from {
        return Ok(0);
    }
    // The keys' columns only, not the entries' bodies.
    let found: Vec<(Option<String>, i64, i64, bool)> = audit_entries::table
        .filter(audit_entries::seq.ge(from))
        .filter(audit_entries::seq.lt(to))
        .filter(audit_entries::patient_id.is_not_null())
        .select((
            audit_entries::patient_id,
            audit_entries::seq,
            audit_entries::recorded,
            audit_entries::notice.is_not_null(),
        ))
        .load(conn)?;
    let mut keys: Vec<IndexKey> = found
        .into_iter()
        .filter_map(|(patient, seq, recorded, notice)| {
            Some(IndexKey {
                patient_id: patient?,
                seq,
                recorded,
                notice,
            })
        })
        .collect();
    file(conn, &mut keys, to)?;
    Ok(to - from)
}

/// Adds `keys`, the entries about patients among the sequences `[from, to)` as the audit
/// writer committed them, when the cursor is at `from` and the log has reached `to`, and
/// moves the cursor to `to`, in the caller's write transaction; false, with nothing written,
/// when the cursor is elsewhere (another instance's writer, or an earlier failure), and the
/// entries must be read from the table ([`extend`]) instead. Reading them back would cost
/// the writer's connection its page cache of the pages its commits write.
pub fn extend_with(
    conn: &mut DbConn,
    from: i64,
    to: i64,
    keys: &mut [IndexKey],
) -> Result<bool, StoreError> {
    if locked_cursor(conn)? != from || committed_size(conn)? < to {
        return Ok(false);
    }
    file(conn, keys, to)?;
    Ok(true)
}

/// Inserts `keys` in key order, so each leaf of the index is visited once, and moves the
/// cursor to `to`.
fn file(conn: &mut DbConn, keys: &mut [IndexKey], to: i64) -> Result<(), StoreError> {
    keys.sort_unstable();
    let entries: Vec<(String, i64)> = keys.iter().map(|k| (k.patient_id.clone(), k.seq)).collect();
    let mut notices: Vec<(String, i64, i64)> = keys
        .iter()
        .filter(|k| k.notice)
        .map(|k| (k.patient_id.clone(), k.recorded, k.seq))
        .collect();
    notices.sort_unstable();
    insert_entries(conn, &entries)?;
    insert_notices(conn, &notices)?;
    diesel::update(audit_patient_index::table.filter(audit_patient_index::id.eq(1)))
        .set(audit_patient_index::next_seq.eq(to))
        .execute(conn)?;
    Ok(())
}

/// Adds the notice of entry `seq` to the index (the notices of entries written before they
/// were stored with the entries are derived after the fact). Harmless from the cursor on,
/// where readers take the table instead.
pub fn add_notice(
    conn: &mut DbConn,
    patient_id: &str,
    recorded: i64,
    seq: i64,
) -> Result<(), StoreError> {
    insert_notices(conn, &[(patient_id.to_string(), recorded, seq)])
}

fn insert_entries(conn: &mut DbConn, rows: &[(String, i64)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(patient, seq)| {
                (
                    audit_patient_entries::patient_id.eq(patient),
                    audit_patient_entries::seq.eq(*seq),
                )
            })
            .collect();
        let statement = diesel::insert_into(audit_patient_entries::table)
            .values(values)
            .on_conflict_do_nothing();
        on_backend!(conn, c => statement.execute(c))?;
    }
    Ok(())
}

fn insert_notices(conn: &mut DbConn, rows: &[(String, i64, i64)]) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let values: Vec<_> = chunk
            .iter()
            .map(|(patient, recorded, seq)| {
                (
                    audit_patient_notices::patient_id.eq(patient),
                    audit_patient_notices::recorded.eq(*recorded),
                    audit_patient_notices::seq.eq(*seq),
                )
            })
            .collect();
        let statement = diesel::insert_into(audit_patient_notices::table)
            .values(values)
            .on_conflict_do_nothing();
        on_backend!(conn, c => statement.execute(c))?;
    }
    Ok(())
}

/// The entries about `patient` matching `f`, newest (highest sequence) first, at most
/// `f.limit`: the tail's from the table, then the index's below the cursor.
pub fn patient_entries(
    conn: &mut DbConn,
    patient: &str,
    f: &EntryFilter,
) -> Result<Vec<EntryRow>, StoreError> {
    let limit = f.limit.max(0);
    let cursor = next_seq(conn)?;
    let below = f.before_seq.unwrap_or(i64::MAX);
    let mut found: Vec<EntryRow> = Vec::new();
    if below > cursor {
        let tail = audit_entries::table
            .filter(audit_entries::seq.ge(cursor))
            .filter(audit_entries::seq.lt(below))
            .filter(audit_entries::patient_id.eq(patient.to_string()))
            .order(audit_entries::seq.desc())
            .limit(limit)
            .into_boxed();
        found = entry_filters!(tail, f).load(conn)?;
    }
    let rest = limit - found.len() as i64;
    if rest > 0 {
        let indexed = audit_patient_entries::table
            .inner_join(audit_entries::table)
            .filter(audit_patient_entries::patient_id.eq(patient.to_string()))
            .filter(audit_patient_entries::seq.lt(cursor.min(below)))
            .filter(audit_entries::patient_id.eq(patient.to_string()))
            .order(audit_patient_entries::seq.desc())
            .limit(rest)
            .select(audit_entries::all_columns)
            .into_boxed();
        found.extend(entry_filters!(indexed, f).load::<EntryRow>(conn)?);
    }
    Ok(found)
}

/// The entries about `patient` that call for a notification, newest first by `(recorded,
/// seq)`, strictly below `below` when given, at most `limit`; `unread_only` leaves out those
/// the patient has marked read.
pub fn patient_notices(
    conn: &mut DbConn,
    patient: &str,
    below: Option<(i64, i64)>,
    unread_only: bool,
    limit: i64,
) -> Result<Vec<EntryRow>, StoreError> {
    use diesel::dsl::{exists, not};
    let cursor = next_seq(conn)?;
    let mut tail = audit_entries::table
        .filter(audit_entries::seq.ge(cursor))
        .filter(audit_entries::patient_id.eq(patient.to_string()))
        .filter(audit_entries::notice.is_not_null())
        .order((audit_entries::recorded.desc(), audit_entries::seq.desc()))
        .limit(limit)
        .into_boxed();
    let mut indexed = audit_patient_notices::table
        .inner_join(audit_entries::table)
        .filter(audit_patient_notices::patient_id.eq(patient.to_string()))
        .filter(audit_patient_notices::seq.lt(cursor))
        .filter(audit_entries::patient_id.eq(patient.to_string()))
        .filter(audit_entries::notice.is_not_null())
        .order((
            audit_patient_notices::recorded.desc(),
            audit_patient_notices::seq.desc(),
        ))
        .limit(limit)
        .select(audit_entries::all_columns)
        .into_boxed();
    if let Some((recorded, seq)) = below {
        tail = tail.filter(
            audit_entries::recorded
                .lt(recorded)
                .or(audit_entries::recorded
                    .eq(recorded)
                    .and(audit_entries::seq.lt(seq))),
        );
        indexed = indexed.filter(
            audit_patient_notices::recorded
                .lt(recorded)
                .or(audit_patient_notices::recorded
                    .eq(recorded)
                    .and(audit_patient_notices::seq.lt(seq))),
        );
    }
    if unread_only {
        let read = |seq| {
            notification_reads::table
                .filter(notification_reads::patient_id.eq(patient.to_string()))
                .filter(notification_reads::audit_seq.eq(seq))
        };
        tail = tail.filter(not(exists(read(audit_entries::seq))));
        indexed = indexed.filter(not(exists(read(audit_entries::seq))));
    }
    let mut found: Vec<EntryRow> = tail.load(conn)?;
    found.extend(indexed.load::<EntryRow>(conn)?);
    // The two parts' sequences are apart, but their times may interleave by a few
    // milliseconds (an entry is stamped when its request makes it, sequenced when written).
    found.sort_unstable_by_key(|e| std::cmp::Reverse((e.recorded, e.seq)));
    found.truncate(usize::try_from(limit).unwrap_or(0));
    Ok(found)
}

/// How many entries about `patient` call for a notification.
pub fn notice_count(conn: &mut DbConn, patient: &str) -> Result<i64, StoreError> {
    let cursor = next_seq(conn)?;
    let tail: i64 = audit_entries::table
        .filter(audit_entries::seq.ge(cursor))
        .filter(audit_entries::patient_id.eq(patient))
        .filter(audit_entries::notice.is_not_null())
        .count()
        .get_result(conn)?;
    let indexed: i64 = audit_patient_notices::table
        .filter(audit_patient_notices::patient_id.eq(patient))
        .filter(audit_patient_notices::seq.lt(cursor))
        .count()
        .get_result(conn)?;
    Ok(tail + indexed)
}

#[cfg(test)]
mod tests;
