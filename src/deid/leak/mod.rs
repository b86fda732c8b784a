//! The leak scan: the identifying values of a patient's source records, looked for in a
//! de-identified output, element by element, by what kind of element each value sits in.
//!
//! [`IdentifierSet::from_sources`] gathers the values once per patient and compiles them into
//! multi-pattern matchers (Aho-Corasick automata); [`IdentifierSet::scan`] then walks an output
//! with the R4 element table, so that it knows the type and place of every string, and asks
//! only the questions that make sense there. The set is `Send + Sync` and holds no scratch
//! state: one set serves every thread exporting that patient.
//!
//! # What is gathered from the sources
//!
//! | value | from | matched as |
//! | --- | --- | --- |
//! | person names | `HumanName.family`, `given` and `text`; the mother's maiden name word by word | word sequence |
//! | places | `Address.city`, `district` | word sequence |
//! | identifiers | `Identifier.value` | bounded value |
//! | resource ids | every source resource's id (6 to 64 characters) | token |
//! | contacts | e-mails and other non-phone `ContactPoint.value`s | bounded value |
//! | street | `Address.line`, `Address.text` | bounded value |
//! | phones | phone, fax, sms and pager `ContactPoint.value`s with at least 7 digits | digits |
//! | ZIP codes | the first 5 digits of `Address.postalCode` | token |
//! | birth date | `Patient.birthDate` with a day | date (and its text forms, bounded) |
//! | geolocation | the `geolocation` extension's latitude and longitude with at least 4 decimals | number (and its text, bounded) |
//!
//! Two further lists are kept to tell a value kept on purpose from a leak: the states and
//! countries of every source address, and every full date of the sources (for dates, below).
//!
//! # Matching
//!
//! - **Word sequences**: the output string and the value are cut into words (runs of letters and
//!   digits), compared case-insensitively, and the value's words must appear in a row:
//!   `Kansas City` is found in "seen in Kansas City, MO" but never in "Kansas", and a name
//!   `Al` is found in "Al Smith" but not in "Alma". A value with fewer than 3 letters and digits
//!   in all is not looked for.
//! - **Bounded values**: case-insensitive (ASCII letters) substring, where the characters either
//!   side of the hit must not continue the value's edge (no digit next to an edge digit, no
//!   letter next to an edge letter): `999-33-5538` is found in "SSN 999-33-5538." but not in
//!   "1999-33-55381". Values shorter than 6 characters are not looked for (they collide with codes).
//! - **Tokens** (resource ids): the output is cut at every character a FHIR id cannot hold
//!   (anything but letters, digits, `-` and `.`) and a piece equal to a source id, ASCII
//!   case-insensitively, is a hit: `Patient/d88f...`, `urn:uuid:d88f...` and "see d88f..." all
//!   carry the id `d88f...`. Ids are kept apart from the automata because a patient has
//!   dozens of them and building an automaton over them would cost more than every scan of
//!   that patient's outputs.
//! - **Phones**: the output is cut into runs of digits and phone punctuation (` ()+-./`); a run
//!   matches when its digits are the number's last 10 digits, possibly after a country code of
//!   up to 3 digits. A LOINC code such as `8302-2` has too few digits to be a phone run.
//! - **ZIP codes**: a whole token (cut at spaces, commas and semicolons, outer punctuation
//!   trimmed) equal to the ZIP5, ZIP5-dddd or ZIP5dddd; `15074-8` is not `15074`.
//! - **Geolocation**: a JSON number equal to a coordinate, or its text as a bounded value.
//!
//! # Which values are looked for where
//!
//! Each output string is classed by its element (the type and path from the R4 table) and
//! matched only against the values of its own kind, plus free text against everything:
//!
//! | output element | names | places | bounded values | phones | ZIP | birth date |
//! | --- | --- | --- | --- | --- | --- | --- |
//! | name-ish: `HumanName.*`, `Reference.display`, string `name`/`alias` elements | yes | - | yes | - | - | text forms |
//! | address-ish: `Address.line`, `city`, `district`, `text`, and a state, country or postal code not kept on purpose | - | yes | yes | - | yes | text forms |
//! | identifier-ish: `Identifier.value`, `ContactPoint.value`, `Reference.reference`, ids, `uri`/`url`/`canonical`/`oid`/`uuid`, `base64Binary` | - | - | yes | yes | - | text forms |
//! | codes: `code` elements, `Coding.display`, `Coding.version` | full names only | - | identifiers and contacts only | - | - | - |
//! | dates: `date`, `dateTime`, `instant` | - | - | - | - | - | the date rule below |
//! | free text: every other string (narrative, notes, `CodeableConcept.text`, descriptions, `valueString`), and anything the table does not know | yes | yes | yes | yes | yes | text forms |
//!
//! Resource ids are looked for as tokens in every string but dates.
//!
//! In codes, a name is looked for only as a full name (a given name and the family name
//! together, in either order): single name parts collide with the terms of code systems (a
//! race display "White", an eye colour "Brown"), a whole name in a display does not.
//!
//! So a kept clinic name that mentions the patient's town, a race display "White" of a patient
//! called White, or an RxNorm code equal to the ZIP code is not a leak; the same words in a
//! surviving note are.
//!
//! # Values kept on purpose are never leaks
//!
//! Safe Harbor keeps the state, the country, ZIP3, the year of birth and "90 or older". None of
//! them can be the match of a removed value, even when the words coincide (born in "Kansas",
//! living in "Kansas City"; born in "Indiana", living in Indiana, Pennsylvania; a patient called
//! Virginia born in Virginia):
//! - `Address.state` and `Address.country` equal (case-insensitively, trimmed) to a state or
//!   country of a source address are not scanned at all. Any other value there is scanned as an
//!   address part, so a city smuggled into `state` is still caught.
//! - an `Address.postalCode` of three digits followed by nothing, zeros or `*` (`980`, `98000`,
//!   `980**`, `000`) is a ZIP3 and is not scanned; any other postal code is.
//! - a year alone, or an `Age` of 90, cannot match any gathered value by construction (a birth
//!   date is only gathered with its day; ages are not gathered).
//!
//! # Dates after shifting
//!
//! Every full date of a patient moves by one offset `d` (Safe Harbor: the study key's offset for
//! the patient, never 0; an anonymizer configuration: its `dateShift` offset for the resource).
//! A shifted date that happens to equal the true birth date reveals nothing: the researcher
//! sees only shifted dates and cannot tell which one would be the unshifted birth date. What
//! does reveal it is an unshifted birth date where a shifted one should be. So, in a `date`,
//! `dateTime` or `instant` element whose calendar day equals a source birth date `B`:
//! - in `Patient.birthDate` it is always a leak (the source there is `B`, shifted it cannot be `B`);
//! - elsewhere it is a leak unless the date shift explains it: the offset `d` is known and not 0
//!   and `B - d` is a full date of the patient's sources (so the element can be that date
//!   shifted). With no shift (a profile that keeps or only truncates dates) nothing explains it.
//!
//! Dates written inside text (free text, names, identifiers) are never shifted, so the birth
//! date's text forms `YYYY-MM-DD` and `MM/DD/YYYY` there are always leaks. The rule cannot mistake
//! a coincidence for a leak; it can miss an unshifted `B` in an element whose source was `B`
//! when `B - d` also happens to be a source date, which the scan cannot tell apart from the
//! output alone; the `Patient.birthDate` check still catches a shift that failed everywhere.
//!
//! A [`Leak`] names the JSON path and the kind of value, never the value itself.

