//! The pool and `write_tx` on both backends: a panicking transaction leaves nothing behind.

use diesel::sql_types::{BigInt, Text};
use diesel::{QueryableByName, RunQueryDsl};

use super::*;

/// Settings for a one-connection pool, so that a connection left in a transaction would be
/// the very one the next caller gets.
fn one_connection() -> DatabaseSettings {
    DatabaseSettings {
        url: String::new().into(),
        pool_size: 1,
        connect_timeout_secs: 5,
        sqlite_busy_timeout_ms: 500,
        audit_commit_wait_us: 0,
        sqlite_inline_reads: true,
        migrate_on_start: false,
    }
}

/// A migrated store on SQLite, and on PostgreSQL when a test server is configured.
pub(crate) fn stores(dir: &std::path::Path) -> Vec<(Store, Option<String>)> {
    let mut out = Vec::new();
    let sqlite = Store::open_target(DatabaseTarget::Sqlite(dir.join("cg.db")), &one_connection())
        .expect("sqlite store");
    out.push((sqlite, None));
    match std::env::var("CONSENTGATE_TEST_POSTGRES_URL") {
        Ok(admin) => {
            let name = format!("cg_store_{}", uuid::Uuid::now_v7().simple());
            let mut conn = diesel::PgConnection::establish(&admin).expect("admin connection");
            diesel::sql_query(format!("CREATE DATABASE {name}"))
                .execute(&mut conn)
                .expect("create database");
            let (base, _) = admin.rsplit_once('/').expect("admin URL names a database");
            let store = Store::open_target(
                DatabaseTarget::Postgres(format!("{base}/{name}")),
                &one_connection(),
            )
            .expect("postgres store");
            out.push((store, Some(name)));
        }
        Err(_) => eprintln!(
            "!!!!! POSTGRESQL CASE SKIPPED: set CONSENTGATE_TEST_POSTGRES_URL to run it !!!!!"
        ),
    }
    for (store, _) in &out {
        store.migrate().expect("migrations apply");
    }
    out
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

fn jtis(conn: &mut DbConn, jti: &str) -> i64 {
    diesel::sql_query("SELECT COUNT(*) AS n FROM revoked_tokens WHERE jti = $1")
        .bind::<Text, _>(jti)
        .get_result::<Count>(conn)
        .expect("count")
        .n
}

fn insert(conn: &mut DbConn, jti: &str) -> Result<(), StoreError> {
    diesel::sql_query("INSERT INTO revoked_tokens (jti, expires_at) VALUES ($1, 1)")
        .bind::<Text, _>(jti)
        .execute(conn)?;
    Ok(())
}

#[test]
fn a_panic_inside_write_tx_rolls_back_and_frees_the_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let panicking = store.clone();
        let outcome = std::thread::spawn(move || {
            let mut conn = panicking.conn().expect("connection");
            let _: Result<(), StoreError> = write_tx(&mut conn, |conn| {
                insert(conn, "written-before-the-panic")?;
                panic!("a bug inside a database closure");
            });
        })
        .join();
        assert!(
            outcome.is_err(),
            "{backend:?}: the panic reaches the caller"
        );

        // The only pooled connection was discarded: the next caller gets a fresh one, outside
        // any transaction, and can write at once.
        let mut conn = store.conn().expect("a connection after the panic");
        write_tx(&mut conn, |conn| insert(conn, "written-after-the-panic"))
            .unwrap_or_else(|e| panic!("{backend:?}: the next write fails: {e}"));
        assert_eq!(
            jtis(&mut conn, "written-before-the-panic"),
            0,
            "{backend:?}"
        );
        assert_eq!(jtis(&mut conn, "written-after-the-panic"), 1, "{backend:?}");
        drop(conn);
        drop_database(store, pg_name);
    }
}

#[test]
fn an_error_inside_write_tx_rolls_back_and_keeps_the_connection_usable() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        let failed: Result<(), StoreError> = write_tx(&mut conn, |conn| {
            insert(conn, "rolled-back")?;
            Err(StoreError::Conflict)
        });
        assert!(matches!(failed, Err(StoreError::Conflict)), "{backend:?}");
        let mut factory_view = conn;
        assert!(
            !store.factory.has_broken(&mut factory_view),
            "{backend:?}: a rolled-back connection is healthy"
        );
        write_tx(&mut factory_view, |conn| insert(conn, "committed")).expect("next write");
        assert_eq!(jtis(&mut factory_view, "rolled-back"), 0, "{backend:?}");
        assert_eq!(jtis(&mut factory_view, "committed"), 1, "{backend:?}");
        drop(factory_view);
        drop_database(store, pg_name);
    }
}

/// `run_read` runs on the caller's thread only on SQLite with a connection free at once;
/// with the pool's one connection taken, or on PostgreSQL, on a blocking thread, and it
/// answers either way.
#[test]
fn run_read_stays_on_the_callers_thread_only_on_sqlite_with_a_free_connection() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    let thread_of = |store: &Store| {
        runtime.block_on(store.run_read(|conn| {
            assert_eq!(jtis(conn, "never-revoked"), 0);
            Ok::<_, StoreError>(std::thread::current().id())
        }))
    };
    let here = std::thread::current().id();
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let free = thread_of(&store).expect("a read with the connection free");
        assert_eq!(free == here, backend == Backend::Sqlite, "{backend:?}");
        // The pool's one connection is taken, and given back a little later.
        let held = store.conn().expect("connection");
        let release = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(50));
            drop(held);
        });
        let busy = thread_of(&store).expect("a read waits for the connection elsewhere");
        assert_ne!(busy, here, "{backend:?}: waited on a blocking thread");
        release.join().expect("release");
        drop_database(store, pg_name);
    }
    let mut off = one_connection();
    off.sqlite_inline_reads = false;
    let store = Store::open_target(DatabaseTarget::Sqlite(dir.path().join("off.db")), &off)
        .expect("sqlite store");
    store.migrate().expect("migrations apply");
    let off_thread = thread_of(&store).expect("a read with inline reads off");
    assert_ne!(
        off_thread, here,
        "sqlite_inline_reads = false hands the trip over"
    );
}

