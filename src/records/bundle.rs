//! Bundles posted to `/fhir`: `transaction`, `batch` and `collection`.
//!
//! - A `transaction` is all-or-nothing: every entry is written in one database transaction,
//!   or none is. A `collection` is treated the same way (a half-imported collection helps
//!   nobody); its entries are stored under their own `id` when they have one.
//! - A `batch` runs each entry on its own; the response says, entry by entry, what happened.
//!
//! References between entries are resolved the FHIR way: each entry's `fullUrl` maps to the
//! `Type/id` it is stored under, and every `reference` naming a `fullUrl` is rewritten.
//! Two choices go beyond the specification, written down in `docs/RECORDS.md`:
//! - A `urn:uuid:` fullUrl becomes the stored id (a UUID is a valid FHIR id). Re-posting the
//!   same bundle therefore makes new versions instead of duplicates, and a later bundle that
//!   refers to `urn:uuid:X` (as Synthea's practitioner bundle refers to its hospital bundle)
//!   finds the resource stored earlier.
//! - A `urn:uuid:` reference that is neither in the bundle nor stored is refused (422), as is
//!   a conditional reference (`Organization?identifier=system|value`) that matches no
//!   resource or more than one.

use std::collections::HashMap;

use serde_json::{Map, Value, json};

use super::ingest::{self, Stored};
use super::outcome::{self, reason_phrase};
use super::source::Writer;
use super::{RecordError, dates, validate};
use crate::config::Limits;
use crate::labels::Labeller;
use crate::store::resources::{self as rows, TokenFilter};
use crate::store::{DbConn, write_tx};

/// The Bundle types accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleKind {
    /// All-or-nothing with request methods.
    Transaction,
    /// Each entry on its own.
    Batch,
    /// A plain list of resources, stored all-or-nothing.
    Collection,
}

/// What an entry asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    /// Store under this id (PUT, a urn:uuid create, or a collection entry with an id).
    Put(String),
    /// Create under a fresh id.
    Create(String),
    /// Create unless a resource matches (`ifNoneExist`); the id is used when none does.
    CreateIfNone(Conditional, String),
    /// Update the one match, or create under the fresh id when none matches.
    ConditionalUpdate(Conditional, String),
}

/// A conditional search, limited to what identifies a resource: `identifier` and `_id`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Conditional {
    identifier: Option<TokenFilter>,
    id: Option<String>,
}

#[derive(Debug)]
struct Planned {
    number: usize,
    resource_type: String,
    full_url: Option<String>,
    action: Action,
    resource: Value,
}

/// One version a Bundle stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    /// `Type/id`.
    pub reference: String,
    /// The version stored.
    pub version_id: i64,
    /// The patient it belongs to, if any ([`super::index::owner`]).
    pub patient: Option<String>,
}

/// Processes a posted Bundle, written by the gateway (an operator or an import), and returns
/// the response Bundle.
pub fn process(
    conn: &mut DbConn,
    bundle: Value,
    limits: &Limits,
    labeller: &Labeller,
) -> Result<Value, RecordError> {
    process_as(conn, &Writer::Gateway, bundle, limits, labeller).map(|(response, _)| response)
}

/// Processes a posted Bundle written by `writer`; returns the response Bundle and what was
/// stored. Sensitivity labels are added first, over the whole Bundle, so that labels follow
/// references between its entries (a claim for an HIV visit is labelled HIV too).
pub fn process_as(
    conn: &mut DbConn,
    writer: &Writer,
    bundle: Value,
    limits: &Limits,
    labeller: &Labeller,
) -> Result<(Value, Vec<Written>), RecordError> {
    commit(conn, writer, prepare(bundle, limits, labeller)?)
}

/// A Bundle checked, labelled and planned, not yet stored: the part of [`process_as`] that
/// needs no database, so a loader can do it on another thread while the writer stores.
#[derive(Debug)]
pub struct Prepared {
    kind: BundleKind,
    entries: Vec<Planned>,
}

