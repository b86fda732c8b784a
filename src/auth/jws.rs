//! Detached JSON Web Signatures (RFC 7515 appendix F) under the gateway's Ed25519 keys.
//!
//! A disclosure package is signed over its exact bytes, and the signature travels beside
//! the payload rather than inside it, so the bundle a recipient receives is the bundle that
//! was stored. Anyone can check it with the gateway's published JWKS: the signing input is
//! `base64url(header) "." base64url(payload)`, as for an attached JWS.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::Ed25519KeyPair;
use serde_json::{Value, json};

use super::keys::Keyring;

/// A JWS in compact serialization with a detached payload: the signature covers
/// `base64url(header) . base64url(payload)`, and the payload part is left empty.
pub fn detached_jws(kid: &str, key: &Ed25519KeyPair, payload: &[u8]) -> String {
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JOSE", "cty": "fhir+json"});
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

/// A detached JWS over `payload` with the keyring's current key; `None` when the keyring
/// has no usable signing key.
pub fn sign_detached(keyring: &Keyring, payload: &[u8]) -> Option<String> {
    let (kid, key) = keyring.signing_key_pair()?;
    Some(detached_jws(&kid, &key, payload))
}

/// The `kid` of a compact JWS's protected header.
pub fn kid_of(jws: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

/// Whether the key that made `jws` is still in the keyring's published JWKS, so that a
/// verifier can find it.
pub fn is_published(keyring: &Keyring, jws: &str) -> bool {
    kid_of(jws).is_some_and(|kid| {
        keyring.jwks()["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid.as_str()))
    })
}

/// SHA-256 of `bytes`, lowercase hex.
pub fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};

    #[test]
    fn detached_jws_verifies_and_omits_the_payload() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let payload = br#"{"resourceType":"Bundle"}"#;
        let jws = detached_jws("k1", &key, payload);
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[1].is_empty(), "the payload is detached");
        assert_eq!(kid_of(&jws).as_deref(), Some("k1"));
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        let public = UnparsedPublicKey::new(&ED25519, key.public_key().as_ref().to_vec());
        let input = |p: &[u8]| format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(p));
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(public.verify(input(payload).as_bytes(), &sig).is_ok());
        assert!(
            public
                .verify(input(br#"{"resourceType":"Bundlf"}"#).as_bytes(), &sig)
                .is_err()
        );
    }

    #[test]
    fn kid_of_reads_only_well_formed_headers() {
        assert_eq!(kid_of(""), None);
        assert_eq!(kid_of("not base64!..x"), None);
        let no_kid = URL_SAFE_NO_PAD.encode(r#"{"alg":"EdDSA"}"#);
        assert_eq!(kid_of(&format!("{no_kid}..x")), None);
    }

    #[test]
    fn sha256_hex_matches_the_known_digest() {
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn a_signature_is_published_until_its_key_is_rotated_out() {
        let dir = tempfile::tempdir().unwrap();
        // No grace period: a rotated key leaves the JWKS at once.
        let keyring = Keyring::open(dir.path(), 0).unwrap();
        let old = sign_detached(&keyring, b"payload").expect("a signing key");
        assert!(is_published(&keyring, &old));
        keyring.rotate().unwrap();
        assert!(!is_published(&keyring, &old), "the old key left the JWKS");
        let new = sign_detached(&keyring, b"payload").expect("the new key");
        assert_ne!(kid_of(&new), kid_of(&old));
        assert!(is_published(&keyring, &new));
    }
}
