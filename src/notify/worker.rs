//! The webhook delivery worker: one thread per gateway instance that sends due deliveries.
//!
//! Each round it first writes the deliveries of the notifications derived from audit entries
//! committed since the last round, for patients who had a webhook when the entry was recorded
//! ([`derive_deliveries`]: a cursor over the log, moved on in the same transaction, so each
//! entry is looked at once across restarts and instances). Then it leases up to [`BATCH`]
//! due rows of `notification_deliveries`
//! ([`claim_due`]: the attempt count goes up and the row is not due again for [`LEASE`]),
//! POSTs each notification to its patient's webhook, signed (see [`super::webhook`]), and
//! records the answer: a 2xx marks it delivered; anything else schedules the next attempt
//! after [`backoff`], until [`MAX_ATTEMPTS`] attempts have failed. Every state change is a
//! committed row, so a crash or restart at any point resumes from the database: at worst an
//! attempt in flight is repeated after its lease, with the same delivery id, which receivers
//! use to drop duplicates (at-least-once delivery). Several instances on one PostgreSQL
//! share the work without sending a row twice at once (`FOR UPDATE SKIP LOCKED`).
//!
//! The worker runs on its own thread with a single-threaded tokio runtime, so a slow webhook
//! never occupies the HTTP workers. It stops when its [`DeliveryWorker`] handle (held by the
//! application state) is dropped, that is when the server stops.
//!
//! The settings are constants rather than configuration keys, chosen so that a receiver
//! that is down for a few hours still gets everything:
//!
//! | constant | value |
//! | --- | --- |
//! | [`POLL_INTERVAL`] | 1 s between rounds when nothing was due |
//! | [`CONNECT_TIMEOUT`], [`REQUEST_TIMEOUT`] | 5 s, 10 s |
//! | [`LEASE`] | 30 s (longer than a request can take) |
//! | [`backoff`] | 2 s doubling per failed attempt, at most 1 h |
//! | [`MAX_ATTEMPTS`] | 20 (about 9 h from the first to the last attempt) |
//!
//! Webhook URLs are https only, verified against the Mozilla roots plus the extra CA of
//! `auth.jwks_ca_file` (the same trust the gateway gives JWKS URLs; reused rather than a new
//! key so that one setting names the private CA of a deployment, or of the tests).
//! Requests go through the [`crate::net`] guard: an address that is loopback, private or
//! otherwise special-purpose (outside `outbound.allowed_networks`) is never connected to,
//! and the attempt is recorded as `outbound_address_refused` and retried like any failure
//! (a name may resolve elsewhere later). Redirects are not followed and response bodies are
//! never read.

use std::sync::Arc;
use std::time::Duration;

use futures_util::future::join_all;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio::sync::watch;

use super::webhook::{ATTEMPT_HEADER, DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, signature};
use crate::config::AuthSettings;
use crate::net::{ADDRESS_REFUSED, OutboundClient, OutboundGuard, OutboundOptions, refusal_in};
use crate::records::dates::now_micros;
use crate::store::notifications::{
    self as rows, AttemptResult, Claimed, DeliveryRow, Source, claim_due, record_attempt,
};
use crate::store::{DbConn, Store, StoreError, write_tx};

/// Pause between rounds when nothing was due.
pub const POLL_INTERVAL: Duration = Duration::from_secs(1);
/// Most deliveries leased, and sent concurrently, in one round.
pub const BATCH: i64 = 16;
/// Time allowed to open a connection to a webhook.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Time allowed for a whole webhook request, answer included.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a leased delivery stays with its worker before it is due again.
pub const LEASE: Duration = Duration::from_secs(30);
/// Delay after the first failed attempt; it doubles with each further one.
pub const BACKOFF_BASE: Duration = Duration::from_secs(2);
/// Longest delay between two attempts.
pub const BACKOFF_CAP: Duration = Duration::from_secs(3600);
/// Attempts before a delivery is given up (the notification stays in the feed).
pub const MAX_ATTEMPTS: i32 = 20;

/// The delay after failed attempt `attempt` (1-based): [`BACKOFF_BASE`] doubled per earlier
/// failure, at most [`BACKOFF_CAP`].
pub fn backoff(attempt: i32) -> Duration {
    let doublings = u32::try_from(attempt.saturating_sub(1))
        .unwrap_or(0)
        .min(31);
    BACKOFF_BASE
        .saturating_mul(1u32 << doublings)
        .min(BACKOFF_CAP)
}

