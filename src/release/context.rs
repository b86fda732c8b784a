//! The facts every decision of one release shares: who asks (the recipient's token and its
//! registration, read afresh) and about whom (the patient's consents, the patient's own
//! record, which the de-identification leak scan checks outputs against, and the records the
//! patient disputes).
//!
//! A recipient's request reads all of them in **one** database trip, on one pooled
//! connection, including the bearer token's database check (client still registered, token
//! not revoked) that `auth::bearer` leaves to this trip on the FHIR read routes
//! (`api::auth::ReadCaller`). The trip is read-only, so on SQLite it runs on the request's
//! own thread when a connection is free ([`Store::run_read`](crate::store::Store::run_read)):
//! a hand-off to another thread and back was the largest cost of the hot path
//! (`docs/PERFORMANCE.md`).
//!
//! **Parsed, not stale.** Parsing a patient's consents and Patient record was a fifth of a
//! consent-checked read's CPU, so the parsed [`PatientContext`] (with the records the patient
//! disputes) is kept in a [`ContextCache`], but every request still reads, in its own trip,
//! the patient's *context version* (`store::resources::context_version`): one number that
//! the database's triggers change in the same transaction as any write of the patient's
//! consents, Patient record or amendment requests, whichever instance or path writes them. A
//! kept context is used only when the version read now equals the one it was read under; a
//! revocation, a new consent or a new dispute changes it, so each holds from the very next
//! request everywhere, exactly as without the cache. Nothing about the requester is kept:
//! its registration and the token's revocation are one statement per request.
//!
//! The version costs no statement of its own: a read takes it with the requester and the
//! resource (`store::identity::live_requester_and_resource`, the version of the patient the
//! resource is stored under), a search or `$everything` with the requester
//! (`store::identity::live_requester_and_version`). A read whose patient's context is kept
//! at the version read is that **one statement**, which is its own snapshot on both
//! backends: SQLite needs no transaction around it (its `BEGIN` and `COMMIT` were a tenth of
//! the trip) and PostgreSQL one round trip. Otherwise (the context not kept at that version,
//! or a resource stored under another patient than its body names) the read is done again
//! as before, in one read transaction, so the consents parsed are those of the version read.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::consent::Consent;
use crate::decision::Requester;
use crate::decision::stored::StoredResource;
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::{RecordError, consents, ingest};
use crate::store::resources as rows;
use crate::store::{DbConn, read_tx};

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
        .run_read(move |conn| requester_in(conn, &id, &jti))
        .await
}

/// [`requester`] on a connection already held: the bearer token's database check and the
/// client's registration.
fn requester_in(conn: &mut DbConn, client_id: &str, jti: &str) -> Result<Requester, DomainError> {
    registry::live_requester(conn, client_id, jti)?.ok_or_else(refused)
}

/// [`requester_in`] and, in the same statement, `patient`'s context version.
fn requester_and_version_in(
    conn: &mut DbConn,
    client_id: &str,
    jti: &str,
    patient: &PatientId,
) -> Result<(Requester, i64), DomainError> {
    registry::live_requester_and_version(conn, client_id, jti, patient.as_str())?
        .ok_or_else(refused)
}

/// A client removed or a token revoked: refused as unauthenticated.
fn refused() -> DomainError {
    DomainError::new(
        ErrorKind::Unauthorized,
        "unauthorized",
        "a valid bearer token is required",
    )
}

/// The records a patient disputes: `Type/id` to the statement's DocumentReference id.
pub type Disputed = BTreeMap<String, String>;

/// The requester and one patient's context, read in one database trip.
pub async fn requester_and_patient(
    gateway: &Gateway,
    claims: &AccessClaims,
    patient: &PatientId,
) -> Result<(Requester, PatientContext), DomainError> {
    let (requester, context, ()) =
        requester_patient_and(gateway, claims, patient, |_| Ok(())).await?;
    Ok((requester, context))
}

