//! Rows of SMART Health Links (`crate::shl`). A use, a failed passcode and a ticket's
//! redemption are each one conditional statement, so limits hold across instances.

use diesel::prelude::*;

use super::schema::{share_link_tickets, share_links};
use super::{DbConn, StoreError};

/// One stored link.
#[derive(Clone, PartialEq, Eq, Queryable, Selectable, Insertable)]
#[diesel(table_name = share_links)]
pub struct ShareLinkRow {
    /// The manifest URL's secret part (256 bits, base64url).
    pub id: String,
    /// Whose summary.
    pub patient_id: String,
    /// The patient's label (shown to the receiver).
    pub label: Option<String>,
    /// When it was made, microseconds since the epoch.
    pub created: i64,
    /// `Patient/{id}` or `RelatedPerson/{id}`.
    pub created_by: String,
    /// When it stops working.
    pub expires: Option<i64>,
    /// How many successful fetches it allows.
    pub max_uses: Option<i64>,
    /// Successful fetches so far.
    pub uses: i64,
    /// PBKDF2 hash of the passcode.
    pub passcode_hash: Option<String>,
    /// Wrong passcodes so far.
    pub failed_passcodes: i64,
    /// The media type of the encrypted file.
    pub content_type: String,
    /// The compact JWE.
    pub jwe: String,
    /// JSON array of `Type/id` in the file.
    pub resources: String,
    /// When the patient deactivated it (or too many wrong passcodes did).
    pub deactivated_at: Option<i64>,
    /// The link's public name (a UUID): what listings, audit entries and notifications show.
    pub handle: Option<String>,
}

impl std::fmt::Debug for ShareLinkRow {
    /// The id is the link's secret: never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareLinkRow")
            .field("handle", &self.handle)
            .field("patient_id", &self.patient_id)
            .field("uses", &self.uses)
            .finish_non_exhaustive()
    }
}

/// Stores a new link.
pub fn insert(conn: &mut DbConn, row: &ShareLinkRow) -> Result<(), StoreError> {
    diesel::insert_into(share_links::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// One link.
pub fn find(conn: &mut DbConn, id: &str) -> Result<Option<ShareLinkRow>, StoreError> {
    Ok(share_links::table
        .filter(share_links::id.eq(id))
        .select(ShareLinkRow::as_select())
        .first(conn)
        .optional()?)
}

/// One link by its public handle.
pub fn find_by_handle(conn: &mut DbConn, handle: &str) -> Result<Option<ShareLinkRow>, StoreError> {
    Ok(share_links::table
        .filter(share_links::handle.eq(handle))
        .select(ShareLinkRow::as_select())
        .first(conn)
        .optional()?)
}

/// A patient's links, newest first.
pub fn for_patient(
    conn: &mut DbConn,
    patient: &str,
    limit: i64,
) -> Result<Vec<ShareLinkRow>, StoreError> {
    Ok(share_links::table
        .filter(share_links::patient_id.eq(patient))
        .select(ShareLinkRow::as_select())
        .order(share_links::created.desc())
        .limit(limit)
        .load(conn)?)
}

/// Counts one use of an active link still within its limit; `false` when none is left.
pub fn use_once(conn: &mut DbConn, id: &str, now: i64) -> Result<bool, StoreError> {
    let changed = diesel::update(
        share_links::table
            .filter(share_links::id.eq(id))
            .filter(share_links::deactivated_at.is_null())
            .filter(
                share_links::expires
                    .is_null()
                    .or(share_links::expires.gt(now)),
            )
            .filter(
                share_links::max_uses
                    .is_null()
                    .or(share_links::max_uses.gt(share_links::uses.nullable())),
            ),
    )
    .set(share_links::uses.eq(share_links::uses + 1))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Takes one passcode attempt of an active link before the passcode is checked: the
/// count goes up first, so parallel guesses can never exceed `limit` in total. `false` when
/// the link has none left (or is no longer active). A right passcode gives the attempt back
/// ([`give_back_attempt`]); a wrong one keeps it.
pub fn take_attempt(conn: &mut DbConn, id: &str, limit: i64) -> Result<bool, StoreError> {
    let changed = diesel::update(
        share_links::table
            .filter(share_links::id.eq(id))
            .filter(share_links::deactivated_at.is_null())
            .filter(share_links::failed_passcodes.lt(limit)),
    )
    .set(share_links::failed_passcodes.eq(share_links::failed_passcodes + 1))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Returns an attempt taken by [`take_attempt`] after the passcode proved right.
pub fn give_back_attempt(conn: &mut DbConn, id: &str) -> Result<(), StoreError> {
    diesel::update(
        share_links::table
            .filter(share_links::id.eq(id))
            .filter(share_links::failed_passcodes.gt(0)),
    )
    .set(share_links::failed_passcodes.eq(share_links::failed_passcodes - 1))
    .execute(conn)?;
    Ok(())
}

/// After a wrong passcode: deactivates the link once `limit` wrong passcodes are counted.
/// Returns the wrong passcodes counted so far.
pub fn lock_when_spent(
    conn: &mut DbConn,
    id: &str,
    limit: i64,
    now: i64,
) -> Result<i64, StoreError> {
    diesel::update(
        share_links::table
            .filter(share_links::id.eq(id))
            .filter(share_links::failed_passcodes.ge(limit))
            .filter(share_links::deactivated_at.is_null()),
    )
    .set(share_links::deactivated_at.eq(Some(now)))
    .execute(conn)?;
    Ok(share_links::table
        .filter(share_links::id.eq(id))
        .select(share_links::failed_passcodes)
        .first(conn)?)
}

/// Deactivates a link; `false` when it already was.
pub fn deactivate(conn: &mut DbConn, id: &str, now: i64) -> Result<bool, StoreError> {
    let changed = diesel::update(
        share_links::table
            .filter(share_links::id.eq(id))
            .filter(share_links::deactivated_at.is_null()),
    )
    .set(share_links::deactivated_at.eq(Some(now)))
    .execute(conn)?;
    Ok(changed == 1)
}

/// Stores a file ticket for `recipient` (as named in the manifest request).
pub fn insert_ticket(
    conn: &mut DbConn,
    ticket: &str,
    link: &str,
    expires: i64,
    recipient: &str,
) -> Result<(), StoreError> {
    diesel::insert_into(share_link_tickets::table)
        .values((
            share_link_tickets::ticket.eq(ticket),
            share_link_tickets::link_id.eq(link),
            share_link_tickets::expires.eq(expires),
            share_link_tickets::recipient.eq(Some(recipient)),
        ))
        .execute(conn)?;
    Ok(())
}

/// Redeems a ticket once: the link it was for and the recipient it was handed to, when it
/// was still valid. Expired tickets are swept on the way.
pub fn redeem_ticket(
    conn: &mut DbConn,
    ticket: &str,
    now: i64,
) -> Result<Option<(String, Option<String>)>, StoreError> {
    diesel::delete(share_link_tickets::table.filter(share_link_tickets::expires.le(now)))
        .execute(conn)?;
    let link: Option<(String, Option<String>)> = share_link_tickets::table
        .filter(share_link_tickets::ticket.eq(ticket))
        .select((share_link_tickets::link_id, share_link_tickets::recipient))
        .first(conn)
        .optional()?;
    if link.is_some() {
        let gone =
            diesel::delete(share_link_tickets::table.filter(share_link_tickets::ticket.eq(ticket)))
                .execute(conn)?;
        if gone != 1 {
            return Ok(None);
        }
    }
    Ok(link)
}
