//! The patient page in a real browser: headless Chromium (Debian's `chromium` and
//! `chromium-driver`) driven through WebDriver (fantoccini) against the spawned TLS server.
//! Signs in through the development issuer, shares with the preview shown, revokes (the
//! clinician's next read is 404), approves a request, sends evidence, and reads the log with
//! each entry verified. axe-core runs on every page (zero serious or critical violations),
//! the page must not scroll sideways at 360 px, and each page is saved as a screenshot under
//! `target/screenshots/`.
//!
//! Without Chromium, chromedriver or axe-core the test says so in one loud line and skips;
//! under `CI=true` it fails instead (`.ci/run` installs them).

use std::net::TcpListener;
use std::panic::AssertUnwindSafe;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use futures_util::FutureExt;
use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, MRN, TestApp, call, client, get_as, load_records, spawn_app};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
/// The axe-core release the accessibility checks run (npm, MPL-2.0), fetched into `target/`.
const AXE_VERSION: &str = "4.14.1";

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// Says why the browser suite cannot run: fails under CI, skips loudly elsewhere.
fn missing(what: &str) {
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("the browser suite needs {what}; .ci/run installs it");
    }
    eprintln!(
        "!!!!! SKIPPED the browser suite: {what} is missing (apt-get install chromium chromium-driver; npm) !!!!!"
    );
}

/// axe-core's `axe.min.js`, fetched once with npm into `target/axe-core/`.
///
/// Both backends' browser tests ask for it at once on a fresh machine, so the fetch runs once
/// per test process (a `OnceLock`), unpacks into a folder of its own and is renamed into place:
/// a second process never sees a half-unpacked package.
fn axe_source() -> Option<String> {
    static AXE: OnceLock<Option<String>> = OnceLock::new();
    AXE.get_or_init(fetch_axe).clone()
}

fn fetch_axe() -> Option<String> {
    let dir = target_dir().join("axe-core");
    let script = dir.join("package/axe.min.js");
    if !script.exists() {
        let scratch = dir.join(format!("unpack-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&scratch);
        std::fs::create_dir_all(&scratch).ok()?;
        let packed = Command::new("npm")
            .args(["pack", &format!("axe-core@{AXE_VERSION}"), "--silent"])
            .current_dir(&scratch)
            .stderr(Stdio::null())
            .output()
            .ok()?;
        let name = String::from_utf8_lossy(&packed.stdout).trim().to_string();
        if !packed.status.success() || name.is_empty() {
            return None;
        }
        let unpacked = Command::new("tar")
            .args(["xzf", &name])
            .current_dir(&scratch)
            .status()
            .ok()?;
        if !unpacked.success() {
            return None;
        }
        // Another process may have finished first; its package is the same release.
        if std::fs::rename(scratch.join("package"), dir.join("package")).is_err()
            && !script.exists()
        {
            return None;
        }
        let _ = std::fs::remove_dir_all(&scratch);
    }
    std::fs::read_to_string(script).ok()
}

/// A chromedriver of our own on a free port; killed when dropped.
struct Driver {
    child: Child,
    url: String,
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn start_driver() -> Driver {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let child = Command::new(CHROMEDRIVER)
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromedriver starts");
    let driver = Driver {
        child,
        url: format!("http://127.0.0.1:{port}"),
    };
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return driver;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("chromedriver did not listen on port {port}");
}

async fn browser(driver: &Driver) -> Client {
    let mut caps = serde_json::Map::new();
    caps.insert("acceptInsecureCerts".into(), json!(true));
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": CHROMIUM,
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                     "--disable-dev-shm-usage", "--window-size=1280,1000"],
        }),
    );
    ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
        .capabilities(caps)
        .connect(&driver.url)
        .await
        .expect("a Chromium session")
}

/// One page checked: no serious or critical axe-core violation, no sideways scrolling at
/// 360 px, and a screenshot saved.
struct Checker {
    axe: String,
    shots: PathBuf,
    prefix: &'static str,
}

