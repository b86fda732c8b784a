//! Unit tests of loading value sets: the shipped files, the version hash, and every format
//! rule a broken file can break.

use std::path::PathBuf;

use serde_json::{Value, json};

use super::*;

const SCT: &str = "http://snomed.info/sct";
const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";

fn labeller() -> Labeller {
    Labeller::builtin().expect("the shipped value sets load")
}

fn codes(labels: &[SecurityLabel]) -> Vec<&str> {
    labels.iter().map(|l| l.code.as_str()).collect()
}

fn condition(system: &str, code: &str) -> Value {
    json!({ "resourceType": "Condition", "code": { "coding": [{ "system": system, "code": code }] } })
}

fn policies_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("policies/labels")
}

#[test]
fn the_folder_and_the_builtin_copy_are_the_same() {
    let loaded = Labeller::load(&policies_dir()).expect("policies/labels loads");
    let builtin = labeller();
    assert_eq!(loaded.version_hash(), builtin.version_hash());
    assert_eq!(builtin.version_hash().len(), 64);
    assert!(
        builtin
            .version_hash()
            .chars()
            .all(|c| c.is_ascii_hexdigit())
    );
    let labels: Vec<&str> = builtin
        .sensitivity_labels()
        .map(|l| l.code.as_str())
        .collect();
    assert_eq!(labels, ["ETH", "GDIS", "HIV", "PSY", "PSYTHPN", "SEX"]);
    assert!(builtin.value_set_versions().all(|(_, v)| !v.is_empty()));
}

#[test]
fn the_version_hash_follows_the_files() {
    let files = || {
        BUILTIN
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect::<Vec<_>>()
    };
    let base = Labeller::from_files(files()).expect("loads");
    let mut edited = files();
    edited[0].1 = edited[0]
        .1
        .replace("\"version\": \"1.0.0\"", "\"version\": \"1.0.1\"");
    let changed = Labeller::from_files(edited).expect("loads");
    assert_ne!(base.version_hash(), changed.version_hash());
    let mut reordered = files();
    reordered.reverse();
    assert_eq!(
        base.version_hash(),
        Labeller::from_files(reordered)
            .expect("loads")
            .version_hash()
    );
}

/// A minimal valid value set for `code`, with `extra` fields merged in.
fn value_set(code: &str, extra: Value) -> String {
    let mut vs = json!({
        "label": { "system": ACT_CODE_SYSTEM, "code": code, "display": "d" },
        "title": "t", "version": "1", "source": "s",
        "compose": { "include": [{ "system": SCT, "concept": [{ "code": "1", "display": "d" }] }] }
    });
    if let (Some(vs), Some(extra)) = (vs.as_object_mut(), extra.as_object()) {
        vs.extend(extra.clone());
    }
    vs.to_string()
}

#[test]
fn invalid_value_sets_are_refused_with_file_and_reason() {
    let include = |inc: Value| json!({ "compose": { "include": [inc] } });
    let cases: Vec<(&str, String, &str)> = vec![
        ("X.json", "{".into(), "EOF"),
        (
            "X.json",
            value_set(
                "X",
                json!({ "label": { "system": SCT, "code": "X", "display": "d" } }),
            ),
            "label.system",
        ),
        ("Y.json", value_set("X", json!({})), "named X.json"),
        (
            "X.json",
            value_set("X", json!({ "version": " " })),
            "version",
        ),
        (
            "X.json",
            value_set("X", json!({ "colour": "red" })),
            "unknown field",
        ),
        (
            "X.json",
            value_set(
                "X",
                include(json!({ "system": SCT, "prefixes": [{ "code": "1", "display": "d" }] })),
            ),
            "only for ICD-10",
        ),
        (
            "X.json",
            value_set(
                "X",
                include(
                    json!({ "system": ICD, "concept": [{ "code": "B20", "display": "d" }, { "code": "b.20", "display": "d" }] }),
                ),
            ),
            "listed twice",
        ),
        (
            "X.json",
            value_set("X", include(json!({ "system": SCT }))),
            "neither",
        ),
        (
            "X.json",
            value_set(
                "X",
                include(json!({ "system": SCT, "concept": [{ "code": "1 2", "display": "d" }] })),
            ),
            "spaces",
        ),
        (
            "X.json",
            value_set("X", json!({ "compose": { "include": [] } })),
            "at least one",
        ),
        (
            "X.json",
            value_set("X", json!({ "implies": ["NOPE"] })),
            "implies unknown label NOPE",
        ),
        (
            "X.json",
            value_set("X", json!({ "implies": ["X"] })),
            "imply itself",
        ),
        (
            "X.json",
            value_set(
                "X",
                json!({ "scope": { "resourceTypes": [], "elements": ["type"] } }),
            ),
            "scope",
        ),
    ];
    for (name, text, expected) in cases {
        let err = Labeller::from_files(vec![(name.to_string(), text)]).expect_err(expected);
        assert_eq!(err.code(), "label_value_set_invalid", "{expected}");
        let message = err.to_string();
        assert!(
            message.contains(name) && message.contains(expected),
            "{message}"
        );
    }
}

#[test]
fn loading_a_missing_or_empty_folder_fails() {
    let missing = Labeller::load(&PathBuf::from("/nonexistent/labels")).expect_err("missing");
    assert_eq!(missing.code(), "label_value_sets_unreadable");
    let empty = tempfile::tempdir().expect("temp dir");
    std::fs::write(empty.path().join("README.md"), "not a value set").expect("write");
    let err = Labeller::load(empty.path()).expect_err("no json");
    assert_eq!(err.code(), "label_value_sets_missing");
}

#[test]
fn labels_from_a_custom_folder_are_used() {
    let dir = tempfile::tempdir().expect("temp dir");
    let text = value_set(
        "ETH",
        json!({ "compose": { "include": [{ "system": ICD, "prefixes": [{ "code": "F10", "display": "d" }] }] } }),
    );
    std::fs::write(dir.path().join("ETH.json"), text).expect("write");
    let labeller = Labeller::load(dir.path()).expect("loads");
    assert_eq!(
        codes(&labeller.labels_for(&condition(ICD, "F10.20"))),
        ["ETH", "R"]
    );
    assert!(labeller.labels_for(&condition(ICD, "F11.20")).is_empty());
}
