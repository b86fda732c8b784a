//! Durable audit appends per second through [`AuditLog::record`] on SQLite: a file in a
//! temporary directory, opened by the store as the gateway opens it (WAL,
//! `synchronous = FULL`), so every acknowledged entry is on disk.
//!
//! - `one_writer`: one request at a time; every entry is its own group commit (one fsync).
//! - `64_writers`: 64 requests in flight, about 64 different patients, as under load; the
//!   writer commits whatever is waiting as one batch.
//! - `audit_append_announced/64_writers`: the same 64, each announcing its entry first
//!   (`AuditLog::announce`, as a release does when it begins), to a writer that holds a
//!   batch open for announced entries up to 1 ms (the server's default commit wait).
//! - `batch_phases/*`: the parts of a group commit timed apart (building the rows and tree
//!   nodes, the inserts, the commit with its flush), to show what dominates a batch.
//! - the batch census, printed after the `appends` group: 64 writers appending with no
//!   criterion around them, the steady throughput and the batch sizes, once with the 64
//!   entries in flight about 64 different patients and once about one patient.
//!
//! Run with `cargo bench --bench audit_append`; the figures are in `docs/AUDIT.md`. Set
//! `AUDIT_BENCH_DIR` to put the database elsewhere (a tmpfs shows the cost without flushes),
//! and `AUDIT_CENSUS_ENTRIES` to make the batch census longer (20,000 entries by default).

use std::cell::RefCell;
use std::time::{Duration, Instant};

use consentgate::audit::log::AuditLog;
use consentgate::audit::stored::{DbNodes, node_rows};
use consentgate::audit::{AuditAction, AuditEntry, AuditOutcome, Frontier, leaf_hash};
use consentgate::config::Settings;
use consentgate::store::audit::{self as rows, EntryRow};
use consentgate::store::{Store, write_tx};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use diesel::connection::SimpleConnection;
use futures_util::future::join_all;

/// Requests in flight in the concurrent case.
const WRITERS: u64 = 64;
/// Patients the entries are spread over.
const PATIENTS: u64 = 1000;

/// A temporary directory in `$AUDIT_BENCH_DIR` (say, a tmpfs, to take the disk flush out
/// of the figures) or in the system's temporary directory.
fn bench_dir() -> tempfile::TempDir {
    match std::env::var_os("AUDIT_BENCH_DIR") {
        Some(parent) => tempfile::tempdir_in(parent),
        None => tempfile::tempdir(),
    }
    .expect("temporary directory")
}

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

/// A typical disclosure entry (about 420 bytes canonical) about patient `patient`, its ids
/// made from `i`, stamped with the clock as the gateway stamps its entries
/// (`AuditEntry::new`), so that the log's time index grows at its end as it does in
/// service. (Until the twelfth step of `docs/PERFORMANCE.md` the stamp was a base plus the
/// index, which put the census's 64 writers at 64 places of that index, a write the gateway
/// never makes.)
fn entry(i: u64, patient: u64) -> AuditEntry {
    AuditEntry {
        sequence: 0,
        recorded_micros: consentgate::fhir_time::now_micros(),
        action: AuditAction::Read,
        outcome: AuditOutcome::Success,
        client_id: "0199c4d2-6a3e-7c11-9d0e-3f2a1b4c5d6e".into(),
        organisation: "Organization/northside-clinic".into(),
        user: Some("Practitioner/dr-lee".into()),
        purpose_of_use: "TREAT".into(),
        patient_id: Some(format!("pat-{patient}")),
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
    let dir = bench_dir();
    let store = sqlite_store(dir.path());
    let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer starts");
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
                    log.record(entry(i, i % PATIENTS)).await.expect("durable");
                }
                started.elapsed()
            })
        })
    });
    group.bench_function("64_writers", |b| {
        b.iter_custom(|iters| many_writers(&rt, &log, iters, false))
    });
    group.finish();
    // After the measured runs, on the same (grown) log.
    batch_sizes(&rt, &log, &store);
    announced_writers(c, &rt);
}

/// 64 writers that announce each entry before appending it, as a release does when it
/// begins, to a writer that may hold a batch open for announced entries (the server's
/// default `database.audit_commit_wait_us`, 1 ms).
fn announced_writers(c: &mut Criterion, rt: &tokio::runtime::Runtime) {
    let dir = bench_dir();
    let store = sqlite_store(dir.path());
    let log = AuditLog::start(store, Duration::from_millis(1)).expect("writer starts");
    let mut group = c.benchmark_group("audit_append_announced");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10));
    group.bench_function("64_writers", |b| {
        b.iter_custom(|iters| many_writers(rt, &log, iters, true))
    });
    group.finish();
}

