//! `consentgate audit verify`: checks a whole log offline, straight from the database.
//!
//! The walk streams entries in sequence order, [`CHUNK`] at a time, so memory stays flat
//! whatever the log size. For every entry it checks, in this order:
//!
//! 1. the sequences are contiguous from 0 (a gap is a *missing entry*);
//! 2. the stored canonical bytes deserialize into an [`AuditEntry`] whose `sequence` is the
//!    row's sequence (another sequence means *reordered entries*);
//! 3. the bytes are exactly the canonical form of that entry, and the indexed columns
//!    (`recorded`, `action`, `outcome`, `client_id`, `patient_id`, which the access log
//!    filters on) agree with them (*tampered bytes*, *column mismatch*);
//! 4. the leaf hash recomputed from the bytes equals the stored level-0 node, and every
//!    perfect-subtree node the rebuilt tree completes equals the stored node (*tampered
//!    bytes*, *tree mismatch*);
//! 5. every stored checkpoint carries a valid Ed25519 signature by the log key, agrees with
//!    its own row, and commits to the root rebuilt at its size (*bad signature*,
//!    *checkpoint mismatch*).
//!
//! After the walk, the head row, the highest stored sequence, the highest stored tree node
//! of each level and the newest checkpoint must all agree on the log size: anything beyond
//! it means entries were removed from the end.
//!
//! The walk stops at the first problem and names the first sequence that does not match.
//! A problem found only through a checkpoint (an entry and its tree nodes rewritten
//! together) cannot be placed more precisely than between two checkpoints; the report says
//! so. A log whose tail was cut together with its tree nodes and checkpoints looks like a
//! shorter, valid log: only a checkpoint held outside the database (by a witness, a monitor
//! or a patient) can reveal that, through a consistency proof.
//!
//! The file is longer than most because its tests build real logs (in-memory SQLite) and
//! tamper with them in every way the walk must catch; the walk itself is about 450 lines.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{Ed25519KeyPair, KeyPair as _};

use super::{AuditEntry, CheckpointError, Frontier, Hash, NoteVerifier, TreeNode, leaf_hash};
use crate::config::{DatabaseTarget, Settings};
use crate::store::audit::{self as rows, CheckpointRow, EntryRow};
use crate::store::{DbConn, Store, StoreError};

/// Entries read per query.
pub const CHUNK: usize = 1024;

/// The file, in the key directory, holding the log's Ed25519 key (PKCS#8).
pub const KEY_FILE: &str = "audit-log.pk8";

/// What is wrong with the log, as a stable snake_case code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProblemKind {
    /// A sequence is absent: a row was deleted (or never committed, which cannot happen).
    MissingEntry,
    /// A row holds the entry of another sequence.
    ReorderedEntries,
    /// The stored bytes are not what was appended.
    TamperedBytes,
    /// An indexed column disagrees with the canonical bytes.
    ColumnMismatch,
    /// A stored tree node differs from the one rebuilt from the entries, or is absent.
    TreeMismatch,
    /// The head row disagrees with the stored entries.
    HeadMismatch,
    /// A checkpoint's root or row differs from the rebuilt tree.
    CheckpointMismatch,
    /// A checkpoint's signature does not verify with the log key.
    BadSignature,
}

impl ProblemKind {
    /// The stable code printed in reports.
    pub fn code(self) -> &'static str {
        match self {
            Self::MissingEntry => "missing_entry",
            Self::ReorderedEntries => "reordered_entries",
            Self::TamperedBytes => "tampered_bytes",
            Self::ColumnMismatch => "column_mismatch",
            Self::TreeMismatch => "tree_mismatch",
            Self::HeadMismatch => "head_mismatch",
            Self::CheckpointMismatch => "checkpoint_mismatch",
            Self::BadSignature => "bad_signature",
        }
    }

    /// A short description for people.
    pub fn describe(self) -> &'static str {
        match self {
            Self::MissingEntry => "missing entry",
            Self::ReorderedEntries => "reordered entries",
            Self::TamperedBytes => "tampered bytes",
            Self::ColumnMismatch => "indexed columns differ from the entry",
            Self::TreeMismatch => "tree node mismatch",
            Self::HeadMismatch => "head mismatch",
            Self::CheckpointMismatch => "checkpoint mismatch",
            Self::BadSignature => "bad checkpoint signature",
        }
    }
}

