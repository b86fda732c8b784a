//! De-identification profiles: default-deny allow-lists loaded from `policies/deid/`.
//!
//! The format is described in the module documentation of [`super`]; loading checks every
//! listed path against the FHIR R4 element table, so a typo fails at start-up rather than
//! silently dropping (or keeping) data.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

use serde::Deserialize;

use super::DeidError;
use super::methods::AnonymizerConfig;
use super::schema::{self, ElementDef, TypeKind};

const SAFE_HARBOR: &str = include_str!("../../policies/deid/safe-harbor.json");
const RESTRICTED_ZIP3: &str = include_str!("../../policies/deid/restricted-zip3.json");

/// A de-identification profile: what may leave, and the parameters of the transformations.
#[derive(Debug, Clone)]
pub struct Profile {
    name: String,
    version: String,
    description: String,
    date_shift_max_days: u32,
    max_age: i32,
    restricted_zip3: RestrictedZip3,
    resources: BTreeMap<String, AllowList>,
    datatypes: BTreeMap<String, AllowList>,
    extensions: BTreeMap<String, BTreeSet<String>>,
    /// Set when the profile is a Microsoft anonymizer configuration: it then shapes every
    /// resource, and the allow-list fields above are empty and unused.
    anonymizer: Option<AnonymizerConfig>,
}

/// The ZIP3 prefixes that must become `000`, with the version of the list.
#[derive(Debug, Clone)]
struct RestrictedZip3 {
    version: String,
    /// Where the list comes from (census data, guidance), for the record.
    source: String,
    prefixes: BTreeSet<String>,
}

/// Allowed elements of a resource or datatype.
///
/// Kept in the form the walk asks about, so that a question is one bit test: the element
/// table rows of every listed path, with each `[x]` expanded to its concrete choices
/// (`valueQuantity`, ...), and of every ancestor of a listed path (listing `a.b` lets `a`
/// through).
#[derive(Debug, Clone, Default)]
pub(super) struct AllowList {
    rows: Vec<u64>,
}

impl AllowList {
    /// Whether `def`, an element of the type this list is for, may leave: its path (or, for a
    /// choice, its `[x]` form) is listed, or something inside it is.
    pub fn allows(&self, def: &ElementDef) -> bool {
        self.rows
            .get(def.row / 64)
            .is_some_and(|word| word & (1 << (def.row % 64)) != 0)
    }

