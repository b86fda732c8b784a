//! Faults under load, against real server processes:
//!
//! - PostgreSQL stopped mid-load (a throwaway server of this test's own, never the shared
//!   one): every answer is 200 or 503 with `Retry-After`, `/readyz` says not ready, and
//!   service (reads, the audit writer, the checkpoint signer) resumes by itself once the
//!   database is back; every acknowledged read is in the log and `audit verify` passes.
//! - SQLite on a small tmpfs filled to its last byte (a real `ENOSPC`, not a simulated
//!   limit): a write is refused whole with 503 and `Retry-After` and a log line naming the
//!   cause; an audited read is served only if its entry could be made durable, else 503;
//!   once space is back service resumes by itself and `audit verify` passes. (A read-only
//!   remount cannot be had while the database is open for writing, which the kernel refuses
//!   as "busy", and root ignores file modes; SQLite's read-only and I/O errors are mapped to
//!   503 by the same classification, unit-tested in `store`.)
//! - SIGKILL during a burst of disclosure fetches (both backends): every fetch the client
//!   saw as 200 has its audit entry, the retrieval count covers them, the log verifies.
//!   The same during research exports: every download answered 200 is in the log, and
//!   exports run again after the restart. The read burst is `audit.rs`'s
//!   `acknowledged_entries_survive_sigkill`.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use diesel::sql_types::{BigInt, Nullable, Text};
use diesel::{QueryableByName, RunQueryDsl};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, database_for, decode};
use crate::helpers::{ClientKey, now};
use crate::served::{self, PUBLIC_BASE, Served};

// ---------------------------------------------------------------------------------------
// A PostgreSQL of the test's own.

struct OwnPostgres {
    dir: tempfile::TempDir,
    port: u16,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/postgres-for-tests")
}

fn pg_ctl() -> Option<PathBuf> {
    let mut bins: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("bin/pg_ctl"))
        .filter(|p| p.exists())
        .collect();
    bins.sort();
    bins.pop()
}

fn as_postgres(program: &Path) -> Command {
    // PostgreSQL refuses to run as root; the package's account runs it.
    // SAFETY-free check: `id -u` is the portable way without a libc dependency.
    let root = Command::new("id")
        .arg("-u")
        .output()
        .map(|o| o.stdout == b"0\n")
        .unwrap_or(false);
    if root {
        let mut cmd = Command::new("runuser");
        cmd.args(["-u", "postgres", "--"]).arg(program);
        cmd
    } else {
        Command::new(program)
    }
}

