//! Applies an [`AnonymizerConfig`] to one resource's element tree.
//!
//! Each resource (the outer one, then Bundle entries and contained resources in document
//! order) runs every rule in order; a rule's method goes to the selected elements and
//! everything below them, except that an element handled by an earlier rule is never touched
//! again. A complex `substitute` replaces the element's content with its fragment but keeps
//! the parts an earlier rule already handled, as the anonymizer does.

use std::collections::BTreeSet;

use rand::RngCore;
use rand::SeedableRng;
use rand_chacha::ChaCha20Rng;
use ring::rand::{SecureRandom, SystemRandom};
use serde_json::Value;
use time::Date;

use super::super::DeidError;
use super::config::{AnonymizerConfig, AnonymizerKeys, Method, Perturb};
use super::eval::{Evaluator, Item};
use super::tree::{Node, Tree};
use super::{
    Operation, Transformed, ValueKind, crypto_hash, crypto_hash_reference, date_shift, encrypt,
    perturb, redact,
};

const LABEL_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ObservationValue";

impl AnonymizerConfig {
    /// [`Self::anonymize`] with the keys of a study ([`Self::keys_for`]); `encrypt` IVs and
    /// `perturb` noise come from a generator seeded by the operating system.
    pub fn anonymize_with(
        &self,
        resource: &Value,
        keys: &AnonymizerKeys,
        today: Date,
    ) -> Result<Value, DeidError> {
        let mut seed = [0u8; 32];
        if self.uses_randomness() {
            SystemRandom::new()
                .fill(&mut seed)
                .map_err(|_| DeidError::Randomness)?;
        }
        // With no `encrypt` or `perturb` rule the generator is never drawn from.
        let mut rng = ChaCha20Rng::from_seed(seed);
        self.anonymize_seeded(resource, keys, today, &mut rng)
    }

    /// [`Self::anonymize_with`] drawing randomness from `rng` (tests pass a seeded one).
    pub fn anonymize_seeded(
        &self,
        resource: &Value,
        keys: &AnonymizerKeys,
        today: Date,
        rng: &mut dyn RngCore,
    ) -> Result<Value, DeidError> {
        let mut tree = Tree::from_resource(resource)?;
        let visited = vec![false; tree.nodes.len()];
        let mut run = Run {
            config: self,
            keys,
            tree: &mut tree,
            visited,
            today,
            rng,
            failure: None,
            selected: 0,
        };
        run.visit(0);
        match run.failure {
            Some(failure) => Err(failure),
            None => Ok(tree.to_json()),
        }
    }

    fn uses_randomness(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.method, Method::Encrypt | Method::Perturb(_)))
    }
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
        Operation::Encrypt => (Some(LABEL_SYSTEM), "MASKED", "masked"),
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
        Operation::Generalize => (
            None,
            "GENERALIZED",
            "exact value is replaced with a general value",
        ),
    }
}

struct Run<'c, 't, 'r> {
    config: &'c AnonymizerConfig,
    keys: &'c AnonymizerKeys,
    tree: &'t mut Tree,
    visited: Vec<bool>,
    today: Date,
    rng: &'r mut dyn RngCore,
    /// The first method that could not apply, under `processingError` `raise`.
    failure: Option<DeidError>,
    /// The element the current rule selected (its descendants are processed after it).
    selected: usize,
}

