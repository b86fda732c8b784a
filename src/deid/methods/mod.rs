//! The Microsoft FHIR anonymizer's methods value by value (`cryptoHash`, `dateShift`,
//! `redact`, `encrypt`, `perturb`), and [`AnonymizerConfig`], an interpreter of its
//! configuration files that applies every method (with `substitute` and `generalize`) to
//! whole resources; `docs/DEIDENTIFICATION.md` lists the methods and the FHIRPath subset.
//!
//! The algorithms follow the anonymizer's source:
//! - `cryptoHash`: HMAC-SHA256 keyed with the UTF-8 bytes of the key over the UTF-8 value, in
//!   lower-case hex; for a reference only the id is hashed ([`crypto_hash_reference`]).
//! - `dateShift`: `off = 0; for each byte b of UTF-8(resource id + key): off = (off*131 + b) % 101`,
//!   shift `off - 50` days. A full date moves; a time keeps its zone and its digits become 0; a
//!   date without a day, or one showing an age over 89, is redacted instead.
//! - `redact`: the value is removed, except with the partial flags: dates keep their year
//!   (unless the age is over 89), postal codes keep three digits (`000` for a restricted
//!   prefix), ages over 89 are removed and younger ones kept.
//!
//! Ages are judged against a `today` passed in, where the anonymizer uses the clock.

mod config;
mod eval;
pub(super) mod fhirpath;
mod run;
mod tree;

pub use config::{AnonymizerConfig, AnonymizerKeys};

use aes::cipher::{BlockEncryptMut, KeyIvInit, block_padding::Pkcs7};
use base64::Engine as _;
use rand::{Rng, RngCore};

use time::Date;

use super::dates::{self, FhirDate};
use super::keys::hmac_sha256_hex;
use super::schema::{is_fhir_id, is_resource_type, is_uuid};

/// The age above which dates and ages are redacted.
const AGE_THRESHOLD: i32 = 89;

/// What a method did to a value; each maps to a `meta.security` label.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Operation {
    /// Removed or blanked (`REDACTED`).
    Redact,
    /// Generalised, e.g. a ZIP cut to three digits (`ABSTRED`).
    Abstract,
    /// Hashed (`CRYTOHASH`, the anonymizer's spelling).
    CryptoHash,
    /// Moved, e.g. a shifted date (`PERTURBED`).
    Perturb,
    /// Replaced with a configured value (`SUBSTITUTED`).
    Substitute,
    /// Encrypted (`MASKED`).
    Encrypt,
    /// Mapped to a more general value (`GENERALIZED`).
    Generalize,
}

/// The outcome of a method on one value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transformed {
    /// The new value; `None` removes it.
    pub value: Option<String>,
    /// What was done.
    pub operation: Operation,
}

/// What kind of value `redact` is given, which decides what its partial flags keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// A FHIR `date`.
    Date,
    /// A FHIR `dateTime` or `instant`.
    DateTime,
    /// The `value` of an `Age`.
    AgeValue,
    /// An `Address.postalCode`.
    PostalCode,
    /// Anything else.
    Other,
}

/// The `redact` parameters of an anonymizer configuration.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedactSettings {
    /// `enablePartialDatesForRedact`: keep the year.
    pub partial_dates: bool,
    /// `enablePartialAgesForRedact`: keep ages up to 89.
    pub partial_ages: bool,
    /// `enablePartialZipCodesForRedact`: keep the first three digits.
    pub partial_zip_codes: bool,
    /// `restrictedZipCodeTabulationAreas`: prefixes whose digits all become 0.
    pub restricted_zip3: Vec<String>,
}

/// `cryptoHash` of a plain value: lower-case hex HMAC-SHA256.
pub fn crypto_hash(key: &str, value: &str) -> String {
    hmac_sha256_hex(key, value)
}

