//! The leak scan: the identifying values of a patient's source records, looked for in every
//! string (and number) of a de-identified output.
//!
//! Matching rules, chosen so that codes do not raise false alarms:
//! - **names** (`HumanName.family`/`given`, the mother's maiden name, `Address.city` and
//!   `district`): compared case-insensitively as whole words: the value and the output string
//!   are cut into words (runs of letters and digits) and the value's words must appear in a
//!   row. A part shorter than 3 characters is not looked for. The mother's maiden name, a free
//!   string, is looked for word by word.
//! - **identifiers** (`Identifier.value`, the top-level resource ids, e-mail and other
//!   non-phone `ContactPoint.value`s, `Address.line`, `Address.text`): case-insensitive
//!   substring, bounded: the characters either side of the hit must not continue the value's
//!   edge (no digit next to an edge digit, no letter next to an edge letter). Values shorter
//!   than 6 characters are not looked for (they collide with codes).
//! - **phones** (phone, fax, sms, pager): digits only, at least 7. The output is cut into runs
//!   of digits and phone punctuation (` ()+-./`); a run matches when its digits equal the
//!   number's last 10 digits, possibly after a country code of up to 3 digits. A LOINC code
//!   such as `8302-2` has too few digits to be a phone run.
//! - **ZIP codes** (the first 5 digits of `Address.postalCode`): a whole token (cut at spaces,
//!   commas and semicolons, outer punctuation trimmed) equal to the ZIP5, ZIP5-dddd or
//!   ZIP5dddd; `15074-8` is not `15074`.
//! - **birth dates** (`Patient.birthDate` with a day): `YYYY-MM-DD` and `MM/DD/YYYY`, bounded
//!   by non-digits (so a dateTime on that day matches too).
//! - **geolocation** (the `geolocation` extension's latitude and longitude): numbers equal to
//!   the value, or its text bounded by non-digits, when it has at least 4 decimals.
//!
//! A [`Leak`] names the JSON path and the kind of value, never the value itself.

use std::fmt;

use serde_json::Value;

use super::schema::{self, Visited};

const MIN_NAME_CHARS: usize = 3;
const MIN_VALUE_CHARS: usize = 6;
const MIN_PHONE_DIGITS: usize = 7;
const MIN_COORDINATE_DECIMALS: usize = 4;
const GEOLOCATION_URL: &str = "http://hl7.org/fhir/StructureDefinition/geolocation";
const MAIDEN_NAME_URL: &str = "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName";

/// What kind of identifying value leaked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LeakKind {
    /// A person's name.
    Name,
    /// An identifier value or source resource id.
    Identifier,
    /// A phone number, e-mail or other contact.
    Telecom,
    /// An address line or city.
    Address,
    /// A five-digit ZIP code.
    PostalCode,
    /// A birth date.
    BirthDate,
    /// A latitude or longitude.
    Geolocation,
}

impl LeakKind {
    /// A stable snake_case code.
    pub fn code(self) -> &'static str {
        match self {
            LeakKind::Name => "name",
            LeakKind::Identifier => "identifier",
            LeakKind::Telecom => "telecom",
            LeakKind::Address => "address",
            LeakKind::PostalCode => "postal_code",
            LeakKind::BirthDate => "birth_date",
            LeakKind::Geolocation => "geolocation",
        }
    }
}

impl fmt::Display for LeakKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// Where an identifying value was found; never the value itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leak {
    /// JSON path in the output, e.g. `Patient.address[0].city`.
    pub path: String,
    /// The kind of value found.
    pub kind: LeakKind,
}

/// Every identifying value of the source records of a patient, for the leak scan.
#[derive(Default)]
pub struct IdentifierSet {
    /// Word sequences, lower case.
    names: Vec<(Vec<String>, LeakKind)>,
    /// Whole values, lower case.
    values: Vec<(String, LeakKind)>,
    /// Phone digits (the last 10 at most).
    phones: Vec<String>,
    zip5: Vec<String>,
    birth_dates: Vec<String>,
    coordinates: Vec<(f64, String)>,
}

impl fmt::Debug for IdentifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values are patient data: show only how many there are.
        f.debug_struct("IdentifierSet")
            .field("names", &self.names.len())
            .field("values", &self.values.len())
            .field("phones", &self.phones.len())
            .field("zip5", &self.zip5.len())
            .field("birth_dates", &self.birth_dates.len())
            .field("coordinates", &self.coordinates.len())
            .finish()
    }
}

