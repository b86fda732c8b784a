//! A patient's consents as a workflow: grant (create), revise (a new version), revoke, read
//! and list, with who may do each and the audit entry each leaves.
//!
//! A patient manages only their own consents; an operator may act for any patient. Which
//! patient a consent belongs to is decided by the one ownership rule
//! ([`crate::records::index::owner`]), here and at ingest alike, so a consent can never be
//! checked against one patient and filed under another. Every version is kept; a revocation
//! (status `inactive`, a new version) holds from the next request, because consents are read
//! afresh for every decision and never baked into a token.

use serde_json::{Value, json};

use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::consent::{Consent, ConsentDefects, Provision};
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::ingest::{self, Stored};
use crate::records::{RecordError, consents, index, validate};
use crate::store::write_tx;

/// Why a consent write was refused.
#[derive(Debug)]
pub enum WriteError {
    /// The body is not a valid R4 Consent: every defect, each with its element path.
    Defects(ConsentDefects),
    /// Any other refusal or failure.
    Failed(DomainError),
}

impl<E: Into<DomainError>> From<E> for WriteError {
    fn from(e: E) -> Self {
        WriteError::Failed(e.into())
    }
}

/// The filters of a consent search; `None` matches anything.
#[derive(Debug, Clone, Default)]
pub struct ConsentFilter {
    /// `active`, `inactive`, ...
    pub status: Option<String>,
    /// A reference some provision names as its actor.
    pub actor: Option<String>,
    /// A purpose some provision covers (through the ActReason hierarchy).
    pub purpose: Option<String>,
}

fn not_yours() -> DomainError {
    DomainError::forbidden(
        "not_your_consent",
        "a patient manages only their own consents",
    )
}

fn unknown(id: &str) -> DomainError {
    DomainError::not_found("not_found", format!("Consent/{id} is not known"))
}

/// Checks the consent and who may write it; returns the patient it belongs to.
fn admit(by: &Principal, consent: &Value) -> Result<String, WriteError> {
    if validate::resource(consent)? != "Consent" {
        return Err(RecordError::invalid("type_mismatch", "the body is not a Consent").into());
    }
    let parsed = Consent::from_fhir(consent).map_err(WriteError::Defects)?;
    let id = consent
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let patient = index::owner("Consent", id, consent)
        .map_err(|c| DomainError::unprocessable("conflicting_patient", c.to_string()))?
        .unwrap_or_else(|| parsed.patient_id().to_string());
    if by.own_patient().is_some_and(|own| own != patient) {
        return Err(not_yours().into());
    }
    by.may(crate::delegation::Action::ManageConsents)?;
    Ok(patient)
}

async fn audit(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    action: AuditAction,
    patient: &str,
    id: &str,
) -> Result<(), DomainError> {
    let mut entry = by.audit_entry(action, AuditOutcome::Success, request_id.to_string());
    entry.patient_id = Some(patient.to_string());
    entry.consents = vec![id.to_string()];
    entry.resources = vec![format!("Consent/{id}")];
    gateway.record(entry).await?;
    Ok(())
}

/// Stores a new consent under a fresh id and audits the grant.
pub async fn grant(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    mut consent: Value,
) -> Result<Stored, WriteError> {
    let id = ingest::new_id();
    if let Some(object) = consent.as_object_mut() {
        object.insert("id".into(), Value::String(id.clone()));
    }
    let patient = admit(by, &consent)?;
    let stored = gateway
        .store
        .run(move |conn| write_tx(conn, |conn| ingest::put(conn, "Consent", &id, consent)))
        .await
        .map_err(DomainError::from)?;
    audit(
        gateway,
        by,
        request_id,
        AuditAction::Grant,
        &patient,
        &stored.id,
    )
    .await?;
    Ok(stored)
}

