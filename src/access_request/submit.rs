//! Storing a new request: the client's registration checked, the patient looked up by
//! identifier, the request stored (and the patient told) in one transaction, the request
//! audited.
//!
//! [`submit`] returns the new request's id and nothing else: whether the identifier matched
//! one Patient, none or several never reaches the caller, so the HTTP answer cannot differ.

use serde_json::json;

use super::check::{self, NewRequest};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::auth::registry;
use crate::error::{DomainError, ErrorKind};
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::ClientId;
use crate::notify::{self, NotifyError};
use crate::store::access_requests::{self as rows, AccessRequestRow, RequestStatus};
use crate::store::resources::{TokenFilter, ids_by_identifier};
use crate::store::write_tx;

fn unauthorized() -> DomainError {
    DomainError::new(
        ErrorKind::Unauthorized,
        "unauthorized",
        "a valid bearer token is required",
    )
}

fn notify_error(e: NotifyError) -> DomainError {
    match e {
        NotifyError::Store(e) => e.into(),
        other => DomainError::internal(other),
    }
}

/// Stores `new` from the client `principal` and returns its id. The request is `pending`
/// when its identifier matched exactly one Patient (who gets a notification in the same
/// transaction), `unmatched` otherwise: two matches are as good as none.
pub async fn submit(
    gateway: &Gateway,
    principal: &Principal,
    new: NewRequest,
    request_id: &str,
) -> Result<String, DomainError> {
    let Principal::Client(claims) = principal else {
        return Err(DomainError::forbidden(
            "forbidden",
            "this caller may not use this endpoint",
        ));
    };
    let client_id = ClientId::parse(&claims.client_id).map_err(|_| unauthorized())?;
    let client = gateway
        .store
        .run(move |conn| registry::active(conn, client_id.as_str()))
        .await?
        .ok_or_else(unauthorized)?;
    if client.role == Role::DataSource {
        return Err(DomainError::forbidden(
            "forbidden",
            "a data source may not ask for access",
        ));
    }
    let checked = check::check(&new, &client, gateway.purposes, &gateway.settings.roles)?;
    let id = uuid::Uuid::now_v7().to_string();
    let identifier = new.patient.identifier;
    let row = AccessRequestRow {
        id: id.clone(),
        client_id: client.id.clone(),
        patient_id: None,
        status: RequestStatus::Unmatched.as_str().into(),
        identifier_system: identifier.system,
        identifier_value: identifier.value,
        purpose: new.purpose,
        data_classes: json!(checked.classes).to_string(),
        period_start: checked.period.0,
        period_end: checked.period.1,
        reason: checked.reason,
        created: now_micros(),
        decided_at: None,
        decided_by: None,
        consent_id: None,
    };
    let purpose = row.purpose.clone();
    let token = checked.token;
    let patient = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let filter = TokenFilter {
                    kind: "identifier".into(),
                    tokens: vec![token],
                    codes: Vec::new(),
                };
                // Up to two ids: one is a match, two is ambiguous and as good as none.
                let found = ids_by_identifier(conn, "Patient", &filter)?;
                let mut row = row;
                if let [only] = found.as_slice() {
                    row.patient_id = Some(only.clone());
                    row.status = RequestStatus::Pending.as_str().into();
                }
                rows::insert(conn, &row)?;
                if let Some(patient) = &row.patient_id {
                    notify::enqueue_access_request(conn, patient, &row.id).map_err(notify_error)?;
                }
                Ok::<_, DomainError>(row.patient_id)
            })
        })
        .await?;
    let mut entry = principal.audit_entry(
        AuditAction::Request,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = patient.clone();
    entry.detail.insert("access_request".into(), id.clone());
    entry.detail.insert("requested_purpose".into(), purpose);
    entry
        .detail
        .insert("data_classes".into(), checked.classes.join(","));
    gateway.record(entry).await?;
    tracing::info!(access_request = %id, client_id = %client.id, matched = patient.is_some(), "access request received");
    Ok(id)
}
