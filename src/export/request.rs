//! What a kick-off asks for: the query string of `GET /fhir/Group/{study}/$export`, read into
//! one [`ExportRequest`].
//!
//! Supported: `_outputFormat` (NDJSON only), `_type` (comma-separated R4 types) and `_since`
//! (a FHIR instant), each at most once. Anything else is refused with 400: an export that
//! silently ignored a parameter would release more than the client asked for.

use std::collections::BTreeSet;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::DomainError;
use crate::records::{dates, validate};

/// What one export is asked to produce.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportRequest {
    /// `_type`: only these resource types; empty for all.
    pub types: Vec<String>,
    /// `_since`: only resources updated after this instant (microseconds).
    pub since: Option<i64>,
}

const SUPPORTED: &str = "this export supports `_outputFormat`, `_type` and `_since` only";

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
    /// Reads the query string of a kick-off; each parameter at most once.
    pub fn from_query(raw: &str) -> Result<Self, DomainError> {
        let mut out = ExportRequest::default();
        let mut seen = BTreeSet::new();
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            if !seen.insert(key.to_string()) {
                return Err(invalid(
                    "duplicate_parameter",
                    "each parameter may be given once",
                ));
            }
            match key.as_ref() {
                "_outputFormat" => {
                    if !matches!(
                        value.as_ref(),
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
                "_typeFilter"
                | "_elements"
                | "patient"
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
