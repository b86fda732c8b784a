//! The study key and everything derived from it: pseudonyms and date offsets.

use std::fmt;

use ring::hmac;

use super::DeidError;

/// Hex digits of a pseudonym.
const PSEUDONYM_HEX_DIGITS: usize = 32;

/// A study's secret key. Its `Debug` output shows no key material.
///
/// Every derivation is HMAC-SHA256 keyed with the study key over a message whose prefix keeps
/// the derivations apart (FHIR ids never contain `/`, `#` or `:`):
///
/// | derivation | message | result |
/// | --- | --- | --- |
/// | resource pseudonym | `{Type}/{id}` | first 32 hex digits of the MAC |
/// | contained pseudonym | `#{id}` | first 32 hex digits |
/// | `urn:uuid:` pseudonym | `urn:uuid:{uuid in lower case}` | first 16 bytes as a version-8 UUID |
/// | date offset | `date-shift:{patient id}` | see [`StudyKey::date_offset_days`] |
///
/// 32 hex digits (128 bits) keep pseudonyms valid FHIR ids (`[A-Za-z0-9-.]{1,64}`) with no
/// realistic chance of two ids colliding; a different key gives unrelated pseudonyms, which
/// is what makes two studies unlinkable.
pub struct StudyKey {
    key: hmac::Key,
}

impl StudyKey {
    /// The shortest secret accepted, in bytes.
    pub const MIN_SECRET_BYTES: usize = 16;

    /// A key from secret bytes (at least [`Self::MIN_SECRET_BYTES`]).
    pub fn from_bytes(secret: &[u8]) -> Result<Self, DeidError> {
        if secret.len() < Self::MIN_SECRET_BYTES {
            return Err(DeidError::KeyTooShort {
                min: Self::MIN_SECRET_BYTES,
            });
        }
        Ok(StudyKey {
            key: hmac::Key::new(hmac::HMAC_SHA256, secret),
        })
    }

    /// The key of study `study_id` derived from a gateway master secret, so that one secret
    /// yields a different, unlinkable key per study: HMAC-SHA256(master, `study-key:{id}`).
    pub fn for_study(master_secret: &[u8], study_id: &str) -> Result<Self, DeidError> {
        let master = StudyKey::from_bytes(master_secret)?;
        let derived = master.mac(&format!("study-key:{study_id}"));
        StudyKey::from_bytes(derived.as_ref())
    }

    /// The pseudonym of resource `resource_type/id`.
    pub fn pseudonym(&self, resource_type: &str, id: &str) -> String {
        let mut text = String::with_capacity(PSEUDONYM_HEX_DIGITS);
        self.push_pseudonym(&mut text, resource_type, id);
        text
    }

    /// Appends the pseudonym of `resource_type/id` to `out` (every reference of every exported
    /// resource needs one, so the message is fed to the MAC in pieces, never joined).
    pub fn push_pseudonym(&self, out: &mut String, resource_type: &str, id: &str) {
        let mut context = hmac::Context::with_key(&self.key);
        for piece in [resource_type, "/", id] {
            context.update(piece.as_bytes());
        }
        push_hex(out, &context.sign().as_ref()[..PSEUDONYM_HEX_DIGITS / 2]);
    }

    /// The pseudonym of a contained resource's local id (and of `#id` references to it).
    pub fn contained_pseudonym(&self, id: &str) -> String {
        self.hex_prefix(&format!("#{id}"))
    }

    /// The pseudonym of a `urn:uuid:` reference's UUID, itself a UUID (version 8).
    pub fn uuid_pseudonym(&self, uuid: &str) -> String {
        let tag = self.mac(&format!("urn:uuid:{}", uuid.to_ascii_lowercase()));
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(&tag.as_ref()[..16]);
        bytes[6] = (bytes[6] & 0x0f) | 0x80;
        bytes[8] = (bytes[8] & 0x3f) | 0x80;
        let hex = hex(&bytes);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..]
        )
    }

    /// The number of days every date of patient `patient_id` moves: never 0, within
    /// `[-max_days, -1] ∪ [1, max_days]`. The first 8 bytes of HMAC-SHA256(key,
    /// `date-shift:{patient id}`), read as a big-endian u64 `v`, give `n = v mod 2·max_days`;
    /// `n < max_days` means `-(n + 1)`, otherwise `n - max_days + 1`.
    pub fn date_offset_days(&self, patient_id: &str, max_days: u32) -> i64 {
        let max_days = i64::from(max_days.max(1));
        let tag = self.mac(&format!("date-shift:{patient_id}"));
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        // 2·max_days is far below 2^63, so the remainder fits and its bias is negligible.
        let n = (u64::from_be_bytes(first) % (2 * max_days as u64)) as i64;
        if n < max_days {
            -(n + 1)
        } else {
            n - max_days + 1
        }
    }

    /// A secret derived from the study key for another use (e.g. an anonymizer configuration's
    /// empty `cryptoHashKey`): HMAC-SHA256(key, `label`) in hex.
    pub fn derived_text(&self, label: &str) -> String {
        hex(self.mac(label).as_ref())
    }

    fn hex_prefix(&self, message: &str) -> String {
        let mut text = hex(self.mac(message).as_ref());
        text.truncate(PSEUDONYM_HEX_DIGITS);
        text
    }

    fn mac(&self, message: &str) -> hmac::Tag {
        hmac::sign(&self.key, message.as_bytes())
    }
}

impl fmt::Debug for StudyKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("StudyKey(..)")
    }
}

/// Lower-case hex of `bytes`.
pub(super) fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(bytes.len() * 2);
    push_hex(&mut text, bytes);
    text
}

/// Appends the lower-case hex of `bytes` to `out`.
fn push_hex(out: &mut String, bytes: &[u8]) {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    for byte in bytes {
        out.push(char::from(DIGITS[usize::from(byte >> 4)]));
        out.push(char::from(DIGITS[usize::from(byte & 0x0f)]));
    }
}

/// HMAC-SHA256 of `message` keyed with the UTF-8 bytes of `key`, in lower-case hex (the
/// Microsoft anonymizer's `cryptoHash`, which accepts any key length).
pub(super) fn hmac_sha256_hex(key: &str, message: &str) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key.as_bytes());
    hex(hmac::sign(&key, message.as_bytes()).as_ref())
}
