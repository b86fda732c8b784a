//! One label's value set: the file format of `policies/labels/*.json` and its compiled form.
//!
//! The format is described in `policies/labels/README.md`; every rule it states is checked here,
//! so a broken file stops start-up with the file name and what is wrong.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use serde::Deserialize;

use super::error::LabelError;
use super::{ACT_CODE_SYSTEM, SecurityLabel};

const SNOMED: &str = "http://snomed.info/sct";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const ICD10: &str = "http://hl7.org/fhir/sid/icd-10";

/// The OID forms some senders use, mapped to the FHIR URIs the value sets use.
const SYSTEM_ALIASES: [(&str, &str); 4] = [
    ("urn:oid:2.16.840.1.113883.6.96", SNOMED),
    ("urn:oid:2.16.840.1.113883.6.1", LOINC),
    ("urn:oid:2.16.840.1.113883.6.88", RXNORM),
    ("urn:oid:2.16.840.1.113883.6.90", ICD10CM),
];

/// Code systems whose codes are hierarchical strings, where a prefix names a family.
const HIERARCHICAL: [&str; 2] = [ICD10CM, ICD10];

/// The FHIR URI for `system`, resolving known OID aliases.
fn canonical_system(system: &str) -> &str {
    let system = system.trim();
    SYSTEM_ALIASES
        .iter()
        .find(|(alias, _)| *alias == system)
        .map_or(system, |(_, uri)| uri)
}

fn is_hierarchical(system: &str) -> bool {
    HIERARCHICAL.contains(&system)
}

/// ICD-10 codes are written with or without the dot and in either case; compare them bare.
fn normalise_code<'a>(system: &str, code: &'a str) -> Cow<'a, str> {
    let code = code.trim();
    if is_hierarchical(system) {
        Cow::Owned(
            code.chars()
                .filter(|c| *c != '.')
                .flat_map(char::to_uppercase)
                .collect(),
        )
    } else {
        Cow::Borrowed(code)
    }
}

/// A coding from a resource, in the form value sets compare against.
pub(super) struct CodingKey<'a> {
    system: &'a str,
    code: Cow<'a, str>,
}