/// The first problem found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// What is wrong.
    pub kind: ProblemKind,
    /// The first sequence that does not match, when it can be named.
    pub sequence: Option<u64>,
    /// Which check failed, naming sequences, sizes and node coordinates only.
    pub detail: String,
}

impl Problem {
    fn at(kind: ProblemKind, sequence: u64, detail: impl Into<String>) -> Self {
        Problem {
            kind,
            sequence: Some(sequence),
            detail: detail.into(),
        }
    }

    /// The position used to decide which of two problems came first.
    fn position(&self, fallback: u64) -> u64 {
        self.sequence.unwrap_or(fallback)
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(seq) = self.sequence {
            write!(f, "at sequence {seq}: ")?;
        }
        write!(
            f,
            "{} ({}): {}",
            self.kind.describe(),
            self.kind.code(),
            self.detail
        )
    }
}

/// What a verification found.
#[derive(Debug, Clone)]
pub struct Report {
    /// Entries verified (the log size when no problem was found).
    pub entries: u64,
    /// The root rebuilt over the verified entries.
    pub root: Hash,
    /// Checkpoints whose signature and root were checked.
    pub checkpoints: u64,
    /// Checkpoints signed while the walk ran, beyond the size it verified.
    pub newer_checkpoints: u64,
    /// The origins (log names) of the checked checkpoints.
    pub origins: BTreeSet<String>,
    /// The first problem, if any.
    pub problem: Option<Problem>,
}

/// Why a verification could not run at all (as opposed to finding a problem).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The database could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// A checkpoint must be checked but no key was given.
    #[error("the log has signed checkpoints but no verifier key is available ({0})")]
    NoKey(String),
}

/// The key that checkpoint signatures are checked with.
#[derive(Debug, Clone)]
pub enum CheckpointKey {
    /// The log's public key; each note's origin line names the key, as the gateway signs
    /// under its origin (which follows the base URL, so it may change between runs).
    PublicKey([u8; 32]),
    /// A published verifier key string, which fixes the key name too.
    Verifier(NoteVerifier),
}

impl CheckpointKey {
    /// Reads the public half of the log key from its PKCS#8 file.
    pub fn from_key_file(path: &Path) -> anyhow::Result<CheckpointKey> {
        let bytes = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", path.display()))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        Ok(CheckpointKey::PublicKey(public))
    }

    fn verifier_for(&self, origin: &str) -> Result<NoteVerifier, CheckpointError> {
        match self {
            Self::PublicKey(key) => NoteVerifier::new(origin, *key),
            Self::Verifier(v) => Ok(v.clone()),
        }
    }
}

/// The rebuilt tree and what the walk learned so far.
struct Walk<'k> {
    frontier: Frontier,
    key: Option<&'k CheckpointKey>,
    /// The size of the last checkpoint that verified.
    last_good_checkpoint: u64,
    checkpoints: u64,
    origins: BTreeSet<String>,
}

/// Verifies the log in `conn`, reading `chunk` entries per query.
pub fn verify_log(
    conn: &mut DbConn,
    key: Option<&CheckpointKey>,
    chunk: usize,
) -> Result<Report, VerifyError> {
    let chunk = chunk.max(1);
    let head = rows::size(conn)?;
    let mut walk = Walk {
        frontier: Frontier::empty(),
        key,
        last_good_checkpoint: 0,
        checkpoints: 0,
        origins: BTreeSet::new(),
    };
    while walk.frontier.size() < head {
        let from = walk.frontier.size();
        let batch: Vec<EntryRow> = rows::entries_from(conn, from, chunk as i64)?
            .into_iter()
            .take_while(|r| u64::try_from(r.seq).is_ok_and(|s| s < head))
            .collect();
        let problem = if batch.is_empty() {
            Some(Problem::at(
                ProblemKind::MissingEntry,
                from,
                format!(
                    "the head says the log holds {head} entries, but no entry from sequence {from} on is stored"
                ),
            ))
        } else {
            walk.chunk(conn, &batch)?
        };
        if let Some(problem) = problem {
            return Ok(walk.report(Some(problem), 0));
        }
    }
    let (problem, newer) = tail_checks(conn, &walk)?;
    Ok(walk.report(problem, newer))
}

