//! FHIR date, dateTime and instant values as ranges of microseconds since the Unix epoch.
//!
//! A FHIR date carries its precision: `2021` means the whole year, `2021-03` the whole month.
//! Stored clinical dates and search parameters are both turned into `[start, end]` ranges
//! (inclusive, microsecond resolution) so that FHIR's prefix semantics become comparisons.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An inclusive range of instants, in microseconds since the epoch.
pub type MicrosRange = (i64, i64);

/// Microseconds since the epoch of an instant.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    // Dates FHIR allows (years 0001..9999) fit easily in i64 microseconds.
    (t.unix_timestamp_nanos() / 1_000) as i64
}

/// The current time, truncated to microseconds so that it round-trips through storage.
pub fn now_micros() -> i64 {
    to_micros(OffsetDateTime::now_utc())
}

/// Formats microseconds since the epoch as a FHIR instant (`2026-11-29T10:00:00.123456Z`).
pub fn format_instant(micros: i64) -> String {
    let t = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1_000)
        .unwrap_or(OffsetDateTime::UNIX_EPOCH);
    let format = time::macros::format_description!(
        "[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z"
    );
    t.format(&format)
        .unwrap_or_else(|_| "1970-01-01T00:00:00.000000Z".into())
}

/// Parses a FHIR date, dateTime or instant into the range it denotes. A time without a zone
/// (allowed in search parameters) is taken as UTC. Returns `None` for anything malformed.
pub fn parse_range(text: &str) -> Option<MicrosRange> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year: i32 = parse_digits(fields.next()?, 4)?;
    let month = match fields.next() {
        Some(m) => Some(parse_digits::<u8>(m, 2)?),
        None => None,
    };
    let day = match fields.next() {
        Some(d) => Some(parse_digits::<u8>(d, 2)?),
        None => None,
    };
    if fields.next().is_some() || year < 1 {
        return None;
    }
    let first_day =
        Date::from_calendar_date(year, Month::try_from(month.unwrap_or(1)).ok()?, 1).ok()?;
    match (month, day, time_part) {
        (None, None, None) => {
            let next = Date::from_calendar_date(year + 1, Month::January, 1).ok()?;
            Some(span(midnight(first_day), midnight(next)))
        }
        (Some(_), None, None) => {
            let next = first_day.replace_day(1).ok()?
                + Duration::days(i64::from(first_day.month().length(year)));
            Some(span(midnight(first_day), midnight(next)))
        }
        (Some(_), Some(d), None) => {
            let date = first_day.replace_day(d).ok()?;
            Some(span(midnight(date), midnight(date.next_day()?)))
        }
        (Some(_), Some(d), Some(t)) => {
            let date = first_day.replace_day(d).ok()?;
            parse_time(date, t)
        }
        _ => None,
    }
}

fn midnight(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()
}

/// `[start, next)` as an inclusive microsecond range.
fn span(start: OffsetDateTime, next: OffsetDateTime) -> MicrosRange {
    (to_micros(start), to_micros(next) - 1)
}

fn parse_digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses `hh:mm[:ss[.fff]][Z|±hh:mm]` on `date`; the range spans the stated precision.
fn parse_time(date: Date, text: &str) -> Option<MicrosRange> {
    let zone_at = text
        .find(['Z', '+'])
        .or_else(|| text.rfind('-').filter(|&i| i >= 5));
    let (clock, zone) = match zone_at {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let offset = match zone {
        "" | "Z" => UtcOffset::UTC,
        z => {
            let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            UtcOffset::from_hms(
                sign * parse_digits::<i8>(h, 2)?,
                sign * parse_digits::<i8>(m, 2)?,
                0,
            )
            .ok()?
        }
    };
    let mut parts = clock.split(':');
    let hour: u8 = parse_digits(parts.next()?, 2)?;
    let minute: u8 = parse_digits(parts.next()?, 2)?;
    let (second, fraction, precision) = match parts.next() {
        None => (0u8, 0u32, Duration::minutes(1)),
        Some(s) => match s.split_once('.') {
            None => (parse_digits(s, 2)?, 0, Duration::seconds(1)),
            Some((whole, frac)) => {
                if frac.is_empty() || frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                let micros_text: String = frac.chars().chain("000000".chars()).take(6).collect();
                (
                    parse_digits(whole, 2)?,
                    micros_text.parse().ok()?,
                    Duration::microseconds(1),
                )
            }
        },
    };
    if parts.next().is_some() {
        return None;
    }
    let time = Time::from_hms_micro(hour, minute, second.min(59), fraction).ok()?;
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(span(start, start + precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> i64 {
        let t =
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).unwrap();
        to_micros(t)
    }

    #[test]
    fn precision_sets_the_range() {
        let cases = [
            ("2021", "2021-01-01T00:00:00Z", "2022-01-01T00:00:00Z"),
            ("2021-02", "2021-02-01T00:00:00Z", "2021-03-01T00:00:00Z"),
            ("2024-02", "2024-02-01T00:00:00Z", "2024-03-01T00:00:00Z"),
            ("2021-12-31", "2021-12-31T00:00:00Z", "2022-01-01T00:00:00Z"),
            (
                "2021-03-04T10:15:00+02:00",
                "2021-03-04T08:15:00Z",
                "2021-03-04T08:15:01Z",
            ),
            (
                "2021-03-04T10:15Z",
                "2021-03-04T10:15:00Z",
                "2021-03-04T10:16:00Z",
            ),
            (
                "2021-03-04T10:15:00-05:00",
                "2021-03-04T15:15:00Z",
                "2021-03-04T15:15:01Z",
            ),
        ];
        for (text, start, next) in cases {
            assert_eq!(parse_range(text), Some((at(start), at(next) - 1)), "{text}");
        }
        let exact = parse_range("2021-03-04T10:15:00.5Z").unwrap();
        assert_eq!(exact.0, at("2021-03-04T10:15:00.5Z"));
        assert_eq!(exact.1, exact.0);
    }

    #[test]
    fn malformed_dates_are_none() {
        for bad in [
            "",
            "21",
            "2021-2",
            "2021-13",
            "2021-02-30",
            "2021-02-03T",
            "2021-02-03T25:00Z",
            "x2021",
            "2021-01-01T10:00:00.Z",
            "2021-01-01-01",
            "0000",
        ] {
            assert_eq!(parse_range(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn instants_round_trip() {
        let m = at("2026-11-29T10:00:00.123456Z");
        assert_eq!(format_instant(m), "2026-11-29T10:00:00.123456Z");
        assert_eq!(parse_range(&format_instant(m)), Some((m, m)));
    }
}
