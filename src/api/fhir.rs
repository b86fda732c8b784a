//! FHIR record endpoints. For now every one of them is the operator's; recipients reach
//! records through consent-checked reads.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, LAST_MODIFIED, LOCATION};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post, put};
use serde_json::Value;

use super::AppState;
use super::body::FhirJson;
use super::error::{ApiError, FHIR_JSON};
use super::operator::Operator;
use crate::records::ingest::{self, Stored};
use crate::records::{RecordError, bundle, search, validate};
use crate::store::write_tx;

fn fhir_ok(status: StatusCode, body: &Value) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .body(body.to_string())
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
#[post("")]
pub async fn post_bundle(
    state: Data<AppState>,
    _operator: Operator,
    FhirJson(bundle): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let limits = state.settings.limits;
    let response = state
        .store
        .run(move |conn| bundle::process(conn, bundle, &limits))
        .await?;
    Ok(fhir_ok(StatusCode::OK, &response))
}

/// `POST /fhir/{type}`: create with a server-assigned id.
#[post("/{type}")]
pub async fn create(
    state: Data<AppState>,
    _operator: Operator,
    path: Path<String>,
    FhirJson(resource): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let resource_type = path.into_inner();
    validate::resource_type(&resource_type)?;
    let stored = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put(conn, &resource_type, &ingest::new_id(), resource)
            })
        })
        .await?;
    Ok(stored_response(&state, &stored))
}

/// `PUT /fhir/{type}/{id}`: create or update under a client-chosen id, keeping every version.
#[put("/{type}/{id}")]
pub async fn update(
    state: Data<AppState>,
    _operator: Operator,
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
    let stored = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put(conn, &resource_type, &id, resource)
            })
        })
        .await?;
    Ok(stored_response(&state, &stored))
}

/// `GET /fhir/{type}/{id}`.
#[get("/{type}/{id}")]
pub async fn read(
    state: Data<AppState>,
    _operator: Operator,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = path.into_inner();
    let body = state
        .store
        .run(move |conn| ingest::read(conn, &resource_type, &id))
        .await?;
    Ok(with_version_headers(&body))
}

/// `GET /fhir/{type}/{id}/_history/{version}`.
#[get("/{type}/{id}/_history/{version}")]
pub async fn vread(
    state: Data<AppState>,
    _operator: Operator,
    path: Path<(String, String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id, version) = path.into_inner();
    let body = state
        .store
        .run(move |conn| ingest::read_version(conn, &resource_type, &id, &version))
        .await?;
    Ok(with_version_headers(&body))
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
    response.body(body.to_string())
}

/// `GET /fhir/{type}?...`: search.
#[get("/{type}")]
pub async fn search_type(
    state: Data<AppState>,
    _operator: Operator,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let resource_type = path.into_inner();
    let parsed = search::parse(&resource_type, req.query_string(), &state.settings.limits)?;
    let base = state.fhir_base();
    let bundle = state
        .store
        .run(move |conn| search::run(conn, &parsed, &base))
        .await?;
    Ok(fhir_ok(StatusCode::OK, &bundle))
}
