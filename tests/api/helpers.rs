//! Spawning the real gateway for a test: its own data directory, database and port, over
//! TLS with the generated development certificate, reached by a real HTTP client. The one set
//! of test helpers: recipient clients and their tokens ([`clients`]), requests as someone
//! other than the operator ([`requests`]), records, fixtures and consents ([`data`]).

mod clients;
mod data;
mod requests;

pub use clients::*;
pub use data::*;
pub use requests::*;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use actix_web::dev::ServerHandle;
use consentgate::cli::person_token;
use consentgate::config::Settings;
use consentgate::startup::Application;
use diesel::{Connection, PgConnection, RunQueryDsl};
use serde_json::Value;

/// Which storage engine a test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Environment variable naming a PostgreSQL server the tests may create databases on.
pub const PG_ENV: &str = "CONSENTGATE_TEST_POSTGRES_URL";

/// A fresh PostgreSQL database, dropped when the test ends.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    pub url: String,
}

impl PgDatabase {
    /// Creates a database on the server named by [`PG_ENV`]; `None` (after one loud line)
    /// when no server is configured, except under CI, where that is a failure.
    pub fn create() -> Option<PgDatabase> {
        let Ok(admin_url) = std::env::var(PG_ENV) else {
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{PG_ENV} is not set under CI: the PostgreSQL suite must run");
            }
            eprintln!(
                "!!!!! POSTGRESQL SUITE SKIPPED: set {PG_ENV}=postgres://USER@HOST:PORT/postgres to run it !!!!!"
            );
            return None;
        };
        let name = format!("cg_test_{}", uuid::Uuid::now_v7().simple());
        let mut admin = PgConnection::establish(&admin_url)
            .unwrap_or_else(|e| panic!("{PG_ENV} is set but the server does not answer: {e}"));
        diesel::sql_query(format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .expect("create test database");
        let (base, _) = admin_url
            .rsplit_once('/')
            .expect("the admin URL names a database");
        Some(PgDatabase {
            url: format!("{base}/{name}"),
            admin_url,
            name,
        })
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut admin) = PgConnection::establish(&self.admin_url) {
            let _ = diesel::sql_query(format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ))
            .execute(&mut admin);
        }
    }
}

/// A running gateway and a client for it.
pub struct TestApp {
    pub base: String,
    pub client: reqwest::Client,
    pub operator_token: String,
    pub settings: Settings,
    handle: ServerHandle,
    pub dir: tempfile::TempDir,
    _pg: Option<PgDatabase>,
}

/// Settings for a test: defaults, a temporary data directory, port 0, the chosen database,
/// and any extra `CONSENTGATE__...` overrides.
pub fn test_settings(dir: &Path, database_url: &str, extra: &[(&str, &str)]) -> Settings {
    let mut env = vec![
        (
            "CONSENTGATE__DATA_DIR".to_string(),
            dir.display().to_string(),
        ),
        ("CONSENTGATE__SERVER__PORT".into(), "0".into()),
        ("CONSENTGATE__SERVER__WORKERS".into(), "2".into()),
        (
            "CONSENTGATE__SERVER__SHUTDOWN_TIMEOUT_SECS".into(),
            "1".into(),
        ),
        (
            "CONSENTGATE__DATABASE__URL".into(),
            database_url.to_string(),
        ),
        ("CONSENTGATE__DATABASE__POOL_SIZE".into(), "4".into()),
        ("CONSENTGATE__LOG__FILTER".into(), "warn".into()),
    ];
    env.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Settings::load_from(None, env).expect("test settings are valid")
}

/// The database URL for a backend, creating a PostgreSQL database when needed.
pub fn database_for(backend: Backend, dir: &Path) -> Option<(String, Option<PgDatabase>)> {
    match backend {
        Backend::Sqlite => Some((format!("sqlite://{}/consentgate.db", dir.display()), None)),
        Backend::Postgres => {
            let db = PgDatabase::create()?;
            Some((db.url.clone(), Some(db)))
        }
    }
}

/// Spawns the gateway on `backend`; `None` when PostgreSQL is not available outside CI.
pub async fn spawn_app(backend: Backend) -> Option<TestApp> {
    spawn_app_with(backend, &[]).await
}

