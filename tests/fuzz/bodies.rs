//! FHIR JSON bodies and Bundles: `records::validate::parse_body` on arbitrary bytes and on
//! deep or malformed JSON, `records::validate::resource` on bent resources, and
//! `records::bundle::process` (planning, reference resolution, writing) on bent Bundles over
//! a real SQLite database. Every refusal must be a 4xx, never a 500.

use consentgate::config::{DatabaseTarget, Settings};
use consentgate::institution::Institution;
use consentgate::records::{RecordError, bundle, outcome, validate};
use consentgate::store::Store;
use proptest::prelude::*;
use proptest::test_runner::TestRunner;
use serde_json::{Value, json};

use crate::cases;
use crate::values::{any_json, bend, mutate_object, nasty_string};

fn settings() -> Settings {
    Settings::load_from(None, Vec::<(String, String)>::new()).expect("defaults load")
}

fn assert_client_error(e: &RecordError) {
    let (status, _, code, _) = outcome::describe(e);
    assert!(
        (400..500).contains(&status),
        "a refusal of bad input must be a 4xx, got {status} {code}: {e}"
    );
}

/// JSON text nested `depth` levels, sometimes unterminated.
fn nested(depth: usize, open: &str, close: &str, terminate: bool) -> Vec<u8> {
    let mut text = open.repeat(depth);
    if terminate {
        text.push_str(&close.repeat(depth));
    }
    text.into_bytes()
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..512)) {
        let limits = settings().limits;
        if let Err(e) = validate::parse_body(&bytes, &limits) {
            assert_client_error(&e);
        }
    }

    #[test]
    fn deep_and_broken_nesting(depth in 0usize..2000, arrays in any::<bool>(), terminate in any::<bool>()) {
        let limits = settings().limits;
        let (open, close) = if arrays { ("[", "]") } else { ("{\"a\":", "}") };
        let mut body = nested(depth, open, close, terminate);
        if !arrays && terminate {
            // `{"a":` needs a value before the closing braces.
            body = format!("{}1{}", open.repeat(depth), close.repeat(depth)).into_bytes();
        }
        match validate::parse_body(&body, &limits) {
            Ok(_) => prop_assert!(depth <= limits.max_json_depth && terminate),
            Err(e) => assert_client_error(&e),
        }
    }

    #[test]
    fn bent_resources(resource in resource_like()) {
        if let Err(e) = validate::resource(&resource) {
            assert_client_error(&e);
        }
    }
}

/// A resource-shaped object with some fields bent.
fn resource_like() -> impl Strategy<Value = Value> {
    let types = prop::sample::select(vec![
        "Patient",
        "Observation",
        "Condition",
        "Consent",
        "Bundle",
        "NotAType",
        "patient",
        "",
    ]);
    (types, nasty_string(), any_json()).prop_flat_map(|(ty, id, extra)| {
        let base = json!({
            "resourceType": ty,
            "id": id,
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "1234-5"}]},
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]},
            "extra": extra,
        });
        mutate_object(base)
    })
}

fn entry() -> impl Strategy<Value = Value> {
    let method = prop::sample::select(vec!["POST", "PUT", "DELETE", "GET", "PATCH", "post", ""]);
    let url = prop_oneof![
        Just("Patient".to_string()),
        Just("Patient/p1".to_string()),
        Just("Observation/o1".to_string()),
        Just("Patient?identifier=http://x|1".to_string()),
        Just("Patient/p1/_history/1".to_string()),
        nasty_string(),
    ];
    let full_url = prop_oneof![
        Just(Value::Null),
        Just(json!("urn:uuid:3b1c9a52-7a8e-4d1f-9c3e-1b2a3c4d5e6f")),
        nasty_string().prop_map(Value::String),
    ];
    (method, url, full_url, resource_like(), any::<bool>()).prop_flat_map(
        |(method, url, full_url, mut resource, refer)| {
            if refer {
                resource["subject"] =
                    json!({"reference": "urn:uuid:3b1c9a52-7a8e-4d1f-9c3e-1b2a3c4d5e6f"});
            }
            let base = json!({
                "fullUrl": full_url,
                "resource": resource,
                "request": {"method": method, "url": url, "ifNoneExist": "identifier=http://x|1"},
            });
            mutate_object(base)
        },
    )
}

fn bundle_like() -> impl Strategy<Value = Value> {
    let kind = prop::sample::select(vec!["transaction", "batch", "collection", "searchset", "x"]);
    (kind, prop::collection::vec(entry(), 0..6)).prop_flat_map(|(kind, entries)| {
        bend(json!({"resourceType": "Bundle", "type": kind, "entry": entries}))
            .prop_flat_map(mutate_object)
    })
}

/// Bundles through the whole ingest path on a real SQLite database.
#[test]
fn bundles_are_processed_or_refused_with_a_4xx() {
    let dir = tempfile::tempdir().unwrap();
    let settings = settings();
    let store = Store::open_target(
        DatabaseTarget::Sqlite(dir.path().join("fuzz.db")),
        &settings.database,
    )
    .unwrap();
    store.migrate().unwrap();
    let institution = Institution::load(&settings).unwrap();
    let mut runner = TestRunner::new(cases(96));
    runner
        .run(&bundle_like(), |bundle| {
            let mut conn = store.conn().unwrap();
            match bundle::process(&mut conn, bundle, &settings.limits, &institution.labeller) {
                Ok(response) => {
                    prop_assert_eq!(&response["resourceType"], "Bundle");
                }
                Err(e) => assert_client_error(&e),
            }
            Ok(())
        })
        .unwrap();
}
