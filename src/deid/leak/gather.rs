//! Gathering a patient's identifying values from its source resources, and compiling them
//! into the matchers of an [`IdentifierSet`].

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, AhoCorasickKind, MatchKind};
use serde_json::Value;
use time::Date;

use super::super::dates::{self, FhirDate};
use super::super::schema::{self, Tag, Visited};
use super::text::{self, CharClass};
use super::{Bounded, IdentifierSet, LeakKind};

const GEOLOCATION_URL: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";
const MAIDEN_NAME_URL: &str = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";

/// How many values of each kind were gathered (never the values).
#[derive(Debug, Clone, Copy, Default)]
pub(super) struct Counts {
    names: usize,
    places: usize,
    bounded: usize,
    ids: usize,
    phones: usize,
    zip5: usize,
    birth_dates: usize,
    coordinates: usize,
}

impl Counts {
    /// Every value gathered.
    pub fn total(&self) -> usize {
        self.names
            + self.places
            + self.bounded
            + self.ids
            + self.phones
            + self.zip5
            + self.birth_dates
            + self.coordinates
    }
}

/// The raw values, before compilation.
#[derive(Default)]
pub(super) struct Gathered {
    names: Vec<String>,
    full_names: Vec<String>,
    places: Vec<String>,
    bounded: Vec<(String, LeakKind)>,
    ids: Vec<String>,
    phones: Vec<Vec<u8>>,
    zip5: Vec<String>,
    birth_dates: Vec<Date>,
    source_days: Vec<Date>,
    kept_places: Vec<String>,
    coordinates: Vec<(f64, String)>,
}

