//! `POST /api/v1/decisions`: what the gateway would decide for one client, purpose, patient
//! and resource, with the obligations and an explanation a patient can read. It runs the same
//! [`crate::decision::decide`] every read runs; it is audited like any other decision.
//!
//! Who may ask: an operator (any client, any patient), a patient (about their own records),
//! or a client (about itself, with a purpose its registration allows).

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json};
use actix_web::{HttpRequest, HttpResponse, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::ApiError;
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::registry;
use crate::decision::{self, Question, Requester};
use crate::policy::PolicyAction;
use crate::records::validate::is_resource_type;
use crate::records::{RecordError, consents, index, ingest, validate};
use crate::store::identity;

/// The resource asked about: a stored one, or the attributes of one not yet stored.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// `Type/id` of a stored resource.
    #[serde(default)]
    pub reference: Option<String>,
    /// A FHIR resource (need not be stored), e.g. `{"resourceType": "Observation", ...}`.
    #[serde(default)]
    pub attributes: Option<Value>,
}

/// The request body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DecisionRequest {
    /// The client asking (its id).
    pub client_id: String,
    /// The purpose of use (v3 ActReason code).
    pub purpose: String,
    /// The patient.
    pub patient: String,
    /// `read` (default), `export` or `disclose`.
    #[serde(default)]
    pub action: Option<String>,
    /// What is asked for.
    pub resource: ResourceRef,
    /// A break-glass justification, to ask about emergency access.
    #[serde(default)]
    pub justification: Option<String>,
}

/// What a client learns when the answer is yes.
const CLIENT_PERMIT: &str = "The gateway would share this record with you for this purpose.";
/// What a client learns otherwise: the same words whether the record is hidden or missing.
const CLIENT_DENY: &str = "The gateway would not share this record with you for this purpose, or there is no such record.";

fn problem(status: StatusCode, code: &'static str, message: &str) -> ApiError {
    ApiError::new(status, code, message.to_string())
}

