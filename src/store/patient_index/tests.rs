//! The patient index, and the indexes by client and time kept with it, against a model
//! written from their contract: whatever part of the log the index covers, the entries
//! `find_entries` gives (about a patient or about anyone, by a client or not, in a time range
//! or not), a patient's notices and notice count are exactly those a scan of every entry
//! finds, in the promised order, on both backends.

use diesel::RunQueryDsl;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

use super::*;
use crate::store::audit::{self as rows, EntryFilter, EntryRow};
use crate::store::tests::{aggregated, stores};
use crate::store::write_tx;

const PATIENTS: usize = 4;
const CLIENTS: [&str; 3] = ["c0", "c1", "c2"];
const ACTIONS: [&str; 3] = ["read", "search", "token"];
const OUTCOMES: [&str; 2] = ["success", "failure"];

/// One generated entry: patient (or none), client, action, outcome, whether it calls for a
/// notice, and how far its time is stamped before its place (entries' times interleave).
type Shape = (Option<usize>, usize, usize, usize, bool, i64);

#[derive(Debug, Clone)]
struct Case {
    entries: Vec<Shape>,
    /// How many sequences the index covers before the queries, at most all.
    indexed: usize,
    /// How many sequences each of the index's steps covers (so each files a block).
    step: usize,
    /// Which noticed entries the patient has marked read (by position).
    read: Vec<bool>,
    patient: usize,
    client: Option<usize>,
    exclude: Option<usize>,
    actions: Vec<usize>,
    outcomes: Vec<usize>,
    since: Option<i64>,
    until: Option<i64>,
    before_seq: Option<i64>,
    below: Option<(i64, i64)>,
    unread_only: bool,
    limit: i64,
}

fn case() -> impl Strategy<Value = Case> {
    let shape = (
        proptest::option::weighted(0.8, 0..PATIENTS),
        0..CLIENTS.len(),
        0..ACTIONS.len(),
        0..OUTCOMES.len(),
        any::<bool>(),
        0i64..8,
    );
    (
        proptest::collection::vec(shape, 0..60),
        (0usize..70, 1usize..12),
        proptest::collection::vec(any::<bool>(), 60),
        0..PATIENTS,
        (
            proptest::option::of(0..CLIENTS.len()),
            proptest::option::weighted(0.2, 0..CLIENTS.len()),
            proptest::collection::vec(0..ACTIONS.len(), 0..3),
            proptest::collection::vec(0..OUTCOMES.len(), 0..2),
        ),
        (
            proptest::option::weighted(0.3, 1_000i64..1_200),
            proptest::option::weighted(0.3, 1_000i64..1_200),
            proptest::option::weighted(0.4, 0i64..64),
            proptest::option::weighted(0.4, (1_000i64..1_200, 0i64..64)),
            any::<bool>(),
            1i64..25,
        ),
    )
        .prop_map(|(entries, (indexed, step), read, patient, filters, rest)| {
            let (client, exclude, actions, outcomes) = filters;
            let (since, until, before_seq, below, unread_only, limit) = rest;
            Case {
                entries,
                indexed,
                step,
                read,
                patient,
                client,
                exclude,
                actions,
                outcomes,
                since,
                until,
                before_seq,
                below,
                unread_only,
                limit,
            }
        })
}

fn row(seq: usize, shape: &Shape) -> EntryRow {
    let (patient, client, action, outcome, notice, early) = *shape;
    EntryRow {
        seq: seq as i64,
        recorded: 1_000 + 3 * seq as i64 - early,
        action: ACTIONS[action].into(),
        outcome: OUTCOMES[outcome].into(),
        client_id: CLIENTS[client].into(),
        patient_id: patient.map(|p| format!("p{p}")),
        body: "{}".into(),
        notice: (notice && patient.is_some()).then(|| "disclosure".into()),
    }
}

fn exec(conn: &mut DbConn, sql: &str) {
    diesel::sql_query(sql).execute(conn).expect(sql);
}

