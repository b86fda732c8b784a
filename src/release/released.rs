//! Shaping by obligation, and what left.
//!
//! [`shape`] applies the obligations of each permitted resource (de-identification under
//! the client's or study's key, minimum necessary) and returns a [`Released`]: the shaped
//! resources, each carrying the `Type/id` of the stored resource it came from and the
//! decision that let it go. A resource that shaping withholds (a type the de-identification
//! profile does not list) is simply not in it. [`Released`] has no other constructor, and
//! the audit entry of a release is built from it alone ([`Released::audit_entry`]), so the
//! patient's access log can only list what actually left.
//!
//! A de-identified output that fails its leak scan is handled two ways. A recipient's read
//! ([`shape`]) fails closed: nothing of the response is sent, as a client asking for one
//! patient's records should not get a silently thinned answer. A study export
//! ([`shape_for_study`]) withholds that resource alone and says so in
//! [`Released::withheld`] (its pseudonymous reference, the element path and the kind of
//! value, never the value), so one bad record never sinks a study and never passes silently.
//! Failures that are not about one resource (the key, the profile) fail both.

use serde_json::Value;

use super::context::{PatientContext, Recipient};
use super::decide::{Body, Permitted};
use super::minimum::minimum_necessary;
use super::shaping::Shaping;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::decision::Decision;
use crate::deid::{DeidError, Deidentifier, IdentifierSet, LeakKind};
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::policy::Obligation;
use crate::records::validate;

/// One resource as it leaves: the shaped body and where it came from.
#[derive(Debug, Clone)]
pub struct ReleasedResource {
    source: String,
    /// As it leaves. A parsed body keeps the stored text it was parsed from only while
    /// nothing has changed it (no obligation shaped it, no dispute mark): then the text is
    /// its JSON, sent without a second serialisation ([`Payload::Stored`]); a body decided
    /// on its stored facts and changed by nothing is that text alone, never parsed.
    body: Body,
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

    /// The body as sent, when it was parsed: `None` for one that leaves as its stored text,
    /// never parsed (decided on its stored facts, changed by nothing).
    pub fn body(&self) -> Option<&Value> {
        match &self.body {
            Body::Parsed { value, .. } => Some(value),
            Body::Stored { .. } => None,
        }
    }

    /// The body's JSON text as sent.
    pub fn to_json(&self) -> Vec<u8> {
        match &self.body {
            Body::Parsed {
                text: Some(text), ..
            }
            | Body::Stored { text, .. } => text.clone().into_bytes(),
            // A `Value` always serialises (its keys are strings).
            Body::Parsed { value, text: None } => serde_json::to_vec(value).unwrap_or_default(),
        }
    }

    /// The decision that let it go.
    pub fn decision(&self) -> &Decision {
        &self.decision
    }
}

/// Why a study export withheld a resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum WithheldReason {
    /// The de-identified output still held a value of this kind from the patient's records.
    Leak(LeakKind),
    /// It carries a modifier extension the profile does not list: dropping it would change
    /// the meaning of what is left.
    ModifierExtension,
    /// An anonymizer rule's method cannot apply to the element it selected.
    MethodNotApplicable,
    /// Its patient's Patient resource was withheld, so none of the patient's records leave.
    PatientWithheld,
}

impl WithheldReason {
    /// A stable snake_case code (the metric label, the OperationOutcome's code).
    pub fn code(self) -> &'static str {
        match self {
            WithheldReason::Leak(kind) => kind.code(),
            WithheldReason::ModifierExtension => "modifier_extension",
            WithheldReason::MethodNotApplicable => "method_not_applicable",
            WithheldReason::PatientWithheld => "patient_withheld",
        }
    }
}

/// A resource shaping withheld from a study: which (by its pseudonym in the study), where and
/// why, never the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Withheld {
    /// `Type/pseudonym` of the resource in the study.
    pub reference: String,
    /// The element at fault, as a path (empty when the whole resource is at fault).
    pub path: String,
    /// Why.
    pub reason: WithheldReason,
}