impl Prepared {
    /// How many entries the Bundle has.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the Bundle has no entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Labels and plans `bundle` (no storage): the first half of [`process_as`].
pub fn prepare(
    mut bundle: Value,
    limits: &Limits,
    labeller: &Labeller,
) -> Result<Prepared, RecordError> {
    if bundle.get("resourceType").and_then(Value::as_str) == Some("Bundle") {
        labeller
            .apply_bundle(&mut bundle)
            .map_err(|e| RecordError::invalid(e.code(), e.to_string()))?;
    }
    let (kind, entries) = plan(bundle, limits)?;
    Ok(Prepared { kind, entries })
}

/// Stores a prepared Bundle: the second half of [`process_as`].
pub fn commit(
    conn: &mut DbConn,
    writer: &Writer,
    prepared: Prepared,
) -> Result<(Value, Vec<Written>), RecordError> {
    let Prepared { kind, entries } = prepared;
    let urls = urls_of(&entries);
    let mut written = Vec::new();
    let responses = if kind == BundleKind::Batch {
        let mut responses = Vec::with_capacity(entries.len());
        for mut p in entries {
            let number = p.number;
            let result = write_tx(conn, |conn| {
                let mut urls = urls.clone();
                resolve_conditional(conn, std::slice::from_mut(&mut p), &mut urls)?;
                apply(conn, writer, &mut p, &urls)
            });
            responses.push(match result {
                Ok((done, stored)) => {
                    written.extend(stored);
                    done
                }
                Err(e) => {
                    let e = e.within(&format!("entry {number}"));
                    let (status, ..) = outcome::describe(&e);
                    json!({"response": {
                        "status": format!("{status} {}", reason_phrase(status)),
                        "outcome": outcome::for_error(&e)
                    }})
                }
            });
        }
        responses
    } else {
        let done = write_tx(conn, |conn| store_all(conn, writer, entries, urls))?;
        let mut responses = Vec::with_capacity(done.len());
        for (response, stored) in done {
            written.extend(stored);
            responses.push(response);
        }
        responses
    };
    Ok((response_bundle(kind, responses), written))
}

/// Stores several prepared `transaction` or `collection` Bundles in one database
/// transaction, all or none: for loaders of many small Bundles (`consentgate demo`), where
/// a commit per Bundle would cost a flush per Bundle. Returns each Bundle's response.
pub fn commit_together(
    conn: &mut DbConn,
    writer: &Writer,
    bundles: Vec<Prepared>,
) -> Result<Vec<Value>, RecordError> {
    if bundles.iter().any(|b| b.kind == BundleKind::Batch) {
        return Err(RecordError::invalid(
            "unsupported_bundle_type",
            "batch Bundles are stored entry by entry, not together",
        ));
    }
    write_tx(conn, |conn| {
        bundles
            .into_iter()
            .enumerate()
            .map(|(index, Prepared { kind, entries })| {
                let urls = urls_of(&entries);
                let done = store_all(conn, writer, entries, urls)
                    .map_err(|e| e.within(&format!("bundle {index}")))?;
                Ok(response_bundle(
                    kind,
                    done.into_iter().map(|(response, _)| response).collect(),
                ))
            })
            .collect()
    })
}

/// Each entry's `fullUrl` with the `Type/id` it is stored under, where that is known
/// before storage.
fn urls_of(entries: &[Planned]) -> HashMap<String, String> {
    let mut urls = HashMap::new();
    for p in entries {
        if let (Some(url), Action::Put(id) | Action::Create(id)) = (&p.full_url, &p.action) {
            urls.insert(url.clone(), format!("{}/{id}", p.resource_type));
        }
    }
    urls
}

/// Every entry of a transaction or collection, inside the caller's database transaction.
fn store_all(
    conn: &mut DbConn,
    writer: &Writer,
    mut entries: Vec<Planned>,
    mut urls: HashMap<String, String>,
) -> Result<Vec<(Value, Option<Written>)>, RecordError> {
    resolve_conditional(conn, &mut entries, &mut urls)?;
    entries
        .iter_mut()
        .map(|p| {
            apply(conn, writer, p, &urls).map_err(|e| e.within(&format!("entry {}", p.number)))
        })
        .collect()
}

fn response_bundle(kind: BundleKind, responses: Vec<Value>) -> Value {
    let response_type = match kind {
        BundleKind::Batch => "batch-response",
        BundleKind::Transaction | BundleKind::Collection => "transaction-response",
    };
    json!({
        "resourceType": "Bundle",
        "id": ingest::new_id(),
        "type": response_type,
        "entry": responses,
    })
}

/// Reads the Bundle into a plan without touching storage.
fn plan(bundle: Value, limits: &Limits) -> Result<(BundleKind, Vec<Planned>), RecordError> {
    if validate::resource(&bundle)? != "Bundle" {
        return Err(RecordError::invalid(
            "not_a_bundle",
            "POST /fhir takes a Bundle; use POST /fhir/{type} or PUT /fhir/{type}/{id} for one resource",
        ));
    }
    let Value::Object(mut bundle) = bundle else {
        return Err(RecordError::invalid(
            "not_a_resource",
            "a Bundle must be an object",
        ));
    };
    let kind = match bundle.get("type").and_then(Value::as_str) {
        Some("transaction") => BundleKind::Transaction,
        Some("batch") => BundleKind::Batch,
        Some("collection") => BundleKind::Collection,
        Some(other) => {
            return Err(RecordError::invalid(
                "unsupported_bundle_type",
                format!(
                    "Bundle type `{}` is not accepted here; send a transaction, batch or collection",
                    validate::printable(other, 32)
                ),
            ));
        }
        None => {
            return Err(RecordError::invalid(
                "unsupported_bundle_type",
                "the Bundle has no `type`",
            ));
        }
    };
    let entries = match bundle.remove("entry") {
        None => Vec::new(),
        Some(Value::Array(entries)) => entries,
        Some(_) => {
            return Err(RecordError::invalid(
                "invalid_bundle",
                "`entry` must be an array",
            ));
        }
    };
    if entries.len() > limits.max_bundle_entries {
        return Err(RecordError::invalid(
            "too_many_entries",
            format!(
                "the Bundle has {} entries; the limit is {}",
                entries.len(),
                limits.max_bundle_entries
            ),
        ));
    }
    let mut planned = Vec::with_capacity(entries.len());
    let mut seen_urls = HashMap::new();
    for (number, entry) in entries.into_iter().enumerate() {
        let p =
            plan_entry(kind, number, entry).map_err(|e| e.within(&format!("entry {number}")))?;
        if let Some(url) = &p.full_url
            && let Some(first) = seen_urls.insert(url.clone(), number)
        {
            return Err(RecordError::invalid(
                "duplicate_full_url",
                format!("entries {first} and {number} share a fullUrl"),
            ));
        }
        planned.push(p);
    }
    Ok((kind, planned))
}

fn plan_entry(kind: BundleKind, number: usize, entry: Value) -> Result<Planned, RecordError> {
    let Value::Object(mut entry) = entry else {
        return Err(RecordError::invalid(
            "invalid_entry",
            "an entry must be an object",
        ));
    };
    let resource = entry
        .remove("resource")
        .ok_or_else(|| RecordError::invalid("missing_resource", "the entry has no `resource`"))?;
    let resource_type = validate::resource(&resource)?.to_string();
    let full_url = match entry.get("fullUrl") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(_) => {
            return Err(RecordError::invalid(
                "invalid_entry",
                "`fullUrl` must be a string",
            ));
        }
    };
    let body_id = resource
        .get("id")
        .and_then(Value::as_str)
        .map(str::to_string);
    let urn_id = full_url
        .as_deref()
        .and_then(|u| u.strip_prefix("urn:uuid:"))
        .filter(|id| validate::is_valid_id(id))
        .map(str::to_string);
    let fresh = || urn_id.clone().unwrap_or_else(ingest::new_id);
    let action = if kind == BundleKind::Collection && entry.get("request").is_none() {
        match body_id {
            Some(id) => Action::Put(id),
            None => Action::Create(fresh()),
        }
    } else {
        let request = entry
            .get("request")
            .and_then(Value::as_object)
            .ok_or_else(|| RecordError::invalid("missing_request", "the entry has no `request`"))?;
        let method = request
            .get("method")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let url = request
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let (path, query) = match url.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (url, None),
        };
        let path = path.trim_matches('/');
        match method {
            "POST" => {
                if path != resource_type {
                    return Err(RecordError::invalid(
                        "url_mismatch",
                        format!("a POST of a {resource_type} must go to `{resource_type}`"),
                    ));
                }
                match request.get("ifNoneExist").and_then(Value::as_str) {
                    Some(q) => Action::CreateIfNone(parse_conditional(q)?, fresh()),
                    None => match urn_id {
                        Some(id) => Action::Put(id),
                        None => Action::Create(ingest::new_id()),
                    },
                }
            }
            "PUT" => match (path.split_once('/'), query) {
                (Some((ty, id)), None) if ty == resource_type => {
                    validate::id(id)?;
                    Action::Put(id.to_string())
                }
                (None, Some(q)) if path == resource_type => {
                    Action::ConditionalUpdate(parse_conditional(q)?, fresh())
                }
                _ => {
                    return Err(RecordError::invalid(
                        "url_mismatch",
                        format!(
                            "a PUT of a {resource_type} must go to `{resource_type}/{{id}}` or `{resource_type}?identifier=...`"
                        ),
                    ));
                }
            },
            _ => {
                return Err(RecordError::invalid(
                    "unsupported_method",
                    "only POST and PUT entries are accepted",
                ));
            }
        }
    };
    Ok(Planned {
        number,
        resource_type,
        full_url,
        action,
        resource,
    })
}

