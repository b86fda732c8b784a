//! Opening a link, as the SMART Health Links specification has a receiver do it: the
//! manifest request (recipient, passcode, `embeddedLengthMax`) and the file behind a
//! single-use ticket. Nobody authenticates: the manifest URL's 256-bit id is the capability.
//!
//! Passcode guesses are bounded over the link's whole life, also against parallel requests:
//! an attempt is counted before the passcode is checked and given back when it was right
//! (`store::share_links::take_attempt`), so at most [`MAX_WRONG_PASSCODES`] wrong ones are
//! ever tried; the last deactivates the link. A use is counted by one conditional update per
//! manifest request, so the limit holds on every instance.

use serde::Deserialize;

use super::{
    MAX_WRONG_PASSCODES, PASSCODE_CHARS, SHARE_LINK_CLIENT, TICKET_LIFETIME_SECS, about, crypto,
    resources_of, unknown,
};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::store::share_links::{self as rows, ShareLinkRow};
use crate::store::{StoreError, write_tx};

/// Longest recipient description.
pub const MAX_RECIPIENT_CHARS: usize = 200;

/// The manifest request's body. Unknown members are ignored, as the specification asks.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
pub struct ManifestRequest {
    /// Who is asking, shown to the patient in their access log (1 to 200 characters).
    pub recipient: String,
    /// The passcode, when the link has the `P` flag (at most 100 characters).
    #[serde(default)]
    pub passcode: Option<String>,
    /// The longest file the receiver takes embedded in the manifest.
    #[serde(default, rename = "embeddedLengthMax")]
    pub embedded_length_max: Option<u64>,
}

impl std::fmt::Debug for ManifestRequest {
    /// The passcode is a secret, the recipient free text: neither is printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ManifestRequest")
            .field("embedded_length_max", &self.embedded_length_max)
            .finish_non_exhaustive()
    }
}

/// What a manifest request gets.
#[derive(Debug)]
pub enum ManifestAnswer {
    /// The manifest: the one file, embedded or at a ticket URL.
    Files(serde_json::Value),
    /// A missing or wrong passcode: 401 with how many attempts remain.
    WrongPasscode {
        /// Wrong passcodes the link still survives.
        remaining_attempts: i64,
    },
}

/// What looking a link up for a manifest request found.
enum Step {
    /// Unknown or no longer active.
    Unknown,
    /// A passcode is needed and none came: how many attempts remain.
    NoPasscode(i64),
    /// A passcode came; one attempt is taken and it must be checked.
    Check(ShareLinkRow),
    /// No passcode is needed.
    Open(ShareLinkRow),
}

fn recipient(text: &str) -> Result<String, DomainError> {
    let r = text.trim();
    let n = r.chars().count();
    if n == 0 || n > MAX_RECIPIENT_CHARS || r.chars().any(char::is_control) {
        return Err(DomainError::invalid(
            "invalid_recipient",
            format!("`recipient` must be 1 to {MAX_RECIPIENT_CHARS} characters of text"),
        ));
    }
    Ok(r.to_string())
}

/// Whether a link still answers manifest requests at `now`.
fn live(row: &ShareLinkRow, now: i64) -> bool {
    row.deactivated_at.is_none()
        && row.expires.is_none_or(|e| e > now)
        && row.max_uses.is_none_or(|m| row.uses < m)
}