/// `POST /api/v1/decisions`.
#[post("/api/v1/decisions")]
pub async fn decide(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    body: Json<DecisionRequest>,
) -> Result<HttpResponse, ApiError> {
    let ask = body.into_inner();
    let action = match ask.action.as_deref().unwrap_or("read") {
        "read" => PolicyAction::Read,
        "export" => PolicyAction::Export,
        "disclose" => PolicyAction::Disclose,
        _ => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "invalid_action",
                "action must be read, export or disclose",
            ));
        }
    };
    if !validate::is_valid_id(&ask.patient) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_patient",
            "patient must be a FHIR id",
        ));
    }
    if !state.purposes.is_known(&ask.purpose) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_purpose",
            "purpose must be a v3 ActReason code",
        ));
    }
    // A client asks only about itself, for a purpose it could get a token for, and learns
    // only the answer: a hidden and a missing record answer alike, and nothing names the
    // consents, labels or policies it cannot read. Patients and operators get the whole
    // explanation.
    let client_view = match &principal {
        Principal::Operator { .. } => false,
        Principal::Patient { patient_id, .. } if *patient_id == ask.patient => false,
        Principal::Client(c) if c.client_id == ask.client_id => true,
        _ => {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "this caller may not ask about this client or patient",
            ));
        }
    };
    let client_id = ask.client_id.clone();
    let patient = ask.patient.clone();
    let reference = ask.resource.reference.clone();
    let attributes = ask.resource.attributes.clone();
    let (client, consents, resource) = state
        .store
        .run(move |conn| {
            let row = identity::active_client(conn, &client_id)?
                .ok_or_else(|| RecordError::not_found("unknown_client", "no such client"))?;
            let consents = consents::for_patient(conn, &patient)?;
            let resource = match (reference, attributes) {
                (Some(r), None) => {
                    let (ty, id) = r.split_once('/').ok_or_else(|| {
                        RecordError::invalid("invalid_reference", "reference must be Type/id")
                    })?;
                    validate::resource_type(ty)?;
                    match ingest::read(conn, ty, id) {
                        Ok(body)
                            if index::patient_of(ty, id, &body).as_deref()
                                == Some(patient.as_str()) =>
                        {
                            Some(body)
                        }
                        Ok(_) | Err(RecordError::NotFound { .. }) if client_view => None,
                        Ok(_) => {
                            return Err(RecordError::not_found(
                                "not_found",
                                format!("{ty}/{id} is not a record of this patient"),
                            ));
                        }
                        Err(e) => return Err(e),
                    }
                }
                (None, Some(attrs)) => {
                    validate::resource(&attrs)?;
                    Some(attrs)
                }
                _ => {
                    return Err(RecordError::invalid(
                        "invalid_resource",
                        "give exactly one of resource.reference and resource.attributes",
                    ));
                }
            };
            Ok::<_, RecordError>((row, consents, resource))
        })
        .await
        .map_err(|e: RecordError| ApiError::from(e))?;
    let client = registry::from_row(client)?;
    if client_view && !client.may_use_purpose(&ask.purpose, state.purposes, &state.settings.roles) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "purpose_not_allowed",
            "the purpose of use is not allowed for this client",
        ));
    }
    let requester = Requester::of(&client);
    let decision = match resource {
        Some(mut resource) => {
            // Attributes of a resource not yet stored get the labels ingest would give it.
            if ask.resource.attributes.is_some() {
                state
                    .institution
                    .labeller
                    .apply(&mut resource)
                    .map_err(|e| {
                        problem(StatusCode::BAD_REQUEST, "invalid_resource", &e.to_string())
                    })?;
            }
            let decision = decision::decide(
                &state.institution.policies,
                state.purposes,
                &consents,
                &Question {
                    requester: &requester,
                    purpose: &ask.purpose,
                    action,
                    patient_id: &ask.patient,
                    resource: &resource,
                    break_glass: ask
                        .justification
                        .as_deref()
                        .filter(|j| !j.trim().is_empty()),
                    now: crate::records::dates::now_micros(),
                },
            );
            Some((resource, decision))
        }
        None => None,
    };
    let permit = decision.as_ref().is_some_and(|(_, d)| d.permit);
    let mut entry = audit::entry_for(
        &principal,
        AuditAction::Decision,
        if permit {
            AuditOutcome::Success
        } else {
            AuditOutcome::Denied
        },
        audit::request_id(&req),
    );
    entry.patient_id = Some(ask.patient.clone());
    entry
        .detail
        .insert("asked_for_client".into(), client.id.clone());
    if let Some(reference) = ask.resource.reference.as_deref().filter(|r| {
        r.split_once('/')
            .is_some_and(|(t, i)| is_resource_type(t) && validate::is_valid_id(i))
    }) {
        entry.resources = vec![reference.to_string()];
    }
    if let Some((resource, d)) = &decision {
        entry.consents = d
            .consent
            .deciding
            .iter()
            .map(|p| p.consent_id.clone())
            .filter(|c| validate::is_valid_id(c))
            .collect();
        entry.policies = d.policies.clone();
        if let (Some(ty), Some(id)) = (resource["resourceType"].as_str(), resource["id"].as_str()) {
            entry.resources = vec![format!("{ty}/{id}")];
        }
    }
    audit::record(&state, entry).await?;
    let body = match decision {
        Some((_, d)) if !client_view => json!({
            "decision": if d.permit { "permit" } else { "deny" },
            "obligations": d.obligations,
            "consent": d.consent,
            "policies": d.policies,
            "emergency_opt_out": d.emergency_opt_out,
            "explanation": d.explanation,
        }),
        Some((_, d)) if d.permit => json!({
            "decision": "permit",
            "obligations": d.obligations,
            "explanation": [CLIENT_PERMIT],
        }),
        // A client's "no", hidden or missing alike (only a client's question can name a
        // record that is not there).
        _ => json!({
            "decision": "deny",
            "obligations": [],
            "explanation": [CLIENT_DENY],
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}
