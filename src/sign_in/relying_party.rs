//! The patient page as an OpenID Connect relying party: the authorization code flow with
//! PKCE (S256) and a nonce, against one of `auth.oidc_issuers` or, under the development
//! profile, the gateway's own issuer ([`super::dev_issuer`]).
//!
//! [`start`] stores what the callback needs (hashed state, the browser binding, nonce, code
//! verifier, redirect URI) for [`SIGN_IN_LIFETIME_SECS`] and names the authorization URL.
//! [`finish`] takes that row exactly once (a replayed or forged callback finds nothing),
//! checks that the callback arrives in the browser that started (the binding cookie, so
//! nobody can sign a victim in to the attacker's account), exchanges the code (the own
//! issuer in-process, any other over HTTPS through the outbound guard), verifies the
//! id_token with the same checks as a person's bearer token plus the nonce, and admits
//! only a patient.
//!
//! An issuer's endpoints come from its entry, or from its discovery document
//! (`{issuer}/.well-known/openid-configuration`), fetched through the outbound guard.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

use super::dev_issuer::{self, PAGE_CLIENT_ID, TokenRequest};
use super::session::SignedIn;
use super::{MICROS, hashed, pkce_challenge, random_token, same_secret};
use crate::auth::Principal;
use crate::config::{OidcIssuer, Profile};
use crate::error::{DomainError, ErrorKind};
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::net::{OutboundClient, OutboundGuard, OutboundOptions};
use crate::store::web::{self as rows, SignInRow};
use crate::store::write_tx;

/// How long a sign-in may take, from start to callback, in seconds.
pub const SIGN_IN_LIFETIME_SECS: i64 = 600;
/// Largest discovery document or token response read.
const MAX_RESPONSE_BYTES: usize = 64 * 1024;

/// An issuer the page offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuerChoice {
    /// Its `iss`.
    pub issuer: String,
    /// What the button says.
    pub name: String,
    /// Whether it is the gateway's own development issuer.
    pub development: bool,
}

/// The issuers the sign-in page offers: the configured ones, and the development issuer
/// first unless the production profile is active.
pub fn issuers(gateway: &Gateway) -> Vec<IssuerChoice> {
    let own = dev_issuer::enabled(gateway).then(|| IssuerChoice {
        issuer: dev_issuer::issuer(gateway),
        name: "Demo sign-in (development issuer)".into(),
        development: true,
    });
    own.into_iter()
        .chain(
            gateway
                .settings
                .auth
                .oidc_issuers
                .iter()
                .map(|i| IssuerChoice {
                    issuer: i.issuer.clone(),
                    name: if i.name.is_empty() {
                        url::Url::parse(&i.issuer)
                            .ok()
                            .and_then(|u| u.host_str().map(str::to_string))
                            .unwrap_or_else(|| i.issuer.clone())
                    } else {
                        i.name.clone()
                    },
                    development: false,
                }),
        )
        .collect()
}

/// Why the page cannot sign anyone in, if it cannot: production without a configured issuer.
pub fn unavailable_reason(gateway: &Gateway) -> Option<&'static str> {
    (gateway.settings.profile == Profile::Production
        && gateway.settings.auth.oidc_issuers.is_empty())
    .then_some(
        "Sign-in is not set up: this gateway runs the production profile, which refuses the \
         development issuer, and trusts no OpenID Connect issuer. An operator must configure \
         auth.oidc_issuers.",
    )
}

/// A sign-in just started.
#[derive(Debug, Clone)]
pub struct Started {
    /// Where to send the browser.
    pub authorize_url: String,
    /// The value of the binding cookie to set in the browser.
    pub binding: String,
}

fn configured<'a>(gateway: &'a Gateway, iss: &str) -> Option<&'a OidcIssuer> {
    gateway
        .settings
        .auth
        .oidc_issuers
        .iter()
        .find(|i| i.issuer == iss)
}

fn unknown_issuer() -> DomainError {
    DomainError::invalid("unknown_issuer", "pick one of the sign-in options offered")
}

fn failed(message: &str) -> DomainError {
    DomainError::new(ErrorKind::Unauthorized, "sign_in_failed", message)
}

