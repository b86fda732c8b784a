//! The gateway's own OpenID Connect issuer for development (`/dev-issuer/...`): a person
//! picks a demo patient on its sign-in page and the relying party gets an authorization
//! code, then an id_token with `fhirUser` = `Patient/{id}`, signed with the gateway's
//! keyring (EdDSA, keys in `/.well-known/jwks.json`).
//!
//! It is a real authorization server for the code flow with PKCE: codes are random, stored
//! hashed, good once and for [`CODE_LIFETIME_SECS`]; the token request must carry the
//! verifier whose S256 challenge the authorization request named, and the same client and
//! redirect URI. It never asks for a password (anyone reaching it may be any demo patient),
//! so it exists only under the development profile: under production every function here
//! refuses.
//!
//! Redirect URIs: https (or http) on a loopback host or on the gateway's own host, so it can
//! serve this gateway's page and another development gateway on the same machine, never a
//! site elsewhere.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::{MICROS, hashed, is_pkce_verifier, pkce_challenge, random_token};
use crate::auth::tokens::{self, Expectation, PersonClaims};
use crate::auth::{Principal, now_secs, people};
use crate::config::Profile;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::store::web::{self as rows, DevRequestRow};
use crate::store::write_tx;

/// The patient page's client id at its own issuer (also the id_token's `aud`).
pub const PAGE_CLIENT_ID: &str = "consentgate-page";
/// How long the sign-in page may stay open, in seconds.
const REQUEST_LIFETIME_SECS: i64 = 600;
/// How long an authorization code is good, in seconds.
pub const CODE_LIFETIME_SECS: i64 = 60;
/// Lifetime of the id_token and the access token, in seconds.
const TOKEN_LIFETIME_SECS: i64 = 300;
/// Most patients the sign-in page lists.
pub const LISTED_PATIENTS: usize = 50;
/// Longest `state` and `nonce` accepted.
const MAX_PARAM_LEN: usize = 512;

/// The issuer identifier: `{base_url}/dev-issuer`.
pub fn issuer(gateway: &Gateway) -> String {
    format!("{}/dev-issuer", gateway.base_url)
}

/// Whether the development issuer runs (not under the production profile).
pub fn enabled(gateway: &Gateway) -> bool {
    gateway.settings.profile != Profile::Production
}

fn refuse_in_production(gateway: &Gateway) -> Result<(), DomainError> {
    if enabled(gateway) {
        Ok(())
    } else {
        Err(DomainError::not_found(
            "no_dev_issuer",
            "the development issuer is off under the production profile",
        ))
    }
}

/// The discovery document (OpenID Connect Discovery 1.0).
pub fn discovery(gateway: &Gateway) -> Result<Value, DomainError> {
    refuse_in_production(gateway)?;
    let iss = issuer(gateway);
    Ok(json!({
        "issuer": iss,
        "authorization_endpoint": format!("{iss}/authorize"),
        "token_endpoint": format!("{iss}/token"),
        "jwks_uri": format!("{}/.well-known/jwks.json", gateway.base_url),
        "response_types_supported": ["code"],
        "grant_types_supported": ["authorization_code"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["EdDSA"],
        "scopes_supported": ["openid", "fhirUser"],
        "claims_supported": ["iss", "sub", "aud", "exp", "iat", "nonce", "fhirUser"],
        "code_challenge_methods_supported": ["S256"],
        "token_endpoint_auth_methods_supported": ["none"],
    }))
}

/// An authorization request as the relying party sends it.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct AuthorizeRequest {
    /// Must be `code`.
    #[serde(default)]
    pub response_type: String,
    /// The relying party.
    #[serde(default)]
    pub client_id: String,
    /// Where the code goes.
    #[serde(default)]
    pub redirect_uri: String,
    /// Echoed back.
    #[serde(default)]
    pub state: String,
    /// Put into the id_token.
    #[serde(default)]
    pub nonce: String,
    /// PKCE S256 challenge.
    #[serde(default)]
    pub code_challenge: String,
    /// Must be `S256`.
    #[serde(default)]
    pub code_challenge_method: String,
    /// Must include `openid`.
    #[serde(default)]
    pub scope: String,
}