pub(crate) fn drop_database(store: Store, pg_name: Option<String>) {
    drop(store);
    if let (Some(name), Ok(admin)) = (pg_name, std::env::var("CONSENTGATE_TEST_POSTGRES_URL"))
        && let Ok(mut conn) = diesel::PgConnection::establish(&admin)
    {
        let _ = diesel::sql_query(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
            .execute(&mut conn);
    }
}

/// A registered clinician client `id` of organisation `org`, acting for no one else.
pub(crate) fn clinician(id: &str) -> identity::ClientRow {
    identity::ClientRow {
        id: id.into(),
        name: "n".into(),
        organization: "org".into(),
        role: "clinician".into(),
        jwks: None,
        jwks_url: None,
        purposes: "[]".into(),
        resources: "[]".into(),
        created_at: 1,
        removed_at: None,
        acts_as: "[]".into(),
        default_purpose: None,
    }
}

fn put(conn: &mut DbConn, resource_type: &str, id: &str, patient: Option<&str>) {
    let w = resources::ResourceWrite {
        resource_type: resource_type.into(),
        id: id.into(),
        version_id: 1,
        last_updated: 1,
        patient_id: patient.map(str::to_string),
        clinical: None,
        body: format!(r#"{{"resourceType":"{resource_type}","id":"{id}"}}"#),
        facts: None,
        tokens: Vec::new(),
        source_client: None,
        written_by: None,
    };
    write_tx(conn, |conn| resources::write(conn, &w)).expect("written");
}

/// A plain search of one patient's resources of one type takes the fixed statement; its
/// pages are those of the statement built for the query, on both backends.
#[test]
fn a_plain_patient_search_answers_as_the_built_statement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        for (i, id) in ["o7", "o1", "o10", "o3", "o2", "o9"].iter().enumerate() {
            let patient = if i % 3 == 2 { "p2" } else { "p1" };
            put(&mut conn, "Observation", id, Some(patient));
        }
        put(&mut conn, "Condition", "o4", Some("p1"));
        put(&mut conn, "Observation", "o5", None);
        for patient in ["p1", "p2", "p3"] {
            for after in [None, Some(""), Some("o1"), Some("o2"), Some("o9")] {
                for limit in [1, 2, 50] {
                    let q = resources::ResourceQuery {
                        resource_type: "Observation".into(),
                        patient_ids: vec![patient.into()],
                        after_id: after.map(str::to_string),
                        limit,
                        ..Default::default()
                    };
                    let fixed = resources::search(&mut conn, &q).expect("fixed");
                    let built = resources::search_built(&mut conn, &q).expect("built");
                    assert_eq!(fixed, built, "{backend:?} {patient} {after:?} {limit}");
                }
            }
        }
        drop(conn);
        drop_database(store, pg_name);
    }
}

