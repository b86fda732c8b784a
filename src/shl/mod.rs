//! SMART Health Links: the patient shares their International Patient Summary by a link (and
//! its QR code) that anyone holding it can open, without an account at the gateway.
//!
//! Making a link ([`create`]) builds the IPS exactly as `$summary` does for the patient
//! themself (`crate::summary`), encrypts it as a compact JWE under a fresh random key
//! ([`crypto`]), and stores only the JWE: the key exists in the answer, in the `shlink:/`
//! link, and nowhere else, so the gateway cannot read what it serves. The link's id is the
//! secret part of the manifest URL (256 bits); a separate public `handle` names the link in
//! listings, audit entries and notifications, so the secret never reaches the log.
//!
//! Opening a link ([`fetch::manifest`], [`fetch::file`]) follows the specification: a
//! manifest request names the recipient and, for a link with a passcode, the passcode; a
//! wrong one answers 401 with `remainingAttempts`, and the link is deactivated after
//! [`MAX_WRONG_PASSCODES`] in its lifetime. The file comes embedded, or from a single-use
//! ticket URL good for [`TICKET_LIFETIME_SECS`]. A link that is unknown, expired,
//! deactivated or used up answers the same 404. Every successful fetch is a `disclose`
//! audit entry about the patient (client id [`SHARE_LINK_CLIENT`], the recipient as named,
//! the resources that left), shown in the patient's access log, and a `share_link`
//! notification.
//!
//! Who makes links: the patient, or a delegate allowed both `send_evidence` (sharing the
//! patient's records) and `read_records` (the key shows them the summary). Operators and
//! clients do not: whoever makes a link holds its key.

pub mod crypto;
pub mod fetch;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::delegation::Action;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::store::share_links::{self as rows, ShareLinkRow};
use crate::store::write_tx;
use crypto::{LinkKey, Payload};

/// The audit entries' client id for whoever opens a link (they have no account).
pub const SHARE_LINK_CLIENT: &str = "share_link";
/// The one kind of file a link holds: the IPS document Bundle.
pub const CONTENT_TYPE: &str = "application/fhir+json";
/// Wrong passcodes a link survives in its lifetime; the last one deactivates it.
pub const MAX_WRONG_PASSCODES: i64 = 5;
/// How long a file ticket stays good (the specification allows at most an hour).
pub const TICKET_LIFETIME_SECS: i64 = 300;
/// Longest label (the specification's limit).
pub const MAX_LABEL_CHARS: usize = 80;
/// Shortest and longest passcode.
pub const PASSCODE_CHARS: (usize, usize) = (4, 100);
/// Lifetime of a link when the patient names none, and the longest allowed, in days.
pub const LIFETIME_DAYS: (i64, i64) = (30, 365);
/// Most fetches a link may allow.
pub const MAX_USES: i64 = 1000;
/// Longest manifest URL (the specification's limit).
const MAX_MANIFEST_URL: usize = 128;
/// Most links a listing shows.
const LIST_LIMIT: i64 = 200;
/// Most links of one patient that work at the same time (each holds a copy of the summary).
pub const MAX_LIVE_LINKS: usize = 20;
const DAY: i64 = 86_400_000_000;

/// A new link, as the API and the page take it.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewShareLink {
    /// What the link holds, shown to the receiver (at most 80 characters).
    pub label: Option<String>,
    /// A passcode the receiver must give (4 to 100 characters); stored only as a hash.
    pub passcode: Option<String>,
    /// When the link stops working (a FHIR dateTime with a time zone), at most a year ahead.
    pub expires: Option<String>,
    /// Or its lifetime in days (1 to 365); 30 days when neither is given.
    pub lifetime_days: Option<i64>,
    /// How many manifest requests it allows (1 to 1000); unlimited when absent.
    pub max_uses: Option<i64>,
}

impl std::fmt::Debug for NewShareLink {
    /// The passcode is a secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewShareLink")
            .field("lifetime_days", &self.lifetime_days)
            .field("max_uses", &self.max_uses)
            .finish_non_exhaustive()
    }
}

/// A link just made: the only time its key (in `link` and `payload`) is shown. No `Debug`:
/// nothing may print the key by accident.
#[derive(Serialize, utoipa::ToSchema)]
pub struct Created {
    /// The link's public handle (to list and deactivate it by).
    pub id: String,
    /// The `shlink:/` link to hand over.
    pub link: String,
    /// The payload the link encodes.
    pub payload: Payload,
    /// The link as a QR code, an SVG document.
    pub qr_svg: String,
    /// The link as it will be listed.
    pub share_link: LinkView,
}

