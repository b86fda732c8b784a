//! `GET /fhir/Patient/{id}/$summary` over HTTP; the document is built in [`crate::summary`].

use actix_web::http::StatusCode;
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get};

use super::auth::Caller;
use super::error::ApiError;
use super::fhir::{Asker, asker, fhir_ok};
use super::openapi::schemas::{Bundle, OperationOutcome};
use super::{AppState, audit};
use crate::ids::PatientId;
use crate::records::RecordError;

/// `GET /fhir/Patient/{id}/$summary`: the International Patient Summary document of what the
/// caller may see of the patient (`crate::summary`).
#[utoipa::path(
    tag = "fhir",
    security(("client" = []), ("operator" = []), ("patient" = [])),
    params(("id" = String, Path, description = "The Patient id")),
    responses(
        (status = 200, description = "An International Patient Summary document Bundle of what the caller may see", body = Bundle, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Patient/{id}/$summary")]
pub async fn summary(
    state: Data<AppState>,
    Caller(principal): Caller,
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
    let who = match &asker {
        Asker::Recipient(claims) => crate::summary::Asker::Recipient(claims),
        Asker::Person(person) => crate::summary::Asker::Person(person),
    };
    let document = crate::summary::summary(&state, who, &request_id, &patient).await?;
    Ok(fhir_ok(StatusCode::OK, &document))
}
