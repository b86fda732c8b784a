//! Naming, listing and ending delegations.
//!
//! The patient names a delegate for themself; an operator may name one for any patient but
//! must cite the legal document that gives the authority (a court order, a registered power
//! of attorney). The delegate is a `RelatedPerson` the gateway writes (tagged
//! gateway-internal: it is about sharing, never released to a recipient), or one of the
//! patient's stored RelatedPersons. A parent or guardian can only be named for a minor.
//! Every step is audited (`grant`, `revoke`, detail `delegation`) and so told to the patient.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::majority;
use super::model::{Action, Relationship};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::{Grammar, format_instant, now_micros};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::internal::{INTERNAL_TAG_CODE, TAG_SYSTEM};
use crate::records::{RecordError, index, ingest};
use crate::store::delegations::{self as rows, DelegationRow};
use crate::store::write_tx;

/// Most delegations a listing shows.
const LIST_LIMIT: i64 = 200;
/// Longest delegate name or legal document reference, in characters.
const MAX_TEXT: usize = 500;

/// A new delegation, as the API takes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDelegation {
    /// The patient (an operator names one; a patient's own is implied).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub patient: Option<PatientId>,
    /// A stored RelatedPerson of the patient to name as the delegate.
    #[serde(default)]
    pub related_person_id: Option<String>,
    /// Or the delegate's name, for a RelatedPerson the gateway writes.
    #[serde(default)]
    pub name: Option<String>,
    /// How the delegate relates to the patient (`parent`, `guardian`, `carer`,
    /// `power_of_attorney`, ...).
    #[schema(value_type = String)]
    pub relationship: Relationship,
    /// What the delegate may do (snake_case action codes).
    #[schema(value_type = Vec<String>)]
    pub actions: Vec<Action>,
    /// From when (FHIR dateTime); now when absent.
    #[serde(default)]
    pub start: Option<String>,
    /// Until when (FHIR dateTime); open-ended when absent.
    #[serde(default)]
    pub end: Option<String>,
    /// The legal document behind an operator's delegation (required for operators).
    #[serde(default)]
    pub legal_document: Option<String>,
}

/// A delegation as its patient (or an operator) sees it.
#[derive(Debug, Clone, Serialize)]
pub struct DelegationView {
    /// The delegation id.
    pub id: String,
    /// The patient.
    pub patient: String,
    /// `RelatedPerson/{id}`: what the delegate's `fhirUser` claim must name.
    pub delegate: String,
    /// The relationship code.
    pub relationship: String,
    /// What the delegate may do.
    pub actions: Vec<Action>,
    /// From when.
    pub start: String,
    /// Until when.
    pub end: Option<String>,
    /// Who named the delegate.
    pub created_by: String,
    /// The legal document an operator cited.
    pub legal_document: Option<String>,
    /// `active`, `revoked` or `ended_at_majority`.
    pub status: &'static str,
    /// When it ended.
    pub ended_at: Option<String>,
}

/// The actions of a stored delegation (unknown codes are ignored: they grant nothing).
pub fn actions_of(row: &DelegationRow) -> Vec<Action> {
    serde_json::from_str::<Vec<String>>(&row.actions)
        .unwrap_or_default()
        .iter()
        .filter_map(|a| Action::parse(a))
        .collect()
}

/// What a stored delegation looks like to its patient.
pub fn view(row: &DelegationRow) -> DelegationView {
    DelegationView {
        id: row.id.clone(),
        patient: row.patient_id.clone(),
        delegate: format!("RelatedPerson/{}", row.related_person_id),
        relationship: row.relationship.clone(),
        actions: actions_of(row),
        start: format_instant(row.period_start),
        end: row.period_end.map(format_instant),
        created_by: row.created_by.clone(),
        legal_document: row.legal_document.clone(),
        status: match row.ended_reason.as_deref() {
            None => "active",
            Some("majority") => "ended_at_majority",
            Some(_) => "revoked",
        },
        ended_at: row.ended_at.map(format_instant),
    }
}

