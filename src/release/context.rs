//! The facts every decision of one release shares: who asks (the recipient's token and its
//! registration, read afresh) and about whom (the patient's consents, read afresh, the
//! patient's own record, which the de-identification leak scan checks outputs against, and
//! the records the patient disputes).
//!
//! A recipient's request reads all of them in **one** blocking-pool trip, on one pooled
//! connection, including the bearer token's database check (client still registered, token
//! not revoked) that `auth::bearer` leaves to this trip on the FHIR read routes
//! (`api::auth::ReadCaller`): each trip is a hand-off to another thread and back, the
//! largest cost of the hot path (`docs/PERFORMANCE.md`). Nothing here is cached, so a
//! revocation or a removal on any instance holds from the next request.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::auth::bearer::client_is_live;
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
/// since its token was issued, or a token revoked, is refused as unauthenticated.
pub async fn requester(gateway: &Gateway, claims: &AccessClaims) -> Result<Requester, DomainError> {
    let (id, jti) = (claims.client_id.clone(), claims.jti.clone());
    gateway
        .store
        .run(move |conn| requester_in(conn, &id, &jti))
        .await
}

/// [`requester`] on a connection already held: the bearer token's database check and the
/// client's registration.
fn requester_in(conn: &mut DbConn, client_id: &str, jti: &str) -> Result<Requester, DomainError> {
    let refused = || {
        DomainError::new(
            ErrorKind::Unauthorized,
            "unauthorized",
            "a valid bearer token is required",
        )
    };
    if !client_is_live(conn, client_id, jti)? {
        return Err(refused());
    }
    let client = registry::active(conn, client_id)?.ok_or_else(refused)?;
    Ok(Requester::of(&client))
}

/// The records a patient disputes: `Type/id` to the statement's DocumentReference id.
pub type Disputed = BTreeMap<String, String>;

/// The requester, one patient's context and the records the patient disputes, read in one
/// blocking-pool trip.
pub async fn requester_and_patient(
    gateway: &Gateway,
    claims: &AccessClaims,
    patient: &PatientId,
) -> Result<(Requester, PatientContext, Disputed), DomainError> {
    let (id, jti, p) = (
        claims.client_id.clone(),
        claims.jti.clone(),
        patient.clone(),
    );
    gateway
        .store
        .run(move |conn| {
            let requester = requester_in(conn, &id, &jti)?;
            let disputed = disputed_in(conn, p.as_str())?;
            Ok((requester, PatientContext::load_in(conn, p)?, disputed))
        })
        .await
}

fn disputed_in(conn: &mut DbConn, patient: &str) -> Result<Disputed, DomainError> {
    crate::amendment::dispute::disputed_in(conn, patient)
}

/// What a recipient's read of one resource needs, read in one blocking-pool trip (one
/// pooled connection, no hand-off between the reads): the token's database check, the
/// client's registration, the resource, the context of the patient who owns it and the
/// records that patient disputes. `None` when the resource is missing or belongs to no
/// patient (the caller answers both alike).
pub async fn requester_and_resource(
    gateway: &Gateway,
    claims: &AccessClaims,
    resource_type: &str,
    resource_id: &str,
) -> Result<(Requester, Option<(Value, PatientContext, Disputed)>), DomainError> {
    let (id, jti) = (claims.client_id.clone(), claims.jti.clone());
    let (ty, key) = (resource_type.to_string(), resource_id.to_string());
    gateway
        .store
        .run(move |conn| {
            let requester = requester_in(conn, &id, &jti)?;
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
            let disputed = disputed_in(conn, patient.as_str())?;
            let context = PatientContext::load_in(conn, patient)?;
            Ok((requester, Some((resource, context, disputed))))
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
