//! Corrections: the patient's right to ask for a record to be amended (HIPAA 45 CFR 164.526).
//!
//! The patient (or a delegate allowed `request_amendments`) names one of their records, says
//! what is wrong and what the correction should be ([`file`]). The request waits in a queue
//! with a deadline (`rights.amendment_due_days`, 60 by default), which the answerer may extend
//! once (`rights.amendment_extension_days`, 30) with a reason. The answer ([`answer`]) is an
//! acceptance, which stores the corrected version and a `Provenance` linking the disputed and
//! the corrected versions, or a denial with a reason. A request still pending past its
//! deadline is shown as overdue, and the rights sweep flags it once and tells the patient
//! ([`overdue`]). After a denial the patient may file a statement of disagreement, which
//! from then on travels with every release of the record to a recipient ([`dispute`]).
//!
//! Who answers: the data source that supplied the record (a client with role `data_source`,
//! recorded at ingest as the record's source, `crate::records::source`), from its own queue;
//! the operators answer requests about records with no source, and may answer any. A data
//! source sees only the requests about records it supplied (anyone else's is the same 404 as
//! a missing one), and of each only what it needs to answer ([`view_for_source`]): the
//! record, what is wrong, the correction asked for and the deadline, never who asked or for
//! which patient.
//!
//! Every step is an `amend` audit entry about the patient (`detail.step`, `detail.amendment`,
//! the record in `resources`), so the patient is told of each one (`notify`). The patient's
//! and the answerer's words are stored and shown to the patient and the answerer only: never
//! in the audit entry, a notification or a log.

pub mod answer;
pub mod dispute;
pub mod overdue;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::delegation::Action;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::records::{RecordError, index, ingest, internal, validate};
use crate::store::amendments::{self as rows, AmendmentRow, Listing};
use crate::store::resources;
use crate::store::write_tx;

/// Longest free text (what is wrong, the correction, a reason), in characters.
pub const MAX_TEXT: usize = 4000;
/// Most requests a listing shows.
const LIST_LIMIT: i64 = 200;
/// Microseconds in a day.
pub(crate) const DAY: i64 = 86_400_000_000;

/// A request to amend a record, as the API takes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewAmendment {
    /// The record: `Type/id` (its current version is the one disputed).
    pub record: String,
    /// What is wrong.
    pub what_is_wrong: String,
    /// The correction asked for.
    pub proposed_correction: String,
}

/// A request as the patient and the answerer see it.
#[derive(Debug, Clone, Serialize)]
pub struct AmendmentView {
    /// The request id.
    pub id: String,
    /// The patient (left out of a data source's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// `Type/id/_history/{version}` of the version disputed.
    pub record: String,
    /// `pending`, `accepted` or `denied`.
    pub status: String,
    /// Who answers: the client id of the data source that supplied the record, or `None`
    /// when the operators do.
    pub source: Option<String>,
    /// `Patient/{id}` or `RelatedPerson/{id}` (left out of a data source's view).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requested_by: Option<String>,
    /// What is wrong.
    pub what_is_wrong: String,
    /// The correction asked for.
    pub proposed_correction: String,
    /// When it was asked.
    pub created: String,
    /// When the answer is due.
    pub due: String,
    /// Whether the deadline was extended (once at most), when, and why.
    pub extended_at: Option<String>,
    /// The answerer's reason for the extension.
    pub extension_reason: Option<String>,
    /// Pending past its deadline.
    pub overdue: bool,
    /// When it was answered.
    pub answered_at: Option<String>,
    /// Who answered: `operator` or the data source's client id.
    pub answered_by: Option<String>,
    /// Why it was denied.
    pub denial_reason: Option<String>,
    /// `Type/id/_history/{version}` of the corrected version, on acceptance.
    pub corrected: Option<String>,
    /// `Provenance/{id}` linking both versions, on acceptance.
    pub provenance: Option<String>,
    /// `DocumentReference/{id}` holding the patient's statement of disagreement, once filed.
    pub statement: Option<String>,
}

/// What a stored request looks like.
pub fn view(row: &AmendmentRow, now: i64) -> AmendmentView {
    let version = |v: i64| format!("{}/{}/_history/{v}", row.resource_type, row.resource_id);
    AmendmentView {
        id: row.id.clone(),
        patient: Some(row.patient_id.clone()),
        record: version(row.version_id),
        status: row.status.clone(),
        source: row.source_client.clone(),
        requested_by: Some(row.requested_by.clone()),
        what_is_wrong: row.what_is_wrong.clone(),
        proposed_correction: row.proposed_correction.clone(),
        created: format_instant(row.created),
        due: format_instant(row.due),
        extended_at: row.extended_at.map(format_instant),
        extension_reason: row.extension_reason.clone(),
        overdue: row.status == "pending" && row.due < now,
        answered_at: row.answered_at.map(format_instant),
        answered_by: row.answered_by.clone(),
        denial_reason: row.denial_reason.clone(),
        corrected: row.corrected_version.map(version),
        provenance: row
            .provenance_id
            .as_ref()
            .map(|p| format!("Provenance/{p}")),
        statement: row
            .statement_id
            .as_ref()
            .map(|d| format!("DocumentReference/{d}")),
    }
}

