//! Typed ids for what crosses module boundaries: a patient's FHIR id and a client's id.
//!
//! Parse, don't validate: a [`PatientId`] is a valid FHIR id and a [`ClientId`] a plain token,
//! checked once where they enter (a URL path, a token, a request body), so the domain
//! functions that take them need not check again, and a patient id cannot be passed where a
//! client id belongs.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize};

/// Why a text is not an id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum InvalidId {
    /// Not a FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
    #[error("not a FHIR id (1 to 64 of A-Z, a-z, 0-9, '-' and '.')")]
    Fhir,
    /// Not a client id: 1 to 256 characters, no white space or control characters.
    #[error("not a client id (1 to 256 characters without white space)")]
    Client,
}

/// The FHIR id of a Patient.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PatientId(String);

impl PatientId {
    /// Checks `text` as a FHIR id.
    pub fn parse(text: &str) -> Result<PatientId, InvalidId> {
        if crate::records::validate::is_valid_id(text) {
            Ok(PatientId(text.to_string()))
        } else {
            Err(InvalidId::Fhir)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// `Patient/{id}`.
    pub fn reference(&self) -> String {
        format!("Patient/{}", self.0)
    }
}

/// The id of a registered client.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ClientId(String);

impl ClientId {
    /// Checks `text` as a client id.
    pub fn parse(text: &str) -> Result<ClientId, InvalidId> {
        let plain = (1..=256).contains(&text.len())
            && !text.chars().any(|c| c.is_whitespace() || c.is_control());
        if plain {
            Ok(ClientId(text.to_string()))
        } else {
            Err(InvalidId::Client)
        }
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

macro_rules! text_like {
    ($ty:ident) => {
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $ty {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl PartialEq<str> for $ty {
            fn eq(&self, other: &str) -> bool {
                self.0 == other
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let text = String::deserialize(deserializer)?;
                $ty::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

text_like!(PatientId);
text_like!(ClientId);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_checked_once_where_they_enter() {
        assert_eq!(
            PatientId::parse("p-1.a").map(|p| p.reference()),
            Ok("Patient/p-1.a".into())
        );
        for bad in ["", "a b", "a/b", &"x".repeat(65)] {
            assert_eq!(PatientId::parse(bad), Err(InvalidId::Fhir), "{bad:?}");
        }
        assert!(ClientId::parse("0192c1f0-aaaa").is_ok());
        for bad in ["", "a b", "tab\there", &"x".repeat(257)] {
            assert_eq!(ClientId::parse(bad), Err(InvalidId::Client), "{bad:?}");
        }
        let parsed: Result<PatientId, _> = serde_json::from_str("\"a/b\"");
        assert!(parsed.is_err());
    }
}
