//! Rows of patient notifications: stored notifications, the audit entries notifications are
//! derived from, read marks, webhooks and delivery state.
//!
//! A stored notification (an access request's) is written inside the transaction of the event
//! it reports, so [`insert`] takes a connection already in a transaction. The notifications
//! of audit entries are not stored: the entries carry the kind of notice they call for
//! (`audit_entries.notice`), and the feed reads them ([`derived_page`]). [`claim_due`] runs
//! its own transaction: it is the delivery worker's lease.

use diesel::prelude::*;

use super::audit::EntryRow;
use super::schema::{
    audit_entries, notification_deliveries, notification_derivation, notification_reads,
    notification_webhooks, notifications,
};
use super::{DbConn, StoreError, write_tx};

/// Rows per multi-row `INSERT` (7 parameters each, far below SQLite's limit).
const INSERT_CHUNK: usize = 100;

/// One stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = notifications)]
// Every optional column defaults to NULL: inserting None as NULL rather than DEFAULT gives
// the insert one shape whatever the row holds, so SQLite prepares it once per connection.
#[diesel(treat_none_as_default_value = false)]
pub struct NotificationRow {
    /// UUIDv7 for a stored notification, UUIDv8 for a derived one (`notify::derived_id`);
    /// time-ordered, the feed's cursor.
    pub id: String,
    /// The patient told.
    pub patient_id: String,
    /// The kind's code (`notify::Kind`).
    pub kind: String,
    /// When the reported event happened, microseconds since the epoch.
    pub created: i64,
    /// The audit entry reported, for every kind but `access_request`.
    pub audit_seq: Option<i64>,
    /// The access request reported, for `access_request`.
    pub access_request_id: Option<String>,
    /// JSON object of ids and codes.
    pub summary: String,
    /// When the patient marked it read, microseconds since the epoch.
    pub read_at: Option<i64>,
}

/// A patient's webhook.
#[derive(Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = notification_webhooks)]
pub struct WebhookRow {
    /// The patient whose notifications go there.
    pub patient_id: String,
    /// The https URL notifications are POSTed to.
    pub url: String,
    /// The HMAC-SHA256 key of the signature header.
    pub secret: String,
    /// When it was registered, microseconds since the epoch.
    pub created: i64,
}

impl std::fmt::Debug for WebhookRow {
    /// Leaves out the URL (it may name the patient) and the secret.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookRow")
            .field("patient_id", &self.patient_id)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// The delivery state of one notification.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = notification_deliveries)]
// Every optional column defaults to NULL: inserting None as NULL rather than DEFAULT lets
// SQLite take a batch in one statement, not a savepoint and a statement per row.
#[diesel(treat_none_as_default_value = false)]
pub struct DeliveryRow {
    /// The notification delivered.
    pub notification_id: String,
    /// Its patient.
    pub patient_id: String,
    /// The entry a derived notification reports; `None` for a stored notification.
    pub audit_seq: Option<i64>,
    /// Attempts started, including one that may be in flight.
    pub attempts: i32,
    /// When the worker next picks it up; `None` once finished.
    pub next_attempt_at: Option<i64>,
    /// When a webhook answered 2xx.
    pub delivered_at: Option<i64>,
    /// The outcome of the latest attempt, a code such as `http_500`.
    pub last_status: Option<String>,
}

/// What a leased delivery sends: a stored notification, or the entry a notification is
/// derived from (`notify::derived`).
#[derive(Debug, Clone)]
pub enum Source {
    /// A stored notification.
    Stored(NotificationRow),
    /// The audit entry reported.
    Entry(EntryRow),
}

/// A delivery the worker has leased: what to send, where, and which attempt this is.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The notification's id (the delivery id the receiver sees).
    pub notification_id: String,
    /// What to send.
    pub source: Source,
    /// The patient's webhook now.
    pub webhook: WebhookRow,
    /// The 1-based number of this attempt.
    pub attempt: i32,
}

/// Writes a stored notification, and a delivery due at once when its patient has a webhook.
/// Call inside the transaction of the event reported.
pub fn insert(conn: &mut DbConn, row: &NotificationRow) -> Result<(), StoreError> {
    diesel::insert_into(notifications::table)
        .values(row)
        .execute(conn)?;
    if webhook(conn, &row.patient_id)?.is_some() {
        insert_deliveries(
            conn,
            &[DeliveryRow {
                notification_id: row.id.clone(),
                patient_id: row.patient_id.clone(),
                audit_seq: None,
                attempts: 0,
                next_attempt_at: Some(row.created),
                delivered_at: None,
                last_status: None,
            }],
        )?;
    }
    Ok(())
}

