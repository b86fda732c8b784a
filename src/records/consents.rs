//! Consents as stored records: every version kept in the resource tables, parsed into the
//! evaluator's model when a decision needs them.

use serde_json::Value;

use super::RecordError;
use crate::consent::Consent;
use crate::store::DbConn;
use crate::store::resources as rows;

/// Most consents one patient may hold; ingest refuses one more (422 `too_many_consents`).
/// Reads never stop at it: every consent on file takes part in every decision, so a long
/// list can slow a patient's requests but never silently drop a deny.
pub const MAX_CONSENTS_PER_PATIENT: i64 = 1000;

/// Consents read per query while loading a patient's list.
const READ_BATCH: i64 = 500;

/// Refuses a write that would give `patient_id` more than [`MAX_CONSENTS_PER_PATIENT`]
/// current consents; `id` is the consent being written (a new version of it does not count
/// twice).
pub fn check_room(conn: &mut DbConn, patient_id: &str, id: &str) -> Result<(), RecordError> {
    rows::lock_patient_kind(conn, "Consent", patient_id)?;
    let held = rows::count_for_patient(conn, "Consent", patient_id, id)?;
    if held >= MAX_CONSENTS_PER_PATIENT {
        tracing::warn!(
            patient_id,
            held,
            "consent refused: the patient holds the most consents allowed"
        );
        return Err(RecordError::unprocessable(
            "too_many_consents",
            format!(
                "Patient/{patient_id} already holds {held} consents, the most allowed \
                 ({MAX_CONSENTS_PER_PATIENT}); revise or revoke one instead"
            ),
        ));
    }
    Ok(())
}

/// The current versions of all of a patient's consents, as stored JSON, in id order.
pub fn stored_for_patient(conn: &mut DbConn, patient_id: &str) -> Result<Vec<Value>, RecordError> {
    let mut out = Vec::new();
    // Ids are never empty, so the first page starts after "".
    let mut after = String::new();
    loop {
        let rows = rows::of_patient_page(conn, "Consent", patient_id, &after, READ_BATCH)?;
        let complete = (rows.len() as i64) < READ_BATCH;
        if let Some((id, _, _)) = rows.last() {
            after.clone_from(id);
        }
        for (id, body, _) in rows {
            out.push(serde_json::from_str(&body).map_err(|_| {
                RecordError::Store(crate::store::StoreError::Task(format!(
                    "stored body of Consent/{id} is not JSON"
                )))
            })?);
        }
        if complete {
            return Ok(out);
        }
    }
}

/// A patient's consents parsed for evaluation. Every stored consent was validated on the
/// way in; one that no longer parses (stored by an older, laxer version) fails the request
/// rather than being skipped, since skipping it could drop a deny.
pub fn for_patient(conn: &mut DbConn, patient_id: &str) -> Result<Vec<Consent>, RecordError> {
    stored_for_patient(conn, patient_id)?
        .iter()
        .map(|v| {
            parsed(v, || {
                v.get("id")
                    .and_then(Value::as_str)
                    .unwrap_or_default()
                    .to_string()
            })
        })
        .collect()
}

/// One stored consent body parsed for evaluation, failing as [`for_patient`] does.
pub fn parse_stored(id: &str, body: &str) -> Result<Consent, RecordError> {
    let value: Value = serde_json::from_str(body).map_err(|_| {
        RecordError::Store(crate::store::StoreError::Task(format!(
            "stored body of Consent/{id} is not JSON"
        )))
    })?;
    parsed(&value, || id.to_string())
}

fn parsed(value: &Value, id: impl FnOnce() -> String) -> Result<Consent, RecordError> {
    Consent::from_fhir(value).map_err(|_| {
        RecordError::Store(crate::store::StoreError::Task(format!(
            "stored Consent/{} no longer validates",
            id()
        )))
    })
}
