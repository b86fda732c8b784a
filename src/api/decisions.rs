//! `POST /api/v1/decisions`: what the gateway would decide for one client, purpose, patient
//! and resource ([`crate::sharing::question`] decides who may ask and what they learn).

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json};
use actix_web::{HttpRequest, HttpResponse, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::Caller;
use super::error::ApiError;
use super::{AppState, audit};
use crate::ids::{ClientId, PatientId};
use crate::policy::PolicyAction;
use crate::sharing::question::{self, Answer, Asked, DecisionQuestion};

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

/// `POST /api/v1/decisions`.
#[post("/api/v1/decisions")]
pub async fn decide(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    body: Json<DecisionRequest>,
) -> Result<HttpResponse, ApiError> {
    let ask = body.into_inner();
    let bad = |code, message: &str| ApiError::new(StatusCode::BAD_REQUEST, code, message);
    let action = match ask.action.as_deref().unwrap_or("read") {
        "read" => PolicyAction::Read,
        "export" => PolicyAction::Export,
        "disclose" => PolicyAction::Disclose,
        _ => {
            return Err(bad(
                "invalid_action",
                "action must be read, export or disclose",
            ));
        }
    };
    let patient = PatientId::parse(&ask.patient)
        .map_err(|_| bad("invalid_patient", "patient must be a FHIR id"))?;
    let client_id = ClientId::parse(&ask.client_id)
        .map_err(|_| bad("invalid_client_id", "client_id must be a client id"))?;
    let resource = match (ask.resource.reference, ask.resource.attributes) {
        (Some(reference), None) => {
            let (resource_type, id) = reference
                .split_once('/')
                .ok_or_else(|| bad("invalid_reference", "reference must be Type/id"))?;
            Asked::Stored {
                resource_type: resource_type.to_string(),
                id: id.to_string(),
            }
        }
        (None, Some(attributes)) => Asked::Attributes(attributes),
        _ => {
            return Err(bad(
                "invalid_resource",
                "give exactly one of resource.reference and resource.attributes",
            ));
        }
    };
    let question = DecisionQuestion {
        client_id,
        purpose: ask.purpose,
        patient,
        action,
        resource,
        justification: ask.justification,
    };
    let answer = question::ask(&state, &principal, &audit::request_id(&req), question).await?;
    let body = match answer {
        Answer::Full(d) => json!({
            "decision": if d.permit { "permit" } else { "deny" },
            "obligations": d.obligations,
            "consent": d.consent,
            "policies": d.policies,
            "emergency_opt_out": d.emergency_opt_out,
            "explanation": d.explanation,
        }),
        Answer::ForClient {
            permit: true,
            obligations,
        } => json!({
            "decision": "permit",
            "obligations": obligations,
            "explanation": [CLIENT_PERMIT],
        }),
        Answer::ForClient { permit: false, .. } => json!({
            "decision": "deny",
            "obligations": [],
            "explanation": [CLIENT_DENY],
        }),
    };
    Ok(HttpResponse::Ok().json(body))
}
