//! The anonymizer configuration beyond the upstream pairs: the FHIRPath subset (parsing is
//! the inverse of printing, arbitrary text never panics, the upstream documentation's sample
//! paths select what they say), the methods without pairs (`encrypt`, `perturb`, more
//! `generalize` cases), the export-wide date-shift scope, and the leak scan after every
//! profile.

use aes::cipher::{BlockDecryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use serde_json::{Value, json};
use time::Date;
use time::macros::date;

use super::super::methods::AnonymizerConfig;
use super::super::methods::fhirpath::{self, BinaryOp, Expr, Function, Literal};
use super::super::{DeidError, Deidentifier, IdentifierSet, LeakKind, Profile, StudyKey};
use super::{fixtures, population};

const TODAY: Date = date!(2026 - 01 - 01);

fn config(text: &str) -> AnonymizerConfig {
    AnonymizerConfig::from_json(text).unwrap_or_else(|e| panic!("{e}"))
}

fn run_seeded(config: &AnonymizerConfig, resource: &Value, seed: u64) -> Value {
    let mut rng = ChaCha20Rng::seed_from_u64(seed);
    config
        .anonymize_seeded(resource, &config.own_keys(), TODAY, &mut rng)
        .expect("anonymized")
}

fn decrypt(key: &[u8], encoded: &str) -> String {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .expect("base64");
    let (iv, cipher) = bytes.split_at(16);
    let mut buffer = cipher.to_vec();
    let plain = cbc::Decryptor::<aes::Aes256>::new_from_slices(key, iv)
        .expect("key and iv")
        .decrypt_padded_mut::<Pkcs7>(&mut buffer)
        .expect("padding");
    String::from_utf8(plain.to_vec()).expect("utf-8")
}

#[test]
fn encrypt_is_aes_cbc_with_a_fresh_iv_prepended_in_base64() {
    let key = "0123456789abcdef0123456789abcdef";
    let config = config(&format!(
        r#"{{"fhirPathRules": [{{"path": "nodesByType('Address').city", "method": "encrypt"}}],
            "parameters": {{"encryptKey": "{key}"}}}}"#
    ));
    let patient =
        json!({"resourceType": "Patient", "address": [{"city": "Topeka"}, {"city": "Topeka"}]});
    let out = run_seeded(&config, &patient, 1);
    let first = out["address"][0]["city"].as_str().expect("encrypted");
    let second = out["address"][1]["city"].as_str().expect("encrypted");
    assert_ne!(first, second, "each value gets its own IV");
    assert_eq!(decrypt(key.as_bytes(), first), "Topeka");
    assert_eq!(decrypt(key.as_bytes(), second), "Topeka");
    assert_eq!(out["meta"]["security"][0]["code"], "MASKED");
    // The generator is the only randomness: the same seed gives the same output.
    assert_eq!(run_seeded(&config, &patient, 1), out);
}

#[test]
fn perturb_adds_bounded_noise_and_rounds_deterministically_under_a_seed() {
    let config = config(
        r#"{"fhirPathRules": [
            {"path": "Observation.value as Quantity", "method": "perturb", "span": 6, "rangeType": "fixed", "roundTo": 1},
            {"path": "Observation.component.value", "method": "perturb", "span": 0.2, "rangeType": "proportional"}
        ]}"#,
    );
    let observation = json!({"resourceType": "Observation",
        "valueQuantity": {"value": 70.0, "unit": "kg"},
        "component": [{"valueInteger": 100}, {"valueQuantity": {"value": 12.345}}]});
    let mut seen = std::collections::BTreeSet::new();
    for seed in 0..200 {
        let out = run_seeded(&config, &observation, seed);
        assert_eq!(out, run_seeded(&config, &observation, seed), "seed {seed}");
        let weight = out["valueQuantity"]["value"].as_f64().expect("a number");
        assert!((67.0..=73.0).contains(&weight), "{weight}");
        assert_eq!((weight * 10.0).round(), weight * 10.0, "one decimal place");
        assert_eq!(out["valueQuantity"]["unit"], "kg");
        let count = out["component"][0]["valueInteger"]
            .as_i64()
            .expect("still an integer");
        assert!((90..=110).contains(&count), "{count}");
        let small = out["component"][1]["valueQuantity"]["value"]
            .as_f64()
            .expect("number");
        assert!((11.1..=13.58).contains(&small), "{small}");
        assert_eq!(out["meta"]["security"][0]["code"], "PERTURBED");
        seen.insert(weight.to_bits());
    }
    assert!(seen.len() > 20, "the noise varies with the seed");
}

