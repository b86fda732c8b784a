//! The flows consentgate exists for, end to end over TLS with real signed tokens, on the
//! Synthea fixtures: a revoked clinician gets nothing on the next request; hidden records
//! are indistinguishable from missing ones; break-glass works, is flagged and respects an
//! opt-out; an insurer gets the minimum necessary.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    ACT_REASON, Backend, ClientKey, TestApp, acts_as, assertion_claims, call, client, consent,
    get_as, load_synthea, permit, register, request_token, resources_of, spawn_app,
};

/// Carolee Sanford: no sensitive record.
const PATIENT: &str = "d88f994a-5efa-421d-9c40-5f116d2114a6";
/// Luisa Carranza, whose one sensitive Condition is a miscarriage (labelled SEX at ingest).
const LUISA: &str = "2feb4fc9-0b59-4d72-bc87-aafcf11083d9";
const MISCARRIAGE: &str = "78dca8ed-e09d-4a6a-ac8b-3c4ace6c2515";

/// Every resource of a recipient's paged search, following `next` links; a recipient's page
/// never carries a total (it would count hidden records).
async fn recipient_search(app: &TestApp, token: &str, path: &str) -> Vec<Value> {
    let pages = app.search_pages_as(token, path).await;
    for page in &pages {
        assert!(page.get("total").is_none(), "no total: {page}");
    }
    resources_of(&pages)
}

/// A FHIR resource posted by the patient `patient`.
async fn post_as_patient(app: &TestApp, patient: &str, path: &str, body: &Value) -> (u16, Value) {
    app.send_as(&app.patient_token(patient), Method::POST, path, Some(body))
        .await
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
    let (_, token) = client(
        &app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await;

    // Before any consent: nothing, and a read answers like a missing record.
    assert!(
        recipient_search(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty()
    );
    let (status, hidden) = get_as(&app, &token, &format!("/fhir/Patient/{PATIENT}")).await;
    let (missing_status, missing) = get_as(&app, &token, "/fhir/Patient/no-such-patient").await;
    assert_eq!((status, missing_status), (404, 404));
    assert_eq!(
        hidden["issue"][0]["details"]["coding"],
        missing["issue"][0]["details"]["coding"]
    );

    // The patient consents to treatment by the clinic.
    let (status, created) = post_as_patient(
        &app,
        PATIENT,
        "/fhir/Consent",
        &consent(PATIENT, permit("Organization/clinic", "TREAT")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let consent_id = created["id"].as_str().unwrap().to_string();
    let all = app
        .search_all(&format!("/fhir/Observation?patient={PATIENT}&_count=100"))
        .await;
    let seen = recipient_search(
        &app,
        &token,
        &format!("/fhir/Observation?patient={PATIENT}&_count=7"),
    )
    .await;
    assert_eq!(ids(&seen), ids(&all), "every observation, paged");
    assert_eq!(
        get_as(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
            .await
            .0,
        200
    );

    // Sensitive records stay hidden, in reads and in searches, pages and links included:
    // Luisa consents to the clinic too, and her miscarriage (labelled SEX, which her consent
    // does not name) stays out.
    let (status, created) = post_as_patient(
        &app,
        LUISA,
        "/fhir/Consent",
        &consent(LUISA, permit("Organization/clinic", "TREAT")),
    )
    .await;
    assert_eq!(status, 201, "{created}");
    let conditions = app
        .search_all(&format!("/fhir/Condition?patient={LUISA}&_count=100"))
        .await;
    let sensitive: Vec<Value> = conditions
        .iter()
        .filter(|c| c["meta"]["security"].is_array())
        .cloned()
        .collect();
    assert_eq!(ids(&sensitive), [MISCARRIAGE], "the one labelled Condition");
    let labels = &sensitive[0]["meta"]["security"];
    assert!(
        labels
            .as_array()
            .unwrap()
            .iter()
            .any(|l| l["code"] == "SEX"),
        "{labels}"
    );
    let visible = recipient_search(
        &app,
        &token,
        &format!("/fhir/Condition?patient={LUISA}&_count=1"),
    )
    .await;
    assert!(!visible.is_empty(), "her other conditions are shared");
    assert_eq!(visible.len(), conditions.len() - 1);
    assert!(
        visible.iter().all(|c| c["id"] != MISCARRIAGE),
        "not in any page"
    );
    let (status, hidden) = get_as(&app, &token, &format!("/fhir/Condition/{MISCARRIAGE}")).await;
    let (_, missing) = get_as(&app, &token, "/fhir/Condition/no-such-condition").await;
    assert_eq!(status, 404, "{hidden}");
    assert_eq!(
        hidden["issue"][0]["details"]["coding"],
        missing["issue"][0]["details"]["coding"]
    );
    for unsupported in [
        "_include=Condition:subject",
        "_revinclude=Provenance:target",
        "_summary=count",
        "_elements=id",
        "_total=accurate",
    ] {
        let (status, _) = get_as(
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
    let (status, revoked) = call(
        &app,
        &patient_token,
        Method::POST,
        &format!("/fhir/Consent/{consent_id}/$revoke"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert!(
        recipient_search(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty()
    );
    assert_eq!(
        get_as(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
            .await
            .0,
        404
    );
    assert_eq!(
        get_as(
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
        acts_as("Organization/er"),
        "ETREAT",
        Some("unconscious, no ID, allergy check"),
    )
    .await;
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).unwrap();
    assert!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap() <= 120,
        "time-boxed: {claims}"
    );
    let allergies = recipient_search(
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
        post_as_patient(&app, PATIENT, "/fhir/Consent", &opt_out)
            .await
            .0,
        201
    );
    assert!(
        recipient_search(
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
    // Synthea's Conditions carry no narrative; one that does shows minimum necessary at work
    // (and that its stored text, which has it, is not what leaves).
    let noted = json!({"resourceType": "Condition", "id": "noted-condition",
        "subject": {"reference": format!("Patient/{PATIENT}")},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">Hypertension, per the notes</div>"},
        "note": [{"text": "free text the insurer must not get"}]});
    assert_eq!(
        app.put("/fhir/Condition/noted-condition", &noted).await.0,
        201
    );
    let (_, token) = client(
        &app,
        "insurer",
        acts_as("Organization/insurer"),
        "COVERAGE",
        None,
    )
    .await;
    let mut provision = permit("Organization/insurer", "HPAYMT");
    provision["class"] =
        json!([{"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}]);
    assert_eq!(
        post_as_patient(&app, PATIENT, "/fhir/Consent", &consent(PATIENT, provision))
            .await
            .0,
        201
    );
    let conditions =
        recipient_search(&app, &token, &format!("/fhir/Condition?patient={PATIENT}")).await;
    assert!(!conditions.is_empty());
    assert!(
        conditions.iter().all(|c| c.get("text").is_none()
            && c.get("note").is_none()
            && c["meta"]["security"].is_null()),
        "no narrative, no note, no sensitive label"
    );
    assert!(ids(&conditions).contains(&"noted-condition".to_string()));
    let (status, read) = get_as(&app, &token, "/fhir/Condition/noted-condition").await;
    assert_eq!(status, 200, "{read}");
    assert!(
        read.get("text").is_none() && read.get("note").is_none(),
        "{read}"
    );
    assert_eq!(read["code"], noted["code"]);
    assert!(
        recipient_search(
            &app,
            &token,
            &format!("/fhir/Observation?patient={PATIENT}")
        )
        .await
        .is_empty(),
        "only what the consent names"
    );
    assert_eq!(
        get_as(&app, &token, &format!("/fhir/Patient/{PATIENT}"))
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
