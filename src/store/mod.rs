//! Storage: the only module that knows SQL.
//!
//! One [`DbConn`] (a diesel `MultiConnection`) over SQLite and PostgreSQL, chosen from the URL
//! scheme, never by trying each in turn. A pool of them sits behind [`Store`], whose
//! [`Store::run`] moves blocking database work onto tokio's blocking threads so the async
//! HTTP workers never wait on a disk or a socket. Migrations are embedded per backend
//! (`migrations/sqlite/`, `migrations/postgres/`, the same names in both).
//!
//! SQLite is opened in WAL mode with foreign keys on, `synchronous=FULL` and a busy timeout.
//! Write transactions on SQLite begin `IMMEDIATE` (see [`write_tx`]) so that two writers
//! queue on the lock instead of one failing when it upgrades from reading to writing.
//! Every SQLite connection has the query planner stability guarantee ([`planner`]), so the
//! statements diesel caches are parsed once per connection, not once per execution.

/// Runs `$body` with `$c` bound to the concrete connection inside a [`DbConn`], for the
/// statements on the hot path (in scope for the submodules declared below it). A query run through the `MultiConnection` itself has its
/// whole SQL text rendered on each of diesel's passes over it (the derive's
/// `SerializedQuery` wraps the query in its SQL), even when the prepared statement is
/// cached: about 6 % of the CPU of a consent-checked read (`docs/PERFORMANCE.md`).
macro_rules! on_backend {
    ($conn:expr, $c:ident => $body:expr) => {
        match $conn {
            $crate::store::DbConn::Sqlite($c) => $body,
            $crate::store::DbConn::Postgresql($c) => $body,
        }
    };
}

pub mod access_requests;
pub mod amendments;
#[macro_use]
pub mod audit;
pub mod delegations;
pub mod disclosures;
pub mod exports;
pub mod identity;
pub mod notifications;
pub mod patient_index;
pub mod planner;
pub mod resources;
pub mod schema;
pub mod share_links;
pub mod web;

use std::time::Duration;

use diesel::connection::{AnsiTransactionManager, SimpleConnection, TransactionManager};
use diesel::prelude::*;
use diesel::r2d2::{self, ManageConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::config::{DatabaseSettings, DatabaseTarget, Settings};

/// Migrations for SQLite, embedded at compile time.
pub const SQLITE_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/sqlite");
/// Migrations for PostgreSQL, embedded at compile time.
pub const POSTGRES_MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations/postgres");

/// One database connection of either backend.
#[derive(diesel::MultiConnection)]
pub enum DbConn {
    /// PostgreSQL, for scale and several gateway instances.
    Postgresql(diesel::PgConnection),
    /// SQLite, the embedded default.
    Sqlite(diesel::SqliteConnection),
}

/// Which engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// SQLite file.
    Sqlite,
    /// PostgreSQL server.
    Postgres,
}

/// A storage failure. Callers map [`StoreError::Conflict`] and
/// [`StoreError::Unavailable`] to answers; everything else is internal.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No connection could be had in time, or the database is locked for too long.
    #[error("database unavailable: {0}")]
    Unavailable(String),
    /// A concurrent writer changed the same row first.
    #[error("conflicting concurrent write")]
    Conflict,
    /// A query failed.
    #[error("database error: {0}")]
    Query(diesel::result::Error),
    /// Migrations could not be applied or read.
    #[error("migration error: {0}")]
    Migration(String),
    /// The blocking task was cancelled or panicked.
    #[error("database task failed: {0}")]
    Task(String),
}

impl From<diesel::result::Error> for StoreError {
    fn from(e: diesel::result::Error) -> Self {
        use diesel::result::{DatabaseErrorKind, Error};
        match e {
            Error::DatabaseError(
                DatabaseErrorKind::UniqueViolation | DatabaseErrorKind::SerializationFailure,
                _,
            ) => StoreError::Conflict,
            Error::DatabaseError(DatabaseErrorKind::Unknown, ref info)
                if info.message().contains("database is locked") =>
            {
                StoreError::Unavailable("database is locked".into())
            }
            // PostgreSQL chose this transaction to end a deadlock (SQLSTATE 40P01; diesel has
            // no kind for it): nothing was written, and a retry succeeds, as after a
            // serialization failure. Two transactions that write the consents or Patient
            // records of the same two patients in opposite orders can meet this way, on the
            // patients' context versions (migration 000062).
            Error::DatabaseError(_, ref info) if info.message().contains("deadlock detected") => {
                StoreError::Conflict
            }
            Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _) => {
                StoreError::Unavailable("the database connection was lost".into())
            }
            Error::DatabaseError(_, ref info) => match outage(info.message()) {
                Some(cause) => StoreError::Unavailable(cause.into()),
                None => StoreError::Query(e),
            },
            other => StoreError::Query(other),
        }
    }
}

