//! Per-request observation: a request id, one log line with route, status and latency,
//! and Prometheus counters.
//!
//! The log line names the route pattern (`/fhir/{type}/{id}`), never the query string or
//! the body, so no patient data reaches the logs through it.
//!
//! Every answer leaves with `Cache-Control: no-store` unless its route chose its own caching
//! (the public keys, the OpenAPI document, the signed checkpoint, the page's static files),
//! and with `X-Content-Type-Options: nosniff`: most answers carry patient data or a token,
//! and no browser or intermediary cache may keep them, nor a browser read one as another
//! type. They also carry HSTS and, unless the route set its own (the pages), a
//! Content-Security-Policy that lets nothing run, load or frame them: an API answer is data,
//! never a document (the security headers of OWASP's REST cheat sheet). (A handler's panic
//! is rendered by actix after this middleware, without them; its 500 names nothing.)

use std::panic::AssertUnwindSafe;
use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{
    CACHE_CONTROL, CONTENT_LENGTH, CONTENT_SECURITY_POLICY, CONTENT_TYPE, HeaderMap, HeaderName,
    HeaderValue, STRICT_TRANSPORT_SECURITY, X_CONTENT_TYPE_OPTIONS,
};
use actix_web::middleware::Next;
use actix_web::web::Data;
use actix_web::{Error, HttpMessage};
use futures_util::FutureExt;
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use tracing::Instrument;

use super::AppState;
use super::error::{ApiError, Flavor};

/// The header carrying the request id, both ways.
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// The route label of a request whose handler panicked: its route is not known any more.
const PANICKED_ROUTE: &str = "panicked";

/// The id of the current request, available to handlers through request extensions.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

/// The gateway's Prometheus metrics, one registry per application (no global state).
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
}

impl Metrics {
    /// Creates the registry and its collectors.
    pub fn new() -> Result<Metrics, prometheus::Error> {
        let registry = Registry::new_custom(Some("consentgate".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        Ok(Metrics {
            registry,
            requests,
            latency,
        })
    }

    /// Adds a collector owned elsewhere (the rate limits' counter) to this registry.
    pub fn register(
        &self,
        collector: Box<dyn prometheus::core::Collector>,
    ) -> Result<(), prometheus::Error> {
        self.registry.register(collector)
    }

    /// The metrics in Prometheus text format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        if let Err(e) =
            prometheus::TextEncoder::new().encode_utf8(&self.registry.gather(), &mut out)
        {
            tracing::warn!(error = %e, "metrics could not be encoded");
        }
        out
    }
}

/// Accepts a caller's request id when it is short and plain; otherwise makes one.
fn request_id(req: &ServiceRequest) -> String {
    req.headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            (1..=64).contains(&v.len())
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
        })
        .map(str::to_string)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string())
}

/// Re-renders an error response in the flavour of its route's scope ([`Flavor::for_path`]):
/// whoever failed (extractor, handler, body config), the route decides the body. Headers a
/// route's own middleware added to the first rendering (CORS on the share-link routes) are
/// kept unless the new rendering sets them itself.
fn in_route_flavor<B: MessageBody>(response: ServiceResponse<B>) -> ServiceResponse<EitherBody<B>> {
    let rendered = response
        .response()
        .error()
        .and_then(|e| e.as_error::<ApiError>())
        .map(|e| e.render(Flavor::for_path(response.request().path())));
    match rendered {
        Some(mut rendered) => {
            let own: Vec<HeaderName> = rendered.headers().keys().cloned().collect();
            for (name, value) in response.headers() {
                if name != CONTENT_TYPE && name != CONTENT_LENGTH && !own.contains(name) {
                    rendered.headers_mut().append(name.clone(), value.clone());
                }
            }
            response.into_response(rendered).map_into_right_body()
        }
        None => response.map_into_left_body(),
    }
}

/// The Content-Security-Policy of an answer that is data: nothing in it may run, load or be
/// framed.
const DATA_ONLY: &str = "default-src 'none'; frame-ancestors 'none'";

/// The headers every answer carries: `no-store` unless the route set its own
/// `Cache-Control`, `nosniff`, HSTS as the pages send it, and [`DATA_ONLY`] unless the route
/// set its own policy.
fn security_headers(headers: &mut HeaderMap) {
    if !headers.contains_key(CACHE_CONTROL) {
        headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    headers.insert(X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    if !headers.contains_key(STRICT_TRANSPORT_SECURITY) {
        headers.insert(
            STRICT_TRANSPORT_SECURITY,
            HeaderValue::from_static(crate::web::HSTS),
        );
    }
    if !headers.contains_key(CONTENT_SECURITY_POLICY) {
        headers.insert(CONTENT_SECURITY_POLICY, HeaderValue::from_static(DATA_ONLY));
    }
}

/// The middleware function (`actix_web::middleware::from_fn(observe)`).
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let id = request_id(&req);
    let method = req.method().to_string();
    let metrics = req
        .app_data::<Data<AppState>>()
        .map(|state| state.metrics.clone());
    req.extensions_mut().insert(RequestId(id.clone()));
    // The route is known once the router has run: asking for it before meant a walk of the
    // route table's regular expressions per request, afterwards it is a lookup of the
    // resource the router recorded (`docs/PERFORMANCE.md`, "Third step"). Events inside the
    // handler carry the request id from the span; the closing line carries it, the method,
    // the route, the status and the latency as fields of its own, outside the span: a field
    // recorded into a span later, and a span around a JSON line, each cost a parse and a
    // rewrite of the span's fields already formatted (`docs/PERFORMANCE.md`, sixth step).
    let span = tracing::info_span!("request", request_id = %id);
    let started = Instant::now();
    // A panic in a handler answers 500 like any internal error, instead of closing the
    // connection with no answer; the worker and every other request carry on.
    let served = AssertUnwindSafe(next.call(req).instrument(span.clone()))
        .catch_unwind()
        .await;
    let Ok(served) = served else {
        let error = span.in_scope(|| ApiError::internal("a request handler panicked"));
        if let Some(metrics) = &metrics {
            // The request unwound with the handler, and its route with it.
            metrics
                .requests
                .with_label_values(&[PANICKED_ROUTE, method.as_str(), "500"])
                .inc();
        }
        return Err(error.into());
    };
    let mut response = in_route_flavor(served?);
    let elapsed = started.elapsed();
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16();
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        latency_ms = elapsed.as_secs_f64() * 1000.0,
        "request served"
    );
    if let Some(metrics) = metrics {
        metrics
            .requests
            .with_label_values(&[route.as_str(), method.as_str(), &status.to_string()])
            .inc();
        metrics
            .latency
            .with_label_values(&[route.as_str()])
            .observe(elapsed.as_secs_f64());
    }
    let headers = response.headers_mut();
    security_headers(headers);
    if let Ok(value) = HeaderValue::from_str(&id) {
        headers.insert(REQUEST_ID, value);
    }
    Ok(response)
}
