//! Property tests of de-identification and its leak scan over generated demo populations:
//! no false alarm for any study key (so any date shift), seed or population size, the
//! born-in-Kansas / lives-in-Kansas-City patients and shifted dates that land on the birth
//! date included; and every real identifier planted in an output is caught, with its path.

use proptest::prelude::*;
use proptest::test_runner::Config;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;

use super::super::dates::{self, FhirDate};
use super::super::{
    DeidError, Deidentifier, IdentifierSet, LeakKind, Profile, ScanContext, StudyKey,
};
use super::population::{self, PatientRecords};

/// The demo's reference date: every demo patient is 20 to 91 then.
const TODAY: Date = date!(2026 - 01 - 01);

fn study_key(secret: &[u8; 32]) -> StudyKey {
    StudyKey::from_bytes(secret).expect("32 bytes")
}

/// The patient's birth date.
fn birth_date(patient: &PatientRecords) -> Date {
    patient.patient()["birthDate"]
        .as_str()
        .and_then(FhirDate::parse_prefix)
        .and_then(|d| d.full_date())
        .expect("demo patients have a full birth date")
}

/// An Observation of the patient dated so that the patient's shift moves it onto the birth
/// date: the coincidence that used to fail whole studies.
fn dated_onto_the_birth_date(patient: &PatientRecords, offset: i64) -> Value {
    let source_day = dates::shift(birth_date(patient), -offset).expect("in range");
    json!({
        "resourceType": "Observation", "id": "coincidence-0001", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body height"}]},
        "subject": {"reference": format!("Patient/{}", patient.id)},
        "effectiveDateTime": format!("{}T09:30:00+00:00", dates::format_date(source_day)),
        "valueQuantity": {"value": 51.0, "unit": "cm", "system": "http://unitsofmeasure.org", "code": "cm"}
    })
}

/// De-identifies and scans every resource of every patient; the failures, by path and kind.
fn false_alarms(population: &mut [PatientRecords], deid: &Deidentifier<'_>) -> Vec<String> {
    let mut failures = Vec::new();
    for patient in population.iter_mut() {
        let offset = deid.date_offset_days(&patient.id);
        // Only a patient old enough keeps an exact birth date; the coincidence is planted anyway.
        patient
            .resources
            .push(dated_onto_the_birth_date(patient, offset));
        let sources = IdentifierSet::from_sources(&patient.resources);
        let checked = deid.patient(&patient.id, &sources);
        for resource in &patient.resources {
            if let Err(e) = checked.deidentify_checked(resource) {
                failures.push(e.to_string());
            }
        }
    }
    failures
}

proptest! {
    #![proptest_config(Config { cases: 12, ..Config::default() })]

    #[test]
    fn no_false_alarm_for_any_study_key_seed_or_size(
        seed in any::<u64>(),
        patients in 1usize..=6,
        secret in any::<[u8; 32]>(),
    ) {
        let profile = Profile::safe_harbor();
        let key = study_key(&secret);
        let deid = Deidentifier::new(&profile, &key, TODAY);
        let mut population = population::demo(seed, patients);
        let failures = false_alarms(&mut population, &deid);
        prop_assert!(failures.is_empty(), "{failures:#?}");
    }
}

#[test]
fn no_false_alarm_over_a_whole_cohort_with_moved_patients() {
    let profile = Profile::safe_harbor();
    let mut population = population::demo(2026, 120);
    let moved = population
        .iter()
        .filter(|p| p.patient().get("extension").is_some())
        .count();
    assert!(
        moved >= 8,
        "{moved} patients born in a state their town is named after"
    );
    for secret in [[1u8; 32], [42u8; 32], [200u8; 32]] {
        let key = study_key(&secret);
        let deid = Deidentifier::new(&profile, &key, TODAY);
        let failures = false_alarms(&mut population, &deid);
        assert!(failures.is_empty(), "{failures:#?}");
    }
}

/// What is planted where.
#[derive(Debug, Clone, Copy)]
enum Plant {
    NameInNote,
    NameInNarrative,
    MrnInIdentifier,
    SsnInNote,
    PhoneInTelecom,
    StreetInExtension,
    CityInNote,
    BirthDateUnshifted,
    BirthDateInNote,
}

const PLANTS: [Plant; 9] = [
    Plant::NameInNote,
    Plant::NameInNarrative,
    Plant::MrnInIdentifier,
    Plant::SsnInNote,
    Plant::PhoneInTelecom,
    Plant::StreetInExtension,
    Plant::CityInNote,
    Plant::BirthDateUnshifted,
    Plant::BirthDateInNote,
];

