//! Rows of the patient page's tables: sessions, sign-ins under way and the development
//! issuer's authorization requests. Secrets a browser holds are stored as SHA-256 only; the
//! callers (`sign_in/`) hash them.

use diesel::prelude::*;

use super::schema::{dev_issuer_requests, web_sessions, web_sign_ins};
use super::{DbConn, StoreError};

/// A signed-in session.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = web_sessions)]
pub struct SessionRow {
    /// SHA-256 (hex) of the cookie value.
    pub id_hash: String,
    /// The patient (a FHIR id).
    pub patient_id: String,
    /// Their account at the issuer.
    pub subject: String,
    /// The issuer that signed them in.
    pub issuer: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// Microseconds since the epoch.
    pub created: i64,
    /// Microseconds since the epoch.
    pub expires: i64,
}

/// A sign-in under way.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = web_sign_ins)]
pub struct SignInRow {
    /// SHA-256 (hex) of `state`.
    pub state_hash: String,
    /// SHA-256 (hex) of the browser's binding cookie.
    pub binding_hash: String,
    /// The issuer's `iss`.
    pub issuer: String,
    /// The nonce the id_token must carry.
    pub nonce: String,
    /// The PKCE code verifier.
    pub verifier: String,
    /// The redirect URI sent with the authorization request.
    pub redirect_uri: String,
    /// Microseconds since the epoch.
    pub created: i64,
    /// Microseconds since the epoch.
    pub expires: i64,
}

/// An authorization request at the development issuer.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = dev_issuer_requests)]
pub struct DevRequestRow {
    /// Random id; the issuer's sign-in form carries it.
    pub id: String,
    /// The relying party.
    pub client_id: String,
    /// Where the code goes.
    pub redirect_uri: String,
    /// The relying party's `state`, echoed.
    pub state: String,
    /// The relying party's nonce, put in the id_token.
    pub nonce: String,
    /// PKCE S256 challenge.
    pub code_challenge: String,
    /// `Patient/{id}` once the person picked.
    pub fhir_user: Option<String>,
    /// SHA-256 (hex) of the code, once issued.
    pub code_hash: Option<String>,
    /// Microseconds since the epoch.
    pub created: i64,
    /// Microseconds since the epoch.
    pub expires: i64,
}

/// Stores a new session, and drops expired ones (sessions, sign-ins, issuer requests).
pub fn insert_session(conn: &mut DbConn, row: &SessionRow) -> Result<(), StoreError> {
    sweep(conn, row.created)?;
    diesel::insert_into(web_sessions::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// The live session whose cookie hashes to `id_hash`.
pub fn session(
    conn: &mut DbConn,
    id_hash: &str,
    now: i64,
) -> Result<Option<SessionRow>, StoreError> {
    Ok(web_sessions::table
        .filter(web_sessions::id_hash.eq(id_hash))
        .filter(web_sessions::expires.gt(now))
        .first::<SessionRow>(conn)
        .optional()?)
}

/// Ends a session; returns whether one was there.
pub fn delete_session(conn: &mut DbConn, id_hash: &str) -> Result<bool, StoreError> {
    Ok(
        diesel::delete(web_sessions::table.filter(web_sessions::id_hash.eq(id_hash)))
            .execute(conn)?
            == 1,
    )
}

/// Stores a sign-in under way.
pub fn insert_sign_in(conn: &mut DbConn, row: &SignInRow) -> Result<(), StoreError> {
    diesel::insert_into(web_sign_ins::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Takes (reads and deletes) the live sign-in whose state hashes to `state_hash`: a state
/// is good for one callback only. Of two concurrent callbacks exactly one gets the row.
pub fn take_sign_in(
    conn: &mut DbConn,
    state_hash: &str,
    now: i64,
) -> Result<Option<SignInRow>, StoreError> {
    let row = web_sign_ins::table
        .filter(web_sign_ins::state_hash.eq(state_hash))
        .first::<SignInRow>(conn)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let deleted =
        diesel::delete(web_sign_ins::table.filter(web_sign_ins::state_hash.eq(state_hash)))
            .execute(conn)?;
    Ok((deleted == 1 && row.expires > now).then_some(row))
}

/// Stores a new authorization request at the development issuer.
pub fn insert_dev_request(conn: &mut DbConn, row: &DevRequestRow) -> Result<(), StoreError> {
    sweep(conn, row.created)?;
    diesel::insert_into(dev_issuer_requests::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// A live authorization request that has no code yet.
pub fn open_dev_request(
    conn: &mut DbConn,
    id: &str,
    now: i64,
) -> Result<Option<DevRequestRow>, StoreError> {
    Ok(dev_issuer_requests::table
        .filter(dev_issuer_requests::id.eq(id))
        .filter(dev_issuer_requests::code_hash.is_null())
        .filter(dev_issuer_requests::expires.gt(now))
        .first::<DevRequestRow>(conn)
        .optional()?)
}

/// Records who signed in and the code's hash on an open request, with a new expiry;
/// returns whether the request was still open.
pub fn issue_dev_code(
    conn: &mut DbConn,
    id: &str,
    fhir_user: &str,
    code_hash: &str,
    expires: i64,
) -> Result<bool, StoreError> {
    Ok(diesel::update(
        dev_issuer_requests::table
            .filter(dev_issuer_requests::id.eq(id))
            .filter(dev_issuer_requests::code_hash.is_null()),
    )
    .set((
        dev_issuer_requests::fhir_user.eq(Some(fhir_user)),
        dev_issuer_requests::code_hash.eq(Some(code_hash)),
        dev_issuer_requests::expires.eq(expires),
    ))
    .execute(conn)?
        == 1)
}

/// Takes (reads and deletes) the request whose code hashes to `code_hash`: a code is good
/// once. Expired codes are taken too, and the caller refuses them.
pub fn take_dev_code(
    conn: &mut DbConn,
    code_hash: &str,
) -> Result<Option<DevRequestRow>, StoreError> {
    let row = dev_issuer_requests::table
        .filter(dev_issuer_requests::code_hash.eq(code_hash))
        .first::<DevRequestRow>(conn)
        .optional()?;
    let Some(row) = row else { return Ok(None) };
    let deleted =
        diesel::delete(dev_issuer_requests::table.filter(dev_issuer_requests::id.eq(&row.id)))
            .execute(conn)?;
    Ok((deleted == 1).then_some(row))
}

/// Drops whatever has expired by `now`.
fn sweep(conn: &mut DbConn, now: i64) -> Result<(), StoreError> {
    diesel::delete(web_sessions::table.filter(web_sessions::expires.le(now))).execute(conn)?;
    diesel::delete(web_sign_ins::table.filter(web_sign_ins::expires.le(now))).execute(conn)?;
    diesel::delete(dev_issuer_requests::table.filter(dev_issuer_requests::expires.le(now)))
        .execute(conn)?;
    Ok(())
}
