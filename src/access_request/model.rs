//! An access request as the domain sees it, and who besides the requester acts on one.
//!
//! Rows come from `store::access_requests` with their status as a stored code and the data
//! classes as JSON text; [`AccessRequest::from_stored`] reads them once into typed fields, so a
//! damaged row is an internal error at the edge instead of a wrong grant later.

use crate::auth::Principal;
use crate::error::DomainError;
use crate::ids::{ClientId, PatientId};
use crate::store::access_requests::{AccessRequestRow, Listed, RequestStatus};

/// Who decided a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecidedBy {
    /// The patient the request is about.
    Patient,
    /// An operator acting for the patient.
    Operator,
}

impl DecidedBy {
    /// The stored code.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Patient => "patient",
            Self::Operator => "operator",
        }
    }

    /// The value of a stored code.
    pub fn parse(code: &str) -> Option<DecidedBy> {
        match code {
            "patient" => Some(Self::Patient),
            "operator" => Some(Self::Operator),
            _ => None,
        }
    }
}

/// Who may list and decide requests: the patient they are about, or an operator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reviewer {
    /// A patient, for their own requests only.
    Patient(PatientId),
    /// An operator, for any request.
    Operator,
}

impl Reviewer {
    /// The reviewer a principal is; a client reviews nothing.
    pub fn of(principal: &Principal) -> Result<Reviewer, DomainError> {
        match principal {
            Principal::Operator { .. } => Ok(Reviewer::Operator),
            Principal::Patient { patient_id, .. } => PatientId::parse(patient_id)
                .map(Reviewer::Patient)
                .map_err(|_| forbidden()),
            // A delegate reviews for the patient they act for, when the delegation allows it.
            Principal::Delegate(d) => {
                principal.may(crate::delegation::Action::AnswerRequests)?;
                PatientId::parse(&d.patient_id)
                    .map(Reviewer::Patient)
                    .map_err(|_| forbidden())
            }
            Principal::Client(_) => Err(forbidden()),
        }
    }

    /// Whether this reviewer may see requests about `patient` (`None`: unmatched).
    pub fn sees(&self, patient: Option<&PatientId>) -> bool {
        match self {
            Reviewer::Operator => true,
            Reviewer::Patient(own) => patient == Some(own),
        }
    }

    /// Who decided, when this reviewer decides.
    pub fn decided_by(&self) -> DecidedBy {
        match self {
            Reviewer::Patient(_) => DecidedBy::Patient,
            Reviewer::Operator => DecidedBy::Operator,
        }
    }
}

fn forbidden() -> DomainError {
    DomainError::forbidden("forbidden", "this caller may not use this endpoint")
}

/// The requesting client as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestingClient {
    /// Display name.
    pub name: String,
    /// Organisation.
    pub organization: String,
    /// Role (snake_case).
    pub role: String,
}

/// One access request. No `Debug` of the identifier or the reason: patient data and free text.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessRequest {
    /// UUIDv7, time-ordered.
    pub id: String,
    /// The requesting client.
    pub client: ClientId,
    /// What the listing shows of it.
    pub requester: RequestingClient,
    /// The matched Patient; `None` when unmatched.
    pub patient: Option<PatientId>,
    /// Where it stands.
    pub status: RequestStatus,
    /// The patient identifier as the recipient gave it (system, value).
    pub identifier: (String, String),
    /// The purpose of use asked for (v3 ActReason code).
    pub purpose: String,
    /// FHIR resource types asked for (1 to 20, no repeats).
    pub data_classes: Vec<String>,
    /// The clinical dates asked for (start, end; FHIR dates or dateTimes).
    pub period: (Option<String>, Option<String>),
    /// Why, in the recipient's words.
    pub reason: String,
    /// When it was made, microseconds since the epoch.
    pub created: i64,
    /// When it was decided.
    pub decided_at: Option<i64>,
    /// Who decided.
    pub decided_by: Option<DecidedBy>,
    /// The Consent its approval created.
    pub consent_id: Option<String>,
}

impl std::fmt::Debug for AccessRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccessRequest")
            .field("id", &self.id)
            .field("client", &self.client)
            .field("patient", &self.patient)
            .field("status", &self.status)
            .field("purpose", &self.purpose)
            .field("consent_id", &self.consent_id)
            .finish_non_exhaustive()
    }
}