/// Writes deliveries; one already there for the same notification is left as it is.
pub fn insert_deliveries(conn: &mut DbConn, rows: &[DeliveryRow]) -> Result<(), StoreError> {
    for chunk in rows.chunks(INSERT_CHUNK) {
        let statement = diesel::insert_into(notification_deliveries::table)
            .values(chunk)
            .on_conflict_do_nothing();
        on_backend!(conn, c => statement.execute(c))?;
    }
    Ok(())
}

/// The notification reporting an access request, if one was written.
pub fn by_access_request(
    conn: &mut DbConn,
    request_id: &str,
) -> Result<Option<NotificationRow>, StoreError> {
    Ok(notifications::table
        .filter(notifications::access_request_id.eq(request_id))
        .first(conn)
        .optional()?)
}

/// A page of a patient's feed.
#[derive(Debug, Clone)]
pub struct FeedQuery {
    /// The patient.
    pub patient_id: String,
    /// Only notifications not yet marked read.
    pub unread_only: bool,
    /// Keyset paging: ids below this one.
    pub before: Option<String>,
    /// Most rows.
    pub limit: i64,
}

/// A patient's stored notifications, newest first.
pub fn feed(conn: &mut DbConn, q: &FeedQuery) -> Result<Vec<NotificationRow>, StoreError> {
    let mut query = notifications::table
        .filter(notifications::patient_id.eq(q.patient_id.clone()))
        .order(notifications::id.desc())
        .limit(q.limit)
        .into_boxed();
    if q.unread_only {
        query = query.filter(notifications::read_at.is_null());
    }
    if let Some(before) = &q.before {
        query = query.filter(notifications::id.lt(before.clone()));
    }
    Ok(query.load(conn)?)
}

/// The entries of a patient that call for a notification, newest first by `(recorded, seq)`
/// (their notifications' id order), below `below` when given, each with its read mark. The
/// patient index and the log's tail serve it (`store::patient_index`); `q.before` is not read
/// (the caller turns it into `below`).
pub fn derived_page(
    conn: &mut DbConn,
    q: &FeedQuery,
    below: Option<(i64, i64)>,
) -> Result<Vec<(EntryRow, Option<i64>)>, StoreError> {
    let entries =
        super::patient_index::patient_notices(conn, &q.patient_id, below, q.unread_only, q.limit)?;
    let seqs: Vec<i64> = entries.iter().map(|e| e.seq).collect();
    let marks: Vec<(i64, i64)> = notification_reads::table
        .filter(notification_reads::patient_id.eq(&q.patient_id))
        .filter(notification_reads::audit_seq.eq_any(&seqs))
        .select((notification_reads::audit_seq, notification_reads::read_at))
        .load(conn)?;
    Ok(entries
        .into_iter()
        .map(|e| {
            let read_at = marks.iter().find(|(seq, _)| *seq == e.seq).map(|m| m.1);
            (e, read_at)
        })
        .collect())
}

/// How many of a patient's notifications, stored and derived, are unread: the derived ones
/// are the entries that call for one less the read marks (a mark is only ever written for
/// such an entry), both counted on an index (the entries' on the patient index and the
/// log's tail).
pub fn unread_count(conn: &mut DbConn, patient_id: &str) -> Result<i64, StoreError> {
    let stored: i64 = notifications::table
        .filter(notifications::patient_id.eq(patient_id))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)?;
    let noticed = super::patient_index::notice_count(conn, patient_id)?;
    let marked: i64 = notification_reads::table
        .filter(notification_reads::patient_id.eq(patient_id))
        .count()
        .get_result(conn)?;
    Ok(stored + noticed - marked)
}

/// Marks a patient's stored notification read (keeping the first time); `None` when the
/// patient has no such notification.
pub fn mark_read(
    conn: &mut DbConn,
    patient_id: &str,
    id: &str,
    now: i64,
) -> Result<Option<NotificationRow>, StoreError> {
    let mine = notifications::table
        .filter(notifications::id.eq(id))
        .filter(notifications::patient_id.eq(patient_id));
    diesel::update(mine.filter(notifications::read_at.is_null()))
        .set(notifications::read_at.eq(now))
        .execute(conn)?;
    Ok(mine.first(conn).optional()?)
}

