//! What a grant would let a recipient see, before the patient confirms it: the decision
//! engine over the patient's real records, with the proposed consent added to the ones they
//! hold ("they will see 212 records; 6 mental-health records stay hidden").
//!
//! Each record is decided twice with [`crate::decision::decide`], as the recipient would be
//! decided on a read: once with the grant as proposed, and once with a copy that also
//! shares every sensitive category. A record that only the second lets through is one the
//! patient's choice keeps hidden, counted under its sensitive label; one that neither lets
//! through is outside what the grant covers. So the numbers are the engine's, policies and
//! the patient's other consents included, never a guess from the form.
//!
//! [`evidence`] is the same for a disclosure package: the records that would leave, and those
//! a filter matched that policy or the patient's other consents hold back, by the same two
//! passes [`crate::disclosure::create`] makes, without storing or signing anything.
//!
//! A preview shows the patient facts about their own records, so it is audited like a
//! decision question (one `decision` entry naming the recipient; the evidence preview also
//! lists the records it names).

use std::collections::BTreeMap;

use serde_json::Value;

use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::clients::Client;
use crate::auth::{Principal, registry};
use crate::consent::grant::Grant;
use crate::consent::model::SENSITIVE_LABELS;
use crate::consent::{Coding, Consent};
use crate::decision::{self, Decision, Question, Requester, Subject};
use crate::disclosure::package::{self, Terms};
use crate::disclosure::request::{self, NewDisclosure};
use crate::disclosure::selection;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::policy::{Obligation, PolicyAction};
use crate::records::{consents, internal};
use crate::store::resources;

/// What a proposed grant would let its recipient see.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Preview {
    /// The patient's records, gateway-internal ones (consents, audit events) left out.
    pub total: usize,
    /// How many the recipient would see, by resource type.
    pub visible: BTreeMap<String, usize>,
    /// Records the grant would cover but that stay hidden because of a sensitive label the
    /// patient did not share, by label code (each record under its first such label, in the
    /// order of [`SENSITIVE_LABELS`]).
    pub hidden_sensitive: BTreeMap<String, usize>,
    /// Records outside what the grant covers (other types, dates, or held back by policy).
    pub not_covered: usize,
    /// Whether what leaves is de-identified first (a researcher without identified consent).
    pub deidentified: bool,
    /// Whether only the minimum necessary leaves (an insurer).
    pub minimum_necessary: bool,
}

impl Preview {
    /// How many records the recipient would see in all.
    pub fn visible_count(&self) -> usize {
        self.visible.values().sum()
    }

    /// How many stay hidden for their sensitive labels in all.
    pub fn hidden_count(&self) -> usize {
        self.hidden_sensitive.values().sum()
    }
}

/// The first sensitive label (in the order of [`SENSITIVE_LABELS`]) a resource carries.
pub fn sensitive_label(resource: &Value) -> Option<String> {
    let labels = decision::resource_facts(resource).security_labels;
    SENSITIVE_LABELS
        .iter()
        .find(|(system, code)| labels.iter().any(|l| l.is(system, code)))
        .map(|(_, code)| code.to_string())
}

/// Counts the preview from each record's decision under the grant as proposed (`as_asked`)
/// and under the same grant sharing every sensitive category (`all_shared`).
pub fn summarize(records: &[Value], as_asked: &[Decision], all_shared: &[Decision]) -> Preview {
    let mut preview = Preview::default();
    for ((record, asked), shared) in records.iter().zip(as_asked).zip(all_shared) {
        preview.total += 1;
        if asked.permit {
            let ty = record["resourceType"].as_str().unwrap_or_default();
            *preview.visible.entry(ty.to_string()).or_insert(0) += 1;
            for obligation in &asked.obligations {
                match obligation {
                    Obligation::Deidentify(_) => preview.deidentified = true,
                    Obligation::MinimumNecessary => preview.minimum_necessary = true,
                    Obligation::AuditBreakGlass | Obligation::NotifyPatient => {}
                }
            }
        } else if let (true, Some(label)) = (shared.permit, sensitive_label(record)) {
            *preview.hidden_sensitive.entry(label).or_insert(0) += 1;
        } else {
            preview.not_covered += 1;
        }
    }
    preview
}

/// The grant with every sensitive category shared as well.
fn sharing_everything(grant: &Grant) -> Grant {
    Grant {
        shared_labels: SENSITIVE_LABELS
            .iter()
            .map(|(system, code)| Coding::new(*system, *code))
            .collect(),
        ..grant.clone()
    }
}

