//! Real `consentgate serve` processes for the tests that need a process of their own: several
//! instances on one database, SIGKILL, peak memory. Each serves plain HTTP on loopback (TLS
//! is covered by the in-process suites) and is killed with SIGKILL when dropped.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use consentgate::cli::person_token;
use serde_json::Value;

use crate::helpers::{decode, test_settings};

/// The public base URL every instance of a deployment shares (the load balancer's name):
/// tokens name it as issuer and audience, checkpoints as origin.
pub const PUBLIC_BASE: &str = "http://gateway.test";

/// A running `consentgate serve`.
pub struct Served {
    pub child: Child,
    /// Where this instance is reached (its own port).
    pub base: String,
    pub log: PathBuf,
}

impl Served {
    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Kills the process with SIGKILL and waits for it.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The process's log so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The process's log once `written` holds of it, or as it is after ten seconds: lines
    /// are written by a thread of their own (`telemetry`), shortly after they are logged,
    /// so a line logged before an answer can reach the file after the answer.
    pub async fn log_text_once(&self, written: impl Fn(&str) -> bool) -> String {
        let started = Instant::now();
        loop {
            let text = self.log_text();
            if written(&text) || started.elapsed() > Duration::from_secs(10) {
                return text;
            }
            actix_web::rt::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client for plain HTTP on loopback (reqwest still wants a TLS provider configured).
pub fn plain_client() -> reqwest::Client {
    plain_client_from(None)
}

/// As [`plain_client`], its connections made from `local` (e.g. 127.0.0.2).
pub fn plain_client_from(local: Option<std::net::IpAddr>) -> reqwest::Client {
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(rustls::RootCertStore::empty())
    .with_no_client_auth();
    reqwest::Client::builder()
        .tls_backend_preconfigured(config)
        .local_address(local)
        .timeout(Duration::from_secs(60))
        .build()
        .unwrap()
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The settings every served instance gets, before the test's own.
fn base_env(dir: &Path, url: &str, port: u16) -> BTreeMap<String, String> {
    [
        ("CONSENTGATE__DATA_DIR", dir.display().to_string()),
        ("CONSENTGATE__DATABASE__URL", url.to_string()),
        ("CONSENTGATE__SERVER__PLAIN_HTTP", "true".into()),
        ("CONSENTGATE__SERVER__PORT", port.to_string()),
        ("CONSENTGATE__SERVER__PUBLIC_BASE_URL", PUBLIC_BASE.into()),
        ("CONSENTGATE__SERVER__WORKERS", "2".into()),
        ("CONSENTGATE__SERVER__SHUTDOWN_TIMEOUT_SECS", "1".into()),
        ("CONSENTGATE__DATABASE__POOL_SIZE", "4".into()),
        ("CONSENTGATE__LOG__FILTER", "warn".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect()
}

/// Starts `consentgate serve` on `dir` and `url` with `extra` settings and waits until it
/// answers `/healthz`; `name` names its log file in `dir`.
pub async fn serve(dir: &Path, url: &str, name: &str, extra: &[(&str, &str)]) -> Served {
    serve_logging_to(dir, dir, url, name, extra).await
}

/// As [`serve`], with the log file in `log_dir`.
pub async fn serve_logging_to(
    dir: &Path,
    log_dir: &Path,
    url: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Served {
    let port = free_port();
    let log = log_dir.join(format!("serve-{name}.log"));
    let mut env = base_env(dir, url, port);
    for (k, v) in extra {
        env.insert(k.to_string(), v.to_string());
    }
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_consentgate"));
    cmd.arg("serve")
        .envs(&env)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap());
    let served = Served {
        child: cmd.spawn().expect("consentgate serve starts"),
        base: format!("http://127.0.0.1:{port}"),
        log,
    };
    let client = plain_client();
    let started = Instant::now();
    loop {
        if let Ok(resp) = client.get(served.url("/healthz")).send().await
            && resp.status().is_success()
        {
            return served;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "consentgate serve {name} did not come up: {}",
            served.log_text()
        );
        actix_web::rt::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A person's development token for the deployment at [`PUBLIC_BASE`].
pub fn person(
    dir: &Path,
    url: &str,
    subject: &str,
    patient: Option<&str>,
    roles: &[&str],
) -> String {
    let settings = test_settings(dir, url, &[]);
    person_token(
        &settings,
        PUBLIC_BASE,
        subject,
        patient.map(|p| format!("Patient/{p}")),
        roles.iter().map(|r| r.to_string()).collect(),
        600,
    )
    .expect("person token")
}

/// An operator token for the deployment.
pub fn operator(dir: &Path, url: &str) -> String {
    person(dir, url, "test-operator", None, &["operator"])
}

/// Runs a `consentgate` command on `dir` and `url`; returns its exit code and output.
pub async fn cli(dir: &Path, url: &str, args: &[&str], extra: &[(&str, &str)]) -> (i32, String) {
    let (dir, url) = (dir.to_path_buf(), url.to_string());
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let extra: Vec<(String, String)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    actix_web::rt::task::spawn_blocking(move || {
        let out = Command::new(env!("CARGO_BIN_EXE_consentgate"))
            .args(&args)
            .env("CONSENTGATE__DATA_DIR", &dir)
            .env("CONSENTGATE__DATABASE__URL", &url)
            .env("CONSENTGATE__SERVER__PUBLIC_BASE_URL", PUBLIC_BASE)
            .env("CONSENTGATE__LOG__FILTER", "warn")
            .envs(extra)
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

/// `GET` with a bearer token and a request id; status, body and the `Retry-After` header.
pub async fn get(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    request_id: &str,
) -> Result<(u16, Value, Option<String>), reqwest::Error> {
    let resp = client
        .get(url)
        .bearer_auth(token)
        .header("x-request-id", request_id)
        .send()
        .await?;
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let status = resp.status().as_u16();
    let bytes = resp.bytes().await?;
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Ok((status, body, retry_after))
}

/// A request with a JSON body as `token`; status and body.
pub async fn send_json(
    client: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    token: &str,
    body: &Value,
    content_type: &str,
) -> (u16, Value) {
    let resp = client
        .request(method, url)
        .bearer_auth(token)
        .header("content-type", content_type)
        .body(body.to_string())
        .send()
        .await
        .expect("answered");
    decode(resp).await
}

/// Held by the tests that measure time or memory, so that they do not measure each other.
pub async fn exclusive() -> tokio::sync::MutexGuard<'static, ()> {
    static HEAVY: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    HEAVY.lock().await
}

/// The peak resident memory of a process, in KiB (`VmHWM`).
pub fn peak_rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Waits until `check` holds, polling; panics with `what` after `limit`.
pub async fn until<F, Fut>(what: &str, limit: Duration, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let started = Instant::now();
    while !check().await {
        assert!(started.elapsed() < limit, "timed out waiting for {what}");
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
}
