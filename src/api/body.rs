//! [`FhirJson`]: the extractor for FHIR request bodies, with the media type, size and
//! nesting limits applied before any handler sees the body.

use actix_web::dev::Payload;
use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use actix_web::web::{BytesMut, Data};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use futures_util::future::LocalBoxFuture;
use serde_json::Value;

use super::AppState;
use super::error::ApiError;
use crate::records::validate;

/// A parsed JSON request body that passed the configured limits.
#[derive(Debug)]
pub struct FhirJson(pub Value);

fn unsupported_media_type() -> ApiError {
    ApiError::new(
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        "unsupported_media_type",
        "send the body as application/fhir+json (or application/json)",
    )
}

fn too_large(limit: usize) -> ApiError {
    ApiError::new(
        StatusCode::PAYLOAD_TOO_LARGE,
        "body_too_large",
        format!("the request body exceeds the limit of {limit} bytes"),
    )
}

/// Whether a Content-Type names JSON the gateway reads.
fn is_json_media_type(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    essence.eq_ignore_ascii_case("application/fhir+json")
        || essence.eq_ignore_ascii_case("application/json")
}

impl FromRequest for FhirJson {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let limits = req.app_data::<Data<AppState>>().map(|s| s.settings.limits);
        let content_type = req
            .headers()
            .get(CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let declared_length = req
            .headers()
            .get(CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            let Some(limits) = limits else {
                return Err(ApiError::internal("application state missing"));
            };
            if !content_type.as_deref().is_some_and(is_json_media_type) {
                return Err(unsupported_media_type());
            }
            let limit = limits.max_body_bytes;
            if declared_length.is_some_and(|n| n > limit) {
                return Err(too_large(limit));
            }
            let mut body = BytesMut::with_capacity(declared_length.unwrap_or(8192).min(limit));
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|_| {
                    ApiError::new(
                        StatusCode::BAD_REQUEST,
                        "incomplete_body",
                        "the request body could not be read to its end",
                    )
                })?;
                if body.len() + chunk.len() > limit {
                    return Err(too_large(limit));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(FhirJson(validate::parse_body(&body, &limits)?))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::is_json_media_type;

    #[test]
    fn media_types() {
        for ok in [
            "application/fhir+json",
            "application/fhir+json; charset=utf-8",
            "Application/JSON",
        ] {
            assert!(is_json_media_type(ok), "{ok}");
        }
        for bad in [
            "text/plain",
            "application/fhir+xml",
            "application/jsonx",
            "",
        ] {
            assert!(!is_json_media_type(bad), "{bad}");
        }
    }
}
