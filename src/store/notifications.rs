//! Rows of the patient notification outbox: notifications, webhooks and delivery state.
//!
//! The outbox is written inside the transaction of the event it reports (the audit writer's
//! group commit, or an access request's own transaction), so callers pass a connection that is
//! already in a transaction. [`claim_due`] runs its own: it is the delivery worker's lease.

use diesel::prelude::*;

use super::schema::{notification_deliveries, notification_webhooks, notifications};
use super::{DbConn, StoreError, write_tx};

/// Rows per multi-row `INSERT` (8 parameters each, far below SQLite's limit).
const INSERT_CHUNK: usize = 100;
/// Values per `IN (...)` list.
const IN_CHUNK: usize = 500;

/// One stored notification.
#[derive(Debug, Clone, PartialEq, Eq, Queryable, Insertable)]
#[diesel(table_name = notifications)]
// Every optional column defaults to NULL: inserting None as NULL rather than DEFAULT gives
// the insert one shape whatever the row holds, so SQLite prepares it once per connection.
#[diesel(treat_none_as_default_value = false)]
pub struct NotificationRow {
    /// UUIDv7, time-ordered; the feed's cursor.
    pub id: String,
    /// The patient told.
    pub patient_id: String,
    /// `break_glass`, `disclosure` or `access_request`.
    pub kind: String,
    /// When the reported event happened, microseconds since the epoch.
    pub created: i64,
    /// The audit entry reported, for `break_glass` and `disclosure`.
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
    /// Attempts started, including one that may be in flight.
    pub attempts: i32,
    /// When the worker next picks it up; `None` once finished.
    pub next_attempt_at: Option<i64>,
    /// When a webhook answered 2xx.
    pub delivered_at: Option<i64>,
    /// The outcome of the latest attempt, a code such as `http_500`.
    pub last_status: Option<String>,
}

/// A delivery the worker has leased: what to send, where, and which attempt this is.
#[derive(Debug, Clone)]
pub struct Claimed {
    /// The notification to send.
    pub notification: NotificationRow,
    /// The patient's webhook now.
    pub webhook: WebhookRow,
    /// The 1-based number of this attempt.
    pub attempt: i32,
}

/// Writes notifications, and a delivery due at `now` for each whose patient has a webhook.
/// Call inside the transaction of the event reported.
///
/// On SQLite one single-row statement per notification, prepared once per connection (as
/// `store::audit::append`, which writes with it in the audit writer's commit); on
/// PostgreSQL multi-row statements, one round trip each.
pub fn insert(conn: &mut DbConn, rows: &[NotificationRow], now: i64) -> Result<(), StoreError> {
    if rows.is_empty() {
        return Ok(());
    }
    match conn {
        DbConn::Sqlite(c) => {
            for row in rows {
                diesel::insert_into(notifications::table)
                    .values(row)
                    .execute(c)?;
            }
        }
        DbConn::Postgresql(c) => {
            for chunk in rows.chunks(INSERT_CHUNK) {
                diesel::insert_into(notifications::table)
                    .values(chunk)
                    .execute(c)?;
            }
        }
    }
    let mut patients: Vec<&str> = rows.iter().map(|r| r.patient_id.as_str()).collect();
    patients.sort_unstable();
    patients.dedup();
    let hooked = with_webhook(conn, &patients)?;
    let deliveries: Vec<DeliveryRow> = rows
        .iter()
        .filter(|r| hooked.contains(&r.patient_id))
        .map(|r| DeliveryRow {
            notification_id: r.id.clone(),
            attempts: 0,
            next_attempt_at: Some(now),
            delivered_at: None,
            last_status: None,
        })
        .collect();
    for chunk in deliveries.chunks(INSERT_CHUNK) {
        let statement = diesel::insert_into(notification_deliveries::table).values(chunk);
        match conn {
            DbConn::Sqlite(c) => statement.execute(c)?,
            DbConn::Postgresql(c) => statement.execute(c)?,
        };
    }
    Ok(())
}

/// Which of `patients` (sorted, distinct) have a webhook. On SQLite one lookup per patient
/// by the primary key, a statement prepared once per connection: an `IN` list has a new text
/// for each length, parsed again on each commit of the audit writer, and a batch names a
/// handful of patients. On PostgreSQL `IN` lists, one round trip per chunk.
fn with_webhook(conn: &mut DbConn, patients: &[&str]) -> Result<Vec<String>, StoreError> {
    let mut hooked = Vec::new();
    match conn {
        DbConn::Sqlite(c) => {
            for patient in patients {
                hooked.extend(
                    notification_webhooks::table
                        .filter(notification_webhooks::patient_id.eq(*patient))
                        .select(notification_webhooks::patient_id)
                        .first::<String>(c)
                        .optional()?,
                );
            }
        }
        DbConn::Postgresql(c) => {
            for chunk in patients.chunks(IN_CHUNK) {
                hooked.extend(
                    notification_webhooks::table
                        .filter(notification_webhooks::patient_id.eq_any(chunk))
                        .select(notification_webhooks::patient_id)
                        .load::<String>(c)?,
                );
            }
        }
    }
    Ok(hooked)
}

/// The highest audit sequence a stored notification reports, if any does.
pub fn highest_audit_seq(conn: &mut DbConn) -> Result<Option<i64>, StoreError> {
    use diesel::dsl::max;
    Ok(notifications::table
        .select(max(notifications::audit_seq))
        .first::<Option<i64>>(conn)?)
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

/// A patient's notifications, newest first.
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

/// How many of a patient's notifications are unread.
pub fn unread_count(conn: &mut DbConn, patient_id: &str) -> Result<i64, StoreError> {
    Ok(notifications::table
        .filter(notifications::patient_id.eq(patient_id))
        .filter(notifications::read_at.is_null())
        .count()
        .get_result(conn)?)
}

/// Marks a patient's notification read (keeping the first time); `None` when the patient
/// has no such notification.
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
    let theirs = notifications::table
        .filter(notifications::patient_id.eq(patient_id))
        .select(notifications::id);
    diesel::update(
        notification_deliveries::table
            .filter(notification_deliveries::next_attempt_at.is_not_null())
            .filter(notification_deliveries::notification_id.eq_any(theirs)),
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
                notification_deliveries::attempts,
            ));
        let due: Vec<(String, i32)> = match conn {
            DbConn::Postgresql(c) => due.for_update().skip_locked().load(c)?,
            DbConn::Sqlite(c) => due.load(c)?,
        };
        if due.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = due.iter().map(|(id, _)| id.clone()).collect();
        let rows: Vec<NotificationRow> = notifications::table
            .filter(notifications::id.eq_any(&ids))
            .load(conn)?;
        let patients: Vec<String> = rows.iter().map(|r| r.patient_id.clone()).collect();
        let hooks: Vec<WebhookRow> = notification_webhooks::table
            .filter(notification_webhooks::patient_id.eq_any(&patients))
            .load(conn)?;
        let mut claimed = Vec::with_capacity(due.len());
        for (id, attempts) in due {
            let one = notification_deliveries::table
                .filter(notification_deliveries::notification_id.eq(&id));
            let notification = rows.iter().find(|r| r.id == id).cloned();
            let webhook = notification
                .as_ref()
                .and_then(|n| hooks.iter().find(|h| h.patient_id == n.patient_id).cloned());
            let closed = match (&notification, &webhook) {
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
            if let (Some(notification), Some(webhook)) = (notification, webhook) {
                claimed.push(Claimed {
                    notification,
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
