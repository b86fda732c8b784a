//! The HTTP layer: the only module that knows HTTP.
//!
//! Handlers are small async functions, one action each, registered in [`configure`].
//! Authentication is an extractor ([`operator::Operator`]), bodies go through
//! [`body::FhirJson`] (media type, size and depth limits), and every failure is an
//! [`error::ApiError`] with a stable code.

pub mod access_log;
pub mod access_requests;
pub mod amendments;
pub mod audit;
pub mod auth;
pub mod body;
pub mod capability;
pub mod clients;
pub mod consents;
pub mod decisions;
pub mod delegates;
pub mod delegations;
pub mod disclosures;
pub mod error;
pub mod export;
pub mod fhir;
mod hot_routes;
pub mod intake;
pub mod negotiate;
pub mod notifications;
pub mod oauth;
pub mod observe;
pub mod openapi;
pub mod ops;
mod searchset;
pub mod share_links;
pub mod summary;
pub mod throttle;
pub mod wellknown;

use std::sync::Arc;

use actix_web::web::{self, ServiceConfig};
use actix_web::{HttpRequest, HttpResponse};
use utoipa_actix_web::scope;
use utoipa_actix_web::service_config::ServiceConfig as DocumentedConfig;

use crate::gateway::Gateway;
use error::ApiError;
use observe::Metrics;

/// What every handler can reach: the gateway's services ([`Gateway`], through `Deref`), and
/// what only the HTTP layer has.
pub struct AppState {
    /// The services domain workflows use.
    pub gateway: Arc<Gateway>,
    /// Prometheus collectors.
    pub metrics: Metrics,
    /// The webhook delivery worker; it stops when the state is dropped with the server.
    pub notify_worker: crate::notify::DeliveryWorker,
    /// The research export worker; running jobs stop when the state is dropped.
    pub export_worker: crate::export::ExportWorker,
}

impl std::ops::Deref for AppState {
    type Target = Gateway;

    fn deref(&self) -> &Gateway {
        &self.gateway
    }
}

/// Mounts every route the gateway serves: what the server runs, and what
/// `tests/api/openapi.rs` enumerates to hold the OpenAPI document to.
pub fn routes(cfg: &mut ServiceConfig) {
    configure(&mut DocumentedConfig::new(cfg));
}

/// Registers every route, and with it the route's entry in the OpenAPI document
/// ([`openapi`]): `service` takes only handlers that carry `#[utoipa::path]`.
pub fn configure(cfg: &mut DocumentedConfig) {
    // FHIR first: the hot path. actix tries routes in order, each pattern with a parameter
    // by a regular expression; no route outside this scope starts with `/fhir`, so the order
    // is otherwise free (and the application mounts these routes before the pages',
    // `startup`). Within it, the generic read and search go first, guarded to take no
    // path of the special routes (`hot_routes::mount`).
    cfg.service(
        scope::scope("/fhir")
            .map(hot_routes::mount)
            // Before the generic `/{type}` routes, which would take AuditEvent.
            .service(access_log::search_audit_events)
            .service(access_log::read_audit_event)
            .service(capability::metadata)
            // Bulk Data export, before the generic `/{type}/...` routes.
            .service(export::kick_off)
            .service(export::kick_off_post)
            .service(export::kick_off_own)
            .service(export::status)
            .service(export::cancel)
            .service(export::download)
            .service(consents::search)
            .service(consents::create)
            .service(consents::revoke)
            .service(consents::read)
            .service(consents::update)
            .service(fhir::post_bundle)
            .service(fhir::everything)
            .service(summary::summary)
            .service(fhir::vread)
            .service(fhir::read)
            .service(fhir::update)
            .service(fhir::search_type)
            .service(fhir::create)
            .default_service(web::to(no_route)),
    )
    .service(openapi::openapi_json)
    .service(ops::healthz)
    .service(ops::readyz)
    .service(ops::metrics)
    .service(wellknown::jwks)
    .service(wellknown::smart_configuration)
    .service(wellknown::whoami)
    .service(oauth::issue_token)
    .service(oauth::revoke)
    .service(oauth::introspect)
    .service(audit::checkpoint)
    .service(audit::verifier_key)
    .service(audit::inclusion)
    .service(audit::consistency)
    .service(access_log::access_log)
    .service(decisions::decide)
    .service(disclosures::create)
    .service(disclosures::for_patient)
    .service(disclosures::fetch_bundle)
    .service(disclosures::fetch_signature)
    .service(access_requests::create)
    .service(access_requests::list)
    .service(access_requests::show)
    .service(access_requests::approve)
    .service(access_requests::decline)
    .service(clients::create)
    .service(clients::list)
    .service(clients::show)
    .service(clients::remove)
    .service(amendments::create)
    .service(amendments::list)
    .service(amendments::show)
    .service(amendments::answer)
    .service(amendments::disagree)
    .service(delegations::create)
    .service(delegations::list)
    .service(delegations::revoke)
    .service(share_links::create)
    .service(share_links::list)
    .service(share_links::deactivate)
    .service(share_links::manifest)
    .service(share_links::file)
    .service(share_links::manifest_preflight)
    .service(share_links::file_preflight)
    .service(notifications::feed)
    .service(notifications::mark_read)
    .service(notifications::show_webhook)
    .service(notifications::put_webhook)
    .service(notifications::delete_webhook)
    .default_service(web::to(no_route));
}

/// Bad form and JSON bodies answer like every other error, not with actix's plain text.
pub fn body_configs(cfg: &mut ServiceConfig, limits: &crate::config::Limits) {
    cfg.app_data(
        web::FormConfig::default()
            .limit(64 * 1024)
            .error_handler(|_, _| {
                oauth::OAuthError {
                    error: "invalid_request",
                    description: "the body must be an application/x-www-form-urlencoded form",
                }
                .into()
            }),
    )
    .app_data(
        web::JsonConfig::default()
            .limit(limits.max_body_bytes.min(1 << 20))
            .error_handler(|e, _| {
                ApiError::new(
                    actix_web::http::StatusCode::BAD_REQUEST,
                    "invalid_json",
                    format!(
                        "the body is not the JSON this endpoint takes: {}",
                        json_error_kind(&e)
                    ),
                )
                .into()
            }),
    )
    .app_data(web::PathConfig::default().error_handler(|_, _| ApiError::no_route().into()))
    .app_data(web::QueryConfig::default().error_handler(|e, _| {
        // serde's messages name the parameter and the expected type, never a value.
        ApiError::new(
            actix_web::http::StatusCode::BAD_REQUEST,
            "invalid_query",
            format!("the query string is not what this endpoint takes: {e}"),
        )
        .into()
    }));
}

/// A client-safe description of a JSON body error (serde's messages name fields, not values).
fn json_error_kind(e: &actix_web::error::JsonPayloadError) -> String {
    use actix_web::error::JsonPayloadError as E;
    match e {
        E::Deserialize(inner) => inner.to_string(),
        E::ContentType => "send application/json".into(),
        E::Overflow { .. } | E::OverflowKnownLength { .. } => "the body is too large".into(),
        _ => "the body could not be read".into(),
    }
}

async fn no_route(_: HttpRequest) -> Result<HttpResponse, ApiError> {
    Err(ApiError::no_route())
}
