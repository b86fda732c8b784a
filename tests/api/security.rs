//! Defects found by probing the running gateway as an attacker with a valid patient or
//! client token, each reproduced on SQLite and PostgreSQL: extreme dates, consents filed into
//! another patient's record, the decisions API as an oracle, gateway records reaching
//! recipients, and query errors in the wrong shape.

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    ACT_REASON, Backend, TestApp, acts_as, client, consent, decode, get_as, permit, request,
    send_full, spawn_app, spawn_app_with,
};

const B: &str = "patient-b";
const A: &str = "patient-a";

/// Two patients; B has a plain observation and a condition labelled HIV-sensitive.
async fn seed(app: &TestApp) {
    for patient in [A, B] {
        let (status, body) = app
            .put(
                &format!("/fhir/Patient/{patient}"),
                &json!({"resourceType": "Patient", "id": patient}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let observation = json!({"resourceType": "Observation", "id": "obs-b", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{B}")}, "effectiveDateTime": "2024-05-01"});
    let condition = json!({"resourceType": "Condition", "id": "hidden-b",
        "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "86406008"}]},
        "subject": {"reference": format!("Patient/{B}")}, "recordedDate": "2024-05-01"});
    for (path, body) in [
        ("/fhir/Observation/obs-b", observation),
        ("/fhir/Condition/hidden-b", condition),
    ] {
        let (status, answer) = app.put(path, &body).await;
        assert_eq!(status, 201, "{path}: {answer}");
    }
}

/// Patient B's own consent to the clinic's treatment, posted with B's token.
async fn b_consents_to_the_clinic(app: &TestApp, patient_token: &str) {
    let (status, body) = app
        .send_as(
            patient_token,
            reqwest::Method::POST,
            "/fhir/Consent",
            Some(&consent(B, permit("Organization/clinic", "TREAT"))),
        )
        .await;
    assert_eq!(status, 201, "B's consent to the clinic: {body}");
}

/// A clinician's client acting for the clinic, with a token for treatment: (its id, the token).
async fn clinic_clinician(app: &TestApp) -> (String, String) {
    client(
        app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await
}

/// On SQLite, the two patients seeded and B's consent to the clinic on file: the app, the
/// clinic's clinician's token and B's own; `None` where the suite cannot spawn the app.
async fn consented_on_sqlite() -> Option<(TestApp, String, String)> {
    let app = spawn_app(Backend::Sqlite).await?;
    seed(&app).await;
    let (_, token) = clinic_clinician(&app).await;
    let patient = app.patient_token(B);
    b_consents_to_the_clinic(&app, &patient).await;
    Some((app, token, patient))
}

/// How many disclosures B's access log lists, read with B's token.
async fn disclosures_of_b(app: &TestApp, patient_token: &str) -> usize {
    let (status, log) = get_as(app, patient_token, "/api/v1/patients/patient-b/access-log").await;
    assert_eq!(status, 200, "{log}");
    log["disclosures"].as_array().expect("disclosures").len()
}

fn code_of(body: &Value) -> String {
    body["code"]
        .as_str()
        .map(str::to_string)
        .or_else(|| {
            body.pointer("/issue/0/details/coding/0/code")
                .and_then(Value::as_str)
                .map(str::to_string)
        })
        .unwrap_or_default()
}

/// The gateway still serves: a consent can be written, a token issued, an audited read
/// answered, and readiness holds.
async fn still_serves(app: &TestApp) {
    let patient_token = app.patient_token(B);
    b_consents_to_the_clinic(app, &patient_token).await;
    let (_, token) = clinic_clinician(app).await;
    let (status, body) = get_as(app, &token, "/fhir/Observation/obs-b").await;
    assert_eq!(status, 200, "an audited read after the probe: {body}");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
}

async fn extreme_dates_are_refused_and_nothing_wedges(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;
    let patient = app.patient_token(B);
    // The reproductions: a patient's own consent with dates at the end of the calendar.
    let mut issued = consent(B, permit("Organization/clinic", "TREAT"));
    issued["issued"] = json!("9999-12");
    let mut effective = consent(B, permit("Organization/clinic", "TREAT"));
    effective["effectiveDateTime"] = json!("9999-12-31T23:59:59.999999Z");
    let mut date_time = consent(B, permit("Organization/clinic", "TREAT"));
    date_time["dateTime"] = json!("9999-12-31T23:59:59.999999Z");
    let mut period = consent(B, permit("Organization/clinic", "TREAT"));
    period["provision"]["period"] = json!({"start": "2024-01-01", "end": "9999-12"});
    for (what, body) in [
        ("issued", issued),
        ("effectiveDateTime", effective),
        ("dateTime", date_time),
        ("provision.period", period),
    ] {
        let (status, answer) = app
            .send_as(
                &patient,
                reqwest::Method::POST,
                "/fhir/Consent",
                Some(&body),
            )
            .await;
        assert_eq!(status, 422, "{what}: {answer}");
        assert!(
            answer.to_string().contains("date_out_of_range"),
            "{what}: {answer}"
        );
    }
    // The same at the records door, for a data source or an operator.
    let observation = json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{B}")},
        "effectivePeriod": {"start": "2020-01-01", "end": "9999-12-31T23:59:59Z"}});
    let (status, answer) = app.put("/fhir/Observation/late", &observation).await;
    assert_eq!(
        (status, code_of(&answer).as_str()),
        (422, "date_out_of_range"),
        "{answer}"
    );
    // The last supported day is stored.
    let mut last_day = observation.clone();
    last_day["effectivePeriod"]["end"] = json!("9999-12-30");
    assert_eq!(
        app.put("/fhir/Observation/last-day", &last_day).await.0,
        201
    );
    still_serves(&app).await;
}

async fn extreme_search_dates_answer_400(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;
    let operator_paths = [
        "/fhir/Observation?date=9999-12".to_string(),
        "/fhir/Observation?date=gt9999-12-31T23:59:59.999999Z".to_string(),
        format!("/fhir/Observation?patient={B}&date=9999-12-31T23:59:59Z"),
        "/fhir/Observation?_lastUpdated=9999-12".to_string(),
        "/fhir/AuditEvent?date=9999-12".to_string(),
        format!("/api/v1/patients/{B}/access-log?until=9999-12-31T23:59:59.999999Z"),
        format!("/api/v1/patients/{B}/access-log?since=9999-12"),
    ];
    for path in &operator_paths {
        let (status, body) = app.get(path).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(code_of(&body), "date_out_of_range", "{path}: {body}");
    }
    // A recipient's consent-checked search takes the same path.
    let patient = app.patient_token(B);
    b_consents_to_the_clinic(&app, &patient).await;
    let (_, token) = clinic_clinician(&app).await;
    let path = format!("/fhir/Observation?patient={B}&date=9999-12-31T23:59:59Z");
    let (status, body) = get_as(&app, &token, &path).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "date_out_of_range"),
        "{body}"
    );
    // The patient's own access log, with a patient token.
    let path = format!("/api/v1/patients/{B}/access-log?until=9999-12-31T23:59:59.999999Z");
    let (status, body) = get_as(&app, &patient, &path).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (400, "date_out_of_range"),
        "{body}"
    );
    still_serves(&app).await;
}

async fn consents_stay_in_their_patients_record(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;
    let patient_b = app.patient_token(B);
    // B's real choices: the clinic may treat, and no emergency access. Their ids sort last,
    // where a truncated list would lose them.
    let choices = [
        ("zzzz-permit", permit("Organization/clinic", "TREAT")),
        (
            "zzzz-optout",
            json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": "ETREAT"}]}),
        ),
    ];
    for (id, provision) in choices {
        let (status, body) = app
            .send_as(
                &patient_b,
                reqwest::Method::PUT,
                &format!("/fhir/Consent/{id}"),
                Some(&consent(B, provision)),
            )
            .await;
        assert_eq!(status, 201, "{id}: {body}");
    }
    let (_, clinic) = clinic_clinician(&app).await;
    let (_, er) = client(
        &app,
        "clinician",
        acts_as("Organization/er"),
        "ETREAT",
        Some("unconscious, allergy check"),
    )
    .await;
    assert_eq!(
        get_as(&app, &clinic, "/fhir/Observation/obs-b").await.0,
        200
    );
    assert_eq!(get_as(&app, &er, "/fhir/Observation/obs-b").await.0, 404);

    // Patient A files a consent that names A as `patient` and B as `subject`: refused, as it
    // is for any writer, whichever element comes first.
    let patient_a = app.patient_token(A);
    let mut smuggled = consent(A, permit("Organization/er", "ETREAT"));
    smuggled["subject"] = json!({"reference": format!("Patient/{B}")});
    let (status, body) = app
        .send_as(
            &patient_a,
            reqwest::Method::PUT,
            "/fhir/Consent/0-0000",
            Some(&smuggled),
        )
        .await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (422, "conflicting_patient"),
        "{body}"
    );
    let (status, body) = app.put("/fhir/Consent/0-0001", &smuggled).await;
    assert_eq!(
        (status, code_of(&body).as_str()),
        (422, "conflicting_patient"),
        "{body}"
    );
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": smuggled, "request": {"method": "PUT", "url": "Consent/0-0002"}}]});
    let (status, body) = app.post("/fhir", &bundle).await;
    assert_eq!(status, 422, "{body}");
    let (status, found) = get_as(&app, &patient_b, &format!("/fhir/Consent?patient={B}")).await;
    assert_eq!(status, 200);
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(2), "{found}");

    // B (or anyone acting for B) files 1,500 more consents whose ids sort first. The list
    // that decides is never truncated: past the limit, writes are refused instead.
    let fillers: Vec<(u16, Value)> = futures_util::stream::iter(0..1500)
        .map(|i| {
            let (app, token) = (&app, &patient_b);
            async move {
                let body = consent(B, permit(&format!("Organization/other-{i}"), "TREAT"));
                let path = format!("/fhir/Consent/0-{i:04}");
                // A busy database answers 503 (Retry-After); a client tries again.
                let mut answer = (503, Value::Null);
                for _ in 0..5 {
                    answer = app
                        .send_as(token, reqwest::Method::PUT, &path, Some(&body))
                        .await;
                    if answer.0 != 503 {
                        break;
                    }
                }
                answer
            }
        })
        .buffer_unordered(4)
        .collect()
        .await;
    let stored = fillers.iter().filter(|(s, _)| *s == 201).count();
    let refused: Vec<&Value> = fillers
        .iter()
        .filter(|(s, _)| *s == 422)
        .map(|(_, b)| b)
        .collect();
    let statuses: std::collections::BTreeMap<u16, usize> =
        fillers.iter().fold(Default::default(), |mut m, (s, _)| {
            *m.entry(*s).or_default() += 1;
            m
        });
    assert_eq!(
        stored, 998,
        "up to the limit of 1000 consents: {statuses:?}"
    );
    assert_eq!(refused.len(), 502, "{statuses:?}");
    assert!(
        refused.iter().all(|b| code_of(b) == "too_many_consents"),
        "{:?}",
        refused.first()
    );
    // Both of B's choices still decide.
    assert_eq!(
        get_as(&app, &clinic, "/fhir/Observation/obs-b").await.0,
        200
    );
    assert_eq!(get_as(&app, &er, "/fhir/Observation/obs-b").await.0, 404);
    let (status, found) = get_as(&app, &patient_b, &format!("/fhir/Consent?patient={B}")).await;
    assert_eq!(status, 200);
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1000));
}