fn check(conn: &mut DbConn, case: &Case) -> Result<(), TestCaseError> {
    for table in [
        "audit_entries",
        "audit_patient_entries",
        "audit_patient_notices",
        "audit_blocks",
        "audit_block_clients",
        "notification_reads",
    ] {
        exec(conn, &format!("DELETE FROM {table}"));
    }
    exec(conn, "UPDATE audit_patient_index SET next_seq = 0");
    let all: Vec<EntryRow> = case
        .entries
        .iter()
        .enumerate()
        .map(|(i, s)| row(i, s))
        .collect();
    rows::append(conn, all.clone(), vec![], all.len() as u64).expect("entries");
    let mut covered = 0;
    while covered < case.indexed.min(all.len()) as i64 {
        let step = (case.step as i64).min(case.indexed as i64 - covered);
        covered += write_tx(conn, |c| extend(c, step)).expect("extend");
    }
    prop_assert_eq!(covered, case.indexed.min(all.len()) as i64);
    prop_assert_eq!(next_seq(conn).expect("cursor"), covered);
    let patient = format!("p{}", case.patient);
    let marked: Vec<i64> = all
        .iter()
        .filter(|e| e.notice.is_some() && case.read[e.seq as usize])
        .map(|e| e.seq)
        .collect();
    for e in all.iter().filter(|e| marked.contains(&e.seq)) {
        let who = e.patient_id.as_deref().unwrap_or_default();
        exec(
            conn,
            &format!(
                "INSERT INTO notification_reads (patient_id, audit_seq, read_at) \
                 VALUES ('{who}', {}, 1)",
                e.seq
            ),
        );
    }

    // The entries, as `find_entries` promises them: the patient's, through the patient
    // index; without the patient, a client's through the client index; without either, in
    // a time range through the time index, or all.
    let filter = EntryFilter {
        patient_id: Some(patient.clone()),
        client_id: case.client.map(|c| CLIENTS[c].to_string()),
        exclude_clients: case
            .exclude
            .map(|c| CLIENTS[c].to_string())
            .into_iter()
            .collect(),
        actions: case
            .actions
            .iter()
            .map(|a| ACTIONS[*a].to_string())
            .collect(),
        outcomes: case
            .outcomes
            .iter()
            .map(|o| OUTCOMES[*o].to_string())
            .collect(),
        since: case.since,
        until: case.until,
        before_seq: case.before_seq,
        limit: case.limit,
    };
    let anyone = EntryFilter {
        patient_id: None,
        ..filter.clone()
    };
    let any_client = EntryFilter {
        client_id: None,
        ..anyone.clone()
    };
    let only_time = EntryFilter {
        exclude_clients: Vec::new(),
        actions: Vec::new(),
        outcomes: Vec::new(),
        ..any_client.clone()
    };
    for filter in [filter, anyone, any_client, only_time] {
        let mut expected: Vec<i64> = all
            .iter()
            .filter(|e| {
                filter
                    .patient_id
                    .as_ref()
                    .is_none_or(|p| e.patient_id.as_ref() == Some(p))
            })
            .filter(|e| filter.client_id.as_ref().is_none_or(|c| &e.client_id == c))
            .filter(|e| !filter.exclude_clients.contains(&e.client_id))
            .filter(|e| filter.actions.is_empty() || filter.actions.contains(&e.action))
            .filter(|e| filter.outcomes.is_empty() || filter.outcomes.contains(&e.outcome))
            .filter(|e| filter.since.is_none_or(|s| e.recorded >= s))
            .filter(|e| filter.until.is_none_or(|u| e.recorded <= u))
            .filter(|e| filter.before_seq.is_none_or(|b| e.seq < b))
            .map(|e| e.seq)
            .collect();
        expected.sort_unstable_by(|a, b| b.cmp(a));
        expected.truncate(case.limit as usize);
        let found: Vec<i64> = rows::find_entries(conn, &filter)
            .expect("entries")
            .iter()
            .map(|e| e.seq)
            .collect();
        prop_assert_eq!(found, expected, "entries matching {:?}", filter);
    }

    // The patient's notices, in the feed's order.
    let noticed = all
        .iter()
        .filter(|e| e.patient_id.as_deref() == Some(patient.as_str()) && e.notice.is_some());
    prop_assert_eq!(
        notice_count(conn, &patient).expect("count"),
        noticed.clone().count() as i64
    );
    let mut expected: Vec<(i64, i64)> = noticed
        .filter(|e| case.below.is_none_or(|b| (e.recorded, e.seq) < b))
        .filter(|e| !(case.unread_only && marked.contains(&e.seq)))
        .map(|e| (e.recorded, e.seq))
        .collect();
    expected.sort_unstable_by(|a, b| b.cmp(a));
    expected.truncate(case.limit as usize);
    let found: Vec<(i64, i64)> =
        patient_notices(conn, &patient, case.below, case.unread_only, case.limit)
            .expect("notices")
            .iter()
            .map(|e| (e.recorded, e.seq))
            .collect();
    prop_assert_eq!(found, expected, "notices");
    Ok(())
}

