//! The three things a recipient client can ask for: one resource, a page of one patient's
//! resources of one type, and everything of one patient. Each reads the patient's consents
//! afresh, decides each resource, shapes what is permitted and records what left, durably,
//! before it returns the bodies to send.
//!
//! A recipient cannot tell a hidden resource from a missing one: a read answers the same
//! `not_found` either way; a search leaves hidden resources out and fills its pages from the
//! permitted ones only, so neither a page size nor a `next` cursor gives them away; a page
//! carries no total.

use std::collections::BTreeMap;

use serde_json::Value;

use super::context::{
    Recipient, requester_and_patient, requester_and_resource, requester_patient_and,
};
use super::decide::{Interaction, Permitted, decide_each, decide_stored};
use super::released::{Payload, Released, shape};
use crate::audit::AuditAction;
use crate::audit::log::Announced;
use crate::auth::Principal;
use crate::auth::tokens::AccessClaims;
use crate::decision::stored::StoredResource;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::policy::PolicyAction;
use crate::records::{ingest, search, validate};
use crate::store::resources as rows;

/// The answer for a resource the recipient may not see or that does not exist: the same.
fn not_known(resource_type: &str, id: &str) -> DomainError {
    ingest::missing(resource_type, id).into()
}

/// Records `released` to `claims`' client in the audit log and waits until it is durable;
/// `announced` is the request's announcement of that entry, made when it began.
async fn record(
    gateway: &Gateway,
    announced: Announced,
    claims: &AccessClaims,
    request_id: &str,
    action: AuditAction,
    patient: &PatientId,
    released: &Released,
) -> Result<(), DomainError> {
    let principal = Principal::Client(Box::new(claims.clone()));
    let entry = released.audit_entry(&principal, action, patient, request_id);
    gateway
        .audit
        .record_announced(Some(announced), entry)
        .await?;
    Ok(())
}

/// `GET /fhir/{type}/{id}` by a recipient: the one resource, shaped, once its release is
/// durable in the audit log.
pub async fn read(
    gateway: &Gateway,
    claims: &AccessClaims,
    request_id: &str,
    resource_type: &str,
    id: &str,
) -> Result<Payload, DomainError> {
    validate::resource_type(resource_type)?;
    let announced = gateway.audit.announce();
    let (requester, found) = requester_and_resource(gateway, claims, resource_type, id).await?;
    // Missing, outside any patient, or hidden: the same answer.
    let Some((resource, context)) = found else {
        return Err(not_known(resource_type, id));
    };
    let patient = context.patient.clone();
    let recipient = Recipient {
        claims,
        requester: &requester,
    };
    let permitted = decide_stored(gateway, recipient, &context, resource, Interaction::Read)
        .into_iter()
        .collect();
    let mut released = shape(gateway, recipient, &context, permitted)?;
    released.mark_disputed(&context.disputed);
    if released.is_empty() {
        return Err(not_known(resource_type, id));
    }
    record(
        gateway,
        announced,
        claims,
        request_id,
        AuditAction::Read,
        &patient,
        &released,
    )
    .await?;
    Ok(released.into_payloads().swap_remove(0))
}

/// One page of a recipient's search.
#[derive(Debug)]
pub struct SearchPage {
    /// The resource type searched.
    pub resource_type: String,
    /// The shaped resources of this page.
    pub resources: Vec<Payload>,
    /// The page size asked for.
    pub page_size: usize,
    /// The search parameters as given, minus paging, for `self` and `next` links.
    pub echo: Vec<(String, String)>,
    /// Where the next page starts, when there is one.
    pub next_cursor: Option<String>,
}

