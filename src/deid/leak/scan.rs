//! The typed walk of an output: every string is classed by its element and matched against
//! the values of its kind (see the table in [`super`]).

use std::fmt::Write as _;

use serde_json::{Map, Value};
use time::{Date, Duration};

use super::super::dates::FhirDate;
use super::super::schema::{self, ElementDef, Tag, TypeKind};
use super::text;
use super::{IdentifierSet, Leak, LeakKind};

/// How the output being scanned was made, as far as the date rule needs to know.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanContext {
    /// The days every full date of the output was moved by, when dates were shifted; `None`
    /// when they were kept (or only truncated).
    pub date_shift_days: Option<i64>,
}

/// The kind of element a string sits in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    /// Kept on purpose (a source state or country, a ZIP3): not scanned.
    Kept,
    Name,
    Address,
    Identifier,
    Code,
    Date,
    FreeText,
}

/// One step of the path to the current value.
#[derive(Clone, Copy)]
enum Step<'v> {
    Key(&'v str),
    Index(usize),
}

/// One scan of one output.
pub(super) struct Scanner<'s, 'v> {
    set: &'s IdentifierSet,
    context: ScanContext,
    first_only: bool,
    root: &'v str,
    path: Vec<Step<'v>>,
    /// Scratch for the normalised words of the current string.
    words: String,
    leaks: Vec<Leak>,
}

impl<'s, 'v> Scanner<'s, 'v> {
    pub fn new(set: &'s IdentifierSet, context: &ScanContext, first_only: bool) -> Self {
        Scanner {
            set,
            context: *context,
            first_only,
            root: "$",
            path: Vec::with_capacity(16),
            words: String::new(),
            leaks: Vec::new(),
        }
    }

    /// Scans `output` and returns what was found.
    pub fn run(mut self, output: &'v Value) -> Vec<Leak> {
        let resource_type = output.get("resourceType").and_then(Value::as_str);
        self.root = resource_type.unwrap_or("$");
        if self.set.incomplete {
            self.report(LeakKind::Identifier);
            return self.leaks;
        }
        match (output, resource_type) {
            (Value::Object(map), Some(resource_type)) => self.object(map, Some(resource_type)),
            _ => self.untyped(output),
        }
        self.leaks
    }

    fn done(&self) -> bool {
        self.first_only && !self.leaks.is_empty()
    }

    fn report(&mut self, kind: LeakKind) {
        let mut path = String::from(self.root);
        for step in &self.path {
            // Writing into a String cannot fail.
            let _ = match step {
                Step::Key(key) => write!(path, ".{key}"),
                Step::Index(index) => write!(path, "[{index}]"),
            };
        }
        self.leaks.push(Leak { path, kind });
    }

    /// The children of an object whose elements are listed under `base` (`None`: unknown).
    fn object(&mut self, map: &'v Map<String, Value>, base: Option<&str>) {
        for (key, value) in map {
            if self.done() {
                return;
            }
            if key == "resourceType" {
                continue;
            }
            let sibling = key.starts_with('_');
            let name = key.strip_prefix('_').unwrap_or(key);
            let def = base.and_then(|b| schema::child(b, name));
            self.path.push(Step::Key(key));
            match def {
                None => self.untyped(value),
                Some(def) => self.element(value, &def, sibling),
            }
            self.path.pop();
        }
    }