impl Walk<'_> {
    fn report(self, problem: Option<Problem>, newer_checkpoints: u64) -> Report {
        Report {
            entries: self.frontier.size(),
            root: self.frontier.root(),
            checkpoints: self.checkpoints,
            newer_checkpoints,
            origins: self.origins,
            problem,
        }
    }

    /// Verifies one chunk of rows; returns the first problem in sequence order.
    fn chunk(
        &mut self,
        conn: &mut DbConn,
        batch: &[EntryRow],
    ) -> Result<Option<Problem>, VerifyError> {
        let start = self.frontier.size();
        let last = batch.last().map_or(start, |r| r.seq as u64);
        let checkpoints = rows::checkpoints_between(conn, start, last + 1, batch.len() as i64 + 1)?;
        let mut wanted = checkpoints.iter().peekable();
        let mut reached: Vec<(&CheckpointRow, Hash)> = Vec::new();
        // The nodes the rebuilt tree completes, each with the sequence that completed it.
        let mut completed: Vec<(u64, TreeNode)> = Vec::with_capacity(batch.len() * 2);
        let mut entry_problem = None;
        for row in batch {
            let seq = self.frontier.size();
            let leaf = match check_entry(seq, row) {
                Ok(leaf) => leaf,
                Err(problem) => {
                    entry_problem = Some(problem);
                    break;
                }
            };
            let nodes = self.frontier.append(leaf).map_err(|e| {
                VerifyError::Store(StoreError::Task(format!("rebuilding the tree: {e}")))
            })?;
            completed.extend(nodes.into_iter().map(|n| (seq, n)));
            while let Some(cp) = wanted.next_if(|cp| cp.size as u64 <= self.frontier.size()) {
                reached.push((cp, self.frontier.root()));
            }
        }
        let node_problem = compare_nodes(conn, &completed)?;
        let mut first = match (entry_problem, node_problem) {
            (Some(a), Some(b)) => Some(if b.position(0) < a.position(0) { b } else { a }),
            (a, b) => a.or(b),
        };
        for (row, root) in reached {
            let position = row.size as u64 - 1;
            if first.as_ref().is_some_and(|p| p.position(0) <= position) {
                break;
            }
            if let Some(problem) = self.check_checkpoint(row, &root)? {
                first = Some(problem);
                break;
            }
        }
        Ok(first)
    }

    fn check_checkpoint(
        &mut self,
        row: &CheckpointRow,
        rebuilt: &Hash,
    ) -> Result<Option<Problem>, VerifyError> {
        let size = row.size as u64;
        let origin = row.note.split('\n').next().unwrap_or_default();
        let key = self.key.ok_or_else(|| {
            VerifyError::NoKey(format!("the checkpoint at size {size} cannot be checked"))
        })?;
        let bad = |detail: String| Problem {
            kind: ProblemKind::BadSignature,
            sequence: None,
            detail,
        };
        let verifier = match key.verifier_for(origin) {
            Ok(v) => v,
            Err(e) => return Ok(Some(bad(format!("checkpoint at size {size}: {e}")))),
        };
        let checkpoint = match super::verify_note(&row.note, &verifier) {
            Ok(c) => c,
            Err(e) => return Ok(Some(bad(format!("checkpoint at size {size}: {e}")))),
        };
        let mismatch = |detail: String| {
            Some(Problem {
                kind: ProblemKind::CheckpointMismatch,
                sequence: None,
                detail,
            })
        };
        if checkpoint.size() != size || checkpoint.root().as_slice() != row.root.as_slice() {
            return Ok(mismatch(format!(
                "the checkpoint row at size {size} differs from the signed note it stores"
            )));
        }
        if checkpoint.root() != rebuilt {
            return Ok(mismatch(format!(
                "the signed root at size {size} differs from the root rebuilt from the entries: \
                 an entry from sequence {} to {} was changed together with its tree nodes \
                 after the checkpoint at size {} was signed",
                self.last_good_checkpoint,
                size - 1,
                self.last_good_checkpoint,
            )));
        }
        self.last_good_checkpoint = size;
        self.checkpoints += 1;
        self.origins.insert(checkpoint.origin().to_string());
        Ok(None)
    }
}

