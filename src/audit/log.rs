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
//! The writer also stores, with each entry, the kind of patient notification it calls for
//! (`notify::kind_of`, the `notice` column): the notifications themselves are derived from
//! the entries when a feed or the webhook worker reads them, so a disclosure costs the
//! commit no notification row (`docs/NOTIFICATIONS.md`; `docs/PERFORMANCE.md`, tenth step).
//! Entries written before that change, after the last notification then stored, get their
//! `notice` once, when the writer first starts (`Writer::derive_legacy_notices`).
//!
//! After a commit, once enough entries are behind it, and whenever it is idle, the writer
//! extends the log's patient index over the entries committed since ([`patient_index`];
//! `store::patient_index`), many commits at a time, so that no commit writes a leaf of a
//! per-patient index for each patient in its batch.
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
use crate::store::audit::{self as rows, CheckpointRow, EntryRow};
use crate::store::notifications as notices;
use crate::store::patient_index::IndexKey;
use crate::store::{Backend, DbConn, Store, StoreError, write_tx};
use patient_index::Behind;

mod patient_index;

/// Most entries committed in one transaction.
pub const MAX_BATCH: usize = 4096;
/// Entries that may wait for the writer before callers are refused (back-pressure).
pub const QUEUE_CAPACITY: usize = 65_536;
/// Entries read per step when the notices of entries written before they were stored with
/// the entries are derived.
const LEGACY_CHUNK: i64 = 1_000;

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

/// The handle requests use to append entries.
pub struct AuditLog {
    sender: SyncSender<Pending>,
    health: Arc<WriterHealth>,
    counts: CommitCounts,
    announced: Arc<Announcements>,
}

/// An entry a request under way will append: while any is held, the writer may wait for it
/// (up to the commit wait) before committing a batch. Dropped once the entry is handed to
/// the writer, or when the request ends without one.
#[derive(Debug)]
#[must_use = "an announcement counts until it is dropped"]
pub struct Announced(Arc<Announcements>);

impl Drop for Announced {
    fn drop(&mut self) {
        self.0.end_one();
    }
}

/// The entries announced and not yet handed over, and the writer waiting for them: the last
/// announcement to end wakes it, so a batch is committed the moment nothing more is to come
/// rather than at the next tick of a timer, and no arriving entry wakes it before then.
#[derive(Debug, Default)]
struct Announcements {
    count: AtomicUsize,
    /// Set while the writer holds a batch open for announced entries.
    waiting: AtomicBool,
    /// The writer's thread, to unpark.
    writer: std::sync::OnceLock<std::thread::Thread>,
}

impl Announcements {
    fn begin_one(&self) {
        self.count.fetch_add(1, Ordering::SeqCst);
    }

    fn end_one(&self) {
        if self.count.fetch_sub(1, Ordering::SeqCst) == 1
            && self.waiting.load(Ordering::SeqCst)
            && let Some(writer) = self.writer.get()
        {
            writer.unpark();
        }
    }

    fn any(&self) -> bool {
        self.count.load(Ordering::SeqCst) > 0
    }
}

/// How the group commit is doing, for `/metrics`: commits and the entries they made durable
/// (their ratio is the mean batch, the figure that says what each fsync is shared by).
#[derive(Debug, Clone)]
struct CommitCounts {
    commits: prometheus::IntCounter,
    entries: prometheus::IntCounter,
    /// Entries this instance committed that the patient index does not cover yet.
    index_behind: prometheus::IntGauge,
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
            index_behind: prometheus::IntGauge::new(
                "audit_patient_index_behind_entries",
                "Audit entries this instance committed that the patient index does not cover yet",
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
        let (sender, receiver) = sync_channel(QUEUE_CAPACITY);
        let health = Arc::new(WriterHealth {
            alive: AtomicBool::new(true),
            busy_since: AtomicI64::new(0),
        });
        let guard = AliveGuard(health.clone());
        let counts = CommitCounts::new().map_err(std::io::Error::other)?;
        let announced = Arc::new(Announcements::default());
        let writer = Writer {
            store,
            receiver,
            counts: counts.clone(),
            announced: announced.clone(),
            commit_wait,
        };
        let thread = std::thread::Builder::new()
            .name("audit-writer".into())
            .spawn(move || writer.run(guard))?;
        let _ = announced.writer.set(thread.thread().clone());
        Ok(AuditLog {
            sender,
            health,
            counts,
            announced,
        })
    }

    /// Announces an entry this request will append ([`AuditLog::record_announced`]).
    pub fn announce(&self) -> Announced {
        self.announced.begin_one();
        Announced(self.announced.clone())
    }

