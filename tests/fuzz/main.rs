//! Property-based fuzzing of every parser that takes outside input, on stable Rust with
//! `proptest`: FHIR JSON bodies and Bundles, Consents, search parameters, JWTs (gateway
//! tokens and client assertions), C2SP signed notes, and the de-identification profile and
//! anonymizer configuration loaders. The property is always the same: the parser answers
//! (an `Ok` or a typed error) and never panics; where a parser must refuse what it is given
//! (a JWT whose bytes were bent, a note whose body was changed), that is checked too.
//!
//! Inputs are built from the shapes each parser expects, then bent (fields dropped, types
//! swapped, strings stretched, bytes flipped), so most cases get past the first check.
//! Case counts are bounded per parser ([`cases`]) so the binary runs in seconds in debug;
//! `PROPTEST_CASES` raises them for a longer local run.

mod bodies;
mod consent;
mod deid;
mod jwt;
mod notes;
mod search;
mod values;

/// The number of cases for a parser: `default`, or `PROPTEST_CASES` when set.
pub fn cases(default: u32) -> proptest::test_runner::Config {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default);
    proptest::test_runner::Config {
        cases,
        // Failures are reported with their input; no file is written into the repository.
        failure_persistence: None,
        ..proptest::test_runner::Config::default()
    }
}
