//! The durable log: a group-committing writer and the checkpoint signer.
//!
//! Every instance runs one writer thread. Requests hand it entries and wait; it takes all
//! entries waiting at that moment (up to [`MAX_BATCH`]), and while requests under way have
//! [announced](AuditLog::announce) entries still to come, waits for them up to the
//! configured commit wait (`database.audit_commit_wait_us`): a commit's fixed cost (the
//! fsync, a page of each table and index written) is then shared by more entries, and a lone
//! request, which announces nothing else, never waits. Then, in one transaction, it locks the
//! head row, assigns the next sequences, appends their leaf hashes to the Merkle frontier,
//! and writes entries, completed tree nodes and the new size. One commit (one fsync) makes
//! the whole batch durable; only then does any waiting request learn its sequence, so a
//! response that carries patient data is never sent before its entry is durable.
//!
//! On SQLite the writer holds the patient notifications its entries call for
//! (`notify::for_audit_entry`) and writes them with a later batch, at most [`NOTICE_DELAY`]
//! or [`NOTICE_BATCH`] notifications later, or at once when a feed is about to be read
//! ([`AuditLog::flush_notices`]): each b-tree a commit touches costs it pages, and a
//! notification touches five, so written with every batch they were half the pages of each
//! commit (`docs/PERFORMANCE.md`, eighth step). The entries stay the record: held
//! notifications that a crash loses are derived again from the entries after the highest
//! one stored when the writer next starts. PostgreSQL, where several instances append to
//! one log, writes them in the batch's own transaction.
//!
//! Checkpoints are signed by one instance at a time: the holder of a PostgreSQL advisory
//! lock on a dedicated connection (released when that connection dies, so another instance
//! takes over). SQLite has a single writer process, which always signs. The log's Ed25519 key
//! lives apart from the token keys, in `{key_dir}/audit-log.pk8` (0600), and is not rotated:
//! old checkpoints must stay verifiable.

use std::cell::RefCell;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use ring::rand::SystemRandom;
use ring::signature::Ed25519KeyPair;
use tokio::sync::oneshot;

use super::stored::{DbNodes, node_rows};
use super::{AuditEntry, Checkpoint, Frontier, NoteSigner, TreeError};
use crate::notify::NewNotification;
use crate::store::audit::{self as rows, CheckpointRow, EntryRow};
use crate::store::{Backend, DbConn, Store, StoreError, write_tx};

/// Most entries committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Entries that may wait for the writer before callers are refused (back-pressure).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Longest a held notification waits to be written (SQLite).
pub const NOTICE_DELAY: Duration = Duration::from_millis(25);
/// Most notifications held before they are written with the next batch (SQLite). Under
/// load this, not the delay, decides: the batch that writes them waits for their inserts
/// (about 6 µs each here), so a few dozen at a time keep that wait to a fraction of a
/// millisecond while the notifications' b-trees are touched by one commit in several.
pub const NOTICE_BATCH: usize = 64;
/// Entries read per step when held notifications lost by a crash are derived again.
const RECOVERY_CHUNK: i64 = 1_000;

/// Why an entry could not be made durable.
#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    /// The entry breaks the id-only rules.
    #[error(transparent)]
    Invalid(#[from] super::EntryError),
    /// The writer is overloaded or gone.
    #[error("the audit writer is unavailable")]
    Unavailable,
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The tree could not be extended.
    #[error("audit tree: {0}")]
    Tree(String),
    /// The batch this entry was committed with failed (the cause, shared by the batch).
    #[error("audit batch failed: {0}")]
    Batch(Arc<AuditError>),
}

struct Pending {
    entry: AuditEntry,
    done: oneshot::Sender<Result<u64, Arc<AuditError>>>,
}

/// What a caller hands the writer. Nearly every job is an entry, so it is not boxed.
#[allow(clippy::large_enum_variant)]
enum Job {
    /// An entry to make durable.
    Append(Pending),
    /// Write every held notification, then answer.
    Flush(Flushed),
}

/// Told when the held notifications are written.
type Flushed = oneshot::Sender<Result<(), Arc<AuditError>>>;

/// The handle requests use to append entries.
pub struct AuditLog {
    sender: SyncSender<Job>,
    health: Arc<WriterHealth>,
    counts: CommitCounts,
    announced: Arc<AtomicUsize>,
    /// Notifications of durable entries the writer holds, not yet written.
    held: Arc<AtomicUsize>,
}