/// Answers a manifest request for link `id`.
pub async fn manifest(
    gateway: &Gateway,
    id: &str,
    ask: ManifestRequest,
    request_id: &str,
) -> Result<ManifestAnswer, DomainError> {
    let recipient = recipient(&ask.recipient)?;
    if ask
        .passcode
        .as_deref()
        .is_some_and(|p| p.chars().count() > PASSCODE_CHARS.1)
    {
        return Err(DomainError::invalid(
            "invalid_passcode",
            format!("`passcode` is at most {} characters", PASSCODE_CHARS.1),
        ));
    }
    if !crypto::is_token(id) {
        return Err(unknown());
    }
    let key = id.to_string();
    let now = now_micros();
    let given = ask.passcode.clone();
    let looked_up = {
        let key = key.clone();
        gateway
            .store
            .run(move |conn| {
                let Some(row) = rows::find(conn, &key)?.filter(|r| live(r, now)) else {
                    return Ok::<_, StoreError>(Step::Unknown);
                };
                if row.passcode_hash.is_none() {
                    return Ok(Step::Open(row));
                }
                if given.is_none() {
                    return Ok(Step::NoPasscode(MAX_WRONG_PASSCODES - row.failed_passcodes));
                }
                // Counted before the check, so parallel guesses cannot exceed the limit.
                if !rows::take_attempt(conn, &key, MAX_WRONG_PASSCODES)? {
                    return Ok(Step::Unknown);
                }
                Ok(Step::Check(row))
            })
            .await?
    };
    let row = match looked_up {
        Step::Open(row) => row,
        Step::Check(row) => {
            // PBKDF2 takes a while on purpose: on the blocking pool, holding no connection.
            let (hash, passcode) = (
                row.passcode_hash.clone().unwrap_or_default(),
                ask.passcode.clone().unwrap_or_default(),
            );
            let right =
                crate::cpus::spawn_blocking(move || crypto::passcode_matches(&hash, &passcode))
                    .await
                    .map_err(|e| DomainError::internal(format!("passcode check: {e}")))?;
            let key = key.clone();
            if !right {
                let failed = gateway
                    .store
                    .run(move |conn| rows::lock_when_spent(conn, &key, MAX_WRONG_PASSCODES, now))
                    .await?;
                return refused(gateway, &row, failed, &recipient, request_id).await;
            }
            gateway
                .store
                .run(move |conn| rows::give_back_attempt(conn, &key))
                .await?;
            row
        }
        Step::NoPasscode(remaining) => {
            return Ok(ManifestAnswer::WrongPasscode {
                remaining_attempts: remaining.max(0),
            });
        }
        Step::Unknown => return Err(unknown()),
    };
    let ticket = crypto::random_token()?;
    let named = recipient.clone();
    let embedded = ask
        .embedded_length_max
        .is_some_and(|max| row.jwe.len() as u64 <= max);
    let served = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                if !rows::use_once(conn, &key, now)? {
                    return Ok::<_, StoreError>(None);
                }
                if embedded {
                    return Ok(Some(None));
                }
                let expires = now + TICKET_LIFETIME_SECS * 1_000_000;
                rows::insert_ticket(conn, &ticket, &key, expires, &named)?;
                Ok(Some(Some(ticket)))
            })
        })
        .await?;
    let Some(ticket) = served else {
        return Err(unknown());
    };
    let mut entry = opened(
        &row,
        "manifest",
        &recipient,
        AuditOutcome::Success,
        request_id,
    );
    let file = match ticket {
        None => {
            entry.resources = resources_of(&row);
            serde_json::json!({"contentType": row.content_type, "embedded": row.jwe})
        }
        Some(ticket) => serde_json::json!({
            "contentType": row.content_type,
            "location": format!("{}/api/v1/shl/files/{ticket}", gateway.base_url),
        }),
    };
    // Durable before disclosed.
    gateway.record(entry).await?;
    Ok(ManifestAnswer::Files(serde_json::json!({"files": [file]})))
}

/// The answer to a wrong passcode, audited (and told, when it locked the link).
async fn refused(
    gateway: &Gateway,
    row: &ShareLinkRow,
    failed: i64,
    recipient: &str,
    request_id: &str,
) -> Result<ManifestAnswer, DomainError> {
    let mut entry = opened(row, "passcode", recipient, AuditOutcome::Denied, request_id);
    let remaining = (MAX_WRONG_PASSCODES - failed).max(0);
    if remaining == 0 {
        entry.detail.insert("locked".into(), "true".into());
    }
    gateway.record(entry).await?;
    Ok(ManifestAnswer::WrongPasscode {
        remaining_attempts: remaining,
    })
}

/// The encrypted file behind a ticket, once: the compact JWE.
pub async fn file(
    gateway: &Gateway,
    ticket: &str,
    request_id: &str,
) -> Result<String, DomainError> {
    if !crypto::is_token(ticket) {
        return Err(unknown());
    }
    let key = ticket.to_string();
    let now = now_micros();
    let found = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let Some((link, named)) = rows::redeem_ticket(conn, &key, now)? else {
                    return Ok::<_, StoreError>(None);
                };
                // The use was counted by the manifest request; only a deactivation or the
                // end of the link's life since then stops the file.
                Ok(rows::find(conn, &link)?
                    .filter(|r| r.deactivated_at.is_none() && r.expires.is_none_or(|e| e > now))
                    .map(|r| (r, named.unwrap_or_default())))
            })
        })
        .await?;
    let (row, named) = found.ok_or_else(unknown)?;
    let mut entry = opened(&row, "file", &named, AuditOutcome::Success, request_id);
    entry.resources = resources_of(&row);
    gateway.record(entry).await?;
    Ok(row.jwe)
}

/// The audit entry of someone opening link `row`: a `disclose` about the patient by the
/// link's holder, who is known only by the recipient they named.
fn opened(
    row: &ShareLinkRow,
    step: &str,
    recipient: &str,
    outcome: AuditOutcome,
    request_id: &str,
) -> AuditEntry {
    let mut entry = AuditEntry {
        client_id: SHARE_LINK_CLIENT.into(),
        // The patient asked for this disclosure by making the link.
        purpose_of_use: "PATRQT".into(),
        ..AuditEntry::new(AuditAction::Disclose, outcome, request_id.into())
    };
    about(&mut entry, row, step);
    if !recipient.is_empty() {
        entry
            .detail
            .insert("recipient".into(), recipient.to_string());
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recipients_are_short_plain_text() {
        assert_eq!(recipient("  Dr Lee, Lisbon ").unwrap(), "Dr Lee, Lisbon");
        assert!(recipient("").is_err());
        assert!(recipient("a\u{7}b").is_err());
        assert!(recipient(&"x".repeat(201)).is_err());
        assert!(recipient(&"é".repeat(200)).is_ok());
    }
}