impl OwnPostgres {
    /// Starts one with `scripts/postgres-for-tests`; `None` (loudly) where PostgreSQL cannot
    /// be had and this is not CI.
    fn start() -> Option<OwnPostgres> {
        if pg_ctl().is_none() && std::env::var("CI").as_deref() != Ok("true") {
            eprintln!("!!!!! POSTGRESQL FAULT TEST SKIPPED: no PostgreSQL server binaries !!!!!");
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("cg-fault-pg")
            .tempdir()
            .unwrap();
        let out = Command::new(script())
            .arg("start")
            .arg(dir.path())
            .output()
            .expect("the script runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let url = String::from_utf8(out.stdout).unwrap().trim().to_string();
        let port = url
            .rsplit(':')
            .next()
            .unwrap()
            .split('/')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        Some(OwnPostgres { dir, port, url })
    }

    fn stop(&self) {
        let out = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Starts the stopped server again on the same port and folder.
    fn restart(&self) {
        let dir = self.dir.path();
        let out = as_postgres(&pg_ctl().unwrap())
            .arg("-D")
            .arg(dir.join("data"))
            .arg("-l")
            .arg(dir.join("server.log"))
            .arg("-w")
            .arg("-o")
            .arg(format!(
                "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=300",
                self.port,
                dir.display()
            ))
            .arg("start")
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(script())
            .arg("stop")
            .arg(self.dir.path())
            .output();
    }
}

/// What one request saw.
#[derive(Debug, Clone)]
struct Seen {
    request_id: String,
    status: u16,
    retry_after: Option<String>,
}

/// Reads `path` in a loop from `tasks` tasks until `stop` is set.
fn load(
    client: &reqwest::Client,
    url: String,
    token: String,
    tasks: usize,
    stop: Arc<std::sync::atomic::AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
) -> Vec<actix_web::rt::task::JoinHandle<()>> {
    (0..tasks)
        .map(|t| {
            let (client, url, token, stop, seen) = (
                client.clone(),
                url.clone(),
                token.clone(),
                stop.clone(),
                seen.clone(),
            );
            actix_web::rt::spawn(async move {
                let mut n = 0;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    n += 1;
                    let id = format!("load-{t}-{n}-{}", uuid::Uuid::now_v7().simple());
                    match served::get(&client, &url, &token, &id).await {
                        Ok((status, _, retry_after)) => seen.lock().unwrap().push(Seen {
                            request_id: id,
                            status,
                            retry_after,
                        }),
                        Err(_) => actix_web::rt::time::sleep(Duration::from_millis(20)).await,
                    }
                }
            })
        })
        .collect()
}

async fn put_patient(client: &reqwest::Client, server: &Served, token: &str, id: &str) -> u16 {
    let body = json!({"resourceType": "Patient", "id": id});
    served::send_json(
        client,
        reqwest::Method::PUT,
        &server.url(&format!("/fhir/Patient/{id}")),
        token,
        &body,
        "application/fhir+json",
    )
    .await
    .0
}

#[derive(QueryableByName)]
struct RequestIdRow {
    #[diesel(sql_type = Nullable<Text>)]
    request_id: Option<String>,
}

/// Every request id in the audit log of the database at `url` (either backend).
fn logged_request_ids(dir: &Path, url: &str) -> BTreeSet<String> {
    let settings = crate::helpers::test_settings(dir, url, &[]);
    let store = consentgate::store::Store::open(&settings).unwrap();
    let mut conn = store.conn().unwrap();
    let sql = match store.backend() {
        consentgate::store::Backend::Postgres => {
            "SELECT (body::json)->>'request_id' AS request_id FROM audit_entries"
        }
        consentgate::store::Backend::Sqlite => {
            "SELECT json_extract(body, '$.request_id') AS request_id FROM audit_entries"
        }
    };
    diesel::sql_query(sql)
        .load::<RequestIdRow>(&mut *conn)
        .unwrap()
        .into_iter()
        .filter_map(|r| r.request_id)
        .collect()
}

fn assert_all_logged(acknowledged: &BTreeSet<String>, logged: &BTreeSet<String>) {
    let lost: Vec<&String> = acknowledged.difference(logged).collect();
    assert!(lost.is_empty(), "acknowledged but not logged: {lost:?}");
}

#[actix_web::test]
async fn postgres_outage_answers_503_and_recovers() {
    let Some(pg) = OwnPostgres::start() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let server = served::serve(
        dir.path(),
        &pg.url,
        "outage",
        &[("CONSENTGATE__DATABASE__CONNECT_TIMEOUT_SECS", "2")],
    )
    .await;
    let client = served::plain_client();
    let operator = served::operator(dir.path(), &pg.url);
    assert_eq!(put_patient(&client, &server, &operator, "p1").await, 201);
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(
        &client,
        server.url("/fhir/Patient/p1"),
        operator.clone(),
        4,
        stop.clone(),
        seen.clone(),
    );
    let count = |status: u16| {
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| s.status == status)
            .count()
    };
    served::until(
        "reads before the outage",
        Duration::from_secs(20),
        || async { count(200) >= 20 },
    )
    .await;

    pg.stop();
    let stopped = Instant::now();
    served::until(
        "503s during the outage",
        Duration::from_secs(30),
        || async { count(503) >= 4 },
    )
    .await;
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 503, "/readyz says not ready");
    assert!(ready.headers().contains_key("retry-after"));
    let outage = stopped.elapsed();

