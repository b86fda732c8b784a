//! Consents: `POST /fhir/Consent`, `GET /fhir/Consent?patient=&status=&actor=&purpose=`,
//! `GET/PUT /fhir/Consent/{id}`, `POST /fhir/Consent/{id}/$revoke`.
//!
//! The patient manages their own consents (an operator may act for them). Every consent is
//! validated as FHIR R4 on the way in, with one OperationOutcome issue per defect; every
//! version is kept; a revocation (status `inactive`) holds from the next request, because
//! consents are read afresh for every decision and never baked into a token.

use actix_web::http::StatusCode;
use actix_web::http::header::{ETAG, LOCATION};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get, post, put};
use serde_json::{Value, json};

use super::auth::Reader;
use super::body::FhirJson;
use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::consent::Consent;
use crate::records::outcome::ERROR_CODE_SYSTEM;
use crate::records::{RecordError, consents, index, ingest, validate};
use crate::store::write_tx;

/// The OperationOutcome for a consent's defects, one issue each.
fn defects_outcome(defects: &crate::consent::ConsentDefects) -> HttpResponse {
    let issues: Vec<Value> = defects
        .defects
        .iter()
        .map(|d| {
            json!({
                "severity": "error",
                "code": "invalid",
                "details": {
                    "coding": [{"system": ERROR_CODE_SYSTEM, "code": d.kind.code()}],
                    "text": d.to_string()
                },
                "diagnostics": d.to_string(),
                "expression": [d.expression()]
            })
        })
        .collect();
    HttpResponse::build(StatusCode::UNPROCESSABLE_ENTITY)
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "OperationOutcome", "issue": issues}).to_string())
}

fn forbidden_patient() -> ApiError {
    ApiError::new(
        StatusCode::FORBIDDEN,
        "not_your_consent",
        "a patient manages only their own consents",
    )
}

/// Checks the consent and who may write it; returns its patient id.
fn admit(reader: &Reader, consent: &Value) -> Result<Result<String, HttpResponse>, ApiError> {
    if validate::resource(consent)? != "Consent" {
        return Err(RecordError::invalid("type_mismatch", "the body is not a Consent").into());
    }
    let parsed = match Consent::from_fhir(consent) {
        Ok(c) => c,
        Err(defects) => return Ok(Err(defects_outcome(&defects))),
    };
    // The one ownership rule: a consent whose patient elements disagree is refused, so the
    // patient checked here is the one the index files it under.
    let id = consent
        .get("id")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let patient = index::owner("Consent", id, consent)
        .map_err(|c| RecordError::unprocessable("conflicting_patient", c.to_string()))?
        .unwrap_or_else(|| parsed.patient_id().to_string());
    if let Some(own) = &reader.only_patient
        && *own != patient
    {
        return Err(forbidden_patient());
    }
    Ok(Ok(patient))
}

async fn audit_consent(
    state: &AppState,
    reader: &Reader,
    req: &HttpRequest,
    action: AuditAction,
    patient: &str,
    id: &str,
) -> Result<(), ApiError> {
    let mut entry = audit::entry_for(
        &reader.principal,
        action,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = Some(patient.to_string());
    entry.consents = vec![id.to_string()];
    entry.resources = vec![format!("Consent/{id}")];
    audit::record(state, entry).await.map(|_| ())
}

fn stored_response(status: StatusCode, base: &str, stored: &ingest::Stored) -> HttpResponse {
    HttpResponse::build(status)
        .content_type(FHIR_JSON)
        .insert_header((LOCATION, format!("{base}/{}", stored.location())))
        .insert_header((ETAG, stored.etag()))
        .body(stored.body.to_string())
}

/// `POST /fhir/Consent`.
#[post("/Consent")]
pub async fn create(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    FhirJson(consent): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let mut consent = consent;
    let id = ingest::new_id();
    if let Some(object) = consent.as_object_mut() {
        object.insert("id".into(), Value::String(id.clone()));
    }
    let patient = match admit(&reader, &consent)? {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let stored = state
        .store
        .run(move |conn| write_tx(conn, |conn| ingest::put(conn, "Consent", &id, consent)))
        .await?;
    audit_consent(
        &state,
        &reader,
        &req,
        AuditAction::Grant,
        &patient,
        &stored.id,
    )
    .await?;
    Ok(stored_response(
        StatusCode::CREATED,
        &state.fhir_base(),
        &stored,
    ))
}

/// `PUT /fhir/Consent/{id}`: a new version; the patient may not move a consent to another
/// patient.
#[put("/Consent/{id}")]
pub async fn update(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
    FhirJson(consent): FhirJson,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    validate::id(&id)?;
    if consent
        .get("id")
        .is_some_and(|v| v.as_str() != Some(id.as_str()))
    {
        return Err(
            RecordError::invalid("id_mismatch", "the body's `id` differs from the URL").into(),
        );
    }
    let mut consent = consent;
    if let Some(object) = consent.as_object_mut() {
        object.insert("id".into(), Value::String(id.clone()));
    }
    let patient = match admit(&reader, &consent)? {
        Ok(p) => p,
        Err(outcome) => return Ok(outcome),
    };
    let only = reader.only_patient.clone();
    let (key, owner) = (id.clone(), patient.clone());
    let stored = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                if let Ok(existing) = ingest::read(conn, "Consent", &key) {
                    let previous = index::patient_of("Consent", &key, &existing);
                    if only.is_some() && previous.as_deref() != Some(owner.as_str()) {
                        return Err(RecordError::not_found(
                            "not_found",
                            format!("Consent/{key} is not known"),
                        ));
                    }
                }
                ingest::put(conn, "Consent", &key, consent)
            })
        })
        .await?;
    audit_consent(&state, &reader, &req, AuditAction::Grant, &patient, &id).await?;
    let status = if stored.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok(stored_response(status, &state.fhir_base(), &stored))
}

