//! `consentgate labels apply`: re-labelling stored records when the value sets change.
//!
//! Each patient's current resources are labelled together, as one collection, so that labels
//! follow references between them exactly as they do at ingest (a visit note inherits its
//! visit's labels). Resources outside any patient compartment are labelled one by one. Only
//! resources that gain a label are written, as a new version.

use serde_json::{Value, json};

use super::{RecordError, ingest};
use crate::labels::Labeller;
use crate::store::resources::{self as rows};
use crate::store::{Store, write_tx};

/// Re-labels every stored resource; returns (patients seen, resources that gained labels).
pub fn apply_all(store: &Store, labeller: &Labeller) -> anyhow::Result<(usize, usize)> {
    let mut conn = store.conn()?;
    let patients = rows::patient_ids(&mut conn)?;
    let mut changed = 0;
    for patient in &patients {
        let resources = rows::current_for_patient(&mut conn, patient)?;
        let mut bundle = json!({
            "resourceType": "Bundle",
            "type": "collection",
            "entry": resources.iter().map(|(ty, id, body)| json!({
                "fullUrl": format!("{ty}/{id}"),
                "resource": serde_json::from_str::<Value>(body).unwrap_or(Value::Null),
            })).collect::<Vec<_>>(),
        });
        let added = labeller
            .apply_bundle(&mut bundle)
            .map_err(|e| anyhow::anyhow!("patient {patient}: {e}"))?;
        let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
        write_tx(&mut conn, |conn| {
            for labels in added.iter().filter(|l| !l.added.is_empty()) {
                let (ty, id, _) = &resources[labels.entry];
                let resource = entries[labels.entry]["resource"].clone();
                ingest::put(conn, ty, id, resource)?;
                changed += 1;
            }
            Ok::<_, RecordError>(())
        })?;
    }
    Ok((patients.len(), changed))
}