/// `cryptoHash` of a `Reference.reference`: only the id part is hashed in `#id`,
/// `[base/]Type/id[/_history/v]`, `urn:oid:` and `urn:uuid:` references; anything else is
/// hashed whole.
pub fn crypto_hash_reference(key: &str, reference: &str) -> String {
    if let Some(local) = reference.strip_prefix('#') {
        return format!("#{}", crypto_hash(key, local));
    }
    for prefix in ["urn:oid:", "urn:uuid:"] {
        if let Some(id) = reference
            .strip_prefix(prefix)
            .filter(|id| is_urn_id(prefix, id))
        {
            return format!("{prefix}{}", crypto_hash(key, id));
        }
    }
    let (head, suffix) = match reference.split_once("/_history/") {
        Some((head, version)) if is_fhir_id(version) => (head, &reference[head.len()..]),
        Some(_) => return crypto_hash(key, reference),
        None => (reference, ""),
    };
    if let Some((prefix, id)) = head.rsplit_once('/') {
        let resource_type = prefix.rsplit('/').next().unwrap_or(prefix);
        let base = &prefix[..prefix.len() - resource_type.len()];
        let base_ok = base.is_empty()
            || ((base.starts_with("http://") || base.starts_with("https://"))
                && base
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"\\/.:%$".contains(&b)));
        if base_ok && is_resource_type(resource_type) && is_fhir_id(id) {
            return format!("{prefix}/{}{suffix}", crypto_hash(key, id));
        }
    }
    crypto_hash(key, reference)
}

/// `encrypt`: AES-CBC with PKCS#7 padding under `key` (16, 24 or 32 bytes) and the random
/// `iv`, written as Base64 of IV followed by ciphertext, so the holder of the key can decrypt
/// each value alone; `None` for a key of another length.
pub fn encrypt(key: &[u8], iv: &[u8; 16], value: &str) -> Option<String> {
    let plain = value.as_bytes();
    let mut buffer = vec![0u8; (plain.len() / 16 + 1) * 16];
    let cipher_len = match key.len() {
        16 => cbc::Encryptor::<aes::Aes128>::new_from_slices(key, iv)
            .ok()?
            .encrypt_padded_b2b_mut::<Pkcs7>(plain, &mut buffer)
            .ok()?
            .len(),
        24 => cbc::Encryptor::<aes::Aes192>::new_from_slices(key, iv)
            .ok()?
            .encrypt_padded_b2b_mut::<Pkcs7>(plain, &mut buffer)
            .ok()?
            .len(),
        32 => cbc::Encryptor::<aes::Aes256>::new_from_slices(key, iv)
            .ok()?
            .encrypt_padded_b2b_mut::<Pkcs7>(plain, &mut buffer)
            .ok()?
            .len(),
        _ => return None,
    };
    let mut out = iv.to_vec();
    out.extend_from_slice(&buffer[..cipher_len]);
    Some(base64::engine::general_purpose::STANDARD.encode(out))
}

/// `perturb` of a number: noise uniform over `[-span/2, span/2]` (times the value for a
/// proportional range), rounded to `roundTo` places (integers to whole numbers).
fn perturb(value: f64, settings: &config::Perturb, integral: bool, rng: &mut dyn RngCore) -> f64 {
    let half = if settings.proportional {
        settings.span * value.abs() / 2.0
    } else {
        settings.span / 2.0
    };
    let noise = if half > 0.0 {
        rng.random_range(-half..=half)
    } else {
        0.0
    };
    let places = if integral {
        0
    } else {
        settings.round_to.unwrap_or(2)
    };
    let scale = 10f64.powi(i32::try_from(places).unwrap_or(0));
    ((value + noise) * scale).round() / scale
}

/// The anonymizer's per-resource date offset in days, within [-50, 50].
pub fn date_shift_offset(key: &str, resource_id: &str) -> i64 {
    let mut offset: i64 = 0;
    for byte in resource_id.bytes().chain(key.bytes()) {
        offset = (offset * 131 + i64::from(byte)) % 101;
    }
    offset - 50
}

