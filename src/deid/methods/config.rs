//! An interpreter of the Microsoft FHIR anonymizer's configuration files
//! (`fhirPathRules` + `parameters`), for the methods `keep`, `redact`, `dateShift` and
//! `cryptoHash`.
//!
//! Supported rule paths (the forms the anonymizer's sample configurations use):
//! - `nodesByType('T')` and `nodesByType('T').child`: every element of type `T` in a resource;
//! - `Type`, `Resource`, `DomainResource`: the whole resource;
//! - `Type.step.step...` and `Resource.step...`, where a step is a child name (a choice
//!   element by its stem, `Observation.value`), `nodesByType('T')` (descendants of type `T`) or
//!   `where(child='literal')`.
//!
//! Semantics follow the anonymizer: rules run in order for each resource (nested resources in
//! document order, each with the rules for its type); a rule applies its method to the
//! selected elements and everything below them (not into nested resources), and an element
//! handled by an earlier rule is not touched again. Each resource that is not contained gets
//! `meta.security` labels for the operations applied to it and to the resources inside it.
//! `substitute` is supported with a primitive `replaceWith` (a string, number or boolean that
//! replaces each selected primitive value; selected complex elements are left as they are).
//! `perturb`, `encrypt`, `generalize` and `substitute` with a complex `replaceWith` are refused
//! at load with [`DeidError::AnonymizerConfig`] naming the file and rule index, as is any path
//! outside the subset above. Only `dateShiftScope` `resource` is supported; `fhirVersion` must
//! be empty, null or `R4`; `processingError(s)` may be `raise` or `skip` (no supported method
//! raises one).

use std::collections::BTreeSet;

use serde_json::Value;
use time::Date;

use super::super::DeidError;
use super::tree::{Node, Tree};
use super::{
    Operation, RedactSettings, ValueKind, crypto_hash, crypto_hash_reference, date_shift, redact,
};

const LABEL_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

/// A parsed anonymizer configuration.
#[derive(Debug, Clone)]
pub struct AnonymizerConfig {
    rules: Vec<Rule>,
    /// The `replaceWith` values of `substitute` rules, by [`Method::Substitute`] index.
    replacements: Vec<String>,
    date_shift_key: String,
    crypto_hash_key: String,
    redact: RedactSettings,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Method {
    Keep,
    Redact,
    DateShift,
    CryptoHash,
    /// `substitute` with a primitive `replaceWith`, by index into the replacements.
    Substitute(usize),
}

#[derive(Debug, Clone)]
struct Rule {
    /// `None` for rules on every resource type.
    resource_type: Option<String>,
    selector: Selector,
    method: Method,
}

#[derive(Debug, Clone)]
enum Selector {
    WholeResource,
    Steps(Vec<Step>),
}

#[derive(Debug, Clone)]
enum Step {
    Child(String),
    NodesByType(String),
    Where { child: String, literal: String },
}

/// The keys an anonymizer run uses: the configuration's own, or, where it leaves one empty,
/// one derived from the study key (see [`AnonymizerConfig::keys_for`]).
#[derive(Clone)]
pub struct AnonymizerKeys {
    date_shift: String,
    crypto_hash: String,
}

impl std::fmt::Debug for AnonymizerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnonymizerKeys(..)")
    }
}

impl AnonymizerConfig {
    /// Parses a configuration file's text (a UTF-8 byte-order mark is allowed); errors name
    /// the configuration `<inline>`.
    pub fn from_json(text: &str) -> Result<AnonymizerConfig, DeidError> {
        AnonymizerConfig::parse(text, "<inline>")
    }

    /// Parses the text of the configuration file `file`; anything this module cannot
    /// interpret is refused here, with the file and the index of the rule at fault.
    pub fn parse(text: &str, file: &str) -> Result<AnonymizerConfig, DeidError> {
        AnonymizerConfig::parse_unnamed(text).map_err(|e| match e {
            DeidError::AnonymizerConfig { rule, reason, .. } => DeidError::AnonymizerConfig {
                file: file.to_string(),
                rule,
                reason,
            },
            other => other,
        })
    }

