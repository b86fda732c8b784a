//! What a kick-off asks for, read into one [`ExportRequest`]: the query string of
//! `GET /fhir/Group/{study}/$export`, or the FHIR `Parameters` body of the `POST` kick-off
//! (Bulk Data v2). Both are reduced to the same (name, value) pairs and read by one function,
//! so the two kick-offs accept and refuse exactly the same things with the same codes.
//!
//! Supported: `_outputFormat` (NDJSON only), `_type` (R4 types, comma-separated or repeated),
//! `_since` (a FHIR instant), `_typeFilter` (repeatable; see [`super::filter`]) and, in the
//! `POST` body only, `patient` (a `valueReference` to `Patient/{id}`, repeatable: only those
//! members of the study are exported). Anything else is refused with 400: an export that
//! silently ignored a parameter would release more than the client asked for. Under
//! `Prefer: handling=lenient` an unsupported parameter or `_typeFilter` is instead ignored and
//! reported in the manifest's `error` file ([`ExportRequest::ignored`]); a malformed value is
//! refused either way.

use std::collections::BTreeSet;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::filter::{FilterProblem, TypeFilter, TypeFilters};
use crate::config::Limits;
use crate::error::DomainError;
use crate::records::{dates, index, validate};

/// Most parameters one kick-off may carry.
pub const MAX_PARAMETERS: usize = 200;
/// Most `_typeFilter`s one kick-off may carry.
pub const MAX_TYPE_FILTERS: usize = 50;
/// Most patients one `POST` kick-off may name.
pub const MAX_PATIENTS: usize = 1000;

/// What one export is asked to produce.
#[derive(Debug, Clone, Default)]
pub struct ExportRequest {
    /// `_type`: only these resource types; empty for all.
    pub types: Vec<String>,
    /// `_since`: only resources updated after this instant (microseconds).
    pub since: Option<i64>,
    /// `patient`: only these members of the study; empty for every member.
    pub patients: Vec<String>,
    /// `_typeFilter`: narrows the types it names.
    pub filters: TypeFilters,
    /// What lenient handling ignored, one message each, for the manifest's `error` file.
    pub ignored: Vec<String>,
}

/// How a kick-off arrived; `patient` is a `POST` parameter only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// `GET` with a query string.
    Query,
    /// `POST` with a `Parameters` body.
    Parameters,
}

const SUPPORTED: &str = "this export supports `_outputFormat`, `_type`, `_since`, `_typeFilter` \
     and (POST only) `patient`; send `Prefer: handling=lenient` to have others ignored";

fn invalid(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::invalid(code, message)
}

/// Parses a FHIR instant (seconds and zone required); a `+` sent unencoded arrives as a space.
fn parse_instant(text: &str) -> Option<i64> {
    let text = text.replace(' ', "+");
    if !text.contains('T') {
        return None;
    }
    OffsetDateTime::parse(&text, &Rfc3339)
        .ok()
        .map(dates::to_micros)
}

