//! What `Consent::from_fhir` accepts, keeps and refuses: one table row per R4 check.

use serde_json::{Value, json};

use super::super::model::MAX_PROVISION_DEPTH;
use super::*;

#[test]
fn from_fhir_keeps_what_deciding_needs() {
    let v = consent_json(
        "c1",
        json!({
            "period": {"start": "2020-01-01", "end": "2030-01-01"},
            "actor": [actor("PRCP", "Organization/o1/_history/2")],
            "provision": [
                {"purpose": [purpose("ETREAT")], "provision": [{"type": "deny", "data": [data("instance", "Observation/x")]}]},
                {"type": "deny", "dataPeriod": {"start": "2019"}}
            ]
        }),
    );
    let c = Consent::from_fhir(&v).unwrap();
    assert_eq!(c.id(), Some("c1"));
    assert_eq!(c.status(), ConsentStatus::Active);
    assert_eq!(c.patient_id(), "p1");
    assert_eq!(c.policy_rule(), Some(&[Coding::new(ACT_CODE, "OPTIN")][..]));
    assert_eq!(c.base_policy(), Some(ProvisionType::Permit));
    let root = c.provision().unwrap();
    assert_eq!(root.path(), "provision");
    assert_eq!(root.declared_type(), None);
    assert_eq!(
        root.effect(),
        ProvisionType::Deny,
        "an untyped root denies, even under OPTIN"
    );
    assert!(c.untyped_root_under_opt_in());
    assert_eq!(root.actors()[0].reference(), "Organization/o1");
    assert_eq!(root.actors()[0].roles(), &[Coding::new(PART, "PRCP")]);
    assert_eq!(root.period().unwrap().end(), Some("2030-01-01"));
    let first = &root.provisions()[0];
    assert_eq!(first.path(), "provision.provision[0]");
    assert_eq!(first.effect(), ProvisionType::Permit, "untyped child flips");
    assert_eq!(
        first.provisions()[0].path(),
        "provision.provision[0].provision[0]"
    );
    assert_eq!(
        first.provisions()[0].effect(),
        ProvisionType::Deny,
        "explicit type wins over flipping"
    );
    assert_eq!(
        first.provisions()[0].data()[0].meaning(),
        DataMeaning::Instance
    );
    assert_eq!(
        root.provisions()[1].effect(),
        ProvisionType::Deny,
        "explicit type wins"
    );
}

#[test]
fn base_policy_is_read_from_the_act_code_codings_of_policy_rule_for_information() {
    use ProvisionType::{Deny, Permit};
    let act = |code: &str| Coding::new(ACT_CODE, code);
    let other = |code: &str| Coding::new("urn:other", code);
    let cases: Vec<(Vec<Coding>, Option<ProvisionType>)> = vec![
        (vec![act("OPTIN")], Some(Permit)),
        (vec![act("OPTINR")], Some(Permit)),
        (vec![act("OPTOUT")], Some(Deny)),
        (vec![act("OPTOUTE")], Some(Deny)),
        (vec![], None),
        (vec![act("IMPLIED")], None),
        (vec![act("optin")], None),
        (vec![other("OPTIN")], None),
        (vec![other("x"), act("OPTOUTE")], Some(Deny)),
        (vec![act("OPTOUT"), act("OPTOUTE")], Some(Deny)),
        (vec![act("OPTINR"), act("OPTOUT")], None),
    ];
    for (codings, expect) in cases {
        let got = ProvisionType::from_policy_rule(&codings);
        assert_eq!(got, expect, "{codings:?}");
    }
    let mut v = consent_json("c1", json!({"type": "deny"}));
    v["policyRule"] = json!({"coding": [{"system": ACT_CODE, "code": "OPTOUT"}]});
    let c = Consent::from_fhir(&v).unwrap();
    assert_eq!(c.base_policy(), Some(Deny));
    assert!(!c.untyped_root_under_opt_in());
    v["policyRule"] = json!({"coding": [{"system": ACT_CODE, "code": "OPTIN"}]});
    let c = Consent::from_fhir(&v).unwrap();
    assert_eq!(c.base_policy(), Some(Permit));
    assert!(!c.untyped_root_under_opt_in(), "the root is typed");
    v.as_object_mut().unwrap().remove("policyRule");
    v["policy"] = json!([{"uri": "https://example.org/consent-policy"}]);
    let c = Consent::from_fhir(&v).unwrap();
    assert_eq!(c.base_policy(), None);
    assert_eq!(c.policy_rule(), None);
}