/// Marks read the notification derived from the patient's entry `seq` recorded at
/// `recorded` (keeping the first time); the entry and the mark's time, or `None` when the
/// patient has no such entry calling for a notification.
pub fn mark_derived_read(
    conn: &mut DbConn,
    patient_id: &str,
    (recorded, seq): (i64, i64),
    now: i64,
) -> Result<Option<(EntryRow, i64)>, StoreError> {
    let Some(entry) = audit_entries::table
        .filter(audit_entries::seq.eq(seq))
        .filter(audit_entries::patient_id.eq(patient_id))
        .filter(audit_entries::recorded.eq(recorded))
        .filter(audit_entries::notice.is_not_null())
        .first::<EntryRow>(conn)
        .optional()?
    else {
        return Ok(None);
    };
    let mark = (
        notification_reads::patient_id.eq(patient_id),
        notification_reads::audit_seq.eq(seq),
        notification_reads::read_at.eq(now),
    );
    let statement = diesel::insert_into(notification_reads::table)
        .values(mark)
        .on_conflict_do_nothing();
    on_backend!(conn, c => statement.execute(c))?;
    let read_at = notification_reads::table
        .filter(notification_reads::patient_id.eq(patient_id))
        .filter(notification_reads::audit_seq.eq(seq))
        .select(notification_reads::read_at)
        .first(conn)?;
    Ok(Some((entry, read_at)))
}

/// Where the derivation of webhook deliveries stands, read inside the caller's transaction
/// (on PostgreSQL locking the row, so one instance at a time moves it on): the first entry
/// not yet looked at, the highest entry committed, and whether any patient has a webhook.
/// The last two are read in one statement, so they see one moment.
pub fn outbox_position(conn: &mut DbConn) -> Result<(i64, Option<i64>, bool), StoreError> {
    #[derive(QueryableByName)]
    struct Position {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        outbox_next: i64,
        #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::BigInt>)]
        highest: Option<i64>,
        #[diesel(sql_type = diesel::sql_types::Bool)]
        hooked: bool,
    }
    const READ: &str = "SELECT outbox_next, (SELECT MAX(seq) FROM audit_entries) AS highest, \
         EXISTS (SELECT 1 FROM notification_webhooks) AS hooked \
         FROM notification_derivation WHERE id = 1";
    let position: Position = match conn {
        DbConn::Postgresql(c) => diesel::sql_query(format!("{READ} FOR UPDATE")).get_result(c)?,
        DbConn::Sqlite(c) => diesel::sql_query(READ).get_result(c)?,
    };
    Ok((position.outbox_next, position.highest, position.hooked))
}

/// Moves the derivation of webhook deliveries on to entry `next`.
pub fn set_outbox_next(conn: &mut DbConn, next: i64) -> Result<(), StoreError> {
    diesel::update(notification_derivation::table.filter(notification_derivation::id.eq(1)))
        .set(notification_derivation::outbox_next.eq(next))
        .execute(conn)?;
    Ok(())
}

