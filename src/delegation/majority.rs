//! Minors: a parent's or guardian's delegation ends when the patient comes of age
//! (`rights.age_of_majority`, from the Patient's `birthDate`), and the patient is told.
//!
//! A partial birth date (`2008`, `2008-05`) counts from its earliest day, so authority over a
//! young adult's records ends no later than it could: the choice that protects the patient.
//! The check runs on every request a delegate makes ([`super::signin`]) and in the periodic
//! sweep ([`sweep`]), so the patient is told even if the delegate never signs in again.

use serde_json::Value;
use time::{Date, Month};

use super::manage::end_delegation;
use super::model::Relationship;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::records::{RecordError, ingest};
use crate::store::DbConn;
use crate::store::delegations::{self as rows, DelegationRow};

/// How many delegations one sweep looks at.
const SWEEP_BATCH: i64 = 500;

/// The earliest day a FHIR `date` (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`) can mean.
pub fn earliest_day(text: &str) -> Option<Date> {
    let mut parts = text.split('-');
    let year: i32 = parts.next()?.parse().ok()?;
    let month: u8 = parts.next().map_or(Some(1), |m| m.parse().ok())?;
    let day: u8 = parts.next().map_or(Some(1), |d| d.parse().ok())?;
    if parts.next().is_some() {
        return None;
    }
    Date::from_calendar_date(year, Month::try_from(month).ok()?, day).ok()
}

/// Whether someone born on `birth` is at least `age` years old on `today` (a 29 February
/// birthday falls on 1 March in other years).
pub fn is_of_age(birth: Date, today: Date, age: u32) -> bool {
    let Some(year) = i32::try_from(age)
        .ok()
        .and_then(|a| birth.year().checked_add(a))
    else {
        return false;
    };
    let anniversary = birth
        .replace_year(year)
        .unwrap_or_else(|_| Date::from_calendar_date(year, Month::March, 1).unwrap_or(Date::MAX));
    today >= anniversary
}

/// The earliest birth day on the patient's stored Patient resource, if any.
pub fn birth_day(conn: &mut DbConn, patient: &str) -> Result<Option<Date>, RecordError> {
    match ingest::read(conn, "Patient", patient) {
        Ok(body) => Ok(body
            .get("birthDate")
            .and_then(Value::as_str)
            .and_then(earliest_day)),
        Err(RecordError::NotFound { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether `row`'s authority has lapsed because its patient came of age (or their age can no
/// longer be established).
pub fn lapsed(
    conn: &mut DbConn,
    row: &DelegationRow,
    age: u32,
    today: Date,
) -> Result<bool, RecordError> {
    let minors_only = Relationship::parse(&row.relationship).is_some_and(|r| r.ends_at_majority());
    if !minors_only {
        return Ok(false);
    }
    Ok(match birth_day(conn, &row.patient_id)? {
        Some(birth) => is_of_age(birth, today, age),
        None => true,
    })
}

/// Ends every parent's and guardian's delegation whose patient came of age; each end is
/// audited and the patient told. Returns how many ended.
pub async fn sweep(gateway: &Gateway) -> Result<usize, DomainError> {
    let age = gateway.settings.rights.age_of_majority;
    let today = time::OffsetDateTime::now_utc().date();
    let due = gateway
        .store
        .run(move |conn| {
            let live = rows::live_with(conn, &["parent", "guardian"], SWEEP_BATCH)?;
            let mut due = Vec::new();
            for row in live {
                if lapsed(conn, &row, age, today)? {
                    due.push(row);
                }
            }
            Ok::<_, RecordError>(due)
        })
        .await?;
    let mut ended = 0;
    for row in due {
        let request_id = format!("sweep-{}", uuid::Uuid::now_v7());
        if end_delegation(gateway, &row, "majority", None, &request_id).await? {
            ended += 1;
        }
    }
    Ok(ended)
}

#[cfg(test)]
mod tests {
    use time::macros::date;

    use super::*;

    #[test]
    fn partial_dates_count_from_their_earliest_day() {
        assert_eq!(earliest_day("2008"), Some(date!(2008 - 01 - 01)));
        assert_eq!(earliest_day("2008-05"), Some(date!(2008 - 05 - 01)));
        assert_eq!(earliest_day("2008-05-17"), Some(date!(2008 - 05 - 17)));
        for bad in ["", "x", "2008-13", "2008-02-30", "2008-01-01-01"] {
            assert_eq!(earliest_day(bad), None, "{bad}");
        }
    }

    #[test]
    fn coming_of_age_is_the_birthday_itself() {
        let birth = date!(2008 - 05 - 17);
        assert!(!is_of_age(birth, date!(2026 - 05 - 16), 18));
        assert!(is_of_age(birth, date!(2026 - 05 - 17), 18));
        let leap = date!(2008 - 02 - 29);
        assert!(!is_of_age(leap, date!(2026 - 02 - 28), 18));
        assert!(is_of_age(leap, date!(2026 - 03 - 01), 18));
        assert!(is_of_age(leap, date!(2028 - 02 - 29), 20));
    }
}