#[test]
fn a_patients_resources_page_by_id_on_the_fixed_statement() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        for id in ["c5", "c1", "c3", "c2", "c4"] {
            put(&mut conn, "Consent", id, Some("p1"));
        }
        put(&mut conn, "Consent", "other", Some("p2"));
        put(&mut conn, "Observation", "c0", Some("p1"));
        put(&mut conn, "Consent", "nobody", None);

        // Pages of two, each statement run again with new bindings, as the consent read does.
        let mut seen = Vec::new();
        let mut after = String::new();
        loop {
            let page = resources::of_patient_page(&mut conn, "Consent", "p1", &after, 2)
                .unwrap_or_else(|e| panic!("{backend:?}: {e}"));
            assert!(page.len() <= 2, "{backend:?}: the limit holds");
            let Some((last, _, _)) = page.last() else {
                break;
            };
            after.clone_from(last);
            for (id, body, _) in page {
                assert!(body.contains(&format!(r#""id":"{id}""#)), "{backend:?}");
                seen.push(id);
            }
        }
        assert_eq!(seen, ["c1", "c2", "c3", "c4", "c5"], "{backend:?}");
        let one = resources::of_patient_page(&mut conn, "Consent", "p1", "", 1).expect("page");
        assert_eq!(
            one.len(),
            1,
            "{backend:?}: a smaller limit on the same statement"
        );
        assert!(
            resources::read(&mut conn, "Consent", "c3")
                .expect("read")
                .is_some_and(|body| body.contains(r#""id":"c3""#)),
            "{backend:?}"
        );
        assert_eq!(
            resources::read(&mut conn, "Consent", "c9").expect("read"),
            None,
            "{backend:?}"
        );
        drop(conn);
        drop_database(store, pg_name);
    }
}

/// Every row of the tables migration `2026-12-04-000060_audit_seq_rowid` rebuilds, in order.
fn audit_and_notification_rows(c: &mut diesel::SqliteConnection) -> String {
    #[derive(QueryableByName)]
    struct Rows {
        #[diesel(sql_type = Text)]
        t: String,
    }
    diesel::sql_query(
        "SELECT (SELECT group_concat(seq || '|' || recorded || '|' || action || '|' || outcome \
           || '|' || client_id || '|' || ifnull(patient_id, '-') || '|' || body, ';') \
           FROM (SELECT * FROM audit_entries ORDER BY seq)) || '#' || \
         (SELECT group_concat(id || '|' || patient_id || '|' || kind || '|' || created || '|' \
           || ifnull(audit_seq, '-') || '|' || ifnull(access_request_id, '-') || '|' || summary \
           || '|' || ifnull(read_at, '-'), ';') FROM (SELECT * FROM notifications ORDER BY id)) \
           || '#' || \
         (SELECT group_concat(notification_id || '|' || attempts || '|' \
           || ifnull(next_attempt_at, '-') || '|' || ifnull(delivered_at, '-') || '|' \
           || ifnull(last_status, '-'), ';') \
           FROM (SELECT * FROM notification_deliveries ORDER BY notification_id)) AS t",
    )
    .get_result::<Rows>(c)
    .expect("rows")
    .t
}

fn count(c: &mut diesel::SqliteConnection, sql: &str) -> i64 {
    diesel::sql_query(sql).get_result::<Count>(c).expect(sql).n
}

/// The opcodes SQLite compiles `sql` to.
fn opcodes(c: &mut diesel::SqliteConnection, sql: &str) -> Vec<String> {
    #[derive(QueryableByName)]
    struct Op {
        #[diesel(sql_type = Text)]
        opcode: String,
    }
    diesel::sql_query(format!("EXPLAIN {sql}"))
        .load::<Op>(c)
        .expect("explain")
        .into_iter()
        .map(|o| o.opcode)
        .collect()
}

/// SQLite migration `2026-12-04-000060_audit_seq_rowid` rebuilds the audit log and the
/// notifications (docs/PERFORMANCE.md, "Seventh step"): every row comes through, both ways,
/// with the references intact; after it `seq` is the entries' rowid (no second b-tree), and
/// the audit writer's inserts compile to no temporary b-tree while the kind is still checked.
#[test]
fn the_audit_rowid_migration_keeps_every_row_and_the_writers_inserts_build_no_temporary_tree() {
    const MIGRATION: &str = "2026-12-04-000060_audit_seq_rowid";
    const NOTIFY: &str = "INSERT INTO notifications (id, patient_id, kind, created, audit_seq, \
        access_request_id, summary, read_at) VALUES ('n9', 'p1', 'disclosure', 9, 1, NULL, '{}', NULL)";
    const APPEND: &str = "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, \
        patient_id, body) VALUES (3, 9, 'read', 'success', 'c1', 'p1', '{}')";
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = Store::open_target(
        DatabaseTarget::Sqlite(dir.path().join("m.db")),
        &one_connection(),
    )
    .expect("sqlite store");
    let mut conn = store.conn().expect("connection");
    let DbConn::Sqlite(c) = &mut *conn else {
        unreachable!("a SQLite target")
    };
    loop {
        let pending = c.pending_migrations(SQLITE_MIGRATIONS).expect("pending");
        if pending.first().map(|m| m.name().to_string()).as_deref() == Some(MIGRATION) {
            break;
        }
        assert!(!pending.is_empty(), "{MIGRATION} is one of the migrations");
        c.run_next_migration(SQLITE_MIGRATIONS)
            .expect("earlier migration");
    }
    c.batch_execute(
        "INSERT INTO audit_entries VALUES \
           (0, 10, 'read', 'success', 'c1', 'p1', '{\"a\":0}'), \
           (1, 11, 'token', 'failure', 'c2', NULL, '{\"a\":1}'), \
           (2, 12, 'search', 'success', 'c1', 'p2', '{\"a\":2}'); \
         INSERT INTO notifications VALUES \
           ('n1', 'p1', 'disclosure', 10, 0, NULL, '{\"s\":1}', NULL), \
           ('n2', 'p2', 'break_glass', 12, 2, NULL, '{\"s\":2}', 13), \
           ('n3', 'p1', 'access_request', 14, NULL, 'r1', '{\"s\":3}', NULL); \
         INSERT INTO notification_deliveries VALUES \
           ('n1', 2, 20, NULL, 'http_503'), ('n2', 1, NULL, 15, 'delivered');",
    )
    .expect("rows before the migration");
    let before = audit_and_notification_rows(c);
    let autoindex =
        "SELECT COUNT(*) AS n FROM pragma_index_list('audit_entries') WHERE origin = 'pk'";
    assert_eq!(
        count(c, autoindex),
        1,
        "before: seq has an index of its own"
    );
    assert!(
        opcodes(c, NOTIFY).iter().any(|o| o == "OpenEphemeral"),
        "before: the IN list"
    );

    c.run_next_migration(SQLITE_MIGRATIONS)
        .expect("the migration");
    assert_eq!(
        audit_and_notification_rows(c),
        before,
        "every row, as it was"
    );
    let broken = "SELECT COUNT(*) AS n FROM pragma_foreign_key_check";
    assert_eq!(count(c, broken), 0, "references intact");
    assert_eq!(count(c, autoindex), 0, "seq is the rowid");
    for sql in [NOTIFY, APPEND] {
        let ops = opcodes(c, sql);
        assert!(!ops.iter().any(|o| o == "OpenEphemeral"), "{sql}: {ops:?}");
    }
    let bogus = NOTIFY.replace("'disclosure'", "'bogus'");
    assert!(
        c.batch_execute(&bogus).is_err(),
        "an unknown kind is still refused"
    );
    let orphan = NOTIFY.replace(", 1, NULL", ", 77, NULL");
    c.batch_execute("PRAGMA foreign_keys = ON").expect("pragma");
    assert!(
        c.batch_execute(&orphan).is_err(),
        "audit_seq still references an entry"
    );
    c.batch_execute(APPEND)
        .expect("an entry appended after the migration");
    c.batch_execute(NOTIFY).expect("its notification");
    let after = audit_and_notification_rows(c);

    c.revert_last_migration(SQLITE_MIGRATIONS).expect("down");
    assert_eq!(
        audit_and_notification_rows(c),
        after,
        "down keeps every row"
    );
    assert_eq!(count(c, broken), 0, "down: references intact");
    assert_eq!(count(c, autoindex), 1, "down: seq's own index again");
    diesel::sql_query(HEAD_AT_ENTRIES)
        .execute(c)
        .expect("head at the entries");
    c.run_pending_migrations(SQLITE_MIGRATIONS)
        .expect("up again");
    assert_eq!(audit_and_notification_rows(c), after);
}

/// Reverts the last migration applied; returns its version.
fn revert_last(conn: &mut DbConn) -> String {
    match conn {
        DbConn::Sqlite(c) => c.revert_last_migration(SQLITE_MIGRATIONS),
        DbConn::Postgresql(c) => c.revert_last_migration(POSTGRES_MIGRATIONS),
    }
    .expect("down")
    .to_string()
}

/// Reverts the migrations newer than `version`, then `version` itself.
fn revert_through(conn: &mut DbConn, version: &str) {
    for _ in 0..10 {
        if revert_last(conn) == version {
            return;
        }
    }
    panic!("migration {version} was not among the ten newest");
}

/// The text column `t` of the one row `sql` answers.
pub(crate) fn text(conn: &mut DbConn, sql: &str) -> String {
    #[derive(QueryableByName)]
    struct Row {
        #[diesel(sql_type = Text)]
        t: String,
    }
    diesel::sql_query(sql).get_result::<Row>(conn).expect(sql).t
}

/// [`text`] of `sql` written with PostgreSQL's `STRING_AGG`, which SQLite spells
/// `GROUP_CONCAT`.
pub(crate) fn aggregated(conn: &mut DbConn, backend: crate::store::Backend, sql: &str) -> String {
    match backend {
        crate::store::Backend::Sqlite => text(conn, &sql.replace("STRING_AGG", "GROUP_CONCAT")),
        crate::store::Backend::Postgres => text(conn, sql),
    }
}

/// Migration `2026-12-05-000061_derived_notifications`, both ways, on both backends: the
/// stored notifications and their deliveries come through (each delivery now naming its
/// patient), the range of entries after the last stored notification is recorded for the
/// writer, a delivery of a derived notification needs no stored row, and down drops only
/// what was derived.
#[test]
fn the_derived_notifications_migration_keeps_what_was_stored_and_records_what_is_left() {
    const MIGRATION: &str = "20261205000061";
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        revert_through(&mut conn, MIGRATION);
        diesel::sql_query(
            "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, patient_id, \
             body) VALUES (0, 10, 'read', 'success', 'c1', 'p1', '{}'), \
             (1, 11, 'read', 'success', 'c1', 'p2', '{}'), \
             (2, 12, 'read', 'success', 'c1', 'p1', '{}'), \
             (3, 13, 'token', 'success', 'c1', NULL, '{}')",
        )
        .execute(&mut conn)
        .expect("entries");
        diesel::sql_query(
            "INSERT INTO notifications (id, patient_id, kind, created, audit_seq, \
             access_request_id, summary, read_at) VALUES \
             ('n1', 'p1', 'disclosure', 10, 0, NULL, '{}', NULL), \
             ('n2', 'p2', 'break_glass', 11, 1, NULL, '{}', 20), \
             ('n3', 'p1', 'access_request', 14, NULL, 'r1', '{}', NULL)",
        )
        .execute(&mut conn)
        .expect("stored notifications");
        diesel::sql_query(
            "INSERT INTO notification_deliveries (notification_id, attempts, next_attempt_at, \
             delivered_at, last_status) VALUES ('n1', 2, 30, NULL, 'http_503'), \
             ('n2', 1, NULL, 21, 'http_204'), ('n3', 0, 15, NULL, NULL)",
        )
        .execute(&mut conn)
        .expect("deliveries");
        exec(&mut conn, HEAD_AT_ENTRIES);
        drop(conn);

        store.migrate().expect("up");
        let mut conn = store.conn().expect("connection");
        let deliveries = "SELECT COALESCE(MAX(CASE WHEN notification_id = 'n1' THEN patient_id END), '') \
             || ',' || COALESCE(MAX(CASE WHEN notification_id = 'n2' THEN patient_id END), '') \
             || ',' || COALESCE(MAX(CASE WHEN notification_id = 'n3' THEN patient_id END), '') \
             || ',' || CAST(COUNT(*) AS TEXT) || ',' || CAST(COUNT(audit_seq) AS TEXT) \
             || ',' || CAST(SUM(attempts) AS TEXT) AS t FROM notification_deliveries";
        assert_eq!(
            text(&mut conn, deliveries),
            "p1,p2,p1,3,0,3",
            "{backend:?}: every delivery kept, naming its patient"
        );
        let range = "SELECT CAST(outbox_next AS TEXT) || ',' || CAST(legacy_from AS TEXT) || ',' \
             || CAST(legacy_to AS TEXT) AS t FROM notification_derivation";
        assert_eq!(
            text(&mut conn, range),
            "2,2,4",
            "{backend:?}: entries 2 and 3 came after the last stored notification"
        );
        let stored = "SELECT CAST(COUNT(*) AS TEXT) || ',' || CAST(COUNT(read_at) AS TEXT) AS t \
             FROM notifications";
        assert_eq!(text(&mut conn, stored), "3,1", "{backend:?}");
        // A derived notification's delivery and read mark need no stored row.
        diesel::sql_query(
            "INSERT INTO notification_deliveries (notification_id, patient_id, audit_seq, \
             attempts, next_attempt_at) VALUES ('d2', 'p1', 2, 0, 40)",
        )
        .execute(&mut conn)
        .expect("a derived notification's delivery");
        diesel::sql_query(
            "INSERT INTO notification_reads (patient_id, audit_seq, read_at) VALUES ('p1', 2, 41)",
        )
        .execute(&mut conn)
        .expect("a read mark");

        // Down drops what was derived and keeps what was stored; up again works.
        revert_through(&mut conn, MIGRATION);
        let kept = "SELECT CAST(COUNT(*) AS TEXT) || ',' || CAST(SUM(attempts) AS TEXT) AS t \
             FROM notification_deliveries";
        assert_eq!(text(&mut conn, kept), "3,3", "{backend:?}: down");
        drop(conn);
        store.migrate().expect("up again");
        drop_database(store, pg_name);
    }
}

fn context_version(conn: &mut DbConn, patient: &str) -> i64 {
    resources::context_version(conn, patient).expect("context version")
}

/// Moves the head row to the entries' size, as the writer keeps it: entries written here by
/// plain SQL leave it behind, and migration `2026-12-05-000067` refuses a head that
/// disagrees with the entries.
const HEAD_AT_ENTRIES: &str =
    "UPDATE audit_head SET size = (SELECT COALESCE(MAX(seq) + 1, 0) FROM audit_entries)";

fn exec(conn: &mut DbConn, sql: &str) {
    diesel::sql_query(sql).execute(conn).expect(sql);
}

/// Migration `2026-12-05-000062_patient_context_versions`, on both backends: the database
/// itself changes a patient's context version with every write of the patient's consents,
/// Patient record or amendment requests, whatever statement writes them (here plain SQL, as
/// an operator's or a future path's would be), and with no other write; down and up again.
#[test]
fn the_patient_context_version_changes_with_every_write_a_release_reads_and_no_other() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        let c = &mut conn;
        let versions = |c: &mut DbConn| (context_version(c, "p1"), context_version(c, "p2"));
        assert_eq!(versions(c), (0, 0), "{backend:?}: never written");

        put(c, "Observation", "o1", Some("p1"));
        put(c, "Consent", "shared", None);
        assert_eq!(versions(c), (0, 0), "{backend:?}: not part of any context");
        put(c, "Consent", "c1", Some("p1"));
        assert_eq!(versions(c), (1, 0), "{backend:?}: a new consent");
        exec(
            c,
            "UPDATE resources SET version_id = 2, body = '{}' WHERE id = 'c1'",
        );
        assert_eq!(versions(c), (2, 0), "{backend:?}: its new version");
        exec(c, "UPDATE resources SET patient_id = 'p2' WHERE id = 'c1'");
        assert_eq!(versions(c), (3, 1), "{backend:?}: moved: both patients");
        put(c, "Patient", "p1", Some("p1"));
        assert_eq!(versions(c), (4, 1), "{backend:?}: the Patient record");
        exec(c, "DELETE FROM resources WHERE id = 'c1'");
        assert_eq!(versions(c), (4, 2), "{backend:?}: a consent gone");
        exec(c, "UPDATE resources SET body = '{}' WHERE id = 'o1'");
        exec(c, "DELETE FROM resources WHERE id = 'o1'");
        assert_eq!(
            versions(c),
            (4, 2),
            "{backend:?}: an observation is not context"
        );

        exec(
            c,
            "INSERT INTO amendments (id, patient_id, resource_type, resource_id, version_id, \
             status, requested_by, what_is_wrong, proposed_correction, created, due) VALUES \
             ('a1', 'p1', 'Observation', 'o1', 1, 'pending', 'Patient/p1', 'w', 'p', 1, 2)",
        );
        assert_eq!(versions(c), (5, 2), "{backend:?}: an amendment request");
        exec(
            c,
            "UPDATE amendments SET status = 'denied', statement_id = 's1' WHERE id = 'a1'",
        );
        assert_eq!(
            versions(c),
            (6, 2),
            "{backend:?}: its statement of disagreement"
        );
        exec(c, "DELETE FROM amendments WHERE id = 'a1'");
        assert_eq!(versions(c), (7, 2), "{backend:?}: the request gone");

        revert_through(c, "20261205000062");
        // Written as that schema's code wrote it (no `facts` column then).
        exec(
            c,
            "INSERT INTO resources (resource_type, id, version_id, last_updated, patient_id, \
             body) VALUES ('Consent', 'c2', 1, 1, 'p1', '{}')",
        );
        drop(conn);
        store.migrate().expect("up again");
        let mut conn = store.conn().expect("connection");
        put(&mut conn, "Consent", "c3", Some("p1"));
        assert_eq!(context_version(&mut conn, "p1"), 1, "{backend:?}: up again");
        drop(conn);
        drop_database(store, pg_name);
    }
}

