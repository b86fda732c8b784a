//! Table-driven tests of [`decide`] with the shipped institution policies (the real Cedar
//! engine, [`PolicyEngine::builtin`]) and consents parsed from FHIR JSON: one row per rule of
//! DESIGN.md section 4, each naming the rule it guards. The policies' own rows are in
//! `policy/tests.rs` and the consent evaluator's in `consent/tests/`; these check that the two
//! steps are joined as the design says (purpose hierarchy, consented labels, break-glass and
//! the emergency opt-out, obligations by role) and that the explanation says why.

use std::sync::OnceLock;

use serde_json::{Value, json};

use super::*;
use crate::consent::Decision as Step1;
use crate::policy::Obligation;

mod fixtures;

use fixtures::*;

/// 2026-06-01T00:00:00Z in microseconds.
const NOW: i64 = 1_780_272_000_000_000;

/// The shipped policies, compiled once for all rows.
fn engine() -> &'static PolicyEngine {
    static ENGINE: OnceLock<PolicyEngine> = OnceLock::new();
    ENGINE.get_or_init(|| PolicyEngine::builtin().expect("the shipped policies load"))
}

/// One row: the question and what DESIGN.md section 4 says the answer is.
struct Row {
    rule: &'static str,
    consents: &'static [&'static str],
    requester: fn() -> Requester,
    purpose: &'static str,
    action: PolicyAction,
    resource: fn() -> Value,
    break_glass: Option<&'static str>,
    /// Step 1's outcome.
    consent: Step1,
    permit: bool,
    obligations: &'static [&'static str],
    /// The determining policies, exactly (sorted).
    policies: &'static [&'static str],
    emergency_opt_out: bool,
}

/// A clinician of the clinic reading vital signs for treatment, with no consent on file.
const BASE: Row = Row {
    rule: "",
    consents: &[],
    requester: clinician,
    purpose: "TREAT",
    action: PolicyAction::Read,
    resource: vitals,
    break_glass: None,
    consent: Step1::NotApplicable,
    permit: false,
    obligations: &[],
    policies: &["consent-required"],
    emergency_opt_out: false,
};

/// The obligations and policy of a qualifying break-glass read.
const BREAK_GLASS_OBLIGATIONS: &[&str] = &["audit:break-glass", "notify:patient"];
const JUSTIFIED: Option<&str> = Some("unconscious in the ER, allergy check");

fn decide_row(row: &Row) -> Decision {
    let consents: Vec<Consent> = row.consents.iter().map(|id| consent(id)).collect();
    let requester = (row.requester)();
    let resource = (row.resource)();
    let question = Question {
        requester: &requester,
        purpose: row.purpose,
        action: row.action,
        patient_id: "pat",
        resource: Subject::Body(&resource),
        break_glass: row.break_glass,
        now: NOW,
        explain: true,
    };
    let on_body = decide(engine(), PurposeCatalog::official(), &consents, &question);
    // Asked for no sentences (a release), the same decision without them.
    let unexplained = decide(
        engine(),
        PurposeCatalog::official(),
        &consents,
        &Question {
            explain: false,
            ..question
        },
    );
    assert!(unexplained.explanation.is_empty(), "{}", row.rule);
    assert_eq!(
        serde_json::to_value(Decision {
            explanation: on_body.explanation.clone(),
            ..unexplained
        })
        .expect("serialises"),
        serde_json::to_value(&on_body).expect("serialises"),
        "{}: the same decision without its sentences",
        row.rule
    );
    // The facts stored at ingest decide exactly as the body does, explanation included.
    let stored = StoredFacts::of(&resource);
    let on_stored = decide(
        engine(),
        PurposeCatalog::official(),
        &consents,
        &Question {
            resource: Subject::Stored(&stored),
            ..question
        },
    );
    assert_eq!(
        serde_json::to_value(&on_stored).expect("serialises"),
        serde_json::to_value(&on_body).expect("serialises"),
        "{}: stored facts decide as the body",
        row.rule
    );
    on_body
}

