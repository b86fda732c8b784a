//! The statement of disagreement: after a denial the patient may file one (once per request),
//! and from then on every release of that record to a recipient (reads, searches,
//! `$everything`, disclosure packages) carries it: a `meta.tag` "disputed by patient" and a
//! `meta.extension` referencing the statement, a `DocumentReference` about the patient whose
//! `context.related` names the record. A disclosure package also carries the statement itself.
//! De-identified outputs (research exports, a de-identifying obligation) are left unmarked:
//! the statement is the patient's own words and would re-identify them.

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{AmendmentView, load, record, requester, text, unknown, view};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::records::ingest;
use crate::records::internal::TAG_SYSTEM;
use crate::store::amendments as rows;
use crate::store::{DbConn, write_tx};

/// The `meta.tag` code of a disputed record.
pub const DISPUTED_CODE: &str = "disputed-by-patient";
/// The `meta.extension` URL whose `valueReference` is the statement of disagreement.
pub const STATEMENT_EXTENSION: &str =
    "https://consentgate.dev/fhir/StructureDefinition/statement-of-disagreement";

/// A statement of disagreement, as the API takes it.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewStatement {
    /// The patient's words.
    pub statement: String,
}

/// The DocumentReference that holds the statement.
fn document(id: &str, patient: &str, record: &str, statement: &str, now: i64) -> Value {
    json!({
        "resourceType": "DocumentReference",
        "id": id,
        "status": "current",
        "type": {"text": "Statement of disagreement"},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": format_instant(now),
        "author": [{"reference": format!("Patient/{patient}")}],
        "description": "The patient's statement of disagreement with a denied amendment",
        "content": [{"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "data": STANDARD.encode(statement.as_bytes()),
        }}],
        "context": {"related": [{"reference": record}]},
    })
}

/// Files the statement of disagreement of denied request `id`.
pub async fn file(
    gateway: &Gateway,
    by: &Principal,
    id: &str,
    ask: NewStatement,
    request_id: &str,
) -> Result<AmendmentView, DomainError> {
    let (patient, _) = requester(by)?;
    let statement = text(&ask.statement, "statement")?;
    let row = load(gateway, id).await?;
    if row.patient_id != patient {
        return Err(unknown());
    }
    if row.status != "denied" || row.statement_id.is_some() {
        return Err(DomainError::conflict(
            "not_disputable",
            "a statement of disagreement follows a denial, once",
        ));
    }
    let (now, doc_id) = (now_micros(), ingest::new_id());
    let record_ref = format!("{}/{}", row.resource_type, row.resource_id);
    let body = document(&doc_id, &patient, &record_ref, &statement, now);
    let key = row.id.clone();
    gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put(conn, "DocumentReference", &doc_id, body)?;
                if !rows::file_statement(conn, &key, now, &doc_id, &statement)? {
                    return Err(DomainError::conflict(
                        "not_disputable",
                        "a statement of disagreement follows a denial, once",
                    ));
                }
                Ok(())
            })
        })
        .await?;
    let row = load(gateway, id).await?;
    record(gateway, by, request_id, &row, "statement").await?;
    Ok(view(&row, now))
}

/// The patient's disputed records: `Type/id` to the statement's DocumentReference id.
pub async fn disputed(
    gateway: &Gateway,
    patient: &str,
) -> Result<BTreeMap<String, String>, DomainError> {
    let p = patient.to_string();
    gateway.store.run(move |conn| disputed_in(conn, &p)).await
}

/// [`disputed`] on a connection already held.
pub fn disputed_in(
    conn: &mut DbConn,
    patient: &str,
) -> Result<BTreeMap<String, String>, DomainError> {
    Ok(rows::disputed(conn, patient)?
        .into_iter()
        .filter_map(|r| {
            let statement = r.statement_id?;
            Some((format!("{}/{}", r.resource_type, r.resource_id), statement))
        })
        .collect())
}

/// Marks `body` (released from `source`) as disputed when it is; returns the statement's id.
pub fn mark(body: &mut Value, source: &str, disputed: &BTreeMap<String, String>) -> Option<String> {
    let statement = disputed.get(source)?;
    let object = body.as_object_mut()?;
    let meta = object.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    let push = |meta: &mut Value, key: &str, item: Value| match meta
        .get_mut(key)
        .and_then(Value::as_array_mut)
    {
        Some(list) => list.push(item),
        None => meta[key] = json!([item]),
    };
    push(
        meta,
        "tag",
        json!({"system": TAG_SYSTEM, "code": DISPUTED_CODE, "display": "disputed by patient"}),
    );
    push(
        meta,
        "extension",
        json!({"url": STATEMENT_EXTENSION,
               "valueReference": {"reference": format!("DocumentReference/{statement}")}}),
    );
    Some(statement.clone())
}

/// Marks the disputed records among a disclosure package's `resources` (whose `Type/id` are
/// `sources`, in the same order; a package is never de-identified) and appends each
/// statement once, so the package carries them.
pub async fn attach(
    gateway: &Gateway,
    patient: &str,
    resources: &mut Vec<Value>,
    sources: &[String],
) -> Result<(), DomainError> {
    let disputed = disputed(gateway, patient).await?;
    if disputed.is_empty() {
        return Ok(());
    }
    let mut statements = std::collections::BTreeSet::new();
    for (body, source) in resources.iter_mut().zip(sources) {
        statements.extend(mark(body, source, &disputed));
    }
    let ids: Vec<String> = statements.into_iter().collect();
    let documents = gateway
        .store
        .run(move |conn| {
            ids.iter()
                .map(|id| ingest::read(conn, "DocumentReference", id))
                .collect::<Result<Vec<_>, _>>()
        })
        .await?;
    resources.extend(documents);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_disputed_records_are_marked() {
        let disputed = BTreeMap::from([("Condition/c1".to_string(), "s1".to_string())]);
        let mut other = json!({"resourceType": "Condition", "id": "c2"});
        assert_eq!(mark(&mut other, "Condition/c2", &disputed), None);
        assert_eq!(other, json!({"resourceType": "Condition", "id": "c2"}));
        let mut body = json!({"resourceType": "Condition", "id": "c1",
            "meta": {"tag": [{"system": "x", "code": "y"}]}});
        assert_eq!(
            mark(&mut body, "Condition/c1", &disputed).as_deref(),
            Some("s1")
        );
        assert_eq!(body["meta"]["tag"][1]["code"], DISPUTED_CODE);
        assert_eq!(body["meta"]["tag"][0]["code"], "y");
        assert_eq!(
            body["meta"]["extension"][0]["valueReference"]["reference"],
            "DocumentReference/s1"
        );
    }
}