impl AccessRequest {
    /// Reads a stored request with its client.
    pub fn from_stored((row, client): Listed) -> Result<AccessRequest, DomainError> {
        let request = row.id.clone();
        let damaged = |field: &str| {
            DomainError::internal(format!("access request {request} has a damaged {field}"))
        };
        let AccessRequestRow {
            id,
            client_id,
            patient_id,
            status,
            identifier_system,
            identifier_value,
            purpose,
            data_classes,
            period_start,
            period_end,
            reason,
            created,
            decided_at,
            decided_by,
            consent_id,
        } = row;
        Ok(AccessRequest {
            client: ClientId::parse(&client_id).map_err(|_| damaged("client id"))?,
            patient: patient_id
                .as_deref()
                .map(PatientId::parse)
                .transpose()
                .map_err(|_| damaged("patient id"))?,
            status: RequestStatus::parse(&status).ok_or_else(|| damaged("status"))?,
            data_classes: serde_json::from_str(&data_classes)
                .map_err(|_| damaged("data classes"))?,
            decided_by: decided_by
                .as_deref()
                .map(|by| DecidedBy::parse(by).ok_or_else(|| damaged("decider")))
                .transpose()?,
            requester: RequestingClient {
                name: client.name,
                organization: client.organization,
                role: client.role,
            },
            id,
            identifier: (identifier_system, identifier_value),
            purpose,
            period: (period_start, period_end),
            reason,
            created,
            decided_at,
            consent_id,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::store::access_requests::RequesterRow;

    /// A stored pending request about `pat` from `client-1`.
    pub(crate) fn stored() -> Listed {
        let row = AccessRequestRow {
            id: "0192c1f0-0000-7000-8000-000000000001".into(),
            client_id: "client-1".into(),
            patient_id: Some("pat".into()),
            status: "pending".into(),
            identifier_system: "urn:mrn".into(),
            identifier_value: "MRN-1".into(),
            purpose: "TREAT".into(),
            data_classes: r#"["Observation","Condition"]"#.into(),
            period_start: Some("2020-01-01".into()),
            period_end: None,
            reason: "Follow-up".into(),
            created: 1_767_225_600_000_000,
            decided_at: None,
            decided_by: None,
            consent_id: None,
        };
        let client = RequesterRow {
            name: "clinic app".into(),
            organization: "clinic".into(),
            role: "clinician".into(),
        };
        (row, client)
    }

    #[test]
    fn a_stored_row_reads_into_typed_fields() {
        let r = AccessRequest::from_stored(stored()).unwrap();
        assert_eq!(r.status, RequestStatus::Pending);
        assert_eq!(r.patient.as_ref().map(PatientId::as_str), Some("pat"));
        assert_eq!(r.data_classes, ["Observation", "Condition"]);
        assert_eq!(r.decided_by, None);
    }

    #[test]
    fn a_damaged_row_is_refused_not_guessed() {
        type Damage = fn(&mut AccessRequestRow);
        let damages: [Damage; 5] = [
            |r| r.status = "maybe".into(),
            |r| r.data_classes = "Observation".into(),
            |r| r.patient_id = Some("a/b".into()),
            |r| r.client_id = String::new(),
            |r| r.decided_by = Some("someone".into()),
        ];
        for (i, damage) in damages.iter().enumerate() {
            let (mut row, client) = stored();
            damage(&mut row);
            let e = AccessRequest::from_stored((row, client)).unwrap_err();
            assert_eq!(e.code, "internal_error", "damage {i}");
        }
    }

    #[test]
    fn reviewers_see_their_own_requests() {
        let pat = PatientId::parse("pat").unwrap();
        let other = PatientId::parse("other").unwrap();
        let patient = Reviewer::of(&Principal::Patient {
            patient_id: "pat".into(),
            subject: "s".into(),
        })
        .unwrap();
        assert!(patient.sees(Some(&pat)));
        assert!(!patient.sees(Some(&other)));
        assert!(!patient.sees(None), "unmatched requests are for operators");
        assert_eq!(patient.decided_by(), DecidedBy::Patient);
        let operator = Reviewer::of(&Principal::Operator {
            subject: "o".into(),
        })
        .unwrap();
        assert!(operator.sees(None) && operator.sees(Some(&other)));
        assert_eq!(operator.decided_by(), DecidedBy::Operator);
    }
}