    /// Adds the rows of `root.path` for each concrete form of a listed path (already checked
    /// against the table) and of its ancestors.
    fn add(&mut self, root: &str, concrete: &[String]) {
        for path in concrete {
            let mut end = path.len();
            loop {
                if let Some(row) = schema::row_of(&format!("{root}.{}", &path[..end])) {
                    if self.rows.len() <= row / 64 {
                        self.rows.resize(row / 64 + 1, 0);
                    }
                    self.rows[row / 64] |= 1 << (row % 64);
                }
                match path[..end].rfind('.') {
                    Some(dot) => end = dot,
                    None => break,
                }
            }
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct ProfileFile {
    profile: String,
    version: String,
    #[serde(default)]
    description: String,
    date_shift_max_days: u32,
    max_age: i32,
    restricted_zip3: String,
    #[serde(default)]
    common: Vec<String>,
    resources: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    datatypes: BTreeMap<String, Vec<String>>,
    #[serde(default)]
    extensions: BTreeMap<String, Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Zip3File {
    version: String,
    #[serde(default)]
    source: String,
    zip3: Vec<String>,
}

impl Profile {
    /// Loads a profile file and the restricted-ZIP3 list it names (relative to its folder), or
    /// a Microsoft anonymizer configuration (a file with `fhirPathRules`, see
    /// [`Profile::from_anonymizer_config`]).
    pub fn load(path: &Path) -> Result<Profile, DeidError> {
        let read = |p: &Path| {
            std::fs::read_to_string(p).map_err(|_| DeidError::ProfileUnreadable {
                path: p.display().to_string(),
            })
        };
        let text = read(path)?;
        let is_anonymizer =
            serde_json::from_str::<serde_json::Value>(text.trim_start_matches('\u{feff}'))
                .is_ok_and(|v| v.get("fhirPathRules").is_some());
        if is_anonymizer {
            let file = path
                .file_name()
                .map(|f| f.to_string_lossy().to_string())
                .unwrap_or_default();
            return Profile::from_anonymizer_config(&text, &file);
        }
        let file: ProfileFile = parse(&text)?;
        let zip_path = path
            .parent()
            .unwrap_or(Path::new("."))
            .join(&file.restricted_zip3);
        let zip3 = read(&zip_path)?;
        Profile::build(file, &zip3)
    }

    /// A profile that is a Microsoft FHIR anonymizer configuration (`fhirPathRules` and
    /// `parameters`), named after `file`; its version is the first 12 hex digits of the
    /// SHA-256 of the text, so an audit entry says exactly which configuration shaped the data.
    /// The de-identifier applies its rules under the study's keys (see
    /// [`AnonymizerConfig::keys_for`]), and the leak scan still runs on every output.
    pub fn from_anonymizer_config(text: &str, file: &str) -> Result<Profile, DeidError> {
        let config = AnonymizerConfig::parse(text, file)?;
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        let mut version = super::keys::hex(digest.as_ref());
        version.truncate(12);
        let name = file.strip_suffix(".json").unwrap_or(file).to_string();
        Ok(Profile {
            description: format!("Microsoft FHIR anonymizer configuration {file}"),
            name,
            version,
            date_shift_max_days: 50,
            max_age: 89,
            restricted_zip3: RestrictedZip3 {
                version: String::new(),
                source: String::new(),
                prefixes: BTreeSet::new(),
            },
            resources: BTreeMap::new(),
            datatypes: BTreeMap::new(),
            extensions: BTreeMap::new(),
            anonymizer: Some(config),
        })
    }

    /// The anonymizer configuration, when the profile is one.
    pub fn anonymizer(&self) -> Option<&AnonymizerConfig> {
        self.anonymizer.as_ref()
    }

    /// The built-in HIPAA Safe Harbor profile (`policies/deid/safe-harbor.json`).
    pub fn safe_harbor() -> Profile {
        // Compiled-in data that every Safe Harbor test loads, so it cannot be invalid here.
        Profile::from_texts(SAFE_HARBOR, RESTRICTED_ZIP3)
            .unwrap_or_else(|e| panic!("the embedded safe-harbor profile is invalid: {e}"))
    }

    /// Parses a profile and its restricted-ZIP3 list from their texts.
    pub fn from_texts(profile: &str, restricted_zip3: &str) -> Result<Profile, DeidError> {
        Profile::build(parse(profile)?, restricted_zip3)
    }

    /// The profile's name (`safe-harbor`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The profile's version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// What the profile is for.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// The version of the restricted-ZIP3 list in use.
    pub fn restricted_zip3_version(&self) -> &str {
        &self.restricted_zip3.version
    }

    /// Where the restricted-ZIP3 list comes from.
    pub fn restricted_zip3_source(&self) -> &str {
        &self.restricted_zip3.source
    }

    /// Whether the resource type may leave at all (every type, under an anonymizer
    /// configuration, which keeps what its rules do not touch).
    pub fn allows_resource_type(&self, resource_type: &str) -> bool {
        self.anonymizer.is_some() || self.resources.contains_key(resource_type)
    }

    pub(super) fn resource_rules(&self, resource_type: &str) -> Option<&AllowList> {
        self.resources.get(resource_type)
    }

    pub(super) fn datatype_rules(&self, datatype: &str) -> Option<&AllowList> {
        self.datatypes.get(datatype)
    }

    pub(super) fn extension_rules(&self, url: &str) -> Option<&BTreeSet<String>> {
        self.extensions.get(url)
    }

    pub(super) fn date_shift_max_days(&self) -> u32 {
        self.date_shift_max_days
    }

    pub(super) fn max_age(&self) -> i32 {
        self.max_age
    }

    pub(super) fn is_restricted_zip3(&self, prefix: &str) -> bool {
        self.restricted_zip3.prefixes.contains(prefix)
    }

    fn build(file: ProfileFile, zip3_text: &str) -> Result<Profile, DeidError> {
        if !(1..=3650).contains(&file.date_shift_max_days) {
            return Err(invalid("dateShiftMaxDays must be within 1..=3650"));
        }
        if !(1..=150).contains(&file.max_age) {
            return Err(invalid("maxAge must be within 1..=150"));
        }
        let mut resources = BTreeMap::new();
        for (resource_type, paths) in file.resources {
            if !schema::is_resource_type(&resource_type) {
                return Err(invalid(format!(
                    "{resource_type} is not a FHIR R4 resource type"
                )));
            }
            let all = file.common.iter().chain(paths.iter());
            resources.insert(resource_type.clone(), allow_list(&resource_type, all)?);
        }
        let mut datatypes = BTreeMap::new();
        for (datatype, paths) in file.datatypes {
            if !schema::is_datatype(&datatype) || datatype == "Extension" {
                return Err(invalid(format!(
                    "{datatype} is not a datatype a profile can list"
                )));
            }
            datatypes.insert(datatype.clone(), allow_list(&datatype, paths.iter())?);
        }
        let extensions = file
            .extensions
            .into_iter()
            .map(|(url, inner)| (url, inner.into_iter().collect()))
            .collect();
        let zip3: Zip3File = parse(zip3_text)?;
        if zip3.version.is_empty() {
            return Err(invalid("the restricted-ZIP3 list has no version"));
        }
        if let Some(bad) = zip3
            .zip3
            .iter()
            .find(|z| z.len() != 3 || !z.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid(format!(
                "restricted ZIP3 entry {bad:?} is not three digits"
            )));
        }
        Ok(Profile {
            name: file.profile,
            version: file.version,
            description: file.description,
            date_shift_max_days: file.date_shift_max_days,
            max_age: file.max_age,
            restricted_zip3: RestrictedZip3 {
                version: zip3.version,
                source: zip3.source,
                prefixes: zip3.zip3.into_iter().collect(),
            },
            resources,
            datatypes,
            extensions,
            anonymizer: None,
        })
    }
}

fn parse<T: for<'de> Deserialize<'de>>(text: &str) -> Result<T, DeidError> {
    serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .map_err(|e| invalid(format!("not a valid profile document: {e}")))
}

fn invalid(reason: impl Into<String>) -> DeidError {
    DeidError::ProfileInvalid {
        reason: reason.into(),
    }
}

/// Checks every path against the element table: each step but the last must be a backbone
/// element (datatype contents belong in the `datatypes` section); `name[x]` names a choice.
fn allow_list<'p>(
    root: &str,
    paths: impl Iterator<Item = &'p String>,
) -> Result<AllowList, DeidError> {
    let mut list = AllowList::default();
    for path in paths {
        let mut base = root.to_string();
        let steps: Vec<&str> = path.split('.').collect();
        let mut concrete = Vec::new();
        for (index, step) in steps.iter().enumerate() {
            let def = match step.strip_suffix("[x]") {
                Some(stem) => schema::choice_of(&base, stem),
                None => schema::child(&base, step),
            }
            .ok_or_else(|| invalid(format!("{root}: {path} is not an element of {root}")))?;
            if index + 1 < steps.len() {
                if def.kind() != TypeKind::Backbone {
                    return Err(invalid(format!(
                        "{root}: {path} goes inside a {}; list its parts under datatypes",
                        def.type_code
                    )));
                }
                base = def.child_base().to_string();
            } else {
                let parent = &path[..path.len() - step.len()];
                concrete = match step.strip_suffix("[x]") {
                    Some(stem) => schema::choices_of(&base, stem)
                        .map(|name| format!("{parent}{name}"))
                        .collect(),
                    None => vec![path.clone()],
                };
            }
        }
        list.add(root, &concrete);
    }
    Ok(list)
}
