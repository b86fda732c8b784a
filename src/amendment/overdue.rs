//! Overdue requests: a request still pending past its deadline is shown as overdue whenever it
//! is read ([`super::view`]); the rights sweep also flags it once (`overdue_at`) and audits an
//! `amend` step `overdue`, so the patient is told even if nobody reads it. Flagging is a
//! conditional update, so with several instances it happens, and is told, once.

use super::record;
use crate::auth::Principal;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::store::amendments as rows;

/// How many requests one sweep looks at.
const SWEEP_BATCH: i64 = 500;

/// Flags the requests that became overdue since the last sweep; returns how many.
pub async fn sweep(gateway: &Gateway) -> Result<usize, DomainError> {
    let now = now_micros();
    let due = gateway
        .store
        .run(move |conn| rows::newly_overdue(conn, now, SWEEP_BATCH))
        .await?;
    let gateway_itself = Principal::Operator {
        subject: "consentgate".into(),
    };
    let mut flagged = 0;
    for row in due {
        let key = row.id.clone();
        let first = gateway
            .store
            .run(move |conn| rows::flag_overdue(conn, &key, now))
            .await?;
        if first {
            let request_id = format!("sweep-{}", uuid::Uuid::now_v7());
            record(gateway, &gateway_itself, &request_id, &row, "overdue").await?;
            flagged += 1;
        }
    }
    Ok(flagged)
}
