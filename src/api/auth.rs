//! Authentication extractors. Every protected handler takes one of them, so no handler can
//! forget the check:
//!
//! - [`Caller`]: any verified caller (client, patient, delegate or operator); a delegate only
//!   on the routes `api::delegates` opens to its delegation;
//! - [`Operator`]: an operator;
//! - [`Reader`]: an operator or a patient (patients reach only their own records);
//! - [`ClientCaller`]: a recipient client with a gateway access token;
//! - [`ReadCaller`]: as [`Caller`], for the FHIR read, search and `$everything` routes only.
//!
//! A client's token is checked on every request against the database (client still
//! registered, token not revoked), so a removal or revocation holds from the next request on
//! every instance, even when the token's signature check comes from the cache. Failures answer
//! 401 with `WWW-Authenticate` and say nothing about which check failed. [`ReadCaller`] leaves
//! that check of a recipient client to the release, which makes it in the same database trip
//! as its reads (`release::context`): one blocking-pool hop per request instead of two.
//!
//! Failed bearer tokens are counted per source address ([`crate::ratelimit`]); an address
//! that spent its allowance gets 429 with `Retry-After` for every bearer request, before
//! any verification, until the window passes.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::AUTHORIZATION;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use futures_util::future::LocalBoxFuture;

use super::AppState;
use super::error::ApiError;
use super::throttle::{rate_limits, source_address};
use crate::auth::clients::Role;
use crate::auth::tokens::AccessClaims;
use crate::auth::{Principal, bearer};
use crate::error::ErrorKind;

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

/// Any verified caller of `GET /fhir/{type}/{id}`, `GET /fhir/{type}` and `$everything`. As
/// [`Caller`], except that a recipient client's registration and token revocation are not
/// yet checked against the database: its claims must go only to `release::{read, search,
/// everything}`, which check both in their one database trip before reading anything. A
/// data source (which these routes refuse) is checked here, so it is refused as before.
#[derive(Debug, Clone)]
pub struct ReadCaller(pub Principal);

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

/// Verifies a bearer token into a principal ([`crate::auth::bearer::authenticate`]).
pub async fn authenticate(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    bearer::authenticate(state, token)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Unauthorized => ApiError::unauthorized(),
            _ => e.into(),
        })
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
        let verified = verify(req, Check::Always);
        Box::pin(async move { verified.await.map(Caller) })
    }
}

impl FromRequest for ReadCaller {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let verified = verify(req, Check::LeaveRecipientsToRelease);
        Box::pin(async move { verified.await.map(ReadCaller) })
    }
}

/// Whether the bearer check asks the database about a client itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Check {
    Always,
    LeaveRecipientsToRelease,
}

/// The bearer check of `req`: throttling, verification, the delegate's route grant.
fn verify(req: &HttpRequest, check: Check) -> LocalBoxFuture<'static, Result<Principal, ApiError>> {
    let state = state_of(req);
    let token = bearer(req);
    // The route's pattern only matters to a delegate (`delegates::admit`); working it out
    // walks the route table's regular expressions, so it is not done for anyone else.
    let request = req.clone();
    let limits = rate_limits(req);
    let source = limits.as_ref().and_then(|l| source_address(req, l));
    Box::pin(async move {
        let state = state?;
        let token = token.ok_or_else(ApiError::unauthorized)?;
        let throttled =
            |t: crate::ratelimit::Throttled| ApiError::too_many_requests(t.retry_after_secs());
        if let Some(limits) = &limits {
            limits.check_bearer(source).map_err(throttled)?;
        }
        let verified = match check {
            Check::Always => authenticate(&state, &token).await,
            Check::LeaveRecipientsToRelease => verify_deferring_recipients(&state, &token).await,
        };
        match verified {
            Ok(principal) => {
                if matches!(principal, Principal::Delegate(_)) {
                    let pattern = request.match_pattern();
                    super::delegates::admit(&principal, request.method(), pattern.as_deref())?;
                }
                Ok(principal)
            }
            Err(e) if e.status == StatusCode::UNAUTHORIZED => {
                if let Some(limits) = &limits {
                    limits.record_failed_bearer(source).map_err(throttled)?;
                }
                Err(e)
            }
            Err(e) => Err(e),
        }
    })
}

/// [`authenticate`], leaving a recipient client's database check to the release.
async fn verify_deferring_recipients(state: &AppState, token: &str) -> Result<Principal, ApiError> {
    let principal = bearer::verify_deferring_client(state, token)
        .await
        .map_err(|e| match e.kind {
            ErrorKind::Unauthorized => ApiError::unauthorized(),
            _ => e.into(),
        })?;
    match &principal {
        Principal::Client(claims) if Role::parse(&claims.role) == Some(Role::DataSource) => {
            authenticate(state, token).await
        }
        _ => Ok(principal),
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
    // The route table (`api::delegates`) has already checked the delegation's grant.
    Principal::Delegate(d) => Some(Reader {
        only_patient: Some(d.patient_id.clone()),
        principal: p,
    }),
    Principal::Client(_) => None,
});

narrowed_extractor!(ClientCaller, |p| match p {
    Principal::Client(claims) => Some(ClientCaller(*claims)),
    _ => None,
});