/// A link as its patient sees it afterwards: no key, no file, no manifest URL.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LinkView {
    /// The public handle.
    pub id: String,
    /// The label.
    pub label: Option<String>,
    /// When it was made.
    pub created: String,
    /// `Patient/{id}` or `RelatedPerson/{id}`.
    pub created_by: String,
    /// When it stops working.
    pub expires: Option<String>,
    /// How many manifest requests it allows.
    pub max_uses: Option<i64>,
    /// Manifest requests answered so far.
    pub uses: i64,
    /// Whether it needs a passcode.
    pub passcode: bool,
    /// `active`, `expired`, `used_up`, `locked` (too many wrong passcodes) or `deactivated`.
    pub status: &'static str,
    /// Whether it still works.
    pub active: bool,
    /// When it was deactivated.
    pub deactivated_at: Option<String>,
    /// How many records the file holds.
    pub resource_count: usize,
}

/// What a stored link looks like to its patient at `now`.
pub fn view(row: &ShareLinkRow, now: i64) -> LinkView {
    let status = if row.deactivated_at.is_some() {
        if row.failed_passcodes >= MAX_WRONG_PASSCODES {
            "locked"
        } else {
            "deactivated"
        }
    } else if row.expires.is_some_and(|e| e <= now) {
        "expired"
    } else if row.max_uses.is_some_and(|m| row.uses >= m) {
        "used_up"
    } else {
        "active"
    };
    LinkView {
        id: row.handle.clone().unwrap_or_default(),
        label: row.label.clone(),
        created: format_instant(row.created),
        created_by: row.created_by.clone(),
        expires: row.expires.map(format_instant),
        max_uses: row.max_uses,
        uses: row.uses,
        passcode: row.passcode_hash.is_some(),
        status,
        active: status == "active",
        deactivated_at: row.deactivated_at.map(format_instant),
        resource_count: resources_of(row).len(),
    }
}

/// The `Type/id` of what a link's file holds.
pub(crate) fn resources_of(row: &ShareLinkRow) -> Vec<String> {
    serde_json::from_str(&row.resources).unwrap_or_default()
}

/// The patient whose links `by` manages: the patient, or a delegate allowed to share and to
/// read; anyone else is refused.
fn sharer(by: &Principal) -> Result<(PatientId, String), DomainError> {
    let forbidden = || {
        DomainError::forbidden(
            "forbidden",
            "only the patient or their delegate shares the patient's summary by link",
        )
    };
    let patient = by
        .own_patient()
        .filter(|p| !p.is_empty())
        .ok_or_else(forbidden)?;
    by.may(Action::SendEvidence)?;
    by.may(Action::ReadRecords)?;
    let who = by.person_reference().ok_or_else(forbidden)?;
    let patient = PatientId::parse(patient).map_err(|_| forbidden())?;
    Ok((patient, who))
}

/// The checked limits of a new link: (label, passcode hash, expires).
type Limits = (Option<String>, Option<String>, i64);

fn limits(ask: &NewShareLink, now: i64) -> Result<Limits, DomainError> {
    let label = match ask.label.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(l) if l.chars().count() > MAX_LABEL_CHARS || l.chars().any(char::is_control) => {
            return Err(DomainError::invalid(
                "invalid_label",
                format!("`label` must be at most {MAX_LABEL_CHARS} characters of text"),
            ));
        }
        Some(l) => Some(l.to_string()),
    };
    let passcode = match ask.passcode.as_deref() {
        None | Some("") => None,
        Some(p) => {
            let n = p.chars().count();
            if n < PASSCODE_CHARS.0 || n > PASSCODE_CHARS.1 || p.chars().any(char::is_control) {
                return Err(DomainError::invalid(
                    "invalid_passcode",
                    format!(
                        "`passcode` must be {} to {} characters",
                        PASSCODE_CHARS.0, PASSCODE_CHARS.1
                    ),
                ));
            }
            Some(crypto::hash_passcode(p)?)
        }
    };
    let latest = now + LIFETIME_DAYS.1 * DAY;
    let expires = match (&ask.expires, ask.lifetime_days) {
        (Some(_), Some(_)) => {
            return Err(DomainError::invalid(
                "invalid_expires",
                "give `expires` or `lifetime_days`, not both",
            ));
        }
        (Some(text), None) => crate::consent::dates::parse_date_time(text)
            .map(|range| range.1)
            .filter(|e| *e > now && *e <= latest)
            .ok_or_else(|| {
                DomainError::invalid(
                    "invalid_expires",
                    "`expires` must be a FHIR dateTime with a time zone, in the future and at most a year ahead",
                )
            })?,
        (None, Some(days)) if (1..=LIFETIME_DAYS.1).contains(&days) => now + days * DAY,
        (None, Some(_)) => {
            return Err(DomainError::invalid(
                "invalid_expires",
                format!("`lifetime_days` must be 1 to {}", LIFETIME_DAYS.1),
            ));
        }
        (None, None) => now + LIFETIME_DAYS.0 * DAY,
    };
    if ask.max_uses.is_some_and(|m| !(1..=MAX_USES).contains(&m)) {
        return Err(DomainError::invalid(
            "invalid_max_uses",
            format!("`max_uses` must be 1 to {MAX_USES}"),
        ));
    }
    Ok((label, passcode, expires))
}

