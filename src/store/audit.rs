//! Rows of the audit log: the head, entries, tree nodes and checkpoints.

use diesel::prelude::*;

use super::schema::{audit_checkpoints, audit_entries, audit_head, audit_nodes};
use super::{DbConn, StoreError};

/// One stored entry.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = audit_entries)]
// No patient is NULL, not DEFAULT: the insert is then one statement whatever the row holds,
// prepared once per connection (`append`).
#[diesel(treat_none_as_default_value = false)]
pub struct EntryRow {
    /// Sequence (leaf index).
    pub seq: i64,
    /// Microseconds since the epoch.
    pub recorded: i64,
    /// Action code.
    pub action: String,
    /// Outcome code.
    pub outcome: String,
    /// The client that acted.
    pub client_id: String,
    /// The patient concerned.
    pub patient_id: Option<String>,
    /// Canonical bytes (JSON).
    pub body: String,
    /// The kind of notification the entry calls for (`notify::kind_of`), if any: derived
    /// from the body, not part of it or of its leaf hash.
    pub notice: Option<String>,
}

/// A stored checkpoint.
#[derive(Debug, Clone, Queryable, Insertable)]
#[diesel(table_name = audit_checkpoints)]
pub struct CheckpointRow {
    /// Tree size.
    pub size: i64,
    /// Root hash.
    pub root: Vec<u8>,
    /// The signed note.
    pub note: String,
    /// Seconds since the epoch.
    pub signed_at: i64,
}

/// Locks the head row for this transaction and returns the log size. On PostgreSQL the row
/// lock serialises appends of every instance, so sequences are gapless and commit in order;
/// on SQLite the `IMMEDIATE` transaction already holds the database's write lock, and the
/// plain read of [`size`] is all it takes (there `audit_head` is a view of the entries'
/// highest sequence plus one, migration `2026-12-05-000067`).
pub fn lock_head(conn: &mut DbConn) -> Result<u64, StoreError> {
    let size: i64 = match conn {
        DbConn::Postgresql(c) => head_size().for_update().first(c)?,
        DbConn::Sqlite(_) => return size(conn),
    };
    Ok(u64::try_from(size).unwrap_or(0))
}

/// The log size as committed: the head row on PostgreSQL, the entries' highest sequence plus
/// one on SQLite (the `audit_head` view).
pub fn size(conn: &mut DbConn) -> Result<u64, StoreError> {
    let size: i64 = on_backend!(conn, c => head_size().first(c))?;
    Ok(u64::try_from(size).unwrap_or(0))
}

/// The one head row's size: a statement diesel keeps prepared on both backends.
#[diesel::dsl::auto_type(no_type_alias)]
fn head_size() -> _ {
    let head: i32 = 1;
    audit_head::table
        .filter(audit_head::id.eq(head))
        .select(audit_head::size)
}

/// One stored Merkle tree node: its level above the leaves, its index on that level, and
/// its hash. The tree itself is `audit/`'s; this file only keeps the bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeRow {
    /// Height above the leaves.
    pub level: u8,
    /// Position on its level.
    pub index: u64,
    /// The hash bytes.
    pub hash: Vec<u8>,
}

/// The leaf whose append completes node `(level, index)`.
fn last_leaf(level: u8, index: u64) -> i64 {
    let after = index
        .saturating_add(1)
        .checked_shl(u32::from(level))
        .unwrap_or(u64::MAX);
    i64::try_from(after - 1).unwrap_or(i64::MAX)
}

/// Levels a node's key leaves room for: a tree of at most 2^64 leaves has 64 of them.
const LEVELS: i64 = 64;

/// The key of node `(level, index)`: the leaf whose append completes it, then its level.
/// A batch makes its nodes in that order, so they land at the end of the table's b-tree
/// (its rowid on SQLite, where appending at the end is cheap; migrations
/// `2026-12-03-000030` and `2026-12-05-000066`). The nodes completed by leaf `n` and after
/// have keys from `n * 64` on.
fn node_key(level: u8, index: u64) -> i64 {
    last_leaf(level, index)
        .saturating_mul(LEVELS)
        .saturating_add(i64::from(level))
}