/// The entries `from..=to` that call for a notification and whose patient had a webhook when
/// they were recorded, in order, at most `limit`: `(seq, recorded, patient_id)`.
pub fn noticed_for_webhooks(
    conn: &mut DbConn,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<(i64, i64, String)>, StoreError> {
    Ok(audit_entries::table
        .inner_join(
            notification_webhooks::table.on(audit_entries::patient_id
                .eq(notification_webhooks::patient_id.nullable())
                .and(audit_entries::recorded.ge(notification_webhooks::created))),
        )
        .filter(audit_entries::seq.between(from, to))
        .filter(audit_entries::notice.is_not_null())
        .order(audit_entries::seq.asc())
        .limit(limit)
        .select((
            audit_entries::seq,
            audit_entries::recorded,
            notification_webhooks::patient_id,
        ))
        .load(conn)?)
}

/// The entries written before derived notifications whose `notice` is still to be derived
/// (`legacy_from..legacy_to`; empty once done).
pub fn legacy_range(conn: &mut DbConn) -> Result<(i64, i64), StoreError> {
    Ok(notification_derivation::table
        .filter(notification_derivation::id.eq(1))
        .select((
            notification_derivation::legacy_from,
            notification_derivation::legacy_to,
        ))
        .first(conn)?)
}

/// Records that the legacy entries' notices are derived up to `to`.
pub fn set_legacy_from(conn: &mut DbConn, from: i64) -> Result<(), StoreError> {
    diesel::update(notification_derivation::table.filter(notification_derivation::id.eq(1)))
        .set(notification_derivation::legacy_from.eq(from))
        .execute(conn)?;
    Ok(())
}

/// Sets the notice an entry about a patient calls for, and adds it to the patient index
/// (`store::patient_index`), which may already have passed the entry.
pub fn set_notice(conn: &mut DbConn, entry: &EntryRow, notice: &str) -> Result<(), StoreError> {
    diesel::update(audit_entries::table.filter(audit_entries::seq.eq(entry.seq)))
        .set(audit_entries::notice.eq(notice))
        .execute(conn)?;
    if let Some(patient) = &entry.patient_id {
        super::patient_index::add_notice(conn, patient, entry.recorded, entry.seq)?;
    }
    Ok(())
}

/// A patient's webhook.
pub fn webhook(conn: &mut DbConn, patient_id: &str) -> Result<Option<WebhookRow>, StoreError> {
    Ok(notification_webhooks::table
        .filter(notification_webhooks::patient_id.eq(patient_id))
        .first(conn)
        .optional()?)
}

/// Registers or replaces a patient's webhook; true when one was replaced. Deliveries still
/// pending go to the new URL, signed with the new secret.
pub fn put_webhook(conn: &mut DbConn, row: &WebhookRow) -> Result<bool, StoreError> {
    let replaced = diesel::update(
        notification_webhooks::table.filter(notification_webhooks::patient_id.eq(&row.patient_id)),
    )
    .set((
        notification_webhooks::url.eq(&row.url),
        notification_webhooks::secret.eq(&row.secret),
        notification_webhooks::created.eq(row.created),
    ))
    .execute(conn)?
        > 0;
    if !replaced {
        diesel::insert_into(notification_webhooks::table)
            .values(row)
            .execute(conn)?;
    }
    Ok(replaced)
}

/// Removes a patient's webhook and cancels their pending deliveries (`webhook_removed`);
/// false when there was none.
pub fn delete_webhook(conn: &mut DbConn, patient_id: &str) -> Result<bool, StoreError> {
    let removed = diesel::delete(
        notification_webhooks::table.filter(notification_webhooks::patient_id.eq(patient_id)),
    )
    .execute(conn)?
        > 0;
    diesel::update(
        notification_deliveries::table
            .filter(notification_deliveries::next_attempt_at.is_not_null())
            .filter(notification_deliveries::patient_id.eq(patient_id)),
    )
    .set((
        notification_deliveries::next_attempt_at.eq(None::<i64>),
        notification_deliveries::last_status.eq("webhook_removed"),
    ))
    .execute(conn)?;
    Ok(removed)
}

/// The delivery state of a notification, if it had a webhook to go to.
pub fn delivery(
    conn: &mut DbConn,
    notification_id: &str,
) -> Result<Option<DeliveryRow>, StoreError> {
    Ok(notification_deliveries::table
        .filter(notification_deliveries::notification_id.eq(notification_id))
        .first(conn)
        .optional()?)
}

/// Leases up to `limit` deliveries due at `now`, in its own transaction: each one's attempt
/// count goes up and it is not due again before `lease_until`, so a crash mid-delivery means
/// a retry, and no other worker (PostgreSQL: `FOR UPDATE SKIP LOCKED`; SQLite: the write
/// lock) takes it meanwhile. Rows that used up `max_attempts` are closed (`gave_up`), rows
/// whose patient has no webhook any more are closed (`no_webhook`).
pub fn claim_due(
    conn: &mut DbConn,
    now: i64,
    lease_until: i64,
    limit: i64,
    max_attempts: i32,
) -> Result<Vec<Claimed>, StoreError> {
    // A plain read first: an idle poll never takes SQLite's write lock from the audit writer.
    let any_due = notification_deliveries::table
        .filter(notification_deliveries::next_attempt_at.le(now))
        .select(notification_deliveries::notification_id)
        .first::<String>(conn)
        .optional()?
        .is_some();
    if !any_due {
        return Ok(Vec::new());
    }
    write_tx(conn, |conn| {
        let due = notification_deliveries::table
            .filter(notification_deliveries::next_attempt_at.le(now))
            .order(notification_deliveries::next_attempt_at.asc())
            .limit(limit)
            .select((
                notification_deliveries::notification_id,
                notification_deliveries::patient_id,
                notification_deliveries::audit_seq,
                notification_deliveries::attempts,
            ));
        let due: Vec<(String, String, Option<i64>, i32)> = match conn {
            DbConn::Postgresql(c) => due.for_update().skip_locked().load(c)?,
            DbConn::Sqlite(c) => due.load(c)?,
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let stored_ids: Vec<&String> = due.iter().filter(|d| d.2.is_none()).map(|d| &d.0).collect();
        // Each source read only when a due delivery needs it.
        let stored: Vec<NotificationRow> = if stored_ids.is_empty() {
            Vec::new()
        } else {
            notifications::table
                .filter(notifications::id.eq_any(&stored_ids))
                .load(conn)?
        };
        let seqs: Vec<i64> = due.iter().filter_map(|d| d.2).collect();
        let entries: Vec<EntryRow> = if seqs.is_empty() {
            Vec::new()
        } else {
            audit_entries::table
                .filter(audit_entries::seq.eq_any(&seqs))
                .load(conn)?
        };
        let patients: Vec<&String> = due.iter().map(|d| &d.1).collect();
        let hooks: Vec<WebhookRow> = notification_webhooks::table
            .filter(notification_webhooks::patient_id.eq_any(&patients))
            .load(conn)?;
        let mut claimed = Vec::with_capacity(due.len());
        for (id, patient_id, audit_seq, attempts) in due {
            let one = notification_deliveries::table
                .filter(notification_deliveries::notification_id.eq(&id));
            let source = match audit_seq {
                None => stored
                    .iter()
                    .find(|r| r.id == id)
                    .cloned()
                    .map(Source::Stored),
                Some(seq) => entries
                    .iter()
                    .find(|e| e.seq == seq)
                    .cloned()
                    .map(Source::Entry),
            };
            let webhook = hooks.iter().find(|h| h.patient_id == patient_id).cloned();
            let closed = match (&source, &webhook) {
                _ if attempts >= max_attempts => Some("gave_up"),
                (Some(_), Some(_)) => None,
                _ => Some("no_webhook"),
            };
            if let Some(status) = closed {
                diesel::update(one)
                    .set((
                        notification_deliveries::next_attempt_at.eq(None::<i64>),
                        notification_deliveries::last_status.eq(status),
                    ))
                    .execute(conn)?;
                continue;
            }
            diesel::update(one)
                .set((
                    notification_deliveries::attempts.eq(attempts + 1),
                    notification_deliveries::next_attempt_at.eq(lease_until),
                ))
                .execute(conn)?;
            if let (Some(source), Some(webhook)) = (source, webhook) {
                claimed.push(Claimed {
                    notification_id: id,
                    source,
                    webhook,
                    attempt: attempts + 1,
                });
            }
        }
        Ok(claimed)
    })
}

/// How an attempt ended, as the worker records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    /// The status code, such as `http_204` or `timeout`.
    pub status: String,
    /// Set when the webhook accepted the notification.
    pub delivered_at: Option<i64>,
    /// When to try again; `None` when finished.
    pub next_attempt_at: Option<i64>,
}

/// Records the end of attempt `attempt`; false when the row moved on meanwhile (its lease
/// ran out and a later attempt owns it, or it was delivered), so a late answer never
/// overwrites newer state. A failure of a delivery cancelled meanwhile (webhook removed)
/// is not recorded either; a success always is.
pub fn record_attempt(
    conn: &mut DbConn,
    notification_id: &str,
    attempt: i32,
    result: &AttemptResult,
) -> Result<bool, StoreError> {
    let target = notification_deliveries::table
        .filter(notification_deliveries::notification_id.eq(notification_id))
        .filter(notification_deliveries::attempts.eq(attempt))
        .filter(notification_deliveries::delivered_at.is_null());
    let changes = || {
        (
            notification_deliveries::last_status.eq(result.status.clone()),
            notification_deliveries::delivered_at.eq(result.delivered_at),
            notification_deliveries::next_attempt_at.eq(result.next_attempt_at),
        )
    };
    let changed = if result.delivered_at.is_some() {
        diesel::update(target).set(changes()).execute(conn)?
    } else {
        diesel::update(target.filter(notification_deliveries::next_attempt_at.is_not_null()))
            .set(changes())
            .execute(conn)?
    };
    Ok(changed > 0)
}
