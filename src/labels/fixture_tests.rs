//! Tests against outside data: the Synthea fixtures (which carry no labels, so everything
//! sensitive in them must be found from codes), labelling a whole Bundle, and the shipped value
//! sets checked against the official FHIR R4 package.

use std::collections::BTreeSet;
use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

fn labeller() -> Labeller {
    Labeller::builtin().expect("the shipped value sets load")
}

/// Every fixture Bundle, by file name, from the repository's `tests/fixtures/synthea/` (see
/// `tests/fixtures/README.md`).
fn synthea_bundles() -> Vec<(String, Value)> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/synthea");
    let mut bundles = Vec::new();
    for entry in std::fs::read_dir(&dir).expect("the Synthea fixtures are present") {
        let path = entry.expect("fixture entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            let text = std::fs::read_to_string(&path).expect("fixture reads");
            let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            bundles.push((
                name.unwrap_or_default(),
                serde_json::from_str(text).expect("fixture parses"),
            ));
        }
    }
    bundles.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(bundles.len(), 6, "four patients and two directory bundles");
    bundles
}

fn entries(bundle: &mut Value) -> &mut Vec<Value> {
    bundle["entry"]
        .as_array_mut()
        .expect("a Bundle with entries")
}

fn id_of(resource: &Value) -> String {
    resource["id"]
        .as_str()
        .expect("every fixture resource has an id")
        .to_string()
}

/// The prenatal visit of Luisa710 (the only sensitive care in the four patients).
const PRENATAL_ENCOUNTER: &str = "da7a7973-66ad-4b78-bb87-2a11ef786b10";

/// Every (resource id, label) the labeller finds from each resource's own codes.
fn expected_from_codes() -> BTreeSet<(String, String)> {
    let sex = [
        // Encounter: type 424441002 "Prenatal initial visit", reasonCode 72892002 "Normal
        // pregnancy". A prenatal visit discloses a pregnancy.
        PRENATAL_ENCOUNTER,
        // Condition 19169002 "Miscarriage in first trimester": a pregnancy outcome.
        "78dca8ed-e09d-4a6a-ac8b-3c4ace6c2515",
        // Claim for that visit: items 424441002 and 19169002 bill the prenatal visit and the
        // miscarriage.
        "1185108a-b3a6-42c8-b75d-f5f21c89c954",
        // ExplanationOfBenefit of that claim: the same billed items.
        "62258469-627c-4a50-b962-006d315c887a",
    ];
    with_restricted(&sex, "SEX")
}

/// What labelling whole Bundles adds: the notes of the prenatal visit, whose text (not codes)
/// says "Patient is presenting with miscarriage in first trimester".
fn expected_from_bundles() -> BTreeSet<(String, String)> {
    let notes = [
        // DiagnosticReport 34117-2 "History and physical note" with presentedForm, encounter =
        // the prenatal visit.
        "8df690d0-1de6-4db7-b019-004bc4f9b638",
        // DocumentReference of the same note, context.encounter = the prenatal visit.
        "79251c25-9a3d-4d8f-b852-06309f73033f",
    ];
    let mut expected = expected_from_codes();
    expected.extend(with_restricted(&notes, "SEX"));
    expected
}

fn with_restricted(ids: &[&str], label: &str) -> BTreeSet<(String, String)> {
    ids.iter()
        .flat_map(|id| {
            [
                (id.to_string(), label.to_string()),
                (id.to_string(), "R".to_string()),
            ]
        })
        .collect()
}

// Deliberately not labelled, though they look close: the HPV immunisations (CVX 62, routine
// for every adolescent, with their claims), the smoking-status Observation 0bec558f
// ("Current every day smoker": tobacco is not ETH under 42 CFR 2.11), CarePlan 8767552e
// (activity "Alcohol-free diet" in head-injury rehabilitation, not a use disorder), and every
// other note: Synthea's notes mention smoking and alcoholism in free text for many patients,
// which codes cannot reveal (see the module docs).

#[test]
fn synthea_resources_are_labelled_from_their_own_codes() {
    let labeller = labeller();
    let mut found = BTreeSet::new();
    let mut resources = 0;
    for (_, mut bundle) in synthea_bundles() {
        for entry in entries(&mut bundle) {
            let resource = &mut entry["resource"];
            resources += 1;
            for label in labeller.apply(resource).expect("fixture labels") {
                found.insert((id_of(resource), label.code));
            }
        }
    }
    assert_eq!(resources, 876, "every fixture resource was looked at");
    assert_eq!(found, expected_from_codes());
}