impl IdentifierSet {
    /// Gathers the identifying values of a patient's source resources.
    pub fn from_sources(resources: &[Value]) -> IdentifierSet {
        let mut set = IdentifierSet::default();
        for resource in resources {
            if let Some(id) = resource.get("id").and_then(Value::as_str) {
                set.add_value(id, LeakKind::Identifier);
            }
            schema::visit_resource(resource, &mut |visited| set.gather(visited));
        }
        set
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
            && self.values.is_empty()
            && self.phones.is_empty()
            && self.zip5.is_empty()
            && self.birth_dates.is_empty()
            && self.coordinates.is_empty()
    }

    /// Every place in `output` where one of the values shows up.
    pub fn scan(&self, output: &Value) -> Vec<Leak> {
        let mut leaks = Vec::new();
        let root = output
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("$")
            .to_string();
        self.scan_value(output, &root, &mut leaks);
        leaks
    }

    fn gather(&mut self, visited: &Visited<'_>) {
        let value = visited.value;
        let text = |name: &str| value.get(name).and_then(Value::as_str);
        match visited.def.type_code {
            "HumanName" => {
                for part in ["family", "given"] {
                    for item in value.get(part).map(schema::items).into_iter().flatten() {
                        if let Some(s) = item.as_str() {
                            self.add_name(s, LeakKind::Name);
                        }
                    }
                }
            }
            "Identifier" => {
                if let Some(v) = text("value") {
                    self.add_value(v, LeakKind::Identifier);
                }
            }
            "ContactPoint" => {
                let system = text("system").unwrap_or("");
                if let Some(v) = text("value") {
                    let digits: String = v.chars().filter(char::is_ascii_digit).collect();
                    let phone_like = matches!(system, "phone" | "fax" | "sms" | "pager")
                        || (system.is_empty() && !v.contains('@'));
                    if phone_like && digits.len() >= MIN_PHONE_DIGITS {
                        self.phones.push(last_digits(&digits));
                    } else {
                        self.add_value(v, LeakKind::Telecom);
                    }
                }
            }
            "Address" => self.gather_address(value),
            "Extension" => self.gather_extension(value),
            _ if visited.def.path == "Patient.birthDate" => {
                if let Some(date) = value.as_str().filter(|d| d.len() == 10) {
                    self.birth_dates.push(date.to_string());
                    if let (Some(y), Some(m), Some(d)) =
                        (date.get(..4), date.get(5..7), date.get(8..10))
                    {
                        self.birth_dates.push(format!("{m}/{d}/{y}"));
                    }
                }
            }
            _ => {}
        }
    }

    fn gather_address(&mut self, address: &Value) {
        for line in address.get("line").map(schema::items).into_iter().flatten() {
            if let Some(line) = line.as_str() {
                self.add_value(line, LeakKind::Address);
            }
        }
        if let Some(text) = address.get("text").and_then(Value::as_str) {
            self.add_value(text, LeakKind::Address);
        }
        for part in ["city", "district"] {
            if let Some(name) = address.get(part).and_then(Value::as_str) {
                self.add_name(name, LeakKind::Address);
            }
        }
        if let Some(code) = address.get("postalCode").and_then(Value::as_str) {
            let zip5 = code
                .get(..5)
                .filter(|z| z.bytes().all(|b| b.is_ascii_digit()));
            self.zip5.extend(zip5.map(str::to_string));
        }
    }