/// The release's reads that carry a context version answer as the plain ones, on both
/// backends: a resource with its stored patient and that patient's version (0 for a patient
/// never written, none for a shared resource), the requester with any patient's version, and
/// the requester with any resource, refused alike for a revoked token or a removed client.
#[test]
fn the_reads_that_carry_a_context_version_answer_as_the_plain_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        let c = &mut conn;
        put(c, "Consent", "c1", Some("p1"));
        put(c, "Consent", "c2", Some("p1"));
        put(c, "Observation", "o1", Some("p1"));
        put(c, "Observation", "o2", Some("p2"));
        put(c, "Medication", "shared", None);
        let read = |c: &mut DbConn, ty: &str, id: &str| {
            resources::read_with_context_version(c, ty, id)
                .expect("read")
                .map(|row| {
                    assert_eq!(
                        Some(&row.body),
                        resources::read(c, ty, id).expect("read").as_ref()
                    );
                    (row.patient_id, row.version)
                })
        };
        assert_eq!(
            read(c, "Observation", "o1"),
            Some((Some("p1".into()), 2)),
            "{backend:?}"
        );
        assert_eq!(read(c, "Observation", "o2"), Some((Some("p2".into()), 0)));
        assert_eq!(read(c, "Medication", "shared"), Some((None, 0)));
        assert_eq!(read(c, "Observation", "o3"), None, "{backend:?}: missing");

        identity::insert_client(c, &clinician("k1")).expect("client");
        let plain = identity::live_requester(c, "k1", "t1").expect("requester");
        assert!(plain.is_some());
        for (patient, version) in [("p1", 2), ("p2", 0)] {
            assert_eq!(
                identity::live_requester_and_version(c, "k1", "t1", patient).expect("requester"),
                plain.clone().map(|r| (r, version)),
                "{backend:?}: {patient}"
            );
        }
        // The requester with the resource: the two plain reads, in one statement.
        for (ty, id) in [
            ("Observation", "o1"),
            ("Observation", "o2"),
            ("Medication", "shared"),
            ("Observation", "o3"),
            ("Consent", "o1"),
        ] {
            assert_eq!(
                identity::live_requester_and_resource(c, "k1", "t1", ty, id).expect("read"),
                plain.clone().map(|r| (
                    r,
                    resources::read_with_context_version(c, ty, id).expect("read")
                )),
                "{backend:?}: {ty}/{id}"
            );
        }
        assert_eq!(
            identity::live_requester_and_resource(c, "k2", "t1", "Observation", "o1")
                .expect("read"),
            None,
            "{backend:?}: an unknown client"
        );
        identity::revoke_token(c, "t1", 10).expect("revoked");
        assert_eq!(
            identity::live_requester_and_version(c, "k1", "t1", "p1").expect("requester"),
            None,
            "{backend:?}: a revoked token"
        );
        assert_eq!(
            identity::live_requester_and_resource(c, "k1", "t1", "Observation", "o1")
                .expect("read"),
            None,
            "{backend:?}: a revoked token, with the resource"
        );
        assert!(
            identity::live_requester_and_resource(c, "k1", "t2", "Observation", "o1")
                .expect("read")
                .is_some(),
            "{backend:?}: another token of the client"
        );
        identity::remove_client(c, "k1", 2).expect("removed");
        assert_eq!(
            identity::live_requester_and_version(c, "k1", "t2", "p1").expect("requester"),
            None,
            "{backend:?}: a removed client"
        );
        assert_eq!(
            identity::live_requester_and_resource(c, "k1", "t2", "Observation", "o1")
                .expect("read"),
            None,
            "{backend:?}: a removed client, with the resource"
        );
        drop(conn);
        drop_database(store, pg_name);
    }
}

