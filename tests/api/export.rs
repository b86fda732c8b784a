//! Research export (DESIGN.md section 2, flow 2): `GET /fhir/Group/{study}/$export` over the
//! Synthea fixtures, checked from the outside: only consenting patients, de-identified,
//! pseudonyms stable within a study and unlinkable across studies, every export in the
//! patients' access logs, cancellation, and jobs private to their client. The identifier scan
//! is written here from the source records, independently of the gateway's own leak scan.
//! Each case runs on SQLite and PostgreSQL.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, client_token, consent_in_scope, load_synthea, permit, register,
    request, spawn_app, synthea_bundles,
};

const GEOLOCATION: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";

/// A consent of `patient` permitting the study Group `group` to use its records for research.
pub(crate) fn research_consent(patient: &str, group: &str) -> Value {
    consent_in_scope("research", patient, permit(group, "HRESCH"))
}

/// The Patient resources of the fixtures.
fn patients(bundles: &[Value]) -> Vec<Value> {
    bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().unwrap().iter())
        .map(|e| e["resource"].clone())
        .filter(|r| r["resourceType"] == "Patient")
        .collect()
}

/// A patient's identifying values, read from the source record: what must never leave.
#[derive(Debug, Default)]
struct Identifying {
    /// Compared case-insensitively as substrings.
    texts: Vec<String>,
    /// Digit strings that must not appear bounded by non-digits (ZIP5).
    numbers: Vec<String>,
    /// Latitudes and longitudes.
    coordinates: Vec<f64>,
}

fn identifying(patient: &Value) -> Identifying {
    let mut out = Identifying::default();
    let strings = |v: &Value| -> Vec<String> {
        match v {
            Value::String(s) => vec![s.clone()],
            Value::Array(a) => a
                .iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect(),
            _ => vec![],
        }
    };
    for name in patient["name"].as_array().into_iter().flatten() {
        out.texts.extend(strings(&name["given"]));
        out.texts.extend(strings(&name["family"]));
    }
    for identifier in patient["identifier"].as_array().into_iter().flatten() {
        out.texts.extend(strings(&identifier["value"]));
    }
    for telecom in patient["telecom"].as_array().into_iter().flatten() {
        out.texts.extend(strings(&telecom["value"]));
    }
    for address in patient["address"].as_array().into_iter().flatten() {
        out.texts.extend(strings(&address["line"]));
        if let Some(zip) = address["postalCode"].as_str() {
            out.numbers.push(zip[..5].to_string());
        }
        for ext in address["extension"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["url"] == GEOLOCATION)
        {
            for part in ext["extension"].as_array().into_iter().flatten() {
                out.coordinates.push(part["valueDecimal"].as_f64().unwrap());
            }
        }
    }
    out.texts.extend(strings(&patient["birthDate"]));
    assert!(
        out.texts.len() >= 8 && out.numbers.len() == 1 && out.coordinates.len() == 2,
        "{out:?}"
    );
    out
}

/// Whether `digits` occurs in `text` as a token of its own: no letter or digit either side
/// (`"02139"`, `MA 02139`, `02139-4307`). A run inside a longer token is not a ZIP code
/// left: the export's pseudonyms are hex, and one in about forty exports holds a ZIP's five
/// digits between two letters by chance (`ebf26b98053ee…` holds 98053).
fn has_bounded_number(text: &str, digits: &str) -> bool {
    text.match_indices(digits).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + digits.len()..].chars().next();
        !before.is_some_and(|c| c.is_ascii_alphanumeric())
            && !after.is_some_and(|c| c.is_ascii_alphanumeric())
    })
}

/// Every string and number in a JSON value.
fn leaves<'a>(v: &'a Value, strings: &mut Vec<&'a str>, numbers: &mut Vec<f64>) {
    match v {
        Value::String(s) => strings.push(s),
        Value::Number(n) => numbers.extend(n.as_f64()),
        Value::Array(items) => items.iter().for_each(|i| leaves(i, strings, numbers)),
        Value::Object(map) => map.values().for_each(|i| leaves(i, strings, numbers)),
        _ => {}
    }
}