/// The time [`WRITERS`] concurrent tasks take to append `iters` entries between them, each
/// announcing its entry first when `announce`.
fn many_writers(
    rt: &tokio::runtime::Runtime,
    log: &AuditLog,
    iters: u64,
    announce: bool,
) -> Duration {
    rt.block_on(async {
        let per_writer = iters.div_ceil(WRITERS);
        let started = Instant::now();
        join_all((0..WRITERS).map(|w| async move {
            for i in 0..per_writer {
                let announced = announce.then(|| log.announce());
                log.record_announced(announced, entry(i * WRITERS + w, spread(i, w)))
                    .await
                    .expect("durable");
            }
        }))
        .await;
        // Count what was appended, which rounds iters up to a multiple of WRITERS.
        started
            .elapsed()
            .mul_f64(iters as f64 / (per_writer * WRITERS) as f64)
    })
}

/// How full the group commits are under 64 writers, and how many entries are durable per
/// second, in two shapes: the 64 requests in flight about 64 different patients (many
/// clinicians, many patients), and about one patient (one patient's record read by many
/// requests at once, as `scripts/load` does). Each commit changes a leaf of both
/// per-patient indexes for every patient it touches, so the first shape is the harder. A
/// second connection polls the head more often than the writer commits, so each change it
/// sees is (nearly always) one commit.
fn batch_sizes(rt: &tokio::runtime::Runtime, log: &AuditLog, store: &Store) {
    // `AUDIT_CENSUS_ENTRIES` for a longer run (the default is about a second each).
    let entries: u64 = std::env::var("AUDIT_CENSUS_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20_000);
    census(rt, log, store, entries, "64 patients", spread);
    census(rt, log, store, entries, "one patient", |i, _| i % PATIENTS);
}

/// The patient of writer `w`'s `i`th entry when the 64 requests in flight are about 64
/// different patients (`64_writers` and the census's first shape).
fn spread(i: u64, w: u64) -> u64 {
    (i * WRITERS + w) % PATIENTS
}

/// One census: `entries` appended by [`WRITERS`] writers, the `i`th entry of writer `w`
/// about patient `patient_of(i, w)`.
fn census(
    rt: &tokio::runtime::Runtime,
    log: &AuditLog,
    store: &Store,
    entries: u64,
    shape: &str,
    patient_of: fn(u64, u64) -> u64,
) {
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (sizes, elapsed) = std::thread::scope(|scope| {
        let sampler = scope.spawn(|| {
            let mut conn = store.conn().expect("connection");
            let mut seen = vec![rows::size(&mut conn).expect("size")];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let size = rows::size(&mut conn).expect("size");
                if Some(&size) != seen.last() {
                    seen.push(size);
                }
                // Polls well within a commit's time, without taking a core of its own.
                std::thread::sleep(Duration::from_micros(100));
            }
            seen.push(rows::size(&mut conn).expect("size"));
            seen
        });
        let started = Instant::now();
        rt.block_on(join_all((0..WRITERS).map(|w| async move {
            for i in 0..entries / WRITERS {
                let entry = entry(i * WRITERS + w, patient_of(i, w));
                log.record(entry).await.expect("durable");
            }
        })));
        let elapsed = started.elapsed();
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        (sampler.join().expect("sampler"), elapsed)
    });
    let batches: Vec<u64> = sizes
        .windows(2)
        .map(|w| w[1] - w[0])
        .filter(|n| *n > 0)
        .collect();
    let total: u64 = batches.iter().sum();
    let mut sorted = batches.clone();
    sorted.sort_unstable();
    eprintln!(
        "64 writers, {shape} in flight: {total} entries in {:.2} s = {:.0}/s; {} commits \
         seen, mean batch {:.1}, median {}, largest {}",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64(),
        batches.len(),
        total as f64 / batches.len().max(1) as f64,
        sorted.get(sorted.len() / 2).copied().unwrap_or(0),
        sorted.last().copied().unwrap_or(0),
    );
}

