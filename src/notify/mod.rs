//! Patient notifications: nothing that touches a patient's data goes unseen by the patient.
//!
//! Read `docs/NOTIFICATIONS.md` for the whole design. In short:
//!
//! * **Derived from the audit log.** Every notification but an access request's reports one
//!   audit entry. The audit writer stores with each entry the kind of notification it calls
//!   for ([`kind_of`], the entry's `notice` column), in the entry's own row, so a durable
//!   entry is always told, once; [`derived`] builds the notification from the entry when the
//!   feed or the webhook worker reads it, with an id made from the entry ([`derived_id`]).
//! * **Stored.** An access request's notification is a row in `notifications`, written by
//!   [`enqueue_access_request`] inside the request's own transaction; so are the
//!   notifications of entries from before derivation, kept as they were.
//! * **Feed.** The patient reads their notifications (newest first, paged by id) and marks
//!   them read; [`view`] is the JSON shape the feed and the webhook share.
//! * **Push.** A patient may register one https webhook ([`webhook`]); each notification
//!   of an event after its registration gets a row in `notification_deliveries` (a derived
//!   one when the worker next looks at the log), which the [`worker::DeliveryWorker`]
//!   sends, signed, with retries. Its state lives in the
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
use crate::store::audit::EntryRow;
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
    /// One of the patient's SMART Health Links was made, opened, locked by wrong passcodes
    /// or deactivated.
    ShareLink,
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
            Self::ShareLink => "share_link",
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
            "share_link" => Some(Self::ShareLink),
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

