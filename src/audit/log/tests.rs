//! The writer's own SQLite connection: entries become durable while every pooled connection
//! is taken, and a failed batch does not stop the batches after it. Notices: each entry is
//! stored with the kind of notification it calls for, on both backends, and the entries an
//! earlier writer left without one get theirs once, when the writer starts.

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

    // A batch that cannot commit (the tree's nodes have nowhere to go) fails its entries,
    // and the next batch commits, on a connection opened again, at the next sequence.
    let mut conn = held;
    diesel::sql_query("ALTER TABLE audit_nodes RENAME TO audit_nodes_away")
        .execute(&mut *conn)
        .expect("nodes table moved away");
    drop(conn);
    runtime
        .block_on(log.record(entry("with-no-nodes-table")))
        .expect_err("no nodes table, no commit");
    assert_eq!(committed(&store), 1, "the failed batch left nothing");
    let mut conn = store.conn().expect("connection");
    diesel::sql_query("ALTER TABLE audit_nodes_away RENAME TO audit_nodes")
        .execute(&mut *conn)
        .expect("nodes table back");
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

/// The notice stored with entry `seq`.
fn notice_at(store: &Store, seq: u64) -> Option<String> {
    use crate::store::schema::audit_entries;
    let mut conn = store.conn().expect("connection");
    audit_entries::table
        .filter(audit_entries::seq.eq(seq as i64))
        .select(audit_entries::notice)
        .first(&mut *conn)
        .expect("the entry")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_time()
        .build()
        .expect("runtime")
}

/// A recipient's read, an operator's, a break-glass read and a refused one: what each
/// calls for, as `notify::kind_of` says.
fn four_entries() -> (Vec<AuditEntry>, Vec<Option<&'static str>>) {
    let mut operator = disclosure("operator", "p1", false);
    operator.client_id = crate::audit::OPERATOR_CLIENT.into();
    let mut denied = disclosure("clin", "p2", false);
    denied.outcome = AuditOutcome::Denied;
    let entries = vec![
        disclosure("clin", "p1", false),
        operator,
        disclosure("clin", "p3", true),
        denied,
    ];
    (
        entries,
        vec![Some("disclosure"), None, Some("break_glass"), None],
    )
}

#[test]
fn each_entry_is_stored_with_the_notice_it_calls_for_on_both_backends() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = runtime();
    for (store, pg_name) in crate::store::tests::stores(dir.path()) {
        let backend = store.backend();
        let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
        let (entries, wanted) = four_entries();
        for (entry, want) in entries.into_iter().zip(wanted) {
            let seq = rt.block_on(log.record(entry)).expect("durable");
            assert_eq!(
                notice_at(&store, seq).as_deref(),
                want,
                "{backend:?}: {seq}"
            );
        }
        drop(log);
        crate::store::tests::drop_database(store, pg_name);
    }
}

#[test]
fn entries_an_earlier_writer_left_without_a_notice_get_theirs_once_when_the_writer_starts() {
    use crate::store::schema::notification_derivation as d;
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = runtime();
    for (store, pg_name) in crate::store::tests::stores(dir.path()) {
        let backend = store.backend();
        // Entry 0 is before the range (its notification was stored then); 1 to 4 were
        // written by the earlier writer, which held their notifications and crashed.
        let mut conn = store.dedicated().expect("connection");
        let (lost, wanted) = four_entries();
        let mut all = vec![disclosure("clin", "p0", false)];
        all.extend(lost);
        commit(&mut conn, None, all).expect("committed");
        diesel::update(crate::store::schema::audit_entries::table)
            .set(crate::store::schema::audit_entries::notice.eq(None::<String>))
            .execute(&mut conn)
            .expect("as the earlier writer left them");
        diesel::update(d::table)
            .set((d::legacy_from.eq(1), d::legacy_to.eq(5)))
            .execute(&mut conn)
            .expect("the migration's range");
        // The patient index was built over them, without notices, as the upgrade builds it.
        crate::store::write_tx(&mut conn, |c| crate::store::patient_index::extend(c, 100))
            .expect("the patient index");
        drop(conn);

        let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
        // Its first batch waits for the derivation, which runs before the writer takes one.
        let next = rt
            .block_on(log.record(disclosure("clin", "p1", false)))
            .expect("durable");
        assert_eq!(next, 5);
        assert_eq!(notice_at(&store, 0), None, "{backend:?}: before the range");
        for (i, want) in wanted.iter().enumerate() {
            let seq = 1 + i as u64;
            assert_eq!(
                notice_at(&store, seq).as_deref(),
                *want,
                "{backend:?}: {seq}"
            );
        }
        assert_eq!(notice_at(&store, next).as_deref(), Some("disclosure"));
        let mut conn = store.conn().expect("connection");
        let range: (i64, i64) =
            crate::store::notifications::legacy_range(&mut conn).expect("the range");
        assert_eq!(range, (5, 5), "{backend:?}: done, and not done again");
        // The patient index, which had passed them, has their notices too.
        let noticed = |c: &mut DbConn, patient: &str| -> Vec<i64> {
            crate::store::patient_index::patient_notices(c, patient, None, false, 10)
                .expect("notices")
                .iter()
                .map(|e| e.seq)
                .collect()
        };
        assert_eq!(noticed(&mut conn, "p1"), [5, 1], "{backend:?}");
        assert_eq!(noticed(&mut conn, "p3"), [3], "{backend:?}");
        assert_eq!(noticed(&mut conn, "p2"), Vec::<i64>::new(), "{backend:?}");
        drop(conn);
        drop(log);
        crate::store::tests::drop_database(store, pg_name);
    }
}

