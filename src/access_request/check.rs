//! What a new access request must be, checked against the client's registration alone.
//!
//! Nothing here looks at stored patients, so a refusal is the same for a known and an
//! unknown patient: a recipient learns nothing about who is a patient here from an error.

use serde::Deserialize;

use crate::auth::clients::Client;
use crate::auth::purposes::PurposeCatalog;
use crate::config::RolePurposes;
use crate::consent::dates::parse_date_time;
use crate::error::DomainError;
use crate::records::validate;

/// Longest reason, in characters.
pub const MAX_REASON_CHARS: usize = 1000;
/// Most data classes in one request (keeps the audit detail within its 1024 characters).
pub const MAX_CLASSES: usize = 20;
/// Longest identifier system or value, in characters.
pub const MAX_IDENTIFIER_CHARS: usize = 256;

/// A patient identifier as the recipient knows it.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct IdentifierBody {
    /// The identifier's system (a URI).
    pub system: String,
    /// The identifier's value.
    pub value: String,
}

/// The patient asked about.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatientBody {
    /// Matched against stored Patient identifiers.
    pub identifier: IdentifierBody,
}

/// A FHIR Period of dates or dateTimes.
#[derive(Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PeriodBody {
    /// Start, inclusive.
    #[serde(default)]
    pub start: Option<String>,
    /// End, inclusive.
    #[serde(default)]
    pub end: Option<String>,
}

/// A new request as the recipient sends it (`POST /api/v1/access-requests`). No `Debug`: it
/// holds an identifier and free text.
#[derive(Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewRequest {
    /// Whose records.
    pub patient: PatientBody,
    /// The purpose of use (v3 ActReason code) the client's registration allows.
    pub purpose: String,
    /// FHIR resource types asked for.
    pub data_classes: Vec<String>,
    /// The clinical dates asked for, if limited.
    #[serde(default)]
    pub period: Option<PeriodBody>,
    /// Why, in the recipient's words (at most 1000 characters).
    pub reason: String,
}

/// A request that passed every check, ready to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The identifier as a search token, `system|value`.
    pub token: String,
    /// The data classes, first occurrence of each, in the order given.
    pub classes: Vec<String>,
    /// The data period (start, end), as given.
    pub period: (Option<String>, Option<String>),
    /// The reason without surrounding white space.
    pub reason: String,
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::unprocessable(code, message)
}

/// Checks `new` against `client`'s registration and its role's purposes.
pub fn check(
    new: &NewRequest,
    client: &Client,
    catalog: &PurposeCatalog,
    roles: &RolePurposes,
) -> Result<Checked, DomainError> {
    let id = &new.patient.identifier;
    let fits = |s: &str| {
        (1..=MAX_IDENTIFIER_CHARS).contains(&s.chars().count()) && !s.chars().any(char::is_control)
    };
    if !fits(&id.system) || !fits(&id.value) || id.system.contains(['|', ' ']) {
        return Err(unprocessable(
            "invalid_identifier",
            "patient.identifier needs a system (a URI, no `|`) and a value, each 1 to 256 characters",
        ));
    }
    if !catalog.is_known(&new.purpose) {
        return Err(unprocessable(
            "unknown_purpose",
            "purpose must be a v3 ActReason purpose of use",
        ));
    }
    if !client.may_use_purpose(&new.purpose, catalog, roles) {
        return Err(unprocessable(
            "purpose_not_allowed",
            "the purpose is not allowed for this client",
        ));
    }
    let classes = classes(&new.data_classes, client)?;
    let period = match &new.period {
        None => (None, None),
        Some(p) => period(p)?,
    };
    let reason = new.reason.trim();
    if !(1..=MAX_REASON_CHARS).contains(&reason.chars().count())
        || reason
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(unprocessable(
            "invalid_reason",
            "reason must be 1 to 1000 characters of text",
        ));
    }
    Ok(Checked {
        token: format!("{}|{}", id.system, id.value),
        classes,
        period,
        reason: reason.to_string(),
    })
}

/// R4 resource types the registration covers, without repeats.
fn classes(asked: &[String], client: &Client) -> Result<Vec<String>, DomainError> {
    let mut classes: Vec<String> = Vec::new();
    for class in asked {
        if !validate::is_resource_type(class) {
            return Err(unprocessable(
                "unknown_data_class",
                format!(
                    "data class `{}` is not a FHIR R4 resource type",
                    validate::printable(class, 64)
                ),
            ));
        }
        if !client.resources.iter().any(|r| r == "*" || r == class) {
            return Err(unprocessable(
                "data_class_not_allowed",
                format!("data class `{class}` is outside this client's registration"),
            ));
        }
        if !classes.contains(class) {
            classes.push(class.clone());
        }
    }
    if classes.is_empty() || classes.len() > MAX_CLASSES {
        return Err(unprocessable(
            "invalid_data_classes",
            "give 1 to 20 data classes",
        ));
    }
    Ok(classes)
}