impl ExportRequest {
    /// Reads the query string of a `GET` kick-off.
    pub fn from_query(raw: &str, lenient: bool, limits: &Limits) -> Result<Self, DomainError> {
        let pairs = form_urlencoded::parse(raw.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .take(MAX_PARAMETERS + 1)
            .collect();
        Self::read(pairs, Via::Query, lenient, limits)
    }

    /// Reads the `Parameters` body of a `POST` kick-off.
    pub fn from_parameters(
        body: &Value,
        lenient: bool,
        limits: &Limits,
    ) -> Result<Self, DomainError> {
        Self::read(parameter_pairs(body)?, Via::Parameters, lenient, limits)
    }

    fn read(
        pairs: Vec<(String, String)>,
        via: Via,
        lenient: bool,
        limits: &Limits,
    ) -> Result<Self, DomainError> {
        if pairs.len() > MAX_PARAMETERS {
            return Err(invalid(
                "too_many_parameters",
                format!("a kick-off may carry at most {MAX_PARAMETERS} parameters"),
            ));
        }
        let mut out = ExportRequest::default();
        let mut seen = BTreeSet::new();
        for (key, value) in pairs {
            let repeatable = matches!(key.as_str(), "_typeFilter" | "patient")
                || (key == "_type" && via == Via::Parameters);
            if !seen.insert(key.clone()) && !repeatable {
                return Err(invalid(
                    "duplicate_parameter",
                    "each parameter but `_typeFilter` (and `_type` and `patient` in a POST body) may be given once",
                ));
            }
            match key.as_str() {
                "_outputFormat" => {
                    if !matches!(
                        value.as_str(),
                        "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                    ) {
                        return Err(invalid(
                            "unsupported_output_format",
                            "`_outputFormat` must be application/fhir+ndjson",
                        ));
                    }
                }
                "_type" => {
                    for ty in value.split(',').map(str::trim) {
                        if !validate::is_resource_type(ty) {
                            return Err(invalid(
                                "invalid_type",
                                "`_type` must list FHIR R4 resource types, comma-separated",
                            ));
                        }
                        if !out.types.iter().any(|t| t == ty) {
                            out.types.push(ty.to_string());
                        }
                    }
                }
                "_since" => {
                    out.since = Some(parse_instant(&value).ok_or_else(|| {
                        invalid(
                            "invalid_since",
                            "`_since` must be a FHIR instant, e.g. 2024-01-01T00:00:00Z",
                        )
                    })?);
                }
                "_typeFilter" => {
                    if out.filters.len() + out.ignored.len() >= MAX_TYPE_FILTERS {
                        return Err(invalid(
                            "too_many_type_filters",
                            format!(
                                "a kick-off may carry at most {MAX_TYPE_FILTERS} `_typeFilter`s"
                            ),
                        ));
                    }
                    match TypeFilter::parse(&value, limits) {
                        Ok(filter) => out.filters.push(filter),
                        Err(FilterProblem::Invalid(message)) => {
                            return Err(invalid("invalid_type_filter", message));
                        }
                        Err(FilterProblem::Unsupported(message)) if lenient => {
                            out.ignored
                                .push(format!("ignored under handling=lenient: {message}"));
                        }
                        Err(FilterProblem::Unsupported(message)) => {
                            return Err(invalid(
                                "unsupported_type_filter",
                                format!(
                                    "{message}; send `Prefer: handling=lenient` to have it ignored"
                                ),
                            ));
                        }
                    }
                }
                "patient" if via == Via::Parameters => {
                    if out.patients.len() >= MAX_PATIENTS {
                        return Err(invalid(
                            "too_many_patients",
                            format!("a kick-off may name at most {MAX_PATIENTS} patients"),
                        ));
                    }
                    let id = index::patient_id_from_reference(&value)
                        .filter(|id| validate::is_valid_id(id))
                        .ok_or_else(|| {
                            invalid(
                                "invalid_patient",
                                "`patient` must be a valueReference to Patient/{id}",
                            )
                        })?;
                    if !out.patients.contains(&id) {
                        out.patients.push(id);
                    }
                }
                // Narrowing by patient in a query string is not in Bulk Data v2; ignoring it
                // would widen the export, so it is refused even under lenient handling.
                "patient" => {
                    return Err(invalid(
                        "unsupported_parameter",
                        "`patient` is accepted in the POST kick-off's Parameters body only",
                    ));
                }
                other if lenient => {
                    out.ignored.push(format!(
                        "ignored under handling=lenient: parameter `{}` is not supported",
                        validate::printable(other, 40)
                    ));
                }
                "_elements"
                | "includeAssociatedData"
                | "organizeOutputBy"
                | "allowPartialManifests" => {
                    return Err(invalid("unsupported_parameter", SUPPORTED));
                }
                _ => return Err(invalid("unknown_parameter", SUPPORTED)),
            }
        }
        Ok(out)
    }
}

/// The (name, value) pairs of a FHIR `Parameters` resource, each value as its query-string
/// text would be (a reference as its `reference`).
fn parameter_pairs(body: &Value) -> Result<Vec<(String, String)>, DomainError> {
    let not_parameters = || {
        invalid(
            "invalid_parameters",
            "the POST kick-off body must be a FHIR Parameters resource",
        )
    };
    if body.get("resourceType").and_then(Value::as_str) != Some("Parameters") {
        return Err(not_parameters());
    }
    let Some(list) = body.get("parameter") else {
        return Ok(Vec::new());
    };
    let list = list.as_array().ok_or_else(not_parameters)?;
    if list.len() > MAX_PARAMETERS {
        return Err(invalid(
            "too_many_parameters",
            format!("a kick-off may carry at most {MAX_PARAMETERS} parameters"),
        ));
    }
    let mut pairs = Vec::with_capacity(list.len());
    for parameter in list {
        let name = parameter
            .get("name")
            .and_then(Value::as_str)
            .ok_or_else(not_parameters)?;
        let value = parameter_value(parameter).ok_or_else(|| {
            invalid(
                "invalid_parameters",
                format!(
                    "parameter `{}` needs one value (valueString, valueInstant, valueReference, ...)",
                    validate::printable(name, 40)
                ),
            )
        })?;
        pairs.push((name.to_string(), value));
    }
    Ok(pairs)
}

/// The one `value[x]` of a parameter as text; `None` without exactly one.
fn parameter_value(parameter: &Value) -> Option<String> {
    let object = parameter.as_object()?;
    let mut values = object.iter().filter(|(k, _)| k.starts_with("value"));
    let (key, value) = values.next()?;
    if values.next().is_some() {
        return None;
    }
    match (key.as_str(), value) {
        ("valueReference", Value::Object(r)) => r
            .get("reference")
            .and_then(Value::as_str)
            .map(str::to_string),
        (_, Value::String(s)) => Some(s.clone()),
        _ => None,
    }
}