async fn decisions_answer_a_client_no_more_than_a_read(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;
    let (clinic_id, clinic) = clinic_clinician(&app).await;
    let ask = |reference: &str, purpose: &str| {
        json!({"client_id": clinic_id, "purpose": purpose, "patient": B,
               "resource": {"reference": reference}})
    };
    let post = |token: String, body: Value| {
        let app = &app;
        async move {
            decode(
                app.client
                    .post(app.url("/api/v1/decisions"))
                    .bearer_auth(token)
                    .json(&body)
                    .send()
                    .await
                    .expect("answered"),
            )
            .await
        }
    };
    // No consent from B: a hidden record and a missing one get the same answer, naming no
    // label, consent or policy.
    let hidden = post(clinic.clone(), ask("Condition/hidden-b", "TREAT")).await;
    let missing = post(clinic.clone(), ask("Condition/no-such-record", "TREAT")).await;
    assert_eq!(hidden.0, 200, "{}", hidden.1);
    assert_eq!(hidden, missing);
    assert_eq!(hidden.1["decision"], "deny");
    let text = hidden.1.to_string();
    for secret in ["HIV", "label", "consent ", "policy", "Condition/"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    assert!(hidden.1.get("consent").is_none() && hidden.1.get("policies").is_none());
    // A purpose outside the client's role is refused, as at the token endpoint.
    let research = post(clinic.clone(), ask("Condition/hidden-b", "HRESCH")).await;
    assert_eq!(
        (research.0, code_of(&research.1).as_str()),
        (403, "purpose_not_allowed")
    );
    // The patient and operators still get the whole explanation.
    let full = app
        .post_json("/api/v1/decisions", &ask("Condition/hidden-b", "TREAT"))
        .await;
    assert_eq!(full.0, 200);
    assert!(full.1.to_string().contains("HIV"), "{}", full.1);
    let own = post(app.patient_token(B), ask("Condition/hidden-b", "TREAT")).await;
    assert_eq!(own.0, 200);
    assert!(own.1.to_string().contains("HIV"), "{}", own.1);
    let unknown = app
        .post_json(
            "/api/v1/decisions",
            &ask("Condition/no-such-record", "TREAT"),
        )
        .await;
    assert_eq!(unknown.0, 404, "{}", unknown.1);
    // With B's consent, the client learns the permit and its obligations only.
    let patient_b = app.patient_token(B);
    b_consents_to_the_clinic(&app, &patient_b).await;
    let allowed = post(clinic.clone(), ask("Observation/obs-b", "TREAT")).await;
    assert_eq!(allowed.1["decision"], "permit", "{}", allowed.1);
    assert!(allowed.1.get("consent").is_none());
}

async fn recipients_never_receive_gateway_records(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    seed(&app).await;
    let patient_b = app.patient_token(B);
    let (status, made) = app
        .send_as(
            &patient_b,
            reqwest::Method::PUT,
            "/fhir/Consent/b-shares",
            Some(&consent(B, permit("Organization/clinic", "TREAT"))),
        )
        .await;
    assert_eq!(status, 201, "{made}");
    let (clinic_id, clinic) = clinic_clinician(&app).await;
    let (status, everything) =
        get_as(&app, &clinic, &format!("/fhir/Patient/{B}/$everything")).await;
    assert_eq!(status, 200, "{everything}");
    let types: Vec<&str> = everything["entry"]
        .as_array()
        .expect("entries")
        .iter()
        .filter_map(|e| e["resource"]["resourceType"].as_str())
        .collect();
    assert!(types.contains(&"Observation"), "{types:?}");
    assert!(!types.contains(&"Consent"), "{types:?}");
    for path in [
        "/fhir/Consent/b-shares".to_string(),
        format!("/fhir/Consent?patient={B}"),
        format!("/fhir/AuditEvent?patient={B}"),
    ] {
        let (status, body) = get_as(&app, &clinic, &path).await;
        assert!(matches!(status, 403 | 404), "{path}: {status} {body}");
    }
    // No consent or policy can release one: the decision itself refuses.
    let (status, decided) = app
        .post_json(
            "/api/v1/decisions",
            &json!({"client_id": clinic_id, "purpose": "TREAT", "patient": B,
                    "resource": {"reference": "Consent/b-shares"}}),
        )
        .await;
    assert_eq!(status, 200, "{decided}");
    assert_eq!(decided["decision"], "deny", "{decided}");
}

async fn query_errors_are_problem_documents(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for path in [
        "/api/v1/audit/proofs/inclusion?index=x&tree_size=1",
        "/api/v1/audit/proofs/consistency?from=1&to=-2",
    ] {
        let resp = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("answered");
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string();
        let (status, body) = decode(resp).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(content_type, "application/problem+json", "{path}");
        assert_eq!(body["code"], "invalid_query", "{path}: {body}");
    }
}

both_backends!(
    extreme_dates_are_refused_and_nothing_wedges,
    extreme_search_dates_answer_400,
    consents_stay_in_their_patients_record,
    decisions_answer_a_client_no_more_than_a_read,
    recipients_never_receive_gateway_records,
    query_errors_are_problem_documents,
);

/// `/readyz` turns not-ready while another process holds SQLite's write lock (as a
/// connection stuck in a transaction would), and ready again when it lets go.
#[actix_web::test]
async fn readiness_sees_a_database_that_takes_no_writes() {
    use diesel::connection::SimpleConnection;
    use diesel::{Connection, SqliteConnection};
    let Some(app) = spawn_app_with(
        Backend::Sqlite,
        &[("CONSENTGATE__DATABASE__SQLITE_BUSY_TIMEOUT_MS", "200")],
    )
    .await
    else {
        return;
    };
    assert_eq!(app.get("/readyz").await.0, 200);
    let path = app.dir.path().join("consentgate.db");
    let mut holder = SqliteConnection::establish(&path.to_string_lossy()).expect("open");
    // The gateway's own writes (the audit writer's index step, on its own schedule) hold
    // the lock for moments: the holder waits its turn for it rather than failing.
    holder
        .batch_execute("PRAGMA busy_timeout = 10000; BEGIN IMMEDIATE")
        .expect("take the write lock");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["code"], "database_not_writable", "{body}");
    holder.batch_execute("COMMIT").expect("let go");
    let (status, body) = app.get("/readyz").await;
    assert_eq!(status, 200, "{body}");
}

