//! What a stored resource is found by: its patient, its clinical date, and token terms
//! (codes, categories, security labels, identifiers).
//!
//! FHIR defines these per resource type with FHIRPath search parameters. The gateway needs
//! only the few that consent decisions and record searches use, and the elements that carry
//! them are named alike across types, so the extraction works from element names in priority
//! order rather than a per-type table. Anything absent or malformed is simply not indexed.

use serde_json::Value;

use super::dates::{MicrosRange, parse_range};

/// A token term before it is tied to a stored row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Term {
    /// `code`, `category`, `security` or `identifier`.
    pub kind: &'static str,
    /// Coding or identifier system; empty when absent.
    pub system: String,
    /// Code or identifier value.
    pub code: String,
}

/// The index of one resource.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IndexTerms {
    /// The Patient the resource belongs to.
    pub patient_id: Option<String>,
    /// The clinical date range.
    pub clinical: Option<MicrosRange>,
    /// Token terms.
    pub terms: Vec<Term>,
}

/// Elements that point at the patient a resource is about, in priority order.
const PATIENT_ELEMENTS: &[&str] = &["subject", "patient", "beneficiary", "individual"];

/// Elements holding a resource's clinical date, in priority order. Each is a date, dateTime,
/// instant or Period.
const DATE_ELEMENTS: &[&str] = &[
    "effectiveDateTime",
    "effectivePeriod",
    "effectiveInstant",
    "onsetDateTime",
    "onsetPeriod",
    "performedDateTime",
    "performedPeriod",
    "occurrenceDateTime",
    "occurrencePeriod",
    "authoredOn",
    "billablePeriod",
    "period",
    "started",
    "dateTime",
    "date",
    "recordedDate",
    "recorded",
    "issued",
    "created",
    "birthDate",
];

/// Elements holding a resource's clinical code (CodeableConcept).
const CODE_ELEMENTS: &[&str] = &["code", "vaccineCode", "medicationCodeableConcept"];

/// Types whose `type` element is what a clinician searches as its code.
const TYPE_AS_CODE: &[&str] = &["DocumentReference", "Composition", "Encounter"];

/// Extracts the index terms of a resource.
pub fn extract(resource_type: &str, id: &str, resource: &Value) -> IndexTerms {
    let mut terms = Vec::new();
    for element in CODE_ELEMENTS {
        codeable_terms(resource.get(*element), "code", &mut terms);
    }
    if TYPE_AS_CODE.contains(&resource_type) {
        codeable_terms(resource.get("type"), "code", &mut terms);
    }
    codeable_terms(resource.get("category"), "category", &mut terms);
    if resource_type == "Encounter" {
        coding_term(resource.get("class"), "category", &mut terms);
    }
    if let Some(labels) = resource
        .get("meta")
        .and_then(|m| m.get("security"))
        .and_then(Value::as_array)
    {
        for label in labels {
            coding_term(Some(label), "security", &mut terms);
        }
    }
    for identifier in as_list(resource.get("identifier")) {
        let value = identifier.get("value").and_then(Value::as_str);
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            terms.push(Term {
                kind: "identifier",
                system: str_at(identifier, "system"),
                code: value.to_string(),
            });
        }
    }
    IndexTerms {
        patient_id: patient_of(resource_type, id, resource),
        clinical: clinical_date(resource),
        terms,
    }
}

/// A date element whose value the gateway cannot represent (see [`crate::fhir_time`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{element}: the date is outside the supported range (years 0001 to 9999)")]
pub struct DateOutOfRange {
    /// The element, e.g. `issued` or `effectivePeriod.end`.
    pub element: String,
}

/// Refuses a resource with a date element ([`DATE_ELEMENTS`]) that is well formed but out of
/// range, so that nothing stored has a clinical date the index had to skip or bend.
pub fn check_dates(resource: &Value) -> Result<(), DateOutOfRange> {
    for element in DATE_ELEMENTS {
        let values: Vec<(String, &str)> = match resource.get(*element) {
            Some(Value::String(s)) => vec![((*element).to_string(), s.as_str())],
            Some(Value::Object(period)) => ["start", "end"]
                .iter()
                .filter_map(|edge| {
                    Some((format!("{element}.{edge}"), period.get(*edge)?.as_str()?))
                })
                .collect(),
            _ => Vec::new(),
        };
        for (path, text) in values {
            if super::dates::parse(text) == Err(super::dates::DateError::OutOfRange) {
                return Err(DateOutOfRange { element: path });
            }
        }
    }
    Ok(())
}

/// Two of a resource's patient elements name different patients.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{resource_type}/{id} names more than one patient in {elements}")]
pub struct OwnerConflict {
    /// The resource's type.
    pub resource_type: String,
    /// The resource's id.
    pub id: String,
    /// The elements that disagree, e.g. `patient, subject`.
    pub elements: String,
}