/// Two transactions writing the consents of the same two patients in opposite orders meet
/// on the patients' context versions; on PostgreSQL one of them is ended as a deadlock,
/// which is answered as a conflict to retry (409 `concurrent_update`), not an internal
/// error, and the other commits. (On SQLite write transactions are serial.)
#[test]
fn a_deadlock_on_the_context_versions_is_a_conflict_to_retry() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        if store.backend() == Backend::Postgres {
            let both = std::sync::Arc::new(std::sync::Barrier::new(2));
            let writer = |first: &'static str, second: &'static str| {
                let (store, both) = (store.clone(), both.clone());
                std::thread::spawn(move || {
                    let mut conn = store.dedicated().expect("connection");
                    write_tx(&mut conn, |conn| {
                        for (i, patient) in [first, second].into_iter().enumerate() {
                            let w = resources::ResourceWrite {
                                resource_type: "Consent".into(),
                                id: format!("{first}-{i}"),
                                version_id: 1,
                                last_updated: 1,
                                patient_id: Some(patient.into()),
                                clinical: None,
                                body: "{}".into(),
                                facts: None,
                                tokens: Vec::new(),
                                source_client: None,
                                written_by: None,
                            };
                            resources::write(conn, &w)?;
                            if i == 0 {
                                both.wait();
                            }
                        }
                        Ok::<_, StoreError>(())
                    })
                })
            };
            let outcomes =
                [writer("p1", "p2"), writer("p2", "p1")].map(|t| t.join().expect("writer thread"));
            let conflicts = outcomes
                .iter()
                .filter(|o| matches!(o, Err(StoreError::Conflict)))
                .count();
            assert_eq!(conflicts, 1, "{outcomes:?}");
            assert_eq!(outcomes.iter().filter(|o| o.is_ok()).count(), 1);
        }
        drop_database(store, pg_name);
    }
}