    /// The keys for a run under `study`: a key the configuration leaves empty (or out) is
    /// HMAC(study key, `anonymizer:{parameter}`) in hex, so that studies sharing one
    /// configuration file stay unlinkable; a key written in the file is used as it is.
    pub fn keys_for(&self, study: &crate::deid::StudyKey) -> AnonymizerKeys {
        let key = |given: &str, parameter: &str| {
            if given.is_empty() {
                study.derived_text(&format!("anonymizer:{parameter}"))
            } else {
                given.to_string()
            }
        };
        AnonymizerKeys {
            date_shift: key(&self.date_shift_key, "dateShiftKey"),
            crypto_hash: key(&self.crypto_hash_key, "cryptoHashKey"),
        }
    }

    /// Whether a rule shifts dates, so that the leak scan knows every full date moved.
    pub fn shifts_dates(&self) -> bool {
        self.rules.iter().any(|r| r.method == Method::DateShift)
    }

    /// The days the dates of `resource` move under `keys`, when the configuration shifts
    /// dates (the anonymizer's offset depends on the resource's id).
    pub fn date_shift_days(&self, keys: &AnonymizerKeys, resource: &Value) -> Option<i64> {
        let id = resource.get("id").and_then(Value::as_str).unwrap_or("");
        self.shifts_dates()
            .then(|| super::date_shift_offset(&keys.date_shift, id))
    }

