//! Authentication extractors. Every protected handler takes one of them, so no handler can
//! forget the check:
//!
//! - [`Caller`]: any verified caller (client, patient or operator);
//! - [`Operator`]: an operator;
//! - [`Reader`]: an operator or a patient (patients reach only their own records);
//! - [`ClientCaller`]: a recipient client with a gateway access token.
//!
//! A client's token is checked on every request against the database (client still
//! registered, token not revoked), so a removal or revocation holds from the next request on
//! every instance, even when the token's signature check comes from the cache. Failures answer
//! 401 with `WWW-Authenticate` and say nothing about which check failed.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::auth::tokens::{self, AccessClaims, Expectation, PersonClaims};
use crate::auth::{Principal, now_secs, people};
use crate::store::identity;

/// Any verified caller.
#[derive(Debug, Clone)]
pub struct Caller(pub Principal);

/// An operator.
#[derive(Debug, Clone)]
pub struct Operator {
    /// The operator's account.
    pub subject: String,
}

/// An operator, or a patient reading their own records.
#[derive(Debug, Clone)]
pub struct Reader {
    /// Who reads.
    pub principal: Principal,
    /// The one patient whose records this reader may see; `None` for an operator.
    pub only_patient: Option<String>,
}

/// A recipient client.
#[derive(Debug, Clone)]
pub struct ClientCaller(pub AccessClaims);

fn forbidden() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "forbidden",
        "this caller may not use this endpoint",
    )
}

/// The bearer token of a request, if any.
pub fn bearer(req: &HttpRequest) -> Option<String> {
    let value = req.headers().get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim().to_string())
        .filter(|t| !t.is_empty())
}

/// Verifies a bearer token into a principal (signature, claims, registration, revocation).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let auth = &state.auth;
    let settings = &state.settings.auth;
    if token.len() > settings.max_token_bytes {
        return Err(ApiError::unauthorized());
    }
    let now = now_secs();
    let principal = match auth.cached(token, now) {
        Some(p) => p,
        None => {
            let (principal, exp) = verify_fresh(state, token).await?;
            auth.remember(token, &principal, exp);
            principal
        }
    };
    if let Principal::Client(claims) = &principal {
        let (client, jti) = (claims.client_id.clone(), claims.jti.clone());
        let live = state
            .store
            .run(move |conn| {
                Ok::<_, ApiError>(
                    identity::client_is_active(conn, &client)?
                        && !identity::token_is_revoked(conn, &jti)?,
                )
            })
            .await?;
        if !live {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(principal)
}

async fn verify_fresh(state: &AppState, token: &str) -> Result<(Principal, i64), ApiError> {
    let auth = &state.auth;
    let skew = state.settings.auth.clock_skew_secs;
    let header = jsonwebtoken::decode_header(token).map_err(|_| ApiError::unauthorized())?;
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
        .map_err(|_| ApiError::unauthorized())?;
        let exp = claims.exp;
        return Ok((Principal::Client(Box::new(claims)), exp));
    }
    let issuer: Option<String> = jsonwebtoken::dangerous::insecure_decode_claims::<Value>(token)
        .ok()
        .and_then(|c| c.get("iss").and_then(Value::as_str).map(str::to_string));
    if issuer.as_deref() == Some(auth.issuer.as_str()) {
        if !auth.dev_people_tokens {
            return Err(ApiError::unauthorized());
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
        .map_err(|_| ApiError::unauthorized())?;
        let principal = people::principal_of(&person).ok_or_else(ApiError::unauthorized)?;
        return Ok((principal, person.exp));
    }
    auth.people
        .verify(&auth.fetcher, token, skew)
        .await
        .map_err(|_| ApiError::unauthorized())
}

fn state_of(req: &HttpRequest) -> Result<Data<AppState>, ApiError> {
    req.app_data::<Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::internal("application state missing"))
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let state = state_of(req);
        let token = bearer(req);
        Box::pin(async move {
            let state = state?;
            let token = token.ok_or_else(ApiError::unauthorized)?;
            authenticate(&state, &token).await.map(Caller)
        })
    }
}

macro_rules! narrowed_extractor {
    ($ty:ty, |$p:ident| $body:expr) => {
        impl FromRequest for $ty {
            type Error = ApiError;
            type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
                let caller = Caller::from_request(req, payload);
                Box::pin(async move {
                    let Caller($p) = caller.await?;
                    let narrowed: Option<$ty> = $body;
                    narrowed.ok_or_else(forbidden)
                })
            }
        }
    };
}

narrowed_extractor!(Operator, |p| match p {
    Principal::Operator { subject } => Some(Operator { subject }),
    _ => None,
});

narrowed_extractor!(Reader, |p| match &p {
    Principal::Operator { .. } => Some(Reader {
        principal: p,
        only_patient: None,
    }),
    Principal::Patient { patient_id, .. } => Some(Reader {
        only_patient: Some(patient_id.clone()),
        principal: p,
    }),
    Principal::Client(_) => None,
});

narrowed_extractor!(ClientCaller, |p| match p {
    Principal::Client(claims) => Some(ClientCaller(*claims)),
    _ => None,
});
