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
//! A client's entries and those recorded in a time range are found the same way, under the
//! same cursor, through a summary of the log in blocks (`audit_blocks`: runs of at most
//! [`BLOCK_SEQS`] sequences, each with the earliest and latest time recorded in it;
//! `audit_block_clients`: which clients have an entry in which block). A reader scans the
//! blocks that can hold a match, newest first. Two indexes on `audit_entries` did this
//! before; appended in key order at every commit, SQLite rebalanced each at its right edge
//! over and over, six of a commit's sixteen pages, and indexes kept here entry by entry made
//! the writer's index step, which holds back every commit while it runs, twice as long
//! (`docs/PERFORMANCE.md`, "Seventeenth step"). A block costs a row, and a row per client in
//! it, whatever its size.
//!
//! The index is derived from the entries and never the record: an indexed row whose entry
//! no longer names the patient (a tampered log, which verification reports) is not shown.

use diesel::prelude::*;

use super::audit::{EntryFilter, EntryRow};
use super::schema::{
    audit_block_clients, audit_blocks, audit_entries, audit_patient_entries, audit_patient_index,
    audit_patient_notices, notification_reads,
};
use super::{DbConn, StoreError};

/// Rows inserted per statement: one statement parsed per chunk, not per row.
const INSERT_CHUNK: usize = 256;

/// The most sequences one block of `audit_blocks` spans, from a multiple of it: a reader
/// asking for a client's entries or a time range reads whole blocks that can hold a match.
/// Migration `2026-12-05-000065` cut the log already written the same way.
pub const BLOCK_SEQS: i64 = 4_096;

/// Blocks looked up per statement while a reader scans them (a few in tests, so that
/// their small logs take several lookups).
const BLOCKS_PER_READ: i64 = if cfg!(test) { 3 } else { 64 };

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

/// The log's committed size, as the head states it ([`super::audit::size`]): every entry
/// below it has committed (appends commit in sequence order under the head's lock on
/// PostgreSQL, the database's write lock on SQLite), so none is passed over.
fn committed_size(conn: &mut DbConn) -> Result<i64, StoreError> {
    Ok(i64::try_from(super::audit::size(conn)?).unwrap_or(i64::MAX))
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
    file(conn, &keys, from, to)?;
    Ok(to - from)
}

/// Adds `keys`, the entries of the sequences `[from, to)` as the audit writer committed
/// them, when the cursor is at `from` and the log has reached `to`, and moves the cursor to
/// `to`, in the caller's write transaction; false, with nothing written,
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
    file(conn, keys, from, to)?;
    Ok(true)
}

/// Files `keys`, the entries of the sequences `[from, to)`: in the patient index in its key
/// order, so each of its leaves is visited once, and in the blocks they fall in; and moves
/// the cursor to `to`.
fn file(conn: &mut DbConn, keys: &[IndexKey], from: i64, to: i64) -> Result<(), StoreError> {
    let mut entries: Vec<(String, i64)> = keys
        .iter()
        .filter_map(|k| Some((k.patient_id.clone()?, k.seq)))
        .collect();
    entries.sort_unstable();
    let mut notices: Vec<(String, i64, i64)> = keys
        .iter()
        .filter(|k| k.notice)
        .filter_map(|k| Some((k.patient_id.clone()?, k.recorded, k.seq)))
        .collect();
    notices.sort_unstable();
    insert_entries(conn, &entries)?;
    insert_notices(conn, &notices)?;
    insert_blocks(conn, &blocks(keys, from, to))?;
    diesel::update(audit_patient_index::table.filter(audit_patient_index::id.eq(1)))
        .set(audit_patient_index::next_seq.eq(to))
        .execute(conn)?;
    Ok(())
}

/// One block of `audit_blocks` as filed: its end, its time span and its clients.
#[derive(Debug)]
struct Block {
    end: i64,
    earliest: i64,
    latest: i64,
    clients: std::collections::BTreeSet<String>,
}