/// When to try again after failed attempt `attempt` at `now` (micros); `None` when it was
/// the last one.
pub fn retry_at(attempt: i32, now: i64) -> Option<i64> {
    (attempt < MAX_ATTEMPTS).then(|| now.saturating_add(micros(backoff(attempt))))
}

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The running worker; dropping it stops the worker after its current round.
pub struct DeliveryWorker {
    _stop: watch::Sender<()>,
}

impl std::fmt::Debug for DeliveryWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeliveryWorker").finish_non_exhaustive()
    }
}

impl DeliveryWorker {
    /// Starts the worker thread on `store`, sending through `guard`. Fails when the extra CA
    /// file cannot be read.
    pub fn start(
        store: Store,
        auth: &AuthSettings,
        guard: OutboundGuard,
    ) -> anyhow::Result<DeliveryWorker> {
        let tls = client_tls(auth)?;
        let (stop, stopped) = watch::channel(());
        std::thread::Builder::new()
            .name("notify-delivery".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(r) => r,
                    Err(e) => {
                        tracing::error!(error = %e, "notification delivery worker cannot start");
                        return;
                    }
                };
                runtime.block_on(async move {
                    match build_client(tls, guard) {
                        Ok(client) => run(store, client, stopped).await,
                        Err(e) => {
                            tracing::error!(error = %e.without_url(), "notification delivery worker cannot start");
                        }
                    }
                });
            })?;
        Ok(DeliveryWorker { _stop: stop })
    }
}

