//! Tests of the de-identification module: unit rules, the Microsoft anonymizer's pairs, the
//! Safe Harbor profile on the Synthea fixtures, the leak scan and the generated element table.

mod anonymizer;
mod element_table;
mod leaks;
mod methods;
mod ms_pairs;
mod population;
mod properties;
mod rules;
mod synthea;

use std::path::PathBuf;

use serde_json::Value;

/// The project root, found from this file's path (`src/deid/tests/mod.rs`) so that the tests
/// run both inside the crate and from a scratch crate.
pub(super) fn project_root() -> PathBuf {
    PathBuf::from(file!())
        .ancestors()
        .nth(4)
        .map(PathBuf::from)
        .unwrap_or_default()
}

/// The repository's `tests/fixtures/` (see its README for origins and licences).
pub(super) fn fixtures() -> PathBuf {
    project_root().join("tests/fixtures")
}

/// Parses a fixture file (some start with a UTF-8 byte-order mark).
pub(super) fn read_json(path: &std::path::Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(text.trim_start_matches('\u{feff}'))
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}
