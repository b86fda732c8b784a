//! What goes into a package: an explicit list of the patient's records, or a filter over
//! their current records. Parsing and filter matching are pure; [`candidates`] reads the
//! records a checked selection names.

use std::collections::BTreeSet;

use serde::Deserialize;
use serde_json::Value;

use super::{MAX_SELECTED, reference_of};
use crate::error::DomainError;
use crate::ids::PatientId;
use crate::records::{index, ingest, validate};
use crate::store::{DbConn, resources};

/// The label that a filter always leaves out: psychotherapy notes (45 CFR 164.508(a)(2)).
pub const PSYCHOTHERAPY_NOTES: &str = "PSYTHPN";
/// Most resource types one filter may name.
const MAX_FILTER_TYPES: usize = 50;
/// Longest label code a filter may exclude.
const MAX_LABEL_LEN: usize = 64;

/// Exactly one of an explicit list or a filter (the request's `selection`).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// `Type/id` of each resource.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// A filter over the patient's current resources.
    #[serde(default)]
    pub filter: Option<Filter>,
}

/// A filter over the patient's current resources, as the request gives it.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Resource types to include.
    pub types: Vec<String>,
    /// Only resources whose clinical date starts on or after this FHIR date.
    #[serde(default)]
    pub since: Option<String>,
    /// Security label codes to leave out (`PSYTHPN` is always left out).
    #[serde(default)]
    pub exclude_labels: Vec<String>,
}

/// A selection once checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Chosen {
    /// The resources the patient picked one by one (`Type`, `id`), without repeats, in the
    /// order given: all of them go, or none.
    Listed(Vec<(String, String)>),
    /// A filter: whatever passes goes, whatever is not permitted is left out.
    Filtered(Rule),
}

/// A checked filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// Resource types to include.
    pub types: BTreeSet<String>,
    /// The earliest clinical start, microseconds since the epoch.
    pub since: Option<i64>,
    /// Label codes (any system) that keep a resource out; always holds [`PSYCHOTHERAPY_NOTES`].
    pub exclude: BTreeSet<String>,
}

fn invalid(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::unprocessable(code, message)
}

/// Checks a selection: exactly one of a list of 1 to [`MAX_SELECTED`] references, or a
/// filter of known resource types, a FHIR date and label codes.
pub fn parse(selection: Selection) -> Result<Chosen, DomainError> {
    match (selection.resources, selection.filter) {
        (Some(list), None) => parse_list(list).map(Chosen::Listed),
        (None, Some(filter)) => parse_filter(filter).map(Chosen::Filtered),
        _ => Err(invalid(
            "invalid_selection",
            "give exactly one of selection.resources and selection.filter",
        )),
    }
}

fn parse_list(list: Vec<String>) -> Result<Vec<(String, String)>, DomainError> {
    if list.is_empty() || list.len() > MAX_SELECTED {
        return Err(invalid(
            "invalid_selection",
            format!("list 1 to {MAX_SELECTED} resources"),
        ));
    }
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for reference in list {
        let parsed = reference
            .split_once('/')
            .filter(|(ty, id)| validate::is_resource_type(ty) && validate::is_valid_id(id));
        let Some((ty, id)) = parsed else {
            return Err(invalid(
                "invalid_reference",
                format!(
                    "`{}` is not a reference Type/id",
                    validate::printable(&reference, 80)
                ),
            ));
        };
        if seen.insert(reference.clone()) {
            out.push((ty.to_string(), id.to_string()));
        }
    }
    Ok(out)
}

fn parse_filter(filter: Filter) -> Result<Rule, DomainError> {
    if filter.types.is_empty()
        || filter.types.len() > MAX_FILTER_TYPES
        || !filter.types.iter().all(|t| validate::is_resource_type(t))
    {
        return Err(invalid(
            "invalid_selection",
            format!("filter.types must list 1 to {MAX_FILTER_TYPES} FHIR resource types"),
        ));
    }
    let since = match &filter.since {
        None => None,
        Some(text) => Some(
            crate::consent::dates::parse_date_time(text)
                .map(|range| range.0)
                .ok_or_else(|| invalid("invalid_selection", "filter.since must be a FHIR date"))?,
        ),
    };
    let label_code =
        |l: &String| !l.is_empty() && l.len() <= MAX_LABEL_LEN && !l.contains(char::is_whitespace);
    if !filter.exclude_labels.iter().all(label_code) {
        return Err(invalid(
            "invalid_selection",
            "filter.exclude_labels must be label codes",
        ));
    }
    let mut exclude: BTreeSet<String> = filter.exclude_labels.into_iter().collect();
    exclude.insert(PSYCHOTHERAPY_NOTES.to_string());
    Ok(Rule {
        types: filter.types.into_iter().collect(),
        since,
        exclude,
    })
}

