//! FHIR resource rows: current versions, history and the token index.
//!
//! The callers in `records/` decide versions and bodies; this file only reads and writes them.

use diesel::prelude::*;

use super::schema::{
    patient_context_versions, resource_facts_derivation, resource_tokens, resource_versions,
    resources,
};
use super::{DbConn, StoreError};

/// One search term of a resource, as indexed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Insertable)]
#[diesel(table_name = resource_tokens)]
pub struct TokenRow {
    /// Resource type of the owner.
    pub resource_type: String,
    /// Id of the owner.
    pub resource_id: String,
    /// `code`, `category`, `security` or `identifier`.
    pub kind: String,
    /// The coding system or identifier system; empty when absent.
    pub system: String,
    /// The code or identifier value.
    pub code: String,
    /// `system|code`.
    pub token: String,
}

/// Everything written for one new version of a resource.
#[derive(Debug, Clone)]
pub struct ResourceWrite {
    /// FHIR resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// The version being written (1 for a create).
    pub version_id: i64,
    /// Microseconds since the epoch.
    pub last_updated: i64,
    /// Owning patient id, if any.
    pub patient_id: Option<String>,
    /// Clinical date range in microseconds, if any.
    pub clinical: Option<(i64, i64)>,
    /// The JSON body, with `meta.versionId` and `meta.lastUpdated` already set.
    pub body: String,
    /// The decision's facts derived from `body` (`decision::stored`), JSON; `None` leaves
    /// them to be derived from the body when it is read.
    pub facts: Option<String>,
    /// Index terms (deduplicated by the caller or here).
    pub tokens: Vec<TokenRow>,
    /// The data source that supplied the record (kept from its first version); `None` when
    /// an operator or the gateway created it.
    pub source_client: Option<String>,
    /// The data source writing this version; `None` for an operator or the gateway.
    pub written_by: Option<String>,
}

#[derive(Insertable, AsChangeset)]
#[diesel(table_name = resources)]
#[diesel(treat_none_as_null = true)]
struct ResourceRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    version_id: i64,
    last_updated: i64,
    patient_id: Option<&'a str>,
    clinical_start: Option<i64>,
    clinical_end: Option<i64>,
    body: &'a str,
    source_client: Option<&'a str>,
    facts: Option<&'a str>,
}

#[derive(Insertable)]
#[diesel(table_name = resource_versions)]
struct VersionRow<'a> {
    resource_type: &'a str,
    id: &'a str,
    version_id: i64,
    last_updated: i64,
    body: &'a str,
    source_client: Option<&'a str>,
}

/// The current version number of a resource, `None` when it was never stored.
pub fn current_version(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
) -> Result<Option<i64>, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::id.eq(id))
        .select(resources::version_id)
        .first::<i64>(conn)
        .optional()?)
}

/// The current version number of a resource and the data source that supplied it (`None`
/// when an operator or the gateway created it); `None` when it was never stored.
pub fn current_with_source(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
) -> Result<Option<(i64, Option<String>)>, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::id.eq(id))
        .select((resources::version_id, resources::source_client))
        .first::<(i64, Option<String>)>(conn)
        .optional()?)
}

/// Serialises, until the transaction ends, the writers that count and then add to one
/// patient's resources of one kind (the consent limit). SQLite's write transactions are
/// serial already (`BEGIN IMMEDIATE`); PostgreSQL takes a transaction-scoped advisory lock
/// on a hash of the pair, so two instances cannot both see room for one more.
pub fn lock_patient_kind(
    conn: &mut DbConn,
    resource_type: &str,
    patient_id: &str,
) -> Result<(), StoreError> {
    if let DbConn::Postgresql(pg) = conn {
        diesel::sql_query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind::<diesel::sql_types::Text, _>(format!("{resource_type}/{patient_id}"))
            .execute(pg)?;
    }
    Ok(())
}

/// How many current resources of `resource_type` belong to `patient_id`, not counting `except`
/// (the resource being written).
pub fn count_for_patient(
    conn: &mut DbConn,
    resource_type: &str,
    patient_id: &str,
    except: &str,
) -> Result<i64, StoreError> {
    Ok(resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::patient_id.eq(patient_id))
        .filter(resources::id.ne(except))
        .count()
        .get_result(conn)?)
}