/// Migration `2026-12-05-000063_audit_patient_index`, both ways, on both backends: every
/// entry about a patient is in the index, those calling for a notice in its notices too,
/// the cursor is past the log's end, and down brings back the indexes on the entries.
#[test]
fn the_patient_index_migration_indexes_every_entry_already_written() {
    const MIGRATION: &str = "20261205000063";
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        revert_through(&mut conn, MIGRATION);
        exec(
            &mut conn,
            "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, patient_id, \
             body, notice) VALUES (0, 10, 'read', 'success', 'c1', 'p1', '{}', 'disclosure'), \
             (1, 11, 'read', 'success', 'c1', 'p2', '{}', NULL), \
             (2, 12, 'read', 'success', 'c1', 'p1', '{}', NULL), \
             (3, 13, 'token', 'success', 'c1', NULL, '{}', NULL), \
             (4, 9, 'read', 'success', 'c2', 'p2', '{}', 'break_glass')",
        );
        exec(&mut conn, HEAD_AT_ENTRIES);
        drop(conn);
        store.migrate().expect("up");
        let mut conn = store.conn().expect("connection");
        let entries = "SELECT COALESCE(STRING_AGG(patient_id || ':' || CAST(seq AS TEXT), ','), '') AS t \
             FROM (SELECT * FROM audit_patient_entries ORDER BY patient_id, seq) e";
        let notices = "SELECT COALESCE(STRING_AGG(patient_id || ':' || CAST(recorded AS TEXT) || ':' \
             || CAST(seq AS TEXT), ','), '') AS t \
             FROM (SELECT * FROM audit_patient_notices ORDER BY patient_id, recorded, seq) n";
        assert_eq!(
            aggregated(&mut conn, backend, entries),
            "p1:0,p1:2,p2:1,p2:4",
            "{backend:?}"
        );
        assert_eq!(
            aggregated(&mut conn, backend, notices),
            "p1:10:0,p2:9:4",
            "{backend:?}"
        );
        let cursor = "SELECT CAST(next_seq AS TEXT) AS t FROM audit_patient_index";
        assert_eq!(text(&mut conn, cursor), "5", "{backend:?}: past the end");
        let filter = super::audit::EntryFilter {
            patient_id: Some("p2".into()),
            limit: 10,
            ..Default::default()
        };
        let found: Vec<i64> = super::audit::find_entries(&mut conn, &filter)
            .expect("entries")
            .iter()
            .map(|e| e.seq)
            .collect();
        assert_eq!(found, [4, 1], "{backend:?}: found through the index");

        revert_through(&mut conn, MIGRATION);
        let indexes = match backend {
            crate::store::Backend::Sqlite => {
                "SELECT CAST(COUNT(*) AS TEXT) AS t FROM sqlite_master WHERE type = 'index' \
                 AND name IN ('audit_entries_by_patient', 'audit_entries_notices')"
            }
            crate::store::Backend::Postgres => {
                "SELECT CAST(COUNT(*) AS TEXT) AS t FROM pg_indexes WHERE indexname IN \
                 ('audit_entries_by_patient', 'audit_entries_notices')"
            }
        };
        assert_eq!(text(&mut conn, indexes), "2", "{backend:?}: down");
        drop(conn);
        store.migrate().expect("up again");
        drop_database(store, pg_name);
    }
}

