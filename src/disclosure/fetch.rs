//! The recipient's side: fetching the frozen bundle (while the package is unexpired, under
//! its retrieval limit and still permitted by the patient's consents) and its signature.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;

use super::package;
use super::sign;
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::jws;
use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::consent::ConsentStatus;
use crate::decision::{Decision, Requester};
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::{consents, ingest, validate};
use crate::store::disclosures::{self as rows, DisclosureRow};
use crate::store::identity;

/// What a recipient receives: the stored bytes and the detached JWS over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Served {
    /// The frozen bundle, byte for byte as stored.
    pub bundle: String,
    /// The detached JWS, made with a key the JWKS publishes now.
    pub signature: String,
}

fn unknown_disclosure() -> DomainError {
    DomainError::not_found("unknown_disclosure", "no such disclosure")
}

fn limit_reached() -> DomainError {
    DomainError::gone(
        "retrieval_limit_reached",
        "this disclosure was fetched as often as the patient allowed",
    )
}

/// The package `id` if `caller` is its recipient; the same 404 for anyone else and for an id
/// that does not exist, so a client cannot probe ids.
async fn recipients_package(
    gateway: &Gateway,
    caller: &AccessClaims,
    id: &str,
) -> Result<DisclosureRow, DomainError> {
    if !validate::is_valid_id(id) {
        return Err(unknown_disclosure());
    }
    let id = id.to_string();
    let row = gateway
        .store
        .run(move |conn| rows::find(conn, &id))
        .await
        .map_err(DomainError::from)?;
    row.filter(|r| r.recipient == caller.client_id)
        .ok_or_else(unknown_disclosure)
}

/// The package's signature, re-signed with the current key when its key has left the JWKS
/// (rotated out), so that it can always be checked against the published keys.
async fn current_signature(gateway: &Gateway, row: &DisclosureRow) -> Result<String, DomainError> {
    if jws::is_published(&gateway.auth.keyring, &row.signature) {
        return Ok(row.signature.clone());
    }
    let signature = sign(gateway, row.bundle.as_bytes())?;
    let (id, stored) = (row.id.clone(), signature.clone());
    gateway
        .store
        .run(move |conn| rows::set_signature(conn, &id, &stored))
        .await
        .map_err(DomainError::from)?;
    Ok(signature)
}

/// Whether the patient's consents, read afresh, still permit every entry of the package to
/// go to its recipient: the package's own consent active, and each resource decided again.
async fn still_permitted(
    gateway: &Gateway,
    row: &DisclosureRow,
) -> Result<Vec<Decision>, DomainError> {
    let (patient, recipient, consent_id) = (
        row.patient_id.clone(),
        row.recipient.clone(),
        row.consent_id.clone(),
    );
    let (client, own, consents) = gateway
        .store
        .run(move |conn| {
            let client = identity::active_client(conn, &recipient)?;
            let own = ingest::read(conn, "Consent", &consent_id).ok();
            Ok::<_, DomainError>((client, own, consents::for_patient(conn, &patient)?))
        })
        .await?;
    let own_status = own
        .as_ref()
        .and_then(|c| c["status"].as_str())
        .and_then(ConsentStatus::from_code);
    if own_status != Some(ConsentStatus::Active) {
        return Err(DomainError::gone(
            "disclosure_revoked",
            "the patient revoked this disclosure",
        ));
    }
    let Some(client) = client else {
        return Err(unknown_disclosure());
    };
    let patient = PatientId::parse(&row.patient_id).map_err(DomainError::internal)?;
    let bundle: Value = serde_json::from_str(&row.bundle).map_err(DomainError::internal)?;
    // The records chosen are decided again; a statement of disagreement travels with its
    // record (`amendment::dispute`), so it is not a choice of its own.
    let listed: Vec<String> =
        serde_json::from_str(&row.resources).map_err(DomainError::internal)?;
    let chosen: Vec<Value> = package::entries_of(&bundle)
        .into_iter()
        .filter(|r| listed.contains(&super::reference_of(r)))
        .collect();
    let decisions = package::decide_all(
        gateway,
        &Requester::of(&registry::from_row(client)?),
        &consents,
        &patient,
        &row.purpose,
        &chosen,
    );
    if decisions.iter().all(package::releasable) {
        Ok(decisions)
    } else {
        Err(DomainError::gone(
            "disclosure_withdrawn",
            "the patient's consents no longer permit this disclosure",
        ))
    }
}

