//! Tests for the demo generator: determinism, referential integrity, shape and coverage.

use std::collections::{HashMap, HashSet};
use std::sync::OnceLock;

use serde_json::Value;

use super::{DemoOptions, directory, directory_bundle, fhir, patient_bundles};

fn opts(patients: usize) -> DemoOptions {
    DemoOptions {
        patients,
        seed: 2026,
    }
}

/// The 200-patient cohort for seed 2026, generated once and shared by the tests that only read
/// it (patient `k` does not depend on N, which `patient_k_does_not_depend_on_n` checks).
fn cohort() -> &'static [Value] {
    static COHORT: OnceLock<Vec<Value>> = OnceLock::new();
    COHORT.get_or_init(|| patient_bundles(&opts(200)).collect())
}

fn first(n: usize) -> &'static [Value] {
    &cohort()[..n]
}

fn entries(bundle: &Value) -> &[Value] {
    bundle["entry"].as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn full_urls(bundle: &Value) -> HashSet<String> {
    entries(bundle)
        .iter()
        .filter_map(|e| e["fullUrl"].as_str().map(String::from))
        .collect()
}

/// Every `reference` string anywhere under `v`.
fn references(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("reference", Value::String(s)) => out.push(s.clone()),
                    _ => references(value, out),
                }
            }
        }
        Value::Array(items) => items.iter().for_each(|i| references(i, out)),
        _ => {}
    }
}

/// Every (system, code) pair anywhere under `v`.
fn codings(v: &Value, out: &mut HashSet<(String, String)>) {
    match v {
        Value::Object(map) => {
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (map.get("system"), map.get("code"))
            {
                out.insert((system.clone(), code.clone()));
            }
            map.values().for_each(|value| codings(value, out));
        }
        Value::Array(items) => items.iter().for_each(|i| codings(i, out)),
        _ => {}
    }
}

/// Fails on values FHIR JSON forbids: nulls, empty strings, arrays and objects.
fn assert_no_empty(v: &Value, path: &str) {
    match v {
        Value::Null => panic!("null at {path}"),
        Value::String(s) => assert!(!s.is_empty(), "empty string at {path}"),
        Value::Array(items) => {
            assert!(!items.is_empty(), "empty array at {path}");
            items.iter().for_each(|i| assert_no_empty(i, path));
        }
        Value::Object(map) => {
            assert!(!map.is_empty(), "empty object at {path}");
            assert!(
                !map.contains_key("meta"),
                "meta (e.g. security labels) at {path}"
            );
            map.iter()
                .for_each(|(k, value)| assert_no_empty(value, &format!("{path}.{k}")));
        }
        _ => {}
    }
}

/// The resources of `bundle` of type `resource_type`.
fn resources<'a>(bundle: &'a Value, resource_type: &str) -> Vec<&'a Value> {
    entries(bundle)
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == resource_type)
        .collect()
}

#[test]
fn default_options() {
    assert_eq!(
        DemoOptions::default(),
        DemoOptions {
            patients: 10,
            seed: 2026
        }
    );
}

#[test]
fn same_seed_gives_identical_bytes() {
    let render = || {
        let mut out = serde_json::to_string(&directory_bundle(&opts(10))).unwrap_or_default();
        for bundle in patient_bundles(&opts(10)) {
            out.push_str(&serde_json::to_string(&bundle).unwrap_or_default());
        }
        out
    };
    let first = render();
    assert!(first.len() > 10_000);
    assert_eq!(first, render());
}

#[test]
fn patient_k_does_not_depend_on_n() {
    let small: Vec<Value> = patient_bundles(&opts(3)).collect();
    let large: Vec<Value> = patient_bundles(&opts(10)).collect();
    assert_eq!(small.len(), 3);
    assert_eq!(large.len(), 10);
    assert_eq!(small[..], large[..3]);
}

#[test]
fn different_seeds_differ() {
    let other = DemoOptions {
        patients: 1,
        seed: 7,
    };
    assert_ne!(directory_bundle(&opts(1)), directory_bundle(&other));
    assert_ne!(
        patient_bundles(&opts(1)).next(),
        patient_bundles(&other).next()
    );
}

#[test]
fn iterator_outlives_options() {
    let bundles = {
        let o = opts(2);
        patient_bundles(&o)
    };
    assert_eq!(bundles.count(), 2);
}

