//! The checks every incoming body and resource passes before anything is stored.

use serde_json::Value;

use super::RecordError;
use super::resource_types::R4_RESOURCE_TYPES;
use crate::config::Limits;

/// Whether `name` is a concrete FHIR R4 resource type.
pub fn is_resource_type(name: &str) -> bool {
    R4_RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// Checks a resource type named in a URL or a body.
pub fn resource_type(name: &str) -> Result<(), RecordError> {
    if is_resource_type(name) {
        Ok(())
    } else {
        Err(RecordError::invalid(
            "unknown_resource_type",
            format!("`{}` is not a FHIR R4 resource type", printable(name, 64)),
        ))
    }
}

/// Whether `id` is a valid FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
pub fn is_valid_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Checks a logical id.
pub fn id(id: &str) -> Result<(), RecordError> {
    if is_valid_id(id) {
        Ok(())
    } else {
        Err(RecordError::invalid(
            "invalid_id",
            "a FHIR id is 1 to 64 characters of A-Z, a-z, 0-9, '-' and '.'",
        ))
    }
}

/// Parses a request body as JSON within the configured nesting depth. A leading UTF-8
/// byte-order mark is tolerated, as some exporters write one.
pub fn parse_body(bytes: &[u8], limits: &Limits) -> Result<Value, RecordError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(RecordError::invalid(
            "empty_body",
            "the request body is empty",
        ));
    }
    // Check depth on the raw bytes before building a tree, so a hostile nesting never
    // reaches the parser's recursion.
    check_depth(bytes, limits.max_json_depth)?;
    serde_json::from_slice(bytes).map_err(|e| {
        RecordError::invalid(
            "invalid_json",
            format!(
                "the body is not valid JSON (line {}, column {})",
                e.line(),
                e.column()
            ),
        )
    })
}

/// Refuses JSON nested deeper than `max` objects and arrays, scanning bytes outside strings.
fn check_depth(bytes: &[u8], max: usize) -> Result<(), RecordError> {
    let mut depth = 0usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'{' | b'[' => {
                depth += 1;
                if depth > max {
                    return Err(RecordError::invalid(
                        "too_deep",
                        format!("the JSON nests deeper than the limit of {max}"),
                    ));
                }
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    Ok(())
}

/// Checks the shape every stored resource must have and returns its type.
pub fn resource(value: &Value) -> Result<&str, RecordError> {
    let Some(object) = value.as_object() else {
        return Err(RecordError::invalid(
            "not_a_resource",
            "a resource must be a JSON object",
        ));
    };
    let Some(ty) = object.get("resourceType").and_then(Value::as_str) else {
        return Err(RecordError::invalid(
            "missing_resource_type",
            "the resource has no string `resourceType`",
        ));
    };
    resource_type(ty)?;
    match object.get("id") {
        None => {}
        Some(Value::String(s)) => id(s)?,
        Some(_) => {
            return Err(RecordError::invalid("invalid_id", "`id` must be a string"));
        }
    }
    if let Some(meta) = object.get("meta")
        && !meta.is_object()
    {
        return Err(RecordError::invalid(
            "invalid_meta",
            "`meta` must be an object",
        ));
    }
    Ok(ty)
}

/// At most `max` characters of `text`, control characters replaced, for messages that echo
/// a name from the request (types and element names only, never record values).
pub fn printable(text: &str, max: usize) -> String {
    text.chars()
        .take(max)
        .map(|c| if c.is_control() { '?' } else { c })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 8,
            max_bundle_entries: 10,
            default_page_size: 10,
            max_page_size: 100,
        }
    }

    fn code(r: Result<impl std::fmt::Debug, RecordError>) -> &'static str {
        match r {
            Err(RecordError::Invalid { code, .. }) => code,
            other => panic!("expected an invalid error, got {other:?}"),
        }
    }

    #[test]
    fn types_come_from_the_official_list() {
        assert!(R4_RESOURCE_TYPES.windows(2).all(|w| w[0] < w[1]), "sorted");
        assert_eq!(R4_RESOURCE_TYPES.len(), 146);
        for ok in ["Patient", "Consent", "VisionPrescription", "Parameters"] {
            assert!(is_resource_type(ok), "{ok}");
        }
        for bad in [
            "patient",
            "Resource",
            "DomainResource",
            "Foo",
            "",
            "Patient/1",
        ] {
            assert!(!is_resource_type(bad), "{bad}");
        }
    }

    #[test]
    fn ids() {
        assert!(is_valid_id("a.b-C9"));
        assert!(is_valid_id(&"x".repeat(64)));
        for bad in ["", "a b", "a/b", "a_b", "é", &"x".repeat(65)] {
            assert!(!is_valid_id(bad), "{bad}");
        }
    }

    #[test]
    fn bodies() {
        let l = limits();
        assert_eq!(
            parse_body(b"\xEF\xBB\xBF{\"a\":1}", &l).expect("a byte-order mark is skipped"),
            json!({"a": 1})
        );
        assert_eq!(code(parse_body(b"  ", &l)), "empty_body");
        assert_eq!(code(parse_body(b"<xml/>", &l)), "invalid_json");
        assert_eq!(code(parse_body(&[b'['; 9], &l)), "too_deep");
        parse_body(b"[[[[[[[[\"[[[[[[[[[[\"]]]]]]]]", &l)
            .expect("brackets inside a string do not count as depth");
        assert_eq!(code(parse_body(&[b'['; 100_000], &l)), "too_deep");
    }

    #[test]
    fn resources() {
        assert_eq!(
            resource(&json!({"resourceType": "Patient", "id": "p"})).unwrap(),
            "Patient"
        );
        let cases = [
            (json!([]), "not_a_resource"),
            (json!({"id": "x"}), "missing_resource_type"),
            (json!({"resourceType": "Nope"}), "unknown_resource_type"),
            (
                json!({"resourceType": "Patient", "id": "a/b"}),
                "invalid_id",
            ),
            (json!({"resourceType": "Patient", "id": 7}), "invalid_id"),
            (
                json!({"resourceType": "Patient", "meta": []}),
                "invalid_meta",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(code(resource(&body)), want, "{body}");
        }
    }
}
