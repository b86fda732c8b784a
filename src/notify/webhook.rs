//! A patient's webhook: which URLs are accepted, the shared secret, and the signature a
//! receiver checks. Pure; the worker does the sending.
//!
//! The receiver computes `HMAC-SHA256(key = the secret's UTF-8 bytes, message = the raw
//! request body)`, hex-encodes it in lower case and compares it, in constant time, with the
//! part of [`SIGNATURE_HEADER`] after `sha256=`. [`DELIVERY_HEADER`] carries the
//! notification id, the same on every retry, so a receiver that keeps the ids it has seen
//! handles each notification once.

use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

/// `sha256=<lower-case hex HMAC-SHA256 of the body>`.
pub const SIGNATURE_HEADER: &str = "X-Consentgate-Signature";
/// The notification id: the same on every attempt, for idempotent receivers.
pub const DELIVERY_HEADER: &str = "X-Consentgate-Delivery";
/// The notification kind (`break_glass`, `disclosure`, `access_request`).
pub const EVENT_HEADER: &str = "X-Consentgate-Event";
/// The 1-based attempt number (not signed; informational).
pub const ATTEMPT_HEADER: &str = "X-Consentgate-Attempt";

/// Longest accepted webhook URL, in bytes.
pub const MAX_URL_BYTES: usize = 2048;
/// Random bytes in a secret: the hash's output length, the least RFC 2104 recommends.
const SECRET_BYTES: usize = 32;
/// Prefix that makes a leaked secret recognisable to secret scanners.
const SECRET_PREFIX: &str = "cgwhsec_";

/// Why a webhook URL was refused; the message never echoes the URL.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// Not an absolute URL.
    #[error("the webhook url is not an absolute URL")]
    Malformed,
    /// Not `https`.
    #[error("the webhook url must use https")]
    NotHttps,
    /// Carries a user name or password, which would be stored and sent in clear.
    #[error("the webhook url must not carry credentials")]
    Credentials,
    /// Carries a `#fragment`, which is never sent and suggests a mistake.
    #[error("the webhook url must not have a fragment")]
    Fragment,
    /// Longer than [`MAX_URL_BYTES`].
    #[error("the webhook url is longer than 2048 bytes")]
    TooLong,
    /// Its host is a special-purpose address (loopback, private, ...) the gateway must not
    /// call; a name is checked again each time it is resolved for a delivery.
    #[error("the webhook url names a {} address, which the gateway does not call", .0.code())]
    ForbiddenAddress(crate::net::AddressClass),
}

impl UrlError {
    /// The stable code of this refusal.
    pub fn code(self) -> &'static str {
        match self {
            Self::ForbiddenAddress(_) => crate::net::ADDRESS_REFUSED,
            _ => "invalid_webhook_url",
        }
    }
}

/// [`validate_url`], then the address guard on an IP-literal host.
pub fn validate_url_with(
    text: &str,
    guard: &crate::net::OutboundGuard,
) -> Result<String, UrlError> {
    let normalised = validate_url(text)?;
    let url = reqwest::Url::parse(&normalised).map_err(|_| UrlError::Malformed)?;
    match guard.check_url(&url) {
        Ok(()) => Ok(normalised),
        Err(refused) => Err(refused
            .class
            .map_or(UrlError::Malformed, UrlError::ForbiddenAddress)),
    }
}

/// Checks a webhook URL and returns it normalised (as the HTTP client will send it).
pub fn validate_url(text: &str) -> Result<String, UrlError> {
    if text.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    let url = reqwest::Url::parse(text.trim()).map_err(|_| UrlError::Malformed)?;
    if url.scheme() != "https" {
        return Err(UrlError::NotHttps);
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(UrlError::Malformed);
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(UrlError::Credentials);
    }
    if url.fragment().is_some() {
        return Err(UrlError::Fragment);
    }
    let normalised = url.to_string();
    if normalised.len() > MAX_URL_BYTES {
        return Err(UrlError::TooLong);
    }
    Ok(normalised)
}

/// A fresh random secret, shown to the patient once.
pub fn new_secret() -> Result<String, ring::error::Unspecified> {
    let mut bytes = [0u8; SECRET_BYTES];
    SystemRandom::new().fill(&mut bytes)?;
    Ok(format!("{SECRET_PREFIX}{}", hex(&bytes)))
}

/// The [`SIGNATURE_HEADER`] value for `body` under `secret`.
pub fn signature(secret: &str, body: &[u8]) -> String {
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    format!("sha256={}", hex(hmac::sign(&key, body).as_ref()))
}

/// Checks a [`SIGNATURE_HEADER`] value in constant time, as a receiver would.
pub fn verify(secret: &str, body: &[u8], header: &str) -> bool {
    let Some(given) = header.strip_prefix("sha256=") else {
        return false;
    };
    let Some(tag) = unhex(given) else {
        return false;
    };
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret.as_bytes());
    hmac::verify(&key, body, &tag).is_ok()
}

/// Lower-case hex.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}