fn parsed(grant: &Grant) -> Result<Consent, DomainError> {
    Consent::from_fhir(&grant.to_fhir()).map_err(|defects| {
        let codes: Vec<&str> = defects.defects.iter().map(|d| d.kind.code()).collect();
        DomainError::unprocessable(
            "invalid_share",
            format!(
                "the choices do not make a valid consent: {}",
                codes.join(", ")
            ),
        )
    })
}

fn not_yours() -> DomainError {
    DomainError::forbidden("forbidden", "a patient previews only their own sharing")
}

/// The recipient client of a grant (`Device/{client_id}`), registered and active.
async fn recipient_of(gateway: &Gateway, grant: &Grant) -> Result<Client, DomainError> {
    let id = grant
        .recipient
        .strip_prefix("Device/")
        .ok_or_else(|| DomainError::invalid("unknown_recipient", "pick a recipient from the list"))?
        .to_string();
    gateway
        .store
        .run(move |conn| registry::active(conn, &id))
        .await?
        .ok_or_else(|| {
            DomainError::unprocessable("unknown_recipient", "pick a recipient from the list")
        })
}

/// The patient's records and consents, gateway-internal records left out.
async fn records_and_consents(
    gateway: &Gateway,
    patient: &str,
) -> Result<(Vec<Value>, Vec<Consent>), DomainError> {
    let patient = patient.to_string();
    gateway
        .store
        .run(move |conn| {
            let rows = resources::current_for_patient(conn, &patient)?;
            let records = rows
                .into_iter()
                .filter_map(|(_, _, body)| serde_json::from_str::<Value>(&body).ok())
                .filter(|r| !internal::is_gateway_internal(r))
                .collect();
            Ok::<_, DomainError>((records, consents::for_patient(conn, &patient)?))
        })
        .await
}

/// Previews `grant` for `by` (the patient, or an operator acting for them); audited.
pub async fn share(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    grant: &Grant,
) -> Result<Preview, DomainError> {
    if by.own_patient().is_some_and(|own| own != grant.patient)
        || matches!(by, Principal::Client(_))
    {
        return Err(not_yours());
    }
    let proposed = parsed(grant)?;
    let widest = parsed(&sharing_everything(grant))?;
    let client = recipient_of(gateway, grant).await?;
    let (records, held) = records_and_consents(gateway, &grant.patient).await?;
    let requester = Requester::of(&client);
    let now = now_micros();
    let decide_with = |extra: &Consent| -> Vec<Decision> {
        let mut all = held.clone();
        all.push(extra.clone());
        records
            .iter()
            .map(|resource| {
                decision::decide(
                    &gateway.institution.policies,
                    gateway.purposes,
                    &all,
                    &Question {
                        requester: &requester,
                        purpose: &grant.purpose,
                        action: PolicyAction::Read,
                        patient_id: &grant.patient,
                        resource: Subject::Body(resource),
                        break_glass: None,
                        now,
                        explain: false,
                    },
                )
            })
            .collect()
    };
    let preview = summarize(&records, &decide_with(&proposed), &decide_with(&widest));
    let mut entry = by.audit_entry(
        AuditAction::Decision,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(grant.patient.clone());
    entry.detail.insert("view".into(), "share_preview".into());
    entry
        .detail
        .insert("asked_for_client".into(), client.id.clone());
    entry
        .detail
        .insert("visible".into(), preview.visible_count().to_string());
    gateway.record(entry).await?;
    Ok(preview)
}

/// One record as a person recognises it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    /// `Type/id`.
    pub reference: String,
    /// The resource type.
    pub resource_type: String,
    /// What it is: the code's text or display, or the type.
    pub title: String,
    /// Its clinical date as recorded, if any.
    pub date: Option<String>,
}

