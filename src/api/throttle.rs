//! The HTTP side of the rate limits ([`crate::ratelimit`]): which limits an application has,
//! the client's address as they see it, and the 429 answers with `Retry-After`.

use actix_web::HttpRequest;
use actix_web::HttpResponse;
use actix_web::http::header::{CACHE_CONTROL, RETRY_AFTER};
use actix_web::web::Data;
use serde_json::json;

use crate::ratelimit::{RateLimits, Throttled};

/// The rate limits of the application, when it has them.
pub fn rate_limits(req: &HttpRequest) -> Option<Data<RateLimits>> {
    req.app_data::<Data<RateLimits>>().cloned()
}

/// The client's address as the rate limits see it (the peer, or `X-Forwarded-For` from a
/// trusted proxy).
pub fn source_address(req: &HttpRequest, limits: &RateLimits) -> Option<std::net::IpAddr> {
    let forwarded = req
        .headers()
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok());
    limits.source(req.peer_addr().map(|a| a.ip()), forwarded)
}

/// The 429 of a throttled token request: not audited one by one (a flood would flood the
/// log), counted in `consentgate_rate_limited_total`.
pub fn throttled_token(t: Throttled) -> HttpResponse {
    tracing::debug!(limit = t.limit, "token request throttled");
    HttpResponse::TooManyRequests()
        .insert_header((CACHE_CONTROL, "no-store"))
        .insert_header((RETRY_AFTER, t.retry_after_secs().to_string()))
        .json(json!({
            "error": "too_many_requests",
            "error_description": "too many token requests; retry later",
        }))
}

/// The rate limit on token requests per source address, before anything is checked: the
/// 429 to send instead, if any.
pub fn throttled_token_address(req: &HttpRequest) -> Option<HttpResponse> {
    let limits = rate_limits(req)?;
    limits
        .check_token_address(source_address(req, &limits))
        .err()
        .map(throttled_token)
}
