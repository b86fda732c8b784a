//! SMART Backend Services client assertions (`private_key_jwt`, RFC 7523), checked under
//! RFC 8725 and the SMART rules: `iss` = `sub` = the client id, `aud` = the token URL,
//! `exp` at most five minutes ahead, a `jti` (whose uniqueness the caller enforces with the
//! shared replay cache), and a signature by a key of the client's JWKS with that key's one
//! algorithm (RS384, ES384, ES256 or EdDSA).

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{DecodingKey, Validation};
use serde::Deserialize;
use serde_json::Value;

use super::clients::key_algorithm;

/// The claims the gateway reads from an assertion.
#[derive(Debug, Clone, Deserialize)]
pub struct AssertionClaims {
    /// The client id.
    pub iss: String,
    /// The client id again.
    pub sub: String,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
    /// Unique id, for the replay cache.
    pub jti: String,
    /// UDAP B2B extensions, where the purpose of use may be.
    #[serde(default)]
    pub extensions: Option<Value>,
}

impl AssertionClaims {
    /// The purpose of use from the UDAP `hl7-b2b` extension: the first of `purpose_of_use`,
    /// as a bare code or `system#code` / `urn:oid:...#code`.
    pub fn b2b_purpose(&self) -> Option<String> {
        let first = self
            .extensions
            .as_ref()?
            .get("hl7-b2b")?
            .get("purpose_of_use")?;
        let text = match first {
            Value::Array(items) => items.first()?.as_str()?,
            Value::String(s) => s.as_str(),
            _ => return None,
        };
        Some(text.rsplit('#').next().unwrap_or(text).to_string())
    }
}

/// Why an assertion was refused (for the log; the client only learns `invalid_client`).
#[derive(Debug, thiserror::Error)]
pub enum AssertionError {
    /// Not a JWT, or too large.
    #[error("malformed assertion")]
    Malformed,
    /// An algorithm outside the allow-list, or not the key's algorithm.
    #[error("algorithm not allowed")]
    Algorithm,
    /// No key of the client matches the header.
    #[error("no matching key")]
    NoKey,
    /// Signature or standard claims failed.
    #[error("assertion rejected: {0}")]
    Rejected(String),
    /// `exp` too far in the future.
    #[error("assertion lives too long")]
    TooLong,
    /// `jti` missing or oversized.
    #[error("bad jti")]
    Jti,
}

/// The client id an assertion claims to come from, read before verification so the
/// client's keys can be found. Never trusted beyond that lookup.
pub fn claimed_client_id(assertion: &str) -> Option<String> {
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(assertion).ok()?;
    claims.get("iss")?.as_str().map(str::to_string)
}

/// What the assertion must satisfy.
#[derive(Debug, Clone)]
pub struct AssertionRules<'a> {
    /// The client id.
    pub client_id: &'a str,
    /// The token endpoint URL (`aud`).
    pub token_url: &'a str,
    /// Now, seconds since the epoch.
    pub now: i64,
    /// Latest acceptable `exp`, seconds from now.
    pub max_lifetime_secs: i64,
    /// Skew tolerance, seconds.
    pub skew_secs: u64,
    /// Largest assertion in bytes.
    pub max_bytes: usize,
}

/// Verifies an assertion against the client's JWKS.
pub fn verify(
    assertion: &str,
    jwks: &JwkSet,
    rules: &AssertionRules<'_>,
) -> Result<AssertionClaims, AssertionError> {
    if assertion.len() > rules.max_bytes {
        return Err(AssertionError::Malformed);
    }
    let header = jsonwebtoken::decode_header(assertion).map_err(|_| AssertionError::Malformed)?;
    if let Some(typ) = &header.typ
        && !typ.eq_ignore_ascii_case("JWT")
    {
        return Err(AssertionError::Malformed);
    }
    // Candidate keys: the one named by kid, or (no kid) every key whose algorithm matches.
    let candidates: Vec<_> = jwks
        .keys
        .iter()
        .filter(|k| match (&header.kid, &k.common.key_id) {
            (Some(want), Some(have)) => want == have,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    if candidates.is_empty() {
        return Err(AssertionError::NoKey);
    }
    let mut last = AssertionError::Algorithm;
    for key in candidates {
        if key_algorithm(key) != Some(header.alg) {
            continue;
        }
        let decoding = DecodingKey::from_jwk(key).map_err(|_| AssertionError::NoKey)?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = rules.skew_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[rules.client_id]);
        validation.sub = Some(rules.client_id.to_string());
        validation.set_audience(&[rules.token_url]);
        validation.set_required_spec_claims(&["exp", "iss", "sub", "aud"]);
        match jsonwebtoken::decode::<AssertionClaims>(assertion, &decoding, &validation) {
            Ok(data) => {
                let claims = data.claims;
                if claims.exp > rules.now + rules.max_lifetime_secs + rules.skew_secs as i64 {
                    return Err(AssertionError::TooLong);
                }
                if claims.jti.is_empty() || claims.jti.len() > 256 {
                    return Err(AssertionError::Jti);
                }
                return Ok(claims);
            }
            Err(e) => last = AssertionError::Rejected(e.to_string()),
        }
    }
    Err(last)
}
