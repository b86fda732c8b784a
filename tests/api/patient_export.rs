//! The patient's own Bulk Data export (`GET /fhir/Patient/$export`, docs/PATIENT_RIGHTS.md "My
//! own copy"): a patient (or a delegate allowed `read_records`) exports exactly what
//! `$everything` gives them, identified, as NDJSON; the job answers only the person who
//! started it; the export is audited as their own access and stays out of the accounting of
//! disclosures. Each case runs on SQLite and PostgreSQL.

use std::collections::BTreeSet;

use consentgate::cli::person_token;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::export::{bulk_call, export, kick_off, poll};
use crate::helpers::{
    Backend, ClientKey, TestApp, actor, call, client_token, consent, get_as, load_records, purpose,
    register, request, spawn_app,
};

const SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";

/// An advance directive of `patient` (a Consent of scope `adr`).
pub(crate) fn advance_directive(patient: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "status": "active",
        "scope": {"coding": [{"system": SCOPE_SYSTEM, "code": "adr"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "75320-2"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2025-06-01",
        "policy": [{"uri": "https://example.org/advance-directive-act"}],
        "sourceAttachment": {"title": "Do not resuscitate"},
    })
}

/// `Type/id` of each resource.
fn references<'a>(resources: impl IntoIterator<Item = &'a Value>) -> BTreeSet<String> {
    resources
        .into_iter()
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// A token for the person whose identity provider says `fhirUser` = `delegate`.
fn delegate_token(app: &TestApp, delegate: &str) -> String {
    person_token(
        &app.settings,
        &app.base,
        &format!("sub-{delegate}"),
        Some(delegate.to_string()),
        vec![],
        7200,
    )
    .expect("delegate token")
}

/// `pat`'s records, a privacy consent and an advance directive of theirs, and a delegate
/// (whose RelatedPerson the gateway writes as gateway-internal).
async fn patient_with_records(app: &TestApp) -> (String, String) {
    load_records(app).await;
    let pat = app.patient_token("pat");
    let privacy = consent(
        "pat",
        json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
    );
    for body in [
        privacy,
        advance_directive("pat"),
        advance_directive("other"),
    ] {
        let (status, stored) = app.post("/fhir/Consent", &body).await;
        assert_eq!(status, 201, "{stored}");
    }
    let ask = json!({"name": "Reader", "relationship": "carer", "actions": ["read_records"]});
    let (status, made) = call(app, &pat, Method::POST, "/api/v1/delegations", Some(&ask)).await;
    assert_eq!(status, 201, "{made}");
    (pat, made["delegate"].as_str().unwrap().to_string())
}

async fn a_patient_exports_their_own_copy(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (pat, _) = patient_with_records(&app).await;
    let path = "/fhir/Patient/$export";

    let (status, own) = get_as(&app, &pat, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 200, "{own}");
    let everything: Vec<Value> = own["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect();
    let output = export(&app, &pat, path).await;
    let exported: Vec<&Value> = output.values().flatten().collect();
    assert_eq!(
        references(exported.iter().copied()),
        references(&everything),
        "exactly the patient's own $everything"
    );
    let refs = references(exported.iter().copied());
    for want in [
        "Patient/pat",
        "Observation/vitals",
        "Condition/htn",
        "Condition/hiv",
        "Observation/brca",
    ] {
        assert!(refs.contains(want), "{want} in {refs:?}");
    }
    assert!(
        exported
            .iter()
            .all(|r| r["resourceType"] != "RelatedPerson" && r["resourceType"] != "AuditEvent"),
        "gateway-internal records stay out: {refs:?}"
    );
    let consents = &output["Consent"];
    assert_eq!(
        consents.len(),
        1,
        "only the advance directive: {consents:?}"
    );
    assert_eq!(consents[0]["scope"]["coding"][0]["code"], "adr");
    assert_eq!(consents[0]["patient"]["reference"], "Patient/pat");
    // Identified, as stored: the MRN and the real ids are there.
    assert_eq!(output["Patient"][0]["identifier"][0]["value"], "MRN-1");
    assert_eq!(
        output["Observation"]
            .iter()
            .find(|o| o["id"] == "vitals")
            .unwrap()["subject"]["reference"],
        "Patient/pat"
    );

    // `_type` narrows it, as for a study; a malformed value or no `Prefer` is refused.
    let only = export(&app, &pat, "/fhir/Patient/$export?_type=Condition").await;
    assert_eq!(only.keys().collect::<Vec<_>>(), ["Condition"]);
    assert_eq!(only["Condition"].len(), 2);
    let (status, _, body) = bulk_call(&app, Method::GET, &pat, path, false).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("respond_async_required"), "{body}");
    let (status, _, body) = bulk_call(
        &app,
        Method::GET,
        &pat,
        "/fhir/Patient/$export?_type=Nope",
        true,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_type"), "{body}");

    // Neither an operator nor a recipient client has an own copy to export.
    let (status, _, body) = bulk_call(&app, Method::GET, &app.operator_token, path, true).await;
    assert_eq!(status, 403, "{body}");
    let key = ClientKey::ed25519("clinic");
    let clinic = register(
        &app,
        "clinician",
        key.jwks(),
        json!({"acts_as": ["Organization/clinic"]}),
    )
    .await;
    let clinic_token = client_token(&app, &key, &clinic, "TREAT").await;
    let (status, _, body) = bulk_call(&app, Method::GET, &clinic_token, path, true).await;
    assert_eq!(status, 403, "{body}");
}

async fn an_own_export_is_the_persons_alone_and_their_own_access(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (pat, delegate) = patient_with_records(&app).await;
    let resp = request(&app, &pat, Method::GET, "/fhir/Patient/$export")
        .header("prefer", "respond-async")
        .header("x-request-id", "own-export-1")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let status_url = resp.headers()["content-location"]
        .to_str()
        .unwrap()
        .to_string();
    let (status, manifest) = poll(&app, &pat, &status_url).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["requiresAccessToken"], true);
    let file_url = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "Observation")
        .unwrap()["url"]
        .as_str()
        .unwrap()
        .to_string();

    // Another patient, the delegate, the operator and a client: the job does not exist.
    let other = app.patient_token("other");
    let reader = delegate_token(&app, &delegate);
    let key = ClientKey::ed25519("clinic");
    let clinic = register(
        &app,
        "clinician",
        key.jwks(),
        json!({"acts_as": ["Organization/clinic"]}),
    )
    .await;
    let clinic_token = client_token(&app, &key, &clinic, "TREAT").await;
    for token in [&other, &reader, &clinic_token] {
        for (method, url) in [
            (Method::GET, &status_url),
            (Method::GET, &file_url),
            (Method::DELETE, &status_url),
        ] {
            let (status, _, body) = bulk_call(&app, method.clone(), token, url, false).await;
            assert_eq!(status, 404, "{method} {url}: {body}");
        }
    }
    let (status, _, _) =
        bulk_call(&app, Method::GET, &app.operator_token, &status_url, false).await;
    assert_eq!(status, 403, "an operator owns no export");
    let (status, _, body) = bulk_call(&app, Method::GET, &pat, &file_url, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.lines().count() >= 2, "{body}");

    // Audited as the patient's own access: in the AuditEvent trail, listing what left; not
    // in the accounting of disclosures, and no notification.
    let (status, events) = get_as(&app, &pat, "/fhir/AuditEvent?patient=pat&_count=100").await;
    assert_eq!(status, 200, "{events}");
    let export_events: Vec<&Value> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|e| e.to_string().contains("own-export-1"))
        .collect();
    assert!(!export_events.is_empty(), "audited: {events}");
    let listed = export_events
        .iter()
        .any(|e| e.to_string().contains("Observation/vitals"));
    assert!(listed, "the entry lists what left: {export_events:?}");
    let (status, log) = get_as(&app, &pat, "/api/v1/patients/pat/access-log?_count=100").await;
    assert_eq!(status, 200, "{log}");
    assert!(
        log["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["action"] != "export"),
        "the patient's own export is not a disclosure: {log}"
    );

    // The delegate's own job: theirs alone, listed in the accounting as the delegate's.
    let theirs = kick_off(&app, &reader, "/fhir/Patient/$export?_type=Patient").await;
    let (status, manifest) = poll(&app, &reader, &theirs).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["output"][0]["count"], 1);
    let their_file = manifest["output"][0]["url"].as_str().unwrap();
    let (status, _, body) = bulk_call(&app, Method::GET, &reader, their_file, false).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        body.contains("\"MRN-1\""),
        "the delegate's copy is identified: {body}"
    );
    for url in [&theirs, their_file] {
        assert_eq!(bulk_call(&app, Method::GET, &pat, url, false).await.0, 404);
    }
    let (_, log) = get_as(&app, &pat, "/api/v1/patients/pat/access-log?_count=100").await;
    assert!(
        log["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["action"] == "export" && d["recipient"]["kind"] == "delegate"),
        "a delegate's export is listed, naming them: {log}"
    );

    // DELETE: gone, with its files.
    let (status, _, body) = bulk_call(&app, Method::DELETE, &pat, &status_url, false).await;
    assert_eq!(status, 202, "{body}");
    for url in [&status_url, &file_url] {
        assert_eq!(bulk_call(&app, Method::GET, &pat, url, false).await.0, 404);
    }
    let job = status_url.rsplit('/').next().unwrap();
    assert!(!app.dir.path().join("exports").join(job).exists());
}

both_backends!(
    a_patient_exports_their_own_copy,
    an_own_export_is_the_persons_alone_and_their_own_access,
);
