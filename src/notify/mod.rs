//! Patient notifications: nothing that touches a patient's data goes unseen by the patient.
//!
//! Read `docs/NOTIFICATIONS.md` for the whole design. In short:
//!
//! * **Outbox.** A notification is a row in `notifications`, written in the same database
//!   transaction as the event it reports: [`for_audit_entry`] decides which audit entries
//!   the patient is told of, and the audit writer's group commit passes them to [`enqueue`];
//!   the access-request feature calls [`enqueue_access_request`] inside its own transaction.
//!   Committed together or not at all, a notification is never lost and never written twice.
//! * **Feed.** The patient reads their notifications (newest first, paged by id) and marks
//!   them read; [`view`] is the JSON shape the feed and the webhook share.
//! * **Push.** A patient may register one https webhook ([`webhook`]); each notification
//!   written while it exists gets a row in `notification_deliveries`, which the
//!   [`worker::DeliveryWorker`] sends, signed, with retries. Its state lives in the
//!   database, so a restart resumes where it stopped.
//!
//! Summaries hold ids and codes only (client, organisation, purpose, resource types and a
//! count, consent ids), never record content and never free text such as a break-glass
//! justification: the webhook takes them to a server the gateway does not control.

pub mod inbox;
pub mod webhook;
pub mod worker;

#[cfg(test)]
mod tests;

use serde_json::{Value, json};

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::records::dates::{format_instant, now_micros};
use crate::store::notifications::{self as rows, NotificationRow};
use crate::store::{DbConn, StoreError};

pub use worker::DeliveryWorker;

/// What a notification tells the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// A clinician used break-the-glass emergency access to the patient's records.
    BreakGlass,
    /// A recipient read, searched, exported or was disclosed the patient's records.
    Disclosure,
    /// A recipient asked the patient for access; the patient may approve or decline.
    AccessRequest,
    /// A delegate was named for the patient, or a delegation ended (revoked, or at the
    /// patient's coming of age).
    Delegation,
    /// A delegate acted for the patient; the summary names both.
    DelegateAction,
    /// A step of the patient's request to amend a record (requested, extended, accepted,
    /// denied, overdue).
    Amendment,
}

impl Kind {
    /// The stored and shown code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BreakGlass => "break_glass",
            Self::Disclosure => "disclosure",
            Self::AccessRequest => "access_request",
            Self::Delegation => "delegation",
            Self::DelegateAction => "delegate_action",
            Self::Amendment => "amendment",
        }
    }

    /// The kind of a stored code.
    pub fn parse(code: &str) -> Option<Kind> {
        match code {
            "break_glass" => Some(Self::BreakGlass),
            "disclosure" => Some(Self::Disclosure),
            "access_request" => Some(Self::AccessRequest),
            "delegation" => Some(Self::Delegation),
            "delegate_action" => Some(Self::DelegateAction),
            "amendment" => Some(Self::Amendment),
            _ => None,
        }
    }
}

/// Why a notification could not be written.
#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    /// An id does not have the shape of its kind of id.
    #[error("{0} is not a valid id")]
    InvalidId(&'static str),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NotifyError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidId(_) => "invalid_notification_id",
            Self::Store(_) => "storage_error",
        }
    }
}

/// A notification about to be written.
#[derive(Debug, Clone, PartialEq)]
pub struct NewNotification {
    /// The patient told.
    pub patient_id: String,
    /// What it tells.
    pub kind: Kind,
    /// When the event happened, microseconds since the epoch.
    pub created: i64,
    /// The audit entry reported.
    pub audit_seq: Option<u64>,
    /// The access request reported.
    pub access_request_id: Option<String>,
    /// Ids and codes describing the event.
    pub summary: Value,
}

/// Client ids that are people acting on the gateway, not recipients: their access is not a
/// disclosure to anyone (see `api::audit::entry_for`).
const NOT_RECIPIENTS: [&str; 2] = ["patient", "operator"];