/// The manifest URL of link `id`.
pub(crate) fn manifest_url(gateway: &Gateway, id: &str) -> String {
    format!("{}/api/v1/shl/{id}", gateway.base_url)
}

/// Makes a link to the patient's IPS; the answer is the only place its key appears.
pub async fn create(
    gateway: &Gateway,
    by: &Principal,
    ask: NewShareLink,
    request_id: &str,
) -> Result<Created, DomainError> {
    let (patient, created_by) = sharer(by)?;
    let now = now_micros();
    let (label, passcode_hash, expires) = limits(&ask, now)?;
    let id = crypto::random_token()?;
    let url = manifest_url(gateway, &id);
    if url.len() > MAX_MANIFEST_URL {
        return Err(DomainError::internal(format!(
            "the manifest URL would be {} characters (at most {MAX_MANIFEST_URL}): shorten server.public_base_url",
            url.len()
        )));
    }
    let document = crate::summary::summary(
        gateway,
        crate::summary::Asker::Person(by),
        request_id,
        &patient,
    )
    .await?;
    let resources: Vec<String> = document["entry"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .skip(1) // the Composition is made for the document, not a stored record
                .filter_map(|e| {
                    let r = &e["resource"];
                    Some(format!(
                        "{}/{}",
                        r["resourceType"].as_str()?,
                        r["id"].as_str()?
                    ))
                })
                .collect()
        })
        .unwrap_or_default();
    let key = LinkKey::generate()?;
    let jwe = key.encrypt(document.to_string().as_bytes(), CONTENT_TYPE)?;
    let row = ShareLinkRow {
        id: id.clone(),
        patient_id: patient.to_string(),
        label: label.clone(),
        created: now,
        created_by,
        expires: Some(expires),
        max_uses: ask.max_uses,
        uses: 0,
        failed_passcodes: 0,
        content_type: CONTENT_TYPE.into(),
        jwe,
        resources: serde_json::to_string(&resources).unwrap_or_else(|_| "[]".into()),
        deactivated_at: None,
        handle: Some(uuid::Uuid::now_v7().to_string()),
        passcode_hash,
    };
    let stored = row.clone();
    let live = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let live = rows::for_patient(conn, &stored.patient_id, LIST_LIMIT)?
                    .iter()
                    .filter(|r| view(r, now).active)
                    .count();
                if live < MAX_LIVE_LINKS {
                    rows::insert(conn, &stored)?;
                }
                Ok::<_, crate::store::StoreError>(live)
            })
        })
        .await?;
    if live >= MAX_LIVE_LINKS {
        return Err(DomainError::conflict(
            "too_many_share_links",
            format!("at most {MAX_LIVE_LINKS} links work at once; deactivate one first"),
        ));
    }
    let mut entry = by.audit_entry(AuditAction::Grant, AuditOutcome::Success, request_id.into());
    about(&mut entry, &row, "created");
    entry.resources = resources;
    gateway.record(entry).await?;
    let payload = Payload {
        url,
        key: key.encoded(),
        exp: Some(expires.div_euclid(1_000_000)),
        flag: row.passcode_hash.is_some().then(|| "P".to_string()),
        label,
        v: 1,
    };
    let link = payload.link();
    Ok(Created {
        id: row.handle.clone().unwrap_or_default(),
        qr_svg: crypto::qr_svg(&link)?,
        link,
        payload,
        share_link: view(&row, now),
    })
}

/// The patient's links, newest first.
pub async fn list(gateway: &Gateway, by: &Principal) -> Result<Vec<LinkView>, DomainError> {
    let (patient, _) = sharer(by)?;
    let found = gateway
        .store
        .run(move |conn| rows::for_patient(conn, patient.as_str(), LIST_LIMIT))
        .await?;
    let now = now_micros();
    Ok(found.iter().map(|r| view(r, now)).collect())
}

