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
    let path = fixtures().join("ms-anonymizer").join(name);
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

/// Which configuration makes each expected output, from the fixtures' README and
/// `more-configs/NOTICE` (upstream's ResourceTests.cs and CollectionResourceTests.cs):
/// `(configuration, input, expected output)`.
const PAIRS: [(&str, &str, &str); 26] = [
    (
        "configs/common-config.json",
        "patient-basic",
        "patient-basic-target",
    ),
    (
        "configs/common-config.json",
        "patient-special-content",
        "patient-special-content-target",
    ),
    (
        "configs/common-config.json",
        "patient-null-date",
        "patient-null-date-target",
    ),
    (
        "configs/common-config.json",
        "contained-basic",
        "contained-basic-target",
    ),
    (
        "configs/common-config.json",
        "bundle-basic",
        "bundle-basic-target",
    ),
    (
        "configs/common-config.json",
        "contained-in-bundle",
        "contained-in-bundle-target",
    ),
    (
        "configs/common-config.json",
        "bundle-without-entry-resource",
        "bundle-without-entry-resource-target",
    ),
    (
        "configs/common-no-partial-config.json",
        "patient-no-partial",
        "patient-no-partial-target",
    ),
    (
        "configs/redact-all-config.json",
        "patient-basic",
        "patient-redact-all-target",
    ),
    (
        "configs/redact-all-config.json",
        "contained-basic",
        "contained-redact-all-target",
    ),
    (
        "configs/redact-all-config.json",
        "bundle-basic",
        "bundle-redact-all-target",
    ),
    (
        "configs/redact-all-config.json",
        "contained-in-bundle",
        "contained-in-bundle-redact-all-target",
    ),
    (
        "configs/substitute-primitive.json",
        "patient-substitute-primitive",
        "patient-substitute-primitive-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "Account-R4",
        "Account-R4-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "Claim-R4",
        "Claim-R4-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "Contract-R4",
        "Contract-R4-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "MedicinalProduct",
        "MedicinalProduct-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "OrganizationAffiliation",
        "OrganizationAffiliation-target",
    ),
    (
        "configs/r4-configuration-sample.json",
        "ServiceRequest",
        "ServiceRequest-target",
    ),
    (
        "more-configs/generalize-patient-config.json",
        "patient-generalize",
        "patient-generalize-target",
    ),
    (
        "more-configs/substitute-complex.json",
        "patient-substitute-complex",
        "patient-substitute-complex-target",
    ),
    (
        "more-configs/substitute-conflict-rules.json",
        "patient-substitute-conflict-rules",
        "patient-substitute-conflict-rules-target",
    ),
    (
        "more-configs/substitute-multiple.json",
        "patient-substitute-multiple",
        "patient-substitute-multiple-target",
    ),
    (
        "more-configs/substitute-multiple.json",
        "contained-substitute",
        "contained-substitute-target",
    ),
    (
        "more-configs/substitute-multiple.json",
        "bundle-substitute",
        "bundle-substitute-target",
    ),
    (
        "more-configs/substitute-multiple-2.json",
        "patient-substitute-multiple-2",
        "patient-substitute-multiple-2-target",
    ),
];

/// Pairs known not to match, each with the reason; empty when every pair passes.
const KNOWN_MISMATCHES: [(&str, &str); 0] = [];

/// Every `*-target.json` in the fixtures must be in [`PAIRS`] (so a new pair cannot be
/// skipped silently), and every pair must match exactly unless listed with its reason.
#[test]
fn every_test_pair_in_the_fixtures_matches_exactly() {
    let dir = fixtures().join("ms-anonymizer/pairs");
    let mut targets: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().to_string_lossy().to_string();
            name.strip_suffix("-target.json")
                .map(|stem| format!("{stem}-target"))
        })
        .collect();
    targets.sort();
    let mut listed: Vec<String> = PAIRS.iter().map(|(_, _, t)| (*t).to_string()).collect();
    listed.sort();
    assert_eq!(
        targets, listed,
        "a pair in the fixtures has no configuration in PAIRS"
    );
    let mut failed = Vec::new();
    let mut passed = 0;
    for (config_path, input, target) in PAIRS {
        let known = KNOWN_MISMATCHES.iter().any(|(t, _)| *t == target);
        let failures = mismatches(config_path, &[(input, target)]);
        match (failures.is_empty(), known) {
            (true, false) => passed += 1,
            (false, true) => {}
            (true, true) => {
                failed.push(format!("{target} now passes: take it off KNOWN_MISMATCHES"))
            }
            (false, false) => failed.extend(failures),
        }
    }
    eprintln!("{passed} of {} upstream pairs match exactly", PAIRS.len());
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
    assert_eq!(passed + KNOWN_MISMATCHES.len(), PAIRS.len());
}

/// The inputs without an expected output (empty resources) go through every configuration
/// without an error.
#[test]
fn empty_resources_pass_every_configuration() {
    let dir = fixtures().join("ms-anonymizer/pairs");
    for input in ["patient-empty", "bundle-empty", "condition-empty"] {
        let source = read_json(&dir.join(format!("{input}.json")));
        for (config_path, _, _) in PAIRS {
            config(config_path)
                .anonymize(&source, TODAY)
                .unwrap_or_else(|e| panic!("{input} under {config_path}: {e}"));
        }
    }
}

#[test]
fn every_shipped_configuration_loads() {
    let mut loaded = 0;
    let dirs = ["configs", "more-configs"].map(|d| fixtures().join("ms-anonymizer").join(d));
    let entries = dirs.iter().flat_map(|dir| {
        std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
    });
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        let text = std::fs::read_to_string(&path).expect("readable");
        AnonymizerConfig::parse(&text, &name).unwrap_or_else(|e| panic!("{e}"));
        loaded += 1;
    }
    assert_eq!(loaded, 10);
}

#[test]
fn a_rule_outside_the_subset_is_refused_with_file_and_rule_index() {
    let text = r#"{"fhirPathRules": [
        {"path": "nodesByType('Address').country | nodesByType('Address').state", "method": "keep"},
        {"path": "Condition.onset | Condition.abatement as Age", "method": "perturb", "span": 6},
        {"path": "Patient.name.first()", "method": "redact"}
    ]}"#;
    match AnonymizerConfig::parse(text, "mine.json") {
        Err(super::super::DeidError::AnonymizerConfig { file, rule, reason }) => {
            assert_eq!((file.as_str(), rule), ("mine.json", Some(2)));
            assert!(reason.contains("first()"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
}
