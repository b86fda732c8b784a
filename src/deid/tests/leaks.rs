//! The leak scan's matching rules, one table per kind of value.

use serde_json::{Value, json};

use super::super::{IdentifierSet, Leak, LeakKind, ScanContext};

/// A source patient with one of everything the scan looks for.
fn sources() -> IdentifierSet {
    IdentifierSet::from_sources(&[json!({
        "resourceType": "Patient", "id": "d88f994a-5efa-421d-9c40-5f116d2114a6",
        "extension": [
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Salena230 Okuneva707"}
        ],
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-33-5538"}, {"value": "12345"}],
        "name": [{"family": "Sanford861", "given": ["Carolee951", "Al"]}, {"family": "van der Berg"}],
        "telecom": [{"system": "phone", "value": "555-830-2222"}, {"system": "email", "value": "Carolee@Example.org"}],
        "birthDate": "1969-03-27",
        "address": [{
            "line": ["1038 Kessler Rapid Suite 34"], "city": "Redmond", "postalCode": "98053",
            "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/geolocation", "extension": [
                {"url": "latitude", "valueDecimal": 47.68943},
                {"url": "longitude", "valueDecimal": -122.1}
            ]}]
        }]
    })])
}

/// The kind found in a one-string output, if any.
fn found(text: &str) -> Option<LeakKind> {
    let leaks = sources().scan(&json!({"resourceType": "Observation", "code": {"text": text}}));
    leaks.first().map(|leak| leak.kind)
}

#[test]
fn names_match_whole_words_case_insensitively() {
    let cases = [
        ("SANFORD861", Some(LeakKind::Name)),
        ("seen by carolee951 today", Some(LeakKind::Name)),
        ("Sanford", None),
        ("Sanford8610", None),
        ("Al", None),
        ("Van der Berg clinic", Some(LeakKind::Name)),
        ("van Gogh", None),
        ("mother: Okuneva707", Some(LeakKind::Name)),
        ("Redmond campus", Some(LeakKind::Address)),
    ];
    for (text, expected) in cases {
        assert_eq!(found(text), expected, "{text}");
    }
}

#[test]
fn identifiers_match_bounded_and_long_enough() {
    let cases = [
        ("999-33-5538", Some(LeakKind::Identifier)),
        ("SSN 999-33-5538.", Some(LeakKind::Identifier)),
        ("1999-33-55381", None),
        ("12345", None),
        (
            "Patient/d88f994a-5efa-421d-9c40-5f116d2114a6",
            Some(LeakKind::Identifier),
        ),
        ("write to carolee@example.org", Some(LeakKind::Telecom)),
        ("1038 kessler rapid suite 34", Some(LeakKind::Address)),
    ];
    for (text, expected) in cases {
        assert_eq!(found(text), expected, "{text}");
    }
}

#[test]
fn phones_match_by_digits_but_codes_do_not() {
    let cases = [
        ("(555) 830-2222", Some(LeakKind::Telecom)),
        ("+1 555.830.2222", Some(LeakKind::Telecom)),
        ("5558302222", Some(LeakKind::Telecom)),
        ("8302-2", None),
        ("LOINC 8302-2 Body Height", None),
        ("55583022221234", None),
        ("2020-01-01T10:00:00Z", None),
    ];
    for (text, expected) in cases {
        assert_eq!(found(text), expected, "{text}");
    }
}

#[test]
fn zip_codes_match_as_whole_tokens() {
    let cases = [
        ("98053", Some(LeakKind::PostalCode)),
        ("free text, WA 98053-1234", Some(LeakKind::PostalCode)),
        ("(980531234)", Some(LeakKind::PostalCode)),
        ("98053-8", None),
        ("980", None),
        ("1980530", None),
    ];
    for (text, expected) in cases {
        assert_eq!(found(text), expected, "{text}");
    }
}

#[test]
fn birth_dates_and_coordinates_match_bounded_by_digits() {
    let cases = [
        ("1969-03-27", Some(LeakKind::BirthDate)),
        ("1969-03-27T08:00:00-05:00", Some(LeakKind::BirthDate)),
        ("born 03/27/1969", Some(LeakKind::BirthDate)),
        ("1969", None),
        ("11969-03-271", None),
        ("at 47.68943 N", Some(LeakKind::Geolocation)),
        ("47.689431", None),
        ("-122.1", None),
    ];
    for (text, expected) in cases {
        assert_eq!(found(text), expected, "{text}");
    }
    let numbers = sources().scan(&json!({"resourceType": "Location", "position": {"latitude": 47.68943, "longitude": -122.1}}));
    assert_eq!(
        numbers,
        vec![Leak {
            path: "Location.position.latitude".into(),
            kind: LeakKind::Geolocation
        }]
    );
}