/// [`requester_and_patient`], and `also` in the same trip (a search's first batch of rows).
pub async fn requester_patient_and<T, F>(
    gateway: &Gateway,
    claims: &AccessClaims,
    patient: &PatientId,
    also: F,
) -> Result<(Requester, PatientContext, T), DomainError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, DomainError> + Send + 'static,
{
    let (id, jti, p) = (
        claims.client_id.clone(),
        claims.jti.clone(),
        patient.clone(),
    );
    let cache = gateway.contexts.clone();
    gateway
        .store
        .run_read(move |conn| {
            read_tx(conn, |conn| {
                let (requester, version) = requester_and_version_in(conn, &id, &jti, &p)?;
                let context = cache.load_at(conn, p, version)?;
                Ok((requester, context, also(conn)?))
            })
        })
        .await
}

/// What a recipient's read of one resource needs, read in one database trip (one
/// pooled connection, no hand-off between the reads): the token's database check, the
/// client's registration, the resource (its stored text and facts, `decision::stored`) and
/// the context of the patient who owns it. `None` when the resource is missing or belongs to
/// no patient (the caller answers both alike).
pub async fn requester_and_resource(
    gateway: &Gateway,
    claims: &AccessClaims,
    resource_type: &str,
    resource_id: &str,
) -> Result<RequesterAndResource, DomainError> {
    let (id, jti) = (claims.client_id.clone(), claims.jti.clone());
    let (ty, key) = (resource_type.to_string(), resource_id.to_string());
    let cache = gateway.contexts.clone();
    gateway
        .store
        .run_read(move |conn| {
            if let Some(read) = read_at_once(conn, &cache, &id, &jti, &ty, &key)? {
                return Ok(read);
            }
            read_tx(conn, |conn| {
                let requester = requester_in(conn, &id, &jti)?;
                let ingest::CurrentRead {
                    resource,
                    stored_under,
                    version,
                } = match ingest::read_with_context_version(conn, &ty, &key) {
                    Ok(found) => found,
                    Err(RecordError::NotFound { .. }) => return Ok((requester, None)),
                    Err(e) => return Err(e.into()),
                };
                let Some(patient) = owner_of(&resource, &ty, &key) else {
                    return Ok((requester, None));
                };
                // The version read with the resource is its stored patient's, which is the
                // owner its body names (both come from `index::patient_of` at ingest); should
                // they ever differ, the owner's version is read on its own.
                let version = match stored_under {
                    Some(stored) if stored == patient.as_str() => version,
                    _ => rows::context_version(conn, patient.as_str())?,
                };
                let context = cache.load_at(conn, patient, version)?;
                Ok((requester, Some((resource, context))))
            })
        })
        .await
}

/// What [`requester_and_resource`] answers: the requester, and the resource with its
/// patient's context unless it is missing or belongs to no patient.
pub type RequesterAndResource = (Requester, Option<(StoredResource, PatientContext)>);

/// [`requester_and_resource`] in one statement, when that is enough: the requester, the
/// resource and its patient's context version read together, and the context kept at that
/// version. `None` when the read must be done in a transaction instead: a key that is not
/// readable (the transaction answers it as it always has), a resource stored under another
/// patient than its body names, or a context not kept at the version read.
fn read_at_once(
    conn: &mut DbConn,
    cache: &ContextCache,
    client_id: &str,
    jti: &str,
    resource_type: &str,
    id: &str,
) -> Result<Option<RequesterAndResource>, DomainError> {
    if !ingest::is_readable_key(resource_type, id) {
        return Ok(None);
    }
    let (requester, row) =
        registry::live_requester_and_resource(conn, client_id, jti, resource_type, id)?
            .ok_or_else(refused)?;
    let Some(row) = row else {
        return Ok(Some((requester, None)));
    };
    let ingest::CurrentRead {
        resource,
        stored_under,
        version,
    } = ingest::current_read(resource_type, id, row)?;
    let Some(patient) = owner_of(&resource, resource_type, id) else {
        return Ok(Some((requester, None)));
    };
    if stored_under.as_deref() != Some(patient.as_str()) {
        return Ok(None);
    }
    Ok(cache
        .kept(&patient, version)
        .map(|context| (requester, Some((resource, context)))))
}