/// The writer extends the patient index over what it committed once it is idle, with the
/// keys it kept, on both backends: the cursor reaches the log's end and a patient's entries
/// are found through the index.
#[test]
fn the_writer_extends_the_patient_index_once_idle() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let rt = runtime();
    for (store, pg_name) in crate::store::tests::stores(dir.path()) {
        let backend = store.backend();
        let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
        for patient in ["p1", "p2", "p1"] {
            rt.block_on(log.record(disclosure("clin", patient, false)))
                .expect("durable");
        }
        // The store has one pooled connection, which the writer takes on PostgreSQL: held
        // only to look.
        let cursor = || {
            let mut conn = store.conn().expect("connection");
            crate::store::patient_index::next_seq(&mut conn).expect("cursor")
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while cursor() < 3 {
            assert!(
                Instant::now() < deadline,
                "{backend:?}: the index never caught up"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let mut conn = store.conn().expect("connection");
        let indexed: i64 = crate::store::schema::audit_patient_entries::table
            .filter(crate::store::schema::audit_patient_entries::patient_id.eq("p1"))
            .count()
            .get_result(&mut *conn)
            .expect("count");
        assert_eq!(indexed, 2, "{backend:?}");
        let noticed = crate::store::patient_index::notice_count(&mut conn, "p1").expect("count");
        assert_eq!(noticed, 2, "{backend:?}");
        drop(conn);
        drop(log);
        crate::store::tests::drop_database(store, pg_name);
    }
}

/// With a commit wait far longer than any test, a batch is held open while an entry is
/// announced and committed as soon as the last announcement ends: handed over (both
/// entries in one commit) or dropped without an entry (a request that failed).
#[test]
fn a_batch_waits_for_announced_entries_and_no_longer() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sqlite_store(dir.path());
    let log = Arc::new(AuditLog::start(store.clone(), Duration::from_secs(60)).expect("writer"));
    // Records `request_id` on a thread of its own; the receiver gets its sequence.
    let record_apart = |request_id: &'static str| {
        let (tx, rx) = std::sync::mpsc::channel();
        let log = log.clone();
        std::thread::spawn(move || {
            let seq = runtime().block_on(log.record(entry(request_id)));
            let _ = tx.send(seq.expect("durable"));
        });
        rx
    };
    let hold = Duration::from_millis(300);
    let prompt = Duration::from_secs(20);

    let announced = log.announce();
    let first = record_apart("unannounced");
    assert!(
        first.recv_timeout(hold).is_err(),
        "the batch did not wait for the announced entry"
    );
    let started = Instant::now();
    runtime()
        .block_on(log.record_announced(Some(announced), entry("announced")))
        .expect("durable");
    first
        .recv_timeout(prompt)
        .expect("the held entry committed");
    assert!(
        started.elapsed() < prompt,
        "the batch waited out the commit wait"
    );
    assert_eq!(log.counts.commits.get(), 1, "one commit for both entries");

    let announced = log.announce();
    let second = record_apart("before-a-failed-request");
    assert!(second.recv_timeout(hold).is_err(), "the batch did not wait");
    let started = Instant::now();
    drop(announced);
    assert_eq!(second.recv_timeout(prompt).expect("committed"), 2);
    assert!(started.elapsed() < prompt);
    assert_eq!(committed(&store), 3);
}
