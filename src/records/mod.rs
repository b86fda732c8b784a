//! FHIR records: checking what comes in, storing it with its index, and searching it.
//!
//! - [`validate`]: the checks every incoming resource passes (official R4 type, valid id,
//!   JSON shape and depth).
//! - [`ingest`]: writing one resource as a new version, with its index.
//! - [`bundle`]: transaction, batch and collection Bundles, with `urn:uuid:` and conditional
//!   references resolved.
//! - [`search`]: FHIR search parameters turned into a storage query.
//! - [`source`]: who writes a record; what a data source may write.
//! - [`index`] and [`dates`]: what a resource is found by.
//! - [`facts`]: the decision's facts for rows stored before they were (a background walk).
//!
//! Errors carry a stable snake_case code and a message that names ids, entry numbers and
//! element names, never values from the record.

pub mod bundle;
pub mod consents;
pub mod dates;
pub mod facts;
pub mod index;
pub mod ingest;
pub mod internal;
pub mod outcome;
pub mod relabel;
pub mod resource_types;
pub mod search;
pub mod source;
pub mod validate;

use crate::store::StoreError;

/// Why a record operation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    /// The request is malformed (400).
    #[error("{message}")]
    Invalid {
        /// Stable code, e.g. `unknown_resource_type`.
        code: &'static str,
        /// What is wrong, without record values.
        message: String,
    },
    /// Well-formed but cannot be processed, e.g. a reference that does not resolve (422).
    #[error("{message}")]
    Unprocessable {
        /// Stable code.
        code: &'static str,
        /// What is wrong.
        message: String,
    },
    /// The caller may not make this write (403), e.g. a data source writing a gateway record.
    #[error("{message}")]
    Forbidden {
        /// Stable code.
        code: &'static str,
        /// What is refused.
        message: String,
    },
    /// No such resource (404).
    #[error("{message}")]
    NotFound {
        /// Stable code.
        code: &'static str,
        /// What was not found.
        message: String,
    },
    /// A concurrent change won; retrying may succeed (409).
    #[error("{message}")]
    Conflict {
        /// Stable code.
        code: &'static str,
        /// What conflicted.
        message: String,
    },
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl RecordError {
    /// A 400 with this code.
    pub fn invalid(code: &'static str, message: impl Into<String>) -> Self {
        RecordError::Invalid {
            code,
            message: message.into(),
        }
    }

    /// A 422 with this code.
    pub fn unprocessable(code: &'static str, message: impl Into<String>) -> Self {
        RecordError::Unprocessable {
            code,
            message: message.into(),
        }
    }

    /// A 403 with this code.
    pub fn forbidden(code: &'static str, message: impl Into<String>) -> Self {
        RecordError::Forbidden {
            code,
            message: message.into(),
        }
    }

    /// A 404 with this code.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> Self {
        RecordError::NotFound {
            code,
            message: message.into(),
        }
    }

    /// The same error with a prefix locating it (e.g. `entry 3: `).
    pub fn within(self, place: &str) -> Self {
        match self {
            RecordError::Invalid { code, message } => RecordError::Invalid {
                code,
                message: format!("{place}: {message}"),
            },
            RecordError::Unprocessable { code, message } => RecordError::Unprocessable {
                code,
                message: format!("{place}: {message}"),
            },
            RecordError::Forbidden { code, message } => RecordError::Forbidden {
                code,
                message: format!("{place}: {message}"),
            },
            RecordError::NotFound { code, message } => RecordError::NotFound {
                code,
                message: format!("{place}: {message}"),
            },
            RecordError::Conflict { code, message } => RecordError::Conflict {
                code,
                message: format!("{place}: {message}"),
            },
            other => other,
        }
    }
}

/// Turns a storage conflict into a record conflict, keeping other storage errors as they are.
pub(crate) fn conflict_aware(e: StoreError) -> RecordError {
    match e {
        StoreError::Conflict => RecordError::Conflict {
            code: "concurrent_update",
            message: "the resource was changed by a concurrent request; retry".into(),
        },
        other => RecordError::Store(other),
    }
}
