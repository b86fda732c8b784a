//! The delegation as the domain sees it: what a delegate may do ([`Action`]), how they relate
//! to the patient ([`Relationship`]), and the verified delegate a request runs as
//! ([`Delegate`]). Pure.

use serde::{Deserialize, Serialize};

use crate::error::DomainError;

/// One thing a patient may let a delegate do for them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Read the patient's records, their summary and their own copy.
    ReadRecords,
    /// Read the access log (accounting of disclosures) and notifications.
    ViewAccessLog,
    /// Create, change and revoke consents; ask the decisions API.
    ManageConsents,
    /// Approve or decline recipients' access requests.
    AnswerRequests,
    /// Send evidence (disclosure packages) and share the summary by link.
    SendEvidence,
    /// Ask for records to be amended and file statements of disagreement.
    RequestAmendments,
}

impl Action {
    /// Every action, in a fixed order.
    pub const ALL: [Action; 6] = [
        Action::ReadRecords,
        Action::ViewAccessLog,
        Action::ManageConsents,
        Action::AnswerRequests,
        Action::SendEvidence,
        Action::RequestAmendments,
    ];

    /// The snake_case code stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ReadRecords => "read_records",
            Action::ViewAccessLog => "view_access_log",
            Action::ManageConsents => "manage_consents",
            Action::AnswerRequests => "answer_requests",
            Action::SendEvidence => "send_evidence",
            Action::RequestAmendments => "request_amendments",
        }
    }

    /// The action of a code.
    pub fn parse(code: &str) -> Option<Action> {
        Action::ALL.into_iter().find(|a| a.as_str() == code)
    }
}

/// How the delegate relates to the patient.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Relationship {
    /// A parent of a minor.
    Parent,
    /// A legal guardian.
    Guardian,
    /// Holder of a power of attorney.
    PowerOfAttorney,
    /// A carer.
    Carer,
}

impl Relationship {
    /// The snake_case code stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Relationship::Parent => "parent",
            Relationship::Guardian => "guardian",
            Relationship::PowerOfAttorney => "power_of_attorney",
            Relationship::Carer => "carer",
        }
    }

    /// The relationship of a code.
    pub fn parse(code: &str) -> Option<Relationship> {
        [
            Relationship::Parent,
            Relationship::Guardian,
            Relationship::PowerOfAttorney,
            Relationship::Carer,
        ]
        .into_iter()
        .find(|r| r.as_str() == code)
    }

    /// Whether the authority comes from the patient being a minor, so that it ends when the
    /// patient comes of age.
    pub fn ends_at_majority(self) -> bool {
        matches!(self, Relationship::Parent | Relationship::Guardian)
    }

    /// The `RelatedPerson.relationship` coding: (system, code, display).
    pub fn coding(self) -> (&'static str, &'static str, &'static str) {
        const ROLE_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-RoleCode";
        match self {
            Relationship::Parent => (ROLE_CODE, "PRN", "parent"),
            Relationship::Guardian => (ROLE_CODE, "GUARD", "guardian"),
            Relationship::PowerOfAttorney => (ROLE_CODE, "POWATT", "power of attorney"),
            Relationship::Carer => (
                "http://terminology.hl7.org/CodeSystem/v3-RoleClass",
                "CAREGIVER",
                "caregiver",
            ),
        }
    }
}

/// A delegate as a request runs: the person (a `RelatedPerson`), the patient they act for
/// and the delegation in force, read afresh for every request by `auth::bearer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delegate {
    /// The RelatedPerson id (`fhirUser` = `RelatedPerson/{id}`).
    pub related_person: String,
    /// The account (`sub`) for the audit trail.
    pub subject: String,
    /// The patient they act for; empty until the delegation is resolved.
    pub patient_id: String,
    /// The delegation in force; empty until resolved.
    pub delegation_id: String,
    /// What the delegation allows; nothing until resolved.
    pub actions: Vec<Action>,
}

impl Delegate {
    /// A delegate whose token was verified but whose delegation is not yet read: it may do
    /// nothing and acts for no one until `auth::bearer` resolves it.
    pub fn unresolved(related_person: &str, subject: &str) -> Delegate {
        Delegate {
            related_person: related_person.to_string(),
            subject: subject.to_string(),
            patient_id: String::new(),
            delegation_id: String::new(),
            actions: Vec::new(),
        }
    }

    /// `RelatedPerson/{id}`.
    pub fn reference(&self) -> String {
        format!("RelatedPerson/{}", self.related_person)
    }

    /// Whether the delegation allows `action`.
    pub fn may(&self, action: Action) -> bool {
        !self.patient_id.is_empty() && self.actions.contains(&action)
    }
}

/// The refusal of an action the delegation does not allow.
pub fn outside_delegation(action: Action) -> DomainError {
    DomainError::forbidden(
        "outside_delegation",
        format!(
            "the delegation does not allow `{}` for this patient",
            action.as_str()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip() {
        for a in Action::ALL {
            assert_eq!(Action::parse(a.as_str()), Some(a));
        }
        assert_eq!(Action::parse("everything"), None);
        for r in ["parent", "guardian", "power_of_attorney", "carer"] {
            assert_eq!(Relationship::parse(r).map(Relationship::as_str), Some(r));
        }
        assert!(Relationship::Guardian.ends_at_majority());
        assert!(!Relationship::PowerOfAttorney.ends_at_majority());
    }

    #[test]
    fn an_unresolved_delegate_may_do_nothing() {
        let d = Delegate::unresolved("r1", "s");
        for a in Action::ALL {
            assert!(!d.may(a));
        }
        let resolved = Delegate {
            patient_id: "p1".into(),
            delegation_id: "d1".into(),
            actions: vec![Action::ViewAccessLog],
            ..d
        };
        assert!(resolved.may(Action::ViewAccessLog));
        assert!(!resolved.may(Action::ManageConsents));
    }
}
