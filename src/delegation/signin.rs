//! Turning a delegate's verified token into the delegate a request runs as: the delegation
//! in force for the RelatedPerson, read afresh on every request (so a revocation holds from
//! the next one, on every instance), inside its period, and, for a parent or guardian, while
//! the patient is still a minor. Anything else refuses the token as unauthenticated.

use super::majority;
use super::manage::{self, end_delegation};
use super::model::Delegate;
use crate::error::{DomainError, ErrorKind};
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::records::RecordError;
use crate::store::delegations as rows;

/// The refusal of a delegate's token: the same 401 as any other refused bearer token.
fn refused() -> DomainError {
    DomainError::new(
        ErrorKind::Unauthorized,
        "unauthorized",
        "a valid bearer token is required",
    )
}

/// The delegate `unresolved` is, with the patient and the actions of its delegation in force.
pub async fn resolve(gateway: &Gateway, unresolved: Delegate) -> Result<Delegate, DomainError> {
    let related = unresolved.related_person.clone();
    let age = gateway.settings.rights.age_of_majority;
    let today = time::OffsetDateTime::now_utc().date();
    let (row, lapsed) = gateway
        .store
        .run(move |conn| {
            let Some(row) = rows::live_for(conn, &related)? else {
                return Ok::<_, RecordError>((None, false));
            };
            let lapsed = majority::lapsed(conn, &row, age, today)?;
            Ok((Some(row), lapsed))
        })
        .await?;
    let row = row.ok_or_else(refused)?;
    if lapsed {
        let request_id = format!("signin-{}", uuid::Uuid::now_v7());
        end_delegation(gateway, &row, "majority", None, &request_id).await?;
        return Err(refused());
    }
    let now = now_micros();
    if row.period_start > now || row.period_end.is_some_and(|end| end <= now) {
        return Err(refused());
    }
    Ok(Delegate {
        patient_id: row.patient_id.clone(),
        delegation_id: row.id.clone(),
        actions: manage::actions_of(&row),
        ..unresolved
    })
}
