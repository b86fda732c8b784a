//! The sensitivity labeller: finds the sensitive information in a FHIR resource from its codes
//! and records it as security labels in `meta.security`.
//!
//! The value sets in `policies/labels/` (one file per label, format in that folder's
//! `README.md`) map SNOMED CT, ICD-10-CM, LOINC and RxNorm codes to the v3-ActCode sensitivity
//! labels `ETH`, `PSY`, `PSYTHPN`, `HIV`, `SEX` and `GDIS`. Whenever one applies, the
//! confidentiality label `R` (restricted) applies too. Consents and institution policy decide
//! on these labels; the labeller only finds them.
//!
//! ```text
//! let labeller = Labeller::builtin()?;            // or Labeller::load(Path::new("policies/labels"))?
//! let added = labeller.apply(&mut resource)?;      // one resource at ingest
//! let added = labeller.apply_bundle(&mut bundle)?; // a whole transaction Bundle, with notes and
//!                                                  // claims inheriting what they describe
//! store(labeller.version_hash());                  // re-label when this changes
//! ```
//!
//! Labelling only ever adds: existing labels are kept, nothing is duplicated, and applying twice
//! adds nothing the second time. Only codings are read (never narrative, attachments or reference
//! displays), so a sensitive fact that exists only as free text is not found; the Bundle form
//! covers the commonest case, a visit note whose visit is sensitive.
//!
//! The module is pure: it reads files only in [`Labeller::load`].

mod bundle;
mod error;
mod scan;
mod valueset;

#[cfg(test)]
mod fixture_tests;
#[cfg(test)]
mod load_tests;
#[cfg(test)]
mod tests;

use std::collections::{BTreeSet, HashSet};
use std::fs;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

pub use bundle::EntryLabels;
pub use error::LabelError;
use valueset::ValueSet;

/// The code system of the sensitivity labels.
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// The code system of the confidentiality labels.
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";

/// Bumped whenever a change to this module's rules would label the same resource differently,
/// so that the version hash changes and stored resources are labelled again.
const RULES_VERSION: &str = "consentgate-labeller/1";

/// The value sets shipped with the gateway, so the binary works without the folder.
const BUILTIN: [(&str, &str); 6] = [
    ("ETH.json", include_str!("../../policies/labels/ETH.json")),
    ("GDIS.json", include_str!("../../policies/labels/GDIS.json")),
    ("HIV.json", include_str!("../../policies/labels/HIV.json")),
    ("PSY.json", include_str!("../../policies/labels/PSY.json")),
    (
        "PSYTHPN.json",
        include_str!("../../policies/labels/PSYTHPN.json"),
    ),
    ("SEX.json", include_str!("../../policies/labels/SEX.json")),
];

/// One security label, as it appears in `meta.security`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SecurityLabel {
    /// Code system URI.
    pub system: String,
    /// Code within the system, e.g. `ETH`.
    pub code: String,
    /// Human-readable name.
    pub display: String,
}

impl SecurityLabel {
    /// The confidentiality label `R` (restricted) that every sensitive resource carries.
    pub fn restricted() -> Self {
        Self {
            system: CONFIDENTIALITY_SYSTEM.to_string(),
            code: "R".to_string(),
            display: "restricted".to_string(),
        }
    }

    /// The label as a FHIR `Coding`.
    pub fn to_coding(&self) -> Value {
        json!({ "system": self.system, "code": self.code, "display": self.display })
    }
}

/// The loaded value sets, ready to label resources.
#[derive(Debug)]
pub struct Labeller {
    /// Sorted by file name, so label order is stable.
    value_sets: Vec<ValueSet>,
    /// For each value set, the indices of the value sets it implies (transitively).
    implied: Vec<Vec<usize>>,
    version_hash: String,
}

/// Indices into [`Labeller::value_sets`]: the sensitivities found for one resource.
type Sensitivities = BTreeSet<usize>;

