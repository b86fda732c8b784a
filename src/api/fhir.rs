//! FHIR record endpoints. Writes are the operator's; reads are the operator's and the
//! patient's own (a patient token reaches only resources of that patient: anything else
//! answers 404, as if it did not exist). Recipients reach records through consent-checked
//! reads.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, LAST_MODIFIED, LOCATION};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post, put};
use serde_json::Value;

use std::collections::BTreeMap;

use super::auth::{Caller, Operator, Reader};
use super::body::FhirJson;
use super::broker;
use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::tokens::AccessClaims;
use crate::records::ingest::{self, Stored};
use crate::records::{RecordError, bundle, index, search, validate};
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
    let st = state.clone();
    let response = state
        .store
        .run(move |conn| bundle::process(conn, bundle, &limits, &st.institution.labeller))
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
    let st = state.clone();
    let stored = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put_labelled(
                    conn,
                    &st.institution.labeller,
                    &resource_type,
                    &ingest::new_id(),
                    resource,
                )
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
    let st = state.clone();
    let stored = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put_labelled(
                    conn,
                    &st.institution.labeller,
                    &resource_type,
                    &id,
                    resource,
                )
            })
        })
        .await?;
    Ok(stored_response(&state, &stored))
}

/// `GET /fhir/{type}/{id}`.
#[get("/{type}/{id}")]
pub async fn read(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<(String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id) = path.into_inner();
    let reader = match reader_or_client(principal)? {
        Ok(reader) => reader,
        Err(claims) => return broker::read(&state, &claims, &req, resource_type, id).await,
    };
    let only = reader.only_patient.clone();
    let body = state
        .store
        .run(move |conn| {
            let body = ingest::read(conn, &resource_type, &id)?;
            visible_to(only.as_deref(), &resource_type, &id, &body)?;
            Ok::<_, RecordError>(body)
        })
        .await?;
    audit_disclosure(
        &state,
        &reader,
        &req,
        AuditAction::Read,
        std::slice::from_ref(&body),
    )
    .await?;
    Ok(with_version_headers(&body))
}

/// `GET /fhir/{type}/{id}/_history/{version}`.
#[get("/{type}/{id}/_history/{version}")]
pub async fn vread(
    state: Data<AppState>,
    reader: Reader,
    path: Path<(String, String, String)>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let (resource_type, id, version) = path.into_inner();
    let only = reader.only_patient.clone();
    let body = state
        .store
        .run(move |conn| {
            let body = ingest::read_version(conn, &resource_type, &id, &version)?;
            visible_to(only.as_deref(), &resource_type, &id, &body)?;
            Ok::<_, RecordError>(body)
        })
        .await?;
    audit_disclosure(
        &state,
        &reader,
        &req,
        AuditAction::Read,
        std::slice::from_ref(&body),
    )
    .await?;
    Ok(with_version_headers(&body))
}

/// Operators and patients read directly; recipient clients go through the broker.
fn reader_or_client(principal: Principal) -> Result<Result<Reader, AccessClaims>, ApiError> {
    match principal {
        Principal::Client(claims) if claims.role == "data_source" => Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a data source sends records; it does not read them",
        )),
        Principal::Client(claims) => Ok(Err(*claims)),
        Principal::Patient { ref patient_id, .. } => Ok(Ok(Reader {
            only_patient: Some(patient_id.clone()),
            principal,
        })),
        Principal::Operator { .. } => Ok(Ok(Reader {
            principal,
            only_patient: None,
        })),
    }
}

/// `GET /fhir/Patient/{id}/$everything`: every resource of the patient the caller may see.
#[get("/Patient/{id}/$everything")]
pub async fn everything(
    state: Data<AppState>,
    Caller(principal): Caller,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let patient = path.into_inner();
    let reader = match reader_or_client(principal)? {
        Ok(reader) => reader,
        Err(claims) => return broker::everything(&state, &claims, &req, patient).await,
    };
    if reader
        .only_patient
        .as_ref()
        .is_some_and(|own| *own != patient)
        || !validate::is_valid_id(&patient)
    {
        return Err(
            RecordError::not_found("not_found", format!("Patient/{patient} is not known")).into(),
        );
    }
    let p = patient.clone();
    let all = state
        .store
        .run(move |conn| crate::store::resources::current_for_patient(conn, &p))
        .await?;
    let resources: Vec<Value> = all
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str(&body).ok())
        .collect();
    audit_disclosure(&state, &reader, &req, AuditAction::Read, &resources).await?;
    let base = state.fhir_base();
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| search::match_entry(&base, r))
        .collect();
    Ok(fhir_ok(
        StatusCode::OK,
        &serde_json::json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}),
    ))
}

/// A patient sees only resources of their own compartment; others do not exist for them.
fn visible_to(
    only_patient: Option<&str>,
    resource_type: &str,
    id: &str,
    body: &Value,
) -> Result<(), RecordError> {
    match only_patient {
        None => Ok(()),
        Some(own) if index::patient_of(resource_type, id, body).as_deref() == Some(own) => Ok(()),
        Some(_) => Err(RecordError::not_found(
            "not_found",
            format!("{resource_type}/{id} is not known"),
        )),
    }
}

/// Records what leaves, one entry per patient concerned (so each patient's accounting of
/// disclosures lists it), and waits until the entries are durable.
async fn audit_disclosure(
    state: &AppState,
    reader: &Reader,
    req: &HttpRequest,
    action: AuditAction,
    resources: &[Value],
) -> Result<(), ApiError> {
    let mut by_patient: BTreeMap<Option<String>, Vec<String>> = BTreeMap::new();
    for r in resources {
        let (Some(ty), Some(id)) = (
            r.get("resourceType").and_then(Value::as_str),
            r.get("id").and_then(Value::as_str),
        ) else {
            continue;
        };
        by_patient
            .entry(index::patient_of(ty, id, r))
            .or_default()
            .push(format!("{ty}/{id}"));
    }
    if by_patient.is_empty() {
        by_patient.insert(reader.only_patient.clone(), Vec::new());
    }
    let request_id = audit::request_id(req);
    for (patient, refs) in by_patient {
        let mut entry = audit::entry_for(
            &reader.principal,
            action,
            AuditOutcome::Success,
            request_id.clone(),
        );
        entry.detail.insert("count".into(), refs.len().to_string());
        entry.patient_id = patient;
        entry.resources = refs;
        audit::record(state, entry).await?;
    }
    Ok(())
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
    Caller(principal): Caller,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let resource_type = path.into_inner();
    let reader = match reader_or_client(principal)? {
        Ok(reader) => reader,
        Err(claims) => return broker::search_type(&state, &claims, &req, resource_type).await,
    };
    let mut parsed = search::parse(&resource_type, req.query_string(), &state.settings.limits)?;
    if let Some(own) = &reader.only_patient {
        search::restrict_to_patient(&mut parsed, own);
    }
    let base = state.fhir_base();
    let bundle = state
        .store
        .run(move |conn| search::run(conn, &parsed, &base))
        .await?;
    let found: Vec<Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    audit_disclosure(&state, &reader, &req, AuditAction::Search, &found).await?;
    Ok(fhir_ok(StatusCode::OK, &bundle))
}
