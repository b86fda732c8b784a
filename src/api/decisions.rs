//! `POST /api/v1/decisions`: what the gateway would decide for one client, purpose, patient
//! and resource ([`crate::sharing::question`] decides who may ask and what they learn).

use actix_web::http::StatusCode;
use actix_web::web::{Data, Json};
use actix_web::{HttpRequest, HttpResponse, post};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::auth::Caller;
use super::error::ApiError;
use super::openapi::schemas::Problem;
use super::{AppState, audit};
use crate::consent::ConsentResult;
use crate::ids::{ClientId, PatientId};
use crate::policy::{Obligation, PolicyAction};
use crate::sharing::question::{self, Answer, Asked, DecisionQuestion};

/// The resource asked about: a stored one, or the attributes of one not yet stored.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResourceRef {
    /// `Type/id` of a stored resource.
    #[serde(default)]
    pub reference: Option<String>,
    /// A FHIR resource (need not be stored), e.g. `{"resourceType": "Observation", ...}`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    pub attributes: Option<Value>,
}

/// The request body.
#[derive(Debug, Deserialize, ToSchema)]
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

/// The answer: the whole decision for the patient and operators; for a client asking about
/// itself, only whether and with which obligations.
#[derive(Debug, Serialize, ToSchema)]
pub struct DecisionAnswer {
    /// `permit` or `deny`.
    pub decision: &'static str,
    /// What would be done to the resource (e.g. `deidentify:safe-harbor`).
    #[schema(value_type = Vec<String>)]
    pub obligations: Vec<Obligation>,
    /// Step 1: the consents' result and the provisions that decided (not for clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub consent: Option<ConsentResult>,
    /// Step 2: the Cedar policies that decided (not for clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policies: Option<Vec<String>>,
    /// Whether the patient opted out of emergency access (not for clients).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub emergency_opt_out: Option<bool>,
    /// Sentences a patient can read.
    pub explanation: Vec<String>,
}

/// `POST /api/v1/decisions`: what the gateway would decide, and why.
#[utoipa::path(
    tag = "decisions",
    security(("operator" = []), ("patient" = []), ("client" = [])),
    responses(
        (status = 200, description = "The decision", body = DecisionAnswer),
        (status = 400, description = "`invalid_json`, `invalid_action`, `invalid_patient`, `invalid_client_id`, `invalid_reference`, `invalid_resource`", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "`not_found`: the resource, or `unknown_client`", body = Problem, content_type = "application/problem+json"),
        (status = 422, description = "The question does not hold together (e.g. `unknown_purpose`)", body = Problem, content_type = "application/problem+json"),
    )
)]
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
        Answer::Full(d) => DecisionAnswer {
            decision: if d.permit { "permit" } else { "deny" },
            obligations: d.obligations,
            consent: Some(d.consent),
            policies: Some(d.policies),
            emergency_opt_out: Some(d.emergency_opt_out),
            explanation: d.explanation,
        },
        Answer::ForClient {
            permit: true,
            obligations,
        } => DecisionAnswer {
            decision: "permit",
            obligations,
            consent: None,
            policies: None,
            emergency_opt_out: None,
            explanation: vec![CLIENT_PERMIT.into()],
        },
        Answer::ForClient { permit: false, .. } => DecisionAnswer {
            decision: "deny",
            obligations: vec![],
            consent: None,
            policies: None,
            emergency_opt_out: None,
            explanation: vec![CLIENT_DENY.into()],
        },
    };
    Ok(HttpResponse::Ok().json(body))
}