    fn gather_extension(&mut self, extension: &Value) {
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
                    let text = number.to_string();
                    let decimals = text.split_once('.').map_or(0, |(_, d)| d.len());
                    if let (Some(value), true) =
                        (number.as_f64(), decimals >= MIN_COORDINATE_DECIMALS)
                    {
                        self.coordinates.push((value, text));
                    }
                }
            }
            Some(MAIDEN_NAME_URL) => {
                if let Some(name) = extension.get("valueString").and_then(Value::as_str) {
                    for word in words(name) {
                        self.add_name(&word, LeakKind::Name);
                    }
                }
            }
            _ => {}
        }
    }

    fn add_name(&mut self, name: &str, kind: LeakKind) {
        let words = words(name);
        if words.iter().map(|w| w.chars().count()).sum::<usize>() >= MIN_NAME_CHARS {
            self.names.push((words, kind));
        }
    }

    fn add_value(&mut self, value: &str, kind: LeakKind) {
        let value = value.trim().to_lowercase();
        if value.chars().count() >= MIN_VALUE_CHARS {
            self.values.push((value, kind));
        }
    }

    fn scan_value(&self, value: &Value, path: &str, leaks: &mut Vec<Leak>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    self.scan_value(inner, &format!("{path}.{key}"), leaks);
                }
            }
            Value::Array(items) => {
                for (index, inner) in items.iter().enumerate() {
                    self.scan_value(inner, &format!("{path}[{index}]"), leaks);
                }
            }
            Value::String(text) => {
                if let Some(kind) = self.match_text(text) {
                    leaks.push(Leak {
                        path: path.to_string(),
                        kind,
                    });
                }
            }
            Value::Number(number) => {
                let hit = number
                    .as_f64()
                    .is_some_and(|n| self.coordinates.iter().any(|(c, _)| *c == n));
                if hit {
                    leaks.push(Leak {
                        path: path.to_string(),
                        kind: LeakKind::Geolocation,
                    });
                }
            }
            Value::Bool(_) | Value::Null => {}
        }
    }

    /// The kind of the first source value found in `text`.
    fn match_text(&self, text: &str) -> Option<LeakKind> {
        let lower = text.to_lowercase();
        let text_words = words(&lower);
        if let Some((_, kind)) = self
            .names
            .iter()
            .find(|(name, _)| contains_words(&text_words, name))
        {
            return Some(*kind);
        }
        if let Some((_, kind)) = self
            .values
            .iter()
            .find(|(value, _)| contains_bounded(&lower, value))
        {
            return Some(*kind);
        }
        if !self.phones.is_empty()
            && phone_runs(text).any(|run| self.phones.iter().any(|p| phone_matches(&run, p)))
        {
            return Some(LeakKind::Telecom);
        }
        if !self.zip5.is_empty()
            && zip_tokens(text).any(|t| self.zip5.iter().any(|z| zip_matches(t, z)))
        {
            return Some(LeakKind::PostalCode);
        }
        if self.birth_dates.iter().any(|d| contains_bounded(text, d)) {
            return Some(LeakKind::BirthDate);
        }
        if self
            .coordinates
            .iter()
            .any(|(_, c)| contains_bounded(text, c))
        {
            return Some(LeakKind::Geolocation);
        }
        None
    }
}

/// The lower-case words (runs of letters and digits) of `text`.
fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect()
}

fn contains_words(haystack: &[String], needle: &[String]) -> bool {
    !needle.is_empty()
        && haystack
            .windows(needle.len())
            .any(|window| window == needle)
}

#[derive(PartialEq, Eq)]
enum CharClass {
    Digit,
    Letter,
    Other,
}

fn class(c: char) -> CharClass {
    if c.is_ascii_digit() {
        CharClass::Digit
    } else if c.is_alphabetic() {
        CharClass::Letter
    } else {
        CharClass::Other
    }
}

/// Whether `needle` occurs in `haystack` without the neighbouring characters continuing its
/// first or last character's class (a digit run or a word).
fn contains_bounded(haystack: &str, needle: &str) -> bool {
    let (Some(first), Some(last)) = (needle.chars().next(), needle.chars().next_back()) else {
        return false;
    };
    haystack.match_indices(needle).any(|(start, _)| {
        let before = haystack[..start].chars().next_back();
        let after = haystack[start + needle.len()..].chars().next();
        let open = |edge: char, neighbour: Option<char>| {
            class(edge) == CharClass::Other || neighbour.is_none_or(|n| class(n) != class(edge))
        };
        open(first, before) && open(last, after)
    })
}

fn last_digits(digits: &str) -> String {
    digits[digits.len().saturating_sub(10)..].to_string()
}

/// The digits of each run of digits and phone punctuation in `text` with enough digits.
fn phone_runs(text: &str) -> impl Iterator<Item = String> + '_ {
    text.split(|c: char| !(c.is_ascii_digit() || " ()+-./".contains(c)))
        .map(|run| run.chars().filter(char::is_ascii_digit).collect::<String>())
        .filter(|digits| digits.len() >= MIN_PHONE_DIGITS)
}

fn phone_matches(run: &str, phone: &str) -> bool {
    run.ends_with(phone) && run.len() <= phone.len() + 3
}

fn zip_tokens(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| c.is_whitespace() || c == ',' || c == ';')
        .map(|t| t.trim_matches(|c: char| "().:\"'[]".contains(c)))
}

fn zip_matches(token: &str, zip5: &str) -> bool {
    let Some(rest) = token.strip_prefix(zip5) else {
        return false;
    };
    let plus_four = rest.strip_prefix('-').unwrap_or(rest);
    rest.is_empty() || (plus_four.len() == 4 && plus_four.bytes().all(|b| b.is_ascii_digit()))
}