/// Parses the query of a conditional create, update or reference. Only `identifier` and
/// `_id` are accepted: they identify; other parameters would only approximate.
fn parse_conditional(query: &str) -> Result<Conditional, RecordError> {
    let mut conditional = Conditional {
        identifier: None,
        id: None,
    };
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match name.as_ref() {
            "identifier" => {
                let mut filter = TokenFilter {
                    kind: "identifier".into(),
                    ..Default::default()
                };
                match value.split_once('|') {
                    Some((system, code)) => filter.tokens.push(format!("{system}|{code}")),
                    None => filter.codes.push(value.to_string()),
                }
                conditional.identifier = Some(filter);
            }
            "_id" => conditional.id = Some(value.to_string()),
            _ => {
                return Err(RecordError::invalid(
                    "unsupported_conditional",
                    "conditional operations accept only `identifier` and `_id`",
                ));
            }
        }
    }
    if conditional.identifier.is_none() && conditional.id.is_none() {
        return Err(RecordError::invalid(
            "unsupported_conditional",
            "a conditional operation needs `identifier` or `_id`",
        ));
    }
    Ok(conditional)
}

/// The ids of the resources of `resource_type` that match a conditional search (at most 2).
fn matches(
    conn: &mut DbConn,
    resource_type: &str,
    conditional: &Conditional,
) -> Result<Vec<String>, RecordError> {
    let mut found = match &conditional.identifier {
        Some(filter) => rows::ids_by_identifier(conn, resource_type, filter)?,
        None => Vec::new(),
    };
    if let Some(id) = &conditional.id {
        let exists = rows::current_version(conn, resource_type, id)?.is_some();
        if conditional.identifier.is_some() {
            found.retain(|f| f == id);
        } else if exists {
            found.push(id.clone());
        }
    }
    Ok(found)
}

