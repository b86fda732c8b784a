//! The API's contract: `GET /openapi.json`, an OpenAPI 3.1 document generated from the code.
//!
//! Where it comes from:
//! - **Paths and methods** from the routes themselves: [`super::configure`] registers every
//!   handler through `utoipa-actix-web`, whose `service(...)` takes only handlers carrying a
//!   `#[utoipa::path]` attribute and records each one's path (scope prefix included) and
//!   method as it mounts it. A route cannot be mounted without being documented.
//! - **Parameters, bodies and responses** from each handler's `#[utoipa::path]` attribute
//!   and the `ToSchema` derives of the request and response types (domain types where the
//!   domain owns them, [`schemas`] for the API's own shapes).
//! - **Errors common to many operations** (401/403/429 of the bearer extractors, 400/408/413
//!   of the body limits, 500 and 503) are added here by [`common_responses`], in the flavour
//!   of the route's scope, exactly as [`super::error::Flavor::for_path`] renders them:
//!   OperationOutcome under `/fhir`, RFC 9457 problem details elsewhere; `/oauth` declares
//!   its RFC 6749 errors itself.
//! - **Who may call** as security requirements naming three bearer schemes, one per kind of
//!   caller (`operator`, `patient`, `client`); an operation lists the ones its extractor
//!   accepts.
//!
//! `tests/api/openapi.rs` holds the document to the routes actix really mounts (read from
//! actix's resource tree, not from a list), both ways: a route `utoipa-actix-web` did not see
//! (`cfg.route(...)`, a plain actix scope) fails it. `scripts/contract` runs schemathesis
//! against a live server.

pub mod schemas;

use actix_web::web::Data;
use actix_web::{App, HttpResponse, get};
use utoipa::openapi::path::{HttpMethod, Operation};
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::openapi::{Content, OpenApi as Document, Ref, RefOr, Response};
use utoipa::{Modify, OpenApi};
use utoipa_actix_web::AppExt;

use super::error::{FHIR_JSON, PROBLEM_JSON};

/// The names of the security schemes, one per kind of caller.
pub mod who {
    /// An operator's bearer token.
    pub const OPERATOR: &str = "operator";
    /// A patient's bearer token.
    pub const PATIENT: &str = "patient";
    /// A recipient client's gateway access token.
    pub const CLIENT: &str = "client";
}

/// The hand-written parts of the document: info, tags, shared schemas, security schemes.
#[derive(OpenApi)]
#[openapi(
    info(
        title = "consentgate",
        description = "A consent-managed health-data-sharing gateway. The management API \
            (`/api/v1`) speaks JSON with RFC 9457 problem details; the FHIR R4 API (`/fhir`) \
            speaks `application/fhir+json` with OperationOutcome errors; `/oauth` follows \
            RFC 6749, 7009 and 7662. Every error carries a stable snake_case `code`.",
        license(name = "Apache-2.0", identifier = "Apache-2.0")
    ),
    tags(
        (name = "operations", description = "Liveness, readiness, metrics and this document"),
        (name = "discovery", description = "Keys, SMART configuration, who the caller is"),
        (name = "oauth", description = "SMART Backend Services tokens, revocation, introspection"),
        (name = "audit", description = "Signed checkpoints and Merkle proofs of the audit log"),
        (name = "access-log", description = "The patient's accounting of disclosures"),
        (name = "decisions", description = "What the gateway would decide, explained"),
        (name = "disclosures", description = "Signed evidence packages"),
        (name = "access-requests", description = "Recipients ask, patients approve or decline"),
        (name = "clients", description = "The client registry (operators)"),
        (name = "notifications", description = "The patient's feed and webhook"),
        (name = "share-links", description = "SMART Health Links to the patient's summary: made, listed and deactivated by the patient; manifest and file opened by anyone holding the link"),
        (name = "consents", description = "The patient's FHIR Consents: grant, revise, read, search, revoke"),
        (name = "fhir", description = "FHIR R4: records in and out, the log as AuditEvents, Bulk Data export"),
    ),
    components(schemas(
        schemas::Problem,
        schemas::OAuthError,
        schemas::OperationOutcome,
    )),
    modifiers(&SecuritySchemes)
)]
struct ApiDoc;

/// Adds the three bearer schemes.
struct SecuritySchemes;

impl Modify for SecuritySchemes {
    fn modify(&self, doc: &mut Document) {
        let components = doc.components.get_or_insert_with(Default::default);
        let bearer = |description: &str| {
            let mut http = Http::new(HttpAuthScheme::Bearer);
            http.bearer_format = Some("JWT".into());
            http.description = Some(description.into());
            SecurityScheme::Http(http)
        };
        components.add_security_scheme(
            who::OPERATOR,
            bearer(
                "An operator: a JWT from a trusted OpenID Connect issuer with the operator \
                 role, or from the development issuer (`consentgate token operator`).",
            ),
        );
        components.add_security_scheme(
            who::PATIENT,
            bearer(
                "A patient: a JWT from a trusted OpenID Connect issuer whose `fhirUser` is \
                 `Patient/{id}`, or from the development issuer (`consentgate token patient \
                 ID`). A patient reaches only their own records.",
            ),
        );
        components.add_security_scheme(
            who::CLIENT,
            bearer(
                "A recipient client (or data source): a gateway access token (`at+jwt`, RFC \
                 9068) from `POST /oauth/token` (SMART Backend Services, `private_key_jwt`). \
                 A recipient is granted read scopes only (`system/{Type|*}.rs`), a data source \
                 write scopes only (`system/{Type|*}.cu`, v1 `.write`); the scopes a route \
                 lists are the ones it needs.",
            ),
        );
    }
}