impl<'a> CodingKey<'a> {
    /// Canonicalises the system and normalises the code once, for every value set to use.
    pub(super) fn new(system: &'a str, code: &'a str) -> Self {
        let system = canonical_system(system);
        Self {
            system,
            code: normalise_code(system, code),
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ValueSetFile {
    label: SecurityLabel,
    title: String,
    version: String,
    #[serde(default)]
    description: Option<String>,
    source: String,
    #[serde(default)]
    notes: Vec<String>,
    #[serde(default)]
    implies: Vec<String>,
    #[serde(default)]
    scope: Option<ScopeFile>,
    compose: ComposeFile,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct ScopeFile {
    resource_types: Vec<String>,
    elements: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ComposeFile {
    include: Vec<IncludeFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct IncludeFile {
    system: String,
    #[serde(default)]
    verified_in: Option<String>,
    #[serde(default)]
    prefixes: Vec<ConceptFile>,
    #[serde(default)]
    concept: Vec<ConceptFile>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ConceptFile {
    code: String,
    display: String,
    #[serde(default)]
    comment: Option<String>,
}

/// Where a value set applies, when it does not apply to every coding of every resource.
#[derive(Debug)]
struct Scope {
    resource_types: HashSet<String>,
    elements: HashSet<String>,
}

/// A value set compiled for matching.
#[derive(Debug)]
pub(super) struct ValueSet {
    /// The file it came from, for messages.
    pub(super) file: String,
    /// The label it assigns.
    pub(super) label: SecurityLabel,
    /// The file's own version field.
    pub(super) version: String,
    /// Codes of other labels that always come with this one.
    pub(super) implies: Vec<String>,
    scope: Option<Scope>,
    /// Canonical system -> normalised codes.
    exact: HashMap<String, HashSet<String>>,
    /// Canonical system -> normalised prefixes (hierarchical systems only).
    prefixes: HashMap<String, Vec<String>>,
}

impl ValueSet {
    /// Parses and checks one value-set file; `file` is its name, e.g. `ETH.json`.
    pub(super) fn parse(file: &str, text: &str) -> Result<Self, LabelError> {
        // Some editors save JSON with a byte-order mark; it is not content.
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let raw: ValueSetFile =
            serde_json::from_str(text).map_err(|e| LabelError::invalid(file, e.to_string()))?;
        let invalid = |reason: String| LabelError::invalid(file, reason);

        if raw.label.system != ACT_CODE_SYSTEM {
            return Err(invalid(format!("label.system must be {ACT_CODE_SYSTEM}")));
        }
        if !is_token(&raw.label.code) {
            return Err(invalid("label.code must be a non-empty code".into()));
        }
        if file != format!("{}.json", raw.label.code) {
            return Err(invalid(format!(
                "the file must be named {}.json after its label",
                raw.label.code
            )));
        }
        let texts = [
            ("label.display", &raw.label.display),
            ("title", &raw.title),
            ("version", &raw.version),
            ("source", &raw.source),
        ];
        if let Some((field, _)) = texts.iter().find(|(_, value)| value.trim().is_empty()) {
            return Err(invalid(format!("{field} must not be empty")));
        }
        if raw
            .description
            .as_ref()
            .is_some_and(|d| d.trim().is_empty())
            || raw.notes.iter().any(|n| n.trim().is_empty())
        {
            return Err(invalid("description and notes must not be empty".into()));
        }
        if raw.implies.contains(&raw.label.code) {
            return Err(invalid("a label cannot imply itself".into()));
        }
        let scope = raw.scope.map(compile_scope).transpose().map_err(invalid)?;
        if raw.compose.include.is_empty() {
            return Err(invalid(
                "compose.include must list at least one code system".into(),
            ));
        }

        let mut exact: HashMap<String, HashSet<String>> = HashMap::new();
        let mut prefixes: HashMap<String, Vec<String>> = HashMap::new();
        for include in &raw.compose.include {
            let system = canonical_system(&include.system);
            if system.is_empty() {
                return Err(invalid("compose.include.system must not be empty".into()));
            }
            if include.concept.is_empty() && include.prefixes.is_empty() {
                return Err(invalid(format!(
                    "the include of {system} lists neither concept nor prefixes"
                )));
            }
            if include
                .verified_in
                .as_ref()
                .is_some_and(|v| v.trim().is_empty())
            {
                return Err(invalid(format!("verifiedIn of {system} is empty")));
            }
            if !include.prefixes.is_empty() && !is_hierarchical(system) {
                return Err(invalid(format!(
                    "prefixes are allowed only for ICD-10 code systems, not {system}"
                )));
            }
            for concept in &include.concept {
                let code = checked_code(system, concept).map_err(invalid)?;
                if !exact.entry(system.to_string()).or_default().insert(code) {
                    return Err(invalid(format!(
                        "code {} of {system} is listed twice",
                        concept.code
                    )));
                }
            }
            for prefix in &include.prefixes {
                let code = checked_code(system, prefix).map_err(invalid)?;
                let known = prefixes.entry(system.to_string()).or_default();
                if known.contains(&code) {
                    return Err(invalid(format!(
                        "prefix {} of {system} is listed twice",
                        prefix.code
                    )));
                }
                known.push(code);
            }
        }
        Ok(Self {
            file: file.to_string(),
            label: raw.label,
            version: raw.version,
            implies: raw.implies,
            scope,
            exact,
            prefixes,
        })
    }

    /// Whether a coding found in element `element` of a `resource_type` belongs to this set.
    pub(super) fn matches(&self, key: &CodingKey<'_>, resource_type: &str, element: &str) -> bool {
        if let Some(scope) = &self.scope
            && !(scope.resource_types.contains(resource_type) && scope.elements.contains(element))
        {
            return false;
        }
        if self
            .exact
            .get(key.system)
            .is_some_and(|codes| codes.contains(key.code.as_ref()))
        {
            return true;
        }
        self.prefixes.get(key.system).is_some_and(|prefixes| {
            prefixes
                .iter()
                .any(|prefix| key.code.starts_with(prefix.as_str()))
        })
    }
}

fn compile_scope(raw: ScopeFile) -> Result<Scope, String> {
    if raw.resource_types.is_empty() || raw.elements.is_empty() {
        return Err("scope.resourceTypes and scope.elements must not be empty".into());
    }
    if let Some(bad) = raw
        .resource_types
        .iter()
        .chain(&raw.elements)
        .find(|name| !is_token(name))
    {
        return Err(format!("scope names a malformed type or element: {bad:?}"));
    }
    Ok(Scope {
        resource_types: raw.resource_types.into_iter().collect(),
        elements: raw.elements.into_iter().collect(),
    })
}

/// The normalised code of a listed concept or prefix, once its fields are checked.
fn checked_code(system: &str, concept: &ConceptFile) -> Result<String, String> {
    if concept.code.is_empty() || concept.code.chars().any(char::is_whitespace) {
        return Err(format!(
            "code {:?} of {system} is empty or has spaces",
            concept.code
        ));
    }
    if concept.display.trim().is_empty()
        || concept
            .comment
            .as_ref()
            .is_some_and(|c| c.trim().is_empty())
    {
        return Err(format!(
            "code {} of {system} needs a display (and a non-empty comment if any)",
            concept.code
        ));
    }
    Ok(normalise_code(system, &concept.code).into_owned())
}

/// A label code, resource type or element name: ASCII letters and digits, at least one.
fn is_token(text: &str) -> bool {
    !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric())
}
