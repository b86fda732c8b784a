//! The one error type of the labeller.

/// Why value sets could not be loaded or a resource could not be labelled.
///
/// Messages name files, label codes, clinical codes and element names; never patient data.
#[derive(Debug, thiserror::Error)]
pub enum LabelError {
    /// A value-set file or folder could not be read.
    #[error("cannot read label value sets at {path}: {reason}")]
    Unreadable {
        /// The file or folder.
        path: String,
        /// The operating system's reason.
        reason: String,
    },
    /// A value-set file breaks the format described in `policies/labels/README.md`.
    #[error("label value set {file} is invalid: {reason}")]
    InvalidValueSet {
        /// The file name, e.g. `ETH.json`.
        file: String,
        /// What is wrong, naming the field or code.
        reason: String,
    },
    /// The folder holds no `*.json` value set.
    #[error("no label value sets (*.json) in {path}")]
    NoValueSets {
        /// The folder.
        path: String,
    },
    /// What was to be labelled is not a JSON object.
    #[error("a {what} must be a JSON object to be labelled")]
    NotAnObject {
        /// `resource` or `Bundle`.
        what: &'static str,
    },
    /// A Bundle to label is not a Bundle.
    #[error("expected a Bundle, got another resource type")]
    NotABundle,
    /// `meta` or `meta.security` has the wrong JSON type, so labels cannot be added.
    #[error("element {element} has the wrong JSON type; labels cannot be added")]
    MalformedMeta {
        /// `meta` or `meta.security`.
        element: &'static str,
    },
}

impl LabelError {
    /// A stable snake_case code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unreadable { .. } => "label_value_sets_unreadable",
            Self::InvalidValueSet { .. } => "label_value_set_invalid",
            Self::NoValueSets { .. } => "label_value_sets_missing",
            Self::NotAnObject { .. } => "label_input_not_object",
            Self::NotABundle => "label_input_not_bundle",
            Self::MalformedMeta { .. } => "label_meta_malformed",
        }
    }

    pub(super) fn invalid(file: &str, reason: impl Into<String>) -> Self {
        Self::InvalidValueSet {
            file: file.to_string(),
            reason: reason.into(),
        }
    }
}