#[test]
fn generalize_maps_cases_in_order_and_redacts_or_keeps_the_rest() {
    let config = config(
        r#"{"fhirPathRules": [
            {"path": "Observation.value.value", "method": "generalize",
             "cases": {"$this>=0 and $this<20": "20", "$this>=20 and $this<40": "40", "true": "($this div 10)*10"},
             "otherValues": "redact"},
            {"path": "Observation.code.coding.code", "method": "generalize",
             "cases": {"$this.matches('^[0-9]+-[0-9]$')": "$this.replaceMatches('-[0-9]$', '')"},
             "otherValues": "keep"},
            {"path": "Observation.effective", "method": "generalize",
             "cases": {"$this >= @2010-01-01 and $this < @2020-01-01": "@2010"}}
        ]}"#,
    );
    let run = |value: f64, code: &str, effective: &str| {
        let observation = json!({"resourceType": "Observation",
            "code": {"coding": [{"code": code}]},
            "valueQuantity": {"value": value}, "effectiveDateTime": effective});
        config.anonymize(&observation, TODAY).expect("anonymized")
    };
    let out = run(18.0, "8302-2", "2016-03-10T10:00:00Z");
    assert_eq!(out["valueQuantity"]["value"], json!(20));
    assert_eq!(out["code"]["coding"][0]["code"], "8302");
    assert_eq!(out["effectiveDateTime"], "2010");
    let out = run(57.0, "abc", "2021-01-01");
    assert_eq!(out["valueQuantity"]["value"], json!(50));
    assert_eq!(out["code"]["coding"][0]["code"], "abc");
    assert!(out.get("effectiveDateTime").is_none(), "no case: redacted");
}

#[test]
fn paths_from_the_upstream_documentation_select_what_they_say() {
    let config = config(
        r#"{"fhirPathRules": [
            {"path": "nodesByType('Address').country | nodesByType('Address').state", "method": "keep"},
            {"path": "nodesByType('ContactPoint').where(use='home' or (system!='phone' and value.exists()))", "method": "redact"},
            {"path": "Patient.nodesByName('family').where($this.startsWith('Mc'))", "method": "substitute", "replaceWith": "X"},
            {"path": "Condition.onset | Condition.abatement as Age", "method": "redact"},
            {"path": "nodesByType('Address')", "method": "redact"}
        ]}"#,
    );
    let patient = json!({"resourceType": "Patient",
        "name": [{"family": "McKay"}, {"family": "Smith"}],
        "telecom": [{"system": "phone", "use": "home", "value": "1"},
                    {"system": "phone", "use": "work", "value": "2"},
                    {"system": "email", "use": "work", "value": "a@b"}],
        "address": [{"city": "Kansas City", "state": "MO", "country": "US"}]});
    let out = config.anonymize(&patient, TODAY).expect("patient");
    assert_eq!(out["name"], json!([{"family": "X"}, {"family": "Smith"}]));
    assert_eq!(
        out["telecom"],
        json!([{"system": "phone", "use": "work", "value": "2"}])
    );
    assert_eq!(out["address"], json!([{"state": "MO", "country": "US"}]));
    let condition = json!({"resourceType": "Condition", "onsetString": "childhood",
        "abatementAge": {"value": 40}, "recordedDate": "2020-01-01"});
    let out = config.anonymize(&condition, TODAY).expect("condition");
    assert!(out.get("onsetString").is_none() && out.get("abatementAge").is_none());
    assert_eq!(out["recordedDate"], "2020-01-01");
}

