//! Obligations: what must be done to a resource (or about its release) before it leaves.
//!
//! A permit policy names its obligations as codes in annotations
//! (`@obligation("deidentify:safe-harbor")`); the loader parses each code into an
//! [`Obligation`] and refuses a code it does not know, so a misspelt obligation stops
//! start-up instead of silently dropping a de-identification. Nothing outside
//! [`Obligation::parse`] and [`Obligation::code`] spells a code.

use std::fmt;

use serde::{Serialize, Serializer};

/// One obligation.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Obligation {
    /// De-identify with the named profile (`deidentify:<profile>`, e.g. `safe-harbor`).
    Deidentify(String),
    /// Keep only the coded facts an insurer needs (`minimum-necessary`).
    MinimumNecessary,
    /// Flag the release as break-the-glass in the audit log (`audit:break-glass`).
    AuditBreakGlass,
    /// Tell the patient (`notify:patient`).
    NotifyPatient,
}

/// The profile code of the default de-identification profile.
pub const SAFE_HARBOR: &str = "safe-harbor";

impl Obligation {
    /// De-identification under the Safe Harbor profile.
    pub fn safe_harbor() -> Obligation {
        Obligation::Deidentify(SAFE_HARBOR.to_string())
    }

    /// Parses an obligation code; `None` for a code the gateway does not know.
    pub fn parse(code: &str) -> Option<Obligation> {
        Some(match code {
            "minimum-necessary" => Obligation::MinimumNecessary,
            "audit:break-glass" => Obligation::AuditBreakGlass,
            "notify:patient" => Obligation::NotifyPatient,
            _ => {
                let profile = code.strip_prefix("deidentify:")?;
                let valid = !profile.is_empty()
                    && profile
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
                if !valid {
                    return None;
                }
                Obligation::Deidentify(profile.to_string())
            }
        })
    }

    /// The code, as written in policies.
    pub fn code(&self) -> String {
        match self {
            Obligation::Deidentify(profile) => format!("deidentify:{profile}"),
            Obligation::MinimumNecessary => "minimum-necessary".into(),
            Obligation::AuditBreakGlass => "audit:break-glass".into(),
            Obligation::NotifyPatient => "notify:patient".into(),
        }
    }

    /// Whether this obligation de-identifies.
    pub fn deidentifies(&self) -> bool {
        matches!(self, Obligation::Deidentify(_))
    }

    /// Whether this obligation changes what leaves (as opposed to how it is recorded).
    pub fn shapes(&self) -> bool {
        matches!(
            self,
            Obligation::Deidentify(_) | Obligation::MinimumNecessary
        )
    }
}

impl fmt::Display for Obligation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.code())
    }
}

impl Serialize for Obligation {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.code())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_unknown_codes_are_refused() {
        for code in [
            "deidentify:safe-harbor",
            "deidentify:study-1.v2",
            "minimum-necessary",
            "audit:break-glass",
            "notify:patient",
        ] {
            let parsed = Obligation::parse(code).expect(code);
            assert_eq!(parsed.code(), code);
        }
        for code in [
            "",
            "deidentify:",
            "deidentify:a b",
            "minimum_necessary",
            "audit:x",
            "notify:everyone",
        ] {
            assert_eq!(Obligation::parse(code), None, "{code:?}");
        }
        assert!(Obligation::safe_harbor().deidentifies());
        assert!(!Obligation::NotifyPatient.shapes());
    }
}