/// The notification an audit entry (with its sequence assigned) calls for, if any: a
/// recipient's successful read, search, export or disclosure of one patient's records is a
/// `disclosure`, or a `break_glass` when break-the-glass access was claimed. One entry gives
/// at most one notification; a break-glass one carries the same facts as a disclosure.
///
/// A delegate's successful action for the patient is a `delegate_action` naming both (reading
/// the notification feed itself excepted: the patient sees the feed anyway); naming or ending
/// a delegation is a `delegation`; each step of an amendment request is an `amendment`.
pub fn for_audit_entry(entry: &AuditEntry) -> Option<NewNotification> {
    let patient_id = entry.patient_id.as_ref()?;
    if entry.outcome == AuditOutcome::Success
        && let Some(notice) = about_delegates(entry, patient_id)
    {
        return notice;
    }
    if entry.action == AuditAction::Amend && entry.outcome == AuditOutcome::Success {
        let mut summary = json!({
            "step": entry.detail.get("step"),
            "amendment": entry.detail.get("amendment"),
            "record": entry.resources.first(),
        });
        // An answer names its answerer: the data source's client id, or `operator`.
        let step = entry.detail.get("step").map(String::as_str);
        if matches!(step, Some("accepted" | "denied" | "extended")) {
            summary["answered_by"] = json!(entry.client_id);
        }
        return Some(NewNotification {
            patient_id: patient_id.clone(),
            kind: Kind::Amendment,
            created: entry.recorded_micros,
            audit_seq: Some(entry.sequence),
            access_request_id: None,
            summary,
        });
    }
    let discloses = matches!(
        entry.action,
        AuditAction::Read | AuditAction::Search | AuditAction::Export | AuditAction::Disclose
    );
    if !discloses
        || entry.outcome != AuditOutcome::Success
        || NOT_RECIPIENTS.contains(&entry.client_id.as_str())
    {
        return None;
    }
    let kind = if entry.break_glass.is_some() {
        Kind::BreakGlass
    } else {
        Kind::Disclosure
    };
    let mut types: Vec<&str> = entry
        .resources
        .iter()
        .filter_map(|r| r.split_once('/').map(|(ty, _)| ty))
        .collect();
    types.sort_unstable();
    types.dedup();
    let mut summary = json!({
        "action": entry.action.as_str(),
        "client_id": entry.client_id,
        "organisation": entry.organisation,
        "purpose_of_use": entry.purpose_of_use,
        "resource_types": types,
        "resource_count": entry.resources.len(),
        "consents": entry.consents,
    });
    if let Some(user) = &entry.user {
        summary["user"] = json!(user);
    }
    if kind == Kind::BreakGlass {
        // The justification is free text; the patient finds it in the access log.
        summary["break_glass"] = json!(true);
    }
    Some(NewNotification {
        patient_id: patient_id.clone(),
        kind,
        created: entry.recorded_micros,
        audit_seq: Some(entry.sequence),
        access_request_id: None,
        summary,
    })
}