/// An entry a request under way will append: while any is held, the writer may wait for it
/// (up to the commit wait) before committing a batch. Dropped when the entry is handed to
/// the writer, or when the request ends without one.
#[derive(Debug)]
#[must_use = "an announcement counts until it is dropped"]
pub struct Announced(Arc<AtomicUsize>);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The step in which the writer waits for announced entries: short enough to notice that
/// nothing more is announced, long enough that it is not woken by each arriving entry.
const WAIT_STEP: Duration = Duration::from_micros(200);

/// How the group commit is doing, for `/metrics`: commits and the entries they made durable
/// (their ratio is the mean batch, the figure that says what each fsync is shared by).
#[derive(Debug, Clone)]
struct CommitCounts {
    commits: prometheus::IntCounter,
    entries: prometheus::IntCounter,
}

impl CommitCounts {
    fn new() -> Result<CommitCounts, prometheus::Error> {
        Ok(CommitCounts {
            commits: prometheus::IntCounter::new(
                "audit_commits_total",
                "Audit log batches committed, one durable transaction each",
            )?,
            entries: prometheus::IntCounter::new(
                "audit_committed_entries_total",
                "Audit entries made durable by those commits",
            )?,
        })
    }
}

/// What the writer thread reports of itself, for readiness.
#[derive(Debug, Default)]
struct WriterHealth {
    /// Cleared when the thread ends, however it ends.
    alive: AtomicBool,
    /// When the batch being committed started (microseconds), 0 while idle.
    busy_since: AtomicI64,
}

/// Clears [`WriterHealth::alive`] when the writer thread ends, by return or by panic.
struct AliveGuard(Arc<WriterHealth>);

impl Drop for AliveGuard {
    fn drop(&mut self) {
        self.0.alive.store(false, Ordering::SeqCst);
    }
}

/// Why the writer cannot make progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Stalled {
    /// The writer thread has ended.
    #[error("the audit writer has stopped")]
    Stopped,
    /// One batch has been committing for longer than allowed.
    #[error("the audit writer has been committing one batch for too long")]
    Stuck,
}

impl std::fmt::Debug for AuditLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLog").finish_non_exhaustive()
    }
}

impl AuditLog {
    /// Starts the writer thread on `store`; `commit_wait` is how long it may hold a batch
    /// open for announced entries (zero: never).
    pub fn start(store: Store, commit_wait: Duration) -> std::io::Result<AuditLog> {
        AuditLog::start_holding(store, commit_wait, NOTICE_DELAY)
    }