fn check(rows: &[Row]) {
    for row in rows {
        let d = decide_row(row);
        let rule = row.rule;
        assert_eq!(d.consent.decision, row.consent, "{rule}: step 1");
        assert_eq!(d.permit, row.permit, "{rule}: permit ({:?})", d.policies);
        let obligations: Vec<String> = d.obligations.iter().map(Obligation::code).collect();
        assert_eq!(obligations, row.obligations, "{rule}: obligations");
        assert_eq!(d.policies, row.policies, "{rule}: policies");
        assert_eq!(
            d.emergency_opt_out, row.emergency_opt_out,
            "{rule}: emergency opt-out"
        );
    }
}

#[test]
fn the_patients_consents_decide_first() {
    check(&[
        Row {
            rule: "no consent: nothing leaves",
            ..BASE
        },
        Row {
            rule: "a consent to treatment by the clinic lets its clinician read",
            consents: &["treat"],
            consent: Step1::Permit,
            permit: true,
            policies: &["clinician-consented"],
            ..BASE
        },
        Row {
            rule: "a deny for the clinic forbids",
            consents: &["no-clinic"],
            consent: Step1::Deny,
            ..BASE
        },
        Row {
            rule: "deny wins over a permit among consents",
            consents: &["treat", "no-clinic"],
            consent: Step1::Deny,
            ..BASE
        },
        Row {
            rule: "a consent naming another recipient does not apply",
            consents: &["treat"],
            requester: stranger,
            ..BASE
        },
        Row {
            rule: "a revoked consent does not apply",
            consents: &["treat-revoked"],
            ..BASE
        },
        Row {
            rule: "another patient's consent counts for nothing",
            consents: &["other-patient"],
            ..BASE
        },
        Row {
            rule: "a consent that names Conditions only does not cover an Observation",
            consents: &["insurer-conditions"],
            requester: insurer,
            purpose: "HPAYMT",
            ..BASE
        },
    ]);
}

#[test]
fn purposes_follow_the_act_reason_hierarchy() {
    check(&[
        Row {
            rule: "consent to TREAT covers continuity of care (COC)",
            consents: &["treat"],
            purpose: "COC",
            consent: Step1::Permit,
            permit: true,
            policies: &["clinician-consented"],
            ..BASE
        },
        Row {
            rule: "consent to emergency treatment does not cover routine treatment",
            consents: &["emergency-only"],
            ..BASE
        },
        Row {
            rule: "consent to HRESCH covers clinical-trial research (CLINTRCH)",
            consents: &["study"],
            requester: researcher,
            purpose: "CLINTRCH",
            consent: Step1::Permit,
            permit: true,
            obligations: &["deidentify:safe-harbor"],
            policies: &["researcher-deidentified"],
            ..BASE
        },
        Row {
            rule: "consent to HPAYMT covers claim attachments (CLMATTCH)",
            consents: &["insurer-conditions"],
            requester: insurer,
            purpose: "CLMATTCH",
            resource: hypertension,
            consent: Step1::Permit,
            permit: true,
            obligations: &["minimum-necessary"],
            policies: &["insurer-minimum-necessary"],
            ..BASE
        },
        Row {
            rule: "a role bounds the purposes: a researcher may not ask for treatment",
            consents: &["study"],
            requester: researcher,
            policies: &["consent-required", "role-purposes"],
            ..BASE
        },
    ]);
}

