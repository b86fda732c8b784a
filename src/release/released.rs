//! Shaping by obligation, and what left.
//!
//! [`shape`] applies the obligations of each permitted resource (de-identification under
//! the client's or study's key, minimum necessary) and returns a [`Released`]: the shaped
//! resources, each carrying the `Type/id` of the stored resource it came from and the
//! decision that let it go. A resource that shaping withholds (a type the de-identification
//! profile does not list) is simply not in it. [`Released`] has no other constructor, and
//! the audit entry of a release is built from it alone ([`Released::audit_entry`]), so the
//! patient's access log can only list what actually left.

use serde_json::Value;

use super::context::{PatientContext, Recipient};
use super::decide::Permitted;
use super::minimum::minimum_necessary;
use super::shaping::Shaping;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::decision::Decision;
use crate::deid::{DeidError, Deidentifier, IdentifierSet};
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::policy::Obligation;
use crate::records::validate;

/// One resource as it leaves: the shaped body and where it came from.
#[derive(Debug, Clone)]
pub struct ReleasedResource {
    source: String,
    body: Value,
    decision: Decision,
}

impl ReleasedResource {
    /// The stored resource it was shaped from, as `Type/id` (a de-identified body carries a
    /// pseudonym instead).
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Its resource type.
    pub fn resource_type(&self) -> &str {
        self.source.split('/').next().unwrap_or_default()
    }

    /// The body as sent.
    pub fn body(&self) -> &Value {
        &self.body
    }

    /// The decision that let it go.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// What leaves for one patient in one response, in order; built only by [`shape`] and
/// [`shape_for_study`].
#[derive(Debug, Clone, Default)]
pub struct Released {
    resources: Vec<ReleasedResource>,
}

impl Released {
    /// The resources, in order.
    pub fn resources(&self) -> &[ReleasedResource] {
        &self.resources
    }

    /// How many resources leave.
    pub fn len(&self) -> usize {
        self.resources.len()
    }

    /// Whether nothing leaves.
    pub fn is_empty(&self) -> bool {
        self.resources.is_empty()
    }

    /// The sources, as `Type/id`, in order.
    pub fn sources(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.source.clone()).collect()
    }

    /// The bodies as sent, in order.
    pub fn into_bodies(self) -> Vec<Value> {
        self.resources.into_iter().map(|r| r.body).collect()
    }

    /// Marks the records the patient disputes (`amendment::dispute`), except de-identified
    /// ones: the statement would re-identify them.
    pub fn mark_disputed(&mut self, disputed: &std::collections::BTreeMap<String, String>) {
        for r in &mut self.resources {
            if !r.decision.obligations.iter().any(Obligation::deidentifies) {
                crate::amendment::dispute::mark(&mut r.body, &r.source, disputed);
            }
        }
    }

    /// The audit entry of this release to `principal`, about `patient`: the resources that
    /// leave, the consents and policies that let them, and their count.
    pub fn audit_entry(
        &self,
        principal: &Principal,
        action: AuditAction,
        patient: &crate::ids::PatientId,
        request_id: &str,
    ) -> AuditEntry {
        let mut entry = principal.audit_entry(action, AuditOutcome::Success, request_id.into());
        entry.patient_id = Some(patient.to_string());
        entry.resources = self.sources();
        let mut consents: Vec<String> = self
            .resources
            .iter()
            .flat_map(|r| r.decision.consent.deciding.iter())
            .map(|p| p.consent_id.clone())
            .filter(|c| validate::is_valid_id(c))
            .collect();
        consents.sort();
        consents.dedup();
        entry.consents = consents;
        let mut policies: Vec<String> = self
            .resources
            .iter()
            .flat_map(|r| r.decision.policies.iter().cloned())
            .collect();
        policies.sort();
        policies.dedup();
        entry.policies = policies;
        entry
            .detail
            .insert("count".into(), self.resources.len().to_string());
        entry
    }
}

