//! Dates of consents: R4 `dateTime` values, strictly (a time needs seconds and a zone), read by
//! [`crate::fhir_time`] as the ranges they denote.

pub use crate::fhir_time::{DateError, MicrosRange, to_micros};
use crate::fhir_time::{Grammar, parse};

/// Parses a FHIR R4 `dateTime` (or `date`) into the range it denotes; `None` when malformed.
pub fn parse_date_time(text: &str) -> Option<MicrosRange> {
    date_time(text).ok()
}

/// As [`parse_date_time`], telling a malformed value from one out of range.
pub fn date_time(text: &str) -> Result<MicrosRange, DateError> {
    parse(text, Grammar::DateTime)
}
