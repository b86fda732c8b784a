//! Research export, issue 10 "fail small, never silent": a resource that fails its leak scan
//! is withheld alone (its patient whole when the Patient itself fails), the job completes, and
//! the manifest's `error` file, `/metrics` and the study's audit entry say what was withheld
//! and why, never the value. A demo population with the Kansas / Kansas City pattern exports
//! with no false alarm. Each case runs on SQLite and PostgreSQL.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::export::{bulk_call, exports_logged, kick_off, poll, research_consent};
use crate::both_backends;
use crate::helpers::{Backend, ClientKey, TestApp, client_token, register, spawn_app};

/// A researcher of `Group/study1` and its token.
async fn researcher(app: &TestApp) -> (String, String) {
    let key = ClientKey::ed25519("r");
    let researcher = register(
        app,
        "researcher",
        key.jwks(),
        json!({"acts_as": ["Group/study1"]}),
    )
    .await;
    let token = client_token(app, &key, &researcher, "HRESCH").await;
    (researcher, token)
}

/// Downloads one manifest file: its lines.
async fn lines(app: &TestApp, token: &str, file: &Value) -> Vec<Value> {
    let url = file["url"].as_str().unwrap();
    let (status, _, body) = bulk_call(app, reqwest::Method::GET, token, url, false).await;
    assert_eq!(status, 200, "{url}: {body}");
    body.lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// The value of a Prometheus sample `name{labels}` in the exposition text.
fn sample(metrics: &str, name_and_labels: &str) -> Option<u64> {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The `audit-detail` extensions of an AuditEvent, by name.
fn details(event: &Value) -> BTreeMap<String, String> {
    event["extension"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|x| {
            x["url"]
                .as_str()
                .is_some_and(|u| u.ends_with("/audit-detail"))
        })
        .map(|x| {
            let part = |n: &str| {
                x["extension"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .find(|p| p["url"] == n)
                    .and_then(|p| p["valueString"].as_str())
                    .unwrap()
                    .to_string()
            };
            (part("name"), part("value"))
        })
        .collect()
}

/// Two patients. Zebulon's note carries his name (in an element Safe Harbor keeps, a coding's
/// display); his other observation is clean. Ottoline's Patient record itself carries her
/// name (a marital status display), so all of her is withheld.
async fn a_leak_withholds_that_resource_alone(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let put = |r: Value| {
        let url = format!(
            "{}/{}",
            r["resourceType"].as_str().unwrap(),
            r["id"].as_str().unwrap()
        );
        json!({"resource": r, "request": {"method": "PUT", "url": url}})
    };
    let obs = |id: &str, patient: &str, display: &str| {
        json!({"resourceType": "Observation", "id": id, "status": "final",
            "subject": {"reference": format!("Patient/{patient}")},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "valueCodeableConcept": {"coding": [{"system": "urn:example", "code": "x", "display": display}]}})
    };
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        put(json!({"resourceType": "Patient", "id": "pat", "name": [{"given": ["Zebulon"], "family": "Quixotefield"}], "gender": "male"})),
        put(obs("note", "pat", "told by Zebulon Quixotefield")),
        put(obs("clean", "pat", "steady")),
        put(json!({"resourceType": "Patient", "id": "pat2", "name": [{"given": ["Ottoline"], "family": "Marchbanks"}], "gender": "female",
            "maritalStatus": {"coding": [{"system": "urn:example", "code": "m", "display": "Ottoline Marchbanks"}]}})),
        put(obs("other", "pat2", "steady")),
    ]});
    let (status, body) = app.post("/fhir", &bundle).await;
    assert_eq!(status, 200, "{body}");
    for patient in ["pat", "pat2"] {
        let (status, body) = app
            .post("/fhir/Consent", &research_consent(patient, "Group/study1"))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (researcher, token) = researcher(&app).await;

    let status_url = kick_off(&app, &token, "/fhir/Group/study1/$export").await;
    let (status, manifest) = poll(&app, &token, &status_url).await;
    assert_eq!(status, 200, "the job completes: {manifest}");
    let mut output = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        output.insert(
            file["type"].as_str().unwrap().to_string(),
            lines(&app, &token, file).await,
        );
    }
    let errors = manifest["error"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{manifest}");
    assert_eq!(errors[0]["type"], "OperationOutcome");
    assert_eq!(errors[0]["count"], 3, "{manifest}");
    let issues = lines(&app, &token, &errors[0]).await;

    // Delivered: Zebulon's Patient and clean observation, nothing of Ottoline.
    assert_eq!(output["Patient"].len(), 1, "{output:?}");
    assert_eq!(output["Patient"][0]["gender"], "male");
    assert_eq!(output["Observation"].len(), 1, "{output:?}");
    assert_eq!(
        output["Observation"][0]["valueCodeableConcept"]["coding"][0]["display"],
        "steady"
    );
    let zebulon = format!("Patient/{}", output["Patient"][0]["id"].as_str().unwrap());
    assert_eq!(output["Observation"][0]["subject"]["reference"], zebulon);

    // Withheld: one issue per resource, by pseudonymous reference, path and kind.
    let issue = |i: &Value| {
        let issue = &i["issue"][0];
        assert_eq!(i["resourceType"], "OperationOutcome");
        (
            issue["details"]["coding"][0]["code"]
                .as_str()
                .unwrap()
                .to_string(),
            issue["diagnostics"].as_str().unwrap().to_string(),
            issue["expression"][0]
                .as_str()
                .unwrap_or_default()
                .to_string(),
        )
    };
    let issues: Vec<(String, String, String)> = issues.iter().map(issue).collect();
    let codes: Vec<&str> = issues.iter().map(|(c, ..)| c.as_str()).collect();
    assert_eq!(
        codes,
        [
            "withheld_name",
            "withheld_name",
            "withheld_patient_withheld"
        ],
        "{issues:?}"
    );
    let note = issues
        .iter()
        .find(|(_, text, _)| text.starts_with("Observation/"))
        .expect("the note is named");
    assert!(note.2.contains("valueCodeableConcept"), "{note:?}");
    assert!(
        issues.iter().any(|(c, text, path)| c == "withheld_name"
            && text.starts_with("Patient/")
            && path.contains("maritalStatus")),
        "{issues:?}"
    );
    for (_, text, _) in &issues {
        let reference = text.split_whitespace().next().unwrap();
        let (ty, id) = reference.split_once('/').unwrap();
        assert!(
            id.len() >= 16 && !["pat", "pat2", "note", "other"].contains(&id),
            "pseudonymous: {reference}"
        );
        assert!(
            output
                .get(ty)
                .is_none_or(|rs| rs.iter().all(|r| r["id"] != id)),
            "{reference} was withheld, not delivered"
        );
    }
    let everything = format!("{manifest}{output:?}{issues:?}");
    for value in ["Quixotefield", "Zebulon", "Marchbanks", "Ottoline"] {
        assert!(!everything.contains(value), "{value} left");
    }

    // /metrics counts by kind; the audit says how many were withheld.
    let metrics = app.metrics().await;
    let withheld = |kind: &str| {
        sample(
            &metrics,
            &format!("consentgate_export_withheld_resources_total{{kind=\"{kind}\"}}"),
        )
    };
    assert_eq!(withheld("name"), Some(2), "{metrics}");
    assert_eq!(withheld("patient_withheld"), Some(1), "{metrics}");
    let logged = exports_logged(&app, "pat").await;
    assert_eq!(logged.len(), 1, "{logged:?}");
    assert!(exports_logged(&app, "pat2").await.is_empty());
    let (status, events) = app
        .get(&format!("/fhir/AuditEvent?agent={researcher}&_count=100"))
        .await;
    assert_eq!(status, 200, "{events}");
    let study: Vec<BTreeMap<String, String>> = events["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| details(&e["resource"]))
        .filter(|d| d.contains_key("patients"))
        .collect();
    assert_eq!(study.len(), 1, "one entry for the study: {events}");
    assert_eq!(study[0]["withheld"], "3", "{study:?}");
    assert_eq!(study[0]["withheld_name"], "2", "{study:?}");
    assert_eq!(study[0]["count"], "2", "{study:?}");
}

/// A demo population, which includes patients born in a state and living in a town named
/// after it (Kansas / Kansas City): the whole export completes with an empty `error` array.
async fn a_demo_population_exports_without_false_alarms(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let opts = consentgate::demo::DemoOptions {
        patients: 24,
        ..Default::default()
    };
    let (status, body) = app
        .post("/fhir", &consentgate::demo::directory_bundle(&opts))
        .await;
    assert_eq!(status, 200, "{body}");
    let mut moved = 0;
    let mut patients = Vec::new();
    for bundle in consentgate::demo::patient_bundles(&opts) {
        if bundle.to_string().contains("birthPlace") {
            moved += 1;
        }
        let (status, body) = app.post("/fhir", &bundle).await;
        assert_eq!(status, 200, "{body}");
        let patient = body["entry"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|e| e["response"]["location"].as_str())
            .find_map(|l| l.strip_prefix("Patient/"))
            .and_then(|l| l.split('/').next())
            .unwrap()
            .to_string();
        patients.push(patient);
    }
    assert!(moved > 0, "the population has the hometown pattern");
    for patient in &patients {
        let (status, body) = app
            .post("/fhir/Consent", &research_consent(patient, "Group/study1"))
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (_, token) = researcher(&app).await;
    let status_url = kick_off(&app, &token, "/fhir/Group/study1/$export").await;
    let (status, manifest) = poll(&app, &token, &status_url).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["error"], json!([]), "no false alarm: {manifest}");
    let patient_file = manifest["output"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["type"] == "Patient")
        .unwrap();
    assert_eq!(patient_file["count"], patients.len(), "{manifest}");
    let exported = lines(&app, &token, patient_file).await;
    let born_elsewhere = exported
        .iter()
        .filter(|p| p.to_string().contains("birthPlace"))
        .count();
    assert_eq!(born_elsewhere, moved, "kept birth states are delivered");
}

both_backends!(
    a_leak_withholds_that_resource_alone,
    a_demo_population_exports_without_false_alarms
);