    /// One element's value (an item or an array of items).
    fn element(&mut self, value: &'v Value, def: &ElementDef, sibling: bool) {
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if self.done() {
                        return;
                    }
                    self.path.push(Step::Index(index));
                    self.item(item, def, sibling);
                    self.path.pop();
                }
            }
            item => self.item(item, def, sibling),
        }
    }

    fn item(&mut self, item: &'v Value, def: &ElementDef, sibling: bool) {
        match (item, sibling, def.kind()) {
            (Value::Null, _, _) => {}
            // `_name`: the primitive's id and extensions, listed under the primitive type.
            (Value::Object(map), true, _) => self.object(map, Some(def.type_code)),
            (Value::Object(map), false, TypeKind::Resource) => {
                let resource_type = map.get("resourceType").and_then(Value::as_str);
                self.object(map, resource_type);
            }
            (Value::Object(map), false, TypeKind::Datatype | TypeKind::Backbone) => {
                self.object(map, Some(def.child_base()));
            }
            (Value::String(text), false, TypeKind::Primitive) => {
                if let Some(kind) = self.check(text, classify(self.set, def, text), def) {
                    self.report(kind);
                }
            }
            (Value::Number(_), _, _) => self.number(item),
            // Anything else is malformed for its element: scan it with no assumptions.
            _ => self.untyped(item),
        }
    }

    /// A value the element table does not describe: every string is free text.
    fn untyped(&mut self, value: &'v Value) {
        match value {
            Value::Object(map) => self.object(map, None),
            Value::Array(items) => {
                for (index, item) in items.iter().enumerate() {
                    if self.done() {
                        return;
                    }
                    self.path.push(Step::Index(index));
                    self.untyped(item);
                    self.path.pop();
                }
            }
            Value::String(text) => {
                if let Some(kind) = self.free_text(text) {
                    self.report(kind);
                }
            }
            Value::Number(_) => self.number(value),
            Value::Bool(_) | Value::Null => {}
        }
    }

    fn number(&mut self, value: &Value) {
        let hit = !self.set.coordinates.is_empty()
            && value
                .as_f64()
                .is_some_and(|n| self.set.coordinates.contains(&n));
        if hit {
            self.report(LeakKind::Geolocation);
        }
    }

    /// The kind of the first value found in `text`, an element of class `class`.
    fn check(&mut self, text: &str, class: Class, def: &ElementDef) -> Option<LeakKind> {
        let set = self.set;
        if !matches!(class, Class::Kept | Class::Date) && text::has_id(text, &set.ids) {
            return Some(LeakKind::Identifier);
        }
        match class {
            Class::Kept => None,
            Class::Date => self.date(text, def),
            Class::Code => self
                .words(text, set.full_names.as_ref(), LeakKind::Name)
                .or_else(|| {
                    self.bounded(text, |kind| {
                        matches!(kind, LeakKind::Identifier | LeakKind::Telecom)
                    })
                }),
            Class::Identifier => self
                .bounded(text, |_| true)
                .or_else(|| text::has_phone(text, &set.phones).then_some(LeakKind::Telecom)),
            Class::Name => self
                .words(text, set.names.as_ref(), LeakKind::Name)
                .or_else(|| self.bounded(text, |_| true)),
            Class::Address => self
                .words(text, set.places.as_ref(), LeakKind::Address)
                .or_else(|| self.bounded(text, |_| true))
                .or_else(|| text::has_zip(text, &set.zip5).then_some(LeakKind::PostalCode)),
            Class::FreeText => self.free_text_without_ids(text),
        }
    }

    fn free_text(&mut self, text: &str) -> Option<LeakKind> {
        let set = self.set;
        if text::has_id(text, &set.ids) {
            return Some(LeakKind::Identifier);
        }
        self.free_text_without_ids(text)
    }

    fn free_text_without_ids(&mut self, text: &str) -> Option<LeakKind> {
        let set = self.set;
        self.words(text, set.names.as_ref(), LeakKind::Name)
            .or_else(|| self.words(text, set.places.as_ref(), LeakKind::Address))
            .or_else(|| self.bounded(text, |_| true))
            .or_else(|| text::has_phone(text, &set.phones).then_some(LeakKind::Telecom))
            .or_else(|| text::has_zip(text, &set.zip5).then_some(LeakKind::PostalCode))
    }

    /// A word-sequence hit of `automaton` in `text`.
    fn words(
        &mut self,
        text: &str,
        automaton: Option<&aho_corasick::AhoCorasick>,
        kind: LeakKind,
    ) -> Option<LeakKind> {
        let automaton = automaton?;
        text::normalize_into(text, &mut self.words);
        automaton.is_match(self.words.as_str()).then_some(kind)
    }

    /// A bounded-value hit in `text` whose kind `wanted` accepts.
    fn bounded(&self, text: &str, wanted: impl Fn(LeakKind) -> bool) -> Option<LeakKind> {
        let automaton = self.set.bounded.as_ref()?;
        automaton.find_overlapping_iter(text).find_map(|hit| {
            let info = self.set.bounded_info.get(hit.pattern().as_usize())?;
            (wanted(info.kind)
                && text::is_bounded(text, hit.start(), hit.end(), info.first, info.last))
            .then_some(info.kind)
        })
    }

    /// The date rule (see [`super`]): a birth date in a date element is a leak unless the
    /// shift explains it.
    fn date(&self, text: &str, def: &ElementDef) -> Option<LeakKind> {
        if self.set.birth_dates.is_empty() {
            return None;
        }
        let day = FhirDate::parse_prefix(text)?.full_date()?;
        if self.set.birth_dates.binary_search(&day).is_err() {
            return None;
        }
        if def.path == "Patient.birthDate" {
            return Some(LeakKind::BirthDate);
        }
        let explained = self
            .context
            .date_shift_days
            .filter(|&d| d != 0)
            .and_then(|d| day.checked_sub(Duration::days(d)))
            .is_some_and(|source: Date| self.set.source_days.binary_search(&source).is_ok());
        (!explained).then_some(LeakKind::BirthDate)
    }
}

/// The class of a string in element `def` (see the table in [`super`]).
fn classify(set: &IdentifierSet, def: &ElementDef, value: &str) -> Class {
    match def.tag {
        Tag::Date => return Class::Date,
        Tag::Code => return Class::Code,
        Tag::IdLike => return Class::Identifier,
        _ => {}
    }
    match def.path {
        "Address.state" | "Address.country" => {
            let value = value.trim();
            let kept = set
                .kept_places
                .iter()
                .any(|p| p.as_str() == value || *p == value.to_lowercase());
            return if kept { Class::Kept } else { Class::Address };
        }
        "Address.postalCode" if text::is_zip3_form(value) => return Class::Kept,
        "Identifier.value" | "ContactPoint.value" | "Reference.reference" => {
            return Class::Identifier;
        }
        "Coding.display" | "Coding.version" => return Class::Code,
        "Reference.display" => return Class::Name,
        _ => {}
    }
    if def.path.starts_with("HumanName.") {
        return Class::Name;
    }
    if def.path.starts_with("Address.") {
        return Class::Address;
    }
    match def.name() {
        "id" => Class::Identifier,
        "name" | "alias" => Class::Name,
        _ => Class::FreeText,
    }
}
