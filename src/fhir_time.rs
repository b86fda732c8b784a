//! FHIR `date`, `dateTime` and `instant` values as inclusive ranges of microseconds since the
//! Unix epoch: the one parser behind stored clinical dates, consent periods and every date
//! search parameter.
//!
//! A FHIR date carries its precision: `2021` means the whole year, `2021-03` the whole month,
//! so a value is read as the `[start, end]` range it denotes and FHIR's search prefixes become
//! comparisons. Two grammars differ only in what a time of day may omit:
//! [`Grammar::DateTime`] is R4's `dateTime` (a time needs seconds and a zone; stored consents
//! are held to it, because a zoneless instant would make a consent's period depend on the
//! server's clock zone), [`Grammar::Search`] also takes `hh:mm` and a missing zone (UTC), as
//! search parameters and lenient indexing do.
//!
//! Never panics: all arithmetic is checked. The supported range is the calendar of years 0001
//! to 9999 with room for the instant just after a value, because a range ends where the next
//! one starts: `9999-12-30` is supported, while `9999-12`, `9999-12-31` or
//! `9999-12-31T23:59:59Z` would end in the year 10000 and are [`DateError::OutOfRange`]. Every
//! caller turns an error into a 4xx with a stable code (`date_out_of_range` for the latter) at
//! ingest and in search alike.

use time::{Date, Duration, Month, OffsetDateTime, PrimitiveDateTime, Time, UtcOffset};

/// An inclusive range of instants, in microseconds since the epoch.
pub type MicrosRange = (i64, i64);

/// Latest zone offset FHIR (and ISO 8601 in practice) allows, in minutes.
const MAX_OFFSET_MINUTES: i16 = 14 * 60;

/// Which lexical form a value must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grammar {
    /// R4 `dateTime`/`instant`: a time of day needs seconds and a zone.
    DateTime,
    /// Search parameter values: `hh:mm` and a missing zone (read as UTC) are allowed too.
    Search,
}

/// Why a value is not a supported FHIR date.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DateError {
    /// Not of the grammar (or not a calendar date, like `2021-02-30`).
    #[error("not a FHIR date or dateTime")]
    Malformed,
    /// Well formed, but its range would end outside the supported calendar.
    #[error("the date is outside the supported range (years 0001 to 9999)")]
    OutOfRange,
}

impl DateError {
    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            DateError::Malformed => "invalid_date",
            DateError::OutOfRange => "date_out_of_range",
        }
    }
}

/// Parses a FHIR date, dateTime or instant into the range it denotes; `None` when the text is
/// not of `grammar` or out of range (see [`parse`] to tell the two apart).
pub fn parse_range(text: &str, grammar: Grammar) -> Option<MicrosRange> {
    parse(text, grammar).ok()
}

/// Parses a FHIR date, dateTime or instant into the range it denotes.
pub fn parse(text: &str, grammar: Grammar) -> Result<MicrosRange, DateError> {
    use DateError::Malformed;
    lex(text, grammar).ok_or(Malformed)?.range()
}

/// A value as written, checked for its grammar and calendar but not yet turned into a range.
struct Lexed {
    first: Date,
    precision: Precision,
}

/// How much of a value was written.
enum Precision {
    Year,
    Month,
    Day,
    /// A time of day in a zone, and how long the written precision lasts (a minute, a
    /// second, a microsecond).
    Time(Time, UtcOffset, Duration),
}

impl Lexed {
    /// `[start, next)` as an inclusive microsecond range; both ends must fall in the years
    /// 0001..=9999 (UTC).
    fn range(&self) -> Result<MicrosRange, DateError> {
        let midnight = |d: Date| PrimitiveDateTime::new(d, Time::MIDNIGHT).assume_utc();
        let (start, next) = match &self.precision {
            Precision::Year => (
                midnight(self.first),
                Date::from_calendar_date(self.first.year() + 1, Month::January, 1)
                    .ok()
                    .map(midnight),
            ),
            Precision::Month => {
                let days = i64::from(self.first.month().length(self.first.year()));
                (
                    midnight(self.first),
                    self.first.checked_add(Duration::days(days)).map(midnight),
                )
            }
            Precision::Day => (midnight(self.first), self.first.next_day().map(midnight)),
            Precision::Time(time, offset, precision) => {
                let start = PrimitiveDateTime::new(self.first, *time).assume_offset(*offset);
                (start, start.checked_add(*precision))
            }
        };
        let in_calendar = |t: OffsetDateTime| {
            t.checked_to_offset(UtcOffset::UTC)
                .is_some_and(|utc| (1..=9999).contains(&utc.year()))
        };
        match next {
            Some(next) if in_calendar(start) && in_calendar(next) => {
                Ok((to_micros(start), to_micros(next) - 1))
            }
            _ => Err(DateError::OutOfRange),
        }
    }
}

