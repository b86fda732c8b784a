//! The Microsoft FHIR anonymizer's own test pairs, run through [`AnonymizerConfig`] and
//! compared with the expected output as parsed JSON (object key order does not matter,
//! array order does).

use time::Date;
use time::macros::date;

use super::super::methods::AnonymizerConfig;
use super::{fixtures, read_json};

/// Ages are judged against this day; the pairs were made around then (the anonymizer uses
/// the clock, so a fixed day keeps the test from changing with the years).
const TODAY: Date = date!(2020 - 06 - 01);

fn config(name: &str) -> AnonymizerConfig {
    let path = fixtures().join("ms-anonymizer/configs").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    AnonymizerConfig::from_json(&text).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// Runs each `(input, expected)` pair and lists the ones that differ.
fn mismatches(config_name: &str, pairs: &[(&str, &str)]) -> Vec<String> {
    let config = config(config_name);
    let dir = fixtures().join("ms-anonymizer/pairs");
    let mut failed = Vec::new();
    for (input, target) in pairs {
        let source = read_json(&dir.join(format!("{input}.json")));
        let expected = read_json(&dir.join(format!("{target}.json")));
        let actual = config
            .anonymize(&source, TODAY)
            .unwrap_or_else(|e| panic!("{input}: {e}"));
        if actual != expected {
            failed.push(format!(
                "{input} -> {target}\nexpected: {}\nactual:   {}",
                serde_json::to_string(&expected).unwrap_or_default(),
                serde_json::to_string(&actual).unwrap_or_default()
            ));
        }
    }
    failed
}

#[test]
fn common_config_pairs_match_exactly() {
    let pairs = [
        ("patient-basic", "patient-basic-target"),
        ("patient-special-content", "patient-special-content-target"),
        ("patient-null-date", "patient-null-date-target"),
        ("contained-basic", "contained-basic-target"),
        ("bundle-basic", "bundle-basic-target"),
        ("contained-in-bundle", "contained-in-bundle-target"),
    ];
    let failed = mismatches("common-config.json", &pairs);
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn no_partial_config_pair_matches_exactly() {
    let failed = mismatches(
        "common-no-partial-config.json",
        &[("patient-no-partial", "patient-no-partial-target")],
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn redact_all_config_pairs_match_exactly() {
    let pairs = [
        ("patient-basic", "patient-redact-all-target"),
        ("contained-basic", "contained-redact-all-target"),
        ("bundle-basic", "bundle-redact-all-target"),
        (
            "contained-in-bundle",
            "contained-in-bundle-redact-all-target",
        ),
    ];
    let failed = mismatches("redact-all-config.json", &pairs);
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn r4_sample_config_pairs_match_exactly() {
    let pairs = [
        ("Account-R4", "Account-R4-target"),
        ("Claim-R4", "Claim-R4-target"),
        ("Contract-R4", "Contract-R4-target"),
        ("MedicinalProduct", "MedicinalProduct-target"),
        ("OrganizationAffiliation", "OrganizationAffiliation-target"),
        ("ServiceRequest", "ServiceRequest-target"),
    ];
    let failed = mismatches("r4-configuration-sample.json", &pairs);
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn substitute_primitive_pair_matches_exactly() {
    let failed = mismatches(
        "substitute-primitive.json",
        &[(
            "patient-substitute-primitive",
            "patient-substitute-primitive-target",
        )],
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}

#[test]
fn every_shipped_configuration_loads() {
    let dir = fixtures().join("ms-anonymizer/configs");
    let mut loaded = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        AnonymizerConfig::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        loaded += 1;
    }
    assert_eq!(loaded, 5);
}

#[test]
fn configurations_this_module_cannot_apply_are_refused_with_their_rule() {
    let dir = fixtures().join("ms-anonymizer/more-configs");
    for (name, rule) in [
        ("generalize-patient-config.json", 1),
        ("substitute-complex.json", 0),
        ("substitute-multiple.json", 0),
    ] {
        let text = std::fs::read_to_string(dir.join(name)).expect("readable");
        match AnonymizerConfig::parse(&text, name) {
            Err(super::super::DeidError::AnonymizerConfig { file, rule: at, .. }) => {
                assert_eq!((file.as_str(), at), (name, Some(rule)));
            }
            other => panic!("{name}: {other:?}"),
        }
    }
}
