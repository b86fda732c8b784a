//! Turning the schema and policy files into a validated Cedar policy set.
//!
//! Each file is parsed as its own policy set so that every Cedar error can be traced back to
//! the file (and, through Cedar's byte offsets, the line and column) it came from. Policies
//! are then renamed to their `@id`, so that Cedar's diagnostics, validation messages and the
//! decisions' `policies` all speak of the names the policy authors wrote.

use std::collections::HashMap;
use std::path::Path;

use cedar_policy::ffi::DetailedError;
use cedar_policy::{Effect, PolicyId, PolicySet, Schema, ValidationMode, Validator};

use super::error::{Located, PolicyError, line_column};
use super::obligation::Obligation;

/// The schema's file name inside the policy directory.
pub(super) const SCHEMA_FILE: &str = "schema.cedarschema";

/// The annotation that names a policy.
const ID_ANNOTATION: &str = "id";

/// The annotation key, or key prefix followed by `_`, that carries one obligation.
const OBLIGATION_ANNOTATION: &str = "obligation";

/// One source file: the name to report in errors and its text.
pub(super) struct Source {
    /// The file as errors show it, e.g. `policies/consent.cedar`.
    pub file: String,
    /// The file's contents.
    pub text: String,
}

/// The validated result of loading.
pub(super) struct Compiled {
    /// The schema the policies were validated against.
    pub schema: Schema,
    /// Every policy, under its `@id`.
    pub policies: PolicySet,
    /// Obligations of each permit policy that carries any, sorted.
    pub obligations: HashMap<PolicyId, Vec<Obligation>>,
    /// Schema and validation warnings, each prefixed with its location.
    pub warnings: Vec<String>,
}

/// Reads `schema.cedarschema` and every `*.cedar` file (sorted by name) of `dir`.
///
/// Sub-directories (`labels/`, `deid/`) belong to other modules and are not read.
pub(super) fn read_dir(dir: &Path) -> Result<(Source, Vec<Source>), PolicyError> {
    let read = |path: &Path| -> Result<Source, PolicyError> {
        let file = path.display().to_string();
        match std::fs::read_to_string(path) {
            Ok(text) => Ok(Source { file, text }),
            Err(source) => Err(PolicyError::Io { file, source }),
        }
    };
    let schema = read(&dir.join(SCHEMA_FILE))?;

    let io_error = |source| PolicyError::Io {
        file: dir.display().to_string(),
        source,
    };
    let mut paths = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_error)? {
        let path = entry.map_err(io_error)?.path();
        if path.is_file() && path.extension().is_some_and(|ext| ext == "cedar") {
            paths.push(path);
        }
    }
    paths.sort();
    if paths.is_empty() {
        return Err(PolicyError::NoPolicies {
            dir: dir.display().to_string(),
        });
    }
    let files = paths
        .iter()
        .map(|path| read(path))
        .collect::<Result<_, _>>()?;
    Ok((schema, files))
}

/// Parses the schema and every policy file, checks the annotations and validates strictly.
pub(super) fn compile(schema_source: &Source, files: &[Source]) -> Result<Compiled, PolicyError> {
    let mut warnings = Vec::new();
    let schema = parse_schema(schema_source, &mut warnings)?;
    let validator = Validator::new(schema.clone());

    let mut policies = PolicySet::new();
    let mut obligations = HashMap::new();
    // Where each @id was first defined, to report duplicates across files.
    let mut defined_at: HashMap<String, String> = HashMap::new();

    for source in files {
        let parsed: PolicySet = source.text.parse().map_err(|errors| {
            let located = Located::from_diagnostic(DetailedError::from(&errors));
            let (line, column) = line_column(&source.text, located.offset.unwrap_or(0));
            PolicyError::Parse {
                file: source.file.clone(),
                line,
                column,
                reason: located.reason,
            }
        })?;
        if let Some(template) = parsed.templates().next() {
            let offset = source.text.find(&template.to_cedar()).unwrap_or(0);
            return Err(annotation_error(
                source,
                offset,
                "policy templates (with ?principal or ?resource) are not supported here".to_owned(),
            ));
        }

        let mut renamed = PolicySet::new();
        for (policy, offset) in in_source_order(&parsed, &source.text) {
            let id = policy_id(policy, source, offset)?;
            let here = {
                let (line, column) = line_column(&source.text, offset);
                format!("{}:{line}:{column}", source.file)
            };
            if let Some(first) = defined_at.get(&id) {
                return Err(annotation_error(
                    source,
                    offset,
                    format!("duplicate @id(\"{id}\"), first defined at {first}"),
                ));
            }
            defined_at.insert(id.clone(), here);

            let policy_obligations = obligations_of(policy, source, offset)?;
            let policy = policy.new_id(PolicyId::new(&id));
            if !policy_obligations.is_empty() {
                obligations.insert(policy.id().clone(), policy_obligations);
            }
            renamed
                .add(policy)
                .map_err(|error| annotation_error(source, offset, error.to_string()))?;
        }

        validate(&validator, &renamed, source, &mut warnings)?;
        for policy in renamed.policies() {
            policies
                .add(policy.clone())
                .map_err(|error| annotation_error(source, 0, error.to_string()))?;
        }
    }

    Ok(Compiled {
        schema,
        policies,
        obligations,
        warnings,
    })
}