/// Checks one row against its expected sequence; returns its leaf hash.
fn check_entry(seq: u64, row: &EntryRow) -> Result<Hash, Problem> {
    if row.seq as u64 != seq {
        return Err(Problem::at(
            ProblemKind::MissingEntry,
            seq,
            format!(
                "no entry is stored at sequence {seq}; the next stored one is {}",
                row.seq
            ),
        ));
    }
    let entry: AuditEntry = serde_json::from_str(&row.body).map_err(|_| {
        Problem::at(
            ProblemKind::TamperedBytes,
            seq,
            "the stored bytes do not deserialize into an audit entry",
        )
    })?;
    if entry.sequence != seq {
        return Err(Problem::at(
            ProblemKind::ReorderedEntries,
            seq,
            format!(
                "the entry stored at sequence {seq} carries sequence {}",
                entry.sequence
            ),
        ));
    }
    if entry.canonical_bytes() != row.body.as_bytes() {
        return Err(Problem::at(
            ProblemKind::TamperedBytes,
            seq,
            "the stored bytes are not the canonical form of the entry they hold",
        ));
    }
    let columns = [
        ("recorded", row.recorded == entry.recorded_micros),
        ("action", row.action == entry.action.as_str()),
        ("outcome", row.outcome == entry.outcome.as_str()),
        ("client_id", row.client_id == entry.client_id),
        ("patient_id", row.patient_id == entry.patient_id),
    ];
    if let Some((column, _)) = columns.iter().find(|(_, same)| !same) {
        return Err(Problem::at(
            ProblemKind::ColumnMismatch,
            seq,
            format!("the column `{column}` disagrees with the canonical bytes"),
        ));
    }
    Ok(leaf_hash(row.body.as_bytes()))
}

/// Compares the rebuilt nodes with the stored ones; the first difference in sequence order.
fn compare_nodes(
    conn: &mut DbConn,
    completed: &[(u64, TreeNode)],
) -> Result<Option<Problem>, VerifyError> {
    let mut ranges: BTreeMap<u8, (u64, u64)> = BTreeMap::new();
    for (_, n) in completed {
        let range = ranges.entry(n.level).or_insert((n.index, n.index));
        range.0 = range.0.min(n.index);
        range.1 = range.1.max(n.index);
    }
    let mut stored: BTreeMap<(u8, u64), Vec<u8>> = BTreeMap::new();
    for (level, (lo, hi)) in ranges {
        for (idx, hash) in rows::nodes_in_range(conn, level, lo, hi + 1)? {
            stored.insert((level, idx as u64), hash);
        }
    }
    for (seq, node) in completed {
        let found = stored.get(&(node.level, node.index));
        if found.is_some_and(|h| h.as_slice() == node.hash.as_slice()) {
            continue;
        }
        let what = if found.is_some() {
            "differs from"
        } else {
            "is missing, unlike"
        };
        let problem = if node.level == 0 {
            Problem::at(
                ProblemKind::TamperedBytes,
                *seq,
                format!(
                    "the leaf hash of the stored bytes ({}) differs from the stored leaf node: \
                     the bytes or the leaf node were changed",
                    STANDARD.encode(node.hash)
                ),
            )
        } else {
            let first_leaf = node.index << node.level;
            Problem::at(
                ProblemKind::TreeMismatch,
                *seq,
                format!(
                    "the stored tree node ({}, {}) over entries {first_leaf} to {seq} {what} \
                     the node rebuilt from those entries",
                    node.level, node.index
                ),
            )
        };
        return Ok(Some(problem));
    }
    Ok(None)
}

