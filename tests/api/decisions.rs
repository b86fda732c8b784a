//! The patient decides: consents through the API, and the decision API answering scenarios
//! written from DESIGN.md section 4 (not from the code). Each runs on SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    ACT_CODE, Backend, ClientKey, TestApp, actor, acts_as, ask_decision, consent, fixtures, label,
    load_records, purpose, register, spawn_app, test_settings,
};

async fn post_consent(app: &TestApp, c: &Value) -> String {
    let (status, body) = app.post("/fhir/Consent", c).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

async fn decision_scenarios(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    // The labeller found the sensitive items at ingest.
    let (_, hiv) = app.get("/fhir/Condition/hiv").await;
    let labels: Vec<&str> = hiv["meta"]["security"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(
        labels.contains(&"HIV") && labels.contains(&"R"),
        "{labels:?}"
    );
    let clinic = register(
        &app,
        "clinician",
        ClientKey::ed25519("k").jwks(),
        acts_as("Organization/clinic"),
    )
    .await;
    let other_clinic = register(
        &app,
        "clinician",
        ClientKey::ed25519("k").jwks(),
        acts_as("Organization/elsewhere"),
    )
    .await;
    let researcher = register(
        &app,
        "researcher",
        ClientKey::ed25519("k").jwks(),
        acts_as("Group/study1"),
    )
    .await;
    let insurer = register(
        &app,
        "insurer",
        ClientKey::ed25519("k").jwks(),
        acts_as("Organization/insurer"),
    )
    .await;

    // No consent: nothing leaves.
    let (d, _, answer) = ask_decision(&app, &clinic, "TREAT", "Observation/vitals", None).await;
    assert_eq!(d, "deny");
    assert_eq!(answer["consent"]["decision"], "not_applicable");
    assert!(
        answer["explanation"][0]
            .as_str()
            .unwrap()
            .contains("None of your consents")
    );

    // A consent for the clinic to treat.
    let treat = post_consent(&app, &consent("pat", json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}))).await;
    assert_eq!(
        ask_decision(&app, &clinic, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "permit"
    );
    assert_eq!(
        ask_decision(&app, &other_clinic, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny",
        "another actor"
    );
    // Purpose hierarchy: consent to TREAT covers ETREAT, not the other way round.
    assert_eq!(
        ask_decision(&app, &clinic, "ETREAT", "Observation/vitals", None)
            .await
            .0,
        "permit"
    );
    // A sensitive label leaves only when the consent names it.
    let (d, _, answer) = ask_decision(&app, &clinic, "TREAT", "Condition/hiv", None).await;
    assert_eq!(d, "deny", "{answer}");
    assert!(answer["explanation"].to_string().contains("HIV"));

    // Revocation holds from the next request.
    let (status, _) = app
        .post(&format!("/fhir/Consent/{treat}/$revoke"), &json!({}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(
        ask_decision(&app, &clinic, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny"
    );

    // An expired period does not apply.
    post_consent(&app, &consent("pat", json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
        "period": {"start": "2020-01-01", "end": "2021-01-01"}}))).await;
    assert_eq!(
        ask_decision(&app, &clinic, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny"
    );

    // A permit naming HIV, with a deny exception for GDIS (genetics).
    post_consent(&app, &consent("pat", json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
        "securityLabel": [{"system": ACT_CODE, "code": "HIV"}, {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "provision": [{"type": "deny", "securityLabel": label("GDIS")}]}))).await;
    let (d, _, answer) = ask_decision(&app, &clinic, "TREAT", "Condition/hiv", None).await;
    assert_eq!(d, "permit", "{answer}");
    assert_eq!(
        ask_decision(&app, &clinic, "TREAT", "Observation/brca", None)
            .await
            .0,
        "deny",
        "the deny exception for the label"
    );

    // Two consents that disagree: deny wins.
    post_consent(
        &app,
        &consent(
            "pat",
            json!({"type": "deny", "actor": actor("Organization/clinic"),
        "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]}),
        ),
    )
    .await;
    assert_eq!(
        ask_decision(&app, &clinic, "TREAT", "Condition/hiv", None)
            .await
            .0,
        "deny"
    );

    // Break-glass: a clinician with no consent at all, with and without a justification.
    let (d, obligations, _) = ask_decision(
        &app,
        &other_clinic,
        "ETREAT",
        "Observation/vitals",
        Some("unconscious in the ER"),
    )
    .await;
    assert_eq!(d, "permit");
    assert!(
        obligations.contains(&"audit:break-glass".to_string())
            && obligations.contains(&"notify:patient".to_string()),
        "{obligations:?}"
    );
    assert_eq!(
        ask_decision(&app, &other_clinic, "ETREAT", "Observation/vitals", None)
            .await
            .0,
        "deny",
        "no justification, no break-glass"
    );
    // ... and after the patient opts out of emergency access.
    post_consent(
        &app,
        &consent("pat", json!({"type": "deny", "purpose": purpose("ETREAT")})),
    )
    .await;
    let (d, _, answer) = ask_decision(
        &app,
        &other_clinic,
        "ETREAT",
        "Observation/vitals",
        Some("unconscious in the ER"),
    )
    .await;
    assert_eq!(d, "deny", "{answer}");
    assert_eq!(answer["emergency_opt_out"], true);

    // Researchers get de-identified data.
    post_consent(
        &app,
        &consent(
            "pat",
            json!({"type": "permit", "actor": actor("Group/study1"), "purpose": purpose("HRESCH")}),
        ),
    )
    .await;
    let (d, obligations, _) =
        ask_decision(&app, &researcher, "CLINTRCH", "Observation/vitals", None).await;
    assert_eq!(d, "permit", "HRESCH covers CLINTRCH");
    assert!(
        obligations.contains(&"deidentify:safe-harbor".to_string()),
        "{obligations:?}"
    );
    assert_eq!(
        ask_decision(&app, &researcher, "TREAT", "Observation/vitals", None)
            .await
            .0,
        "deny",
        "a researcher may not treat"
    );

    // An insurer asking for a genetic test the consent does not name.
    post_consent(&app, &consent("pat", json!({"type": "permit", "actor": actor("Organization/insurer"), "purpose": purpose("HPAYMT")}))).await;
    let (d, obligations, _) =
        ask_decision(&app, &insurer, "COVERAGE", "Observation/vitals", None).await;
    assert_eq!(d, "permit");
    assert!(
        obligations.contains(&"minimum-necessary".to_string()),
        "{obligations:?}"
    );
    assert_eq!(
        ask_decision(&app, &insurer, "COVERAGE", "Observation/brca", None)
            .await
            .0,
        "deny",
        "genetic test not named"
    );
    post_consent(&app, &consent("pat", json!({"type": "permit", "actor": actor("Organization/insurer"), "purpose": purpose("HPAYMT"),
        "securityLabel": [{"system": ACT_CODE, "code": "GDIS"}, {"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}]}))).await;
    assert_eq!(
        ask_decision(&app, &insurer, "COVERAGE", "Observation/brca", None)
            .await
            .0,
        "permit",
        "genetic test named"
    );

    // Attributes of a resource not yet stored are labelled and decided the same way.
    let (status, answer) = app.post_json("/api/v1/decisions", &json!({"client_id": clinic, "purpose": "TREAT", "patient": "pat",
        "resource": {"attributes": {"resourceType": "Condition", "id": "new", "subject": {"reference": "Patient/pat"},
            "code": {"coding": [{"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "F10.20"}]}}}})).await;
    assert_eq!(
        (status, answer["decision"].as_str()),
        (200, Some("deny")),
        "substance use (ETH) never named: {answer}"
    );
}

async fn consents_api(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    // Each defect is one issue.
    let mut bad = consent(
        "pat",
        json!({"type": "sometimes", "period": {"start": "2022-01-01", "end": "2021-01-01"}}),
    );
    bad["status"] = json!("maybe");
    let (status, outcome) = app.post("/fhir/Consent", &bad).await;
    assert_eq!(status, 422, "{outcome}");
    assert!(outcome["issue"].as_array().unwrap().len() >= 3, "{outcome}");
    assert!(
        outcome["issue"]
            .as_array()
            .unwrap()
            .iter()
            .all(|i| i["expression"][0].as_str().unwrap().starts_with("Consent"))
    );

    // A patient manages their own consents only.
    let token = app.patient_token("pat");
    let mine = consent(
        "pat",
        json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
    );
    let (status, created) = app
        .send_as(&token, reqwest::Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap().to_string();
    let (status, _) = app
        .send_as(
            &token,
            reqwest::Method::POST,
            "/fhir/Consent",
            Some(&consent("someone-else", json!({"type": "permit"}))),
        )
        .await;
    assert_eq!(status, 403);
    // Versions are kept; revocation is a new version with status inactive.
    let mut changed = created.clone();
    changed["provision"]["purpose"] = purpose("ETREAT");
    let (status, v2) = app
        .send_as(
            &token,
            reqwest::Method::PUT,
            &format!("/fhir/Consent/{id}"),
            Some(&changed),
        )
        .await;
    assert_eq!(
        (status, v2["meta"]["versionId"].as_str()),
        (200, Some("2")),
        "{v2}"
    );
    let (status, revoked) = app
        .send_as(
            &token,
            reqwest::Method::POST,
            &format!("/fhir/Consent/{id}/$revoke"),
            None,
        )
        .await;
    assert_eq!(
        (
            status,
            revoked["status"].as_str(),
            revoked["meta"]["versionId"].as_str()
        ),
        (200, Some("inactive"), Some("3"))
    );
    let (_, v1) = app.get(&format!("/fhir/Consent/{id}/_history/1")).await;
    assert_eq!(v1["status"], "active");
    // Search by status, actor and purpose.
    post_consent(
        &app,
        &consent(
            "pat",
            json!({"type": "permit", "actor": actor("Group/study1"), "purpose": purpose("HRESCH")}),
        ),
    )
    .await;
    let count = |bundle: Value| bundle["entry"].as_array().map_or(0, Vec::len);
    assert_eq!(
        count(
            app.send_as(
                &token,
                reqwest::Method::GET,
                "/fhir/Consent?status=active",
                None
            )
            .await
            .1
        ),
        1
    );
    assert_eq!(
        count(
            app.send_as(
                &token,
                reqwest::Method::GET,
                "/fhir/Consent?actor=Group/study1",
                None
            )
            .await
            .1
        ),
        1
    );
    assert_eq!(
        count(
            app.send_as(
                &token,
                reqwest::Method::GET,
                "/fhir/Consent?purpose=CLINTRCH",
                None
            )
            .await
            .1
        ),
        1,
        "HRESCH covers CLINTRCH"
    );
    assert_eq!(
        count(
            app.send_as(&token, reqwest::Method::GET, "/fhir/Consent", None)
                .await
                .1
        ),
        2
    );
    assert_eq!(
        app.send_as(
            &token,
            reqwest::Method::GET,
            "/fhir/Consent?patient=someone-else",
            None
        )
        .await
        .0,
        403
    );

    // The twelve official examples load.
    let mut loaded = Vec::new();
    for entry in std::fs::read_dir(fixtures().join("hl7-r4-examples")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if !name.starts_with("Consent-") {
            continue;
        }
        let mut example: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        example.as_object_mut().unwrap().remove("id");
        let (status, body) = app.post("/fhir/Consent", &example).await;
        assert_eq!(status, 201, "{name}: {body}");
        loaded.push(name);
    }
    assert_eq!(loaded.len(), 12, "{loaded:?}");
}

/// A policy that does not validate stops start-up, naming the file and line.
#[actix_web::test]
async fn startup_refuses_an_invalid_policy() {
    let dir = tempfile::tempdir().unwrap();
    let policies = dir.path().join("policies");
    std::fs::create_dir_all(&policies).unwrap();
    let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies");
    for file in std::fs::read_dir(&shipped).unwrap() {
        let path = file.unwrap().path();
        if path.is_file() {
            std::fs::copy(&path, policies.join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(
        policies.join("broken.cedar"),
        "// a typo in an attribute name\n@id(\"broken\")\npermit(principal, action, resource)\nwhen { principal.rank == \"high\" };\n",
    )
    .unwrap();
    let url = format!("sqlite://{}/db.sqlite", dir.path().display());
    let settings = test_settings(
        dir.path(),
        &url,
        &[("CONSENTGATE__POLICIES__DIR", policies.to_str().unwrap())],
    );
    let err = consentgate::startup::Application::build(settings)
        .err()
        .expect("start-up must fail");
    let text = format!("{err:#}");
    assert!(text.contains("broken.cedar:4"), "{text}");
    // The shipped folder itself is valid.
    let ok = test_settings(
        dir.path(),
        &url,
        &[("CONSENTGATE__POLICIES__DIR", shipped.to_str().unwrap())],
    );
    if let Err(e) = consentgate::startup::Application::build(ok) {
        panic!("the shipped policies start: {e:#}");
    }
}

both_backends!(decision_scenarios, consents_api);
