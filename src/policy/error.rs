//! Load-time errors and the mapping of Cedar's byte offsets to `file:line:column`.

use cedar_policy::ffi::DetailedError;

/// Why the policy directory could not be loaded; start-up stops on any of these.
///
/// Messages name files, lines, policy ids and codes only: policies and schema are
/// configuration, never patient data.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// A file could not be read.
    #[error("{file}: cannot read: {source}")]
    Io {
        /// The file or directory, as given.
        file: String,
        /// The underlying I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A policy file is not valid Cedar syntax.
    #[error("{file}:{line}:{column}: {reason}")]
    Parse {
        /// The policy file.
        file: String,
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column (in characters) of the first error.
        column: usize,
        /// Cedar's message.
        reason: String,
    },
    /// A policy does not type-check against the schema (strict validation).
    #[error("{file}:{line}:{column}: {reason}")]
    Validation {
        /// The policy file.
        file: String,
        /// 1-based line of the first error.
        line: usize,
        /// 1-based column (in characters) of the first error.
        column: usize,
        /// Cedar's message, naming the policy's `@id`.
        reason: String,
    },
    /// The schema file is not a valid Cedar schema.
    #[error("{file}:{line}:{column}: {reason}")]
    Schema {
        /// The schema file.
        file: String,
        /// 1-based line of the error (1 when Cedar gives no location).
        line: usize,
        /// 1-based column of the error (1 when Cedar gives no location).
        column: usize,
        /// Cedar's message.
        reason: String,
    },
    /// The schema is valid Cedar but does not describe the requests the gateway sends.
    #[error("{file}: the schema does not fit the gateway's requests: {reason}")]
    SchemaMismatch {
        /// The schema file.
        file: String,
        /// Cedar's message about the probe request.
        reason: String,
    },
    /// A policy's annotations break the gateway's conventions (`@id`, `@obligation...`).
    #[error("{file}:{line}:{column}: {reason}")]
    Annotation {
        /// The policy file.
        file: String,
        /// 1-based line where the offending policy starts.
        line: usize,
        /// 1-based column where the offending policy starts.
        column: usize,
        /// What is wrong.
        reason: String,
    },
    /// The directory holds no `*.cedar` file, which would deny everything silently.
    #[error("{dir}: no *.cedar policy files")]
    NoPolicies {
        /// The policy directory, as given.
        dir: String,
    },
}

impl PolicyError {
    /// A stable snake_case code for logs and problem responses.
    pub fn code(&self) -> &'static str {
        match self {
            PolicyError::Io { .. } => "policy_io",
            PolicyError::Parse { .. } => "policy_parse",
            PolicyError::Validation { .. } => "policy_validation",
            PolicyError::Schema { .. } => "policy_schema",
            PolicyError::SchemaMismatch { .. } => "policy_schema_mismatch",
            PolicyError::Annotation { .. } => "policy_annotation",
            PolicyError::NoPolicies { .. } => "policy_none",
        }
    }
}

/// A Cedar diagnostic reduced to what an operator needs: a message and where it points.
pub(super) struct Located {
    /// Byte offset into the source text, when Cedar gave one.
    pub offset: Option<usize>,
    /// Message, with Cedar's help text appended when there is one.
    pub reason: String,
}

impl Located {
    /// Flattens any Cedar diagnostic through Cedar's own FFI error shape, which exposes the
    /// source spans without this crate depending on `miette` directly.
    pub fn from_diagnostic(detailed: DetailedError) -> Located {
        let offset = detailed
            .source_locations
            .iter()
            .map(|label| label.loc.start)
            .min();
        let reason = match detailed.help {
            Some(help) if !help.is_empty() => format!("{} (help: {help})", detailed.message),
            _ => detailed.message,
        };
        Located { offset, reason }
    }
}

/// 1-based line and column (in characters) of a byte `offset` in `text`.
///
/// Offsets past the end or inside a multi-byte character are clamped, so a bad span from
/// Cedar can only make the position less precise, never panic.
pub(super) fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |newline| newline + 1);
    let column = before[line_start..].chars().count() + 1;
    (line, column)
}

#[cfg(test)]
mod tests {
    use super::line_column;

    #[test]
    fn offsets_map_to_one_based_line_and_column() {
        let text = "ab\ncdé\nf";
        let cases = [
            (0, (1, 1)),
            (1, (1, 2)),
            (3, (2, 1)),
            (5, (2, 3)),
            // inside the two-byte 'é': clamped back to its start
            (6, (2, 3)),
            (8, (3, 1)),
            (999, (3, 2)),
        ];
        for (offset, expected) in cases {
            assert_eq!(line_column(text, offset), expected, "offset {offset}");
        }
    }
}
