//! What the gateway keeps about sharing itself, as opposed to the patient's clinical record.
//!
//! Consents (who may see what; an advance directive, scope `adr`, is the one exception: it is
//! the patient's wishes about their care, released like any clinical record), audit events,
//! and anything the gateway writes about sharing
//! and marks with [`INTERNAL_TAG_CODE`] (for example the Provenance that links an amended
//! record to its correction) are the patient's business and the operator's, never a
//! recipient's: no read, search, `$everything`, export or disclosure releases them
//! ([`crate::decision::decide`] refuses them before any consent or policy is consulted).

use serde_json::Value;

use crate::consent;

/// Types that only ever describe sharing.
pub const INTERNAL_TYPES: &[&str] = &["Consent", "AuditEvent"];

/// The code system of the gateway's own `meta.tag` codes.
pub const TAG_SYSTEM: &str = "https://consentgate.dev/fhir/CodeSystem/tag";

/// The `meta.tag` code that marks a resource the gateway wrote about sharing.
pub const INTERNAL_TAG_CODE: &str = "gateway-internal";

/// Whether `resource` is an advance directive: a Consent whose scope is `adr` (of
/// `http://terminology.hl7.org/CodeSystem/consentscope`) and nothing else of that system.
pub fn is_advance_directive(resource: &Value) -> bool {
    resource.get("resourceType").and_then(Value::as_str) == Some("Consent")
        && consent::is_advance_directive_scope(
            resource
                .get("scope")
                .and_then(|s| s.get("coding"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .filter_map(|c| {
                    Some((
                        c.get("system").and_then(Value::as_str).unwrap_or_default(),
                        c.get("code")?.as_str()?,
                    ))
                }),
        )
}

/// Puts advance directives first, keeping the order of everything else (a stable sort):
/// they are what an emergency needs to know before anything else.
pub fn directives_first(resources: &mut [Value]) {
    resources.sort_by_key(|r| !is_advance_directive(r));
}

/// Whether `resource` is gateway-internal: of an internal type (an advance directive
/// excepted: a Consent of scope `adr` is clinical), or tagged as internal.
pub fn is_gateway_internal(resource: &Value) -> bool {
    let resource_type = resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or_default();
    (INTERNAL_TYPES.contains(&resource_type) && !is_advance_directive(resource))
        || resource
            .get("meta")
            .and_then(|m| m.get("tag"))
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

    const SCOPE: &str = consent::CONSENT_SCOPE_SYSTEM;

    fn adr(codings: &[(&str, &str)]) -> Value {
        let coding: Vec<Value> = codings
            .iter()
            .map(|(system, code)| json!({"system": system, "code": code}))
            .collect();
        json!({"resourceType": "Consent", "id": "c", "scope": {"coding": coding}})
    }

    #[test]
    fn advance_directives_come_first_in_their_order() {
        let mut list = vec![
            json!({"resourceType": "Observation", "id": "1"}),
            json!({"resourceType": "Consent", "id": "a", "scope": {"coding": [{"system": SCOPE, "code": "adr"}]}}),
            json!({"resourceType": "Consent", "id": "p", "scope": {"coding": [{"system": SCOPE, "code": "patient-privacy"}]}}),
            json!({"resourceType": "Condition", "id": "2"}),
            json!({"resourceType": "Consent", "id": "b", "scope": {"coding": [{"system": SCOPE, "code": "adr"}]}}),
        ];
        directives_first(&mut list);
        let ids: Vec<&str> = list.iter().map(|r| r["id"].as_str().unwrap()).collect();
        assert_eq!(ids, ["a", "b", "1", "p", "2"]);
    }

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
            (adr(&[(SCOPE, "adr")]), false),
            (
                adr(&[(SCOPE, "adr"), ("http://example.org/local", "x")]),
                false,
            ),
            (adr(&[(SCOPE, "adr"), (SCOPE, "patient-privacy")]), true),
            (adr(&[(SCOPE, "patient-privacy")]), true),
            (adr(&[("http://example.org/local", "adr")]), true),
            (
                json!({"resourceType": "Consent", "id": "c",
                       "scope": {"coding": [{"system": SCOPE, "code": "adr"}]},
                       "meta": {"tag": [{"system": TAG_SYSTEM, "code": INTERNAL_TAG_CODE}]}}),
                true,
            ),
        ];
        for (resource, internal) in cases {
            assert_eq!(is_gateway_internal(&resource), internal, "{resource}");
        }
    }
}