/// After the walk: nothing may be stored beyond the verified size.
fn tail_checks(conn: &mut DbConn, walk: &Walk<'_>) -> Result<(Option<Problem>, u64), VerifyError> {
    let verified = walk.frontier.size();
    // Read the rows first and the head last: entries and head commit together, so rows
    // appended meanwhile are covered by the head read afterwards.
    let highest_seq = rows::highest_sequence(conn)?;
    let highest_nodes = rows::highest_node_per_level(conn)?;
    let beyond = rows::checkpoints_between(conn, verified, u64::MAX >> 1, i64::MAX)?;
    let head = rows::size(conn)?;
    if let Some(highest) = highest_seq.and_then(|s| u64::try_from(s).ok())
        && highest >= head
    {
        return Ok((
            Some(Problem::at(
                ProblemKind::HeadMismatch,
                head,
                format!(
                    "entries up to sequence {highest} are stored beyond the head's size {head}"
                ),
            )),
            0,
        ));
    }
    for (level, idx) in highest_nodes {
        let (level, idx) = (level as u32, idx as u64);
        if level < 64 && idx >= head >> level {
            let first = idx << level;
            let missing = head.max(verified);
            return Ok((
                Some(Problem::at(
                    ProblemKind::MissingEntry,
                    missing,
                    format!(
                        "the tree stores node ({level}, {idx}) over entries {first} to {}, \
                         but the log ends before sequence {missing}: entries were removed from its end",
                        first + (1u64 << level) - 1
                    ),
                )),
                0,
            ));
        }
    }
    let mut newer = 0;
    for cp in beyond {
        let size = cp.size as u64;
        if size > head {
            return Ok((
                Some(Problem::at(
                    ProblemKind::MissingEntry,
                    head,
                    format!(
                        "a checkpoint commits to {size} entries, but the log ends before \
                         sequence {head}: entries were removed from its end"
                    ),
                )),
                0,
            ));
        }
        newer += 1;
    }
    Ok((None, newer))
}

