//! The patient page over real HTTPS, as a browser without JavaScript drives it: cookies
//! kept by hand, redirects followed by hand, forms posted as forms. Signs in through the
//! development issuer (authorization code flow with PKCE), shares with the decision preview,
//! revokes (a clinician's next read is 404), and is refused where it must be. Each case runs
//! on SQLite and PostgreSQL.

use std::collections::BTreeMap;
use std::sync::Arc;

use reqwest::Method;
use reqwest::header::{HeaderMap, LOCATION, SET_COOKIE};
use serde_json::json;

use crate::both_backends;
use crate::helpers::{
    Backend, MRN, TestApp, call, client, database_for, get_as, load_records, spawn_app,
    test_settings,
};
use consentgate::startup::Application;

/// A cookie-keeping client that does not follow redirects.
pub(crate) struct Browser {
    base: String,
    client: reqwest::Client,
    cookies: BTreeMap<String, String>,
}

/// One answer: status, headers, body text.
pub(crate) struct Page {
    pub(crate) status: u16,
    pub(crate) headers: HeaderMap,
    pub(crate) body: String,
}

impl Page {
    pub(crate) fn location(&self) -> String {
        self.headers[LOCATION].to_str().unwrap().to_string()
    }

    /// The value of the hidden field `name` in the page's first form carrying it.
    pub(crate) fn hidden(&self, name: &str) -> String {
        let marker = format!("name=\"{name}\" value=\"");
        let start = self.body.find(&marker).unwrap_or_else(|| {
            panic!("no field {name} in page:\n{}", self.body);
        }) + marker.len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].replace("&#43;", "+")
    }
}

impl Browser {
    pub(crate) fn new(app: &TestApp) -> Browser {
        Browser::trusting(&app.base, &app.dir.path().join("tls/dev-cert.pem"))
    }

    fn trusting(base: &str, cert: &std::path::Path) -> Browser {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for c in CertificateDer::pem_file_iter(cert).unwrap() {
            roots.add(c.unwrap()).unwrap();
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        let client = reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Browser {
            base: base.to_string(),
            client,
            cookies: BTreeMap::new(),
        }
    }

    fn url(&self, path_or_url: &str) -> String {
        if path_or_url.starts_with("https://") {
            path_or_url.to_string()
        } else {
            format!("{}{path_or_url}", self.base)
        }
    }

    async fn send(&mut self, request: reqwest::RequestBuilder) -> Page {
        let cookie = self
            .cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ");
        let request = if cookie.is_empty() {
            request
        } else {
            request.header("cookie", cookie)
        };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        for set in headers.get_all(SET_COOKIE) {
            let set = set.to_str().unwrap();
            for attribute in ["HttpOnly", "Secure", "SameSite=Lax", "Path=/"] {
                assert!(set.contains(attribute), "{set} lacks {attribute}");
            }
            let (name, rest) = set.split_once('=').unwrap();
            let value = rest.split(';').next().unwrap();
            if value.is_empty() || set.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_string(), value.to_string());
            }
        }
        let body = response.text().await.unwrap();
        Page {
            status,
            headers,
            body,
        }
    }

    pub(crate) async fn get(&mut self, path: &str) -> Page {
        let request = self.client.get(self.url(path));
        self.send(request).await
    }

    pub(crate) async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let request = self.client.post(self.url(path)).form(form);
        self.send(request).await
    }

    /// Signs in as `patient` through the development issuer; returns the landing page.
    pub(crate) async fn sign_in(&mut self, patient: &str) -> Page {
        let home = self.get("/").await;
        assert_eq!(home.status, 200, "{}", home.body);
        let start = home.hidden_href("/sign-in/start?");
        let to_issuer = self.get(&start).await;
        assert_eq!(to_issuer.status, 303, "{}", to_issuer.body);
        let authorize = to_issuer.location();
        assert!(
            authorize.contains("code_challenge_method=S256"),
            "{authorize}"
        );
        let issuer_page = self.get(&authorize).await;
        assert_eq!(issuer_page.status, 200, "{}", issuer_page.body);
        assert!(issuer_page.body.contains(&format!("value=\"{patient}\"")));
        let request = issuer_page.hidden("request");
        let back = self
            .post(
                "/dev-issuer/choose",
                &[("request", &request), ("patient", patient)],
            )
            .await;
        assert_eq!(back.status, 303, "{}", back.body);
        let callback = back.location();
        assert!(callback.contains("/sign-in/callback?code="), "{callback}");
        let landed = self.get(&callback).await;
        assert_eq!(landed.status, 303, "{}", landed.body);
        assert_eq!(landed.location(), "/sharing");
        let page = self.get("/sharing").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page
    }
}