/// Writes a new version: the current row, the history row and the index terms.
/// Call inside [`super::write_tx`].
pub fn write(conn: &mut DbConn, w: &ResourceWrite) -> Result<(), StoreError> {
    let row = ResourceRow {
        resource_type: &w.resource_type,
        id: &w.id,
        version_id: w.version_id,
        last_updated: w.last_updated,
        patient_id: w.patient_id.as_deref(),
        clinical_start: w.clinical.map(|c| c.0),
        clinical_end: w.clinical.map(|c| c.1),
        body: &w.body,
        source_client: w.source_client.as_deref(),
        facts: w.facts.as_deref(),
    };
    if w.version_id == 1 {
        diesel::insert_into(resources::table)
            .values(&row)
            .execute(conn)?;
    } else {
        let updated = diesel::update(
            resources::table
                .filter(resources::resource_type.eq(&w.resource_type))
                .filter(resources::id.eq(&w.id))
                .filter(resources::version_id.eq(w.version_id - 1)),
        )
        .set(&row)
        .execute(conn)?;
        if updated != 1 {
            return Err(StoreError::Conflict);
        }
        diesel::delete(
            resource_tokens::table
                .filter(resource_tokens::resource_type.eq(&w.resource_type))
                .filter(resource_tokens::resource_id.eq(&w.id)),
        )
        .execute(conn)?;
    }
    diesel::insert_into(resource_versions::table)
        .values(&VersionRow {
            resource_type: &w.resource_type,
            id: &w.id,
            version_id: w.version_id,
            last_updated: w.last_updated,
            body: &w.body,
            source_client: w.written_by.as_deref(),
        })
        .execute(conn)?;
    let mut tokens = w.tokens.clone();
    tokens.sort();
    tokens.dedup_by(|a, b| a.kind == b.kind && a.token == b.token);
    // Multi-row inserts are backend-specific in diesel, hence the match. Bounded chunks keep
    // each statement under SQLite's bound-parameter limit.
    for chunk in tokens.chunks(500) {
        let statement = diesel::insert_into(resource_tokens::table).values(chunk);
        match conn {
            DbConn::Sqlite(c) => statement.execute(c)?,
            DbConn::Postgresql(c) => statement.execute(c)?,
        };
    }
    Ok(())
}

/// The current body of a resource.
pub fn read(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
) -> Result<Option<String>, StoreError> {
    let query = resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::id.eq(id))
        .select(resources::body);
    Ok(on_backend!(conn, c => query.first::<String>(c).optional())?)
}

/// A current resource as a search finds it: `(id, body, facts)`, the facts as stored with
/// it (`ResourceWrite::facts`).
pub type Found = (String, String, Option<String>);

/// One page of a patient's current resources of one type, as [`Found`] rows in id order, the
/// ids after `after_id` (`""` for the first page). A fixed statement, unlike [`search`]'s
/// boxed one, so it stays prepared: every release reads the patient's consents with it.
pub fn of_patient_page(
    conn: &mut DbConn,
    resource_type: &str,
    patient_id: &str,
    after_id: &str,
    limit: i64,
) -> Result<Vec<Found>, StoreError> {
    let query = resources::table
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::patient_id.eq(patient_id))
        .filter(resources::id.gt(after_id))
        .select((resources::id, resources::body, resources::facts))
        .order(resources::id.asc())
        .limit(limit);
    Ok(on_backend!(conn, c => query.load::<Found>(c))?)
}

/// The rows a release context is parsed from: the patient's current consents, in id order,
/// then the patient's own Patient record: `(type, id)` order. Two statements, each an exact
/// index range: in one, `patient_id = ? AND (type = 'Consent' OR (type = 'Patient' AND id
/// = ?))`, SQLite used only the `patient_id` prefix of `resources_by_patient` and stepped
/// through every resource of the patient on every release (a patient with thousands of
/// observations paid for each of them).
#[diesel::dsl::auto_type(no_type_alias)]
fn consents_of<'a>(patient_id: &'a str) -> _ {
    let consent: &'static str = "Consent";
    resources::table
        .filter(resources::patient_id.eq(patient_id))
        .filter(resources::resource_type.eq(consent))
        .order(resources::id.asc())
}

