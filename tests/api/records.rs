//! Records in and out: the Synthea fixtures through the API and through `consentgate import`,
//! versioning, search and paging.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, database_for, spawn_app, spawn_on, synthea_bundles, synthea_files,
};

/// `urn:uuid:X` -> `Type/X` across all the fixture bundles, as the gateway stores them.
fn expected_ids(bundles: &[Value]) -> Vec<(String, String)> {
    bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().unwrap().iter())
        .map(|e| {
            let ty = e["resource"]["resourceType"].as_str().unwrap().to_string();
            let id = e["fullUrl"]
                .as_str()
                .unwrap()
                .trim_start_matches("urn:uuid:")
                .to_string();
            (ty, id)
        })
        .collect()
}

/// Replaces `urn:uuid:X` references by `Type/X`, as the gateway does on ingest.
fn resolve_like_the_gateway(value: &mut Value, types: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if k == "reference"
                    && let Some(id) = v.as_str().and_then(|r| r.strip_prefix("urn:uuid:"))
                {
                    *v = Value::String(format!("{}/{id}", types[id]));
                } else {
                    resolve_like_the_gateway(v, types);
                }
            }
        }
        Value::Array(items) => items
            .iter_mut()
            .for_each(|v| resolve_like_the_gateway(v, types)),
        _ => {}
    }
}

/// How often each id occurs across the bundles: the patient bundles repeat some of the
/// organisations, locations and practitioners of the directory bundles, and each repeat
/// is stored as a new version of the same resource.
fn occurrences(bundles: &[Value]) -> HashMap<String, usize> {
    let mut seen = HashMap::new();
    for (_, id) in expected_ids(bundles) {
        *seen.entry(id).or_insert(0) += 1;
    }
    seen
}

/// Every resource of the fixtures can be read back, equal to what was last sent but for
/// `meta` stamps and resolved references, at the version its repeats make.
async fn assert_all_stored(app: &TestApp, bundles: &[Value]) {
    let ids = expected_ids(bundles);
    let types: HashMap<String, String> = ids.iter().map(|(t, i)| (i.clone(), t.clone())).collect();
    assert_eq!(ids.len(), 168 + 190 + 212 + 230 + 38 + 38);
    let versions = occurrences(bundles);
    let mut checked = std::collections::HashSet::new();
    let mut labelled = Vec::new();
    for bundle in bundles.iter().rev() {
        for entry in bundle["entry"].as_array().unwrap() {
            let mut sent = entry["resource"].clone();
            let ty = sent["resourceType"].as_str().unwrap().to_string();
            let id = sent["id"].as_str().unwrap().to_string();
            if !checked.insert(id.clone()) {
                continue; // an earlier version; the last bundle's copy is current
            }
            let (status, mut got) = app.get(&format!("/fhir/{ty}/{id}")).await;
            assert_eq!(status, 200, "{ty}/{id}: {got}");
            assert_eq!(got["meta"]["versionId"], versions[&id].to_string());
            assert!(got["meta"]["lastUpdated"].is_string());
            got["meta"].as_object_mut().unwrap().remove("versionId");
            got["meta"].as_object_mut().unwrap().remove("lastUpdated");
            // Sensitivity labels are the gateway's own addition at ingest.
            if let Some(security) = got["meta"].as_object_mut().unwrap().remove("security") {
                let codes: Vec<String> = security
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|c| c["code"].as_str().unwrap().to_string())
                    .collect();
                labelled.push((format!("{ty}/{}", &id[..8]), codes));
            }
            if got["meta"].as_object().unwrap().is_empty() {
                got.as_object_mut().unwrap().remove("meta");
            }
            resolve_like_the_gateway(&mut sent, &types);
            assert_eq!(got, sent, "{ty}/{id} differs from what was sent");
        }
    }
    // The labeller found the one sensitive episode of the fixtures (a miscarriage: sexual and
    // reproductive health) and labelled its visit, diagnosis, notes and billing, nothing else.
    labelled.sort();
    let sex_and_restricted = vec!["R".to_string(), "SEX".to_string()];
    let mut codes: Vec<Vec<String>> = labelled
        .iter()
        .map(|(_, c)| {
            let mut c = c.clone();
            c.sort();
            c
        })
        .collect();
    codes.dedup();
    assert_eq!(codes, vec![sex_and_restricted], "{labelled:?}");
    let ids: Vec<&str> = labelled.iter().map(|(r, _)| r.as_str()).collect();
    assert_eq!(
        ids,
        vec![
            "Claim/1185108a",
            "Condition/78dca8ed",
            "DiagnosticReport/8df690d0",
            "DocumentReference/79251c25",
            "Encounter/da7a7973",
            "ExplanationOfBenefit/62258469",
        ],
    );
}