fn bad_request(code: &'static str, message: &str) -> DomainError {
    DomainError::invalid(code, message)
}

/// Whether the development issuer sends codes to `uri`: http(s), no fragment, a loopback
/// host or the gateway's own host.
pub fn redirect_allowed(gateway: &Gateway, uri: &str) -> bool {
    let Ok(url) = url::Url::parse(uri) else {
        return false;
    };
    let own_host = url::Url::parse(&gateway.base_url)
        .ok()
        .and_then(|b| b.host_str().map(str::to_string));
    matches!(url.scheme(), "https" | "http")
        && url.fragment().is_none()
        && url.username().is_empty()
        && match url.host() {
            Some(url::Host::Domain(d)) => d == "localhost" || own_host.as_deref() == Some(d),
            Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
            Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
            None => false,
        }
}

/// Checks an authorization request and stores it; returns the id the sign-in form carries.
pub async fn authorize(gateway: &Gateway, ask: AuthorizeRequest) -> Result<String, DomainError> {
    refuse_in_production(gateway)?;
    if !redirect_allowed(gateway, &ask.redirect_uri) {
        return Err(bad_request(
            "invalid_redirect_uri",
            "redirect_uri must be an http(s) URL on this machine",
        ));
    }
    if ask.response_type != "code" {
        return Err(bad_request(
            "unsupported_response_type",
            "response_type must be code",
        ));
    }
    if !ask.scope.split(' ').any(|s| s == "openid") {
        return Err(bad_request("invalid_scope", "scope must include openid"));
    }
    if ask.code_challenge_method != "S256" || ask.code_challenge.len() != 43 {
        return Err(bad_request(
            "invalid_request",
            "PKCE is required: code_challenge with code_challenge_method S256",
        ));
    }
    let fits = |v: &str| !v.is_empty() && v.len() <= MAX_PARAM_LEN;
    if !fits(&ask.client_id) || !fits(&ask.state) || !fits(&ask.nonce) {
        return Err(bad_request(
            "invalid_request",
            "client_id, state and nonce are required (at most 512 characters each)",
        ));
    }
    let now = now_micros();
    let row = DevRequestRow {
        id: random_token()?,
        client_id: ask.client_id,
        redirect_uri: ask.redirect_uri,
        state: ask.state,
        nonce: ask.nonce,
        code_challenge: ask.code_challenge,
        fhir_user: None,
        code_hash: None,
        created: now,
        expires: now + REQUEST_LIFETIME_SECS * MICROS,
    };
    let id = row.id.clone();
    gateway
        .store
        .run(move |conn| write_tx(conn, |conn| rows::insert_dev_request(conn, &row)))
        .await?;
    Ok(id)
}

/// A patient the sign-in page offers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PatientChoice {
    /// The Patient id.
    pub id: String,
    /// The name as the record gives it.
    pub name: String,
    /// The birth date, when recorded.
    pub birth_date: Option<String>,
}

/// The patients the sign-in page lists (the first [`LISTED_PATIENTS`]).
pub async fn patients(gateway: &Gateway) -> Result<Vec<PatientChoice>, DomainError> {
    refuse_in_production(gateway)?;
    let limits = gateway.settings.limits;
    let base = gateway.fhir_base();
    let bundle = gateway
        .store
        .run(move |conn| {
            let query = format!("_count={LISTED_PATIENTS}");
            let search = crate::records::search::parse("Patient", &query, &limits)?;
            crate::records::search::run(conn, &search, &base)
        })
        .await?;
    Ok(bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| {
            let p = &e["resource"];
            Some(PatientChoice {
                id: p["id"].as_str()?.to_string(),
                name: display_name(p),
                birth_date: p["birthDate"].as_str().map(str::to_string),
            })
        })
        .collect())
}

