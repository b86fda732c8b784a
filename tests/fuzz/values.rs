//! Generators shared by the parsers' properties: arbitrary JSON, and JSON shaped like FHIR
//! with its values bent.

use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// Strings that parsers trip on: empty, huge, control characters, non-ASCII, look-alike
/// dates, references, codes and numbers.
pub fn nasty_string() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(String::new()),
        Just("\u{0}".to_string()),
        Just("Patient/".to_string()),
        Just("Patient/../../x".to_string()),
        Just("urn:uuid:".to_string()),
        Just("2021-02-30".to_string()),
        Just("-99999-01-01".to_string()),
        Just("9999999999".to_string()),
        Just("\u{202e}\u{feff}\u{10ffff}".to_string()),
        Just("a".repeat(70_000)),
        "[ -~]{0,40}",
        "\\PC{0,20}",
        any::<String>(),
    ]
}

/// Any JSON value, nested up to a few levels.
pub fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(|n| json!(n)),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f).map_or(Value::Null, Value::Number)),
        Just(json!(u64::MAX)),
        nasty_string().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((field_name(), inner), 0..6)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Field names: FHIR's own, and odd ones.
pub fn field_name() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(vec![
            "resourceType",
            "id",
            "meta",
            "security",
            "subject",
            "patient",
            "reference",
            "status",
            "code",
            "coding",
            "system",
            "display",
            "category",
            "effectiveDateTime",
            "period",
            "start",
            "end",
            "provision",
            "type",
            "actor",
            "role",
            "purpose",
            "class",
            "data",
            "dataPeriod",
            "securityLabel",
            "entry",
            "fullUrl",
            "resource",
            "request",
            "method",
            "url",
            "ifNoneExist",
            "scope",
            "policyRule",
            "extension",
            "valueString",
            "birthDate",
            "address",
            "postalCode",
            "identifier",
            "value",
            "text",
            "div",
        ])
        .prop_map(str::to_string),
        "[a-zA-Z_$@]{0,12}",
    ]
}

/// A value that sometimes keeps `original` and sometimes swaps it for something else.
pub fn bend(original: Value) -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => Just(original),
        1 => any_json(),
        1 => nasty_string().prop_map(Value::String),
    ]
}

/// Bends a random field of an object, or drops one, or adds one.
pub fn mutate_object(base: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = base
        .as_object()
        .map(|m| m.keys().cloned().collect())
        .unwrap_or_default();
    let n = keys.len().max(1);
    (0..n, 0..3u8, any_json(), field_name()).prop_map(move |(i, how, replacement, extra)| {
        let mut value = base.clone();
        if let Some(map) = value.as_object_mut() {
            match (how, keys.get(i)) {
                (0, Some(k)) => {
                    map.insert(k.clone(), replacement);
                }
                (1, Some(k)) => {
                    map.remove(k);
                }
                _ => {
                    map.insert(extra, replacement);
                }
            }
        }
        value
    })
}
