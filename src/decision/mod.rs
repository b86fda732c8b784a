//! One decision for one resource: the patient's consents (step 1, [`crate::consent`]) and the
//! institution's Cedar policies (step 2, [`crate::policy`]), with an explanation a patient
//! can read. Every read, export, disclosure and the decisions API go through [`decide`]; there
//! is no second code path. Pure: the caller loads the consents and the resource.

use serde::Serialize;
use serde_json::Value;

use crate::auth::clients::{Client, Role};
use crate::auth::purposes::PurposeCatalog;
use crate::consent::{
    self, ActorFacts, Coding, Consent, ConsentQuery, ConsentResult, ResourceFacts,
};
use crate::policy::{ConsentOutcome, PolicyAction, PolicyDecision, PolicyEngine, PolicyRequest};
use crate::records::{index, internal};
use stored::StoredFacts;

pub mod stored;

/// The requester, as the decision needs it.
#[derive(Debug, Clone)]
pub struct Requester {
    /// The client id.
    pub client_id: String,
    /// Its role.
    pub role: Role,
    /// Its organisation.
    pub organization: String,
    /// Every reference it is known by (`Device/{client}`, `Group/{g}` memberships, ...).
    pub references: Vec<String>,
}

impl Requester {
    /// The requester facts of a registered client: its id, role and organisation, and every
    /// reference it is known by (`Device/{id}` and its `acts_as` references).
    pub fn of(client: &Client) -> Requester {
        Requester::new(
            &client.id,
            client.role,
            client.organization.clone(),
            client.acts_as.iter().cloned(),
        )
    }

    /// The requester facts of client `client_id`, with its `acts_as` references.
    pub fn new(
        client_id: &str,
        role: Role,
        organization: String,
        acts_as: impl IntoIterator<Item = String>,
    ) -> Requester {
        let mut references = vec![format!("Device/{client_id}")];
        references.extend(acts_as);
        Requester {
            client_id: client_id.to_string(),
            role,
            organization,
            references,
        }
    }
}

/// What is asked.
#[derive(Debug, Clone, Copy)]
pub struct Question<'a> {
    /// Who asks.
    pub requester: &'a Requester,
    /// The purpose of use (v3 ActReason code).
    pub purpose: &'a str,
    /// Read, export or disclose.
    pub action: PolicyAction,
    /// The patient the resource belongs to.
    pub patient_id: &'a str,
    /// The resource (stored, or attributes of one not yet stored), or the facts stored
    /// with it.
    pub resource: Subject<'a>,
    /// The break-glass justification, when the requester claims emergency access.
    pub break_glass: Option<&'a str>,
    /// The time of the request, microseconds since the epoch.
    pub now: i64,
    /// Whether to write [`Decision::explanation`]: the decisions API answers with it; a
    /// release, which sends no sentences, would build them only to drop them (about a third
    /// of a decision's time in the read's profile, `docs/PERFORMANCE.md`, "Eighteenth
    /// step").
    pub explain: bool,
}