/// The patient who owns `resource`, when it belongs to one.
fn owner_of(resource: &StoredResource, resource_type: &str, id: &str) -> Option<PatientId> {
    resource
        .owner(resource_type, id)
        .and_then(|p| PatientId::parse(&p).ok())
}

/// One patient's side of a release. Cheap to clone: the parsed parts are shared.
#[derive(Debug, Clone)]
pub struct PatientContext {
    /// The patient.
    pub patient: PatientId,
    /// Every current consent of the patient, in id order, as of this request's context
    /// version.
    pub consents: Arc<[Consent]>,
    /// The patient's own Patient resource when stored: the identifiers a de-identified
    /// output must not contain.
    pub sources: Arc<[Value]>,
    /// The records the patient disputes, as of this request's context version.
    pub disputed: Arc<Disputed>,
}

/// Most patients whose parsed context is kept; the whole cache is dropped when it is full (a
/// miss costs one parse, as without the cache).
pub const CONTEXT_CACHE_LIMIT: usize = 10_000;

/// Parsed [`PatientContext`]s by patient, each with the context version it was read under
/// (see the module's documentation for why this cannot serve a revoked consent).
#[derive(Debug, Default)]
pub struct ContextCache {
    kept: Mutex<HashMap<PatientId, (i64, PatientContext)>>,
}

impl ContextCache {
    /// The context of `patient` at `version`, the context version just read on `conn` (in
    /// the same read transaction, or on PostgreSQL before the rows): the kept one when it
    /// was read under the same version, otherwise three statements for the consents, the
    /// Patient record and the disputes, parsed and kept under `version`.
    pub fn load_at(
        &self,
        conn: &mut DbConn,
        patient: PatientId,
        version: i64,
    ) -> Result<PatientContext, DomainError> {
        if let Some(kept) = self.kept(&patient, version) {
            return Ok(kept);
        }
        // Read after the version: the rows are at least as new as it (on PostgreSQL, where
        // each statement has its own snapshot, they may be newer, and are kept under the
        // older version, which the next request finds changed and reads again).
        let stored = rows::context_rows(conn, patient.as_str())?;
        let disputed = crate::amendment::dispute::disputed_in(conn, patient.as_str())?;
        let context = PatientContext::parse(patient, stored, disputed)?;
        self.keep(version, &context);
        Ok(context)
    }

    fn kept(&self, patient: &PatientId, version: i64) -> Option<PatientContext> {
        let kept = self.kept.lock().ok()?;
        let (at, context) = kept.get(patient)?;
        (*at == version).then(|| context.clone())
    }

    fn keep(&self, version: i64, context: &PatientContext) {
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= CONTEXT_CACHE_LIMIT && !kept.contains_key(&context.patient) {
                kept.clear();
            }
            kept.insert(context.patient.clone(), (version, context.clone()));
        }
    }
}