fn lex(text: &str, grammar: Grammar) -> Option<Lexed> {
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
    let (first, precision) = match (month, day, time_part) {
        (None, None, None) => (first, Precision::Year),
        (Some(_), None, None) => (first, Precision::Month),
        (Some(_), Some(d), None) => (first.replace_day(d).ok()?, Precision::Day),
        (Some(_), Some(d), Some(t)) => (first.replace_day(d).ok()?, lex_time(t, grammar)?),
        _ => return None,
    };
    Some(Lexed { first, precision })
}

/// Microseconds since the epoch of an instant.
pub fn to_micros(t: OffsetDateTime) -> i64 {
    // Every instant `time` can represent (years -9999..=9999) fits in i64 microseconds.
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

fn digits<T: std::str::FromStr>(s: &str, len: usize) -> Option<T> {
    if s.len() == len && s.bytes().all(|b| b.is_ascii_digit()) {
        s.parse().ok()
    } else {
        None
    }
}

/// Reads `hh:mm[:ss[.fff]][Z|±hh:mm]`.
fn lex_time(text: &str, grammar: Grammar) -> Option<Precision> {
    // A `-` before the minutes cannot start a zone (`hh:mm` is five characters).
    let zone_at = text
        .find(['Z', '+'])
        .or_else(|| text.rfind('-').filter(|&i| i >= 5));
    let (clock, zone) = match zone_at {
        Some(i) => text.split_at(i),
        None => (text, ""),
    };
    let offset = match zone {
        "" if grammar == Grammar::DateTime => return None,
        "" | "Z" => UtcOffset::UTC,
        z => {
            let sign: i16 = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z.get(1..)?.split_once(':')?;
            let (h, m): (i16, i16) = (digits(h, 2)?, digits(m, 2)?);
            if m > 59 || h * 60 + m > MAX_OFFSET_MINUTES {
                return None;
            }
            UtcOffset::from_whole_seconds(i32::from(sign * (h * 60 + m)) * 60).ok()?
        }
    };
    let mut parts = clock.split(':');
    let hour: u8 = digits(parts.next()?, 2)?;
    let minute: u8 = digits(parts.next()?, 2)?;
    let seconds = parts.next();
    if parts.next().is_some() {
        return None;
    }
    let (second, micros, precision) = match seconds {
        None if grammar == Grammar::DateTime => return None,
        None => (0u8, 0u32, Duration::minutes(1)),
        Some(s) => match s.split_once('.') {
            None => (digits::<u8>(s, 2)?, 0, Duration::seconds(1)),
            Some((whole, frac)) => {
                if frac.is_empty() || !frac.bytes().all(|b| b.is_ascii_digit()) {
                    return None;
                }
                // Digits beyond microseconds only narrow the instant; the range keeps
                // microseconds.
                let micros = (0..6).fold(0u32, |acc, i| {
                    acc * 10 + frac.as_bytes().get(i).map_or(0, |b| u32::from(b - b'0'))
                });
                (digits::<u8>(whole, 2)?, micros, Duration::microseconds(1))
            }
        },
    };
    // A leap second (60) is lexically allowed; it reads as the last representable second.
    let time = Time::from_hms_micro(hour, minute, second.min(59), micros).ok()?;
    Some(Precision::Time(time, offset, precision))
}

#[cfg(test)]
mod tests {
    use super::*;

    const JAN1_2015: i64 = 1_420_070_400_000_000;
    const DAY_MICROS: i64 = 86_400_000_000;

    fn at(text: &str) -> i64 {
        to_micros(
            OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339)
                .expect("test instant"),
        )
    }

    #[test]
    fn precision_sets_the_range() {
        let day = DAY_MICROS;
        let cases = [
            ("2015", (JAN1_2015, JAN1_2015 + 365 * day - 1)),
            (
                "2016",
                (at("2016-01-01T00:00:00Z"), at("2017-01-01T00:00:00Z") - 1),
            ),
            ("2015-02", (JAN1_2015 + 31 * day, JAN1_2015 + 59 * day - 1)),
            (
                "2024-02",
                (at("2024-02-01T00:00:00Z"), at("2024-03-01T00:00:00Z") - 1),
            ),
            ("2015-01-01", (JAN1_2015, JAN1_2015 + day - 1)),
            ("2015-01-01T00:00:00Z", (JAN1_2015, JAN1_2015 + 999_999)),
            (
                "2015-01-01T10:00:00+10:00",
                (JAN1_2015, JAN1_2015 + 999_999),
            ),
            (
                "2014-12-31T14:00:00-10:00",
                (JAN1_2015, JAN1_2015 + 999_999),
            ),
            (
                "2015-01-01T00:00:00.5Z",
                (JAN1_2015 + 500_000, JAN1_2015 + 500_000),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(parse(text, Grammar::DateTime), Ok(expected), "{text}");
            assert_eq!(parse_range(text, Grammar::Search), Some(expected), "{text}");
        }
    }

    #[test]
    fn search_takes_minutes_and_zoneless_times() {
        let start = at("2021-03-04T10:15:00Z");
        for text in ["2021-03-04T10:15Z", "2021-03-04T10:15"] {
            assert_eq!(
                parse_range(text, Grammar::Search),
                Some((start, start + 59_999_999))
            );
            assert_eq!(parse_range(text, Grammar::DateTime), None, "{text}");
        }
        let zoneless = parse_range("2021-03-04T10:15:00", Grammar::Search);
        assert_eq!(zoneless, Some((start, start + 999_999)));
    }

    #[test]
    fn values_ending_after_year_9999_are_out_of_range() {
        for grammar in [Grammar::DateTime, Grammar::Search] {
            for text in [
                "9999",
                "9999-12",
                "9999-12-31",
                "9999-12-31T23:59:59Z",
                "9999-12-31T23:59:59.999999Z",
                "9999-12-31T23:59:59.9999999999Z",
                "9999-12-31T20:00:00-05:00",
                "0001-01-01T00:00:00+01:00",
            ] {
                assert_eq!(parse(text, grammar), Err(DateError::OutOfRange), "{text}");
            }
            let last_day = parse("9999-12-30", grammar).expect("9999-12-30 is supported");
            assert_eq!(last_day.1, at("9999-12-31T00:00:00Z") - 1);
            let first = parse("0001", grammar).expect("0001 is supported");
            assert_eq!(first.0, at("0001-01-01T00:00:00Z"));
            assert_eq!(
                parse("9999-12-31T04:00:00+05:00", grammar).map(|r| r.0),
                Ok(at("9999-12-30T23:00:00Z"))
            );
        }
    }

    #[test]
    fn malformed_values_are_none() {
        for text in [
            "",
            "15",
            "21",
            "2015-1",
            "2015-13",
            "2015-02-30",
            "2015-01-01T24:00:00Z",
            "2015-01-01T00:00:00+15:00",
            "2015-01-01T00:00:00+14:30",
            "2015-01-01T00:00:00+10:60",
            "2015-01-01T00:00:00.Z",
            "2015-01-01T00:00:00+1000",
            "0000",
            "10000",
            "-001",
            "2015-01-01-01",
            "2015-01T10:00:00Z",
            "2021-02-03T",
            "x2021",
            "abcd",
        ] {
            assert_eq!(
                parse(text, Grammar::Search),
                Err(DateError::Malformed),
                "{text:?}"
            );
            assert_eq!(
                parse(text, Grammar::DateTime),
                Err(DateError::Malformed),
                "{text:?}"
            );
        }
    }

    #[test]
    fn instants_round_trip() {
        let m = at("2026-11-29T10:00:00.123456Z");
        assert_eq!(format_instant(m), "2026-11-29T10:00:00.123456Z");
        assert_eq!(
            parse_range(&format_instant(m), Grammar::DateTime),
            Some((m, m))
        );
    }
}
