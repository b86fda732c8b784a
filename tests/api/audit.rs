//! The audit log from the outside: proofs checked by an independent RFC 9162 verifier and
//! an independent signed-note check, tampering found by the real `consentgate audit verify`,
//! acknowledged entries surviving a SIGKILL of the real binary, the patient's access log
//! (JSON and CSV) and the FHIR AuditEvent view. Each case runs on SQLite and PostgreSQL.

use std::collections::BTreeSet;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use consentgate::audit::log::AuditLog;
use consentgate::audit::{AuditAction, AuditEntry, AuditOutcome};
use consentgate::cli::person_token;
use consentgate::store::Store;
use diesel::RunQueryDsl;
use reqwest::Method;
use ring::digest::{SHA256, digest};
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, assertion_claims, call_full, client_token, database_for, decode,
    entry, get_as, post_transaction, register, request, request_token, spawn_app, spawn_on,
    test_settings,
};

type Hash = [u8; 32];

// ---------------------------------------------------------------------------------------
// An independent verifier: RFC 9162 section 2.1 and the C2SP signed note, from the RFCs,
// sharing no code with the crate.

fn sha256(parts: &[&[u8]]) -> Hash {
    let joined: Vec<u8> = parts.concat();
    digest(&SHA256, &joined).as_ref().try_into().unwrap()
}

fn leaf(bytes: &[u8]) -> Hash {
    sha256(&[&[0x00], bytes])
}

fn interior(left: &Hash, right: &Hash) -> Hash {
    sha256(&[&[0x01], left, right])
}

/// RFC 9162 section 2.1.3.2.
fn rfc9162_inclusion(index: u64, size: u64, leaf_hash: Hash, path: &[Hash], root: &Hash) -> bool {
    if index >= size {
        return false;
    }
    let (mut f, mut s) = (index, size - 1);
    let mut r = leaf_hash;
    for p in path {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            r = interior(p, &r);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            r = interior(&r, p);
        }
        f >>= 1;
        s >>= 1;
    }
    s == 0 && &r == root
}

/// RFC 9162 section 2.1.4.2.
pub(crate) fn rfc9162_consistency(
    first: u64,
    second: u64,
    first_root: &Hash,
    second_root: &Hash,
    path: &[Hash],
) -> bool {
    if first == second {
        return path.is_empty() && first_root == second_root;
    }
    if first == 0 || first > second || path.is_empty() {
        return false;
    }
    let mut path = path.to_vec();
    if first.is_power_of_two() {
        path.insert(0, *first_root);
    }
    let (mut f, mut s) = (first - 1, second - 1);
    while f & 1 == 1 {
        f >>= 1;
        s >>= 1;
    }
    let (mut fr, mut sr) = (path[0], path[0]);
    for c in &path[1..] {
        if s == 0 {
            return false;
        }
        if f & 1 == 1 || f == s {
            fr = interior(c, &fr);
            sr = interior(c, &sr);
            if f & 1 == 0 {
                while f & 1 == 0 && f != 0 {
                    f >>= 1;
                    s >>= 1;
                }
            }
        } else {
            sr = interior(&sr, c);
        }
        f >>= 1;
        s >>= 1;
    }
    &fr == first_root && &sr == second_root && s == 0
}

/// A checkpoint whose Ed25519 signature by `vkey` was checked.
#[derive(Debug)]
pub(crate) struct SignedCheckpoint {
    pub(crate) origin: String,
    pub(crate) size: u64,
    pub(crate) root: Hash,
}