    /// [`AuditLog::start`], holding notifications (SQLite) for up to `notice_delay` instead
    /// of [`NOTICE_DELAY`] (zero: never held).
    pub fn start_holding(
        store: Store,
        commit_wait: Duration,
        notice_delay: Duration,
    ) -> std::io::Result<AuditLog> {
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let health = Arc::new(WriterHealth {
            alive: AtomicBool::new(true),
            busy_since: AtomicI64::new(0),
        });
        let guard = AliveGuard(health.clone());
        let counts = CommitCounts::new().map_err(std::io::Error::other)?;
        let announced = Arc::new(AtomicUsize::new(0));
        let held = Arc::new(AtomicUsize::new(0));
        let writer = Writer {
            holds_notices: store.backend() == Backend::Sqlite && !notice_delay.is_zero(),
            store,
            receiver,
            counts: counts.clone(),
            announced: announced.clone(),
            held: held.clone(),
            commit_wait,
            notice_delay,
        };
        std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(guard))?;
        Ok(AuditLog {
            sender,
            health,
            counts,
            announced,
            held,
        })
    }

    /// Announces an entry this request will append ([`AuditLog::record_announced`]).
    pub fn announce(&self) -> Announced {
        self.announced.fetch_add(1, Ordering::SeqCst);
        Announced(self.announced.clone())
    }

    /// The writer's metrics: commits and committed entries.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.counts.commits.clone()),
            Box::new(self.counts.entries.clone()),
        ]
    }

    /// Whether the writer can make progress: its thread runs and no batch has been committing
    /// for longer than `stuck_after`.
    pub fn progress(&self, stuck_after: Duration) -> Result<(), Stalled> {
        if !self.health.alive.load(Ordering::SeqCst) {
            return Err(Stalled::Stopped);
        }
        let since = self.health.busy_since.load(Ordering::SeqCst);
        let limit = i64::try_from(stuck_after.as_micros()).unwrap_or(i64::MAX);
        if since > 0 && crate::fhir_time::now_micros().saturating_sub(since) > limit {
            return Err(Stalled::Stuck);
        }
        Ok(())
    }

    /// Appends an entry and waits until it is durable; returns its sequence.
    pub async fn record(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.record_announced(None, entry).await
    }

    /// [`AuditLog::record`] of the entry `announced` announced.
    pub async fn record_announced(
        &self,
        announced: Option<Announced>,
        mut entry: AuditEntry,
    ) -> Result<u64, AuditError> {
        entry.sequence = 0;
        entry.validate()?;
        let (done, wait) = oneshot::channel();
        // The writer has nothing more to wait for from this request. Ended before the
        // hand-over, so that a writer woken by this very entry does not wait for it.
        drop(announced);
        match self.sender.try_send(Job::Append(Pending { entry, done })) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                return Err(AuditError::Unavailable);
            }
        }
        match wait.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(cause)) => {
                tracing::error!(error = %cause, "audit batch failed");
                Err(AuditError::Batch(cause))
            }
            Err(_) => Err(AuditError::Unavailable),
        }
    }

    /// Waits until the notifications of every entry made durable so far are written, so
    /// that a read of a feed that follows finds them. At once when the writer holds none
    /// (always on PostgreSQL): the writer counts what it holds before it tells any request
    /// that its entry is durable, so no answer sent before this call is missed.
    pub async fn flush_notices(&self) -> Result<(), AuditError> {
        if self.held.load(Ordering::SeqCst) == 0 {
            return Ok(());
        }
        let (done, wait) = oneshot::channel();
        if self.sender.try_send(Job::Flush(done)).is_err() {
            return Err(AuditError::Unavailable);
        }
        match wait.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(cause)) => Err(AuditError::Batch(cause)),
            Err(_) => Err(AuditError::Unavailable),
        }
    }
}

/// Notifications of committed entries, held to be written with a later batch.
#[derive(Default)]
struct Held {
    notices: Vec<NewNotification>,
    /// When the oldest was taken.
    since: Option<Instant>,
}

impl Held {
    /// How long until the held notifications must be written, when held for up to
    /// `delay`; `None` when none are held.
    fn due_in(&self, delay: Duration) -> Option<Duration> {
        let since = self.since?;
        if self.notices.len() >= NOTICE_BATCH {
            return Some(Duration::ZERO);
        }
        Some(delay.saturating_sub(since.elapsed()))
    }

    fn is_due(&self, delay: Duration) -> bool {
        self.due_in(delay).is_some_and(|left| left.is_zero())
    }

    fn add(&mut self, notices: Vec<NewNotification>) {
        if !notices.is_empty() && self.since.is_none() {
            self.since = Some(Instant::now());
        }
        self.notices.extend(notices);
    }

    fn clear(&mut self) {
        self.notices.clear();
        self.since = None;
    }
}

/// Where the notifications a batch's entries call for go.
#[derive(Clone, Copy)]
enum Notices<'a> {
    /// Into the batch's own transaction.
    WithBatch,
    /// Back to the writer, to be held. With `write`, the `held` ones go into the batch's
    /// transaction with the batch's own, and none come back.
    Held {
        held: &'a [NewNotification],
        write: bool,
    },
}

/// The writer thread's side.
struct Writer {
    store: Store,
    receiver: Receiver<Job>,
    counts: CommitCounts,
    announced: Arc<AtomicUsize>,
    /// Whether notifications are held (SQLite) rather than written with their batch.
    holds_notices: bool,
    /// The count [`AuditLog::flush_notices`] reads.
    held: Arc<AtomicUsize>,
    /// Longest a notification is held ([`NOTICE_DELAY`]).
    notice_delay: Duration,
    /// How long a batch may be held open for announced entries.
    commit_wait: Duration,
}