/// Inserts the rows of `$rows` (a `Vec`, emptied) into `$table` on SQLite, in order, in
/// multi-row statements of 32, 16, 8, 4, 2 and 1 rows: as many of the largest as fit, then
/// the next. diesel gives an array of rows a static query id, so each count is a statement
/// of its own fixed shape, prepared once per connection and only bound and stepped after
/// (its values must own their data for that, hence the `Vec`).
macro_rules! insert_in_runs {
    ($conn:expr, $table:expr, $rows:expr) => {{
        let mut rows = $rows;
        insert_in_runs!(@run $conn, $table, rows, 32);
        insert_in_runs!(@run $conn, $table, rows, 16);
        insert_in_runs!(@run $conn, $table, rows, 8);
        insert_in_runs!(@run $conn, $table, rows, 4);
        insert_in_runs!(@run $conn, $table, rows, 2);
        insert_in_runs!(@run $conn, $table, rows, 1);
    }};
    (@run $conn:expr, $table:expr, $rows:ident, $n:literal) => {
        while $rows.len() >= $n {
            let run: [_; $n] = $rows
                .drain(..$n)
                .collect::<Vec<_>>()
                .try_into()
                .map_err(|_| StoreError::Task("a run of rows changed its length".into()))?;
            diesel::insert_into($table).values(run).execute($conn)?;
        }
    };
}

/// Writes a batch of entries and the nodes they complete, and on PostgreSQL moves the head.
///
/// On SQLite the rows go in multi-row statements of a few fixed sizes
/// ([`insert_in_runs`]), each prepared once per connection: a statement of the batch's own
/// size had a new shape for each batch size and was parsed again on every commit
/// (`docs/PERFORMANCE.md`, "Fifth step"), and a statement per row paid for a statement's
/// start, its cursor and diesel's binding per row ("Eighteenth step"). SQLite's head is
/// the entries' own highest sequence ([`lock_head`]; migration `2026-12-05-000067`), so
/// there is no head to move. On PostgreSQL a multi-row statement is one round trip for many
/// rows, and the head row is the lock appends are ordered by.
pub fn append(
    conn: &mut DbConn,
    entries: Vec<EntryRow>,
    nodes: Vec<NodeRow>,
    new_size: u64,
) -> Result<(), StoreError> {
    // Each node's hash owned, as SQLite's cached statements need (`insert_in_runs`).
    let node_rows: Vec<_> = nodes
        .into_iter()
        .map(|n| {
            (
                audit_nodes::node_key.eq(node_key(n.level, n.index)),
                audit_nodes::level.eq(i32::from(n.level)),
                audit_nodes::idx.eq(n.index as i64),
                audit_nodes::hash.eq(n.hash),
            )
        })
        .collect();
    match conn {
        DbConn::Sqlite(c) => {
            insert_in_runs!(c, audit_entries::table, entries);
            insert_in_runs!(c, audit_nodes::table, node_rows);
        }
        DbConn::Postgresql(c) => {
            for chunk in entries.chunks(100) {
                diesel::insert_into(audit_entries::table)
                    .values(chunk)
                    .execute(c)?;
            }
            for chunk in node_rows.chunks(300) {
                diesel::insert_into(audit_nodes::table)
                    .values(chunk)
                    .execute(c)?;
            }
            diesel::update(audit_head::table.filter(audit_head::id.eq(1)))
                .set(audit_head::size.eq(new_size as i64))
                .execute(c)?;
        }
    }
    Ok(())
}

/// The hash bytes of tree node `(level, index)`, if stored.
pub fn node(conn: &mut DbConn, level: u8, index: u64) -> Result<Option<Vec<u8>>, StoreError> {
    Ok(audit_nodes::table
        .filter(audit_nodes::node_key.eq(node_key(level, index)))
        .select(audit_nodes::hash)
        .first(conn)
        .optional()?)
}

/// Entries from `from` (inclusive), at most `limit`, in order.
pub fn entries_from(conn: &mut DbConn, from: u64, limit: i64) -> Result<Vec<EntryRow>, StoreError> {
    Ok(audit_entries::table
        .filter(audit_entries::seq.ge(from as i64))
        .order(audit_entries::seq.asc())
        .limit(limit)
        .load(conn)?)
}

