//! The Safe Harbor profile on every resource of the Synthea fixtures.

use std::collections::HashMap;

use serde_json::{Value, json};
use time::macros::{date, format_description};
use time::{Date, OffsetDateTime};

use super::super::schema::is_fhir_id;
use super::super::{Deidentifier, IdentifierSet, Profile, StudyKey};
use super::{fixtures, read_json};

/// The day the fixtures were generated (Synthea's timestamp in their file names).
const TODAY: Date = date!(2020 - 03 - 04);

/// One Synthea patient: its id and its resources, with `urn:uuid:` references resolved to
/// `Type/id` the way the gateway stores them.
struct PatientRecords {
    patient_id: String,
    resources: Vec<Value>,
}

/// The patients, and the resources of the two bundles of organisations and practitioners.
struct Fixtures {
    patients: Vec<PatientRecords>,
    directory: Vec<Value>,
}

fn key(secret: &str) -> StudyKey {
    StudyKey::from_bytes(format!("{secret}-study-key-material").as_bytes()).expect("long enough")
}

fn patients() -> Vec<PatientRecords> {
    load().patients
}

fn load() -> Fixtures {
    let dir = fixtures().join("synthea");
    let mut bundles = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("directory entry").path();
        if path.extension().is_some_and(|e| e == "json") {
            bundles.push((
                path.file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string(),
                read_json(&path),
            ));
        }
    }
    bundles.sort_by(|a, b| a.0.cmp(&b.0));
    let mut full_urls = HashMap::new();
    for (_, bundle) in &bundles {
        for entry in bundle["entry"].as_array().expect("entries") {
            let resource = &entry["resource"];
            let target = format!(
                "{}/{}",
                resource["resourceType"].as_str().unwrap_or(""),
                resource["id"].as_str().unwrap_or("")
            );
            full_urls.insert(entry["fullUrl"].as_str().unwrap_or("").to_string(), target);
        }
    }
    let (mut patients, mut directory) = (Vec::new(), Vec::new());
    for (name, bundle) in &bundles {
        let mut resources: Vec<Value> = bundle["entry"]
            .as_array()
            .expect("entries")
            .iter()
            .map(|e| e["resource"].clone())
            .collect();
        for resource in &mut resources {
            resolve(resource, &full_urls);
        }
        if name.contains("Information") {
            directory.extend(resources);
            continue;
        }
        let patient = resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .expect("a Patient per bundle");
        let patient_id = patient["id"].as_str().expect("patient id").to_string();
        patients.push(PatientRecords {
            patient_id,
            resources,
        });
    }
    assert_eq!(patients.len(), 4, "four Synthea patients");
    Fixtures {
        patients,
        directory,
    }
}

fn resolve(value: &mut Value, full_urls: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                match (key.as_str(), inner.as_str().and_then(|r| full_urls.get(r))) {
                    ("reference", Some(target)) => *inner = Value::String(target.clone()),
                    _ => resolve(inner, full_urls),
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| resolve(item, full_urls)),
        _ => {}
    }
}

/// Every `(path, value)` under keys named `name`, anywhere in `value`.
fn all_named<'v>(value: &'v Value, name: &str, path: &str, found: &mut Vec<(String, &'v Value)>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map {
                let here = format!("{path}.{key}");
                if key == name {
                    found.push((here.clone(), inner));
                }
                all_named(inner, name, &here, found);
            }
        }
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                all_named(item, name, &format!("{path}[{index}]"), found);
            }
        }
        _ => {}
    }
}

#[test]
fn safe_harbor_output_has_no_identifier_of_its_patient() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let fixtures = load();
    let mut count = 0;
    for patient in &fixtures.patients {
        let sources = IdentifierSet::from_sources(&patient.resources);
        assert!(!sources.is_empty());
        for resource in &patient.resources {
            let output = deid
                .deidentify(resource, &patient.patient_id)
                .expect("every Synthea type is in the profile");
            let leaks = sources.scan(&output);
            assert!(leaks.is_empty(), "{}: {leaks:?}", resource["resourceType"]);
            // The scan is the gate: the same output passes the checked entry point too.
            deid.deidentify_checked(resource, &patient.patient_id, &sources)
                .expect("no leak");
            count += 1;
        }
        // The organisations and practitioners carry none of this patient's identifiers either.
        for resource in &fixtures.directory {
            let output = deid
                .deidentify(resource, &patient.patient_id)
                .expect("directory types are in the profile");
            assert!(
                sources.scan(&output).is_empty(),
                "{}",
                resource["resourceType"]
            );
        }
    }
    count += fixtures.directory.len();
    assert_eq!(count, 876, "every resource of the six bundles");
}

