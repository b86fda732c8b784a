//! SMART v2 system scopes: what a backend client may ask for and what it is granted.
//!
//! A scope is `system/{Type|*}.{permissions}[?{query}]`, e.g. `system/Observation.rs` or
//! `system/Observation.rs?category=laboratory`. consentgate brokers reads only, so it grants
//! the `r` (read) and `s` (search) permissions and nothing else; SMART v1 `.read` is read as
//! `.rs`. A requested scope is granted where the client's registration allows its resource
//! type; a wildcard request is narrowed to the allowed types. The `?` narrowing is kept in the
//! granted scope and enforced at read time.

use crate::records::validate::is_resource_type;

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// A resource type or `*`.
    pub resource: String,
    /// Read permission.
    pub read: bool,
    /// Search permission.
    pub search: bool,
    /// The `?` narrowing, e.g. `category=laboratory`.
    pub query: Option<String>,
}

impl Scope {
    /// Parses one `system/...` scope; `None` for anything else (other contexts, writes only,
    /// malformed permissions, unknown types).
    pub fn parse(text: &str) -> Option<Scope> {
        let rest = text.strip_prefix("system/")?;
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) if !q.is_empty() => (r, Some(q.to_string())),
            Some(_) => return None,
            None => (rest, None),
        };
        let (resource, permissions) = rest.split_once('.')?;
        if resource != "*" && !is_resource_type(resource) {
            return None;
        }
        let (read, search) = match permissions {
            "read" | "*" => (true, true),
            v2 => {
                // v2 permissions are a subsequence of "cruds".
                let mut last = None;
                for c in v2.chars() {
                    let rank = "cruds".find(c)?;
                    if last.is_some_and(|l| l >= rank) {
                        return None;
                    }
                    last = Some(rank);
                }
                (v2.contains('r'), v2.contains('s'))
            }
        };
        if !read && !search {
            return None;
        }
        Some(Scope {
            resource: resource.to_string(),
            read,
            search,
            query,
        })
    }

    /// The canonical v2 text of this scope.
    pub fn to_text(&self) -> String {
        let mut perms = String::new();
        if self.read {
            perms.push('r');
        }
        if self.search {
            perms.push('s');
        }
        match &self.query {
            Some(q) => format!("system/{}.{perms}?{q}", self.resource),
            None => format!("system/{}.{perms}", self.resource),
        }
    }
}

/// The scopes granted for a space-separated request, given the resource types the client's
/// registration allows (`*` for all). Scopes that cannot be granted are left out.
pub fn grant(requested: &str, allowed: &[String]) -> Vec<String> {
    let all = allowed.iter().any(|a| a == "*");
    let mut granted = Vec::new();
    for scope in requested.split_ascii_whitespace().filter_map(Scope::parse) {
        if scope.resource == "*" && !all {
            for resource in allowed {
                granted.push(
                    Scope {
                        resource: resource.clone(),
                        ..scope.clone()
                    }
                    .to_text(),
                );
            }
        } else if all || allowed.contains(&scope.resource) {
            granted.push(scope.to_text());
        }
    }
    granted.sort();
    granted.dedup();
    granted
}

/// Whether granted scopes allow reading (or, with `search`, searching) `resource_type`.
pub fn allows(granted: &str, resource_type: &str, search: bool) -> bool {
    granted
        .split_ascii_whitespace()
        .filter_map(Scope::parse)
        .any(|s| {
            (s.resource == "*" || s.resource == resource_type)
                && if search { s.search } else { s.read }
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_v1_and_v2() {
        let s = Scope::parse("system/Observation.rs?category=laboratory").unwrap();
        assert_eq!((s.read, s.search), (true, true));
        assert_eq!(s.query.as_deref(), Some("category=laboratory"));
        assert_eq!(
            Scope::parse("system/*.read").unwrap().to_text(),
            "system/*.rs"
        );
        assert_eq!(
            Scope::parse("system/Patient.r").unwrap().to_text(),
            "system/Patient.r"
        );
        assert_eq!(
            Scope::parse("system/Patient.cruds").unwrap().to_text(),
            "system/Patient.rs"
        );
        for bad in [
            "patient/Observation.rs",
            "user/*.read",
            "system/Nope.rs",
            "system/Observation.sr",
            "system/Observation.c",
            "system/Observation.x",
            "system/Observation",
            "system/Observation.rs?",
            "launch",
            "",
        ] {
            assert_eq!(Scope::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn grants_only_what_the_registration_allows() {
        let allowed = vec!["Observation".to_string(), "Condition".to_string()];
        assert_eq!(
            grant("system/*.rs", &allowed),
            vec!["system/Condition.rs", "system/Observation.rs"]
        );
        assert_eq!(
            grant(
                "system/Observation.rs?category=vital-signs system/Patient.rs openid",
                &allowed
            ),
            vec!["system/Observation.rs?category=vital-signs"]
        );
        assert!(grant("system/Patient.rs", &allowed).is_empty());
        assert_eq!(
            grant("system/*.rs", &["*".to_string()]),
            vec!["system/*.rs"]
        );
        assert!(allows("system/Observation.r", "Observation", false));
        assert!(!allows("system/Observation.r", "Observation", true));
        assert!(allows("system/*.rs", "Condition", true));
        assert!(!allows("system/Observation.rs", "Condition", false));
    }
}
