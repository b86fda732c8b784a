//! The writer's own SQLite connection: entries become durable while every pooled connection
//! is taken, and a failed batch does not stop the batches after it. Held notifications:
//! written when due, when flushed and when the writer ends on SQLite, with their batch on
//! PostgreSQL, and derived again from the entries after a crash.

use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

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
        audit_notice_delay_ms: 25,
        sqlite_inline_reads: true,
        migrate_on_start: false,
    }
}

/// A migrated SQLite store in `dir` with one pooled connection.
fn sqlite_store(dir: &std::path::Path) -> Store {
    let store = Store::open_target(
        DatabaseTarget::Sqlite(dir.join("cg.db")),
        &one_pooled_connection(),
    )
    .expect("store");
    store.migrate().expect("migrations apply");
    store
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
    let store = sqlite_store(dir.path());
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

/// A recipient's successful read of one of `patient`'s records: an entry that calls for a
/// disclosure notification (a break-glass one with `break_glass`).
fn disclosure(client_id: &str, patient: &str, break_glass: bool) -> AuditEntry {
    let mut entry = entry(&uuid::Uuid::now_v7().to_string());
    entry.recorded_micros = crate::fhir_time::now_micros();
    entry.client_id = client_id.into();
    entry.organisation = "clinic".into();
    entry.purpose_of_use = if break_glass { "ETREAT" } else { "TREAT" }.into();
    entry.patient_id = Some(patient.into());
    entry.resources = vec![format!("Patient/{patient}"), "Observation/o1".into()];
    entry.consents = vec!["consent-1".into()];
    entry.break_glass = break_glass.then(|| "unconscious on arrival".into());
    entry
}

/// The stored notifications reporting entry `seq`.
fn notices_of(store: &Store, seq: u64) -> Vec<crate::store::notifications::NotificationRow> {
    use crate::store::schema::notifications;
    let mut conn = store.conn().expect("connection");
    notifications::table
        .filter(notifications::audit_seq.eq(seq as i64))
        .load(&mut *conn)
        .expect("notifications read")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// Waits up to 10 s for `check`.
fn eventually(what: &str, check: impl Fn() -> bool) {
    let started = Instant::now();
    while !check() {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "timed out: {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn notifications_are_held_on_sqlite_until_due_flushed_or_the_writer_ends_and_written_with_their_batch_on_postgresql()
 {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = runtime();
    for (store, pg_name) in crate::store::tests::stores(dir.path()) {
        let backend = store.backend();
        // Held for an hour: only a flush or the writer's end writes them.
        let log = AuditLog::start_holding(store.clone(), Duration::ZERO, Duration::from_secs(3600))
            .expect("writer");
        let seq = rt
            .block_on(log.record(disclosure("clin", "p1", false)))
            .expect("durable");
        let operator = rt
            .block_on(log.record({
                let mut e = disclosure("operator", "p1", false);
                e.client_id = crate::audit::OPERATOR_CLIENT.into();
                e
            }))
            .expect("durable");
        match backend {
            Backend::Sqlite => {
                assert!(notices_of(&store, seq).is_empty(), "held, not written");
                assert_eq!(log.held.load(Ordering::SeqCst), 1);
                rt.block_on(log.flush_notices()).expect("flushed");
                assert_eq!(log.held.load(Ordering::SeqCst), 0);
            }
            Backend::Postgres => assert_eq!(log.held.load(Ordering::SeqCst), 0),
        }
        let written = notices_of(&store, seq);
        assert_eq!(
            written.len(),
            1,
            "{backend:?}: one notification of the read"
        );
        assert_eq!(written[0].kind, "disclosure");
        assert_eq!(written[0].patient_id, "p1");
        assert!(
            notices_of(&store, operator).is_empty(),
            "an operator discloses nothing"
        );

        // A second flush with nothing held answers at once and writes nothing more.
        rt.block_on(log.flush_notices()).expect("nothing to flush");
        assert_eq!(notices_of(&store, seq).len(), 1);

        // Held ones are written when the last handle goes.
        let glass = rt
            .block_on(log.record(disclosure("clin", "p2", true)))
            .expect("durable");
        drop(log);
        eventually("the ending writer writes what it held", || {
            notices_of(&store, glass).len() == 1
        });
        assert_eq!(notices_of(&store, glass)[0].kind, "break_glass");

        // Held for 30 ms: written when due, with no flush and no further entry.
        let log = AuditLog::start_holding(store.clone(), Duration::ZERO, Duration::from_millis(30))
            .expect("writer");
        let due = rt
            .block_on(log.record(disclosure("clin", "p1", false)))
            .expect("durable");
        eventually("the held notification is written when due", || {
            notices_of(&store, due).len() == 1
        });
        assert_eq!(log.held.load(Ordering::SeqCst), 0);
        drop(log);
        crate::store::tests::drop_database(store, pg_name);
    }
}

#[test]
fn notifications_a_crash_lost_are_derived_again_from_the_entries_when_the_writer_starts() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sqlite_store(dir.path());
    let rt = runtime();

    // Entry 0's notification was written; the writer then committed entries 1 to 4 and
    // died holding their notifications.
    let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
    let first = rt
        .block_on(log.record(disclosure("clin", "p1", false)))
        .expect("durable");
    rt.block_on(log.flush_notices()).expect("flushed");
    drop(log);
    let mut operator = disclosure("operator", "p1", false);
    operator.client_id = crate::audit::OPERATOR_CLIENT.into();
    let mut denied = disclosure("clin", "p2", false);
    denied.outcome = AuditOutcome::Denied;
    let lost = vec![
        disclosure("clin", "p2", false),
        operator,
        disclosure("clin", "p3", true),
        denied,
    ];
    let expected: Vec<Option<(String, String)>> = lost
        .iter()
        .enumerate()
        .map(|(i, e)| {
            let mut e = e.clone();
            e.sequence = first + 1 + i as u64;
            crate::notify::for_audit_entry(&e)
                .map(|n| (n.kind.as_str().to_string(), n.summary.to_string()))
        })
        .collect();
    let mut conn = store.dedicated().expect("connection");
    let Committed {
        first: from,
        kept: dropped,
        ..
    } = commit(
        &mut conn,
        None,
        lost,
        Notices::Held {
            held: &[],
            write: false,
        },
    )
    .expect("committed");
    drop(conn);
    assert_eq!(from, first + 1);
    assert_eq!(dropped.len(), 2, "two of the four call for a notification");
    for seq in from..from + 4 {
        assert!(notices_of(&store, seq).is_empty(), "lost with the writer");
    }

    // The next writer derives them before its first batch.
    let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
    let next = rt
        .block_on(log.record(disclosure("clin", "p1", false)))
        .expect("durable");
    assert_eq!(next, from + 4);
    assert_eq!(notices_of(&store, first).len(), 1, "not written twice");
    for (i, want) in expected.iter().enumerate() {
        let got: Vec<(String, String)> = notices_of(&store, from + i as u64)
            .into_iter()
            .map(|n| (n.kind, n.summary))
            .collect();
        assert_eq!(
            got,
            want.iter().cloned().collect::<Vec<_>>(),
            "entry {}",
            from + i as u64
        );
    }
    rt.block_on(log.flush_notices()).expect("flushed");
    assert_eq!(notices_of(&store, next).len(), 1);
}

/// A disclosure notification of entry `seq` with `summary`.
fn notice_of(seq: u64, summary: serde_json::Value) -> NewNotification {
    let mut entry = disclosure("clin", "p9", false);
    entry.sequence = seq;
    let mut notice = crate::notify::for_audit_entry(&entry).expect("a disclosure");
    notice.summary = summary;
    notice
}

/// Another notification of the same entry already stored: the database refuses the held one
/// for good (the once-per-entry index).
fn poison(store: &Store, seq: u64) {
    let notice = notice_of(seq, serde_json::json!({"written": "elsewhere"}));
    let mut conn = store.conn().expect("connection");
    write_tx(&mut conn, |conn| crate::notify::enqueue(conn, &[notice])).expect("written");
}

#[test]
fn a_held_notification_the_database_refuses_holds_back_neither_the_entries_nor_the_others() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sqlite_store(dir.path());
    let rt = runtime();

    // In their own transaction (a flush): the refused one is dropped, the other written.
    let log = AuditLog::start_holding(store.clone(), Duration::ZERO, Duration::from_secs(3600))
        .expect("writer");
    let refused = rt
        .block_on(log.record(disclosure("clin", "p1", false)))
        .expect("durable");
    let fine = rt
        .block_on(log.record(disclosure("clin", "p2", false)))
        .expect("durable");
    poison(&store, refused);
    rt.block_on(log.flush_notices())
        .expect("what can be written is");
    assert_eq!(log.held.load(Ordering::SeqCst), 0, "nothing left held");
    assert_eq!(notices_of(&store, fine).len(), 1);
    let kept = notices_of(&store, refused);
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0].summary.contains("elsewhere"),
        "the stored one stays"
    );
    drop(log);

    // Inside a batch: the savepoint rolls back the notifications alone; the entries commit.
    let mut conn = store.dedicated().expect("connection");
    let size = crate::store::audit::size(&mut conn).expect("size");
    let refused_notice = notice_of(fine, serde_json::json!({"again": true}));
    let done = commit(
        &mut conn,
        None,
        vec![disclosure("clin", "p4", false)],
        Notices::Held {
            held: &[refused_notice],
            write: true,
        },
    )
    .expect("the batch commits");
    assert!(!done.held_written);
    assert_eq!(done.first, size);
    assert_eq!(
        done.kept.len(),
        1,
        "the batch's own notification comes back to be held"
    );
    assert_eq!(
        crate::store::audit::size(&mut conn).expect("size"),
        size + 1
    );
    assert!(
        notices_of(&store, size).is_empty(),
        "rolled back with the refused one"
    );
    assert!(!notices_of(&store, fine)[0].summary.contains("again"));
}
