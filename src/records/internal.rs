//! What the gateway keeps about sharing itself, as opposed to the patient's clinical record.
//!
//! Consents (who may see what), audit events, and anything the gateway writes about sharing
//! and marks with [`INTERNAL_TAG_CODE`] (for example the Provenance that links an amended
//! record to its correction) are the patient's business and the operator's, never a
//! recipient's: no read, search, `$everything`, export or disclosure releases them
//! ([`crate::decision::decide`] refuses them before any consent or policy is consulted).

use serde_json::Value;

/// Types that only ever describe sharing.
pub const INTERNAL_TYPES: &[&str] = &["Consent", "AuditEvent"];

/// The code system of the gateway's own `meta.tag` codes.
pub const TAG_SYSTEM: &str = "https://consentgate.dev/fhir/CodeSystem/tag";

/// The `meta.tag` code that marks a resource the gateway wrote about sharing.
pub const INTERNAL_TAG_CODE: &str = "gateway-internal";

/// Whether `resource` is gateway-internal: of an internal type, or tagged as internal.
pub fn is_gateway_internal(resource: &Value) -> bool {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    INTERNAL_TYPES.contains(&resource_type)
        || resource
            .pointer("/meta/tag")
            .and_then(Value::as_array)
            .is_some_and(|tags| {
                tags.iter().any(|t| {
                    t.get("system").and_then(Value::as_str) == Some(TAG_SYSTEM)
                        && t.get("code").and_then(Value::as_str) == Some(INTERNAL_TAG_CODE)
                })
            })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn sharing_records_are_internal_and_clinical_ones_are_not() {
        let cases = [
            (json!({"resourceType": "Consent", "id": "c"}), true),
            (json!({"resourceType": "AuditEvent", "id": "a"}), true),
            (
                json!({"resourceType": "Provenance", "id": "p",
                       "meta": {"tag": [{"system": TAG_SYSTEM, "code": INTERNAL_TAG_CODE}]}}),
                true,
            ),
            (json!({"resourceType": "Provenance", "id": "p"}), false),
            (
                json!({"resourceType": "Observation", "id": "o",
                       "meta": {"tag": [{"system": "http://example.org", "code": INTERNAL_TAG_CODE}]}}),
                false,
            ),
            (json!({"resourceType": "Condition", "id": "c"}), false),
        ];
        for (resource, internal) in cases {
            assert_eq!(is_gateway_internal(&resource), internal, "{resource}");
        }
    }
}
