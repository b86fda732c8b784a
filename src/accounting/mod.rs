//! Accounting: the audit log read back for people. The patient's accounting of disclosures
//! (JSON or CSV) and the FHIR R4 AuditEvent view of the same entries.
//!
//! Why a module of its own and not `audit/`: `audit/` is the log itself (entries and their
//! canonical bytes, the Merkle tree, checkpoints, the durable writer, offline verification)
//! and knows nothing of clients, URLs or page sizes. Reading it back for a patient is a
//! workflow like `access_request/`: it joins the client registry, applies who may see what,
//! pages by the configured limits and writes the gateway's URLs into proof and paging
//! links. Kept apart, the log core stays small and below everything else, this module sits
//! beside the other workflows (`api → accounting → audit, store`), and it reads through
//! `store::audit` without `store/` ever depending on it. "Accounting of disclosures" is
//! HIPAA's name (45 CFR 164.528) for what the patient's view answers.
//!
//! Start with the query parsers in [`query`], then [`entries`] (one page of rows with the
//! clients they name, decoded), then the views: [`access_log`] (JSON, with [`csv`] for the
//! spreadsheet form) and [`fhir`] (AuditEvents).
//!
//! Who sees what ([`Viewer`]): a patient only entries about themself; an operator any.
//!
//! Choices, also written down in `docs/AUDIT.md`:
//! - The access log lists successful disclosures by recipients and operators and leaves out
//!   the patient's own reads; the AuditEvent view shows every entry about the patient.
//! - Reading the log is not itself audited: the log holds ids only (no patient data), and
//!   an entry per look at the log would make every look change it. An IHE "audit log
//!   used" event needs its own action code in `audit::entry` first.
//! - Paging is keyset on the sequence (newest first), so pages stay stable while the log
//!   grows; there is no total.

pub mod access_log;
pub mod csv;
pub mod entries;
pub mod fhir;
pub mod query;

pub use access_log::{AccessLog, access_log, log_subject};
pub use fhir::{read_event, search_events};
pub use query::{EventQuery, Format, LogQuery, date_bound, parse_event_query, parse_log_query};

use crate::auth::Principal;
use crate::error::DomainError;
use crate::ids::PatientId;

/// The actions that disclose patient data, listed in the access log.
pub const DISCLOSURE_ACTIONS: [&str; 4] = ["read", "search", "export", "disclose"];

/// Who reads the log back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Viewer {
    /// A patient, who sees only entries about themself.
    Patient(PatientId),
    /// An operator, who sees any entry.
    Operator,
}

impl Viewer {
    /// The viewer a principal is; a recipient client reads no log.
    pub fn of(principal: &Principal) -> Result<Viewer, DomainError> {
        let forbidden =
            || DomainError::forbidden("forbidden", "this caller may not use this endpoint");
        match principal {
            Principal::Operator { .. } => Ok(Viewer::Operator),
            Principal::Patient { patient_id, .. } => PatientId::parse(patient_id)
                .map(Viewer::Patient)
                .map_err(|_| forbidden()),
            // A delegate sees the log of the patient they act for, when allowed to.
            Principal::Delegate(d) => {
                principal.may(crate::delegation::Action::ViewAccessLog)?;
                PatientId::parse(&d.patient_id)
                    .map(Viewer::Patient)
                    .map_err(|_| forbidden())
            }
            Principal::Client(_) => Err(forbidden()),
        }
    }
}