/// A database failure that is about the database's availability rather than the query:
/// storage full or read-only, an I/O error, a lost or refused connection, a server shutting
/// down. Such failures answer 503 and pass once the database is back; the returned cause is
/// what the log line says.
fn outage(message: &str) -> Option<&'static str> {
    const CAUSES: &[(&str, &str)] = &[
        ("database or disk is full", "the database storage is full"),
        ("readonly database", "the database file is read-only"),
        ("read-only", "the database file is read-only"),
        (
            "disk i/o error",
            "the database storage failed an I/O operation",
        ),
        (
            "unable to open database file",
            "the database file cannot be opened",
        ),
        ("no space left on device", "the database storage is full"),
        (
            "server closed the connection",
            "the database connection was lost",
        ),
        (
            "terminating connection",
            "the database server ended the connection",
        ),
        (
            "no connection to the server",
            "the database connection was lost",
        ),
        (
            "could not receive data from server",
            "the database connection was lost",
        ),
        (
            "could not send data to server",
            "the database connection was lost",
        ),
        (
            "connection has been closed",
            "the database connection was lost",
        ),
        (
            "database system is shutting down",
            "the database server is shutting down",
        ),
        (
            "database system is starting up",
            "the database server is starting up",
        ),
        (
            "database system is in recovery mode",
            "the database server is recovering",
        ),
        (
            "connection to server",
            "the database server cannot be reached",
        ),
    ];
    let lower = message.to_ascii_lowercase();
    CAUSES
        .iter()
        .find(|(needle, _)| lower.contains(needle))
        .map(|(_, cause)| *cause)
}

impl From<r2d2::PoolError> for StoreError {
    fn from(e: r2d2::PoolError) -> Self {
        StoreError::Unavailable(e.to_string())
    }
}

/// Opens connections for the pool, applying per-connection settings.
#[derive(Debug, Clone)]
pub struct ConnectionFactory {
    target: DatabaseTarget,
    busy_timeout_ms: u64,
}

impl ConnectionFactory {
    /// Opens one connection to the configured database.
    pub fn open(&self) -> Result<DbConn, diesel::ConnectionError> {
        match &self.target {
            DatabaseTarget::Postgres(url) => {
                let mut conn =
                    diesel::PgConnection::establish(url).map_err(scrub_connection_error)?;
                conn.set_instrumentation(Liveness::default());
                Ok(DbConn::Postgresql(conn))
            }
            DatabaseTarget::Sqlite(path) => {
                planner::install().map_err(diesel::ConnectionError::BadConnection)?;
                let url = path.to_string_lossy();
                let mut conn = diesel::SqliteConnection::establish(&url)?;
                // WAL lets readers proceed during a write; FULL makes each commit durable
                // against power loss, which an audit trail of disclosures needs.
                conn.batch_execute(&format!(
                    "PRAGMA busy_timeout = {}; PRAGMA journal_mode = WAL; \
                     PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;",
                    self.busy_timeout_ms
                ))
                .map_err(diesel::ConnectionError::CouldntSetupConfiguration)?;
                Ok(DbConn::Sqlite(conn))
            }
        }
    }
}

/// How long after one of its statements finished well a PostgreSQL connection is taken as
/// alive at checkout without asking the server. HikariCP's default: a connection that
/// died in this window costs the one request that finds it a 503 (`database_unavailable`,
/// with `Retry-After`), and is then dropped ([`ConnectionFactory::has_broken`]); one idle
/// longer is asked (`SELECT 1`) and replaced without a failure.
pub const ALIVE_WINDOW: Duration = Duration::from_millis(500);

/// What a PostgreSQL connection's own statements say of it, recorded by diesel's
/// instrumentation hook as each finishes: when one last finished without an error, and
/// whether one found the connection closed. Asking the server at every checkout instead
/// cost a round trip and a statement parse per database trip (`docs/PERFORMANCE.md`,
/// twenty-fourth step).
#[derive(Debug, Default)]
struct Liveness {
    last_ok: Option<std::time::Instant>,
    lost: bool,
}

