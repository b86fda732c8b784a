//! Writing one resource as a new version, with `meta` stamped and its index rebuilt.
//!
//! Every write keeps the previous versions: the current row is replaced, the history grows.
//! These functions expect to run inside a write transaction ([`crate::store::write_tx`]).

use serde_json::{Map, Value};

use super::index::{self, IndexTerms};
use super::source::{self, Writer};
use super::{RecordError, conflict_aware, dates, validate};
use crate::decision::stored::{StoredFacts, StoredResource};
use crate::labels::Labeller;
use crate::store::DbConn;
use crate::store::resources::{self as rows, ResourceWrite, TokenRow};

/// What a write stored.
#[derive(Debug, Clone)]
pub struct Stored {
    /// The resource type.
    pub resource_type: String,
    /// The logical id.
    pub id: String,
    /// The version written.
    pub version_id: i64,
    /// When, in microseconds since the epoch.
    pub last_updated: i64,
    /// Whether this created the resource (version 1).
    pub created: bool,
    /// The stored body, `meta` included.
    pub body: Value,
}

impl Stored {
    /// `Type/id/_history/version`.
    pub fn location(&self) -> String {
        format!(
            "{}/{}/_history/{}",
            self.resource_type, self.id, self.version_id
        )
    }

    /// The weak ETag of this version.
    pub fn etag(&self) -> String {
        format!("W/\"{}\"", self.version_id)
    }
}

/// A new logical id for a resource the client did not name.
pub fn new_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// Stores `resource` as the next version of `resource_type/id`, written by the gateway (or
/// an operator). The body's own `id` is set to `id`; `meta.versionId` and `meta.lastUpdated`
/// are stamped by the gateway.
pub fn put(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
    resource: Value,
) -> Result<Stored, RecordError> {
    put_as(conn, &Writer::Gateway, resource_type, id, resource)
}

/// As [`put`], written by `writer`: a data source only within [`source::check`], and the
/// record's source kept on the record and on the version.
pub fn put_as(
    conn: &mut DbConn,
    writer: &Writer,
    resource_type: &str,
    id: &str,
    mut resource: Value,
) -> Result<Stored, RecordError> {
    validate::resource_type(resource_type)?;
    validate::id(id)?;
    let body_type = validate::resource(&resource)?;
    if body_type != resource_type {
        return Err(RecordError::invalid(
            "type_mismatch",
            format!("the body is a {body_type}, the URL names {resource_type}"),
        ));
    }
    let previous = rows::current_with_source(conn, resource_type, id)?;
    let source_client = source::check(
        writer,
        resource_type,
        &resource,
        previous.as_ref().map(|(_, s)| s.as_deref()),
    )?;
    // One owner or none: a resource whose patient elements disagree could be filed under one
    // patient while a write check looked at another.
    index::check_dates(&resource)
        .map_err(|e| RecordError::unprocessable("date_out_of_range", e.to_string()))?;
    let owner = index::owner(resource_type, id, &resource).map_err(|conflict| {
        RecordError::unprocessable("conflicting_patient", conflict.to_string())
    })?;
    if resource_type == "Consent"
        && let Some(patient) = &owner
    {
        super::consents::check_room(conn, patient, id)?;
    }
    let version_id = previous.as_ref().map_or(1, |(v, _)| v + 1);
    let last_updated = dates::now_micros();
    stamp(&mut resource, id, version_id, last_updated);
    let IndexTerms {
        patient_id,
        clinical,
        terms,
    } = index::extract(resource_type, id, &resource);
    let tokens = terms
        .into_iter()
        .map(|t| TokenRow {
            resource_type: resource_type.to_string(),
            resource_id: id.to_string(),
            kind: t.kind.to_string(),
            token: format!("{}|{}", t.system, t.code),
            system: t.system,
            code: t.code,
        })
        .collect();
    let write = ResourceWrite {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version_id,
        last_updated,
        patient_id,
        clinical,
        body: resource.to_string(),
        facts: Some(StoredFacts::of(&resource).encode()),
        tokens,
        source_client,
        written_by: writer.source().map(str::to_string),
    };
    rows::write(conn, &write).map_err(conflict_aware)?;
    Ok(Stored {
        resource_type: resource_type.to_string(),
        id: id.to_string(),
        version_id,
        last_updated,
        created: previous.is_none(),
        body: resource,
    })
}

/// Sets `id` and the server-owned `meta` elements, keeping the rest of `meta`
/// (profiles, tags, security labels) as sent.
fn stamp(resource: &mut Value, id: &str, version_id: i64, last_updated: i64) {
    let Some(object) = resource.as_object_mut() else {
        return;
    };
    object.insert("id".into(), Value::String(id.to_string()));
    let meta = object
        .entry("meta")
        .or_insert_with(|| Value::Object(Map::new()));
    if let Some(meta) = meta.as_object_mut() {
        meta.insert("versionId".into(), Value::String(version_id.to_string()));
        meta.insert(
            "lastUpdated".into(),
            Value::String(dates::format_instant(last_updated)),
        );
    }
    // Keep `resourceType` first and `id` second, as FHIR JSON is conventionally written.
    let mut ordered = Map::with_capacity(object.len());
    for key in ["resourceType", "id", "meta"] {
        if let Some(v) = object.remove(key) {
            ordered.insert(key.to_string(), v);
        }
    }
    ordered.append(object);
    *object = ordered;
}

