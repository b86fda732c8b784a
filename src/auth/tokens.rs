//! The gateway's own tokens: access tokens for recipient clients (RFC 9068, `typ: at+jwt`)
//! and development tokens for people (`typ: JWT`), both EdDSA-signed with the keyring's
//! current key, and their verification under RFC 8725.
//!
//! Verification fixes the algorithm (EdDSA, the only one our keys use), requires a `kid` the
//! keyring knows, the expected `typ`, `iss`, `aud`, `exp` and `nbf` (with the configured
//! skew), and a `jti`. Every failure is the same [`TokenError`] to the caller: which check
//! failed is logged at debug level, never told to the client.

use jsonwebtoken::{Algorithm, Header, Validation};
use serde::{Deserialize, Serialize};

use super::keys::Keyring;

/// The `typ` of access tokens (RFC 9068).
pub const ACCESS_TOKEN_TYP: &str = "at+jwt";
/// The `typ` of development tokens for people.
pub const PERSON_TOKEN_TYP: &str = "JWT";
/// The audience of development tokens for people.
pub const PERSON_AUDIENCE: &str = "consentgate";

/// The claims of an access token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AccessClaims {
    /// The gateway.
    pub iss: String,
    /// The client id.
    pub sub: String,
    /// The FHIR base the token is for.
    pub aud: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Not before.
    pub nbf: i64,
    /// Token id (for revocation).
    pub jti: String,
    /// The client id again (RFC 9068).
    pub client_id: String,
    /// The client's role.
    pub role: String,
    /// The client's organisation.
    pub organization: String,
    /// Granted scopes, space-separated.
    pub scope: String,
    /// The purpose of use (v3 ActReason code).
    pub purpose_of_use: String,
    /// Whether the gateway chose the purpose because the token request named none.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub purpose_defaulted: bool,
    /// The break-glass justification, when the purpose is emergency treatment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub justification: Option<String>,
}

/// The claims of a person's token (development issuer or a trusted OpenID Connect issuer,
/// normalised).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct PersonClaims {
    /// Issuer.
    pub iss: String,
    /// Subject (the person's account).
    pub sub: String,
    /// Audience.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// Token id.
    pub jti: String,
    /// `Patient/{id}` or `RelatedPerson/{id}`, when the person is one.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// Roles, e.g. `operator`.
    #[serde(default)]
    pub roles: Vec<String>,
}

/// A token that did not verify. Deliberately without detail.
#[derive(Debug, thiserror::Error)]
#[error("invalid token")]
pub struct TokenError;

/// Signing failed (no usable key).
#[derive(Debug, thiserror::Error)]
#[error("no signing key available")]
pub struct SigningError;

/// Signs claims with the keyring's current key under the given `typ`.
pub fn sign<T: Serialize>(
    keyring: &Keyring,
    typ: &str,
    claims: &T,
) -> Result<String, SigningError> {
    let (kid, key) = keyring.signing_key().ok_or(SigningError)?;
    let mut header = Header::new(Algorithm::EdDSA);
    header.typ = Some(typ.to_string());
    header.kid = Some(kid);
    jsonwebtoken::encode(&header, claims, &key).map_err(|_| SigningError)
}

/// What a gateway token must be to verify.
#[derive(Debug, Clone)]
pub struct Expectation<'a> {
    /// Required `typ`.
    pub typ: &'a str,
    /// Required `iss`.
    pub issuer: &'a str,
    /// Required `aud`.
    pub audience: &'a str,
    /// Tolerated clock skew, seconds.
    pub skew_secs: u64,
    /// Accept expired tokens (revocation and introspection of old tokens only).
    pub allow_expired: bool,
}

/// Verifies a token signed by the gateway and returns its claims.
pub fn verify<T: for<'de> Deserialize<'de>>(
    keyring: &Keyring,
    token: &str,
    expect: &Expectation<'_>,
) -> Result<T, TokenError> {
    let reject = |why: &str| {
        tracing::debug!(check = why, "gateway token refused");
        TokenError
    };
    let header = jsonwebtoken::decode_header(token).map_err(|_| reject("header"))?;
    if header.alg != Algorithm::EdDSA {
        return Err(reject("alg"));
    }
    if header.typ.as_deref().map(str::to_ascii_lowercase) != Some(expect.typ.to_ascii_lowercase()) {
        return Err(reject("typ"));
    }
    let kid = header.kid.ok_or_else(|| reject("kid"))?;
    let key = keyring
        .verification_key(&kid)
        .ok_or_else(|| reject("unknown kid"))?;
    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.leeway = expect.skew_secs;
    validation.validate_nbf = true;
    validation.validate_exp = !expect.allow_expired;
    validation.set_issuer(&[expect.issuer]);
    validation.set_audience(&[expect.audience]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    jsonwebtoken::decode::<T>(token, &key, &validation)
        .map(|data| data.claims)
        .map_err(|e| reject(&e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keyring() -> (tempfile::TempDir, Keyring) {
        super::super::jwt_ring::install();
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), 600).unwrap();
        (dir, ring)
    }

    fn claims(now: i64) -> AccessClaims {
        AccessClaims {
            iss: "https://gw".into(),
            sub: "c1".into(),
            aud: "https://gw/fhir".into(),
            exp: now + 300,
            iat: now,
            nbf: now,
            jti: "j1".into(),
            client_id: "c1".into(),
            role: "clinician".into(),
            organization: "o".into(),
            scope: "system/*.rs".into(),
            purpose_of_use: "TREAT".into(),
            purpose_defaulted: false,
            justification: None,
        }
    }

    #[test]
    fn every_check_holds() {
        let (_dir, ring) = keyring();
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let expect = Expectation {
            typ: ACCESS_TOKEN_TYP,
            issuer: "https://gw",
            audience: "https://gw/fhir",
            skew_secs: 0,
            allow_expired: false,
        };
        let good = sign(&ring, ACCESS_TOKEN_TYP, &claims(now)).unwrap();
        assert_eq!(
            verify::<AccessClaims>(&ring, &good, &expect).unwrap(),
            claims(now)
        );

        let wrong_typ = sign(&ring, PERSON_TOKEN_TYP, &claims(now)).unwrap();
        let mut expired = claims(now);
        expired.exp = now - 10;
        let mut early = claims(now);
        early.nbf = now + 100;
        let mut other_aud = claims(now);
        other_aud.aud = "https://elsewhere".into();
        let mut other_iss = claims(now);
        other_iss.iss = "https://evil".into();
        for bad in [
            wrong_typ,
            sign(&ring, ACCESS_TOKEN_TYP, &expired).unwrap(),
            sign(&ring, ACCESS_TOKEN_TYP, &early).unwrap(),
            sign(&ring, ACCESS_TOKEN_TYP, &other_aud).unwrap(),
            sign(&ring, ACCESS_TOKEN_TYP, &other_iss).unwrap(),
            format!("{}x", &good[..good.len() - 2]),
            "a.b.c".into(),
            String::new(),
        ] {
            assert!(
                verify::<AccessClaims>(&ring, &bad, &expect).is_err(),
                "{bad}"
            );
        }
        // A token from another keyring (another gateway) does not verify.
        let (_d2, other) = keyring();
        let foreign = sign(&other, ACCESS_TOKEN_TYP, &claims(now)).unwrap();
        assert!(verify::<AccessClaims>(&ring, &foreign, &expect).is_err());
    }
}