#[test]
fn the_scan_would_catch_the_source_identifiers_if_they_were_left() {
    // The unfiltered sources themselves are full of hits: the scan is not blind.
    for patient in patients() {
        let sources = IdentifierSet::from_sources(&patient.resources);
        let record = patient
            .resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .expect("patient");
        let kinds: std::collections::BTreeSet<_> = sources
            .scan(record)
            .into_iter()
            .map(|l| l.kind.code())
            .collect();
        for kind in [
            "name",
            "identifier",
            "telecom",
            "address",
            "postal_code",
            "birth_date",
            "geolocation",
        ] {
            assert!(
                kinds.contains(kind),
                "{kind} not found in the source Patient: {kinds:?}"
            );
        }
    }
}

#[test]
fn every_id_and_reference_is_a_valid_pseudonym() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    for patient in patients() {
        for resource in &patient.resources {
            let output = deid
                .deidentify(resource, &patient.patient_id)
                .expect("de-identified");
            let resource_type = resource["resourceType"].as_str().expect("type");
            let id = resource["id"].as_str().expect("id");
            assert_eq!(output["id"], json!(deid.pseudonym(resource_type, id)));
            let mut ids = Vec::new();
            all_named(&output, "id", resource_type, &mut ids);
            for (path, value) in ids {
                assert!(value.as_str().is_some_and(is_fhir_id), "{path}");
            }
            let mut references = Vec::new();
            all_named(&output, "reference", resource_type, &mut references);
            for (path, value) in references {
                let reference = value.as_str().unwrap_or("");
                let valid = match reference.split_once('/') {
                    Some((target_type, target_id)) => {
                        target_type.chars().next().is_some_and(char::is_uppercase)
                            && is_fhir_id(target_id)
                    }
                    None => reference.strip_prefix('#').is_some_and(is_fhir_id),
                };
                assert!(valid, "{path}: not a literal reference to a valid id");
                assert!(
                    !reference.contains(&patient.patient_id),
                    "{path} still names the source patient"
                );
            }
        }
    }
}

#[test]
fn pseudonyms_are_stable_within_a_study_and_differ_across_studies() {
    let profile = Profile::safe_harbor();
    let (key_a, key_b) = (key("a"), key("b"));
    let study_a = Deidentifier::new(&profile, &key_a, TODAY);
    let again_a = Deidentifier::new(&profile, &key_a, TODAY);
    let study_b = Deidentifier::new(&profile, &key_b, TODAY);
    let patient = &patients()[0];
    let observation = patient
        .resources
        .iter()
        .find(|r| r["resourceType"] == "Observation")
        .expect("observation");
    let first = study_a
        .deidentify(observation, &patient.patient_id)
        .expect("a");
    let second = again_a
        .deidentify(observation, &patient.patient_id)
        .expect("a again");
    let other = study_b
        .deidentify(observation, &patient.patient_id)
        .expect("b");
    assert_eq!(first, second);
    assert_ne!(first["id"], other["id"]);
    assert_ne!(first["subject"], other["subject"]);
    assert_eq!(
        first["subject"]["reference"],
        json!(format!(
            "Patient/{}",
            study_a.pseudonym("Patient", &patient.patient_id)
        ))
    );
    assert_ne!(study_a.date_offset_days(&patient.patient_id), 0);
}

#[test]
fn clinical_codes_and_values_survive() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let mut checked = 0;
    for patient in patients() {
        for source in patient
            .resources
            .iter()
            .filter(|r| r["resourceType"] == "Observation")
        {
            let output = deid
                .deidentify(source, &patient.patient_id)
                .expect("observation");
            assert_eq!(output["code"]["coding"], source["code"]["coding"]);
            assert_eq!(output["status"], source["status"]);
            assert_eq!(
                output["category"][0]["coding"],
                source["category"][0]["coding"]
            );
            if source.get("valueQuantity").is_some() {
                assert_eq!(output["valueQuantity"], source["valueQuantity"]);
                checked += 1;
            }
            if let Some(components) = source["component"].as_array() {
                for (index, component) in components.iter().enumerate() {
                    assert_eq!(
                        output["component"][index]["valueQuantity"],
                        component["valueQuantity"]
                    );
                    assert_eq!(
                        output["component"][index]["code"]["coding"],
                        component["code"]["coding"]
                    );
                }
            }
            // Free text goes, even inside an allowed CodeableConcept.
            assert!(output["code"].get("text").is_none());
        }
    }
    assert!(checked > 100, "{checked} quantities compared");
}