/// "Given Family" from a Patient's first name, or "(no name)".
pub fn display_name(patient: &Value) -> String {
    let Some(name) = patient["name"].as_array().and_then(|n| n.first()) else {
        return "(no name)".into();
    };
    if let Some(text) = name["text"].as_str() {
        return text.to_string();
    }
    let mut parts: Vec<&str> = name["given"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect();
    parts.extend(name["family"].as_str());
    if parts.is_empty() {
        "(no name)".into()
    } else {
        parts.join(" ")
    }
}

/// The person picked `patient` on the sign-in page of request `id`: issues the code and
/// returns the URL to send the browser to (`redirect_uri?code=..&state=..`).
pub async fn choose(gateway: &Gateway, id: &str, patient: &str) -> Result<String, DomainError> {
    refuse_in_production(gateway)?;
    let patient = crate::ids::PatientId::parse(patient)
        .map_err(|_| bad_request("invalid_patient", "pick a patient from the list"))?;
    let code = random_token()?;
    let (key, code_hash) = (id.to_string(), hashed(&code));
    let fhir_user = patient.reference();
    let now = now_micros();
    let row = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let Some(row) = rows::open_dev_request(conn, &key, now)? else {
                    return Ok(None);
                };
                let expires = now + CODE_LIFETIME_SECS * MICROS;
                let issued = rows::issue_dev_code(conn, &key, &fhir_user, &code_hash, expires)?;
                Ok::<_, DomainError>(issued.then_some(row))
            })
        })
        .await?
        .ok_or_else(|| {
            DomainError::gone(
                "sign_in_expired",
                "this sign-in page has expired or was used; start again",
            )
        })?;
    let mut url = url::Url::parse(&row.redirect_uri)
        .map_err(|_| DomainError::internal("a stored redirect URI does not parse"))?;
    url.query_pairs_mut()
        .append_pair("code", &code)
        .append_pair("state", &row.state)
        .append_pair("iss", &issuer(gateway));
    Ok(url.into())
}

/// A token request (`application/x-www-form-urlencoded`).
#[derive(Debug, Clone, Default, Deserialize)]
pub struct TokenRequest {
    /// Must be `authorization_code`.
    #[serde(default)]
    pub grant_type: String,
    /// The code.
    #[serde(default)]
    pub code: String,
    /// As in the authorization request.
    #[serde(default)]
    pub redirect_uri: String,
    /// As in the authorization request.
    #[serde(default)]
    pub client_id: String,
    /// The PKCE verifier.
    #[serde(default)]
    pub code_verifier: String,
}

/// What the token endpoint answers.
#[derive(Debug, Clone, Serialize)]
pub struct TokenResponse {
    /// A development person token for the patient (usable as a bearer token on the API).
    pub access_token: String,
    /// `Bearer`.
    pub token_type: &'static str,
    /// Seconds.
    pub expires_in: i64,
    /// The OpenID Connect id_token.
    pub id_token: String,
}

/// An OAuth token error (RFC 6749 section 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenError {
    /// `invalid_request`, `invalid_grant`, `unsupported_grant_type`, ...
    pub error: &'static str,
    /// A sentence for the developer.
    pub description: &'static str,
}

/// The claims of the development issuer's id_token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct IdTokenClaims {
    /// `{base_url}/dev-issuer`.
    pub iss: String,
    /// The person's account.
    pub sub: String,
    /// The relying party's client id.
    pub aud: String,
    /// Expiry.
    pub exp: i64,
    /// Issue time.
    pub iat: i64,
    /// The relying party's nonce.
    pub nonce: String,
    /// `Patient/{id}`.
    #[serde(rename = "fhirUser")]
    pub fhir_user: String,
}

fn grant_error(description: &'static str) -> TokenError {
    TokenError {
        error: "invalid_grant",
        description,
    }
}