impl Rule {
    /// Whether a resource passes: one of the types, a clinical date on or after `since`
    /// (a resource without one is left out when `since` is given), and none of the labels.
    pub fn passes(&self, resource: &Value) -> bool {
        let ty = resource["resourceType"].as_str().unwrap_or_default();
        let id = resource["id"].as_str().unwrap_or_default();
        self.types.contains(ty)
            && self.since.is_none_or(|since| {
                index::extract(ty, id, resource)
                    .clinical
                    .is_some_and(|(start, _)| start >= since)
            })
            && !label_codes(resource).any(|code| self.exclude.contains(code))
    }
}

/// The codes of a resource's `meta.security`.
fn label_codes(resource: &Value) -> impl Iterator<Item = &str> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

/// The records `chosen` names, read from storage: each listed one must be a current record of
/// `patient` (a missing record and another patient's answer alike, so the refusal reveals
/// nothing about other patients); a filter runs over the patient's current records.
pub fn candidates(
    conn: &mut DbConn,
    chosen: Chosen,
    patient: &PatientId,
) -> Result<Vec<Value>, DomainError> {
    match chosen {
        Chosen::Listed(listed) => {
            let mut out = Vec::with_capacity(listed.len());
            for (ty, id) in listed {
                let not_theirs = || {
                    invalid(
                        "not_a_record_of_the_patient",
                        format!("{ty}/{id} is not a record of this patient"),
                    )
                };
                let body = ingest::read(conn, &ty, &id).map_err(|_| not_theirs())?;
                if index::patient_of(&ty, &id, &body).as_deref() != Some(patient.as_str()) {
                    return Err(not_theirs());
                }
                out.push(body);
            }
            Ok(out)
        }
        Chosen::Filtered(rule) => Ok(resources::current_for_patient(conn, patient.as_str())?
            .into_iter()
            .filter(|(ty, _, _)| rule.types.contains(ty))
            .filter_map(|(_, _, body)| serde_json::from_str::<Value>(&body).ok())
            .filter(|r| rule.passes(r))
            .collect()),
    }
}