/// `GET /fhir/{type}?patient=...` by a recipient: one page of one patient's resources of
/// one type, filled from permitted resources only.
pub async fn search(
    gateway: &Gateway,
    claims: &AccessClaims,
    request_id: &str,
    resource_type: &str,
    raw_query: &str,
) -> Result<SearchPage, DomainError> {
    let announced = gateway.audit.announce();
    let mut parsed = search::parse(resource_type, raw_query, &gateway.settings.limits)?;
    let [patient] = parsed.query.patient_ids.as_slice() else {
        return Err(DomainError::invalid(
            "patient_required",
            "a recipient searches one patient's records: give exactly one `patient`",
        ));
    };
    let patient = PatientId::parse(patient).map_err(|_| {
        DomainError::invalid(
            "invalid_search_value",
            "`patient` must be an id or a Patient reference",
        )
    })?;
    // Fill the page from permitted resources only, one more than the page to know whether
    // a next page exists, so that hidden resources change neither the page nor the links.
    // The first batch is read in the trip that reads the requester and the patient.
    let want = parsed.count;
    parsed.query.limit = (want as i64 + 1) * 2;
    let q = parsed.query.clone();
    let (requester, context, mut batch) =
        requester_patient_and(gateway, claims, &patient, move |conn| {
            Ok(rows::search(conn, &q)?)
        })
        .await?;
    let recipient = Recipient {
        claims,
        requester: &requester,
    };
    let mut visible: Vec<Permitted> = Vec::new();
    loop {
        let exhausted = batch.len() < parsed.query.limit as usize;
        if let Some((last, _, _)) = batch.last() {
            parsed.query.after_id = Some(last.clone());
        }
        // Decided one at a time (on the facts stored with each, parsed only when they have
        // none or something is to change the body), and no further than the page needs: the
        // batch is twice the page so that a few hidden resources cost no second query, but
        // when none is hidden its second half is never decided.
        for (_, body, facts) in batch {
            if visible.len() > want {
                break;
            }
            let Some(resource) = StoredResource::of_row(body, facts.as_deref()) else {
                continue;
            };
            visible.extend(decide_stored(
                gateway,
                recipient,
                &context,
                resource,
                Interaction::Search,
            ));
        }
        if visible.len() > want || exhausted {
            break;
        }
        let q = parsed.query.clone();
        batch = gateway
            .store
            .run(move |conn| rows::search(conn, &q))
            .await?;
    }
    let has_next = visible.len() > want;
    visible.truncate(want);
    // The cursor is a position among the permitted resources, whatever shaping withholds.
    let next_cursor = visible
        .last()
        .filter(|_| has_next)
        .and_then(|p| p.body.id())
        .map(str::to_string);
    let mut released = shape(gateway, recipient, &context, visible)?;
    released.mark_disputed(&context.disputed);
    record(
        gateway,
        announced,
        claims,
        request_id,
        AuditAction::Search,
        &patient,
        &released,
    )
    .await?;
    Ok(SearchPage {
        resource_type: resource_type.to_string(),
        resources: released.into_payloads(),
        page_size: want,
        echo: parsed.echo,
        next_cursor,
    })
}

/// `GET /fhir/Patient/{id}/$everything` by a recipient: every permitted resource of the
/// patient, shaped.
pub async fn everything(
    gateway: &Gateway,
    claims: &AccessClaims,
    request_id: &str,
    patient: &PatientId,
) -> Result<Vec<Value>, DomainError> {
    let announced = gateway.audit.announce();
    let (requester, context) = requester_and_patient(gateway, claims, patient).await?;
    let p = patient.clone();
    let all = gateway
        .store
        .run(move |conn| rows::current_for_patient(conn, p.as_str()))
        .await?;
    let resources: Vec<Value> = all
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str(&body).ok())
        .collect();
    let recipient = Recipient {
        claims,
        requester: &requester,
    };
    let visible = decide_each(
        gateway,
        recipient,
        &context,
        resources,
        PolicyAction::Read,
        Interaction::Search,
    );
    if visible.is_empty() {
        return Err(not_known("Patient", patient.as_str()));
    }
    let mut released = shape(gateway, recipient, &context, visible)?;
    released.mark_disputed(&context.disputed);
    record(
        gateway,
        announced,
        claims,
        request_id,
        AuditAction::Read,
        patient,
        &released,
    )
    .await?;
    let mut by_type: BTreeMap<&str, usize> = BTreeMap::new();
    for r in released.resources() {
        *by_type.entry(r.resource_type()).or_default() += 1;
    }
    tracing::info!(client_id = %claims.client_id, types = by_type.len(), "everything released");
    let mut bodies = released.into_bodies();
    crate::records::internal::directives_first(&mut bodies);
    Ok(bodies)
}
