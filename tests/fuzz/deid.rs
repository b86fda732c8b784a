//! The de-identification loaders: `deid::Profile::from_texts` (a profile and a restricted
//! ZIP3 list) and `deid::methods::AnonymizerConfig::from_json`, on bent versions of the
//! shipped files and on arbitrary text.

use consentgate::deid::Profile;
use consentgate::deid::methods::AnonymizerConfig;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::cases;
use crate::values::{any_json, mutate_object, nasty_string};

fn shipped(name: &str) -> String {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("policies/deid")
        .join(name);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn profile_text() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/deid");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.ends_with(".json") && !n.contains("zip"))
        .expect("a shipped profile");
    shipped(&name)
}

fn zip_text() -> String {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/deid");
    let name = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|n| n.contains("zip"))
        .expect("a shipped ZIP3 list");
    shipped(&name)
}

/// Text edits: a byte flipped, a cut, an insertion.
fn edited(text: String) -> impl Strategy<Value = String> {
    let len = text.len().max(1);
    (0..3u8, 0..len, "\\PC{0,12}").prop_map(move |(how, at, insert)| {
        let at = (0..=at)
            .rev()
            .find(|i| text.is_char_boundary(*i))
            .unwrap_or(0);
        match how {
            0 => format!(
                "{}{}",
                &text[..at],
                &text[at..].chars().skip(1).collect::<String>()
            ),
            1 => text[..at].to_string(),
            _ => format!("{}{insert}{}", &text[..at], &text[at..]),
        }
    })
}

fn bent_json(text: String) -> impl Strategy<Value = String> {
    let value: Value =
        serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap_or(json!({}));
    prop_oneof![
        mutate_object(value).prop_map(|v| v.to_string()),
        edited(text),
        any_json().prop_map(|v| v.to_string()),
    ]
}

fn anonymizer_config() -> impl Strategy<Value = String> {
    let method = prop::sample::select(vec![
        "redact",
        "dateShift",
        "cryptoHash",
        "keep",
        "encrypt",
        "substitute",
        "perturb",
        "generalize",
        "nope",
    ]);
    let path = prop_oneof![
        prop::sample::select(vec![
            "Patient.address",
            "nodesByType('date')",
            "Resource.id",
            "Patient.name.where(use='official')",
            "nodesByType('Reference').reference",
            "Patient",
            "",
            "Patient..name",
            "(((",
        ])
        .prop_map(str::to_string),
        nasty_string(),
    ];
    (prop::collection::vec((path, method), 0..5), nasty_string(), any_json()).prop_map(|(rules, key, extra)| {
        let rules: Vec<Value> = rules.into_iter().map(|(p, m)| json!({"path": p, "method": m})).collect();
        json!({
            "fhirVersion": "R4",
            "fhirPathRules": rules,
            "parameters": {"dateShiftKey": key, "cryptoHashKey": key, "enablePartialAgesForRedact": extra, "enablePartialZipCodesForRedact": true, "restrictedZipCodeTabulationAreas": ["036", 7]},
        })
        .to_string()
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn profiles(profile in bent_json(profile_text()), zips in prop_oneof![Just(zip_text()), bent_json(zip_text())]) {
        let _ = Profile::from_texts(&profile, &zips);
    }

    #[test]
    fn anonymizer_configs(text in prop_oneof![anonymizer_config(), "\\PC{0,200}"]) {
        if let Ok(config) = AnonymizerConfig::from_json(&text) {
            let today = time::macros::date!(2026 - 01 - 01);
            let resource = json!({"resourceType": "Patient", "id": "p1", "birthDate": "1950-02-03", "address": [{"postalCode": "03601"}], "name": [{"use": "official", "family": "X"}]});
            let _ = config.anonymize(&resource, today);
        }
    }
}