impl Labeller {
    /// Loads every `*.json` value set in `dir` (other files, such as `README.md`, are ignored).
    pub fn load(dir: &Path) -> Result<Self, LabelError> {
        let unreadable = |path: &Path, e: std::io::Error| LabelError::Unreadable {
            path: path.display().to_string(),
            reason: e.to_string(),
        };
        let mut files = Vec::new();
        for entry in fs::read_dir(dir).map_err(|e| unreadable(dir, e))? {
            let path = entry.map_err(|e| unreadable(dir, e))?.path();
            if path.extension().is_none_or(|ext| ext != "json") || !path.is_file() {
                continue;
            }
            let name = path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let text = fs::read_to_string(&path).map_err(|e| unreadable(&path, e))?;
            files.push((name, text));
        }
        if files.is_empty() {
            return Err(LabelError::NoValueSets {
                path: dir.display().to_string(),
            });
        }
        Self::from_files(files)
    }

    /// The value sets shipped in `policies/labels/`, compiled into the binary.
    pub fn builtin() -> Result<Self, LabelError> {
        Self::from_files(
            BUILTIN
                .iter()
                .map(|(name, text)| (name.to_string(), text.to_string()))
                .collect(),
        )
    }

    fn from_files(mut files: Vec<(String, String)>) -> Result<Self, LabelError> {
        files.sort();
        // Each file must be named after its label (checked by `parse`), so no label can be
        // assigned by two files.
        let value_sets = files
            .iter()
            .map(|(name, text)| ValueSet::parse(name, text))
            .collect::<Result<Vec<_>, _>>()?;
        let implied = implied_closure(&value_sets)?;
        Ok(Self {
            version_hash: version_hash(&files),
            value_sets,
            implied,
        })
    }

    /// SHA-256 (lower-case hex) over the labeller's rule version and every value-set file's
    /// name and bytes: when it changes, stored resources must be labelled again.
    pub fn version_hash(&self) -> &str {
        &self.version_hash
    }

    /// The sensitivity labels the value sets can assign, in file-name order.
    pub fn sensitivity_labels(&self) -> impl Iterator<Item = &SecurityLabel> {
        self.value_sets.iter().map(|vs| &vs.label)
    }

    /// The `(file name, version)` of every loaded value set, in file-name order.
    pub fn value_set_versions(&self) -> impl Iterator<Item = (&str, &str)> {
        self.value_sets
            .iter()
            .map(|vs| (vs.file.as_str(), vs.version.as_str()))
    }

    /// The labels a resource's codes call for: its sensitivity labels, then `R` if there is any.
    /// Existing `meta.security` is not consulted.
    pub fn labels_for(&self, resource: &Value) -> Vec<SecurityLabel> {
        self.labels_from(&self.coded_sensitivities(resource))
    }

    /// Adds to `meta.security` the labels the resource calls for and does not carry yet; returns
    /// those added. Never removes or duplicates a label. A sensitivity label already present
    /// (put there by the source) also brings `R`; `R` is not added beside `V` (very restricted).
    pub fn apply(&self, resource: &mut Value) -> Result<Vec<SecurityLabel>, LabelError> {
        let found = self.sensitivities(resource);
        add_missing(resource, self.labels_from(&found))
    }

    /// What the codes of `resource` call for, with implied labels.
    fn coded_sensitivities(&self, resource: &Value) -> Sensitivities {
        self.close(self.matched(resource, scan::codings))
    }