impl Page {
    /// The first link whose href starts with `prefix`, unescaped.
    pub(crate) fn hidden_href(&self, prefix: &str) -> String {
        let marker = format!("href=\"{prefix}");
        let start = self.body.find(&marker).unwrap() + "href=\"".len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].replace("&amp;", "&")
    }
}

fn assert_secure_headers(page: &Page) {
    let csp = page.headers["content-security-policy"].to_str().unwrap();
    assert!(csp.contains("script-src 'self'") && csp.contains("frame-ancestors 'none'"));
    assert!(!csp.contains("unsafe-inline"));
    assert!(page.headers.contains_key("strict-transport-security"));
    assert_eq!(page.headers["cache-control"], "no-store");
}

async fn sign_in_share_preview_revoke(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (clinic, token) = client(&app, "clinician", json!({}), "TREAT", None).await;
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        404
    );

    let mut browser = Browser::new(&app);
    let sharing = browser.sign_in("pat").await;
    assert_secure_headers(&sharing);
    assert!(sharing.body.contains("You share nothing yet"));
    let csrf = sharing.hidden("csrf");

    // The form lists the clinic by organisation, sensitive categories unticked.
    let form = browser.get("/share?q=clinician").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains(&format!("value=\"{clinic}\"")));
    assert!(
        form.body
            .contains("name=\"sensitive\" id=\"s-HIV\" value=\"HIV\" aria-describedby")
    );
    assert!(
        !form
            .body
            .contains("value=\"HIV\" aria-describedby=\"s-HIV-hint\" checked")
    );
    let none = browser.get("/share?q=no-such-organisation").await;
    assert!(!none.body.contains(&format!("value=\"{clinic}\"")));

    // The preview: the engine's numbers over pat's records, the HIV diagnosis hidden.
    let choices = [
        ("csrf", csrf.as_str()),
        ("recipient", clinic.as_str()),
        ("purpose", "TREAT"),
        ("until", "2099-03-01"),
    ];
    let preview = browser.post("/share/preview", &choices).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(
        preview.body.contains("stay hidden"),
        "the preview names what stays hidden:\n{}",
        preview.body
    );
    assert!(preview.body.contains("1 HIV status record stays hidden."));
    assert!(preview.body.contains("until 1 March 2099"));
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        404,
        "a preview grants nothing"
    );

    // Without the CSRF token nothing is stored.
    let forged = browser.post("/share", &choices[1..]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    let confirmed = browser.post("/share", &choices).await;
    assert_eq!(confirmed.status, 303, "{}", confirmed.body);
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        200
    );
    assert_eq!(get_as(&app, &token, "/fhir/Condition/hiv").await.0, 404);

    // Who looked: the clinician's read, and an emergency read highlighted, each verified.
    let (_, er) = client(
        &app,
        "clinician",
        json!({"organization": "Emergency Room"}),
        "ETREAT",
        Some("unconscious, allergy check"),
    )
    .await;
    assert_eq!(get_as(&app, &er, "/fhir/Observation/vitals").await.0, 200);
    let looked = browser.get("/looked").await;
    assert_eq!(looked.status, 200, "{}", looked.body);
    assert_secure_headers(&looked);
    assert!(
        looked
            .body
            .contains("<strong>clinician org (clinician app)</strong>")
    );
    let emergency = looked
        .body
        .find("Emergency access (break-glass)")
        .expect("highlighted");
    assert!(
        emergency
            < looked
                .body
                .find("<strong>clinician org (clinician app)</strong>")
                .unwrap(),
        "newest first"
    );
    assert!(looked.body.contains("unconscious, allergy check"));
    assert_eq!(
        looked.body.matches("Verified in the signed log").count(),
        2,
        "{}",
        looked.body
    );
    let only = browser.get(&format!("/looked?recipient={clinic}")).await;
    assert!(!only.body.contains("break-glass)"), "{}", only.body);
    assert_eq!(only.body.matches("Verified in the signed log").count(), 1);
    let csv = browser.get("/looked.csv").await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.headers["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/csv")
    );
    assert!(csv.body.contains(&clinic) && csv.body.contains("unconscious, allergy check"));

    // Notifications: both reads, the emergency one flagged; marking read.
    let notes = browser.get("/notifications").await;
    assert_eq!(notes.status, 200, "{}", notes.body);
    assert!(notes.body.contains("<p>2 unread.</p>"), "{}", notes.body);
    assert!(
        notes
            .body
            .contains("Emergency access: Emergency Room (clinician app) received")
    );
    assert!(notes.body.contains(
        "clinician org (clinician app) received 1 of your records (Observation) for treatment."
    ));
    let read_at = notes.hidden_action("/notifications/");
    assert_eq!(browser.post(&read_at, &[]).await.status, 403, "CSRF");
    assert_eq!(browser.post(&read_at, &[("csrf", &csrf)]).await.status, 303);
    assert!(
        browser
            .get("/notifications")
            .await
            .body
            .contains("<p>1 unread.</p>")
    );
    let loopback = browser
        .post(
            "/notifications/webhook",
            &[("csrf", &csrf), ("url", "https://127.0.0.1/hook")],
        )
        .await;
    assert_eq!(loopback.status, 422, "{}", loopback.body);

    let sharing = browser.get("/sharing").await;
    assert!(
        sharing
            .body
            .contains("clinician org may see your records for treatment until 1 March 2099"),
        "{}",
        sharing.body
    );
    assert!(sharing.body.contains("In effect"));
    let revoke_at = sharing.hidden_action("/sharing/");
    assert_eq!(browser.post(&revoke_at, &[]).await.status, 403, "CSRF");
    let revoked = browser.post(&revoke_at, &[("csrf", &csrf)]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        404,
        "revoking holds from the clinician's next read"
    );
    assert!(browser.get("/sharing").await.body.contains("Taken back"));

    // Signing out ends the session at once, even for a replayed cookie.
    let kept = browser.cookies.clone();
    let out = browser.post("/sign-out", &[("csrf", &csrf)]).await;
    assert_eq!((out.status, out.location()), (303, "/".to_string()));
    browser.cookies = kept;
    let after = browser.get("/sharing").await;
    assert_eq!((after.status, after.location()), (303, "/".to_string()));
}