impl Writer {
    fn run(self, alive: AliveGuard) {
        let health = alive.0.clone();
        let mut frontier: Option<Frontier> = None;
        let mut own = OwnConnection::default();
        let mut held = Held::default();
        // On SQLite whether holding now or not: a crash may have lost what was held before.
        if self.store.backend() == Backend::Sqlite {
            self.recover_notices(&mut own, &mut held);
        }
        loop {
            let first = match held.due_in(self.notice_delay) {
                None => self.receiver.recv().ok(),
                Some(left) => match self.receiver.recv_timeout(left) {
                    Ok(job) => Some(job),
                    Err(RecvTimeoutError::Timeout) => {
                        self.write_held(&mut own, &mut held, Vec::new());
                        continue;
                    }
                    Err(RecvTimeoutError::Disconnected) => None,
                },
            };
            let Some(first) = first else { break };
            let (batch, flushes) = self.gather(first);
            if batch.is_empty() {
                self.write_held(&mut own, &mut held, flushes);
                continue;
            }
            let entries: Vec<AuditEntry> = batch.iter().map(|p| p.entry.clone()).collect();
            let due = !flushes.is_empty() || held.is_due(self.notice_delay);
            let notices = if self.holds_notices {
                Notices::Held {
                    held: &held.notices,
                    write: due,
                }
            } else {
                Notices::WithBatch
            };
            health
                .busy_since
                .store(crate::fhir_time::now_micros().max(1), Ordering::SeqCst);
            // A bug that panics inside one batch fails that batch, not the writer: the
            // transaction rolled back (`write_tx`) and the frontier is rebuilt from storage.
            let cached = frontier.take();
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                own.with(&self.store, |conn| commit(conn, cached, entries, notices))
            }))
            .unwrap_or_else(|_| Err(AuditError::Tree("the batch commit panicked".into())));
            health.busy_since.store(0, Ordering::SeqCst);
            if committed.is_err() {
                // Whatever state the connection was left in goes with it.
                own.forget();
            }
            match committed {
                Ok(done) => {
                    frontier = Some(done.frontier);
                    if done.held_written {
                        held.clear();
                    }
                    held.add(done.kept);
                    // Counted before any request hears that its entry is durable.
                    self.held.store(held.notices.len(), Ordering::SeqCst);
                    self.counts.commits.inc();
                    self.counts.entries.inc_by(batch.len() as u64);
                    for (i, p) in batch.into_iter().enumerate() {
                        let _ = p.done.send(Ok(done.first + i as u64));
                    }
                    if self.holds_notices && due && !done.held_written {
                        // Refused with the batch: written apart, one at a time if need be.
                        self.write_held(&mut own, &mut held, flushes);
                    } else {
                        for flush in flushes {
                            let _ = flush.send(Ok(()));
                        }
                    }
                }
                Err(e) => {
                    // The frontier is rebuilt from storage on the next batch; the held
                    // notifications stay held.
                    let cause = Arc::new(e);
                    for p in batch {
                        let _ = p.done.send(Err(cause.clone()));
                    }
                    for flush in flushes {
                        let _ = flush.send(Err(cause.clone()));
                    }
                }
            }
        }
        // Every handle is gone. What cannot be written now is derived again at the next start.
        self.write_held(&mut own, &mut held, Vec::new());
    }

    /// Writes the held notifications in a transaction of their own, and answers `flushes`.
    /// If the database refuses them, they are written one at a time: one it refuses for
    /// good (a constraint: a bug, or a notification another process wrote) is dropped and
    /// logged by its entry's sequence, so that it cannot hold the others back; one that
    /// fails otherwise (the database unavailable) stays held for the next try.
    fn write_held(&self, own: &mut OwnConnection, held: &mut Held, flushes: Vec<Flushed>) {
        let mut failure = None;
        if !held.notices.is_empty() {
            match self.write_apart(own, &held.notices) {
                Ok(()) => held.clear(),
                Err(e) => {
                    own.forget();
                    tracing::error!(error = %e, held = held.notices.len(), "writing held notifications failed; one at a time");
                    failure = self.write_singly(own, held).err();
                }
            }
        }
        self.held.store(held.notices.len(), Ordering::SeqCst);
        let answer = match failure {
            None => Ok(()),
            Some(e) => Err(Arc::new(e)),
        };
        for flush in flushes {
            let _ = flush.send(answer.clone());
        }
    }

    /// [`Writer::write_held`]'s fallback: each notification in a transaction of its own.
    /// The first failure that leaves notifications held, if any.
    fn write_singly(&self, own: &mut OwnConnection, held: &mut Held) -> Result<(), AuditError> {
        let mut kept = Vec::new();
        let mut failure = Ok(());
        for notice in std::mem::take(&mut held.notices) {
            match self.write_apart(own, std::slice::from_ref(&notice)) {
                Ok(()) => {}
                Err(e) if refused(&e) => {
                    tracing::error!(error = %e, seq = ?notice.audit_seq, kind = notice.kind.as_str(), "notification refused by the database; dropped");
                }
                Err(e) => {
                    own.forget();
                    kept.push(notice);
                    if failure.is_ok() {
                        failure = Err(e);
                    }
                }
            }
        }
        if kept.is_empty() {
            held.clear();
        } else {
            held.notices = kept;
        }
        failure
    }

    /// Writes `notices` in a transaction of their own.
    fn write_apart(
        &self,
        own: &mut OwnConnection,
        notices: &[NewNotification],
    ) -> Result<(), AuditError> {
        own.with(&self.store, |conn| {
            write_tx(conn, |conn| Ok(crate::notify::enqueue(conn, notices)?))
        })
    }

    /// Derives the notifications of entries committed after the highest one a stored
    /// notification reports: the ones a crash (or an exit with notifications still held)
    /// lost. Held notifications are always the newest, so nothing below that one is
    /// missing. They are written as held ones are ([`Writer::write_held`]); what cannot be
    /// written yet stays in `held`. A failure to read is logged, not fatal: the entries
    /// themselves are durable.
    fn recover_notices(&self, own: &mut OwnConnection, held: &mut Held) {
        match self.derive_lost(own, held) {
            Ok(0) => {}
            Ok(derived) => tracing::warn!(
                notifications = derived,
                "notifications of entries written before a stop derived again"
            ),
            Err(e) => {
                own.forget();
                tracing::error!(error = %e, "deriving lost notifications failed");
            }
        }
    }

    /// [`Writer::recover_notices`]' reads, a chunk of entries at a time; how many
    /// notifications were derived.
    fn derive_lost(&self, own: &mut OwnConnection, held: &mut Held) -> Result<usize, AuditError> {
        let highest = own.with(&self.store, |conn| {
            Ok(crate::store::notifications::highest_audit_seq(conn)?)
        })?;
        let mut from = highest.map_or(0, |seq| seq as u64 + 1);
        let mut derived = 0;
        loop {
            let rows = own.with(&self.store, |conn| {
                Ok(rows::entries_from(conn, from, RECOVERY_CHUNK)?)
            })?;
            let Some(last) = rows.last() else {
                return Ok(derived);
            };
            from = last.seq as u64 + 1;
            let notices: Vec<NewNotification> = rows
                .iter()
                // Only an entry about a patient can call for a notification.
                .filter(|row| row.patient_id.is_some())
                .filter_map(|row| {
                    serde_json::from_str::<AuditEntry>(&row.body)
                        .inspect_err(|_| {
                            tracing::error!(seq = row.seq, "stored audit entry does not parse")
                        })
                        .ok()
                })
                .filter_map(|entry| crate::notify::for_audit_entry(&entry))
                .collect();
            derived += notices.len();
            held.add(notices);
            self.write_held(own, held, Vec::new());
        }
    }

    /// One batch: `first`, every entry already waiting, and while entries are announced,
    /// those that arrive within the commit wait (counted from `first`); with the flushes
    /// asked for meanwhile.
    fn gather(&self, first: Job) -> (Vec<Pending>, Vec<Flushed>) {
        let started = Instant::now();
        let mut batch = Vec::new();
        let mut flushes = Vec::new();
        match first {
            Job::Append(p) => batch.push(p),
            Job::Flush(f) => flushes.push(f),
        }
        self.drain(&mut batch, &mut flushes);
        while !batch.is_empty()
            && batch.len() < MAX_BATCH
            && self.announced.load(Ordering::SeqCst) > 0
        {
            let left = self.commit_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::sleep(left.min(WAIT_STEP));
            self.drain(&mut batch, &mut flushes);
        }
        (batch, flushes)
    }

    /// Moves every waiting job into `batch` or `flushes`, up to [`MAX_BATCH`] entries.
    fn drain(&self, batch: &mut Vec<Pending>, flushes: &mut Vec<Flushed>) {
        while batch.len() < MAX_BATCH {
            match self.receiver.try_recv() {
                Ok(Job::Append(p)) => batch.push(p),
                Ok(Job::Flush(f)) => flushes.push(f),
                Err(_) => break,
            }
        }
    }
}