impl Liveness {
    /// The record kept on `conn`, if it was opened by [`ConnectionFactory::open`].
    fn of(conn: &mut diesel::PgConnection) -> Option<&Liveness> {
        conn.instrumentation().downcast_ref::<Liveness>()
    }

    /// Whether the connection can be used without asking: not lost, and well within
    /// [`ALIVE_WINDOW`] of its last statement.
    fn vouches(&self) -> bool {
        !self.lost && self.last_ok.is_some_and(|t| t.elapsed() < ALIVE_WINDOW)
    }
}

impl diesel::connection::Instrumentation for Liveness {
    fn on_connection_event(&mut self, event: diesel::connection::InstrumentationEvent<'_>) {
        use diesel::result::{DatabaseErrorKind, Error};
        if let diesel::connection::InstrumentationEvent::FinishQuery { error, .. } = event {
            match error {
                None => self.last_ok = Some(std::time::Instant::now()),
                Some(Error::DatabaseError(DatabaseErrorKind::ClosedConnection, _)) => {
                    self.lost = true;
                }
                Some(_) => {}
            }
        }
    }
}

/// PostgreSQL's connection errors can echo the connection string; keep only the first line
/// and drop anything after `password`.
fn scrub_connection_error(e: diesel::ConnectionError) -> diesel::ConnectionError {
    match e {
        diesel::ConnectionError::BadConnection(msg) => {
            let first = msg.lines().next().unwrap_or_default();
            let cut = first.find("password").map_or(first, |i| &first[..i]);
            diesel::ConnectionError::BadConnection(cut.trim().to_string())
        }
        other => other,
    }
}

impl ManageConnection for ConnectionFactory {
    type Connection = DbConn;
    type Error = diesel::r2d2::Error;

    fn connect(&self) -> Result<DbConn, Self::Error> {
        self.open().map_err(diesel::r2d2::Error::ConnectionError)
    }

    /// Run on every checkout. A PostgreSQL session can die with its server or socket, so it
    /// is asked, unless one of its own statements finished well within [`ALIVE_WINDOW`]
    /// ([`Liveness`]); a SQLite connection is a file handle in this process that cannot,
    /// and asking cost a statement parse and run per database trip on the hot path
    /// (`docs/PERFORMANCE.md`, first and twenty-fourth steps).
    fn is_valid(&self, conn: &mut DbConn) -> Result<(), Self::Error> {
        match conn {
            DbConn::Sqlite(_) => Ok(()),
            DbConn::Postgresql(c) => {
                if Liveness::of(c).is_some_and(Liveness::vouches) {
                    return Ok(());
                }
                c.batch_execute("SELECT 1")
                    .map_err(diesel::r2d2::Error::QueryError)
            }
        }
    }

    /// A connection is not reused when it comes back during a panic (whatever it was doing
    /// is unfinished), with a transaction still open or failed (on SQLite it would hold the
    /// write lock for every later writer), or, on PostgreSQL, after a statement found it
    /// lost.
    fn has_broken(&self, conn: &mut DbConn) -> bool {
        use diesel::r2d2::R2D2Connection;
        std::thread::panicking()
            || match conn {
                DbConn::Sqlite(c) => c.is_broken(),
                DbConn::Postgresql(c) => c.is_broken() || Liveness::of(c).is_some_and(|l| l.lost),
            }
    }
}

/// A pooled connection.
pub type Conn = PooledConnection<ConnectionFactory>;

/// The handle every part of the gateway uses to reach the database. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    pool: Pool<ConnectionFactory>,
    factory: ConnectionFactory,
    backend: Backend,
    /// Whether [`Store::run_read`] may run on the caller's thread (SQLite only).
    inline_reads: bool,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend)
            .finish_non_exhaustive()
    }
}

impl Store {
    /// Opens a pool on the configured database. Creates the SQLite file's folder if needed.
    pub fn open(settings: &Settings) -> Result<Store, StoreError> {
        let target = settings
            .database_target()
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Self::open_target(target, &settings.database)
    }