#[test]
fn synthea_bundles_are_labelled_with_notes_inheriting_their_visit() {
    let labeller = labeller();
    let mut found = BTreeSet::new();
    for (name, mut bundle) in synthea_bundles() {
        let added = labeller.apply_bundle(&mut bundle).expect("bundle labels");
        for EntryLabels { entry, added } in &added {
            let id = id_of(&bundle["entry"][*entry]["resource"]);
            found.extend(added.iter().map(|l| (id.clone(), l.code.clone())));
        }
        // The labels are in the Bundle, and labelling again adds nothing.
        for EntryLabels { entry, added } in &added {
            let security = &bundle["entry"][*entry]["resource"]["meta"]["security"];
            assert_eq!(
                security.as_array().map(Vec::len),
                Some(added.len()),
                "{name}"
            );
        }
        assert!(
            labeller
                .apply_bundle(&mut bundle)
                .expect("again")
                .is_empty(),
            "{name}"
        );
    }
    assert_eq!(found, expected_from_bundles());
}

/// A small transaction Bundle: a visit with an HIV diagnosis, its progress note, a vital sign,
/// a claim without codes, its ExplanationOfBenefit, a prescription by reference, and a
/// Provenance pointing at everything.
fn hiv_visit_bundle() -> Value {
    let sct = "http://snomed.info/sct";
    let loinc = "http://loinc.org";
    let concept =
        |system: &str, code: &str| json!({ "coding": [{ "system": system, "code": code }] });
    let entry = |id: &str, resource: Value| json!({ "fullUrl": format!("urn:uuid:{id}"), "resource": resource });
    json!({
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            entry("enc", json!({ "resourceType": "Encounter", "id": "enc", "type": [concept(sct, "185347001")],
                "diagnosis": [{ "condition": { "reference": "urn:uuid:dx" } }] })),
            entry("dx", json!({ "resourceType": "Condition", "id": "dx", "code": concept(sct, "86406008"),
                "encounter": { "reference": "urn:uuid:enc" } })),
            entry("note", json!({ "resourceType": "DocumentReference", "id": "note", "type": concept(loinc, "11506-3"),
                "context": { "encounter": [{ "reference": "urn:uuid:enc" }] } })),
            entry("bp", json!({ "resourceType": "Observation", "id": "bp", "code": concept(loinc, "85354-9"),
                "encounter": { "reference": "urn:uuid:enc" } })),
            entry("claim", json!({ "resourceType": "Claim", "id": "claim",
                "item": [{ "sequence": 1, "encounter": [{ "reference": "urn:uuid:enc" }] }] })),
            entry("eob", json!({ "resourceType": "ExplanationOfBenefit", "id": "eob",
                "claim": { "reference": "Claim/claim" } })),
            entry("med", json!({ "resourceType": "Medication", "id": "med",
                "code": concept("http://www.nlm.nih.gov/research/umls/rxnorm", "1999667") })),
            entry("rx", json!({ "resourceType": "MedicationRequest", "id": "rx",
                "medicationReference": { "reference": "https://ehr.example/fhir/Medication/med/_history/2" } })),
            entry("prov", json!({ "resourceType": "Provenance", "id": "prov",
                "target": [{ "reference": "urn:uuid:dx" }, { "reference": "urn:uuid:note" }] })),
            { "request": { "method": "DELETE", "url": "Observation/old" } }
        ]
    })
}

#[test]
fn bundle_labels_flow_along_disclosing_references() {
    let labeller = labeller();
    let bundle = hiv_visit_bundle();
    let labels = labeller.labels_for_bundle(&bundle).expect("a Bundle");
    let by_id: Vec<(String, Vec<String>)> = labels
        .iter()
        .enumerate()
        .map(|(i, labels)| {
            let id = bundle["entry"][i]["resource"]["id"]
                .as_str()
                .unwrap_or("-")
                .to_string();
            (id, labels.iter().map(|l| l.code.clone()).collect())
        })
        .collect();
    let hiv = || vec!["HIV".to_string(), "R".to_string()];
    assert_eq!(
        by_id,
        vec![
            ("enc".into(), hiv()),   // names the HIV diagnosis
            ("dx".into(), hiv()),    // its own code
            ("note".into(), hiv()),  // narrates the visit
            ("bp".into(), vec![]),   // a vital sign discloses nothing
            ("claim".into(), hiv()), // bills the visit
            ("eob".into(), hiv()),   // explains that claim
            ("med".into(), vec![]),  // a catalogue entry is not labelled
            ("rx".into(), hiv()),    // prescribes the Medication it references
            ("prov".into(), vec![]), // points at resources, discloses none
            ("-".into(), vec![]),    // an entry without a resource
        ]
    );
}

