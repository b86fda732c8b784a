//! The patient page's server-side sessions. The browser holds a random value in a cookie;
//! the table holds its SHA-256, the patient, the issuer, a per-session CSRF token and an
//! expiry (`web.session_lifetime_secs`). Every page reads the session afresh, so signing out
//! (or the expiry) holds from the next request on every instance.

use super::{MICROS, hashed, random_token, same_secret};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::store::web::{self as rows, SessionRow};
use crate::store::write_tx;

/// A signed-in patient.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// The patient.
    pub patient: PatientId,
    /// Their account at the issuer.
    pub subject: String,
    /// The issuer that signed them in.
    pub issuer: String,
    /// The token every form of this session carries.
    pub csrf: String,
    /// When the session ends, microseconds since the epoch.
    pub expires: i64,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("patient", &self.patient)
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Session {
    /// The principal the page acts as: the patient, like a bearer token of theirs.
    pub fn principal(&self) -> Principal {
        Principal::Patient {
            patient_id: self.patient.to_string(),
            subject: self.subject.clone(),
        }
    }

    /// Whether a form's CSRF token is this session's.
    pub fn csrf_matches(&self, given: &str) -> bool {
        !given.is_empty() && same_secret(given, &self.csrf)
    }
}

/// Who signed in, as [`super::relying_party::finish`] established it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedIn {
    /// The patient.
    pub patient: PatientId,
    /// Their account at the issuer.
    pub subject: String,
    /// The issuer.
    pub issuer: String,
}

/// Opens a session for `who`; returns the cookie value (shown to the browser only) and the
/// session.
pub async fn open(gateway: &Gateway, who: SignedIn) -> Result<(String, Session), DomainError> {
    let cookie = random_token()?;
    let now = now_micros();
    let lifetime = gateway.settings.web.session_lifetime_secs as i64 * MICROS;
    let row = SessionRow {
        id_hash: hashed(&cookie),
        patient_id: who.patient.to_string(),
        subject: who.subject,
        issuer: who.issuer,
        csrf: random_token()?,
        created: now,
        expires: now + lifetime,
    };
    let stored = row.clone();
    gateway
        .store
        .run(move |conn| write_tx(conn, |conn| rows::insert_session(conn, &stored)))
        .await?;
    tracing::info!(patient_id = %who.patient, "patient page session opened");
    Ok((cookie, session_of(row)?))
}

/// The live session a cookie value names, if any.
pub async fn find(gateway: &Gateway, cookie: &str) -> Result<Option<Session>, DomainError> {
    if cookie.is_empty() || cookie.len() > 128 {
        return Ok(None);
    }
    let id_hash = hashed(cookie);
    let row = gateway
        .store
        .run(move |conn| rows::session(conn, &id_hash, now_micros()))
        .await?;
    row.map(session_of).transpose()
}

/// Ends the session a cookie value names (nothing happens for an unknown one).
pub async fn close(gateway: &Gateway, cookie: &str) -> Result<(), DomainError> {
    let id_hash = hashed(cookie);
    gateway
        .store
        .run(move |conn| write_tx(conn, |conn| rows::delete_session(conn, &id_hash)))
        .await?;
    Ok(())
}

fn session_of(row: SessionRow) -> Result<Session, DomainError> {
    Ok(Session {
        patient: PatientId::parse(&row.patient_id)
            .map_err(|_| DomainError::internal("a session is stored with a malformed patient"))?,
        subject: row.subject,
        issuer: row.issuer,
        csrf: row.csrf,
        expires: row.expires,
    })
}