/// TLS for webhooks: rustls with ring, the Mozilla roots and `auth.jwks_ca_file`.
fn client_tls(auth: &AuthSettings) -> anyhow::Result<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if !auth.jwks_ca_file.as_os_str().is_empty() {
        for cert in CertificateDer::pem_file_iter(&auth.jwks_ca_file)? {
            roots.add(cert?)?;
        }
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

fn build_client(
    tls: rustls::ClientConfig,
    guard: OutboundGuard,
) -> reqwest::Result<OutboundClient> {
    OutboundClient::new(
        guard,
        OutboundOptions {
            tls,
            connect_timeout: CONNECT_TIMEOUT,
            timeout: REQUEST_TIMEOUT,
        },
    )
}

async fn run(store: Store, client: OutboundClient, mut stopped: watch::Receiver<()>) {
    loop {
        let claimed = tokio::select! {
            _ = stopped.changed() => return,
            n = round(&store, &client) => n,
        };
        if claimed < BATCH as usize {
            tokio::select! {
                _ = stopped.changed() => return,
                _ = tokio::time::sleep(POLL_INTERVAL) => {}
            }
        }
    }
}

/// Most entries whose deliveries are written in one transaction.
pub const DERIVE_LIMIT: i64 = 10_000;

/// Writes a delivery, due at once, for each notification derived from an entry committed
/// since the last call whose patient had a webhook when the entry was recorded, and moves the
/// cursor past them, in one transaction; returns how many were written. Entries become
/// visible in sequence order on both backends (PostgreSQL appends under the head row's
/// lock), so an entry at or below the highest one committed is never still to come.
pub fn derive_deliveries(conn: &mut DbConn) -> Result<usize, StoreError> {
    // A plain read first: with nothing new, or no webhook at all, no write lock is taken
    // from the audit writer. A cursor left behind meanwhile passes over entries recorded
    // before any webhook existed, which no webhook is told of.
    let (next, highest, hooked) = rows::outbox_position(conn)?;
    if !hooked || highest.is_none_or(|h| h < next) {
        return Ok(0);
    }
    write_tx(conn, |conn| {
        let (next, highest, hooked) = rows::outbox_position(conn)?;
        let Some(highest) = highest.filter(|h| *h >= next) else {
            return Ok(0);
        };
        let found = if hooked {
            rows::noticed_for_webhooks(conn, next, highest, DERIVE_LIMIT)?
        } else {
            Vec::new()
        };
        let reached = match found.last() {
            Some(last) if found.len() as i64 == DERIVE_LIMIT => last.0,
            _ => highest,
        };
        let now = now_micros();
        let deliveries: Vec<DeliveryRow> = found
            .into_iter()
            .filter_map(|(seq, recorded, patient_id)| {
                Some(DeliveryRow {
                    notification_id: super::derived_id(recorded, seq)?,
                    patient_id,
                    audit_seq: Some(seq),
                    attempts: 0,
                    next_attempt_at: Some(now),
                    delivered_at: None,
                    last_status: None,
                })
            })
            .collect();
        rows::insert_deliveries(conn, &deliveries)?;
        rows::set_outbox_next(conn, reached + 1)?;
        Ok(deliveries.len())
    })
}

/// Derives new deliveries, then leases, sends and records one batch; returns how many
/// deliveries were leased.
async fn round(store: &Store, client: &OutboundClient) -> usize {
    if let Err(e) = store.run(derive_deliveries).await {
        tracing::warn!(error = %e, "notification deliveries could not be derived");
    }
    let now = now_micros();
    let lease_until = now.saturating_add(micros(LEASE));
    let claimed = store
        .run(move |conn| claim_due(conn, now, lease_until, BATCH, MAX_ATTEMPTS))
        .await;
    let claimed = match claimed {
        Ok(c) => c,
        Err(e) => {
            tracing::warn!(error = %e, "notification deliveries could not be leased");
            return 0;
        }
    };
    let count = claimed.len();
    let results = join_all(claimed.into_iter().map(|c| send(client, c))).await;
    for (id, attempt, result) in results {
        let delivered = result.delivered_at.is_some();
        let gave_up = !delivered && result.next_attempt_at.is_none();
        let status = result.status.clone();
        let notification_id = id.clone();
        let recorded = store
            .run::<_, StoreError, _>(move |conn| {
                record_attempt(conn, &notification_id, attempt, &result)
            })
            .await;
        match recorded {
            Err(e) => {
                // The lease runs out and the delivery is tried again.
                tracing::warn!(notification_id = %id, error = %e, "delivery outcome not recorded");
            }
            Ok(_) if delivered => {
                tracing::info!(notification_id = %id, attempt, "notification delivered");
            }
            Ok(_) if gave_up => {
                tracing::warn!(notification_id = %id, attempt, status = %status, "notification delivery given up");
            }
            Ok(_) => {
                tracing::info!(notification_id = %id, attempt, status = %status, "notification delivery failed; will retry");
            }
        }
    }
    count
}

/// One attempt; returns the notification id, the attempt number and what to record.
async fn send(client: &OutboundClient, claimed: Claimed) -> (String, i32, AttemptResult) {
    let Claimed {
        notification_id,
        source,
        webhook,
        attempt,
    } = claimed;
    let notification = match source {
        Source::Stored(row) => Some(row),
        Source::Entry(entry) => super::derived(&entry, None),
    };
    let Some(notification) = notification else {
        // The entry no longer calls for a notification (or no longer parses): nothing to send.
        let result = AttemptResult {
            status: "no_notification".to_string(),
            delivered_at: None,
            next_attempt_at: None,
        };
        return (notification_id, attempt, result);
    };
    let body = super::view(&notification, false).to_string().into_bytes();
    let request = match client.request(reqwest::Method::POST, &webhook.url) {
        Ok(request) => request,
        Err(refused) => {
            tracing::warn!(notification_id = %notification.id, code = ADDRESS_REFUSED, reason = %refused.detail, "webhook address refused");
            let now = now_micros();
            let result = AttemptResult {
                status: ADDRESS_REFUSED.to_string(),
                delivered_at: None,
                next_attempt_at: retry_at(attempt, now),
            };
            return (notification.id, attempt, result);
        }
    };
    let answer = request
        .header("content-type", "application/json")
        .header(SIGNATURE_HEADER, signature(&webhook.secret, &body))
        .header(DELIVERY_HEADER, &notification.id)
        .header(EVENT_HEADER, &notification.kind)
        .header(ATTEMPT_HEADER, attempt.to_string())
        .body(body)
        .send()
        .await;
    let now = now_micros();
    let result = match answer {
        Ok(response) if response.status().is_success() => AttemptResult {
            status: format!("http_{}", response.status().as_u16()),
            delivered_at: Some(now),
            next_attempt_at: None,
        },
        Ok(response) => AttemptResult {
            status: format!("http_{}", response.status().as_u16()),
            delivered_at: None,
            next_attempt_at: retry_at(attempt, now),
        },
        Err(e) => AttemptResult {
            status: failure_code(&e).to_string(),
            delivered_at: None,
            next_attempt_at: retry_at(attempt, now),
        },
    };
    (notification.id, attempt, result)
}

/// A stable code for a request that got no answer (the error text may name the URL).
fn failure_code(e: &reqwest::Error) -> &'static str {
    if let Some(refused) = refusal_in(e) {
        tracing::warn!(code = ADDRESS_REFUSED, reason = %refused.detail, "webhook address refused");
        ADDRESS_REFUSED
    } else if e.is_timeout() {
        "timeout"
    } else if e.is_connect() {
        "connect_failed"
    } else if e.is_builder() {
        "invalid_url"
    } else {
        "request_failed"
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};

    use diesel::{ExpressionMethods, QueryDsl, RunQueryDsl};

    use super::derive_deliveries;
    use crate::audit::log::AuditLog;
    use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
    use crate::store::notifications::{self as rows, WebhookRow};
    use crate::store::schema::notification_deliveries as d;

    fn read(client: &str, patient: &str) -> AuditEntry {
        let mut entry = AuditEntry::new(
            AuditAction::Read,
            AuditOutcome::Success,
            uuid::Uuid::now_v7().to_string(),
        );
        entry.recorded_micros = crate::fhir_time::now_micros();
        entry.client_id = client.into();
        entry.patient_id = Some(patient.into());
        entry.resources = vec!["Observation/o1".into()];
        entry
    }

    /// Three workers deriving at once while batches commit, on both backends: every entry of
    /// the patient with a webhook that calls for a notification gets exactly one delivery,
    /// with its derived id; no other entry gets one.
    #[test]
    fn concurrent_workers_derive_each_delivery_once_and_miss_none() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for (store, pg_name) in crate::store::tests::stores(dir.path()) {
            let backend = store.backend();
            let mut conn = store.conn().expect("connection");
            rows::put_webhook(
                &mut conn,
                &WebhookRow {
                    patient_id: "hooked".into(),
                    url: "https://example.org/hook".into(),
                    secret: "s".into(),
                    created: 0,
                },
            )
            .expect("webhook");
            drop(conn);
            let stop = Arc::new(AtomicBool::new(false));
            let workers: Vec<_> = (0..3)
                .map(|_| {
                    let (store, stop) = (store.clone(), stop.clone());
                    std::thread::spawn(move || {
                        while !stop.load(Ordering::SeqCst) {
                            let mut conn = store.conn().expect("connection");
                            derive_deliveries(&mut conn).expect("derived");
                        }
                    })
                })
                .collect();
            let log = Arc::new(
                AuditLog::start(store.clone(), std::time::Duration::ZERO).expect("writer"),
            );
            let mut expected = Vec::new();
            for round in 0..20 {
                let entries: Vec<AuditEntry> = (0..15)
                    .map(|i| match (round + i) % 3 {
                        0 => read("clinic", "hooked"),
                        1 => read("clinic", "other"),
                        _ => read(crate::audit::OPERATOR_CLIENT, "hooked"),
                    })
                    .collect();
                let calls: Vec<bool> = entries
                    .iter()
                    .map(|e| e.client_id == "clinic" && e.patient_id.as_deref() == Some("hooked"))
                    .collect();
                let seqs = rt.block_on(futures_util::future::join_all(entries.into_iter().map(
                    |e| {
                        let log = log.clone();
                        async move { log.record(e).await.expect("durable") }
                    },
                )));
                expected.extend(
                    seqs.into_iter()
                        .zip(calls)
                        .filter(|(_, c)| *c)
                        .map(|(s, _)| s as i64),
                );
            }
            stop.store(true, Ordering::SeqCst);
            for worker in workers {
                worker.join().expect("worker");
            }
            let mut conn = store.conn().expect("connection");
            derive_deliveries(&mut conn).expect("the rest");
            let mut got: Vec<(Option<i64>, String, String)> = d::table
                .select((d::audit_seq, d::notification_id, d::patient_id))
                .order(d::audit_seq.asc())
                .load(&mut conn)
                .expect("deliveries");
            expected.sort_unstable();
            assert_eq!(
                got.iter()
                    .map(|g| g.0.expect("derived"))
                    .collect::<Vec<_>>(),
                expected,
                "{backend:?}: each once, none missed"
            );
            for (seq, id, patient) in got.drain(..) {
                let entry = crate::store::audit::entry_at(&mut conn, seq.unwrap() as u64)
                    .expect("read")
                    .expect("the entry");
                assert_eq!(
                    Some(id),
                    super::super::derived_id(entry.recorded, entry.seq)
                );
                assert_eq!(patient, "hooked");
            }
            drop(conn);
            drop(log);
            crate::store::tests::drop_database(store, pg_name);
        }
    }
}
