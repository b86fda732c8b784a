//! Small helpers that turn generator state into FHIR R4 JSON fragments.
//!
//! Everything here is infallible: dates are formatted by hand rather than through `time`'s
//! fallible formatter, and ids come straight from the seeded RNG.

use rand::Rng;
use serde_json::{Value, json};
use time::{Date, PrimitiveDateTime};
use uuid::Uuid;

use super::codes::{Code, Dx, Measure, UCUM};
use super::names::Town;

/// A random (version 4) UUID drawn from the generator's RNG, so ids are reproducible.
pub(super) fn new_id(rng: &mut impl Rng) -> Uuid {
    uuid::Builder::from_random_bytes(rng.random::<u128>().to_be_bytes()).into_uuid()
}

/// The `urn:uuid:` form used both as `fullUrl` and as the target of every reference.
pub(super) fn urn(id: Uuid) -> String {
    format!("urn:uuid:{id}")
}

/// A `Reference` to a resource in this bundle or in the directory bundle.
pub(super) fn reference(id: Uuid) -> Value {
    json!({ "reference": urn(id) })
}

/// A `Reference` with a human-readable `display`.
pub(super) fn reference_to(id: Uuid, display: &str) -> Value {
    json!({ "reference": urn(id), "display": display })
}

/// A transaction entry that creates `resource` under the id it already carries.
pub(super) fn entry(resource_type: &str, id: Uuid, resource: Value) -> Value {
    json!({
        "fullUrl": urn(id),
        "resource": resource,
        "request": { "method": "POST", "url": resource_type },
    })
}

/// A `transaction` Bundle around `entries`.
pub(super) fn transaction(entries: Vec<Value>) -> Value {
    json!({ "resourceType": "Bundle", "type": "transaction", "entry": entries })
}

/// A single `Coding`.
pub(super) fn coding(code: &Code) -> Value {
    json!({ "system": code.system, "code": code.code, "display": code.display })
}

/// A `CodeableConcept` with one coding; `text` repeats the display, as most EHRs send it.
pub(super) fn concept(code: &Code) -> Value {
    json!({ "coding": [coding(code)], "text": code.display })
}

/// A `CodeableConcept` for a diagnosis, carrying both its SNOMED CT and ICD-10-CM codings.
pub(super) fn dx_concept(dx: &Dx) -> Value {
    json!({ "coding": [coding(&dx.snomed), coding(&dx.icd)], "text": dx.snomed.display })
}

/// A `CodeableConcept` for a code from one of the small FHIR status/category code systems.
pub(super) fn simple_concept(system: &str, code: &str, display: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code, "display": display }] })
}

/// A UCUM `Quantity`.
pub(super) fn quantity(value: f64, m: &Measure) -> Value {
    json!({ "value": value, "unit": m.unit, "system": UCUM, "code": m.ucum })
}

/// A value uniformly drawn from `low..=high`, rounded as an instrument would report it.
pub(super) fn sample(rng: &mut impl Rng, low: f64, high: f64, decimals: i32) -> f64 {
    let raw = if high > low {
        rng.random_range(low..=high)
    } else {
        low
    };
    round(raw, decimals)
}

/// `value` rounded to `decimals` places (0 to 3).
///
/// Only correctly rounded IEEE operations are used (not `powi`, whose precision varies by
/// platform), so the output is byte-identical everywhere.
pub(super) fn round(value: f64, decimals: i32) -> f64 {
    let scale = match decimals {
        ..=0 => 1.0,
        1 => 10.0,
        2 => 100.0,
        _ => 1000.0,
    };
    (value * scale).round() / scale
}

/// One element of a fixed, non-empty table, chosen uniformly.
///
/// Taking an array (not a slice) lets the compiler prove the table is non-empty, so indexing
/// can never panic.
pub(super) fn pick<'a, T, const N: usize>(rng: &mut impl Rng, items: &'a [T; N]) -> &'a T {
    const { assert!(N > 0, "pick needs a non-empty table") };
    &items[rng.random_range(0..N)]
}

/// One element of a slice, or `None` when it is empty.
pub(super) fn pick_slice<'a, T>(rng: &mut impl Rng, items: &'a [T]) -> Option<&'a T> {
    if items.is_empty() {
        None
    } else {
        items.get(rng.random_range(0..items.len()))
    }
}

/// A FHIR `dateTime`/`instant` in UTC with an explicit offset, e.g. `2021-03-04T10:15:00+00:00`.
pub(super) fn date_time(t: PrimitiveDateTime) -> String {
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}+00:00",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// A FHIR `date`, e.g. `1978-11-02`.
pub(super) fn date(d: Date) -> String {
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// A `Period` between two instants.
pub(super) fn period(start: PrimitiveDateTime, end: PrimitiveDateTime) -> Value {
    json!({ "start": date_time(start), "end": date_time(end) })
}

/// Age in completed years on `on` for someone born on `birth`.
pub(super) fn age_on(birth: Date, on: Date) -> i32 {
    let had_birthday = (u8::from(on.month()), on.day()) >= (u8::from(birth.month()), birth.day());
    on.year() - birth.year() - i32::from(!had_birthday)
}

/// A postal `Address` in `town`.
pub(super) fn address(use_: &str, line: &str, town: &Town) -> Value {
    json!({
        "use": use_,
        "line": [line],
        "city": town.city,
        "state": town.state,
        "postalCode": town.zip,
        "country": "US",
    })
}

/// A fictional telephone number in `town`'s area code (555-0100..555-0199 is reserved for fiction).
pub(super) fn phone(rng: &mut impl Rng, town: &Town) -> String {
    format!(
        "({}) 555-01{:02}",
        town.area_code,
        rng.random_range(0..100u32)
    )
}

/// Standard base64 (RFC 4648, with padding), for `Attachment.data`.
pub(super) fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // Each 6-bit group indexes the 64-entry alphabet, so the index is always in range.
        for (i, shift) in [18u32, 12, 6, 0].into_iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[((n >> shift) & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}