/// The `consentgate audit verify` command: 0 when the log verifies, 1 when a problem was
/// found, 2 when the log could not be read.
pub fn run(settings: &Settings, verifier_key: Option<&str>) -> anyhow::Result<i32> {
    let target = settings.database_target()?;
    if let DatabaseTarget::Sqlite(path) = &target
        && !path.exists()
    {
        eprintln!("audit verify: no database at {}", path.display());
        return Ok(2);
    }
    let key = match verifier_key {
        Some(vkey) => Some(CheckpointKey::Verifier(NoteVerifier::from_vkey(vkey)?)),
        None => {
            let path = settings.data_path(&settings.auth.key_dir).join(KEY_FILE);
            path.exists()
                .then(|| CheckpointKey::from_key_file(&path))
                .transpose()?
        }
    };
    let store = Store::open_target(target, &settings.database)?;
    let mut conn = store.conn()?;
    let report = match verify_log(&mut conn, key.as_ref(), CHUNK) {
        Ok(report) => report,
        Err(e) => {
            eprintln!("audit verify: could not verify: {e}");
            return Ok(2);
        }
    };
    let origins: Vec<&str> = report.origins.iter().map(String::as_str).collect();
    match &report.problem {
        None => {
            println!(
                "audit log verified: {} entries, contiguous from sequence 0; root {}",
                report.entries,
                STANDARD.encode(report.root)
            );
            println!(
                "  every leaf hash and stored tree node matches; {} signed checkpoints checked{}",
                report.checkpoints,
                if origins.is_empty() {
                    String::new()
                } else {
                    format!(" (origins: {})", origins.join(", "))
                }
            );
            if report.newer_checkpoints > 0 {
                println!(
                    "  {} checkpoints signed during the walk were left for the next run",
                    report.newer_checkpoints
                );
            }
            Ok(0)
        }
        Some(problem) => {
            println!(
                "audit log verification FAILED after {} good entries and {} good checkpoints",
                report.entries, report.checkpoints
            );
            println!("FAILED {problem}");
            eprintln!("audit verify: {problem}");
            Ok(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use diesel::prelude::*;
    use diesel_migrations::MigrationHarness;
    use ring::rand::SystemRandom;

    use super::*;
    use crate::audit::{AuditAction, AuditOutcome, Checkpoint, NoteSigner, sign};

    const ORIGIN: &str = "gateway.test/audit";

    fn memory_db() -> DbConn {
        let mut conn = diesel::SqliteConnection::establish(":memory:").unwrap();
        conn.run_pending_migrations(crate::store::SQLITE_MIGRATIONS)
            .unwrap();
        DbConn::Sqlite(conn)
    }

    fn key_pair() -> Ed25519KeyPair {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap()
    }

    fn entry(seq: u64) -> AuditEntry {
        AuditEntry {
            sequence: seq,
            recorded_micros: 1_767_225_600_000_000 + seq as i64,
            action: AuditAction::Read,
            outcome: AuditOutcome::Success,
            client_id: "clinic-app".into(),
            organisation: "Organization/northside".into(),
            user: None,
            purpose_of_use: "TREAT".into(),
            patient_id: Some(format!("pat-{}", seq % 3)),
            resources: vec![format!("Observation/obs-{seq}")],
            consents: vec!["consent-9".into()],
            policies: vec!["baseline-permit".into()],
            break_glass: None,
            request_id: format!("req-{seq}"),
            detail: Default::default(),
        }
    }

    /// A log of `n` entries, with signed checkpoints at `checkpoint_sizes`.
    fn log(n: u64, checkpoint_sizes: &[u64]) -> (DbConn, CheckpointKey) {
        log_in(memory_db(), n, checkpoint_sizes)
    }

    /// [`log`] written into the migrated database `conn`.
    fn log_in(mut conn: DbConn, n: u64, checkpoint_sizes: &[u64]) -> (DbConn, CheckpointKey) {
        let pair = key_pair();
        let mut public = [0u8; 32];
        public.copy_from_slice(pair.public_key().as_ref());
        let signer = NoteSigner::new(ORIGIN, pair).unwrap();
        let mut frontier = Frontier::empty();
        for seq in 0..n {
            let e = entry(seq);
            let bytes = e.canonical_bytes();
            let nodes = frontier.append(leaf_hash(&bytes)).unwrap();
            let row = EntryRow {
                seq: seq as i64,
                recorded: e.recorded_micros,
                action: e.action.as_str().into(),
                outcome: e.outcome.as_str().into(),
                client_id: e.client_id.clone(),
                patient_id: e.patient_id.clone(),
                body: String::from_utf8(bytes).unwrap(),
                notice: None,
            };
            rows::append(
                &mut conn,
                vec![row],
                crate::audit::stored::node_rows(&nodes),
                frontier.size(),
            )
            .unwrap();
            if checkpoint_sizes.contains(&frontier.size()) {
                let root = frontier.root();
                let cp = Checkpoint::new(ORIGIN, frontier.size(), root).unwrap();
                let row = CheckpointRow {
                    size: frontier.size() as i64,
                    root: root.to_vec(),
                    note: sign(&cp, &signer),
                    signed_at: 0,
                };
                rows::insert_checkpoint(&mut conn, &row).unwrap();
            }
        }
        (conn, CheckpointKey::PublicKey(public))
    }

    fn exec(conn: &mut DbConn, sql: &str) {
        diesel::sql_query(sql).execute(conn).unwrap();
    }

    fn body_of(conn: &mut DbConn, seq: u64) -> String {
        rows::entry_at(conn, seq).unwrap().unwrap().body
    }

    fn set_body(conn: &mut DbConn, seq: u64, body: &str) {
        use crate::store::schema::audit_entries;
        diesel::update(audit_entries::table.filter(audit_entries::seq.eq(seq as i64)))
            .set(audit_entries::body.eq(body))
            .execute(conn)
            .unwrap();
    }

    fn problem(conn: &mut DbConn, key: &CheckpointKey, chunk: usize) -> Option<Problem> {
        verify_log(conn, Some(key), chunk).unwrap().problem
    }

    fn expect(conn: &mut DbConn, key: &CheckpointKey, kind: ProblemKind, seq: Option<u64>) {
        for chunk in [1, 4, CHUNK] {
            let found = problem(conn, key, chunk).expect("a problem is found");
            assert_eq!(
                (found.kind, found.sequence),
                (kind, seq),
                "chunk {chunk}: {found}"
            );
        }
    }

    #[test]
    fn an_untouched_log_verifies_at_any_chunk_size() {
        let (mut conn, key) = log(37, &[1, 5, 16, 37]);
        for chunk in [1, 2, 3, 4, 16, CHUNK] {
            let report = verify_log(&mut conn, Some(&key), chunk).unwrap();
            assert_eq!(report.problem, None, "chunk {chunk}");
            assert_eq!((report.entries, report.checkpoints), (37, 4));
            assert_eq!(report.origins.iter().collect::<Vec<_>>(), vec![ORIGIN]);
        }
        let (mut empty, key) = log(0, &[]);
        let report = verify_log(&mut empty, Some(&key), CHUNK).unwrap();
        assert_eq!((report.entries, report.problem), (0, None));
        assert_eq!(report.root, crate::audit::empty_root());
    }

    #[test]
    fn a_changed_entry_is_named() {
        let (mut conn, key) = log(20, &[20]);
        let body = body_of(&mut conn, 11).replace("obs-11", "obs-99");
        set_body(&mut conn, 11, &body);
        expect(&mut conn, &key, ProblemKind::TamperedBytes, Some(11));
    }

    #[test]
    fn non_canonical_or_unreadable_bytes_are_tampered() {
        let (mut conn, key) = log(8, &[]);
        let spaced = body_of(&mut conn, 3).replacen(',', ", ", 1);
        set_body(&mut conn, 3, &spaced);
        expect(&mut conn, &key, ProblemKind::TamperedBytes, Some(3));
        set_body(&mut conn, 3, "not json");
        expect(&mut conn, &key, ProblemKind::TamperedBytes, Some(3));
    }

    #[test]
    fn a_deleted_entry_is_missing() {
        let (mut conn, key) = log(20, &[]);
        exec(&mut conn, "DELETE FROM audit_entries WHERE seq = 6");
        expect(&mut conn, &key, ProblemKind::MissingEntry, Some(6));
        let (mut conn, key) = log(20, &[]);
        exec(&mut conn, "DELETE FROM audit_entries WHERE seq = 19");
        expect(&mut conn, &key, ProblemKind::MissingEntry, Some(19));
    }

    #[test]
    fn swapped_entries_are_reordered() {
        let (mut conn, key) = log(20, &[]);
        let (a, b) = (body_of(&mut conn, 4), body_of(&mut conn, 13));
        set_body(&mut conn, 4, &b);
        set_body(&mut conn, 13, &a);
        expect(&mut conn, &key, ProblemKind::ReorderedEntries, Some(4));
    }

    #[test]
    fn an_index_column_that_hides_an_entry_is_found() {
        let (mut conn, key) = log(10, &[]);
        exec(
            &mut conn,
            "UPDATE audit_entries SET patient_id = 'someone-else' WHERE seq = 7",
        );
        expect(&mut conn, &key, ProblemKind::ColumnMismatch, Some(7));
    }

    #[test]
    fn a_changed_tree_node_is_found() {
        let (mut conn, key) = log(16, &[]);
        exec(
            &mut conn,
            "UPDATE audit_nodes SET hash = X'00' WHERE level = 2 AND idx = 1",
        );
        // Node (2, 1) covers entries 4..=7 and is completed by entry 7.
        expect(&mut conn, &key, ProblemKind::TreeMismatch, Some(7));
        exec(
            &mut conn,
            "DELETE FROM audit_nodes WHERE level = 0 AND idx = 2",
        );
        expect(&mut conn, &key, ProblemKind::TamperedBytes, Some(2));
    }

    #[test]
    fn a_rewrite_with_a_rebuilt_tree_fails_the_checkpoint() {
        let (mut conn, key) = log(12, &[4, 12]);
        let body = body_of(&mut conn, 9).replace("obs-9", "obs-0");
        set_body(&mut conn, 9, &body);
        // The forger rebuilds every node from the rewritten entries.
        exec(&mut conn, "DELETE FROM audit_nodes");
        let mut frontier = Frontier::empty();
        for seq in 0..12 {
            let nodes = frontier
                .append(leaf_hash(body_of(&mut conn, seq).as_bytes()))
                .unwrap();
            rows::append(
                &mut conn,
                vec![],
                crate::audit::stored::node_rows(&nodes),
                12,
            )
            .unwrap();
        }
        let found = problem(&mut conn, &key, CHUNK).unwrap();
        assert_eq!(found.kind, ProblemKind::CheckpointMismatch, "{found}");
        assert!(found.detail.contains("from sequence 4 to 11"), "{found}");
    }

    #[test]
    fn checkpoints_must_carry_the_log_key_signature() {
        let (mut conn, key) = log(6, &[3]);
        let stranger = NoteSigner::new(ORIGIN, key_pair()).unwrap();
        let forged = CheckpointKey::Verifier(stranger.verifier());
        let found = problem(&mut conn, &forged, CHUNK).unwrap();
        assert_eq!(found.kind, ProblemKind::BadSignature, "{found}");
        // A published verifier key string for the log's key verifies as well.
        let CheckpointKey::PublicKey(public) = &key else {
            unreachable!("log() hands out the public key")
        };
        let published = CheckpointKey::Verifier(NoteVerifier::new(ORIGIN, *public).unwrap());
        assert_eq!(problem(&mut conn, &published, CHUNK), None);
        let note = rows::latest_checkpoint(&mut conn).unwrap().unwrap().note;
        let broken = note.replacen("\n3\n", "\n2\n", 1);
        exec(
            &mut conn,
            &format!(
                "UPDATE audit_checkpoints SET note = '{}' WHERE size = 3",
                broken.replace('\'', "''")
            ),
        );
        let found = problem(&mut conn, &key, CHUNK).unwrap();
        assert_eq!(found.kind, ProblemKind::BadSignature, "{found}");
    }

    #[test]
    fn a_cut_tail_is_missing_entries() {
        let (mut conn, key) = log(10, &[10]);
        // SQLite's head is the entries' own size (the `audit_head` view): now 9.
        exec(&mut conn, "DELETE FROM audit_entries WHERE seq = 9");
        expect(&mut conn, &key, ProblemKind::MissingEntry, Some(9));
        // Without its checkpoint the leftover tree nodes still tell.
        exec(&mut conn, "DELETE FROM audit_checkpoints");
        expect(&mut conn, &key, ProblemKind::MissingEntry, Some(9));
    }

    /// On PostgreSQL the head row is kept apart from the entries, so a head moved back (or
    /// rows written around the gateway) leaves rows beyond it, and verification finds them.
    /// On SQLite the head is the entries' own size (the `audit_head` view, migration
    /// `2026-12-05-000067`): it cannot be moved, and the log verifies.
    #[test]
    fn rows_beyond_the_head_are_found() {
        let dir = tempfile::tempdir().expect("temporary directory");
        for (store, pg_name) in crate::store::tests::stores(dir.path()) {
            let backend = store.backend();
            let (mut conn, key) = log_in(store.dedicated().expect("connection"), 5, &[]);
            match backend {
                crate::store::Backend::Postgres => {
                    exec(&mut conn, "UPDATE audit_head SET size = 4");
                    let found = problem(&mut conn, &key, CHUNK).expect("a problem is found");
                    assert_eq!(
                        (found.kind, found.sequence),
                        (ProblemKind::HeadMismatch, Some(4))
                    );
                }
                crate::store::Backend::Sqlite => {
                    assert!(
                        diesel::sql_query("UPDATE audit_head SET size = 4")
                            .execute(&mut conn)
                            .is_err(),
                        "the view takes no update"
                    );
                    assert_eq!(rows::size(&mut conn).expect("size"), 5);
                    assert!(problem(&mut conn, &key, CHUNK).is_none());
                }
            }
            drop(conn);
            crate::store::tests::drop_database(store, pg_name);
        }
    }

    #[test]
    fn checkpoints_without_a_key_cannot_be_verified() {
        let (mut conn, _) = log(3, &[3]);
        assert!(matches!(
            verify_log(&mut conn, None, CHUNK),
            Err(VerifyError::NoKey(_))
        ));
    }

    #[test]
    fn problems_name_their_sequence() {
        let p = Problem::at(ProblemKind::MissingEntry, 17, "gone");
        assert_eq!(
            p.to_string(),
            "at sequence 17: missing entry (missing_entry): gone"
        );
    }
}