#[test]
fn sensitive_labels_leave_only_when_the_consent_names_them() {
    check(&[
        Row {
            rule: "a general consent does not release an HIV record",
            consents: &["treat"],
            resource: hiv,
            consent: Step1::Permit,
            policies: &["sensitive-label-needs-consent"],
            ..BASE
        },
        Row {
            rule: "a consent naming HIV releases it",
            consents: &["treat-hiv"],
            resource: hiv,
            consent: Step1::Permit,
            permit: true,
            policies: &["clinician-consented"],
            ..BASE
        },
        Row {
            rule: "a general consent does not release a psychiatric record",
            consents: &["treat"],
            resource: psychiatric,
            consent: Step1::Permit,
            policies: &["sensitive-label-needs-consent"],
            ..BASE
        },
        Row {
            rule: "a general consent does not release substance-use records",
            consents: &["treat"],
            resource: substance_use,
            consent: Step1::Permit,
            policies: &["sensitive-label-needs-consent-always"],
            ..BASE
        },
        Row {
            rule: "a general consent does not release psychotherapy notes",
            consents: &["treat"],
            resource: psychotherapy_note,
            consent: Step1::Permit,
            policies: &["sensitive-label-needs-consent-always"],
            ..BASE
        },
        Row {
            rule: "a consent naming PSYTHPN releases psychotherapy notes",
            consents: &["treat-eth-psythpn"],
            resource: psychotherapy_note,
            consent: Step1::Permit,
            permit: true,
            policies: &["clinician-consented"],
            ..BASE
        },
    ]);
}

#[test]
fn break_glass_is_for_a_justified_clinician_the_patient_did_not_refuse() {
    const EMERGENCY: Row = Row {
        purpose: "ETREAT",
        break_glass: JUSTIFIED,
        permit: true,
        obligations: BREAK_GLASS_OBLIGATIONS,
        policies: &["break-glass-emergency-read"],
        ..BASE
    };
    check(&[
        Row {
            rule: "without any consent a clinician reads, flagged and the patient told",
            ..EMERGENCY
        },
        Row {
            rule: "break-glass overrides a deny that is not an emergency opt-out",
            consents: &["no-clinic"],
            consent: Step1::Deny,
            ..EMERGENCY
        },
        Row {
            rule: "with a consent that also permits, both permits' obligations apply",
            consents: &["treat"],
            consent: Step1::Permit,
            policies: &["break-glass-emergency-read", "clinician-consented"],
            ..EMERGENCY
        },
        Row {
            rule: "refusing treatment in general is not an emergency opt-out",
            consents: &["no-treatment"],
            consent: Step1::Deny,
            ..EMERGENCY
        },
        Row {
            rule: "the patient's emergency opt-out stops it",
            consents: &["no-emergency"],
            consent: Step1::Deny,
            permit: false,
            obligations: &[],
            policies: &["break-glass-must-qualify"],
            emergency_opt_out: true,
            ..EMERGENCY
        },
        Row {
            rule: "the opt-out covers narrower emergency purposes (BTG)",
            consents: &["no-emergency"],
            purpose: "BTG",
            consent: Step1::Deny,
            permit: false,
            obligations: &[],
            policies: &["break-glass-must-qualify"],
            emergency_opt_out: true,
            ..EMERGENCY
        },
        Row {
            rule: "a psychiatric record may be read in an emergency",
            resource: psychiatric,
            ..EMERGENCY
        },
        Row {
            rule: "substance-use records never leave without the patient's consent",
            resource: substance_use,
            permit: false,
            obligations: &[],
            policies: &["sensitive-label-needs-consent-always"],
            ..EMERGENCY
        },
        Row {
            rule: "a researcher cannot claim an emergency",
            requester: researcher,
            permit: false,
            obligations: &[],
            policies: &["break-glass-must-qualify", "role-purposes"],
            ..EMERGENCY
        },
        Row {
            rule: "an emergency is served one read at a time, never as an export",
            action: PolicyAction::Export,
            permit: false,
            obligations: &[],
            policies: &["break-glass-must-qualify"],
            ..EMERGENCY
        },
        Row {
            rule: "an empty justification does not qualify",
            break_glass: Some(""),
            permit: false,
            obligations: &[],
            policies: &["break-glass-must-qualify"],
            ..EMERGENCY
        },
        Row {
            rule: "a justification with a non-emergency purpose is not break-glass",
            purpose: "TREAT",
            break_glass: JUSTIFIED,
            ..BASE
        },
    ]);
}