#[test]
fn every_reference_resolves() {
    let directory = directory_bundle(&opts(0));
    let known_directory = full_urls(&directory);
    let mut refs = Vec::new();
    references(&directory, &mut refs);
    assert!(!refs.is_empty());
    for r in &refs {
        assert!(
            known_directory.contains(r),
            "directory reference {r} does not resolve"
        );
    }
    for bundle in first(60) {
        let local = full_urls(bundle);
        let mut refs = Vec::new();
        references(bundle, &mut refs);
        for r in &refs {
            assert!(r.starts_with("urn:uuid:"), "non-urn reference {r}");
            assert!(
                local.contains(r) || known_directory.contains(r),
                "reference {r} does not resolve"
            );
        }
    }
}

#[test]
fn resources_are_well_formed() {
    let allowed = [
        "Organization",
        "Practitioner",
        "PractitionerRole",
        "Patient",
        "Encounter",
        "Condition",
        "Observation",
        "Procedure",
        "MedicationRequest",
        "Immunization",
        "AllergyIntolerance",
        "DiagnosticReport",
        "DocumentReference",
    ];
    let directory = directory_bundle(&opts(0));
    let bundles = std::iter::once(&directory).chain(first(60));
    for bundle in bundles {
        assert_eq!(bundle["resourceType"], "Bundle");
        assert_eq!(bundle["type"], "transaction");
        assert_no_empty(bundle, "Bundle");
        for e in entries(bundle) {
            let resource = &e["resource"];
            let rtype = resource["resourceType"].as_str().unwrap_or_default();
            let id = resource["id"].as_str().unwrap_or_default();
            assert!(
                allowed.contains(&rtype),
                "unexpected resourceType {rtype:?}"
            );
            let uuid = uuid::Uuid::parse_str(id).expect("id is a uuid");
            assert_eq!(uuid.get_version_num(), 4);
            assert_eq!(e["fullUrl"], format!("urn:uuid:{id}"));
            assert_eq!(e["request"]["method"], "POST");
            assert_eq!(e["request"]["url"], rtype);
        }
    }
}

#[test]
fn ids_are_unique_across_patients() {
    let mut seen = HashSet::new();
    let directory = directory_bundle(&opts(0));
    let bundles = std::iter::once(&directory).chain(first(200));
    for bundle in bundles {
        for url in entries(bundle).iter().filter_map(|e| e["fullUrl"].as_str()) {
            assert!(seen.insert(url.to_string()), "duplicate id {url}");
        }
    }
    assert!(seen.len() > 200 * 30);
}