/// What the data source that supplied the record sees of a request: no patient, no requester.
pub fn view_for_source(row: &AmendmentRow, now: i64) -> AmendmentView {
    AmendmentView {
        patient: None,
        requested_by: None,
        ..view(row, now)
    }
}

/// The data source client `by` is, if it is one.
pub(crate) fn data_source(by: &Principal) -> Option<&str> {
    match by {
        Principal::Client(c) if Role::parse(&c.role) == Some(Role::DataSource) => {
            Some(&c.client_id)
        }
        _ => None,
    }
}

/// Whether `by` sees `row`: its patient (or their delegate), the data source that supplied
/// the record, or an operator; the view each gets.
pub(crate) fn visible_to(by: &Principal, row: &AmendmentRow, now: i64) -> Option<AmendmentView> {
    match by {
        Principal::Operator { .. } => Some(view(row, now)),
        Principal::Client(_) => data_source(by)
            .filter(|id| row.source_client.as_deref() == Some(*id))
            .map(|_| view_for_source(row, now)),
        _ => requester(by)
            .ok()
            .filter(|(patient, _)| *patient == row.patient_id)
            .map(|_| view(row, now)),
    }
}

/// Free text of the patient or the answerer: 1 to [`MAX_TEXT`] characters, no control
/// characters other than line breaks and tabs.
pub(crate) fn text(value: &str, field: &str) -> Result<String, DomainError> {
    let v = value.trim();
    let bad = v.is_empty()
        || v.chars().count() > MAX_TEXT
        || v.chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'));
    if bad {
        return Err(DomainError::invalid(
            "invalid_amendment",
            format!("`{field}` must be 1 to {MAX_TEXT} characters of text"),
        ));
    }
    Ok(v.to_string())
}

/// `Type/id` of a record reference.
fn record_of(reference: &str) -> Result<(String, String), DomainError> {
    let bad = || DomainError::invalid("invalid_record", "`record` must be `Type/id`");
    let (ty, id) = reference.split_once('/').ok_or_else(bad)?;
    validate::resource_type(ty).map_err(|_| bad())?;
    validate::id(id).map_err(|_| bad())?;
    Ok((ty.to_string(), id.to_string()))
}

/// The patient `by` asks for, if they may ask for amendments at all.
fn requester(by: &Principal) -> Result<(String, String), DomainError> {
    let patient = by.own_patient().filter(|p| !p.is_empty()).ok_or_else(|| {
        DomainError::forbidden(
            "forbidden",
            "only the patient or their delegate asks for an amendment",
        )
    })?;
    by.may(Action::RequestAmendments)?;
    let who = by
        .person_reference()
        .ok_or_else(|| DomainError::forbidden("forbidden", "not a person"))?;
    Ok((patient.to_string(), who))
}

/// Files a request to amend one of the patient's records; answers it once its audit entry
/// is durable. A record of someone else, or gateway-internal, is the same 404 as a missing one.
pub async fn file(
    gateway: &Gateway,
    by: &Principal,
    ask: NewAmendment,
    request_id: &str,
) -> Result<AmendmentView, DomainError> {
    let (patient, requested_by) = requester(by)?;
    let (ty, id) = record_of(&ask.record)?;
    let what_is_wrong = text(&ask.what_is_wrong, "what_is_wrong")?;
    let proposed_correction = text(&ask.proposed_correction, "proposed_correction")?;
    let now = now_micros();
    let due_days = i64::from(gateway.settings.rights.amendment_due_days);
    let mut row = AmendmentRow {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient,
        resource_type: ty,
        resource_id: id,
        version_id: 0,
        source_client: None,
        status: "pending".into(),
        requested_by,
        what_is_wrong,
        proposed_correction,
        created: now,
        due: now + due_days * DAY,
        extended_at: None,
        extension_reason: None,
        overdue_at: None,
        answered_at: None,
        answered_by: None,
        denial_reason: None,
        corrected_version: None,
        provenance_id: None,
        statement_id: None,
        statement: None,
        statement_at: None,
    };
    let draft = row.clone();
    row = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let mut row = draft;
                let body = ingest::read(conn, &row.resource_type, &row.resource_id)?;
                let owner = index::owner(&row.resource_type, &row.resource_id, &body)
                    .ok()
                    .flatten();
                if owner.as_deref() != Some(row.patient_id.as_str())
                    || internal::is_gateway_internal(&body)
                {
                    return Err(RecordError::not_found(
                        "not_found",
                        format!("{}/{} is not known", row.resource_type, row.resource_id),
                    )
                    .into());
                }
                row.version_id = version_of(&body);
                // The request goes to the data source that supplied the record, if one did.
                row.source_client =
                    resources::current_with_source(conn, &row.resource_type, &row.resource_id)?
                        .and_then(|(_, source)| source);
                rows::insert(conn, &row)?;
                Ok::<_, DomainError>(row)
            })
        })
        .await?;
    record(gateway, by, request_id, &row, "requested").await?;
    Ok(view(&row, now))
}