async fn synthea_through_the_api(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let bundles = synthea_bundles();
    let mut seen = std::collections::HashSet::new();
    for bundle in &bundles {
        let (status, response) = app.post("/fhir", bundle).await;
        assert_eq!(status, 200, "{response}");
        assert_eq!(response["type"], "transaction-response");
        let entries = response["entry"].as_array().unwrap();
        let sent = bundle["entry"].as_array().unwrap();
        assert_eq!(entries.len(), sent.len());
        for (answer, entry) in entries.iter().zip(sent) {
            let first = seen.insert(entry["fullUrl"].as_str().unwrap().to_string());
            let want = if first { "201 Created" } else { "200 OK" };
            assert_eq!(answer["response"]["status"], want, "{}", entry["fullUrl"]);
        }
    }
    assert_all_stored(&app, &bundles).await;

    // Search by patient pages through exactly the patient's observations.
    let patient = "d88f994a-5efa-421d-9c40-5f116d2114a6";
    let observations = app
        .search_all(&format!(
            "/fhir/Observation?patient=Patient/{patient}&_count=7"
        ))
        .await;
    assert_eq!(observations.len(), 54);
    let mut seen: Vec<_> = observations
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 54, "no duplicates across pages");

    // Posting the same bundle again makes new versions, not duplicates.
    let (status, response) = app.post("/fhir", &bundles[2]).await;
    assert_eq!(status, 200);
    let answered = response["entry"].as_array().unwrap();
    assert_eq!(
        answered.len(),
        bundles[2]["entry"].as_array().unwrap().len(),
        "one response per entry"
    );
    assert!(answered.iter().all(|e| e["response"]["status"] == "200 OK"));
    let again = app
        .search_all(&format!("/fhir/Observation?patient={patient}&_count=100"))
        .await;
    assert_eq!(again.len(), 54);
    assert!(again.iter().all(|o| o["meta"]["versionId"] == "2"));
    assert_eq!(
        occurrences(&bundles).values().filter(|n| **n > 1).count(),
        14
    );
}

/// `consentgate import --quiet FILES` into the database at `url`.
fn import(
    data_dir: &std::path::Path,
    url: &str,
    files: &[std::path::PathBuf],
) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_consentgate"))
        .arg("import")
        .arg("--quiet")
        .args(files)
        .env("CONSENTGATE__DATA_DIR", data_dir)
        .env("CONSENTGATE__DATABASE__URL", url)
        .env("CONSENTGATE__LOG__FILTER", "warn")
        .output()
        .expect("consentgate import runs")
}

async fn synthea_through_import(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let files = synthea_files();
    let output = import(dir.path(), &url, &files);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(stdout.contains("876 resources stored"), "{stdout}");
    let app = spawn_on(dir, url, pg, &[]);
    assert_all_stored(&app, &synthea_bundles()).await;
}

/// NDJSON lines are stored in chunks; a bad line is reported by file and line number and
/// code, never by content, and the others are kept. More lines than one chunk, so a chunk
/// boundary is crossed.
async fn ndjson_import_keeps_good_lines(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let good = consentgate::import::NDJSON_CHUNK + 7;
    let mut lines: Vec<String> = (0..good)
        .map(|i| {
            json!({"resourceType": "Observation", "id": format!("nd-{i}"), "status": "final",
                "code": {"text": "x"}, "subject": {"reference": "Patient/nd"}})
            .to_string()
        })
        .collect();
    lines.insert(3, String::new());
    lines.insert(5, "{\"resourceType\": \"Observation\", \"secret\": ".into());
    lines.insert(
        505,
        json!({"resourceType": "NoSuchType", "id": "x", "note": "Jane Roe"}).to_string(),
    );
    let file = dir.path().join("obs.ndjson");
    std::fs::write(&file, lines.join("\n")).unwrap();
    let output = import(dir.path(), &url, &[file]);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );
    assert_eq!(output.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(
        stdout.contains(&format!("{good} resources stored")),
        "{stdout}"
    );
    let failed: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("failed: "))
        .collect();
    assert_eq!(failed.len(), 2, "{stderr}");
    assert!(failed[0].contains("obs.ndjson:6:"), "{stderr}");
    assert!(failed[1].contains("obs.ndjson:506:"), "{stderr}");
    assert!(
        !stderr.contains("secret") && !stderr.contains("Jane"),
        "{stderr}"
    );
    let app = spawn_on(dir, url, pg, &[]);
    for i in [0, good - 1] {
        let (status, body) = app.get(&format!("/fhir/Observation/nd-{i}")).await;
        assert_eq!(status, 200, "{body}");
    }
}