impl Checker {
    async fn page(&self, c: &Client, name: &str) {
        c.execute(&self.axe, vec![]).await.expect("axe-core loads");
        let found = c
            .execute_async(
                "const done = arguments[arguments.length - 1];
                 axe.run(document, {resultTypes: ['violations']})
                   .then(r => done(r.violations
                     .filter(v => v.impact === 'serious' || v.impact === 'critical')
                     .map(v => v.id + ': ' + v.help + ' at ' +
                          v.nodes.map(n => n.target.join(' ')).join(', '))))
                   .catch(e => done(['axe failed: ' + e]));",
                vec![],
            )
            .await
            .expect("axe-core runs");
        assert_eq!(found, json!([]), "{name}: serious or critical violations");
        let png = c.screenshot().await.unwrap();
        std::fs::write(self.shots.join(format!("{}{name}.png", self.prefix)), png).unwrap();
        c.set_window_size(360, 800).await.unwrap();
        let fits = c
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth;",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{name} scrolls sideways at 360 px");
        let narrow = c.screenshot().await.unwrap();
        std::fs::write(
            self.shots.join(format!("{}{name}-360px.png", self.prefix)),
            narrow,
        )
        .unwrap();
        c.set_window_size(1280, 1000).await.unwrap();
    }
}

async fn text(c: &Client) -> String {
    c.find(Locator::Css("main"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap()
}

async fn click(c: &Client, css: &str) {
    c.find(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css}: {e}"))
        .click()
        .await
        .unwrap();
}

/// Waits (up to ten seconds) until the page is at `path` and its main text holds `needle`:
/// a click on a submit button returns before the next page has loaded.
async fn arrive(c: &Client, path: &str, needle: &str) -> String {
    for _ in 0..100 {
        if c.current_url().await.unwrap().path() == path
            && let Ok(main) = c.find(Locator::Css("main")).await
            && let Ok(text) = main.text().await
            && text.contains(needle)
        {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "no page at {path} saying {needle:?}; at {}:\n{}",
        c.current_url().await.unwrap(),
        text(c).await
    );
}

/// Sets a date field through the DOM: typing into a date input depends on the locale.
async fn set_date(c: &Client, id: &str, value: &str) {
    c.execute(
        "document.getElementById(arguments[0]).value = arguments[1];",
        vec![json!(id), json!(value)],
    )
    .await
    .unwrap();
}

async fn the_patient_page_in_chromium(backend: Backend) {
    if !Path::new(CHROMIUM).exists() || !Path::new(CHROMEDRIVER).exists() {
        return missing("chromium and chromium-driver");
    }
    let Some(axe) = axe_source() else {
        return missing("axe-core (npm)");
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (clinic, token) = client(&app, "clinician", json!({}), "TREAT", None).await;
    let shots = target_dir().join("screenshots");
    std::fs::create_dir_all(&shots).unwrap();
    let check = Checker {
        axe,
        shots,
        prefix: match backend {
            Backend::Sqlite => "",
            Backend::Postgres => "postgres-",
        },
    };
    let driver = start_driver().await;
    let c = browser(&driver).await;
    // Close the session whatever happens, then report.
    let result = AssertUnwindSafe(journey(&app, &c, &check, &clinic, &token))
        .catch_unwind()
        .await;
    let _ = c.close().await;
    drop(driver);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

async fn journey(app: &TestApp, c: &Client, check: &Checker, clinic: &str, token: &str) {
    let run = async {
        // Sign in.
        c.goto(&app.url("/")).await.unwrap();
        check.page(c, "01-sign-in").await;
        click(c, "a.button").await;
        assert!(
            c.current_url()
                .await
                .unwrap()
                .path()
                .starts_with("/dev-issuer/authorize")
        );
        check.page(c, "02-demo-issuer").await;
        click(c, "#p-pat").await;
        click(c, "button[type=submit]").await;
        arrive(c, "/sharing", "You share nothing yet").await;
        check.page(c, "03-my-sharing-empty").await;

        // Share, with the preview first.
        c.goto(&app.url("/share?q=clinician")).await.unwrap();
        click(c, &format!("input[name=recipient][value='{clinic}']")).await;
        set_date(c, "until", "2099-03-01").await;
        check.page(c, "04-share").await;
        click(c, "form[action='/share/preview'] button[type=submit]").await;
        let preview = arrive(c, "/share/preview", "They will see").await;
        assert!(
            preview.contains("1 HIV status record stays hidden."),
            "{preview}"
        );
        check.page(c, "05-share-preview").await;
        assert_eq!(get_as(app, token, "/fhir/Observation/vitals").await.0, 404);
        click(c, "form[action='/share'] button[type=submit]").await;
        arrive(c, "/sharing", "In effect").await;
        assert_eq!(get_as(app, token, "/fhir/Observation/vitals").await.0, 200);
        check.page(c, "06-my-sharing").await;

        // Revoke: the clinician's next read is 404.
        click(c, "button.danger").await;
        arrive(c, "/sharing", "Taken back").await;
        assert_eq!(get_as(app, token, "/fhir/Observation/vitals").await.0, 404);

        // Approve a request.
        let ask = json!({
            "patient": {"identifier": {"system": MRN, "value": "MRN-1"}},
            "purpose": "TREAT",
            "data_classes": ["Observation"],
            "reason": "Follow-up of blood pressure.",
        });
        let (status, _) = call(
            app,
            token,
            Method::POST,
            "/api/v1/access-requests",
            Some(&ask),
        )
        .await;
        assert_eq!(status, 202);
        c.goto(&app.url("/requests")).await.unwrap();
        assert!(text(c).await.contains("Follow-up of blood pressure."));
        check.page(c, "07-requests").await;
        click(c, "a[href^='/share?request=']").await;
        arrive(c, "/share", "You are answering a request.").await;
        click(c, "form[action='/share/preview'] button[type=submit]").await;
        arrive(c, "/share/preview", "They will see").await;
        click(c, "form[action='/share'] button[type=submit]").await;
        arrive(c, "/sharing", "In effect").await;
        assert_eq!(get_as(app, token, "/fhir/Observation/vitals").await.0, 200);

        // Send evidence, seeing what leaves first.
        c.goto(&app.url("/evidence")).await.unwrap();
        click(c, &format!("#recipient option[value='{clinic}']")).await;
        click(c, "#e-Observation").await;
        let until = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
            .date()
            .to_string();
        set_date(c, "until", &until).await;
        check.page(c, "08-send-evidence").await;
        click(c, "form[action='/evidence/preview'] button[type=submit]").await;
        arrive(c, "/evidence/preview", "These 1 records will be sent").await;
        check.page(c, "09-evidence-preview").await;
        click(c, "form[action='/evidence'] button[type=submit]").await;
        arrive(c, "/evidence", "Not fetched yet").await;

        // Who looked, each entry verified in the signed log.
        c.goto(&app.url("/looked")).await.unwrap();
        let looked = text(c).await;
        assert!(looked.contains("Verified in the signed log"), "{looked}");
        assert!(
            !looked.contains("Not yet in a signed checkpoint"),
            "{looked}"
        );
        check.page(c, "10-who-looked").await;

        c.goto(&app.url("/notifications")).await.unwrap();
        assert!(text(c).await.contains("received"));
        check.page(c, "11-notifications").await;

        // My records: the own copy, and the form reporting a mistake in one record.
        c.goto(&app.url("/records")).await.unwrap();
        assert!(text(c).await.contains("Download my records"));
        check.page(c, "12-my-records").await;
        let report = c
            .find(Locator::Css("a[href$='/correct']"))
            .await
            .expect("a record to report a mistake in")
            .attr("href")
            .await
            .unwrap()
            .expect("href");
        c.goto(&app.url(&report)).await.unwrap();
        assert!(text(c).await.contains("What it should say"));
        check.page(c, "13-report-a-mistake").await;
        c.goto(&app.url("/delegates")).await.unwrap();
        assert!(text(c).await.contains("Name a delegate"));
        check.page(c, "14-delegates").await;

        // Share my summary: the link and its QR code (inline SVG) once, then the list.
        c.goto(&app.url("/summary-links")).await.unwrap();
        check.page(c, "15-share-summary").await;
        set_date(c, "label", "Travel summary").await;
        click(c, "form[action='/summary-links'] button[type=submit]").await;
        arrive(c, "/summary-links", "Your new link").await;
        let link = c
            .find(Locator::Css("#made-link"))
            .await
            .unwrap()
            .prop("value")
            .await
            .unwrap()
            .unwrap_or_default();
        assert!(link.starts_with("shlink:/"), "{link}");
        c.find(Locator::Css(".qr svg"))
            .await
            .expect("the QR code is drawn");
        check.page(c, "16-summary-link-made").await;
        c.goto(&app.url("/summary-links")).await.unwrap();
        assert!(!text(c).await.contains("shlink:/"), "shown once");

        // Sign out: back to the sign-in page, and the data pages send you there.
        click(c, "form[action='/sign-out'] button").await;
        arrive(c, "/", "Sign in").await;
        c.goto(&app.url("/sharing")).await.unwrap();
        arrive(c, "/", "Sign in").await;
    };
    tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the browser journey ends within three minutes");
}

both_backends!(the_patient_page_in_chromium);
