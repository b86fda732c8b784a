//! The four things an export's owner does, one function each: [`kick_off`] (a researcher's
//! study) or [`kick_off_own`] (a patient's own copy), then [`status`], [`cancel`] and
//! [`open_file`], which answer only the job's [`Owner`]. Who may export a study, and as whom
//! the decision engine sees the researcher, are [`may_export`] and [`for_study`].

use std::fs::File;
use std::time::Duration;

use serde_json::{Value, json};

use super::files::{self, job_dir, remove_dir};
use super::request::ExportRequest;
use super::worker::{ExportWorker, Job, Scope, micros};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::auth::tokens::AccessClaims;
use crate::decision::Requester;
use crate::error::{DomainError, ErrorKind};
use crate::gateway::Gateway;
use crate::ids::{ClientId, PatientId};
use crate::records::dates::{self, now_micros};
use crate::records::validate;
use crate::release;
use crate::store::exports::{self as jobs, ExportJobRow, JobStatus, OwnerKind};

/// A running job silent for this long is presumed dead and marked failed.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// Live jobs one client may have.
pub const MAX_JOBS_PER_CLIENT: i64 = 2;
/// Live jobs across the gateway.
pub const MAX_JOBS: i64 = 8;
/// Seconds a client is asked to wait between status requests.
pub const RETRY_AFTER_SECS: u64 = 2;
/// Seconds a client is asked to wait when too many exports run.
pub const BUSY_RETRY_AFTER_SECS: u64 = 30;

/// Whether this client is a researcher acting as the study's Group.
pub fn may_export(requester: &Requester, study: &str) -> bool {
    let group = format!("Group/{study}");
    requester.role == Role::Researcher && requester.references.contains(&group)
}

/// The requester as an export of `study` presents it to the decision engine: acting as this
/// study's Group and no other, so that a consent to another study of the same researcher
/// never lets a patient into this one. Its other references (its own Device, its
/// organisation) stay: a consent naming them covers every study of theirs.
pub fn for_study(mut requester: Requester, study: &str) -> Requester {
    let group = format!("Group/{study}");
    requester
        .references
        .retain(|r| !r.starts_with("Group/") || *r == group);
    requester
}

/// Who owns a job: the only caller its status, files and `DELETE` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Owner {
    /// A recipient client (a study's export).
    Client(ClientId),
    /// A person (their own copy): `Patient/{id}`, or `RelatedPerson/{id}` for a delegate.
    Person(String),
}

impl Owner {
    /// The owner a caller would be: a client, or a patient or delegate; an operator owns
    /// no export (`403 forbidden`).
    pub fn of(principal: &Principal) -> Result<Owner, DomainError> {
        match principal {
            Principal::Client(claims) => ClientId::parse(&claims.client_id)
                .map(Owner::Client)
                .map_err(|_| {
                    DomainError::new(
                        ErrorKind::Unauthorized,
                        "unauthorized",
                        "a valid bearer token is required",
                    )
                }),
            person => person.person_reference().map(Owner::Person).ok_or_else(|| {
                DomainError::forbidden("forbidden", "this caller may not use this endpoint")
            }),
        }
    }

    /// The owner as the job's row keeps it.
    fn key(&self) -> (OwnerKind, &str) {
        match self {
            Owner::Client(c) => (OwnerKind::Client, c.as_str()),
            Owner::Person(p) => (OwnerKind::Person, p),
        }
    }
}

/// A kick-off as the HTTP layer read it.
#[derive(Debug, Clone)]
pub struct KickOff {
    /// The study Group's id, from the path; empty for a person's own copy.
    pub study: String,
    /// The query string, as sent.
    pub query: String,
    /// The `Parameters` body of a `POST` kick-off (its query string must then be empty).
    pub parameters: Option<Value>,
    /// Whether `Prefer: handling=lenient` was sent.
    pub lenient: bool,
    /// Whether `Prefer: respond-async` was sent.
    pub respond_async: bool,
    /// The kick-off URL (the manifest's `request`).
    pub request_url: String,
    /// The request id, for the audit entries.
    pub request_id: String,
}

