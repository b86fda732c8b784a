//! The twelve official R4 Consent examples (hl7.fhir.r4.examples@4.0.1, in
//! `tests/fixtures/hl7-r4-examples/`): each loads, and each is evaluated against what its
//! narrative (`text.div`) says. docs/CONSENT.md has the same findings as a table.
//!
//! None violates an R4 invariant (ppc-1..5, per-1). Two break R4's element definition of
//! `provision.type` ("not permitted in root rule, required in all nested rules"), which is
//! text, not an invariant, and is accepted: notOrg types its root, pkb leaves nested rules
//! untyped.
//!
//! Read by the gateway's fail-safe rule (an untyped root denies whatever `policyRule` says; an
//! explicit root `type` wins; nested provisions are exceptions; see
//! [`mod@super::evaluate`]), eight examples withhold what their narrative withholds and grant
//! what it grants ([`holding`]): Out, notAuthor, notOrg, notThem, notThis, notTime, pkb,
//! smartonfhir. Four do not ([`diverging`]): basic, grantor, signature and Emergency, and all
//! four diverge by withholding (deny or none where the narrative grants). Each of those has a
//! test marked `DIVERGES` that asserts what the gateway decides, and the smallest correction
//! of the JSON that gives the narrative's meaning.
//!
//! No consistent rule can make all twelve hold, because pairs of examples have the same
//! shape and opposite narratives:
//! - basic and notTime: both `OPTIN` with an untyped root that states only a period; basic
//!   grants, notTime withholds;
//! - signature and notThem: both `OPTIN` with an untyped root naming one `PRCP` practitioner;
//!   signature's (generated) narrative is an opt-in for that practitioner, notThem withholds
//!   everything from him;
//! - Out and grantor: both `OPTOUT` with an untyped root naming Good Health as `CST`; Out
//!   withholds, grantor grants (adding a recipient and an action).
//!
//! Following `policyRule` gets notAuthor, notThem, notThis and notTime wrong by granting
//! (notThem would give the ex-spouse access); the fail-safe rule gets basic, grantor and
//! signature wrong by withholding. A privacy gateway takes the second.

mod diverging;
mod holding;

use serde_json::Value;

use super::dates::parse_date_time;
use super::*;

const PART: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONF: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";

macro_rules! example {
    ($name:literal) => {
        include_str!(concat!(
            "../../../tests/fixtures/hl7-r4-examples/Consent-consent-example-",
            $name,
            ".json"
        ))
    };
}

const EXAMPLES: [(&str, &str); 12] = [
    ("basic", example!("basic")),
    ("Emergency", example!("Emergency")),
    ("grantor", example!("grantor")),
    ("notAuthor", example!("notAuthor")),
    ("notOrg", example!("notOrg")),
    ("notThem", example!("notThem")),
    ("notThis", example!("notThis")),
    ("notTime", example!("notTime")),
    ("Out", example!("Out")),
    ("pkb", example!("pkb")),
    ("signature", example!("signature")),
    ("smartonfhir", example!("smartonfhir")),
];

fn json_of(name: &str) -> Value {
    let text = EXAMPLES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, t)| *t)
        .unwrap();
    serde_json::from_str(text.trim_start_matches('\u{feff}')).unwrap()
}

fn load(name: &str) -> Consent {
    Consent::from_fhir(&json_of(name)).unwrap()
}

/// The example with `edit` applied: the smallest change that carries the narrative.
fn corrected(name: &str, edit: fn(&mut Value)) -> Consent {
    let mut v = json_of(name);
    edit(&mut v);
    Consent::from_fhir(&v).unwrap_or_else(|e| panic!("{name} corrected: {:?}", e.defects))
}

fn at(text: &str) -> i64 {
    parse_date_time(text).unwrap().0
}

fn requester(references: &[&str], roles: &[&str]) -> ActorFacts {
    ActorFacts {
        references: references.iter().map(|r| (*r).to_owned()).collect(),
        roles: roles.iter().map(|c| Coding::new(PART, *c)).collect(),
    }
}

