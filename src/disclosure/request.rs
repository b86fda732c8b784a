//! A new disclosure as the patient (or an operator) asks for it, and the checks it must pass
//! before any record is read: whose records, the retrieval limit, the expiry, the
//! authorization's URI, the selection, and the recipient's role and purpose.

use serde::Deserialize;

use super::selection::{self, Chosen, Selection};
use crate::auth::Principal;
use crate::auth::clients::{Client, Role};
use crate::auth::purposes::PurposeCatalog;
use crate::config::RolePurposes;
use crate::error::DomainError;
use crate::ids::{ClientId, PatientId};

/// The roles a package may go to.
pub const RECIPIENT_ROLES: [Role; 3] = [Role::DisabilityAssessor, Role::Insurer, Role::Clinician];
/// Longest validity of a package, in microseconds (a leap year's worth of days).
pub const MAX_LIFETIME_MICROS: i64 = 366 * 24 * 3600 * 1_000_000;
/// The retrieval limits a patient may set.
const RETRIEVALS: std::ops::RangeInclusive<i64> = 1..=100;
/// Longest authorization URI.
const MAX_POLICY_LEN: usize = 2048;

/// The body of a new disclosure.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewDisclosure {
    /// The patient (required for operators; a patient may only name themself); read with
    /// [`patient_for`] before the rest is checked.
    #[serde(default)]
    pub patient: Option<String>,
    /// The recipient client's id.
    pub recipient: String,
    /// The v3 ActReason purpose of use.
    pub purpose: String,
    /// The URI naming the authorization (e.g. an SSA-827 form).
    pub policy: String,
    /// What to disclose.
    pub selection: Selection,
    /// A FHIR dateTime in the future, at most one year ahead.
    pub expires: String,
    /// How many times the recipient may fetch the package (1 to 100).
    pub max_retrievals: i64,
}

/// A new disclosure once checked, apart from what needs storage (the recipient's
/// registration, the records).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The recipient client.
    pub recipient: ClientId,
    /// The purpose of use, as given.
    pub purpose: String,
    /// The authorization's URI.
    pub policy: String,
    /// What to disclose.
    pub chosen: Chosen,
    /// The expiry as the patient wrote it (it ends the consent's period as written).
    pub expires_text: String,
    /// The last instant the package may be fetched, microseconds since the epoch.
    pub expires: i64,
    /// How many fetches the recipient gets.
    pub max_retrievals: i64,
}

/// The patient whose records `by` discloses or lists: a patient for themself, an operator
/// for the one named. A recipient client acts for no patient.
pub fn patient_for(by: &Principal, named: Option<String>) -> Result<PatientId, DomainError> {
    if matches!(by, Principal::Client(_)) {
        return Err(DomainError::forbidden(
            "forbidden",
            "this caller may not use this endpoint",
        ));
    }
    let patient = match (by.own_patient(), named) {
        (Some(own), Some(named)) if own != named => {
            return Err(DomainError::forbidden(
                "forbidden",
                "a patient discloses only their own records",
            ));
        }
        (Some(own), _) => own.to_string(),
        (None, Some(named)) => named,
        (None, None) => {
            return Err(DomainError::invalid(
                "missing_patient",
                "`patient` is required",
            ));
        }
    };
    PatientId::parse(&patient)
        .map_err(|_| DomainError::invalid("invalid_patient", "patient must be a FHIR id"))
}

fn invalid(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::unprocessable(code, message)
}

/// Checks what can be checked without storage, in the order a client learns about it:
/// retrieval limit, expiry (against `now`), authorization URI, selection, recipient id.
pub fn check(ask: NewDisclosure, now: i64) -> Result<Checked, DomainError> {
    if !RETRIEVALS.contains(&ask.max_retrievals) {
        return Err(invalid(
            "invalid_max_retrievals",
            "max_retrievals must be 1 to 100",
        ));
    }
    let expires = crate::consent::dates::parse_date_time(&ask.expires)
        .map(|range| range.1)
        .ok_or_else(|| {
            invalid(
                "invalid_expires",
                "expires must be a FHIR dateTime with a time zone",
            )
        })?;
    if expires <= now || expires > now + MAX_LIFETIME_MICROS {
        return Err(invalid(
            "invalid_expires",
            "expires must be in the future and at most one year ahead",
        ));
    }
    if !is_authorization_uri(&ask.policy) {
        return Err(invalid(
            "invalid_policy",
            "policy must be an absolute URI naming the authorization",
        ));
    }
    let chosen = selection::parse(ask.selection)?;
    // A malformed id cannot name a registered client: the same answer as an unknown one.
    let recipient = ClientId::parse(&ask.recipient).map_err(|_| unknown_recipient())?;
    Ok(Checked {
        recipient,
        purpose: ask.purpose,
        policy: ask.policy,
        chosen,
        expires_text: ask.expires,
        expires,
        max_retrievals: ask.max_retrievals,
    })
}

/// An absolute URI (a URL with a base, or a URN) of reasonable length.
fn is_authorization_uri(text: &str) -> bool {
    text.len() <= MAX_POLICY_LEN
        && reqwest::Url::parse(text).is_ok_and(|u| !u.cannot_be_a_base() || u.scheme() == "urn")
}

/// The refusal for a recipient that is not an active registered client.
pub fn unknown_recipient() -> DomainError {
    invalid(
        "unknown_recipient",
        "the recipient is not a registered client",
    )
}