mod gather;
mod scan;
mod text;

use std::collections::HashSet;
use std::fmt;

use aho_corasick::AhoCorasick;
use serde_json::Value;
use time::Date;

pub use scan::ScanContext;

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

/// A bounded pattern's kind and the classes of its first and last characters.
#[derive(Debug, Clone, Copy)]
struct Bounded {
    kind: LeakKind,
    first: text::CharClass,
    last: text::CharClass,
}

/// The identifying values of one patient's source records, compiled for the leak scan.
///
/// Built once per patient ([`IdentifierSet::from_sources`]) and shared, read-only, by every
/// scan of that patient's outputs.
#[derive(Default)]
pub struct IdentifierSet {
    /// Person names as normalised word sequences (` carolee951 `).
    names: Option<AhoCorasick>,
    /// Given and family names together, both orders (` carolee951 sanford861 `).
    full_names: Option<AhoCorasick>,
    /// Cities and districts as normalised word sequences.
    places: Option<AhoCorasick>,
    /// Identifiers, contacts, street lines, the birth date's and coordinates' text forms.
    bounded: Option<AhoCorasick>,
    /// What each bounded pattern is, by pattern index.
    bounded_info: Vec<Bounded>,
    /// Source resource ids, lower case, looked for as whole tokens.
    ids: HashSet<String>,
    /// Phone digits (the last 10 at most), at least 7.
    phones: Vec<Vec<u8>>,
    zip5: Vec<String>,
    birth_dates: Vec<Date>,
    /// Every full date of the sources, sorted, to tell a shifted coincidence from a leak.
    source_days: Vec<Date>,
    /// States and countries of the source addresses, trimmed and lower case.
    kept_places: Vec<String>,
    coordinates: Vec<f64>,
    /// How many values were gathered, for `Debug` and [`Self::is_empty`].
    counts: gather::Counts,
    /// The values could not all be compiled: every scan then reports a leak at the root
    /// rather than pass what it could not check.
    incomplete: bool,
}

impl fmt::Debug for IdentifierSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The values are patient data: show only how many there are.
        f.debug_struct("IdentifierSet")
            .field("counts", &self.counts)
            .finish_non_exhaustive()
    }
}

impl IdentifierSet {
    /// Gathers the identifying values of a patient's source resources and compiles them.
    pub fn from_sources(resources: &[Value]) -> IdentifierSet {
        gather::Gathered::from_sources(resources).compile()
    }

    /// Whether nothing was gathered.
    pub fn is_empty(&self) -> bool {
        self.counts.total() == 0
    }

    /// Every place in `output` where one of the values shows up, judging dates as unshifted
    /// (see [`Self::scan_with`]).
    pub fn scan(&self, output: &Value) -> Vec<Leak> {
        self.scan_with(output, &ScanContext::default())
    }

    /// Every place in `output` where one of the values shows up; `context` says how the
    /// output's dates were shifted.
    pub fn scan_with(&self, output: &Value, context: &ScanContext) -> Vec<Leak> {
        scan::Scanner::new(self, context, false).run(output)
    }

    /// The first place in `output` where one of the values shows up, if any; stops there.
    pub fn first_leak(&self, output: &Value, context: &ScanContext) -> Option<Leak> {
        scan::Scanner::new(self, context, true)
            .run(output)
            .into_iter()
            .next()
    }
}

#[cfg(test)]
mod send_sync {
    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn identifier_sets_can_be_shared_between_threads() {
        assert_send_sync::<super::IdentifierSet>();
    }
}