    /// Opens a pool on an explicit target.
    pub fn open_target(
        target: DatabaseTarget,
        settings: &DatabaseSettings,
    ) -> Result<Store, StoreError> {
        let backend = match &target {
            DatabaseTarget::Sqlite(path) => {
                if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
                    std::fs::create_dir_all(dir).map_err(|e| {
                        StoreError::Unavailable(format!("cannot create {}: {e}", dir.display()))
                    })?;
                }
                Backend::Sqlite
            }
            DatabaseTarget::Postgres(_) => Backend::Postgres,
        };
        let factory = ConnectionFactory {
            target,
            busy_timeout_ms: settings.sqlite_busy_timeout_ms,
        };
        let dedicated = factory.clone();
        let pool = Pool::builder()
            .max_size(settings.pool_size)
            .min_idle(Some(1))
            .connection_timeout(Duration::from_secs(settings.connect_timeout_secs.max(1)))
            .error_handler(Box::new(r2d2::NopErrorHandler))
            .build(factory)
            .map_err(|e| StoreError::Unavailable(e.to_string()))?;
        Ok(Store {
            pool,
            factory: dedicated,
            backend,
            inline_reads: backend == Backend::Sqlite && settings.sqlite_inline_reads,
        })
    }

    /// The engine behind this store.
    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// A connection outside the pool, for a task that holds session state (an advisory
    /// lock) for as long as it lives.
    pub fn dedicated(&self) -> Result<DbConn, StoreError> {
        self.factory
            .open()
            .map_err(|e| StoreError::Unavailable(e.to_string()))
    }

    /// A connection from the pool, for synchronous callers (the CLI, blocking tasks).
    pub fn conn(&self) -> Result<Conn, StoreError> {
        Ok(self.pool.get()?)
    }

    /// Runs `work` with a pooled connection on a blocking thread.
    pub async fn run<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
    {
        let pool = self.pool.clone();
        crate::cpus::spawn_blocking(move || {
            let mut conn = pool.get().map_err(StoreError::from)?;
            work(&mut conn)
        })
        .await
        .map_err(|e| E::from(StoreError::Task(e.to_string())))?
    }

    /// [`Store::run`] for a short read that never waits on a lock: on SQLite, when a pooled
    /// connection is free at this moment, `work` runs on the calling thread, sparing the
    /// hand-off to a blocking thread and back (two thread switches, a fifth of a
    /// consent-checked read's cost: `docs/PERFORMANCE.md`). Otherwise, always on
    /// PostgreSQL, whose statements wait on the network, and with
    /// `database.sqlite_inline_reads` off, it runs as [`Store::run`] does.
    ///
    /// Only for reads: a SQLite reader in WAL mode takes no lock a writer holds, so `work`
    /// costs its own CPU and its page reads, like a handler's parsing (which is why the
    /// setting exists: with a database much larger than the page cache, a page read can wait
    /// on the disk); a write could wait for the write lock up to the busy timeout and stall
    /// every request of the worker.
    pub async fn run_read<T, E, F>(&self, work: F) -> Result<T, E>
    where
        T: Send + 'static,
        E: From<StoreError> + Send + 'static,
        F: FnOnce(&mut DbConn) -> Result<T, E> + Send + 'static,
    {
        if self.inline_reads
            && let Some(mut conn) = self.pool.try_get()
        {
            return work(&mut conn);
        }
        self.run(work).await
    }

    /// Applies pending migrations; returns the names applied.
    pub fn migrate(&self) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn()?;
        let applied = match &mut *conn {
            DbConn::Sqlite(c) => c
                .run_pending_migrations(SQLITE_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
            DbConn::Postgresql(c) => c
                .run_pending_migrations(POSTGRES_MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect()),
        };
        applied.map_err(|e| StoreError::Migration(e.to_string()))
    }

    /// How many migrations are not yet applied.
    pub fn pending_migrations(&self) -> Result<usize, StoreError> {
        let mut conn = self.conn()?;
        let pending = match &mut *conn {
            DbConn::Sqlite(c) => c.pending_migrations(SQLITE_MIGRATIONS).map(|v| v.len()),
            DbConn::Postgresql(c) => c.pending_migrations(POSTGRES_MIGRATIONS).map(|v| v.len()),
        };
        pending.map_err(|e| StoreError::Migration(e.to_string()))
    }
}

