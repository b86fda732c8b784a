//! Patient notifications: the feed, marking read, webhook registration, signed delivery with
//! retries, and delivery that survives a restart. Each case runs on SQLite and PostgreSQL.
//!
//! Most cases write recipient audit entries through the library's own audit writer on the
//! test app's database (the same group commit that stores each entry's notice in
//! production); `recipient_reads_reach_the_feed` reads records through the API.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes, Data};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use consentgate::audit::log::AuditLog;
use consentgate::audit::{AuditAction, AuditEntry, AuditOutcome};
use consentgate::notify;
use consentgate::store::notifications::{self as rows, DeliveryRow};
use consentgate::store::{Store, write_tx};
use consentgate::tls::{CertificateFiles, server_config};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, acts_as, assert_problem, call, call_full, client, client_token,
    consent, database_for, entry, permit, post_transaction, register, spawn_app, spawn_app_with,
    spawn_on,
};

/// An audit entry for what a recipient client did to one patient's records.
fn recipient_entry(
    client_id: &str,
    patient: &str,
    action: AuditAction,
    outcome: AuditOutcome,
    break_glass: Option<&str>,
) -> AuditEntry {
    AuditEntry {
        sequence: 0,
        recorded_micros: consentgate::records::dates::now_micros(),
        action,
        outcome,
        client_id: client_id.into(),
        organisation: "clinician-org".into(),
        user: None,
        purpose_of_use: if break_glass.is_some() {
            "ETREAT"
        } else {
            "TREAT"
        }
        .into(),
        patient_id: Some(patient.into()),
        resources: vec![format!("Patient/{patient}"), "Observation/o1".into()],
        consents: vec!["consent-1".into()],
        policies: vec!["baseline-permit".into()],
        break_glass: break_glass.map(str::to_string),
        request_id: uuid::Uuid::now_v7().to_string(),
        detail: BTreeMap::new(),
    }
}

/// Records entries through a second audit writer on the app's database; returns their
/// sequences.
async fn record(app: &TestApp, entries: Vec<AuditEntry>) -> Vec<u64> {
    let log = AuditLog::start(
        Store::open(&app.settings).expect("store opens"),
        Duration::ZERO,
    )
    .expect("writer");
    let mut seqs = Vec::new();
    for entry in entries {
        seqs.push(log.record(entry).await.expect("entry is durable"));
    }
    seqs
}

/// `patient`'s whole feed (up to 50) as `token` reads it.
async fn feed_of(app: &TestApp, token: &str, patient: &str) -> Value {
    let path = format!("/api/v1/patients/{patient}/notifications");
    let (status, feed) = call(app, token, Method::GET, &path, None).await;
    assert_eq!(status, 200, "{feed}");
    feed
}

fn kinds(feed: &Value) -> Vec<&str> {
    feed["notifications"]
        .as_array()
        .expect("a list")
        .iter()
        .map(|n| n["kind"].as_str().unwrap())
        .collect()
}

/// Waits up to 30 s for `check` to hold.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..300 {
        if check() {
            return;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

fn delivery(store: &Store, notification_id: &str) -> Option<DeliveryRow> {
    let mut conn = store.conn().expect("connection");
    rows::delivery(&mut conn, notification_id).expect("delivery row reads")
}

/// What the webhook receiver saw of one request.
#[derive(Debug, Clone)]
struct Received {
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

struct HookState {
    fail_first: usize,
    seen: AtomicUsize,
    received: Mutex<Vec<Received>>,
}

/// A tiny HTTPS webhook receiver with its own self-signed certificate, answering 500 to
/// the first `fail_first` requests and 204 after.
struct Hook {
    url: String,
    ca: PathBuf,
    state: Data<HookState>,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl Hook {
    fn start(fail_first: usize) -> Hook {
        let dir = tempfile::tempdir().expect("temporary directory");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
                .expect("certificate");
        let files = CertificateFiles {
            cert: dir.path().join("hook-cert.pem"),
            key: dir.path().join("hook-key.pem"),
            generated: true,
        };
        std::fs::write(&files.cert, generated.cert.pem()).unwrap();
        std::fs::write(&files.key, generated.signing_key.serialize_pem()).unwrap();
        let tls = server_config(&files).expect("TLS config");
        let state = Data::new(HookState {
            fail_first,
            seen: AtomicUsize::new(0),
            received: Mutex::new(Vec::new()),
        });
        let app_state = state.clone();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(app_state.clone())
                .route("/hook", web::post().to(receive))
        })
        .workers(1)
        .listen_rustls_0_23(listener, tls)
        .expect("hook listens")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        Hook {
            url: format!("https://127.0.0.1:{port}/hook"),
            ca: files.cert,
            state,
            handle,
            _dir: dir,
        }
    }

    fn ca(&self) -> String {
        self.ca.display().to_string()
    }

    fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }
}