#[test]
fn bundle_labelling_is_idempotent_and_refuses_non_bundles() {
    let labeller = labeller();
    let mut bundle = hiv_visit_bundle();
    let first = labeller.apply_bundle(&mut bundle).expect("labels");
    assert_eq!(first.len(), 6);
    let before = bundle.clone();
    assert!(
        labeller
            .apply_bundle(&mut bundle)
            .expect("again")
            .is_empty()
    );
    assert_eq!(bundle, before);

    let mut patient = json!({ "resourceType": "Patient" });
    let err = labeller
        .apply_bundle(&mut patient)
        .expect_err("not a Bundle");
    assert_eq!(err.code(), "label_input_not_bundle");
    let err = labeller
        .labels_for_bundle(&json!([]))
        .expect_err("not an object");
    assert_eq!(err.code(), "label_input_not_object");
}

/// The unpacked `hl7.fhir.r4.examples@4.0.1` package, if `CONSENTGATE_R4_EXAMPLES` names it.
fn r4_examples() -> Option<PathBuf> {
    let dir = std::env::var_os("CONSENTGATE_R4_EXAMPLES").map(PathBuf::from);
    if dir.is_none() {
        eprintln!(
            "SKIPPED: set CONSENTGATE_R4_EXAMPLES to the unpacked hl7.fhir.r4.examples@4.0.1 package to check the label value sets against it"
        );
    }
    dir
}

fn read_json(path: PathBuf) -> Value {
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(text.strip_prefix('\u{feff}').unwrap_or(&text)).expect("package JSON")
}

/// `(code, display)` of every concept in a CodeSystem's hierarchy or a ValueSet's compose.
fn concepts(value: &Value, out: &mut Vec<(String, String)>) {
    let lists = [value.get("concept"), value.pointer("/compose/include")];
    for item in lists
        .into_iter()
        .flatten()
        .filter_map(Value::as_array)
        .flatten()
    {
        if let (Some(code), Some(display)) = (item["code"].as_str(), item["display"].as_str()) {
            out.push((code.to_string(), display.to_string()));
        }
        concepts(item, out);
    }
}

#[test]
fn document_codes_and_label_names_match_the_package() {
    let Some(package) = r4_examples() else { return };
    let mut act_codes = Vec::new();
    concepts(
        &read_json(package.join("CodeSystem-v3-ActCode.json")),
        &mut act_codes,
    );
    let mut confidentiality = Vec::new();
    concepts(
        &read_json(package.join("CodeSystem-v3-Confidentiality.json")),
        &mut confidentiality,
    );
    let restricted = SecurityLabel::restricted();
    assert!(confidentiality.contains(&(restricted.code, restricted.display)));

    let mut checked = 0;
    for (file, text) in BUILTIN {
        let value_set: Value = serde_json::from_str(text).expect("value set parses");
        let label = &value_set["label"];
        let label = (
            label["code"].as_str().unwrap_or_default().to_string(),
            label["display"].as_str().unwrap_or_default().to_string(),
        );
        assert!(
            act_codes.contains(&label),
            "{file}: label {label:?} is not in v3-ActCode"
        );
        for include in value_set["compose"]["include"]
            .as_array()
            .into_iter()
            .flatten()
        {
            let Some(source) = include["verifiedIn"].as_str() else {
                continue;
            };
            let (_, name) = source.split_once('/').expect("package/file");
            let mut listed = Vec::new();
            concepts(&read_json(package.join(name)), &mut listed);
            for concept in include["concept"].as_array().into_iter().flatten() {
                let pair = (
                    concept["code"].as_str().unwrap_or_default().to_string(),
                    concept["display"].as_str().unwrap_or_default().to_string(),
                );
                assert!(
                    listed.contains(&pair),
                    "{file}: {pair:?} is not in {source}"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 70, "only {checked} document codes were checked");
}