/// The patient's own Patient record, by its key ([`consents_of`]).
#[diesel::dsl::auto_type(no_type_alias)]
fn own_record_of<'a>(patient_id: &'a str) -> _ {
    let patient: &'static str = "Patient";
    resources::table
        .filter(resources::resource_type.eq(patient))
        .filter(resources::id.eq(patient_id))
        .filter(resources::patient_id.eq(patient_id))
}

/// The version of everything a release reads about a patient besides the requested
/// resources: it changes, in the same transaction, with every write of the patient's
/// consents, Patient record or amendment requests (the database's triggers keep it, on every
/// instance; migration `000062_patient_context_versions`). 0 for a patient never written.
/// One fixed statement on the primary key, run on every release.
pub fn context_version(conn: &mut DbConn, patient_id: &str) -> Result<i64, StoreError> {
    let query = patient_context_versions::table
        .filter(patient_context_versions::patient_id.eq(patient_id))
        .select(patient_context_versions::version);
    Ok(on_backend!(conn, c => query.first::<i64>(c).optional())?.unwrap_or(0))
}

/// A current resource as a recipient's read finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrentRow {
    /// The stored body.
    pub body: String,
    /// The decision's facts stored with it, if any (`ResourceWrite::facts`).
    pub facts: Option<String>,
    /// The patient it is stored under.
    pub patient_id: Option<String>,
    /// That patient's [`context_version`].
    pub version: i64,
}

/// The current body of a resource and its stored facts, with the patient it is stored under
/// and, in the same statement, that patient's [`context_version`]: what a recipient's read
/// needs of the database besides the requester. `None` when the resource is not stored.
pub fn read_with_context_version(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
) -> Result<Option<CurrentRow>, StoreError> {
    let query = resources::table
        .left_join(
            patient_context_versions::table.on(patient_context_versions::patient_id
                .nullable()
                .eq(resources::patient_id)),
        )
        .filter(resources::resource_type.eq(resource_type))
        .filter(resources::id.eq(id))
        .select((
            resources::body,
            resources::facts,
            resources::patient_id,
            patient_context_versions::version.nullable(),
        ));
    let found = on_backend!(conn, c => query
        .first::<(String, Option<String>, Option<String>, Option<i64>)>(c)
        .optional())?;
    Ok(found.map(|(body, facts, patient_id, version)| CurrentRow {
        body,
        facts,
        patient_id,
        version: version.unwrap_or(0),
    }))
}

/// The rows a release context is parsed from, as `(type, id, body)`: the patient's
/// consents in id order (`consents_of`), then the patient's own Patient record
/// (`own_record_of`).
pub fn context_rows(
    conn: &mut DbConn,
    patient_id: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    let row = (resources::resource_type, resources::id, resources::body);
    let mut rows = on_backend!(conn, c => consents_of(patient_id)
        .select(row)
        .load::<(String, String, String)>(c))?;
    rows.extend(on_backend!(conn, c => own_record_of(patient_id)
        .select(row)
        .first::<(String, String, String)>(c)
        .optional())?);
    Ok(rows)
}

/// One version's body.
pub fn read_version(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
    version_id: i64,
) -> Result<Option<String>, StoreError> {
    Ok(resource_versions::table
        .filter(resource_versions::resource_type.eq(resource_type))
        .filter(resource_versions::id.eq(id))
        .filter(resource_versions::version_id.eq(version_id))
        .select(resource_versions::body)
        .first::<String>(conn)
        .optional()?)
}

/// The types under which a logical id is stored (for `urn:uuid:` references across bundles).
pub fn types_with_id(conn: &mut DbConn, id: &str) -> Result<Vec<String>, StoreError> {
    Ok(resources::table
        .filter(resources::id.eq(id))
        .select(resources::resource_type)
        .limit(2)
        .load::<String>(conn)?)
}

/// Which side of a stored date range a [`DateBound`] compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeEdge {
    /// The start of the range.
    Start,
    /// The end of the range.
    End,
}

/// A comparison operator of a [`DateBound`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cmp {
    /// `>=`
    Ge,
    /// `>`
    Gt,
    /// `<=`
    Le,
    /// `<`
    Lt,
}

/// One comparison on a date column, in microseconds since the epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateBound {
    /// Which edge of the stored range.
    pub edge: RangeEdge,
    /// The operator.
    pub cmp: Cmp,
    /// The value compared with.
    pub value: i64,
}

