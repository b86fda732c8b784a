//! "What would the gateway decide?": one client, purpose, patient and resource (stored, or the
//! attributes of one not yet stored), through the same [`crate::decision::decide`] every read
//! runs, audited like any other decision.
//!
//! Who may ask: an operator (any client, any patient), a patient (about their own records),
//! or a client about itself, for a purpose its role and registration allow. A client learns
//! only the answer: a hidden, a foreign and a missing record answer alike, and nothing names
//! the consents, labels or policies it cannot read. Patients and operators get the whole
//! [`Decision`] (and a 404 for a record that is not there).

use serde_json::Value;

use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::{Principal, registry};
use crate::decision::{self, Decision, Question, Requester, Subject};
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::{ClientId, PatientId};
use crate::policy::{Obligation, PolicyAction};
use crate::records::validate::{self, is_resource_type};
use crate::records::{RecordError, consents, index, ingest};

/// What is asked about.
#[derive(Debug, Clone)]
pub enum Asked {
    /// A stored resource, `Type/id`.
    Stored {
        /// Its type.
        resource_type: String,
        /// Its id.
        id: String,
    },
    /// A resource that need not be stored: it gets the labels ingest would give it.
    Attributes(Value),
}

/// The question.
#[derive(Debug, Clone)]
pub struct DecisionQuestion {
    /// The client the decision is for.
    pub client_id: ClientId,
    /// The purpose of use (v3 ActReason code).
    pub purpose: String,
    /// The patient.
    pub patient: PatientId,
    /// Read, export or disclose.
    pub action: PolicyAction,
    /// What is asked about.
    pub resource: Asked,
    /// A break-glass justification, to ask about emergency access.
    pub justification: Option<String>,
}

/// The answer, as much of it as the asker may see.
#[derive(Debug, Clone)]
pub enum Answer {
    /// For the patient and operators: the whole decision.
    Full(Decision),
    /// For a client asking about itself: whether it may, and the obligations if so.
    ForClient {
        /// Whether the resource would leave.
        permit: bool,
        /// What would be done to it.
        obligations: Vec<Obligation>,
    },
}

/// Decides `question` for `by`, audited under the patient.
pub async fn ask(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    question: DecisionQuestion,
) -> Result<Answer, DomainError> {
    let client_view = match by {
        Principal::Operator { .. } => false,
        Principal::Patient { patient_id, .. } if question.patient == *patient_id.as_str() => false,
        Principal::Delegate(d) if question.patient == *d.patient_id.as_str() => {
            by.may(crate::delegation::Action::ManageConsents)?;
            false
        }
        Principal::Client(c) if question.client_id == *c.client_id.as_str() => true,
        _ => {
            return Err(DomainError::forbidden(
                "forbidden",
                "this caller may not ask about this client or patient",
            ));
        }
    };
    if !gateway.purposes.is_known(&question.purpose) {
        return Err(DomainError::invalid(
            "invalid_purpose",
            "purpose must be a v3 ActReason code",
        ));
    }
    let (client_id, patient, asked) = (
        question.client_id.clone(),
        question.patient.clone(),
        question.resource.clone(),
    );
    let (client, held, resource) = gateway
        .store
        .run(move |conn| {
            let client = registry::active(conn, client_id.as_str())?
                .ok_or_else(|| DomainError::not_found("unknown_client", "no such client"))?;
            let held = consents::for_patient(conn, patient.as_str())?;
            let resource = match asked {
                Asked::Stored { resource_type, id } => {
                    validate::resource_type(&resource_type)?;
                    match ingest::read(conn, &resource_type, &id) {
                        Ok(body)
                            if index::patient_of(&resource_type, &id, &body).as_deref()
                                == Some(patient.as_str()) =>
                        {
                            Some(body)
                        }
                        Ok(_) | Err(RecordError::NotFound { .. }) if client_view => None,
                        Ok(_) => {
                            return Err(DomainError::not_found(
                                "not_found",
                                format!("{resource_type}/{id} is not a record of this patient"),
                            ));
                        }
                        Err(e) => return Err(e.into()),
                    }
                }
                Asked::Attributes(attributes) => {
                    validate::resource(&attributes)?;
                    Some(attributes)
                }
            };
            Ok((client, held, resource))
        })
        .await?;
    if client_view
        && !client.may_use_purpose(&question.purpose, gateway.purposes, &gateway.settings.roles)
    {
        return Err(DomainError::forbidden(
            "purpose_not_allowed",
            "the purpose of use is not allowed for this client",
        ));
    }
    let requester = Requester::of(&client);
    let decided = match resource {
        Some(mut resource) => {
            if matches!(question.resource, Asked::Attributes(_)) {
                gateway
                    .institution
                    .labeller
                    .apply(&mut resource)
                    .map_err(|e| DomainError::invalid("invalid_resource", e.to_string()))?;
            }
            let decision = decision::decide(
                &gateway.institution.policies,
                gateway.purposes,
                &held,
                &Question {
                    requester: &requester,
                    purpose: &question.purpose,
                    action: question.action,
                    patient_id: question.patient.as_str(),
                    resource: Subject::Body(&resource),
                    break_glass: question
                        .justification
                        .as_deref()
                        .filter(|j| !j.trim().is_empty()),
                    now: crate::fhir_time::now_micros(),
                    explain: true,
                },
            );
            Some((resource, decision))
        }
        None => None,
    };
    let permit = decided.as_ref().is_some_and(|(_, d)| d.permit);
    let mut entry = by.audit_entry(
        AuditAction::Decision,
        if permit {
            AuditOutcome::Success
        } else {
            AuditOutcome::Denied
        },
        request_id.to_string(),
    );
    entry.patient_id = Some(question.patient.as_str().to_string());
    entry
        .detail
        .insert("asked_for_client".into(), client.id.clone());
    if let Asked::Stored { resource_type, id } = &question.resource
        && is_resource_type(resource_type)
        && validate::is_valid_id(id)
    {
        entry.resources = vec![format!("{resource_type}/{id}")];
    }
    if let Some((resource, d)) = &decided {
        entry.consents = d
            .consent
            .deciding
            .iter()
            .map(|p| p.consent_id.clone())
            .filter(|c| validate::is_valid_id(c))
            .collect();
        entry.policies = d.policies.clone();
        if let (Some(ty), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) {
            entry.resources = vec![format!("{ty}/{id}")];
        }
    }
    gateway.record(entry).await?;
    Ok(match decided {
        Some((_, d)) if !client_view => Answer::Full(d),
        // Only a client's question can name a record that is not there; its "no" is the same
        // whether the record is hidden, foreign or missing.
        Some((_, d)) => Answer::ForClient {
            permit: d.permit,
            obligations: if d.permit { d.obligations } else { Vec::new() },
        },
        None => Answer::ForClient {
            permit: false,
            obligations: Vec::new(),
        },
    })
}
