//! The export worker: runs accepted jobs, each on its own thread, to one of their end states.
//!
//! ```text
//!            kick-off                 pipeline done, audit durable
//!   (none) ───────────> running ────────────────────────────────> complete ──> (expired)
//!                        │  │ DELETE or another instance's stale check
//!                        │  └──────────────────────────────────> cancelled
//!                        └─ storage, keys, registration, shutdown ──> failed (code, cause)
//! ```
//!
//! [`ExportWorker::start`] is called once at start-up with the gateway and the export
//! metrics (registered in the application's Prometheus registry, so the worker needs no
//! global). [`ExportWorker::submit`] starts a job on a thread named `export-job` with a small
//! single-threaded runtime for the audit appends; the thread runs the pipeline
//! (`pipeline.rs`), then appends the spooled audit entries and the study's entry, durably,
//! and only then marks the job complete, so a file is never downloadable before its
//! patients' entries are. [`ExportWorker::stop`] (also on drop, when the server stops) asks
//! running jobs to stop at their next unit; they are marked failed (`worker_stopped`).
//!
//! Only systemic failures fail a job: storage (the database, the files), the study key, a
//! stored record that no longer parses, the client's registration. A resource that fails
//! de-identification or the leak scan is withheld and reported instead.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{IntCounterVec, Opts};

use super::files::{self, remove_dir};
use super::pipeline;
use super::request::ExportRequest;
use super::writer::Written;
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::auth::tokens::AccessClaims;
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::dates::now_micros;
use crate::release::WithheldReason;
use crate::store::StoreError;
use crate::store::exports as jobs;

/// How often a running job records its progress (and learns of a cancellation).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// How long the files of a complete job are served.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Audit entries handed to the writer at once when the spool is replayed.
const AUDIT_CHUNK: usize = 256;

pub(super) fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// The export metrics: withheld resources by kind.
#[derive(Clone)]
pub struct ExportMetrics {
    withheld: IntCounterVec,
}

impl std::fmt::Debug for ExportMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportMetrics").finish_non_exhaustive()
    }
}

impl ExportMetrics {
    /// Creates the collectors (register them with [`ExportMetrics::collectors`]).
    pub fn new() -> Result<ExportMetrics, prometheus::Error> {
        Ok(ExportMetrics {
            withheld: IntCounterVec::new(
                Opts::new(
                    "export_withheld_resources_total",
                    "Resources withheld from research exports, by kind (a leak kind, modifier_extension, patient_withheld)",
                ),
                &["kind"],
            )?,
        })
    }

    /// The collectors, for the application's registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![Box::new(self.withheld.clone())]
    }

    /// Counts one withheld resource.
    pub fn withheld(&self, reason: WithheldReason) {
        self.withheld.with_label_values(&[reason.code()]).inc();
    }
}

/// What a job exports, and for whom.
#[derive(Debug, Clone)]
pub enum Scope {
    /// A researcher's study: every consenting patient, decided and de-identified.
    Study {
        /// The study Group's id.
        study: String,
        /// The kick-off token's claims: purpose, scopes and the client, for decisions and
        /// audit.
        claims: Box<AccessClaims>,
        /// The de-identification profile, `name version`, for the audit entries.
        profile: String,
    },
    /// A person's own copy of one patient's records (`release::direct`): identified, no
    /// consent decision, gateway-internal records left out.
    Own {
        /// The patient exported.
        patient: PatientId,
        /// The patient, or a delegate allowed `read_records`.
        person: Principal,
    },
}

/// A job accepted at kick-off, as the worker runs it.
#[derive(Debug, Clone)]
pub struct Job {
    /// The job id (UUIDv7).
    pub id: String,
    /// What it exports, for whom.
    pub scope: Scope,
    /// What was asked for.
    pub request: ExportRequest,
    /// The kick-off's request id, carried by every audit entry of the job.
    pub request_id: String,
    /// The job's folder.
    pub dir: PathBuf,
}

impl Job {
    /// Who the job's audit entries name.
    pub fn principal(&self) -> Principal {
        match &self.scope {
            Scope::Study { claims, .. } => Principal::Client(claims.clone()),
            Scope::Own { person, .. } => person.clone(),
        }
    }

    /// What the job is about, for the log and the audit: `study` or `patient`, and its id.
    pub fn subject(&self) -> (&'static str, &str) {
        match &self.scope {
            Scope::Study { study, .. } => ("study", study),
            Scope::Own { patient, .. } => ("patient", patient.as_str()),
        }
    }
}