#[test]
fn an_export_wide_date_shift_scope_moves_every_resource_of_a_study_alike() {
    let text = |scope: &str| {
        format!(
            r#"{{"fhirPathRules": [{{"path": "nodesByType('dateTime')", "method": "dateShift"}}],
                "parameters": {{"dateShiftScope": "{scope}"}}}}"#
        )
    };
    let key = StudyKey::from_bytes(&[3u8; 32]).expect("key");
    let other_key = StudyKey::from_bytes(&[4u8; 32]).expect("key");
    let ids = ["a", "b", "c", "d", "e", "f", "g", "h"];
    let offsets = |scope: &str, key: &StudyKey| -> Vec<i64> {
        let config = config(&text(scope));
        let keys = config.keys_for(key);
        ids.iter()
            .map(|id| {
                let resource = json!({"resourceType": "Observation", "id": id});
                config.date_shift_days(&keys, &resource).expect("shifts")
            })
            .collect()
    };
    for scope in ["file", "folder"] {
        let per_export = offsets(scope, &key);
        assert!(
            per_export.iter().all(|o| *o == per_export[0]),
            "{per_export:?}"
        );
        let other = offsets(scope, &other_key);
        assert!(other.iter().all(|o| *o == other[0]));
        assert_ne!(per_export[0], other[0], "each study gets its own shift");
    }
    let per_resource = offsets("resource", &key);
    assert!(per_resource.iter().any(|o| *o != per_resource[0]));
    // The output moves by what the scan is told.
    let config = config(&text("folder"));
    let keys = config.keys_for(&key);
    let resource =
        json!({"resourceType": "Observation", "id": "x", "effectiveDateTime": "2020-06-15"});
    let days = config.date_shift_days(&keys, &resource).expect("shifts");
    let out = config.anonymize_with(&resource, &keys, TODAY).expect("out");
    let expected = super::super::dates::shift(date!(2020 - 06 - 15), days).expect("date");
    assert_eq!(
        out["effectiveDateTime"],
        super::super::dates::format_date(expected)
    );
}