/// A client's Bulk Data GET (or DELETE), asking for asynchronous processing when
/// `async_pref`; returns status, headers and body text.
pub(crate) async fn bulk_call(
    app: &TestApp,
    method: reqwest::Method,
    token: &str,
    url: &str,
    async_pref: bool,
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = request(app, token, method, url).header("accept", "application/fhir+json");
    if async_pref {
        req = req.header("prefer", "respond-async");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (status, headers, resp.text().await.unwrap())
}

/// Kicks off an export; returns the status URL.
pub(crate) async fn kick_off(app: &TestApp, token: &str, path: &str) -> String {
    let (status, headers, body) = bulk_call(app, reqwest::Method::GET, token, path, true).await;
    assert_eq!(status, 202, "{path}: {body}");
    headers["content-location"].to_str().unwrap().to_string()
}

/// Polls a job to its end; returns the final status and body.
pub(crate) async fn poll(app: &TestApp, token: &str, status_url: &str) -> (u16, Value) {
    for _ in 0..1200 {
        let (status, headers, body) =
            bulk_call(app, reqwest::Method::GET, token, status_url, false).await;
        if status != 202 {
            return (status, serde_json::from_str(&body).unwrap_or(Value::Null));
        }
        let progress = headers["x-progress"].to_str().unwrap();
        let (done, total) = progress
            .strip_prefix("patients ")
            .unwrap()
            .split_once('/')
            .unwrap();
        assert!(
            done.parse::<u32>().is_ok() && (total == "?" || total.parse::<u32>().is_ok()),
            "{progress}"
        );
        assert!(headers.contains_key("retry-after"));
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("the export did not finish");
}

/// Runs an export to completion and downloads every file: resources by type.
pub(crate) async fn export(app: &TestApp, token: &str, path: &str) -> BTreeMap<String, Vec<Value>> {
    let status_url = kick_off(app, token, path).await;
    let (status, manifest) = poll(app, token, &status_url).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["request"], app.url(path));
    assert!(manifest["transactionTime"].as_str().unwrap().ends_with('Z'));
    assert_eq!(manifest["requiresAccessToken"], true);
    assert_eq!(manifest["error"], json!([]));
    let mut out = BTreeMap::new();
    for file in manifest["output"].as_array().unwrap() {
        let url = file["url"].as_str().unwrap();
        let (status, headers, body) = bulk_call(app, reqwest::Method::GET, token, url, false).await;
        assert_eq!(status, 200, "{url}: {body}");
        assert!(
            headers["content-type"]
                .to_str()
                .unwrap()
                .starts_with("application/fhir+ndjson")
        );
        let resources: Vec<Value> = body
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(
            resources.len() as u64,
            file["count"].as_u64().unwrap(),
            "{url}"
        );
        let ty = file["type"].as_str().unwrap();
        assert!(resources.iter().all(|r| r["resourceType"] == ty), "{url}");
        out.insert(ty.to_string(), resources);
    }
    out
}

fn ids(output: &BTreeMap<String, Vec<Value>>, ty: &str) -> HashSet<String> {
    output
        .get(ty)
        .into_iter()
        .flatten()
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

/// The export entries in a patient's access log.
pub(crate) async fn exports_logged(app: &TestApp, patient: &str) -> Vec<Value> {
    let (status, log) = app
        .get(&format!("/api/v1/patients/{patient}/access-log?_count=100"))
        .await;
    assert_eq!(status, 200, "{log}");
    log["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["action"] == "export")
        .cloned()
        .collect()
}

async fn research_export(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let bundles = synthea_bundles();
    for bundle in &bundles {
        let (status, body) = app.post("/fhir", bundle).await;
        assert_eq!(status, 200, "{body}");
    }
    let all = patients(&bundles);
    assert_eq!(all.len(), 4);
    let source_ids: HashSet<String> = bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().unwrap().iter())
        .filter_map(|e| e["resource"]["id"].as_str().map(str::to_string))
        .collect();
    // Lynwood and Todd consent. Their records begin years after every patient's birth, so no
    // date of theirs, however shifted (at most a year), can spell a birth date of the four.
    let name_of = |p: &Value| p["name"][0]["given"][0].as_str().unwrap().to_string();
    let (consenting, others): (Vec<Value>, Vec<Value>) = all
        .iter()
        .cloned()
        .partition(|p| ["Lynwood354", "Todd315"].contains(&name_of(p).as_str()));
    assert_eq!((consenting.len(), others.len()), (2, 2));
    let id_of = |p: &Value| p["id"].as_str().unwrap().to_string();
    for p in &consenting {
        let (status, body) = app
            .post(
                "/fhir/Consent",
                &research_consent(&id_of(p), "Group/study1"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let (status, body) = app
        .post(
            "/fhir/Consent",
            &research_consent(&id_of(&consenting[0]), "Group/study2"),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    // Someone consents to another study only: a candidate, but not a member of study1.
    let (status, body) = app
        .post(
            "/fhir/Consent",
            &research_consent(&id_of(&others[0]), "Group/elsewhere"),
        )
        .await;
    assert_eq!(status, 201, "{body}");

    let key = ClientKey::ed25519("r");
    let researcher = register(
        &app,
        "researcher",
        key.jwks(),
        json!({"acts_as": ["Group/study1", "Group/study2"]}),
    )
    .await;
    let token = client_token(&app, &key, &researcher, "HRESCH").await;

    // Kick-off rules.
    let (status, _, body) = bulk_call(
        &app,
        reqwest::Method::GET,
        &token,
        "/fhir/Group/study1/$export",
        false,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("respond_async_required"), "{body}");
    for bad in [
        "_type=Observation,Nonsense",
        "_since=yesterday",
        "_outputFormat=text/csv",
        "_typeFilter=Observation%3Fvalue-quantity%3D1",
    ] {
        let (status, _, body) = bulk_call(
            &app,
            reqwest::Method::GET,
            &token,
            &format!("/fhir/Group/study1/$export?{bad}"),
            true,
        )
        .await;
        assert_eq!(status, 400, "{bad}: {body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["resourceType"],
            "OperationOutcome"
        );
    }
    // A study the client does not act for, and a clinician acting for study1: no such study.
    let (status, _, _) = bulk_call(
        &app,
        reqwest::Method::GET,
        &token,
        "/fhir/Group/elsewhere/$export",
        true,
    )
    .await;
    assert_eq!(status, 404);
    let clinic_key = ClientKey::ed25519("c");
    let clinic = register(
        &app,
        "clinician",
        clinic_key.jwks(),
        json!({"acts_as": ["Group/study1"]}),
    )
    .await;
    let clinic_token = client_token(&app, &clinic_key, &clinic, "TREAT").await;
    let (status, _, _) = bulk_call(
        &app,
        reqwest::Method::GET,
        &clinic_token,
        "/fhir/Group/study1/$export",
        true,
    )
    .await;
    assert_eq!(status, 404);

    // The whole study.
    let study1 = export(
        &app,
        &token,
        "/fhir/Group/study1/$export?_outputFormat=application%2Ffhir%2Bndjson",
    )
    .await;
    let patient_ids = ids(&study1, "Patient");
    assert_eq!(patient_ids.len(), 2, "only the consenting patients");
    assert!(
        study1.len() > 5 && study1["Observation"].len() > 50,
        "{:?}",
        study1.keys()
    );
    let pseudonym = |s: &str| {
        s.len() == 32
            && s.chars()
                .all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase())
    };
    let text: String = study1
        .values()
        .flatten()
        .map(|r| r.to_string().to_lowercase() + "\n")
        .collect();
    for resource in study1.values().flatten() {
        let id = resource["id"].as_str().unwrap();
        assert!(pseudonym(id) && !source_ids.contains(id), "{id}");
        let (mut strings, mut numbers) = (Vec::new(), Vec::new());
        leaves(resource, &mut strings, &mut numbers);
        for s in strings {
            for part in s.split(['/', ':', ' ', '|']) {
                assert!(
                    !source_ids.contains(part),
                    "a source id left in {}",
                    resource["resourceType"]
                );
            }
            // Every patient reference points at one of the two exported patients.
            if let Some(p) = s.strip_prefix("Patient/") {
                assert!(
                    patient_ids.contains(p),
                    "a reference to a patient outside the export"
                );
            }
        }
        for p in &all {
            let found = identifying(p);
            assert!(
                numbers.iter().all(|n| !found.coordinates.contains(n)),
                "a coordinate left"
            );
        }
    }
    for p in &all {
        let found = identifying(p);
        for value in &found.texts {
            assert!(
                !text.contains(&value.to_lowercase()),
                "an identifying value of {} left",
                id_of(p)
            );
        }
        for zip in &found.numbers {
            assert!(
                !has_bounded_number(&text, zip),
                "a ZIP code of {} left",
                id_of(p)
            );
        }
        for c in &found.coordinates {
            assert!(
                !text.contains(&c.to_string()),
                "a coordinate of {} left",
                id_of(p)
            );
        }
    }

    // A second study: the same patient under an unrelated pseudonym.
    let study2 = export(&app, &token, "/fhir/Group/study2/$export").await;
    let study2_patients = ids(&study2, "Patient");
    assert_eq!(study2_patients.len(), 1);
    assert!(
        study2_patients.is_disjoint(&patient_ids),
        "unlinkable across studies"
    );
    assert!(ids(&study2, "Observation").is_disjoint(&ids(&study1, "Observation")));

    // `_type` limits the output; pseudonyms are stable within the study.
    let observations = export(&app, &token, "/fhir/Group/study1/$export?_type=Observation").await;
    assert_eq!(observations.keys().collect::<Vec<_>>(), vec!["Observation"]);
    assert_eq!(
        ids(&observations, "Observation"),
        ids(&study1, "Observation")
    );
    // `_since` after every update: nothing to export.
    let nothing = export(
        &app,
        &token,
        "/fhir/Group/study1/$export?_since=2999-01-01T00:00:00Z",
    )
    .await;
    assert!(nothing.is_empty(), "{:?}", nothing.keys());

    // Each consenting patient's access log shows the exports (study1 twice, study2 for the
    // first), with the study; nobody else's does.
    for (p, expected) in [(&consenting[0], 3), (&consenting[1], 2)] {
        let logged = exports_logged(&app, &id_of(p)).await;
        assert_eq!(logged.len(), expected, "{logged:?}");
        for entry in &logged {
            assert_eq!(entry["recipient"]["client_id"], researcher.as_str());
            assert_eq!(entry["purpose_of_use"], "HRESCH");
            assert!(!entry["consents"].as_array().unwrap().is_empty());
            assert!(
                entry["inclusion"]["entry"]
                    .as_str()
                    .unwrap()
                    .contains("\"study\":\"study")
            );
        }
        assert!(logged.iter().any(|e| {
            e["disclosed"]["resources"]
                .as_array()
                .unwrap()
                .contains(&json!(format!("Patient/{}", id_of(p))))
        }));
    }
    for p in &others {
        assert!(
            exports_logged(&app, &id_of(p)).await.is_empty(),
            "no export of {}",
            id_of(p)
        );
    }
}

async fn jobs_are_private_and_cancellable(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_synthea(&app).await;
    for p in patients(&synthea_bundles()) {
        let (status, body) = app
            .post(
                "/fhir/Consent",
                &research_consent(p["id"].as_str().unwrap(), "Group/study1"),
            )
            .await;
        assert_eq!(status, 201, "{body}");
    }
    let key = ClientKey::ed25519("r");
    let researcher = register(
        &app,
        "researcher",
        key.jwks(),
        json!({"acts_as": ["Group/study1"]}),
    )
    .await;
    let token = client_token(&app, &key, &researcher, "HRESCH").await;
    let other_key = ClientKey::ed25519("o");
    let other = register(
        &app,
        "researcher",
        other_key.jwks(),
        json!({"acts_as": ["Group/study1"]}),
    )
    .await;
    let other_token = client_token(&app, &other_key, &other, "HRESCH").await;

    // A finished job is its client's alone.
    let status_url = kick_off(&app, &token, "/fhir/Group/study1/$export?_type=Patient").await;
    let (status, manifest) = poll(&app, &token, &status_url).await;
    assert_eq!(status, 200, "{manifest}");
    assert_eq!(manifest["output"][0]["count"], 4);
    let file_url = manifest["output"][0]["url"].as_str().unwrap().to_string();
    for (method, url) in [
        (reqwest::Method::GET, &status_url),
        (reqwest::Method::GET, &file_url),
        (reqwest::Method::DELETE, &status_url),
    ] {
        let (status, _, body) = bulk_call(&app, method.clone(), &other_token, url, false).await;
        assert_eq!(status, 404, "{method} {url}: {body}");
    }
    let (status, _, _) = bulk_call(
        &app,
        reqwest::Method::GET,
        &app.operator_token,
        &status_url,
        false,
    )
    .await;
    assert_eq!(status, 403, "an operator is not a client");
    assert_eq!(
        bulk_call(&app, reqwest::Method::GET, &token, &status_url, false)
            .await
            .0,
        200
    );
    // Unknown files and jobs.
    let (status, _, _) = bulk_call(
        &app,
        reqwest::Method::GET,
        &token,
        &file_url.replace("Patient.ndjson", "Observation.ndjson"),
        false,
    )
    .await;
    assert_eq!(status, 404);
    let (status, _, _) = bulk_call(
        &app,
        reqwest::Method::GET,
        &token,
        "/fhir/$export-status/no-such-job",
        false,
    )
    .await;
    assert_eq!(status, 404);

    // Deleting a finished job removes it and its files.
    let job = status_url.rsplit('/').next().unwrap().to_string();
    let folder = app.dir.path().join("exports").join(&job);
    assert!(folder.join("Patient.ndjson").exists());
    assert_eq!(
        bulk_call(&app, reqwest::Method::DELETE, &token, &status_url, false)
            .await
            .0,
        202
    );
    assert_eq!(
        bulk_call(&app, reqwest::Method::GET, &token, &status_url, false)
            .await
            .0,
        404
    );
    assert_eq!(
        bulk_call(&app, reqwest::Method::GET, &token, &file_url, false)
            .await
            .0,
        404
    );
    assert_eq!(
        bulk_call(&app, reqwest::Method::DELETE, &token, &status_url, false)
            .await
            .0,
        404
    );
    assert!(!folder.exists());

    // Cancelling a running job: gone at once, its folder removed by the worker.
    let status_url = kick_off(&app, &token, "/fhir/Group/study1/$export").await;
    let (status, _, body) =
        bulk_call(&app, reqwest::Method::DELETE, &token, &status_url, false).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(
        bulk_call(&app, reqwest::Method::GET, &token, &status_url, false)
            .await
            .0,
        404
    );
    let folder = app
        .dir
        .path()
        .join("exports")
        .join(status_url.rsplit('/').next().unwrap());
    for _ in 0..100 {
        if !folder.exists() {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        !folder.exists(),
        "the worker removes a cancelled job's files"
    );
}

both_backends!(research_export, jobs_are_private_and_cancellable);