/// `dateShift` of a `date`, `dateTime` or `instant` of the resource `resource_id`.
pub fn date_shift(
    key: &str,
    resource_id: &str,
    value: &str,
    partial_dates: bool,
    today: Date,
) -> Transformed {
    let Some(date) = FhirDate::parse_prefix(value) else {
        return unparsable_date(value);
    };
    let moved = date
        .full_date()
        .filter(|_| !shows_age_over_threshold(&date, today))
        .and_then(|day| dates::shift(day, date_shift_offset(key, resource_id)));
    let Some(moved) = moved else {
        return redact_date(&date, partial_dates, today);
    };
    let mut text = dates::format_date(moved);
    if let Some(length) = dates::time_length(date.rest) {
        let time: String = date.rest[1..=length]
            .chars()
            .map(|c| if c.is_ascii_digit() { '0' } else { c })
            .collect();
        text = format!("{text}T{time}{}", &date.rest[1 + length..]);
    }
    Transformed {
        value: Some(text),
        operation: Operation::Perturb,
    }
}

/// `redact` of one value of the given kind.
pub fn redact(value: &str, kind: ValueKind, settings: &RedactSettings, today: Date) -> Transformed {
    match kind {
        ValueKind::Date | ValueKind::DateTime if settings.partial_dates => {
            match FhirDate::parse_prefix(value) {
                Some(date) => redact_date(&date, true, today),
                None => unparsable_date(value),
            }
        }
        ValueKind::AgeValue if settings.partial_ages => {
            let over = value
                .trim()
                .parse::<f64>()
                .is_ok_and(|age| age > f64::from(AGE_THRESHOLD));
            let kept = (!over).then(|| value.to_string());
            Transformed {
                value: kept,
                operation: Operation::Redact,
            }
        }
        ValueKind::PostalCode if settings.partial_zip_codes => {
            let zero = |text: &str| -> String {
                text.chars()
                    .map(|c| if c.is_ascii_digit() { '0' } else { c })
                    .collect()
            };
            let redacted = if settings
                .restricted_zip3
                .iter()
                .any(|prefix| value.starts_with(prefix.as_str()))
            {
                zero(value)
            } else {
                match value.char_indices().nth(3) {
                    Some((cut, _)) => format!("{}{}", &value[..cut], zero(&value[cut..])),
                    None => value.to_string(),
                }
            };
            Transformed {
                value: Some(redacted),
                operation: Operation::Abstract,
            }
        }
        _ => Transformed {
            value: None,
            operation: Operation::Redact,
        },
    }
}

/// A date redacted with the partial flag or without: the year, or nothing.
fn redact_date(date: &FhirDate<'_>, partial_dates: bool, today: Date) -> Transformed {
    let keep_year = partial_dates && !shows_age_over_threshold(date, today);
    Transformed {
        value: keep_year.then(|| date.year_text()),
        operation: Operation::Redact,
    }
}

/// The anonymizer leaves a date it cannot read as it is, yet counts it as redacted.
fn unparsable_date(value: &str) -> Transformed {
    Transformed {
        value: Some(value.to_string()),
        operation: Operation::Redact,
    }
}

/// Whether someone born on `date` would be over 89 `today` (missing month and day count as 1).
fn shows_age_over_threshold(date: &FhirDate<'_>, today: Date) -> bool {
    let month = date.month.unwrap_or(1);
    let day = date.day.unwrap_or(1);
    let birthday_ahead = (u8::from(today.month()), today.day()) < (month, day);
    today.year() - date.year - i32::from(birthday_ahead) > AGE_THRESHOLD
}

fn is_urn_id(prefix: &str, id: &str) -> bool {
    if prefix == "urn:uuid:" {
        return is_uuid(id);
    }
    // An OID: `[0-2]` then one or more `.n` without leading zeros.
    let mut arcs = id.split('.');
    let first_ok = arcs.next().is_some_and(|a| matches!(a, "0" | "1" | "2"));
    let rest: Vec<&str> = arcs.collect();
    first_ok
        && !rest.is_empty()
        && rest.iter().all(|a| {
            !a.is_empty()
                && a.bytes().all(|b| b.is_ascii_digit())
                && (a.len() == 1 || !a.starts_with('0'))
        })
}