/// Reads a consent the reader may see.
async fn load(state: &AppState, reader: &Reader, id: String) -> Result<Value, ApiError> {
    let only = reader.only_patient.clone();
    Ok(state
        .store
        .run(move |conn| {
            let body = ingest::read(conn, "Consent", &id)?;
            let patient = index::patient_of("Consent", &id, &body);
            if let Some(own) = only
                && patient.as_deref() != Some(own.as_str())
            {
                return Err(RecordError::not_found(
                    "not_found",
                    format!("Consent/{id} is not known"),
                ));
            }
            Ok::<_, RecordError>(body)
        })
        .await?)
}

/// `GET /fhir/Consent/{id}`.
#[get("/Consent/{id}")]
pub async fn read(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let body = load(&state, &reader, path.into_inner()).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string()))
}

/// `POST /fhir/Consent/{id}/$revoke`: status becomes `inactive`, as a new version.
#[post("/Consent/{id}/$revoke")]
pub async fn revoke(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let mut body = load(&state, &reader, id.clone()).await?;
    let patient = index::patient_of("Consent", &id, &body).unwrap_or_default();
    body["status"] = json!("inactive");
    let key = id.clone();
    let stored = state
        .store
        .run(move |conn| write_tx(conn, |conn| ingest::put(conn, "Consent", &key, body)))
        .await?;
    audit_consent(&state, &reader, &req, AuditAction::Revoke, &patient, &id).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(stored.body.to_string()))
}

/// `GET /fhir/Consent?patient=&status=&actor=&purpose=`: a patient's consents (a patient
/// token implies its own patient). Patients hold few consents, so the filters run in memory
/// over the parsed model.
#[get("/Consent")]
pub async fn search(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut patient = reader.only_patient.clone();
    let (mut status, mut actor, mut purpose) = (None, None, None);
    for (name, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        let value = value.into_owned();
        match name.as_ref() {
            "patient" => {
                let id = crate::records::index::patient_id_from_reference(&value).unwrap_or(value);
                if reader.only_patient.as_ref().is_some_and(|own| *own != id) {
                    return Err(forbidden_patient());
                }
                patient = Some(id);
            }
            "status" => status = Some(value),
            "actor" => actor = Some(value),
            "purpose" => purpose = Some(value),
            "_count" | "_format" => {}
            other => {
                return Err(RecordError::invalid(
                    "unsupported_search_parameter",
                    format!(
                        "search parameter `{}` is not supported on Consent",
                        validate::printable(other, 40)
                    ),
                )
                .into());
            }
        }
    }
    let patient = patient.ok_or_else(|| {
        ApiError::from(RecordError::invalid(
            "missing_patient",
            "`patient` is required",
        ))
    })?;
    let stored = state
        .store
        .run(move |conn| consents::stored_for_patient(conn, &patient))
        .await?;
    let catalog = state.purposes;
    let base = state.fhir_base();
    let entries: Vec<Value> = stored
        .into_iter()
        .filter(|v| status.as_deref().is_none_or(|s| v["status"] == s))
        .filter(|v| {
            let Ok(c) = Consent::from_fhir(v) else { return false };
            let provisions = c.provision().map(all_provisions).unwrap_or_default();
            actor.as_deref().is_none_or(|a| {
                provisions.iter().any(|p| p.actors().iter().any(|x| x.reference() == a))
            }) && purpose.as_deref().is_none_or(|want| {
                provisions.iter().any(|p| p.purposes().iter().any(|c| catalog.is_a(want, &c.code)))
            })
        })
        .map(|v| {
            let id = v["id"].as_str().unwrap_or_default().to_string();
            json!({"fullUrl": format!("{base}/Consent/{id}"), "resource": v, "search": {"mode": "match"}})
        })
        .collect();
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}).to_string()))
}

fn all_provisions(root: &crate::consent::Provision) -> Vec<&crate::consent::Provision> {
    let mut out = vec![root];
    let mut i = 0;
    while i < out.len() {
        out.extend(out[i].provisions().iter());
        i += 1;
    }
    out
}
