//! Who writes a record, and what a data source may write.
//!
//! The operators and the gateway itself (consents, an amendment's Provenance, imports) write
//! any record. A data source (a client with role `data_source`) writes within its access
//! token's write scopes (`c` to create, `u` to update), never a gateway record (a Consent, an
//! AuditEvent, anything tagged gateway-internal), and updates only the records it supplied:
//! the first data source to store a record is its source for good, kept through later
//! versions (an operator's correction included), so that a request to amend it goes to that
//! source (`crate::amendment`). A record an operator or the gateway created has no source,
//! and no data source may overwrite it.

use serde_json::Value;

use super::{RecordError, internal};
use crate::auth::scopes::{self, WriteKind};

/// Who writes a version.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Writer {
    /// An operator, or the gateway itself.
    Gateway,
    /// A data source, under its access token's scopes.
    Source {
        /// Its client id, recorded as the record's source.
        client_id: String,
        /// The scopes its token was granted (space-separated).
        scope: String,
    },
}

impl Writer {
    /// The data source's client id, when a data source writes.
    pub fn source(&self) -> Option<&str> {
        match self {
            Writer::Gateway => None,
            Writer::Source { client_id, .. } => Some(client_id),
        }
    }
}

/// Checks that `writer` may store `resource` as `resource_type` over a stored record whose
/// source is `previous` (`None`: there is no stored record; `Some(None)`: it has no source);
/// returns the source the record keeps.
pub fn check(
    writer: &Writer,
    resource_type: &str,
    resource: &Value,
    previous: Option<Option<&str>>,
) -> Result<Option<String>, RecordError> {
    let Writer::Source { client_id, scope } = writer else {
        return Ok(previous.flatten().map(str::to_string));
    };
    if internal::INTERNAL_TYPES.contains(&resource_type) || internal::is_gateway_internal(resource)
    {
        return Err(RecordError::forbidden(
            "gateway_record",
            format!(
                "a data source does not write {resource_type} records the gateway keeps about sharing"
            ),
        ));
    }
    let kind = match previous {
        None => WriteKind::Create,
        Some(_) => WriteKind::Update,
    };
    if !scopes::allows_write(scope, resource_type, kind) {
        let what = match kind {
            WriteKind::Create => "create",
            WriteKind::Update => "update",
        };
        return Err(RecordError::forbidden(
            "insufficient_scope",
            format!("the access token's scopes do not allow this {what} of {resource_type}"),
        ));
    }
    match previous {
        Some(Some(source)) if source != client_id => Err(not_yours(resource_type)),
        Some(None) => Err(not_yours(resource_type)),
        _ => Ok(Some(client_id.clone())),
    }
}

fn not_yours(resource_type: &str) -> RecordError {
    RecordError::forbidden(
        "not_your_record",
        format!(
            "this {resource_type} was not supplied by this data source; it updates only its own"
        ),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn source(scope: &str) -> Writer {
        Writer::Source {
            client_id: "ehr-a".into(),
            scope: scope.into(),
        }
    }

    #[test]
    fn the_gateway_writes_anything_and_keeps_the_source() {
        let body = json!({"resourceType": "Consent"});
        assert_eq!(
            check(&Writer::Gateway, "Consent", &body, None).unwrap(),
            None
        );
        assert_eq!(
            check(&Writer::Gateway, "Consent", &body, Some(Some("ehr-a"))).unwrap(),
            Some("ehr-a".into())
        );
    }

    #[test]
    fn a_data_source_writes_its_own_records_within_its_scopes() {
        let obs = json!({"resourceType": "Observation"});
        let code = |r: Result<Option<String>, RecordError>| match r {
            Ok(s) => s.unwrap_or_default(),
            Err(RecordError::Forbidden { code, .. }) => code.to_string(),
            Err(e) => panic!("{e}"),
        };
        let cases = [
            ("system/*.cu", None, "ehr-a"),
            ("system/*.cu", Some(Some("ehr-a")), "ehr-a"),
            ("system/*.cu", Some(Some("ehr-b")), "not_your_record"),
            ("system/*.cu", Some(None), "not_your_record"),
            (
                "system/Observation.c",
                Some(Some("ehr-a")),
                "insufficient_scope",
            ),
            ("system/Observation.u", None, "insufficient_scope"),
            ("system/Condition.cu", None, "insufficient_scope"),
            ("system/*.rs", None, "insufficient_scope"),
        ];
        for (scope, previous, want) in cases {
            let got = code(check(&source(scope), "Observation", &obs, previous));
            assert_eq!(got, want, "{scope} {previous:?}");
        }
    }

    #[test]
    fn a_data_source_never_writes_gateway_records() {
        let tagged = json!({"resourceType": "Provenance", "meta": {"tag": [
            {"system": internal::TAG_SYSTEM, "code": internal::INTERNAL_TAG_CODE}]}});
        for (ty, body) in [
            ("Consent", json!({"resourceType": "Consent"})),
            ("AuditEvent", json!({"resourceType": "AuditEvent"})),
            ("Provenance", tagged),
        ] {
            let err = check(&source("system/*.cu"), ty, &body, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    RecordError::Forbidden {
                        code: "gateway_record",
                        ..
                    }
                ),
                "{ty}"
            );
        }
    }
}
