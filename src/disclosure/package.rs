//! The parts of a package that need no storage: the Consent it records, the decisions over
//! its records, and the frozen Bundle whose exact bytes are signed and served.

use std::collections::BTreeSet;

use serde_json::{Value, json};

use super::reference_of;
use crate::consent::grant::{Basis, Grant};
use crate::consent::{Coding, Consent};
use crate::decision::{self, Decision, Question, Requester, Subject};
use crate::error::DomainError;
use crate::fhir_time::format_instant;
use crate::gateway::Gateway;
use crate::ids::{ClientId, PatientId};
use crate::policy::{Obligation, PolicyAction};
use crate::release::minimum_necessary;

/// What the package's consent records, apart from the resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terms {
    /// The Consent's id.
    pub consent_id: String,
    /// Whose records.
    pub patient: PatientId,
    /// Who receives them.
    pub recipient: ClientId,
    /// The purpose of use.
    pub purpose: String,
    /// The authorization's URI (`Consent.policy.uri`).
    pub policy: String,
    /// When the consent starts, microseconds since the epoch.
    pub start: i64,
    /// When it ends, as the patient wrote it.
    pub expires: String,
}

impl Terms {
    /// The grant of exactly these resources to the recipient for disclosure: one data
    /// instance each, and their sensitive labels named in a nested permit (on the root a
    /// `securityLabel` would restrict the grant to labelled resources only).
    pub fn grant(&self, selected: &[Value]) -> Grant {
        let labels: BTreeSet<(String, String)> = selected
            .iter()
            .flat_map(|r| decision::resource_facts(r).security_labels)
            .filter(Coding::is_sensitive_label)
            .map(|c| (c.system, c.code))
            .collect();
        Grant {
            id: self.consent_id.clone(),
            patient: self.patient.to_string(),
            recipient: format!("Device/{}", self.recipient),
            purpose: self.purpose.clone(),
            action: Some(PolicyAction::Disclose.as_str().to_string()),
            classes: Vec::new(),
            instances: selected.iter().map(reference_of).collect(),
            data_period: (None, None),
            shared_labels: labels
                .into_iter()
                .map(|(system, code)| Coding::new(system, code))
                .collect(),
            start: self.start,
            end: Some(self.expires.clone()),
            basis: Basis::Policy(self.policy.clone()),
            identifier: None,
        }
    }
}

/// The patient's consents plus `consent`, checked as any stored consent is.
pub fn with_consent(existing: &[Consent], consent: &Value) -> Result<Vec<Consent>, DomainError> {
    let parsed = Consent::from_fhir(consent).map_err(|defects| {
        let first = defects
            .defects
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        DomainError::unprocessable(
            "invalid_disclosure",
            format!("the disclosure does not make a valid Consent: {first}"),
        )
    })?;
    let mut all = existing.to_vec();
    all.push(parsed);
    Ok(all)
}

/// Decides each resource for disclosure to `requester` under `consents`, now.
pub fn decide_all(
    gateway: &Gateway,
    requester: &Requester,
    consents: &[Consent],
    patient: &PatientId,
    purpose: &str,
    resources: &[Value],
) -> Vec<Decision> {
    let now = crate::fhir_time::now_micros();
    resources
        .iter()
        .map(|resource| {
            decision::decide(
                &gateway.institution.policies,
                gateway.purposes,
                consents,
                &Question {
                    requester,
                    purpose,
                    action: PolicyAction::Disclose,
                    patient_id: patient.as_str(),
                    resource: Subject::Body(resource),
                    break_glass: None,
                    now,
                    explain: false,
                },
            )
        })
        .collect()
}

/// A permit whose obligations a package can honour: only minimum necessary. Anything else,
/// such as de-identification, cannot go into an identified evidence package.
pub fn releasable(d: &Decision) -> bool {
    d.permit
        && d.obligations.iter().all(|o| match o {
            Obligation::MinimumNecessary => true,
            Obligation::Deidentify(_) | Obligation::AuditBreakGlass | Obligation::NotifyPatient => {
                false
            }
        })
}

/// The resources as they go into the bundle: each shaped by the obligations of its
/// (releasable) decision.
pub fn shaped(resources: Vec<Value>, decisions: &[Decision]) -> Vec<Value> {
    resources
        .into_iter()
        .zip(decisions)
        .map(|(mut resource, d)| {
            for obligation in &d.obligations {
                match obligation {
                    Obligation::MinimumNecessary => minimum_necessary(&mut resource),
                    // Never in a releasable decision.
                    Obligation::Deidentify(_)
                    | Obligation::AuditBreakGlass
                    | Obligation::NotifyPatient => {}
                }
            }
            resource
        })
        .collect()
}

/// The Cedar policies that decided, each once, sorted.
pub fn policies_of(decisions: &[Decision]) -> Vec<String> {
    let set: BTreeSet<&String> = decisions.iter().flat_map(|d| &d.policies).collect();
    set.into_iter().cloned().collect()
}

/// The frozen Bundle's exact bytes: a `collection` with the disclosure's id, an identifier
/// `urn:uuid:{id}`, the time and one entry per resource under the FHIR base.
pub fn freeze(fhir_base: &str, id: &str, now: i64, resources: &[Value]) -> Vec<u8> {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| json!({"fullUrl": format!("{fhir_base}/{}", reference_of(r)), "resource": r}))
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": id,
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{id}")},
        "type": "collection",
        "timestamp": format_instant(now),
        "entry": entries,
    });
    bundle.to_string().into_bytes()
}