/// Plants one of the patient's real values into `output` (the de-identified form of one of
/// its resources); returns the path and kind the scan must report.
fn plant(output: &mut Value, patient: &Value, what: Plant, filler: &str) -> (String, LeakKind) {
    let root = output["resourceType"].as_str().unwrap_or("$").to_string();
    let given = patient["name"][0]["given"][0].as_str().unwrap_or_default();
    let family = patient["name"][0]["family"].as_str().unwrap_or_default();
    let identifier = |n: usize| {
        patient["identifier"][n]["value"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    };
    let birth = patient["birthDate"].as_str().unwrap_or_default();
    let (y, m, d) = (&birth[..4], &birth[5..7], &birth[8..10]);
    let line = patient["address"][0]["line"][0]
        .as_str()
        .unwrap_or_default();
    let city = patient["address"][0]["city"].as_str().unwrap_or_default();
    let phone = patient["telecom"][0]["value"].as_str().unwrap_or_default();
    let note = |text: String| json!([{"text": text}]);
    match what {
        Plant::NameInNote => {
            output["note"] = note(format!("{filler} {given} {family}, {filler}"));
            (format!("{root}.note[0].text"), LeakKind::Name)
        }
        Plant::NameInNarrative => {
            output["text"] = json!({"status": "generated",
                "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{filler}: {}</div>", family.to_uppercase())});
            (format!("{root}.text.div"), LeakKind::Name)
        }
        Plant::MrnInIdentifier => {
            output["identifier"] =
                json!([{"system": "http://hospital.example/mrn", "value": identifier(0)}]);
            (format!("{root}.identifier[0].value"), LeakKind::Identifier)
        }
        Plant::SsnInNote => {
            output["note"] = note(format!("{filler} SSN {}.", identifier(1)));
            (format!("{root}.note[0].text"), LeakKind::Identifier)
        }
        Plant::PhoneInTelecom => {
            let digits: String = phone.chars().filter(char::is_ascii_digit).collect();
            let written = format!("+1 {}.{}.{}", &digits[..3], &digits[3..6], &digits[6..]);
            output["telecom"] = json!([{"system": "phone", "value": written}]);
            (format!("{root}.telecom[0].value"), LeakKind::Telecom)
        }
        Plant::StreetInExtension => {
            output["extension"] = json!([{"url": "http://example.org/home", "valueString": format!("{filler} {line}")}]);
            (
                format!("{root}.extension[0].valueString"),
                LeakKind::Address,
            )
        }
        Plant::CityInNote => {
            output["note"] = note(format!("{filler} ({city}) {filler}"));
            (format!("{root}.note[0].text"), LeakKind::Address)
        }
        Plant::BirthDateUnshifted => {
            *output = json!({"resourceType": "Patient", "gender": "other", "birthDate": birth});
            ("Patient.birthDate".to_string(), LeakKind::BirthDate)
        }
        Plant::BirthDateInNote => {
            output["note"] = note(format!("{filler} DOB {m}/{d}/{y}"));
            (format!("{root}.note[0].text"), LeakKind::BirthDate)
        }
    }
}

proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    #[test]
    fn every_planted_identifier_is_caught(
        seed in 0u64..1_000,
        patient in 0usize..4,
        resource in any::<prop::sample::Index>(),
        what in prop::sample::select(PLANTS.to_vec()),
        filler in "[a-z]{0,8}( [a-z]{1,8}){0,3}",
        secret in any::<[u8; 32]>(),
    ) {
        let population = population::demo(seed, 4);
        let patient = &population[patient];
        let profile = Profile::safe_harbor();
        let key = study_key(&secret);
        let deid = Deidentifier::new(&profile, &key, TODAY);
        let source = resource.get(&patient.resources);
        let mut output = deid.deidentify(source, &patient.id).expect("demo types are in the profile");
        let (path, kind) = plant(&mut output, patient.patient(), what, &filler);
        let sources = IdentifierSet::from_sources(&patient.resources);
        let context = ScanContext { date_shift_days: Some(deid.date_offset_days(&patient.id)) };
        let leaks = sources.scan_with(&output, &context);
        prop_assert!(
            leaks.iter().any(|l| l.path == path && l.kind == kind),
            "{what:?} at {path} not reported: {leaks:?}"
        );
    }
}

/// A profile that lets notes, identifiers, telecom and an extension through: what a careless
/// study profile might do. The scan is what stops it.
fn careless_profile() -> Profile {
    let safe_harbor: Value =
        serde_json::from_str(include_str!("../../../policies/deid/safe-harbor.json"))
            .expect("the profile is JSON");
    let mut careless = safe_harbor;
    careless["profile"] = json!("careless");
    for (resource_type, element) in [
        ("Observation", "note"),
        ("Patient", "telecom"),
        ("Patient", "identifier"),
    ] {
        careless["resources"][resource_type]
            .as_array_mut()
            .expect("listed")
            .push(json!(element));
    }
    careless["datatypes"]["Annotation"] = json!(["text"]);
    careless["datatypes"]["ContactPoint"] = json!(["system", "value"]);
    careless["datatypes"]["Identifier"] = json!(["system", "value"]);
    Profile::from_texts(
        &careless.to_string(),
        include_str!("../../../policies/deid/restricted-zip3.json"),
    )
    .expect("a valid profile")
}