/// A valid consent to mutate in the defect table.
fn valid() -> Value {
    consent_json(
        "c1",
        json!({"type": "permit", "provision": [{"type": "deny"}, {"type": "deny", "provision": [{"type": "permit"}]}]}),
    )
}

fn nested(depth: usize) -> Value {
    let mut p = json!({"type": "deny"});
    for _ in 1..depth {
        p = json!({"type": "deny", "provision": [p]});
    }
    p
}

#[rustfmt::skip] // one row per check reads better than rustfmt's vertical layout
#[test]
fn from_fhir_reports_each_defect_with_its_path() {
    type Edit = fn(&mut Value);
    let cases: Vec<(&str, Edit, &str, DefectKind)> = vec![
        ("not a Consent", |v| v["resourceType"] = json!("Patient"), "resourceType", DefectKind::NotConsent),
        ("bad id", |v| v["id"] = json!("a b"), "id", DefectKind::InvalidId),
        ("status missing", |v| { v.as_object_mut().unwrap().remove("status"); }, "status", DefectKind::Required),
        ("status outside R4", |v| v["status"] = json!("revoked"), "status", DefectKind::InvalidCode),
        ("status not a string", |v| v["status"] = json!(1), "status", DefectKind::InvalidType),
        ("scope missing", |v| { v.as_object_mut().unwrap().remove("scope"); }, "scope", DefectKind::Required),
        ("category missing", |v| { v.as_object_mut().unwrap().remove("category"); }, "category", DefectKind::Required),
        ("category empty", |v| v["category"] = json!([]), "category", DefectKind::InvalidValue),
        ("category not an array", |v| v["category"] = json!({}), "category", DefectKind::InvalidType),
        ("patient missing", |v| { v.as_object_mut().unwrap().remove("patient"); }, "patient", DefectKind::PatientRequired),
        ("patient not a Patient", |v| v["patient"] = json!({"reference": "Group/g1"}), "patient.reference", DefectKind::PatientReferenceInvalid),
        ("patient by display only", |v| v["patient"] = json!({"display": "x"}), "patient", DefectKind::ReferenceNotLiteral),
        ("ppc-1", |v| { v.as_object_mut().unwrap().remove("policyRule"); }, "", DefectKind::PolicyRequired),
        ("empty policy", |v| v["policy"] = json!([{"id": "x"}]), "policy[0]", DefectKind::PolicyEmpty),
        ("implicitRules", |v| v["implicitRules"] = json!("urn:x"), "implicitRules", DefectKind::UnsupportedImplicitRules),
        ("modifierExtension", |v| v["modifierExtension"] = json!([{"url": "urn:x"}]), "modifierExtension", DefectKind::UnsupportedModifierExtension),
        ("dateTime", |v| v["dateTime"] = json!("2016-05-11T10:00"), "dateTime", DefectKind::InvalidDateTime),
        ("provision type", |v| v["provision"]["type"] = json!("allow"), "provision.type", DefectKind::InvalidCode),
        ("nested period start", |v| v["provision"]["provision"][1]["period"] = json!({"start": "2016-13"}), "provision.provision[1].period.start", DefectKind::InvalidDateTime),
        ("per-1", |v| v["provision"]["period"] = json!({"start": "2016-02", "end": "2016-01-31"}), "provision.period", DefectKind::PeriodReversed),
        ("per-1 on dataPeriod", |v| v["provision"]["dataPeriod"] = json!({"start": "2017", "end": "2016"}), "provision.dataPeriod", DefectKind::PeriodReversed),
        ("actor without role", |v| v["provision"]["actor"] = json!([{"reference": {"reference": "Organization/o1"}}]), "provision.actor[0].role", DefectKind::Required),
        ("actor role without coding", |v| v["provision"]["actor"] = json!([{"role": {"text": "x"}, "reference": {"reference": "Organization/o1"}}]), "provision.actor[0].role", DefectKind::CodingRequired),
        ("actor without reference", |v| v["provision"]["actor"] = json!([{"role": role("PRCP")}]), "provision.actor[0].reference", DefectKind::Required),
        ("actor by identifier only", |v| v["provision"]["actor"] = json!([{"role": role("PRCP"), "reference": {"identifier": {"value": "1"}}}]), "provision.actor[0].reference", DefectKind::ReferenceNotLiteral),
        ("data meaning outside R4", |v| v["provision"]["data"] = json!([data("all", "Observation/o")]), "provision.data[0].meaning", DefectKind::InvalidCode),
        ("data meaning missing", |v| v["provision"]["data"] = json!([{"reference": {"reference": "Observation/o"}}]), "provision.data[0].meaning", DefectKind::Required),
        ("data reference missing", |v| v["provision"]["data"] = json!([{"meaning": "instance"}]), "provision.data[0].reference", DefectKind::Required),
        ("unknown ActReason purpose", |v| v["provision"]["provision"][0]["purpose"] = json!([purpose("TREAT"), purpose("TRAET")]), "provision.provision[0].purpose[1].code", DefectKind::UnknownPurpose),
        ("label without system", |v| v["provision"]["securityLabel"] = json!([{"code": "R"}]), "provision.securityLabel[0]", DefectKind::CodingIncomplete),
        ("class without code", |v| v["provision"]["class"] = json!([{"system": "urn:x"}]), "provision.class[0]", DefectKind::CodingIncomplete),
        ("action without coding", |v| v["provision"]["action"] = json!([{"text": "read"}]), "provision.action[0]", DefectKind::CodingRequired),
        ("code not an array", |v| v["provision"]["code"] = json!(concept(LOINC, "1")), "provision.code", DefectKind::InvalidType),
        ("nested modifierExtension", |v| v["provision"]["provision"][1]["provision"][0]["modifierExtension"] = json!([{"url": "urn:x"}]), "provision.provision[1].provision[0].modifierExtension", DefectKind::UnsupportedModifierExtension),
        ("too deep", |v| v["provision"] = nested(MAX_PROVISION_DEPTH + 1), TOO_DEEP_PATH, DefectKind::TooDeep),
    ];
    for (name, edit, path, kind) in cases {
        let mut v = valid();
        edit(&mut v);
        let err = Consent::from_fhir(&v).expect_err(name);
        assert!(err.has(path, kind), "{name}: {:?}", err.defects);
        assert_eq!(err.defects.len(), 1, "{name}: exactly one defect: {:?}", err.defects);
    }
    Consent::from_fhir(&valid()).expect("the unedited consent loads");
}