/// As [`spawn_app`], with extra settings.
pub async fn spawn_app_with(backend: Backend, extra: &[(&str, &str)]) -> Option<TestApp> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let (url, pg) = database_for(backend, dir.path())?;
    Some(spawn_on(dir, url, pg, extra))
}

/// Spawns the gateway on an existing data directory and database.
pub fn spawn_on(
    dir: tempfile::TempDir,
    url: String,
    pg: Option<PgDatabase>,
    extra: &[(&str, &str)],
) -> TestApp {
    let settings = test_settings(dir.path(), &url, extra);
    let app = Application::build(settings.clone()).expect("application builds");
    let base = app.base_url().to_string();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let operator_token = person_token(
        &settings,
        &base,
        "test-operator",
        None,
        vec!["operator".into()],
        7200,
    )
    .expect("operator token");
    TestApp {
        client: client_trusting(&dir.path().join("tls/dev-cert.pem")),
        base,
        operator_token,
        settings,
        handle,
        dir,
        _pg: pg,
    }
}

/// A reqwest client (rustls, ring) that trusts exactly this certificate.
pub fn client_trusting(cert: &Path) -> reqwest::Client {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(cert).expect("read cert") {
        roots.add(c.expect("parse cert")).expect("add root");
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("protocol versions")
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .build()
        .expect("client builds")
}

impl TestApp {
    /// A development token for a patient of this gateway.
    pub fn patient_token(&self, patient_id: &str) -> String {
        person_token(
            &self.settings,
            &self.base,
            &format!("patient-{patient_id}"),
            Some(format!("Patient/{patient_id}")),
            vec![],
            7200,
        )
        .expect("patient token")
    }

    /// The full URL of a path on this gateway.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// An operator request with a FHIR JSON body.
    pub async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        self.send_as(&self.operator_token, method, path, body).await
    }

    /// An operator request with a plain JSON body (management API).
    pub async fn post_json(&self, path: &str, body: &Value) -> (u16, Value) {
        call(
            self,
            &self.operator_token,
            reqwest::Method::POST,
            path,
            Some(body),
        )
        .await
    }

    /// The Prometheus text of `/metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// An operator's GET.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.send(reqwest::Method::GET, path, None).await
    }

    /// An operator's POST of a FHIR resource.
    pub async fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// An operator's PUT of a FHIR resource.
    pub async fn put(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send(reqwest::Method::PUT, path, Some(body)).await
    }

    /// Follows `next` links from a search (as the operator) and gathers every entry's resource.
    pub async fn search_all(&self, path: &str) -> Vec<Value> {
        resources_of(&self.search_pages_as(&self.operator_token, path).await)
    }

    pub fn stop(&self) {
        // Dropping the future is enough for the test; stop without waiting for the drain.
        drop(self.handle.stop(false));
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The status and body of an answer: JSON, `Null` when empty, a JSON string when not JSON.
pub async fn decode(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await.expect("body");
    (status, json_or_text(&bytes))
}

/// A body as JSON, `Null` when empty, or its text as a JSON string.
pub fn json_or_text(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(bytes).into_owned()))
    }
}

/// The repository's fixtures folder (`tests/fixtures/`, origins and licences in its README).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

/// A fixture parsed as JSON (byte-order mark tolerated).
pub fn fixture(rel: &str) -> Value {
    let bytes = std::fs::read(fixtures().join(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"));
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes);
    serde_json::from_slice(bytes).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

/// The Synthea fixture files, organisations and practitioners first.
pub fn synthea_files() -> Vec<PathBuf> {
    let dir = fixtures().join("synthea");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("synthea fixtures")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort_by_key(|p| {
        let name = p.file_name().unwrap().to_string_lossy().into_owned();
        let rank = if name.starts_with("hospital") {
            0
        } else if name.starts_with("practitioner") {
            1
        } else {
            2
        };
        (rank, name)
    });
    assert_eq!(
        files.len(),
        6,
        "four patients and two directory Bundles in {dir:?}"
    );
    files
}

/// Runs each test body on SQLite and on PostgreSQL.
#[macro_export]
macro_rules! both_backends {
    ($($name:ident),* $(,)?) => {$(
        mod $name {
            use $crate::helpers::Backend;
            #[actix_web::test]
            async fn sqlite() {
                super::$name(Backend::Sqlite).await
            }
            #[actix_web::test]
            async fn postgres() {
                super::$name(Backend::Postgres).await
            }
        }
    )*};
}