fn parse_schema(source: &Source, warnings: &mut Vec<String>) -> Result<Schema, PolicyError> {
    match Schema::from_cedarschema_str(&source.text) {
        Ok((schema, schema_warnings)) => {
            warnings.extend(schema_warnings.map(|warning| format!("{}: {warning}", source.file)));
            Ok(schema)
        }
        Err(error) => {
            let located = Located::from_diagnostic(DetailedError::from(&error));
            let (line, column) = line_column(&source.text, located.offset.unwrap_or(0));
            Err(PolicyError::Schema {
                file: source.file.clone(),
                line,
                column,
                reason: located.reason,
            })
        }
    }
}

/// The file's policies in the order they were written, each with its byte offset.
///
/// Cedar names the policies of a parsed file `policy0`, `policy1`, ... in source order and
/// keeps each one's original text, so searching for each text after the previous one finds
/// its offset even when two policies are written identically.
fn in_source_order<'p>(
    parsed: &'p PolicySet,
    text: &str,
) -> Vec<(&'p cedar_policy::Policy, usize)> {
    let mut ordered: Vec<_> = parsed
        .policies()
        .map(|policy| {
            let id: &str = policy.id().as_ref();
            let index = id
                .strip_prefix("policy")
                .and_then(|n| n.parse::<usize>().ok())
                .unwrap_or(usize::MAX);
            (index, policy)
        })
        .collect();
    ordered.sort_by_key(|(index, _)| *index);

    let mut search_from = 0;
    ordered
        .into_iter()
        .map(|(_, policy)| {
            let offset = policy
                .to_cedar()
                .and_then(|policy_text| {
                    text.get(search_from..)
                        .and_then(|rest| rest.find(&policy_text))
                        .map(|found| search_from + found)
                        .inspect(|start| search_from = start + policy_text.len())
                })
                .unwrap_or(search_from);
            (policy, offset)
        })
        .collect()
}

/// The policy's `@id`, which must be present and non-empty.
fn policy_id(
    policy: &cedar_policy::Policy,
    source: &Source,
    offset: usize,
) -> Result<String, PolicyError> {
    match policy.annotation(ID_ANNOTATION) {
        Some(id) if !id.trim().is_empty() => Ok(id.to_owned()),
        _ => Err(annotation_error(
            source,
            offset,
            "every policy needs a non-empty @id(\"...\") annotation".to_owned(),
        )),
    }
}

/// The obligations a policy carries, after checking every annotation it has.
///
/// Unknown annotations are refused rather than ignored, so that a misspelt `@obligation`
/// stops start-up instead of silently dropping a de-identification or an audit.
fn obligations_of(
    policy: &cedar_policy::Policy,
    source: &Source,
    offset: usize,
) -> Result<Vec<Obligation>, PolicyError> {
    let mut obligations = Vec::new();
    for (key, value) in policy.annotations() {
        if key == ID_ANNOTATION {
            continue;
        }
        let is_obligation = key == OBLIGATION_ANNOTATION
            || key
                .strip_prefix(OBLIGATION_ANNOTATION)
                .is_some_and(|rest| rest.starts_with('_') && rest.len() > 1);
        if !is_obligation {
            return Err(annotation_error(
                source,
                offset,
                format!(
                    "unknown annotation @{key}; policies may carry @id and @obligation or \
                     @obligation_<name>"
                ),
            ));
        }
        if policy.effect() != Effect::Permit {
            return Err(annotation_error(
                source,
                offset,
                format!("@{key} on a forbid policy: only a permit can carry obligations"),
            ));
        }
        let Some(obligation) = Obligation::parse(value) else {
            return Err(annotation_error(
                source,
                offset,
                format!(
                    "@{key}(\"{value}\") is not an obligation the gateway knows: one of \
                     deidentify:<profile>, minimum-necessary, audit:break-glass, notify:patient"
                ),
            ));
        };
        obligations.push(obligation);
    }
    obligations.sort();
    obligations.dedup();
    Ok(obligations)
}

/// Strict validation of one file's policies; the first error by position stops loading.
fn validate(
    validator: &Validator,
    policies: &PolicySet,
    source: &Source,
    warnings: &mut Vec<String>,
) -> Result<(), PolicyError> {
    let result = validator.validate(policies, ValidationMode::Strict);
    let position = |offset: Option<usize>| line_column(&source.text, offset.unwrap_or(0));

    for warning in result.validation_warnings() {
        let located = Located::from_diagnostic(DetailedError::from(warning));
        let (line, column) = position(located.offset);
        warnings.push(format!(
            "{}:{line}:{column}: {}",
            source.file, located.reason
        ));
    }

    let mut errors: Vec<Located> = result
        .validation_errors()
        .map(|error| Located::from_diagnostic(DetailedError::from(error)))
        .collect();
    errors.sort_by_key(|located| located.offset.unwrap_or(usize::MAX));
    let more = errors.len().saturating_sub(1);
    match errors.into_iter().next() {
        None => Ok(()),
        Some(first) => {
            let (line, column) = position(first.offset);
            let reason = if more == 0 {
                first.reason
            } else {
                format!("{} (and {more} more)", first.reason)
            };
            Err(PolicyError::Validation {
                file: source.file.clone(),
                line,
                column,
                reason,
            })
        }
    }
}

fn annotation_error(source: &Source, offset: usize, reason: String) -> PolicyError {
    let (line, column) = line_column(&source.text, offset);
    PolicyError::Annotation {
        file: source.file.clone(),
        line,
        column,
        reason,
    }
}