/// The resource a decision is about: its body, or the facts derived from its body when it
/// was stored ([`stored`]), which decide the same.
#[derive(Debug, Clone, Copy)]
pub enum Subject<'a> {
    /// A body (stored, or attributes of one not yet stored).
    Body(&'a Value),
    /// The facts stored with a resource's current version.
    Stored(&'a StoredFacts),
}

/// The answer, with everything needed to explain and audit it.
#[derive(Debug, Clone, Serialize)]
pub struct Decision {
    /// Whether the resource may leave.
    pub permit: bool,
    /// What must be done to it before it leaves (e.g. `deidentify:safe-harbor`).
    pub obligations: Vec<crate::policy::Obligation>,
    /// Step 1.
    pub consent: ConsentResult,
    /// The policies that decided step 2.
    pub policies: Vec<String>,
    /// Whether the patient opted out of emergency access for this request.
    pub emergency_opt_out: bool,
    /// Sentences a patient can read; empty unless the question asked for them
    /// ([`Question::explain`]).
    pub explanation: Vec<String>,
}

/// The codings of a CodeableConcept (or list of them) at `element`.
fn codings(resource: &Value, element: &str) -> Vec<Coding> {
    let list: Vec<&Value> = match resource.get(element) {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(one) => vec![one],
        None => vec![],
    };
    list.iter()
        .flat_map(|c| {
            c.get("coding")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
        })
        .filter_map(|c| {
            Some(Coding::new(
                c.get("system").and_then(Value::as_str).unwrap_or_default(),
                c.get("code")?.as_str()?,
            ))
        })
        .collect()
}

/// Every `reference` in the resource, as `Type/id`.
fn references(resource: &Value, under: Option<&[&str]>) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack: Vec<&Value> = match under {
        None => vec![resource],
        Some(elements) => elements.iter().filter_map(|e| resource.get(*e)).collect(),
    };
    while let Some(v) = stack.pop() {
        match v {
            Value::Object(map) => {
                for (k, child) in map {
                    if k == "reference"
                        && let Some(r) = child.as_str()
                    {
                        if let Some(reference) = type_and_id(r) {
                            out.push(reference.to_string());
                        }
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter()),
            _ => {}
        }
    }
    out.sort();
    out.dedup();
    out
}

/// `Type/id` of a reference: the last segment that starts with a capital letter and the one
/// after it (`Patient/1/_history/2` and `https://x/fhir/Patient/1` give `Patient/1`); `None`
/// when that last capitalised segment ends the reference. A slice of `reference`, since the
/// decision reads every reference of every resource it decides.
fn type_and_id(reference: &str) -> Option<&str> {
    let mut last: Option<(usize, Option<usize>)> = None;
    let mut start = 0;
    for segment in reference.split('/') {
        let end = start + segment.len();
        if let Some((_, until @ None)) = &mut last {
            *until = Some(end);
        }
        if segment.chars().next().is_some_and(char::is_uppercase) {
            last = Some((start, None));
        }
        start = end + 1;
    }
    let (from, until) = last?;
    reference.get(from..until?)
}

/// The facts of a resource the consent evaluator matches on.
pub fn resource_facts(resource: &Value) -> ResourceFacts {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let terms = index::extract(resource_type, id, resource);
    let mut classes = vec![Coding::new(
        "http://hl7.org/fhir/resource-types",
        resource_type,
    )];
    classes.extend(codings(resource, "category"));
    let codes = terms
        .terms
        .iter()
        .filter(|t| t.kind == "code")
        .map(|t| Coding::new(t.system.clone(), t.code.clone()))
        .collect();
    let security_labels = resource
        // Two lookups, not `pointer`, which allocates each path segment.
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| {
            Some(Coding::new(
                c.get("system").and_then(Value::as_str).unwrap_or_default(),
                c.get("code")?.as_str()?,
            ))
        })
        .collect();
    ResourceFacts {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        classes,
        codes,
        security_labels,
        clinical_period: terms.clinical,
        references: references(resource, None),
        author_references: references(
            resource,
            Some(&[
                "author",
                "recorder",
                "asserter",
                "performer",
                "requester",
                "informant",
            ]),
        ),
    }
}

/// Whether a deny that decided came from a provision naming a purpose that covers the
/// emergency purpose asked for: the patient's opt-out of emergency access.
fn opted_out_of_emergency(
    catalog: &PurposeCatalog,
    consents: &[Consent],
    result: &ConsentResult,
    purpose: &str,
) -> bool {
    if result.decision != consent::Decision::Deny {
        return false;
    }
    result.deciding.iter().any(|d| {
        consents
            .iter()
            .filter(|c| c.id() == Some(d.consent_id.as_str()))
            .filter_map(|c| c.provision().and_then(|root| find_provision(root, &d.path)))
            .any(|p| {
                p.purposes().iter().any(|named| {
                    catalog.is_a(purpose, &named.code) && catalog.is_a(&named.code, "ETREAT")
                })
            })
    })
}

fn find_provision<'c>(root: &'c consent::Provision, path: &str) -> Option<&'c consent::Provision> {
    if root.path() == path {
        return Some(root);
    }
    root.provisions()
        .iter()
        .find_map(|p| find_provision(p, path))
}