/// FHIR dates or dateTimes, the start not after the end.
fn period(p: &PeriodBody) -> Result<(Option<String>, Option<String>), DomainError> {
    let bad = || {
        unprocessable(
            "invalid_period",
            "period.start and period.end must be FHIR dates or dateTimes, start before end",
        )
    };
    let start = p.start.as_deref().map(parse_date_time);
    let end = p.end.as_deref().map(parse_date_time);
    match (start, end) {
        (Some(None), _) | (_, Some(None)) => Err(bad()),
        (Some(Some(s)), Some(Some(e))) if s.0 > e.1 => Err(bad()),
        _ => Ok((p.start.clone(), p.end.clone())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roles() -> RolePurposes {
        RolePurposes {
            clinician: vec!["TREAT".into()],
            researcher: vec!["HRESCH".into()],
            disability_assessor: vec!["CLMATTCH".into()],
            insurer: vec!["HPAYMT".into()],
            data_source: vec![],
        }
    }

    fn client() -> Client {
        serde_json::from_value(serde_json::json!({
            "id": "client-1", "name": "clinic app", "organization": "clinic",
            "role": "clinician", "purposes": ["TREAT"],
            "resources": ["Observation", "Condition"], "created_at": 0,
        }))
        .expect("a client")
    }

    fn request() -> NewRequest {
        NewRequest {
            patient: PatientBody {
                identifier: IdentifierBody {
                    system: "urn:mrn".into(),
                    value: "MRN-1".into(),
                },
            },
            purpose: "TREAT".into(),
            data_classes: vec!["Observation".into()],
            period: None,
            reason: "Follow-up".into(),
        }
    }

    fn checked(new: &NewRequest) -> Result<Checked, &'static str> {
        check(new, &client(), PurposeCatalog::official(), &roles()).map_err(|e| e.code)
    }

    #[test]
    fn a_good_request_is_normalised() {
        let mut new = request();
        new.data_classes = vec!["Condition".into(), "Observation".into(), "Condition".into()];
        new.reason = "  Follow-up\n visit \t".into();
        new.period = Some(PeriodBody {
            start: Some("2020-01-01".into()),
            end: None,
        });
        // ETREAT is below TREAT in the hierarchy, so the registration covers it.
        new.purpose = "ETREAT".into();
        assert_eq!(
            checked(&new),
            Ok(Checked {
                token: "urn:mrn|MRN-1".into(),
                classes: vec!["Condition".into(), "Observation".into()],
                period: (Some("2020-01-01".into()), None),
                reason: "Follow-up\n visit".into(),
            })
        );
    }

    #[test]
    fn each_defect_has_its_code() {
        type Defect = fn(&mut NewRequest);
        let cases: Vec<(Defect, &str)> = vec![
            (
                |n| n.patient.identifier.system = String::new(),
                "invalid_identifier",
            ),
            (
                |n| n.patient.identifier.system = "a|b".into(),
                "invalid_identifier",
            ),
            (
                |n| n.patient.identifier.system = "a b".into(),
                "invalid_identifier",
            ),
            (
                |n| n.patient.identifier.value = "x".repeat(257),
                "invalid_identifier",
            ),
            (
                |n| n.patient.identifier.value = "a\u{0}".into(),
                "invalid_identifier",
            ),
            (|n| n.purpose = "NOT-A-PURPOSE".into(), "unknown_purpose"),
            (|n| n.purpose = "HRESCH".into(), "purpose_not_allowed"),
            (
                |n| n.data_classes = vec!["Observations".into()],
                "unknown_data_class",
            ),
            (
                |n| n.data_classes = vec!["Procedure".into()],
                "data_class_not_allowed",
            ),
            (|n| n.data_classes = Vec::new(), "invalid_data_classes"),
            (
                |n| {
                    n.period = Some(PeriodBody {
                        start: Some("2024-01-01".into()),
                        end: Some("2023-01-01".into()),
                    })
                },
                "invalid_period",
            ),
            (
                |n| {
                    n.period = Some(PeriodBody {
                        start: Some("yesterday".into()),
                        end: None,
                    })
                },
                "invalid_period",
            ),
            (|n| n.reason = " \n ".into(), "invalid_reason"),
            (|n| n.reason = "x".repeat(1001), "invalid_reason"),
            (|n| n.reason = "bell\u{7}".into(), "invalid_reason"),
        ];
        for (i, (defect, code)) in cases.into_iter().enumerate() {
            let mut new = request();
            defect(&mut new);
            assert_eq!(checked(&new), Err(code), "case {i}");
        }
    }

    #[test]
    fn too_many_classes_are_refused_after_repeats_are_dropped() {
        let mut wide = client();
        wide.resources = vec!["*".into()];
        let types = crate::records::resource_types::R4_RESOURCE_TYPES;
        let mut new = request();
        new.data_classes = types.iter().take(21).map(|t| t.to_string()).collect();
        let code = check(&new, &wide, PurposeCatalog::official(), &roles()).map_err(|e| e.code);
        assert_eq!(code.err(), Some("invalid_data_classes"));
        new.data_classes = vec!["Observation".into(); 30];
        let ok = check(&new, &wide, PurposeCatalog::official(), &roles()).unwrap();
        assert_eq!(ok.classes, ["Observation"]);
    }
}