/// What leaves for one patient in one response, in order, and what a study export withheld;
/// built only by [`shape`] and [`shape_for_study`].
#[derive(Debug, Clone, Default)]
pub struct Released {
    resources: Vec<ReleasedResource>,
    withheld: Vec<Withheld>,
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

    /// What a study export withheld (always empty for a recipient's read, which fails
    /// instead).
    pub fn withheld(&self) -> &[Withheld] {
        &self.withheld
    }

    /// The resources and what was withheld, taken apart.
    pub fn into_parts(self) -> (Vec<ReleasedResource>, Vec<Withheld>) {
        (self.resources, self.withheld)
    }

    /// The bodies as sent, in order.
    pub fn into_bodies(self) -> Vec<Value> {
        self.resources
            .into_iter()
            .filter_map(|r| r.body.into_parsed().map(|(value, _)| value))
            .collect()
    }

    /// The bodies as sent, in order, each as its stored text when nothing changed it.
    pub fn into_payloads(self) -> Vec<Payload> {
        self.resources
            .into_iter()
            .map(|r| match r.body {
                Body::Parsed {
                    value,
                    text: Some(text),
                } => Payload::Stored {
                    reference: reference_of(&value),
                    text,
                },
                Body::Parsed { value, text: None } => Payload::Shaped(value),
                Body::Stored { reference, text } => Payload::Stored { reference, text },
            })
            .collect()
    }

    /// Marks the records the patient disputes (`amendment::dispute`), except de-identified
    /// ones: the statement would re-identify them. A marked body is no longer its stored text.
    /// A record left unparsed (`decide_stored`) is parsed to be marked; one whose stored
    /// text does not parse cannot be marked, and does not leave unmarked.
    pub fn mark_disputed(&mut self, disputed: &std::collections::BTreeMap<String, String>) {
        self.resources.retain_mut(|r| {
            if r.decision.obligations.iter().any(Obligation::deidentifies)
                || !disputed.contains_key(&r.source)
            {
                return true;
            }
            let body = std::mem::replace(
                &mut r.body,
                Body::Parsed {
                    value: Value::Null,
                    text: None,
                },
            );
            let Some((mut value, _)) = body.into_parsed() else {
                return false;
            };
            crate::amendment::dispute::mark(&mut value, &r.source, disputed);
            r.body = Body::Parsed { value, text: None };
            true
        });
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

/// A released body as it is sent.
#[derive(Debug, Clone, PartialEq)]
pub enum Payload {
    /// The stored JSON text of a resource nothing shaped or marked. Parsing it gave exactly
    /// the body that was decided, and a stored body is the gateway's own serialisation of a
    /// parsed resource (`records::ingest::put_as`), so the text is the body's JSON and is
    /// sent as it is: a second serialisation was a tenth of a search page's CPU
    /// (`docs/PERFORMANCE.md`, thirteenth step).
    Stored {
        /// `Type/id` as the body names them.
        reference: String,
        /// The JSON text.
        text: String,
    },
    /// A body shaping or a dispute mark changed, or one read without its text.
    Shaped(Value),
}

impl Payload {
    /// `Type/id` as the body names them (a searchset entry's `fullUrl`).
    pub fn reference(&self) -> String {
        match self {
            Payload::Stored { reference, .. } => reference.clone(),
            Payload::Shaped(body) => reference_of(body),
        }
    }

    /// Appends the body's JSON text to `out`.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        match self {
            Payload::Stored { text, .. } => out.extend_from_slice(text.as_bytes()),
            // A `Value` always serialises (its keys are strings).
            Payload::Shaped(body) => {
                let _ = serde_json::to_writer(&mut *out, body);
            }
        }
    }