/// Starts a sign-in at issuer `iss`; the issuer sends the browser back to `redirect_uri`.
pub async fn start(
    gateway: &Gateway,
    iss: &str,
    redirect_uri: &str,
) -> Result<Started, DomainError> {
    let choice = issuers(gateway)
        .into_iter()
        .find(|c| c.issuer == iss)
        .ok_or_else(unknown_issuer)?;
    let (authorization_endpoint, client_id) = if choice.development {
        // Relative: the browser stays on the host it is on.
        (
            "/dev-issuer/authorize".to_string(),
            PAGE_CLIENT_ID.to_string(),
        )
    } else {
        let entry = configured(gateway, iss).ok_or_else(unknown_issuer)?;
        let (authorize, _) = endpoints(gateway, entry).await?;
        (authorize, entry.audience.clone())
    };
    let (state, binding, nonce, verifier) = (
        random_token()?,
        random_token()?,
        random_token()?,
        random_token()?,
    );
    let now = now_micros();
    let row = SignInRow {
        state_hash: hashed(&state),
        binding_hash: hashed(&binding),
        issuer: choice.issuer,
        nonce: nonce.clone(),
        verifier: verifier.clone(),
        redirect_uri: redirect_uri.to_string(),
        created: now,
        expires: now + SIGN_IN_LIFETIME_SECS * MICROS,
    };
    gateway
        .store
        .run(move |conn| write_tx(conn, |conn| rows::insert_sign_in(conn, &row)))
        .await?;
    let mut query = form_urlencoded::Serializer::new(String::new());
    query
        .append_pair("response_type", "code")
        .append_pair("client_id", &client_id)
        .append_pair("redirect_uri", redirect_uri)
        .append_pair("scope", "openid fhirUser")
        .append_pair("state", &state)
        .append_pair("nonce", &nonce)
        .append_pair("code_challenge", &pkce_challenge(&verifier))
        .append_pair("code_challenge_method", "S256");
    let separator = if authorization_endpoint.contains('?') {
        '&'
    } else {
        '?'
    };
    Ok(Started {
        authorize_url: format!("{authorization_endpoint}{separator}{}", query.finish()),
        binding,
    })
}

/// Finishes a sign-in: `state` and `code` from the callback, `binding` from the browser's
/// cookie. Returns who signed in.
pub async fn finish(
    gateway: &Gateway,
    state: &str,
    code: &str,
    binding: Option<&str>,
) -> Result<SignedIn, DomainError> {
    if state.is_empty() || state.len() > 128 || code.is_empty() || code.len() > 4096 {
        return Err(failed("the sign-in answer is incomplete; start again"));
    }
    let state_hash = hashed(state);
    let row = gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                rows::take_sign_in(conn, &state_hash, now_micros())
            })
        })
        .await?
        .ok_or_else(|| failed("this sign-in has expired or was already used; start again"))?;
    let bound = binding.is_some_and(|b| same_secret(&hashed(b), &row.binding_hash));
    if !bound {
        return Err(failed(
            "this sign-in was started in another browser; start again",
        ));
    }
    let (principal, nonce) = if row.issuer == dev_issuer::issuer(gateway) {
        let tokens = dev_issuer::exchange(
            gateway,
            TokenRequest {
                grant_type: "authorization_code".into(),
                code: code.to_string(),
                redirect_uri: row.redirect_uri.clone(),
                client_id: PAGE_CLIENT_ID.into(),
                code_verifier: row.verifier.clone(),
            },
        )
        .await
        .map_err(|e| failed(e.description))?;
        dev_issuer::verify_id_token(gateway, &tokens.id_token, PAGE_CLIENT_ID)?
    } else {
        let entry = configured(gateway, &row.issuer).ok_or_else(unknown_issuer)?;
        let id_token = exchange_remote(gateway, entry, &row, code).await?;
        let (principal, _) = gateway
            .auth
            .people
            .verify(
                &gateway.auth.fetcher,
                &id_token,
                gateway.settings.auth.clock_skew_secs,
            )
            .await
            .map_err(|_| failed("the issuer's id_token did not verify"))?;
        let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&id_token)
            .map_err(|_| failed("the issuer's id_token did not verify"))?;
        // Verified above; `iss` must be the issuer this sign-in went to (no mix-up).
        if claims["iss"].as_str() != Some(row.issuer.as_str()) {
            return Err(failed("the id_token comes from another issuer"));
        }
        let nonce = claims["nonce"].as_str().unwrap_or_default().to_string();
        (principal, nonce)
    };
    if !same_secret(&nonce, &row.nonce) {
        return Err(failed("the id_token does not carry this sign-in's nonce"));
    }
    match principal {
        Principal::Patient {
            patient_id,
            subject,
        } => Ok(SignedIn {
            patient: PatientId::parse(&patient_id).map_err(|_| failed("no patient id"))?,
            subject,
            issuer: row.issuer,
        }),
        _ => Err(DomainError::forbidden(
            "not_a_patient",
            "this page is for patients; the account signed in is not one",
        )),
    }
}