fn tree_error<E: std::fmt::Display>(e: TreeError<E>) -> AuditError {
    AuditError::Tree(e.to_string())
}

/// The writer's connection. On SQLite, one of its own, kept from batch to batch: a SQLite
/// connection drops its whole page cache when another connection has committed since it
/// last looked, so a writer taking whichever pooled connection was free read the pages of
/// every table and index it appends to again on each commit (`docs/PERFORMANCE.md`, sixth
/// step). With a connection of its own, only another writer's commit (a consent, a token)
/// costs it that. It is dropped after a failed batch and opened again for the next one. On
/// PostgreSQL the writer takes a pooled connection per batch, checked on checkout, so a
/// session that died with its server is never the one a batch is committed on.
#[derive(Default)]
struct OwnConnection(Option<DbConn>);

impl OwnConnection {
    fn with<T>(
        &mut self,
        store: &Store,
        work: impl FnOnce(&mut DbConn) -> Result<T, AuditError>,
    ) -> Result<T, AuditError> {
        if store.backend() == Backend::Postgres {
            return work(&mut *store.conn()?);
        }
        let conn = match &mut self.0 {
            Some(conn) => conn,
            empty => empty.insert(store.dedicated()?),
        };
        work(conn)
    }

    fn forget(&mut self) {
        self.0 = None;
    }
}