/// A FHIR date or dateTime as an instant (a plain date is its midnight UTC).
fn instant(text: &str) -> OffsetDateTime {
    let with_time = format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second][offset_hour sign:mandatory]:[offset_minute]"
    );
    OffsetDateTime::parse(text, &with_time)
        .or_else(|_| OffsetDateTime::parse(&format!("{text}T00:00:00+00:00"), &with_time))
        .unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[test]
fn intervals_between_dates_of_one_patient_survive_exactly() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let dated = [
        ("Patient", "birthDate"),
        ("Encounter", "period"),
        ("Observation", "effectiveDateTime"),
        ("Condition", "onsetDateTime"),
        ("Immunization", "occurrenceDateTime"),
    ];
    for patient in patients() {
        let offset = deid.date_offset_days(&patient.patient_id);
        assert!(offset != 0 && offset.abs() <= 365);
        let mut pairs = Vec::new();
        for source in &patient.resources {
            let output = deid
                .deidentify(source, &patient.patient_id)
                .expect("de-identified");
            for (resource_type, element) in dated {
                if source["resourceType"] != resource_type {
                    continue;
                }
                match (&source[element], &output[element]) {
                    (Value::String(before), Value::String(after)) => {
                        pairs.push((before.clone(), after.clone()))
                    }
                    (Value::Object(before), Value::Object(after)) => {
                        for end in ["start", "end"] {
                            if let (Some(b), Some(a)) = (
                                before.get(end).and_then(Value::as_str),
                                after.get(end).and_then(Value::as_str),
                            ) {
                                pairs.push((b.to_string(), a.to_string()));
                            }
                        }
                    }
                    (before, after) => panic!("{resource_type}.{element}: {before} became {after}"),
                }
            }
        }
        assert!(pairs.len() > 50);
        let (first_before, first_after) = (instant(&pairs[0].0), instant(&pairs[0].1));
        for (before, after) in &pairs {
            assert_eq!(
                instant(after) - instant(before),
                time::Duration::days(offset),
                "{before} -> {after}"
            );
            // So every interval between two of them is unchanged.
            assert_eq!(instant(after) - first_after, instant(before) - first_before);
        }
    }
}

#[test]
fn a_patient_over_89_on_the_reference_date_is_reported_as_90_or_older() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let far_future = Deidentifier::new(&profile, &key, date!(2100 - 01 - 01));
    for patient in patients() {
        let record = patient
            .resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .expect("patient");
        let output = far_future
            .deidentify(record, &patient.patient_id)
            .expect("patient");
        assert!(
            output.get("birthDate").is_none(),
            "an exact birth date of someone over 89 leaves"
        );
        let extensions = output["_birthDate"]["extension"]
            .as_array()
            .expect("a _birthDate with extensions");
        let age = extensions
            .iter()
            .find(|e| e["url"] == super::super::AGE_EXTENSION_URL)
            .expect("the age extension");
        assert_eq!(age["valueAge"]["value"], json!(90));
        assert_eq!(age["valueAge"]["comparator"], json!(">="));
        let sources = IdentifierSet::from_sources(&patient.resources);
        assert!(sources.scan(&output).is_empty());
    }
}

#[test]
fn restricted_zip3_become_000_and_others_keep_three_digits() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let patient = &patients()[0];
    let mut record = patient
        .resources
        .iter()
        .find(|r| r["resourceType"] == "Patient")
        .expect("patient")
        .clone();
    let output = deid
        .deidentify(&record, &patient.patient_id)
        .expect("patient");
    assert_eq!(output["address"][0]["postalCode"], json!("980"));
    assert_eq!(output["address"][0]["state"], record["address"][0]["state"]);
    assert!(
        output["address"][0].get("city").is_none() && output["address"][0].get("line").is_none()
    );
    assert!(
        output["address"][0].get("extension").is_none(),
        "geolocation leaves"
    );
    for restricted in ["03601", "05901-1234", "89301"] {
        record["address"][0]["postalCode"] = json!(restricted);
        let output = deid
            .deidentify(&record, &patient.patient_id)
            .expect("patient");
        assert_eq!(
            output["address"][0]["postalCode"],
            json!("000"),
            "{restricted}"
        );
    }
}