/// Exchanges a code: once, in time, with the verifier of its challenge, for the same client
/// and redirect URI.
pub async fn exchange(gateway: &Gateway, ask: TokenRequest) -> Result<TokenResponse, TokenError> {
    if !enabled(gateway) {
        return Err(TokenError {
            error: "invalid_request",
            description: "the development issuer is off under the production profile",
        });
    }
    if ask.grant_type != "authorization_code" {
        return Err(TokenError {
            error: "unsupported_grant_type",
            description: "grant_type must be authorization_code",
        });
    }
    if ask.code.is_empty() || ask.code.len() > 128 || !is_pkce_verifier(&ask.code_verifier) {
        return Err(TokenError {
            error: "invalid_request",
            description: "code and a PKCE code_verifier are required",
        });
    }
    let code_hash = hashed(&ask.code);
    let row = gateway
        .store
        .run(move |conn| write_tx(conn, |conn| rows::take_dev_code(conn, &code_hash)))
        .await
        .map_err(|_| TokenError {
            error: "temporarily_unavailable",
            description: "the database cannot answer now",
        })?
        .ok_or_else(|| grant_error("the code is unknown or was used"))?;
    if row.expires <= now_micros() {
        return Err(grant_error("the code has expired"));
    }
    if row.client_id != ask.client_id || row.redirect_uri != ask.redirect_uri {
        return Err(grant_error(
            "client_id or redirect_uri differ from the authorization request",
        ));
    }
    if pkce_challenge(&ask.code_verifier) != row.code_challenge {
        return Err(grant_error(
            "the code_verifier does not match the code_challenge",
        ));
    }
    let fhir_user = row
        .fhir_user
        .ok_or_else(|| grant_error("no one signed in"))?;
    let now = now_secs();
    let subject = format!("dev-{}", fhir_user.replace('/', "-").to_ascii_lowercase());
    let unsigned = || TokenError {
        error: "server_error",
        description: "the gateway has no signing key",
    };
    let id_token = tokens::sign(
        &gateway.auth.keyring,
        tokens::PERSON_TOKEN_TYP,
        &IdTokenClaims {
            iss: issuer(gateway),
            sub: subject.clone(),
            aud: row.client_id,
            exp: now + TOKEN_LIFETIME_SECS,
            iat: now,
            nonce: row.nonce,
            fhir_user: fhir_user.clone(),
        },
    )
    .map_err(|_| unsigned())?;
    let access_token = tokens::sign(
        &gateway.auth.keyring,
        tokens::PERSON_TOKEN_TYP,
        &PersonClaims {
            iss: gateway.auth.issuer.clone(),
            sub: subject,
            aud: tokens::PERSON_AUDIENCE.to_string(),
            exp: now + TOKEN_LIFETIME_SECS,
            iat: now,
            jti: uuid::Uuid::now_v7().to_string(),
            fhir_user: Some(fhir_user),
            roles: Vec::new(),
        },
    )
    .map_err(|_| unsigned())?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: TOKEN_LIFETIME_SECS,
        id_token,
    })
}

/// Verifies an id_token of this issuer for `client_id`; returns the principal it names and
/// its nonce.
pub fn verify_id_token(
    gateway: &Gateway,
    id_token: &str,
    client_id: &str,
) -> Result<(Principal, String), DomainError> {
    let refused = || {
        DomainError::new(
            crate::error::ErrorKind::Unauthorized,
            "sign_in_refused",
            "the id_token did not verify",
        )
    };
    let iss = issuer(gateway);
    let claims: IdTokenClaims = tokens::verify(
        &gateway.auth.keyring,
        id_token,
        &Expectation {
            typ: tokens::PERSON_TOKEN_TYP,
            issuer: &iss,
            audience: client_id,
            skew_secs: gateway.settings.auth.clock_skew_secs,
            allow_expired: false,
        },
    )
    .map_err(|_| refused())?;
    let person = PersonClaims {
        iss: claims.iss,
        sub: claims.sub,
        aud: claims.aud,
        exp: claims.exp,
        iat: claims.iat,
        jti: String::new(),
        fhir_user: Some(claims.fhir_user),
        roles: Vec::new(),
    };
    let principal = people::principal_of(&person).ok_or_else(refused)?;
    Ok((principal, claims.nonce))
}