/// The patient `by` names a delegation for, and who is recorded as naming it.
fn patient_for(by: &Principal, ask: &NewDelegation) -> Result<(PatientId, String), DomainError> {
    match by {
        Principal::Patient { patient_id, .. } => {
            if ask
                .patient
                .as_ref()
                .is_some_and(|p| p.as_str() != patient_id)
            {
                return Err(DomainError::forbidden(
                    "forbidden",
                    "a patient names delegates for themself only",
                ));
            }
            let id = PatientId::parse(patient_id)
                .map_err(|_| DomainError::forbidden("forbidden", "not a patient id"))?;
            Ok((id, format!("Patient/{patient_id}")))
        }
        Principal::Operator { .. } => {
            let patient = ask.patient.clone().ok_or_else(|| {
                DomainError::invalid("patient_required", "an operator names the patient")
            })?;
            if ask
                .legal_document
                .as_deref()
                .is_none_or(|d| d.trim().is_empty())
            {
                return Err(DomainError::invalid(
                    "legal_document_required",
                    "an operator names a delegate only with the legal document behind it",
                ));
            }
            Ok((patient, crate::audit::OPERATOR_CLIENT.to_string()))
        }
        Principal::Delegate(_) | Principal::Client(_) => Err(DomainError::forbidden(
            "forbidden",
            "only the patient or an operator names delegates",
        )),
    }
}

fn text_field(value: Option<&str>, field: &str) -> Result<Option<String>, DomainError> {
    match value.map(str::trim).filter(|v| !v.is_empty()) {
        Some(v) if v.chars().count() > MAX_TEXT || v.chars().any(char::is_control) => {
            Err(DomainError::invalid(
                "invalid_delegation",
                format!("`{field}` must be at most {MAX_TEXT} characters of text"),
            ))
        }
        other => Ok(other.map(str::to_string)),
    }
}

fn instant(text: Option<&str>, field: &str) -> Result<Option<i64>, DomainError> {
    text.map(|t| {
        crate::fhir_time::parse(t, Grammar::DateTime)
            .map(|(start, _)| start)
            .map_err(|e| {
                DomainError::invalid(e.code(), format!("`{field}` must be a FHIR dateTime"))
            })
    })
    .transpose()
}

/// The RelatedPerson the gateway writes for a named delegate.
fn related_person(id: &str, patient: &PatientId, name: &str, rel: Relationship) -> Value {
    let (system, code, display) = rel.coding();
    json!({
        "resourceType": "RelatedPerson",
        "id": id,
        "meta": {"tag": [{"system": TAG_SYSTEM, "code": INTERNAL_TAG_CODE}]},
        "active": true,
        "patient": {"reference": patient.reference()},
        "relationship": [{"coding": [{"system": system, "code": code, "display": display}]}],
        "name": [{"text": name}],
    })
}

/// Names a delegate; answers the stored delegation once its audit entry is durable.
pub async fn create(
    gateway: &Gateway,
    by: &Principal,
    ask: NewDelegation,
    request_id: &str,
) -> Result<DelegationView, DomainError> {
    let (patient, created_by) = patient_for(by, &ask)?;
    let mut actions = ask.actions.clone();
    actions.sort();
    actions.dedup();
    if actions.is_empty() {
        return Err(DomainError::invalid(
            "invalid_delegation",
            "a delegation allows at least one action",
        ));
    }
    let now = now_micros();
    let start = instant(ask.start.as_deref(), "start")?.unwrap_or(now);
    let end = instant(ask.end.as_deref(), "end")?;
    if end.is_some_and(|e| e <= start.max(now)) {
        return Err(DomainError::invalid(
            "invalid_delegation",
            "`end` must be after `start` and in the future",
        ));
    }
    let name = text_field(ask.name.as_deref(), "name")?;
    let legal_document = text_field(ask.legal_document.as_deref(), "legal_document")?;
    let existing = ask
        .related_person_id
        .as_deref()
        .map(|id| {
            crate::records::validate::id(id)
                .map(|_| id.to_string())
                .map_err(DomainError::from)
        })
        .transpose()?;
    if existing.is_none() && name.is_none() {
        return Err(DomainError::invalid(
            "invalid_delegation",
            "give `related_person_id` of a stored RelatedPerson or the delegate's `name`",
        ));
    }
    let age = gateway.settings.rights.age_of_majority;
    let today = time::OffsetDateTime::now_utc().date();
    let row = DelegationRow {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient.to_string(),
        related_person_id: existing.clone().unwrap_or_else(ingest::new_id),
        relationship: ask.relationship.as_str().to_string(),
        actions: serde_json::to_string(&actions.iter().map(|a| a.as_str()).collect::<Vec<_>>())
            .map_err(DomainError::internal)?,
        period_start: start,
        period_end: end,
        created_by,
        legal_document,
        created: now,
        ended_at: None,
        ended_reason: None,
    };
    let (stored, rel) = (row.clone(), ask.relationship);
    gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                if rel.ends_at_majority() {
                    let minor = majority::birth_day(conn, &stored.patient_id)?
                        .is_some_and(|b| !majority::is_of_age(b, today, age));
                    if !minor {
                        return Err(DomainError::unprocessable(
                            "not_a_minor",
                            "a parent or guardian is named only for a patient whose stored \
                             birthDate makes them a minor",
                        ));
                    }
                }
                match &existing {
                    Some(id) => {
                        let body = ingest::read(conn, "RelatedPerson", id)?;
                        if index::patient_of("RelatedPerson", id, &body).as_deref()
                            != Some(stored.patient_id.as_str())
                        {
                            return Err(RecordError::not_found(
                                "not_found",
                                format!("RelatedPerson/{id} is not known"),
                            )
                            .into());
                        }
                    }
                    None => {
                        let patient =
                            PatientId::parse(&stored.patient_id).map_err(DomainError::internal)?;
                        let body = related_person(
                            &stored.related_person_id,
                            &patient,
                            name.as_deref().unwrap_or_default(),
                            rel,
                        );
                        ingest::put(conn, "RelatedPerson", &stored.related_person_id, body)?;
                    }
                }
                rows::insert(conn, &stored).map_err(|e| match e {
                    crate::store::StoreError::Conflict => DomainError::conflict(
                        "delegation_exists",
                        "this RelatedPerson already has a delegation in force",
                    ),
                    other => other.into(),
                })
            })
        })
        .await?;
    let mut entry = by.audit_entry(
        AuditAction::Grant,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(row.patient_id.clone());
    entry.resources = vec![format!("RelatedPerson/{}", row.related_person_id)];
    entry.detail = BTreeMap::from([
        ("delegation".into(), row.id.clone()),
        ("relationship".into(), row.relationship.clone()),
        (
            "actions".into(),
            actions
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" "),
        ),
    ]);
    gateway.record(entry).await?;
    Ok(view(&row))
}