/// The path of the 17th level: the root and sixteen nested provisions.
const TOO_DEEP_PATH: &str = concat!(
    "provision",
    ".provision[0].provision[0].provision[0].provision[0]",
    ".provision[0].provision[0].provision[0].provision[0]",
    ".provision[0].provision[0].provision[0].provision[0]",
    ".provision[0].provision[0].provision[0].provision[0]",
);

#[test]
fn the_deepest_accepted_nesting_loads() {
    let mut v = valid();
    v["provision"] = nested(MAX_PROVISION_DEPTH);
    Consent::from_fhir(&v).expect("sixteen levels of nesting load");
}

#[test]
fn every_defect_is_reported_at_once() {
    let mut v = valid();
    v["status"] = json!("revoked");
    v.as_object_mut().unwrap().remove("patient");
    v["provision"]["provision"][1]["period"] = json!({"start": "2016-13"});
    v["provision"]["actor"] = json!([{"role": role("PRCP")}]);
    let err = Consent::from_fhir(&v).unwrap_err();
    let got: Vec<(&str, &str)> = err
        .defects
        .iter()
        .map(|d| (d.path.as_str(), d.code()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("status", "invalid_code"),
            ("patient", "patient_required"),
            ("provision.actor[0].reference", "required"),
            ("provision.provision[1].period.start", "invalid_date_time"),
        ]
    );
    assert_eq!(err.defects[0].expression(), "Consent.status");
}

#[test]
fn defect_messages_carry_no_values() {
    let mut v = valid();
    v["patient"] = json!({"reference": "Patient/Jane Doe 1970"});
    v["provision"]["actor"] =
        json!([{"role": {"text": "Jane Doe"}, "reference": {"reference": "Organization/o1"}}]);
    let err = Consent::from_fhir(&v).unwrap_err();
    let text = format!(
        "{err} {}",
        err.defects
            .iter()
            .map(|d| d.to_string())
            .collect::<String>()
    );
    assert!(!text.contains("Jane"), "{text}");
    assert!(text.contains("patient.reference"), "{text}");
}

#[test]
fn not_an_object_is_not_a_consent() {
    let err = Consent::from_fhir(&json!([1])).unwrap_err();
    assert!(err.has("", DefectKind::NotConsent));
}
