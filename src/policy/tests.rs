//! The shipped policies' semantics, one row per baseline rule (and per way to break it).

use cedar_policy::Schema;

use super::{BUILTIN_SCHEMA, ConsentOutcome, PolicyAction, PolicyEngine, PolicyRequest};

/// The v3 ActReason ancestors of the purposes used below, the code itself first.
/// `purpose_codes_follow_the_act_reason_hierarchy` checks it against the CodeSystem.
pub(super) const PURPOSE_FAMILIES: &[(&str, &[&str])] = &[
    ("TREAT", &["TREAT", "PurposeOfUse"]),
    ("COC", &["COC", "TREAT", "PurposeOfUse"]),
    ("ETREAT", &["ETREAT", "TREAT", "PurposeOfUse"]),
    ("BTG", &["BTG", "ETREAT", "TREAT", "PurposeOfUse"]),
    ("HRESCH", &["HRESCH", "PurposeOfUse"]),
    ("CLINTRCH", &["CLINTRCH", "HRESCH", "PurposeOfUse"]),
    ("HPAYMT", &["HPAYMT", "PurposeOfUse"]),
    ("CLMATTCH", &["CLMATTCH", "HPAYMT", "PurposeOfUse"]),
    (
        "ELIGDTRM",
        &["ELIGDTRM", "COVERAGE", "HPAYMT", "PurposeOfUse"],
    ),
    ("PATRQT", &["PATRQT", "PurposeOfUse"]),
    ("COVAUTH", &["COVAUTH", "HPAYMT", "PurposeOfUse"]),
    ("HMARKT", &["HMARKT", "PurposeOfUse"]),
];

fn purpose_family(purpose: &str) -> Vec<String> {
    let (_, family) = PURPOSE_FAMILIES
        .iter()
        .find(|(code, _)| *code == purpose)
        .unwrap_or_else(|| panic!("no family for {purpose} in PURPOSE_FAMILIES"));
    family.iter().map(|code| code.to_string()).collect()
}

/// One row: the request's varying parts and the expected decision.
pub(super) struct Case {
    pub(super) name: &'static str,
    role: &'static str,
    action: PolicyAction,
    purpose: &'static str,
    consent: ConsentOutcome,
    labels: &'static [&'static str],
    consented_labels: &'static [&'static str],
    break_glass: bool,
    emergency_opt_out: bool,
    identified_research: bool,
    justification: &'static str,
    permit: bool,
    obligations: &'static [&'static str],
    /// The determining policies, exactly.
    policies: &'static [&'static str],
}

/// A clinician reading an unlabelled resource for treatment with a consent permit.
const BASE: Case = Case {
    name: "",
    role: "clinician",
    action: PolicyAction::Read,
    purpose: "TREAT",
    consent: ConsentOutcome::Permit,
    labels: &[],
    consented_labels: &[],
    break_glass: false,
    emergency_opt_out: false,
    identified_research: false,
    justification: "",
    permit: true,
    obligations: &[],
    policies: &["clinician-consented"],
};

/// BASE as a qualified break-glass read without any consent.
const BREAK_GLASS: Case = Case {
    purpose: "ETREAT",
    consent: ConsentOutcome::None,
    break_glass: true,
    justification: "unconscious in the emergency department",
    obligations: &["audit:break-glass", "notify:patient"],
    policies: &["break-glass-emergency-read"],
    ..BASE
};

const DENIED_BREAK_GLASS: &[&str] = &["break-glass-must-qualify"];