/// A token condition: the resource has a term of `kind` equal to one of `tokens`
/// (`system|code`) or whose code is one of `codes` (system unspecified).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TokenFilter {
    /// `code`, `category`, `security` or `identifier`.
    pub kind: String,
    /// System-qualified values.
    pub tokens: Vec<String>,
    /// Bare codes.
    pub codes: Vec<String>,
}

/// A search over one resource type; conditions combine with AND, values within one with OR.
#[derive(Debug, Clone, Default)]
pub struct ResourceQuery {
    /// The type searched.
    pub resource_type: String,
    /// Only these ids, when not empty.
    pub ids: Vec<String>,
    /// Only resources of these patients, when not empty.
    pub patient_ids: Vec<String>,
    /// Conditions on the clinical date.
    pub clinical: Vec<DateBound>,
    /// Conditions on the last update.
    pub last_updated: Vec<DateBound>,
    /// Token conditions.
    pub tokens: Vec<TokenFilter>,
    /// Keyset paging: only ids greater than this.
    pub after_id: Option<String>,
    /// Most rows returned.
    pub limit: i64,
}

/// Runs a search; rows come ordered by id.
///
/// The commonest search, a recipient's page of one patient's resources of one type with no
/// other parameter, runs on [`of_patient_page`]'s fixed statement, which stays prepared;
/// every other shape is built (and its SQL rendered) per call.
pub fn search(conn: &mut DbConn, q: &ResourceQuery) -> Result<Vec<Found>, StoreError> {
    let plain = q.ids.is_empty()
        && q.clinical.is_empty()
        && q.last_updated.is_empty()
        && q.tokens.is_empty();
    match q.patient_ids.as_slice() {
        [patient] if plain => of_patient_page(
            conn,
            &q.resource_type,
            patient,
            q.after_id.as_deref().unwrap_or_default(),
            q.limit,
        ),
        _ => search_built(conn, q),
    }
}

/// [`search`] on a statement built for the query's shape.
pub(super) fn search_built(conn: &mut DbConn, q: &ResourceQuery) -> Result<Vec<Found>, StoreError> {
    let mut query = resources::table
        .filter(resources::resource_type.eq(q.resource_type.clone()))
        .select((resources::id, resources::body, resources::facts))
        .order(resources::id.asc())
        .limit(q.limit)
        .into_boxed();
    if !q.ids.is_empty() {
        query = query.filter(resources::id.eq_any(q.ids.clone()));
    }
    if !q.patient_ids.is_empty() {
        query = query.filter(resources::patient_id.eq_any(q.patient_ids.clone()));
    }
    if let Some(after) = &q.after_id {
        query = query.filter(resources::id.gt(after.clone()));
    }
    for b in &q.clinical {
        query = match (b.edge, b.cmp) {
            (RangeEdge::Start, Cmp::Ge) => query.filter(resources::clinical_start.ge(b.value)),
            (RangeEdge::Start, Cmp::Gt) => query.filter(resources::clinical_start.gt(b.value)),
            (RangeEdge::Start, Cmp::Le) => query.filter(resources::clinical_start.le(b.value)),
            (RangeEdge::Start, Cmp::Lt) => query.filter(resources::clinical_start.lt(b.value)),
            (RangeEdge::End, Cmp::Ge) => query.filter(resources::clinical_end.ge(b.value)),
            (RangeEdge::End, Cmp::Gt) => query.filter(resources::clinical_end.gt(b.value)),
            (RangeEdge::End, Cmp::Le) => query.filter(resources::clinical_end.le(b.value)),
            (RangeEdge::End, Cmp::Lt) => query.filter(resources::clinical_end.lt(b.value)),
        };
    }
    for b in &q.last_updated {
        // A last update is an instant: both edges are the same column.
        query = match b.cmp {
            Cmp::Ge => query.filter(resources::last_updated.ge(b.value)),
            Cmp::Gt => query.filter(resources::last_updated.gt(b.value)),
            Cmp::Le => query.filter(resources::last_updated.le(b.value)),
            Cmp::Lt => query.filter(resources::last_updated.lt(b.value)),
        };
    }
    for t in &q.tokens {
        query = query.filter(diesel::dsl::exists(
            resource_tokens::table
                .filter(resource_tokens::resource_type.eq(resources::resource_type))
                .filter(resource_tokens::resource_id.eq(resources::id))
                .filter(resource_tokens::kind.eq(t.kind.clone()))
                .filter(
                    resource_tokens::token
                        .eq_any(t.tokens.clone())
                        .or(resource_tokens::code.eq_any(t.codes.clone())),
                ),
        ));
    }
    Ok(query.load::<Found>(conn)?)
}

