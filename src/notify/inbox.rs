//! The patient's side of notifications: reading the feed, marking one read, and choosing
//! where notifications go (the webhook).
//!
//! Marking read and choosing the webhook are the patient's decisions, so an operator may look
//! but do neither, except removing a misbehaving webhook. An operator's look at a patient's
//! feed is audited; a patient's look at their own is not (it discloses nothing to anyone
//! else).

use serde_json::Value;

use super::webhook;
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::net::OutboundGuard;
use crate::store::notifications::{self as rows, FeedQuery, WebhookRow};
use crate::store::{read_tx, write_tx};

/// Who may do something to a patient's notifications.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Allowed {
    /// The patient themself or an operator.
    PatientOrOperator,
    /// The patient themself only.
    PatientOnly,
}

fn authorize(by: &Principal, patient: &PatientId, allowed: Allowed) -> Result<(), DomainError> {
    match (by, allowed) {
        (Principal::Patient { patient_id, .. }, _) if *patient == *patient_id.as_str() => Ok(()),
        // A delegate allowed to view the access log also reads (and marks) the feed; the
        // webhook stays the patient's own.
        (Principal::Delegate(d), Allowed::PatientOrOperator)
            if *patient == *d.patient_id.as_str() =>
        {
            by.may(crate::delegation::Action::ViewAccessLog)
        }
        (Principal::Operator { .. }, Allowed::PatientOrOperator) => Ok(()),
        (Principal::Operator { .. }, Allowed::PatientOnly) => Err(DomainError::forbidden(
            "patient_only",
            "only the patient may do this",
        )),
        _ => Err(DomainError::forbidden(
            "forbidden",
            "a patient reaches only their own notifications",
        )),
    }
}

fn no_webhook() -> DomainError {
    DomainError::not_found("no_webhook", "the patient has no webhook registered")
}

/// One page of the feed, newest first.
#[derive(Debug, Clone)]
pub struct FeedPage {
    /// The notifications, as the API shows them.
    pub items: Vec<Value>,
    /// How many are unread in all.
    pub unread: i64,
    /// The id to page on from, when there is a next page.
    pub next_before: Option<String>,
}

/// The page of `query` (its `limit` is the page size): the stored notifications and those
/// derived from the patient's audit entries, merged in id order. Entries are durable before
/// any answer they record is sent, so an answer a recipient has had is in a feed read after.
pub async fn feed(
    gateway: &Gateway,
    by: &Principal,
    request_id: &str,
    patient: &PatientId,
    query: &FeedQuery,
) -> Result<FeedPage, DomainError> {
    authorize(by, patient, Allowed::PatientOrOperator)?;
    let page = FeedQuery {
        patient_id: patient.as_str().to_string(),
        limit: query.limit + 1,
        ..query.clone()
    };
    let below = query.before.as_deref().map(derived_bound);
    let (mut found, unread) = gateway
        .store
        .run(move |conn| {
            // One snapshot on SQLite, so the count agrees with the page.
            read_tx(conn, |conn| {
                let mut found = rows::feed(conn, &page)?;
                found.extend(
                    rows::derived_page(conn, &page, below)?
                        .iter()
                        .filter_map(|(entry, read_at)| super::derived(entry, *read_at)),
                );
                let unread = rows::unread_count(conn, &page.patient_id)?;
                Ok::<_, DomainError>((found, unread))
            })
        })
        .await?;
    // Ids compare as the notifications' order; both sources came newest first.
    found.sort_unstable_by(|a, b| b.id.cmp(&a.id));
    let more = found.len() as i64 > query.limit;
    found.truncate(query.limit as usize);
    // The patient reading their own feed is not audited; an operator or a delegate is.
    if !matches!(by, Principal::Patient { .. }) {
        let mut entry = by.audit_entry(
            AuditAction::Read,
            AuditOutcome::Success,
            request_id.to_string(),
        );
        entry.patient_id = Some(patient.as_str().to_string());
        entry.detail.insert("view".into(), "notifications".into());
        entry.detail.insert("count".into(), found.len().to_string());
        gateway.record(entry).await?;
    }
    Ok(FeedPage {
        next_before: found.last().filter(|_| more).map(|last| last.id.clone()),
        items: found.iter().map(|row| super::view(row, true)).collect(),
        unread,
    })
}