fn not_known(what: &str) -> DomainError {
    DomainError::not_found("not_found", format!("{what} is not known"))
}

/// Starts an export of a study; returns the job's status URL. Anyone but a researcher of the
/// study gets "not known", as if the study did not exist.
pub async fn kick_off(
    gateway: &Gateway,
    worker: &ExportWorker,
    claims: &AccessClaims,
    asked: KickOff,
) -> Result<String, DomainError> {
    let study = asked.study.clone();
    if !validate::is_valid_id(&study) {
        return Err(not_known("the Group"));
    }
    let requester = release::requester(gateway, claims).await?;
    if !may_export(&requester, &study) {
        return Err(not_known(&format!("Group/{study}")));
    }
    if !asked.respond_async {
        return Err(respond_async_required());
    }
    let request = read_request(gateway, &asked)?;
    let profile = gateway.shaping.profile();
    let scope = Scope::Study {
        study: study.clone(),
        claims: Box::new(claims.clone()),
        profile: format!("{} {}", profile.name(), profile.version()),
    };
    accept(gateway, worker, asked, request, scope).await
}

/// Starts a person's export of their own copy (`GET /fhir/Patient/$export`): the patient,
/// or a delegate allowed `read_records`; returns the job's status URL. Nothing is decided
/// or de-identified: it holds what `$everything` gives them ([`release::direct`]).
pub async fn kick_off_own(
    gateway: &Gateway,
    worker: &ExportWorker,
    person: &Principal,
    asked: KickOff,
) -> Result<String, DomainError> {
    if person.person_reference().is_none() {
        return Err(DomainError::forbidden(
            "forbidden",
            "only a patient (or their delegate) exports their own records",
        ));
    }
    person.may(crate::delegation::Action::ReadRecords)?;
    let patient = person
        .own_patient()
        .and_then(|p| PatientId::parse(p).ok())
        .ok_or_else(|| not_known("the patient"))?;
    if !asked.respond_async {
        return Err(respond_async_required());
    }
    if asked.parameters.is_some() {
        return Err(DomainError::invalid(
            "invalid_parameters",
            "a patient's own export takes its parameters in the query string",
        ));
    }
    let request = read_request(gateway, &asked)?;
    let scope = Scope::Own {
        patient,
        person: person.clone(),
    };
    accept(gateway, worker, asked, request, scope).await
}

fn respond_async_required() -> DomainError {
    DomainError::invalid(
        "respond_async_required",
        "a Bulk Data export needs the header `Prefer: respond-async`",
    )
}

/// The kick-off's parameters, from its query string or its `Parameters` body.
fn read_request(gateway: &Gateway, asked: &KickOff) -> Result<ExportRequest, DomainError> {
    let limits = &gateway.settings.limits;
    match &asked.parameters {
        // Parameters in both places would leave one set unread: refused, never ignored.
        Some(_) if !asked.query.is_empty() => Err(DomainError::invalid(
            "invalid_parameters",
            "a POST kick-off carries its parameters in the Parameters body, not the URL",
        )),
        Some(body) => ExportRequest::from_parameters(body, asked.lenient, limits),
        None => ExportRequest::from_query(&asked.query, asked.lenient, limits),
    }
}

/// What a job's row says of its scope: the owner (kind and key), the subject (the study, or
/// the patient of an own copy) and the purpose of use.
fn row_facts(scope: &Scope) -> (OwnerKind, String, String, String) {
    match scope {
        Scope::Study { study, claims, .. } => (
            OwnerKind::Client,
            claims.client_id.clone(),
            study.clone(),
            claims.purpose_of_use.clone(),
        ),
        Scope::Own { patient, person } => (
            OwnerKind::Person,
            person.person_reference().unwrap_or_default(),
            patient.to_string(),
            "PATRQT".to_string(),
        ),
    }
}

