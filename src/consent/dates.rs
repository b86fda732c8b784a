//! FHIR `date` and `dateTime` values as inclusive ranges of microseconds since the epoch.
//!
//! A FHIR date carries its precision (`2015` is the whole year), so a value is read as the
//! range it denotes. R4 `dateTime` requires seconds and a zone whenever a time is given; this
//! parser holds consents to that, because a zoneless instant would make a consent's period
//! depend on the server's clock zone.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An inclusive range of instants, in microseconds since the Unix epoch.
pub type MicrosRange = (i64, i64);

/// Parses a FHIR R4 `dateTime` (or `date`) into the range it denotes; `None` when malformed.
pub fn parse_date_time(text: &str) -> Option<MicrosRange> {
    let (date_part, time_part) = match text.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let mut fields = date_part.split('-');
    let year: i32 = digits(fields.next()?, 4)?;
    let month: Option<u8> = match fields.next() {
        Some(m) => Some(digits(m, 2)?),
        None => None,
    };
    let day: Option<u8> = match fields.next() {
        Some(d) => Some(digits(d, 2)?),
        None => None,
    };
    if fields.next().is_some() || year < 1 {
        return None;
    }
    let first =
        Date::from_calendar_date(year, Month::try_from(month.unwrap_or(1)).ok()?, 1).ok()?;
    match (month, day, time_part) {
        (None, None, None) => {
            let next = Date::from_calendar_date(year.checked_add(1)?, Month::January, 1).ok()?;
            Some(span(midnight(first), midnight(next)))
        }
        (Some(_), None, None) => {
            let next = first.checked_add(Duration::days(i64::from(first.month().length(year))))?;
            Some(span(midnight(first), midnight(next)))
        }
        (Some(_), Some(d), None) => {
            let date = first.replace_day(d).ok()?;
            Some(span(midnight(date), midnight(date.next_day()?)))
        }
        (Some(_), Some(d), Some(t)) => parse_time(first.replace_day(d).ok()?, t),
        _ => None,
    }
}

/// Microseconds since the epoch of an instant.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    // Years 0001..=9999, all FHIR allows, fit in i64 microseconds with room to spare.
    (t.unix_timestamp_nanos() / 1_000) as i64
}

fn midnight(date: Date) -> OffsetDateTime {
    PrimitiveDateTime::new(date, Time::MIDNIGHT).assume_utc()
}

/// `[start, next)` as an inclusive microsecond range.
fn span(start: OffsetDateTime, next: OffsetDateTime) -> MicrosRange {
    (to_micros(start), to_micros(next) - 1)
}

fn digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Parses `hh:mm:ss[.fff](Z|±hh:mm)` on `date`; the range spans the stated precision.
fn parse_time(date: Date, text: &str) -> Option<MicrosRange> {
    let zone_at = text.find(['Z', '+', '-'])?;
    let (clock, zone) = text.split_at(zone_at);
    let offset = match zone {
        "Z" => UtcOffset::UTC,
        z => {
            let sign: i8 = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z.get(1..)?.split_once(':')?;
            let (h, m): (i8, i8) = (digits(h, 2)?, digits(m, 2)?);
            if h > 14 || (h == 14 && m != 0) {
                return None;
            }
            UtcOffset::from_hms(sign * h, sign * m, 0).ok()?
        }
    };
    let mut parts = clock.split(':');
    let hour: u8 = digits(parts.next()?, 2)?;
    let minute: u8 = digits(parts.next()?, 2)?;
    let seconds = parts.next()?;
    if parts.next().is_some() {
        return None;
    }
    let (second, micros, precision) = match seconds.split_once('.') {
        None => (digits::<u8>(seconds, 2)?, 0u32, Duration::seconds(1)),
        Some((whole, frac)) => {
            if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            // Digits beyond microseconds only narrow the instant; the range keeps microseconds.
            let mut micros = 0u32;
            for i in 0..6 {
                let d = frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'));
                micros = micros * 10 + d;
            }
            (digits::<u8>(whole, 2)?, micros, Duration::microseconds(1))
        }
    };
    // A leap second (60) is allowed by the regex; it is read as the last representable second.
    let time = Time::from_hms_micro(hour, minute, second.min(59), micros).ok()?;
    let start = PrimitiveDateTime::new(date, time).assume_offset(offset);
    Some(span(start, start.checked_add(precision)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: i64 = 86_400_000_000;

    #[test]
    fn values_denote_their_precision() {
        // 2015-01-01T00:00:00Z in microseconds.
        let jan1 = 1_420_070_400_000_000i64;
        let cases = [
            ("2015", Some((jan1, jan1 + 365 * DAY - 1))),
            ("2015-01", Some((jan1, jan1 + 31 * DAY - 1))),
            ("2015-02", Some((jan1 + 31 * DAY, jan1 + 59 * DAY - 1))),
            ("2015-01-01", Some((jan1, jan1 + DAY - 1))),
            ("2015-01-01T00:00:00Z", Some((jan1, jan1 + 999_999))),
            (
                "2015-01-01T00:00:00.5Z",
                Some((jan1 + 500_000, jan1 + 500_000)),
            ),
            ("2015-01-01T10:00:00+10:00", Some((jan1, jan1 + 999_999))),
            ("2014-12-31T14:00:00-10:00", Some((jan1, jan1 + 999_999))),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_date_time(text), expected, "{text}");
        }
    }

    #[test]
    fn malformed_values_are_refused() {
        for text in [
            "",
            "15",
            "2015-1",
            "2015-13",
            "2015-02-30",
            "2015-01-01T00:00Z",
            "2015-01-01T00:00:00",
            "2015-01-01T24:00:00Z",
            "2015-01-01T00:00:00+15:00",
            "2015-01-01T00:00:00.Z",
            "2015-01-01T00:00:00+1000",
            "0000",
            "2015-01-01-01",
            "2015-01T10:00:00Z",
            "abcd",
        ] {
            assert_eq!(parse_date_time(text), None, "{text}");
        }
    }
}
