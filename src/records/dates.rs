//! Dates of records and searches: FHIR values read with the lenient search grammar of
//! [`crate::fhir_time`] (stored clinical dates are indexed as leniently as they are searched).

use crate::fhir_time::Grammar;
pub use crate::fhir_time::{DateError, MicrosRange, format_instant, now_micros, to_micros};

/// Parses a FHIR date, dateTime or instant (a time may omit seconds or zone) into the range it
/// denotes; `None` for anything malformed.
pub fn parse_range(text: &str) -> Option<MicrosRange> {
    parse(text).ok()
}

/// As [`parse_range`], telling a malformed value from one out of range.
pub fn parse(text: &str) -> Result<MicrosRange, DateError> {
    crate::fhir_time::parse(text, Grammar::Search)
}
