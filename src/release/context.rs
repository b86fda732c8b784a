//! The facts every decision of one release shares: who asks (the recipient's token and its
//! registration, read afresh) and about whom (the patient's consents, read afresh, and the
//! patient's own record, which the de-identification leak scan checks outputs against).

use serde_json::Value;

use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::consent::Consent;
use crate::decision::Requester;
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::{RecordError, consents, ingest};

/// The recipient of a release: the grant its token carries and the requester facts of its
/// registration.
#[derive(Debug, Clone, Copy)]
pub struct Recipient<'a> {
    /// The verified access token: scopes, purpose of use, break-glass justification.
    pub claims: &'a AccessClaims,
    /// The registered client, as the decision engine sees it.
    pub requester: &'a Requester,
}

/// The registered client behind a token, as the decision engine sees it. A client removed
/// since its token was issued is refused as unauthenticated.
pub async fn requester(gateway: &Gateway, claims: &AccessClaims) -> Result<Requester, DomainError> {
    let id = claims.client_id.clone();
    let client = gateway
        .store
        .run(move |conn| registry::active(conn, &id))
        .await?
        .ok_or_else(|| {
            DomainError::new(
                ErrorKind::Unauthorized,
                "unauthorized",
                "a valid bearer token is required",
            )
        })?;
    Ok(Requester::of(&client))
}

/// One patient's side of a release.
#[derive(Debug, Clone)]
pub struct PatientContext {
    /// The patient.
    pub patient: PatientId,
    /// Every consent of the patient, read for this request (never cached, so a revocation
    /// holds from the next request).
    pub consents: Vec<Consent>,
    /// The patient's own Patient resource when stored: the identifiers a de-identified
    /// output must not contain.
    pub sources: Vec<Value>,
}

impl PatientContext {
    /// Reads the consents and the Patient resource of `patient`.
    pub async fn load(
        gateway: &Gateway,
        patient: &PatientId,
    ) -> Result<PatientContext, DomainError> {
        let p = patient.clone();
        let (consents, sources) = gateway
            .store
            .run(move |conn| {
                let consents = consents::for_patient(conn, p.as_str())?;
                let sources = match ingest::read(conn, "Patient", p.as_str()) {
                    Ok(v) => vec![v],
                    Err(RecordError::NotFound { .. }) => Vec::new(),
                    Err(e) => return Err(e),
                };
                Ok::<_, RecordError>((consents, sources))
            })
            .await?;
        Ok(PatientContext {
            patient: patient.clone(),
            consents,
            sources,
        })
    }
}
