//! Minimum necessary: what an insurer (or anyone under the `minimum-necessary` obligation)
//! gets of a resource.

use serde_json::Value;

/// Minimum necessary for insurers: the coded facts, without narrative, free-text notes,
/// contained resources or a Patient's contact details.
pub fn minimum_necessary(resource: &mut Value) {
    if let Some(object) = resource.as_object_mut() {
        for element in [
            "text",
            "note",
            "contained",
            "telecom",
            "address",
            "contact",
            "photo",
            "communication",
        ] {
            object.remove(element);
        }
    }
}
