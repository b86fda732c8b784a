//! Durable audit appends per second through [`AuditLog::record`] on SQLite: a file in a
//! temporary directory, opened by the store as the gateway opens it (WAL,
//! `synchronous = FULL`), so every acknowledged entry is on disk.
//!
//! - `one_writer`: one request at a time; every entry is its own group commit (one fsync).
//! - `64_writers`: 64 requests in flight, as under load; the writer commits whatever is
//!   waiting as one batch.
//! - `batch_phases/*`: the parts of one 64-entry group commit, timed apart (building the
//!   rows and tree nodes, the inserts, the commit), to show what dominates a batch.
//!
//! Run with `cargo bench --bench audit_append`; the figures are in `docs/AUDIT.md`.

use std::cell::RefCell;
use std::time::{Duration, Instant};

use consentgate::audit::log::AuditLog;
use consentgate::audit::{AuditAction, AuditEntry, AuditOutcome, Frontier, leaf_hash};
use consentgate::config::Settings;
use consentgate::store::audit::{self as rows, DbNodes, EntryRow};
use consentgate::store::{Store, write_tx};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures_util::future::join_all;

/// Requests in flight in the concurrent case.
const WRITERS: u64 = 64;

/// A store on a fresh SQLite file in `dir`, migrated.
fn sqlite_store(dir: &std::path::Path) -> Store {
    let env = [
        (
            "CONSENTGATE__DATA_DIR".to_string(),
            dir.display().to_string(),
        ),
        (
            "CONSENTGATE__DATABASE__URL".to_string(),
            format!("sqlite://{}/bench.db", dir.display()),
        ),
        (
            "CONSENTGATE__DATABASE__POOL_SIZE".to_string(),
            "4".to_string(),
        ),
    ];
    let settings = Settings::load_from(None, env).expect("bench settings");
    let store = Store::open(&settings).expect("store opens");
    store.migrate().expect("migrations apply");
    store
}

/// A typical disclosure entry (about 420 bytes canonical).
fn entry(i: u64) -> AuditEntry {
    AuditEntry {
        sequence: 0,
        recorded_micros: 1_767_225_600_000_000 + i as i64,
        action: AuditAction::Read,
        outcome: AuditOutcome::Success,
        client_id: "0199c4d2-6a3e-7c11-9d0e-3f2a1b4c5d6e".into(),
        organisation: "Organization/northside-clinic".into(),
        user: Some("Practitioner/dr-lee".into()),
        purpose_of_use: "TREAT".into(),
        patient_id: Some(format!("pat-{}", i % 1000)),
        resources: vec![
            format!("Observation/obs-{i}"),
            format!("Condition/c-{i}"),
            format!("MedicationRequest/m-{i}"),
        ],
        consents: vec!["consent-9".into()],
        policies: vec!["baseline-permit".into(), "minimum-necessary".into()],
        break_glass: None,
        request_id: format!("0199c4d2-6a3e-7c11-9d0e-{i:012}"),
        detail: [("count".to_string(), "3".to_string())].into(),
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn appends(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sqlite_store(dir.path());
    let log = AuditLog::start(store).expect("writer starts");
    let rt = runtime();

    let mut group = c.benchmark_group("audit_append");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("one_writer", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let started = Instant::now();
                for i in 0..iters {
                    log.record(entry(i)).await.expect("durable");
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("64_writers", |b| {
        b.iter_custom(|iters| {
            rt.block_on(async {
                let per_writer = iters.div_ceil(WRITERS);
                let started = Instant::now();
                join_all((0..WRITERS).map(|w| {
                    let log = &log;
                    async move {
                        for i in 0..per_writer {
                            log.record(entry(w * per_writer + i))
                                .await
                                .expect("durable");
                        }
                    }
                }))
                .await;
                // Count what was appended, which rounds iters up to a multiple of WRITERS.
                started
                    .elapsed()
                    .mul_f64(iters as f64 / (per_writer * WRITERS) as f64)
            })
        })
    });
    group.finish();
}

/// One 64-entry group commit taken apart, the way the writer does it.
fn batch_phases(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let store = sqlite_store(dir.path());
    let mut conn = store.conn().expect("connection");
    let mut group = c.benchmark_group("batch_phases");
    group
        .throughput(Throughput::Elements(WRITERS))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    // Building rows: canonical bytes, leaf hashes, tree nodes (pure CPU).
    group.bench_function("build_rows", |b| {
        let mut frontier = Frontier::empty();
        b.iter(|| build(&mut frontier, WRITERS))
    });
    // Inserting the batch in a transaction that is rolled back: no fsync.
    group.bench_function("inserts_no_commit", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let size = rows::size(&mut conn).expect("size");
                let mut frontier = frontier_at(&mut conn, size);
                let (entries, nodes) = build(&mut frontier, WRITERS);
                let started = Instant::now();
                let _ = write_tx(&mut conn, |conn| {
                    rows::lock_head(conn)?;
                    rows::append(conn, &entries, &nodes, frontier.size())?;
                    Err::<(), _>(consentgate::store::StoreError::Task("roll back".into()))
                });
                spent += started.elapsed();
            }
            spent
        })
    });
    // The whole group commit, fsync included.
    group.bench_function("inserts_and_commit", |b| {
        b.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let size = rows::size(&mut conn).expect("size");
                let mut frontier = frontier_at(&mut conn, size);
                let (entries, nodes) = build(&mut frontier, WRITERS);
                let started = Instant::now();
                write_tx(&mut conn, |conn| {
                    rows::lock_head(conn)?;
                    rows::append(conn, &entries, &nodes, frontier.size())
                })
                .expect("committed");
                spent += started.elapsed();
            }
            spent
        })
    });
    // An empty write transaction: what a commit (WAL append + fsync) costs by itself.
    group.throughput(Throughput::Elements(1));
    group.bench_function("empty_commit", |b| {
        b.iter(|| {
            write_tx(&mut conn, |conn| {
                let size = rows::lock_head(conn)?;
                rows::append(conn, &[], &[], size)
            })
            .expect("committed")
        })
    });
    group.finish();
}

fn frontier_at(conn: &mut consentgate::store::DbConn, size: u64) -> Frontier {
    Frontier::from_store(size, &DbNodes(RefCell::new(conn))).expect("frontier")
}

fn build(frontier: &mut Frontier, n: u64) -> (Vec<EntryRow>, Vec<consentgate::audit::TreeNode>) {
    let mut entries = Vec::with_capacity(n as usize);
    let mut nodes = Vec::with_capacity(2 * n as usize);
    for i in 0..n {
        let mut e = entry(i);
        e.sequence = frontier.size();
        let bytes = e.canonical_bytes();
        nodes.extend(frontier.append(leaf_hash(&bytes)).expect("append"));
        entries.push(EntryRow {
            seq: e.sequence as i64,
            recorded: e.recorded_micros,
            action: e.action.as_str().into(),
            outcome: e.outcome.as_str().into(),
            client_id: e.client_id.clone(),
            patient_id: e.patient_id.clone(),
            body: String::from_utf8(bytes).expect("UTF-8"),
        });
    }
    (entries, nodes)
}

criterion_group!(benches, appends, batch_phases);
criterion_main!(benches);