impl Drop for Hook {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

async fn receive(state: Data<HookState>, req: HttpRequest, body: Bytes) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                v.to_str().unwrap_or_default().to_string(),
            )
        })
        .collect();
    state.received.lock().unwrap().push(Received {
        headers,
        body: body.to_vec(),
    });
    if state.seen.fetch_add(1, Ordering::SeqCst) < state.fail_first {
        HttpResponse::InternalServerError().finish()
    } else {
        HttpResponse::NoContent().finish()
    }
}

/// The receiver's side of the signature check, written independently of the gateway's code.
fn signed_by(secret: &str, received: &Received) -> bool {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
    let tag = ring::hmac::sign(&key, &received.body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    received.headers.get("x-consentgate-signature") == Some(&format!("sha256={hex}"))
}

/// A recipient's read and break-glass access reach the patient's feed, and nothing else
/// does; each patient sees only their own feed; marking read is the patient's.
async fn feed_tells_the_patient(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = ClientKey::ed25519("k1");
    let clinician = register(&app, "clinician", key.jwks(), json!({})).await;
    let client = client_token(&app, &key, &clinician, "TREAT").await;
    use AuditAction::{Read, Search};
    use AuditOutcome::{Denied, Success};
    let seqs = record(
        &app,
        vec![
            recipient_entry(&clinician, "alice", Read, Success, None),
            recipient_entry(
                &clinician,
                "alice",
                Read,
                Success,
                Some("unconscious in ER"),
            ),
            recipient_entry("patient", "alice", Read, Success, None),
            recipient_entry("operator", "alice", Search, Success, None),
            recipient_entry(&clinician, "alice", Read, Denied, None),
            recipient_entry(&clinician, "bob", Search, Success, None),
        ],
    )
    .await;
    let alice = app.patient_token("alice");
    let bob = app.patient_token("bob");
    let feed_path = "/api/v1/patients/alice/notifications";

    let (status, feed) = call(&app, &alice, Method::GET, feed_path, None).await;
    assert_eq!(status, 200, "{feed}");
    assert_eq!(
        kinds(&feed),
        vec!["break_glass", "disclosure"],
        "newest first"
    );
    assert_eq!(feed["unread"], 2);
    assert_eq!(feed["next"], Value::Null);
    let break_glass = &feed["notifications"][0];
    let disclosure = &feed["notifications"][1];
    assert_eq!(disclosure["audit_seq"], seqs[0]);
    assert_eq!(break_glass["audit_seq"], seqs[1]);
    assert_eq!(disclosure["patient_id"], "alice");
    assert_eq!(disclosure["read_at"], Value::Null);
    assert_eq!(
        disclosure["summary"],
        json!({"action": "read", "client_id": clinician, "organisation": "clinician-org",
               "purpose_of_use": "TREAT", "resource_types": ["Observation", "Patient"],
               "resource_count": 2, "consents": ["consent-1"]})
    );
    assert_eq!(break_glass["summary"]["break_glass"], true);
    assert!(
        !feed.to_string().contains("unconscious"),
        "no free text leaves in a notification: {feed}"
    );

    // Only alice and operators see alice's feed.
    let (_, bobs) = call(
        &app,
        &bob,
        Method::GET,
        "/api/v1/patients/bob/notifications",
        None,
    )
    .await;
    assert_eq!(kinds(&bobs), vec!["disclosure"]);
    let refused = call_full(&app, &bob, Method::GET, feed_path, None).await;
    assert_problem(&refused, 403, "forbidden");
    assert_problem(
        &call_full(&app, &client, Method::GET, feed_path, None).await,
        403,
        "forbidden",
    );
    let anonymous = app.client.get(app.url(feed_path)).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    let (status, as_operator) = call(&app, &app.operator_token, Method::GET, feed_path, None).await;
    assert_eq!(
        (status, kinds(&as_operator)),
        (200, vec!["break_glass", "disclosure"])
    );

    // Paging by id.
    let (_, first) = call(
        &app,
        &alice,
        Method::GET,
        &format!("{feed_path}?limit=1"),
        None,
    )
    .await;
    assert_eq!(kinds(&first), vec!["break_glass"]);
    let next = first["next"].as_str().expect("a next link").to_string();
    let (_, second) = call(&app, &alice, Method::GET, &next, None).await;
    assert_eq!(kinds(&second), vec!["disclosure"]);
    assert_eq!(second["next"], Value::Null);
    for bad in [
        "?unread=yes",
        "?limit=0",
        "?limit=500",
        "?before=nope",
        "?colour=red",
    ] {
        let answer = call_full(
            &app,
            &alice,
            Method::GET,
            &format!("{feed_path}{bad}"),
            None,
        )
        .await;
        assert_problem(&answer, 400, "invalid_query");
    }
    let answer = call_full(
        &app,
        &app.operator_token,
        Method::GET,
        "/api/v1/patients/a%20b/notifications",
        None,
    )
    .await;
    assert_problem(&answer, 400, "invalid_patient_id");

    // Marking read: idempotent, the patient's own, and only theirs.
    let nid = disclosure["id"].as_str().unwrap();
    let read_path = format!("{feed_path}/{nid}/read");
    let (status, marked) = call(&app, &alice, Method::POST, &read_path, None).await;
    assert_eq!(status, 200, "{marked}");
    assert!(marked["read_at"].is_string());
    let (_, again) = call(&app, &alice, Method::POST, &read_path, None).await;
    assert_eq!(
        again["read_at"], marked["read_at"],
        "the first read time stays"
    );
    let (_, unread) = call(
        &app,
        &alice,
        Method::GET,
        &format!("{feed_path}?unread=true"),
        None,
    )
    .await;
    assert_eq!(
        (kinds(&unread), &unread["unread"]),
        (vec!["break_glass"], &json!(1))
    );
    assert_problem(
        &call_full(&app, &bob, Method::POST, &read_path, None).await,
        403,
        "forbidden",
    );
    assert_problem(
        &call_full(&app, &app.operator_token, Method::POST, &read_path, None).await,
        403,
        "patient_only",
    );
    let bobs_id = bobs["notifications"][0]["id"].as_str().unwrap();
    let answer = call_full(
        &app,
        &alice,
        Method::POST,
        &format!("{feed_path}/{bobs_id}/read"),
        None,
    )
    .await;
    assert_problem(&answer, 404, "unknown_notification");
    let answer = call_full(
        &app,
        &alice,
        Method::POST,
        &format!("{feed_path}/not-an-id/read"),
        None,
    )
    .await;
    assert_problem(&answer, 404, "unknown_notification");
}

/// A registered webhook gets each new notification, signed; a 500 is retried with the same
/// delivery id until a 2xx; removal cancels what is pending.
async fn webhook_is_signed_and_retried(backend: Backend) {
    let hook = Hook::start(1);
    let ca = hook.ca();
    let Some(app) = spawn_app_with(
        backend,
        &[
            ("CONSENTGATE__AUTH__JWKS_CA_FILE", &ca),
            // The test server listens on loopback, which the address guard refuses unless allowed.
            ("CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    let alice = app.patient_token("alice");
    let webhook_path = "/api/v1/patients/alice/webhook";
    assert_problem(
        &call_full(&app, &alice, Method::GET, webhook_path, None).await,
        404,
        "no_webhook",
    );
    for url in [
        "http://127.0.0.1/hook",
        "hook",
        "https://user:pw@example.org/",
    ] {
        let answer = call_full(
            &app,
            &alice,
            Method::PUT,
            webhook_path,
            Some(&json!({"url": url})),
        )
        .await;
        assert_problem(&answer, 422, "invalid_webhook_url");
    }
    let answer = call_full(
        &app,
        &alice,
        Method::PUT,
        webhook_path,
        Some(&json!({"uri": hook.url})),
    )
    .await;
    assert_problem(&answer, 400, "invalid_json");
    let answer = call_full(
        &app,
        &app.operator_token,
        Method::PUT,
        webhook_path,
        Some(&json!({"url": hook.url})),
    )
    .await;
    assert_problem(&answer, 403, "patient_only");
    let answer = call_full(
        &app,
        &alice,
        Method::PUT,
        "/api/v1/patients/bob/webhook",
        Some(&json!({"url": hook.url})),
    )
    .await;
    assert_problem(&answer, 403, "forbidden");

    // Told before the webhook existed: in the feed, never pushed.
    let before = record(
        &app,
        vec![recipient_entry(
            "clinic-0",
            "alice",
            AuditAction::Read,
            AuditOutcome::Success,
            None,
        )],
    )
    .await[0];
    let (status, registered) = call(
        &app,
        &alice,
        Method::PUT,
        webhook_path,
        Some(&json!({"url": hook.url})),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let secret = registered["secret"]
        .as_str()
        .expect("the secret, once")
        .to_string();
    let (status, shown) = call(&app, &app.operator_token, Method::GET, webhook_path, None).await;
    assert_eq!((status, &shown["url"]), (200, &json!(hook.url)));
    assert!(
        shown.get("secret").is_none(),
        "the secret is never shown again"
    );

    record(
        &app,
        vec![recipient_entry(
            "clinic-1",
            "alice",
            AuditAction::Read,
            AuditOutcome::Success,
            None,
        )],
    )
    .await;
    let feed = feed_of(&app, &alice, "alice").await;
    let nid = feed["notifications"][0]["id"].as_str().unwrap().to_string();

    eventually("a retry after the 500", || hook.received().len() >= 2).await;
    let store = Store::open(&app.settings).unwrap();
    eventually("the delivery to be recorded", || {
        delivery(&store, &nid).is_some_and(|d| d.delivered_at.is_some())
    })
    .await;
    let attempts = hook.received();
    assert_eq!(attempts.len(), 2, "delivered once it succeeded");
    for (i, got) in attempts.iter().enumerate() {
        assert!(
            signed_by(&secret, got),
            "attempt {i} carries a valid signature"
        );
        assert!(notify::webhook::verify(
            &secret,
            &got.body,
            &got.headers["x-consentgate-signature"]
        ));
        assert_eq!(
            got.headers["x-consentgate-delivery"], nid,
            "the same delivery id each time"
        );
        assert_eq!(got.headers["x-consentgate-event"], "disclosure");
        assert_eq!(got.headers["x-consentgate-attempt"], (i + 1).to_string());
        assert_eq!(got.headers["content-type"], "application/json");
        let body: Value = serde_json::from_slice(&got.body).unwrap();
        assert_eq!(
            (&body["id"], &body["kind"]),
            (&json!(nid), &json!("disclosure"))
        );
        assert_eq!(body["summary"]["client_id"], "clinic-1");
        assert!(body.get("read_at").is_none());
    }
    assert!(!signed_by("another secret", &attempts[0]));
    let feed = feed_of(&app, &alice, "alice").await;
    let earlier = feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["audit_seq"] == before)
        .expect("the earlier one is in the feed");
    assert!(
        delivery(&store, earlier["id"].as_str().unwrap()).is_none(),
        "written before the webhook: not pushed"
    );
    let row = delivery(&store, &nid).unwrap();
    assert_eq!(
        (
            row.attempts,
            row.next_attempt_at,
            row.last_status.as_deref()
        ),
        (2, None, Some("http_204"))
    );

    // Removed: nothing more is queued for this patient.
    let (status, _) = call(&app, &alice, Method::DELETE, webhook_path, None).await;
    assert_eq!(status, 204);
    assert_problem(
        &call_full(&app, &alice, Method::DELETE, webhook_path, None).await,
        404,
        "no_webhook",
    );
    record(
        &app,
        vec![recipient_entry(
            "clinic-1",
            "alice",
            AuditAction::Search,
            AuditOutcome::Success,
            None,
        )],
    )
    .await;
    let feed = feed_of(&app, &alice, "alice").await;
    let newest = feed["notifications"][0]["id"].as_str().unwrap();
    assert_ne!(newest, nid);
    assert!(
        delivery(&store, newest).is_none(),
        "no webhook, no delivery"
    );
}

/// A notification written while the gateway is down (here an access request, through the
/// library) is delivered once it is back; the stopped instance sends nothing.
async fn delivery_resumes_after_restart(backend: Backend) {
    let hook = Hook::start(0);
    let ca = hook.ca();
    let extra = [
        ("CONSENTGATE__AUTH__JWKS_CA_FILE", ca.as_str()),
        ("CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS", "127.0.0.1/32"),
    ];
    let dir = tempfile::tempdir().expect("temporary directory");
    // The database outlives both runs of the gateway.
    let Some((url, pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let mut first = spawn_on(dir, url.clone(), None, &extra);
    let alice = first.patient_token("alice");
    let (status, registered) = call(
        &first,
        &alice,
        Method::PUT,
        "/api/v1/patients/alice/webhook",
        Some(&json!({"url": hook.url})),
    )
    .await;
    assert_eq!(status, 201, "{registered}");
    let secret = registered["secret"].as_str().unwrap().to_string();
    let settings = first.settings.clone();
    first.stop();
    let dir = std::mem::replace(&mut first.dir, tempfile::tempdir().unwrap());
    drop(first);
    actix_web::rt::time::sleep(Duration::from_secs(2)).await;

    let store = Store::open(&settings).unwrap();
    let enqueue = |request: &'static str| {
        let mut conn = store.conn().unwrap();
        write_tx(&mut conn, |c| {
            notify::enqueue_access_request(c, "alice", request)
        })
        .unwrap()
    };
    let nid = enqueue("req-1");
    assert_eq!(enqueue("req-1"), nid, "one notification per access request");
    // A recipient's read recorded while the gateway is down: derived, and pushed after.
    let log = AuditLog::start(store.clone(), Duration::ZERO).expect("writer");
    let read = recipient_entry(
        "clinic-1",
        "alice",
        AuditAction::Read,
        AuditOutcome::Success,
        None,
    );
    let read_seq = log.record(read).await.expect("durable");
    drop(log);
    let mut conn = store.conn().unwrap();
    assert!(matches!(
        write_tx(&mut conn, |c| notify::enqueue_access_request(
            c,
            "not an id",
            "req-2"
        )),
        Err(notify::NotifyError::InvalidId("patient_id"))
    ));
    drop(conn);
    actix_web::rt::time::sleep(Duration::from_secs(3)).await;
    assert!(
        hook.received().is_empty(),
        "a stopped gateway delivers nothing"
    );
    assert_eq!(delivery(&store, &nid).unwrap().attempts, 0);

    let second = spawn_on(dir, url, None, &extra);
    eventually("both deliveries after the restart", || {
        hook.received().len() >= 2
    })
    .await;
    let received = hook.received();
    let read_delivery = received
        .iter()
        .find(|r| r.headers["x-consentgate-event"] == "disclosure")
        .expect("the read's notification");
    assert!(signed_by(&secret, read_delivery));
    let body: Value = serde_json::from_slice(&read_delivery.body).unwrap();
    assert_eq!(body["audit_seq"], read_seq);
    assert_eq!(body["summary"]["client_id"], "clinic-1");
    let got = received
        .iter()
        .find(|r| r.headers["x-consentgate-event"] == "access_request")
        .expect("the access request's notification");
    assert!(signed_by(&secret, got));
    assert_eq!(got.headers["x-consentgate-delivery"], nid);
    assert_eq!(got.headers["x-consentgate-event"], "access_request");
    let body: Value = serde_json::from_slice(&got.body).unwrap();
    assert_eq!(body["access_request_id"], "req-1");
    assert_eq!(body["summary"], json!({"request_id": "req-1"}));
    eventually("the delivery to be recorded", || {
        delivery(&store, &nid).is_some_and(|d| d.delivered_at.is_some())
    })
    .await;
    let (status, feed) = call(
        &second,
        &second.patient_token("alice"),
        Method::GET,
        "/api/v1/patients/alice/notifications?unread=true",
        None,
    )
    .await;
    let mut told = kinds(&feed);
    told.sort_unstable();
    assert_eq!(
        (status, told),
        (200, vec!["access_request", "disclosure"]),
        "{feed}"
    );
    assert_eq!(hook.received().len(), 2, "each once");
    drop(second);
    drop(pg);
}

/// `patient` with one Observation `observation` and a consent for `Organization/clinic`'s
/// treatment, and a clinic's clinician client that has read the Observation. Returns the
/// patient's token and the client's id.
async fn clinic_reads(app: &TestApp, patient: &str, observation: &str) -> (String, String) {
    post_transaction(app, vec![
        entry("Patient", patient, json!({})),
        entry("Observation", observation, json!({"status": "final", "code": {"text": "x"}, "subject": {"reference": format!("Patient/{patient}")}})),
    ])
    .await;
    let token = app.patient_token(patient);
    let treatment = consent(patient, permit("Organization/clinic", "TREAT"));
    let (status, created) = app
        .send_as(&token, Method::POST, "/fhir/Consent", Some(&treatment))
        .await;
    assert_eq!(status, 201, "{created}");
    let (clinic, clinician) = client(
        app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await;
    let path = format!("/fhir/Observation/{observation}");
    let (status, _) = call(app, &clinician, Method::GET, &path, None).await;
    assert_eq!(status, 200);
    (token, clinic)
}

/// End to end through the API: a consented clinician's read and an emergency (break-glass)
/// read of carol's record each reach carol's feed.
async fn recipient_reads_reach_the_feed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (carol, clinic) = clinic_reads(&app, "carol", "c1").await;
    let (er, emergency) = client(
        &app,
        "clinician",
        acts_as("Organization/er"),
        "ETREAT",
        Some("unconscious, no ID"),
    )
    .await;
    let (status, _) = call(&app, &emergency, Method::GET, "/fhir/Observation/c1", None).await;
    assert_eq!(status, 200);
    // A read the consent does not cover discloses nothing and tells nothing.
    let (_, stranger) = client(
        &app,
        "clinician",
        acts_as("Organization/elsewhere"),
        "TREAT",
        None,
    )
    .await;
    let (status, _) = call(&app, &stranger, Method::GET, "/fhir/Observation/c1", None).await;
    assert_eq!(status, 404);

    let (status, feed) = call(
        &app,
        &carol,
        Method::GET,
        "/api/v1/patients/carol/notifications",
        None,
    )
    .await;
    assert_eq!(status, 200, "{feed}");
    assert_eq!(kinds(&feed), vec!["break_glass", "disclosure"], "{feed}");
    let clients: Vec<&Value> = feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| &n["summary"]["client_id"])
        .collect();
    assert_eq!(clients, vec![&json!(er), &json!(clinic)]);
    assert_eq!(
        feed["notifications"][1]["summary"]["resource_types"],
        json!(["Observation"])
    );
    assert!(!feed.to_string().contains("unconscious"));
}

/// The feed of a database upgraded from stored notifications: a notification stored before
/// the upgrade, an access request's (stored), and notifications derived from entries, in one
/// id order that paging by one keeps; each marked read by its own kind of id; forged and
/// foreign ids refused alike.
async fn stored_and_derived_notifications_share_one_feed(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    use AuditAction::{Read, Search};
    use AuditOutcome::Success;
    let store = Store::open(&app.settings).expect("store opens");
    // An entry whose notification the earlier writer stored: its notice is NULL and a row
    // reports it, with a UUIDv7 id.
    let legacy = record(
        &app,
        vec![recipient_entry("clinic-0", "erin", Read, Success, None)],
    )
    .await[0];
    let legacy_id = uuid::Uuid::now_v7().to_string();
    {
        use consentgate::store::DbConn;
        use consentgate::store::schema::{
            audit_entries, audit_patient_index, audit_patient_notices,
        };
        use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};
        let mut conn = store.conn().unwrap();
        write_tx(&mut conn, |c| {
            // Under the index cursor's lock, as a writer extending the index takes it: an
            // extension that read the entry's notice before this transaction would otherwise
            // file it after the delete below (PostgreSQL; SQLite has one writer at a time).
            if let DbConn::Postgresql(pg) = c {
                audit_patient_index::table
                    .filter(audit_patient_index::id.eq(1))
                    .select(audit_patient_index::next_seq)
                    .for_update()
                    .first::<i64>(pg)?;
            }
            diesel::update(audit_entries::table.filter(audit_entries::seq.eq(legacy as i64)))
                .set(audit_entries::notice.eq(None::<String>))
                .execute(c)?;
            // Nor is it in the patient index's notices (the upgrade built them from the
            // entries' notices), which a writer may already have extended over it.
            diesel::delete(
                audit_patient_notices::table.filter(audit_patient_notices::seq.eq(legacy as i64)),
            )
            .execute(c)?;
            Ok::<_, consentgate::store::StoreError>(())
        })
        .unwrap();
        write_tx(&mut conn, |c| {
            rows::insert(
                c,
                &rows::NotificationRow {
                    id: legacy_id.clone(),
                    patient_id: "erin".into(),
                    kind: "disclosure".into(),
                    created: consentgate::records::dates::now_micros(),
                    audit_seq: Some(legacy as i64),
                    access_request_id: None,
                    summary: json!({"stored": true}).to_string(),
                    read_at: None,
                },
            )
        })
        .unwrap();
    }
    let derived = record(
        &app,
        vec![
            recipient_entry("clinic-1", "erin", Read, Success, None),
            recipient_entry("clinic-2", "erin", Search, Success, Some("no time to ask")),
        ],
    )
    .await;
    let request_id = {
        let mut conn = store.conn().unwrap();
        write_tx(&mut conn, |c| {
            notify::enqueue_access_request(c, "erin", "req-erin")
        })
        .unwrap()
    };
    let last = record(
        &app,
        vec![recipient_entry("clinic-3", "erin", Read, Success, None)],
    )
    .await[0];
    let erin = app.patient_token("erin");
    let feed_path = "/api/v1/patients/erin/notifications";
    let (status, whole) = call(&app, &erin, Method::GET, feed_path, None).await;
    assert_eq!(status, 200, "{whole}");
    let ids: Vec<String> = whole["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 5, "{whole}");
    assert_eq!(whole["unread"], 5);
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    assert_eq!(ids, sorted, "newest first by id");
    let seq_of = |id: &str| {
        whole["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["id"] == id)
            .map(|n| n["audit_seq"].clone())
            .unwrap()
    };
    assert!(ids.contains(&legacy_id) && ids.contains(&request_id));
    assert_eq!(seq_of(&legacy_id), json!(legacy));
    for seq in [derived[0], derived[1], last] {
        let n = whole["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["audit_seq"] == seq)
            .expect("derived from its entry");
        let id = uuid::Uuid::parse_str(n["id"].as_str().unwrap()).unwrap();
        assert_eq!(id.get_version_num(), 8, "a derived notification's id");
    }
    let kinds_by_seq: Vec<(Value, &str)> = whole["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["audit_seq"].clone(), n["kind"].as_str().unwrap()))
        .collect();
    assert!(kinds_by_seq.contains(&(json!(derived[1]), "break_glass")));

    // Paging one at a time walks the same order, each exactly once.
    let mut walked = Vec::new();
    let mut next = Some(format!("{feed_path}?limit=1"));
    while let Some(path) = next {
        let (status, page) = call(&app, &erin, Method::GET, &path, None).await;
        assert_eq!(status, 200, "{page}");
        walked.extend(
            page["notifications"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n["id"].as_str().unwrap().to_string()),
        );
        next = page["next"].as_str().map(str::to_string);
    }
    assert_eq!(walked, ids);

    // Each kind of id marks its own notification read; the unread count follows.
    for id in [&legacy_id, &ids[0]] {
        let (status, marked) = call(
            &app,
            &erin,
            Method::POST,
            &format!("{feed_path}/{id}/read"),
            None,
        )
        .await;
        assert_eq!((status, &marked["id"]), (200, &json!(id)), "{marked}");
        assert!(marked["read_at"].is_string());
    }
    let (_, unread) = call(
        &app,
        &erin,
        Method::GET,
        &format!("{feed_path}?unread=true"),
        None,
    )
    .await;
    assert_eq!(unread["unread"], 3, "{unread}");
    let left: Vec<&str> = unread["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(
        left,
        ids[1..]
            .iter()
            .filter(|id| **id != legacy_id)
            .map(String::as_str)
            .collect::<Vec<_>>()
    );

    // A derived id with another time, another patient's entry, or an entry that calls for
    // no notification: all the same answer as an id that names nothing.
    let (recorded, seq) =
        notify::parse_derived_id(&uuid::Uuid::parse_str(&ids[0]).unwrap()).expect("derived");
    let operator = record(
        &app,
        vec![recipient_entry("operator", "erin", Read, Success, None)],
    )
    .await[0];
    let franks = record(
        &app,
        vec![recipient_entry("clinic-1", "frank", Read, Success, None)],
    )
    .await[0];
    let operator_recorded = {
        let mut conn = store.conn().unwrap();
        consentgate::store::audit::entry_at(&mut conn, operator)
            .unwrap()
            .expect("the operator's entry")
            .recorded
    };
    for forged in [
        notify::derived_id(recorded + 1, seq).unwrap(),
        notify::derived_id(recorded, franks as i64).unwrap(),
        notify::derived_id(operator_recorded, operator as i64).unwrap(),
        uuid::Uuid::now_v7().to_string(),
    ] {
        let answer = call_full(
            &app,
            &erin,
            Method::POST,
            &format!("{feed_path}/{forged}/read"),
            None,
        )
        .await;
        assert_problem(&answer, 404, "unknown_notification");
    }
    let (_, after) = call(&app, &erin, Method::GET, feed_path, None).await;
    assert_eq!(after["unread"], 3, "nothing forged was marked: {after}");
}

both_backends!(
    stored_and_derived_notifications_share_one_feed,
    recipient_reads_reach_the_feed,
    feed_tells_the_patient,
    webhook_is_signed_and_retried,
    delivery_resumes_after_restart
);