async fn versions_are_kept(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut patient = json!({"resourceType": "Patient", "id": "v1", "gender": "female"});
    let (status, body) = app.put("/fhir/Patient/v1", &patient).await;
    assert_eq!(status, 201, "{body}");
    patient["gender"] = json!("other");
    let (status, body) = app.put("/fhir/Patient/v1", &patient).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["meta"]["versionId"], "2");
    let (_, first) = app.get("/fhir/Patient/v1/_history/1").await;
    assert_eq!(first["gender"], "female");
    let (_, current) = app.get("/fhir/Patient/v1").await;
    assert_eq!(current["gender"], "other");
    let (status, _) = app.get("/fhir/Patient/v1/_history/3").await;
    assert_eq!(status, 404);

    // POST /fhir/{type} assigns a fresh id.
    let (status, created) = app
        .post(
            "/fhir/Observation",
            &json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}),
        )
        .await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_str().unwrap();
    assert_eq!(app.get(&format!("/fhir/Observation/{id}")).await.0, 200);
}

async fn search_parameters(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let obs = |id: &str, when: &str, code: &str, category: &str| {
        json!({"resource": {"resourceType": "Observation", "id": id, "status": "final",
            "subject": {"reference": "Patient/s1"},
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": category}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": when},
          "request": {"method": "PUT", "url": format!("Observation/{id}")}})
    };
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "s1"}, "request": {"method": "PUT", "url": "Patient/s1"}},
        obs("o2019", "2019-06-01T10:00:00Z", "8867-4", "vital-signs"),
        obs("o2020", "2020-06-01T10:00:00Z", "8867-4", "vital-signs"),
        obs("o2021", "2021-06-01T10:00:00+02:00", "4548-4", "laboratory"),
        obs("o2022", "2022-01-01", "4548-4", "laboratory"),
    ]});
    let (status, body) = app.post("/fhir", &bundle).await;
    assert_eq!(status, 200, "{body}");
    let ids = |resources: Vec<Value>| -> Vec<String> {
        resources
            .iter()
            .map(|r| r["id"].as_str().unwrap().to_string())
            .collect()
    };
    let cases: BTreeMap<&str, Vec<&str>> = [
        ("patient=s1", vec!["o2019", "o2020", "o2021", "o2022"]),
        ("patient=other", vec![]),
        ("date=ge2020-01-01", vec!["o2020", "o2021", "o2022"]),
        (
            "date=ge2020-01-01&date=le2021-12-31",
            vec!["o2020", "o2021"],
        ),
        ("date=2021", vec!["o2021"]),
        ("date=lt2020", vec!["o2019"]),
        ("date=gt2021-06-01", vec!["o2022"]),
        ("code=http://loinc.org|4548-4", vec!["o2021", "o2022"]),
        ("code=8867-4", vec!["o2019", "o2020"]),
        ("code=http://snomed.info/sct|8867-4", vec![]),
        (
            "code=8867-4,4548-4&date=ge2020",
            vec!["o2020", "o2021", "o2022"],
        ),
        ("category=laboratory", vec!["o2021", "o2022"]),
        ("_id=o2019,o2022", vec!["o2019", "o2022"]),
        (
            "_lastUpdated=ge2020-01-01",
            vec!["o2019", "o2020", "o2021", "o2022"],
        ),
        ("_lastUpdated=lt2020-01-01", vec![]),
    ]
    .into_iter()
    .collect();
    for (query, want) in cases {
        let got = ids(app
            .search_all(&format!("/fhir/Observation?{query}&_count=1"))
            .await);
        assert_eq!(got, want, "{query}");
    }
    // The searchset carries no total, and a page link keeps the query.
    let (_, page) = app.get("/fhir/Observation?patient=s1&_count=2").await;
    assert!(page.get("total").is_none());
    let next = page["link"][1]["url"].as_str().unwrap();
    assert!(
        next.contains("patient=s1") && next.contains("_cursor=o2020"),
        "{next}"
    );
}

both_backends!(
    synthea_through_the_api,
    synthea_through_import,
    ndjson_import_keeps_good_lines,
    versions_are_kept,
    search_parameters,
);
