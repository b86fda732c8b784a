//! Research export: FHIR Bulk Data group export of a study (`docs/EXPORT.md` has the whole
//! contract).
//!
//! Start at [`job`]: one function per thing an export's owner does ([`kick_off`],
//! [`kick_off_own`], [`status`], [`cancel`], [`open_file`]); `api/export.rs` parses the
//! request, calls one of them and renders. [`request`] reads what a kick-off asks for.
//!
//! Two kinds of job share the machinery ([`worker::Scope`]): a researcher's study (below),
//! and a patient's own copy (`GET /fhir/Patient/$export`, the patient or a delegate allowed
//! `read_records`), which holds exactly what `$everything` gives them
//! ([`crate::release::direct::in_own_copy`]): identified, nothing decided, gateway-internal
//! records left out, owned by the person (its status, files and `DELETE` answer nobody
//! else) and audited as their own access: one `export` entry listing what left, which the
//! accounting of disclosures leaves out like every read of the patient's own.
//!
//! The study's members are the patients whose consents permit the researcher: every patient
//! owning a Consent is a candidate, and each of their resources passes the one decision
//! engine ([`crate::release::decide_each`], action `export`) with the consents read afresh.
//! What is permitted is de-identified under the study's key and leak-scanned against the
//! patient's identifiers ([`crate::release::shape_for_study`]). A resource that fails the
//! scan is withheld and reported (the manifest's `error` file, the log, `/metrics`, the
//! study's audit entry); only storage, key or registration failures fail a job.
//!
//! The job's state lives in `export_jobs` ([`crate::store::exports`]), so any instance answers
//! its status; the work runs on the instance that accepted it ([`worker`]), as a bounded
//! pipeline over both cores (`pipeline.rs`: read, decide and shape, write), with a heartbeat.
//! A job whose heartbeat is older than [`HEARTBEAT_TIMEOUT`] is marked failed by the next
//! status request.
//!
//! Audit: one `export` entry per exported patient (what, under which consents and policies,
//! `study=`), spooled in the job folder and appended durably just before the job completes,
//! with one entry for the study as a whole (patients, resources, withheld by kind). A failure
//! is audited as an `export` with outcome `error`; each file download as an `export` without
//! a patient.

pub mod filter;
pub mod job;
pub mod request;
pub mod worker;

mod files;
mod pipeline;
mod writer;

#[cfg(test)]
mod tests;

pub use files::{ERROR_FILE, ISSUE_SYSTEM};
pub use job::{
    BUSY_RETRY_AFTER_SECS, HEARTBEAT_TIMEOUT, JobView, KickOff, Owner, RETRY_AFTER_SECS, cancel,
    kick_off, kick_off_own, open_file, status,
};
pub use request::ExportRequest;
pub use worker::{ExportMetrics, ExportWorker};

/// Media type of the files.
pub const NDJSON: &str = "application/fhir+ndjson";