#[test]
fn each_role_gets_the_obligations_its_permit_carries() {
    check(&[
        Row {
            rule: "a researcher gets de-identified data (Safe Harbor)",
            consents: &["study"],
            requester: researcher,
            purpose: "HRESCH",
            action: PolicyAction::Export,
            consent: Step1::Permit,
            permit: true,
            obligations: &["deidentify:safe-harbor"],
            policies: &["researcher-deidentified"],
            ..BASE
        },
        Row {
            rule: "an insurer gets the minimum necessary of what the consent names",
            consents: &["insurer-conditions"],
            requester: insurer,
            purpose: "HPAYMT",
            resource: hypertension,
            consent: Step1::Permit,
            permit: true,
            obligations: &["minimum-necessary"],
            policies: &["insurer-minimum-necessary"],
            ..BASE
        },
        Row {
            rule: "an assessor gets what the patient's authorization names, as it is",
            consents: &["claim"],
            requester: assessor,
            purpose: "CLMATTCH",
            action: PolicyAction::Disclose,
            resource: hypertension,
            consent: Step1::Permit,
            permit: true,
            policies: &["disability-assessor-consented"],
            ..BASE
        },
        Row {
            rule: "a consent to access does not authorize a disclosure",
            consents: &["claim-access-only"],
            requester: assessor,
            purpose: "CLMATTCH",
            action: PolicyAction::Disclose,
            resource: hypertension,
            ..BASE
        },
        Row {
            rule: "the same consent lets the assessor read",
            consents: &["claim-access-only"],
            requester: assessor,
            purpose: "CLMATTCH",
            resource: hypertension,
            consent: Step1::Permit,
            permit: true,
            policies: &["disability-assessor-consented"],
            ..BASE
        },
        Row {
            rule: "a clinician gets what the consent permits, as it is",
            consents: &["treat"],
            consent: Step1::Permit,
            permit: true,
            policies: &["clinician-consented"],
            ..BASE
        },
    ]);
}

#[test]
fn the_explanation_says_who_decided_and_why() {
    let cases: [(Row, &[&str]); 6] = [
        (
            Row {
                consents: &["treat"],
                ..BASE
            },
            &[
                "Your consent permits sharing Observation/vitals-1: consent treat (provision).",
                "Institution policy allows it: clinician-consented.",
            ],
        ),
        (
            BASE,
            &[
                "None of your consents covers this request for Observation/vitals-1.",
                "Institution policy does not allow it: consent-required.",
            ],
        ),
        (
            Row {
                consents: &["treat", "no-clinic"],
                ..BASE
            },
            &[
                "Your consent forbids sharing Observation/vitals-1: consent no-clinic (provision).",
                "Institution policy does not allow it: consent-required.",
            ],
        ),
        (
            Row {
                consents: &["treat"],
                resource: hiv,
                ..BASE
            },
            &[
                "Your consent permits sharing Condition/hiv-1: consent treat (provision).",
                "The record is labelled sensitive (HIV, R); such records leave only when your consent names the label.",
                "Institution policy does not allow it: sensitive-label-needs-consent.",
            ],
        ),
        (
            Row {
                purpose: "ETREAT",
                break_glass: JUSTIFIED,
                ..BASE
            },
            &[
                "None of your consents covers this request for Observation/vitals-1.",
                "Emergency (break-the-glass) access was asked for with a justification; it is time-boxed, logged and you are told.",
                "Institution policy allows it: break-glass-emergency-read.",
            ],
        ),
        (
            Row {
                consents: &["no-emergency"],
                purpose: "ETREAT",
                break_glass: JUSTIFIED,
                ..BASE
            },
            &[
                "Your consent forbids sharing Observation/vitals-1: consent no-emergency (provision).",
                "Emergency (break-the-glass) access was asked for, but you opted out of emergency access.",
                "Institution policy does not allow it: break-glass-must-qualify.",
            ],
        ),
    ];
    for (row, sentences) in &cases {
        let d = decide_row(row);
        assert_eq!(d.explanation, *sentences, "{:?}", d.policies);
    }
}