#[test]
fn patient_identifiers_are_unique_and_typed() {
    let mut mrns = HashSet::new();
    for bundle in first(200) {
        let patients = resources(bundle, "Patient");
        assert_eq!(patients.len(), 1);
        let ids = patients[0]["identifier"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        let mrn = ids
            .iter()
            .find(|i| i["system"] == "https://consentgate.example/mrn")
            .expect("MRN");
        assert_eq!(mrn["type"]["coding"][0]["code"], "MR");
        assert!(mrns.insert(mrn["value"].as_str().unwrap_or_default().to_string()));
        let ssn = ids
            .iter()
            .find(|i| i["system"] == "http://hl7.org/fhir/sid/us-ssn")
            .expect("SSN");
        assert!(
            ssn["value"]
                .as_str()
                .unwrap_or_default()
                .starts_with("999-")
        );
    }
}

#[test]
fn bundle_sizes_and_encounter_counts() {
    let mut sizes = Vec::new();
    for bundle in first(200) {
        let n = entries(bundle).len();
        assert!((30..=120).contains(&n), "bundle with {n} entries");
        let encounters = resources(bundle, "Encounter").len();
        assert!((3..=8).contains(&encounters), "{encounters} encounters");
        sizes.push(n);
    }
    let mean = sizes.iter().sum::<usize>() as f64 / sizes.len() as f64;
    assert!((45.0..=90.0).contains(&mean), "mean bundle size {mean}");
}

#[test]
fn dates_are_consistent() {
    for bundle in first(100) {
        let mut periods: HashMap<String, (String, String)> = HashMap::new();
        for enc in resources(bundle, "Encounter") {
            let start = enc["period"]["start"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let end = enc["period"]["end"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            assert!(start.as_str() >= "2015-01-01" && start < end && end.as_str() < "2026-01-01");
            assert!(start.ends_with("+00:00"));
            periods.insert(
                format!("urn:uuid:{}", enc["id"].as_str().unwrap_or_default()),
                (start, end),
            );
        }
        let within = |resource: &Value, field: &str, value: &Value| {
            let at = value.as_str().unwrap_or_default();
            let enc_ref = resource["encounter"]["reference"]
                .as_str()
                .or_else(|| resource["context"]["encounter"][0]["reference"].as_str())
                .unwrap_or_default();
            let (start, end) = periods.get(enc_ref).expect("encounter in bundle");
            assert!(
                start.as_str() <= at && at <= end.as_str(),
                "{field} {at} outside {start}..{end}"
            );
        };
        for e in entries(bundle) {
            let r = &e["resource"];
            for field in [
                "onsetDateTime",
                "recordedDate",
                "effectiveDateTime",
                "occurrenceDateTime",
                "authoredOn",
                "date",
            ] {
                if !r[field].is_null() && r["resourceType"] != "Patient" {
                    within(r, field, &r[field]);
                }
            }
            if !r["performedPeriod"].is_null() {
                within(r, "performed.start", &r["performedPeriod"]["start"]);
                within(r, "performed.end", &r["performedPeriod"]["end"]);
            }
            if let (Some(onset), Some(abated)) =
                (r["onsetDateTime"].as_str(), r["abatementDateTime"].as_str())
            {
                assert!(onset < abated && abated < "2026-01-01");
                assert_eq!(r["clinicalStatus"]["coding"][0]["code"], "resolved");
            }
        }
        let birth = resources(bundle, "Patient")[0]["birthDate"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        assert!(birth.as_str() >= "1935-01-01" && birth.as_str() <= "2005-12-31");
    }
}

#[test]
fn every_sensitive_category_appears_at_200() {
    let mut seen = HashSet::new();
    for bundle in first(200) {
        codings(bundle, &mut seen);
    }
    let markers = [
        // substance use
        ("http://snomed.info/sct", "7200002"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F10.20"),
        ("http://snomed.info/sct", "75544000"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F11.20"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "1010600"),
        // HIV
        ("http://snomed.info/sct", "86406008"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "B20"),
        ("http://loinc.org", "75622-1"),
        ("http://www.nlm.nih.gov/research/umls/rxnorm", "1999667"),
        // mental health
        ("http://snomed.info/sct", "35489007"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F32.9"),
        ("http://snomed.info/sct", "197480006"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "F41.9"),
        ("http://loinc.org", "34788-0"),
        ("http://loinc.org", "11488-4"),
        // reproductive and sexual health
        ("http://snomed.info/sct", "72892002"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "Z34.90"),
        ("http://snomed.info/sct", "15628003"),
        ("http://hl7.org/fhir/sid/icd-10-cm", "A54.9"),
        ("http://snomed.info/sct", "386639001"),
        // genetics
        ("http://loinc.org", "21636-6"),
        ("http://loinc.org", "51969-4"),
    ];
    for (system, code) in markers {
        assert!(
            seen.contains(&(system.to_string(), code.to_string())),
            "{system}|{code} never generated"
        );
    }
    // And the ordinary background the sensitive items hide in.
    for (system, code) in [
        ("http://snomed.info/sct", "38341003"),
        ("http://loinc.org", "8480-6"),
        ("http://hl7.org/fhir/sid/cvx", "140"),
    ] {
        assert!(
            seen.contains(&(system.to_string(), code.to_string())),
            "{system}|{code} never generated"
        );
    }
}

#[test]
fn sensitive_share_is_moderate() {
    let sensitive = [
        "7200002",
        "75544000",
        "86406008",
        "35489007",
        "197480006",
        "72892002",
        "15628003",
        "21636-6",
    ];
    let flagged = first(200)
        .iter()
        .filter(|b| {
            let mut seen = HashSet::new();
            codings(b, &mut seen);
            seen.iter()
                .any(|(_, code)| sensitive.contains(&code.as_str()))
        })
        .count();
    assert!(
        (60..=180).contains(&flagged),
        "{flagged} of 200 patients have sensitive items"
    );
}

#[test]
fn conditions_carry_snomed_and_icd() {
    for bundle in first(30) {
        for condition in resources(bundle, "Condition") {
            let systems: Vec<&str> = condition["code"]["coding"]
                .as_array()
                .map(|c| c.iter().filter_map(|c| c["system"].as_str()).collect())
                .unwrap_or_default();
            assert_eq!(
                systems,
                [
                    "http://snomed.info/sct",
                    "http://hl7.org/fhir/sid/icd-10-cm"
                ]
            );
            assert_eq!(
                condition["category"][0]["coding"][0]["code"],
                "encounter-diagnosis"
            );
        }
    }
}

#[test]
fn directory_has_orgs_practitioners_and_roles() {
    let directory = directory_bundle(&opts(0));
    assert_eq!(resources(&directory, "Organization").len(), 5);
    assert_eq!(resources(&directory, "Practitioner").len(), 10);
    assert_eq!(resources(&directory, "PractitionerRole").len(), 10);
    for p in resources(&directory, "Practitioner") {
        let npi = p["identifier"][0]["value"].as_str().unwrap_or_default();
        assert_eq!(
            p["identifier"][0]["system"],
            "http://hl7.org/fhir/sid/us-npi"
        );
        assert_eq!(npi.len(), 10);
        assert_eq!(directory::npi(npi[..9].parse().unwrap_or_default()), npi);
    }
}

#[test]
fn npi_check_digit() {
    // The worked example from the CMS NPI check-digit specification.
    assert_eq!(directory::npi(123_456_789), "1234567893");
}

#[test]
fn base64_matches_rfc4648_vectors() {
    let cases = [
        ("", ""),
        ("f", "Zg=="),
        ("fo", "Zm8="),
        ("foo", "Zm9v"),
        ("foob", "Zm9vYg=="),
        ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ];
    for (plain, encoded) in cases {
        assert_eq!(fhir::base64(plain.as_bytes()), encoded);
    }
}

#[test]
fn clinicians_work_where_they_see_patients() {
    let directory = directory_bundle(&opts(0));
    let works_at: HashSet<(String, String)> = resources(&directory, "PractitionerRole")
        .iter()
        .map(|role| {
            let who = role["practitioner"]["reference"]
                .as_str()
                .unwrap_or_default();
            let at = role["organization"]["reference"]
                .as_str()
                .unwrap_or_default();
            (who.to_string(), at.to_string())
        })
        .collect();
    for bundle in first(60) {
        for enc in resources(bundle, "Encounter") {
            let who = enc["participant"][0]["individual"]["reference"]
                .as_str()
                .unwrap_or_default();
            let at = enc["serviceProvider"]["reference"]
                .as_str()
                .unwrap_or_default();
            assert!(
                works_at.contains(&(who.to_string(), at.to_string())),
                "{who} does not work at {at}"
            );
        }
    }
}

#[test]
fn patients_are_adults_at_every_visit() {
    for bundle in first(100) {
        let birth = resources(bundle, "Patient")[0]["birthDate"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let birth_year: i32 = birth[..4].parse().unwrap_or_default();
        for enc in resources(bundle, "Encounter") {
            let start = enc["period"]["start"].as_str().unwrap_or_default();
            let year: i32 = start[..4].parse().unwrap_or_default();
            // Whole-year arithmetic brackets the true age within one year either way.
            let age = year - birth_year;
            assert!(
                (18..=91).contains(&age),
                "age about {age} at {start} (born {birth})"
            );
            if age == 18 {
                assert!(
                    start[4..10] >= birth[4..10],
                    "visit before the 18th birthday"
                );
            }
        }
    }
}

#[test]
fn some_patients_were_born_in_a_state_their_town_is_named_after() {
    let birth_place = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
    let mut moved = 0;
    let mut towns = HashSet::new();
    for bundle in cohort() {
        let patient = resources(bundle, "Patient")[0];
        let Some(extension) = patient["extension"].as_array() else {
            continue;
        };
        let place = extension
            .iter()
            .find(|e| e["url"] == birth_place)
            .expect("a moved patient's extension is its birth place");
        let state = place["valueAddress"]["state"].as_str().unwrap_or_default();
        let city = patient["address"][0]["city"].as_str().unwrap_or_default();
        let hometown = super::names::HOMETOWNS
            .iter()
            .find(|h| h.town.city == city && h.birth_state == state)
            .expect("a town of the list, with its birth state");
        // The phone and ZIP belong to the town the patient lives in now.
        let phone = patient["telecom"][0]["value"].as_str().unwrap_or_default();
        assert!(
            phone.starts_with(&format!("({})", hometown.town.area_code)),
            "{phone}"
        );
        assert_eq!(patient["address"][0]["postalCode"], hometown.town.zip);
        assert!(
            city.starts_with(state.split(' ').next().unwrap_or_default()),
            "{city} is named after {state}"
        );
        moved += 1;
        towns.insert(city.to_string());
    }
    assert!((12..=45).contains(&moved), "{moved} of 200 moved");
    assert!(towns.len() >= 5, "{towns:?}");
}
