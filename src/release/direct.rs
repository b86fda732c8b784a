//! Direct reads by people: an operator (every patient's records) or a patient (their own
//! compartment only; anything else answers `not_found`, as if it did not exist). No consent
//! decision applies, since neither is a recipient, but what they read still leaves the
//! gateway, so each read is recorded like a release: one audit entry per patient concerned,
//! listing exactly the resources returned, durable before they are.
//!
//! These live in `release` rather than `records` because the rule they share with a
//! recipient's release is the one about what left and what the patient's accounting of
//! disclosures says; `records` stores and finds, and knows nothing of who is reading.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::audit::AuditAction;
use crate::audit::AuditOutcome;
use crate::audit::log::Announced;
use crate::auth::Principal;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::{RecordError, index, ingest, internal, search};
use crate::store::resources as rows;

/// The patient whose records `principal` is confined to: `None` for an operator. A client
/// is no person: recipients go through the consent-checked release.
fn confined_to(principal: &Principal) -> Result<Option<&str>, DomainError> {
    match principal {
        Principal::Operator { .. } => Ok(None),
        Principal::Patient { patient_id, .. } => Ok(Some(patient_id)),
        Principal::Delegate(d) => {
            principal.may(crate::delegation::Action::ReadRecords)?;
            Ok(Some(&d.patient_id))
        }
        Principal::Client(_) => Err(DomainError::forbidden(
            "forbidden",
            "this caller may not use this endpoint",
        )),
    }
}

/// A patient sees only resources of their own compartment; others do not exist for them.
fn visible_to(
    only_patient: Option<&str>,
    resource_type: &str,
    id: &str,
    body: &Value,
) -> Result<(), RecordError> {
    match only_patient {
        None => Ok(()),
        Some(own) if index::patient_of(resource_type, id, body).as_deref() == Some(own) => Ok(()),
        Some(_) => Err(ingest::missing(resource_type, id)),
    }
}

/// `GET /fhir/{type}/{id}` by a person: the current version.
pub async fn read(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    resource_type: &str,
    id: &str,
) -> Result<Value, DomainError> {
    read_version(gateway, principal, request_id, resource_type, id, None).await
}

/// `GET /fhir/{type}/{id}/_history/{version}` by a person (the current version when
/// `version` is `None`).
pub async fn read_version(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    resource_type: &str,
    id: &str,
    version: Option<&str>,
) -> Result<Value, DomainError> {
    let announced = gateway.audit.announce();
    let only = confined_to(principal)?.map(str::to_string);
    let (ty, key, version) = (
        resource_type.to_string(),
        id.to_string(),
        version.map(str::to_string),
    );
    let body = gateway
        .store
        .run(move |conn| {
            let body = match &version {
                Some(v) => ingest::read_version(conn, &ty, &key, v)?,
                None => ingest::read(conn, &ty, &key)?,
            };
            visible_to(only.as_deref(), &ty, &key, &body)?;
            Ok::<_, RecordError>(body)
        })
        .await?;
    record(
        gateway,
        announced,
        principal,
        request_id,
        AuditAction::Read,
        std::slice::from_ref(&body),
    )
    .await?;
    Ok(body)
}

/// `GET /fhir/{type}?...` by a person: the searchset Bundle (a patient's search is confined
/// to their own compartment).
pub async fn search(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    resource_type: &str,
    raw_query: &str,
) -> Result<Value, DomainError> {
    let announced = gateway.audit.announce();
    let only = confined_to(principal)?;
    let mut parsed = search::parse(resource_type, raw_query, &gateway.settings.limits)?;
    if let Some(own) = only {
        search::restrict_to_patient(&mut parsed, own);
    }
    let base = gateway.fhir_base();
    let bundle = gateway
        .store
        .run(move |conn| search::run(conn, &parsed, &base))
        .await?;
    let found: Vec<Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    let action = AuditAction::Search;
    record(gateway, announced, principal, request_id, action, &found).await?;
    Ok(bundle)
}

/// `GET /fhir/Patient/{id}/$everything` by a person: every resource of the patient for an
/// operator; for the patient (or their delegate) their own copy ([`in_own_copy`]).
/// Advance directives come first ([`internal::directives_first`]).
pub async fn everything(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    patient: &PatientId,
) -> Result<Vec<Value>, DomainError> {
    let announced = gateway.audit.announce();
    let confined = confined_to(principal)?;
    if confined.is_some_and(|own| own != patient.as_str()) {
        return Err(RecordError::not_found(
            "not_found",
            format!("{} is not known", patient.reference()),
        )
        .into());
    }
    let p = patient.clone();
    let all = gateway
        .store
        .run(move |conn| rows::current_for_patient(conn, p.as_str()))
        .await?;
    let mut resources: Vec<Value> = all
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str(&body).ok())
        .filter(|r| confined.is_none() || in_own_copy(r))
        .collect();
    internal::directives_first(&mut resources);
    record(
        gateway,
        announced,
        principal,
        request_id,
        AuditAction::Read,
        &resources,
    )
    .await?;
    Ok(resources)
}

/// Whether a resource of the patient's is part of their own copy (`$everything` for a
/// person, the patient-level `$export`): everything but the gateway's own records about
/// sharing (consents, the RelatedPerson of a delegation, amendment Provenance), which the
/// consents, delegations and amendments APIs show instead. An advance directive is a
/// clinical record, so it is in ([`internal::is_gateway_internal`]).
pub fn in_own_copy(resource: &Value) -> bool {
    !internal::is_gateway_internal(resource)
}

/// Records what leaves, one entry per patient concerned (so each patient's accounting of
/// disclosures lists it), and waits until the entries are durable. `announced` is the
/// request's announcement of its (first) entry.
async fn record(
    gateway: &Gateway,
    announced: Announced,
    principal: &Principal,
    request_id: &str,
    action: AuditAction,
    resources: &[Value],
) -> Result<(), DomainError> {
    let mut by_patient: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for r in resources {
        let (Some(ty), Some(id)) = (
            r.get("resourceType").and_then(Value::as_str),
            r.get("id").and_then(Value::as_str),
        ) else {
            continue;
        };
        by_patient
            .entry(index::patient_of(ty, id, r))
            .or_default()
            .push(format!("{ty}/{id}"));
    }
    if by_patient.is_empty() {
        by_patient.insert(confined_to(principal)?.map(str::to_string), Vec::new());
    }
    let mut announced = Some(announced);
    for (patient, refs) in by_patient {
        let mut entry =
            principal.audit_entry(action, AuditOutcome::Success, request_id.to_string());
        entry.detail.insert("count".into(), refs.len().to_string());
        entry.patient_id = patient;
        entry.resources = refs;
        gateway
            .audit
            .record_announced(announced.take(), entry)
            .await?;
    }
    Ok(())
}
