//! Tokens of people: patients, delegates and operators, from trusted OpenID Connect issuers
//! listed in `auth.oidc_issuers`, or from the gateway itself acting as the development issuer
//! (`consentgate token patient|operator`, refused under the production profile).
//!
//! A person's token becomes a [`Principal`]: `roles` containing `operator` makes an operator;
//! a `fhirUser` of `Patient/{id}` makes that patient; `RelatedPerson/{id}` makes a delegate
//! who may do nothing until `auth::bearer` reads their delegation in force (on every
//! request, so a revocation holds from the next one; none on file is refused there).
//! Anything else (no claim at all, another type) is refused.

use std::sync::Arc;

use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;

use super::jwks_fetch::JwksFetcher;
use super::tokens::{PersonClaims, TokenError};
use super::{Principal, clients};
use crate::config::{AuthSettings, OidcIssuer};

/// Where an issuer's keys come from.
#[derive(Debug, Clone)]
enum KeySource {
    /// Read once at start.
    File(Arc<JwkSet>),
    /// Fetched and cached.
    Url(String),
}

/// The configured OpenID Connect issuers with their keys.
#[derive(Debug, Clone, Default)]
pub struct PersonIssuers {
    issuers: Vec<(OidcIssuer, KeySource)>,
}

impl PersonIssuers {
    /// Loads the issuers' JWKS files; URLs are fetched on first use.
    pub fn load(settings: &AuthSettings) -> anyhow::Result<PersonIssuers> {
        let mut issuers = Vec::new();
        for issuer in &settings.oidc_issuers {
            let source = if issuer.jwks_url.is_empty() {
                let text = std::fs::read_to_string(&issuer.jwks_file).map_err(|e| {
                    anyhow::anyhow!("auth.oidc_issuers: {}: {e}", issuer.jwks_file.display())
                })?;
                let set: JwkSet = serde_json::from_str(&text).map_err(|_| {
                    anyhow::anyhow!(
                        "auth.oidc_issuers: {} is not a JWKS",
                        issuer.jwks_file.display()
                    )
                })?;
                KeySource::File(Arc::new(set))
            } else {
                KeySource::Url(issuer.jwks_url.clone())
            };
            issuers.push((issuer.clone(), source));
        }
        Ok(PersonIssuers { issuers })
    }

    /// Verifies a token from a configured issuer and maps it to a principal.
    pub async fn verify(
        &self,
        fetcher: &JwksFetcher,
        token: &str,
        skew_secs: u64,
    ) -> Result<(Principal, i64), TokenError> {
        let reject = |why: &str| {
            tracing::debug!(check = why, "person token refused");
            TokenError
        };
        let claimed: Value =
            jsonwebtoken::dangerous::insecure_decode_claims(token).map_err(|_| reject("claims"))?;
        let iss = claimed
            .get("iss")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (issuer, source) = self
            .issuers
            .iter()
            .find(|(i, _)| i.issuer == iss)
            .ok_or_else(|| reject("unknown issuer"))?;
        let header = jsonwebtoken::decode_header(token).map_err(|_| reject("header"))?;
        let set = match source {
            KeySource::File(set) => set.clone(),
            KeySource::Url(url) => fetcher
                .get(url, header.kid.as_deref())
                .await
                .map_err(|_| reject("jwks fetch"))?,
        };
        let key = match &header.kid {
            Some(kid) => set.find(kid),
            None => set.keys.first(),
        }
        .ok_or_else(|| reject("no key"))?;
        if person_key_algorithm(key) != Some(header.alg) {
            return Err(reject("alg"));
        }
        let decoding = DecodingKey::from_jwk(key).map_err(|_| reject("key"))?;
        let mut validation = Validation::new(header.alg);
        validation.leeway = skew_secs;
        validation.validate_nbf = true;
        validation.set_issuer(&[&issuer.issuer]);
        validation.set_audience(&[&issuer.audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        let claims = jsonwebtoken::decode::<Value>(token, &decoding, &validation)
            .map_err(|e| reject(&e.to_string()))?
            .claims;
        let person = PersonClaims {
            iss: iss.to_string(),
            sub: claims["sub"].as_str().unwrap_or_default().to_string(),
            aud: issuer.audience.clone(),
            exp: claims["exp"].as_i64().unwrap_or_default(),
            iat: claims["iat"].as_i64().unwrap_or_default(),
            jti: claims["jti"].as_str().unwrap_or_default().to_string(),
            fhir_user: claims[issuer.fhir_user_claim.as_str()]
                .as_str()
                .map(str::to_string),
            roles: claims[issuer.roles_claim.as_str()]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default(),
        };
        let exp = person.exp;
        principal_of(&person)
            .map(|p| (p, exp))
            .ok_or_else(|| reject("no role"))
    }
}

/// The algorithm a person-token key signs with: as client keys, plus RS256 (the OpenID
/// Connect default) for RSA keys that do not name another.
fn person_key_algorithm(key: &Jwk) -> Option<Algorithm> {
    match (&key.algorithm, key.common.key_algorithm) {
        (AlgorithmParameters::RSA(_), None | Some(KeyAlgorithm::RS256)) => Some(Algorithm::RS256),
        _ => clients::key_algorithm(key),
    }
}

/// The principal a person's claims make: operator by role, else a patient or an (as yet
/// unresolved) delegate by `fhirUser`.
pub fn principal_of(person: &PersonClaims) -> Option<Principal> {
    if person.roles.iter().any(|r| r == "operator") {
        return Some(Principal::Operator {
            subject: person.sub.clone(),
        });
    }
    let (ty, id) = person.fhir_user.as_deref()?.split_once('/')?;
    if !crate::records::validate::is_valid_id(id) {
        return None;
    }
    match ty {
        "Patient" => Some(Principal::Patient {
            patient_id: id.to_string(),
            subject: person.sub.clone(),
        }),
        "RelatedPerson" => Some(Principal::Delegate(Box::new(
            crate::delegation::Delegate::unresolved(id, &person.sub),
        ))),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn person(fhir_user: Option<&str>, roles: &[&str]) -> PersonClaims {
        PersonClaims {
            iss: "i".into(),
            sub: "s".into(),
            aud: "a".into(),
            exp: 0,
            iat: 0,
            jti: "j".into(),
            fhir_user: fhir_user.map(str::to_string),
            roles: roles.iter().map(|r| r.to_string()).collect(),
        }
    }

    #[test]
    fn principals() {
        assert_eq!(
            principal_of(&person(Some("Patient/p1"), &[])),
            Some(Principal::Patient {
                patient_id: "p1".into(),
                subject: "s".into()
            })
        );
        assert!(matches!(
            principal_of(&person(None, &["operator"])),
            Some(Principal::Operator { .. })
        ));
        assert_eq!(
            principal_of(&person(Some("RelatedPerson/r1"), &[])),
            Some(Principal::Delegate(Box::new(
                crate::delegation::Delegate::unresolved("r1", "s")
            )))
        );
        for (user, roles) in [
            (Some("RelatedPerson/bad id"), vec![]),
            (None, vec!["patient"]),
            (Some("Patient/bad id"), vec![]),
            (Some("Practitioner/x"), vec![]),
        ] {
            assert_eq!(principal_of(&person(user, &roles)), None, "{user:?}");
        }
    }
}