    fn parse_unnamed(text: &str) -> Result<AnonymizerConfig, DeidError> {
        let config: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| unsupported(format!("not JSON: {e}")))?;
        match config.get("fhirVersion") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v.is_empty() || v.eq_ignore_ascii_case("R4") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "fhirVersion {other} (this gateway holds FHIR R4)"
                )));
            }
        }
        for name in ["processingError", "processingErrors"] {
            match config.get(name).and_then(Value::as_str) {
                None => {}
                Some(v) if v.eq_ignore_ascii_case("raise") || v.eq_ignore_ascii_case("skip") => {}
                Some(v) => return Err(unsupported(format!("{name} {v}"))),
            }
        }
        let parameters = config.get("parameters").cloned().unwrap_or(Value::Null);
        let text_of = |name: &str| {
            parameters
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let flag = |name: &str| {
            parameters
                .get(name)
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let scope = text_of("dateShiftScope");
        if !(scope.is_empty() || scope.eq_ignore_ascii_case("resource")) {
            return Err(unsupported(format!("dateShiftScope {scope}")));
        }
        let restricted_zip3 = parameters
            .get("restrictedZipCodeTabulationAreas")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut replacements = Vec::new();
        let rules = config
            .get("fhirPathRules")
            .and_then(Value::as_array)
            .ok_or_else(|| unsupported("no fhirPathRules"))?
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                parse_rule(rule, &mut replacements).map_err(|e| match e {
                    DeidError::AnonymizerConfig { file, reason, .. } => {
                        DeidError::AnonymizerConfig {
                            file,
                            rule: Some(index),
                            reason,
                        }
                    }
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AnonymizerConfig {
            rules,
            replacements,
            date_shift_key: text_of("dateShiftKey"),
            crypto_hash_key: text_of("cryptoHashKey"),
            redact: RedactSettings {
                partial_dates: flag("enablePartialDatesForRedact"),
                partial_ages: flag("enablePartialAgesForRedact"),
                partial_zip_codes: flag("enablePartialZipCodesForRedact"),
                restricted_zip3,
            },
        })
    }

    /// Anonymizes one resource (a Bundle's entries and contained resources included), judging
    /// ages on `today`.
    pub fn anonymize(&self, resource: &Value, today: Date) -> Result<Value, DeidError> {
        let keys = AnonymizerKeys {
            date_shift: self.date_shift_key.clone(),
            crypto_hash: self.crypto_hash_key.clone(),
        };
        self.anonymize_with(resource, &keys, today)
    }

    /// [`Self::anonymize`] with the keys of a study ([`Self::keys_for`]).
    pub fn anonymize_with(
        &self,
        resource: &Value,
        keys: &AnonymizerKeys,
        today: Date,
    ) -> Result<Value, DeidError> {
        let mut tree = Tree::from_resource(resource)?;
        let visited = vec![false; tree.nodes.len()];
        let mut run = Run {
            config: self,
            keys,
            tree: &mut tree,
            visited,
            today,
        };
        run.visit(0);
        Ok(tree.to_json())
    }
}

fn unsupported(reason: impl Into<String>) -> DeidError {
    DeidError::AnonymizerConfig {
        file: String::new(),
        rule: None,
        reason: reason.into(),
    }
}

fn parse_rule(rule: &Value, replacements: &mut Vec<String>) -> Result<Rule, DeidError> {
    let path = rule
        .get("path")
        .and_then(Value::as_str)
        .ok_or_else(|| unsupported("a rule without a path"))?;
    let method_name = rule.get("method").and_then(Value::as_str).unwrap_or("");
    let method = match method_name.to_ascii_lowercase().as_str() {
        "keep" => Method::Keep,
        "redact" => Method::Redact,
        "dateshift" => Method::DateShift,
        "cryptohash" => Method::CryptoHash,
        "substitute" => {
            let replacement = match rule.get("replaceWith") {
                Some(Value::String(text)) => text.clone(),
                Some(Value::Number(n)) => n.to_string(),
                Some(Value::Bool(b)) => b.to_string(),
                Some(Value::Object(_) | Value::Array(_)) => {
                    return Err(unsupported(
                        "substitute with a complex replaceWith (only primitive values are supported)",
                    ));
                }
                None | Some(Value::Null) => {
                    return Err(unsupported("substitute without replaceWith"));
                }
            };
            replacements.push(replacement);
            Method::Substitute(replacements.len() - 1)
        }
        _ => return Err(unsupported(format!("method {method_name}"))),
    };
    let type_end = path
        .find(|c: char| !c.is_ascii_alphabetic())
        .unwrap_or(path.len());
    let (prefix, expression) = match path.split_at(type_end) {
        (prefix, rest) if prefix.starts_with(|c: char| c.is_ascii_uppercase()) => {
            (Some(prefix), rest.strip_prefix('.').unwrap_or(rest))
        }
        _ => (None, path),
    };
    let resource_type = prefix
        .filter(|p| *p != "Resource" && *p != "DomainResource")
        .map(str::to_string);
    let selector = if expression.is_empty() {
        Selector::WholeResource
    } else {
        Selector::Steps(
            split_steps(expression)
                .map(|s| parse_step(s, path))
                .collect::<Result<_, _>>()?,
        )
    };
    Ok(Rule {
        resource_type,
        selector,
        method,
    })
}

/// Splits a path at the dots outside parentheses.
fn split_steps(expression: &str) -> impl Iterator<Item = &str> {
    let mut depth = 0usize;
    expression
        .split(move |c: char| {
            match c {
                '(' => depth += 1,
                ')' => depth = depth.saturating_sub(1),
                _ => {}
            }
            c == '.' && depth == 0
        })
        .map(str::trim)
}

fn parse_step(step: &str, path: &str) -> Result<Step, DeidError> {
    let quoted = |text: &str| -> Option<String> {
        let text = text.trim();
        let inner = text
            .strip_prefix('\'')
            .and_then(|t| t.strip_suffix('\''))
            .or_else(|| text.strip_prefix('"').and_then(|t| t.strip_suffix('"')))?;
        Some(inner.to_string())
    };
    if let Some(argument) = step
        .strip_prefix("nodesByType(")
        .and_then(|s| s.strip_suffix(')'))
    {
        return quoted(argument)
            .map(Step::NodesByType)
            .ok_or_else(|| unsupported(format!("path {path}")));
    }
    if let Some(condition) = step
        .strip_prefix("where(")
        .and_then(|s| s.strip_suffix(')'))
    {
        let (child, literal) = condition
            .split_once('=')
            .ok_or_else(|| unsupported(format!("path {path}")))?;
        let literal = quoted(literal).ok_or_else(|| unsupported(format!("path {path}")))?;
        return Ok(Step::Where {
            child: child.trim().to_string(),
            literal,
        });
    }
    if !step.is_empty() && step.chars().all(|c| c.is_ascii_alphanumeric()) {
        return Ok(Step::Child(step.to_string()));
    }
    Err(unsupported(format!("path {path}")))
}

/// The operations applied to a resource (and the resources inside it); their order is the
/// order of the labels.
type Operations = BTreeSet<Operation>;

/// `(system, code, display)` of the `meta.security` label of an operation.
fn label(operation: Operation) -> (Option<&'static str>, &'static str, &'static str) {
    match operation {
        Operation::Redact => (Some(LABEL_SYSTEM), "REDACTED", "redacted"),
        Operation::Abstract => (Some(LABEL_SYSTEM), "ABSTRED", "abstracted"),
        Operation::CryptoHash => (
            Some(LABEL_SYSTEM),
            "CRYTOHASH",
            "cryptographic hash function",
        ),
        // The anonymizer gives these no system.
        Operation::Perturb => (
            None,
            "PERTURBED",
            "exact value is replaced with another exact value",
        ),
        Operation::Substitute => (
            None,
            "SUBSTITUTED",
            "exact value is replaced with a predefined value",
        ),
    }
}

struct Run<'c, 't> {
    config: &'c AnonymizerConfig,
    keys: &'c AnonymizerKeys,
    tree: &'t mut Tree,
    visited: Vec<bool>,
    today: Date,
}

impl Run<'_, '_> {
    /// Visits `index` and below; returns the operations on the resources met there.
    fn visit(&mut self, index: usize) -> Operations {
        let is_resource = self.tree.nodes[index].resource_type.is_some();
        let mut operations = if is_resource {
            self.process_resource(index)
        } else {
            Operations::new()
        };
        for child in self.tree.nodes[index].children.clone() {
            operations.extend(self.visit(child));
        }
        if is_resource && self.tree.nodes[index].name != "contained" {
            self.add_labels(index, &operations);
        }
        operations
    }

    fn process_resource(&mut self, index: usize) -> Operations {
        let resource_type = self.tree.nodes[index]
            .resource_type
            .clone()
            .unwrap_or_default();
        let mut operations = Operations::new();
        for rule in &self.config.rules {
            if rule
                .resource_type
                .as_ref()
                .is_some_and(|t| *t != resource_type)
            {
                continue;
            }
            for selected in self.select(&rule.selector, index) {
                self.process_recursive(selected, rule.method, &mut operations);
            }
        }
        operations
    }

    fn select(&self, selector: &Selector, resource: usize) -> Vec<usize> {
        let Selector::Steps(steps) = selector else {
            return vec![resource];
        };
        let mut current = vec![resource];
        for step in steps {
            current = match step {
                Step::Child(name) => current
                    .iter()
                    .flat_map(|&n| self.tree.nodes[n].children.iter().copied())
                    .filter(|&c| {
                        let node = &self.tree.nodes[c];
                        node.name == *name || node.choice_stem == Some(name.as_str())
                    })
                    .collect(),
                Step::NodesByType(type_code) => current
                    .iter()
                    .flat_map(|&n| self.descendants(n))
                    .filter(|&d| self.tree.nodes[d].type_code == *type_code)
                    .collect(),
                Step::Where { child, literal } => current
                    .into_iter()
                    .filter(|&n| {
                        self.tree.children_named(n, child).any(|c| {
                            self.tree.nodes[c].value.as_ref().and_then(Value::as_str)
                                == Some(literal)
                        })
                    })
                    .collect(),
            };
        }
        current
    }

    /// Every node below `index` in document order, stopping at (but including) nested resources.
    fn descendants(&self, index: usize) -> Vec<usize> {
        let mut found = Vec::new();
        for &child in &self.tree.nodes[index].children {
            found.push(child);
            if self.tree.nodes[child].resource_type.is_none() {
                found.extend(self.descendants(child));
            }
        }
        found
    }

    fn process_recursive(&mut self, index: usize, method: Method, operations: &mut Operations) {
        if self.visited.get(index).copied().unwrap_or(false) {
            return;
        }
        operations.extend(self.process_node(index, method));
        if let Some(mark) = self.visited.get_mut(index) {
            *mark = true;
        }
        // A primitive replacement stands for the selected value, never for the parts of a
        // complex element: those are left as they are (and not touched by later rules).
        let method = match method {
            Method::Substitute(_) if self.tree.nodes[index].value.is_none() => Method::Keep,
            other => other,
        };
        for child in self.tree.nodes[index].children.clone() {
            if self.tree.nodes[child].resource_type.is_none() {
                self.process_recursive(child, method, operations);
            }
        }
    }

    fn process_node(&mut self, index: usize, method: Method) -> Option<Operation> {
        let node = &self.tree.nodes[index];
        let text = match &node.value {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) if s.is_empty() => return None,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let parent_type = node
            .parent
            .map(|p| self.tree.nodes[p].type_code.as_str())
            .unwrap_or("");
        let is_date = matches!(node.type_code.as_str(), "date" | "dateTime" | "instant");
        let outcome = match method {
            Method::Keep => return None,
            Method::Substitute(replacement) => {
                let replacement = self.config.replacements.get(replacement)?.clone();
                super::Transformed {
                    value: Some(replacement),
                    operation: Operation::Substitute,
                }
            }
            Method::Redact => {
                let kind = match (node.type_code.as_str(), node.name.as_str(), parent_type) {
                    ("date", _, _) => ValueKind::Date,
                    ("dateTime" | "instant", _, _) => ValueKind::DateTime,
                    (_, "value", "Age") => ValueKind::AgeValue,
                    (_, "postalCode", "Address") => ValueKind::PostalCode,
                    _ => ValueKind::Other,
                };
                redact(&text, kind, &self.config.redact, self.today)
            }
            Method::DateShift if is_date => {
                let resource_id = self.root_id();
                date_shift(
                    &self.keys.date_shift,
                    &resource_id,
                    &text,
                    self.config.redact.partial_dates,
                    self.today,
                )
            }
            Method::DateShift => return None,
            Method::CryptoHash => {
                let key = &self.keys.crypto_hash;
                let hashed = if node.name == "reference" && parent_type == "Reference" {
                    crypto_hash_reference(key, &text)
                } else {
                    crypto_hash(key, &text)
                };
                super::Transformed {
                    value: Some(hashed),
                    operation: Operation::CryptoHash,
                }
            }
        };
        let node = &mut self.tree.nodes[index];
        // A number the method left alone stays a number.
        if outcome.value.as_deref() != Some(text.as_str())
            || node.value.as_ref().is_some_and(Value::is_string)
        {
            node.value = outcome.value.map(Value::String);
        }
        Some(outcome.operation)
    }

    /// The id of the outermost resource, which seeds the anonymizer's date offset.
    fn root_id(&self) -> String {
        self.tree
            .children_named(0, "id")
            .find_map(|c| {
                self.tree.nodes[c]
                    .value
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_string)
            })
            .unwrap_or_default()
    }

    fn add_labels(&mut self, resource: usize, operations: &Operations) {
        if operations.is_empty() {
            return;
        }
        let existing = self.tree.children_named(resource, "meta").next();
        let meta = match existing {
            Some(meta) => meta,
            None => self
                .tree
                .add(Some(resource), Tree::node("meta", "Meta", None, false)),
        };
        let present: Vec<String> = self
            .tree
            .children_named(meta, "security")
            .flat_map(|s| self.tree.children_named(s, "code").collect::<Vec<_>>())
            .filter_map(|c| {
                self.tree.nodes[c]
                    .value
                    .as_ref()
                    .and_then(Value::as_str)
                    .map(str::to_ascii_uppercase)
            })
            .collect();
        for (system, code, display) in operations.iter().copied().map(label) {
            if present.iter().any(|p| p == code) {
                continue;
            }
            let coding = self
                .tree
                .add(Some(meta), Tree::node("security", "Coding", None, true));
            let fields = [
                ("system", "uri", system),
                ("code", "code", Some(code)),
                ("display", "string", Some(display)),
            ];
            for (name, type_code, value) in fields {
                if let Some(value) = value {
                    let field: Node = Tree::node(
                        name,
                        type_code,
                        Some(Value::String(value.to_string())),
                        false,
                    );
                    self.tree.add(Some(coding), field);
                }
            }
        }
    }
}