/// The notification of a successful entry about delegates (`Some(None)`: about delegates,
/// but nothing to tell); `None` when the entry is not about delegates.
fn about_delegates(entry: &AuditEntry, patient_id: &str) -> Option<Option<NewNotification>> {
    let delegation = entry.detail.get("delegation")?;
    let notice = |kind: Kind, summary: Value| NewNotification {
        patient_id: patient_id.to_string(),
        kind,
        created: entry.recorded_micros,
        audit_seq: Some(entry.sequence),
        access_request_id: None,
        summary,
    };
    if entry.client_id == crate::audit::DELEGATE_CLIENT {
        if entry
            .detail
            .get("view")
            .is_some_and(|v| v == "notifications")
        {
            return Some(None);
        }
        let mut types: Vec<&str> = entry
            .resources
            .iter()
            .filter_map(|r| r.split_once('/').map(|(ty, _)| ty))
            .collect();
        types.sort_unstable();
        types.dedup();
        return Some(Some(notice(
            Kind::DelegateAction,
            json!({
                "action": entry.action.as_str(),
                "delegate": entry.user,
                "on_behalf_of": format!("Patient/{patient_id}"),
                "delegation": delegation,
                "resource_types": types,
                "resource_count": entry.resources.len(),
                "consents": entry.consents,
            }),
        )));
    }
    if !matches!(entry.action, AuditAction::Grant | AuditAction::Revoke) {
        return None;
    }
    let delegate = entry
        .resources
        .iter()
        .find(|r| r.starts_with("RelatedPerson/"))?;
    let mut summary = json!({
        "action": entry.action.as_str(),
        "delegate": delegate,
        "delegation": delegation,
        "relationship": entry.detail.get("relationship"),
    });
    if let Some(reason) = entry.detail.get("reason") {
        summary["reason"] = json!(reason);
    }
    if let Some(actions) = entry.detail.get("actions") {
        summary["actions"] = json!(actions);
    }
    Some(Some(notice(Kind::Delegation, summary)))
}

/// Writes notifications (and their webhook deliveries) in the caller's transaction.
pub fn enqueue(conn: &mut DbConn, notices: &[NewNotification]) -> Result<(), StoreError> {
    if notices.is_empty() {
        return Ok(());
    }
    let now = now_micros();
    let rows: Vec<NotificationRow> = notices.iter().map(row_of).collect();
    rows::insert(conn, &rows, now)
}

fn row_of(n: &NewNotification) -> NotificationRow {
    NotificationRow {
        // Monotonic within the process, so a batch keeps its order in the feed.
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: n.patient_id.clone(),
        kind: n.kind.as_str().to_string(),
        created: n.created,
        audit_seq: n.audit_seq.and_then(|s| i64::try_from(s).ok()),
        access_request_id: n.access_request_id.clone(),
        summary: n.summary.to_string(),
        read_at: None,
    }
}

/// Tells the patient of a pending access request. Call inside the transaction that stores
/// the request, so both commit or neither does. Idempotent: a second call for the same
/// request returns the first notification's id. Returns the notification id.
pub fn enqueue_access_request(
    conn: &mut DbConn,
    patient_id: &str,
    request_id: &str,
) -> Result<String, NotifyError> {
    if !is_fhir_id(patient_id) {
        return Err(NotifyError::InvalidId("patient_id"));
    }
    if !is_token(request_id) {
        return Err(NotifyError::InvalidId("request_id"));
    }
    if let Some(existing) = rows::by_access_request(conn, request_id)? {
        return Ok(existing.id);
    }
    let row = row_of(&NewNotification {
        patient_id: patient_id.to_string(),
        kind: Kind::AccessRequest,
        created: now_micros(),
        audit_seq: None,
        access_request_id: Some(request_id.to_string()),
        summary: json!({ "request_id": request_id }),
    });
    rows::insert(conn, std::slice::from_ref(&row), row.created)?;
    Ok(row.id)
}

/// The JSON shape of a notification, shared by the feed and the webhook body. `read_at` is
/// left out for the webhook (`with_read_state = false`): it changes after sending.
pub fn view(row: &NotificationRow, with_read_state: bool) -> Value {
    let summary: Value = serde_json::from_str(&row.summary).unwrap_or_else(|_| json!({}));
    let mut out = json!({
        "id": row.id,
        "patient_id": row.patient_id,
        "kind": row.kind,
        "created": format_instant(row.created),
        "audit_seq": row.audit_seq,
        "access_request_id": row.access_request_id,
        "summary": summary,
    });
    if with_read_state {
        out["read_at"] = json!(row.read_at.map(format_instant));
    }
    out
}

/// A FHIR R4 `id`: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// An opaque identifier: 1 to 256 characters, no whitespace or control characters.
fn is_token(s: &str) -> bool {
    (1..=256).contains(&s.chars().count())
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}