#[test]
fn a_deny_carries_no_obligations_and_a_permit_its_deciding_provisions() {
    // Break-glass for a researcher: the emergency permit's obligations must not leak into a
    // deny.
    let denied = decide_row(&Row {
        requester: researcher,
        purpose: "ETREAT",
        break_glass: JUSTIFIED,
        ..BASE
    });
    assert!(!denied.permit);
    assert!(denied.obligations.is_empty(), "{:?}", denied.obligations);

    let permitted = decide_row(&Row {
        consents: &["treat", "study"],
        ..BASE
    });
    assert!(permitted.permit);
    let deciding: Vec<(&str, &str)> = permitted
        .consent
        .deciding
        .iter()
        .map(|d| (d.consent_id.as_str(), d.path.as_str()))
        .collect();
    assert_eq!(
        deciding,
        [("treat", "provision")],
        "only the consent that applies"
    );
}

#[test]
fn gateway_records_never_leave_whatever_the_consents_say() {
    type Build = fn() -> Value;
    let resources: [(&str, Build); 3] = [
        ("a Consent", consent_record),
        ("an AuditEvent", audit_event),
        ("a Provenance tagged as the gateway's", tagged_provenance),
    ];
    for (what, resource) in resources {
        for (how, row) in [
            (
                "consented",
                Row {
                    consents: &["treat"],
                    resource,
                    ..BASE
                },
            ),
            (
                "break-glass",
                Row {
                    purpose: "ETREAT",
                    break_glass: JUSTIFIED,
                    resource,
                    ..BASE
                },
            ),
        ] {
            let d = decide_row(&row);
            assert!(!d.permit, "{what}, {how}");
            assert_eq!(d.consent.decision, Step1::NotApplicable, "{what}, {how}");
            assert!(
                d.obligations.is_empty() && d.policies.is_empty(),
                "{what}, {how}: {d:?}"
            );
            assert_eq!(
                d.explanation,
                [
                    "Records about sharing (consents, audit events) are never shared with recipients."
                ],
                "{what}, {how}"
            );
        }
    }
    // An untagged Provenance is clinical: the consent decides as for any record.
    check(&[Row {
        rule: "an untagged Provenance is a clinical record",
        consents: &["treat"],
        resource: || {
            let mut provenance = tagged_provenance();
            provenance["meta"] = json!({});
            provenance
        },
        consent: Step1::Permit,
        permit: true,
        policies: &["clinician-consented"],
        ..BASE
    }]);
}

#[test]
fn references_name_type_and_id() {
    for (reference, want) in [
        ("Patient/1", Some("Patient/1")),
        ("Patient/1/_history/2", Some("Patient/1")),
        ("https://x.example/fhir/Patient/abc", Some("Patient/abc")),
        ("https://x.example/fhir/Patient/ABC", None),
        ("Patient/", Some("Patient/")),
        ("urn:uuid:0f6c3c0e", None),
        ("#contained", None),
        ("", None),
    ] {
        assert_eq!(type_and_id(reference), want, "{reference}");
    }
}

proptest::proptest! {
    /// The slicing reader agrees with the plain one it replaced (split, find, join).
    #[test]
    fn references_agree_with_splitting(reference in "[A-Za-z0-9_:./#-]{0,40}") {
        let parts: Vec<&str> = reference.split('/').collect();
        let plain = parts
            .iter()
            .rposition(|p| p.chars().next().is_some_and(char::is_uppercase))
            .and_then(|i| Some(format!("{}/{}", parts[i], parts.get(i + 1)?)));
        proptest::prop_assert_eq!(type_and_id(&reference).map(str::to_string), plain);
    }
}