/// The stored version of a body (`meta.versionId`).
pub(crate) fn version_of(body: &serde_json::Value) -> i64 {
    body.pointer("/meta/versionId")
        .and_then(serde_json::Value::as_str)
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Whose requests `by` lists: the patient's own (a patient, or a delegate allowed to ask);
/// a data source's queue (requests about the records it supplied); an operator every
/// request. `pending_only` narrows to unanswered ones.
pub async fn list(
    gateway: &Gateway,
    by: &Principal,
    pending_only: bool,
) -> Result<Vec<AmendmentView>, DomainError> {
    let listing = match (by, data_source(by)) {
        (Principal::Operator { .. }, _) => Listing::All,
        (_, Some(source)) => Listing::Queue(Some(source.to_string())),
        (Principal::Client(_), None) => {
            return Err(DomainError::forbidden(
                "forbidden",
                "a recipient has no amendment requests",
            ));
        }
        _ => Listing::Patient(requester(by)?.0),
    };
    let found = gateway
        .store
        .run(move |conn| rows::list(conn, &listing, pending_only, LIST_LIMIT))
        .await?;
    let now = now_micros();
    Ok(found
        .iter()
        .filter_map(|r| visible_to(by, r, now))
        .collect())
}

/// One request, if `by` may see it (anyone else's is the same 404 as a missing one).
pub async fn show(
    gateway: &Gateway,
    by: &Principal,
    id: &str,
) -> Result<AmendmentView, DomainError> {
    if !matches!(by, Principal::Client(_) | Principal::Operator { .. }) {
        // A person who may not ask for amendments at all (a delegate without the grant)
        // learns why.
        requester(by)?;
    }
    let row = load(gateway, id).await?;
    visible_to(by, &row, now_micros()).ok_or_else(unknown)
}

/// A stored request, or 404.
pub(crate) async fn load(gateway: &Gateway, id: &str) -> Result<AmendmentRow, DomainError> {
    let key = id.to_string();
    gateway
        .store
        .run(move |conn| rows::find(conn, &key))
        .await?
        .ok_or_else(unknown)
}

/// The refusal of an unknown (or someone else's) request.
pub(crate) fn unknown() -> DomainError {
    DomainError::not_found("unknown_amendment", "no such amendment request")
}

/// Audits one step of `row` by `by`, about the patient, and waits until it is durable.
pub(crate) async fn record(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    row: &AmendmentRow,
    step: &str,
) -> Result<(), DomainError> {
    let mut entry = by.audit_entry(
        AuditAction::Amend,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(row.patient_id.clone());
    entry.resources = vec![format!("{}/{}", row.resource_type, row.resource_id)];
    entry.detail.extend(BTreeMap::from([
        ("amendment".to_string(), row.id.clone()),
        ("step".to_string(), step.to_string()),
    ]));
    gateway.record(entry).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_type_slash_id() {
        assert_eq!(
            record_of("Condition/c-1").unwrap(),
            ("Condition".into(), "c-1".into())
        );
        for bad in [
            "Condition",
            "condition/c1",
            "Condition/c 1",
            "/c1",
            "Condition/",
        ] {
            assert_eq!(record_of(bad).unwrap_err().code, "invalid_record", "{bad}");
        }
    }

    #[test]
    fn free_text_is_bounded() {
        assert_eq!(text("  wrong date\n", "f").unwrap(), "wrong date");
        assert!(text("", "f").is_err());
        assert!(text("a\u{0}b", "f").is_err());
        assert!(text(&"x".repeat(MAX_TEXT + 1), "f").is_err());
        assert!(text("line one\nline two", "f").is_ok());
    }
}