/// A record's type, title and date, from the elements most resources have.
pub fn describe(resource: &Value) -> RecordLine {
    let ty = resource["resourceType"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let id = resource["id"].as_str().unwrap_or_default();
    let concept = ["code", "vaccineCode", "medicationCodeableConcept", "type"]
        .iter()
        .map(|e| &resource[*e])
        .find(|c| c.is_object());
    let title = concept
        .and_then(|c| {
            c["text"].as_str().or_else(|| {
                c["coding"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find_map(|coding| coding["display"].as_str())
            })
        })
        .map(str::to_string)
        .unwrap_or_else(|| ty.clone());
    let date = [
        "effectiveDateTime",
        "onsetDateTime",
        "recordedDate",
        "performedDateTime",
        "occurrenceDateTime",
        "authoredOn",
        "issued",
        "date",
    ]
    .iter()
    .find_map(|e| resource[*e].as_str())
    .or_else(|| resource.pointer("/period/start").and_then(Value::as_str))
    .or_else(|| {
        resource
            .pointer("/performedPeriod/start")
            .and_then(Value::as_str)
    })
    .map(|d| d.chars().take(10).collect());
    RecordLine {
        reference: format!("{ty}/{id}"),
        resource_type: ty,
        title,
        date,
    }
}

/// What a disclosure package would hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvidencePreview {
    /// The records that would leave, as the patient recognises them.
    pub leaving: Vec<RecordLine>,
    /// `Type/id` of the filter's matches that would be held back.
    pub withheld: Vec<String>,
}

/// Previews the package `ask` describes for `patient`, as [`crate::disclosure::create`]
/// would build it (check, select, decide with the new consent, decide again with the consent
/// naming exactly what goes), storing nothing; audited.
pub async fn evidence(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    patient: &PatientId,
    ask: NewDisclosure,
) -> Result<EvidencePreview, DomainError> {
    if by.own_patient().is_some_and(|own| own != patient.as_str())
        || matches!(by, Principal::Client(_))
    {
        return Err(not_yours());
    }
    let now = now_micros();
    let ask = request::check(ask, now)?;
    let (recipient, chosen, p) = (ask.recipient.clone(), ask.chosen, patient.clone());
    let (client, candidates, existing) = gateway
        .store
        .run(move |conn| {
            let client = registry::active(conn, recipient.as_str())?
                .ok_or_else(request::unknown_recipient)?;
            let candidates = selection::candidates(conn, chosen, &p)?;
            Ok::<_, DomainError>((client, candidates, consents::for_patient(conn, p.as_str())?))
        })
        .await?;
    request::check_recipient(
        &client,
        &ask.purpose,
        gateway.purposes,
        &gateway.settings.roles,
    )?;
    let requester = Requester::of(&client);
    let terms = Terms {
        consent_id: "preview".into(),
        patient: patient.clone(),
        recipient: ask.recipient.clone(),
        purpose: ask.purpose.clone(),
        policy: ask.policy.clone(),
        start: now,
        expires: ask.expires_text.clone(),
    };
    let decide = |resources: &[Value]| -> Result<Vec<Decision>, DomainError> {
        let all = package::with_consent(&existing, &terms.grant(resources).to_fhir())?;
        Ok(package::decide_all(
            gateway,
            &requester,
            &all,
            patient,
            &ask.purpose,
            resources,
        ))
    };
    let first = decide(&candidates)?;
    let (mut chosen, mut withheld) = (Vec::new(), Vec::new());
    for (resource, d) in candidates.into_iter().zip(&first) {
        if package::releasable(d) {
            chosen.push(resource);
        } else {
            withheld.push(describe(&resource).reference);
        }
    }
    // The second pass, as creation makes it: what the consent naming exactly these lets go.
    let second = decide(&chosen)?;
    let leaving: Vec<RecordLine> = chosen
        .iter()
        .zip(&second)
        .filter(|(_, d)| package::releasable(d))
        .map(|(r, _)| describe(r))
        .collect();
    let mut entry = by.audit_entry(
        AuditAction::Decision,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(patient.to_string());
    entry
        .detail
        .insert("view".into(), "evidence_preview".into());
    entry
        .detail
        .insert("asked_for_client".into(), client.id.clone());
    entry.resources = leaving.iter().map(|l| l.reference.clone()).collect();
    gateway.record(entry).await?;
    Ok(EvidencePreview { leaving, withheld })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::ACT_CODE_SYSTEM;
    use crate::consent::{ConsentResult, Decision as ConsentDecision};
    use serde_json::json;

    fn record(ty: &str, id: &str, label: Option<&str>) -> Value {
        let mut r = json!({"resourceType": ty, "id": id});
        if let Some(code) = label {
            r["meta"] = json!({"security": [{"system": ACT_CODE_SYSTEM, "code": code}]});
        }
        r
    }

    fn decided(permit: bool, obligations: Vec<Obligation>) -> Decision {
        Decision {
            permit,
            obligations,
            consent: ConsentResult {
                decision: ConsentDecision::NotApplicable,
                deciding: Vec::new(),
                consented_labels: Vec::new(),
            },
            policies: Vec::new(),
            emergency_opt_out: false,
            explanation: Vec::new(),
        }
    }

    #[test]
    fn visible_hidden_and_not_covered_are_told_apart() {
        let records = [
            record("Observation", "o1", None),
            record("Observation", "o2", None),
            record("Condition", "c1", Some("PSY")),
            record("Condition", "c2", Some("PSY")),
            record("Condition", "c3", Some("HIV")),
            record("Procedure", "p1", None),
            record("Procedure", "p2", Some("ETH")),
        ];
        let yes = || decided(true, vec![]);
        let no = || decided(false, vec![]);
        let as_asked = [yes(), yes(), no(), no(), no(), no(), no()];
        // Sharing every category would let the labelled Conditions through, not the
        // Procedures (outside the grant's types).
        let all_shared = [yes(), yes(), yes(), yes(), yes(), no(), no()];
        let preview = summarize(&records, &as_asked, &all_shared);
        assert_eq!(preview.total, 7);
        assert_eq!(preview.visible_count(), 2);
        assert_eq!(preview.visible.get("Observation"), Some(&2));
        assert_eq!(
            preview.hidden_sensitive,
            BTreeMap::from([("HIV".to_string(), 1), ("PSY".to_string(), 2)])
        );
        assert_eq!(preview.hidden_count(), 3);
        assert_eq!(preview.not_covered, 2, "outside the grant, labelled or not");
        assert!(!preview.deidentified && !preview.minimum_necessary);
    }

    #[test]
    fn obligations_of_what_leaves_are_reported() {
        let records = [
            record("Observation", "o1", None),
            record("Observation", "o2", None),
        ];
        let as_asked = [
            decided(true, vec![Obligation::safe_harbor()]),
            decided(false, vec![Obligation::MinimumNecessary]),
        ];
        let preview = summarize(&records, &as_asked, &as_asked);
        assert!(preview.deidentified);
        assert!(
            !preview.minimum_necessary,
            "only obligations of permitted records count"
        );
    }

    #[test]
    fn a_record_counts_under_its_first_sensitive_label() {
        let mut r = record("Condition", "c", None);
        r["meta"] = json!({"security": [
            {"system": ACT_CODE_SYSTEM, "code": "HIV"},
            {"system": ACT_CODE_SYSTEM, "code": "PSY"},
            {"system": "other", "code": "ETH"}]});
        assert_eq!(sensitive_label(&r).as_deref(), Some("PSY"));
        assert_eq!(
            sensitive_label(&record("Condition", "d", Some("OTHER"))),
            None
        );
    }

    #[test]
    fn the_widest_grant_shares_every_sensitive_category_and_stays_valid() {
        let grant = Grant {
            id: "g".into(),
            patient: "p1".into(),
            recipient: "Device/c1".into(),
            purpose: "TREAT".into(),
            action: None,
            classes: vec!["Condition".into()],
            instances: Vec::new(),
            data_period: (None, None),
            shared_labels: Vec::new(),
            start: 0,
            end: Some("2027-03-01".into()),
            basis: crate::consent::grant::Basis::OptIn,
            identifier: None,
        };
        let widest = sharing_everything(&grant);
        assert_eq!(widest.shared_labels.len(), SENSITIVE_LABELS.len());
        assert!(parsed(&widest).is_ok() && parsed(&grant).is_ok());
    }

    #[test]
    fn records_are_described_by_code_and_date() {
        let obs = json!({"resourceType": "Observation", "id": "o1",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "effectiveDateTime": "2024-05-06T10:00:00Z"});
        let line = describe(&obs);
        assert_eq!(line.reference, "Observation/o1");
        assert_eq!(line.title, "Heart rate");
        assert_eq!(line.date.as_deref(), Some("2024-05-06"));
        let cond = json!({"resourceType": "Condition", "id": "c", "code": {"text": "Asthma"},
            "onsetDateTime": "2019"});
        assert_eq!(describe(&cond).title, "Asthma");
        assert_eq!(describe(&cond).date.as_deref(), Some("2019"));
        let bare = json!({"resourceType": "Patient", "id": "p"});
        assert_eq!(describe(&bare).title, "Patient");
        assert_eq!(describe(&bare).date, None);
    }
}