/// Checks a C2SP signed note against a verifier key `name+hexid+base64(0x01||key)`.
pub(crate) fn open_checkpoint(note: &str, vkey: &str) -> SignedCheckpoint {
    let (name, rest) = vkey.trim().split_once('+').expect("vkey name");
    let (id_hex, key_b64) = rest.split_once('+').expect("vkey id");
    let key = STANDARD.decode(key_b64).expect("vkey base64");
    assert_eq!(key[0], 0x01, "an Ed25519 key");
    let public = &key[1..];
    assert_eq!(public.len(), 32);
    let key_id = &sha256(&[name.as_bytes(), b"\n", &[0x01], public])[..4];
    assert_eq!(
        hex(key_id),
        id_hex,
        "the key id is derived from name and key"
    );

    let split = note
        .find("\n\n")
        .expect("a blank line before the signatures");
    let body = &note[..=split];
    let mut verified = false;
    for line in note[split + 2..].lines() {
        let line = line.strip_prefix("\u{2014} ").expect("a signature line");
        let (signer, blob) = line.split_once(' ').unwrap();
        if signer != name {
            continue;
        }
        let blob = STANDARD.decode(blob).unwrap();
        assert_eq!(&blob[..4], key_id);
        UnparsedPublicKey::new(&ED25519, public)
            .verify(body.as_bytes(), &blob[4..])
            .expect("the checkpoint signature verifies");
        verified = true;
    }
    assert!(verified, "the note carries a signature by {name}");
    let lines: Vec<&str> = body.lines().collect();
    SignedCheckpoint {
        origin: lines[0].to_string(),
        size: lines[1].parse().unwrap(),
        root: STANDARD.decode(lines[2]).unwrap().try_into().unwrap(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn hashes(proof: &Value) -> Vec<Hash> {
    proof
        .as_array()
        .expect("a proof array")
        .iter()
        .map(|h| {
            STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect()
}

// ---------------------------------------------------------------------------------------
// Helpers.

async fn text(app: &TestApp, path: &str) -> String {
    let resp = app.client.get(app.url(path)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{path}");
    resp.text().await.unwrap()
}

/// Two patients with a few records each.
async fn seed_records(app: &TestApp) {
    let obs = |patient: &str| json!({"status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}});
    post_transaction(
        app,
        vec![
            entry("Patient", "alice", json!({})),
            entry("Patient", "bob", json!({})),
            entry("Observation", "a1", obs("alice")),
            entry("Observation", "a2", obs("alice")),
            entry("Observation", "b1", obs("bob")),
        ],
    )
    .await;
}

fn micros(rfc3339: &str) -> i64 {
    let t = time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339)
        .unwrap();
    (t.unix_timestamp_nanos() / 1000) as i64
}

/// An entry as a recipient's consent-checked access would write it.
fn recipient_entry(
    client_id: &str,
    patient: &str,
    action: AuditAction,
    recorded: &str,
) -> AuditEntry {
    AuditEntry {
        sequence: 0,
        recorded_micros: micros(recorded),
        action,
        outcome: AuditOutcome::Success,
        client_id: client_id.into(),
        organisation: "clinician-org".into(),
        user: Some("Practitioner/dr-lee".into()),
        purpose_of_use: "TREAT".into(),
        patient_id: Some(patient.into()),
        resources: vec![],
        consents: vec!["consent-1".into()],
        policies: vec!["baseline-permit".into()],
        break_glass: None,
        request_id: format!("req-{}", uuid::Uuid::now_v7()),
        detail: Default::default(),
    }
}

fn disclosures(log: &Value) -> Vec<Value> {
    log["disclosures"].as_array().expect("disclosures").clone()
}

fn request_ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|d| d["request_id"].as_str().unwrap().to_string())
        .collect()
}

/// Runs the real `consentgate audit verify` on a data directory and database.
async fn run_verify(dir: &Path, url: &str) -> (i32, String) {
    let (dir, url) = (dir.to_path_buf(), url.to_string());
    actix_web::rt::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_consentgate"))
            .args(["audit", "verify"])
            .env("CONSENTGATE__DATA_DIR", &dir)
            .env("CONSENTGATE__DATABASE__URL", &url)
            .env("CONSENTGATE__LOG__FILTER", "warn")
            .output()
            .expect("consentgate runs");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.code().unwrap_or(-1), text)
    })
    .await
    .unwrap()
}

/// Statements on the test database through a connection of its own.
fn sql(app: &TestApp, statements: &[String]) {
    let store = Store::open(&app.settings).expect("store opens");
    let mut conn = store.conn().unwrap();
    for s in statements {
        diesel::sql_query(s.as_str())
            .execute(&mut *conn)
            .unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

// ---------------------------------------------------------------------------------------
// (a) Inclusion and consistency, checked independently.

async fn proofs_check_out_independently(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed_records(&app).await;
    let alice = app.patient_token("alice");
    // Operator and patient reads and searches, a token issued and one refused.
    assert_eq!(app.get("/fhir/Observation/a1").await.0, 200);
    assert_eq!(app.get("/fhir/Observation?patient=alice").await.0, 200);
    assert_eq!(get_as(&app, &alice, "/fhir/Patient/alice").await.0, 200);
    assert_eq!(get_as(&app, &alice, "/fhir/Observation").await.0, 200);
    let key = ClientKey::ed25519("k1");
    let client = register(&app, "clinician", key.jwks(), json!({})).await;
    client_token(&app, &key, &client, "TREAT").await;
    let stranger = ClientKey::ed25519("k1");
    let refused = stranger.sign(&assertion_claims(&app, &client), Some("k1"));
    assert_eq!(
        request_token(&app, &refused, &[("purpose_of_use", "TREAT")])
            .await
            .0,
        401
    );

    let (status, log) = get_as(&app, &alice, "/api/v1/patients/alice/access-log").await;
    assert_eq!(status, 200, "{log}");
    let list = disclosures(&log);
    assert_eq!(
        list.len(),
        2,
        "the operator's read and search, not alice's own: {log}"
    );
    assert!(list.iter().all(|d| d["recipient"]["kind"] == "operator"));
    let vkey = text(&app, "/api/v1/audit/verifier-key").await;
    let first = open_checkpoint(log["checkpoint"]["note"].as_str().unwrap(), &vkey);
    assert_eq!(json!(first.size), log["checkpoint"]["size"]);
    assert!(first.origin.ends_with("/audit"));

    for d in &list {
        let inclusion = &d["inclusion"];
        let bytes = inclusion["entry"].as_str().unwrap().as_bytes();
        let leaf_hash = leaf(bytes);
        assert_eq!(inclusion["leaf_hash"], STANDARD.encode(leaf_hash));
        let entry: Value = serde_json::from_slice(bytes).unwrap();
        assert_eq!(entry["sequence"], inclusion["leaf_index"]);
        assert_eq!(entry["patient_id"], "alice");
        let index = inclusion["leaf_index"].as_u64().unwrap();
        let (status, proof) = get_as(&app, &alice, inclusion["proof_url"].as_str().unwrap()).await;
        assert_eq!(status, 200, "{proof}");
        assert_eq!(proof["tree_size"], json!(first.size));
        let path = hashes(&proof["proof"]);
        assert!(rfc9162_inclusion(
            index,
            first.size,
            leaf_hash,
            &path,
            &first.root
        ));
        assert!(
            !rfc9162_inclusion(index, first.size, leaf(b"forged"), &path, &first.root),
            "the verifier refuses another leaf"
        );
    }

    // More requests, a later checkpoint, and consistency between the two.
    for _ in 0..5 {
        assert_eq!(app.get("/fhir/Observation/a2").await.0, 200);
    }
    let later = open_checkpoint(&text(&app, "/api/v1/audit/checkpoint").await, &vkey);
    assert!(later.size >= first.size + 5);
    let (status, proof) = app
        .get(&format!(
            "/api/v1/audit/proofs/consistency?from={}&to={}",
            first.size, later.size
        ))
        .await;
    assert_eq!(status, 200, "{proof}");
    let path = hashes(&proof["proof"]);
    assert!(rfc9162_consistency(
        first.size,
        later.size,
        &first.root,
        &later.root,
        &path
    ));
    assert!(!rfc9162_consistency(
        first.size,
        later.size,
        &leaf(b"x"),
        &later.root,
        &path
    ));
    // The earlier entry is in the later tree too.
    let index = list[0]["inclusion"]["leaf_index"].as_u64().unwrap();
    let bytes = list[0]["inclusion"]["entry"].as_str().unwrap().as_bytes();
    let (_, proof) = app
        .get(&format!(
            "/api/v1/audit/proofs/inclusion?index={index}&tree_size={}",
            later.size
        ))
        .await;
    assert!(rfc9162_inclusion(
        index,
        later.size,
        leaf(bytes),
        &hashes(&proof["proof"]),
        &later.root
    ));
}

// ---------------------------------------------------------------------------------------
// (b) Tampering, found by the real binary.

async fn verify_finds_tampering(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let app = spawn_on(dir, url.clone(), pg, &[]);
    seed_records(&app).await;
    for _ in 0..12 {
        assert_eq!(app.get("/fhir/Observation/a1").await.0, 200);
    }
    assert_eq!(app.get("/api/v1/audit/checkpoint").await.0, 200);
    let dir = app.dir.path().to_path_buf();
    let (code, out) = run_verify(&dir, &url).await;
    assert_eq!(code, 0, "an untouched log verifies: {out}");
    assert!(out.contains("audit log verified: "), "{out}");

    let fails_at = |seq: u64, code: &'static str| {
        let (dir, url) = (dir.clone(), url.clone());
        async move {
            let (status, out) = run_verify(&dir, &url).await;
            assert_eq!(status, 1, "{out}");
            assert!(
                out.contains(&format!("at sequence {seq}: ")),
                "names sequence {seq}: {out}"
            );
            assert!(out.contains(code), "says {code}: {out}");
        }
    };

    // A changed body.
    sql(&app, &[
        "UPDATE audit_entries SET body = REPLACE(body, '\"request_id\":\"', '\"request_id\":\"x') WHERE seq = 4".into(),
    ]);
    fails_at(4, "tampered_bytes").await;
    sql(&app, &[
        "UPDATE audit_entries SET body = REPLACE(body, '\"request_id\":\"x', '\"request_id\":\"') WHERE seq = 4".into(),
    ]);
    assert_eq!(run_verify(&dir, &url).await.0, 0, "restored");

    // A deleted entry.
    sql(
        &app,
        &[
            "CREATE TABLE saved_entries AS SELECT * FROM audit_entries WHERE seq = 5".into(),
            "DELETE FROM audit_entries WHERE seq = 5".into(),
        ],
    );
    fails_at(5, "missing_entry").await;
    sql(
        &app,
        &[
            "INSERT INTO audit_entries SELECT * FROM saved_entries".into(),
            "DROP TABLE saved_entries".into(),
        ],
    );
    assert_eq!(run_verify(&dir, &url).await.0, 0, "restored");

    // Two entries' bodies swapped.
    sql(&app, &[
        "CREATE TABLE swapped AS SELECT seq, body FROM audit_entries WHERE seq IN (3, 7)".into(),
        "UPDATE audit_entries SET body = (SELECT body FROM swapped WHERE swapped.seq = 7) WHERE seq = 3".into(),
        "UPDATE audit_entries SET body = (SELECT body FROM swapped WHERE swapped.seq = 3) WHERE seq = 7".into(),
    ]);
    fails_at(3, "reordered_entries").await;
    sql(&app, &[
        "UPDATE audit_entries SET body = (SELECT body FROM swapped WHERE swapped.seq = audit_entries.seq) WHERE seq IN (3, 7)".into(),
        "DROP TABLE swapped".into(),
    ]);
    let (code, out) = run_verify(&dir, &url).await;
    assert_eq!(code, 0, "restored: {out}");
}

// ---------------------------------------------------------------------------------------
// (c) Acknowledged entries survive SIGKILL.

/// A `consentgate serve` child, killed (SIGKILL) when dropped.
struct Served {
    child: Child,
    base: String,
    log: std::path::PathBuf,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client for plain HTTP on loopback (reqwest still wants a TLS provider configured).
fn plain_http_client() -> reqwest::Client {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .unwrap()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn plain_env(port: u16) -> Vec<(&'static str, String)> {
    vec![
        ("CONSENTGATE__SERVER__PLAIN_HTTP", "true".into()),
        ("CONSENTGATE__SERVER__PORT", port.to_string()),
        ("CONSENTGATE__SERVER__WORKERS", "2".into()),
        ("CONSENTGATE__SERVER__SHUTDOWN_TIMEOUT_SECS", "1".into()),
        ("CONSENTGATE__DATABASE__POOL_SIZE", "4".into()),
        ("CONSENTGATE__LOG__FILTER", "warn".into()),
    ]
}

async fn serve(dir: &Path, url: &str, client: &reqwest::Client, run: usize) -> Served {
    let port = free_port();
    let log = dir.join(format!("serve-{run}.log"));
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentgate"));
    cmd.arg("serve")
        .env("CONSENTGATE__DATA_DIR", dir)
        .env("CONSENTGATE__DATABASE__URL", url)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    for (k, v) in plain_env(port) {
        cmd.env(k, v);
    }
    let served = Served {
        child: cmd.spawn().expect("consentgate serve starts"),
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    let started = Instant::now();
    loop {
        if let Ok(resp) = client.get(format!("{}/healthz", served.base)).send().await
            && resp.status().is_success()
        {
            return served;
        }
        if started.elapsed() > Duration::from_secs(60) {
            panic!(
                "consentgate serve did not come up: {}",
                std::fs::read_to_string(&served.log).unwrap_or_default()
            );
        }
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// An operator token from the served gateway's key, with its base URL as issuer.
fn operator_token_for(dir: &Path, url: &str, served: &Served) -> String {
    let settings = test_settings(dir, url, &[]);
    // The gateway names itself `localhost` on a loopback address, and issues as such.
    let issuer = served.base.replace("127.0.0.1", "localhost");
    person_token(
        &settings,
        &issuer,
        "crash-operator",
        None,
        vec!["operator".into()],
        600,
    )
    .expect("operator token")
}

async fn read_with_id(client: &reqwest::Client, base: &str, token: &str, id: &str) -> bool {
    let sent = client
        .get(format!("{base}/fhir/Patient/crash"))
        .bearer_auth(token)
        .header("x-request-id", id)
        .send()
        .await;
    match sent {
        Ok(resp) if resp.status().as_u16() == 200 => resp.bytes().await.is_ok(),
        _ => false,
    }
}

async fn acknowledged_entries_survive_sigkill(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let client = plain_http_client();
    let first = serve(dir.path(), &url, &client, 1).await;
    let token = operator_token_for(dir.path(), &url, &first);
    let resp = client
        .put(format!("{}/fhir/Patient/crash", first.base))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Patient", "id": "crash"}).to_string())
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success(), "{}", resp.status());

    let acknowledged = Arc::new(Mutex::new(Vec::new()));
    for i in 0..30 {
        let id = format!("crash-seq-{i}");
        assert!(read_with_id(&client, &first.base, &token, &id).await);
        acknowledged.lock().unwrap().push(id);
    }
    // Readers in flight when the process dies: only what was acknowledged must survive.
    let mut tasks = Vec::new();
    for t in 0..8 {
        let (client, base, token) = (client.clone(), first.base.clone(), token.clone());
        let acknowledged = acknowledged.clone();
        tasks.push(actix_web::rt::spawn(async move {
            for i in 0.. {
                let id = format!("crash-burst-{t}-{i}");
                if !read_with_id(&client, &base, &token, &id).await {
                    break;
                }
                acknowledged.lock().unwrap().push(id);
            }
        }));
    }
    let started = Instant::now();
    while acknowledged.lock().unwrap().len() < 80 && started.elapsed() < Duration::from_secs(30) {
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    }
    drop(first); // SIGKILL, mid-burst.
    for t in tasks {
        t.await.unwrap();
    }
    let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().iter().cloned().collect();
    assert!(
        acknowledged.len() >= 80,
        "{} acknowledged",
        acknowledged.len()
    );

    let second = serve(dir.path(), &url, &client, 2).await;
    let token = operator_token_for(dir.path(), &url, &second);
    let (code, out) = run_verify(dir.path(), &url).await;
    assert_eq!(code, 0, "the log verifies after the kill: {out}");
    let mut logged = BTreeSet::new();
    let mut next = Some(format!(
        "{}/api/v1/patients/crash/access-log?_count=1000",
        second.base
    ));
    while let Some(url) = next.take() {
        let resp = client.get(&url).bearer_auth(&token).send().await.unwrap();
        let (status, log) = decode(resp).await;
        assert_eq!(status, 200, "{log}");
        logged.extend(request_ids(&disclosures(&log)));
        next = log["next"]
            .as_str()
            .map(|n| n.replace("localhost", "127.0.0.1"));
    }
    let lost: Vec<&String> = acknowledged.difference(&logged).collect();
    assert!(lost.is_empty(), "acknowledged but not in the log: {lost:?}");
}

// ---------------------------------------------------------------------------------------
// (d) The access log: contents, filters, paging, CSV, errors.

struct Seeded {
    clinician: String,
    researcher: String,
}

/// Recipient accesses written the way consent-checked reads write them (through the
/// log's own writer, on a second handle to the same database), plus API reads.
async fn seed_disclosures(app: &TestApp) -> Seeded {
    seed_records(app).await;
    let clinician = register(app, "clinician", ClientKey::ed25519("c").jwks(), json!({})).await;
    let researcher = register(app, "researcher", ClientKey::ed25519("r").jwks(), json!({})).await;
    let log = AuditLog::start(Store::open(&app.settings).unwrap(), Duration::ZERO).unwrap();
    let mut read = recipient_entry(
        &clinician,
        "alice",
        AuditAction::Read,
        "2025-03-10T10:00:00Z",
    );
    read.resources = vec![
        "Observation/a1".into(),
        "Observation/a2".into(),
        "Condition/c1".into(),
    ];
    read.request_id = "req-clinician-read".into();
    let mut glass = recipient_entry(
        &clinician,
        "alice",
        AuditAction::Search,
        "2025-06-01T08:30:00Z",
    );
    glass.resources = vec!["Observation/a1".into()];
    glass.purpose_of_use = "ETREAT".into();
    glass.break_glass = Some("unconscious, \"critical\" in ER".into());
    glass.request_id = "req-break-glass".into();
    let mut denied = recipient_entry(
        &clinician,
        "alice",
        AuditAction::Read,
        "2025-06-02T00:00:00Z",
    );
    denied.outcome = AuditOutcome::Denied;
    denied.request_id = "req-denied".into();
    let mut other = recipient_entry(&clinician, "bob", AuditAction::Read, "2025-06-03T00:00:00Z");
    other.resources = vec!["Observation/b1".into()];
    other.request_id = "req-bob".into();
    let mut decision = recipient_entry(
        &clinician,
        "alice",
        AuditAction::Decision,
        "2025-06-04T00:00:00Z",
    );
    decision.request_id = "req-decision".into();
    let mut study = recipient_entry(
        &researcher,
        "alice",
        AuditAction::Export,
        "2025-09-01T12:00:00Z",
    );
    study.purpose_of_use = "HRESCH".into();
    study.organisation = "researcher-org".into();
    study.user = None;
    study.resources = vec!["Observation/a2".into()];
    study.request_id = "req-export".into();
    for e in [read, glass, denied, other, decision, study] {
        log.record(e).await.expect("recorded");
    }
    // Alice's own read (left out of her access log) and an operator's (listed).
    let alice = app.patient_token("alice");
    assert_eq!(get_as(app, &alice, "/fhir/Observation/a1").await.0, 200);
    let resp = request(
        app,
        &app.operator_token,
        Method::GET,
        "/fhir/Observation/a2",
    )
    .header("x-request-id", "req-operator")
    .send()
    .await
    .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    Seeded {
        clinician,
        researcher,
    }
}

/// A CSV cell as a spreadsheet cannot run it (OWASP's advice on CSV injection): a value that
/// would start a formula (`=`, `+`, `-`, `@`, TAB or CR) gets a leading `'`.
fn spreadsheet_safe(value: &str) -> String {
    if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_string()
    }
}

/// A small RFC 4180 reader, independent of the gateway's writer.
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut records = Vec::new();
    let (mut record, mut field) = (Vec::new(), String::new());
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match (quoted, c) {
            (true, '"') if chars.peek() == Some(&'"') => {
                chars.next();
                field.push('"');
            }
            (true, '"') => quoted = false,
            (true, c) => field.push(c),
            (false, '"') if field.is_empty() => quoted = true,
            (false, ',') => record.push(std::mem::take(&mut field)),
            (false, '\r') if chars.peek() == Some(&'\n') => {
                chars.next();
                record.push(std::mem::take(&mut field));
                records.push(std::mem::take(&mut record));
            }
            (false, c) => field.push(c),
        }
    }
    assert!(record.is_empty() && field.is_empty(), "records end in CRLF");
    records
}

async fn access_log_answers_the_accounting_questions(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let Seeded {
        clinician,
        researcher,
    } = seed_disclosures(&app).await;
    let alice = app.patient_token("alice");
    let (status, log) = get_as(&app, &alice, "/api/v1/patients/alice/access-log").await;
    assert_eq!(status, 200, "{log}");
    let list = disclosures(&log);
    assert_eq!(
        request_ids(&list),
        [
            "req-operator",
            "req-export",
            "req-break-glass",
            "req-clinician-read"
        ],
        "newest first; no own reads, refusals, other patients or decisions"
    );
    let read = &list[3];
    assert_eq!(read["date"], "2025-03-10T10:00:00.000000Z");
    assert_eq!(read["action"], "read");
    assert_eq!(
        read["recipient"],
        json!({"kind": "client", "client_id": clinician, "client_name": "clinician app",
               "organisation": "clinician org", "organisation_id": "clinician-org",
               "user": "Practitioner/dr-lee"})
    );
    assert_eq!(
        read["disclosed"]["resource_types"],
        json!({"Condition": 1, "Observation": 2})
    );
    assert_eq!(
        read["disclosed"]["resources"],
        json!(["Observation/a1", "Observation/a2", "Condition/c1"])
    );
    assert_eq!(read["purpose_of_use"], "TREAT");
    assert_eq!(read["consents"], json!(["consent-1"]));
    assert_eq!(
        (read["break_glass"].as_bool(), &read["justification"]),
        (Some(false), &Value::Null)
    );
    let glass = &list[2];
    assert_eq!(glass["break_glass"], true);
    assert_eq!(glass["justification"], "unconscious, \"critical\" in ER");
    assert_eq!(glass["purpose_of_use"], "ETREAT");
    assert_eq!(list[0]["recipient"]["kind"], "operator");
    assert_eq!(list[0]["disclosed"]["resources"], json!(["Observation/a2"]));
    let size = log["checkpoint"]["size"].as_i64().unwrap();
    for d in &list {
        let inclusion = &d["inclusion"];
        let bytes = inclusion["entry"].as_str().unwrap();
        assert_eq!(
            inclusion["leaf_hash"],
            STANDARD.encode(leaf(bytes.as_bytes()))
        );
        assert_eq!(inclusion["tree_size"], json!(size));
        let seq = inclusion["leaf_index"].as_i64().unwrap();
        assert!(seq < size);
        assert_eq!(
            inclusion["proof_url"],
            format!(
                "{}/api/v1/audit/proofs/inclusion?index={seq}&tree_size={size}",
                app.base
            )
        );
    }

    // Filters.
    let filtered = [
        (
            "since=2025-05&until=2025-12".to_string(),
            vec!["req-export", "req-break-glass"],
        ),
        (
            "until=2025-06-01".into(),
            vec!["req-break-glass", "req-clinician-read"],
        ),
        (
            "since=2025-06-01T08:30:01Z&until=2025".into(),
            vec!["req-export"],
        ),
        (
            format!("recipient={clinician}"),
            vec!["req-break-glass", "req-clinician-read"],
        ),
        (format!("recipient={researcher}"), vec!["req-export"]),
        ("recipient=operator".into(), vec!["req-operator"]),
        (
            format!("recipient={clinician}&since=2025-04"),
            vec!["req-break-glass"],
        ),
    ];
    for (query, want) in filtered {
        let path = format!("/api/v1/patients/alice/access-log?{query}");
        let (status, log) = get_as(&app, &alice, &path).await;
        assert_eq!(status, 200, "{query}: {log}");
        assert_eq!(request_ids(&disclosures(&log)), want, "{query}");
    }

    // Paging: a cursor and a next link, with nothing lost or repeated.
    let mut paged = Vec::new();
    let mut next = Some(app.url("/api/v1/patients/alice/access-log?_count=3"));
    let mut pages = 0;
    while let Some(url) = next.take() {
        let resp = request(&app, &alice, Method::GET, &url)
            .send()
            .await
            .unwrap();
        let link = resp
            .headers()
            .get("link")
            .map(|l| l.to_str().unwrap().to_string());
        let (status, log) = decode(resp).await;
        assert_eq!(status, 200, "{log}");
        paged.extend(request_ids(&disclosures(&log)));
        next = log["next"].as_str().map(str::to_string);
        assert_eq!(link, next.as_ref().map(|n| format!("<{n}>; rel=\"next\"")));
        pages += 1;
    }
    assert_eq!(pages, 2);
    assert_eq!(paged, request_ids(&list));

    // CSV, by parameter and by Accept header.
    let resp = request(
        &app,
        &alice,
        Method::GET,
        "/api/v1/patients/alice/access-log?format=csv",
    )
    .send()
    .await
    .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    let csv = resp.text().await.unwrap();
    let records = parse_csv(&csv);
    assert_eq!(
        records[0][..4],
        ["date", "action", "recipient_kind", "client_id"]
    );
    assert_eq!(records.len(), 1 + list.len());
    let column = |name: &str| records[0].iter().position(|h| h == name).unwrap();
    let glass_row = &records[3];
    assert_eq!(
        glass_row[column("justification")],
        "unconscious, \"critical\" in ER"
    );
    assert_eq!(glass_row[column("client_name")], "clinician app");
    assert_eq!(glass_row[column("break_glass")], "true");
    assert_eq!(records[2][column("resource_types")], "Observation:1");
    assert_eq!(
        records[4][column("resource_types")],
        "Condition:1 Observation:2"
    );
    // Cells are the JSON's values, made safe for spreadsheets (a base64 leaf hash may well
    // start with `+` or `-`).
    for (row, d) in records[1..].iter().zip(&list) {
        assert_eq!(
            row[column("entry")],
            spreadsheet_safe(d["inclusion"]["entry"].as_str().unwrap())
        );
        assert_eq!(
            row[column("leaf_hash")],
            spreadsheet_safe(d["inclusion"]["leaf_hash"].as_str().unwrap())
        );
        assert_eq!(
            row[column("checkpoint")],
            spreadsheet_safe(log["checkpoint"]["note"].as_str().unwrap())
        );
    }
    let resp = request(
        &app,
        &alice,
        Method::GET,
        "/api/v1/patients/alice/access-log",
    )
    .header("accept", "text/csv")
    .send()
    .await
    .unwrap();
    assert!(
        resp.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );

    // The operator may read anyone's; a patient only their own; errors are problem+json.
    let (status, bobs) = app.get("/api/v1/patients/bob/access-log").await;
    assert_eq!(status, 200);
    assert_eq!(request_ids(&disclosures(&bobs)), ["req-bob"]);
    let bob = app.patient_token("bob");
    for (token, path, want, code) in [
        (&bob, "/api/v1/patients/alice/access-log", 403, "forbidden"),
        (
            &alice,
            "/api/v1/patients/alice/access-log?since=yesterday",
            400,
            "invalid_date",
        ),
        (
            &alice,
            "/api/v1/patients/alice/access-log?before=x",
            400,
            "invalid_cursor",
        ),
        (
            &alice,
            "/api/v1/patients/alice/access-log?format=xml",
            400,
            "unsupported_format",
        ),
        (
            &alice,
            "/api/v1/patients/alice/access-log?who=me",
            400,
            "unknown_parameter",
        ),
        (
            &"not-a-token".to_string(),
            "/api/v1/patients/alice/access-log",
            401,
            "unauthorized",
        ),
    ] {
        let answer = call_full(&app, token, Method::GET, path, None).await;
        assert_eq!(answer.media, "application/problem+json", "{path}");
        assert_eq!(
            (answer.status, answer.body["code"].as_str()),
            (want, Some(code)),
            "{path}: {}",
            answer.body
        );
    }
    let key = ClientKey::ed25519("k");
    let client = register(&app, "clinician", key.jwks(), json!({})).await;
    let token = client_token(&app, &key, &client, "TREAT").await;
    assert_eq!(
        get_as(&app, &token, "/api/v1/patients/alice/access-log")
            .await
            .0,
        403
    );
}

// ---------------------------------------------------------------------------------------
// (e) The FHIR AuditEvent view.

fn events(bundle: &Value) -> Vec<Value> {
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "searchset");
    assert!(bundle.get("total").is_none(), "no total");
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

fn extension<'v>(event: &'v Value, name: &str) -> Option<&'v Value> {
    event["extension"]
        .as_array()?
        .iter()
        .find(|e| e["url"].as_str().is_some_and(|u| u.ends_with(name)))
}

fn request_id_of(event: &Value) -> String {
    extension(event, "/request-id").unwrap()["valueString"]
        .as_str()
        .unwrap()
        .to_string()
}

async fn audit_events_for_patients_and_operators(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let Seeded { clinician, .. } = seed_disclosures(&app).await;
    let alice = app.patient_token("alice");
    let (status, bundle) = get_as(&app, &alice, "/fhir/AuditEvent").await;
    assert_eq!(status, 200, "{bundle}");
    let mine = events(&bundle);
    let ids: Vec<String> = mine.iter().map(request_id_of).collect();
    for expected in [
        "req-operator",
        "req-export",
        "req-decision",
        "req-denied",
        "req-break-glass",
        "req-clinician-read",
    ] {
        assert!(ids.contains(&expected.to_string()), "{expected} in {ids:?}");
    }
    assert!(!ids.contains(&"req-bob".to_string()));
    assert!(
        mine.iter()
            .all(|e| e["entity"][0]["what"]["reference"] == "Patient/alice"),
        "alice sees only entries about her"
    );
    assert_eq!(mine.len(), 7, "six above and her own read: {ids:?}");

    // One event in detail.
    let read = mine
        .iter()
        .find(|e| request_id_of(e) == "req-clinician-read")
        .unwrap();
    assert_eq!(
        read["type"]["system"],
        "http://terminology.hl7.org/CodeSystem/audit-event-type"
    );
    assert_eq!(read["type"]["code"], "rest");
    assert!(
        read["subtype"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["code"] == "read")
    );
    assert_eq!(read["action"], "R");
    assert_eq!(read["recorded"], "2025-03-10T10:00:00.000000Z");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
    assert_eq!(
        read["purposeOfEvent"][0]["coding"][0]["system"],
        "http://terminology.hl7.org/CodeSystem/v3-ActReason"
    );
    let agent = &read["agent"][0];
    assert_eq!(agent["who"]["identifier"]["value"], json!(clinician));
    assert_eq!(agent["who"]["display"], "clinician app");
    assert_eq!(agent["requestor"], true);
    assert!(
        read["agent"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["who"]["display"] == "clinician org")
    );
    assert_eq!(read["source"]["type"][0]["code"], "4");
    let what: Vec<&str> = read["entity"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["what"]["reference"].as_str().unwrap())
        .collect();
    assert_eq!(
        what,
        [
            "Patient/alice",
            "Observation/a1",
            "Observation/a2",
            "Condition/c1",
            "Consent/consent-1"
        ]
    );
    let seq = &extension(read, "/audit-log-entry").unwrap()["valueIdentifier"]["value"];
    assert_eq!(seq, &read["id"]);
    let denied = mine
        .iter()
        .find(|e| request_id_of(e) == "req-denied")
        .unwrap();
    assert_eq!(denied["outcome"], "4");
    let glass = mine
        .iter()
        .find(|e| request_id_of(e) == "req-break-glass")
        .unwrap();
    let purposes: Vec<&str> = glass["purposeOfEvent"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert_eq!(purposes, ["ETREAT", "BTG"]);
    assert_eq!(
        extension(glass, "/break-glass-justification").unwrap()["valueString"],
        "unconscious, \"critical\" in ER"
    );

    // A patient asking about someone else finds nothing, by search or by read.
    let (_, theirs) = get_as(&app, &alice, "/fhir/AuditEvent?patient=bob").await;
    assert!(events(&theirs).is_empty());
    let (_, bobs) = app.get("/fhir/AuditEvent?patient=Patient/bob").await;
    let bobs = events(&bobs);
    assert_eq!(
        bobs.iter().map(request_id_of).collect::<Vec<_>>(),
        ["req-bob"]
    );
    let bob_event = bobs[0]["id"].as_str().unwrap();
    assert_eq!(
        get_as(&app, &alice, &format!("/fhir/AuditEvent/{bob_event}"))
            .await
            .0,
        404
    );
    let (status, one) = app.get(&format!("/fhir/AuditEvent/{bob_event}")).await;
    assert_eq!((status, request_id_of(&one)), (200, "req-bob".to_string()));

    // Operator searches by agent and date; paging with next links.
    let (_, by_agent) = app
        .get(&format!("/fhir/AuditEvent?agent={clinician}&patient=alice"))
        .await;
    assert_eq!(events(&by_agent).len(), 4);
    let (_, dated) = app
        .get("/fhir/AuditEvent?patient=alice&date=ge2025-05&date=lt2025-06-02")
        .await;
    assert_eq!(
        events(&dated).iter().map(request_id_of).collect::<Vec<_>>(),
        ["req-break-glass"]
    );
    let pages = app
        .search_pages_as(&alice, "/fhir/AuditEvent?patient=alice&_count=2")
        .await;
    assert!(pages.iter().all(|p| p["link"].is_array()), "{pages:?}");
    let paged: Vec<String> = pages
        .iter()
        .flat_map(|page| events(page).iter().map(request_id_of).collect::<Vec<_>>())
        .collect();
    assert_eq!(paged, ids);
    // A stored AuditEvent (a data source's, or an official example) keeps its own read; the
    // search shows the log only.
    let stored = json!({"resourceType": "AuditEvent", "id": "from-an-ehr",
        "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110100"},
        "recorded": "2025-01-01T00:00:00Z",
        "agent": [{"requestor": false, "who": {"display": "EHR"}}],
        "source": {"observer": {"display": "EHR"}}});
    let (status, body) = app.put("/fhir/AuditEvent/from-an-ehr", &stored).await;
    assert!((200..300).contains(&status), "{body}");
    let (status, body) = app.get("/fhir/AuditEvent/from-an-ehr").await;
    assert_eq!(
        (status, body["id"].as_str()),
        (200, Some("from-an-ehr")),
        "{body}"
    );
    let (_, all) = app.get("/fhir/AuditEvent?_count=1000").await;
    let logged = events(&all);
    let logged_ids: Vec<String> = logged.iter().map(request_id_of).collect();
    assert!(
        logged_ids.contains(&"req-clinician-read".to_string()),
        "the view lists the log: {logged_ids:?}"
    );
    assert!(logged.iter().all(|e| e["id"] != "from-an-ehr"));
    let (status, outcome) = app.get("/fhir/AuditEvent?date=sa2025").await;
    assert_eq!(
        (status, outcome["resourceType"].as_str()),
        (400, Some("OperationOutcome"))
    );
    let (status, _) = app.get("/fhir/AuditEvent?subtype=read").await;
    assert_eq!(status, 400);
}

both_backends!(
    proofs_check_out_independently,
    verify_finds_tampering,
    acknowledged_entries_survive_sigkill,
    access_log_answers_the_accounting_questions,
    audit_events_for_patients_and_operators
);