impl Run<'_, '_, '_> {
    /// A method cannot apply at `index`: fail the resource (`raise`) or remove the value
    /// (`skip`); either way the value never leaves as it was.
    fn not_applicable(&mut self, index: usize, method: &'static str) -> Option<Operation> {
        if self.config.raise_errors {
            if self.failure.is_none() {
                self.failure = Some(DeidError::MethodNotApplicable {
                    resource_type: self.tree.nodes[0].type_code.clone(),
                    reference: self.tree.nodes[0].type_code.clone(),
                    path: self.json_path(index),
                    method,
                });
            }
            return None;
        }
        self.tree.nodes[index].value = None;
        self.tree.nodes[index].children.clear();
        Some(Operation::Redact)
    }

    /// The JSON path of a node from the outer resource (`Patient.name[1].family`).
    fn json_path(&self, index: usize) -> String {
        let mut parts = Vec::new();
        let mut at = index;
        while let Some(parent) = self.tree.nodes[at].parent {
            let node = &self.tree.nodes[at];
            let mut part = node.name.clone();
            if node.in_array {
                let position = self
                    .tree
                    .children_named(parent, &node.name)
                    .position(|c| c == at)
                    .unwrap_or(0);
                part = format!("{part}[{position}]");
            }
            parts.push(part);
            at = parent;
        }
        parts.push(self.tree.nodes[0].type_code.clone());
        parts.reverse();
        parts.join(".")
    }

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
        let mut operations = Operations::new();
        for rule in &self.config.rules {
            let evaluator = Evaluator {
                tree: self.tree,
                regexes: &self.config.regexes,
            };
            for selected in evaluator.select(&rule.path, index) {
                match &rule.method {
                    Method::SubstituteComplex(fragment) => {
                        self.substitute_complex(selected, fragment, &mut operations);
                    }
                    method => {
                        self.selected = selected;
                        self.process_recursive(selected, method, &mut operations);
                    }
                }
            }
        }
        operations
    }

    fn is_visited(&self, index: usize) -> bool {
        self.visited.get(index).copied().unwrap_or(false)
    }

    fn mark(&mut self, index: usize) {
        if self.visited.len() < self.tree.nodes.len() {
            self.visited.resize(self.tree.nodes.len(), false);
        }
        self.visited[index] = true;
    }

    fn process_recursive(&mut self, index: usize, method: &Method, operations: &mut Operations) {
        if self.is_visited(index) {
            return;
        }
        operations.extend(self.process_node(index, method));
        self.mark(index);
        // A primitive replacement stands for the selected value, never for the parts of a
        // complex element: those are left as they are (and not touched by later rules).
        let method = match method {
            Method::SubstitutePrimitive(_) if self.tree.nodes[index].value.is_none() => {
                &Method::Keep
            }
            other => other,
        };
        for child in self.tree.nodes[index].children.clone() {
            if self.tree.nodes[child].resource_type.is_none() {
                self.process_recursive(child, method, operations);
            }
        }
    }

    /// Replaces the content of a complex element with `fragment`, keeping each child that
    /// holds an element an earlier rule handled (and dropping the fragment's part of that
    /// name); everything there afterwards counts as handled.
    fn substitute_complex(
        &mut self,
        index: usize,
        fragment: &serde_json::Map<String, Value>,
        operations: &mut Operations,
    ) {
        if self.is_visited(index) {
            return;
        }
        if self.tree.nodes[index].value.is_some() {
            operations.extend(self.not_applicable(index, "substitute"));
            self.mark(index);
            return;
        }
        let kept: Vec<usize> = self.tree.nodes[index]
            .children
            .iter()
            .copied()
            .filter(|&c| self.holds_visited(c))
            .collect();
        let kept_names: Vec<String> = kept
            .iter()
            .map(|&c| self.tree.nodes[c].name.clone())
            .collect();
        let mut fragment = fragment.clone();
        fragment.retain(|name, _| {
            let stem = name.strip_prefix('_').unwrap_or(name);
            !kept_names.iter().any(|k| k == stem)
        });
        let first_new = self.tree.nodes.len();
        let base = self.tree.nodes[index].type_code.clone();
        self.tree.nodes[index].children = kept;
        if self.tree.add_children(&fragment, &base, index).is_err() {
            return;
        }
        self.mark(index);
        for added in first_new..self.tree.nodes.len() {
            self.mark(added);
        }
        operations.insert(Operation::Substitute);
    }

    fn holds_visited(&self, index: usize) -> bool {
        self.is_visited(index)
            || self.tree.nodes[index]
                .children
                .iter()
                .any(|&c| self.holds_visited(c))
    }

    fn process_node(&mut self, index: usize, method: &Method) -> Option<Operation> {
        let node = &self.tree.nodes[index];
        let text = match &node.value {
            None | Some(Value::Null) => return None,
            Some(Value::String(s)) if s.is_empty() => return None,
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        let type_code = node.type_code.clone();
        let parent_type = node
            .parent
            .map(|p| self.tree.nodes[p].type_code.as_str())
            .unwrap_or("");
        let is_date = matches!(type_code.as_str(), "date" | "dateTime" | "instant");
        let outcome = match method {
            Method::Keep | Method::SubstituteComplex(_) => return None,
            Method::SubstitutePrimitive(replacement) => Transformed {
                value: Some(replacement.clone()),
                operation: Operation::Substitute,
            },
            Method::Redact => {
                let kind = match (type_code.as_str(), node.name.as_str(), parent_type) {
                    ("date", _, _) => ValueKind::Date,
                    ("dateTime" | "instant", _, _) => ValueKind::DateTime,
                    (_, "value", "Age") => ValueKind::AgeValue,
                    (_, "postalCode", "Address") => ValueKind::PostalCode,
                    _ => ValueKind::Other,
                };
                redact(&text, kind, &self.config.redact, self.today)
            }
            Method::DateShift if is_date => {
                let seed = match &self.keys.date_shift_prefix {
                    Some(prefix) => prefix.clone(),
                    None => self.root_id(),
                };
                let mut shifted = date_shift(
                    &self.keys.date_shift,
                    &seed,
                    &text,
                    self.config.redact.partial_dates,
                    self.today,
                );
                // The anonymizer reads an instant as an offset time and writes UTC as +00:00.
                if type_code == "instant"
                    && let Some(utc) = shifted.value.as_deref().and_then(|v| v.strip_suffix('Z'))
                {
                    shifted.value = Some(format!("{utc}+00:00"));
                }
                shifted
            }
            Method::DateShift => return None,
            Method::CryptoHash => {
                let key = &self.keys.crypto_hash;
                let hashed = if node.name == "reference" && parent_type == "Reference" {
                    crypto_hash_reference(key, &text)
                } else {
                    crypto_hash(key, &text)
                };
                Transformed {
                    value: Some(hashed),
                    operation: Operation::CryptoHash,
                }
            }
            Method::Encrypt => {
                let mut iv = [0u8; 16];
                self.rng.fill_bytes(&mut iv);
                match encrypt(&self.keys.encrypt, &iv, &text) {
                    Some(encrypted) => Transformed {
                        value: Some(encrypted),
                        operation: Operation::Encrypt,
                    },
                    None => return self.not_applicable(index, "encrypt"),
                }
            }
            Method::Perturb(settings) => match self.perturbed(&type_code, &text, settings) {
                Some(perturbed) => perturbed,
                // Inside a selected quantity only its numbers move (unit, code stay).
                None if self.selected != index => return None,
                None => return self.not_applicable(index, "perturb"),
            },
            Method::Generalize(generalize) => {
                let evaluator = Evaluator {
                    tree: self.tree,
                    regexes: &self.config.regexes,
                };
                let this = Item::Node(index);
                let matched = generalize
                    .cases
                    .iter()
                    .find(|(condition, _)| evaluator.is_true(&evaluator.eval_on(condition, &this)));
                match matched {
                    Some((_, replacement)) => {
                        let value = match evaluator.eval_on(replacement, &this).as_slice() {
                            [item] => item.to_text(),
                            _ => None,
                        };
                        match value {
                            Some(value) => Transformed {
                                value: Some(value),
                                operation: Operation::Generalize,
                            },
                            None => return self.not_applicable(index, "generalize"),
                        }
                    }
                    None if generalize.keep_others => return None,
                    None => Transformed {
                        value: None,
                        operation: Operation::Redact,
                    },
                }
            }
        };
        let node = &mut self.tree.nodes[index];
        if outcome.value.as_deref() != Some(text.as_str()) {
            node.value = outcome.value.map(|v| typed_like(node.value.as_ref(), v));
        }
        Some(outcome.operation)
    }

    fn perturbed(
        &mut self,
        type_code: &str,
        text: &str,
        settings: &Perturb,
    ) -> Option<Transformed> {
        let integral = matches!(
            type_code,
            "integer" | "unsignedInt" | "positiveInt" | "integer64"
        );
        if !integral && type_code != "decimal" {
            return None;
        }
        let value: f64 = text.parse().ok()?;
        let mut result = perturb(value, settings, integral, &mut *self.rng);
        result = match type_code {
            "unsignedInt" => result.max(0.0),
            "positiveInt" => result.max(1.0),
            _ => result,
        };
        let places = if integral {
            0
        } else {
            settings.round_to.unwrap_or(2)
        };
        Some(Transformed {
            value: Some(format!("{result:.prec$}", prec = places as usize)),
            operation: Operation::Perturb,
        })
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

/// The new text of a value in the JSON type of the old one: a number stays a number and a
/// boolean a boolean when the new text is one.
fn typed_like(old: Option<&Value>, text: String) -> Value {
    match old {
        Some(Value::Number(_)) => match serde_json::from_str::<Value>(&text) {
            Ok(number @ Value::Number(_)) => number,
            _ => Value::String(text),
        },
        Some(Value::Bool(_)) if text == "true" || text == "false" => Value::Bool(text == "true"),
        _ => Value::String(text),
    }
}
