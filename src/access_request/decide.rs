//! Deciding a pending request: approval writes a Consent, decline only the status.
//!
//! The Consent comes from the one builder, [`Grant`]: the client's own `Device/{client_id}`
//! as the IRCP actor (so the decision engine matches it for that client only), the purpose
//! and data classes asked for, the data period asked for, from now until `expires`, opt-in.
//! It goes through [`Consent::from_fhir`] like any consent a patient sends. The request's
//! new status and the Consent commit in one transaction; the status change is conditional on
//! `pending` (`store::access_requests::decide`), so of two concurrent decisions exactly one
//! wins and the other is a conflict.

use super::model::{AccessRequest, DecidedBy, Reviewer};
use super::read::load;
use super::view::Audience;
use super::{REQUEST_IDENTIFIER_SYSTEM, unknown_request};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::consent::Consent;
use crate::consent::dates::parse_date_time;
use crate::consent::grant::{Basis, Grant};
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::ingest;
use crate::store::access_requests::{self as rows, Decided, RequestStatus};
use crate::store::write_tx;

fn already_decided() -> DomainError {
    DomainError::conflict(
        "access_request_not_pending",
        "this access request is no longer pending",
    )
}

/// `expires` must be a FHIR dateTime that ends after `now`.
pub fn check_expires(expires: Option<&str>, now: i64) -> Result<(), DomainError> {
    let Some(expires) = expires else {
        return Ok(());
    };
    match parse_date_time(expires) {
        Some((_, last)) if last > now => Ok(()),
        _ => Err(DomainError::unprocessable(
            "invalid_expires",
            "expires must be a FHIR dateTime in the future",
        )),
    }
}

/// The grant an approval makes: `request`'s client may have the classes asked for, for the
/// purpose asked for, from `now` until `expires`.
pub fn grant_for(
    request: &AccessRequest,
    patient: &PatientId,
    consent_id: &str,
    now: i64,
    expires: Option<&str>,
) -> Grant {
    Grant {
        id: consent_id.to_string(),
        patient: patient.to_string(),
        recipient: format!("Device/{}", request.client),
        purpose: request.purpose.clone(),
        action: None,
        classes: request.data_classes.clone(),
        instances: Vec::new(),
        data_period: request.period.clone(),
        shared_labels: Vec::new(),
        start: now,
        end: expires.map(str::to_string),
        basis: Basis::OptIn,
        identifier: Some((REQUEST_IDENTIFIER_SYSTEM.to_string(), request.id.clone())),
    }
}

/// A request `reviewer` may decide, still pending.
async fn decidable(
    gateway: &Gateway,
    reviewer: &Reviewer,
    id: &str,
) -> Result<AccessRequest, DomainError> {
    let request = load(gateway, id).await?.ok_or_else(unknown_request)?;
    if !reviewer.sees(request.patient.as_ref()) {
        return Err(unknown_request());
    }
    if request.status != RequestStatus::Pending {
        return Err(already_decided());
    }
    Ok(request)
}

/// Approves request `id` for the patient (or an operator acting for them): the Consent and
/// the new status commit together, then the grant and the approval are audited.
pub async fn approve(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    expires: Option<&str>,
    request_id: &str,
) -> Result<(AccessRequest, Audience), DomainError> {
    let reviewer = Reviewer::of(principal)?;
    let now = now_micros();
    check_expires(expires, now)?;
    let mut request = decidable(gateway, &reviewer, id).await?;
    let patient = request.patient.clone().ok_or_else(already_decided)?;
    let consent_id = ingest::new_id();
    let consent = grant_for(&request, &patient, &consent_id, now, expires).to_fhir();
    if let Err(defects) = Consent::from_fhir(&consent) {
        let codes: Vec<&str> = defects.defects.iter().map(|d| d.kind.code()).collect();
        return Err(DomainError::unprocessable(
            "invalid_consent",
            format!("the consent would be invalid: {}", codes.join(", ")),
        ));
    }
    let by = reviewer.decided_by();
    let (key, cid) = (request.id.clone(), consent_id.clone());
    gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let decided = Decided {
                    id: &key,
                    status: RequestStatus::Approved,
                    at: now,
                    by: by.as_str(),
                    consent_id: Some(&cid),
                };
                if !rows::decide(conn, &decided)? {
                    return Err(already_decided());
                }
                ingest::put(conn, "Consent", &cid, consent)?;
                Ok(())
            })
        })
        .await?;
    decided(&mut request, RequestStatus::Approved, now, by);
    request.consent_id = Some(consent_id.clone());
    for action in [AuditAction::Grant, AuditAction::Approve] {
        audit_decision(gateway, principal, request_id, action, &request).await?;
    }
    tracing::info!(access_request = %request.id, consent = %consent_id, "access request approved");
    Ok((request, Audience::of(&reviewer)))
}

