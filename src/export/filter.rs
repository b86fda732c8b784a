//! `_typeFilter`: a FHIR search (`Observation?code=...&date=ge2020`) that narrows what one
//! resource type exports (Bulk Data v2).
//!
//! The query goes through the parser of `GET /fhir/{type}` ([`search::parse`]), so a filter
//! supports exactly the search parameters the gateway supports, with the same meaning. It is
//! evaluated on each candidate resource, before the decision, from the same index terms the
//! stored search uses ([`index::extract`]). Several filters for one type combine with OR; the
//! parameters inside one with AND, and the comma-separated values of one parameter with OR,
//! as in a search. Paging (`_count`, `_cursor`) has no meaning in a filter and is refused.

use serde_json::Value;

use crate::config::Limits;
use crate::records::{RecordError, index, search, validate};
use crate::store::resources::{Cmp, DateBound, RangeEdge, ResourceQuery};

/// One parsed `_typeFilter`.
#[derive(Debug, Clone)]
pub struct TypeFilter {
    /// The type it narrows.
    pub resource_type: String,
    query: ResourceQuery,
}

/// Why a `_typeFilter` was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FilterProblem {
    /// Not a filter at all (no `Type?`, an unknown type, a malformed value): always refused.
    Invalid(String),
    /// Well-formed, but with a parameter or prefix the gateway does not support: refused, or
    /// ignored and reported under `Prefer: handling=lenient`.
    Unsupported(String),
}

impl TypeFilter {
    /// Parses `Type?query`.
    pub fn parse(text: &str, limits: &Limits) -> Result<TypeFilter, FilterProblem> {
        let Some((resource_type, query)) = text.split_once('?') else {
            return Err(FilterProblem::Invalid(
                "a `_typeFilter` is a resource type, `?` and search parameters".into(),
            ));
        };
        if !validate::is_resource_type(resource_type) {
            return Err(FilterProblem::Invalid(
                "a `_typeFilter` must start with a FHIR R4 resource type".into(),
            ));
        }
        for (name, _) in form_urlencoded::parse(query.as_bytes()) {
            if matches!(name.as_ref(), "_count" | "_cursor") {
                return Err(FilterProblem::Unsupported(format!(
                    "`_typeFilter` for {resource_type}: paging parameter `{name}` has no meaning in a filter"
                )));
            }
        }
        match search::parse(resource_type, query, limits) {
            Ok(parsed) => Ok(TypeFilter {
                resource_type: resource_type.to_string(),
                query: parsed.query,
            }),
            Err(RecordError::Invalid {
                code: "unsupported_search_parameter",
                message,
            }) => Err(FilterProblem::Unsupported(format!(
                "`_typeFilter` for {resource_type}: {message}"
            ))),
            Err(e) => Err(FilterProblem::Invalid(format!(
                "`_typeFilter` for {resource_type}: {}",
                crate::records::outcome::describe(&e).3
            ))),
        }
    }

    /// Whether `resource` (stored at `last_updated`, microseconds) passes the filter.
    pub fn matches(&self, resource: &Value, last_updated: i64) -> bool {
        let q = &self.query;
        let id = resource
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if !q.ids.is_empty() && !q.ids.iter().any(|i| i == id) {
            return false;
        }
        if !q.last_updated.iter().all(|b| holds(b, last_updated)) {
            return false;
        }
        let terms = index::extract(&self.resource_type, id, resource);
        if !q.patient_ids.is_empty()
            && !terms
                .patient_id
                .as_ref()
                .is_some_and(|p| q.patient_ids.contains(p))
        {
            return false;
        }
        let dates_hold = q.clinical.iter().all(|b| {
            terms.clinical.is_some_and(|(start, end)| {
                holds(
                    b,
                    match b.edge {
                        RangeEdge::Start => start,
                        RangeEdge::End => end,
                    },
                )
            })
        });
        dates_hold
            && q.tokens.iter().all(|t| {
                terms.terms.iter().any(|term| {
                    term.kind == t.kind
                        && (t.codes.contains(&term.code)
                            || t.tokens.contains(&format!("{}|{}", term.system, term.code)))
                })
            })
    }
}

/// Whether `value` satisfies one date comparison (as the stored search compares).
fn holds(bound: &DateBound, value: i64) -> bool {
    match bound.cmp {
        Cmp::Ge => value >= bound.value,
        Cmp::Gt => value > bound.value,
        Cmp::Le => value <= bound.value,
        Cmp::Lt => value < bound.value,
    }
}

/// The filters of one export: a resource of a type with filters passes when any of them
/// matches; a type without filters is not narrowed.
#[derive(Debug, Clone, Default)]
pub struct TypeFilters(Vec<TypeFilter>);

impl TypeFilters {
    /// Adds one accepted filter.
    pub fn push(&mut self, filter: TypeFilter) {
        self.0.push(filter);
    }

    /// How many filters there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a resource of `resource_type` passes.
    pub fn admits(&self, resource_type: &str, resource: &Value, last_updated: i64) -> bool {
        let mut relevant = self
            .0
            .iter()
            .filter(|f| f.resource_type == resource_type)
            .peekable();
        relevant.peek().is_none() || relevant.any(|f| f.matches(resource, last_updated))
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
            max_bundle_entries: 3,
            default_page_size: 10,
            max_page_size: 100,
        }
    }

    fn observation(code: &str, date: &str) -> Value {
        json!({"resourceType": "Observation", "id": "o1",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "effectiveDateTime": date})
    }

    #[test]
    fn a_filter_narrows_its_type_by_code_and_date() {
        let mut filters = TypeFilters::default();
        filters.push(
            TypeFilter::parse(
                "Observation?code=http://loinc.org|8867-4&date=ge2021-01-01",
                &limits(),
            )
            .unwrap(),
        );
        assert!(filters.admits("Observation", &observation("8867-4", "2021-06-01"), 0));
        assert!(!filters.admits("Observation", &observation("8867-4", "2020-06-01"), 0));
        assert!(!filters.admits("Observation", &observation("1234-5", "2021-06-01"), 0));
        // Other types are not narrowed.
        assert!(filters.admits("Condition", &json!({"id": "c1"}), 0));
    }

    #[test]
    fn filters_of_one_type_combine_with_or() {
        let mut filters = TypeFilters::default();
        for f in ["Observation?code=8867-4", "Observation?code=1234-5"] {
            filters.push(TypeFilter::parse(f, &limits()).unwrap());
        }
        assert!(filters.admits("Observation", &observation("1234-5", "2021-06-01"), 0));
        assert!(!filters.admits("Observation", &observation("9999-9", "2021-06-01"), 0));
    }

    #[test]
    fn unsupported_and_invalid_filters_are_told_apart() {
        let unsupported = |f: &str| {
            matches!(
                TypeFilter::parse(f, &limits()),
                Err(FilterProblem::Unsupported(_))
            )
        };
        let invalid = |f: &str| {
            matches!(
                TypeFilter::parse(f, &limits()),
                Err(FilterProblem::Invalid(_))
            )
        };
        assert!(unsupported("Observation?value-quantity=gt5"));
        assert!(unsupported("Observation?date=ap2020"));
        assert!(unsupported("Observation?_count=5"));
        assert!(invalid("Observation"));
        assert!(invalid("NotAType?code=1"));
        assert!(invalid("Observation?date=notadate"));
    }
}