#[test]
fn a_patients_entries_and_notices_are_the_same_whatever_the_index_covers() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, _) in stores(dir.path()) {
        let conn = std::cell::RefCell::new(store.conn().expect("connection"));
        let mut runner = TestRunner::new(Config {
            cases: 128,
            failure_persistence: None,
            ..Config::default()
        });
        let outcome = runner.run(&case(), |case| check(&mut conn.borrow_mut(), &case));
        if let Err(e) = outcome {
            panic!("{:?}: {e}", store.backend());
        }
    }
}

/// The index never passes an entry that has not committed: it stops at the log's size as
/// the head states it, and an extension finds nothing more to do once it is there. On
/// PostgreSQL two rows lie beyond the head row's three; SQLite's head is the entries' own
/// size (migration `2026-12-05-000067`), so nothing can lie beyond it and three are written.
#[test]
fn the_index_stops_at_the_logs_committed_size() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, _) in stores(dir.path()) {
        let mut conn = store.conn().expect("connection");
        let written = match store.backend() {
            crate::store::Backend::Postgres => 5,
            crate::store::Backend::Sqlite => 3,
        };
        let all: Vec<EntryRow> = (0..written)
            .map(|i| row(i, &(Some(1), 0, 0, 0, true, 0)))
            .collect();
        rows::append(&mut conn, all, vec![], 3).expect("entries, the head saying three");
        assert_eq!(
            rows::size(&mut conn).expect("size"),
            3,
            "{:?}",
            store.backend()
        );
        let step = |c: &mut DbConn, limit| write_tx(c, |c| extend(c, limit)).expect("extend");
        assert_eq!(step(&mut conn, 2), 2, "{:?}", store.backend());
        assert_eq!(
            step(&mut conn, 100),
            1,
            "{:?}: up to the head",
            store.backend()
        );
        assert_eq!(
            step(&mut conn, 100),
            0,
            "{:?}: nothing more",
            store.backend()
        );
        assert_eq!(next_seq(&mut conn).expect("cursor"), 3);
        let filter = EntryFilter {
            patient_id: Some("p1".into()),
            limit: 10,
            ..EntryFilter::default()
        };
        let seqs: Vec<i64> = rows::find_entries(&mut conn, &filter)
            .expect("entries")
            .iter()
            .map(|e| e.seq)
            .collect();
        let expected: Vec<i64> = (0..written as i64).rev().collect();
        assert_eq!(
            seqs,
            expected,
            "{:?}: the tail from the table",
            store.backend()
        );
    }
}