    /// The writer's metrics: commits and committed entries.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.counts.commits.clone()),
            Box::new(self.counts.entries.clone()),
            Box::new(self.counts.index_behind.clone()),
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
        let sent = self.sender.try_send(Pending { entry, done });
        // The writer has nothing more to wait for from this request. Ended after the
        // hand-over, so that a writer woken by the last announcement's end finds its entry.
        drop(announced);
        match sent {
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
}

/// The writer thread's side.
struct Writer {
    store: Store,
    receiver: Receiver<Pending>,
    counts: CommitCounts,
    announced: Arc<Announcements>,
    /// How long a batch may be held open for announced entries.
    commit_wait: Duration,
}

impl Writer {
    fn run(self, alive: AliveGuard) {
        let health = alive.0.clone();
        let mut frontier: Option<Frontier> = None;
        let mut own = OwnConnection::default();
        self.derive_legacy_notices(&mut own);
        // Whatever an earlier writer left behind the index, before the first batch.
        let mut behind = Behind::default();
        self.extend_index(&mut own, &mut behind);
        loop {
            // With nothing behind the index, wait for entries as long as it takes
            // (`recv_timeout` takes a deadline past the clock's end as none).
            let idle = if behind.any() {
                patient_index::IDLE
            } else {
                Duration::MAX
            };
            let first = match self.receiver.recv_timeout(idle) {
                Ok(first) => first,
                Err(RecvTimeoutError::Timeout) => {
                    if behind.retry_allowed() {
                        self.extend_index(&mut own, &mut behind);
                    }
                    continue;
                }
                Err(RecvTimeoutError::Disconnected) => break,
            };
            // The entries move into the commit and their waiters stay here to be answered.
            let (entries, waiters): (Vec<AuditEntry>, Vec<_>) = self
                .gather(first)
                .into_iter()
                .map(|p| (p.entry, p.done))
                .unzip();
            health
                .busy_since
                .store(crate::fhir_time::now_micros().max(1), Ordering::SeqCst);
            // A bug that panics inside one batch fails that batch, not the writer: the
            // transaction rolled back (`write_tx`) and the frontier is rebuilt from storage.
            let cached = frontier.take();
            let committed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                own.with(&self.store, |conn| commit(conn, cached, entries))
            }))
            .unwrap_or_else(|_| Err(AuditError::Tree("the batch commit panicked".into())));
            health.busy_since.store(0, Ordering::SeqCst);
            match committed {
                Ok(done) => {
                    frontier = Some(done.frontier);
                    self.counts.commits.inc();
                    self.counts.entries.inc_by(waiters.len() as u64);
                    behind.committed(done.first as i64, waiters.len(), done.keys);
                    for (i, waiter) in waiters.into_iter().enumerate() {
                        let _ = waiter.send(Ok(done.first + i as u64));
                    }
                    if behind.due() {
                        self.extend_index(&mut own, &mut behind);
                    }
                    self.counts.index_behind.set(behind.entries() as i64);
                }
                Err(e) => {
                    // Whatever state the connection was left in goes with it; the frontier
                    // is rebuilt from storage on the next batch.
                    own.forget();
                    let cause = Arc::new(e);
                    for waiter in waiters {
                        let _ = waiter.send(Err(cause.clone()));
                    }
                }
            }
        }
    }

    /// Extends the patient index over the entries behind it, after the waiting requests have
    /// had their answers. A failure is logged and tried again after a pause: the entries are
    /// durable, and readers take what the index does not cover from the log's tail.
    fn extend_index(&self, own: &mut OwnConnection, behind: &mut Behind) {
        let extended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            own.with(&self.store, |conn| Ok(behind.extend(conn)?))
        }))
        .unwrap_or_else(|_| {
            Err(AuditError::Tree(
                "extending the patient index panicked".into(),
            ))
        });
        match extended {
            Ok(()) => {}
            Err(e) => {
                own.forget();
                behind.failed();
                tracing::error!(error = %e, "extending the audit log's patient index failed");
            }
        }
        self.counts.index_behind.set(behind.entries() as i64);
    }

    /// Stores the notice of each entry written before notices were stored with the entries,
    /// after the last notification then stored (`notification_derivation.legacy_from` to
    /// `legacy_to`): the earlier writer held those notifications in memory, and a crash lost
    /// them. Notifications stored before are in the feed as they were. A chunk at a time,
    /// each with the range moved on, so an interrupted start resumes; once done, the range
    /// is empty and this is one read. A failure is logged, not fatal (the entries are
    /// durable), and tried again at the next start.
    fn derive_legacy_notices(&self, own: &mut OwnConnection) {
        let derived = own.with(&self.store, |conn| {
            let mut derived = 0;
            // A plain read first: once the range is done, a start takes no write lock for it.
            while legacy_left(conn)? {
                derived += write_tx(conn, derive_legacy_chunk)?;
            }
            Ok(derived)
        });
        match derived {
            Ok(0) => {}
            Ok(derived) => tracing::warn!(
                notifications = derived,
                "notifications of entries written before the upgrade, after the last one stored, derived"
            ),
            Err(e) => {
                own.forget();
                tracing::error!(error = %e, "deriving the notifications of earlier entries failed");
            }
        }
    }

    /// One batch: `first`, every entry already waiting, and while entries are announced,
    /// those that arrive within the commit wait (counted from `first`). The writer sleeps
    /// until the last announcement ends ([`Announcements::end_one`] unparks it) or the wait
    /// is over; a spurious wake-up only drains early.
    fn gather(&self, first: Pending) -> Vec<Pending> {
        let started = Instant::now();
        let mut batch = vec![first];
        self.drain(&mut batch);
        // Set before the count is read, so an announcement ending in between is seen either
        // here (the count) or by its `end_one` (the flag).
        self.announced.waiting.store(true, Ordering::SeqCst);
        while batch.len() < MAX_BATCH && self.announced.any() {
            let left = self.commit_wait.saturating_sub(started.elapsed());
            if left.is_zero() {
                break;
            }
            std::thread::park_timeout(left);
            self.drain(&mut batch);
        }
        self.announced.waiting.store(false, Ordering::SeqCst);
        batch
    }

    /// Moves every waiting entry into `batch`, up to [`MAX_BATCH`].
    fn drain(&self, batch: &mut Vec<Pending>) {
        while batch.len() < MAX_BATCH {
            match self.receiver.try_recv() {
                Ok(p) => batch.push(p),
                Err(_) => break,
            }
        }
    }
}

