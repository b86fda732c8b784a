//! Test data: records put through a transaction Bundle, the Synthea fixtures, and Consents
//! built the way a patient's app would write them.

use serde_json::{Value, json};

use super::{TestApp, fixture, synthea_files};

/// `http://terminology.hl7.org/CodeSystem/v3-ActCode` (policy rules, sensitivity labels).
pub const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// `http://terminology.hl7.org/CodeSystem/v3-ActReason` (purposes of use).
pub const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
/// The identifier system of the medical record numbers in [`load_records`].
pub const MRN: &str = "http://hospital.example/mrn";

/// A transaction entry that puts `body` as `{ty}/{id}`.
pub fn entry(ty: &str, id: &str, body: Value) -> Value {
    let mut resource = body;
    resource["resourceType"] = json!(ty);
    resource["id"] = json!(id);
    json!({"resource": resource, "request": {"method": "PUT", "url": format!("{ty}/{id}")}})
}

/// Posts these entries as one transaction Bundle (as the operator) and expects it stored.
pub async fn post_transaction(app: &TestApp, entries: Vec<Value>) {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
    let (status, body) = app.post("/fhir", &bundle).await;
    assert_eq!(status, 200, "{body}");
}

/// Patient `pat` (MRN-1) with vital signs, a hypertension diagnosis, an HIV diagnosis and a
/// genetic test (the labeller labels the last two sensitive at ingest); `other` (MRN-2); and
/// two patients sharing MRN-DUP.
pub async fn load_records(app: &TestApp) {
    let patient = |id: &str, mrn: &str| {
        entry(
            "Patient",
            id,
            json!({"gender": "female", "identifier": [{"system": MRN, "value": mrn}]}),
        )
    };
    let subject = json!({"reference": "Patient/pat"});
    post_transaction(app, vec![
        patient("pat", "MRN-1"),
        patient("other", "MRN-2"),
        patient("twin-a", "MRN-DUP"),
        patient("twin-b", "MRN-DUP"),
        entry("Observation", "vitals", json!({"status": "final", "subject": subject,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "effectiveDateTime": "2024-03-01T10:00:00Z", "valueQuantity": {"value": 72, "unit": "/min"}})),
        entry("Condition", "htn", json!({"subject": subject, "recordedDate": "2023-05-01",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}})),
        entry("Condition", "hiv", json!({"subject": subject, "recordedDate": "2023-05-01",
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "86406008"}, {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "B20"}]}})),
        entry("Observation", "brca", json!({"status": "final", "subject": subject,
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "21636-6"}]}, "effectiveDateTime": "2022-01-01"})),
    ])
    .await;
}

/// The Synthea Bundles, organisations and practitioners first.
pub fn synthea_bundles() -> Vec<Value> {
    synthea_files()
        .iter()
        .map(|p| {
            fixture(&format!(
                "synthea/{}",
                p.file_name().unwrap().to_string_lossy()
            ))
        })
        .collect()
}

/// Loads every Synthea Bundle through `POST /fhir`.
pub async fn load_synthea(app: &TestApp) {
    for bundle in synthea_bundles() {
        let (status, body) = app.post("/fhir", &bundle).await;
        assert_eq!(status, 200, "{body}");
    }
}

/// An active privacy consent (`patient-privacy`, opt-in) of `patient` with this root provision.
pub fn consent(patient: &str, provision: Value) -> Value {
    consent_in_scope("patient-privacy", patient, provision)
}

/// As [`consent`], in another consent scope (`research`, `treatment`, ...).
pub fn consent_in_scope(scope: &str, patient: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-01-01",
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": provision,
    })
}

/// A provision's `actor`: the information recipient (`IRCP`) known by `reference`.
pub fn actor(reference: &str) -> Value {
    json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": reference}}])
}

/// A provision's `purpose`: one ActReason code.
pub fn purpose(code: &str) -> Value {
    json!([{"system": ACT_REASON, "code": code}])
}

/// A provision's `securityLabel`: one ActCode sensitivity code.
pub fn label(code: &str) -> Value {
    json!([{"system": ACT_CODE, "code": code}])
}

/// A root provision permitting `reference` to use the records for `purpose_code`.
pub fn permit(reference: &str, purpose_code: &str) -> Value {
    json!({"type": "permit", "actor": actor(reference), "purpose": purpose(purpose_code)})
}
