//! FHIR `date`, `dateTime` and `instant` strings taken apart for shifting and ageing.

use time::{Date, Duration, Month};

/// A FHIR date, dateTime or instant split into its calendar part and whatever follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct FhirDate<'a> {
    /// The year, 1..=9999.
    pub year: i32,
    /// The month, when given.
    pub month: Option<u8>,
    /// The day, when given (only with a month).
    pub day: Option<u8>,
    /// Everything after the calendar part, e.g. `T10:00:00+01:00`; empty for a plain date.
    pub rest: &'a str,
}

impl<'a> FhirDate<'a> {
    /// Parses the calendar part at the start of `text` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`);
    /// what follows is left in `rest`, unchecked.
    pub fn parse_prefix(text: &'a str) -> Option<Self> {
        let year = digits(text.get(..4)?)?;
        if year == 0 {
            return None;
        }
        let mut date = FhirDate {
            year: year as i32,
            month: None,
            day: None,
            rest: &text[4..],
        };
        let Some(month_text) = date.rest.strip_prefix('-').and_then(|r| r.get(..2)) else {
            return Some(date);
        };
        let month = u8::try_from(digits(month_text)?).ok()?;
        Month::try_from(month).ok()?;
        date.month = Some(month);
        date.rest = &date.rest[3..];
        let Some(day_text) = date.rest.strip_prefix('-').and_then(|r| r.get(..2)) else {
            return Some(date);
        };
        let day = u8::try_from(digits(day_text)?).ok()?;
        Date::from_calendar_date(date.year, Month::try_from(month).ok()?, day).ok()?;
        date.day = Some(day);
        date.rest = &date.rest[3..];
        Some(date)
    }

    /// Parses a whole FHIR date, dateTime or instant: the calendar part, then nothing or a
    /// full time with a zone (a time is only allowed after a day).
    pub fn parse_strict(text: &'a str) -> Option<Self> {
        let date = Self::parse_prefix(text)?;
        let valid =
            date.rest.is_empty() || (date.day.is_some() && time_length(date.rest).is_some());
        valid.then_some(date)
    }

    /// The first day the value can denote (`2014` is 2014-01-01).
    pub fn first_day(&self) -> Option<Date> {
        let month = Month::try_from(self.month.unwrap_or(1)).ok()?;
        Date::from_calendar_date(self.year, month, self.day.unwrap_or(1)).ok()
    }

    /// The full calendar date, when a day is given.
    pub fn full_date(&self) -> Option<Date> {
        self.day.and(self.first_day())
    }

    /// The year as FHIR writes it.
    pub fn year_text(&self) -> String {
        format!("{:04}", self.year)
    }
}

/// `date` moved by `days`, when the result is still a year FHIR can write (1..=9999).
pub(super) fn shift(date: Date, days: i64) -> Option<Date> {
    let moved = date.checked_add(Duration::days(days))?;
    (1..=9999).contains(&moved.year()).then_some(moved)
}

/// `YYYY-MM-DD` (with room for a time after it, which most shifted values carry).
pub(super) fn format_date(date: Date) -> String {
    let mut text = String::with_capacity(32);
    let digits = |text: &mut String, value: u32, width: u32| {
        for place in (0..width).rev() {
            let digit = (value / 10u32.pow(place)) % 10;
            text.push(char::from(b'0' + digit as u8));
        }
    };
    // Years are 1..=9999 (see `shift`), so four digits always suffice.
    digits(&mut text, date.year().unsigned_abs(), 4);
    text.push('-');
    digits(&mut text, u32::from(u8::from(date.month())), 2);
    text.push('-');
    digits(&mut text, u32::from(date.day()), 2);
    text
}

/// Completed years from `born` to `on` (an age); negative when `on` is earlier.
pub(super) fn full_years(born: Date, on: Date) -> i32 {
    let mut years = on.year() - born.year();
    if (u8::from(on.month()), on.day()) < (u8::from(born.month()), born.day()) {
        years -= 1;
    }
    years
}

/// The length of `hh:mm:ss(.fff)` after the `T` of `rest` when `rest` is exactly
/// `Thh:mm:ss(.fff)(Z|+hh:mm|-hh:mm)`.
pub(super) fn time_length(rest: &str) -> Option<usize> {
    let time = rest.strip_prefix('T')?;
    let bytes = time.as_bytes();
    let two = |at: usize, max: u32| -> Option<()> {
        let value = digits(time.get(at..at + 2)?)?;
        (value <= max).then_some(())
    };
    two(0, 23)?;
    (bytes.get(2) == Some(&b':')).then_some(())?;
    two(3, 59)?;
    (bytes.get(5) == Some(&b':')).then_some(())?;
    two(6, 60)?;
    let mut end = 8;
    if bytes.get(end) == Some(&b'.') {
        let fraction = bytes[end + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
        if fraction == 0 {
            return None;
        }
        end += 1 + fraction;
    }
    let zone = &time[end..];
    let zone_ok = zone == "Z"
        || (zone.len() == 6
            && (zone.starts_with('+') || zone.starts_with('-'))
            && zone.as_bytes()[3] == b':'
            && zone.get(1..3).and_then(digits).is_some_and(|h| h <= 14)
            && zone.get(4..6).and_then(digits).is_some_and(|m| m <= 59));
    zone_ok.then_some(end)
}

/// The value of a string made only of ASCII digits.
fn digits(text: &str) -> Option<u32> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse().ok()
}
