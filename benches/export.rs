//! End-to-end research export: the demo population, every patient consenting to one study,
//! exported by a researcher through the real server, from the kick-off to the manifest, then
//! every file downloaded. Reports de-identified, leak-scanned resources per second and the
//! peak resident memory of the export (the process's high-water mark is reset after the data
//! is loaded, so loading does not count).
//!
//! ```text
//! cargo bench --bench export                       # 1,000 patients
//! cargo bench --bench export -- --patients 5000
//! cargo test --bench export                        # a smoke run with 5 patients
//! ```
//!
//! The population is generated once per size into `target/bench-export/p{N}/` (the demo
//! generator, seed 2026, one research Consent per patient added to its transaction; the load
//! time is reported too) and copied to a temporary data directory for each run, so every run
//! starts from the same database. Figures and profiles are in `docs/PERFORMANCE.md`.

use std::path::Path;
use std::time::{Duration, Instant};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentgate::config::Settings;
use consentgate::demo::{self, DemoOptions};
use consentgate::institution::Institution;
use consentgate::records::bundle;
use consentgate::startup::Application;
use consentgate::store::Store;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

const STUDY: &str = "bench-study";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

fn main() {
    // reqwest is built without a default TLS provider; the gateway uses ring.
    let _ = rustls::crypto::ring::default_provider().install_default();
    // `cargo bench` passes --bench; `cargo test --all-targets` runs this binary without it, as
    // a smoke test that keeps the bench working: a small population then.
    let benching = std::env::args().any(|a| a == "--bench");
    let mut patients = if benching { 1000usize } else { 5 };
    let mut args = std::env::args().skip(1);
    // Anything but --patients is ignored.
    while let Some(arg) = args.next() {
        if arg == "--patients" {
            patients = args
                .next()
                .and_then(|n| n.parse().ok())
                .expect("--patients N");
        }
    }
    let cache = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("target/bench-export")
        .join(format!("p{patients}"));
    if !cache.join("ready").exists() {
        prepare(&cache, patients);
    }
    let run = tempfile::tempdir().expect("temporary directory");
    // The write-ahead log too: right after `prepare`, in this same process, the gateway's
    // threads still hold connections, so the log has not been folded into the database yet
    // (without it the copy is a torn database, and the export failed on it).
    for name in ["consentgate.db", "consentgate.db-wal", "keys"] {
        copy_all(&cache.join(name), &run.path().join(name));
    }
    actix_web::rt::System::new().block_on(export(run.path(), patients));
}

fn settings(dir: &Path) -> Settings {
    let env = [
        ("CONSENTGATE__DATA_DIR", dir.display().to_string()),
        (
            "CONSENTGATE__DATABASE__URL",
            format!("sqlite://{}/consentgate.db", dir.display()),
        ),
        ("CONSENTGATE__SERVER__PORT", "0".into()),
        ("CONSENTGATE__SERVER__PLAIN_HTTP", "true".into()),
        ("CONSENTGATE__SERVER__WORKERS", "2".into()),
        ("CONSENTGATE__LOG__FILTER", "warn".into()),
    ];
    Settings::load_from(None, env.into_iter().map(|(k, v)| (k.to_string(), v)))
        .expect("bench settings")
}

/// Loads the demo population with one research consent per patient.
fn prepare(dir: &Path, patients: usize) {
    let _ = std::fs::remove_dir_all(dir);
    std::fs::create_dir_all(dir).expect("cache directory");
    let settings = settings(dir);
    let store = Store::open(&settings).expect("store");
    store.migrate().expect("migrations");
    let institution = Institution::load(&settings).expect("policies");
    let opts = DemoOptions {
        patients,
        ..DemoOptions::default()
    };
    let mut conn = store.conn().expect("connection");
    let started = Instant::now();
    let mut stored = 0usize;
    let bundles = std::iter::once(demo::directory_bundle(&opts))
        .chain(demo::patient_bundles(&opts).map(with_research_consent));
    for b in bundles {
        let response = bundle::process(&mut conn, b, &settings.limits, &institution.labeller)
            .expect("demo bundle stored");
        stored += response["entry"].as_array().map_or(0, Vec::len);
    }
    let took = started.elapsed();
    println!(
        "prepared {patients} patients: {stored} resources stored in {:.1} s ({:.0} resources/s, load {})",
        took.as_secs_f64(),
        stored as f64 / took.as_secs_f64(),
        load_average()
    );
    drop(conn);
    // The gateway's keys are made on first start; make them now so every run shares them.
    drop(Application::build(settings).expect("keys"));
    std::fs::write(dir.join("ready"), b"").expect("marker");
}

/// A patient's transaction Bundle with a Consent permitting the study, for research.
fn with_research_consent(mut bundle: Value) -> Value {
    let entries = bundle["entry"].as_array_mut().expect("entries");
    let patient = entries
        .iter()
        .find(|e| e["resource"]["resourceType"] == "Patient")
        .and_then(|e| e["fullUrl"].as_str())
        .expect("a Patient entry")
        .to_string();
    entries.push(json!({
        "fullUrl": format!("urn:uuid:{}", uuid::Uuid::now_v7()),
        "request": {"method": "POST", "url": "Consent"},
        "resource": {
            "resourceType": "Consent",
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "research"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": patient},
            "dateTime": "2026-01-01",
            "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
            "provision": {
                "type": "permit",
                "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                           "reference": {"reference": format!("Group/{STUDY}")}}],
                "purpose": [{"system": ACT_REASON, "code": "HRESCH"}]
            }
        }
    }));
    bundle
}

