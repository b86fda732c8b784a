//! The cryptography of a SMART Health Link, pure: random secrets, the file as a compact JWE
//! (`alg: dir`, `enc: A256GCM`, ring's AES-256-GCM), the passcode as a PBKDF2 hash, the
//! `shlink:/` payload, and its QR code as SVG (the `qrcode` crate).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64URL;
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::Serialize;
use std::num::NonZeroU32;

use crate::error::DomainError;

/// PBKDF2-HMAC-SHA256 iterations for a new passcode hash. The lifetime cap on wrong
/// passcodes is what stops guessing online; the hash makes a stolen database slow to search.
const PBKDF2_ITERATIONS: u32 = 210_000;
/// Bytes of salt and of derived hash.
const HASH_BYTES: usize = 32;

/// 32 random bytes, base64url without padding (43 characters): link ids, tickets, keys.
pub fn random_token() -> Result<String, DomainError> {
    Ok(B64URL.encode(random_bytes()?))
}

fn random_bytes() -> Result<[u8; 32], DomainError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DomainError::internal("the system random source failed"))?;
    Ok(bytes)
}

/// Whether `text` has the form of [`random_token`]'s output (so other input never reaches
/// the database).
pub fn is_token(text: &str) -> bool {
    text.len() == 43
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// A fresh key for one link: 32 random bytes (AES-256).
pub struct LinkKey([u8; 32]);

impl LinkKey {
    /// A new random key.
    pub fn generate() -> Result<LinkKey, DomainError> {
        Ok(LinkKey(random_bytes()?))
    }

    /// The key as the payload's `key`: base64url, 43 characters.
    pub fn encoded(&self) -> String {
        B64URL.encode(self.0)
    }

    /// `plaintext` as a compact JWE: protected header `{"alg":"dir","enc":"A256GCM","cty":
    /// content_type}`, an empty encrypted key (direct encryption), a random 96-bit IV, the
    /// ciphertext and the 128-bit tag; the additional data is the encoded header (RFC 7516
    /// section 5.1).
    pub fn encrypt(&self, plaintext: &[u8], content_type: &str) -> Result<String, DomainError> {
        let header = serde_json::json!({"alg": "dir", "enc": "A256GCM", "cty": content_type});
        let header = B64URL.encode(header.to_string());
        let mut iv = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut iv)
            .map_err(|_| DomainError::internal("the system random source failed"))?;
        let key = UnboundKey::new(&AES_256_GCM, &self.0)
            .map_err(|_| DomainError::internal("AES-256-GCM key setup failed"))?;
        let mut sealed = plaintext.to_vec();
        let tag = LessSafeKey::new(key)
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(iv),
                Aad::from(header.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| DomainError::internal("AES-256-GCM sealing failed"))?;
        Ok(format!(
            "{header}..{}.{}.{}",
            B64URL.encode(iv),
            B64URL.encode(&sealed),
            B64URL.encode(tag.as_ref())
        ))
    }
}

/// A passcode's stored form: `pbkdf2-sha256$iterations$salt$hash` (base64url), so the
/// iteration count can rise later without breaking stored links.
pub fn hash_passcode(passcode: &str) -> Result<String, DomainError> {
    let salt = random_bytes()?;
    let iterations = NonZeroU32::new(PBKDF2_ITERATIONS).expect("a non-zero constant");
    let mut hash = [0u8; HASH_BYTES];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        passcode.as_bytes(),
        &mut hash,
    );
    Ok(format!(
        "pbkdf2-sha256${PBKDF2_ITERATIONS}${}${}",
        B64URL.encode(salt),
        B64URL.encode(hash)
    ))
}

/// Whether `passcode` matches `stored` (constant time in the hash comparison); a stored
/// value of another form matches nothing.
pub fn passcode_matches(stored: &str, passcode: &str) -> bool {
    let mut parts = stored.split('$');
    let (Some("pbkdf2-sha256"), Some(iterations), Some(salt), Some(hash), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return false;
    };
    let (Some(iterations), Ok(salt), Ok(hash)) = (
        iterations.parse().ok().and_then(NonZeroU32::new),
        B64URL.decode(salt),
        B64URL.decode(hash),
    ) else {
        return false;
    };
    pbkdf2::verify(
        pbkdf2::PBKDF2_HMAC_SHA256,
        iterations,
        &salt,
        passcode.as_bytes(),
        &hash,
    )
    .is_ok()
}