#[test]
fn a_careless_profile_is_stopped_by_the_scan_and_only_the_leaking_resource_fails() {
    let profile = careless_profile();
    let key = study_key(&[7u8; 32]);
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let mut population = population::demo(2026, 3);
    let patient = &mut population[0];
    let given = patient.patient()["name"][0]["given"][0]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let observation = patient
        .resources
        .iter_mut()
        .find(|r| r["resourceType"] == "Observation")
        .expect("an observation");
    observation["note"] = json!([{"text": format!("{given} says the pain is gone")}]);
    let observation_id = observation["id"].as_str().unwrap_or_default().to_string();
    let sources = IdentifierSet::from_sources(&patient.resources);
    let checked = deid.patient(&patient.id, &sources);
    let mut failed = Vec::new();
    for resource in &patient.resources {
        match checked.deidentify_checked(resource) {
            Ok(_) => {}
            Err(e) => failed.push(e),
        }
    }
    // The Patient (identifiers, telecom kept) and the noted Observation, nothing else.
    let expected_reference = format!(
        "Observation/{}",
        deid.pseudonym("Observation", &observation_id)
    );
    assert_eq!(failed.len(), 2, "{failed:?}");
    for error in &failed {
        let message = error.to_string();
        assert!(!message.contains(&given), "{message}");
        assert!(!message.contains(&observation_id), "{message}");
        match error {
            DeidError::Leak {
                resource_type,
                reference,
                path,
                kind,
            } if resource_type == "Observation" => {
                assert_eq!(reference, &expected_reference);
                assert_eq!(path, "Observation.note[0].text");
                assert_eq!(*kind, LeakKind::Name);
            }
            DeidError::Leak {
                resource_type,
                path,
                kind,
                ..
            } => {
                assert_eq!(resource_type, "Patient");
                assert!(path.starts_with("Patient.identifier[0]"), "{path}");
                assert_eq!(*kind, LeakKind::Identifier);
            }
            other => panic!("not a leak: {other}"),
        }
        assert_eq!(
            error.location().map(|l| l.path),
            Some(match error {
                DeidError::Leak { path, .. } => path.as_str(),
                _ => "",
            })
        );
    }
}

#[test]
fn an_anonymizer_configuration_is_used_through_the_same_checked_entry_point() {
    let path = super::project_root().join("policies/deid/anonymizer-example.json");
    let profile = Profile::load(&path).expect("the example configuration loads");
    assert_eq!(profile.name(), "anonymizer-example");
    assert_eq!(profile.version().len(), 12);
    assert!(profile.allows_resource_type("Patient") && profile.allows_resource_type("Basic"));
    let key = study_key(&[9u8; 32]);
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let mut population = population::demo(2026, 12);
    let mut shaped = 0;
    for patient in &mut population {
        let sources = IdentifierSet::from_sources(&patient.resources);
        let checked = deid.patient(&patient.id, &sources);
        for resource in &patient.resources {
            let output = checked
                .deidentify_checked(resource)
                .unwrap_or_else(|e| panic!("{e}"));
            assert_ne!(output["id"], resource["id"]);
            shaped += 1;
        }
        // A note the configuration does not redact (it is not an Annotation here) is caught.
        let given = patient.patient()["name"][0]["given"][0]
            .as_str()
            .unwrap_or_default()
            .to_string();
        let mut leaky = patient
            .resources
            .iter()
            .find(|r| r["resourceType"] == "Observation")
            .expect("an observation")
            .clone();
        leaky["valueString"] = json!(format!("{given} feels fine"));
        match checked.deidentify_checked(&leaky) {
            Err(DeidError::Leak { kind, path, .. }) => {
                assert_eq!(kind, LeakKind::Name);
                assert!(path.ends_with(".valueString"), "{path}");
            }
            other => panic!("the planted name was not caught: {other:?}"),
        }
    }
    assert!(shaped > 500, "{shaped}");
    // Different studies get different keys from the one file.
    let other_key = study_key(&[10u8; 32]);
    let other = Deidentifier::new(&profile, &other_key, TODAY);
    let patient = &population[0];
    assert_ne!(
        deid.deidentify(patient.patient(), &patient.id).expect("a")["id"],
        other.deidentify(patient.patient(), &patient.id).expect("b")["id"]
    );
}

#[test]
fn an_unsupported_anonymizer_rule_is_refused_at_load_with_file_and_rule_index() {
    let text = r#"{"fhirPathRules": [
        {"path": "Patient.id", "method": "cryptoHash"},
        {"path": "Patient.name", "method": "redact"},
        {"path": "Patient.name.descendants()", "method": "redact"}
    ]}"#;
    match Profile::from_anonymizer_config(text, "study-7.json") {
        Err(DeidError::AnonymizerConfig { file, rule, .. }) => {
            assert_eq!((file.as_str(), rule), ("study-7.json", Some(2)));
        }
        other => panic!("{other:?}"),
    }
    let stu3 = r#"{"fhirVersion": "Stu3", "fhirPathRules": []}"#;
    assert!(matches!(
        Profile::from_anonymizer_config(stu3, "old.json"),
        Err(DeidError::AnonymizerConfig { rule: None, .. })
    ));
}