fn resource(resource_type: &str, id: &str) -> ResourceFacts {
    ResourceFacts {
        resource_type: resource_type.into(),
        id: id.into(),
        classes: vec![Coding::new(
            "http://hl7.org/fhir/resource-types",
            resource_type,
        )],
        ..ResourceFacts::default()
    }
}

/// A request by `actor`, by default for TREAT, action access, on 2024-01-01.
fn ask(actor: &ActorFacts) -> Ask<'_> {
    Ask {
        actor,
        purpose: "TREAT",
        action: Some("access"),
        now: "2024-01-01T00:00:00Z",
    }
}

struct Ask<'a> {
    actor: &'a ActorFacts,
    purpose: &'a str,
    action: Option<&'a str>,
    now: &'a str,
}

impl<'a> Ask<'a> {
    fn purpose(self, purpose: &'a str) -> Self {
        Ask { purpose, ..self }
    }

    fn action(self, action: &'a str) -> Self {
        Ask {
            action: Some(action),
            ..self
        }
    }

    fn at(self, now: &'a str) -> Self {
        Ask { now, ..self }
    }

    /// What `consent` decides about `resource` for this request.
    fn on(&self, consent: &Consent, resource: &ResourceFacts) -> ConsentResult {
        self.on_all(std::slice::from_ref(consent), resource)
    }

    /// What the patient's `consents` together decide about `resource` for this request.
    fn on_all(&self, consents: &[Consent], resource: &ResourceFacts) -> ConsentResult {
        let query = ConsentQuery {
            actor: self.actor,
            purpose: self.purpose,
            action: self.action,
            resource,
            now: at(self.now),
            purposes: crate::consent::purpose::PurposeHierarchy::official(),
        };
        evaluate(consents, &query)
    }
}

/// The paths of the provisions that decided.
fn paths(result: &ConsentResult) -> Vec<&str> {
    result.deciding.iter().map(|d| d.path.as_str()).collect()
}

#[test]
fn all_twelve_examples_load_and_untyped_roots_deny() {
    use ProvisionType::{Deny, Permit};
    // (example, patient, direction policyRule states (information only), root effect)
    let expected = [
        ("basic", "f001", Some(Permit), Deny),
        ("Emergency", "f001", Some(Deny), Deny),
        ("grantor", "f001", Some(Deny), Deny),
        ("notAuthor", "f001", Some(Permit), Deny),
        // The only typed root.
        ("notOrg", "f001", Some(Permit), Deny),
        ("notThem", "f001", Some(Permit), Deny),
        ("notThis", "f001", Some(Permit), Deny),
        ("notTime", "f001", Some(Permit), Deny),
        ("Out", "f001", Some(Deny), Deny),
        ("pkb", "example", Some(Deny), Deny),
        ("signature", "72", Some(Permit), Deny),
        ("smartonfhir", "xcda", Some(Permit), Deny),
    ];
    for (name, patient, base, root_effect) in expected {
        let c = Consent::from_fhir(&json_of(name))
            .unwrap_or_else(|e| panic!("{name}: {:?}", e.defects));
        assert_eq!(c.id(), Some(format!("consent-example-{name}").as_str()));
        assert_eq!(c.status(), ConsentStatus::Active, "{name}");
        assert_eq!(c.patient_id(), patient, "{name}");
        assert_eq!(c.base_policy(), base, "{name}");
        let root = c.provision().unwrap();
        assert_eq!(root.effect(), root_effect, "{name}");
        // OPTIN over an untyped root: what the gateway reads as deny may have meant a grant.
        let warned = [
            "basic",
            "notAuthor",
            "notThem",
            "notThis",
            "notTime",
            "signature",
            "smartonfhir",
        ]
        .contains(&name);
        assert_eq!(c.untyped_root_under_opt_in(), warned, "{name}");
    }
}