/// The SHLink payload (SMART Health Links specification): what the `shlink:/` link carries.
/// No `Debug`: it holds the key.
#[derive(Clone, Serialize, utoipa::ToSchema)]
pub struct Payload {
    /// The manifest URL.
    pub url: String,
    /// The decryption key: 32 bytes, base64url (43 characters).
    pub key: String,
    /// Expiry hint, seconds since the epoch.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    /// `P` when a passcode is needed (flags concatenated in alphabetical order).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flag: Option<String>,
    /// What the link holds, in the patient's words (at most 80 characters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// The protocol version: 1.
    pub v: u32,
}

impl Payload {
    /// The link: `shlink:/` and the minified payload, base64url.
    pub fn link(&self) -> String {
        let json = serde_json::to_string(self).unwrap_or_default();
        format!("shlink:/{}", B64URL.encode(json))
    }
}

/// `link` as a QR code (error correction level M, as the specification recommends), an SVG
/// element ready to place in an HTML page: no XML declaration, only numbers and fixed
/// colours inside, so it holds nothing that could run or be styled from elsewhere.
pub fn qr_svg(link: &str) -> Result<String, DomainError> {
    let code = qrcode::QrCode::with_error_correction_level(link.as_bytes(), qrcode::EcLevel::M)
        .map_err(|e| DomainError::internal(format!("QR code: {e}")))?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(256, 256)
        .build();
    Ok(svg
        .split_once("?>")
        .map(|(_, rest)| rest.to_string())
        .unwrap_or(svg))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_43_characters_of_base64url() {
        let a = random_token().unwrap();
        assert!(is_token(&a), "{a}");
        assert_ne!(a, random_token().unwrap());
        assert!(!is_token("short"));
        assert!(!is_token(&format!("{}=", &a[..42])));
        assert_eq!(LinkKey::generate().unwrap().encoded().len(), 43);
    }

    #[test]
    fn the_jwe_is_compact_direct_and_decrypts_with_the_key() {
        let key = LinkKey::generate().unwrap();
        let jwe = key.encrypt(b"{\"a\":1}", "application/fhir+json").unwrap();
        let parts: Vec<&str> = jwe.split('.').collect();
        assert_eq!(parts.len(), 5);
        assert_eq!(parts[1], "", "direct encryption has no encrypted key");
        let header: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(
            header,
            serde_json::json!({"alg": "dir", "enc": "A256GCM", "cty": "application/fhir+json"})
        );
        // Open it again with ring, the AAD being the encoded header.
        let mut sealed = B64URL.decode(parts[3]).unwrap();
        sealed.extend(B64URL.decode(parts[4]).unwrap());
        let iv: [u8; 12] = B64URL.decode(parts[2]).unwrap().try_into().unwrap();
        let opened = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key.0).unwrap())
            .open_in_place(
                Nonce::assume_unique_for_key(iv),
                Aad::from(parts[0].as_bytes()),
                &mut sealed,
            )
            .unwrap()
            .to_vec();
        assert_eq!(opened, b"{\"a\":1}");
    }

    #[test]
    fn passcodes_are_salted_hashes() {
        let stored = hash_passcode("1234").unwrap();
        assert!(stored.starts_with("pbkdf2-sha256$"));
        assert!(!stored.contains("1234$"));
        assert_ne!(stored, hash_passcode("1234").unwrap(), "salted");
        assert!(passcode_matches(&stored, "1234"));
        assert!(!passcode_matches(&stored, "1235"));
        assert!(!passcode_matches("plain", "plain"));
        assert!(!passcode_matches("pbkdf2-sha256$0$AA$AA", ""));
    }

    #[test]
    fn the_payload_is_minified_base64url_json() {
        let payload = Payload {
            url: "https://g.example/api/v1/shl/x".into(),
            key: "k".repeat(43),
            exp: Some(1_900_000_000),
            flag: Some("P".into()),
            label: None,
            v: 1,
        };
        let link = payload.link();
        let encoded = link.strip_prefix("shlink:/").unwrap();
        let back: serde_json::Value =
            serde_json::from_slice(&B64URL.decode(encoded).unwrap()).unwrap();
        assert_eq!(back["url"], "https://g.example/api/v1/shl/x");
        assert_eq!(back["flag"], "P");
        assert!(back.get("label").is_none());
        let svg = qr_svg(&link).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..40]);
        assert!(!svg.contains("style") && !svg.contains("script"));
    }
}
