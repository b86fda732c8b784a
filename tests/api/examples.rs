//! Every file of the official `hl7.fhir.r4.examples@4.0.1` package is either stored (and
//! readable) or refused with an OperationOutcome, the server never answers 5xx, and exactly
//! the two files that are not valid resources are refused.
//!
//! The package (5,307 files) is fetched by `.ci/run` with `npm pack` and named by
//! `CONSENTGATE_R4_EXAMPLES`; without it the suite says so in one loud line.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, decode, spawn_app};

pub const EXAMPLES_ENV: &str = "CONSENTGATE_R4_EXAMPLES";

async fn official_examples(backend: Backend) {
    let Ok(dir) = std::env::var(EXAMPLES_ENV) else {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("{EXAMPLES_ENV} is not set under CI");
        }
        eprintln!(
            "!!!!! R4 EXAMPLES SUITE SKIPPED: set {EXAMPLES_ENV} to the unpacked hl7.fhir.r4.examples@4.0.1 package !!!!!"
        );
        return;
    };
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert_eq!(files.len(), 5_307, "the whole 4.0.1 package in {dir}");
    let (mut stored, mut refused) = (0usize, Vec::new());
    for path in &files {
        let bytes = std::fs::read(path).unwrap();
        let parsed: Option<Value> =
            serde_json::from_slice(bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(&bytes)).ok();
        let ty = parsed
            .as_ref()
            .and_then(|v| v["resourceType"].as_str())
            .unwrap_or("Basic")
            .to_string();
        let id = parsed
            .as_ref()
            .and_then(|v| v["id"].as_str())
            .map(str::to_string);
        let send = || {
            let request = match &id {
                Some(id) => app.client.put(app.url(&format!("/fhir/{ty}/{id}"))),
                None => app.client.post(app.url(&format!("/fhir/{ty}"))),
            };
            request
                .bearer_auth(&app.operator_token)
                .header("content-type", "application/fhir+json")
                .body(bytes.clone())
                .send()
        };
        // A kept-alive connection the server closed while this thread parsed a 20 MB example
        // fails before anything was sent; a client sends again on a fresh connection.
        let resp = match send().await {
            Ok(resp) => resp,
            Err(e) if e.is_request() || e.is_connect() => send()
                .await
                .unwrap_or_else(|e| panic!("{}: no answer: {e}", path.display())),
            Err(e) => panic!("{}: no answer: {e}", path.display()),
        };
        let (status, body) = decode(resp).await;
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        assert!(status < 500, "{name}: {status} {body}");
        if (200..300).contains(&status) {
            stored += 1;
            let (ty, id) = (
                body["resourceType"].as_str().unwrap(),
                body["id"].as_str().unwrap(),
            );
            let (read, _) = app.get(&format!("/fhir/{ty}/{id}")).await;
            assert_eq!(read, 200, "{name} stored but not readable");
        } else {
            assert_eq!(
                body["resourceType"], "OperationOutcome",
                "{name}: {status} {body}"
            );
            let code = body["issue"][0]["details"]["coding"][0]["code"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(!code.is_empty(), "{name}: refusal without a code");
            refused.push(format!("{name}: {status} {code}"));
        }
    }
    eprintln!(
        "R4 examples on {backend:?}: {} files, {stored} stored, {} refused: {refused:?}",
        files.len(),
        refused.len()
    );
    // Exactly two refusals, both right: an id of 67 characters (FHIR allows 64) and the npm
    // package's own manifest, which is not a FHIR resource. Everything else is stored.
    assert_eq!(
        refused,
        [
            "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json: 400 invalid_id",
            "package.json: 400 missing_resource_type",
        ]
    );
    assert_eq!(stored, 5_305);
}

both_backends!(official_examples);