/// The resources of a frozen bundle, in order.
pub fn entries_of(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::{ACT_CODE_SYSTEM, CONSENT_ACTION_SYSTEM};
    use crate::consent::{ConsentResult, ProvisionType};

    fn terms() -> Terms {
        Terms {
            consent_id: "c1".into(),
            patient: PatientId::parse("p1").unwrap(),
            recipient: ClientId::parse("client-1").unwrap(),
            purpose: "PATRQT".into(),
            policy: "https://www.ssa.gov/forms/ssa-827.pdf".into(),
            start: 1_767_225_600_000_000,
            expires: "2099-01-01T00:00:00Z".into(),
        }
    }

    fn plain() -> Value {
        json!({"resourceType": "Condition", "id": "a", "subject": {"reference": "Patient/p1"}})
    }

    fn labelled() -> Value {
        json!({"resourceType": "Condition", "id": "b", "subject": {"reference": "Patient/p1"},
            "meta": {"security": [{"system": ACT_CODE_SYSTEM, "code": "SEX"},
                                  {"system": ACT_CODE_SYSTEM, "code": "OTHER"}]}})
    }

    #[test]
    fn the_consent_grants_disclosure_of_exactly_the_selection() {
        let consent = terms().grant(&[plain(), labelled()]).to_fhir();
        let parsed = Consent::from_fhir(&consent).expect("a valid consent");
        assert_eq!(parsed.patient_id(), "p1");
        assert_eq!(
            parsed.provision().and_then(|p| p.declared_type()),
            Some(ProvisionType::Permit)
        );
        assert_eq!(consent["status"], "active");
        assert_eq!(
            consent["policy"],
            json!([{"uri": "https://www.ssa.gov/forms/ssa-827.pdf"}])
        );
        assert!(consent.get("policyRule").is_none());
        let root = &consent["provision"];
        assert_eq!(root["type"], "permit");
        assert_eq!(root["actor"][0]["role"]["coding"][0]["code"], "IRCP");
        assert_eq!(
            root["actor"][0]["reference"]["reference"],
            "Device/client-1"
        );
        assert_eq!(
            root["action"],
            json!([{"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": "disclose"}]}])
        );
        assert_eq!(root["purpose"][0]["code"], "PATRQT");
        assert_eq!(
            root["period"],
            json!({"start": "2026-01-01T00:00:00.000000Z", "end": "2099-01-01T00:00:00Z"})
        );
        assert_eq!(
            root["data"],
            json!([{"meaning": "instance", "reference": {"reference": "Condition/a"}},
                   {"meaning": "instance", "reference": {"reference": "Condition/b"}}])
        );
        assert!(root.get("class").is_none() && root.get("dataPeriod").is_none());
    }

    #[test]
    fn sensitive_labels_are_named_in_a_nested_permit_only_when_present() {
        let consent = terms().grant(&[plain(), labelled(), labelled()]).to_fhir();
        assert_eq!(
            consent["provision"]["provision"],
            json!([{"type": "permit", "securityLabel": [{"system": ACT_CODE_SYSTEM, "code": "SEX"}]}]),
            "the sensitive label once; OTHER is not sensitive"
        );
        let unlabelled = terms().grant(&[plain()]).to_fhir();
        assert!(unlabelled["provision"].get("provision").is_none());
    }

    fn decision(permit: bool, obligations: Vec<Obligation>, policies: &[&str]) -> Decision {
        Decision {
            permit,
            obligations,
            consent: ConsentResult {
                decision: crate::consent::Decision::NotApplicable,
                deciding: Vec::new(),
                consented_labels: Vec::new(),
            },
            policies: policies.iter().map(|p| p.to_string()).collect(),
            emergency_opt_out: false,
            explanation: Vec::new(),
        }
    }

    #[test]
    fn only_plain_or_minimum_necessary_permits_are_releasable() {
        let table = [
            (decision(true, vec![], &[]), true),
            (
                decision(true, vec![Obligation::MinimumNecessary], &[]),
                true,
            ),
            (decision(false, vec![], &[]), false),
            (decision(true, vec![Obligation::safe_harbor()], &[]), false),
            (decision(true, vec![Obligation::NotifyPatient], &[]), false),
            (
                decision(
                    true,
                    vec![Obligation::MinimumNecessary, Obligation::AuditBreakGlass],
                    &[],
                ),
                false,
            ),
        ];
        for (d, expected) in table {
            assert_eq!(releasable(&d), expected, "{:?}", d.obligations);
        }
    }

    #[test]
    fn minimum_necessary_shapes_only_the_resources_it_applies_to() {
        let with_text = || json!({"resourceType": "Condition", "id": "a", "text": {"div": "x"}});
        let out = shaped(
            vec![with_text(), with_text()],
            &[
                decision(true, vec![Obligation::MinimumNecessary], &[]),
                decision(true, vec![], &[]),
            ],
        );
        assert!(out[0].get("text").is_none());
        assert!(out[1].get("text").is_some());
    }

    #[test]
    fn policies_are_listed_once_in_order() {
        let ds = [
            decision(true, vec![], &["b", "a"]),
            decision(true, vec![], &["a", "c"]),
        ];
        assert_eq!(policies_of(&ds), ["a", "b", "c"]);
    }

    #[test]
    fn the_frozen_bundle_is_a_collection_of_the_resources_under_the_base() {
        let bytes = freeze("https://gw.example/fhir", "d1", 0, &[plain(), labelled()]);
        let bundle: Value = serde_json::from_slice(&bytes).unwrap();
        assert_eq!(bundle["type"], "collection");
        assert_eq!(bundle["id"], "d1");
        assert_eq!(bundle["identifier"]["value"], "urn:uuid:d1");
        assert_eq!(bundle["timestamp"], "1970-01-01T00:00:00.000000Z");
        assert_eq!(
            bundle["entry"][1]["fullUrl"],
            "https://gw.example/fhir/Condition/b"
        );
        assert_eq!(entries_of(&bundle), [plain(), labelled()]);
    }
}
