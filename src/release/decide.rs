//! Decide-each: which of a patient's resources a recipient may have. A resource passes when
//! the token's scopes reach it and the one decision engine ([`decision::decide`]) permits it
//! under the patient's consents and the institution's policies.

use serde_json::Value;

use super::context::{PatientContext, Recipient};
use crate::auth::scopes::Scope;
use crate::consent::Coding;
use crate::decision::stored::{self, Known, StoredResource};
use crate::decision::{self, Decision, Question, Subject};
use crate::gateway::Gateway;
use crate::policy::PolicyAction;

/// The FHIR interaction a resource is reached by, which decides the scope permission asked
/// for (`r` or `s` of a SMART scope).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interaction {
    /// A read by id (and the resources of an export).
    Read,
    /// A search (and `$everything`).
    Search,
}

/// A permitted resource's body, before shaping.
#[derive(Debug, Clone)]
pub enum Body {
    /// Parsed, with the stored text it was parsed from when the caller had it
    /// ([`decide_stored`]): a stored body is the gateway's own serialisation of a parsed
    /// resource (`records::ingest::put_as`), so the text is sent as it is if nothing shapes
    /// or marks the resource (`released::Payload`).
    Parsed {
        /// The body.
        value: Value,
        /// The stored text `value` was parsed from.
        text: Option<String>,
    },
    /// Decided on the facts stored with it and not parsed: shaping and the dispute mark
    /// parse it if they change it ([`Body::into_parsed`]); otherwise it leaves as it is.
    Stored {
        /// Its `Type/id`.
        reference: String,
        /// The stored text.
        text: String,
    },
}

impl Body {
    /// The resource's id.
    pub fn id(&self) -> Option<&str> {
        match self {
            Body::Parsed { value, .. } => value["id"].as_str(),
            Body::Stored { reference, .. } => reference.split_once('/').map(|(_, id)| id),
        }
    }

    /// The body parsed, with the stored text it is the parse of, if any; `None` for a
    /// stored text that is not JSON (a row damaged outside the gateway).
    pub fn into_parsed(self) -> Option<(Value, Option<String>)> {
        match self {
            Body::Parsed { value, text } => Some((value, text)),
            Body::Stored { text, .. } => {
                let value = serde_json::from_str(&text).ok()?;
                Some((value, Some(text)))
            }
        }
    }
}

/// A resource the decision engine permitted, with the decision that permitted it (its
/// obligations shape what leaves; its consents and policies go into the audit entry).
#[derive(Debug, Clone)]
pub struct Permitted {
    /// The stored resource, as yet unshaped.
    pub body: Body,
    /// Why it may leave, and what must be done to it first.
    pub decision: Decision,
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
    resources
        .into_iter()
        .filter_map(|value| {
            decide_body(
                gateway,
                recipient,
                patient,
                (value, None),
                action,
                interaction,
                now,
            )
        })
        .collect()
}

/// One parsed resource, with the stored text it is the parse of when the caller has it:
/// the token's scopes, then the decision.
fn decide_body(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    (value, text): (Value, Option<String>),
    action: PolicyAction,
    interaction: Interaction,
    now: i64,
) -> Option<Permitted> {
    if !scope_allows(&recipient.claims.scope, &value, interaction) {
        return None;
    }
    let decision = decide_one(
        gateway,
        recipient,
        patient,
        Subject::Body(&value),
        action,
        now,
    );
    decision.permit.then_some(Permitted {
        body: Body::Parsed { value, text },
        decision,
    })
}

fn decide_one(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    resource: Subject<'_>,
    action: PolicyAction,
    now: i64,
) -> Decision {
    let claims = recipient.claims;
    decision::decide(
        &gateway.institution.policies,
        gateway.purposes,
        &patient.consents,
        &Question {
            requester: recipient.requester,
            purpose: &claims.purpose_of_use,
            action,
            patient_id: patient.patient.as_str(),
            resource,
            break_glass: claims.justification.as_deref(),
            now,
            explain: false,
        },
    )
}

/// [`decide_each`] of one stored resource, read: `None` when it is not permitted. On its
/// stored facts when it has them, and then not parsed here: shaping or the dispute mark
/// parse it if they change it, and otherwise it leaves as its stored text.
pub fn decide_stored(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    resource: StoredResource,
    interaction: Interaction,
) -> Option<Permitted> {
    let now = crate::records::dates::now_micros();
    let StoredResource { text, known } = resource;
    let facts = match known {
        Known::Parsed(value) => {
            return decide_body(
                gateway,
                recipient,
                patient,
                (value, Some(text)),
                PolicyAction::Read,
                interaction,
                now,
            );
        }
        Known::Facts(facts) => facts,
    };
    if !scope_allows_on(
        &recipient.claims.scope,
        &facts.facts.resource_type,
        &facts.scope_categories,
        interaction,
    ) {
        return None;
    }
    let decision = decide_one(
        gateway,
        recipient,
        patient,
        Subject::Stored(&facts),
        PolicyAction::Read,
        now,
    );
    decision.permit.then(|| Permitted {
        body: Body::Stored {
            reference: facts.reference(),
            text,
        },
        decision,
    })
}

/// Whether the granted scopes (space-separated) reach this resource: its type, the
/// permission `interaction` needs, and a scope's `?category=` narrowing.
pub fn scope_allows(granted: &str, resource: &Value, interaction: Interaction) -> bool {
    let ty = resource["resourceType"].as_str().unwrap_or_default();
    // The categories are derived only when a scope narrows by one.
    let narrows = granted.contains('?');
    let categories = if narrows {
        stored::scope_categories(ty, resource)
    } else {
        Vec::new()
    };
    scope_allows_on(granted, ty, &categories, interaction)
}

/// [`scope_allows`] of a resource of type `ty` whose `category` terms are `categories`.
pub fn scope_allows_on(
    granted: &str,
    ty: &str,
    categories: &[Coding],
    interaction: Interaction,
) -> bool {
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
                    || categories.iter().any(|t| {
                        v.split(',').any(|want| {
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
