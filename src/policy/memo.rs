//! Memoised policy decisions: the policies' answer for inputs already seen.
//!
//! A Cedar decision is a pure function of the request, its entities and the policy set. The
//! gateway's request names the client, the resource and the patient by id, and those differ
//! for nearly every resource; everything else (role, organisation, action, resource type,
//! labels, purpose, the consent outcome, the flags) comes from a small space that repeats all
//! the time. When no policy can observe those ids, the answer depends only on the rest, and is
//! memoised per key of the rest: a search page or an export then asks Cedar once per kind of
//! resource instead of once per resource.
//!
//! Whether the loaded policies are blind to the ids is decided once, when they load
//! ([`blind_to_ids`]): every policy must have an unconstrained principal and resource scope,
//! be static (not linked from a template), and use `principal` and `resource` in its
//! conditions only to read attributes other than `resource.patient`. A policy set that fails
//! the check gets no memo and every request goes to Cedar, so an institution's own policies
//! can name clients, resources or patients without ever getting a stale answer. Break-glass
//! requests (and any request with a justification, which is free text) are never memoised.
//! The memo lives in the [`super::PolicyEngine`] it belongs to and goes with it; it holds at
//! most [`MEMO_LIMIT`] answers and starts over when full.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::RwLock;

use cedar_policy::{PolicySet, PrincipalConstraint, ResourceConstraint};
use serde_json::Value;

use super::request::{ConsentOutcome, PolicyAction, PolicyDecision, PolicyRequest};

/// Most answers kept; the memo is emptied when it is full.
pub const MEMO_LIMIT: usize = 4096;

/// The inputs a decision depends on when the policies are blind to ids, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Key {
    role: String,
    organization: String,
    action: PolicyAction,
    resource_type: String,
    labels: Vec<String>,
    purpose: String,
    purpose_family: Vec<String>,
    consent: ConsentOutcome,
    consented_labels: Vec<String>,
    emergency_opt_out: bool,
    identified_research: bool,
}

impl Key {
    fn of(r: &PolicyRequest<'_>) -> Key {
        Key {
            role: r.role.to_owned(),
            organization: r.organization.to_owned(),
            action: r.action,
            resource_type: r.resource_type.to_owned(),
            labels: r.labels.to_vec(),
            purpose: r.purpose.to_owned(),
            purpose_family: r.purpose_family.to_vec(),
            consent: r.consent,
            consented_labels: r.consented_labels.to_vec(),
            emergency_opt_out: r.emergency_opt_out,
            identified_research: r.identified_research,
        }
    }

    /// Whether this key is the one of `r`, compared without allocating.
    fn matches(&self, r: &PolicyRequest<'_>) -> bool {
        self.role == r.role
            && self.organization == r.organization
            && self.action == r.action
            && self.resource_type == r.resource_type
            && self.labels == r.labels
            && self.purpose == r.purpose
            && self.purpose_family == r.purpose_family
            && self.consent == r.consent
            && self.consented_labels == r.consented_labels
            && self.emergency_opt_out == r.emergency_opt_out
            && self.identified_research == r.identified_research
    }
}

/// The memo of one policy engine.
pub(super) struct Memo {
    hasher: std::collections::hash_map::RandomState,
    answers: RwLock<HashMap<u64, Vec<(Key, PolicyDecision)>>>,
}

impl Memo {
    /// An empty memo.
    pub fn new() -> Memo {
        Memo {
            hasher: std::collections::hash_map::RandomState::new(),
            answers: RwLock::new(HashMap::new()),
        }
    }

    /// Whether a request may be answered from the memo: not break-glass, no justification.
    pub fn applies(request: &PolicyRequest<'_>) -> bool {
        !request.break_glass && request.justification.is_empty()
    }

    fn hash(&self, r: &PolicyRequest<'_>) -> u64 {
        let mut h = self.hasher.build_hasher();
        r.role.hash(&mut h);
        r.organization.hash(&mut h);
        r.action.hash(&mut h);
        r.resource_type.hash(&mut h);
        r.labels.hash(&mut h);
        r.purpose.hash(&mut h);
        r.purpose_family.hash(&mut h);
        r.consent.hash(&mut h);
        r.consented_labels.hash(&mut h);
        r.emergency_opt_out.hash(&mut h);
        r.identified_research.hash(&mut h);
        h.finish()
    }