/// Runs `work` in a write transaction, committed when it returns `Ok`, rolled back otherwise.
///
/// On SQLite the transaction begins `IMMEDIATE`, taking the write lock up front: a deferred
/// transaction that reads and then writes fails at once with `SQLITE_BUSY` when another
/// writer got there first, which the busy timeout cannot help.
///
/// A panic inside `work` rolls the transaction back before it unwinds on, and the pool then
/// discards the connection ([`ConnectionFactory::has_broken`]): a connection must never go back
/// to the pool inside a transaction, where on SQLite it would keep the write lock and stop
/// every later writer.
pub fn write_tx<T, E, F>(conn: &mut DbConn, work: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(&mut DbConn) -> Result<T, E>,
{
    begin_write(conn).map_err(StoreError::from)?;
    within_tx(conn, work)
}

/// Runs `work`'s reads as one snapshot where that is cheap: on SQLite, in one deferred
/// transaction, so its statements share one read lock and one look at the write-ahead log.
/// In autocommit each statement takes its own, and a connection drops its whole page cache
/// whenever another connection has committed since it last looked, which on the hot path
/// (the audit writer commits continuously) meant every statement of a trip read its pages
/// again. On PostgreSQL the statements run as they are, each its own snapshot, sparing the
/// two round trips of `BEGIN` and `COMMIT`.
///
/// A panic inside `work` ends the transaction before it unwinds on, as in [`write_tx`].
pub fn read_tx<T, E, F>(conn: &mut DbConn, work: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(&mut DbConn) -> Result<T, E>,
{
    match conn {
        DbConn::Sqlite(c) => {
            AnsiTransactionManager::begin_transaction_sql(c, "BEGIN").map_err(StoreError::from)?;
            within_tx(conn, work)
        }
        DbConn::Postgresql(_) => work(conn),
    }
}

/// Runs `work` inside the transaction just begun: committed when it returns `Ok`, rolled
/// back when it fails or panics.
fn within_tx<T, E, F>(conn: &mut DbConn, work: F) -> Result<T, E>
where
    E: From<StoreError>,
    F: FnOnce(&mut DbConn) -> Result<T, E>,
{
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(conn))) {
        Ok(Ok(value)) => {
            finish(conn, true).map_err(StoreError::from)?;
            Ok(value)
        }
        Ok(Err(e)) => {
            // A failed rollback leaves nothing committed and marks the connection broken;
            // the original error matters more.
            let _ = finish(conn, false);
            Err(e)
        }
        Err(panic) => {
            let _ = finish(conn, false);
            std::panic::resume_unwind(panic)
        }
    }
}

fn begin_write(conn: &mut DbConn) -> diesel::QueryResult<()> {
    match conn {
        DbConn::Sqlite(c) => AnsiTransactionManager::begin_transaction_sql(c, "BEGIN IMMEDIATE"),
        DbConn::Postgresql(c) => <AnsiTransactionManager as TransactionManager<
            diesel::PgConnection,
        >>::begin_transaction(c),
    }
}

/// Commits (or rolls back) the transaction [`begin_write`] or [`read_tx`] opened.
fn finish(conn: &mut DbConn, commit: bool) -> diesel::QueryResult<()> {
    type Tm = AnsiTransactionManager;
    match (conn, commit) {
        (DbConn::Sqlite(c), true) => {
            <Tm as TransactionManager<diesel::SqliteConnection>>::commit_transaction(c)
        }
        (DbConn::Sqlite(c), false) => {
            <Tm as TransactionManager<diesel::SqliteConnection>>::rollback_transaction(c)
        }
        (DbConn::Postgresql(c), true) => {
            <Tm as TransactionManager<diesel::PgConnection>>::commit_transaction(c)
        }
        (DbConn::Postgresql(c), false) => {
            <Tm as TransactionManager<diesel::PgConnection>>::rollback_transaction(c)
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;

#[cfg(test)]
mod outage_tests {
    use super::*;
    use diesel::result::{DatabaseErrorKind, Error};

    fn db_error(message: &str) -> StoreError {
        StoreError::from(Error::DatabaseError(
            DatabaseErrorKind::Unknown,
            Box::new(message.to_string()),
        ))
    }

    #[test]
    fn outages_are_unavailable_and_query_errors_are_not() {
        for message in [
            "database or disk is full",
            "attempt to write a readonly database",
            "disk I/O error",
            "server closed the connection unexpectedly\n\tThis probably means...",
            "terminating connection due to administrator command",
            "no connection to the server",
        ] {
            assert!(
                matches!(db_error(message), StoreError::Unavailable(_)),
                "{message}"
            );
        }
        assert!(matches!(
            db_error("no such table: resources"),
            StoreError::Query(_)
        ));
        assert!(matches!(
            StoreError::from(Error::DatabaseError(
                DatabaseErrorKind::ClosedConnection,
                Box::new(String::new())
            )),
            StoreError::Unavailable(_)
        ));
    }
}