/// Whether a client may receive packages for `purpose`: an allowed role, and a purpose its
/// registration and its role allow (the same rule as the token endpoint's).
pub fn check_recipient(
    client: &Client,
    purpose: &str,
    catalog: &PurposeCatalog,
    roles: &RolePurposes,
) -> Result<(), DomainError> {
    if !RECIPIENT_ROLES.contains(&client.role) {
        return Err(invalid(
            "recipient_role_not_allowed",
            "a disclosure goes to a disability assessor, an insurer or a clinician",
        ));
    }
    if !client.may_use_purpose(purpose, catalog, roles) {
        return Err(invalid(
            "purpose_not_allowed",
            "the purpose is not one the recipient's registration allows",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorKind;
    use crate::fhir_time::format_instant;

    const NOW: i64 = 1_767_225_600_000_000; // 2026-01-01T00:00:00Z
    const DAY: i64 = 24 * 3600 * 1_000_000;

    fn ask() -> NewDisclosure {
        NewDisclosure {
            patient: None,
            recipient: "assessor-1".into(),
            purpose: "PATRQT".into(),
            policy: "https://www.ssa.gov/forms/ssa-827.pdf".into(),
            selection: Selection {
                resources: Some(vec!["Condition/a".into()]),
                filter: None,
            },
            expires: format_instant(NOW + 30 * DAY),
            max_retrievals: 2,
        }
    }

    #[test]
    fn a_good_request_is_checked_once() {
        let checked = check(ask(), NOW).unwrap();
        assert_eq!(checked.recipient.as_str(), "assessor-1");
        assert_eq!(checked.expires, NOW + 30 * DAY);
        assert_eq!(checked.max_retrievals, 2);
        let urn = NewDisclosure {
            policy: "urn:uuid:0192c1f0-0000-7000-8000-000000000000".into(),
            ..ask()
        };
        assert!(check(urn, NOW).is_ok(), "a URN names an authorization too");
    }

    #[test]
    fn each_field_is_refused_with_its_code() {
        let cases: Vec<(NewDisclosure, &str)> = vec![
            (
                NewDisclosure {
                    max_retrievals: 0,
                    ..ask()
                },
                "invalid_max_retrievals",
            ),
            (
                NewDisclosure {
                    max_retrievals: 101,
                    ..ask()
                },
                "invalid_max_retrievals",
            ),
            (
                NewDisclosure {
                    expires: "soon".into(),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewDisclosure {
                    expires: format_instant(NOW - 1),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewDisclosure {
                    expires: format_instant(NOW + MAX_LIFETIME_MICROS + 1),
                    ..ask()
                },
                "invalid_expires",
            ),
            (
                NewDisclosure {
                    policy: "ssa-827".into(),
                    ..ask()
                },
                "invalid_policy",
            ),
            (
                NewDisclosure {
                    policy: "mailto:x@example.org".into(),
                    ..ask()
                },
                "invalid_policy",
            ),
            (
                NewDisclosure {
                    policy: format!("https://example.org/{}", "a".repeat(MAX_POLICY_LEN)),
                    ..ask()
                },
                "invalid_policy",
            ),
            (
                NewDisclosure {
                    selection: Selection {
                        resources: None,
                        filter: None,
                    },
                    ..ask()
                },
                "invalid_selection",
            ),
            (
                NewDisclosure {
                    recipient: "two words".into(),
                    ..ask()
                },
                "unknown_recipient",
            ),
        ];
        for (ask, code) in cases {
            let refused = check(ask, NOW).unwrap_err();
            assert_eq!(
                (refused.kind, refused.code),
                (ErrorKind::Unprocessable, code)
            );
        }
    }

    #[test]
    fn the_limit_is_checked_before_the_expiry() {
        let both = NewDisclosure {
            max_retrievals: 0,
            expires: "soon".into(),
            ..ask()
        };
        assert_eq!(check(both, NOW).unwrap_err().code, "invalid_max_retrievals");
    }

    #[test]
    fn a_patient_discloses_only_their_own_records() {
        let patient = |id: &str| Principal::Patient {
            patient_id: id.into(),
            subject: "s".into(),
        };
        let operator = Principal::Operator {
            subject: "o".into(),
        };
        let p = |by: Option<&str>, named: Option<&str>| {
            let by = by.map_or(operator.clone(), patient);
            patient_for(&by, named.map(str::to_string))
                .map(|id| id.to_string())
                .map_err(|e| (e.kind, e.code))
        };
        assert_eq!(p(Some("p1"), None), Ok("p1".into()));
        assert_eq!(p(Some("p1"), Some("p1")), Ok("p1".into()));
        assert_eq!(
            p(Some("p1"), Some("p2")),
            Err((ErrorKind::Forbidden, "forbidden"))
        );
        assert_eq!(p(None, Some("p2")), Ok("p2".into()));
        assert_eq!(p(None, None), Err((ErrorKind::Invalid, "missing_patient")));
        assert_eq!(
            p(None, Some("a/b")),
            Err((ErrorKind::Invalid, "invalid_patient"))
        );
        let client: crate::auth::tokens::AccessClaims = serde_json::from_value(serde_json::json!({
            "iss": "gw", "sub": "c1", "aud": "gw/fhir", "exp": 0, "iat": 0, "nbf": 0, "jti": "j",
            "client_id": "c1", "role": "insurer", "organization": "o", "scope": "",
            "purpose_of_use": "PATRQT"}))
        .unwrap();
        let refused = patient_for(&Principal::Client(Box::new(client)), Some("p1".into()));
        assert_eq!(
            refused.map_err(|e| e.kind),
            Err(ErrorKind::Forbidden),
            "a client acts for no patient"
        );
    }
}