/// The references of `resources`, in order.
pub fn references(resources: &[Value]) -> Vec<String> {
    resources.iter().map(reference_of).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::ACT_CODE_SYSTEM;
    use serde_json::json;

    fn list(refs: &[&str]) -> Selection {
        Selection {
            resources: Some(refs.iter().map(|r| r.to_string()).collect()),
            filter: None,
        }
    }

    fn filter(types: &[&str], since: Option<&str>, exclude: &[&str]) -> Selection {
        Selection {
            resources: None,
            filter: Some(Filter {
                types: types.iter().map(|t| t.to_string()).collect(),
                since: since.map(str::to_string),
                exclude_labels: exclude.iter().map(|l| l.to_string()).collect(),
            }),
        }
    }

    fn code_of(selection: Selection) -> &'static str {
        parse(selection).expect_err("refused").code
    }

    #[test]
    fn a_list_keeps_its_order_and_drops_repeats() {
        let chosen = parse(list(&["Condition/b", "Procedure/a", "Condition/b"])).unwrap();
        assert_eq!(
            chosen,
            Chosen::Listed(vec![
                ("Condition".into(), "b".into()),
                ("Procedure".into(), "a".into())
            ])
        );
    }

    #[test]
    fn malformed_selections_are_refused_with_their_codes() {
        let too_many: Vec<String> = (0..=MAX_SELECTED)
            .map(|i| format!("Condition/c{i}"))
            .collect();
        let too_many: Vec<&str> = too_many.iter().map(String::as_str).collect();
        let many_types = vec!["Condition"; MAX_FILTER_TYPES + 1];
        let cases: Vec<(Selection, &str)> = vec![
            (list(&[]), "invalid_selection"),
            (list(&too_many), "invalid_selection"),
            (list(&["Condition"]), "invalid_reference"),
            (list(&["Nonsense/a"]), "invalid_reference"),
            (list(&["Condition/a b"]), "invalid_reference"),
            (filter(&[], None, &[]), "invalid_selection"),
            (filter(&many_types, None, &[]), "invalid_selection"),
            (filter(&["Nonsense"], None, &[]), "invalid_selection"),
            (
                filter(&["Condition"], Some("last year"), &[]),
                "invalid_selection",
            ),
            (filter(&["Condition"], None, &[""]), "invalid_selection"),
            (
                filter(&["Condition"], None, &["two words"]),
                "invalid_selection",
            ),
            (
                Selection {
                    resources: None,
                    filter: None,
                },
                "invalid_selection",
            ),
        ];
        for (selection, code) in cases {
            let shown = format!("{selection:?}");
            assert_eq!(code_of(selection), code, "{shown}");
        }
        let both = Selection {
            filter: filter(&["Condition"], None, &[]).filter,
            ..list(&["Condition/x"])
        };
        assert_eq!(code_of(both), "invalid_selection");
    }

    #[test]
    fn a_malformed_reference_is_named_without_control_characters() {
        let refused = parse(list(&["Condition/a\u{7}b"])).unwrap_err();
        assert!(!refused.message.contains('\u{7}'), "{}", refused.message);
    }

    fn rule(selection: Selection) -> Rule {
        match parse(selection).unwrap() {
            Chosen::Filtered(rule) => rule,
            other => panic!("a filter, not {other:?}"),
        }
    }

    fn condition(date: Option<&str>, labels: &[&str]) -> Value {
        let mut r = json!({"resourceType": "Condition", "id": "x"});
        if let Some(date) = date {
            r["onsetDateTime"] = json!(date);
        }
        if !labels.is_empty() {
            let security: Vec<Value> = labels
                .iter()
                .map(|l| json!({"system": ACT_CODE_SYSTEM, "code": l}))
                .collect();
            r["meta"] = json!({ "security": security });
        }
        r
    }

    #[test]
    fn filters_match_types_dates_and_labels() {
        let since_2015 = rule(filter(&["Condition"], Some("2015-01-01"), &["HIV"]));
        let table = [
            (
                condition(Some("2016-05-01"), &[]),
                true,
                "on or after since",
            ),
            (condition(Some("2015-01-01"), &[]), true, "on the first day"),
            (condition(Some("2014-12-31"), &[]), false, "before since"),
            (condition(None, &[]), false, "no clinical date"),
            (
                condition(Some("2016-05-01"), &["HIV"]),
                false,
                "an excluded label",
            ),
            (
                condition(Some("2016-05-01"), &["SEX"]),
                true,
                "another label",
            ),
            (
                condition(Some("2016-05-01"), &[PSYCHOTHERAPY_NOTES]),
                false,
                "psychotherapy notes",
            ),
        ];
        for (resource, passes, case) in table {
            assert_eq!(since_2015.passes(&resource), passes, "{case}");
        }
        let procedure = json!({"resourceType": "Procedure", "id": "p",
            "performedDateTime": "2020-01-01"});
        assert!(!since_2015.passes(&procedure), "a type not named");
        let any_date = rule(filter(&["Condition"], None, &[]));
        assert!(
            any_date.passes(&condition(None, &[])),
            "no since, no date needed"
        );
    }

    #[test]
    fn psychotherapy_notes_are_excluded_whether_asked_or_not() {
        let unasked = rule(filter(&["Condition"], None, &[]));
        assert!(unasked.exclude.contains(PSYCHOTHERAPY_NOTES));
        assert!(!unasked.passes(&condition(None, &[PSYCHOTHERAPY_NOTES])));
        let listed = parse(list(&["Condition/note"])).unwrap();
        assert!(matches!(listed, Chosen::Listed(_)), "a list may carry them");
    }
}