/// The issuer's authorization and token endpoints: configured, or discovered.
async fn endpoints(gateway: &Gateway, entry: &OidcIssuer) -> Result<(String, String), DomainError> {
    if !entry.authorization_endpoint.is_empty() && !entry.token_endpoint.is_empty() {
        return Ok((
            entry.authorization_endpoint.clone(),
            entry.token_endpoint.clone(),
        ));
    }
    let url = format!(
        "{}/.well-known/openid-configuration",
        entry.issuer.trim_end_matches('/')
    );
    let client = outbound(gateway)?;
    let request = client
        .request(reqwest::Method::GET, &url)
        .map_err(|_| unreachable_issuer())?;
    let document = read_json(request).await?;
    let field = |configured: &str, name: &str| -> Result<String, DomainError> {
        if !configured.is_empty() {
            return Ok(configured.to_string());
        }
        document[name]
            .as_str()
            .filter(|u| u.starts_with("https://"))
            .map(str::to_string)
            .ok_or_else(|| {
                DomainError::unavailable(
                    "issuer_misconfigured",
                    "the issuer's discovery document lacks an https endpoint",
                )
            })
    };
    Ok((
        field(&entry.authorization_endpoint, "authorization_endpoint")?,
        field(&entry.token_endpoint, "token_endpoint")?,
    ))
}

fn unreachable_issuer() -> DomainError {
    DomainError::unavailable(
        "issuer_unreachable",
        "the sign-in service cannot be reached now",
    )
}

/// Posts the code to the issuer's token endpoint; returns the id_token.
async fn exchange_remote(
    gateway: &Gateway,
    entry: &OidcIssuer,
    row: &SignInRow,
    code: &str,
) -> Result<String, DomainError> {
    let (_, token_endpoint) = endpoints(gateway, entry).await?;
    let mut form = vec![
        ("grant_type", "authorization_code".to_string()),
        ("code", code.to_string()),
        ("redirect_uri", row.redirect_uri.clone()),
        ("client_id", entry.audience.clone()),
        ("code_verifier", row.verifier.clone()),
    ];
    if !entry.client_secret_file.as_os_str().is_empty() {
        let secret = std::fs::read_to_string(&entry.client_secret_file).map_err(|_| {
            DomainError::internal("auth.oidc_issuers: the client_secret_file cannot be read")
        })?;
        form.push(("client_secret", secret.trim().to_string()));
    }
    let client = outbound(gateway)?;
    let request = client
        .request(reqwest::Method::POST, &token_endpoint)
        .map_err(|_| unreachable_issuer())?
        .header("accept", "application/json")
        .form(&form);
    let answer = read_json(request).await?;
    answer["id_token"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| failed("the issuer did not return an id_token"))
}

async fn read_json(request: reqwest::RequestBuilder) -> Result<Value, DomainError> {
    let response = request.send().await.map_err(|_| unreachable_issuer())?;
    let ok = response.status().is_success();
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|_| unreachable_issuer())?;
        if body.len() + chunk.len() > MAX_RESPONSE_BYTES {
            return Err(failed("the issuer's answer is too large"));
        }
        body.extend_from_slice(&chunk);
    }
    if !ok {
        return Err(failed("the issuer refused the sign-in"));
    }
    serde_json::from_slice(&body).map_err(|_| failed("the issuer's answer is not JSON"))
}

/// An HTTPS client for issuers: the Mozilla roots plus `auth.jwks_ca_file`, through the
/// outbound guard. Built per sign-in, which is rare and rate-limited.
fn outbound(gateway: &Gateway) -> Result<OutboundClient, DomainError> {
    let settings = &gateway.settings;
    let build = || -> anyhow::Result<OutboundClient> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !settings.auth.jwks_ca_file.as_os_str().is_empty() {
            for cert in CertificateDer::pem_file_iter(&settings.auth.jwks_ca_file)? {
                roots.add(cert?)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let timeout = Duration::from_secs(settings.auth.jwks_fetch_timeout_secs.max(1));
        Ok(OutboundClient::new(
            OutboundGuard::from_settings(&settings.outbound)?,
            OutboundOptions {
                tls,
                connect_timeout: timeout,
                timeout,
            },
        )?)
    };
    build().map_err(|e| DomainError::internal(format!("building the issuer client: {e}")))
}
