//! Verifying a bearer token into a [`Principal`]: a gateway access token (a recipient client),
//! a development person token, or a token of a trusted OpenID Connect issuer.
//!
//! Signature checks are cached by token (`Authority::cached`), but a client's token is checked
//! on every request against the database (client still registered, token not revoked), so a
//! removal or revocation holds from the next request on every instance; so is a delegate's
//! delegation (`delegation::signin`). A refusal says nothing about which check failed.

use serde_json::Value;

use super::tokens::{self, AccessClaims, Expectation, PersonClaims};
use super::{Principal, now_secs, people};
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::store::{DbConn, StoreError, identity};

/// The refusal of a bearer token: 401, whatever the reason.
fn refused() -> DomainError {
    DomainError::new(
        ErrorKind::Unauthorized,
        "unauthorized",
        "a valid bearer token is required",
    )
}

/// Verifies `token` (signature, claims, registration, revocation). A refusal is
/// [`ErrorKind::Unauthorized`]; a database that cannot answer is `Unavailable`.
pub async fn authenticate(gateway: &Gateway, token: &str) -> Result<Principal, DomainError> {
    let principal = verify_deferring_client(gateway, token).await?;
    if let Principal::Client(claims) = &principal {
        let (client, jti) = (claims.client_id.clone(), claims.jti.clone());
        let live = gateway
            .store
            .run(move |conn| client_is_live(conn, &client, &jti))
            .await?;
        if !live {
            return Err(refused());
        }
    }
    Ok(principal)
}

/// [`authenticate`] but for a client's database check (client still registered, token not
/// revoked), which the caller makes in a database trip of its own with
/// [`client_is_live`]: the release does, in the one trip that also reads the resource and
/// the consents (`release::context`). Every other check is made here.
pub async fn verify_deferring_client(
    gateway: &Gateway,
    token: &str,
) -> Result<Principal, DomainError> {
    let auth = &gateway.auth;
    if token.len() > gateway.settings.auth.max_token_bytes {
        return Err(refused());
    }
    let now = now_secs();
    let principal = match auth.cached(token, now) {
        Some(p) => p,
        None => {
            let (principal, exp) = verify_fresh(gateway, token).await?;
            auth.remember(token, &principal, exp);
            principal
        }
    };
    // A delegate's delegation is read afresh on every request (never from the cache), so a
    // revocation holds from the next request.
    Ok(match principal {
        Principal::Delegate(d) => Principal::Delegate(Box::new(
            crate::delegation::signin::resolve(gateway, *d).await?,
        )),
        other => other,
    })
}

/// Whether a client's token still holds: the client is registered and the token (`jti`)
/// not revoked. Read afresh every time, so a removal or revocation on any instance holds
/// from the next request.
pub fn client_is_live(conn: &mut DbConn, client_id: &str, jti: &str) -> Result<bool, StoreError> {
    Ok(identity::live_requester(conn, client_id, jti)?.is_some())
}

/// Checks a token that is not in the cache; returns the principal and the token's expiry.
async fn verify_fresh(gateway: &Gateway, token: &str) -> Result<(Principal, i64), DomainError> {
    let auth = &gateway.auth;
    let skew = gateway.settings.auth.clock_skew_secs;
    let header = jsonwebtoken::decode_header(token).map_err(|_| refused())?;
    let typ = header.typ.as_deref().unwrap_or("JWT").to_ascii_lowercase();
    if typ == tokens::ACCESS_TOKEN_TYP {
        let claims: AccessClaims = tokens::verify(
            &auth.keyring,
            token,
            &Expectation {
                typ: tokens::ACCESS_TOKEN_TYP,
                issuer: &auth.issuer,
                audience: &auth.fhir_audience,
                skew_secs: skew,
                allow_expired: false,
            },
        )
        .map_err(|_| refused())?;
        let exp = claims.exp;
        return Ok((Principal::Client(Box::new(claims)), exp));
    }
    let issuer: Option<String> = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string));
    if issuer.as_deref() == Some(auth.issuer.as_str()) {
        if !auth.dev_people_tokens {
            return Err(refused());
        }
        let person: PersonClaims = tokens::verify(
            &auth.keyring,
            token,
            &Expectation {
                typ: tokens::PERSON_TOKEN_TYP,
                issuer: &auth.issuer,
                audience: tokens::PERSON_AUDIENCE,
                skew_secs: skew,
                allow_expired: false,
            },
        )
        .map_err(|_| refused())?;
        let principal = people::principal_of(&person).ok_or_else(refused)?;
        return Ok((principal, person.exp));
    }
    auth.people
        .verify(&auth.fetcher, token, skew)
        .await
        .map_err(|_| refused())
}