/// Whether entries written before notices were stored are still to be derived.
fn legacy_left(conn: &mut DbConn) -> Result<bool, AuditError> {
    let (from, to) = notices::legacy_range(conn)?;
    Ok(from < to)
}

/// Stores the notices of the next chunk of the legacy range and moves the range on, in the
/// caller's transaction; how many entries called for one.
fn derive_legacy_chunk(conn: &mut DbConn) -> Result<usize, AuditError> {
    let (from, to) = notices::legacy_range(conn)?;
    if from >= to {
        return Ok(0);
    }
    let chunk = rows::entries_from(conn, from as u64, LEGACY_CHUNK.min(to - from))?;
    let mut found = 0;
    for row in chunk.iter().filter(|row| row.patient_id.is_some()) {
        let Ok(entry) = serde_json::from_str::<AuditEntry>(&row.body) else {
            tracing::error!(seq = row.seq, "stored audit entry does not parse");
            continue;
        };
        if let Some(kind) = crate::notify::kind_of(&entry) {
            notices::set_notice(conn, row, kind.as_str())?;
            found += 1;
        }
    }
    let reached = chunk.last().map_or(to, |row| row.seq + 1);
    notices::set_legacy_from(conn, reached.min(to))?;
    Ok(found)
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
    /// The index keys of its entries.
    keys: Vec<IndexKey>,
}

/// Commits one batch, each entry with the kind of notification it calls for.
fn commit(
    conn: &mut DbConn,
    cached: Option<Frontier>,
    entries: Vec<AuditEntry>,
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
        for mut entry in entries {
            entry.sequence = frontier.size();
            let bytes = entry.canonical_bytes();
            nodes.extend(
                frontier
                    .append(super::leaf_hash(&bytes))
                    .map_err(|e| AuditError::Tree(e.to_string()))?,
            );
            entry_rows.push(EntryRow {
                seq: entry.sequence as i64,
                recorded: entry.recorded_micros,
                action: entry.action.as_str().to_string(),
                outcome: entry.outcome.as_str().to_string(),
                notice: crate::notify::kind_of(&entry).map(|k| k.as_str().to_string()),
                client_id: entry.client_id,
                patient_id: entry.patient_id,
                body: String::from_utf8(bytes).map_err(|e| AuditError::Tree(e.to_string()))?,
            });
        }
        let keys = entry_rows.iter().map(IndexKey::of).collect();
        rows::append(conn, entry_rows, node_rows(&nodes), frontier.size())?;
        Ok(Committed {
            frontier,
            first,
            keys,
        })
    })
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
