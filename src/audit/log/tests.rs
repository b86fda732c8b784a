//! The writer's own SQLite connection: entries become durable while every pooled connection
//! is taken, and a failed batch does not stop the batches after it.

use diesel::RunQueryDsl;

use super::*;
use crate::audit::{AuditAction, AuditOutcome};
use crate::config::{DatabaseSettings, DatabaseTarget};

fn one_pooled_connection() -> DatabaseSettings {
    DatabaseSettings {
        url: String::new().into(),
        pool_size: 1,
        connect_timeout_secs: 1,
        sqlite_busy_timeout_ms: 500,
        audit_commit_wait_us: 0,
        sqlite_inline_reads: true,
        migrate_on_start: false,
    }
}

fn entry(request_id: &str) -> AuditEntry {
    AuditEntry::new(AuditAction::Read, AuditOutcome::Success, request_id.into())
}

fn committed(store: &Store) -> u64 {
    let mut conn = store.conn().expect("connection");
    crate::store::audit::size(&mut conn).expect("size")
}

#[test]
fn the_sqlite_writer_commits_on_its_own_connection_and_recovers_from_a_failed_batch() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open_target(
        DatabaseTarget::Sqlite(dir.path().join("cg.db")),
        &one_pooled_connection(),
    )
    .expect("store");
    store.migrate().expect("migrations apply");
    let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime");

    // The pool's only connection is held for longer than the pool's checkout timeout: a
    // writer that needed it would fail the entry after a second.
    let held = store.conn().expect("the pooled connection");
    let started = Instant::now();
    let seq = runtime
        .block_on(log.record(entry("while-the-pool-is-taken")))
        .expect("durable without a pooled connection");
    assert_eq!(seq, 0);
    assert!(
        started.elapsed() < Duration::from_millis(900),
        "the writer waited for the pool"
    );

    // A batch that cannot commit (the head row is gone) fails its entries, and the next
    // batch commits, on a connection opened again, at the next sequence.
    let mut conn = held;
    diesel::sql_query("DELETE FROM audit_head")
        .execute(&mut *conn)
        .expect("head removed");
    drop(conn);
    runtime
        .block_on(log.record(entry("with-no-head")))
        .expect_err("no head, no commit");
    let mut conn = store.conn().expect("connection");
    diesel::sql_query("INSERT INTO audit_head (id, size) VALUES (1, 1)")
        .execute(&mut *conn)
        .expect("head restored");
    drop(conn);
    let seq = runtime
        .block_on(log.record(entry("after-the-failure")))
        .expect("the writer goes on");
    assert_eq!(seq, 1);
    assert_eq!(committed(&store), 2);
}