impl Page {
    /// The first form action starting with `prefix`.
    fn hidden_action(&self, prefix: &str) -> String {
        let marker = format!("action=\"{prefix}");
        let start = self.body.find(&marker).unwrap() + "action=\"".len();
        let end = self.body[start..].find('"').unwrap() + start;
        self.body[start..end].to_string()
    }
}

async fn forged_and_replayed_sign_ins_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let mut browser = Browser::new(&app);
    assert_eq!(browser.get("/sharing").await.status, 303, "signed out");
    let home = browser.get("/").await;
    let to_issuer = browser.get(&home.hidden_href("/sign-in/start?")).await;
    let issuer_page = browser.get(&to_issuer.location()).await;
    let request = issuer_page.hidden("request");
    let back = browser
        .post(
            "/dev-issuer/choose",
            &[("request", &request), ("patient", "pat")],
        )
        .await;
    let callback = back.location();

    // Another browser (no binding cookie) cannot finish this sign-in.
    let mut other = Browser::new(&app);
    let stolen = other.get(&callback).await;
    assert_eq!(stolen.status, 401, "{}", stolen.body);
    assert!(stolen.body.contains("<h1>Sign-in failed</h1>"));
    // The state was used up by that attempt: the right browser starts again.
    assert_eq!(browser.get(&callback).await.status, 401);
    // The issuer's page is good once.
    let again = browser
        .post(
            "/dev-issuer/choose",
            &[("request", &request), ("patient", "pat")],
        )
        .await;
    assert_eq!(again.status, 410, "{}", again.body);
    // An unknown issuer is refused.
    let unknown = browser
        .get("/sign-in/start?issuer=https%3A%2F%2Fevil.example")
        .await;
    assert_eq!(unknown.status, 400);
}