#[test]
fn leaks_name_the_path_never_the_value() {
    let output: Value =
        json!({"resourceType": "Patient", "contact": [{"name": {"given": ["x", "Carolee951"]}}]});
    let leaks = sources().scan(&output);
    assert_eq!(
        leaks,
        vec![Leak {
            path: "Patient.contact[0].name.given[1]".into(),
            kind: LeakKind::Name
        }]
    );
    let debug = format!("{:?}", sources());
    assert!(
        !debug.contains("Sanford") && !debug.contains("98053"),
        "{debug}"
    );
    let error = super::super::DeidError::Leak {
        resource_type: "Patient".into(),
        reference: "Patient/0f3a".into(),
        path: leaks[0].path.clone(),
        kind: leaks[0].kind,
    };
    assert_eq!(
        error.to_string(),
        "Patient Patient/0f3a: de-identified output still holds a name of the source records at Patient.contact[0].name.given[1]"
    );
}

const BIRTH_PLACE: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";

/// A patient born in `born_in` who lives in `city`, `state`, named `given` White.
fn resident(born_in: &str, city: &str, state: &str, given: &str) -> IdentifierSet {
    IdentifierSet::from_sources(&[
        json!({
            "resourceType": "Patient", "id": "kc-patient-0001",
            "extension": [{"url": BIRTH_PLACE, "valueAddress": {"city": "Topeka", "state": born_in, "country": "US"}}],
            "identifier": [{"system": "http://hospital.example/mrn", "value": "MRN-7700123"}],
            "name": [{"family": "White", "given": [given]}],
            "birthDate": "1969-03-27",
            "address": [{"line": ["12 Elm Street"], "city": city, "state": state, "postalCode": "66101", "country": "US"}]
        }),
        json!({
            "resourceType": "Encounter", "id": "kc-encounter-01",
            "period": {"start": "1969-02-25T10:00:00Z"}
        }),
    ])
}

/// The kinds found in `output`.
fn kinds(set: &IdentifierSet, output: Value) -> Vec<LeakKind> {
    set.scan(&output).into_iter().map(|l| l.kind).collect()
}

#[test]
fn a_kept_state_never_matches_a_removed_city() {
    let kansas = resident("Kansas", "Kansas City", "KS", "Carol");
    let kept = json!({"resourceType": "Patient",
        "extension": [{"url": BIRTH_PLACE, "valueAddress": {"state": "Kansas", "country": "US"}}],
        "address": [{"state": "KS", "postalCode": "661", "country": "US"}]});
    assert_eq!(kinds(&kansas, kept), []);
    // The city itself, wherever an address part carries it, is still a leak.
    let smuggled = json!({"resourceType": "Patient", "address": [{"state": "Kansas City"}]});
    assert_eq!(kinds(&kansas, smuggled), [LeakKind::Address]);
    let city = json!({"resourceType": "Patient", "address": [{"city": "Kansas City"}]});
    assert_eq!(kinds(&kansas, city), [LeakKind::Address]);

    // A city named like the state the patient was born in (Indiana, Pennsylvania).
    let indiana = resident("Indiana", "Indiana", "PA", "Carol");
    let kept = json!({"resourceType": "Patient",
        "extension": [{"url": BIRTH_PLACE, "valueAddress": {"state": "Indiana"}}]});
    assert_eq!(kinds(&indiana, kept), []);
    let city = json!({"resourceType": "Patient", "address": [{"city": "Indiana"}]});
    assert_eq!(kinds(&indiana, city), [LeakKind::Address]);

    // A patient named like her birth state.
    let virginia = resident("Virginia", "Virginia Beach", "VA", "Virginia");
    let kept = json!({"resourceType": "Patient",
        "extension": [{"url": BIRTH_PLACE, "valueAddress": {"state": "Virginia"}}]});
    assert_eq!(kinds(&virginia, kept), []);
    let name = json!({"resourceType": "Patient", "name": [{"given": ["Virginia"]}]});
    assert_eq!(kinds(&virginia, name), [LeakKind::Name]);
}