    /// The memoised answer for `request`, or `evaluate`'s, remembered.
    pub fn answer(
        &self,
        request: &PolicyRequest<'_>,
        evaluate: impl FnOnce() -> PolicyDecision,
    ) -> PolicyDecision {
        let hash = self.hash(request);
        if let Ok(answers) = self.answers.read()
            && let Some((_, known)) = answers
                .get(&hash)
                .and_then(|bucket| bucket.iter().find(|(key, _)| key.matches(request)))
        {
            return known.clone();
        }
        let decision = evaluate();
        if let Ok(mut answers) = self.answers.write() {
            if answers.values().map(Vec::len).sum::<usize>() >= MEMO_LIMIT {
                answers.clear();
            }
            let bucket = answers.entry(hash).or_default();
            if !bucket.iter().any(|(key, _)| key.matches(request)) {
                bucket.push((Key::of(request), decision.clone()));
            }
        }
        decision
    }

    /// How many answers are held (for tests).
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.answers
            .read()
            .map(|a| a.values().map(Vec::len).sum())
            .unwrap_or(0)
    }
}

/// Whether no policy of `policies` can observe the ids a request carries (the client's, the
/// resource's, the patient's), so that a decision may be memoised without them.
pub(super) fn blind_to_ids(policies: &PolicySet) -> bool {
    if policies.templates().next().is_some() {
        return false;
    }
    policies.policies().all(|policy| {
        policy.is_static()
            && matches!(policy.principal_constraint(), PrincipalConstraint::Any)
            && matches!(policy.resource_constraint(), ResourceConstraint::Any)
            && policy
                .to_json()
                .ok()
                .and_then(|json| json.get("conditions").cloned())
                .is_some_and(|conditions| !observes_ids(&conditions))
    })
}

/// Whether an expression of Cedar's JSON policy format uses `principal` or `resource` other
/// than to read an attribute, or reads `resource.patient`.
fn observes_ids(expr: &Value) -> bool {
    match expr {
        Value::Object(map) => {
            if let Some(Value::String(var)) = map.get("Var") {
                return var == "principal" || var == "resource";
            }
            for op in [".", "has"] {
                if let Some(access) = map.get(op)
                    && let Some(Value::String(var)) = access.pointer("/left/Var")
                    && (var == "principal" || var == "resource")
                {
                    let attr = access.get("attr").and_then(Value::as_str);
                    return var == "resource" && attr == Some("patient");
                }
            }
            map.values().any(observes_ids)
        }
        Value::Array(items) => items.iter().any(observes_ids),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> PolicySet {
        text.parse().expect("policy parses")
    }

    #[test]
    fn attribute_reads_are_blind_and_ids_are_not() {
        let blind = [
            "permit (principal, action, resource) when { principal.role == \"clinician\" };",
            "forbid (principal, action == Consentgate::Action::\"read\", resource) \
             when { resource.labels.contains(\"HIV\") && context.consent != \"permit\" };",
            "permit (principal, action, resource) when { principal has organization };",
        ];
        for text in blind {
            assert!(blind_to_ids(&parse(text)), "{text}");
        }
        let observing = [
            "permit (principal == Consentgate::Client::\"c1\", action, resource);",
            "permit (principal, action, resource == Consentgate::Resource::\"Observation/1\");",
            "permit (principal, action, resource) when { principal == Consentgate::Client::\"c1\" };",
            "permit (principal, action, resource) when { resource.patient == \"p1\" };",
            "permit (principal, action, resource) when { resource in Consentgate::Resource::\"r\" };",
            "permit (principal, action, resource) when { principal is Consentgate::Client };",
        ];
        for text in observing {
            assert!(!blind_to_ids(&parse(text)), "{text}");
        }
    }

    #[test]
    fn the_memo_is_bounded() {
        let memo = Memo::new();
        let purposes: Vec<String> = (0..MEMO_LIMIT + 10).map(|i| format!("P{i}")).collect();
        for purpose in &purposes {
            let request = PolicyRequest {
                purpose,
                ..super::super::probe_request()
            };
            memo.answer(&request, PolicyDecision::default);
        }
        assert!(memo.len() <= MEMO_LIMIT, "{}", memo.len());
    }
}
