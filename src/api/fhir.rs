//! FHIR record endpoints. Writes are an operator's or a data source's ([`crate::supply`]).
//! Reads dispatch on who asks: a
//! recipient client gets the consent-checked release ([`crate::release`]); an operator or
//! a patient (their own records only) reads directly ([`crate::release::direct`]). Either
//! way the handler parses, calls one domain function and renders.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, LAST_MODIFIED, LOCATION};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post, put};
use serde_json::Value;

use super::auth::{Caller, ReadCaller, Reader};
use super::body::FhirJson;
use super::error::{ApiError, FHIR_JSON};
use super::openapi::schemas::{Bundle, OperationOutcome, Resource};
use super::searchset::{page_links, searchset, searchset_json};
use super::{AppState, audit};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::auth::tokens::AccessClaims;
use crate::ids::PatientId;
use crate::records::ingest::{self, Stored};
use crate::records::{RecordError, validate};
use crate::release::{self, direct};
use crate::supply;

pub(super) fn fhir_ok(status: StatusCode, body: &Value) -> HttpResponse {
    fhir_json(status, json_bytes(body))
}

/// A FHIR JSON answer of JSON text already written.
fn fhir_json(status: StatusCode, json: Vec<u8>) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .body(json)
}

/// The body's JSON text, written straight into bytes: `to_string` goes through
/// `fmt::Display` and its formatter (5 % of a consent-checked read's CPU was that call,
/// `docs/PERFORMANCE.md`, "Third step"). A `Value` always serialises (its keys are strings).
fn json_bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap_or_default()
}

fn stored_response(state: &AppState, stored: &Stored) -> HttpResponse {
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((
            LOCATION,
            format!("{}/{}", state.fhir_base(), stored.location()),
        ))
        .insert_header((ETAG, stored.etag()))
        .insert_header((
            LAST_MODIFIED,
            crate::records::dates::format_instant(stored.last_updated),
        ))
        .body(stored.body.to_string())
}

