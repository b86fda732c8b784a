//! The one Consent builder: what the gateway writes when a patient grants access through one
//! of its own features (approving an access request, sending evidence, the share form).
//!
//! Every grant is an opt-in patient-privacy Consent whose root provision is a typed `permit`
//! for one recipient actor (role IRCP, the recipient's reference), one purpose of use, from
//! a start instant until an optional end, narrowed by resource classes, instances and a data
//! period when given. Sensitive labels the patient chose to share are named in a nested
//! permit: on the root a `securityLabel` would restrict the grant to labelled resources
//! only. The result still goes through [`crate::consent::Consent::from_fhir`] like any
//! consent a patient sends.

use serde_json::{Value, json};

use super::model::{ACT_CODE_SYSTEM, CONSENT_ACTION_SYSTEM, Coding, RESOURCE_TYPES_SYSTEM};
use super::purpose::ACT_REASON_SYSTEM;
use crate::fhir_time::format_instant;

/// The code system of participation types (actor roles).
pub const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// LOINC "Patient consent".
const PATIENT_CONSENT_LOINC: &str = "59284-0";

/// The legal basis a grant records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Basis {
    /// `policyRule` OPTIN: the patient opted in.
    OptIn,
    /// `policy.uri`: a named authorization form (e.g. an SSA-827-style release).
    Policy(String),
}

/// What a patient grants.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The Consent's id.
    pub id: String,
    /// The patient's FHIR id.
    pub patient: String,
    /// The recipient as the decision engine knows it (`Device/{client_id}`, `Group/{study}`).
    pub recipient: String,
    /// The purpose of use (v3 ActReason code).
    pub purpose: String,
    /// A `consentaction` code the grant is limited to (`access`, `disclose`), if any.
    pub action: Option<String>,
    /// Resource types the grant is limited to; empty for all.
    pub classes: Vec<String>,
    /// Resource instances (`Type/id`) the grant is limited to; empty for all.
    pub instances: Vec<String>,
    /// The clinical dates the grant covers (`dataPeriod` start and end as FHIR dateTimes).
    pub data_period: (Option<String>, Option<String>),
    /// Sensitive labels the patient chose to share (named in a nested permit).
    pub shared_labels: Vec<Coding>,
    /// When the grant starts, microseconds since the epoch (also its `dateTime`).
    pub start: i64,
    /// When it ends, a FHIR dateTime; `None` for until revoked.
    pub end: Option<String>,
    /// Its legal basis.
    pub basis: Basis,
    /// An identifier linking the consent to what created it (system, value).
    pub identifier: Option<(String, String)>,
}

impl Grant {
    /// The FHIR R4 Consent.
    pub fn to_fhir(&self) -> Value {
        let mut provision = json!({
            "type": "permit",
            "period": {"start": format_instant(self.start)},
            "actor": [{
                "role": {"coding": [{"system": PARTICIPATION_TYPE_SYSTEM, "code": "IRCP"}]},
                "reference": {"reference": self.recipient}
            }],
            "purpose": [{"system": ACT_REASON_SYSTEM, "code": self.purpose}],
        });
        if let Some(end) = &self.end {
            provision["period"]["end"] = json!(end);
        }
        if let Some(action) = &self.action {
            provision["action"] =
                json!([{"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": action}]}]);
        }
        if !self.classes.is_empty() {
            provision["class"] = self
                .classes
                .iter()
                .map(|c| json!({"system": RESOURCE_TYPES_SYSTEM, "code": c}))
                .collect();
        }
        if !self.instances.is_empty() {
            provision["data"] = self
                .instances
                .iter()
                .map(|r| json!({"meaning": "instance", "reference": {"reference": r}}))
                .collect();
        }
        let (from, until) = &self.data_period;
        if from.is_some() || until.is_some() {
            let mut period = json!({});
            if let Some(from) = from {
                period["start"] = json!(from);
            }
            if let Some(until) = until {
                period["end"] = json!(until);
            }
            provision["dataPeriod"] = period;
        }
        if !self.shared_labels.is_empty() {
            let named: Vec<Value> = self
                .shared_labels
                .iter()
                .map(|c| json!({"system": c.system, "code": c.code}))
                .collect();
            provision["provision"] = json!([{"type": "permit", "securityLabel": named}]);
        }
        let patient = format!("Patient/{}", self.patient);
        let mut consent = json!({
            "resourceType": "Consent",
            "id": self.id,
            "status": "active",
            "scope": {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": PATIENT_CONSENT_LOINC}]}],
            "patient": {"reference": patient},
            "dateTime": format_instant(self.start),
            "performer": [{"reference": patient}],
            "provision": provision,
        });
        match &self.basis {
            Basis::OptIn => {
                consent["policyRule"] =
                    json!({"coding": [{"system": ACT_CODE_SYSTEM, "code": "OPTIN"}]});
            }
            Basis::Policy(uri) => consent["policy"] = json!([{"uri": uri}]),
        }
        if let Some((system, value)) = &self.identifier {
            consent["identifier"] = json!([{"system": system, "value": value}]);
        }
        consent
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::{Consent, ProvisionType};

    fn grant() -> Grant {
        Grant {
            id: "c1".into(),
            patient: "p1".into(),
            recipient: "Device/client-1".into(),
            purpose: "TREAT".into(),
            action: None,
            classes: Vec::new(),
            instances: Vec::new(),
            data_period: (None, None),
            shared_labels: Vec::new(),
            start: 1_767_225_600_000_000,
            end: None,
            basis: Basis::OptIn,
            identifier: None,
        }
    }

    #[test]
    fn a_plain_grant_is_a_valid_opt_in_consent() {
        let fhir = grant().to_fhir();
        let consent = Consent::from_fhir(&fhir).expect("valid");
        assert_eq!(consent.patient_id(), "p1");
        let root = consent.provision().expect("root");
        assert_eq!(root.declared_type(), Some(ProvisionType::Permit));
        assert_eq!(fhir["policyRule"]["coding"][0]["code"], "OPTIN");
        assert!(fhir["provision"].get("class").is_none());
        assert!(fhir["provision"]["period"].get("end").is_none());
    }

    #[test]
    fn every_narrowing_lands_where_the_evaluator_reads_it() {
        let g = Grant {
            action: Some("disclose".into()),
            classes: vec!["Condition".into(), "Procedure".into()],
            instances: vec!["Condition/a".into()],
            data_period: (Some("2021-01-01".into()), None),
            shared_labels: vec![Coding::new(
                "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                "PSY",
            )],
            end: Some("2027-03-01T00:00:00Z".into()),
            basis: Basis::Policy("https://example.org/ssa-827".into()),
            identifier: Some((
                "https://consentgate.dev/fhir/access-request".into(),
                "r1".into(),
            )),
            ..grant()
        };
        let fhir = g.to_fhir();
        Consent::from_fhir(&fhir).expect("valid");
        let p = &fhir["provision"];
        assert_eq!(p["action"][0]["coding"][0]["code"], "disclose");
        assert_eq!(p["class"].as_array().map(Vec::len), Some(2));
        assert_eq!(p["data"][0]["reference"]["reference"], "Condition/a");
        assert_eq!(p["dataPeriod"]["start"], "2021-01-01");
        assert_eq!(p["period"]["end"], "2027-03-01T00:00:00Z");
        assert_eq!(p["provision"][0]["securityLabel"][0]["code"], "PSY");
        assert_eq!(fhir["policy"][0]["uri"], "https://example.org/ssa-827");
        assert!(fhir.get("policyRule").is_none());
        assert_eq!(fhir["identifier"][0]["value"], "r1");
    }
}