fn copy_all(from: &Path, to: &Path) {
    if from.is_dir() {
        std::fs::create_dir_all(to).expect("directory");
        for entry in std::fs::read_dir(from).expect("read directory") {
            let entry = entry.expect("entry");
            copy_all(&entry.path(), &to.join(entry.file_name()));
        }
    } else if from.exists() {
        std::fs::copy(from, to).expect("copy");
    }
}

async fn export(dir: &Path, patients: usize) {
    let settings = settings(dir);
    // Warnings and errors (a failed job's cause) reach stderr.
    let _log = consentgate::telemetry::init(&settings.log);
    let app = Application::build(settings.clone()).expect("application");
    let base = app.base_url().to_string();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let client = reqwest::Client::new();
    let operator = consentgate::cli::person_token(
        &settings,
        &base,
        "bench-operator",
        None,
        vec!["operator".into()],
        3600,
    )
    .expect("operator token");

    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).expect("key");
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).expect("key");
    let jwk = json!({"kty": "OKP", "crv": "Ed25519", "kid": "k",
                     "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())});
    let registered: Value = client
        .post(format!("{base}/api/v1/clients"))
        .bearer_auth(&operator)
        .json(
            &json!({"name": "bench", "organization": "bench", "role": "researcher",
                      "jwks": {"keys": [jwk]}, "acts_as": [format!("Group/{STUDY}")]}),
        )
        .send()
        .await
        .expect("registration")
        .json()
        .await
        .expect("registration body");
    let client_id = registered["id"].as_str().expect("client id").to_string();
    let token = access_token(&client, &base, &client_id, &pair).await;

    // What the export itself holds, not what loading the server or the data held.
    std::fs::write("/proc/self/clear_refs", "5").expect("reset the peak RSS");
    let rss_before = status_kib("VmRSS");
    let load_before = load_average();
    let started = Instant::now();
    let kicked = client
        .get(format!("{base}/fhir/Group/{STUDY}/$export"))
        .bearer_auth(&token)
        .header("prefer", "respond-async")
        .header("accept", "application/fhir+json")
        .send()
        .await
        .expect("kick-off");
    assert_eq!(kicked.status().as_u16(), 202, "kick-off");
    let status_url = kicked.headers()["content-location"]
        .to_str()
        .expect("status URL")
        .to_string();
    let manifest = loop {
        let answer = client
            .get(&status_url)
            .bearer_auth(&token)
            .send()
            .await
            .expect("status");
        match answer.status().as_u16() {
            202 => actix_web::rt::time::sleep(Duration::from_millis(50)).await,
            200 => break answer.json::<Value>().await.expect("manifest"),
            other => panic!(
                "export failed: {other} {}",
                answer.text().await.unwrap_or_default()
            ),
        }
    };
    let exported = started.elapsed();
    let count = |list: &Value| -> u64 {
        list.as_array()
            .into_iter()
            .flatten()
            .filter_map(|f| f["count"].as_u64())
            .sum()
    };
    let resources = count(&manifest["output"]);
    let withheld = count(&manifest["error"]);
    let peak_export = status_kib("VmHWM");
    let download_started = Instant::now();
    let mut bytes = 0usize;
    for file in manifest["output"].as_array().into_iter().flatten() {
        let body = client
            .get(file["url"].as_str().expect("file URL"))
            .bearer_auth(&token)
            .header("accept", "application/fhir+ndjson")
            .send()
            .await
            .expect("download")
            .bytes()
            .await
            .expect("file body");
        bytes += body.len();
    }
    let downloaded = download_started.elapsed();
    println!(
        "export of {patients} patients: {resources} resources ({withheld} withheld) in {:.2} s = {:.0} resources/s",
        exported.as_secs_f64(),
        resources as f64 / exported.as_secs_f64()
    );
    println!(
        "peak RSS during the export {:.0} MiB (RSS before it {:.0} MiB); download of {:.0} MiB in {:.2} s",
        peak_export as f64 / 1024.0,
        rss_before as f64 / 1024.0,
        bytes as f64 / (1024.0 * 1024.0),
        downloaded.as_secs_f64()
    );
    println!(
        "load average before {load_before}, after {}",
        load_average()
    );
    drop(handle.stop(false));
}

/// A SMART Backend Services token: the four fields, an Ed25519-signed assertion.
async fn access_token(
    client: &reqwest::Client,
    base: &str,
    client_id: &str,
    pair: &Ed25519KeyPair,
) -> String {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let header =
        URL_SAFE_NO_PAD.encode(json!({"alg": "EdDSA", "typ": "JWT", "kid": "k"}).to_string());
    let claims = URL_SAFE_NO_PAD.encode(
        json!({"iss": client_id, "sub": client_id, "aud": format!("{base}/oauth/token"),
               "exp": now + 240, "iat": now, "jti": uuid::Uuid::now_v7().to_string()})
        .to_string(),
    );
    let signature = URL_SAFE_NO_PAD.encode(pair.sign(format!("{header}.{claims}").as_bytes()));
    let assertion = format!("{header}.{claims}.{signature}");
    let answer: Value = client
        .post(format!("{base}/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            ("purpose_of_use", "HRESCH"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .expect("token request")
        .json()
        .await
        .expect("token body");
    answer["access_token"]
        .as_str()
        .unwrap_or_else(|| panic!("no token: {answer}"))
        .to_string()
}

/// A `/proc/self/status` figure in KiB.
fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        .unwrap_or(0)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}
