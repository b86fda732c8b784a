//! The flows consentgate exists for, end to end over TLS with real signed tokens, on the
//! Synthea fixtures: a revoked clinician gets nothing on the next request; hidden records
//! are indistinguishable from missing ones; break-glass works, is flagged and respects an
//! opt-out; an insurer gets the minimum necessary.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, decode, fixture, spawn_app, synthea_files};
use crate::identity::{ClientKey, assertion_claims, register, request_token};

const PATIENT: &str = "d88f994a-5efa-421d-9c40-5f116d2114a6";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

async fn load_synthea(app: &TestApp) {
    for path in synthea_files() {
        let bundle = fixture(&format!(
            "synthea/{}",
            path.file_name().unwrap().to_string_lossy()
        ));
        let (status, body) = app.post("/fhir", &bundle).await;
        assert_eq!(status, 200, "{body}");
    }
}

fn consent(patient: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-11-01",
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": provision,
    })
}

fn permit(actor: &str, purpose: &str) -> Value {
    json!({"type": "permit",
        "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": actor}}],
        "purpose": [{"system": ACT_REASON, "code": purpose}]})
}

/// A registered client with a token for `purpose`.
async fn client(
    app: &TestApp,
    role: &str,
    acts_as: &str,
    purpose: &str,
    justification: Option<&str>,
) -> (String, String) {
    let key = ClientKey::ed25519("k");
    let id = register(app, role, key.jwks(), json!({"acts_as": [acts_as]})).await;
    let assertion = key.sign(&assertion_claims(app, &id), Some("k"));
    let mut form = vec![("scope", "system/*.rs"), ("purpose_of_use", purpose)];
    if let Some(j) = justification {
        form.push(("justification", j));
    }
    let (status, body) = request_token(app, &assertion, &form).await;
    assert_eq!(status, 200, "{body}");
    (id, body["access_token"].as_str().unwrap().to_string())
}

async fn as_client(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    decode(
        app.client
            .get(app.url(path))
            .bearer_auth(token)
            .send()
            .await
            .unwrap(),
    )
    .await
}

/// Every resource of a paged search, following `next` links.
async fn search_all(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let mut out = Vec::new();
    let mut next = Some(app.url(path));
    while let Some(url) = next.take() {
        let (status, bundle) = decode(
            app.client
                .get(&url)
                .bearer_auth(token)
                .send()
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 200, "{bundle}");
        assert!(bundle.get("total").is_none(), "no total");
        out.extend(
            bundle["entry"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|e| e["resource"].clone()),
        );
        next = bundle["link"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["relation"] == "next")
            .and_then(|l| l["url"].as_str())
            .map(str::to_string);
    }
    out
}

async fn post_as_patient(app: &TestApp, path: &str, body: &Value) -> (u16, Value) {
    let token = app.patient_token(PATIENT);
    let req = app
        .client
        .post(app.url(path))
        .bearer_auth(&token)
        .header("content-type", "application/fhir+json")
        .body(body.to_string());
    decode(req.send().await.unwrap()).await
}

fn ids(resources: &[Value]) -> Vec<String> {
    let mut ids: Vec<String> = resources
        .iter()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect();
    ids.sort();
    ids
}