/// Stores a job (within the capacity limits) and hands it to the worker.
async fn accept(
    gateway: &Gateway,
    worker: &ExportWorker,
    asked: KickOff,
    request: ExportRequest,
    scope: Scope,
) -> Result<String, DomainError> {
    let (owner_kind, owner, subject, purpose) = row_facts(&scope);
    let root = files::exports_dir(gateway);
    gateway
        .store
        .run(move |conn| files::sweep(&root, conn))
        .await?;
    let now = now_micros();
    let row = ExportJobRow {
        id: uuid::Uuid::now_v7().to_string(),
        owner_kind,
        client_id: owner,
        study: subject,
        purpose,
        request_url: asked.request_url,
        types: request.types.join(","),
        since_micros: request.since,
        status: JobStatus::Running,
        transaction_time: now,
        heartbeat: now,
        patients_done: 0,
        patients_total: None,
        output_files: None,
        error_code: None,
        error_message: None,
        completed: None,
        expires: None,
    };
    let stored = row.clone();
    let live_since = now - micros(HEARTBEAT_TIMEOUT);
    let accepted = gateway
        .store
        .run(move |conn| {
            jobs::insert_if_capacity(conn, &stored, live_since, MAX_JOBS_PER_CLIENT, MAX_JOBS)
        })
        .await?;
    if !accepted {
        return Err(DomainError::new(
            ErrorKind::TooMany,
            "too_many_exports",
            "too many exports are running; retry later",
        ));
    }
    let job = Job {
        dir: job_dir(gateway, &row.id),
        id: row.id.clone(),
        scope,
        request,
        request_id: asked.request_id,
    };
    if let Err(e) = worker.submit(job) {
        let id = row.id.clone();
        gateway
            .store
            .run(move |conn| {
                jobs::fail(
                    conn,
                    &id,
                    "internal_error",
                    "the export could not be started",
                    now_micros(),
                    None,
                )
            })
            .await?;
        return Err(e);
    }
    tracing::info!(job = %row.id, owner = row.owner_kind.as_str(), "export accepted");
    Ok(format!("{}/$export-status/{}", gateway.fhir_base(), row.id))
}

/// The job as its owner may see it: `None` for anyone else's, a cancelled or an expired
/// job. A running job with a stale heartbeat is marked failed first.
async fn visible_job(
    gateway: &Gateway,
    owner: &Owner,
    job: &str,
) -> Result<Option<ExportJobRow>, DomainError> {
    let now = now_micros();
    let (job, owner) = (job.to_string(), owner.clone());
    let row = gateway
        .store
        .run(move |conn| {
            let Some(row) = jobs::find(conn, &job, owner.key())? else {
                return Ok(None);
            };
            let stale_before = now - micros(HEARTBEAT_TIMEOUT);
            if row.status == JobStatus::Running && row.heartbeat < stale_before {
                let message =
                    "the export stopped making progress (its worker is gone); start a new export";
                jobs::fail(conn, &job, "worker_lost", message, now, Some(stale_before))?;
                return jobs::find(conn, &job, owner.key());
            }
            Ok::<_, crate::store::StoreError>(Some(row))
        })
        .await?;
    Ok(row.filter(|r| match r.status {
        JobStatus::Cancelled => false,
        JobStatus::Complete => r.expires.is_none_or(|e| e > now),
        JobStatus::Running | JobStatus::Failed => true,
    }))
}

/// What a status request answers.
#[derive(Debug, Clone, PartialEq)]
pub enum JobView {
    /// Still running: candidate patients handled, of how many.
    Running {
        /// Handled so far.
        done: i64,
        /// In all, once counted.
        total: Option<i64>,
    },
    /// Done: the Bulk Data manifest, and when its files stop being served (microseconds).
    Complete {
        /// The manifest.
        manifest: Value,
        /// When the files expire.
        expires: Option<i64>,
    },
    /// Failed as a whole: a stable code and the cause.
    Failed {
        /// The code.
        code: String,
        /// The cause, client-safe.
        message: String,
    },
}

