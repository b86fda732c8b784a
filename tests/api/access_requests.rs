//! Access requests (DESIGN.md sections 2 and 3): a recipient asks, the patient approves or
//! declines, and the recipient cannot tell from any answer whether someone is a patient
//! here. Each case runs on SQLite and PostgreSQL.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, MRN, TestApp, ask_decision, call, call_full, client, load_records, spawn_app,
};

fn ask(mrn: &str, purpose: &str, classes: &[&str]) -> Value {
    json!({
        "patient": {"identifier": {"system": MRN, "value": mrn}},
        "purpose": purpose,
        "data_classes": classes,
        "period": {"start": "2020-01-01"},
        "reason": "Follow-up of blood pressure after the referral of 3 March.",
    })
}

/// Submits a request; returns its id.
async fn submit(app: &TestApp, token: &str, body: &Value) -> String {
    let (status, answer) = call(
        app,
        token,
        Method::POST,
        "/api/v1/access-requests",
        Some(body),
    )
    .await;
    assert_eq!(status, 202, "{answer}");
    answer["id"].as_str().unwrap().to_string()
}

fn pending_of(list: &Value) -> Vec<&Value> {
    list["access_requests"].as_array().unwrap().iter().collect()
}

async fn answers_do_not_tell_whether_a_patient_exists(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (_, token) = client(&app, "clinician", json!({}), "TREAT", None).await;

    let mut answers = Vec::new();
    for mrn in ["MRN-1", "NO-SUCH-MRN", "MRN-DUP"] {
        let answer = call_full(
            &app,
            &token,
            Method::POST,
            "/api/v1/access-requests",
            Some(&ask(mrn, "TREAT", &["Observation"])),
        )
        .await;
        assert_eq!(answer.status, 202, "{mrn}: {}", answer.body);
        let mut value = answer.body;
        let id = value.as_object_mut().unwrap().remove("id").unwrap();
        let id = id.as_str().unwrap().to_string();
        let without_id = String::from_utf8(answer.bytes).unwrap().replace(&id, "");
        answers.push((mrn, id, answer.media, value, without_id));
    }
    let (_, known, ..) = &answers[0];
    for (mrn, _, content_type, value, text) in &answers[1..] {
        assert_eq!(
            (content_type, value, text),
            (&answers[0].2, &answers[0].3, &answers[0].4),
            "{mrn} answers differently"
        );
    }
    assert_eq!(answers[0].3, json!({"status": "submitted"}));

    // The status the client can read is the same too.
    for (mrn, id, ..) in &answers {
        let (status, body) = call(
            &app,
            &token,
            Method::GET,
            &format!("/api/v1/access-requests/{id}"),
            None,
        )
        .await;
        assert_eq!(
            (status, &body),
            (200, &json!({"id": id, "status": "submitted"})),
            "{mrn}"
        );
    }

    // Only the matched patient sees a request, and is told of it.
    let pat = app.patient_token("pat");
    let (status, list) = call(
        &app,
        &pat,
        Method::GET,
        "/api/v1/access-requests?status=pending",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let mine = pending_of(&list);
    assert_eq!(mine.len(), 1, "{list}");
    assert_eq!(mine[0]["id"], json!(known));
    assert!(
        mine[0].get("identifier").is_none(),
        "the identifier is for operators"
    );
    let (_, feed) = call(
        &app,
        &pat,
        Method::GET,
        "/api/v1/patients/pat/notifications",
        None,
    )
    .await;
    assert!(
        feed["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "access_request" && n["access_request_id"] == json!(known)),
        "{feed}"
    );
    for twin in ["twin-a", "twin-b", "other"] {
        let (_, list) = call(
            &app,
            &app.patient_token(twin),
            Method::GET,
            "/api/v1/access-requests",
            None,
        )
        .await;
        assert!(pending_of(&list).is_empty(), "{twin}: {list}");
    }

    // An operator sees the unmatched ones, with the identifier given.
    let (status, list) = app.get("/api/v1/access-requests?status=unmatched").await;
    assert_eq!(status, 200, "{list}");
    let mut unmatched: Vec<&str> = pending_of(&list)
        .iter()
        .map(|r| r["identifier"]["value"].as_str().unwrap())
        .collect();
    unmatched.sort();
    assert_eq!(unmatched, ["MRN-DUP", "NO-SUCH-MRN"]);
    assert!(pending_of(&list).iter().all(|r| r["patient"].is_null()));
}

async fn approval_creates_a_consent_the_decisions_honour(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (client_id, token) = client(&app, "clinician", json!({}), "TREAT", None).await;
    let id = submit(&app, &token, &ask("MRN-1", "TREAT", &["Observation"])).await;
    assert_eq!(
        ask_decision(&app, &client_id, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny",
        "nothing before approval"
    );

    // The patient lists it with who asks, for what and why.
    let pat = app.patient_token("pat");
    let (status, list) = call(
        &app,
        &pat,
        Method::GET,
        "/api/v1/access-requests?status=pending",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let pending = pending_of(&list);
    assert_eq!(pending.len(), 1, "{list}");
    let r = pending[0];
    assert_eq!(
        (
            &r["id"],
            &r["status"],
            &r["client"]["id"],
            &r["client"]["name"],
            &r["client"]["organization"]
        ),
        (
            &json!(id),
            &json!("pending"),
            &json!(client_id),
            &json!("clinician app"),
            &json!("clinician org")
        )
    );
    assert_eq!(
        (&r["purpose"], &r["data_classes"], &r["period"]["start"]),
        (
            &json!("TREAT"),
            &json!(["Observation"]),
            &json!("2020-01-01")
        )
    );
    assert!(r["reason"].as_str().unwrap().starts_with("Follow-up"));
    assert!(r["created"].as_str().unwrap().ends_with('Z'));

    // Only the patient (or an operator) decides, and only their own requests.
    let path = format!("/api/v1/access-requests/{id}/approve");
    let (status, _) = call(&app, &app.patient_token("other"), Method::POST, &path, None).await;
    assert_eq!(
        status, 404,
        "another patient's request is not theirs to see"
    );
    let (status, _) = call(
        &app,
        &app.patient_token("other"),
        Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _) = call(&app, &token, Method::POST, &path, None).await;
    assert_eq!(status, 403, "the recipient cannot approve its own request");

    let (status, approved) = call(
        &app,
        &pat,
        Method::POST,
        &path,
        Some(&json!({"expires": "2099-01-01"})),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    let consent_ref = approved["consent"].as_str().unwrap().to_string();
    assert!(consent_ref.starts_with("Consent/"), "{approved}");

    // The consent is a valid R4 Consent for this client, purpose and class, linked back.
    let (status, consent) = app.get(&format!("/fhir/{consent_ref}")).await;
    assert_eq!(status, 200, "{consent}");
    assert_eq!(
        (&consent["status"], &consent["patient"]["reference"]),
        (&json!("active"), &json!("Patient/pat"))
    );
    let provision = &consent["provision"];
    assert_eq!(provision["type"], "permit");
    assert_eq!(
        provision["actor"][0]["reference"]["reference"],
        json!(format!("Device/{client_id}"))
    );
    assert_eq!(provision["actor"][0]["role"]["coding"][0]["code"], "IRCP");
    assert_eq!(provision["purpose"][0]["code"], "TREAT");
    assert_eq!(
        provision["class"],
        json!([{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}])
    );
    assert_eq!(provision["dataPeriod"], json!({"start": "2020-01-01"}));
    assert_eq!(provision["period"]["end"], "2099-01-01");
    assert_eq!(consent["identifier"][0]["value"], json!(id));
    let (_, search) = app.get("/fhir/Consent?patient=pat").await;
    assert_eq!(search["entry"].as_array().unwrap().len(), 1);

    // The decision engine now permits the requested class, and only that.
    assert_eq!(
        ask_decision(&app, &client_id, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "permit"
    );
    assert_eq!(
        ask_decision(&app, &client_id, "TREAT", "Condition/htn", None)
            .await
            .0,
        "deny",
        "a class not asked for"
    );
    let (other_client, _) = client(&app, "clinician", json!({}), "TREAT", None).await;
    assert_eq!(
        ask_decision(&app, &other_client, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny",
        "another client"
    );

    // Decided once only.
    for action in ["approve", "decline"] {
        let answer = call_full(
            &app,
            &pat,
            Method::POST,
            &format!("/api/v1/access-requests/{id}/{action}"),
            None,
        )
        .await;
        assert_eq!(
            (answer.status, answer.media.as_str()),
            (409, "application/problem+json"),
            "{action}"
        );
        assert_eq!(answer.body["code"], "access_request_not_pending");
    }
    let (status, body) = call(
        &app,
        &token,
        Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    assert_eq!(
        (status, body),
        (200, json!({"id": id, "status": "approved"})),
        "the client learns the status only"
    );
    let (_, list) = call(
        &app,
        &pat,
        Method::GET,
        "/api/v1/access-requests?status=pending",
        None,
    )
    .await;
    assert!(pending_of(&list).is_empty());
    let (_, list) = call(
        &app,
        &pat,
        Method::GET,
        "/api/v1/access-requests?status=approved",
        None,
    )
    .await;
    assert_eq!(pending_of(&list)[0]["consent"], json!(consent_ref));
}

async fn decline_flow(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (client_id, token) = client(&app, "insurer", json!({}), "HPAYMT", None).await;
    let id = submit(
        &app,
        &token,
        &ask("MRN-1", "COVERAGE", &["Observation", "Condition"]),
    )
    .await;
    let pat = app.patient_token("pat");
    let (status, declined) = call(
        &app,
        &pat,
        Method::POST,
        &format!("/api/v1/access-requests/{id}/decline"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{declined}");
    assert_eq!(
        (
            &declined["status"],
            &declined["consent"],
            &declined["decided_by"]
        ),
        (&json!("declined"), &Value::Null, &json!("patient"))
    );
    let (_, body) = call(
        &app,
        &token,
        Method::GET,
        &format!("/api/v1/access-requests/{id}"),
        None,
    )
    .await;
    assert_eq!(body, json!({"id": id, "status": "declined"}));
    let (status, _) = call(
        &app,
        &pat,
        Method::POST,
        &format!("/api/v1/access-requests/{id}/approve"),
        None,
    )
    .await;
    assert_eq!(status, 409);
    let (_, search) = app.get("/fhir/Consent?patient=pat").await;
    assert!(
        search["entry"].as_array().unwrap().is_empty(),
        "no consent: {search}"
    );
    assert_eq!(
        ask_decision(&app, &client_id, "COVERAGE", "Observation/vitals", None)
            .await
            .0,
        "deny"
    );

    // An operator may decide for the patient; an unmatched request cannot be decided.
    let id = submit(&app, &token, &ask("MRN-1", "HPAYMT", &["Observation"])).await;
    let (status, approved) = app
        .post_json(&format!("/api/v1/access-requests/{id}/approve"), &json!({}))
        .await;
    assert_eq!(
        (status, &approved["decided_by"]),
        (200, &json!("operator")),
        "{approved}"
    );
    assert_eq!(
        ask_decision(&app, &client_id, "COVERAGE", "Observation/vitals", None)
            .await
            .0,
        "permit",
        "HPAYMT covers COVERAGE"
    );
    // Two decisions at once: exactly one wins.
    let id = submit(&app, &token, &ask("MRN-1", "HPAYMT", &["Condition"])).await;
    let (approve, decline) = (
        format!("/api/v1/access-requests/{id}/approve"),
        format!("/api/v1/access-requests/{id}/decline"),
    );
    let (a, b) = futures_util::future::join(
        call(&app, &pat, Method::POST, &approve, None),
        call(&app, &pat, Method::POST, &decline, None),
    )
    .await;
    let mut statuses = [a.0, b.0];
    statuses.sort();
    assert_eq!(statuses, [200, 409], "{a:?} {b:?}");
    let unmatched = submit(&app, &token, &ask("NOBODY", "HPAYMT", &["Observation"])).await;
    let (status, _) = app
        .post_json(
            &format!("/api/v1/access-requests/{unmatched}/approve"),
            &json!({}),
        )
        .await;
    assert_eq!(status, 409);
}

async fn invalid_requests_are_refused(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let (_, token) = client(
        &app,
        "clinician",
        json!({"resources": ["Observation"]}),
        "TREAT",
        None,
    )
    .await;
    let long_reason = "x".repeat(1001);
    let mut cases: Vec<(Value, u16, &str)> = vec![
        (
            ask("MRN-1", "HRESCH", &["Observation"]),
            422,
            "purpose_not_allowed",
        ),
        (
            ask("MRN-1", "NOT-A-PURPOSE", &["Observation"]),
            422,
            "unknown_purpose",
        ),
        (
            ask("MRN-1", "TREAT", &["Observations"]),
            422,
            "unknown_data_class",
        ),
        (
            ask("MRN-1", "TREAT", &["Condition"]),
            422,
            "data_class_not_allowed",
        ),
        (ask("MRN-1", "TREAT", &[]), 422, "invalid_data_classes"),
    ];
    let mut bad_period = ask("MRN-1", "TREAT", &["Observation"]);
    bad_period["period"] = json!({"start": "2024-01-01", "end": "2023-01-01"});
    cases.push((bad_period, 422, "invalid_period"));
    let mut bad_date = ask("MRN-1", "TREAT", &["Observation"]);
    bad_date["period"] = json!({"start": "yesterday"});
    cases.push((bad_date, 422, "invalid_period"));
    let mut too_long = ask("MRN-1", "TREAT", &["Observation"]);
    too_long["reason"] = json!(long_reason);
    cases.push((too_long, 422, "invalid_reason"));
    let mut no_reason = ask("MRN-1", "TREAT", &["Observation"]);
    no_reason.as_object_mut().unwrap().remove("reason");
    cases.push((no_reason, 400, "invalid_json"));
    let mut no_system = ask("MRN-1", "TREAT", &["Observation"]);
    no_system["patient"]["identifier"]["system"] = json!("");
    cases.push((no_system, 422, "invalid_identifier"));
    for (body, expected, code) in &cases {
        // A refusal is the same for a known and an unknown patient.
        for mrn in ["MRN-1", "NO-SUCH-MRN"] {
            let mut body = body.clone();
            if body["patient"]["identifier"]["value"].is_string() {
                body["patient"]["identifier"]["value"] = json!(mrn);
            }
            let answer = call_full(
                &app,
                &token,
                Method::POST,
                "/api/v1/access-requests",
                Some(&body),
            )
            .await;
            let problem = &answer.body;
            assert_eq!(
                (
                    answer.status,
                    answer.media.as_str(),
                    problem["code"].as_str()
                ),
                (*expected, "application/problem+json", Some(*code)),
                "{problem}"
            );
        }
    }

    // Who may ask: recipient clients, not patients.
    let (status, _) = call(
        &app,
        &app.patient_token("pat"),
        Method::POST,
        "/api/v1/access-requests",
        Some(&ask("MRN-1", "TREAT", &["Observation"])),
    )
    .await;
    assert_eq!(status, 403);
    let (status, list) = app.get("/api/v1/access-requests").await;
    assert_eq!(
        (status, pending_of(&list).len()),
        (200, 0),
        "nothing was stored: {list}"
    );
    let (status, _) = call(&app, &token, Method::GET, "/api/v1/access-requests", None).await;
    assert_eq!(status, 403, "a client does not list requests");
}

both_backends!(
    answers_do_not_tell_whether_a_patient_exists,
    approval_creates_a_consent_the_decisions_honour,
    decline_flow,
    invalid_requests_are_refused,
);