/// The kind of notification an audit entry calls for, if any: a recipient's successful
/// read, search, export or disclosure of one patient's records is a `disclosure`, or a
/// `break_glass` when break-the-glass access was claimed. One entry gives at most one
/// notification.
///
/// A delegate's successful action for the patient is a `delegate_action` (reading the
/// notification feed itself excepted: the patient sees the feed anyway); naming or ending a
/// delegation is a `delegation`; each step of an amendment request is an `amendment`. Each
/// step of a SMART Health Link (made, opened, locked, deactivated) is a `share_link`.
///
/// The audit writer stores this kind with the entry (`audit_entries.notice`); the feed and the
/// webhook derive the rest ([`for_audit_entry`]) when they read it. Cheap: no allocation.
pub fn kind_of(entry: &AuditEntry) -> Option<Kind> {
    entry.patient_id.as_ref()?;
    if entry.outcome == AuditOutcome::Success
        && let Some(kind) = about_delegates(entry)
    {
        return kind;
    }
    if entry.detail.contains_key("share_link") {
        let locked = entry.detail.get("locked").is_some_and(|v| v == "true");
        return (entry.outcome == AuditOutcome::Success || locked).then_some(Kind::ShareLink);
    }
    if entry.action == AuditAction::Amend && entry.outcome == AuditOutcome::Success {
        return Some(Kind::Amendment);
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
    Some(if entry.break_glass.is_some() {
        Kind::BreakGlass
    } else {
        Kind::Disclosure
    })
}

/// The kind of a successful entry about delegates (`Some(None)`: about delegates, but nothing
/// to tell); `None` when the entry is not about delegates.
fn about_delegates(entry: &AuditEntry) -> Option<Option<Kind>> {
    entry.detail.get("delegation")?;
    if entry.client_id == crate::audit::DELEGATE_CLIENT {
        let feed = entry
            .detail
            .get("view")
            .is_some_and(|v| v == "notifications");
        return Some((!feed).then_some(Kind::DelegateAction));
    }
    let names_delegate = matches!(entry.action, AuditAction::Grant | AuditAction::Revoke)
        && entry
            .resources
            .iter()
            .any(|r| r.starts_with("RelatedPerson/"));
    names_delegate.then_some(Some(Kind::Delegation))
}

/// The notification an audit entry (with its sequence assigned) calls for, if any: its kind
/// ([`kind_of`]) and a summary of ids and codes. A break-glass notification carries the same
/// facts as a disclosure, and `break_glass: true`.
pub fn for_audit_entry(entry: &AuditEntry) -> Option<NewNotification> {
    let kind = kind_of(entry)?;
    let patient_id = entry.patient_id.as_ref()?;
    Some(NewNotification {
        patient_id: patient_id.clone(),
        kind,
        created: entry.recorded_micros,
        audit_seq: Some(entry.sequence),
        access_request_id: None,
        summary: summary_of(entry, kind, patient_id),
    })
}

/// The summary of `entry`'s notification of `kind`.
fn summary_of(entry: &AuditEntry, kind: Kind, patient_id: &str) -> Value {
    let detail = |key: &str| entry.detail.get(key);
    match kind {
        Kind::DelegateAction => json!({
            "action": entry.action.as_str(),
            "delegate": entry.user,
            "on_behalf_of": format!("Patient/{patient_id}"),
            "delegation": detail("delegation"),
            "resource_types": resource_types(entry),
            "resource_count": entry.resources.len(),
            "consents": entry.consents,
        }),
        Kind::Delegation => {
            let mut summary = json!({
                "action": entry.action.as_str(),
                "delegate": entry.resources.iter().find(|r| r.starts_with("RelatedPerson/")),
                "delegation": detail("delegation"),
                "relationship": detail("relationship"),
            });
            if let Some(reason) = detail("reason") {
                summary["reason"] = json!(reason);
            }
            if let Some(actions) = detail("actions") {
                summary["actions"] = json!(actions);
            }
            summary
        }
        // The recipient's own words stay out: they are free text, and the access log shows
        // them. A wrong passcode is told only when it locked the link.
        Kind::ShareLink => {
            let locked = detail("locked").is_some_and(|v| v == "true");
            let step = if locked {
                "locked"
            } else {
                detail("step").map_or("", String::as_str)
            };
            json!({
                "step": step,
                "share_link": detail("share_link"),
                "resource_types": resource_types(entry),
                "resource_count": entry.resources.len(),
            })
        }
        Kind::Amendment => {
            let mut summary = json!({
                "step": detail("step"),
                "amendment": detail("amendment"),
                "record": entry.resources.first(),
            });
            // An answer names its answerer: the data source's client id, or `operator`.
            if matches!(
                detail("step").map(String::as_str),
                Some("accepted" | "denied" | "extended")
            ) {
                summary["answered_by"] = json!(entry.client_id);
            }
            summary
        }
        Kind::Disclosure | Kind::BreakGlass | Kind::AccessRequest => {
            let mut summary = json!({
                "action": entry.action.as_str(),
                "client_id": entry.client_id,
                "organisation": entry.organisation,
                "purpose_of_use": entry.purpose_of_use,
                "resource_types": resource_types(entry),
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
            summary
        }
    }
}

/// The resource types an entry names, sorted, each once.
fn resource_types(entry: &AuditEntry) -> Vec<&str> {
    let mut types: Vec<&str> = entry
        .resources
        .iter()
        .filter_map(|r| r.split_once('/').map(|(ty, _)| ty))
        .collect();
    types.sort_unstable();
    types.dedup();
    types
}

/// The id of the notification derived from the entry `seq` recorded at `recorded`
/// (microseconds since the epoch): a UUIDv8 laid out so that ids compare as the entries'
/// `(recorded, seq)` do, and after every UUIDv7 (a stored notification's id) of the same
/// millisecond:
///
/// ```text
/// bits 0-47    the millisecond (as a UUIDv7's)    48-51  version 8
/// bits 52-63   the microsecond within it (0-999)  64-65  variant 10
/// bits 66-127  seq (below 2^62)
/// ```
///
/// The same entry always has the same id. `None` for a time before the epoch or past year
/// 10889, or a sequence of 2^62 or more.
pub fn derived_id(recorded: i64, seq: i64) -> Option<String> {
    let recorded = u64::try_from(recorded).ok()?;
    let millis = Some(recorded / 1000).filter(|m| *m < 1 << 48)?;
    let micros = (recorded % 1000) as u16;
    let seq = u64::try_from(seq).ok().filter(|s| *s < 1 << 62)?;
    let mut bytes = [0u8; 16];
    bytes[..6].copy_from_slice(&millis.to_be_bytes()[2..]);
    bytes[6] = 0x80 | (micros >> 8) as u8;
    bytes[7] = micros as u8;
    bytes[8..].copy_from_slice(&seq.to_be_bytes());
    bytes[8] |= 0x80;
    Some(uuid::Uuid::from_bytes(bytes).hyphenated().to_string())
}

/// The `(recorded, seq)` of a derived notification's id ([`derived_id`]); `None` for any
/// other id, a stored notification's included.
pub fn parse_derived_id(id: &uuid::Uuid) -> Option<(i64, i64)> {
    let b = id.as_bytes();
    if b[6] >> 4 != 8 || b[8] >> 6 != 0b10 {
        return None;
    }
    let micros = i64::from(u16::from(b[6] & 0x0f) << 8 | u16::from(b[7]));
    if micros >= 1000 {
        return None;
    }
    let mut seq = [0u8; 8];
    seq.copy_from_slice(&b[8..]);
    seq[0] &= 0x3f;
    let seq = i64::try_from(u64::from_be_bytes(seq)).ok()?;
    Some((millis_of(id) * 1000 + micros, seq))
}

/// The millisecond in a UUID's first 48 bits (a UUIDv7's time, and a derived id's).
pub fn millis_of(id: &uuid::Uuid) -> i64 {
    let mut millis = [0u8; 8];
    millis[2..].copy_from_slice(&id.as_bytes()[..6]);
    i64::from_be_bytes(millis)
}

/// The notification a stored entry calls for, as the feed and the webhook show it: its
/// derived id, kind and summary ([`for_audit_entry`]), read when `read_at` is set. `None`
/// when the entry calls for none (or no longer parses: logged by its sequence).
pub fn derived(entry: &EntryRow, read_at: Option<i64>) -> Option<NotificationRow> {
    let parsed: AuditEntry = serde_json::from_str(&entry.body)
        .inspect_err(|_| tracing::error!(seq = entry.seq, "stored audit entry does not parse"))
        .ok()?;
    let notice = for_audit_entry(&parsed)?;
    Some(NotificationRow {
        id: derived_id(entry.recorded, entry.seq)?,
        patient_id: notice.patient_id,
        kind: notice.kind.as_str().to_string(),
        created: entry.recorded,
        audit_seq: Some(entry.seq),
        access_request_id: None,
        summary: notice.summary.to_string(),
        read_at,
    })
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
    let row = NotificationRow {
        id: uuid::Uuid::now_v7().to_string(),
        patient_id: patient_id.to_string(),
        kind: Kind::AccessRequest.as_str().to_string(),
        created: now_micros(),
        audit_seq: None,
        access_request_id: Some(request_id.to_string()),
        summary: json!({ "request_id": request_id }).to_string(),
        read_at: None,
    };
    rows::insert(conn, &row)?;
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
