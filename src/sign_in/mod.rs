//! Signing a patient in to the patient page, below HTTP: the page as an OpenID Connect
//! relying party, its server-side sessions, and the gateway's own development issuer.
//!
//! Start with [`relying_party`]: the authorization code flow with PKCE (S256, RFC 7636)
//! against a configured `auth.oidc_issuers` entry or, under the development profile, the
//! gateway's own issuer. [`relying_party::start`] stores the sign-in under way (state,
//! nonce, code verifier, a binding to the browser that started it) and names the URL to
//! send the browser to; [`relying_party::finish`] takes the state back exactly once,
//! exchanges the code, verifies the id_token (signature, `iss`, `aud`, `exp`, the nonce) and
//! admits only patients (`fhirUser` = `Patient/{id}`). Then [`session::open`] stores a
//! session whose cookie value the browser keeps and the table keeps only hashed.
//!
//! [`dev_issuer`] is the other side for development: an authorization endpoint whose sign-in
//! page lists the demo patients, and a token endpoint issuing id_tokens with `fhirUser`,
//! signed with the gateway's keyring. It is refused under the production profile, where the
//! page signs in only through a configured issuer.
//!
//! HTTP (cookies, redirects, the pages) is `web/`'s; SQL is `store/web.rs`.

pub mod dev_issuer;
pub mod relying_party;
pub mod session;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};

use crate::error::DomainError;

/// Microseconds in a second.
const MICROS: i64 = 1_000_000;

/// 32 random bytes, base64url without padding (43 characters): session ids, CSRF tokens,
/// states, nonces, PKCE verifiers, authorization codes.
pub fn random_token() -> Result<String, DomainError> {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| DomainError::internal("the system random source failed"))?;
    Ok(URL_SAFE_NO_PAD.encode(bytes))
}

/// SHA-256 of `text`, lowercase hex: how browser-held secrets are stored.
pub fn hashed(text: &str) -> String {
    crate::auth::jws::sha256_hex(text.as_bytes())
}

/// The PKCE S256 challenge of a verifier: base64url(SHA-256(verifier)), no padding.
pub fn pkce_challenge(verifier: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, verifier.as_bytes());
    URL_SAFE_NO_PAD.encode(digest.as_ref())
}

/// Whether `verifier` has the form RFC 7636 section 4.1 allows: 43 to 128 unreserved
/// characters.
pub fn is_pkce_verifier(verifier: &str) -> bool {
    (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// Equal strings, compared in time that does not depend on where they differ.
pub fn same_secret(a: &str, b: &str) -> bool {
    // Comparing the digests leaks nothing useful about the secrets themselves.
    hashed(a) == hashed(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rfc_7636_example_challenge() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        assert!(is_pkce_verifier(verifier));
        assert_eq!(
            pkce_challenge(verifier),
            "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
        );
    }

    #[test]
    fn verifiers_of_the_wrong_form_are_refused() {
        for bad in [
            "short",
            &"a".repeat(129),
            &format!("{}!", "a".repeat(43)),
            "",
        ] {
            assert!(!is_pkce_verifier(bad), "{bad}");
        }
        assert!(is_pkce_verifier(&"a-._~".repeat(9)));
    }

    #[test]
    fn random_tokens_are_long_and_distinct() {
        let (a, b) = (random_token().unwrap(), random_token().unwrap());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert!(is_pkce_verifier(&a), "a token serves as a PKCE verifier");
        assert!(same_secret(&a, &a.clone()) && !same_secret(&a, &b));
    }
}