/// Stores a new version of consent `id` (creating it under that id if new); a patient may
/// not take over another patient's consent, nor move one to another patient.
pub async fn revise(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    id: &str,
    mut consent: Value,
) -> Result<Stored, WriteError> {
    validate::id(id)?;
    if consent.get("id").is_some_and(|v| v.as_str() != Some(id)) {
        return Err(
            RecordError::invalid("id_mismatch", "the body's `id` differs from the URL").into(),
        );
    }
    if let Some(object) = consent.as_object_mut() {
        object.insert("id".into(), Value::String(id.to_string()));
    }
    let patient = admit(by, &consent)?;
    let only = by.own_patient().map(str::to_string);
    let (key, owner) = (id.to_string(), patient.clone());
    let stored = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                if let Ok(existing) = ingest::read(conn, "Consent", &key) {
                    let previous = index::patient_of("Consent", &key, &existing);
                    if only.is_some() && previous.as_deref() != Some(owner.as_str()) {
                        return Err(DomainError::from(RecordError::not_found(
                            "not_found",
                            format!("Consent/{key} is not known"),
                        )));
                    }
                }
                Ok(ingest::put(conn, "Consent", &key, consent)?)
            })
        })
        .await?;
    audit(gateway, by, request_id, AuditAction::Grant, &patient, id).await?;
    Ok(stored)
}

/// Consent `id` as stored, if `by` may see it (a patient sees only their own; anything else
/// is the same 404 as a missing one).
pub async fn read(gateway: &Gateway, by: &Principal, id: &str) -> Result<Value, DomainError> {
    by.may(crate::delegation::Action::ManageConsents)?;
    let only = by.own_patient().map(str::to_string);
    let key = id.to_string();
    gateway
        .store
        .run(move |conn| {
            let body = ingest::read(conn, "Consent", &key).map_err(DomainError::from)?;
            let patient = index::patient_of("Consent", &key, &body);
            match only {
                Some(own) if patient.as_deref() != Some(own.as_str()) => Err(unknown(&key)),
                _ => Ok(body),
            }
        })
        .await
}

/// Revokes consent `id`: a new version with status `inactive`, audited as a revocation.
pub async fn revoke(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    id: &str,
) -> Result<Stored, DomainError> {
    let mut body = read(gateway, by, id).await?;
    let patient = index::patient_of("Consent", id, &body).unwrap_or_default();
    body["status"] = json!("inactive");
    let key = id.to_string();
    let stored = gateway
        .store
        .run(move |conn| write_tx(conn, |conn| ingest::put(conn, "Consent", &key, body)))
        .await?;
    audit(gateway, by, request_id, AuditAction::Revoke, &patient, id).await?;
    Ok(stored)
}

/// The patient's consents that pass `filter`, in id order. A patient may list only their own.
pub async fn search(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
    filter: &ConsentFilter,
) -> Result<Vec<Value>, DomainError> {
    if by.own_patient().is_some_and(|own| own != patient.as_str()) {
        return Err(not_yours());
    }
    by.may(crate::delegation::Action::ManageConsents)?;
    let p = patient.as_str().to_string();
    let stored = gateway
        .store
        .run(move |conn| consents::stored_for_patient(conn, &p))
        .await?;
    let catalog = gateway.purposes;
    Ok(stored
        .into_iter()
        .filter(|v| filter.status.as_deref().is_none_or(|s| v["status"] == s))
        .filter(|v| {
            let Ok(c) = Consent::from_fhir(v) else {
                return false;
            };
            let provisions = c.provision().map(all_provisions).unwrap_or_default();
            filter.actor.as_deref().is_none_or(|a| {
                provisions
                    .iter()
                    .any(|p| p.actors().iter().any(|x| x.reference() == a))
            }) && filter.purpose.as_deref().is_none_or(|want| {
                provisions
                    .iter()
                    .any(|p| p.purposes().iter().any(|c| catalog.is_a(want, &c.code)))
            })
        })
        .collect())
}

fn all_provisions(root: &Provision) -> Vec<&Provision> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        out.extend(out[i].provisions().iter());
        i += 1;
    }
    out
}
