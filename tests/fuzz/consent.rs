//! Consent parsing: `consent::Consent::from_fhir` on bent Consents. A parsed consent must
//! be usable (its provisions walkable); a refused one names at least one defect.

use consentgate::consent::Consent;
use proptest::prelude::*;
use serde_json::{Value, json};

use crate::cases;
use crate::values::{any_json, bend, mutate_object, nasty_string};

fn coding(system: &'static str, codes: Vec<&'static str>) -> impl Strategy<Value = Value> {
    (prop::sample::select(codes), nasty_string()).prop_flat_map(move |(code, odd)| {
        bend(json!({"system": system, "code": code})).prop_map(move |v| {
            if odd.len() % 7 == 0 {
                json!({"system": system, "code": odd.clone()})
            } else {
                v
            }
        })
    })
}

fn provision(depth: u32) -> BoxedStrategy<Value> {
    let purpose = coding(
        "http://terminology.hl7.org/CodeSystem/v3-ActReason",
        vec!["TREAT", "ETREAT", "HRESCH", "HPAYMT", "NOPE", ""],
    );
    let label = coding(
        "http://terminology.hl7.org/CodeSystem/v3-ActCode",
        vec!["PSY", "HIV", "ETH", "SEX", "X"],
    );
    let kind = prop::sample::select(vec!["permit", "deny", "maybe", ""]);
    let period = prop::sample::select(vec![
        json!({"start": "2020-01-01", "end": "2030-01-01"}),
        json!({"start": "2030-01-01", "end": "2020-01-01"}),
        json!({"start": "not a date"}),
        json!({}),
    ]);
    let actor = prop::sample::select(vec![
        json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]}, "reference": {"reference": "Organization/o1"}}]),
        json!([{"reference": {"reference": "Group/study"}}]),
        json!([{"role": {}}]),
        json!([]),
    ]);
    let base =
        (kind, purpose, label, period, actor).prop_map(|(kind, purpose, label, period, actor)| {
            json!({
                "type": kind,
                "purpose": [purpose],
                "securityLabel": [label],
                "period": period,
                "dataPeriod": period,
                "actor": actor,
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
                "data": [{"meaning": "related", "reference": {"reference": "Observation/o1"}}],
            })
        });
    if depth == 0 {
        base.prop_flat_map(mutate_object).boxed()
    } else {
        (base, prop::collection::vec(provision(depth - 1), 0..3))
            .prop_map(|(mut p, children)| {
                p["provision"] = Value::Array(children);
                p
            })
            .prop_flat_map(mutate_object)
            .boxed()
    }
}

fn consent_like() -> impl Strategy<Value = Value> {
    let status = prop::sample::select(vec![
        "active",
        "inactive",
        "draft",
        "rejected",
        "proposed",
        "entered-in-error",
        "x",
    ]);
    let scope = prop::sample::select(vec!["patient-privacy", "research", "adr", "treatment", "x"]);
    (status, scope, provision(2), any_json()).prop_flat_map(|(status, scope, provision, extra)| {
        mutate_object(json!({
            "resourceType": "Consent",
            "id": "c1",
            "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": scope}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "dateTime": "2024-01-01",
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": provision,
            "extension": [extra],
        }))
    })
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn consents_parse_or_name_their_defects(resource in consent_like()) {
        match Consent::from_fhir(&resource) {
            Ok(consent) => {
                let _ = format!("{consent:?}");
            }
            Err(defects) => prop_assert!(!defects.defects.is_empty()),
        }
    }

    #[test]
    fn anything_at_all(value in any_json()) {
        let _ = Consent::from_fhir(&value);
    }
}
