//! Facts for the rows written before they were stored (`decision::stored`): derived once,
//! in the background, after an upgrade.
//!
//! A row without facts of this derivation is still read correctly (its body is parsed and
//! its facts derived on every read), only slower; this fills them in. On start, `serve`
//! runs [`backfill`] beside the server: it walks every current resource in key order, a
//! chunk per write transaction with a pause between chunks, stores the facts of each row
//! whose facts are missing or of another derivation, and, once through, records that this
//! derivation is done (`resource_facts_derivation`), so the next start reads one row and
//! stops. A row rewritten meanwhile is left alone: the facts are written only where the
//! row is still the version they were derived from. Several instances on one PostgreSQL may
//! walk at once; each write is the same.

use std::time::Duration;

use crate::decision::stored::{FACTS_VERSION, StoredFacts};
use crate::store::resources::{self as rows};
use crate::store::{DbConn, Store, StoreError, write_tx};

/// Rows read per transaction.
pub const CHUNK: i64 = 256;
/// The pause between chunks, so the walk never holds the write lock for long.
const PAUSE: Duration = Duration::from_millis(20);

/// What one walk did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Backfilled {
    /// Rows whose facts were stored.
    pub stored: usize,
    /// Rows whose body is not JSON, left without facts (their reads fail as before).
    pub unreadable: usize,
}

/// Derives the missing facts of every row, unless this derivation is recorded as done.
pub async fn backfill(store: Store) -> Result<Backfilled, StoreError> {
    let mut done = Backfilled::default();
    let this = i32::try_from(FACTS_VERSION).unwrap_or(i32::MAX);
    if store.run(rows::facts_derivation).await? == this {
        return Ok(done);
    }
    let mut after: Option<(String, String)> = None;
    loop {
        let from = after.clone();
        let (chunk, last) = store
            .run(move |conn| write_tx(conn, |conn| fill_chunk(conn, from.as_ref())))
            .await?;
        done.stored += chunk.stored;
        done.unreadable += chunk.unreadable;
        match last {
            Some(last) => after = Some(last),
            None => break,
        }
        tokio::time::sleep(PAUSE).await;
    }
    store
        .run(move |conn| rows::set_facts_derivation(conn, this))
        .await?;
    Ok(done)
}

/// Stores the facts of the rows of the next chunk after `after` that need them, in the
/// caller's transaction; the chunk's last key, `None` when the walk is through.
pub fn fill_chunk(
    conn: &mut DbConn,
    after: Option<&(String, String)>,
) -> Result<(Backfilled, Option<(String, String)>), StoreError> {
    let chunk = rows::facts_rows_after(conn, after, CHUNK)?;
    let mut done = Backfilled::default();
    let last = chunk
        .last()
        .filter(|_| chunk.len() as i64 == CHUNK)
        .map(|r| (r.resource_type.clone(), r.id.clone()));
    for row in chunk {
        if row.facts.as_deref().and_then(StoredFacts::decode).is_some() {
            continue;
        }
        let Ok(body) = serde_json::from_str(&row.body) else {
            done.unreadable += 1;
            continue;
        };
        let facts = StoredFacts::of(&body).encode();
        if rows::set_facts(conn, &row.resource_type, &row.id, row.version_id, &facts)? {
            done.stored += 1;
        }
    }
    Ok((done, last))
}

#[cfg(test)]
mod tests {
    use diesel::{ExpressionMethods, RunQueryDsl};
    use serde_json::json;

    use super::*;
    use crate::store::resources::ResourceWrite;
    use crate::store::schema::resources;

    /// A row as the code before stored facts wrote it, or with `facts` as given.
    fn put(conn: &mut DbConn, id: &str, body: &str, facts: Option<String>) {
        let w = ResourceWrite {
            resource_type: "Observation".into(),
            id: id.into(),
            version_id: 1,
            last_updated: 1,
            patient_id: Some("p1".into()),
            clinical: None,
            body: body.into(),
            facts,
            tokens: Vec::new(),
            source_client: None,
            written_by: None,
        };
        write_tx(conn, |conn| rows::write(conn, &w)).expect("written");
    }

    fn observation(i: usize) -> serde_json::Value {
        json!({"resourceType": "Observation", "id": format!("o{i:03}"), "status": "final",
               "meta": {"versionId": "1", "lastUpdated": "2026-12-05T10:00:00Z",
                        "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                      "code": if i.is_multiple_of(7) { "PSY" } else { "N" }}]},
               "subject": {"reference": "Patient/p1"},
               "code": {"coding": [{"system": "http://loinc.org", "code": format!("{i}-1")}]},
               "effectiveDateTime": format!("20{:02}-03-04", i % 30)})
    }

    /// More than a chunk of rows without facts, one with another derivation's, one whose
    /// body is not JSON: the walk gives each readable row the facts of its body, once; a
    /// second start reads the derivation and walks nothing; and facts are stored only on
    /// the version they were derived from. Both backends.
    #[test]
    fn rows_written_before_get_the_facts_of_their_bodies_once() {
        let dir = tempfile::tempdir().expect("temporary directory");
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        for (store, pg_name) in crate::store::tests::stores(dir.path()) {
            let backend = store.backend();
            let mut conn = store.conn().expect("connection");
            let rows_without = CHUNK as usize + 40;
            for i in 0..rows_without {
                put(
                    &mut conn,
                    &format!("o{i:03}"),
                    &observation(i).to_string(),
                    None,
                );
            }
            let stale_body = observation(900);
            let mut stale = StoredFacts::of(&stale_body);
            stale.v = FACTS_VERSION + 1;
            put(
                &mut conn,
                "o900",
                &stale_body.to_string(),
                Some(stale.encode()),
            );
            put(&mut conn, "unreadable", "not json", None);
            drop(conn);

            let done = rt.block_on(backfill(store.clone())).expect("walked");
            assert_eq!(
                done,
                Backfilled {
                    stored: rows_without + 1,
                    unreadable: 1
                },
                "{backend:?}"
            );
            let mut conn = store.conn().expect("connection");
            let stored = rows::facts_rows_after(&mut conn, None, 10_000).expect("rows");
            assert_eq!(stored.len(), rows_without + 2, "{backend:?}");
            for row in &stored {
                let facts = row.facts.as_deref().and_then(StoredFacts::decode);
                match serde_json::from_str(&row.body) {
                    Ok(body) => assert_eq!(facts, Some(StoredFacts::of(&body)), "{backend:?}"),
                    Err(_) => assert_eq!(facts, None, "{backend:?}"),
                }
            }
            assert_eq!(
                rows::facts_derivation(&mut conn).expect("derivation"),
                FACTS_VERSION as i32,
                "{backend:?}"
            );

            // Through once: a later start walks nothing.
            diesel::update(resources::table)
                .set(resources::facts.eq(None::<String>))
                .execute(&mut *conn)
                .expect("facts cleared");
            drop(conn);
            let again = rt.block_on(backfill(store.clone())).expect("read");
            assert_eq!(again, Backfilled::default(), "{backend:?}");

            // Facts go only onto the version they were derived from.
            let mut conn = store.conn().expect("connection");
            assert!(!rows::set_facts(&mut conn, "Observation", "o001", 2, "{}").expect("set"));
            assert!(rows::set_facts(&mut conn, "Observation", "o001", 1, "{}").expect("set"));
            drop(conn);
            crate::store::tests::drop_database(store, pg_name);
        }
    }
}
