//! What a recipient gets, and what the patient's access log says it got (issue 9): the log
//! entry of a release lists exactly the resources the response carried, even when shaping
//! withholds some of the permitted ones (a researcher's de-identification drops every
//! resource type the Safe Harbor profile does not list). Each case runs on SQLite and
//! PostgreSQL.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, acts_as, client, consent_in_scope, decode, permit, request, spawn_app,
};

const PATIENT: &str = "rel-pat";
const STUDY: &str = "Group/rel-study";

/// The patient's records: types the Safe Harbor profile lists (Patient, Observation,
/// Condition) and one it does not (FamilyMemberHistory), one resource of each type, so a
/// de-identified resource (whose id is a pseudonym) is known by its type.
fn records() -> Vec<Value> {
    let subject = json!({"reference": format!("Patient/{PATIENT}")});
    vec![
        json!({"resourceType": "Patient", "id": PATIENT, "gender": "female",
               "birthDate": "1970-04-02", "name": [{"family": "Quillfeather", "given": ["Odile"]}]}),
        json!({"resourceType": "Observation", "id": "rel-obs", "status": "final",
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
               "subject": subject, "effectiveDateTime": "2025-02-01",
               "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        json!({"resourceType": "Condition", "id": "rel-cond",
               "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]},
               "subject": subject, "onsetDateTime": "2024-06-01"}),
        json!({"resourceType": "FamilyMemberHistory", "id": "rel-fmh", "status": "completed",
               "patient": subject,
               "relationship": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": "MTH"}]}}),
    ]
}

/// A GET with `token`, tagged with `request_id` so its audit entry can be found.
async fn get_tagged(app: &TestApp, token: &str, path: &str, request_id: &str) -> (u16, Value) {
    let resp = request(app, token, Method::GET, path)
        .header("x-request-id", request_id)
        .send()
        .await
        .expect("request is answered");
    decode(resp).await
}

/// The source `Type/id` of each resource in a searchset. Every type appears once in
/// [`records`], so a de-identified resource maps back to its source by type.
fn sources_of(bundle: &Value) -> BTreeSet<String> {
    let by_type: Vec<(String, String)> = records()
        .iter()
        .map(|r| {
            let ty = r["resourceType"].as_str().unwrap().to_string();
            let reference = format!("{ty}/{}", r["id"].as_str().unwrap());
            (ty, reference)
        })
        .collect();
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let ty = e["resource"]["resourceType"].as_str().unwrap();
            by_type
                .iter()
                .find(|(t, _)| t == ty)
                .unwrap_or_else(|| panic!("{ty} was never stored"))
                .1
                .clone()
        })
        .collect()
}

/// The access log's entries for `request_id`, as (listed resources, listed type counts).
fn logged(log: &Value, request_id: &str) -> Vec<(BTreeSet<String>, Value)> {
    log["disclosures"]
        .as_array()
        .expect("disclosures")
        .iter()
        .filter(|d| d["request_id"] == request_id)
        .map(|d| {
            let resources = d["disclosed"]["resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r.as_str().unwrap().to_string())
                .collect();
            (resources, d["disclosed"]["resource_types"].clone())
        })
        .collect()
}

async fn access_log_lists_what_left(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for r in records() {
        let path = format!(
            "/fhir/{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        let (status, body) = app.put(&path, &r).await;
        assert_eq!(status, 201, "{path}: {body}");
    }
    let patient = app.patient_token(PATIENT);
    // The patient consents: the study may use the records for healthcare research.
    let (status, consent) = app
        .send_as(
            &patient,
            Method::POST,
            "/fhir/Consent",
            Some(&consent_in_scope(
                "research",
                PATIENT,
                permit(STUDY, "HRESCH"),
            )),
        )
        .await;
    assert_eq!(status, 201, "{consent}");
    let (_, token) = client(&app, "researcher", acts_as(STUDY), "HRESCH", None).await;

    // $everything: the profile's types leave de-identified; FamilyMemberHistory does not.
    let (status, everything) = get_tagged(
        &app,
        &token,
        &format!("/fhir/Patient/{PATIENT}/$everything"),
        "rel-everything",
    )
    .await;
    assert_eq!(status, 200, "{everything}");
    let sent = sources_of(&everything);
    assert_eq!(
        sent,
        BTreeSet::from([
            format!("Patient/{PATIENT}"),
            "Observation/rel-obs".to_string(),
            "Condition/rel-cond".to_string(),
        ]),
        "the de-identified record, without the type the profile refuses"
    );
    assert!(
        everything["entry"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["resource"]["id"] != PATIENT && e["resource"].get("name").is_none()),
        "de-identified: {everything}"
    );

    // A search of the refused type answers an empty page.
    let (status, search) = get_tagged(
        &app,
        &token,
        &format!("/fhir/FamilyMemberHistory?patient={PATIENT}"),
        "rel-search-fmh",
    )
    .await;
    assert_eq!(status, 200, "{search}");
    assert!(sources_of(&search).is_empty(), "{search}");

    // A search of an allowed type sends it.
    let (status, observations) = get_tagged(
        &app,
        &token,
        &format!("/fhir/Observation?patient={PATIENT}"),
        "rel-search-obs",
    )
    .await;
    assert_eq!(status, 200, "{observations}");
    let sent_observations = sources_of(&observations);
    assert_eq!(
        sent_observations,
        BTreeSet::from(["Observation/rel-obs".to_string()])
    );

    // A read of the refused type answers like a missing resource.
    let (status, read) = get_tagged(
        &app,
        &token,
        "/fhir/FamilyMemberHistory/rel-fmh",
        "rel-read-fmh",
    )
    .await;
    assert_eq!(status, 404, "{read}");

    // The patient's access log: each release lists exactly what its response carried.
    let (status, log) = get_tagged(
        &app,
        &patient,
        &format!("/api/v1/patients/{PATIENT}/access-log?_count=100"),
        "rel-log",
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let everything_entries = logged(&log, "rel-everything");
    assert_eq!(everything_entries.len(), 1, "{log}");
    assert_eq!(
        everything_entries[0].0, sent,
        "the $everything entry lists what left, no more"
    );
    assert_eq!(
        everything_entries[0].1,
        json!({"Condition": 1, "Observation": 1, "Patient": 1})
    );
    for (resources, _) in logged(&log, "rel-search-fmh") {
        assert!(
            resources.is_empty(),
            "nothing left, so nothing is listed: {resources:?}"
        );
    }
    let observation_entries = logged(&log, "rel-search-obs");
    assert_eq!(observation_entries.len(), 1, "{log}");
    assert_eq!(observation_entries[0].0, sent_observations);
    assert!(
        logged(&log, "rel-read-fmh").is_empty(),
        "a refused read is no disclosure"
    );
    let everywhere: BTreeSet<&str> = log["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["disclosed"]["resources"].as_array().unwrap())
        .filter_map(Value::as_str)
        .collect();
    assert!(
        !everywhere.contains("FamilyMemberHistory/rel-fmh"),
        "never sent, never listed: {log}"
    );
}

both_backends!(access_log_lists_what_left);
