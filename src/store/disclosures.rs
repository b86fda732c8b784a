//! Rows of disclosure packages and their retrievals (see `docs/DISCLOSURES.md`).
//!
//! The retrieval count is the one piece of shared mutable state: [`claim_retrieval`] takes a
//! retrieval with a conditional `UPDATE ... WHERE retrievals < max_retrievals`, so that two
//! fetches racing on two gateway instances can never both take the last one.

use diesel::prelude::*;

use super::schema::{disclosure_retrievals, disclosures};
use super::{DbConn, StoreError, write_tx};

/// One stored disclosure package.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = disclosures)]
pub struct DisclosureRow {
    /// UUIDv7; also the Bundle's id.
    pub id: String,
    /// The patient whose records were disclosed.
    pub patient_id: String,
    /// The recipient client's id.
    pub recipient: String,
    /// The v3 ActReason purpose the patient authorized.
    pub purpose: String,
    /// The authorization's URI (`Consent.policy.uri`).
    pub policy_uri: String,
    /// The Consent recorded for the disclosure.
    pub consent_id: String,
    /// When it was created, microseconds since the epoch.
    pub created: i64,
    /// The last instant it may be fetched (inclusive), microseconds since the epoch.
    pub expires: i64,
    /// Most retrievals allowed.
    pub max_retrievals: i64,
    /// Retrievals taken so far.
    pub retrievals: i64,
    /// JSON array of the `Type/id` references in the bundle.
    pub resources: String,
    /// The exact bytes served.
    pub bundle: String,
    /// SHA-256 of `bundle`, lowercase hex.
    pub bundle_sha256: String,
    /// The detached compact JWS over `bundle`.
    pub signature: String,
}

/// One retrieval of a package.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = disclosure_retrievals)]
pub struct RetrievalRow {
    /// UUIDv7.
    pub id: String,
    /// The package fetched.
    pub disclosure_id: String,
    /// When, microseconds since the epoch.
    pub fetched: i64,
    /// The audit entry of the retrieval, once durable.
    pub audit_seq: Option<i64>,
}

/// Stores a new package. Call inside [`write_tx`], with the Consent it goes with.
pub fn insert(conn: &mut DbConn, row: &DisclosureRow) -> Result<(), StoreError> {
    diesel::insert_into(disclosures::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// One package by id.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<DisclosureRow>, StoreError> {
    Ok(disclosures::table
        .filter(disclosures::id.eq(id))
        .first::<DisclosureRow>(conn)
        .optional()?)
}

/// A patient's packages, newest first.
pub fn for_patient(conn: &mut DbConn, patient_id: &str) -> Result<Vec<DisclosureRow>, StoreError> {
    Ok(disclosures::table
        .filter(disclosures::patient_id.eq(patient_id))
        .order((disclosures::created.desc(), disclosures::id.desc()))
        .load(conn)?)
}

/// The retrievals of these packages, oldest first.
pub fn retrievals_of(conn: &mut DbConn, ids: &[String]) -> Result<Vec<RetrievalRow>, StoreError> {
    let mut out = Vec::new();
    for chunk in ids.chunks(500) {
        out.extend(
            disclosure_retrievals::table
                .filter(disclosure_retrievals::disclosure_id.eq_any(chunk))
                .order((
                    disclosure_retrievals::fetched.asc(),
                    disclosure_retrievals::id.asc(),
                ))
                .load::<RetrievalRow>(conn)?,
        );
    }
    out.sort_by(|a, b| (a.fetched, &a.id).cmp(&(b.fetched, &b.id)));
    Ok(out)
}

/// Takes one retrieval of package `id` at `now` if it is still unexpired and under its
/// limit; returns the retrieval's id and its number (1-based), or `None` when none is left.
pub fn claim_retrieval(
    conn: &mut DbConn,
    id: &str,
    now: i64,
) -> Result<Option<(String, i64)>, StoreError> {
    write_tx(conn, |conn| {
        let taken = diesel::update(
            disclosures::table
                .filter(disclosures::id.eq(id))
                .filter(disclosures::retrievals.lt(disclosures::max_retrievals))
                .filter(disclosures::expires.ge(now)),
        )
        .set(disclosures::retrievals.eq(disclosures::retrievals + 1))
        .execute(conn)?;
        if taken != 1 {
            return Ok(None);
        }
        // The row stays locked by the UPDATE until commit, so this reads our own count.
        let number = disclosures::table
            .filter(disclosures::id.eq(id))
            .select(disclosures::retrievals)
            .first::<i64>(conn)?;
        let retrieval = uuid::Uuid::now_v7().to_string();
        diesel::insert_into(disclosure_retrievals::table)
            .values(&RetrievalRow {
                id: retrieval.clone(),
                disclosure_id: id.to_string(),
                fetched: now,
                audit_seq: None,
            })
            .execute(conn)?;
        Ok(Some((retrieval, number)))
    })
}

/// Gives back a retrieval whose response was never sent (its audit entry could not be made
/// durable): the row goes and the count drops by one, together.
pub fn release_retrieval(conn: &mut DbConn, id: &str, retrieval: &str) -> Result<(), StoreError> {
    write_tx(conn, |conn| {
        let removed = diesel::delete(
            disclosure_retrievals::table
                .filter(disclosure_retrievals::id.eq(retrieval))
                .filter(disclosure_retrievals::disclosure_id.eq(id)),
        )
        .execute(conn)?;
        if removed == 1 {
            diesel::update(disclosures::table.filter(disclosures::id.eq(id)))
                .set(disclosures::retrievals.eq(disclosures::retrievals - 1))
                .execute(conn)?;
        }
        Ok(())
    })
}

/// Links a retrieval to its durable audit entry.
pub fn set_retrieval_audit(
    conn: &mut DbConn,
    retrieval: &str,
    audit_seq: i64,
) -> Result<(), StoreError> {
    diesel::update(disclosure_retrievals::table.filter(disclosure_retrievals::id.eq(retrieval)))
        .set(disclosure_retrievals::audit_seq.eq(Some(audit_seq)))
        .execute(conn)?;
    Ok(())
}

/// Replaces the signature of a package (re-signed after the signing key was rotated out).
pub fn set_signature(conn: &mut DbConn, id: &str, signature: &str) -> Result<(), StoreError> {
    diesel::update(disclosures::table.filter(disclosures::id.eq(id)))
        .set(disclosures::signature.eq(signature))
        .execute(conn)?;
    Ok(())
}