    /// The body's JSON text.
    pub fn into_json(self) -> Vec<u8> {
        match self {
            Payload::Stored { text, .. } => text.into_bytes(),
            // A `Value` always serialises (its keys are strings).
            Payload::Shaped(body) => serde_json::to_vec(&body).unwrap_or_default(),
        }
    }
}

/// `Type/id` as `body` names them.
fn reference_of(body: &Value) -> String {
    format!(
        "{}/{}",
        body["resourceType"].as_str().unwrap_or_default(),
        body["id"].as_str().unwrap_or_default()
    )
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
    shape_under(
        &gateway.shaping,
        &key_name,
        patient,
        permitted,
        OnLeak::Fail,
    )
}

/// As [`shape`], de-identifying under the key of study Group `study` (a Bulk Data export):
/// pseudonyms stable within the study, unlinkable across studies and clients. A resource whose
/// output fails the leak scan is withheld and listed in [`Released::withheld`]; a failure of
/// the key or the profile fails the call.
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
        OnLeak::Withhold,
    )
}

/// What a resource that fails its leak scan does to the release.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnLeak {
    /// Nothing is sent.
    Fail,
    /// That resource is withheld and reported.
    Withhold,
}

/// What a de-identification failure withholds: the one resource it is about (as
/// [`DeidError::location`] names it); `None` when the failure is not about one resource (the
/// key, the profile), which stops the whole release.
fn withheld_by(e: &DeidError) -> Option<Withheld> {
    let at = e.location()?;
    let reason = match e {
        DeidError::Leak { kind, .. } => WithheldReason::Leak(*kind),
        DeidError::ModifierExtensionNotAllowed { .. } => WithheldReason::ModifierExtension,
        DeidError::MethodNotApplicable { .. } => WithheldReason::MethodNotApplicable,
        DeidError::NotAResource
        | DeidError::ResourceTypeNotInProfile { .. }
        | DeidError::ProfileUnreadable { .. }
        | DeidError::ProfileInvalid { .. }
        | DeidError::KeyTooShort { .. }
        | DeidError::AnonymizerConfig { .. }
        | DeidError::Randomness => return None,
    };
    Some(Withheld {
        reference: at.reference.to_string(),
        path: at.path.to_string(),
        reason,
    })
}

/// Nothing was sent because a de-identified output still held an identifier.
fn leaked() -> DomainError {
    DomainError::new(
        ErrorKind::Internal,
        "deidentification_failed",
        "the de-identified output failed its identifier scan; nothing was sent",
    )
}

/// Whether `obligation` changes the body that leaves.
fn changes_the_body(obligation: &Obligation) -> bool {
    match obligation {
        Obligation::Deidentify(_) | Obligation::MinimumNecessary => true,
        Obligation::AuditBreakGlass | Obligation::NotifyPatient => false,
    }
}