/// Settles the conditional entries against storage and records their final ids.
fn resolve_conditional(
    conn: &mut DbConn,
    entries: &mut [Planned],
    urls: &mut HashMap<String, String>,
) -> Result<(), RecordError> {
    for p in entries.iter_mut() {
        let (conditional, fresh) = match &p.action {
            Action::CreateIfNone(c, fresh) | Action::ConditionalUpdate(c, fresh) => {
                (c.clone(), fresh.clone())
            }
            _ => continue,
        };
        let found = matches(conn, &p.resource_type, &conditional)
            .map_err(|e| e.within(&format!("entry {}", p.number)))?;
        if found.len() > 1 {
            return Err(RecordError::unprocessable(
                "conditional_multiple_matches",
                format!(
                    "entry {}: the condition matches more than one {}",
                    p.number, p.resource_type
                ),
            ));
        }
        let id = found.into_iter().next();
        if let Action::CreateIfNone(..) = p.action
            && let Some(existing) = &id
        {
            // Nothing to write; the entry stands for the existing resource.
            p.action = Action::CreateIfNone(conditional, existing.clone());
            p.resource = Value::Null;
        } else {
            p.action = Action::Put(id.unwrap_or(fresh));
        }
        if let (Some(url), Action::Put(id) | Action::CreateIfNone(_, id)) = (&p.full_url, &p.action)
        {
            urls.insert(url.clone(), format!("{}/{id}", p.resource_type));
        }
    }
    Ok(())
}

