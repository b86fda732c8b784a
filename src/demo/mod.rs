//! Synthetic demo data: a deterministic generator of FHIR R4 `transaction` Bundles.
//!
//! `consentgate demo --patients N` uses it to fill an empty database, and the benchmarks use it
//! as a workload. All content is synthetic, written for this project: names come from small
//! built-in lists, identifiers are fictitious (SSNs in the never-issued 999 area, phone numbers
//! in the 555-01xx fiction range), and clinical codes are real SNOMED CT, ICD-10-CM, LOINC,
//! RxNorm and CVX codes so the gateway's labeller and consent rules see realistic data.
//!
//! Output is fully deterministic: the same [`DemoOptions::seed`] yields byte-identical JSON.
//! Every patient draws from its own ChaCha stream keyed by (seed, patient index), so patient
//! `k` is the same whatever `N` is, and all dates are placed relative to a fixed reference date
//! (2026-01-01) rather than the wall clock.
//!
//! Load [`directory_bundle`] first: patient bundles refer to its organisations and practitioners
//! by `urn:uuid:` reference, which the gateway resolves to the stored ids.
//!
//! About one patient in eight moved into the region: it carries a `birthPlace` extension with
//! the state it was born in and lives in a town named after that state (born in Kansas, living
//! in Kansas City), which exercises the leak scan's rule that a kept state never matches a
//! removed city. Who moved is drawn from separate streams, so every other value of every
//! patient is the same as before this was added; the moved patients' address and phone differ.
//!
//! A share of patients carry sensitive items (substance use, HIV, mental health, reproductive
//! and sexual health, genetics), recognisable from their codes alone. They deliberately carry no
//! `meta.security` labels: labelling happens at ingest.

mod care;
mod clinical;
mod codes;
mod directory;
mod fhir;
mod names;
mod patient;
mod sensitive;
#[cfg(test)]
mod tests;
mod visits;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use serde_json::Value;

use directory::Directory;

/// Knobs for the generator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DemoOptions {
    /// How many patient bundles [`patient_bundles`] yields.
    pub patients: usize,
    /// Seed for every random choice; equal seeds give identical output.
    pub seed: u64,
}

impl Default for DemoOptions {
    /// Ten patients with seed 2026.
    fn default() -> Self {
        Self {
            patients: 10,
            seed: 2026,
        }
    }
}

/// The shared organisations and practitioners every patient bundle refers to, as one FHIR R4
/// `transaction` Bundle (serde_json::Value). Load it first.
pub fn directory_bundle(opts: &DemoOptions) -> Value {
    Directory::new(opts.seed).bundle()
}

/// One FHIR R4 `transaction` Bundle per patient, generated lazily (memory stays flat for large N).
///
/// The iterator owns everything it needs (`use<>`), so it may outlive `opts`.
pub fn patient_bundles(opts: &DemoOptions) -> impl Iterator<Item = Value> + use<> {
    let directory = Directory::new(opts.seed);
    let seed = opts.seed;
    (0..opts.patients).map(move |index| patient::bundle(&directory, seed, index))
}

/// One patient in this many (on average) was born in another state and lives in a town named
/// after it ([`names::HOMETOWNS`]).
const MOVED_ONE_IN: u32 = 8;

/// Seed salt of the streams that decide who moved, apart from the patients' own streams.
const HOMETOWN_SALT: u64 = 0x686f_6d65_746f_776e;

/// Where patient `index` under `seed` was born and lives, when it moved into the region; drawn
/// from a stream of its own so that it changes no other value of the patient.
fn hometown(seed: u64, index: usize) -> Option<&'static names::Hometown> {
    use rand::Rng;
    let mut rng = stream_rng(seed ^ HOMETOWN_SALT, index as u64);
    if rng.random_range(0..MOVED_ONE_IN) != 0 {
        return None;
    }
    Some(fhir::pick(&mut rng, &names::HOMETOWNS))
}

/// ChaCha stream reserved for the directory; patients use streams `0..N`.
const DIRECTORY_STREAM: u64 = u64::MAX;

/// The RNG for the directory under `seed`.
fn directory_rng(seed: u64) -> ChaCha8Rng {
    stream_rng(seed, DIRECTORY_STREAM)
}

/// The RNG for patient `index` under `seed`: an independent ChaCha stream, so a patient's data
/// depends only on (seed, index) and not on how many patients come before or after it.
fn patient_rng(seed: u64, index: usize) -> ChaCha8Rng {
    stream_rng(seed, index as u64)
}

fn stream_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