/// The delegations of `patient` that `by` may see: the patient's own, or any for an operator.
pub async fn list(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
) -> Result<Vec<DelegationView>, DomainError> {
    allowed_for(by, patient)?;
    let p = patient.clone();
    let rows = gateway
        .store
        .run(move |conn| rows::for_patient(conn, p.as_str(), LIST_LIMIT))
        .await?;
    Ok(rows.iter().map(view).collect())
}

fn allowed_for(by: &Principal, patient: &PatientId) -> Result<(), DomainError> {
    match by {
        Principal::Operator { .. } => Ok(()),
        Principal::Patient { patient_id, .. } if patient == patient_id.as_str() => Ok(()),
        _ => Err(DomainError::forbidden(
            "forbidden",
            "only the patient or an operator manages the patient's delegates",
        )),
    }
}

/// Revokes a delegation: the delegate's very next request is refused.
pub async fn revoke(
    gateway: &Gateway,
    by: &Principal,
    id: &str,
    request_id: &str,
) -> Result<DelegationView, DomainError> {
    let key = id.to_string();
    let row = gateway
        .store
        .run(move |conn| rows::find(conn, &key))
        .await?
        .ok_or_else(unknown)?;
    let patient = PatientId::parse(&row.patient_id).map_err(DomainError::internal)?;
    allowed_for(by, &patient).map_err(|_| unknown())?;
    if !end_delegation(gateway, &row, "revoked", Some(by), request_id).await? {
        return Err(DomainError::conflict(
            "delegation_ended",
            "this delegation has already ended",
        ));
    }
    let key = id.to_string();
    let row = gateway
        .store
        .run(move |conn| rows::find(conn, &key))
        .await?
        .ok_or_else(unknown)?;
    Ok(view(&row))
}

fn unknown() -> DomainError {
    DomainError::not_found("unknown_delegation", "no such delegation")
}

/// Ends `row` for `reason` (`revoked` by `by`, or `majority` by the gateway), audited as a
/// `revoke` about the patient. `false` when it had already ended.
pub async fn end_delegation(
    gateway: &Gateway,
    row: &DelegationRow,
    reason: &'static str,
    by: Option<&Principal>,
    request_id: &str,
) -> Result<bool, DomainError> {
    let (id, now) = (row.id.clone(), now_micros());
    let ended = gateway
        .store
        .run(move |conn| rows::end(conn, &id, now, reason))
        .await?;
    if !ended {
        return Ok(false);
    }
    let gateway_itself = Principal::Operator {
        subject: "consentgate".into(),
    };
    let mut entry = by.unwrap_or(&gateway_itself).audit_entry(
        AuditAction::Revoke,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(row.patient_id.clone());
    entry.resources = vec![format!("RelatedPerson/{}", row.related_person_id)];
    entry.detail = BTreeMap::from([
        ("delegation".into(), row.id.clone()),
        ("relationship".into(), row.relationship.clone()),
        ("reason".into(), reason.to_string()),
    ]);
    gateway.record(entry).await?;
    tracing::info!(delegation = %row.id, reason, "delegation ended");
    Ok(true)
}
