//! The generated element table against the official package it comes from.

use std::collections::BTreeSet;
use std::path::Path;

use serde_json::Value;

use super::super::element_types::{DATATYPES, ELEMENT_TYPES, PRIMITIVE_TYPES, REPEATING};
use crate::records::resource_types::R4_RESOURCE_TYPES as RESOURCE_TYPES;

const FHIR_TYPE_EXT: &str = "http://hl7.org/fhir/StructureDefinition/structuredefinition-fhir-type";
const SYSTEM_PREFIX: &str = "http://hl7.org/fhirpath/System.";

#[test]
fn element_table_is_sorted_and_unique() {
    // Lookups are binary searches.
    assert!(ELEMENT_TYPES.windows(2).all(|w| w[0].0 < w[1].0));
    for list in [RESOURCE_TYPES, DATATYPES, PRIMITIVE_TYPES, REPEATING] {
        assert!(list.windows(2).all(|w| w[0] < w[1]));
    }
    assert_eq!((RESOURCE_TYPES.len(), PRIMITIVE_TYPES.len()), (146, 20));
}

/// The rows a StructureDefinition contributes, by the rules in `tools/gen_element_types.py`.
fn rows_of(sd: &Value) -> Vec<(String, String, bool)> {
    let mut rows = Vec::new();
    let type_name = sd["type"].as_str().unwrap_or("");
    let primitive = sd["kind"] == "primitive-type";
    for element in sd["snapshot"]["element"].as_array().into_iter().flatten() {
        let path = element["path"].as_str().unwrap_or("");
        if !path.contains('.') || (primitive && path == format!("{type_name}.value")) {
            continue;
        }
        if let Some(reference) = element["contentReference"].as_str() {
            rows.push((path.to_string(), reference.to_string(), false));
            continue;
        }
        let codes: Vec<String> = element["type"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| {
                let code = t["code"].as_str().unwrap_or("");
                match code.strip_prefix(SYSTEM_PREFIX) {
                    Some(system) => t["extension"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["url"] == FHIR_TYPE_EXT)
                        .and_then(|e| e["valueUrl"].as_str())
                        .map_or_else(|| system.to_lowercase(), str::to_string),
                    None => code.to_string(),
                }
            })
            .collect();
        match path.strip_suffix("[x]") {
            Some(stem) => {
                for code in codes {
                    let mut chars = code.chars();
                    let capitalised: String = chars
                        .next()
                        .map(|c| c.to_ascii_uppercase())
                        .into_iter()
                        .chain(chars)
                        .collect();
                    rows.push((format!("{stem}{capitalised}"), code, true));
                }
            }
            None => {
                assert_eq!(codes.len(), 1, "{path}");
                rows.push((path.to_string(), codes[0].clone(), false));
            }
        }
    }
    rows
}

#[test]
fn element_types_match_the_package() {
    let Some(dir) = std::env::var_os("CONSENTGATE_R4_EXAMPLES") else {
        eprintln!(
            "SKIPPED element_types_match_the_package: set CONSENTGATE_R4_EXAMPLES to the unpacked hl7.fhir.r4.examples@4.0.1 package"
        );
        return;
    };
    let (mut rows, mut resources, mut datatypes, mut primitives) = (
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
        BTreeSet::new(),
    );
    let mut repeating = BTreeSet::new();
    for entry in std::fs::read_dir(Path::new(&dir)).expect("the package directory") {
        let path = entry.expect("entry").path();
        let name = path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .to_string();
        if !(name.starts_with("StructureDefinition-") && name.ends_with(".json")) {
            continue;
        }
        let sd = super::read_json(&path);
        let kind = sd["kind"].as_str().unwrap_or("");
        let type_name = sd["type"].as_str().unwrap_or("").to_string();
        let defines_type = matches!(kind, "resource" | "complex-type" | "primitive-type")
            && (sd["derivation"] == "specialization"
                || type_name == "Resource"
                || type_name == "Element");
        if !defines_type {
            continue;
        }
        rows.extend(rows_of(&sd));
        repeating.extend(
            sd["snapshot"]["element"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| {
                    let max = e["max"].as_str().unwrap_or("1");
                    e["path"].as_str().is_some_and(|p| p.contains('.')) && max != "0" && max != "1"
                })
                .filter_map(|e| e["path"].as_str().map(str::to_string)),
        );
        match kind {
            "resource" if sd["abstract"] != true => {
                resources.insert(type_name);
            }
            "complex-type" => {
                datatypes.insert(type_name);
            }
            "primitive-type" => {
                primitives.insert(type_name);
            }
            _ => {}
        }
    }
    let table: BTreeSet<(String, String, bool)> = ELEMENT_TYPES
        .iter()
        .map(|(p, t, c)| (p.to_string(), t.to_string(), *c))
        .collect();
    let missing: Vec<_> = rows.difference(&table).take(5).collect();
    let extra: Vec<_> = table.difference(&rows).take(5).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "regenerate src/deid/element_types.rs: missing {missing:?}, extra {extra:?}"
    );
    let owned = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
    assert_eq!(resources, owned(RESOURCE_TYPES));
    assert_eq!(datatypes, owned(DATATYPES));
    assert_eq!(primitives, owned(PRIMITIVE_TYPES));
    assert_eq!(repeating, owned(REPEATING));
}
