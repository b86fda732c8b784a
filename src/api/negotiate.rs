//! What the FHIR API can answer in: FHIR JSON only (the CapabilityStatement's `format`),
//! and NDJSON for the Bulk Data export's files.
//!
//! A FHIR request that asks for something else, by `_format` or by an `Accept` header that
//! admits nothing JSON-shaped, is refused with 406 `unsupported_format` before any handler
//! runs, as the FHIR specification asks of a server that cannot give the requested format
//! (`resource-formats.html`). Before: a read asking for XML got JSON labelled as JSON, and a
//! search got 400 `unsupported_search_parameter`. Being decided from the request line and
//! headers alone, before authentication and any lookup, the refusal is the same for every
//! path: it says nothing about what exists.
//!
//! Lenient where clients differ: `_format` may be `json` or a JSON media type, with its `+`
//! sent unencoded (a query string decodes it to a space) and with parameters
//! (`;fhirVersion=4.0`); an `Accept` header is read with its quality values (`q=0` refuses
//! a type), its unparsable items are skipped, and one with no item left is as if absent.

use actix_web::HttpMessage;
use actix_web::http::StatusCode;
use actix_web::http::header::{Accept, Header};
use actix_web::mime::{self, Mime};

use super::error::{ApiError, Flavor};

/// The refusal of a request for a format the FHIR API does not produce.
fn unsupported() -> ApiError {
    ApiError::new(
        StatusCode::NOT_ACCEPTABLE,
        "unsupported_format",
        "this server answers in FHIR JSON only: ask for application/fhir+json, or leave out \
         `_format` and `Accept`",
    )
}

/// Whether the FHIR API can answer a request with this path, query string and headers.
/// Paths outside `/fhir` are not its to judge.
pub fn check(path: &str, query: &str, message: &impl HttpMessage) -> Result<(), ApiError> {
    if Flavor::for_path(path) != Flavor::Fhir {
        return Ok(());
    }
    if query.contains("_format") && !formats_answerable(query) {
        return Err(unsupported());
    }
    if message
        .headers()
        .contains_key(actix_web::http::header::ACCEPT)
    {
        // Unparsable items are skipped by the parser; a header that fails whole is ignored.
        if let Ok(Accept(items)) = Accept::parse(message)
            && !items.is_empty()
            && !items.iter().any(|item| {
                item.quality > actix_web::http::header::Quality::ZERO && json_shaped(&item.item)
            })
        {
            return Err(unsupported());
        }
    }
    Ok(())
}

/// Whether every `_format` in `query` names FHIR JSON.
fn formats_answerable(query: &str) -> bool {
    form_urlencoded::parse(query.as_bytes())
        .filter(|(name, _)| name == "_format")
        .all(|(_, value)| format_is_json(&value))
}

/// `json`, or a JSON media type for FHIR (`application/fhir+json`, `application/json`,
/// `application/json+fhir`, `text/json`), parameters ignored.
fn format_is_json(value: &str) -> bool {
    let essence = value.split(';').next().unwrap_or_default().trim();
    // An unencoded `+` arrives as a space.
    let essence = essence.replace(' ', "+").to_ascii_lowercase();
    matches!(
        essence.as_str(),
        "json"
            | "application/json"
            | "application/fhir+json"
            | "application/json+fhir"
            | "text/json"
    )
}

/// Whether a response in FHIR JSON (or an export file's NDJSON) satisfies `range`.
fn json_shaped(range: &Mime) -> bool {
    let (kind, sub) = (range.type_(), range.subtype());
    let suffix = range.suffix().map(|s| s.as_str());
    if kind == mime::STAR {
        return true;
    }
    match kind.as_str() {
        "application" => {
            sub == mime::STAR
                || matches!(sub.as_str(), "json" | "ndjson" | "x-ndjson")
                || matches!(suffix, Some("json" | "ndjson"))
        }
        "text" => sub == mime::JSON,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn answer(path: &str, query: &str, accept: Option<&str>) -> Result<(), &'static str> {
        let mut req = TestRequest::get().uri(&format!("{path}?{query}"));
        if let Some(accept) = accept {
            req = req.insert_header(("accept", accept));
        }
        let req = req.to_http_request();
        check(path, query, &req).map_err(|e| {
            assert_eq!(e.status, StatusCode::NOT_ACCEPTABLE);
            e.code
        })
    }

    #[test]
    fn json_in_any_spelling_is_answered() {
        for query in [
            "",
            "_format=json",
            "_format=JSON",
            "_format=application/fhir%2Bjson",
            "_format=application/fhir+json",
            "_format=application/fhir%2Bjson;fhirVersion=4.0",
            "_format=application/json",
            "_format=application/json%2Bfhir",
            "_format=text/json",
            "patient=p1&_format=json&_count=10",
            "not_format=xml",
        ] {
            assert_eq!(
                answer("/fhir/Observation/o1", query, None),
                Ok(()),
                "{query}"
            );
        }
    }

    #[test]
    fn other_formats_are_refused_with_406() {
        for query in [
            "_format=xml",
            "_format=application/fhir%2Bxml",
            "_format=application/fhir+xml",
            "_format=ttl",
            "_format=html",
            "_format=",
            "_format=json&_format=xml",
        ] {
            assert_eq!(
                answer("/fhir/Observation", query, None),
                Err("unsupported_format"),
                "{query}"
            );
        }
    }

    #[test]
    fn accept_is_read_with_its_qualities() {
        for accept in [
            "application/fhir+json",
            "application/json",
            "application/json+fhir",
            "application/fhir+ndjson",
            "application/*",
            "*/*",
            "text/json",
            "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "application/fhir+xml, application/fhir+json;q=0.1",
            "",
            "nonsense",
            "application/fhir+json; q=0.5, garbage;;;",
        ] {
            assert_eq!(
                answer("/fhir/metadata", "", Some(accept)),
                Ok(()),
                "{accept}"
            );
        }
        for accept in [
            "application/fhir+xml",
            "application/xml+fhir",
            "application/xml, text/xml",
            "text/html",
            "text/turtle",
            "application/fhir+json;q=0",
            "application/fhir+xml, */*;q=0",
        ] {
            assert_eq!(
                answer("/fhir/metadata", "", Some(accept)),
                Err("unsupported_format"),
                "{accept}"
            );
        }
    }

    #[test]
    fn only_the_fhir_api_is_judged() {
        assert_eq!(
            answer("/api/v1/clients", "_format=xml", Some("text/csv")),
            Ok(())
        );
        assert_eq!(answer("/fhirish", "_format=xml", None), Ok(()));
        assert_eq!(
            answer("/fhir", "_format=xml", None),
            Err("unsupported_format")
        );
    }
}