/// No answer may be kept by a browser's or an intermediary's cache unless its route says so:
/// a consent-checked read, a search, a refusal, a missing resource and an error all leave
/// with `Cache-Control: no-store` and `nosniff`, HSTS, and a Content-Security-Policy that
/// lets nothing run or frame them; the gateway's public keys keep their own caching, a page
/// its own policy. Headers only, so one backend.
#[actix_web::test]
async fn answers_are_not_stored_by_caches() {
    let Some((app, token, patient)) = consented_on_sqlite().await else {
        return;
    };
    let cases = [
        (token.as_str(), "/fhir/Observation/obs-b", 200),
        (token.as_str(), "/fhir/Observation?patient=patient-b", 200),
        (token.as_str(), "/fhir/Condition/hidden-b", 404),
        (token.as_str(), "/fhir/Observation/no-such", 404),
        (token.as_str(), "/fhir/Observation?date=yesterday", 400),
        (
            patient.as_str(),
            "/api/v1/patients/patient-b/access-log",
            200,
        ),
        ("not-a-token", "/fhir/Observation/obs-b", 401),
    ];
    for (bearer, path, expected) in cases {
        let answer = app
            .client
            .get(app.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("request");
        let status = answer.status().as_u16();
        let headers = answer.headers().clone();
        let header = |name: &str| {
            headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_string()
        };
        assert_eq!(status, expected, "{path}");
        assert_eq!(header("cache-control"), "no-store", "{path} ({status})");
        assert_eq!(header("x-content-type-options"), "nosniff", "{path}");
        assert_eq!(
            header("strict-transport-security"),
            "max-age=31536000; includeSubDomains",
            "{path}"
        );
        assert_eq!(
            header("content-security-policy"),
            "default-src 'none'; frame-ancestors 'none'",
            "{path}"
        );
    }
    let page = app.client.get(app.url("/")).send().await.expect("the page");
    let policy = page
        .headers()
        .get("content-security-policy")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    assert!(
        policy.contains("style-src") && policy.contains("frame-ancestors 'none'"),
        "a page keeps its own policy: {policy}"
    );
    let answer = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .expect("the keys");
    assert_eq!(answer.status().as_u16(), 200);
    assert_eq!(
        answer
            .headers()
            .get("cache-control")
            .map(|v| v.to_str().ok()),
        Some(Some("public, max-age=300")),
        "a route's own caching stays"
    );
}

/// A FHIR request for a format other than JSON, by `_format` or by `Accept`, is refused with
/// 406 `unsupported_format` before anything is looked up: a consented read, a hidden and a
/// missing resource, a search and a caller without a token get the same answer, and the
/// refused read discloses nothing. JSON asked for in any of its spellings is served. No
/// storage difference between backends, so one.
#[actix_web::test]
async fn formats_other_than_json_are_refused_alike() {
    let Some((app, token, patient)) = consented_on_sqlite().await else {
        return;
    };
    let before = disclosures_of_b(&app, &patient).await;

    let ask = |bearer: &str, path: &str, accept: Option<&str>| {
        let mut asked = request(&app, bearer, reqwest::Method::GET, path);
        if let Some(accept) = accept {
            asked = asked.header("accept", accept);
        }
        async move {
            let answer = send_full(asked).await;
            (answer.status, answer.media, answer.body)
        }
    };
    let paths = [
        "/fhir/Observation/obs-b",
        "/fhir/Condition/hidden-b",
        "/fhir/Observation/no-such",
        "/fhir/Observation?patient=patient-b",
        "/fhir/metadata",
    ];
    for bearer in [token.as_str(), "not-a-token"] {
        for path in paths {
            let separator = if path.contains('?') { '&' } else { '?' };
            for (path, accept) in [
                (path.to_string(), Some("application/fhir+xml")),
                (
                    path.to_string(),
                    Some("text/html, application/fhir+json;q=0"),
                ),
                (
                    format!("{path}{separator}_format=application/fhir%2Bxml"),
                    None,
                ),
                // `_format` wins over `Accept`, as FHIR says.
                (
                    format!("{path}{separator}_format=xml"),
                    Some("application/fhir+json"),
                ),
            ] {
                let (status, kind, body) = ask(bearer, &path, accept).await;
                assert_eq!(status, 406, "{path} {accept:?}: {body}");
                assert!(kind.starts_with("application/fhir+json"), "{kind}");
                assert_eq!(body["resourceType"], "OperationOutcome", "{body}");
                assert_eq!(code_of(&body), "unsupported_format", "{body}");
                assert_eq!(body["issue"][0]["code"], "not-supported", "{body}");
            }
        }
    }
    let after = disclosures_of_b(&app, &patient).await;
    assert_eq!(after, before, "a refused read disclosed nothing");

    for (path, accept) in [
        ("/fhir/Observation/obs-b?_format=json", None),
        (
            "/fhir/Observation/obs-b?_format=application/fhir%2Bjson",
            None,
        ),
        (
            "/fhir/Observation/obs-b?_format=application/fhir+json",
            None,
        ),
        ("/fhir/Observation/obs-b", Some("application/fhir+json")),
        ("/fhir/Observation/obs-b", Some("application/json")),
        ("/fhir/Observation/obs-b", Some("*/*")),
        (
            "/fhir/Observation/obs-b",
            Some("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"),
        ),
        ("/fhir/Observation?patient=patient-b&_format=json", None),
    ] {
        let (status, _, body) = ask(&token, path, accept).await;
        assert_eq!(status, 200, "{path} {accept:?}: {body}");
    }
    let (status, _, body) = ask(
        &token,
        "/fhir/Condition/hidden-b",
        Some("application/fhir+json"),
    )
    .await;
    assert_eq!(
        status, 404,
        "hidden stays missing when JSON is asked for: {body}"
    );
}

/// `HEAD` is answered as the `GET` it asks about, without content (RFC 9110 says a
/// general-purpose server must support it): the same status and length, a resource hidden
/// from the caller as missing as one that is not there, and a consented one audited as the
/// read it is, since its status and headers disclose it. One backend: no storage difference.
#[actix_web::test]
async fn head_is_a_get_without_content() {
    let Some((app, token, patient)) = consented_on_sqlite().await else {
        return;
    };
    let before = disclosures_of_b(&app, &patient).await;

    for (bearer, path, expected) in [
        ("", "/healthz", 200),
        (token.as_str(), "/fhir/Observation/obs-b", 200),
        (token.as_str(), "/fhir/Condition/hidden-b", 404),
        (token.as_str(), "/fhir/Observation/no-such", 404),
        ("not-a-token", "/fhir/Observation/obs-b", 401),
    ] {
        let head = app
            .client
            .head(app.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("HEAD");
        let status = head.status().as_u16();
        let length = head
            .headers()
            .get("content-length")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let content = head.bytes().await.expect("HEAD's content");
        assert_eq!(status, expected, "HEAD {path}");
        assert!(content.is_empty(), "HEAD {path} has no content");
        let get = app
            .client
            .get(app.url(path))
            .bearer_auth(bearer)
            .send()
            .await
            .expect("GET");
        assert_eq!(get.status().as_u16(), expected, "GET {path}");
        let body = get.bytes().await.expect("GET's content");
        assert_eq!(
            length,
            Some(body.len()),
            "HEAD {path} tells the GET's length"
        );
    }
    let after = disclosures_of_b(&app, &patient).await;
    assert_eq!(
        after,
        before + 2,
        "the consented HEAD and GET are both disclosures"
    );
}

/// A read of an id no resource can have (a control character, 300 characters) is a 404
/// `not_found` like any missing record, for a recipient and for the operator, and its
/// message repeats at most 64 characters of the id and no control character.
#[actix_web::test]
async fn ids_no_resource_can_have_are_not_known() {
    let Some((app, token, _)) = consented_on_sqlite().await else {
        return;
    };
    let odd = format!("%07{}", "x".repeat(300));
    for bearer in [token.as_str(), app.operator_token.as_str()] {
        for path in [
            format!("/fhir/Observation/{odd}"),
            format!("/fhir/Observation/{odd}/_history/1"),
        ] {
            let answer = send_full(request(&app, bearer, reqwest::Method::GET, &path)).await;
            if bearer == token && path.contains("_history") {
                // A recipient has no history interaction.
                assert_ne!(answer.status, 200, "{path}");
                continue;
            }
            assert_eq!(answer.status, 404, "{path}: {}", answer.body);
            assert_eq!(code_of(&answer.body), "not_found");
            let text = answer.body["issue"][0]["diagnostics"]
                .as_str()
                .unwrap_or_default();
            assert!(!text.chars().any(char::is_control), "{text:?}");
            assert!(!text.contains(&"x".repeat(64)), "{text}");
            assert!(text.contains(&"x".repeat(63)), "{text}");
        }
    }
}
