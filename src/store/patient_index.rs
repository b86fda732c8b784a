//! The patient index of the audit log: which entries are about a patient, and which of those
//! call for a notification, kept a step behind the log's commits; and with it, the log's
//! entries by client and by time.
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
//! The indexes by client and by time (`audit_client_entries`, `audit_time_entries`) are kept
//! the same way, under the same cursor, for the same reason: on `audit_entries` they were
//! appended in key order at every commit, and SQLite rebalances an index's right edge over
//! and over when it is filled that way (a third of a commit's pages; `docs/PERFORMANCE.md`,
//! "Seventeenth step"). Filed many commits at a time, each leaf is written about once.
//!
//! The index is derived from the entries and never the record: an indexed row whose entry
//! no longer names the patient (a tampered log, which verification reports) is not shown.

use diesel::prelude::*;

use super::audit::{EntryFilter, EntryRow};
use super::schema::{
    audit_client_entries, audit_entries, audit_head, audit_patient_entries, audit_patient_index,
    audit_patient_notices, audit_time_entries, notification_reads,
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

/// An entry, as the indexes file it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexKey {
    /// The entry's sequence.
    pub seq: i64,
    /// When it was recorded (micros): the time index's order, and the feed's.
    pub recorded: i64,
    /// The client that acted.
    pub client_id: String,
    /// The patient it is about, if any.
    pub patient_id: Option<String>,
    /// Whether it calls for a notification.
    pub notice: bool,
}