/// The one rule for which patient a resource belongs to, used by ingest (which refuses a
/// conflict), the index (which files the resource under the owner), every write check and
/// every read: a Patient owns itself; any other resource belongs to the patient that its
/// patient elements ([`PATIENT_ELEMENTS`], every item of each) reference, and they must all
/// reference the same one. References to other types (a Group, a Device) do not count.
/// `Ok(None)`: the resource belongs to no patient.
pub fn owner(
    resource_type: &str,
    id: &str,
    resource: &Value,
) -> Result<Option<String>, OwnerConflict> {
    if resource_type == "Patient" {
        return Ok(Some(id.to_string()));
    }
    let mut found: Option<(&str, String)> = None;
    for element in PATIENT_ELEMENTS {
        let patients = as_list(resource.get(*element))
            .filter_map(|item| item.get("reference")?.as_str())
            .filter_map(patient_id_from_reference);
        for patient in patients {
            match &found {
                None => found = Some((element, patient)),
                Some((_, first)) if *first == patient => {}
                Some((first_element, _)) => {
                    return Err(OwnerConflict {
                        resource_type: resource_type.to_string(),
                        id: id.to_string(),
                        elements: if first_element == element {
                            (*element).to_string()
                        } else {
                            format!("{first_element}, {element}")
                        },
                    });
                }
            }
        }
    }
    Ok(found.map(|(_, patient)| patient))
}

/// The patient a stored resource belongs to, by [`owner`]; `None` for a resource of no patient
/// (ingest refuses conflicting ones, so a stored resource has at most one).
pub fn patient_of(resource_type: &str, id: &str, resource: &Value) -> Option<String> {
    owner(resource_type, id, resource).ok().flatten()
}

/// `Patient/123` (possibly absolute or versioned) gives `123`.
pub fn patient_id_from_reference(reference: &str) -> Option<String> {
    let parts: Vec<&str> = reference.split('/').collect();
    let at = parts.iter().rposition(|p| *p == "Patient")?;
    parts
        .get(at + 1)
        .filter(|id| !id.is_empty())
        .map(|id| id.to_string())
}

fn clinical_date(resource: &Value) -> Option<MicrosRange> {
    DATE_ELEMENTS.iter().find_map(|element| {
        let value = resource.get(*element)?;
        match value {
            Value::String(s) => parse_range(s),
            Value::Object(period) => {
                let start = period
                    .get("start")
                    .and_then(Value::as_str)
                    .and_then(parse_range);
                let end = period
                    .get("end")
                    .and_then(Value::as_str)
                    .and_then(parse_range);
                match (start, end) {
                    (Some(s), Some(e)) => Some((s.0, e.1.max(s.0))),
                    (Some(s), None) => Some((s.0, i64::MAX)),
                    (None, Some(e)) => Some((i64::MIN, e.1)),
                    (None, None) => None,
                }
            }
            _ => None,
        }
    })
}

/// Terms for a CodeableConcept or a list of them.
fn codeable_terms(value: Option<&Value>, kind: &'static str, terms: &mut Vec<Term>) {
    for concept in as_list(value) {
        for coding in as_list(concept.get("coding")) {
            coding_term(Some(coding), kind, terms);
        }
    }
}

fn coding_term(coding: Option<&Value>, kind: &'static str, terms: &mut Vec<Term>) {
    let Some(coding) = coding else { return };
    let code = str_at(coding, "code");
    if !code.is_empty() {
        terms.push(Term {
            kind,
            system: str_at(coding, "system"),
            code,
        });
    }
}

fn str_at(value: &Value, key: &str) -> String {
    value
        .get(key)
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string()
}

/// A JSON value seen as a list: an array's items, a single value, or nothing.
fn as_list(value: Option<&Value>) -> impl Iterator<Item = &Value> {
    let items: &[Value] = match value {
        Some(Value::Array(items)) => items,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    items.iter()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn observation_terms() {
        let obs = json!({
            "resourceType": "Observation",
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2021-03-04T10:15:00Z",
            "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}, {"code": "hr"}]},
            "meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "HIV"}]},
            "identifier": [{"system": "urn:x", "value": "42"}, {"system": "urn:y"}]
        });
        let ix = extract("Observation", "o1", &obs);
        assert_eq!(ix.patient_id.as_deref(), Some("p1"));
        assert!(ix.clinical.is_some());
        let kinds: Vec<_> = ix.terms.iter().map(|t| (t.kind, t.code.as_str())).collect();
        assert_eq!(
            kinds,
            vec![
                ("code", "8867-4"),
                ("code", "hr"),
                ("category", "vital-signs"),
                ("security", "HIV"),
                ("identifier", "42"),
            ]
        );
    }

    #[test]
    fn patients_come_from_the_usual_elements() {
        let cases = [
            ("Patient", json!({}), Some("self")),
            (
                "Claim",
                json!({"patient": {"reference": "Patient/a"}}),
                Some("a"),
            ),
            (
                "Coverage",
                json!({"beneficiary": {"reference": "http://x/fhir/Patient/b/_history/2"}}),
                Some("b"),
            ),
            (
                "Observation",
                json!({"subject": {"reference": "Group/g"}}),
                None,
            ),
            ("Observation", json!({"subject": "garbage"}), None),
            ("Organization", json!({"name": "x"}), None),
        ];
        for (ty, body, want) in cases {
            assert_eq!(
                patient_of(ty, "self", &body).as_deref(),
                want,
                "{ty} {body}"
            );
        }
    }

    #[test]
    fn open_periods_and_odd_shapes_do_not_panic() {
        let enc = json!({"period": {"start": "2020-01-01"}});
        let (start, end) = extract("Encounter", "e", &enc).clinical.unwrap();
        assert!(start < end && end == i64::MAX);
        let odd =
            json!({"code": [1, 2], "category": "x", "identifier": {"value": 3}, "period": []});
        assert_eq!(extract("Encounter", "e", &odd).terms, vec![]);
    }
}
