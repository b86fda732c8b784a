//! The shipped files: the embedded copy matches the directory, and the purpose codes the
//! policies and tests use match the v3 ActReason CodeSystem.

use std::str::FromStr;

use super::tests::{CASES, PURPOSE_FAMILIES, strings, with_request};
use super::{BUILTIN_POLICIES, PolicyEngine};

#[test]
fn shipped_directory_and_embedded_copy_agree() {
    // file!() is relative to the crate root's directory, or absolute: either way the
    // policies/ directory is two levels above this file's directory.
    let dir = std::path::Path::new(file!())
        .parent()
        .and_then(|policy| policy.parent())
        .and_then(|src| src.parent())
        .map(|root| root.join("policies"))
        .expect("policies directory");
    let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
        .expect("policies directory is readable")
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".cedar").then_some(name)
        })
        .collect();
    on_disk.sort();
    let embedded: Vec<String> = BUILTIN_POLICIES
        .iter()
        .map(|(name, _)| name.to_string())
        .collect();
    assert_eq!(
        on_disk, embedded,
        "update BUILTIN_POLICIES in policy/mod.rs"
    );

    let loaded = PolicyEngine::load(&dir).expect("the policies directory loads");
    let builtin = PolicyEngine::builtin().expect("the shipped policies load");
    assert_eq!(loaded.policy_ids(), builtin.policy_ids());
    for case in CASES {
        with_request(case, |request| {
            assert_eq!(
                loaded.decide(request),
                builtin.decide(request),
                "{}",
                case.name
            );
        });
    }
}

#[test]
fn purpose_codes_follow_the_act_reason_hierarchy() {
    let Ok(dir) = std::env::var("CONSENTGATE_R4_EXAMPLES") else {
        eprintln!(
            "SKIPPED purpose_codes_follow_the_act_reason_hierarchy: CONSENTGATE_R4_EXAMPLES is unset"
        );
        return;
    };
    let path = std::path::Path::new(&dir).join("CodeSystem-v3-ActReason.json");
    let text = std::fs::read_to_string(&path).expect("CodeSystem-v3-ActReason.json is readable");
    let code_system = serde_json::Value::from_str(&text).expect("CodeSystem is JSON");

    // code -> parent, from the nested concept tree.
    let mut parents = std::collections::HashMap::new();
    let mut stack: Vec<(Option<String>, &serde_json::Value)> =
        vec![(None, &code_system["concept"])];
    while let Some((parent, concepts)) = stack.pop() {
        for concept in concepts.as_array().into_iter().flatten() {
            let code = concept["code"].as_str().expect("concept code").to_string();
            parents.insert(code.clone(), parent.clone());
            stack.push((Some(code), &concept["concept"]));
        }
    }
    for (code, family) in PURPOSE_FAMILIES {
        let mut expected = vec![code.to_string()];
        let mut current = code.to_string();
        while let Some(Some(parent)) = parents.get(&current) {
            if parent.starts_with('_') {
                break;
            }
            expected.push(parent.clone());
            current = parent.clone();
        }
        assert_eq!(strings(family), expected, "family of {code}");
    }

    // Every code the shipped policies test for exists and is a purpose of use.
    for (name, text) in BUILTIN_POLICIES {
        for piece in text.split("purpose_family.contains(\"").skip(1) {
            let code = piece.split('"').next().unwrap_or_default();
            let mut current = code.to_string();
            let mut is_purpose = false;
            while let Some(Some(parent)) = parents.get(&current) {
                is_purpose |= parent == "PurposeOfUse";
                current = parent.clone();
            }
            assert!(
                is_purpose || code == "PurposeOfUse",
                "{name}: {code} is not a v3 purpose of use"
            );
        }
    }
}