/// Why a job stopped before completing.
#[derive(Debug, Clone)]
pub enum Stop {
    /// The client cancelled it (or another instance declared it dead).
    Cancelled,
    /// The worker was stopped (the server is shutting down).
    Shutdown,
    /// It failed: a stable code, a client-safe message with the cause, and the patient at
    /// hand when the failure concerns one.
    Failed {
        code: &'static str,
        message: String,
        patient: Option<PatientId>,
    },
}

impl Stop {
    /// A failure with this code and message.
    pub fn failed(code: &'static str, message: impl Into<String>) -> Stop {
        Stop::Failed {
            code,
            message: message.into(),
            patient: None,
        }
    }

    /// An unexpected failure: logged, and reported as such.
    pub fn internal(detail: impl std::fmt::Display) -> Stop {
        Stop::from_domain(DomainError::internal(detail))
    }

    /// A domain failure, with its code and message.
    pub fn from_domain(e: DomainError) -> Stop {
        let message = match e.kind {
            ErrorKind::Unavailable => format!("{} (a dependency of the export failed)", e.message),
            _ => e.message,
        };
        Stop::failed(e.code, message)
    }

    /// A storage failure.
    pub fn from_store(e: StoreError) -> Stop {
        Stop::from_domain(e.into())
    }

    /// The export files could not be written.
    pub fn storage(e: std::io::Error) -> Stop {
        tracing::error!(error = %e, "export files cannot be written");
        Stop::failed(
            "export_storage_failed",
            "the export files could not be written",
        )
    }

    /// Names the patient the failure concerns.
    pub fn about(self, patient: &PatientId) -> Stop {
        match self {
            Stop::Failed { code, message, .. } => Stop::Failed {
                code,
                message,
                patient: Some(patient.clone()),
            },
            other => other,
        }
    }
}

/// Runs export jobs; dropping it stops them.
pub struct ExportWorker {
    gateway: Arc<Gateway>,
    metrics: ExportMetrics,
    shutdown: Arc<AtomicBool>,
}

impl std::fmt::Debug for ExportWorker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ExportWorker").finish_non_exhaustive()
    }
}

impl ExportWorker {
    /// A worker for `gateway`, counting into `metrics`.
    pub fn start(gateway: Arc<Gateway>, metrics: ExportMetrics) -> ExportWorker {
        ExportWorker {
            gateway,
            metrics,
            shutdown: Arc::new(AtomicBool::new(false)),
        }
    }

    /// Starts `job` on its own thread. The job is already stored as running.
    pub fn submit(&self, job: Job) -> Result<(), DomainError> {
        if self.shutdown.load(Ordering::SeqCst) {
            return Err(DomainError::unavailable(
                "export_worker_stopped",
                "the export worker is stopping; retry on another instance or later",
            ));
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| DomainError::internal(format!("cannot start an export runtime: {e}")))?;
        let (gateway, metrics, shutdown) = (
            self.gateway.clone(),
            self.metrics.clone(),
            self.shutdown.clone(),
        );
        std::thread::Builder::new()
            .name("export-job".into())
            .spawn(move || runtime.block_on(run(&gateway, &metrics, &shutdown, job)))
            .map_err(|e| DomainError::internal(format!("cannot start an export thread: {e}")))?;
        Ok(())
    }

    /// Asks every running job to stop at its next unit.
    pub fn stop(&self) {
        self.shutdown.store(true, Ordering::SeqCst);
    }
}