impl PatientContext {
    /// The context of `patient` from its stored rows (consents and the Patient record, in
    /// `(type, id)` order) and the records it disputes. A stored consent that no longer
    /// parses fails the request rather than being skipped, since skipping it could drop a
    /// deny.
    fn parse(
        patient: PatientId,
        stored: Vec<(String, String, String)>,
        disputed: Disputed,
    ) -> Result<PatientContext, RecordError> {
        let mut consents = Vec::with_capacity(stored.len());
        let mut sources = Vec::new();
        for (resource_type, id, body) in stored {
            if resource_type == "Consent" {
                consents.push(consents::parse_stored(&id, &body)?);
            } else {
                sources.push(serde_json::from_str(&body).map_err(|_| {
                    RecordError::Store(crate::store::StoreError::Task(format!(
                        "stored body of Patient/{id} is not JSON"
                    )))
                })?);
            }
        }
        Ok(PatientContext {
            patient,
            consents: consents.into(),
            sources: sources.into(),
            disputed: Arc::new(disputed),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::config::{DatabaseSettings, DatabaseTarget};
    use crate::store::resources::{ResourceWrite, write};
    use crate::store::{Store, write_tx};

    fn store(dir: &std::path::Path) -> Store {
        let settings = DatabaseSettings {
            url: String::new().into(),
            pool_size: 2,
            connect_timeout_secs: 5,
            sqlite_busy_timeout_ms: 500,
            audit_commit_wait_us: 0,
            sqlite_inline_reads: true,
            migrate_on_start: false,
        };
        let store = Store::open_target(DatabaseTarget::Sqlite(dir.join("cg.db")), &settings)
            .expect("store opens");
        store.migrate().expect("migrations apply");
        store
    }

    /// A consent of Patient/p1 with `status`, and whom it permits.
    fn consent(id: &str, status: &str, actor: &str) -> Value {
        json!({
            "resourceType": "Consent", "id": id, "status": status,
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope",
                                   "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p1"},
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                       "code": "OPTIN"}]},
            "provision": {"type": "permit", "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
                                     "code": "IRCP"}]},
                "reference": {"reference": actor}}]}
        })
    }

    /// Stores `body` as version `version` of its resource, owned by Patient/p1.
    fn put(store: &Store, body: &Value, version: i64, at: i64) {
        let w = ResourceWrite {
            resource_type: body["resourceType"].as_str().unwrap().to_string(),
            id: body["id"].as_str().unwrap().to_string(),
            version_id: version,
            last_updated: at,
            patient_id: Some("p1".into()),
            clinical: None,
            body: body.to_string(),
            facts: None,
            tokens: Vec::new(),
            source_client: None,
            written_by: None,
        };
        let mut conn = store.conn().unwrap();
        write_tx(&mut conn, |conn| write(conn, &w)).unwrap();
    }

    fn load(cache: &ContextCache, store: &Store) -> PatientContext {
        let mut conn = store.conn().unwrap();
        let version = rows::context_version(&mut conn, "p1").unwrap();
        cache
            .load_at(&mut conn, PatientId::parse("p1").unwrap(), version)
            .unwrap()
    }

    fn statuses(context: &PatientContext) -> Vec<String> {
        context
            .consents
            .iter()
            .map(|c| format!("{:?}:{:?}", c.id(), c.status()))
            .collect()
    }

    #[test]
    fn a_kept_context_is_used_only_while_its_rows_are_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let cache = ContextCache::default();
        put(
            &store,
            &json!({"resourceType": "Patient", "id": "p1"}),
            1,
            10,
        );
        put(&store, &consent("c1", "active", "Organization/a"), 1, 20);

        let first = load(&cache, &store);
        let again = load(&cache, &store);
        assert!(
            Arc::ptr_eq(&first.consents, &again.consents),
            "unchanged rows: the kept context"
        );
        assert_eq!(first.sources.len(), 1, "the Patient record is part of it");

        // A new version (the revocation) is read on the very next load.
        put(&store, &consent("c1", "inactive", "Organization/a"), 2, 30);
        let revoked = load(&cache, &store);
        assert!(!Arc::ptr_eq(&first.consents, &revoked.consents));
        assert_ne!(
            statuses(&first),
            statuses(&revoked),
            "the new version is parsed"
        );

        // So is a new consent, and a new version of the Patient record.
        put(&store, &consent("c2", "active", "Organization/b"), 1, 40);
        let two = load(&cache, &store);
        assert_eq!(two.consents.len(), 2);
        put(
            &store,
            &json!({"resourceType": "Patient", "id": "p1", "gender": "female"}),
            2,
            50,
        );
        let renamed = load(&cache, &store);
        assert_eq!(renamed.sources[0]["gender"], "female");
        assert!(Arc::ptr_eq(
            &renamed.consents,
            &load(&cache, &store).consents
        ));
    }

    /// A statement of disagreement filed after the context was kept is in the very next
    /// load: the disputes are part of the context and its version.
    #[test]
    fn a_new_dispute_is_read_on_the_very_next_load() {
        use diesel::RunQueryDsl;

        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let cache = ContextCache::default();
        put(&store, &consent("c1", "active", "Organization/a"), 1, 20);
        let before = load(&cache, &store);
        assert!(before.disputed.is_empty());
        assert!(Arc::ptr_eq(
            &before.consents,
            &load(&cache, &store).consents
        ));

        let mut conn = store.conn().unwrap();
        diesel::sql_query(
            "INSERT INTO amendments (id, patient_id, resource_type, resource_id, version_id, \
             status, requested_by, what_is_wrong, proposed_correction, created, due, \
             statement_id) VALUES ('a1', 'p1', 'Observation', 'o1', 1, 'denied', \
             'Patient/p1', 'w', 'p', 1, 2, 's1')",
        )
        .execute(&mut conn)
        .unwrap();
        drop(conn);
        let after = load(&cache, &store);
        assert_eq!(
            after.disputed.get("Observation/o1").map(String::as_str),
            Some("s1")
        );
    }

    /// A read is one statement only when the patient's context is kept at the version that
    /// statement reads; otherwise it is done in a transaction, and both answer alike. On
    /// both backends.
    #[test]
    fn a_read_is_one_statement_only_while_the_context_kept_is_current() {
        let dir = tempfile::tempdir().unwrap();
        for (store, pg_name) in crate::store::tests::stores(dir.path()) {
            let backend = store.backend();
            let cache = ContextCache::default();
            let mut conn = store.conn().unwrap();
            crate::store::identity::insert_client(&mut conn, &crate::store::tests::clinician("k1"))
                .unwrap();
            drop(conn);
            put(&store, &consent("c1", "active", "Organization/a"), 1, 20);
            let observation = json!({"resourceType": "Observation", "id": "o1",
                                     "subject": {"reference": "Patient/p1"}});
            put(&store, &observation, 1, 30);
            let at_once = |ty: &str, id: &str| {
                let mut conn = store.conn().unwrap();
                read_at_once(&mut conn, &cache, "k1", "t1", ty, id)
            };
            let summary = |read: Option<RequesterAndResource>| {
                read.map(|(requester, found)| {
                    (
                        requester.client_id.clone(),
                        found.map(|(resource, context)| (resource.text, statuses(&context))),
                    )
                })
            };

            assert!(
                at_once("Observation", "o1").unwrap().is_none(),
                "{backend:?}: nothing kept yet: the transaction reads it"
            );
            load(&cache, &store);
            let kept = summary(at_once("Observation", "o1").unwrap());
            assert_eq!(
                kept,
                Some((
                    "k1".to_string(),
                    Some((observation.to_string(), statuses(&load(&cache, &store))))
                )),
                "{backend:?}: kept at the version read: one statement"
            );
            assert_eq!(
                summary(at_once("Observation", "missing").unwrap()),
                Some(("k1".to_string(), None)),
                "{backend:?}: a missing resource, answered at once"
            );
            assert!(
                at_once("Observation", "not an id").unwrap().is_none(),
                "{backend:?}: a key that cannot be stored is the transaction's to answer"
            );

            // The revocation changes the version: the kept context is not used.
            put(&store, &consent("c1", "inactive", "Organization/a"), 2, 40);
            assert!(
                at_once("Observation", "o1").unwrap().is_none(),
                "{backend:?}: a revoked consent is never answered from the kept context"
            );

            let mut conn = store.conn().unwrap();
            crate::store::identity::revoke_token(&mut conn, "t1", 10).unwrap();
            drop(conn);
            let refused = at_once("Observation", "o1").unwrap_err();
            assert_eq!(refused.kind, ErrorKind::Unauthorized, "{backend:?}");
            drop(cache);
            crate::store::tests::drop_database(store, pg_name);
        }
    }

    #[test]
    fn a_patient_without_rows_has_an_empty_context() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(dir.path());
        let context = load(&ContextCache::default(), &store);
        assert!(context.consents.is_empty() && context.sources.is_empty());
    }
}
