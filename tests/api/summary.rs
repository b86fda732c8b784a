//! The International Patient Summary: `GET /fhir/Patient/{id}/$summary` as the patient and as
//! a clinician whose consent leaves out sensitive categories; the documents' structure, and
//! an independent check by Python `fhir.resources` (R4B models). Both backends.

use std::path::PathBuf;
use std::process::Command;

use reqwest::Method;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, acts_as, client, consent, get_as, load_records, permit, spawn_app};

/// The Python with `fhir.resources`: `CONSENTGATE_IPS_PYTHON`, else the venv `.ci/run` makes
/// under `target/`. Under CI its absence is a failure; elsewhere the check is skipped after
/// one loud line.
fn fhir_resources_python() -> Option<PathBuf> {
    let python = std::env::var_os("CONSENTGATE_IPS_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/ips-venv/bin/python")
        });
    let ok = Command::new(&python)
        .args(["-c", "import fhir.resources.R4B.bundle"])
        .output()
        .is_ok_and(|o| o.status.success());
    if ok {
        return Some(python);
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python with fhir.resources is required under CI (.ci/run makes target/ips-venv)");
    }
    eprintln!(
        "!!!!! IPS VALIDATION BY fhir.resources SKIPPED: no {} with fhir.resources; \
         python3 -m venv target/ips-venv && target/ips-venv/bin/pip install fhir.resources !!!!!",
        python.display()
    );
    None
}

/// Validates `bundle` with fhir.resources' R4B Bundle model (every entry's resource too).
pub(crate) fn validate_with_fhir_resources(bundle: &Value) {
    let Some(python) = fhir_resources_python() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("ips.json");
    std::fs::write(&file, bundle.to_string()).unwrap();
    let script = "import json, sys\n\
        from fhir.resources.R4B.bundle import Bundle\n\
        b = Bundle.model_validate(json.load(open(sys.argv[1])))\n\
        assert b.type == 'document' and b.entry[0].resource.__resource_type__ == 'Composition'\n\
        print(len(b.entry))\n";
    let out = Command::new(python)
        .args(["-c", script])
        .arg(&file)
        .output()
        .expect("python runs");
    assert!(
        out.status.success(),
        "fhir.resources refuses the IPS Bundle: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let count: usize = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    assert_eq!(count, bundle["entry"].as_array().unwrap().len());
}

fn section<'a>(doc: &'a Value, code: &str) -> Option<&'a Value> {
    doc["entry"][0]["resource"]["section"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["code"]["coding"][0]["code"] == code)
}

fn entries(section: &Value) -> Vec<&str> {
    section["entry"]
        .as_array()
        .map(|l| l.iter().map(|e| e["reference"].as_str().unwrap()).collect())
        .unwrap_or_default()
}

async fn the_summary_holds_what_the_caller_may_see(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");

    // The patient's own summary: everything of theirs.
    let (status, own) = get_as(&app, &pat, "/fhir/Patient/pat/$summary").await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(own["type"], "document");
    let composition = &own["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    assert_eq!(composition["subject"]["reference"], "Patient/pat");
    let problems = section(&own, "11450-4").expect("problems, always");
    let mut listed = entries(problems);
    listed.sort();
    assert_eq!(listed, ["Condition/hiv", "Condition/htn"]);
    for required in ["10160-0", "48765-2"] {
        let s = section(&own, required).expect("a required section is always there");
        assert_eq!(s["emptyReason"]["coding"][0]["code"], "unavailable", "{s}");
    }
    assert_eq!(
        entries(section(&own, "30954-2").expect("results")),
        ["Observation/brca"]
    );
    assert!(
        section(&own, "11369-6").is_none(),
        "no immunizations, no section"
    );
    // Every reference resolves inside the document.
    let inside: Vec<String> = own["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    for s in composition["section"].as_array().unwrap() {
        for r in entries(s) {
            assert!(inside.iter().any(|i| i == r), "{r} is in the document");
        }
    }
    assert!(inside.contains(&"Patient/pat".to_string()));
    validate_with_fhir_resources(&own);
    assert_eq!(
        get_as(&app, &pat, "/fhir/Patient/other/$summary").await.0,
        404
    );

    // A clinician whose consent names no sensitive category gets no HIV diagnosis and no
    // genetic test in the summary.
    let (_, clinician) = client(
        &app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await;
    let mine = consent("pat", permit("Organization/clinic", "TREAT"));
    let (status, body) = app
        .send_as(&pat, Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, theirs) = get_as(&app, &clinician, "/fhir/Patient/pat/$summary").await;
    assert_eq!(status, 200, "{theirs}");
    assert_eq!(
        entries(section(&theirs, "11450-4").unwrap()),
        ["Condition/htn"]
    );
    assert!(section(&theirs, "30954-2").is_none(), "{theirs}");
    assert!(
        !theirs.to_string().contains("86406008"),
        "no HIV code anywhere"
    );
    validate_with_fhir_resources(&theirs);
}

both_backends!(the_summary_holds_what_the_caller_may_see);