/// A committed batch.
struct Committed {
    /// The tree after it.
    frontier: Frontier,
    /// The sequence of its first entry.
    first: u64,
    /// Its entries' notifications, to hold.
    kept: Vec<NewNotification>,
    /// Whether the held notifications (and its own) were written with it.
    held_written: bool,
}

/// Commits one batch; the notifications its entries call for go where `notices_go` says.
fn commit(
    conn: &mut DbConn,
    cached: Option<Frontier>,
    entries: Vec<AuditEntry>,
    notices_go: Notices<'_>,
) -> Result<Committed, AuditError> {
    write_tx(conn, |conn| {
        let size = rows::lock_head(conn)?;
        let mut frontier = match cached {
            Some(f) if f.size() == size => f,
            _ => frontier_at(conn, size)?,
        };
        let first = frontier.size();
        let mut entry_rows = Vec::with_capacity(entries.len());
        let mut nodes = Vec::with_capacity(entries.len() * 2);
        let mut notices = Vec::new();
        for mut entry in entries {
            entry.sequence = frontier.size();
            let bytes = entry.canonical_bytes();
            nodes.extend(
                frontier
                    .append(super::leaf_hash(&bytes))
                    .map_err(|e| AuditError::Tree(e.to_string()))?,
            );
            notices.extend(crate::notify::for_audit_entry(&entry));
            entry_rows.push(EntryRow {
                seq: entry.sequence as i64,
                recorded: entry.recorded_micros,
                action: entry.action.as_str().to_string(),
                outcome: entry.outcome.as_str().to_string(),
                client_id: entry.client_id.clone(),
                patient_id: entry.patient_id.clone(),
                body: String::from_utf8(bytes).map_err(|e| AuditError::Tree(e.to_string()))?,
            });
        }
        rows::append(conn, &entry_rows, &node_rows(&nodes), frontier.size())?;
        let mut done = Committed {
            frontier,
            first,
            kept: Vec::new(),
            held_written: false,
        };
        match notices_go {
            // The patient's notifications commit with the entries they report, or neither does.
            Notices::WithBatch => crate::notify::enqueue(conn, &notices)?,
            Notices::Held { held, write: true } => {
                done.held_written = write_within(conn, held, &notices)?;
                if !done.held_written {
                    done.kept = notices;
                }
            }
            Notices::Held { write: false, .. } => done.kept = notices,
        }
        Ok(done)
    })
}

