//! The patient's view: every package of theirs, newest first, with its state now and the
//! time of each fetch. It holds ids only, like the access log, so reading it is not audited.

use std::collections::{BTreeMap, BTreeSet};

use serde::Serialize;
use serde_json::Value;

use crate::consent::ConsentStatus;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::consents;
use crate::store::disclosures::{self as rows, DisclosureRow};
use crate::store::identity;

/// What state a package is in now, for its patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
#[schema(as = DisclosureStatus)]
pub enum Status {
    /// The recipient may fetch it.
    Active,
    /// Past its expiry.
    Expired,
    /// Fetched as often as the patient allowed.
    Exhausted,
    /// Its consent is no longer active (the patient revoked it).
    Revoked,
}

impl Status {
    /// The state of `row` at `now`, given the status of its consent (`None` when the consent
    /// is gone). Revocation comes first: it is the patient's own act.
    pub fn of(row: &DisclosureRow, consent: Option<ConsentStatus>, now: i64) -> Status {
        if consent != Some(ConsentStatus::Active) {
            Status::Revoked
        } else if now > row.expires {
            Status::Expired
        } else if row.retrievals >= row.max_retrievals {
            Status::Exhausted
        } else {
            Status::Active
        }
    }
}

/// The recipient of a package, named while the client is registered.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct RecipientName {
    /// The client id.
    pub id: String,
    /// Its registered name.
    pub name: Option<String>,
    /// Its organisation.
    pub organization: Option<String>,
}

/// One package as its patient sees it.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = DisclosureSummary)]
pub struct Summary {
    /// The disclosure id.
    pub id: String,
    /// Its state now.
    pub status: Status,
    /// Who receives it.
    pub recipient: RecipientName,
    /// The authorized purpose of use.
    pub purpose: String,
    /// The authorization's URI.
    pub policy: String,
    /// The Consent recorded for it.
    pub consent: String,
    /// When it was created (FHIR instant).
    pub created: String,
    /// When it expires (FHIR instant).
    pub expires: String,
    /// How many fetches the recipient gets.
    pub max_retrievals: i64,
    /// The time of every fetch, oldest first.
    pub retrievals: Vec<String>,
    /// `Type/id` of every resource sent.
    pub resources: Value,
    /// SHA-256 of the bundle's bytes, lowercase hex.
    pub bundle_sha256: String,
}

/// `patient`'s packages, newest first.
pub async fn list(gateway: &Gateway, patient: &PatientId) -> Result<Vec<Summary>, DomainError> {
    let patient = patient.clone();
    let (packages, retrievals, statuses, names) = gateway
        .store
        .run(move |conn| {
            let packages = rows::for_patient(conn, patient.as_str())?;
            let ids: Vec<String> = packages.iter().map(|r| r.id.clone()).collect();
            let retrievals = rows::retrievals_of(conn, &ids)?;
            let statuses: BTreeMap<String, ConsentStatus> =
                consents::stored_for_patient(conn, patient.as_str())?
                    .into_iter()
                    .filter_map(|c| {
                        let status = ConsentStatus::from_code(c["status"].as_str()?)?;
                        Some((c["id"].as_str()?.to_string(), status))
                    })
                    .collect();
            let recipients: BTreeSet<&String> = packages.iter().map(|r| &r.recipient).collect();
            let mut names = BTreeMap::new();
            for recipient in recipients {
                if let Some(c) = identity::active_client(conn, recipient)? {
                    names.insert(recipient.clone(), (c.name, c.organization));
                }
            }
            Ok::<_, DomainError>((packages, retrievals, statuses, names))
        })
        .await?;
    let now = now_micros();
    Ok(packages
        .into_iter()
        .map(|row| {
            let fetched = retrievals
                .iter()
                .filter(|r| r.disclosure_id == row.id)
                .map(|r| format_instant(r.fetched))
                .collect();
            let (name, organization) = names.get(&row.recipient).cloned().unzip();
            Summary {
                status: Status::of(&row, statuses.get(&row.consent_id).copied(), now),
                recipient: RecipientName {
                    id: row.recipient.clone(),
                    name,
                    organization,
                },
                purpose: row.purpose,
                policy: row.policy_uri,
                consent: row.consent_id,
                created: format_instant(row.created),
                expires: format_instant(row.expires),
                max_retrievals: row.max_retrievals,
                retrievals: fetched,
                resources: serde_json::from_str(&row.resources).unwrap_or(Value::Null),
                bundle_sha256: row.bundle_sha256,
                id: row.id,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(expires: i64, retrievals: i64, max_retrievals: i64) -> DisclosureRow {
        DisclosureRow {
            id: "d1".into(),
            patient_id: "p1".into(),
            recipient: "client-1".into(),
            purpose: "PATRQT".into(),
            policy_uri: "https://www.ssa.gov/forms/ssa-827.pdf".into(),
            consent_id: "c1".into(),
            created: 0,
            expires,
            max_retrievals,
            retrievals,
            resources: "[]".into(),
            bundle: "{}".into(),
            bundle_sha256: String::new(),
            signature: String::new(),
        }
    }

    #[test]
    fn status_follows_consent_then_expiry_then_retrievals() {
        let active = Some(ConsentStatus::Active);
        let table = [
            (row(100, 0, 2), active, 50, Status::Active),
            (row(100, 1, 2), active, 100, Status::Active),
            (row(100, 0, 2), active, 101, Status::Expired),
            (row(100, 2, 2), active, 50, Status::Exhausted),
            (row(100, 2, 2), active, 101, Status::Expired),
            (
                row(100, 0, 2),
                Some(ConsentStatus::Inactive),
                50,
                Status::Revoked,
            ),
            (
                row(100, 2, 2),
                Some(ConsentStatus::Inactive),
                101,
                Status::Revoked,
            ),
            (
                row(100, 0, 2),
                Some(ConsentStatus::EnteredInError),
                50,
                Status::Revoked,
            ),
            (row(100, 0, 2), None, 50, Status::Revoked),
        ];
        for (row, consent, now, expected) in table {
            assert_eq!(
                Status::of(&row, consent, now),
                expected,
                "{consent:?} at {now}, {} of {}",
                row.retrievals,
                row.max_retrievals
            );
        }
    }

    #[test]
    fn statuses_read_as_the_api_names_them() {
        let names: Vec<Value> = [
            Status::Active,
            Status::Expired,
            Status::Exhausted,
            Status::Revoked,
        ]
        .iter()
        .map(|s| serde_json::to_value(s).unwrap())
        .collect();
        assert_eq!(names, ["active", "expired", "exhausted", "revoked"]);
    }
}
