//! Records sent in through the FHIR API (`POST /fhir/{type}`, `PUT /fhir/{type}/{id}`,
//! Bundles at `POST /fhir`): by an operator, or by a data source (a client with role
//! `data_source`) within its token's write scopes and only over the records it supplied
//! ([`crate::records::source`]). Either way one write transaction per request (per entry of
//! a batch), labelled as at any ingest.
//!
//! **Audit.** A data source is an outside party putting data into patients' records, so each
//! of its writes is accounted for like a recipient's reads: a `write` entry per patient whose
//! records it stored (and one with no patient for records of no patient, such as an
//! Organization), naming the client and listing every `Type/id` stored, durable before the
//! answer. Records an operator writes are not audited, as before: the operator administers the
//! gateway (the same writes come from `consentgate import` on the host, outside any request),
//! and every version is kept with `resource_versions.source_client` empty, so the history
//! says who wrote what. Refused writes leave no trace in the record and no audit entry.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::Value;

use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::records::bundle::{self, Written};
use crate::records::index;
use crate::records::ingest::{self, Stored};
use crate::records::source::Writer;
use crate::store::write_tx;

/// Who writes on behalf of `by`: an operator as the gateway, a data source as itself; anyone
/// else may not write records (403 `forbidden`).
pub fn writer(by: &Principal) -> Result<Writer, DomainError> {
    match by {
        Principal::Operator { .. } => Ok(Writer::Gateway),
        Principal::Client(c) if Role::parse(&c.role) == Some(Role::DataSource) => {
            Ok(Writer::Source {
                client_id: c.client_id.clone(),
                scope: c.scope.clone(),
            })
        }
        _ => Err(DomainError::forbidden(
            "forbidden",
            "only operators and data sources write records",
        )),
    }
}

/// Stores one resource under `id` (a fresh id for a create); audited when a data source
/// writes it.
pub async fn put(
    gateway: &Arc<Gateway>,
    by: &Principal,
    resource_type: String,
    id: String,
    resource: Value,
    request_id: &str,
) -> Result<Stored, DomainError> {
    let who = writer(by)?;
    let (writer, gw) = (who.clone(), Arc::clone(gateway));
    let stored = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let labeller = &gw.institution.labeller;
                ingest::put_labelled(conn, labeller, &writer, &resource_type, &id, resource)
            })
        })
        .await?;
    if who.source().is_some() {
        let written = Written {
            reference: format!("{}/{}", stored.resource_type, stored.id),
            version_id: stored.version_id,
            patient: index::owner(&stored.resource_type, &stored.id, &stored.body)
                .ok()
                .flatten(),
        };
        audit(gateway, by, request_id, &[written]).await?;
    }
    Ok(stored)
}

/// Processes a transaction, batch or collection Bundle; audited when a data source sends it.
pub async fn bundle(
    gateway: &Arc<Gateway>,
    by: &Principal,
    bundle: Value,
    request_id: &str,
) -> Result<Value, DomainError> {
    let who = writer(by)?;
    let (writer, gw) = (who.clone(), Arc::clone(gateway));
    let (response, written) = gateway
        .store
        .run(move |conn| {
            let (limits, labeller) = (&gw.settings.limits, &gw.institution.labeller);
            bundle::process_as(conn, &writer, bundle, limits, labeller)
        })
        .await?;
    if who.source().is_some() && !written.is_empty() {
        audit(gateway, by, request_id, &written).await?;
    }
    Ok(response)
}

/// One `write` entry per patient (and one for records of no patient), each durable.
async fn audit(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    written: &[Written],
) -> Result<(), DomainError> {
    let mut by_patient: BTreeMap<Option<&str>, Vec<String>> = BTreeMap::new();
    for w in written {
        by_patient
            .entry(w.patient.as_deref())
            .or_default()
            .push(w.reference.clone());
    }
    for (patient, resources) in by_patient {
        let mut entry = by.audit_entry(
            AuditAction::Write,
            AuditOutcome::Success,
            request_id.to_string(),
        );
        entry.patient_id = patient.map(str::to_string);
        entry.resources = resources;
        gateway.record(entry).await?;
    }
    Ok(())
}