impl Gathered {
    /// The identifying values of `resources`.
    pub fn from_sources(resources: &[Value]) -> Gathered {
        let mut gathered = Gathered::default();
        let mut words = String::new();
        for resource in resources {
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                gathered.add_id(id);
            }
            schema::visit_resource(resource, &mut |visited| {
                gathered.gather(visited, &mut words);
            });
        }
        gathered
    }

    fn gather(&mut self, visited: &Visited<'_>, words: &mut String) {
        let value = visited.value;
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        match visited.def.tag {
            Tag::HumanName => {
                for part in ["family", "given", "text"] {
                    for item in value.get(part).map(schema::items).into_iter().flatten() {
                        if let Some(s) = item.as_str() {
                            add_words(&mut self.names, s, words);
                        }
                    }
                }
                let family = value.get("family").and_then(Value::as_str);
                let given = value.get("given").map(schema::items).into_iter().flatten();
                for given in given.filter_map(Value::as_str) {
                    if let Some(family) = family {
                        add_words(&mut self.full_names, &format!("{given} {family}"), words);
                        add_words(&mut self.full_names, &format!("{family} {given}"), words);
                    }
                }
            }
            Tag::Identifier => {
                if let Some(v) = text("value") {
                    self.add_bounded(v, LeakKind::Identifier);
                }
            }
            Tag::ContactPoint => {
                let system = text("system").unwrap_or("");
                if let Some(v) = text("value") {
                    let phone_like = matches!(system, "phone" | "fax" | "sms" | "pager")
                        || (system.is_empty() && !v.contains('@'));
                    match text::phone_digits(v).filter(|_| phone_like) {
                        Some(digits) => self.phones.push(digits),
                        None => self.add_bounded(v, LeakKind::Telecom),
                    }
                }
            }
            Tag::Address => self.gather_address(value, words),
            Tag::Extension => self.gather_extension(value, words),
            Tag::Date => {
                let day = value
                    .as_str()
                    .and_then(FhirDate::parse_prefix)
                    .and_then(|d| d.full_date());
                if let Some(day) = day {
                    self.source_days.push(day);
                    if visited.def.path == "Patient.birthDate" {
                        self.add_birth_date(day);
                    }
                }
            }
            _ => {}
        }
    }

    fn gather_address(&mut self, address: &Value, words: &mut String) {
        for part in ["line", "text"] {
            for line in address.get(part).map(schema::items).into_iter().flatten() {
                if let Some(line) = line.as_str() {
                    self.add_bounded(line, LeakKind::Address);
                }
            }
        }
        for part in ["city", "district"] {
            if let Some(name) = address.get(part).and_then(Value::as_str) {
                add_words(&mut self.places, name, words);
            }
        }
        for part in ["state", "country"] {
            if let Some(kept) = address.get(part).and_then(Value::as_str) {
                self.kept_places.push(kept.trim().to_lowercase());
            }
        }
        if let Some(code) = address.get("postalCode").and_then(Value::as_str) {
            let zip5 = code
                .get(..5)
                .filter(|z| z.bytes().all(|b| b.is_ascii_digit()));
            self.zip5.extend(zip5.map(str::to_string));
        }
    }

    fn gather_extension(&mut self, extension: &Value, words: &mut String) {
        match extension.get("url").and_then(Value::as_str) {
            Some(GEOLOCATION_URL) => {
                for inner in extension
                    .get("extension")
                    .map(schema::items)
                    .into_iter()
                    .flatten()
                {
                    let Some(number) = inner.get("valueDecimal").and_then(Value::as_number) else {
                        continue;
                    };
                    let written = number.to_string();
                    let decimals = written.split_once('.').map_or(0, |(_, d)| d.len());
                    if let (Some(value), true) =
                        (number.as_f64(), decimals >= text::MIN_COORDINATE_DECIMALS)
                    {
                        self.coordinates.push((value, written));
                    }
                }
            }
            Some(MAIDEN_NAME_URL) => {
                if let Some(name) = extension.get("valueString").and_then(Value::as_str) {
                    for word in name.split(|c: char| !c.is_alphanumeric()) {
                        add_words(&mut self.names, word, words);
                    }
                }
            }
            _ => {}
        }
    }

    fn add_birth_date(&mut self, day: Date) {
        self.birth_dates.push(day);
        let iso = dates::format_date(day);
        let us = format!(
            "{:02}/{:02}/{:04}",
            u8::from(day.month()),
            day.day(),
            day.year()
        );
        self.bounded.push((iso, LeakKind::BirthDate));
        self.bounded.push((us, LeakKind::BirthDate));
    }

    /// A source resource id, looked for as a whole token (see [`text::has_id`]).
    fn add_id(&mut self, id: &str) {
        if (text::MIN_VALUE_CHARS..=text::MAX_ID_CHARS).contains(&id.len()) {
            self.ids.push(id.to_ascii_lowercase());
        }
    }

    fn add_bounded(&mut self, value: &str, kind: LeakKind) {
        let value = value.trim();
        if value.chars().count() >= text::MIN_VALUE_CHARS {
            self.bounded.push((value.to_string(), kind));
        }
    }

    /// Compiles the values into automata (duplicates removed first).
    pub fn compile(mut self) -> IdentifierSet {
        for (_, written) in &self.coordinates {
            self.bounded.push((written.clone(), LeakKind::Geolocation));
        }
        for list in [
            &mut self.names,
            &mut self.full_names,
            &mut self.places,
            &mut self.kept_places,
            &mut self.ids,
        ] {
            list.sort_unstable();
            list.dedup();
        }
        // Longer values first, so that of two overlapping values the more specific kind wins.
        self.bounded
            .sort_by(|a, b| b.0.len().cmp(&a.0.len()).then_with(|| a.cmp(b)));
        self.bounded.dedup_by(|a, b| a.0.eq_ignore_ascii_case(&b.0));
        self.phones.sort_unstable();
        self.phones.dedup();
        self.zip5.sort_unstable();
        self.zip5.dedup();
        self.birth_dates.sort_unstable();
        self.birth_dates.dedup();
        self.source_days.sort_unstable();
        self.source_days.dedup();
        let counts = Counts {
            names: self.names.len(),
            places: self.places.len(),
            bounded: self.bounded.len(),
            ids: self.ids.len(),
            phones: self.phones.len(),
            zip5: self.zip5.len(),
            birth_dates: self.birth_dates.len(),
            coordinates: self.coordinates.len(),
        };
        let bounded_info = self
            .bounded
            .iter()
            .map(|(value, kind)| Bounded {
                kind: *kind,
                first: value.chars().next().map_or(CharClass::Other, text::class),
                last: value
                    .chars()
                    .next_back()
                    .map_or(CharClass::Other, text::class),
            })
            .collect();
        let names = automaton(&self.names, false);
        let full_names = automaton(&self.full_names, false);
        let places = automaton(&self.places, false);
        let bounded = automaton(self.bounded.iter().map(|(v, _)| v), true);
        // Building fails only past the automata's size limits, far beyond one patient's
        // values; a set that could not be compiled must not silently scan nothing.
        let incomplete =
            names.is_err() || full_names.is_err() || places.is_err() || bounded.is_err();
        IdentifierSet {
            names: names.ok().flatten(),
            full_names: full_names.ok().flatten(),
            places: places.ok().flatten(),
            bounded: bounded.ok().flatten(),
            incomplete,
            bounded_info,
            ids: self.ids.into_iter().collect(),
            phones: self.phones,
            zip5: self.zip5,
            birth_dates: self.birth_dates,
            source_days: self.source_days,
            kept_places: self.kept_places,
            coordinates: self.coordinates.into_iter().map(|(v, _)| v).collect(),
            counts,
        }
    }
}

/// Adds `value` as a normalised word sequence when it has enough letters and digits.
fn add_words(list: &mut Vec<String>, value: &str, scratch: &mut String) {
    if text::word_chars(value) >= text::MIN_NAME_CHARS {
        text::normalize_into(value, scratch);
        list.push(scratch.clone());
    }
}

/// An automaton over `patterns` (all matches reported, overlapping ones too); `Ok(None)` when
/// there is nothing to look for, `Err(())` when the patterns exceed the automaton's limits.
///
/// A contiguous NFA rather than a DFA: one patient's set is searched a few thousand times at
/// most, and a DFA over its ~100 values costs more to build than it saves in searching.
fn automaton<I, P>(patterns: I, ascii_case_insensitive: bool) -> Result<Option<AhoCorasick>, ()>
where
    I: IntoIterator<Item = P>,
    P: AsRef<[u8]>,
{
    let patterns: Vec<P> = patterns.into_iter().collect();
    if patterns.is_empty() {
        return Ok(None);
    }
    AhoCorasickBuilder::new()
        .match_kind(MatchKind::Standard)
        .kind(Some(AhoCorasickKind::ContiguousNFA))
        .ascii_case_insensitive(ascii_case_insensitive)
        .build(&patterns)
        .map(Some)
        .map_err(|_| ())
}