/// Deactivates one of the patient's links: its next fetch is 404. Someone else's link, or an
/// unknown one, is the same 404; a link already inactive stays so (and is not audited again).
pub async fn deactivate(
    gateway: &Gateway,
    by: &Principal,
    handle: &str,
    request_id: &str,
) -> Result<LinkView, DomainError> {
    let (patient, _) = sharer(by)?;
    let key = handle.to_string();
    let now = now_micros();
    let found = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let Some(row) = rows::find_by_handle(conn, &key)? else {
                    return Ok(None);
                };
                if row.patient_id != patient.as_str() {
                    return Ok(None);
                }
                let changed = rows::deactivate(conn, &row.id, now)?;
                let row = rows::find(conn, &row.id)?.unwrap_or(row);
                Ok::<_, crate::store::StoreError>(Some((row, changed)))
            })
        })
        .await?;
    let (row, changed) = found.ok_or_else(unknown)?;
    if changed {
        let mut entry = by.audit_entry(
            AuditAction::Revoke,
            AuditOutcome::Success,
            request_id.into(),
        );
        about(&mut entry, &row, "deactivated");
        gateway.record(entry).await?;
    }
    Ok(view(&row, now))
}

/// The one refusal of a link that is unknown, someone else's, expired, deactivated or used
/// up: nobody learns which.
pub fn unknown() -> DomainError {
    DomainError::not_found(
        "unknown_share_link",
        "no such link, or it is no longer active",
    )
}

/// Marks `entry` as about link `row`: the patient, the public handle and the step.
pub(crate) fn about(entry: &mut AuditEntry, row: &ShareLinkRow, step: &str) {
    entry.patient_id = Some(row.patient_id.clone());
    entry.detail.extend(BTreeMap::from([
        (
            "share_link".to_string(),
            row.handle.clone().unwrap_or_default(),
        ),
        ("step".to_string(), step.to_string()),
    ]));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ask() -> NewShareLink {
        NewShareLink::default()
    }

    #[test]
    fn limits_are_checked() {
        let now = 1_800_000_000_000_000;
        let (label, passcode, expires) = limits(&ask(), now).unwrap();
        assert_eq!((label, passcode), (None, None));
        assert_eq!(expires, now + 30 * DAY, "30 days by default");
        for (bad, code) in [
            (
                NewShareLink {
                    label: Some("x".repeat(81)),
                    ..ask()
                },
                "invalid_label",
            ),
            (
                NewShareLink {
                    passcode: Some("123".into()),
                    ..ask()
                },
                "invalid_passcode",
            ),
            (
                NewShareLink {
                    passcode: Some("1".repeat(101)),
                    ..ask()
                },
                "invalid_passcode",
            ),
            (
                NewShareLink {
                    lifetime_days: Some(366),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewShareLink {
                    expires: Some("2020-01-01T00:00:00Z".into()),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewShareLink {
                    expires: Some(format_instant(now + DAY)),
                    lifetime_days: Some(2),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewShareLink {
                    max_uses: Some(0),
                    ..ask()
                },
                "invalid_max_uses",
            ),
        ] {
            assert_eq!(limits(&bad, now).unwrap_err().code, code);
        }
        let (label, passcode, expires) = limits(
            &NewShareLink {
                label: Some(" Travel summary ".into()),
                passcode: Some("1234".into()),
                lifetime_days: Some(2),
                ..ask()
            },
            now,
        )
        .unwrap();
        assert_eq!(label.as_deref(), Some("Travel summary"));
        assert!(crypto::passcode_matches(&passcode.unwrap(), "1234"));
        assert_eq!(expires, now + 2 * DAY);
    }

    #[test]
    fn status_tells_why_a_link_no_longer_works() {
        let now = 10 * DAY;
        let row = ShareLinkRow {
            id: "s".into(),
            patient_id: "p".into(),
            label: None,
            created: 0,
            created_by: "Patient/p".into(),
            expires: Some(now + 1),
            max_uses: Some(2),
            uses: 1,
            passcode_hash: None,
            failed_passcodes: 0,
            content_type: CONTENT_TYPE.into(),
            jwe: String::new(),
            resources: "[\"Patient/p\"]".into(),
            deactivated_at: None,
            handle: Some("h".into()),
        };
        assert_eq!(view(&row, now).status, "active");
        assert_eq!(view(&row, now).resource_count, 1);
        assert_eq!(view(&row, now + 1).status, "expired");
        let used = ShareLinkRow {
            uses: 2,
            ..row.clone()
        };
        assert_eq!(view(&used, now).status, "used_up");
        let off = ShareLinkRow {
            deactivated_at: Some(now),
            ..row.clone()
        };
        assert_eq!(view(&off, now).status, "deactivated");
        let locked = ShareLinkRow {
            failed_passcodes: MAX_WRONG_PASSCODES,
            ..off
        };
        assert_eq!(view(&locked, now).status, "locked");
        assert!(!view(&locked, now).active);
    }
}