async fn production_without_an_issuer_refuses_sign_in(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = database_for(backend, dir.path()) else {
        return;
    };
    // Production refuses the generated development certificate: bring one.
    let generated =
        rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()]).unwrap();
    let (cert, key) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert, generated.cert.pem()).unwrap();
    std::fs::write(&key, generated.signing_key.serialize_pem()).unwrap();
    let (cert_setting, key_setting) = (cert.display().to_string(), key.display().to_string());
    let settings = test_settings(
        dir.path(),
        &url,
        &[
            ("CONSENTGATE__PROFILE", "production"),
            ("CONSENTGATE__SERVER__TLS__CERT_FILE", &cert_setting),
            ("CONSENTGATE__SERVER__TLS__KEY_FILE", &key_setting),
        ],
    );
    let app = Application::build(settings).expect("a production gateway builds");
    let base = app.base_url().to_string();
    let handle = app.handle();
    actix_web::rt::spawn(app.run_until_stopped());
    let mut browser = Browser::trusting(&base, &cert);
    let home = browser.get("/").await;
    assert_eq!(home.status, 503, "{}", home.body);
    assert!(home.body.contains("auth.oidc_issuers"));
    assert!(!home.body.contains("/sign-in/start"));
    assert_secure_headers(&home);
    let issuer = browser
        .get("/dev-issuer/.well-known/openid-configuration")
        .await;
    assert_eq!(issuer.status, 404);
    drop(handle.stop(false));
    drop(pg);
}

async fn a_request_is_approved_through_the_share_form_or_declined(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (_, token) = client(&app, "clinician", json!({}), "TREAT", None).await;
    let ask = |classes: &[&str]| {
        json!({
            "patient": {"identifier": {"system": MRN, "value": "MRN-1"}},
            "purpose": "TREAT",
            "data_classes": classes,
            "reason": "Follow-up of blood pressure.",
        })
    };
    // Newest first on the page: the Observation request is listed first.
    for classes in [&["Condition"][..], &["Observation"][..]] {
        let (status, answer) = call(
            &app,
            &token,
            Method::POST,
            "/api/v1/access-requests",
            Some(&ask(classes)),
        )
        .await;
        assert_eq!(status, 202, "{answer}");
    }

    let mut browser = Browser::new(&app);
    let sharing = browser.sign_in("pat").await;
    let csrf = sharing.hidden("csrf");
    let requests = browser.get("/requests").await;
    assert_eq!(requests.status, 200, "{}", requests.body);
    assert!(
        requests
            .body
            .contains("asks to see your Observation for treatment")
    );
    assert!(requests.body.contains("Follow-up of blood pressure."));

    // Approve: the share form answers the request, the preview, then the approval.
    let approve = requests.hidden_href("/share?request=");
    let form = browser.get(&approve).await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("You are answering a request."));
    let request = form.hidden("request");
    let choices = [
        ("csrf", csrf.as_str()),
        ("request", &request),
        ("until", "2099-01-31"),
    ];
    let preview = browser.post("/share/preview", &choices).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    assert!(preview.body.contains("They will see "), "{}", preview.body);
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        404
    );
    let approved = browser.post("/share", &choices).await;
    assert_eq!(approved.status, 303, "{}", approved.body);
    assert_eq!(
        get_as(&app, &token, "/fhir/Observation/vitals").await.0,
        200
    );
    assert_eq!(
        get_as(&app, &token, "/fhir/Condition/htn").await.0,
        404,
        "not asked for"
    );
    let again = browser.post("/share", &choices).await;
    assert_eq!(again.status, 409, "an answered request stays answered");

    // Decline the other one.
    let requests = browser.get("/requests").await;
    assert!(requests.body.contains("asks to see your Condition"));
    let decline_at = requests.hidden_action("/requests/");
    assert_eq!(browser.post(&decline_at, &[]).await.status, 403, "CSRF");
    let declined = browser.post(&decline_at, &[("csrf", &csrf)]).await;
    assert_eq!(declined.status, 303, "{}", declined.body);
    assert!(
        browser
            .get("/requests")
            .await
            .body
            .contains("No requests are waiting")
    );
    assert_eq!(get_as(&app, &token, "/fhir/Condition/htn").await.0, 404);
}