/// Decides one resource, judging purposes by `catalog`.
pub fn decide(
    policies: &PolicyEngine,
    catalog: &PurposeCatalog,
    consents: &[Consent],
    q: &Question<'_>,
) -> Decision {
    let derived;
    let facts = match q.resource {
        Subject::Body(body) => {
            if internal::is_gateway_internal(body) {
                return internal_record(q.explain);
            }
            derived = resource_facts(body);
            &derived
        }
        Subject::Stored(stored) => {
            if stored.internal {
                return internal_record(q.explain);
            }
            &stored.facts
        }
    };
    let actor = ActorFacts {
        references: q.requester.references.clone(),
        roles: Vec::new(),
    };
    let action_code = match q.action {
        PolicyAction::Read => "access",
        PolicyAction::Export => "access",
        PolicyAction::Disclose => "disclose",
    };
    // Callers pass the patient's own consents; anything else is filtered out (a copy only in
    // that unusual case, since copying consents costs more than evaluating them).
    let filtered: Vec<Consent>;
    let patient_consents: &[Consent] = if consents.iter().all(|c| c.patient_id() == q.patient_id) {
        consents
    } else {
        filtered = consents
            .iter()
            .filter(|c| c.patient_id() == q.patient_id)
            .cloned()
            .collect();
        &filtered
    };
    let result = consent::evaluate(
        patient_consents,
        &ConsentQuery {
            actor: &actor,
            purpose: q.purpose,
            action: Some(action_code),
            resource: facts,
            now: q.now,
            purposes: catalog.hierarchy(),
        },
    );
    let break_glass = q.break_glass.is_some() && catalog.is_a(q.purpose, "ETREAT");
    let emergency_opt_out =
        break_glass && opted_out_of_emergency(catalog, patient_consents, &result, q.purpose);
    let labels: Vec<String> = facts
        .security_labels
        .iter()
        .map(|c| c.code.clone())
        .collect();
    let consented: Vec<String> = result
        .consented_labels
        .iter()
        .map(|c| c.code.clone())
        .collect();
    let family = catalog.family(q.purpose);
    let identified_research = false;
    let outcome = match result.decision {
        consent::Decision::Permit => ConsentOutcome::Permit,
        consent::Decision::Deny => ConsentOutcome::Deny,
        consent::Decision::NotApplicable => ConsentOutcome::None,
    };
    let policy: PolicyDecision = policies.decide(&PolicyRequest {
        client_id: &q.requester.client_id,
        role: q.requester.role.as_str(),
        organization: &q.requester.organization,
        action: q.action,
        resource_type: &facts.resource_type,
        resource_id: &facts.id,
        labels: &labels,
        patient: q.patient_id,
        purpose: q.purpose,
        purpose_family: family,
        consent: outcome,
        consented_labels: &consented,
        break_glass,
        emergency_opt_out,
        identified_research,
        justification: q.break_glass.unwrap_or_default(),
    });
    let explanation = if q.explain {
        explain(&result, &policy, facts, break_glass, emergency_opt_out)
    } else {
        Vec::new()
    };
    Decision {
        permit: policy.permit,
        obligations: if policy.permit {
            policy.obligations.clone()
        } else {
            Vec::new()
        },
        consent: result,
        policies: policy.policies.clone(),
        emergency_opt_out,
        explanation,
    }
}

/// The refusal of a gateway-internal record (a consent, an audit event): no consent or
/// policy can release one to a recipient.
fn internal_record(explain: bool) -> Decision {
    Decision {
        permit: false,
        obligations: Vec::new(),
        consent: ConsentResult {
            decision: consent::Decision::NotApplicable,
            deciding: Vec::new(),
            consented_labels: Vec::new(),
        },
        policies: Vec::new(),
        emergency_opt_out: false,
        explanation: if explain {
            vec![
                "Records about sharing (consents, audit events) are never shared with recipients."
                    .to_string(),
            ]
        } else {
            Vec::new()
        },
    }
}

fn explain(
    result: &ConsentResult,
    policy: &PolicyDecision,
    facts: &ResourceFacts,
    break_glass: bool,
    opt_out: bool,
) -> Vec<String> {
    let mut out = Vec::new();
    let what = format!("{}/{}", facts.resource_type, facts.id);
    match result.decision {
        consent::Decision::Permit => out.push(format!(
            "Your consent permits sharing {what}: {}.",
            provisions(result)
        )),
        consent::Decision::Deny => out.push(format!(
            "Your consent forbids sharing {what}: {}.",
            provisions(result)
        )),
        consent::Decision::NotApplicable => out.push(format!(
            "None of your consents covers this request for {what}."
        )),
    }
    let sensitive: Vec<&str> = facts
        .security_labels
        .iter()
        .filter(|c| c.is_sensitive_label())
        .map(|c| c.code.as_str())
        .collect();
    if !sensitive.is_empty() {
        out.push(format!(
            "The record is labelled sensitive ({}); such records leave only when your consent names the label.",
            sensitive.join(", ")
        ));
    }
    if break_glass {
        out.push(if opt_out {
            "Emergency (break-the-glass) access was asked for, but you opted out of emergency access.".to_string()
        } else {
            "Emergency (break-the-glass) access was asked for with a justification; it is time-boxed, logged and you are told.".to_string()
        });
    }
    out.push(format!(
        "Institution policy {}: {}.",
        if policy.permit {
            "allows it"
        } else {
            "does not allow it"
        },
        if policy.policies.is_empty() {
            "no policy applied".to_string()
        } else {
            policy.policies.join(", ")
        }
    ));
    out
}

fn provisions(result: &ConsentResult) -> String {
    result
        .deciding
        .iter()
        .map(|d| format!("consent {} ({})", d.consent_id, d.path))
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests;