/// The newest checkpoint.
pub fn latest_checkpoint(conn: &mut DbConn) -> Result<Option<CheckpointRow>, StoreError> {
    Ok(audit_checkpoints::table
        .order(audit_checkpoints::size.desc())
        .first(conn)
        .optional()?)
}

/// Every checkpoint, oldest first.
pub fn checkpoints(conn: &mut DbConn) -> Result<Vec<CheckpointRow>, StoreError> {
    Ok(audit_checkpoints::table
        .order(audit_checkpoints::size.asc())
        .load(conn)?)
}

/// Stores a checkpoint unless one of that size exists.
pub fn insert_checkpoint(conn: &mut DbConn, row: &CheckpointRow) -> Result<(), StoreError> {
    let exists = audit_checkpoints::table
        .filter(audit_checkpoints::size.eq(row.size))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    if !exists {
        diesel::insert_into(audit_checkpoints::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(())
}

/// Stored leaf hashes (level-0 nodes) from `from`, at most `limit`, in order.
pub fn leaf_hashes(
    conn: &mut DbConn,
    from: u64,
    limit: i64,
) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let first = i64::try_from(from).unwrap_or(i64::MAX);
    Ok(audit_nodes::table
        .filter(audit_nodes::node_key.ge(first.saturating_mul(LEVELS)))
        .filter(audit_nodes::level.eq(0))
        .order(audit_nodes::node_key.asc())
        .limit(limit)
        .select((audit_nodes::idx, audit_nodes::hash))
        .load(conn)?)
}

/// Takes the checkpoint-signer role on PostgreSQL: a session advisory lock, released when
/// the holding connection dies, so another instance takes over. SQLite has one writer
/// process and always grants it.
pub fn try_signer_lock(conn: &mut DbConn) -> Result<bool, StoreError> {
    #[derive(QueryableByName)]
    struct Locked {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        locked: bool,
    }
    match conn {
        DbConn::Postgresql(c) => Ok(diesel::sql_query(
            "SELECT pg_try_advisory_lock(7406411520361) AS locked",
        )
        .get_result::<Locked>(c)?
        .locked),
        DbConn::Sqlite(_) => Ok(true),
    }
}

/// Filters for reading entries back, newest first (the access log, the AuditEvent view).
/// Every filter left empty or `None` matches everything.
#[derive(Debug, Clone, Default)]
pub struct EntryFilter {
    /// Only entries about this patient.
    pub patient_id: Option<String>,
    /// Only entries by this client.
    pub client_id: Option<String>,
    /// Leave out entries by these clients.
    pub exclude_clients: Vec<String>,
    /// Only these actions.
    pub actions: Vec<String>,
    /// Only these outcomes.
    pub outcomes: Vec<String>,
    /// Recorded at or after (micros).
    pub since: Option<i64>,
    /// Recorded at or before (micros, inclusive).
    pub until: Option<i64>,
    /// Keyset paging: sequences below this.
    pub before_seq: Option<i64>,
    /// Most rows.
    pub limit: i64,
}

/// Applies the filters of `f` other than the patient and the paging bound to a boxed query
/// over `audit_entries` (alone or joined), here and in [`super::patient_index`].
macro_rules! entry_filters {
    ($query:expr, $f:expr) => {{
        let mut q = $query;
        let f: &EntryFilter = $f;
        if let Some(client) = &f.client_id {
            q = q.filter(audit_entries::client_id.eq(client.clone()));
        }
        if !f.exclude_clients.is_empty() {
            q = q.filter(audit_entries::client_id.ne_all(f.exclude_clients.clone()));
        }
        if !f.actions.is_empty() {
            q = q.filter(audit_entries::action.eq_any(f.actions.clone()));
        }
        if !f.outcomes.is_empty() {
            q = q.filter(audit_entries::outcome.eq_any(f.outcomes.clone()));
        }
        if let Some(since) = f.since {
            q = q.filter(audit_entries::recorded.ge(since));
        }
        if let Some(until) = f.until {
            q = q.filter(audit_entries::recorded.le(until));
        }
        q
    }};
}

/// Entries matching `f`, newest (highest sequence) first. A patient's entries are found
/// through the patient index and the log's tail ([`super::patient_index`]); without a
/// patient, a client's entries and those recorded in a time range, through the log's blocks
/// kept with it.
pub fn find_entries(conn: &mut DbConn, f: &EntryFilter) -> Result<Vec<EntryRow>, StoreError> {
    use super::patient_index as index;
    if let Some(patient) = &f.patient_id {
        return index::patient_entries(conn, patient, f);
    }
    if f.client_id.is_some() || f.since.is_some() || f.until.is_some() {
        return index::block_entries(conn, f);
    }
    let all = audit_entries::table
        .order(audit_entries::seq.desc())
        .limit(f.limit.max(0))
        .into_boxed();
    let mut q = entry_filters!(all, f);
    if let Some(before) = f.before_seq {
        q = q.filter(audit_entries::seq.lt(before));
    }
    Ok(q.load(conn)?)
}

/// The entry at sequence `seq`.
pub fn entry_at(conn: &mut DbConn, seq: u64) -> Result<Option<EntryRow>, StoreError> {
    let Ok(seq) = i64::try_from(seq) else {
        return Ok(None);
    };
    Ok(audit_entries::table
        .filter(audit_entries::seq.eq(seq))
        .first(conn)
        .optional()?)
}

/// The registered clients with these ids, removed ones included: an accounting of
/// disclosures must still name a recipient after its registration ended.
pub fn clients_named(
    conn: &mut DbConn,
    ids: &[String],
) -> Result<Vec<super::identity::ClientRow>, StoreError> {
    use super::schema::clients;
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(clients::table
        .filter(clients::id.eq_any(ids.to_vec()))
        .load(conn)?)
}

/// Stored nodes of one tree level with indices in `[from, to)`, in index order.
pub fn nodes_in_range(
    conn: &mut DbConn,
    level: u8,
    from: u64,
    to: u64,
) -> Result<Vec<(i64, Vec<u8>)>, StoreError> {
    let (from, to) = (
        i64::try_from(from).unwrap_or(i64::MAX),
        i64::try_from(to).unwrap_or(i64::MAX),
    );
    // The key's range of those nodes (a node's last leaf grows with its index), so that
    // the scan reads the b-tree's stretch of those leaves rather than the whole table.
    let key = |i: i64| node_key(level, u64::try_from(i).unwrap_or(0));
    let (low, high) = (key(from), key(to.saturating_sub(1)));
    Ok(audit_nodes::table
        .filter(audit_nodes::node_key.ge(low))
        .filter(audit_nodes::node_key.le(high))
        .filter(audit_nodes::level.eq(i32::from(level)))
        .filter(audit_nodes::idx.ge(from))
        .filter(audit_nodes::idx.lt(to))
        .order(audit_nodes::idx.asc())
        .select((audit_nodes::idx, audit_nodes::hash))
        .load(conn)?)
}

/// For each tree level stored, the highest node index: a tree of `n` leaves holds node
/// `(level, i)` only for `i < n >> level`, so anything above betrays removed entries.
pub fn highest_node_per_level(conn: &mut DbConn) -> Result<Vec<(i32, i64)>, StoreError> {
    use diesel::dsl::max;
    let rows: Vec<(i32, Option<i64>)> = audit_nodes::table
        .group_by(audit_nodes::level)
        .select((audit_nodes::level, max(audit_nodes::idx)))
        .order(audit_nodes::level.asc())
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(level, idx)| idx.map(|i| (level, i)))
        .collect())
}

/// The highest stored sequence, if any entry is stored.
pub fn highest_sequence(conn: &mut DbConn) -> Result<Option<i64>, StoreError> {
    use diesel::dsl::max;
    Ok(audit_entries::table
        .select(max(audit_entries::seq))
        .first::<Option<i64>>(conn)?)
}

/// Checkpoints with a size in `(after, up_to]`, oldest first, at most `limit`.
pub fn checkpoints_between(
    conn: &mut DbConn,
    after: u64,
    up_to: u64,
    limit: i64,
) -> Result<Vec<CheckpointRow>, StoreError> {
    let (after, up_to) = (
        i64::try_from(after).unwrap_or(i64::MAX),
        i64::try_from(up_to).unwrap_or(i64::MAX),
    );
    Ok(audit_checkpoints::table
        .filter(audit_checkpoints::size.gt(after))
        .filter(audit_checkpoints::size.le(up_to))
        .order(audit_checkpoints::size.asc())
        .limit(limit)
        .load(conn)?)
}