/// Writes `held` and then `own` inside the batch's transaction, under a savepoint: if the
/// database refuses them, they alone are rolled back (and stay held), and the batch's
/// entries commit all the same. Whether they were written.
fn write_within(
    conn: &mut DbConn,
    held: &[NewNotification],
    own: &[NewNotification],
) -> Result<bool, AuditError> {
    use diesel::RunQueryDsl;
    diesel::sql_query("SAVEPOINT held_notices")
        .execute(conn)
        .map_err(StoreError::from)?;
    let written =
        crate::notify::enqueue(conn, held).and_then(|()| crate::notify::enqueue(conn, own));
    if let Err(e) = &written {
        tracing::error!(error = %e, held = held.len(), "held notifications refused; the batch commits without them");
        diesel::sql_query("ROLLBACK TO held_notices")
            .execute(conn)
            .map_err(StoreError::from)?;
    }
    diesel::sql_query("RELEASE held_notices")
        .execute(conn)
        .map_err(StoreError::from)?;
    Ok(written.is_ok())
}

/// Whether the database refuses a write for good: the store's classification says the
/// failure is about the write (a constraint, a conflict), not the database's availability.
fn refused(e: &AuditError) -> bool {
    matches!(
        e,
        AuditError::Store(StoreError::Conflict | StoreError::Query(_))
    )
}

/// The frontier of the stored tree at `size`.
pub fn frontier_at(conn: &mut DbConn, size: u64) -> Result<Frontier, AuditError> {
    let nodes = DbNodes(RefCell::new(conn));
    Frontier::from_store(size, &nodes).map_err(tree_error)
}

/// Signs checkpoints with the log key; one instance at a time.
pub struct CheckpointSigner {
    signer: NoteSigner,
    lock_conn: Mutex<Option<DbConn>>,
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CheckpointSigner")
            .field("name", &self.signer.name())
            .finish_non_exhaustive()
    }
}

impl CheckpointSigner {
    /// Loads (or creates, mode 0600) the log key in `key_dir` and names the log `origin`.
    pub fn open(key_dir: &Path, origin: &str) -> anyhow::Result<CheckpointSigner> {
        let path = key_dir.join("audit-log.pk8");
        if !path.exists() {
            std::fs::create_dir_all(key_dir)?;
            let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new())
                .map_err(|_| anyhow::anyhow!("audit log key generation failed"))?;
            crate::tls::write_private(&path, pkcs8.as_ref())?;
        }
        let bytes = std::fs::read(&path)?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&bytes)
            .map_err(|_| anyhow::anyhow!("{} is not an Ed25519 PKCS#8 key", path.display()))?;
        Ok(CheckpointSigner {
            signer: NoteSigner::new(origin, pair)?,
            lock_conn: Mutex::new(None),
        })
    }

    /// The verifier key string third parties configure (`name+keyid+key`).
    pub fn verifier_key(&self) -> String {
        self.signer.verifier_key()
    }

    /// The log's origin line.
    pub fn origin(&self) -> &str {
        self.signer.name()
    }

    /// Whether this instance holds the signer role (taking it when free).
    fn holds_role(&self, store: &Store) -> bool {
        let Ok(mut slot) = self.lock_conn.lock() else {
            return false;
        };
        if slot.is_none() {
            *slot = store.dedicated().ok();
        }
        let Some(conn) = slot.as_mut() else {
            return false;
        };
        match rows::try_signer_lock(conn) {
            Ok(held) => held,
            Err(_) => {
                // The connection died (and its lock with it); reconnect next time.
                *slot = None;
                false
            }
        }
    }

    /// The newest checkpoint, signing one for the current size first when this instance is
    /// the signer and the log has grown. Blocking.
    pub fn latest(&self, store: &Store) -> Result<Option<CheckpointRow>, AuditError> {
        let mut conn = store.conn()?;
        let latest = rows::latest_checkpoint(&mut conn)?;
        let size = rows::size(&mut conn)?;
        let stale = latest.as_ref().is_none_or(|c| (c.size as u64) < size);
        if !stale || size == 0 || !self.holds_role(store) {
            return Ok(latest);
        }
        let root = {
            let nodes = DbNodes(RefCell::new(&mut conn));
            super::root(size, &nodes).map_err(tree_error)?
        };
        let checkpoint = Checkpoint::new(self.signer.name(), size, root)
            .map_err(|e| AuditError::Tree(e.to_string()))?;
        let row = CheckpointRow {
            size: size as i64,
            root: root.to_vec(),
            note: super::sign(&checkpoint, &self.signer),
            signed_at: time::OffsetDateTime::now_utc().unix_timestamp(),
        };
        rows::insert_checkpoint(&mut conn, &row)?;
        Ok(Some(row))
    }
}

#[cfg(test)]
mod tests;