/// Applies the obligations of each decision, de-identifying under the recipient client's
/// own key. A de-identified output that fails its leak scan fails the whole release.
pub fn shape(
    gateway: &Gateway,
    recipient: Recipient<'_>,
    patient: &PatientContext,
    permitted: Vec<Permitted>,
) -> Result<Released, DomainError> {
    let key_name = format!("client:{}", recipient.claims.client_id);
    shape_under(&gateway.shaping, &key_name, patient, permitted)
}

/// As [`shape`], de-identifying under the key of study Group `study` (a Bulk Data export):
/// pseudonyms stable within the study, unlinkable across studies and clients.
pub fn shape_for_study(
    gateway: &Gateway,
    study: &str,
    patient: &PatientContext,
    permitted: Vec<Permitted>,
) -> Result<Released, DomainError> {
    shape_under(
        &gateway.shaping,
        &format!("group:{study}"),
        patient,
        permitted,
    )
}

/// Nothing was sent because a de-identified output still held an identifier.
fn leaked() -> DomainError {
    DomainError::new(
        ErrorKind::Internal,
        "deidentification_failed",
        "the de-identified output failed its identifier scan; nothing was sent",
    )
}

fn shape_under(
    shaping: &Shaping,
    key_name: &str,
    patient: &PatientContext,
    permitted: Vec<Permitted>,
) -> Result<Released, DomainError> {
    let needs_deid = permitted
        .iter()
        .any(|p| p.decision.obligations.iter().any(Obligation::deidentifies));
    let deid = if needs_deid {
        Some((
            shaping.study_key(key_name)?,
            IdentifierSet::from_sources(&patient.sources),
        ))
    } else {
        None
    };
    let today = time::OffsetDateTime::now_utc().date();
    let mut resources = Vec::with_capacity(permitted.len());
    'each: for Permitted { resource, decision } in permitted {
        let source = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        let mut body = resource;
        for obligation in &decision.obligations {
            match obligation {
                Obligation::Deidentify(_) => {
                    let Some((key, identifiers)) = &deid else {
                        continue;
                    };
                    let deidentifier = Deidentifier::new(shaping.profile(), key, today);
                    match deidentifier.deidentify_checked(
                        &body,
                        patient.patient.as_str(),
                        identifiers,
                    ) {
                        Ok(v) => body = v,
                        // Default-deny: a type the profile does not allow never leaves.
                        Err(DeidError::ResourceTypeNotInProfile { .. }) => continue 'each,
                        Err(e) => {
                            tracing::error!(code = e.code(), source = %source, "de-identified output failed its leak scan");
                            return Err(leaked());
                        }
                    }
                }
                Obligation::MinimumNecessary => minimum_necessary(&mut body),
                Obligation::AuditBreakGlass | Obligation::NotifyPatient => {}
            }
        }
        resources.push(ReleasedResource {
            source,
            body,
            decision,
        });
    }
    Ok(Released { resources })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::consent::{self, ConsentResult, DecidingProvision};
    use crate::ids::PatientId;

    fn decision(obligations: Vec<Obligation>, consent_id: &str, policy: &str) -> Decision {
        Decision {
            permit: true,
            obligations,
            consent: ConsentResult {
                decision: consent::Decision::Permit,
                deciding: vec![DecidingProvision {
                    consent_id: consent_id.into(),
                    path: "provision".into(),
                    effect: consent::Decision::Permit,
                }],
                consented_labels: Vec::new(),
            },
            policies: vec![policy.into()],
            emergency_opt_out: false,
            explanation: Vec::new(),
        }
    }

    fn patient() -> PatientContext {
        PatientContext {
            patient: PatientId::parse("p1").unwrap(),
            consents: Vec::new(),
            sources: vec![json!({"resourceType": "Patient", "id": "p1",
                "name": [{"family": "Quillfeather", "given": ["Odile"]}], "birthDate": "1970-04-02"})],
        }
    }

    fn permitted(resource: Value, obligations: Vec<Obligation>, consent_id: &str) -> Permitted {
        Permitted {
            resource,
            decision: decision(obligations, consent_id, &format!("policy-{consent_id}")),
        }
    }

    fn observation(id: &str, display: &str) -> Value {
        json!({"resourceType": "Observation", "id": id, "status": "final",
               "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": display}]},
               "text": {"status": "generated", "div": "<div>narrative</div>"}})
    }

    fn shaping() -> (tempfile::TempDir, Shaping) {
        let dir = tempfile::tempdir().unwrap();
        let shaping = Shaping::open(dir.path()).unwrap();
        (dir, shaping)
    }

    #[test]
    fn withheld_resources_are_neither_sent_nor_logged() {
        let (_dir, shaping) = shaping();
        let family = json!({"resourceType": "FamilyMemberHistory", "id": "f1", "status": "completed",
            "patient": {"reference": "Patient/p1"},
            "relationship": {"coding": [{"code": "MTH"}]}});
        let released = shape_under(
            &shaping,
            "client:c1",
            &patient(),
            vec![
                permitted(
                    observation("o1", "Heart rate"),
                    vec![Obligation::safe_harbor()],
                    "c-obs",
                ),
                permitted(family, vec![Obligation::safe_harbor()], "c-fam"),
            ],
        )
        .unwrap();
        assert_eq!(released.sources(), ["Observation/o1"]);
        assert_eq!(released.resources()[0].resource_type(), "Observation");
        let body = released.resources()[0].body();
        assert_ne!(body["id"], "o1", "de-identified: the id is a pseudonym");
        assert!(body.get("text").is_none());
        let entry = released.audit_entry(
            &Principal::Operator {
                subject: "op".into(),
            },
            AuditAction::Search,
            &PatientId::parse("p1").unwrap(),
            "req-1",
        );
        assert_eq!(entry.resources, ["Observation/o1"]);
        assert_eq!(entry.consents, ["c-obs"], "only the consents of what left");
        assert_eq!(entry.policies, ["policy-c-obs"]);
        assert_eq!(entry.detail["count"], "1");
        assert_eq!(entry.patient_id.as_deref(), Some("p1"));
    }

    #[test]
    fn minimum_necessary_keeps_ids_and_drops_narrative() {
        let (_dir, shaping) = shaping();
        let released = shape_under(
            &shaping,
            "client:c1",
            &patient(),
            vec![
                permitted(
                    observation("o1", "Heart rate"),
                    vec![Obligation::MinimumNecessary],
                    "c1",
                ),
                permitted(observation("o2", "Heart rate"), Vec::new(), "c1"),
            ],
        )
        .unwrap();
        assert_eq!(released.sources(), ["Observation/o1", "Observation/o2"]);
        let bodies = released.into_bodies();
        assert_eq!(bodies[0]["id"], "o1");
        assert!(bodies[0].get("text").is_none());
        assert!(
            bodies[1].get("text").is_some(),
            "no obligation, sent as stored"
        );
    }

    #[test]
    fn a_leak_fails_the_whole_release() {
        let (_dir, shaping) = shaping();
        let error = shape_under(
            &shaping,
            "client:c1",
            &patient(),
            vec![
                permitted(
                    observation("o1", "Heart rate"),
                    vec![Obligation::safe_harbor()],
                    "c1",
                ),
                permitted(
                    observation("o2", "Odile Quillfeather"),
                    vec![Obligation::safe_harbor()],
                    "c1",
                ),
            ],
        )
        .unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Internal, "deidentification_failed")
        );
        assert!(!error.message.contains("Quillfeather"));
    }

    #[test]
    fn keys_differ_by_client_and_study() {
        let (_dir, shaping) = shaping();
        let ids: Vec<Value> = ["client:c1", "client:c2", "group:s1"]
            .iter()
            .map(|key| {
                let released = shape_under(
                    &shaping,
                    key,
                    &patient(),
                    vec![permitted(
                        observation("o1", "Heart rate"),
                        vec![Obligation::safe_harbor()],
                        "c1",
                    )],
                )
                .unwrap();
                released.into_bodies()[0]["id"].clone()
            })
            .collect();
        assert!(
            ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2],
            "{ids:?}"
        );
    }
}