/// The whole document: the hand-written parts, every route [`super::configure`] mounts, and
/// the common error responses.
pub fn document() -> Document {
    let (_, mut doc) = App::new()
        .into_utoipa_app()
        .openapi(ApiDoc::openapi())
        .configure(super::configure)
        .split_for_parts();
    common_responses(&mut doc);
    qualify_operation_ids(&mut doc);
    doc
}

/// Operation ids are the handler's name, which repeats across modules (`create`, `read`):
/// each becomes `{tag}_{handler}`, unique because a tag's handlers live in one module or have
/// distinct names (the contract test checks it).
fn qualify_operation_ids(doc: &mut Document) {
    for item in doc.paths.paths.values_mut() {
        for method in [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Put,
            HttpMethod::Delete,
        ] {
            if let Some(operation) = operation_mut(item, &method) {
                let tag = operation
                    .tags
                    .as_ref()
                    .and_then(|t| t.first())
                    .map(|t| t.replace('-', "_"));
                if let (Some(tag), Some(id)) = (tag, operation.operation_id.as_mut()) {
                    *id = format!("{tag}_{id}");
                }
            }
        }
    }
}

/// The document, serialised once when the application is built.
#[derive(Debug, Clone)]
pub struct Served(pub String);

impl Served {
    /// Builds and serialises [`document`].
    pub fn new() -> Result<Served, serde_json::Error> {
        Ok(Served(serde_json::to_string(&document())?))
    }
}

/// `GET /openapi.json`: this document.
#[utoipa::path(
    tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json", body = Object))
)]
#[get("/openapi.json")]
pub async fn openapi_json(served: Option<Data<Served>>) -> HttpResponse {
    let body = match served {
        Some(served) => served.0.clone(),
        // Built on demand where the application did not build it (a test app).
        None => serde_json::to_string(&document()).unwrap_or_default(),
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header(("Cache-Control", "public, max-age=300"))
        .body(body)
}

/// Which error body an operation's failures have.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Errors {
    Fhir,
    Problem,
    OAuth,
}

impl Errors {
    fn of(path: &str) -> Errors {
        if path.starts_with("/oauth/") {
            Errors::OAuth
        } else if path == "/fhir" || path.starts_with("/fhir/") {
            Errors::Fhir
        } else {
            Errors::Problem
        }
    }

    fn response(self, description: &str) -> Response {
        let (media, schema) = match self {
            Errors::Fhir => (FHIR_JSON, "OperationOutcome"),
            Errors::Problem => (PROBLEM_JSON, "Problem"),
            Errors::OAuth => ("application/json", "OAuthError"),
        };
        let media = media.split(';').next().unwrap_or(media);
        let mut response = Response::new(description);
        response.content.insert(
            media.to_string(),
            RefOr::T(Content::new(Some(Ref::from_schema_name(schema)))),
        );
        response
    }
}

/// Adds the failures that the shared machinery (extractors, body limits, the store, the audit
/// log) can answer on an operation, unless the operation already names that status.
fn common_responses(doc: &mut Document) {
    for (path, item) in doc.paths.paths.iter_mut() {
        let errors = Errors::of(path);
        for method in [
            HttpMethod::Get,
            HttpMethod::Post,
            HttpMethod::Put,
            HttpMethod::Delete,
        ] {
            if let Some(operation) = operation_mut(item, &method) {
                add_common(operation, errors);
            }
        }
    }
}

fn operation_mut<'a>(
    item: &'a mut utoipa::openapi::PathItem,
    method: &HttpMethod,
) -> Option<&'a mut Operation> {
    match method {
        HttpMethod::Get => item.get.as_mut(),
        HttpMethod::Post => item.post.as_mut(),
        HttpMethod::Put => item.put.as_mut(),
        HttpMethod::Delete => item.delete.as_mut(),
        _ => None,
    }
}

fn add_common(operation: &mut Operation, errors: Errors) {
    let secured = operation
        .security
        .as_ref()
        .is_some_and(|s| !s.is_empty() && errors != Errors::OAuth);
    let has_body = operation.request_body.is_some();
    let mut add = |status: &str, description: &str| {
        let responses = &mut operation.responses.responses;
        if !responses.contains_key(status) {
            responses.insert(status.to_string(), errors.response(description).into());
        }
    };
    if has_body {
        add(
            "400",
            "The body is not what this endpoint takes (`invalid_json`, `invalid_body`, ...)",
        );
        add(
            "408",
            "The body did not arrive in time (`body_timeout`); the connection closes",
        );
        add(
            "413",
            "The body exceeds the configured limit (`body_too_large`)",
        );
    }
    if secured {
        add(
            "401",
            "No valid bearer token (`unauthorized`); carries `WWW-Authenticate`",
        );
        add(
            "403",
            "The token's caller may not use this endpoint (`forbidden`)",
        );
        add(
            "429",
            "Too many failed bearer tokens from this address (`too_many_requests`); carries `Retry-After`",
        );
    }
    if errors == Errors::Fhir {
        add(
            "406",
            "`_format` or `Accept` asks for something other than FHIR JSON (`unsupported_format`)",
        );
    }
    if errors != Errors::OAuth {
        add(
            "500",
            "An internal failure (`internal_error`); the detail is in the log, not here",
        );
        add(
            "503",
            "The database or the audit log is unavailable, or the body budget is spent \
             (`audit_unavailable`, `database_unavailable`, `server_busy`, ...); carries `Retry-After`",
        );
    }
}