/// Rewrites references and stores one planned entry; returns its response entry and what
/// it stored (nothing when a conditional create found the resource).
fn apply(
    conn: &mut DbConn,
    writer: &Writer,
    p: &mut Planned,
    urls: &HashMap<String, String>,
) -> Result<(Value, Option<Written>), RecordError> {
    let id = match &p.action {
        Action::CreateIfNone(_, existing) if p.resource.is_null() => {
            let response = json!({"response": {
                "status": "200 OK",
                "location": format!("{}/{existing}", p.resource_type),
            }});
            return Ok((response, None));
        }
        Action::Put(id)
        | Action::Create(id)
        | Action::CreateIfNone(_, id)
        | Action::ConditionalUpdate(_, id) => id.clone(),
    };
    let mut resource = std::mem::take(&mut p.resource);
    rewrite_references(conn, &mut resource, urls)?;
    let stored = ingest::put_as(conn, writer, &p.resource_type, &id, resource)?;
    let written = Written {
        reference: format!("{}/{}", stored.resource_type, stored.id),
        version_id: stored.version_id,
        patient: super::index::owner(&stored.resource_type, &stored.id, &stored.body)
            .ok()
            .flatten(),
    };
    Ok((
        response_entry(&stored, p.full_url.as_deref()),
        Some(written),
    ))
}

fn response_entry(stored: &Stored, full_url: Option<&str>) -> Value {
    let status = if stored.created {
        "201 Created"
    } else {
        "200 OK"
    };
    let mut entry = Map::new();
    if let Some(url) = full_url {
        entry.insert("fullUrl".into(), Value::String(url.to_string()));
    }
    entry.insert(
        "response".into(),
        json!({
            "status": status,
            "location": stored.location(),
            "etag": stored.etag(),
            "lastModified": dates::format_instant(stored.last_updated),
        }),
    );
    Value::Object(entry)
}

/// Replaces every `reference` that names a bundle entry, a stored `urn:uuid:` or a
/// conditional search with the `Type/id` it resolves to. Iterative, so depth costs no stack.
fn rewrite_references(
    conn: &mut DbConn,
    resource: &mut Value,
    urls: &HashMap<String, String>,
) -> Result<(), RecordError> {
    let mut stack: Vec<&mut Value> = vec![resource];
    while let Some(value) = stack.pop() {
        match value {
            Value::Object(object) => {
                for (key, child) in object.iter_mut() {
                    if key == "reference"
                        && let Value::String(reference) = child
                    {
                        if let Some(resolved) = resolve_reference(conn, reference, urls)? {
                            *reference = resolved;
                        }
                    } else {
                        stack.push(child);
                    }
                }
            }
            Value::Array(items) => stack.extend(items.iter_mut()),
            _ => {}
        }
    }
    Ok(())
}

