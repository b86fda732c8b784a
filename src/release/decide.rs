//! Decide-each: which of a patient's resources a recipient may have. A resource passes when
//! the token's scopes reach it and the one decision engine ([`decision::decide`]) permits it
//! under the patient's consents and the institution's policies.

use serde_json::Value;

use super::context::{PatientContext, Recipient};
use crate::auth::scopes::Scope;
use crate::decision::{self, Decision, Question};
use crate::gateway::Gateway;
use crate::policy::PolicyAction;
use crate::records::index;

/// The FHIR interaction a resource is reached by, which decides the scope permission asked
/// for (`r` or `s` of a SMART scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// A read by id (and the resources of an export).
    Read,
    /// A search (and `$everything`).
    Search,
}

/// A resource the decision engine permitted, with the decision that permitted it (its
/// obligations shape what leaves; its consents and policies go into the audit entry).
#[derive(Debug, Clone)]
pub struct Permitted {
    /// The stored resource, as yet unshaped.
    pub resource: Value,
    /// Why it may leave, and what must be done to it first.
    pub decision: Decision,
    /// The stored text `resource` was parsed from, when the caller has it
    /// ([`Permitted::parsed_from`]): sent as it is if nothing shapes or marks the resource
    /// (`released::Payload`).
    pub stored: Option<String>,
}

impl Permitted {
    /// Records that `resource` is the parse of `text`, the stored body as the gateway
    /// serialised it (`records::ingest::put_as`); the caller vouches for that.
    pub fn parsed_from(self, text: String) -> Permitted {
        Permitted {
            stored: Some(text),
            ..self
        }
    }
}

/// Decides each resource of `patient` for `recipient`; returns the permitted ones, in order.
pub fn decide_each(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    resources: Vec<Value>,
    action: PolicyAction,
    interaction: Interaction,
) -> Vec<Permitted> {
    let now = crate::records::dates::now_micros();
    let claims = recipient.claims;
    resources
        .into_iter()
        .filter(|r| scope_allows(&claims.scope, r, interaction))
        .filter_map(|resource| {
            let decision = decision::decide(
                &gateway.institution.policies,
                gateway.purposes,
                &patient.consents,
                &Question {
                    requester: recipient.requester,
                    purpose: &claims.purpose_of_use,
                    action,
                    patient_id: patient.patient.as_str(),
                    resource: &resource,
                    break_glass: claims.justification.as_deref(),
                    now,
                },
            );
            decision.permit.then_some(Permitted {
                resource,
                decision,
                stored: None,
            })
        })
        .collect()
}

/// [`decide_each`] of one stored resource, `resource` parsed from its stored `text`
/// ([`Permitted::parsed_from`]); `None` when it is not permitted.
pub fn decide_stored(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    resource: Value,
    text: String,
    interaction: Interaction,
) -> Option<Permitted> {
    decide_each(
        gateway,
        recipient,
        patient,
        vec![resource],
        PolicyAction::Read,
        interaction,
    )
    .pop()
    .map(|permitted| permitted.parsed_from(text))
}

/// Whether the granted scopes (space-separated) reach this resource: its type, the
/// permission `interaction` needs, and a scope's `?category=` narrowing.
pub fn scope_allows(granted: &str, resource: &Value, interaction: Interaction) -> bool {
    let ty = resource["resourceType"].as_str().unwrap_or_default();
    granted
        .split_ascii_whitespace()
        .filter_map(Scope::parse)
        .filter(|s| {
            (s.resource == "*" || s.resource == ty)
                && match interaction {
                    Interaction::Read => s.read,
                    Interaction::Search => s.search,
                }
        })
        .any(|s| match &s.query {
            None => true,
            Some(q) => form_urlencoded::parse(q.as_bytes()).all(|(k, v)| {
                k != "category"
                    || index::extract(ty, "", resource).terms.iter().any(|t| {
                        t.kind == "category"
                            && v.split(',').any(|want| {
                                want == t.code || want == format!("{}|{}", t.system, t.code)
                            })
                    })
            }),
        })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn scopes_reach_by_type_permission_and_category() {
        let lab = json!({"resourceType": "Observation", "id": "o1", "status": "final",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}],
            "code": {"text": "x"}});
        let condition = json!({"resourceType": "Condition", "id": "c1"});
        let cases: [(&str, &Value, Interaction, bool); 12] = [
            ("system/*.rs", &lab, Interaction::Read, true),
            ("system/*.rs", &lab, Interaction::Search, true),
            ("system/*.r", &lab, Interaction::Search, false),
            ("system/*.s", &lab, Interaction::Read, false),
            (
                "system/Observation.rs",
                &condition,
                Interaction::Read,
                false,
            ),
            (
                "system/Observation.rs system/Condition.r",
                &condition,
                Interaction::Read,
                true,
            ),
            (
                "system/Observation.rs?category=laboratory",
                &lab,
                Interaction::Read,
                true,
            ),
            (
                "system/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
                &lab,
                Interaction::Search,
                true,
            ),
            (
                "system/Observation.rs?category=vital-signs",
                &lab,
                Interaction::Read,
                false,
            ),
            (
                "system/Observation.rs?category=vital-signs,laboratory",
                &lab,
                Interaction::Read,
                true,
            ),
            ("patient/*.rs user/*.rs", &lab, Interaction::Read, false),
            ("", &lab, Interaction::Read, false),
        ];
        for (granted, resource, interaction, want) in cases {
            assert_eq!(
                scope_allows(granted, resource, interaction),
                want,
                "{granted} {interaction:?} {}",
                resource["resourceType"]
            );
        }
    }
}
