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
use crate::records::{RecordError, consents, index, ingest};
use crate::store::DbConn;

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
    gateway.store.run(move |conn| requester_in(conn, &id)).await
}

/// [`requester`] on a connection already held.
fn requester_in(conn: &mut DbConn, client_id: &str) -> Result<Requester, DomainError> {
    let client = registry::active(conn, client_id)?.ok_or_else(|| {
        DomainError::new(
            ErrorKind::Unauthorized,
            "unauthorized",
            "a valid bearer token is required",
        )
    })?;
    Ok(Requester::of(&client))
}

/// The requester and one patient's context, read in one blocking-pool trip.
pub async fn requester_and_patient(
    gateway: &Gateway,
    claims: &AccessClaims,
    patient: &PatientId,
) -> Result<(Requester, PatientContext), DomainError> {
    let (id, p) = (claims.client_id.clone(), patient.clone());
    gateway
        .store
        .run(move |conn| {
            let requester = requester_in(conn, &id)?;
            Ok((requester, PatientContext::load_in(conn, p)?))
        })
        .await
}

/// What a recipient's read of one resource needs, read in one blocking-pool trip (one
/// pooled connection, no hand-off between the reads): the client's registration, the
/// resource, and the context of the patient who owns it. `None` when the resource is
/// missing or belongs to no patient (the caller answers both alike).
pub async fn requester_and_resource(
    gateway: &Gateway,
    claims: &AccessClaims,
    resource_type: &str,
    resource_id: &str,
) -> Result<(Requester, Option<(Value, PatientContext)>), DomainError> {
    let id = claims.client_id.clone();
    let (ty, key) = (resource_type.to_string(), resource_id.to_string());
    gateway
        .store
        .run(move |conn| {
            let requester = requester_in(conn, &id)?;
            let resource = match ingest::read(conn, &ty, &key) {
                Ok(v) => v,
                Err(RecordError::NotFound { .. }) => return Ok((requester, None)),
                Err(e) => return Err(e.into()),
            };
            let Some(patient) =
                index::patient_of(&ty, &key, &resource).and_then(|p| PatientId::parse(&p).ok())
            else {
                return Ok((requester, None));
            };
            let context = PatientContext::load_in(conn, patient)?;
            Ok((requester, Some((resource, context))))
        })
        .await
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
        Ok(gateway
            .store
            .run(move |conn| PatientContext::load_in(conn, p))
            .await?)
    }

    /// [`PatientContext::load`] on a connection already held.
    fn load_in(conn: &mut DbConn, patient: PatientId) -> Result<PatientContext, RecordError> {
        let consents = consents::for_patient(conn, patient.as_str())?;
        let sources = match ingest::read(conn, "Patient", patient.as_str()) {
            Ok(v) => vec![v],
            Err(RecordError::NotFound { .. }) => Vec::new(),
            Err(e) => return Err(e),
        };
        Ok(PatientContext {
            patient,
            consents,
            sources,
        })
    }
}