async fn evidence_is_shown_before_it_is_sent_and_its_fetches_after(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (clinic, token) = client(&app, "clinician", json!({}), "TREAT", None).await;
    let mut browser = Browser::new(&app);
    let sharing = browser.sign_in("pat").await;
    let csrf = sharing.hidden("csrf");
    let form = browser.get("/evidence").await;
    assert_eq!(form.status, 200, "{}", form.body);
    assert!(form.body.contains("You have not sent any evidence."));
    let until = (time::OffsetDateTime::now_utc() + time::Duration::days(30))
        .date()
        .to_string();
    let choices = [
        ("csrf", csrf.as_str()),
        ("recipient", clinic.as_str()),
        ("purpose", "TREAT"),
        ("kind", "Observation"),
        ("kind", "Condition"),
        ("until", until.as_str()),
        ("fetches", "2"),
    ];
    let preview = browser.post("/evidence/preview", &choices).await;
    assert_eq!(preview.status, 200, "{}", preview.body);
    // The vitals and the hypertension leave; the HIV diagnosis and the genetic test
    // (labelled sensitive at ingest) stay.
    assert!(
        preview.body.contains("These 2 records will be sent"),
        "{}",
        preview.body
    );
    assert!(preview.body.contains("Observation, 2024-03-01"));
    assert!(
        !preview.body.contains("Observation, 2022-01-01"),
        "the genetic test stays"
    );
    let (_, none) = get_as(&app, &app.patient_token("pat"), "/api/v1/disclosures").await;
    assert_eq!(none["disclosures"], json!([]), "a preview sends nothing");
    assert_eq!(
        browser.post("/evidence", &choices[1..]).await.status,
        403,
        "CSRF"
    );
    let sent = browser.post("/evidence", &choices).await;
    assert_eq!(sent.status, 303, "{}", sent.body);
    let page = browser.get("/evidence").await;
    assert!(
        page.body.contains("2 records for treatment"),
        "{}",
        page.body
    );
    assert!(page.body.contains("Not fetched yet (allowed 2 times)."));

    let (_, listed) = get_as(&app, &app.patient_token("pat"), "/api/v1/disclosures").await;
    let id = listed["disclosures"][0]["id"].as_str().unwrap().to_string();
    let (status, _) = get_as(&app, &token, &format!("/api/v1/disclosures/{id}/bundle")).await;
    assert_eq!(status, 200);
    let page = browser.get("/evidence").await;
    assert!(page.body.contains("Fetched 1 of 2 times:"), "{}", page.body);
}

both_backends!(
    evidence_is_shown_before_it_is_sent_and_its_fetches_after,
    a_request_is_approved_through_the_share_form_or_declined,
    sign_in_share_preview_revoke,
    forged_and_replayed_sign_ins_are_refused,
    production_without_an_issuer_refuses_sign_in,
);