/// Migration `2026-12-05-000066_audit_nodes_by_key`, both ways, on both backends: every
/// node keeps its level, index and hash under `last_leaf * 64 + level`, the store finds it
/// by node, by leaves and by range, and down brings back the key `(last_leaf, level)`.
#[test]
fn the_node_key_migration_keys_every_node_by_its_leaf_and_level() {
    const MIGRATION: &str = "20261205000066";
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        revert_through(&mut conn, MIGRATION);
        let hash = |hex: &str| match backend {
            crate::store::Backend::Sqlite => format!("X'{hex}'"),
            crate::store::Backend::Postgres => format!("decode('{hex}', 'hex')"),
        };
        exec(
            &mut conn,
            &format!(
                "INSERT INTO audit_nodes (last_leaf, level, idx, hash) VALUES \
                 (0, 0, 0, {}), (1, 0, 1, {}), (1, 1, 0, {}), (2, 0, 2, {})",
                hash("aa"),
                hash("bb"),
                hash("cc"),
                hash("dd")
            ),
        );
        drop(conn);
        store.migrate().expect("up");
        let mut conn = store.conn().expect("connection");
        let keyed = "SELECT STRING_AGG(CAST(node_key AS TEXT) || ':' || CAST(level AS TEXT) || \
             ':' || CAST(idx AS TEXT), ',') AS t FROM (SELECT * FROM audit_nodes ORDER BY node_key) n";
        assert_eq!(
            aggregated(&mut conn, backend, keyed),
            "0:0:0,64:0:1,65:1:0,128:0:2",
            "{backend:?}"
        );
        assert_eq!(
            super::audit::node(&mut conn, 1, 0).expect("node"),
            Some(vec![0xcc]),
            "{backend:?}"
        );
        assert_eq!(super::audit::node(&mut conn, 1, 1).expect("node"), None);
        assert_eq!(
            super::audit::leaf_hashes(&mut conn, 1, 10).expect("leaves"),
            [(1, vec![0xbb]), (2, vec![0xdd])],
            "{backend:?}"
        );
        assert_eq!(
            super::audit::nodes_in_range(&mut conn, 0, 0, 2).expect("range"),
            [(0, vec![0xaa]), (1, vec![0xbb])],
            "{backend:?}"
        );

        revert_through(&mut conn, MIGRATION);
        let by_leaf = "SELECT STRING_AGG(CAST(last_leaf AS TEXT) || ':' || CAST(level AS TEXT), \
             ',') AS t FROM (SELECT * FROM audit_nodes ORDER BY last_leaf, level) n";
        assert_eq!(
            aggregated(&mut conn, backend, by_leaf),
            "0:0,1:0,1:1,2:0",
            "{backend:?}: down"
        );
        drop(conn);
        store.migrate().expect("up again");
        drop_database(store, pg_name);
    }
}

/// Migration `2026-12-05-000065_audit_client_time_index`, both ways, on both backends: the
/// entries below the index's cursor are summarised in blocks (time span, clients), those
/// from it on are left to the tail, both are found, and down brings back the indexes on the
/// entries.
#[test]
fn the_client_and_time_index_migration_files_the_entries_below_the_cursor() {
    const MIGRATION: &str = "20261205000065";
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        revert_through(&mut conn, MIGRATION);
        exec(
            &mut conn,
            "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, patient_id, \
             body, notice) VALUES (0, 10, 'read', 'success', 'c1', 'p1', '{}', NULL), \
             (1, 11, 'token', 'success', 'c1', NULL, '{}', NULL), \
             (2, 12, 'read', 'success', 'c2', 'p1', '{}', NULL), \
             (3, 13, 'read', 'success', 'c1', 'p2', '{}', NULL), \
             (4, 9, 'read', 'success', 'c2', 'p2', '{}', NULL)",
        );
        exec(&mut conn, "UPDATE audit_patient_index SET next_seq = 3");
        exec(&mut conn, HEAD_AT_ENTRIES);
        drop(conn);
        store.migrate().expect("up");
        let mut conn = store.conn().expect("connection");
        let (blocks, clients) = super::patient_index::tests::blocks_filed(&mut conn, backend);
        assert_eq!(blocks, "0-3:10-12", "{backend:?}: below the cursor");
        assert_eq!(clients, "c1:0,c2:0", "{backend:?}");
        let found = |conn: &mut DbConn, filter: super::audit::EntryFilter| -> Vec<i64> {
            let filter = super::audit::EntryFilter {
                limit: 10,
                ..filter
            };
            let rows = super::audit::find_entries(conn, &filter).expect("entries");
            rows.iter().map(|e| e.seq).collect()
        };
        let by_c2 = super::audit::EntryFilter {
            client_id: Some("c2".into()),
            ..Default::default()
        };
        assert_eq!(found(&mut conn, by_c2), [4, 2], "{backend:?}: tail, index");
        let early = super::audit::EntryFilter {
            since: Some(9),
            until: Some(11),
            ..Default::default()
        };
        assert_eq!(
            found(&mut conn, early),
            [4, 1, 0],
            "{backend:?}: tail, index"
        );

        revert_through(&mut conn, MIGRATION);
        let indexes = match backend {
            crate::store::Backend::Sqlite => {
                "SELECT CAST(COUNT(*) AS TEXT) AS t FROM sqlite_master WHERE type = 'index' \
                 AND name IN ('audit_entries_by_client', 'audit_entries_by_time')"
            }
            crate::store::Backend::Postgres => {
                "SELECT CAST(COUNT(*) AS TEXT) AS t FROM pg_indexes WHERE indexname IN \
                 ('audit_entries_by_client', 'audit_entries_by_time')"
            }
        };
        assert_eq!(text(&mut conn, indexes), "2", "{backend:?}: down");
        drop(conn);
        store.migrate().expect("up again");
        drop_database(store, pg_name);
    }
}