/// A profile using every method still goes through the leak scan: a name it does not
/// remove is caught; and under every shipped configuration a planted name either leaves the
/// output or fails the resource as a leak.
#[test]
fn the_leak_scan_runs_after_every_anonymizer_profile() {
    let all_methods = r#"{"fhirPathRules": [
        {"path": "Resource.id", "method": "cryptoHash"},
        {"path": "nodesByType('Reference').reference", "method": "cryptoHash"},
        {"path": "nodesByType('Extension') | nodesByType('Identifier') | nodesByType('Narrative')", "method": "redact"},
        {"path": "nodesByType('HumanName')", "method": "substitute", "replaceWith": {"family": "Doe"}},
        {"path": "nodesByType('Address').city", "method": "encrypt"},
        {"path": "nodesByType('Address').postalCode", "method": "generalize", "cases": {"true": "$this.substring(0,3)+'00'"}},
        {"path": "nodesByType('Address') | nodesByType('ContactPoint') | nodesByType('Annotation')", "method": "redact"},
        {"path": "(nodesByType('Observation').value as Quantity).value", "method": "perturb", "span": 1},
        {"path": "nodesByType('date') | nodesByType('dateTime') | nodesByType('instant')", "method": "dateShift"},
        {"path": "nodesByType('Reference').display | nodesByType('CodeableConcept').text", "method": "redact"}
    ], "parameters": {"dateShiftScope": "folder", "enablePartialDatesForRedact": true}}"#;
    let mut profiles = vec![("all-methods.json".to_string(), all_methods.to_string())];
    for dir in ["configs", "more-configs"] {
        let dir = fixtures().join("ms-anonymizer").join(dir);
        for entry in std::fs::read_dir(&dir).expect("fixtures") {
            let path = entry.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                let name = path
                    .file_name()
                    .unwrap_or_default()
                    .to_string_lossy()
                    .to_string();
                profiles.push((name, std::fs::read_to_string(&path).expect("readable")));
            }
        }
    }
    let key = StudyKey::from_bytes(&[7u8; 32]).expect("key");
    let population = population::demo(2027, 4);
    let mut caught = Vec::new();
    for (name, text) in &profiles {
        let profile = Profile::from_anonymizer_config(text, name).unwrap_or_else(|e| panic!("{e}"));
        let deid = Deidentifier::new(&profile, &key, TODAY);
        for patient in &population {
            let sources = IdentifierSet::from_sources(&patient.resources);
            let checked = deid.patient(&patient.id, &sources);
            let family = patient.patient()["name"][0]["family"]
                .as_str()
                .expect("a family name")
                .to_string();
            let mut leaky = patient
                .resources
                .iter()
                .find(|r| r["resourceType"] == "Observation")
                .expect("an observation")
                .clone();
            leaky["valueString"] = json!(format!("seen by {family} today"));
            match checked.deidentify_checked(&leaky) {
                Err(DeidError::Leak { kind, path, .. }) => {
                    // The sample configurations keep other identifiers too, which the scan
                    // may meet first; the profile made here removes everything else.
                    if name == "all-methods.json" {
                        assert_eq!(kind, LeakKind::Name, "{name}");
                        assert!(path.ends_with(".valueString"), "{name}: {path}");
                    }
                    caught.push(name.clone());
                }
                Ok(output) => assert!(
                    !output.to_string().contains(&family),
                    "{name}: the name left unscanned"
                ),
                Err(other) => panic!("{name}: {other}"),
            }
        }
    }
    assert!(
        caught.contains(&"all-methods.json".to_string()),
        "{caught:?}"
    );
    assert!(
        caught.contains(&"substitute-primitive.json".to_string()),
        "{caught:?}"
    );
}

fn name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["name", "given", "value", "Patient", "city", "x1"])
        .prop_map(str::to_string)
}

fn type_name() -> impl Strategy<Value = String> {
    prop::sample::select(vec!["Address", "Quantity", "date", "HumanName", "Age"])
        .prop_map(str::to_string)
}

fn leaf() -> impl Strategy<Value = Expr> {
    prop_oneof![
        Just(Expr::This),
        "[a-zA-Z0-9 '\\\\.()]{0,6}".prop_map(|s| Expr::Literal(Literal::String(s))),
        (-50i32..50).prop_map(|n| Expr::Literal(Literal::Number(n.to_string()))),
        (0u32..100, 1u32..9).prop_map(|(a, b)| Expr::Literal(Literal::Number(format!("{a}.{b}")))),
        any::<bool>().prop_map(|b| Expr::Literal(Literal::Boolean(b))),
        prop::sample::select(vec![
            "2020",
            "2020-01-01",
            "2020-01-01T00:00:00Z",
            "1990-05-07T10:30:00+01:00"
        ])
        .prop_map(|d| Expr::Literal(Literal::Date(d.to_string()))),
        name().prop_map(|n| Expr::Member(None, n)),
        type_name().prop_map(|t| Expr::Call(None, Function::NodesByType(t))),
        name().prop_map(|n| Expr::Call(None, Function::NodesByName(n))),
    ]
}

fn operator() -> impl Strategy<Value = BinaryOp> {
    prop::sample::select(vec![
        BinaryOp::Or,
        BinaryOp::Xor,
        BinaryOp::And,
        BinaryOp::In,
        BinaryOp::Contains,
        BinaryOp::Equal,
        BinaryOp::NotEqual,
        BinaryOp::Less,
        BinaryOp::LessOrEqual,
        BinaryOp::Greater,
        BinaryOp::GreaterOrEqual,
        BinaryOp::Union,
        BinaryOp::Add,
        BinaryOp::Subtract,
        BinaryOp::Concatenate,
        BinaryOp::Multiply,
        BinaryOp::Divide,
        BinaryOp::Div,
        BinaryOp::Mod,
    ])
}