/// The blocks of `keys`, the entries of `[from, to)`, by their first sequence: cut at the
/// multiples of [`BLOCK_SEQS`] and at `from` and `to`.
fn blocks(keys: &[IndexKey], from: i64, to: i64) -> std::collections::BTreeMap<i64, Block> {
    let mut blocks = std::collections::BTreeMap::new();
    for k in keys {
        let aligned = k.seq - k.seq.rem_euclid(BLOCK_SEQS);
        let block = blocks.entry(aligned.max(from)).or_insert_with(|| Block {
            end: aligned.saturating_add(BLOCK_SEQS).min(to),
            earliest: k.recorded,
            latest: k.recorded,
            clients: Default::default(),
        });
        block.earliest = block.earliest.min(k.recorded);
        block.latest = block.latest.max(k.recorded);
        if !block.clients.contains(&k.client_id) {
            block.clients.insert(k.client_id.clone());
        }
    }
    blocks
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

fn insert_blocks(
    conn: &mut DbConn,
    blocks: &std::collections::BTreeMap<i64, Block>,
) -> Result<(), StoreError> {
    use audit_block_clients as c;
    use audit_blocks as t;
    let spans: Vec<_> = blocks.iter().collect();
    insert_chunks!(conn, t::table, spans, |(first, b)| (
        t::first_seq.eq(**first),
        t::end_seq.eq(b.end),
        t::earliest.eq(b.earliest),
        t::latest.eq(b.latest)
    ));
    let mut clients: Vec<(&String, i64)> = blocks
        .iter()
        .flat_map(|(first, b)| b.clients.iter().map(|client| (client, *first)))
        .collect();
    clients.sort_unstable();
    insert_chunks!(conn, c::table, clients, |(client, first)| (
        c::client_id.eq(*client),
        c::first_seq.eq(*first)
    ));
    Ok(())
}

/// The entries matching `f` (about `patient` when given; `f`'s own patient is not looked
/// at), newest (highest sequence) first, at most `f.limit`: the tail's from the table, then
/// `indexed`'s, asked for at most the rest of them below the cursor (and below
/// `f.before_seq`).
fn tail_then_indexed(
    conn: &mut DbConn,
    patient: Option<&str>,
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
        if let Some(patient) = patient {
            tail = tail.filter(audit_entries::patient_id.eq(patient.to_string()));
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
    tail_then_indexed(conn, Some(patient), f, |conn, below, rest| {
        let indexed = audit_patient_entries::table
            .inner_join(audit_entries::table)
            .filter(audit_patient_entries::patient_id.eq(patient.to_string()))
            .filter(audit_patient_entries::seq.lt(below))
            .filter(audit_entries::patient_id.eq(patient.to_string()))
            .order(audit_patient_entries::seq.desc())
            .limit(rest)
            .select(audit_entries::all_columns)
            .into_boxed();
        Ok(entry_filters!(indexed, f).load::<EntryRow>(conn)?)
    })
}

/// The entries matching `f` about any patient, by `f.client_id` or recorded in
/// `f.since..=f.until` (at least one given), newest (highest sequence) first, at most
/// `f.limit`: the tail's from the table, then below the cursor, block by block, newest
/// first, those of the blocks that can hold one (naming the client, their time span meeting
/// the range); `f`'s patient is not looked at.
pub fn block_entries(conn: &mut DbConn, f: &EntryFilter) -> Result<Vec<EntryRow>, StoreError> {
    tail_then_indexed(conn, None, f, |conn, below, rest| {
        let mut found: Vec<EntryRow> = Vec::new();
        let mut upto = below;
        loop {
            let blocks = candidate_blocks(conn, f, upto)?;
            for &(first, end) in &blocks {
                let need = rest - found.len() as i64;
                if need <= 0 {
                    return Ok(found);
                }
                let scan = audit_entries::table
                    .filter(audit_entries::seq.ge(first))
                    .filter(audit_entries::seq.lt(end.min(below)))
                    .order(audit_entries::seq.desc())
                    .limit(need)
                    .into_boxed();
                found.extend(entry_filters!(scan, f).load::<EntryRow>(conn)?);
            }
            match blocks.last() {
                Some(&(first, _)) if blocks.len() as i64 == BLOCKS_PER_READ => upto = first,
                _ => return Ok(found),
            }
        }
    })
}

/// The next [`BLOCKS_PER_READ`] blocks starting below `upto` that can hold an entry matching
/// `f`'s client and time range, newest first: `(first_seq, end_seq)`.
fn candidate_blocks(
    conn: &mut DbConn,
    f: &EntryFilter,
    upto: i64,
) -> Result<Vec<(i64, i64)>, StoreError> {
    let mut blocks = audit_blocks::table
        .filter(audit_blocks::first_seq.lt(upto))
        .order(audit_blocks::first_seq.desc())
        .limit(BLOCKS_PER_READ)
        .select((audit_blocks::first_seq, audit_blocks::end_seq))
        .into_boxed();
    if let Some(since) = f.since {
        blocks = blocks.filter(audit_blocks::latest.ge(since));
    }
    if let Some(until) = f.until {
        blocks = blocks.filter(audit_blocks::earliest.le(until));
    }
    if let Some(client) = &f.client_id {
        let named = audit_block_clients::table
            .filter(audit_block_clients::client_id.eq(client.clone()))
            .select(audit_block_clients::first_seq);
        blocks = blocks.filter(audit_blocks::first_seq.eq_any(named));
    }
    Ok(blocks.load(conn)?)
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
pub(crate) mod tests;