#[test]
fn values_are_looked_for_in_elements_of_their_kind_and_in_free_text() {
    let set = resident("Kansas", "Kansas City", "KS", "Carol");
    let cases = [
        // A clinic named after the town is not the patient's address.
        (
            json!({"resourceType": "Organization", "name": "Kansas City Clinic"}),
            vec![],
        ),
        // A race display equal to the family name is a code's text, not a name.
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"display": "White"}]}}),
            vec![],
        ),
        (
            json!({"resourceType": "Observation", "code": {"text": "White"}}),
            vec![LeakKind::Name],
        ),
        // A whole name in a code's display is a name all the same.
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"display": "told by Carol White"}]}}),
            vec![LeakKind::Name],
        ),
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"display": "White, Carol"}]}}),
            vec![LeakKind::Name],
        ),
        (
            json!({"resourceType": "Observation", "note": [{"text": "lives in Kansas City"}]}),
            vec![LeakKind::Address],
        ),
        // A code equal to the ZIP code is a code.
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"code": "66101"}]}}),
            vec![],
        ),
        (
            json!({"resourceType": "Observation", "code": {"text": "zip 66101"}}),
            vec![LeakKind::PostalCode],
        ),
        (
            json!({"resourceType": "Observation", "identifier": [{"value": "MRN-7700123"}]}),
            vec![LeakKind::Identifier],
        ),
        // An identifier is looked for in codes too.
        (
            json!({"resourceType": "Observation", "code": {"coding": [{"code": "MRN-7700123"}]}}),
            vec![LeakKind::Identifier],
        ),
        (
            json!({"resourceType": "Observation", "subject": {"reference": "Patient/kc-patient-0001"}}),
            vec![LeakKind::Identifier],
        ),
        (
            json!({"resourceType": "Observation", "subject": {"display": "Carol White"}}),
            vec![LeakKind::Name],
        ),
        (
            json!({"resourceType": "Patient", "address": [{"line": ["12 Elm Street"]}]}),
            vec![LeakKind::Address],
        ),
        (
            json!({"resourceType": "Observation", "unknownElement": "Carol"}),
            vec![LeakKind::Name],
        ),
    ];
    for (output, expected) in cases {
        assert_eq!(kinds(&set, output.clone()), expected, "{output}");
    }
}

#[test]
fn zip3_forms_are_kept_and_full_zips_are_not() {
    let set = resident("Kansas", "Kansas City", "KS", "Carol");
    for (code, expected) in [
        ("661", vec![]),
        ("66100", vec![]),
        ("661**", vec![]),
        ("000", vec![]),
        ("66101", vec![LeakKind::PostalCode]),
        ("66101-1234", vec![LeakKind::PostalCode]),
    ] {
        let output = json!({"resourceType": "Patient", "address": [{"postalCode": code}]});
        assert_eq!(kinds(&set, output), expected, "{code}");
    }
}

#[test]
fn a_shifted_date_on_the_birth_date_is_no_leak_an_unshifted_birth_date_is() {
    let set = resident("Kansas", "Kansas City", "KS", "Carol");
    let shifted_by = |days| ScanContext {
        date_shift_days: Some(days),
    };
    let on_birthday =
        json!({"resourceType": "Encounter", "period": {"start": "1969-03-27T10:00:00Z"}});
    // The source encounter (1969-02-25) moved 30 days lands on the birth date: coincidence.
    assert_eq!(set.scan_with(&on_birthday, &shifted_by(30)), []);
    // Nothing explains it: no shift, or a shift that does not come from a source date.
    assert_eq!(
        set.scan_with(&on_birthday, &ScanContext::default())[0].kind,
        LeakKind::BirthDate
    );
    assert_eq!(
        set.scan_with(&on_birthday, &shifted_by(12))[0].kind,
        LeakKind::BirthDate
    );
    // In Patient.birthDate the true birth date is always a leak, shifted or not.
    let patient = json!({"resourceType": "Patient", "birthDate": "1969-03-27"});
    assert_eq!(
        set.scan_with(&patient, &shifted_by(30)),
        vec![Leak {
            path: "Patient.birthDate".into(),
            kind: LeakKind::BirthDate
        }]
    );
    // The year of birth alone is kept on purpose.
    let year = json!({"resourceType": "Patient", "birthDate": "1969"});
    assert_eq!(set.scan_with(&year, &shifted_by(30)), []);
    // Text is never shifted.
    let note = json!({"resourceType": "Observation", "note": [{"text": "DOB 03/27/1969"}]});
    assert_eq!(
        set.scan_with(&note, &shifted_by(30))[0].kind,
        LeakKind::BirthDate
    );
}

#[test]
fn the_first_leak_stops_the_scan() {
    let set = resident("Kansas", "Kansas City", "KS", "Carol");
    let output = json!({"resourceType": "Patient",
        "name": [{"family": "White"}], "address": [{"city": "Kansas City"}]});
    assert_eq!(set.scan(&output).len(), 2);
    assert_eq!(
        set.first_leak(&output, &ScanContext::default()),
        Some(Leak {
            path: "Patient.name[0].family".into(),
            kind: LeakKind::Name
        })
    );
}