impl Drop for ExportWorker {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs one job to its end state.
async fn run(gateway: &Gateway, metrics: &ExportMetrics, shutdown: &AtomicBool, job: Job) {
    let result = export(gateway, metrics, shutdown, &job).await;
    let stop = match result {
        Ok(files) => {
            let (id, output) = (job.id.clone(), files::encode(&files));
            let now = now_micros();
            let done = gateway
                .store
                .run(move |conn| jobs::complete(conn, &id, &output, now, now + micros(RETENTION)))
                .await;
            match done {
                Ok(true) => {
                    tracing::info!(job = %job.id, files = files.len(), "export complete");
                    return;
                }
                Ok(false) => Stop::Cancelled,
                Err(e) => Stop::from_store(e),
            }
        }
        Err(stop) => stop,
    };
    remove_dir(&job.dir);
    let (code, message, patient) = match stop {
        Stop::Cancelled => return,
        Stop::Shutdown => (
            "worker_stopped",
            "the server stopped while the export ran; start a new export".to_string(),
            None,
        ),
        Stop::Failed {
            code,
            message,
            patient,
        } => (code, message, patient),
    };
    tracing::error!(job = %job.id, code, "export failed");
    let (id, text) = (job.id.clone(), message.clone());
    let marked = gateway
        .store
        .run(move |conn| jobs::fail(conn, &id, code, &text, now_micros(), None))
        .await;
    if !matches!(marked, Ok(true)) {
        return;
    }
    let mut entry = job_entry(&job, AuditOutcome::Error);
    entry.patient_id = patient.map(|p| p.to_string());
    entry.detail.insert("code".into(), code.into());
    if gateway.record(entry).await.is_err() {
        tracing::error!(job = %job.id, "the export failure could not be audited");
    }
}

/// An `export` entry of the job as a whole (a study's names no patient; a person's own
/// copy is about its patient).
fn job_entry(job: &Job, outcome: AuditOutcome) -> AuditEntry {
    let mut entry =
        job.principal()
            .audit_entry(AuditAction::Export, outcome, job.request_id.clone());
    let (key, subject) = job.subject();
    // Extended, not replaced: a delegate's entry already names the patient and delegation.
    entry.detail.extend([
        (key.to_string(), subject.to_string()),
        ("job".to_string(), job.id.clone()),
    ]);
    if let Scope::Own { patient, .. } = &job.scope {
        entry.patient_id = Some(patient.to_string());
    }
    entry
}

/// Runs the pipeline on a blocking thread of this runtime's own, then makes the audit
/// durable; returns the files.
async fn export(
    gateway: &Gateway,
    metrics: &ExportMetrics,
    shutdown: &AtomicBool,
    job: &Job,
) -> Result<Vec<files::OutputFile>, Stop> {
    let total = match &job.scope {
        Scope::Study { .. } => gateway
            .store
            .run(jobs::consenting_patient_count)
            .await
            .map_err(Stop::from_store)?,
        Scope::Own { .. } => 1,
    };
    // The pipeline blocks this thread (it is the job's own) until the writer is done.
    let written = pipeline::run(gateway, job, metrics, shutdown, total)?;
    replay_audit(gateway, job, &written).await?;
    Ok(written.files)
}

/// Appends the spooled per-patient entries, then the study's entry (how many patients and
/// resources left, how many were withheld and why), durably, a chunk at a time. A person's
/// own copy has one patient, whose entry is the whole account: no study entry follows.
async fn replay_audit(gateway: &Gateway, job: &Job, written: &Written) -> Result<(), Stop> {
    use std::io::BufRead;
    let reader =
        std::io::BufReader::new(std::fs::File::open(&written.spool).map_err(Stop::storage)?);
    let mut chunk = Vec::with_capacity(AUDIT_CHUNK);
    let mut lines = reader.lines();
    loop {
        let line = lines.next().transpose().map_err(Stop::storage)?;
        if let Some(line) = &line {
            let mut entry: AuditEntry =
                serde_json::from_str(line).map_err(|e| Stop::storage(std::io::Error::other(e)))?;
            entry.recorded_micros = now_micros();
            chunk.push(entry);
        }
        if line.is_none()
            && let Scope::Study { profile, .. } = &job.scope
        {
            let mut entry = job_entry(job, AuditOutcome::Success);
            let withheld: u64 = written.withheld.values().sum();
            entry.detail.extend([
                ("patients".to_string(), written.patients.to_string()),
                ("count".to_string(), written.resources.to_string()),
                ("withheld".to_string(), withheld.to_string()),
                ("profile".to_string(), profile.clone()),
            ]);
            for (reason, n) in &written.withheld {
                entry
                    .detail
                    .insert(format!("withheld_{}", reason.code()), n.to_string());
            }
            chunk.push(entry);
        }
        if chunk.len() >= AUDIT_CHUNK || line.is_none() {
            let results =
                futures_util::future::join_all(chunk.drain(..).map(|e| gateway.record(e))).await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(Stop::from_domain(e.into()));
            }
            let (id, now) = (job.id.clone(), now_micros());
            let (done, total) = (written.done, written.done);
            let running = gateway
                .store
                .run(move |conn| jobs::beat(conn, &id, now, done, Some(total)))
                .await
                .map_err(Stop::from_store)?;
            if !running {
                return Err(Stop::Cancelled);
            }
        }
        if line.is_none() {
            break;
        }
    }
    std::fs::remove_file(&written.spool).map_err(Stop::storage)
}