    /// The value sets matching a coding that `walker` finds in `resource`.
    fn matched<'a>(
        &self,
        resource: &'a Value,
        walker: fn(&'a Value, &mut dyn FnMut(scan::Found<'a>)),
    ) -> Sensitivities {
        let mut found = Sensitivities::new();
        walker(resource, &mut |coding| {
            let key = valueset::CodingKey::new(coding.system, coding.code);
            for (i, vs) in self.value_sets.iter().enumerate() {
                if !found.contains(&i) && vs.matches(&key, coding.resource_type, coding.element) {
                    found.insert(i);
                }
            }
        });
        found
    }

    /// What the codes call for plus the known sensitivity labels the resource already carries.
    fn sensitivities(&self, resource: &Value) -> Sensitivities {
        let mut found = self.coded_sensitivities(resource);
        for (system, code) in security_codes(resource) {
            if let Some(i) = self
                .value_sets
                .iter()
                .position(|vs| vs.label.system == system && vs.label.code == code)
            {
                found.insert(i);
            }
        }
        self.close(found)
    }

    /// Adds every label implied by one already found.
    fn close(&self, mut found: Sensitivities) -> Sensitivities {
        let implied: Vec<usize> = found
            .iter()
            .flat_map(|&i| self.implied[i].iter().copied())
            .collect();
        found.extend(implied);
        found
    }

    fn labels_from(&self, found: &Sensitivities) -> Vec<SecurityLabel> {
        let mut labels: Vec<SecurityLabel> = found
            .iter()
            .map(|&i| self.value_sets[i].label.clone())
            .collect();
        if !labels.is_empty() {
            labels.push(SecurityLabel::restricted());
        }
        labels
    }
}

/// For each value set, every value set it implies, directly or through others.
fn implied_closure(value_sets: &[ValueSet]) -> Result<Vec<Vec<usize>>, LabelError> {
    let mut direct = Vec::with_capacity(value_sets.len());
    for vs in value_sets {
        let mut targets = Vec::new();
        for code in &vs.implies {
            let target = value_sets
                .iter()
                .position(|other| &other.label.code == code)
                .ok_or_else(|| {
                    LabelError::invalid(&vs.file, format!("implies unknown label {code}"))
                })?;
            targets.push(target);
        }
        direct.push(targets);
    }
    let mut closure = Vec::with_capacity(value_sets.len());
    for start in 0..value_sets.len() {
        let mut seen = BTreeSet::new();
        let mut todo = direct[start].clone();
        while let Some(next) = todo.pop() {
            if seen.insert(next) {
                todo.extend(direct[next].iter().copied());
            }
        }
        seen.remove(&start);
        closure.push(seen.into_iter().collect());
    }
    Ok(closure)
}

fn version_hash(files: &[(String, String)]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(RULES_VERSION.as_bytes());
    ctx.update(b"\n");
    for (name, text) in files {
        // Lengths delimit each part, so no two different file sets hash the same input.
        ctx.update(format!("{}\n{}\n{}\n", name.len(), name, text.len()).as_bytes());
        ctx.update(text.as_bytes());
    }
    ctx.finish()
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The `(system, code)` of every label in `meta.security`, ignoring malformed entries.
fn security_codes(resource: &Value) -> Vec<(&str, &str)> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|label| Some((label.get("system")?.as_str()?, label.get("code")?.as_str()?)))
        .collect()
}

/// Appends the labels of `wanted` that `meta.security` lacks; returns them.
fn add_missing(
    resource: &mut Value,
    wanted: Vec<SecurityLabel>,
) -> Result<Vec<SecurityLabel>, LabelError> {
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let present: HashSet<(String, String)> = security_codes(resource)
        .into_iter()
        .map(|(system, code)| (system.to_string(), code.to_string()))
        .collect();
    let very_restricted = present.contains(&(CONFIDENTIALITY_SYSTEM.to_string(), "V".to_string()));
    let missing: Vec<SecurityLabel> = wanted
        .into_iter()
        .filter(|label| !present.contains(&(label.system.clone(), label.code.clone())))
        .filter(|label| !(very_restricted && *label == SecurityLabel::restricted()))
        .collect();
    if missing.is_empty() {
        return Ok(missing);
    }
    let fields = resource
        .as_object_mut()
        .ok_or(LabelError::NotAnObject { what: "resource" })?;
    let meta = fields
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()))
        .as_object_mut()
        .ok_or(LabelError::MalformedMeta { element: "meta" })?;
    let security = meta
        .entry("security")
        .or_insert_with(|| Value::Array(Vec::new()))
        .as_array_mut()
        .ok_or(LabelError::MalformedMeta {
            element: "meta.security",
        })?;
    security.extend(missing.iter().map(SecurityLabel::to_coding));
    Ok(missing)
}