impl IndexKey {
    /// The key of a stored entry.
    pub fn of(row: &EntryRow) -> IndexKey {
        IndexKey {
            seq: row.seq,
            recorded: row.recorded,
            client_id: row.client_id.clone(),
            patient_id: row.patient_id.clone(),
            notice: row.notice.is_some(),
        }
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
    let found: Vec<(i64, i64, String, Option<String>, bool)> = audit_entries::table
        .filter(audit_entries::seq.ge(from))
        .filter(audit_entries::seq.lt(to))
        .select((
            audit_entries::seq,
            audit_entries::recorded,
            audit_entries::client_id,
            audit_entries::patient_id,
            audit_entries::notice.is_not_null(),
        ))
        .load(conn)?;
    let keys: Vec<IndexKey> = found
        .into_iter()
        .map(|(seq, recorded, client_id, patient_id, notice)| IndexKey {
            seq,
            recorded,
            client_id,
            patient_id,
            notice,
        })
        .collect();
    file(conn, &keys, to)?;
    Ok(to - from)
}

/// Adds `keys`, the entries of the sequences `[from, to)` as the audit writer committed them, when the cursor is at `from` and the log has reached `to`, and
/// moves the cursor to `to`, in the caller's write transaction; false, with nothing written,
/// when the cursor is elsewhere (another instance's writer, or an earlier failure), and the
/// entries must be read from the table ([`extend`]) instead. Reading them back would cost
/// the writer's connection its page cache of the pages its commits write.
pub fn extend_with(
    conn: &mut DbConn,
    from: i64,
    to: i64,
    keys: &[IndexKey],
) -> Result<bool, StoreError> {
    if locked_cursor(conn)? != from || committed_size(conn)? < to {
        return Ok(false);
    }
    file(conn, keys, to)?;
    Ok(true)
}

/// Inserts `keys` into each index in that index's key order, so each of its leaves is
/// visited once, and moves the cursor to `to`.
fn file(conn: &mut DbConn, keys: &[IndexKey], to: i64) -> Result<(), StoreError> {
    let sorted = |mut rows: Vec<(String, i64)>| {
        rows.sort_unstable();
        rows
    };
    let about = |k: &IndexKey| k.patient_id.clone().map(|p| (p, k.seq));
    let entries = sorted(keys.iter().filter_map(about).collect());
    let clients = sorted(keys.iter().map(|k| (k.client_id.clone(), k.seq)).collect());
    let mut notices: Vec<(String, i64, i64)> = keys
        .iter()
        .filter(|k| k.notice)
        .filter_map(|k| Some((k.patient_id.clone()?, k.recorded, k.seq)))
        .collect();
    notices.sort_unstable();
    let mut times: Vec<(i64, i64)> = keys.iter().map(|k| (k.recorded, k.seq)).collect();
    times.sort_unstable();
    insert_entries(conn, &entries)?;
    insert_notices(conn, &notices)?;
    insert_clients(conn, &clients)?;
    insert_times(conn, &times)?;
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

/// Inserts `$rows` into `$table`, a chunk per statement (one statement parsed per chunk, not
/// per row), each row made by `$values`; a row already there is kept.
macro_rules! insert_chunks {
    ($conn:expr, $table:expr, $rows:expr, |$row:pat_param| $values:expr) => {{
        for chunk in $rows.chunks(INSERT_CHUNK) {
            let values: Vec<_> = chunk.iter().map(|$row| $values).collect();
            let statement = diesel::insert_into($table)
                .values(values)
                .on_conflict_do_nothing();
            on_backend!($conn, c => statement.execute(c))?;
        }
    }};
}

fn insert_entries(conn: &mut DbConn, rows: &[(String, i64)]) -> Result<(), StoreError> {
    use audit_patient_entries as t;
    insert_chunks!(conn, t::table, rows, |(patient, seq)| (
        t::patient_id.eq(patient),
        t::seq.eq(*seq)
    ));
    Ok(())
}

fn insert_notices(conn: &mut DbConn, rows: &[(String, i64, i64)]) -> Result<(), StoreError> {
    use audit_patient_notices as t;
    insert_chunks!(conn, t::table, rows, |(patient, recorded, seq)| (
        t::patient_id.eq(patient),
        t::recorded.eq(*recorded),
        t::seq.eq(*seq)
    ));
    Ok(())
}

fn insert_clients(conn: &mut DbConn, rows: &[(String, i64)]) -> Result<(), StoreError> {
    use audit_client_entries as t;
    insert_chunks!(conn, t::table, rows, |(client, seq)| (
        t::client_id.eq(client),
        t::seq.eq(*seq)
    ));
    Ok(())
}

fn insert_times(conn: &mut DbConn, rows: &[(i64, i64)]) -> Result<(), StoreError> {
    use audit_time_entries as t;
    insert_chunks!(conn, t::table, rows, |(recorded, seq)| (
        t::recorded.eq(*recorded),
        t::seq.eq(*seq)
    ));
    Ok(())
}

/// The entries matching `f`, newest (highest sequence) first, at most `f.limit`: the tail's
/// from the table (about `f.patient_id` when given), then `indexed`'s, asked for at most the
/// rest of them below the cursor (and below `f.before_seq`).
fn tail_then_indexed(
    conn: &mut DbConn,
    f: &EntryFilter,
    indexed: impl FnOnce(&mut DbConn, i64, i64) -> Result<Vec<EntryRow>, StoreError>,
) -> Result<Vec<EntryRow>, StoreError> {
    let limit = f.limit.max(0);
    let cursor = next_seq(conn)?;
    let below = f.before_seq.unwrap_or(i64::MAX);
    let mut found: Vec<EntryRow> = Vec::new();
    if below > cursor {
        let mut tail = audit_entries::table
            .filter(audit_entries::seq.ge(cursor))
            .filter(audit_entries::seq.lt(below))
            .order(audit_entries::seq.desc())
            .limit(limit)
            .into_boxed();
        if let Some(patient) = &f.patient_id {
            tail = tail.filter(audit_entries::patient_id.eq(patient.clone()));
        }
        found = entry_filters!(tail, f).load(conn)?;
    }
    let rest = limit - found.len() as i64;
    if rest > 0 {
        found.extend(indexed(conn, cursor.min(below), rest)?);
    }
    Ok(found)
}

/// The entries about `patient` matching `f` (whose own patient is not looked at), newest
/// (highest sequence) first, at most `f.limit`: the tail's from the table, then the index's
/// below the cursor.
pub fn patient_entries(
    conn: &mut DbConn,
    patient: &str,
    f: &EntryFilter,
) -> Result<Vec<EntryRow>, StoreError> {
    let f = EntryFilter {
        patient_id: Some(patient.to_string()),
        ..f.clone()
    };
    tail_then_indexed(conn, &f, |conn, below, rest| {
        let indexed = audit_patient_entries::table
            .inner_join(audit_entries::table)
            .filter(audit_patient_entries::patient_id.eq(patient.to_string()))
            .filter(audit_patient_entries::seq.lt(below))
            .filter(audit_entries::patient_id.eq(patient.to_string()))
            .order(audit_patient_entries::seq.desc())
            .limit(rest)
            .select(audit_entries::all_columns)
            .into_boxed();
        Ok(entry_filters!(indexed, &f).load::<EntryRow>(conn)?)
    })
}

/// The entries by `f.client_id` matching `f`, about any patient, newest first, at most
/// `f.limit`: the tail's from the table, then the client index's below the cursor.
pub fn client_entries(
    conn: &mut DbConn,
    client: &str,
    f: &EntryFilter,
) -> Result<Vec<EntryRow>, StoreError> {
    let f = EntryFilter {
        patient_id: None,
        client_id: Some(client.to_string()),
        ..f.clone()
    };
    tail_then_indexed(conn, &f, |conn, below, rest| {
        let indexed = audit_client_entries::table
            .inner_join(audit_entries::table)
            .filter(audit_client_entries::client_id.eq(client.to_string()))
            .filter(audit_client_entries::seq.lt(below))
            .order(audit_client_entries::seq.desc())
            .limit(rest)
            .select(audit_entries::all_columns)
            .into_boxed();
        // The filters check the entry's own client as well.
        Ok(entry_filters!(indexed, &f).load::<EntryRow>(conn)?)
    })
}

/// The entries recorded in `f.since..=f.until` (either end open) matching `f`, about any
/// patient, newest (highest sequence) first, at most `f.limit`: the tail's from the table,
/// then the time index's below the cursor.
pub fn time_entries(conn: &mut DbConn, f: &EntryFilter) -> Result<Vec<EntryRow>, StoreError> {
    let f = EntryFilter {
        patient_id: None,
        ..f.clone()
    };
    tail_then_indexed(conn, &f, |conn, below, rest| {
        let mut indexed = audit_time_entries::table
            .inner_join(audit_entries::table)
            .filter(audit_time_entries::seq.lt(below))
            .order(audit_time_entries::seq.desc())
            .limit(rest)
            .select(audit_entries::all_columns)
            .into_boxed();
        if let Some(since) = f.since {
            indexed = indexed.filter(audit_time_entries::recorded.ge(since));
        }
        if let Some(until) = f.until {
            indexed = indexed.filter(audit_time_entries::recorded.le(until));
        }
        // The filters check the entry's own time as well.
        Ok(entry_filters!(indexed, &f).load::<EntryRow>(conn)?)
    })
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
