//! Demo populations as the gateway stores them, for the property tests: each patient's
//! resources with `urn:uuid:` references resolved to `Type/id`.

use std::collections::HashMap;

use serde_json::Value;

use crate::demo::{DemoOptions, patient_bundles};

/// One patient's id and resources.
pub(super) struct PatientRecords {
    pub id: String,
    pub resources: Vec<Value>,
}

impl PatientRecords {
    /// The patient's Patient resource.
    pub fn patient(&self) -> &Value {
        self.resources
            .iter()
            .find(|r| r["resourceType"] == "Patient")
            .unwrap_or(&Value::Null)
    }
}

/// `patients` demo patients of `seed`.
pub(super) fn demo(seed: u64, patients: usize) -> Vec<PatientRecords> {
    patient_bundles(&DemoOptions { patients, seed })
        .map(|bundle| {
            let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
            let targets: HashMap<String, String> = entries
                .iter()
                .map(|entry| {
                    let resource = &entry["resource"];
                    let target = format!(
                        "{}/{}",
                        resource["resourceType"].as_str().unwrap_or(""),
                        resource["id"].as_str().unwrap_or("")
                    );
                    (entry["fullUrl"].as_str().unwrap_or("").to_string(), target)
                })
                .collect();
            let mut resources: Vec<Value> =
                entries.into_iter().map(|e| e["resource"].clone()).collect();
            for resource in &mut resources {
                resolve(resource, &targets);
            }
            let id = resources
                .iter()
                .find(|r| r["resourceType"] == "Patient")
                .and_then(|p| p["id"].as_str())
                .unwrap_or("")
                .to_string();
            PatientRecords { id, resources }
        })
        .collect()
}

/// References within the bundle become `Type/id`; references to the directory keep their
/// UUID as the id of an `Organization` (the type does not matter to de-identification).
fn resolve(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "reference"
                    && let Some(text) = inner.as_str()
                {
                    let resolved = match targets.get(text) {
                        Some(target) => target.clone(),
                        None => format!("Organization/{}", text.trim_start_matches("urn:uuid:")),
                    };
                    *inner = Value::String(resolved);
                    continue;
                }
                resolve(inner, targets);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| resolve(item, targets)),
        _ => {}
    }
}