/// Serves package `id` to `caller`, its recipient, counting the retrieval and recording it
/// durably (request `request_id`) before anything is returned. Checked in this order: the
/// caller is the recipient, the token's purpose is-a the authorized one, not expired, under
/// the limit, the package's consent active, every entry still permitted.
pub async fn fetch(
    gateway: &Gateway,
    caller: &AccessClaims,
    request_id: &str,
    id: &str,
) -> Result<Served, DomainError> {
    let row = recipients_package(gateway, caller, id).await?;
    if !gateway.purposes.is_a(&caller.purpose_of_use, &row.purpose) {
        return Err(DomainError::forbidden(
            "purpose_mismatch",
            "the token's purpose of use is not the one the patient authorized",
        ));
    }
    let now = now_micros();
    if now > row.expires {
        return Err(DomainError::gone(
            "disclosure_expired",
            "this disclosure has expired",
        ));
    }
    if row.retrievals >= row.max_retrievals {
        return Err(limit_reached());
    }
    let decisions = still_permitted(gateway, &row).await?;
    let signature = current_signature(gateway, &row).await?;
    let id = row.id.clone();
    let claimed = gateway
        .store
        .run(move |conn| rows::claim_retrieval(conn, &id, now))
        .await
        .map_err(DomainError::from)?;
    let Some((retrieval, number)) = claimed else {
        return Err(limit_reached());
    };
    let mut entry = Principal::Client(Box::new(caller.clone())).audit_entry(
        AuditAction::Disclose,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(row.patient_id.clone());
    entry.resources = serde_json::from_str(&row.resources).map_err(DomainError::internal)?;
    let mut consents: BTreeSet<String> = decisions
        .iter()
        .flat_map(|d| d.consent.deciding.iter().map(|p| p.consent_id.clone()))
        .filter(|c| validate::is_valid_id(c))
        .collect();
    consents.insert(row.consent_id.clone());
    entry.consents = consents.into_iter().collect();
    entry.policies = package::policies_of(&decisions);
    entry.detail = BTreeMap::from([
        ("phase".into(), "retrieval".into()),
        ("disclosure".into(), row.id.clone()),
        ("retrieval".into(), number.to_string()),
        ("bundle_sha256".into(), row.bundle_sha256.clone()),
        ("count".into(), entry.resources.len().to_string()),
    ]);
    let seq = match gateway.record(entry).await {
        Ok(seq) => seq,
        Err(e) => {
            // Nothing is sent, so the retrieval is given back.
            let (id, r) = (row.id.clone(), retrieval.clone());
            if let Err(undo) = gateway
                .store
                .run(move |conn| rows::release_retrieval(conn, &id, &r))
                .await
            {
                tracing::error!(error = %undo, disclosure = %row.id, "an unsent retrieval could not be given back");
            }
            return Err(e.into());
        }
    };
    let linked = gateway
        .store
        .run(move |conn| rows::set_retrieval_audit(conn, &retrieval, seq as i64))
        .await;
    if let Err(e) = linked {
        tracing::warn!(error = %e, disclosure = %row.id, "retrieval not linked to its audit entry");
    }
    tracing::info!(disclosure = %row.id, client_id = %caller.client_id, retrieval = number, "disclosure fetched");
    Ok(Served {
        bundle: row.bundle,
        signature,
    })
}

/// The detached JWS of package `id`, for its recipient. It holds no record content, so it
/// stays available after the package expires or is used up, for later checks.
pub async fn signature(
    gateway: &Gateway,
    caller: &AccessClaims,
    id: &str,
) -> Result<String, DomainError> {
    let row = recipients_package(gateway, caller, id).await?;
    current_signature(gateway, &row).await
}