/// The writer's keys are filed only where the index stops, and exactly as the table would
/// have filed them.
#[test]
fn the_writers_keys_are_filed_only_where_the_index_stops() {
    let dir = tempfile::tempdir().expect("temporary directory");
    for (store, _) in stores(dir.path()) {
        let backend = store.backend();
        let mut conn = store.conn().expect("connection");
        let all: Vec<EntryRow> = (0..6)
            .map(|i| row(i, &((i != 5).then_some(i % 2), i % 3, 0, 0, i % 3 == 0, 0)))
            .collect();
        rows::append(&mut conn, all.clone(), vec![], 6).expect("entries");
        let keys = |from: usize, to: usize| -> Vec<IndexKey> {
            all[from..to].iter().map(IndexKey::of).collect()
        };
        let with = |c: &mut DbConn, from, to, k: Vec<IndexKey>| {
            write_tx(c, |c| extend_with(c, from, to, &k)).expect("extend")
        };
        assert!(
            !with(&mut conn, 2, 6, keys(2, 6)),
            "{backend:?}: the index stops at 0"
        );
        assert_eq!(next_seq(&mut conn).expect("cursor"), 0, "{backend:?}");
        assert!(
            !with(&mut conn, 0, 7, keys(0, 6)),
            "{backend:?}: past the log's end"
        );
        assert!(with(&mut conn, 0, 4, keys(0, 4)), "{backend:?}");
        assert_eq!(next_seq(&mut conn).expect("cursor"), 4, "{backend:?}");
        assert_eq!(
            write_tx(&mut conn, |c| extend(c, 100)).expect("the rest"),
            2
        );
        for patient in ["p0", "p1"] {
            let filter = EntryFilter {
                patient_id: Some(patient.into()),
                limit: 10,
                ..EntryFilter::default()
            };
            let found: Vec<i64> = rows::find_entries(&mut conn, &filter)
                .expect("entries")
                .iter()
                .map(|e| e.seq)
                .collect();
            let want: Vec<i64> = all
                .iter()
                .rev()
                .filter(|e| e.patient_id.as_deref() == Some(patient))
                .map(|e| e.seq)
                .collect();
            assert_eq!(found, want, "{backend:?}: {patient}");
            let notices: Vec<i64> = patient_notices(&mut conn, patient, None, false, 10)
                .expect("notices")
                .iter()
                .map(|e| e.seq)
                .collect();
            let want: Vec<i64> = want.into_iter().filter(|s| s % 3 == 0).collect();
            assert_eq!(notices, want, "{backend:?}: {patient}'s notices");
        }
        let seqs = |c: &mut DbConn, filter: EntryFilter| -> Vec<i64> {
            let filter = EntryFilter {
                limit: 10,
                ..filter
            };
            let found = rows::find_entries(c, &filter).expect("entries");
            found.iter().map(|e| e.seq).collect()
        };
        for (i, client) in CLIENTS.iter().enumerate() {
            let by = EntryFilter {
                client_id: Some(client.to_string()),
                ..EntryFilter::default()
            };
            let want: Vec<i64> = (0..6).rev().filter(|s| s % 3 == i as i64).collect();
            assert_eq!(seqs(&mut conn, by), want, "{backend:?}: {client}");
        }
        let recorded = |seq: i64| 1_000 + 3 * seq;
        let within = EntryFilter {
            since: Some(recorded(1)),
            until: Some(recorded(4)),
            ..EntryFilter::default()
        };
        assert_eq!(
            seqs(&mut conn, within),
            [4, 3, 2, 1],
            "{backend:?}: a time range"
        );
        let (blocks, clients) = blocks_filed(&mut conn, backend);
        assert_eq!(
            blocks, "0-4:1000-1009,4-6:1012-1015",
            "{backend:?}: a block per step, each with its time span"
        );
        assert_eq!(
            clients, "c0:0,c1:0,c1:4,c2:0,c2:4",
            "{backend:?}: each client once per block it has an entry in"
        );
    }
}

/// The blocks as filed, `first-end:earliest-latest` each, and their clients,
/// `client:first` each, in key order.
pub(crate) fn blocks_filed(conn: &mut DbConn, backend: crate::store::Backend) -> (String, String) {
    let blocks = "SELECT COALESCE(STRING_AGG(CAST(first_seq AS TEXT) || '-' || \
         CAST(end_seq AS TEXT) || ':' || CAST(earliest AS TEXT) || '-' || \
         CAST(latest AS TEXT), ','), '') AS t \
         FROM (SELECT * FROM audit_blocks ORDER BY first_seq) b";
    let clients = "SELECT COALESCE(STRING_AGG(client_id || ':' || CAST(first_seq AS TEXT), \
         ','), '') AS t FROM (SELECT * FROM audit_block_clients ORDER BY client_id, first_seq) c";
    (
        aggregated(conn, backend, blocks),
        aggregated(conn, backend, clients),
    )
}
