//! Table-driven tests of the consent module, one row per rule of DESIGN.md section 4 step 1
//! ([`rules`]) and per R4 check ([`model`]). Each row names the rule it guards; breaking the
//! rule flips the row's expectation. The official examples are in `super::examples`.

mod model;
mod rules;

use serde_json::{Value, json};

use super::dates::parse_date_time;
use super::*;

pub(super) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
pub(super) const CONF: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
pub(super) const PART: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
pub(super) const LOINC: &str = "http://loinc.org";
pub(super) const OBS_CAT: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

pub(super) fn micros(text: &str) -> i64 {
    parse_date_time(text).unwrap().0
}

/// A valid consent around `provision`.
pub(super) fn consent_json(id: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "id": id,
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": LOINC, "code": "59284-0"}]}],
        "patient": {"reference": "Patient/p1"},
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": provision
    })
}

pub(super) fn consent(id: &str, provision: Value) -> Consent {
    Consent::from_fhir(&consent_json(id, provision)).unwrap()
}

pub(super) fn role(code: &str) -> Value {
    json!({"coding": [{"system": PART, "code": code}]})
}

pub(super) fn actor(code: &str, reference: &str) -> Value {
    json!({"role": role(code), "reference": {"reference": reference}})
}

pub(super) fn label(system: &str, code: &str) -> Coding {
    Coding::new(system, code)
}

/// A request with owned facts; rows tweak it.
pub(super) struct Req {
    pub(super) actor: ActorFacts,
    pub(super) resource: ResourceFacts,
    pub(super) purpose: &'static str,
    pub(super) action: Option<&'static str>,
    pub(super) now: i64,
}

impl Req {
    /// Organization/o1 (a PRCP, member of Group/g1) reads a labelled lab Observation for TREAT.
    pub(super) fn new() -> Req {
        Req {
            actor: ActorFacts {
                references: vec![
                    "Device/client1".into(),
                    "Organization/o1".into(),
                    "Group/g1".into(),
                ],
                roles: vec![Coding::new(PART, "PRCP")],
            },
            resource: ResourceFacts {
                resource_type: "Observation".into(),
                id: "obs1".into(),
                classes: vec![
                    Coding::new("http://hl7.org/fhir/resource-types", "Observation"),
                    Coding::new(OBS_CAT, "laboratory"),
                ],
                codes: vec![Coding::new(LOINC, "1234-5")],
                security_labels: vec![label(CONF, "N")],
                clinical_period: parse_date_time("2020-06-01"),
                references: vec!["Patient/p1".into(), "ServiceRequest/sr1".into()],
                author_references: vec!["Practitioner/author1".into()],
            },
            purpose: "TREAT",
            action: Some("access"),
            now: micros("2024-01-01T12:00:00Z"),
        }
    }

    pub(super) fn run(&self, consents: &[Consent]) -> ConsentResult {
        evaluate(
            consents,
            &ConsentQuery {
                actor: &self.actor,
                purpose: self.purpose,
                action: self.action,
                resource: &self.resource,
                now: self.now,
                purposes: crate::consent::purpose::PurposeHierarchy::official(),
            },
        )
    }
}

pub(super) fn purpose(code: &str) -> Value {
    json!({"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": code})
}

pub(super) fn class(resource_type: &str) -> Value {
    json!({"system": "http://hl7.org/fhir/resource-types", "code": resource_type})
}

pub(super) fn concept(system: &str, code: &str) -> Value {
    json!({"coding": [{"system": system, "code": code}]})
}

pub(super) fn data(meaning: &str, reference: &str) -> Value {
    json!({"meaning": meaning, "reference": {"reference": reference}})
}

pub(super) fn action(code: &str) -> Value {
    concept("http://terminology.hl7.org/CodeSystem/consentaction", code)
}