    pg.restart();
    let restarted = Instant::now();
    let before = count(200);
    served::until(
        "reads after the database returned",
        Duration::from_secs(30),
        || async { count(200) >= before + 20 },
    )
    .await;
    let resumed = restarted.elapsed();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    // The writer, the signer and writes work again too.
    assert_eq!(put_patient(&client, &server, &operator, "p2").await, 201);
    let ready = client.get(server.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200);
    let checkpoint = client
        .get(server.url("/api/v1/audit/checkpoint"))
        .send()
        .await
        .unwrap();
    assert_eq!(
        checkpoint.status().as_u16(),
        200,
        "the checkpoint signer recovered"
    );

    let seen = seen.lock().unwrap().clone();
    let by_status = seen
        .iter()
        .fold(std::collections::BTreeMap::new(), |mut m, s| {
            *m.entry(s.status).or_insert(0) += 1;
            m
        });
    eprintln!(
        "postgres outage: {by_status:?} over {} requests; 503s seen within {outage:?} of the stop; \
         service resumed {resumed:?} after the restart",
        seen.len()
    );
    for s in &seen {
        assert!(
            s.status == 200 || (s.status == 503 && s.retry_after.is_some()),
            "{} answered {} (Retry-After {:?}); the log says: {}",
            s.request_id,
            s.status,
            s.retry_after,
            server.log_text()
        );
    }
    assert!(
        resumed < Duration::from_secs(15),
        "resumed after {resumed:?}"
    );
    let acknowledged: BTreeSet<String> = seen
        .iter()
        .filter(|s| s.status == 200)
        .map(|s| s.request_id.clone())
        .collect();
    assert_all_logged(&acknowledged, &logged_request_ids(dir.path(), &pg.url));
    let (code, out) = served::cli(dir.path(), &pg.url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let log = server.log_text_once(|log| log.contains("database")).await;
    assert!(
        log.contains("database"),
        "the log names the database: {log}"
    );
}

// ---------------------------------------------------------------------------------------
// SQLite storage that cannot be written.

/// A small tmpfs, unmounted on drop.
struct SmallDisk {
    dir: tempfile::TempDir,
}

impl SmallDisk {
    fn mount(size: &str) -> Option<SmallDisk> {
        let dir = tempfile::Builder::new()
            .prefix("cg-small-disk")
            .tempdir()
            .unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            assert_ne!(
                std::env::var("CI").as_deref(),
                Ok("true"),
                "CI runs as root and must be able to mount a tmpfs"
            );
            eprintln!(
                "!!!!! SQLITE DISK FAULT TEST SKIPPED: cannot mount a tmpfs (not root?) !!!!!"
            );
            return None;
        }
        Some(SmallDisk { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Fills the filesystem to its last byte with a file that [`SmallDisk::free`] removes.
    fn fill(&self) {
        let mut f = std::fs::File::create(self.path().join("filler")).unwrap();
        let block = vec![0u8; 64 * 1024];
        loop {
            if std::io::Write::write_all(&mut f, &block).is_err() {
                break;
            }
        }
        for _ in 0..64 {
            if std::io::Write::write_all(&mut f, &[0u8; 1024]).is_err() {
                break;
            }
        }
        let _ = std::io::Write::flush(&mut f);
    }

    fn free(&self) {
        std::fs::remove_file(self.path().join("filler")).unwrap();
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.path()).status();
    }
}

async fn read(
    client: &reqwest::Client,
    server: &Served,
    token: &str,
    id: &str,
) -> (u16, Option<String>) {
    let (status, _, retry) = served::get(client, &server.url("/fhir/Patient/p1"), token, id)
        .await
        .unwrap();
    (status, retry)
}

#[actix_web::test]
async fn sqlite_disk_full_answers_503() {
    let Some(disk) = SmallDisk::mount("24m") else {
        return;
    };
    let data = disk.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    let url = format!("sqlite://{}/consentgate.db", data.display());
    let logs = tempfile::tempdir().unwrap();
    let server = served::serve_logging_to(&data, logs.path(), &url, "disk", &[]).await;
    let client = served::plain_client();
    let operator = served::operator(&data, &url);
    assert_eq!(put_patient(&client, &server, &operator, "p1").await, 201);
    let mut acknowledged = BTreeSet::new();
    for i in 0..5 {
        let id = format!("disk-before-{i}");
        assert_eq!(read(&client, &server, &operator, &id).await.0, 200);
        acknowledged.insert(id);
    }

    // Full: a large write is refused whole; reads either fit (and are logged) or get 503.
    disk.fill();
    let entries: Vec<Value> = (0..400)
        .map(|i| json!({"resource": {"resourceType": "Patient", "id": format!("big-{i}"),
            "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", "x".repeat(4000))}},
            "request": {"method": "PUT", "url": format!("Patient/big-{i}")}}))
        .collect();
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let (status, body) = served::send_json(
        &client,
        reqwest::Method::POST,
        &server.url("/fhir"),
        &operator,
        &bundle,
        "application/fhir+json",
    )
    .await;
    assert_eq!(status, 503, "a transaction on a full disk: {body}");
    for i in 0..5 {
        let id = format!("disk-full-{i}");
        match read(&client, &server, &operator, &id).await {
            (200, _) => {
                acknowledged.insert(id);
            }
            (503, Some(_)) => {}
            other => panic!("a read on a full disk answered {other:?}"),
        }
    }
    disk.free();

