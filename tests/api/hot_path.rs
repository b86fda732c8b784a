//! The hot path's caches never outlive a revocation (issue 11): with every cache warm (the
//! token's verified signature, the memoised Cedar decision for the same inputs, pooled
//! connections), a consent revoked or a client removed holds on the very next request, on
//! SQLite and PostgreSQL. (Several instances on one PostgreSQL: `multi_instance.rs`.)

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, acts_as, call, client, consent, get_as, permit, spawn_app};

const CLINIC: &str = "Organization/hp-clinic";
/// The patient who revokes, and one who does not: both ask the same question of Cedar
/// (same role, type, labels, purpose, consent outcome), so the second one's reads prove
/// the memo stays warm while the first one's revocation holds.
const PATIENTS: [&str; 2] = ["hp-revokes", "hp-stays"];

fn observation(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "effectiveDateTime": "2025-02-01",
           "valueQuantity": {"value": 72, "unit": "/min",
                             "system": "http://unitsofmeasure.org", "code": "/min"}})
}

async fn revocation_and_removal_hold_with_caches_warm(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut consent_ids = Vec::new();
    for patient in PATIENTS {
        let (status, body) = app
            .put(
                &format!("/fhir/Patient/{patient}"),
                &json!({"resourceType": "Patient", "id": patient, "gender": "female"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let obs = format!("{patient}-obs");
        let (status, body) = app
            .put(
                &format!("/fhir/Observation/{obs}"),
                &observation(&obs, patient),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            &app,
            &app.patient_token(patient),
            Method::POST,
            "/fhir/Consent",
            Some(&consent(patient, permit(CLINIC, "TREAT"))),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        consent_ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (client_id, token) = client(&app, "clinician", acts_as(CLINIC), "TREAT", None).await;
    let read = |patient: &str| format!("/fhir/Observation/{patient}-obs");
    let search = |patient: &str| format!("/fhir/Observation?patient={patient}&_count=10");
    let found = |page: &Value| page["entry"].as_array().map_or(0, Vec::len);

    // Warm every cache: the token's signature, the decision memo, the pool.
    for _ in 0..3 {
        for patient in PATIENTS {
            let (status, body) = get_as(&app, &token, &read(patient)).await;
            assert_eq!(status, 200, "{body}");
            let (status, page) = get_as(&app, &token, &search(patient)).await;
            assert_eq!((status, found(&page)), (200, 1), "{page}");
        }
    }

    // The first patient revokes: her very next read and search release nothing, while the
    // other patient's identical question is still answered (from the warm memo).
    let (status, body) = call(
        &app,
        &app.patient_token(PATIENTS[0]),
        Method::POST,
        &format!("/fhir/Consent/{}/$revoke", consent_ids[0]),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_as(&app, &token, &read(PATIENTS[0])).await;
    assert_eq!(status, 404, "revoked, hidden like a missing record: {body}");
    let (status, page) = get_as(&app, &token, &search(PATIENTS[0])).await;
    assert_eq!((status, found(&page)), (200, 0), "{page}");
    let (status, body) = get_as(&app, &token, &read(PATIENTS[1])).await;
    assert_eq!(
        status, 200,
        "the other patient's consent still holds: {body}"
    );

    // The operator removes the client: its very next request, with the same cached token,
    // is refused.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/clients/{client_id}")))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    for path in [read(PATIENTS[1]), search(PATIENTS[1])] {
        let (status, body) = get_as(&app, &token, &path).await;
        assert_eq!(status, 401, "{path}: a removed client gets nothing: {body}");
    }
}

both_backends!(revocation_and_removal_hold_with_caches_warm);