fn expression() -> impl Strategy<Value = Expr> {
    leaf().prop_recursive(4, 40, 3, |inner| {
        let boxed = inner.clone().prop_map(Box::new);
        let function = prop_oneof![
            type_name().prop_map(Function::OfType),
            type_name().prop_map(Function::As),
            boxed.clone().prop_map(Function::Where),
            prop::option::of(boxed.clone()).prop_map(Function::Exists),
            Just(Function::Empty),
            Just(Function::Not),
            boxed.clone().prop_map(Function::StartsWith),
            boxed.clone().prop_map(Function::EndsWith),
            boxed.clone().prop_map(Function::Contains),
            boxed.clone().prop_map(Function::Matches),
            (boxed.clone(), boxed.clone()).prop_map(|(a, b)| Function::ReplaceMatches(a, b)),
            (boxed.clone(), prop::option::of(boxed.clone()))
                .prop_map(|(a, b)| Function::Substring(a, b)),
        ];
        prop_oneof![
            (boxed.clone(), name()).prop_map(|(on, n)| Expr::Member(Some(on), n)),
            (boxed.clone(), function).prop_map(|(on, f)| Expr::Call(Some(on), f)),
            (operator(), boxed.clone(), boxed.clone())
                .prop_map(|(op, a, b)| Expr::Binary(op, a, b)),
            (boxed, type_name()).prop_map(|(e, t)| Expr::As(e, t)),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Printing then parsing gives back the same expression: the parser reads every form
    /// the subset has, with its precedence.
    #[test]
    fn parsing_is_the_inverse_of_printing(expr in expression()) {
        let text = expr.to_string();
        prop_assert_eq!(fhirpath::parse(&text), Ok(expr), "{}", text);
    }

    /// Any text, well formed or not, parses or is refused with a reason; it never panics.
    #[test]
    fn arbitrary_text_never_panics(text in "\\PC{0,40}") {
        let _ = fhirpath::parse(&text);
    }

    /// Token soup of the subset's own symbols never panics either.
    #[test]
    fn token_soup_never_panics(tokens in prop::collection::vec(prop::sample::select(vec![
        "(", ")", ".", ",", "|", "=", "!=", "<=", "and", "or", "as", "where", "nodesByType",
        "'a'", "$this", "@2020", "1", "`x`", "exists", "-", "implies", "is", "[",
    ]), 0..30)) {
        let _ = fhirpath::parse(&tokens.join(" "));
    }
}

/// A resource with a bit of everything the generated expressions look at.
fn busy_patient() -> Value {
    json!({"resourceType": "Patient", "id": "x1", "birthDate": "1990-05-07",
        "name": [{"family": "Lee", "given": ["Ann", "B"]}, {"given": ["C"]}],
        "address": [{"city": "Kansas City", "postalCode": "12345",
                     "period": {"start": "2020-01-01T00:00:00+14:00"}}],
        "multipleBirthInteger": 2,
        "contained": [{"resourceType": "Observation", "id": "o",
                       "valueQuantity": {"value": 1.5}, "effectiveDateTime": "9999-12-31T24:59:60.999-14:59"}]})
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever expression a configuration holds, as a rule path or as a `generalize` case
    /// and value, applying it answers (an output or `method_not_applicable`), never panics.
    #[test]
    fn any_expression_applies_without_panicking(path in expression(), case in expression(), value in expression()) {
        let rules = json!([
            {"path": path.to_string(), "method": "generalize",
             "cases": {case.to_string(): value.to_string()}, "otherValues": "keep"},
            {"path": path.to_string(), "method": "redact"}
        ]);
        let text = json!({"fhirPathRules": rules}).to_string();
        if let Ok(config) = AnonymizerConfig::from_json(&text) {
            match config.anonymize(&busy_patient(), TODAY) {
                Ok(_) | Err(DeidError::MethodNotApplicable { .. }) => {}
                Err(other) => prop_assert!(false, "{other}"),
            }
        }
    }
}

#[test]
fn deep_nesting_is_refused_not_overflowed() {
    let text = format!("{}1{}", "(".repeat(10_000), ")".repeat(10_000));
    assert!(fhirpath::parse(&text).is_err());
}

#[test]
fn a_method_that_cannot_apply_fails_the_resource_or_removes_the_value_never_passes_it() {
    let rules = r#"[
        {"path": "Patient.name.family", "method": "perturb", "span": 2},
        {"path": "Patient.gender", "method": "substitute", "replaceWith": {"code": "x"}},
        {"path": "Patient.address.city", "method": "encrypt"}
    ]"#;
    let patient = json!({"resourceType": "Patient", "id": "p1", "gender": "female",
        "name": [{"given": ["Ann"]}, {"family": "Lee"}], "address": [{"city": "Salina"}]});
    let raise = config(&format!(r#"{{"fhirPathRules": {rules}}}"#));
    match raise.anonymize(&patient, TODAY) {
        Err(DeidError::MethodNotApplicable {
            path,
            method,
            reference,
            ..
        }) => {
            assert_eq!(
                (path.as_str(), method),
                ("Patient.name[1].family", "perturb")
            );
            assert!(!reference.contains("p1"), "{reference}");
        }
        other => panic!("{other:?}"),
    }
    let skip = config(&format!(
        r#"{{"processingError": "skip", "fhirPathRules": {rules}}}"#
    ));
    let out = skip.anonymize(&patient, TODAY).expect("skipped");
    assert_eq!(out["name"], json!([{"given": ["Ann"]}]));
    assert!(out.get("gender").is_none(), "{out}");
    assert!(
        out.get("address").is_none(),
        "encrypt without a key removes: {out}"
    );
    assert_eq!(out["meta"]["security"][0]["code"], "REDACTED");
    // Through a study, the failure names the resource by its pseudonym and the path only.
    let profile = Profile::from_anonymizer_config(
        r#"{"fhirPathRules": [{"path": "Patient.name.family", "method": "perturb", "span": 2}]}"#,
        "study.json",
    )
    .expect("profile");
    let key = StudyKey::from_bytes(&[5u8; 32]).expect("key");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    match deid.deidentify(&patient, "p1") {
        Err(error @ DeidError::MethodNotApplicable { .. }) => {
            let location = error.location().expect("a per-resource failure");
            assert_eq!(location.path, "Patient.name[1].family");
            assert!(location.reference.starts_with("Patient/"));
            assert!(!location.reference.contains("p1") && !error.to_string().contains("Lee"));
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn date_comparisons_follow_fhirpath_precision_and_zones() {
    let selects = |condition: &str| {
        let config = config(&format!(
            r#"{{"fhirPathRules": [{{"path": "Patient.where({condition}).gender", "method": "redact"}}]}}"#
        ));
        let patient = json!({"resourceType": "Patient", "gender": "female", "birthDate": "1990-05-07",
            "deceasedDateTime": "2020-01-01T01:30:00+02:00"});
        let out = config.anonymize(&patient, TODAY).expect("patient");
        out.get("gender").is_none()
    };
    assert!(selects("birthDate > @1989"));
    assert!(selects("birthDate < @1990-06"));
    // Same year, different precision: no answer, so not selected (either way round).
    assert!(!selects("birthDate >= @1990"));
    assert!(!selects("birthDate < @1990"));
    assert!(!selects("birthDate = @1990"));
    assert!(selects("birthDate = @1990-05-07"));
    // 01:30 at +02:00 is 23:30 UTC the day before.
    assert!(selects("deceased < @2020-01-01T00:00:00Z"));
    assert!(selects("deceased = @2019-12-31T23:30:00Z"));
    assert!(!selects("deceased.exists().not()"));
    assert!(selects(
        "gender in ('male' | 'female') and gender != 'male'"
    ));
    assert!(selects("gender.matches('^fe') or birthDate >= @1990"));
}
