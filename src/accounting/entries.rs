//! Reading entries back: one page of rows with the clients they name, each row decoded, and
//! the newest checkpoint.
//!
//! A row that does not decode is a damaged log: the view fails (500, pointing the operator at
//! `consentgate audit verify`) rather than show half an entry.

use std::collections::HashMap;
use std::sync::Arc;

use crate::audit::AuditEntry;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::store::StoreError;
use crate::store::audit::{self as rows, CheckpointRow, EntryFilter, EntryRow};
use crate::store::identity::ClientRow;

/// One row with its entry.
#[derive(Debug, Clone)]
pub struct Decoded {
    /// The stored row: sequence and canonical bytes.
    pub row: EntryRow,
    /// The entry its bytes hold.
    pub entry: AuditEntry,
}

/// Decodes each row's canonical bytes.
pub fn decode(rows: Vec<EntryRow>) -> Result<Vec<Decoded>, DomainError> {
    rows.into_iter()
        .map(|row| match serde_json::from_str(&row.body) {
            Ok(entry) => Ok(Decoded { row, entry }),
            Err(_) => Err(DomainError::internal(format!(
                "audit entry {} does not decode; run `consentgate audit verify`",
                row.seq
            ))),
        })
        .collect()
}

/// One page of entries, newest first.
#[derive(Debug)]
pub struct Page {
    /// The entries.
    pub entries: Vec<Decoded>,
    /// The clients they name, by id (removed registrations included).
    pub clients: HashMap<String, ClientRow>,
    /// Whether more entries match beyond this page.
    pub more: bool,
}

/// Runs `filter` (whose `limit` asks for one row more than `count`, or 0 for none) and joins
/// the clients named.
pub async fn page(
    gateway: &Gateway,
    filter: EntryFilter,
    count: usize,
) -> Result<Page, DomainError> {
    let (mut found, clients) = gateway
        .store
        .run(move |conn| {
            let found = rows::find_entries(conn, &filter)?;
            let mut ids: Vec<String> = found.iter().map(|r| r.client_id.clone()).collect();
            ids.sort();
            ids.dedup();
            let clients = rows::clients_named(conn, &ids)?
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect();
            Ok::<_, StoreError>((found, clients))
        })
        .await?;
    let more = found.len() > count;
    found.truncate(count);
    Ok(Page {
        entries: decode(found)?,
        clients,
        more,
    })
}

/// The entry at `seq`, with the client it names.
pub async fn at(
    gateway: &Gateway,
    seq: u64,
) -> Result<Option<(Decoded, Option<ClientRow>)>, DomainError> {
    let found = gateway
        .store
        .run(move |conn| {
            let Some(row) = rows::entry_at(conn, seq)? else {
                return Ok::<_, StoreError>(None);
            };
            let client = rows::clients_named(conn, std::slice::from_ref(&row.client_id))?.pop();
            Ok(Some((row, client)))
        })
        .await?;
    let Some((row, client)) = found else {
        return Ok(None);
    };
    let decoded = decode(vec![row])?.pop();
    Ok(decoded.map(|d| (d, client)))
}

/// The newest checkpoint, signed now when this instance signs and the log has grown. The
/// signer blocks on the database, so it runs on the blocking pool, which needs the gateway
/// by `Arc`.
pub async fn newest_checkpoint(
    gateway: &Arc<Gateway>,
) -> Result<Option<CheckpointRow>, DomainError> {
    let gateway = Arc::clone(gateway);
    crate::cpus::spawn_blocking(move || gateway.checkpoints.latest(&gateway.store))
        .await
        .map_err(DomainError::internal)?
        .map_err(DomainError::internal)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditOutcome};

    fn row(seq: i64, body: String) -> EntryRow {
        EntryRow {
            seq,
            recorded: 0,
            action: "read".into(),
            outcome: "success".into(),
            client_id: "c1".into(),
            patient_id: Some("p1".into()),
            body,
            notice: None,
        }
    }

    #[test]
    fn rows_decode_or_the_page_fails() {
        let entry = AuditEntry::new(AuditAction::Read, AuditOutcome::Success, "r1".into());
        let good = row(0, serde_json::to_string(&entry).unwrap());
        let decoded = decode(vec![good.clone()]).unwrap();
        assert_eq!(decoded[0].entry, entry);
        let e = decode(vec![good, row(7, "{not json".into())]).unwrap_err();
        assert_eq!(e.code, "internal_error");
    }
}