fn shape_under(
    shaping: &Shaping,
    key_name: &str,
    patient: &PatientContext,
    permitted: Vec<Permitted>,
    on_leak: OnLeak,
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
    let mut withheld = Vec::new();
    'each: for Permitted { body, decision } in permitted {
        // A body left unparsed (`decide_stored`) is parsed only if an obligation changes it;
        // otherwise it leaves as its stored text.
        if let Body::Stored { reference, .. } = &body
            && !decision.obligations.iter().any(changes_the_body)
        {
            resources.push(ReleasedResource {
                source: reference.clone(),
                body,
                decision,
            });
            continue;
        }
        let Some((resource, stored)) = body.into_parsed() else {
            return Err(DomainError::internal("a stored body to shape is not JSON"));
        };
        let source = reference_of(&resource);
        let mut body = resource;
        // Whether an obligation changed the body, so that the stored text is not it any more.
        let mut changed = false;
        for obligation in &decision.obligations {
            match obligation {
                Obligation::Deidentify(_) => {
                    let Some((key, identifiers)) = &deid else {
                        continue;
                    };
                    changed = true;
                    let deidentifier = Deidentifier::new(shaping.profile(), key, today);
                    match deidentifier.deidentify_checked_owned(
                        std::mem::take(&mut body),
                        patient.patient.as_str(),
                        identifiers,
                    ) {
                        Ok(v) => body = v,
                        // Default-deny: a type the profile does not allow never leaves.
                        Err(DeidError::ResourceTypeNotInProfile { .. }) => continue 'each,
                        Err(e) => match (on_leak, withheld_by(&e)) {
                            (OnLeak::Withhold, Some(w)) => {
                                withheld.push(w);
                                continue 'each;
                            }
                            (OnLeak::Fail, _) => {
                                tracing::error!(code = e.code(), source = %source, "de-identified output failed its leak scan");
                                return Err(leaked());
                            }
                            // The key or the profile: nothing can be shaped.
                            (OnLeak::Withhold, None) => return Err(e.into()),
                        },
                    }
                }
                Obligation::MinimumNecessary => {
                    changed = true;
                    minimum_necessary(&mut body);
                }
                Obligation::AuditBreakGlass | Obligation::NotifyPatient => {}
            }
        }
        resources.push(ReleasedResource {
            source,
            body: Body::Parsed {
                value: body,
                text: stored.filter(|_| !changed),
            },
            decision,
        });
    }
    Ok(Released {
        resources,
        withheld,
    })
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
            consents: Vec::new().into(),
            sources: vec![json!({"resourceType": "Patient", "id": "p1",
                "name": [{"family": "Quillfeather", "given": ["Odile"]}], "birthDate": "1970-04-02"})]
            .into(),
            disputed: Default::default(),
        }
    }

    fn permitted(resource: Value, obligations: Vec<Obligation>, consent_id: &str) -> Permitted {
        Permitted {
            body: Body::Parsed {
                value: resource,
                text: None,
            },
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
            OnLeak::Fail,
        )
        .unwrap();
        assert_eq!(released.sources(), ["Observation/o1"]);
        assert_eq!(released.resources()[0].resource_type(), "Observation");
        let body = released.resources()[0].body().expect("parsed");
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
            OnLeak::Fail,
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
            OnLeak::Fail,
        )
        .unwrap_err();
        assert_eq!(
            (error.kind, error.code),
            (ErrorKind::Internal, "deidentification_failed")
        );
        assert!(!error.message.contains("Quillfeather"));
    }

    #[test]
    fn a_study_withholds_the_leaking_resource_alone() {
        let (_dir, shaping) = shaping();
        let released = shape_under(
            &shaping,
            "group:s1",
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
            OnLeak::Withhold,
        )
        .unwrap();
        assert_eq!(released.sources(), ["Observation/o1"]);
        let withheld = released.withheld();
        assert_eq!(withheld.len(), 1, "{withheld:?}");
        let key = shaping.study_key("group:s1").unwrap();
        assert_eq!(
            withheld[0].reference,
            format!("Observation/{}", key.pseudonym("Observation", "o2"))
        );
        assert_eq!(withheld[0].reason, WithheldReason::Leak(LeakKind::Name));
        assert!(withheld[0].path.contains("display"), "{withheld:?}");
        assert!(!format!("{withheld:?}").contains("Quillfeather"));
        let entry = released.audit_entry(
            &Principal::Operator {
                subject: "op".into(),
            },
            AuditAction::Export,
            &PatientId::parse("p1").unwrap(),
            "req-1",
        );
        assert_eq!(entry.resources, ["Observation/o1"], "only what left");
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
                    OnLeak::Fail,
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

    /// A body's stored text goes out as it is only while nothing changed the body; whatever
    /// goes out parses to exactly the body released, under every obligation and a dispute.
    #[test]
    fn stored_text_leaves_only_for_an_unchanged_body() {
        let (_dir, shaping) = shaping();
        let stored = |id: &str, obligations: Vec<Obligation>| {
            let body = observation(id, "Heart rate");
            Permitted {
                body: Body::Parsed {
                    text: Some(body.to_string()),
                    value: body,
                },
                ..permitted(Value::Null, obligations, "c1")
            }
        };
        let mut released = shape_under(
            &shaping,
            "client:c1",
            &patient(),
            vec![
                stored("plain", Vec::new()),
                stored(
                    "flagged",
                    vec![Obligation::AuditBreakGlass, Obligation::NotifyPatient],
                ),
                stored("minimum", vec![Obligation::MinimumNecessary]),
                stored("deid", vec![Obligation::safe_harbor()]),
                stored("disputed", Vec::new()),
                permitted(observation("unread", "Heart rate"), Vec::new(), "c1"),
            ],
            OnLeak::Fail,
        )
        .unwrap();
        let disputed = [("Observation/disputed".to_string(), "stmt-1".to_string())].into();
        released.mark_disputed(&disputed);
        let bodies: Vec<Value> = released
            .resources()
            .iter()
            .map(|r| r.body().expect("parsed").clone())
            .collect();
        let payloads = released.into_payloads();
        let kinds: Vec<&str> = payloads
            .iter()
            .map(|p| match p {
                Payload::Stored { .. } => "stored",
                Payload::Shaped(_) => "shaped",
            })
            .collect();
        assert_eq!(
            kinds,
            ["stored", "stored", "shaped", "shaped", "shaped", "shaped"]
        );
        for (payload, body) in payloads.into_iter().zip(&bodies) {
            assert_eq!(payload.reference(), super::reference_of(body));
            let sent: Value = serde_json::from_slice(&payload.into_json()).unwrap();
            assert_eq!(&sent, body);
        }
        assert!(bodies[2].get("text").is_none(), "minimum necessary applied");
        assert_ne!(bodies[3]["id"], "deid", "de-identified");
        assert_eq!(
            bodies[4]["meta"]["tag"][0]["code"],
            crate::amendment::dispute::DISPUTED_CODE
        );
    }

    /// A body decided on its stored facts and left unparsed goes out as its text when
    /// nothing changes it, and is parsed, shaped and marked like any other when something
    /// does: the same bodies as from its parse.
    #[test]
    fn an_unparsed_body_is_parsed_only_to_be_changed() {
        let (_dir, shaping) = shaping();
        let obligations = |id: &str| match id {
            "minimum" => vec![Obligation::MinimumNecessary],
            "flagged" => vec![Obligation::NotifyPatient],
            _ => Vec::new(),
        };
        let ids = ["plain", "flagged", "minimum", "disputed"];
        let released_from = |unparsed: bool| {
            let permitted = ids
                .iter()
                .map(|id| {
                    let body = observation(id, "Heart rate");
                    Permitted {
                        body: if unparsed {
                            Body::Stored {
                                reference: format!("Observation/{id}"),
                                text: body.to_string(),
                            }
                        } else {
                            Body::Parsed {
                                text: Some(body.to_string()),
                                value: body,
                            }
                        },
                        ..permitted(Value::Null, obligations(id), "c1")
                    }
                })
                .collect();
            let mut released =
                shape_under(&shaping, "client:c1", &patient(), permitted, OnLeak::Fail).unwrap();
            let disputed = [("Observation/disputed".to_string(), "stmt-1".to_string())].into();
            released.mark_disputed(&disputed);
            released.into_payloads()
        };
        let unparsed = released_from(true);
        let kinds: Vec<bool> = unparsed
            .iter()
            .map(|p| matches!(p, Payload::Stored { .. }))
            .collect();
        assert_eq!(
            kinds,
            [true, true, false, false],
            "stored text while unchanged"
        );
        let sent = |payloads: Vec<Payload>| -> Vec<(String, Value)> {
            payloads
                .into_iter()
                .map(|p| {
                    (
                        p.reference(),
                        serde_json::from_slice(&p.into_json()).unwrap(),
                    )
                })
                .collect()
        };
        assert_eq!(sent(unparsed), sent(released_from(false)));
    }
}
