//! Answering a request to amend: accept (the corrected version is stored with a `Provenance`
//! linking it to the disputed one), deny (with a reason), or extend the deadline once (with a
//! reason). Each is one conditional update on a pending request, so of two concurrent answers
//! exactly one wins; the other is `409 amendment_answered`.

use serde::Deserialize;
use serde_json::{Value, json};

use super::{AmendmentView, DAY, data_source, load, record, text, unknown, visible_to};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::records::source::Writer;
use crate::records::{ingest, validate};
use crate::store::amendments::{self as rows, AmendmentRow};
use crate::store::write_tx;

/// An answer, as the API takes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(tag = "decision", rename_all = "snake_case", deny_unknown_fields)]
pub enum Answer {
    /// Accept: the corrected resource (same type and id as the disputed record).
    Accept {
        /// The corrected resource.
        #[schema(value_type = Object)]
        resource: Value,
    },
    /// Deny, with the reason the patient is given.
    Deny {
        /// Why.
        reason: String,
    },
    /// Take the one extension, with the reason the patient is given.
    Extend {
        /// Why.
        reason: String,
    },
}

/// Who answers `row`, as recorded on the request, and as whom the corrected version is
/// written: an operator (any request), or the data source that supplied the record (its own
/// requests only; anyone else's is the same 404 as a missing one). Anyone else is refused.
fn answerer(by: &Principal, row: &AmendmentRow) -> Result<(String, Writer), DomainError> {
    if let Principal::Operator { .. } = by {
        return Ok((crate::audit::OPERATOR_CLIENT.to_string(), Writer::Gateway));
    }
    match (by, data_source(by)) {
        (Principal::Client(c), Some(source)) if row.source_client.as_deref() == Some(source) => {
            Ok((
                source.to_string(),
                Writer::Source {
                    client_id: source.to_string(),
                    scope: c.scope.clone(),
                },
            ))
        }
        (Principal::Client(_), _) => Err(unknown()),
        _ => Err(not_an_answerer()),
    }
}

fn not_an_answerer() -> DomainError {
    DomainError::forbidden(
        "forbidden",
        "only the record's answerer answers an amendment request",
    )
}

fn answered() -> DomainError {
    DomainError::conflict(
        "amendment_answered",
        "this request is no longer pending, or its one extension was taken",
    )
}

/// The Provenance that links the corrected version to the disputed one; its author is the
/// answerer (`author`: a data source's client id under `{base}/api/v1/clients`, or the
/// operators).
fn provenance(id: &str, row: &AmendmentRow, corrected: i64, now: i64, author: Value) -> Value {
    let version = |v: i64| json!({"reference": format!("{}/{}/_history/{v}", row.resource_type, row.resource_id)});
    json!({
        "resourceType": "Provenance",
        "id": id,
        "target": [version(corrected)],
        "recorded": format_instant(now),
        "reason": [{"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason",
            "code": "PATRQT", "display": "patient requested"}]}],
        "activity": {"coding": [{
            "system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation",
            "code": "UPDATE"}]},
        "agent": [
            {"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "author"}]},
             "who": author},
            {"type": {"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type",
                "code": "informant"}]},
             "who": {"reference": format!("Patient/{}", row.patient_id)}},
        ],
        "entity": [{"role": "revision", "what": version(row.version_id)}],
    })
}

/// Answers request `id`; the patient is told through the step's audit entry.
pub async fn answer(
    gateway: &Gateway,
    by: &Principal,
    id: &str,
    answer: Answer,
    request_id: &str,
) -> Result<AmendmentView, DomainError> {
    // A patient or a delegate never answers, whichever request they name.
    if !matches!(by, Principal::Operator { .. } | Principal::Client(_)) {
        return Err(not_an_answerer());
    }
    let row = load(gateway, id).await?;
    let (who, writer) = answerer(by, &row)?;
    let now = now_micros();
    let step = match answer {
        Answer::Accept { resource } => {
            accept(gateway, &row, (who, writer), resource, now).await?;
            "accepted"
        }
        Answer::Deny { reason } => {
            let reason = text(&reason, "reason")?;
            let key = row.id.clone();
            let done = gateway
                .store
                .run(move |conn| rows::deny(conn, &key, now, &who, &reason))
                .await?;
            if !done {
                return Err(answered());
            }
            "denied"
        }
        Answer::Extend { reason } => {
            let reason = text(&reason, "reason")?;
            let days = i64::from(gateway.settings.rights.amendment_extension_days);
            if days == 0 {
                return Err(DomainError::unprocessable(
                    "no_extension",
                    "this gateway allows no extension",
                ));
            }
            let (key, due) = (row.id.clone(), row.due + days * DAY);
            let done = gateway
                .store
                .run(move |conn| rows::extend(conn, &key, now, due, &reason))
                .await?;
            if !done {
                return Err(answered());
            }
            "extended"
        }
    };
    let row = load(gateway, id).await?;
    record(gateway, by, request_id, &row, step).await?;
    visible_to(by, &row, now).ok_or_else(unknown)
}

/// Stores the corrected version and its Provenance, and marks the request accepted, in one
/// transaction.
async fn accept(
    gateway: &Gateway,
    row: &AmendmentRow,
    (who, writer): (String, Writer),
    mut resource: Value,
    now: i64,
) -> Result<(), DomainError> {
    let body_type = validate::resource(&resource)?.to_string();
    let same_record = body_type == row.resource_type
        && resource
            .get("id")
            .is_none_or(|i| i.as_str() == Some(row.resource_id.as_str()));
    if !same_record {
        return Err(DomainError::invalid(
            "not_the_record",
            "the corrected resource must have the disputed record's type and id",
        ));
    }
    resource["id"] = json!(row.resource_id);
    // Labelled as at ingest: the correction may change what is sensitive.
    gateway
        .institution
        .labeller
        .apply(&mut resource)
        .map_err(|e| DomainError::invalid(e.code(), e.to_string()))?;
    let author = match writer.source() {
        Some(client) => json!({"identifier": {
            "system": format!("{}/api/v1/clients", gateway.base_url), "value": client}}),
        None => json!({"display": "consentgate operator"}),
    };
    let (row, provenance_id) = (row.clone(), ingest::new_id());
    gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let pending = rows::find(conn, &row.id)?.is_some_and(|r| r.status == "pending");
                if !pending {
                    return Err(answered());
                }
                // Still there (a PUT would otherwise create it).
                ingest::read(conn, &row.resource_type, &row.resource_id)?;
                // The answerer's write: a data source within its scopes, as at its own ingest.
                let stored = ingest::put_as(
                    conn,
                    &writer,
                    &row.resource_type,
                    &row.resource_id,
                    resource,
                )?;
                let owner = crate::records::index::owner(
                    &row.resource_type,
                    &row.resource_id,
                    &stored.body,
                )
                .ok()
                .flatten();
                if owner.as_deref() != Some(row.patient_id.as_str()) {
                    return Err(DomainError::invalid(
                        "not_the_record",
                        "the corrected resource must stay the same patient's",
                    ));
                }
                let prov = provenance(&provenance_id, &row, stored.version_id, now, author);
                ingest::put(conn, "Provenance", &provenance_id, prov)?;
                if !rows::accept(conn, &row.id, now, &who, stored.version_id, &provenance_id)? {
                    return Err(answered());
                }
                Ok(())
            })
        })
        .await
}