/// `POST /fhir`: a transaction, batch or collection Bundle.
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("client" = ["system/*.cu"])),
    request_body(content = Bundle, content_type = "application/fhir+json", description = "A transaction, batch or collection Bundle; `urn:uuid:` and conditional references between entries are resolved"),
    responses(
        (status = 200, description = "The transaction-response or batch-response Bundle", body = Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_json`, `empty_body`, `too_deep`, `unsupported_bundle_type`, `too_many_entries`, ...", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden` (not an operator or a data source); for a data source, in a transaction: `gateway_record`, `insufficient_scope`, `not_your_record`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: a reference names nothing", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 409, description = "`concurrent_update`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "`unsupported_media_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 422, description = "A resource does not validate", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[post("")]
pub async fn post_bundle(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    FhirJson(bundle): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let request_id = audit::request_id(&req);
    let response = supply::bundle(&state.gateway, &principal, bundle, &request_id).await?;
    Ok(fhir_ok(StatusCode::OK, &response))
}

/// `POST /fhir/{type}`: create with a server-assigned id.
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("client" = ["system/*.c"])),
    params(("type" = String, Path, description = "An R4 resource type")),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses(
        (status = 201, description = "Created; `Location`, `ETag`, `Last-Modified`", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_json`, `unknown_resource_type`, `type_mismatch`, ...", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden` (not an operator or a data source); for a data source: `gateway_record` (a Consent, an AuditEvent, anything tagged gateway-internal), `insufficient_scope`, `not_your_record` (another source's or an operator's record)", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "`unsupported_media_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 422, description = "The resource does not validate", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[post("/{type}")]
pub async fn create(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
    FhirJson(resource): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let resource_type = path.into_inner();
    validate::resource_type(&resource_type)?;
    let request_id = audit::request_id(&req);
    let id = ingest::new_id();
    let stored = supply::put(
        &state.gateway,
        &principal,
        resource_type,
        id,
        resource,
        &request_id,
    )
    .await?;
    Ok(stored_response(&state, &stored))
}

/// `PUT /fhir/{type}/{id}`: create or update under a client-chosen id, keeping every version.
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("client" = ["system/*.cu"])),
    params(("type" = String, Path, description = "An R4 resource type"), ("id" = String, Path, description = "A FHIR id")),
    request_body(content = Resource, content_type = "application/fhir+json"),
    responses(
        (status = 200, description = "A new version; `Location`, `ETag`, `Last-Modified`", body = Resource, content_type = "application/fhir+json"),
        (status = 201, description = "Created under this id", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`invalid_json`, `unknown_resource_type`, `invalid_id`, `id_mismatch`, ...", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 403, description = "`forbidden` (not an operator or a data source); for a data source: `gateway_record` (a Consent, an AuditEvent, anything tagged gateway-internal), `insufficient_scope`, `not_your_record` (another source's or an operator's record)", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 409, description = "`concurrent_update`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 415, description = "`unsupported_media_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 422, description = "The resource does not validate", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[put("/{type}/{id}")]
pub async fn update(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<(String, String)>,
    FhirJson(resource): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = path.into_inner();
    validate::resource_type(&resource_type)?;
    validate::id(&id)?;
    if let Some(body_id) = resource.get("id")
        && body_id.as_str() != Some(id.as_str())
    {
        return Err(RecordError::invalid(
            "id_mismatch",
            "the body's `id` differs from the id in the URL",
        )
        .into());
    }
    let request_id = audit::request_id(&req);
    let stored = supply::put(
        &state.gateway,
        &principal,
        resource_type,
        id,
        resource,
        &request_id,
    )
    .await?;
    Ok(stored_response(&state, &stored))
}

/// Who reads: a person reads directly, a recipient client through the release.
pub(super) enum Asker {
    /// An operator, or a patient (their own records only).
    Person(Principal),
    /// A recipient client.
    Recipient(Box<AccessClaims>),
}

/// Sorts the caller; a data source sends records and reads none.
pub(super) fn asker(principal: Principal) -> Result<Asker, ApiError> {
    match principal {
        Principal::Client(claims) if Role::parse(&claims.role) == Some(Role::DataSource) => {
            Err(ApiError::new(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a data source sends records; it does not read them",
            ))
        }
        Principal::Client(claims) => Ok(Asker::Recipient(claims)),
        person => Ok(Asker::Person(person)),
    }
}

/// `GET /fhir/{type}/{id}`: a recipient gets the consent-checked, shaped release; a person
/// reads directly (a patient only their own records).
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("operator" = []), ("patient" = [])),
    params(("type" = String, Path, description = "An R4 resource type"), ("id" = String, Path, description = "A FHIR id")),
    responses(
        (status = 200, description = "The resource (as shaped for a recipient)", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`unknown_resource_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: missing, not the caller's to see, or an id no resource can have (all alike)", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 410, description = "`gone`: deleted", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/{type}/{id}")]
pub async fn read(
    state: Data<AppState>,
    caller: ReadCaller,
    path: Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    read_handler(state, caller, path, req).await
}

/// [`read`]'s body, which `api::hot_routes` mounts again ahead of the other routes.
pub(super) async fn read_handler(
    state: Data<AppState>,
    ReadCaller(principal): ReadCaller,
    path: Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = path.into_inner();
    let request_id = audit::request_id(&req);
    match asker(principal)? {
        Asker::Recipient(claims) => {
            let body = release::read(&state, &claims, &request_id, &resource_type, &id).await?;
            Ok(fhir_json(StatusCode::OK, body.into_json()))
        }
        Asker::Person(person) => {
            let body = direct::read(&state, &person, &request_id, &resource_type, &id).await?;
            Ok(with_version_headers(&body))
        }
    }
}

/// `GET /fhir/{type}/{id}/_history/{version}`.
#[utoipa::path(
    tag = "fhir",
    security(("operator" = []), ("patient" = [])),
    params(
        ("type" = String, Path, description = "An R4 resource type"),
        ("id" = String, Path, description = "A FHIR id"),
        ("version" = String, Path, description = "The version id"),
    ),
    responses(
        (status = 200, description = "That version", body = Resource, content_type = "application/fhir+json"),
        (status = 400, description = "`unknown_resource_type`", body = OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: missing, not the caller's to see, or an id or version no resource can have", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/{type}/{id}/_history/{version}")]
pub async fn vread(
    state: Data<AppState>,
    reader: Reader,
    path: Path<(String, String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id, version) = path.into_inner();
    let body = direct::read_version(
        &state,
        &reader.principal,
        &audit::request_id(&req),
        &resource_type,
        &id,
        Some(&version),
    )
    .await?;
    Ok(with_version_headers(&body))
}

/// `GET /fhir/Patient/{id}/$everything`: every resource of the patient the caller may see.
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("operator" = []), ("patient" = [])),
    responses(
        (status = 200, description = "A searchset Bundle of every resource of the patient the caller may see", body = Bundle, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Patient/{id}/$everything")]
pub async fn everything(
    state: Data<AppState>,
    ReadCaller(principal): ReadCaller,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let asker = asker(principal)?;
    let raw = path.into_inner();
    let patient = PatientId::parse(&raw).map_err(|_| {
        ApiError::from(RecordError::not_found(
            "not_found",
            format!("Patient/{raw} is not known"),
        ))
    })?;
    let request_id = audit::request_id(&req);
    let resources = match asker {
        Asker::Recipient(claims) => {
            release::everything(&state, &claims, &request_id, &patient).await?
        }
        Asker::Person(person) => direct::everything(&state, &person, &request_id, &patient).await?,
    };
    Ok(fhir_ok(
        StatusCode::OK,
        &searchset(&state.fhir_base(), resources, None),
    ))
}

/// `GET /fhir/{type}?...`: search. Paged with `_cursor` links; no total.
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("operator" = []), ("patient" = [])),
    params(
        ("type" = String, Path, description = "An R4 resource type"),
        ("patient" = Option<String>, Query, description = "The patient (id or `Patient/id`; alias `subject`); required for recipients"),
        ("date" = Option<String>, Query, description = "Clinical date with a FHIR prefix (`eq`, `gt`, `ge`, `lt`, `le`, `sa`, `eb`)"),
        ("category" = Option<String>, Query, description = "Category token (`system|code` or `code`)"),
        ("code" = Option<String>, Query, description = "Clinical code token"),
        ("identifier" = Option<String>, Query, description = "Business identifier token"),
        ("_id" = Option<String>, Query, description = "Logical id"),
        ("_security" = Option<String>, Query, description = "Security label token"),
        ("_lastUpdated" = Option<String>, Query, description = "When stored, with a FHIR prefix"),
        ("_count" = inline(Option<crate::api::openapi::schemas::PageSize>), Query, description = "Page size (capped by the configured maximum)"),
        ("_cursor" = Option<String>, Query, description = "Paging token from a `next` link"),
    ),
    responses(
        (status = 200, description = "A searchset Bundle", body = Bundle, content_type = "application/fhir+json"),
        (status = 400, description = "`unknown_resource_type`, `unsupported_search_parameter`, `invalid_search_value`, ...", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/{type}")]
pub async fn search_type(
    state: Data<AppState>,
    caller: ReadCaller,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    search_handler(state, caller, path, req).await
}

/// [`search_type`]'s body, which `api::hot_routes` mounts again ahead of the other routes.
pub(super) async fn search_handler(
    state: Data<AppState>,
    ReadCaller(principal): ReadCaller,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let resource_type = path.into_inner();
    let request_id = audit::request_id(&req);
    let query = req.query_string();
    match asker(principal)? {
        Asker::Recipient(claims) => {
            let page = release::search(&state, &claims, &request_id, &resource_type, query).await?;
            let links = page_links(&state.fhir_base(), &page);
            Ok(fhir_json(
                StatusCode::OK,
                searchset_json(&state.fhir_base(), &page.resources, &links),
            ))
        }
        Asker::Person(person) => {
            let bundle =
                direct::search(&state, &person, &request_id, &resource_type, query).await?;
            Ok(fhir_ok(StatusCode::OK, &bundle))
        }
    }
}

fn with_version_headers(body: &Value) -> HttpResponse {
    let mut response = HttpResponse::Ok();
    response.content_type(FHIR_JSON);
    if let Some(version) = body.pointer("/meta/versionId").and_then(Value::as_str) {
        response.insert_header((ETAG, format!("W/\"{version}\"")));
    }
    if let Some(updated) = body.pointer("/meta/lastUpdated").and_then(Value::as_str) {
        response.insert_header((LAST_MODIFIED, updated.to_string()));
    }
    response.body(json_bytes(body))
}