/// One group commit taken apart, the way the writer does it.
fn batch_phases(c: &mut Criterion) {
    let dir = bench_dir();
    let store = sqlite_store(dir.path());
    let mut conn = store.conn().expect("connection");
    let mut group = c.benchmark_group("batch_phases");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5));

    // Building rows: canonical bytes, leaf hashes, tree nodes (pure CPU).
    group.throughput(Throughput::Elements(WRITERS));
    group.bench_function("build_64_rows", |b| {
        let mut frontier = Frontier::empty();
        b.iter(|| build(&mut frontier, WRITERS, PATIENTS))
    });
    // Inserting a batch in a transaction that is rolled back: everything but the flush.
    group.bench_function("insert_64_no_commit", |b| {
        b.iter_custom(|iters| timed_commits(&mut conn, iters, WRITERS, PATIENTS, false))
    });
    // Whole group commits, flush included: 64 entries about 1000 patients, 64 entries
    // about one patient (index locality), and a single entry (the fixed cost of a flush).
    group.bench_function("commit_64", |b| {
        b.iter_custom(|iters| timed_commits(&mut conn, iters, WRITERS, PATIENTS, true))
    });
    group.bench_function("commit_64_one_patient", |b| {
        b.iter_custom(|iters| timed_commits(&mut conn, iters, WRITERS, 1, true))
    });
    // The same with SQLite's automatic WAL checkpoints off: the share of checkpointing,
    // which runs inside every ~1000th page's commit.
    conn.batch_execute("PRAGMA wal_autocheckpoint = 0")
        .expect("pragma");
    group.bench_function("commit_64_no_autocheckpoint", |b| {
        b.iter_custom(|iters| timed_commits(&mut conn, iters, WRITERS, PATIENTS, true))
    });
    conn.batch_execute("PRAGMA wal_autocheckpoint = 1000; PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("pragma");
    group.throughput(Throughput::Elements(1));
    group.bench_function("commit_1", |b| {
        b.iter_custom(|iters| timed_commits(&mut conn, iters, 1, PATIENTS, true))
    });
    group.finish();
    for patients in [PATIENTS, 1] {
        wal_pages_per_commit(&mut conn, dir.path(), patients);
    }
}

/// Pages a 64-entry commit appends to the WAL (what its flush writes), measured from the
/// growth of the WAL file with checkpoints off.
fn wal_pages_per_commit(
    conn: &mut consentgate::store::DbConn,
    dir: &std::path::Path,
    patients: u64,
) {
    const COMMITS: u64 = 50;
    conn.batch_execute("PRAGMA wal_autocheckpoint = 0; PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("pragma");
    let wal = dir.join("bench.db-wal");
    let before = std::fs::metadata(&wal).map_or(0, |m| m.len());
    timed_commits(conn, COMMITS, WRITERS, patients, true);
    let after = std::fs::metadata(&wal).map_or(0, |m| m.len());
    // Each WAL frame is a 24-byte header and one 4096-byte page.
    let pages = (after - before) as f64 / 4120.0 / COMMITS as f64;
    eprintln!(
        "64-entry commit about {patients} patient(s): {pages:.1} WAL pages ({:.0} KiB) per commit",
        pages * 4.0
    );
    conn.batch_execute("PRAGMA wal_autocheckpoint = 1000; PRAGMA wal_checkpoint(TRUNCATE)")
        .expect("pragma");
}

/// Time spent in `iters` group commits of `n` entries (rolled back unless `commit`).
fn timed_commits(
    conn: &mut consentgate::store::DbConn,
    iters: u64,
    n: u64,
    patients: u64,
    commit: bool,
) -> Duration {
    let mut spent = Duration::ZERO;
    for _ in 0..iters {
        let size = rows::size(conn).expect("size");
        let mut frontier = frontier_at(conn, size);
        let (entries, nodes) = build(&mut frontier, n, patients);
        let node_rows = node_rows(&nodes);
        let started = Instant::now();
        let done = write_tx(conn, |conn| {
            rows::lock_head(conn)?;
            rows::append(conn, entries, node_rows, frontier.size())?;
            if commit {
                Ok(())
            } else {
                Err(consentgate::store::StoreError::Task("roll back".into()))
            }
        });
        spent += started.elapsed();
        assert_eq!(done.is_ok(), commit);
    }
    spent
}

fn frontier_at(conn: &mut consentgate::store::DbConn, size: u64) -> Frontier {
    Frontier::from_store(size, &DbNodes(RefCell::new(conn))).expect("frontier")
}

fn build(
    frontier: &mut Frontier,
    n: u64,
    patients: u64,
) -> (Vec<EntryRow>, Vec<consentgate::audit::TreeNode>) {
    let mut entries = Vec::with_capacity(n as usize);
    let mut nodes = Vec::with_capacity(2 * n as usize);
    for _ in 0..n {
        let mut e = entry(frontier.size(), frontier.size() % patients);
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
            notice: consentgate::notify::kind_of(&e).map(|k| k.as_str().to_string()),
        });
    }
    (entries, nodes)
}

criterion_group!(benches, appends, batch_phases);
criterion_main!(benches);
