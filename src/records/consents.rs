//! Consents as stored records: every version kept in the resource tables, parsed into the
//! evaluator's model when a decision needs them.

use serde_json::Value;

use super::RecordError;
use crate::consent::Consent;
use crate::store::DbConn;
use crate::store::resources::{self as rows, ResourceQuery};

/// Most consents one patient may hold; more is a sign of abuse, not of care.
pub const MAX_CONSENTS_PER_PATIENT: i64 = 1000;

/// The current versions of a patient's consents, as stored JSON.
pub fn stored_for_patient(conn: &mut DbConn, patient_id: &str) -> Result<Vec<Value>, RecordError> {
    let rows = rows::search(
        conn,
        &ResourceQuery {
            resource_type: "Consent".into(),
            patient_ids: vec![patient_id.to_string()],
            limit: MAX_CONSENTS_PER_PATIENT,
            ..Default::default()
        },
    )?;
    rows.into_iter()
        .map(|(id, body)| {
            serde_json::from_str(&body).map_err(|_| {
                RecordError::Store(crate::store::StoreError::Task(format!(
                    "stored body of Consent/{id} is not JSON"
                )))
            })
        })
        .collect()
}

/// A patient's consents parsed for evaluation. Every stored consent was validated on the
/// way in; one that no longer parses (stored by an older, laxer version) fails the request
/// rather than being skipped, since skipping it could drop a deny.
pub fn for_patient(conn: &mut DbConn, patient_id: &str) -> Result<Vec<Consent>, RecordError> {
    stored_for_patient(conn, patient_id)?
        .iter()
        .map(|v| {
            Consent::from_fhir(v).map_err(|_| {
                RecordError::Store(crate::store::StoreError::Task(format!(
                    "stored Consent/{} no longer validates",
                    v.get("id").and_then(Value::as_str).unwrap_or_default()
                )))
            })
        })
        .collect()
}