fn resolve_reference(
    conn: &mut DbConn,
    reference: &str,
    urls: &HashMap<String, String>,
) -> Result<Option<String>, RecordError> {
    if let Some(target) = urls.get(reference) {
        return Ok(Some(target.clone()));
    }
    if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
        if validate::is_valid_id(uuid) {
            let types = rows::types_with_id(conn, uuid)?;
            if let [only] = types.as_slice() {
                return Ok(Some(format!("{only}/{uuid}")));
            }
        }
        return Err(RecordError::unprocessable(
            "unresolved_reference",
            format!(
                "reference `{}` is neither an entry of the bundle nor a stored resource",
                validate::printable(reference, 80)
            ),
        ));
    }
    if let Some((ty, query)) = reference.split_once('?')
        && validate::is_resource_type(ty)
    {
        let conditional = parse_conditional(query)?;
        let found = matches(conn, ty, &conditional)?;
        return match found.as_slice() {
            [only] => Ok(Some(format!("{ty}/{only}"))),
            [] => Err(RecordError::unprocessable(
                "unresolved_reference",
                format!("a conditional reference to {ty} matches no resource"),
            )),
            _ => Err(RecordError::unprocessable(
                "conditional_multiple_matches",
                format!("a conditional reference to {ty} matches more than one resource"),
            )),
        };
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
            max_bundle_entries: 3,
            default_page_size: 10,
            max_page_size: 100,
        }
    }

    fn code(r: Result<impl std::fmt::Debug, RecordError>) -> &'static str {
        match r {
            Err(RecordError::Invalid { code, .. }) => code,
            other => panic!("expected an invalid error, got {other:?}"),
        }
    }

    #[test]
    fn plans_ids_from_urls_and_methods() {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0b5f0a2e-8d0b-4a5c-9b8e-1f2d3c4b5a69", "resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Patient"}},
            {"resource": {"resourceType": "Patient", "id": "p2"}, "request": {"method": "PUT", "url": "Patient/p2"}},
            {"resource": {"resourceType": "Organization"}, "request": {"method": "PUT", "url": "Organization?identifier=urn:o|1"}},
        ]});
        let (kind, planned) = plan(bundle, &limits()).unwrap();
        assert_eq!(kind, BundleKind::Transaction);
        assert_eq!(
            planned[0].action,
            Action::Put("0b5f0a2e-8d0b-4a5c-9b8e-1f2d3c4b5a69".into())
        );
        assert_eq!(planned[1].action, Action::Put("p2".into()));
        assert!(matches!(planned[2].action, Action::ConditionalUpdate(..)));
    }

    #[test]
    fn refuses_what_it_cannot_do() {
        let entry =
            |e: Value| json!({"resourceType": "Bundle", "type": "transaction", "entry": [e]});
        let cases = [
            (
                json!({"resourceType": "Bundle", "type": "document"}),
                "unsupported_bundle_type",
            ),
            (json!({"resourceType": "Bundle"}), "unsupported_bundle_type"),
            (json!({"resourceType": "Patient"}), "not_a_bundle"),
            (
                json!({"resourceType": "Bundle", "type": "batch", "entry": {}}),
                "invalid_bundle",
            ),
            (
                json!({"resourceType": "Bundle", "type": "batch", "entry": [1, 2, 3, 4]}),
                "too_many_entries",
            ),
            (
                entry(json!({"resource": {"resourceType": "Patient"}})),
                "missing_request",
            ),
            (
                entry(json!({"request": {"method": "POST", "url": "Patient"}})),
                "missing_resource",
            ),
            (
                entry(
                    json!({"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/1"}}),
                ),
                "unsupported_method",
            ),
            (
                entry(
                    json!({"resource": {"resourceType": "Patient"}, "request": {"method": "POST", "url": "Observation"}}),
                ),
                "url_mismatch",
            ),
            (
                entry(
                    json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient/a b"}}),
                ),
                "invalid_id",
            ),
            (
                entry(
                    json!({"resource": {"resourceType": "Patient"}, "request": {"method": "PUT", "url": "Patient?name=x"}}),
                ),
                "unsupported_conditional",
            ),
            (
                entry(
                    json!({"resource": {"resourceType": "Nope"}, "request": {"method": "POST", "url": "Nope"}}),
                ),
                "unknown_resource_type",
            ),
        ];
        for (bundle, want) in cases {
            assert_eq!(code(plan(bundle.clone(), &limits())), want, "{bundle}");
        }
        let dup = json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}},
            {"fullUrl": "urn:uuid:a", "resource": {"resourceType": "Patient"}},
        ]});
        assert_eq!(code(plan(dup, &limits())), "duplicate_full_url");
    }
}
