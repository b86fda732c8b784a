//! The Microsoft anonymizer's methods value by value, with the numbers of its test pairs.

use time::Date;
use time::macros::date;

use super::super::methods::{
    AnonymizerConfig, Operation, RedactSettings, Transformed, ValueKind, crypto_hash,
    crypto_hash_reference, date_shift, date_shift_offset, redact,
};

const TODAY: Date = date!(2020 - 06 - 01);

fn transformed(value: Option<&str>, operation: Operation) -> Transformed {
    Transformed {
        value: value.map(str::to_string),
        operation,
    }
}

#[test]
fn crypto_hash_is_hex_hmac_sha256() {
    // patient-basic-target.json: key "123", id "example".
    assert_eq!(
        crypto_hash("123", "example"),
        "698d54f0494528a759f19c8e87a9f99e75a5881b9267ee3926bcf62c992d84ba"
    );
    // RFC 4231 test case 2.
    assert_eq!(
        crypto_hash("Jefe", "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn crypto_hash_of_a_reference_hashes_only_the_id() {
    let h = |v: &str| crypto_hash("123", v);
    let uuid = "04121321-4af5-424c-a0e1-ed3aab1c349d";
    let cases = [
        ("Patient/23".to_string(), format!("Patient/{}", h("23"))),
        (
            "http://example.org/fhir/Patient/23".to_string(),
            format!("http://example.org/fhir/Patient/{}", h("23")),
        ),
        (
            "Patient/23/_history/2".to_string(),
            format!("Patient/{}/_history/2", h("23")),
        ),
        ("#p1".to_string(), format!("#{}", h("p1"))),
        (
            "urn:oid:1.2.36.1".to_string(),
            format!("urn:oid:{}", h("1.2.36.1")),
        ),
        (format!("urn:uuid:{uuid}"), format!("urn:uuid:{}", h(uuid))),
        ("Unknown/23".to_string(), h("Unknown/23")),
        ("urn:oid:1.02".to_string(), h("urn:oid:1.02")),
    ];
    for (reference, expected) in cases {
        assert_eq!(
            crypto_hash_reference("123", &reference),
            expected,
            "{reference}"
        );
    }
}

#[test]
fn date_shift_follows_the_byte_formula() {
    // patient-basic: resource "example", key "123" moves 2001-01-01 to 2001-02-11.
    assert_eq!(date_shift_offset("123", "example"), 41);
    assert_eq!(date_shift_offset("", ""), -50);
    assert!((0..500).all(|i| date_shift_offset("k", &format!("r{i}")).abs() <= 50));
    let cases = [
        (
            "2001-01-01",
            transformed(Some("2001-02-11"), Operation::Perturb),
        ),
        (
            "2001-01-01Z",
            transformed(Some("2001-02-11"), Operation::Perturb),
        ),
        (
            "2000-01-01T01:01:01-01:00",
            transformed(Some("2000-02-11T00:00:00-01:00"), Operation::Perturb),
        ),
        (
            "2000-01-01T23:59:59.999Z",
            transformed(Some("2000-02-11T00:00:00.000Z"), Operation::Perturb),
        ),
        (
            "2000-01-01T01:01:01",
            transformed(Some("2000-02-11"), Operation::Perturb),
        ),
        ("2014", transformed(Some("2014"), Operation::Redact)),
        ("2014-05", transformed(Some("2014"), Operation::Redact)),
        ("1925-06-01", transformed(None, Operation::Redact)),
        (
            "not a date",
            transformed(Some("not a date"), Operation::Redact),
        ),
    ];
    for (value, expected) in cases {
        assert_eq!(
            date_shift("123", "example", value, true, TODAY),
            expected,
            "{value}"
        );
    }
    assert_eq!(
        date_shift("123", "example", "2014", false, TODAY),
        transformed(None, Operation::Redact)
    );
}

#[test]
fn redact_with_partial_flags() {
    let partial = RedactSettings {
        partial_dates: true,
        partial_ages: true,
        partial_zip_codes: true,
        restricted_zip3: vec!["036".into(), "893".into()],
    };
    let none = RedactSettings::default();
    let cases = [
        (
            "2001-05-06",
            ValueKind::Date,
            &partial,
            transformed(Some("2001"), Operation::Redact),
        ),
        (
            "2001-05-06T10:00:00Z",
            ValueKind::DateTime,
            &partial,
            transformed(Some("2001"), Operation::Redact),
        ),
        (
            "1929-05-06",
            ValueKind::Date,
            &partial,
            transformed(None, Operation::Redact),
        ),
        (
            "2001-05-06",
            ValueKind::Date,
            &none,
            transformed(None, Operation::Redact),
        ),
        (
            "12345",
            ValueKind::PostalCode,
            &partial,
            transformed(Some("12300"), Operation::Abstract),
        ),
        (
            "12345-6789",
            ValueKind::PostalCode,
            &partial,
            transformed(Some("12300-0000"), Operation::Abstract),
        ),
        (
            "03601",
            ValueKind::PostalCode,
            &partial,
            transformed(Some("00000"), Operation::Abstract),
        ),
        (
            "12",
            ValueKind::PostalCode,
            &partial,
            transformed(Some("12"), Operation::Abstract),
        ),
        (
            "12345",
            ValueKind::PostalCode,
            &none,
            transformed(None, Operation::Redact),
        ),
        (
            "89",
            ValueKind::AgeValue,
            &partial,
            transformed(Some("89"), Operation::Redact),
        ),
        (
            "90",
            ValueKind::AgeValue,
            &partial,
            transformed(None, Operation::Redact),
        ),
        (
            "45",
            ValueKind::AgeValue,
            &none,
            transformed(None, Operation::Redact),
        ),
        (
            "Jane",
            ValueKind::Other,
            &partial,
            transformed(None, Operation::Redact),
        ),
    ];
    for (value, kind, settings, expected) in cases {
        assert_eq!(
            redact(value, kind, settings, TODAY),
            expected,
            "{value} {kind:?}"
        );
    }
}

#[test]
fn configurations_outside_the_subset_are_refused() {
    for rule in [
        r#"{"path": "Observation.value", "method": "perturb"}"#,
        r#"{"path": "Observation.value", "method": "perturb", "span": -1}"#,
        r#"{"path": "Observation.value", "method": "perturb", "span": 1, "roundTo": 29}"#,
        r#"{"path": "Observation.value", "method": "perturb", "span": 1, "rangeType": "wide"}"#,
        r#"{"path": "Patient.name", "method": "generalize"}"#,
        r#"{"path": "Patient.name", "method": "generalize", "cases": {"$this": 1}}"#,
        r#"{"path": "Patient.name", "method": "generalize", "cases": {"true": "'a'"}, "otherValues": "drop"}"#,
        r#"{"path": "Patient.name", "method": "substitute", "replaceWith": [1]}"#,
        r#"{"path": "Patient.name", "method": "mask"}"#,
        r#"{"path": "Patient.name.first()", "method": "redact"}"#,
        r#"{"path": "Patient.name[0]", "method": "redact"}"#,
        r#"{"path": "Patient.name.where(family.matches('('))", "method": "redact"}"#,
        r#"{"path": "Patient.name.where(family.matches(%pattern))", "method": "redact"}"#,
        r#"{"path": "Patient.name implies true", "method": "redact"}"#,
        r#"{"path": "Patient.name is HumanName", "method": "redact"}"#,
    ] {
        let config = format!(r#"{{"fhirPathRules": [{rule}]}}"#);
        assert_eq!(
            AnonymizerConfig::from_json(&config).expect_err(rule).code(),
            "anonymizer_config_unsupported",
            "{rule}"
        );
    }
    for parameters in [
        r#"{"dateShiftScope": "galaxy"}"#,
        r#"{"encryptKey": "too short"}"#,
    ] {
        let config = format!(r#"{{"fhirPathRules": [], "parameters": {parameters}}}"#);
        assert!(
            AnonymizerConfig::from_json(&config).is_err(),
            "{parameters}"
        );
    }
}

#[test]
fn rules_apply_in_order_and_the_first_one_wins() {
    let config = AnonymizerConfig::from_json(
        r#"{"fhirPathRules": [
            {"path": "Patient.name.where(use='usual')", "method": "keep"},
            {"path": "Patient.nodesByType('HumanName')", "method": "redact"},
            {"path": "Patient.name", "method": "cryptoHash"}
        ], "parameters": {"cryptoHashKey": "123"}}"#,
    )
    .expect("config");
    let out = config
        .anonymize(
            &serde_json::json!({"resourceType": "Patient", "name": [
                {"use": "usual", "family": "Kept"}, {"use": "official", "family": "Gone"}
            ]}),
            TODAY,
        )
        .expect("patient");
    assert_eq!(
        out["name"],
        serde_json::json!([{"use": "usual", "family": "Kept"}])
    );
    assert_eq!(out["meta"]["security"][0]["code"], "REDACTED");
    assert!(
        out["meta"]["security"]
            .as_array()
            .is_some_and(|l| l.len() == 1),
        "the hash rule met only handled nodes"
    );
}
