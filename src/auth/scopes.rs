//! SMART v2 system scopes: what a backend client may ask for and what it is granted.
//!
//! A scope is `system/{Type|*}.{permissions}[?{query}]`, e.g. `system/Observation.rs` or
//! `system/Observation.rs?category=laboratory`. Permissions are a subsequence of `cruds`;
//! SMART v1 `.read` is read as `.rs`, `.write` as `.cud`, `.*` as `.cruds`.
//!
//! What a client is granted depends on what it is ([`Access`]): a recipient reads, so it gets
//! the `r` (read) and `s` (search) permissions and nothing else; a data source sends records
//! in and reads nothing, so it gets `c` (create) and `u` (update) and nothing else. Delete is
//! never granted (the gateway keeps every version). A requested scope is granted where the
//! client's registration allows its resource type; a wildcard request is narrowed to the
//! allowed types. A read scope's `?` narrowing is kept and enforced at read time; a write
//! scope with one is not granted (what a write would be narrowed to is not checked).

use crate::records::validate::is_resource_type;

/// One parsed scope.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// A resource type or `*`.
    pub resource: String,
    /// Create permission.
    pub create: bool,
    /// Read permission.
    pub read: bool,
    /// Update permission.
    pub update: bool,
    /// Search permission.
    pub search: bool,
    /// The `?` narrowing, e.g. `category=laboratory`.
    pub query: Option<String>,
}

/// What a client's tokens may carry: reads for recipients, writes for data sources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// `r` and `s`.
    Read,
    /// `c` and `u`.
    Write,
}

/// A write a data source asks to make.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteKind {
    /// A new record (needs `c`).
    Create,
    /// A new version of a record (needs `u`).
    Update,
}

impl Scope {
    /// Parses one `system/...` scope; `None` for anything else (other contexts, delete only,
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
        let permissions = match permissions {
            "read" => "rs",
            "write" => "cud",
            "*" => "cruds",
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
                v2
            }
        };
        let scope = Scope {
            resource: resource.to_string(),
            create: permissions.contains('c'),
            read: permissions.contains('r'),
            update: permissions.contains('u'),
            search: permissions.contains('s'),
            query,
        };
        (scope.create || scope.read || scope.update || scope.search).then_some(scope)
    }

    /// This scope narrowed to what `access` may carry; `None` when nothing is left.
    fn narrowed(mut self, access: Access) -> Option<Scope> {
        match access {
            Access::Read => (self.create, self.update) = (false, false),
            Access::Write => {
                (self.read, self.search) = (false, false);
                if self.query.is_some() {
                    return None;
                }
            }
        }
        (self.create || self.read || self.update || self.search).then_some(self)
    }

    /// The canonical v2 text of this scope.
    pub fn to_text(&self) -> String {
        let perms: String = [
            (self.create, 'c'),
            (self.read, 'r'),
            (self.update, 'u'),
            (self.search, 's'),
        ]
        .iter()
        .filter_map(|(on, c)| on.then_some(*c))
        .collect();
        match &self.query {
            Some(q) => format!("system/{}.{perms}?{q}", self.resource),
            None => format!("system/{}.{perms}", self.resource),
        }
    }
}

/// The scopes granted for a space-separated request, given the resource types the client's
/// registration allows (`*` for all) and what the client is ([`Access`]). Scopes that cannot
/// be granted are left out.
pub fn grant(requested: &str, allowed: &[String], access: Access) -> Vec<String> {
    let all = allowed.iter().any(|a| a == "*");
    let mut granted = Vec::new();
    let scopes = requested
        .split_ascii_whitespace()
        .filter_map(Scope::parse)
        .filter_map(|s| s.narrowed(access));
    for scope in scopes {
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

/// Whether granted scopes allow this write of `resource_type` (a narrowed scope never does).
pub fn allows_write(granted: &str, resource_type: &str, kind: WriteKind) -> bool {
    granted
        .split_ascii_whitespace()
        .filter_map(Scope::parse)
        .any(|s| {
            (s.resource == "*" || s.resource == resource_type)
                && s.query.is_none()
                && match kind {
                    WriteKind::Create => s.create,
                    WriteKind::Update => s.update,
                }
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
            "system/Patient.crus"
        );
        assert_eq!(
            Scope::parse("system/*.write").unwrap().to_text(),
            "system/*.cu"
        );
        assert_eq!(
            Scope::parse("system/Observation.c").unwrap().to_text(),
            "system/Observation.c"
        );
        for bad in [
            "patient/Observation.rs",
            "user/*.read",
            "system/Nope.rs",
            "system/Observation.sr",
            "system/Observation.d",
            "system/Observation.uc",
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
            grant("system/*.rs", &allowed, Access::Read),
            vec!["system/Condition.rs", "system/Observation.rs"]
        );
        assert_eq!(
            grant(
                "system/Observation.rs?category=vital-signs system/Patient.rs openid",
                &allowed,
                Access::Read
            ),
            vec!["system/Observation.rs?category=vital-signs"]
        );
        assert!(grant("system/Patient.rs", &allowed, Access::Read).is_empty());
        assert_eq!(
            grant("system/*.rs", &["*".to_string()], Access::Read),
            vec!["system/*.rs"]
        );
        assert!(allows("system/Observation.r", "Observation", false));
        assert!(!allows("system/Observation.r", "Observation", true));
        assert!(allows("system/*.rs", "Condition", true));
        assert!(!allows("system/Observation.rs", "Condition", false));
    }

    #[test]
    fn recipients_get_reads_and_data_sources_writes() {
        let all = ["*".to_string()];
        assert_eq!(
            grant("system/*.cruds", &all, Access::Read),
            vec!["system/*.rs"]
        );
        assert_eq!(
            grant("system/*.cruds", &all, Access::Write),
            vec!["system/*.cu"]
        );
        assert!(grant("system/*.write", &all, Access::Read).is_empty());
        assert!(grant("system/*.read", &all, Access::Write).is_empty());
        assert_eq!(
            grant(
                "system/Observation.write system/Condition.c",
                &all,
                Access::Write
            ),
            vec!["system/Condition.c", "system/Observation.cu"]
        );
        // A narrowed write is not granted: nothing would check the narrowing.
        assert!(
            grant(
                "system/Observation.cu?category=laboratory",
                &all,
                Access::Write
            )
            .is_empty()
        );
        let allowed = vec!["Observation".to_string()];
        assert_eq!(
            grant("system/*.write", &allowed, Access::Write),
            vec!["system/Observation.cu"]
        );
        assert!(allows_write("system/*.cu", "Condition", WriteKind::Create));
        assert!(allows_write(
            "system/Condition.u",
            "Condition",
            WriteKind::Update
        ));
        assert!(!allows_write(
            "system/Condition.u",
            "Condition",
            WriteKind::Create
        ));
        assert!(!allows_write(
            "system/Condition.cu",
            "Observation",
            WriteKind::Create
        ));
        assert!(!allows_write("system/*.rs", "Condition", WriteKind::Create));
        // Write scopes read nothing.
        assert!(!allows("system/*.cu", "Condition", false));
        assert!(!allows("system/*.cu", "Condition", true));
    }
}