/// The status of a job of `owner`.
pub async fn status(gateway: &Gateway, owner: &Owner, job: &str) -> Result<JobView, DomainError> {
    let Some(row) = visible_job(gateway, owner, job).await? else {
        return Err(not_known("the export job"));
    };
    Ok(match row.status {
        JobStatus::Running => JobView::Running {
            done: row.patients_done,
            total: row.patients_total,
        },
        JobStatus::Complete => JobView::Complete {
            manifest: manifest(gateway, &row),
            expires: row.expires,
        },
        JobStatus::Failed | JobStatus::Cancelled => JobView::Failed {
            code: row.error_code.unwrap_or_else(|| "export_failed".into()),
            message: row
                .error_message
                .unwrap_or_else(|| "the export failed".into()),
        },
    })
}

/// The Bulk Data manifest of a complete job.
fn manifest(gateway: &Gateway, row: &ExportJobRow) -> Value {
    let base = gateway.fhir_base();
    let item = |f: &files::OutputFile| json!({"type": f.resource_type, "url": format!("{base}/$export-file/{}/{}", row.id, f.file_name()), "count": f.count});
    let listed = files::decode(row.output_files.as_deref());
    let (errors, output): (Vec<_>, Vec<_>) = listed.iter().partition(|f| f.error);
    json!({
        "transactionTime": dates::format_instant(row.transaction_time),
        "request": row.request_url,
        "requiresAccessToken": true,
        "output": output.into_iter().map(item).collect::<Vec<_>>(),
        "error": errors.into_iter().map(item).collect::<Vec<_>>(),
    })
}

/// Cancels a running job of `owner`, or deletes a finished one, and removes its files.
pub async fn cancel(gateway: &Gateway, owner: &Owner, job: &str) -> Result<(), DomainError> {
    if visible_job(gateway, owner, job).await?.is_none() {
        return Err(not_known("the export job"));
    }
    let (id, who) = (job.to_string(), owner.clone());
    if !gateway
        .store
        .run(move |conn| jobs::cancel(conn, &id, who.key(), now_micros()))
        .await?
    {
        return Err(not_known("the export job"));
    }
    // A running worker also removes the folder when it sees the cancellation.
    let dir = job_dir(gateway, job);
    crate::cpus::spawn_blocking(move || remove_dir(&dir))
        .await
        .map_err(DomainError::internal)?;
    tracing::info!(job = %job, owner = owner.key().0.as_str(), "export cancelled");
    Ok(())
}

/// Opens the file `name` of a complete job of the caller, once its download is in the audit
/// log (durably): a study's as the client's, a person's own copy as their own access.
pub async fn open_file(
    gateway: &Gateway,
    caller: &Principal,
    job: &str,
    name: &str,
    request_id: &str,
) -> Result<File, DomainError> {
    let gone = || not_known("the export file");
    let owner = Owner::of(caller)?;
    let row = visible_job(gateway, &owner, job)
        .await?
        .filter(|r| r.status == JobStatus::Complete)
        .ok_or_else(gone)?;
    let file = files::decode(row.output_files.as_deref())
        .into_iter()
        .find(|f| f.file_name() == name)
        .ok_or_else(gone)?;
    let path = job_dir(gateway, job).join(file.file_name());
    let opened = crate::cpus::spawn_blocking(move || File::open(path))
        .await
        .map_err(DomainError::internal)?;
    // Gone when expired meanwhile, or when this instance does not share the exports folder.
    let opened = opened.map_err(|_| gone())?;
    let mut entry = caller.audit_entry(
        AuditAction::Export,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    let subject = match row.owner_kind {
        OwnerKind::Client => "study",
        OwnerKind::Person => {
            entry.patient_id = Some(row.study.clone());
            "patient"
        }
    };
    // Extended, not replaced: a delegate's entry already names the patient and delegation.
    entry.detail.extend([
        (subject.to_string(), row.study.clone()),
        ("job".to_string(), job.to_string()),
        (
            "file".into(),
            if file.error {
                "errors".to_string()
            } else {
                file.resource_type.clone()
            },
        ),
        ("count".into(), file.count.to_string()),
    ]);
    gateway.record(entry).await?;
    Ok(opened)
}
