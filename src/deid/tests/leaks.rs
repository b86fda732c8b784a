//! The leak scan's matching rules, one table per kind of value.

use serde_json::{Value, json};

use super::super::{IdentifierSet, Leak, LeakKind};

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
        path: leaks[0].path.clone(),
        kind: leaks[0].kind,
    };
    assert_eq!(
        error.to_string(),
        "de-identified output still holds a name of the source records at Patient.contact[0].name.given[1]"
    );
}