/// Declines request `id` for the patient (or an operator acting for them).
pub async fn decline(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    request_id: &str,
) -> Result<(AccessRequest, Audience), DomainError> {
    let reviewer = Reviewer::of(principal)?;
    let now = now_micros();
    let mut request = decidable(gateway, &reviewer, id).await?;
    let by = reviewer.decided_by();
    let key = request.id.clone();
    let changed = gateway
        .store
        .run(move |conn| {
            let d = Decided {
                id: &key,
                status: RequestStatus::Declined,
                at: now,
                by: by.as_str(),
                consent_id: None,
            };
            rows::decide(conn, &d)
        })
        .await?;
    if !changed {
        return Err(already_decided());
    }
    decided(&mut request, RequestStatus::Declined, now, by);
    audit_decision(
        gateway,
        principal,
        request_id,
        AuditAction::Decline,
        &request,
    )
    .await?;
    tracing::info!(access_request = %request.id, "access request declined");
    Ok((request, Audience::of(&reviewer)))
}

fn decided(request: &mut AccessRequest, status: RequestStatus, at: i64, by: DecidedBy) {
    request.status = status;
    request.decided_at = Some(at);
    request.decided_by = Some(by);
}

/// One entry of a decision: about the patient, naming the request, the requesting client
/// and the Consent created (when one was).
async fn audit_decision(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    action: AuditAction,
    request: &AccessRequest,
) -> Result<(), DomainError> {
    let mut entry = principal.audit_entry(action, AuditOutcome::Success, request_id.to_string());
    entry.patient_id = request.patient.as_ref().map(|p| p.to_string());
    if let Some(id) = &request.consent_id {
        entry.consents = vec![id.clone()];
        entry.resources = vec![format!("Consent/{id}")];
    }
    entry
        .detail
        .insert("access_request".into(), request.id.clone());
    entry
        .detail
        .insert("requesting_client".into(), request.client.to_string());
    gateway.record(entry).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::access_request::model::tests::stored;

    const NOW: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z

    #[test]
    fn expiry_is_optional_but_in_the_future() {
        assert!(check_expires(None, NOW).is_ok());
        assert!(check_expires(Some("2099-01-01"), NOW).is_ok());
        // A date counts until its last instant.
        assert!(check_expires(Some("2026-01-01"), NOW).is_ok());
        for bad in ["2025-12-31", "2025-12-31T23:59:59Z", "tomorrow", ""] {
            let e = check_expires(Some(bad), NOW).unwrap_err();
            assert_eq!(e.code, "invalid_expires", "{bad}");
        }
    }

    /// The grant gives exactly the Consent the approval wrote before the one builder existed.
    #[test]
    fn the_grant_is_the_consent_an_approval_always_wrote() {
        let request = AccessRequest::from_stored(stored()).unwrap();
        let patient = PatientId::parse("pat").unwrap();
        let consent = grant_for(&request, &patient, "c1", NOW, Some("2099-01-01")).to_fhir();
        let expected = json!({
            "resourceType": "Consent",
            "id": "c1",
            "identifier": [{"system": "https://consentgate.dev/fhir/access-request",
                            "value": "0192c1f0-0000-7000-8000-000000000001"}],
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                  "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/pat"},
            "dateTime": "2026-01-01T00:00:00.000000Z",
            "performer": [{"reference": "Patient/pat"}],
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                       "code": "OPTIN"}]},
            "provision": {
                "type": "permit",
                "period": {"start": "2026-01-01T00:00:00.000000Z", "end": "2099-01-01"},
                "actor": [{
                    "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                         "code": "IRCP"}]},
                    "reference": {"reference": "Device/client-1"}
                }],
                "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
                             "code": "TREAT"}],
                "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"},
                          {"system": "http://hl7.org/fhir/resource-types", "code": "Condition"}],
                "dataPeriod": {"start": "2020-01-01"},
            },
        });
        assert_eq!(consent, expected);
        Consent::from_fhir(&consent).expect("a valid consent");

        let open = grant_for(&request, &patient, "c1", NOW, None).to_fhir();
        assert!(
            open["provision"]["period"].get("end").is_none(),
            "until revoked"
        );
    }

    #[test]
    fn no_data_period_means_no_data_period_element() {
        let mut request = AccessRequest::from_stored(stored()).unwrap();
        request.period = (None, None);
        let patient = PatientId::parse("pat").unwrap();
        let consent = grant_for(&request, &patient, "c1", NOW, None).to_fhir();
        assert!(consent["provision"].get("dataPeriod").is_none());
        request.period = (None, Some("2024-12-31".into()));
        let consent = grant_for(&request, &patient, "c1", NOW, None).to_fhir();
        assert_eq!(
            consent["provision"]["dataPeriod"],
            json!({"end": "2024-12-31"})
        );
    }
}
