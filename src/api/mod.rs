//! The HTTP layer: the only module that knows HTTP.
//!
//! Handlers are small async functions, one action each, registered in [`configure`].
//! Authentication is an extractor ([`operator::Operator`]), bodies go through
//! [`body::FhirJson`] (media type, size and depth limits), and every failure is an
//! [`error::ApiError`] with a stable code.

pub mod body;
pub mod capability;
pub mod error;
pub mod fhir;
pub mod observe;
pub mod operator;
pub mod ops;

use std::sync::Arc;

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};

use crate::config::Settings;
use crate::store::Store;
use error::ApiError;
use observe::Metrics;
use operator::OperatorCredential;

/// What every handler can reach.
pub struct AppState {
    /// The database.
    pub store: Store,
    /// The effective configuration.
    pub settings: Arc<Settings>,
    /// The operator's credential digest.
    pub operator: OperatorCredential,
    /// Prometheus collectors.
    pub metrics: Metrics,
    /// The externally visible base URL, without a trailing slash.
    pub base_url: String,
}

impl AppState {
    /// The base of FHIR URLs, `{base_url}/fhir`.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base_url)
    }
}

/// Registers every route.
pub fn configure(cfg: &mut ServiceConfig) {
    cfg.service(ops::healthz)
        .service(ops::readyz)
        .service(ops::metrics)
        .service(
            web::scope("/fhir")
                .service(capability::metadata)
                .service(fhir::post_bundle)
                .service(fhir::vread)
                .service(fhir::read)
                .service(fhir::update)
                .service(fhir::search_type)
                .service(fhir::create)
                .default_service(web::to(no_route)),
        )
        .default_service(web::to(no_route_problem));
}

async fn no_route(_: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::no_route())
}

async fn no_route_problem(_: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::no_route().as_problem())
}