/// A current row as the facts backfill reads it (`records::facts`).
#[derive(Debug, Clone, Queryable)]
pub struct FactsRow {
    /// FHIR resource type.
    pub resource_type: String,
    /// Logical id.
    pub id: String,
    /// The current version.
    pub version_id: i64,
    /// Its stored body.
    pub body: String,
    /// Its stored facts, if any.
    pub facts: Option<String>,
}

/// Up to `limit` current rows after `after` (`(type, id)`), in key order.
pub fn facts_rows_after(
    conn: &mut DbConn,
    after: Option<&(String, String)>,
    limit: i64,
) -> Result<Vec<FactsRow>, StoreError> {
    let mut query = resources::table
        .select((
            resources::resource_type,
            resources::id,
            resources::version_id,
            resources::body,
            resources::facts,
        ))
        .order((resources::resource_type.asc(), resources::id.asc()))
        .limit(limit)
        .into_boxed();
    if let Some((ty, id)) = after {
        query = query.filter(
            resources::resource_type
                .gt(ty.clone())
                .or(resources::resource_type
                    .eq(ty.clone())
                    .and(resources::id.gt(id.clone()))),
        );
    }
    Ok(query.load::<FactsRow>(conn)?)
}

/// Stores `facts` on the row of `resource_type/id` while it is still at `version_id`, the
/// version they were derived from; whether it was.
pub fn set_facts(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
    version_id: i64,
    facts: &str,
) -> Result<bool, StoreError> {
    Ok(diesel::update(
        resources::table
            .filter(resources::resource_type.eq(resource_type))
            .filter(resources::id.eq(id))
            .filter(resources::version_id.eq(version_id)),
    )
    .set(resources::facts.eq(Some(facts)))
    .execute(conn)?
        == 1)
}

/// The derivation of the decision's facts every row has been given (0: none yet).
pub fn facts_derivation(conn: &mut DbConn) -> Result<i32, StoreError> {
    Ok(resource_facts_derivation::table
        .filter(resource_facts_derivation::id.eq(1))
        .select(resource_facts_derivation::version)
        .first::<i32>(conn)
        .optional()?
        .unwrap_or(0))
}

/// Records that every row has been given the facts of derivation `version`.
pub fn set_facts_derivation(conn: &mut DbConn, version: i32) -> Result<(), StoreError> {
    diesel::update(resource_facts_derivation::table.filter(resource_facts_derivation::id.eq(1)))
        .set(resource_facts_derivation::version.eq(version))
        .execute(conn)?;
    Ok(())
}

/// Ids of resources of `resource_type` holding an identifier (for conditional references).
pub fn ids_by_identifier(
    conn: &mut DbConn,
    resource_type: &str,
    filter: &TokenFilter,
) -> Result<Vec<String>, StoreError> {
    let q = ResourceQuery {
        resource_type: resource_type.to_string(),
        tokens: vec![TokenFilter {
            kind: "identifier".into(),
            ..filter.clone()
        }],
        limit: 2,
        ..Default::default()
    };
    Ok(search(conn, &q)?.into_iter().map(|(id, _, _)| id).collect())
}

/// Counts stored resources (current versions), for the demo and metrics.
pub fn count(conn: &mut DbConn) -> Result<i64, StoreError> {
    Ok(resources::table.count().get_result(conn)?)
}

/// Every patient id that owns resources.
pub fn patient_ids(conn: &mut DbConn) -> Result<Vec<String>, StoreError> {
    let ids: Vec<Option<String>> = resources::table
        .select(resources::patient_id)
        .filter(resources::patient_id.is_not_null())
        .distinct()
        .load(conn)?;
    Ok(ids.into_iter().flatten().collect())
}

/// The current (type, id, body) of every resource of a patient.
pub fn current_for_patient(
    conn: &mut DbConn,
    patient_id: &str,
) -> Result<Vec<(String, String, String)>, StoreError> {
    Ok(resources::table
        .filter(resources::patient_id.eq(patient_id))
        .select((resources::resource_type, resources::id, resources::body))
        .order((resources::resource_type, resources::id))
        .load(conn)?)
}