/// The derived notifications below the cursor id `before`, as an exclusive `(recorded,
/// seq)` bound: a derived id gives its own; any other (a stored notification's UUIDv7)
/// comes after the derived ids of earlier milliseconds (its first 48 bits) and before those
/// of its own, whose version nibble, 8, is higher. The API checked it is a UUID.
fn derived_bound(before: &str) -> (i64, i64) {
    let Ok(id) = uuid::Uuid::parse_str(before) else {
        return (i64::MIN, i64::MIN);
    };
    if let Some(bound) = super::parse_derived_id(&id) {
        return bound;
    }
    (super::millis_of(&id) * 1000, 0)
}

/// Marks notification `id` read (idempotent: the first time is kept); the patient only.
pub async fn mark_read(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
    id: &str,
) -> Result<Value, DomainError> {
    authorize(by, patient, Allowed::PatientOnly)?;
    let unknown = || {
        DomainError::not_found(
            "unknown_notification",
            "the patient has no such notification",
        )
    };
    let id = uuid::Uuid::parse_str(id).map_err(|_| unknown())?;
    let derived = super::parse_derived_id(&id);
    let id = id.hyphenated().to_string();
    let patient_id = patient.as_str().to_string();
    let now = now_micros();
    let row = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let Some(position) = derived else {
                    return Ok::<_, DomainError>(rows::mark_read(conn, &patient_id, &id, now)?);
                };
                Ok(rows::mark_derived_read(conn, &patient_id, position, now)?
                    .and_then(|(entry, read_at)| super::derived(&entry, Some(read_at)))
                    // The id names this entry's notification, not another shape of it.
                    .filter(|row| row.id == id))
            })
        })
        .await?
        .ok_or_else(unknown)?;
    Ok(super::view(&row, true))
}

/// The webhook registration (its secret too: the caller shows it only when just made).
pub async fn webhook(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
) -> Result<WebhookRow, DomainError> {
    authorize(by, patient, Allowed::PatientOrOperator)?;
    let patient_id = patient.as_str().to_string();
    gateway
        .store
        .run(move |conn| Ok::<_, DomainError>(rows::webhook(conn, &patient_id)?))
        .await?
        .ok_or_else(no_webhook)
}

/// Registers or replaces the webhook with a new signing secret; the patient only. Returns the
/// registration and whether it replaced one.
pub async fn put_webhook(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
    url: &str,
) -> Result<(WebhookRow, bool), DomainError> {
    authorize(by, patient, Allowed::PatientOnly)?;
    let guard =
        OutboundGuard::from_settings(&gateway.settings.outbound).map_err(DomainError::internal)?;
    let url = webhook::validate_url_with(url, &guard)
        .map_err(|e| DomainError::unprocessable(e.code(), e.to_string()))?;
    let secret =
        webhook::new_secret().map_err(|_| DomainError::internal("secret generation failed"))?;
    let row = WebhookRow {
        patient_id: patient.as_str().to_string(),
        url,
        secret,
        created: now_micros(),
    };
    let stored = row.clone();
    let replaced = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                Ok::<_, DomainError>(rows::put_webhook(conn, &stored)?)
            })
        })
        .await?;
    tracing::info!(patient_id = %patient, replaced, "notification webhook registered");
    Ok((row, replaced))
}

/// Removes the webhook and cancels its pending deliveries (the patient, or an operator
/// stopping a misbehaving endpoint).
pub async fn delete_webhook(
    gateway: &Gateway,
    by: &Principal,
    patient: &PatientId,
) -> Result<(), DomainError> {
    authorize(by, patient, Allowed::PatientOrOperator)?;
    let target = patient.as_str().to_string();
    let removed = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                Ok::<_, DomainError>(rows::delete_webhook(conn, &target)?)
            })
        })
        .await?;
    if !removed {
        return Err(no_webhook());
    }
    tracing::info!(patient_id = %patient, "notification webhook removed");
    Ok(())
}