/// Labels a resource with the sensitivity labels its codes call for, then stores it.
pub fn put_labelled(
    conn: &mut DbConn,
    labeller: &Labeller,
    writer: &Writer,
    resource_type: &str,
    id: &str,
    mut resource: Value,
) -> Result<Stored, RecordError> {
    if resource.is_object() {
        labeller
            .apply(&mut resource)
            .map_err(|e| RecordError::invalid(e.code(), e.to_string()))?;
    }
    put_as(conn, writer, resource_type, id, resource)
}

/// Reads the current version of a resource.
pub fn read(conn: &mut DbConn, resource_type: &str, id: &str) -> Result<Value, RecordError> {
    checked_key(resource_type, id)?;
    let body = rows::read(conn, resource_type, id)?.ok_or_else(|| missing(resource_type, id))?;
    parse_current(resource_type, id, &body)
}

/// The current version of a resource as [`read_with_context_version`] reads it.
#[derive(Debug)]
pub struct CurrentRead {
    /// The stored text, the gateway's own serialisation of the body ([`put_as`] stores
    /// `Value::to_string`), with the facts stored with it, or its parse when it has none of
    /// this derivation (`decision::stored`).
    pub resource: StoredResource,
    /// The patient it is stored under.
    pub stored_under: Option<String>,
    /// That patient's context version.
    pub version: i64,
}

/// [`read`] as a recipient's read needs it: the stored text and facts, the patient the
/// resource is stored under and that patient's context version, read in the same statement
/// (`store::resources::read_with_context_version`). The body is parsed only when the row
/// has no facts of this derivation.
pub fn read_with_context_version(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
) -> Result<CurrentRead, RecordError> {
    checked_key(resource_type, id)?;
    let row = rows::read_with_context_version(conn, resource_type, id)?
        .ok_or_else(|| missing(resource_type, id))?;
    current_read(resource_type, id, row)
}

/// A current row of `resource_type/id` as [`read_with_context_version`] reads it, however it
/// was fetched (`auth::registry::live_requester_and_resource` fetches it with the requester).
pub fn current_read(
    resource_type: &str,
    id: &str,
    row: rows::CurrentRow,
) -> Result<CurrentRead, RecordError> {
    let resource = StoredResource::of_row(row.body, row.facts.as_deref())
        .ok_or_else(|| unreadable(resource_type, id))?;
    Ok(CurrentRead {
        resource,
        stored_under: row.patient_id,
        version: row.version,
    })
}

/// Whether `resource_type/id` names a known type and an id that could be stored: what
/// [`read_with_context_version`] checks before it reads.
pub fn is_readable_key(resource_type: &str, id: &str) -> bool {
    checked_key(resource_type, id).is_ok()
}

/// A known type and an id that could be stored; an invalid id is simply not known.
fn checked_key(resource_type: &str, id: &str) -> Result<(), RecordError> {
    validate::resource_type(resource_type)?;
    if validate::is_valid_id(id) {
        Ok(())
    } else {
        Err(missing(resource_type, id))
    }
}

/// The answer for a resource that is not there; the id as asked, at most 64 characters and
/// no control characters (a path may carry any).
pub fn missing(resource_type: &str, id: &str) -> RecordError {
    RecordError::not_found(
        "not_found",
        format!(
            "{resource_type}/{} is not known",
            validate::printable(id, 64)
        ),
    )
}

/// A current body as stored, parsed.
fn parse_current(resource_type: &str, id: &str, body: &str) -> Result<Value, RecordError> {
    serde_json::from_str(body).map_err(|_| unreadable(resource_type, id))
}

/// A stored body that is not JSON (a row damaged outside the gateway).
fn unreadable(resource_type: &str, id: &str) -> RecordError {
    RecordError::Store(crate::store::StoreError::Task(format!(
        "stored body of {resource_type}/{id} is not JSON"
    )))
}

/// Reads one version of a resource.
pub fn read_version(
    conn: &mut DbConn,
    resource_type: &str,
    id: &str,
    version: &str,
) -> Result<Value, RecordError> {
    validate::resource_type(resource_type)?;
    let missing = || {
        RecordError::not_found(
            "not_found",
            format!(
                "{resource_type}/{} has no such version",
                validate::printable(id, 64)
            ),
        )
    };
    let version: i64 = version.parse().map_err(|_| missing())?;
    if !validate::is_valid_id(id) {
        return Err(missing());
    }
    let body = rows::read_version(conn, resource_type, id, version)?.ok_or_else(missing)?;
    serde_json::from_str(&body).map_err(|_| {
        RecordError::Store(crate::store::StoreError::Task(format!(
            "stored body of {resource_type}/{id} is not JSON"
        )))
    })
}