/// Migration `2026-12-05-000067_audit_head_derived`, both ways, on both backends: on SQLite
/// the head becomes the entries' highest sequence plus one (a view nothing can move), and a
/// head row that disagrees with the entries stops the migration rather than be lost; on
/// PostgreSQL the row stays. Down brings the row back at the entries' size.
#[test]
fn the_head_migration_derives_sqlites_head_from_the_entries() {
    const MIGRATION: &str = "20261205000067";
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, pg_name) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        revert_through(&mut conn, MIGRATION);
        exec(
            &mut conn,
            "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, patient_id, \
             body, notice) VALUES (0, 10, 'read', 'success', 'c1', 'p1', '{}', NULL), \
             (1, 11, 'token', 'success', 'c1', NULL, '{}', NULL), \
             (2, 12, 'read', 'success', 'c2', 'p1', '{}', NULL)",
        );
        if backend == crate::store::Backend::Sqlite {
            // A head that disagrees with the entries (a cut tail) stops the migration.
            exec(&mut conn, "UPDATE audit_head SET size = 7");
            drop(conn);
            let refused = store.migrate().expect_err("a head beyond the entries");
            assert!(
                refused
                    .to_string()
                    .contains("audit_head_matches_the_entries"),
                "{refused}"
            );
            conn = store.conn().expect("connection");
            assert_eq!(
                text(&mut conn, "SELECT CAST(size AS TEXT) AS t FROM audit_head"),
                "7",
                "the refused migration changed nothing"
            );
        }
        exec(&mut conn, "UPDATE audit_head SET size = 3");
        drop(conn);
        store.migrate().expect("up");
        let mut conn = store.conn().expect("connection");
        assert_eq!(
            super::audit::size(&mut conn).expect("size"),
            3,
            "{backend:?}"
        );
        exec(
            &mut conn,
            "INSERT INTO audit_entries (seq, recorded, action, outcome, client_id, patient_id, \
             body, notice) VALUES (3, 13, 'read', 'success', 'c1', 'p1', '{}', NULL)",
        );
        let after = super::audit::size(&mut conn).expect("size");
        match backend {
            crate::store::Backend::Sqlite => {
                assert_eq!(after, 4, "the view follows the entries");
                // One descent to the rowid b-tree's edge, never a scan of the log: the
                // writer reads the head at every commit.
                #[derive(QueryableByName)]
                struct Step {
                    #[diesel(sql_type = Text)]
                    detail: String,
                }
                let plan: Vec<String> = diesel::sql_query(
                    "EXPLAIN QUERY PLAN SELECT size FROM audit_head WHERE id = 1",
                )
                .load::<Step>(&mut *conn)
                .expect("plan")
                .into_iter()
                .map(|s| s.detail)
                .collect();
                let plan = plan.join("; ");
                assert!(
                    plan.contains("SEARCH audit_entries") && !plan.contains("SCAN audit_entries"),
                    "{plan}"
                );
                assert!(
                    diesel::sql_query("UPDATE audit_head SET size = 9")
                        .execute(&mut *conn)
                        .is_err(),
                    "the view takes no update"
                );
            }
            crate::store::Backend::Postgres => assert_eq!(after, 3, "the row moves with appends"),
        }

        revert_through(&mut conn, MIGRATION);
        assert_eq!(
            text(&mut conn, "SELECT CAST(size AS TEXT) AS t FROM audit_head"),
            match backend {
                crate::store::Backend::Sqlite => "4",
                crate::store::Backend::Postgres => "3",
            },
            "{backend:?}: down"
        );
        exec(&mut conn, "UPDATE audit_head SET size = 4");
        drop(conn);
        store.migrate().expect("up again");
        drop_database(store, pg_name);
    }
}

/// The bundled SQLite is built as `.cargo/config.toml` says (`docs/PERFORMANCE.md`,
/// "Twenty-second step"): a build that lost those flags (a Docker build without the file,
/// a changed `libsqlite3-sys` default) would run with the locks and syncs they remove, and
/// nothing else would notice.
#[test]
fn sqlite_is_built_with_the_repository_flags() {
    #[derive(QueryableByName)]
    struct CompileOption {
        #[diesel(sql_type = Text)]
        compile_options: String,
    }
    let mut c = diesel::SqliteConnection::establish(":memory:").expect("in-memory SQLite");
    let options: Vec<String> = diesel::sql_query("PRAGMA compile_options")
        .load::<CompileOption>(&mut c)
        .expect("compile options")
        .into_iter()
        .map(|o| o.compile_options)
        .collect();
    // `HAVE_FDATASYNC` is not among SQLite's compile options; `strace` shows it (the
    // eighteenth step).
    for wanted in ["THREADSAFE=2", "DEFAULT_MEMSTATUS=0"] {
        assert!(
            options.iter().any(|o| o == wanted),
            "{wanted} missing: {options:?}"
        );
    }
    assert!(
        !options.iter().any(|o| o == "ENABLE_MEMORY_MANAGEMENT"),
        "one page cache shared by every connection: {options:?}"
    );
}

/// The PostgreSQL session behind the pool's one connection, from the pool.
fn session_of(store: &Store) -> Result<i64, StoreError> {
    let mut conn = store.conn()?;
    Ok(diesel::sql_query("SELECT pg_backend_pid()::bigint AS n")
        .get_result::<Count>(&mut *conn)?
        .n)
}

/// Ends session `pid` from outside, as a server restart or an administrator would, and
/// waits until it is gone.
fn terminate(admin: &str, pid: i64) {
    let mut conn = diesel::PgConnection::establish(admin).expect("admin connection");
    diesel::sql_query(format!("SELECT pg_terminate_backend({pid})"))
        .execute(&mut conn)
        .expect("terminate");
    for _ in 0..200 {
        let left = diesel::sql_query(format!(
            "SELECT COUNT(*) AS n FROM pg_stat_activity WHERE pid = {pid}"
        ))
        .get_result::<Count>(&mut conn)
        .expect("pg_stat_activity")
        .n;
        if left == 0 {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("session {pid} did not end");
}

/// A pooled PostgreSQL connection is asked at checkout only when its last statement is older
/// than `ALIVE_WINDOW`: one that died within the window fails the one statement that finds
/// it (unavailable, not a query error) and is dropped; one that died longer ago is replaced
/// before use, and the statement succeeds.
#[test]
fn a_lost_postgres_connection_is_dropped_or_replaced() {
    let dir = tempfile::tempdir().unwrap();
    // `stores` says so loudly when no PostgreSQL server is configured.
    let Some((store, name)) = stores(dir.path())
        .into_iter()
        .find(|(store, _)| store.backend() == Backend::Postgres)
    else {
        return;
    };
    let admin = std::env::var("CONSENTGATE_TEST_POSTGRES_URL").expect("set, as the store is");

    let first = session_of(&store).expect("a session");
    terminate(&admin, first);
    let found = session_of(&store);
    assert!(
        matches!(found, Err(StoreError::Unavailable(_))),
        "within the window the statement finds it lost: {found:?}"
    );
    let second = session_of(&store).expect("a new session after the lost one was dropped");
    assert_ne!(second, first);

    terminate(&admin, second);
    std::thread::sleep(ALIVE_WINDOW + Duration::from_millis(100));
    let third = session_of(&store).expect("asked at checkout, replaced, then used");
    assert_ne!(third, second);
    drop_database(store, name);
}