async fn revoked_clinician_gets_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_synthea(&app).await;
    let (_, token) = client(&app, "clinician", "Organization/clinic", "TREAT", None).await;

    // Before any consent: nothing, and a read answers like a missing record.
    assert!(
        search_all(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty()
    );
    let (status, hidden) = as_client(&app, &token, &format!("/fhir/Patient/{PATIENT}")).await;
    let (missing_status, missing) = as_client(&app, &token, "/fhir/Patient/no-such-patient").await;
    assert_eq!((status, missing_status), (404, 404));
    assert_eq!(
        hidden["issue"][0]["details"]["coding"],
        missing["issue"][0]["details"]["coding"]
    );

    // The patient consents to treatment by the clinic.
    let (status, created) = post_as_patient(
        &app,
        "/fhir/Consent",
        &consent(PATIENT, permit("Organization/clinic", "TREAT")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let consent_id = created["id"].as_str().unwrap().to_string();
    let all = app
        .search_all(&format!("/fhir/Observation?patient={PATIENT}&_count=100"))
        .await;
    let seen = search_all(
        &app,
        &token,
        &format!("/fhir/Observation?patient={PATIENT}&_count=7"),
    )
    .await;
    assert_eq!(ids(&seen), ids(&all), "every observation, paged");
    assert_eq!(
        as_client(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
            .await
            .0,
        200
    );

    // Sensitive records stay hidden, in reads and in searches, pages and links included.
    let conditions = app
        .search_all(&format!("/fhir/Condition?patient={PATIENT}&_count=100"))
        .await;
    let sensitive: Vec<&Value> = conditions
        .iter()
        .filter(|c| c["meta"]["security"].is_array())
        .collect();
    let visible = search_all(
        &app,
        &token,
        &format!("/fhir/Condition?patient={PATIENT}&_count=1"),
    )
    .await;
    assert_eq!(visible.len(), conditions.len() - sensitive.len());
    for s in &sensitive {
        let (status, body) = as_client(
            &app,
            &token,
            &format!("/fhir/Condition/{}", s["id"].as_str().unwrap()),
        )
        .await;
        assert_eq!(status, 404, "{body}");
    }
    for unsupported in [
        "_include=Condition:subject",
        "_revinclude=Provenance:target",
        "_summary=count",
        "_elements=id",
        "_total=accurate",
    ] {
        let (status, _) = as_client(
            &app,
            &token,
            &format!("/fhir/Condition?patient={PATIENT}&{unsupported}"),
        )
        .await;
        assert_eq!(
            status, 400,
            "{unsupported} is refused rather than half-honoured"
        );
    }

    // Revocation: the very next request with the same token gets nothing.
    let patient_token = app.patient_token(PATIENT);
    let resp = app
        .client
        .post(app.url(&format!("/fhir/Consent/{consent_id}/$revoke")))
        .bearer_auth(&patient_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert!(
        search_all(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty()
    );
    assert_eq!(
        as_client(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
            .await
            .0,
        404
    );
    assert_eq!(
        as_client(
            &app,
            &token,
            &format!("/fhir/Patient/{PATIENT}/$everything")
        )
        .await
        .0,
        404
    );

    // The revocation and the reads are in the audit log.
    let store = consentgate::store::Store::open(&app.settings).unwrap();
    let mut conn = store.conn().unwrap();
    let entries = consentgate::store::audit::entries_from(&mut conn, 0, 10_000).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.action == "revoke" && e.patient_id.as_deref() == Some(PATIENT))
    );
    assert!(entries.iter().any(|e| e.action == "search"
        && e.patient_id.as_deref() == Some(PATIENT)
        && e.body.contains(&consent_id)));
}

async fn break_glass(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_synthea(&app).await;
    // No justification, no emergency token.
    let key = ClientKey::ed25519("k");
    let id = register(&app, "clinician", key.jwks(), json!({})).await;
    let (status, _) = request_token(
        &app,
        &key.sign(&assertion_claims(&app, &id), Some("k")),
        &[("scope", "system/*.rs"), ("purpose_of_use", "ETREAT")],
    )
    .await;
    assert_eq!(status, 400);
    // With one, the clinician reads without any consent; the token is time-boxed.
    let (_, token) = client(
        &app,
        "clinician",
        "Organization/er",
        "ETREAT",
        Some("unconscious, no ID, allergy check"),
    )
    .await;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120,
        "time-boxed: {claims}"
    );
    let allergies = search_all(
        &app,
        &token,
        &format!("/fhir/Observation?patient={PATIENT}&_count=50"),
    )
    .await;
    assert!(!allergies.is_empty());
    let store = consentgate::store::Store::open(&app.settings).unwrap();
    let mut conn = store.conn().unwrap();
    let entries = consentgate::store::audit::entries_from(&mut conn, 0, 10_000).unwrap();
    assert!(
        entries
            .iter()
            .any(|e| e.patient_id.as_deref() == Some(PATIENT)
                && e.body
                    .contains("\"break_glass\":\"unconscious, no ID, allergy check\"")),
        "flagged in the audit log"
    );
    // The patient opts out of emergency access: the next emergency request gets nothing.
    let opt_out = consent(
        PATIENT,
        json!({"type": "deny", "purpose": [{"system": ACT_REASON, "code": "ETREAT"}]}),
    );
    assert_eq!(
        post_as_patient(&app, "/fhir/Consent", &opt_out).await.0,
        201
    );
    assert!(
        search_all(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty()
    );
}

async fn insurer_minimum_necessary(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_synthea(&app).await;
    let (_, token) = client(&app, "insurer", "Organization/insurer", "COVERAGE", None).await;
    let mut provision = permit("Organization/insurer", "HPAYMT");
    provision["class"] =
        json!([{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]);
    assert_eq!(
        post_as_patient(&app, "/fhir/Consent", &consent(PATIENT, provision))
            .await
            .0,
        201
    );
    let conditions = search_all(&app, &token, &format!("/fhir/Condition?patient={PATIENT}")).await;
    assert!(!conditions.is_empty());
    assert!(
        conditions
            .iter()
            .all(|c| c.get("text").is_none() && c["meta"]["security"].is_null()),
        "no narrative, no sensitive label"
    );
    assert!(
        search_all(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty(),
        "only what the consent names"
    );
    assert_eq!(
        as_client(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
            .await
            .0,
        404
    );
}

both_backends!(
    revoked_clinician_gets_nothing,
    break_glass,
    insurer_minimum_necessary
);