    // Back to normal by itself; nothing of the refused transaction was stored.
    let (status, _) = read(&client, &server, &operator, "disk-after").await;
    assert_eq!(status, 200);
    acknowledged.insert("disk-after".into());
    let (status, _, _) = served::get(
        &client,
        &server.url("/fhir/Patient/big-0"),
        &operator,
        "disk-big",
    )
    .await
    .unwrap();
    assert_eq!(status, 404, "nothing half-written");
    let log = server
        .log_text_once(|log| log.contains("storage is full"))
        .await;
    assert!(
        log.contains("storage is full"),
        "a clear log line for the full disk: {log}"
    );
    drop(server);
    assert_all_logged(&acknowledged, &logged_request_ids(&data, &url));
    let (code, out) = served::cli(&data, &url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "{out}");
}

// ---------------------------------------------------------------------------------------
// SIGKILL during disclosure fetches.

#[derive(QueryableByName)]
struct RetrievalRow {
    #[diesel(sql_type = BigInt)]
    retrievals: i64,
    #[diesel(sql_type = BigInt)]
    audited: i64,
}

async fn killed_during_disclosure_fetches(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let first = served::serve(dir.path(), &url, "fetch-1", &[]).await;
    let client = served::plain_client();
    let operator = served::operator(dir.path(), &url);
    let condition = json!({"resourceType": "Condition", "id": "c1", "subject": {"reference": "Patient/pat"},
        "code": {"text": "x"}, "recordedDate": "2022-01-01"});
    assert_eq!(put_patient(&client, &first, &operator, "pat").await, 201);
    let (status, body) = served::send_json(
        &client,
        reqwest::Method::PUT,
        &first.url("/fhir/Condition/c1"),
        &operator,
        &condition,
        "application/fhir+json",
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let key = ClientKey::ed25519("k");
    let (status, registered) = served::send_json(&client, reqwest::Method::POST, &first.url("/api/v1/clients"), &operator,
        &json!({"name": "assessor", "organization": "agency", "role": "disability_assessor", "jwks": key.jwks()}), "application/json").await;
    assert_eq!(status, 201, "{registered}");
    let assessor = registered["id"].as_str().unwrap().to_string();
    let patient = served::person(dir.path(), &url, "patient-pat", Some("pat"), &[]);
    let expires = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let (status, created) = served::send_json(&client, reqwest::Method::POST, &first.url("/api/v1/disclosures"), &patient,
        &json!({"recipient": assessor, "purpose": "PATRQT", "policy": "https://www.ssa.gov/forms/ssa-827.pdf",
                "selection": {"resources": ["Condition/c1"]}, "expires": expires, "max_retrievals": 100}), "application/json").await;
    assert_eq!(status, 201, "{created}");
    let disclosure = created["id"].as_str().unwrap().to_string();
    let claims = json!({"iss": assessor, "sub": assessor, "aud": format!("{PUBLIC_BASE}/oauth/token"),
        "exp": now() + 240, "jti": uuid::Uuid::now_v7().to_string()});
    let form = [
        ("grant_type", "client_credentials".to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", key.sign(&claims, Some("k"))),
        ("purpose_of_use", "PATRQT".to_string()),
        ("scope", "system/*.rs".to_string()),
    ];
    let (status, token) = decode(
        client
            .post(first.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_string();

    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Vec::new()));
    let tasks = load(
        &client,
        first.url(&format!("/api/v1/disclosures/{disclosure}/bundle")),
        token,
        4,
        stop.clone(),
        seen.clone(),
    );
    served::until(
        "fetches before the kill",
        Duration::from_secs(30),
        || async {
            seen.lock()
                .unwrap()
                .iter()
                .filter(|s| s.status == 200)
                .count()
                >= 10
        },
    )
    .await;
    let mut first = first;
    first.kill();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    let seen = seen.lock().unwrap().clone();
    assert!(
        seen.iter().all(|s| s.status == 200),
        "{:?}",
        seen.iter().find(|s| s.status != 200)
    );
    let acknowledged: BTreeSet<String> = seen.iter().map(|s| s.request_id.clone()).collect();

    let second = served::serve(dir.path(), &url, "fetch-2", &[]).await;
    let (code, out) = served::cli(dir.path(), &url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "the log verifies after the kill: {out}");
    assert_all_logged(&acknowledged, &logged_request_ids(dir.path(), &url));
    let settings = crate::helpers::test_settings(dir.path(), &url, &[]);
    let store = consentgate::store::Store::open(&settings).unwrap();
    let mut conn = store.conn().unwrap();
    let counts: RetrievalRow = diesel::sql_query(format!(
        "SELECT d.retrievals AS retrievals, \
         (SELECT COUNT(*) FROM disclosure_retrievals r WHERE r.disclosure_id = d.id AND r.audit_seq IS NOT NULL) AS audited \
         FROM disclosures d WHERE d.id = '{disclosure}'"
    ))
    .get_result(&mut *conn)
    .unwrap();
    eprintln!(
        "disclosure fetches ({backend:?}): {} acknowledged, {} counted, {} counted with their audit entry linked",
        acknowledged.len(),
        counts.retrievals,
        counts.audited
    );
    // Counted: every acknowledged fetch, and any whose response may have been on the wire.
    assert!(counts.retrievals as usize >= acknowledged.len());
    drop(second);
}

both_backends!(killed_during_disclosure_fetches);

// ---------------------------------------------------------------------------------------
// SIGKILL during research exports.

/// Kicks off an export, waits for it and downloads its files, each request with its own id;
/// returns the ids of the downloads answered 200, or what it got so far when the server went.
async fn export_round(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    round: usize,
) -> (Vec<String>, bool) {
    let mut acknowledged = Vec::new();
    let send = |url: String, id: String| {
        client
            .get(url)
            .bearer_auth(token)
            .header("accept", "application/fhir+json")
            .header("prefer", "respond-async")
            .header("x-request-id", id)
            .send()
    };
    let Ok(kick) = send(
        format!("{base}/fhir/Group/study1/$export"),
        format!("export-{round}"),
    )
    .await
    else {
        return (acknowledged, false);
    };
    assert_eq!(kick.status().as_u16(), 202);
    let status_url = kick.headers()["content-location"]
        .to_str()
        .unwrap()
        .replace(PUBLIC_BASE, base);
    let manifest = loop {
        let Ok(resp) = send(
            status_url.clone(),
            format!("status-{round}-{}", uuid::Uuid::now_v7().simple()),
        )
        .await
        else {
            return (acknowledged, false);
        };
        match resp.status().as_u16() {
            202 => actix_web::rt::time::sleep(Duration::from_millis(50)).await,
            200 => break resp.json::<Value>().await.unwrap(),
            other => panic!("export status {other}"),
        }
    };
    for (i, file) in manifest["output"].as_array().unwrap().iter().enumerate() {
        let url = file["url"].as_str().unwrap().replace(PUBLIC_BASE, base);
        let id = format!("download-{round}-{i}");
        match send(url, id.clone()).await {
            Ok(resp) if resp.status().as_u16() == 200 => {
                if resp.bytes().await.is_ok() {
                    acknowledged.push(id);
                }
            }
            Ok(resp) => panic!("download answered {}", resp.status()),
            Err(_) => return (acknowledged, false),
        }
    }
    (acknowledged, true)
}

async fn killed_during_exports(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let first = served::serve(dir.path(), &url, "export-1", &[]).await;
    let client = served::plain_client();
    let operator = served::operator(dir.path(), &url);
    let mut entries = Vec::new();
    for p in 0..6 {
        entries.push(json!({"resource": {"resourceType": "Patient", "id": format!("s{p}"), "birthDate": "1970-01-01"},
            "request": {"method": "PUT", "url": format!("Patient/s{p}")}}));
        for o in 0..5 {
            entries.push(json!({"resource": {"resourceType": "Observation", "id": format!("s{p}o{o}"), "status": "final",
                "code": {"text": "x"}, "subject": {"reference": format!("Patient/s{p}")}, "effectiveDateTime": "2020-01-01"},
                "request": {"method": "PUT", "url": format!("Observation/s{p}o{o}")}}));
        }
    }
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let (status, body) = served::send_json(
        &client,
        reqwest::Method::POST,
        &first.url("/fhir"),
        &operator,
        &bundle,
        "application/fhir+json",
    )
    .await;
    assert_eq!(status, 200, "{body}");
    for p in 0..6 {
        let consent = json!({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/s{p}")},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                           "reference": {"reference": "Group/study1"}}],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HRESCH"}]},
        });
        let (status, body) = served::send_json(
            &client,
            reqwest::Method::POST,
            &first.url("/fhir/Consent"),
            &operator,
            &consent,
            "application/fhir+json",
        )
        .await;
        assert_eq!(status, 201, "{body}");
    }
    let key = ClientKey::ed25519("r");
    let (status, registered) = served::send_json(&client, reqwest::Method::POST, &first.url("/api/v1/clients"), &operator,
        &json!({"name": "study", "organization": "uni", "role": "researcher", "jwks": key.jwks(), "acts_as": ["Group/study1"]}), "application/json").await;
    assert_eq!(status, 201, "{registered}");
    let researcher = registered["id"].as_str().unwrap().to_string();
    let claims = json!({"iss": researcher, "sub": researcher, "aud": format!("{PUBLIC_BASE}/oauth/token"),
        "exp": now() + 240, "jti": uuid::Uuid::now_v7().to_string()});
    let form = [
        ("grant_type", "client_credentials".to_string()),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer".to_string(),
        ),
        ("client_assertion", key.sign(&claims, Some("r"))),
        ("purpose_of_use", "HRESCH".to_string()),
        ("scope", "system/*.rs".to_string()),
    ];
    let (status, token) = decode(
        client
            .post(first.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 200, "{token}");
    let token = token["access_token"].as_str().unwrap().to_string();

    // Exports back to back until a few downloads were acknowledged, then SIGKILL.
    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    let runner = {
        let (client, base, token, acknowledged) = (
            client.clone(),
            first.base.clone(),
            token.clone(),
            acknowledged.clone(),
        );
        actix_web::rt::spawn(async move {
            for round in 0.. {
                let (ids, alive) = export_round(&client, &base, &token, round).await;
                acknowledged.lock().unwrap().extend(ids);
                if !alive {
                    break;
                }
            }
        })
    };
    served::until(
        "downloads before the kill",
        Duration::from_secs(60),
        || async { acknowledged.lock().unwrap().len() >= 4 },
    )
    .await;
    actix_web::rt::time::sleep(Duration::from_millis(30)).await;
    let mut first = first;
    first.kill();
    runner.await.unwrap();
    let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();

    let second = served::serve(dir.path(), &url, "export-2", &[]).await;
    // A new export after the restart runs to the end.
    let (ids, alive) = export_round(&client, &second.base, &token, 9999).await;
    assert!(alive && !ids.is_empty(), "exports work after the restart");
    let (code, out) = served::cli(dir.path(), &url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "the log verifies after the kill: {out}");
    assert_all_logged(&acknowledged, &logged_request_ids(dir.path(), &url));
    eprintln!(
        "exports ({backend:?}): {} downloads acknowledged before the kill, all logged",
        acknowledged.len()
    );
}

both_backends!(killed_during_exports);