pub(super) const CASES: &[Case] = &[
    // Consent is required.
    Case {
        name: "consent permit, clinician",
        ..BASE
    },
    Case {
        name: "consent none",
        consent: ConsentOutcome::None,
        permit: false,
        policies: &["consent-required"],
        ..BASE
    },
    Case {
        name: "consent deny",
        consent: ConsentOutcome::Deny,
        permit: false,
        policies: &["consent-required"],
        ..BASE
    },
    Case {
        name: "consent permit, export",
        action: PolicyAction::Export,
        ..BASE
    },
    Case {
        name: "non-sensitive label passes",
        labels: &["R", "N"],
        ..BASE
    },
    // Break-glass.
    Case {
        name: "break-glass, justified",
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, BTG is under ETREAT",
        purpose: "BTG",
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass overrides a consent deny",
        consent: ConsentOutcome::Deny,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass on top of a consent permit still audits",
        consent: ConsentOutcome::Permit,
        policies: &["break-glass-emergency-read", "clinician-consented"],
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass without justification",
        justification: "",
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass with blank justification",
        justification: "  \t ",
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, patient opted out",
        emergency_opt_out: true,
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, opted out, even with a consent permit",
        consent: ConsentOutcome::Permit,
        emergency_opt_out: true,
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, purpose TREAT is not an emergency",
        purpose: "TREAT",
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, export",
        action: PolicyAction::Export,
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, disclose",
        action: PolicyAction::Disclose,
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, researcher",
        role: "researcher",
        permit: false,
        obligations: &[],
        policies: &["break-glass-must-qualify", "role-purposes"],
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, insurer with consent and HIV",
        role: "insurer",
        purpose: "CLMATTCH",
        consent: ConsentOutcome::Permit,
        labels: &["HIV"],
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    Case {
        name: "break-glass, disability assessor",
        role: "disability_assessor",
        purpose: "ELIGDTRM",
        consent: ConsentOutcome::Permit,
        permit: false,
        obligations: &[],
        policies: DENIED_BREAK_GLASS,
        ..BREAK_GLASS
    },
    // Sensitive labels need the consent to name them.
    Case {
        name: "HIV not consented",
        labels: &["HIV"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "HIV consented",
        labels: &["HIV"],
        consented_labels: &["HIV"],
        ..BASE
    },
    Case {
        name: "PSY not consented",
        labels: &["PSY"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "SEX not consented",
        labels: &["SEX"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "GDIS not consented",
        labels: &["GDIS"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "ETH not consented",
        labels: &["ETH"],
        permit: false,
        policies: &["sensitive-label-needs-consent-always"],
        ..BASE
    },
    Case {
        name: "PSYTHPN not consented",
        labels: &["PSYTHPN"],
        permit: false,
        policies: &["sensitive-label-needs-consent-always"],
        ..BASE
    },
    Case {
        name: "PSYTHPN consented",
        labels: &["PSYTHPN"],
        consented_labels: &["PSYTHPN"],
        ..BASE
    },
    Case {
        name: "two labels, one consented",
        labels: &["HIV", "SEX"],
        consented_labels: &["HIV"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "HIV under break-glass",
        labels: &["HIV", "PSY", "SEX", "GDIS"],
        ..BREAK_GLASS
    },
    Case {
        name: "PSYTHPN under break-glass",
        labels: &["PSYTHPN"],
        permit: false,
        obligations: &[],
        policies: &["sensitive-label-needs-consent-always"],
        ..BREAK_GLASS
    },
    Case {
        name: "ETH under break-glass",
        labels: &["ETH"],
        permit: false,
        obligations: &[],
        policies: &["sensitive-label-needs-consent-always"],
        ..BREAK_GLASS
    },
    // Researchers.
    Case {
        name: "researcher, de-identified by default",
        role: "researcher",
        action: PolicyAction::Export,
        purpose: "HRESCH",
        obligations: &["deidentify:safe-harbor"],
        policies: &["researcher-deidentified"],
        ..BASE
    },
    Case {
        name: "researcher, identified research consented",
        role: "researcher",
        purpose: "CLINTRCH",
        identified_research: true,
        policies: &["researcher-identified"],
        ..BASE
    },
    Case {
        name: "researcher, consent none",
        role: "researcher",
        purpose: "HRESCH",
        consent: ConsentOutcome::None,
        permit: false,
        policies: &["consent-required"],
        ..BASE
    },
    Case {
        name: "researcher asking for treatment",
        role: "researcher",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    // Insurers.
    Case {
        name: "insurer, genetic test not named",
        role: "insurer",
        purpose: "CLMATTCH",
        labels: &["GDIS"],
        permit: false,
        policies: &["sensitive-label-needs-consent"],
        ..BASE
    },
    Case {
        name: "insurer, genetic test named",
        role: "insurer",
        purpose: "CLMATTCH",
        labels: &["GDIS"],
        consented_labels: &["GDIS"],
        obligations: &["minimum-necessary"],
        policies: &["insurer-minimum-necessary"],
        ..BASE
    },
    Case {
        name: "insurer, underwriting",
        role: "insurer",
        purpose: "ELIGDTRM",
        obligations: &["minimum-necessary"],
        policies: &["insurer-minimum-necessary"],
        ..BASE
    },
    Case {
        name: "insurer asking for treatment",
        role: "insurer",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    Case {
        name: "insurer asking for research",
        role: "insurer",
        purpose: "HRESCH",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    // Disability assessors.
    Case {
        name: "disability assessor, eligibility",
        role: "disability_assessor",
        action: PolicyAction::Disclose,
        purpose: "ELIGDTRM",
        policies: &["disability-assessor-consented"],
        ..BASE
    },
    Case {
        name: "disability assessor, patient requested",
        role: "disability_assessor",
        purpose: "PATRQT",
        policies: &["disability-assessor-consented"],
        ..BASE
    },
    Case {
        name: "disability assessor, claim attachment",
        role: "disability_assessor",
        action: PolicyAction::Disclose,
        purpose: "CLMATTCH",
        policies: &["disability-assessor-consented"],
        ..BASE
    },
    Case {
        name: "disability assessor, other payment purposes",
        role: "disability_assessor",
        purpose: "COVAUTH",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    Case {
        name: "disability assessor, psychotherapy notes not named",
        role: "disability_assessor",
        purpose: "ELIGDTRM",
        labels: &["PSYTHPN"],
        permit: false,
        policies: &["sensitive-label-needs-consent-always"],
        ..BASE
    },
    // Roles and purposes.
    Case {
        name: "clinician, second opinion (COC)",
        purpose: "COC",
        ..BASE
    },
    Case {
        name: "clinician, patient requested",
        purpose: "PATRQT",
        ..BASE
    },
    Case {
        name: "clinician, marketing",
        purpose: "HMARKT",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    Case {
        name: "data source never reads",
        role: "data_source",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
    Case {
        name: "unknown role",
        role: "operator",
        permit: false,
        policies: &["role-purposes"],
        ..BASE
    },
];

pub(super) fn strings(values: &[&str]) -> Vec<String> {
    values.iter().map(|value| value.to_string()).collect()
}

/// Runs `check` on the PolicyRequest built from `case`.
pub(super) fn with_request<T>(case: &Case, check: impl FnOnce(&PolicyRequest<'_>) -> T) -> T {
    let labels = strings(case.labels);
    let consented_labels = strings(case.consented_labels);
    let purpose_family = purpose_family(case.purpose);
    let request = PolicyRequest {
        client_id: "client-1",
        role: case.role,
        organization: "org-1",
        action: case.action,
        resource_type: "Observation",
        resource_id: "obs-1",
        labels: &labels,
        patient: "patient-1",
        purpose: case.purpose,
        purpose_family: &purpose_family,
        consent: case.consent,
        consented_labels: &consented_labels,
        break_glass: case.break_glass,
        emergency_opt_out: case.emergency_opt_out,
        identified_research: case.identified_research,
        justification: case.justification,
    };
    check(&request)
}

#[test]
fn builtin_policies_decide_as_the_baseline_rules_say() {
    let engine = PolicyEngine::builtin().expect("the shipped policies load");
    assert!(engine.warnings().is_empty(), "{:?}", engine.warnings());
    let mut failures = Vec::new();
    for case in CASES {
        let decision = with_request(case, |request| engine.decide(request));
        let expected = (
            case.permit,
            strings(case.obligations),
            strings(case.policies),
        );
        let obligations: Vec<String> = decision.obligations.iter().map(|o| o.code()).collect();
        let actual = (decision.permit, obligations, decision.policies);
        if actual != expected || !decision.errors.is_empty() {
            failures.push(format!(
                "{}: expected {expected:?}, got {actual:?}, errors {:?}",
                case.name, decision.errors
            ));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn memoised_answers_are_cedars_answers() {
    // The shipped policies read attributes only, so their decisions are memoised; every
    // row, asked twice (the second answer from the memo), answers as Cedar itself does, and
    // another client, resource and patient with the same attributes get the same answer.
    let engine = PolicyEngine::builtin().expect("the shipped policies load");
    assert!(engine.memoises(), "the shipped policies observe no ids");
    for case in CASES {
        with_request(case, |request| {
            let cedar = engine.evaluate(request);
            assert_eq!(engine.decide(request), cedar, "{}", case.name);
            assert_eq!(engine.decide(request), cedar, "{} (memoised)", case.name);
            let other = PolicyRequest {
                client_id: "client-2",
                resource_id: "obs-2",
                patient: "patient-2",
                ..*request
            };
            assert_eq!(engine.decide(&other), cedar, "{} (other ids)", case.name);
        });
    }
}

#[test]
fn every_shipped_policy_decides_some_row() {
    // A policy no row ever names is a rule no test would notice breaking.
    let engine = PolicyEngine::builtin().expect("the shipped policies load");
    let named: Vec<&str> = CASES
        .iter()
        .flat_map(|case| case.policies.iter().copied())
        .collect();
    let untested: Vec<String> = engine
        .policy_ids()
        .into_iter()
        .filter(|id| !named.contains(&id.as_str()))
        .collect();
    assert!(untested.is_empty(), "no row for {untested:?}");
}

#[test]
fn requests_fit_the_schema() {
    // decide() skips the schema check for speed; this is where drift would show.
    let (schema, _) = Schema::from_cedarschema_str(BUILTIN_SCHEMA).expect("schema parses");
    let engine = PolicyEngine::builtin().expect("the shipped policies load");
    for case in CASES {
        with_request(case, |request| {
            if let Err(reason) = engine.shapes.build(request, Some(&schema)) {
                panic!("{}: {reason}", case.name);
            }
        });
    }
}

#[test]
fn engine_can_be_shared_between_threads() {
    fn shared<T: Send + Sync>() {}
    shared::<PolicyEngine>();
}

#[test]
fn debug_output_leaves_out_the_justification() {
    let case = Case {
        justification: "patient Jane Roe collapsed",
        ..BREAK_GLASS
    };
    let debug = with_request(&case, |request| format!("{request:?}"));
    assert!(!debug.contains("Jane"), "{debug}");
    assert!(debug.contains("<26 chars>"), "{debug}");
}
