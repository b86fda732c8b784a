//! FHIR Bulk Data export of a research study: `GET /fhir/Group/{study}/$export`, its status
//! (`GET` and `DELETE /fhir/$export-status/{job}`) and its files
//! (`GET /fhir/$export-file/{job}/{Type}.ndjson`). The whole contract is in `docs/EXPORT.md`.
//!
//! The study's members are the patients whose consents permit the researcher: every patient
//! owning a Consent is a candidate, and each of their resources passes the one decision
//! engine ([`release::decide_each`], action `export`) with the consents read afresh. What is
//! permitted is de-identified under the study's key ([`release::shape_for_study`]), whatever
//! the obligations say, and leak-scanned against the patient's identifiers; a hit fails the
//! job. Patients are handled one at a time and their resources in batches of
//! [`RESOURCE_BATCH`], each line streamed to its file, so memory stays flat.
//!
//! The job's state lives in `export_jobs`, so any instance answers its status; the work runs
//! on a thread of the instance that accepted it, which beats a heartbeat. A job whose
//! heartbeat is older than [`HEARTBEAT_TIMEOUT`] is marked failed by the next status request.
//!
//! Audit: one `export` entry per patient exported (what, under which consents and policies,
//! `study=`). The entries are spooled to the job folder while it runs and appended, durably,
//! just before the job completes, so a patient's access log lists exports that were made
//! available, not ones that failed or were cancelled half-way. A failure is audited as an
//! `export` with outcome `error`; each file download as an `export` without a patient.
//!
//! Why one file of about 1000 lines (over the ~600 of STYLE.md): the handlers and the worker
//! share the job's model (its folder, its states, who may see it) and neither is useful
//! alone; the worker (from [`Job`] down) is the natural cut into `export/worker.rs`.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Read, Write};
use std::path::{Path as FsPath, PathBuf};
use std::time::{Duration, Instant};

use actix_web::http::StatusCode;
use actix_web::http::header::{CONTENT_LOCATION, EXPIRES, HttpDate, RETRY_AFTER};
use actix_web::web::{Bytes, Data, Path};
use actix_web::{HttpRequest, HttpResponse, ResponseError, delete, get};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::auth::ClientCaller;
use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::Role;
use crate::auth::tokens::AccessClaims;
use crate::decision::Requester;
use crate::error::ErrorKind;
use crate::ids::PatientId;
use crate::policy::Obligation;
use crate::policy::PolicyAction;
use crate::records::dates::{self, now_micros};
use crate::records::{RecordError, outcome, validate};
use crate::release::{self, Interaction, PatientContext, Permitted, Recipient};
use crate::store::exports::{self as jobs, ExportJobRow, PatientPage};

/// Resources read, decided and shaped at a time.
pub const RESOURCE_BATCH: i64 = 200;
/// Candidate patient ids read at a time.
pub const PATIENT_PAGE: i64 = 100;
/// How often a running job records its progress (and learns of a cancellation).
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);
/// A running job silent for this long is presumed dead and marked failed.
pub const HEARTBEAT_TIMEOUT: Duration = Duration::from_secs(60);
/// How long the files of a complete job are served.
pub const RETENTION: Duration = Duration::from_secs(24 * 3600);
/// Live jobs one client may have.
pub const MAX_JOBS_PER_CLIENT: i64 = 2;
/// Live jobs across the gateway.
pub const MAX_JOBS: i64 = 8;
/// Seconds a client is asked to wait between status requests.
pub const RETRY_AFTER_SECS: u64 = 2;
/// Media type of the files.
pub const NDJSON: &str = "application/fhir+ndjson";
/// The audit spool in a job folder (not an output file: output files are `{Type}.ndjson`).
const SPOOL: &str = "audit-spool.jsonl";
/// Audit entries handed to the writer at once when the spool is replayed.
const AUDIT_CHUNK: usize = 256;
/// Bytes read per chunk of a download.
const DOWNLOAD_CHUNK: usize = 256 * 1024;

fn micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

fn not_known(what: &str) -> ApiError {
    RecordError::not_found("not_found", format!("{what} is not known")).into()
}

fn bad_request(code: &'static str, message: &str) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// What a kick-off asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KickOff {
    /// `_type`: only these resource types; empty for all.
    pub types: Vec<String>,
    /// `_since`: only resources updated after this instant (microseconds).
    pub since: Option<i64>,
}

/// Parses a FHIR instant (seconds and zone required); a `+` sent unencoded arrives as a space.
fn parse_instant(text: &str) -> Option<i64> {
    let text = text.replace(' ', "+");
    if !text.contains('T') {
        return None;
    }
    OffsetDateTime::parse(&text, &Rfc3339)
        .ok()
        .map(dates::to_micros)
}

/// Parses the kick-off query; each parameter at most once, unsupported ones refused.
pub fn parse_kick_off(raw: &str) -> Result<KickOff, ApiError> {
    let mut out = KickOff::default();
    let mut seen = BTreeSet::new();
    for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
        if !seen.insert(key.to_string()) {
            return Err(bad_request(
                "duplicate_parameter",
                "each parameter may be given once",
            ));
        }
        match key.as_ref() {
            "_outputFormat" => {
                if !matches!(
                    value.as_ref(),
                    "application/fhir+ndjson" | "application/ndjson" | "ndjson"
                ) {
                    return Err(bad_request(
                        "unsupported_output_format",
                        "`_outputFormat` must be application/fhir+ndjson",
                    ));
                }
            }
            "_type" => {
                for ty in value.split(',').map(str::trim) {
                    if !validate::is_resource_type(ty) {
                        return Err(bad_request(
                            "invalid_type",
                            "`_type` must list FHIR R4 resource types, comma-separated",
                        ));
                    }
                    if !out.types.iter().any(|t| t == ty) {
                        out.types.push(ty.to_string());
                    }
                }
            }
            "_since" => {
                out.since = Some(parse_instant(&value).ok_or_else(|| {
                    bad_request(
                        "invalid_since",
                        "`_since` must be a FHIR instant, e.g. 2024-01-01T00:00:00Z",
                    )
                })?);
            }
            "_typeFilter"
            | "_elements"
            | "patient"
            | "includeAssociatedData"
            | "organizeOutputBy"
            | "allowPartialManifests" => {
                return Err(bad_request(
                    "unsupported_parameter",
                    "this export supports `_outputFormat`, `_type` and `_since` only",
                ));
            }
            _ => {
                return Err(bad_request(
                    "unknown_parameter",
                    "this export supports `_outputFormat`, `_type` and `_since` only",
                ));
            }
        }
    }
    Ok(out)
}

/// Whether the request carries `Prefer: respond-async`.
fn prefers_async(req: &HttpRequest) -> bool {
    req.headers()
        .get_all("prefer")
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| {
            p.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .eq_ignore_ascii_case("respond-async")
        })
}

/// Whether this client is a researcher acting as the study's Group.
fn may_export(requester: &Requester, study: &str) -> bool {
    let group = format!("Group/{study}");
    requester.role == Role::Researcher && requester.references.contains(&group)
}

/// The requester as an export of `study` presents it to the decision engine: acting as this
/// study's Group and no other, so that a consent to another study of the same researcher
/// never lets a patient into this one. Its other references (its own Device, its
/// organisation) stay: a consent naming them covers every study of theirs.
fn for_study(mut requester: Requester, study: &str) -> Requester {
    let group = format!("Group/{study}");
    requester
        .references
        .retain(|r| !r.starts_with("Group/") || *r == group);
    requester
}

fn exports_dir(state: &AppState) -> PathBuf {
    state.settings.data_path(FsPath::new("exports"))
}

fn job_dir(state: &AppState, job: &str) -> PathBuf {
    exports_dir(state).join(job)
}

/// Removes a job folder; a folder already gone is fine.
fn remove_dir(dir: &FsPath) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(error = %e, "cannot remove an export folder");
    }
}

/// Removes the folders of jobs that are over (cancelled, failed, expired, unknown).
fn sweep(state: &AppState) -> Result<(), ApiError> {
    let root = exports_dir(state);
    let Ok(entries) = std::fs::read_dir(&root) else {
        return Ok(());
    };
    let ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    let mut conn = state.store.conn()?;
    for id in jobs::removable(&mut conn, &ids, now_micros())? {
        remove_dir(&root.join(id));
    }
    Ok(())
}

/// `GET /fhir/Group/{study}/$export`: starts an export (202 with `Content-Location`).
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    params(
        ("id" = String, Path, description = "The study's Group id"),
        ("Prefer" = String, Header, description = "Must be `respond-async`"),
        ("_outputFormat" = Option<String>, Query, description = "`application/fhir+ndjson` (the only one)"),
        ("_type" = Option<String>, Query, description = "Resource types, comma-separated"),
        ("_since" = Option<String>, Query, description = "Only resources updated after this FHIR instant"),
    ),
    responses(
        (status = 202, description = "Accepted; `Content-Location` is the status URL", headers(("Content-Location" = String, description = "The job's status URL"))),
        (status = 400, description = "`respond_async_required`, `duplicate_parameter`, `unsupported_output_format`, `invalid_type`, `invalid_since`, `unsupported_parameter`, `unknown_parameter`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`: no such study for this researcher", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 429, description = "`too_many_exports`; carries `Retry-After`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/Group/{id}/$export")]
pub async fn kick_off(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let study = path.into_inner();
    if !validate::is_valid_id(&study) {
        return Err(not_known("the Group"));
    }
    let requester = release::requester(&state, &claims).await?;
    // Not a researcher of this study: the study does not exist, as far as it can tell.
    if !may_export(&requester, &study) {
        return Err(not_known(&format!("Group/{study}")));
    }
    if !prefers_async(&req) {
        return Err(bad_request(
            "respond_async_required",
            "a Bulk Data export needs the header `Prefer: respond-async`",
        ));
    }
    let asked = parse_kick_off(req.query_string())?;
    let st = state.clone();
    tokio::task::spawn_blocking(move || sweep(&st))
        .await
        .map_err(ApiError::internal)??;
    let now = now_micros();
    let row = ExportJobRow {
        id: uuid::Uuid::now_v7().to_string(),
        client_id: claims.client_id.clone(),
        study: study.clone(),
        purpose: claims.purpose_of_use.clone(),
        request_url: format!("{}{}", state.base_url, req.uri()),
        types: asked.types.join(","),
        since_micros: asked.since,
        status: jobs::RUNNING.into(),
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
    let accepted = state
        .store
        .run(move |conn| {
            jobs::insert_if_capacity(conn, &stored, live_since, MAX_JOBS_PER_CLIENT, MAX_JOBS)
        })
        .await?;
    if !accepted {
        let mut busy = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_exports",
            "too many exports are running; retry later",
        )
        .error_response();
        busy.headers_mut().insert(RETRY_AFTER, 30.into());
        return Ok(busy);
    }
    let job = Job {
        dir: job_dir(&state, &row.id),
        id: row.id.clone(),
        study,
        types: asked.types,
        since: asked.since,
        claims,
        request_id: audit::request_id(&req),
    };
    if let Err(e) = spawn_worker(state.clone(), job) {
        let id = row.id.clone();
        state
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
        return Err(ApiError::internal(format!(
            "cannot start an export worker: {e}"
        )));
    }
    tracing::info!(job = %row.id, client_id = %row.client_id, "export accepted");
    Ok(HttpResponse::Accepted()
        .insert_header((
            CONTENT_LOCATION,
            format!("{}/$export-status/{}", state.fhir_base(), row.id),
        ))
        .content_type(FHIR_JSON)
        .body(informational("the export was accepted; poll the Content-Location URL").to_string()))
}

fn informational(message: &str) -> Value {
    json!({"resourceType": "OperationOutcome", "issue": [{"severity": "information", "code": "informational", "diagnostics": message}]})
}

/// The job as its client may see it: `None` for another client's, a cancelled or an expired
/// job. A running job with a stale heartbeat is marked failed first.
async fn visible_job(
    state: &Data<AppState>,
    job: String,
    client: String,
) -> Result<Option<ExportJobRow>, ApiError> {
    let now = now_micros();
    let row = state
        .store
        .run(move |conn| {
            let Some(row) = jobs::find(conn, &job, &client)? else {
                return Ok::<_, ApiError>(None);
            };
            let stale_before = now - micros(HEARTBEAT_TIMEOUT);
            if row.status == jobs::RUNNING && row.heartbeat < stale_before {
                let message =
                    "the export stopped making progress (its worker is gone); start a new export";
                jobs::fail(conn, &job, "worker_lost", message, now, Some(stale_before))?;
                return Ok(jobs::find(conn, &job, &client)?);
            }
            Ok(Some(row))
        })
        .await?;
    Ok(row.filter(|r| {
        r.status != jobs::CANCELLED
            && !(r.status == jobs::COMPLETE && r.expires.is_some_and(|e| e <= now))
    }))
}

/// The output files of a complete job: (type, count).
fn outputs(row: &ExportJobRow) -> Vec<(String, u64)> {
    let list: Value = row
        .output_files
        .as_deref()
        .and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default();
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|f| Some((f["type"].as_str()?.to_string(), f["count"].as_u64()?)))
        .collect()
}

/// `GET /fhir/$export-status/{job}`: progress (202), the manifest (200) or the error (500).
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    responses(
        (status = 200, description = "Complete: the Bulk Data manifest; `Expires` says until when the files are kept", body = crate::api::openapi::schemas::ExportManifest, content_type = "application/json"),
        (status = 202, description = "Running; `X-Progress` and `Retry-After`"),
        (status = 404, description = "`not_found`: no such job for this client", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 500, description = "The job failed; the OperationOutcome says why", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/$export-status/{job}")]
pub async fn status(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = path.into_inner();
    let Some(row) = visible_job(&state, job.clone(), claims.client_id.clone()).await? else {
        return Err(not_known("the export job"));
    };
    match row.status.as_str() {
        jobs::RUNNING => {
            let total = row
                .patients_total
                .map_or_else(|| "?".to_string(), |t| t.to_string());
            Ok(HttpResponse::Accepted()
                .insert_header((
                    "X-Progress",
                    format!("patients {}/{total}", row.patients_done),
                ))
                .insert_header((RETRY_AFTER, RETRY_AFTER_SECS))
                .finish())
        }
        jobs::COMPLETE => {
            let base = state.fhir_base();
            let output: Vec<Value> = outputs(&row)
                .into_iter()
                .map(|(ty, count)| json!({"type": ty, "url": format!("{base}/$export-file/{job}/{ty}.ndjson"), "count": count}))
                .collect();
            let mut response = HttpResponse::Ok();
            if let Some(expires) = row.expires {
                let at = std::time::UNIX_EPOCH
                    + Duration::from_micros(u64::try_from(expires).unwrap_or(0));
                response.insert_header((EXPIRES, HttpDate::from(at)));
            }
            Ok(response.content_type("application/json").body(
                json!({
                    "transactionTime": dates::format_instant(row.transaction_time),
                    "request": row.request_url,
                    "requiresAccessToken": true,
                    "output": output,
                    "error": [],
                })
                .to_string(),
            ))
        }
        _ => {
            let code = row.error_code.as_deref().unwrap_or("export_failed");
            let message = row.error_message.as_deref().unwrap_or("the export failed");
            Ok(HttpResponse::InternalServerError()
                .content_type(FHIR_JSON)
                .body(outcome::operation_outcome("exception", code, message).to_string()))
        }
    }
}

/// `DELETE /fhir/$export-status/{job}`: cancels a running job or deletes a finished one.
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    responses(
        (status = 202, description = "Cancelled (or deleted) and its files removed", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
        (status = 404, description = "`not_found`", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[delete("/$export-status/{job}")]
pub async fn cancel(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let job = path.into_inner();
    if visible_job(&state, job.clone(), claims.client_id.clone())
        .await?
        .is_none()
    {
        return Err(not_known("the export job"));
    }
    let (id, client) = (job.clone(), claims.client_id.clone());
    if !state
        .store
        .run(move |conn| jobs::cancel(conn, &id, &client, now_micros()))
        .await?
    {
        return Err(not_known("the export job"));
    }
    // A running worker also removes the folder when it sees the cancellation.
    let dir = job_dir(&state, &job);
    tokio::task::spawn_blocking(move || remove_dir(&dir))
        .await
        .map_err(ApiError::internal)?;
    tracing::info!(job = %job, client_id = %claims.client_id, "export cancelled");
    Ok(HttpResponse::Accepted()
        .content_type(FHIR_JSON)
        .body(informational("the export was cancelled and its files removed").to_string()))
}

/// `GET /fhir/$export-file/{job}/{Type}.ndjson`: one output file, streamed.
#[utoipa::path(
    tag = "fhir",
    security(("client" = [])),
    params(
        ("job" = String, Path, description = "The job id"),
        ("file" = String, Path, description = "`{Type}.ndjson`"),
    ),
    responses(
        (status = 200, description = "One resource per line, de-identified", body = String, content_type = "application/fhir+ndjson"),
        (status = 404, description = "`not_found`: no such file, or not this client's, or expired", body = crate::api::openapi::schemas::OperationOutcome, content_type = "application/fhir+json"),
    )
)]
#[get("/$export-file/{job}/{file}")]
pub async fn download(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (job, name) = path.into_inner();
    let gone = || not_known("the export file");
    let row = visible_job(&state, job.clone(), claims.client_id.clone())
        .await?
        .filter(|r| r.status == jobs::COMPLETE);
    let Some(row) = row else { return Err(gone()) };
    let ty = name.strip_suffix(".ndjson").ok_or_else(gone)?;
    let Some((ty, count)) = outputs(&row).into_iter().find(|(t, _)| t == ty) else {
        return Err(gone());
    };
    let path = job_dir(&state, &job).join(format!("{ty}.ndjson"));
    let opened = tokio::task::spawn_blocking(move || File::open(path))
        .await
        .map_err(ApiError::internal)?;
    // Gone when expired meanwhile, or when this instance does not share the exports folder.
    let file = opened.map_err(|_| gone())?;
    let mut entry = audit::entry_for(
        &Principal::Client(Box::new(claims)),
        AuditAction::Export,
        AuditOutcome::Success,
        audit::request_id(&req),
    );
    entry.detail = BTreeMap::from([
        ("study".into(), row.study.clone()),
        ("job".into(), job),
        ("file".into(), ty),
        ("count".into(), count.to_string()),
    ]);
    audit::record(&state, entry).await?;
    let chunks = futures_util::stream::unfold(Some(file), |open| async move {
        let mut file = open?;
        let read = tokio::task::spawn_blocking(move || {
            let mut buf = vec![0u8; DOWNLOAD_CHUNK];
            let n = file.read(&mut buf)?;
            buf.truncate(n);
            Ok::<_, std::io::Error>((file, buf))
        })
        .await;
        match read {
            Ok(Ok((_, buf))) if buf.is_empty() => None,
            Ok(Ok((file, buf))) => Some((Ok(Bytes::from(buf)), Some(file))),
            Ok(Err(e)) => Some((Err(e), None)),
            Err(e) => Some((Err(std::io::Error::other(e)), None)),
        }
    });
    Ok(HttpResponse::Ok().content_type(NDJSON).streaming(chunks))
}

/// What a worker needs to run a job.
struct Job {
    id: String,
    study: String,
    types: Vec<String>,
    since: Option<i64>,
    /// The kick-off token's claims: purpose, scopes and the client, for decisions and audit.
    claims: AccessClaims,
    request_id: String,
    dir: PathBuf,
}

/// Why a job stopped early.
enum Stop {
    /// The client cancelled it (or another instance declared it dead).
    Cancelled,
    /// It failed: a stable code, a client-safe message, and the patient at hand.
    Failed {
        code: &'static str,
        message: String,
        patient: Option<String>,
    },
}

impl Stop {
    fn failed(code: &'static str, message: impl Into<String>) -> Stop {
        Stop::Failed {
            code,
            message: message.into(),
            patient: None,
        }
    }

    fn storage(e: std::io::Error) -> Stop {
        tracing::error!(error = %e, "export files cannot be written");
        Stop::failed(
            "export_storage_failed",
            "the export files could not be written",
        )
    }
}

impl From<ApiError> for Stop {
    fn from(e: ApiError) -> Stop {
        Stop::failed(e.code, e.message)
    }
}

/// Runs a job on its own thread with a small runtime, so that deciding and de-identifying
/// thousands of resources never occupies the HTTP workers.
fn spawn_worker(state: Data<AppState>, job: Job) -> std::io::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    std::thread::Builder::new()
        .name("export-worker".into())
        .spawn(move || runtime.block_on(run(&state, &job)))?;
    Ok(())
}

async fn run(state: &AppState, job: &Job) {
    let result = export(state, job).await;
    let id = job.id.clone();
    match result {
        Ok(files) => {
            let output = Value::Array(
                files
                    .iter()
                    .map(|(ty, count)| json!({"type": ty, "count": count}))
                    .collect(),
            )
            .to_string();
            let now = now_micros();
            let done = state
                .store
                .run(move |conn| jobs::complete(conn, &id, &output, now, now + micros(RETENTION)))
                .await;
            match done {
                Ok(true) => tracing::info!(job = %job.id, files = files.len(), "export complete"),
                Ok(false) => remove_dir(&job.dir),
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "export could not be marked complete");
                    remove_dir(&job.dir);
                }
            }
        }
        Err(Stop::Cancelled) => remove_dir(&job.dir),
        Err(Stop::Failed {
            code,
            message,
            patient,
        }) => {
            remove_dir(&job.dir);
            tracing::error!(job = %job.id, code, "export failed");
            let text = message.clone();
            let marked = state
                .store
                .run(move |conn| jobs::fail(conn, &id, code, &text, now_micros(), None))
                .await;
            if !matches!(marked, Ok(true)) {
                return;
            }
            let mut entry = audit::entry_for(
                &Principal::Client(Box::new(job.claims.clone())),
                AuditAction::Export,
                AuditOutcome::Error,
                job.request_id.clone(),
            );
            entry.patient_id = patient;
            entry.detail = BTreeMap::from([
                ("study".into(), job.study.clone()),
                ("job".into(), job.id.clone()),
                ("code".into(), code.into()),
            ]);
            if audit::record(state, entry).await.is_err() {
                tracing::error!(job = %job.id, "the export failure could not be audited");
            }
        }
    }
}

/// Progress reports, at most every [`HEARTBEAT_EVERY`] unless forced.
struct Heartbeat {
    last: Option<Instant>,
    done: i64,
    total: Option<i64>,
}

impl Heartbeat {
    /// Records progress when due; `Stop::Cancelled` when the job is no longer running.
    async fn tick(&mut self, state: &AppState, job: &Job, force: bool) -> Result<(), Stop> {
        if !force && self.last.is_some_and(|l| l.elapsed() < HEARTBEAT_EVERY) {
            return Ok(());
        }
        self.last = Some(Instant::now());
        // Patients who consent while the job runs may push `done` past the first count.
        let (id, done, total) = (
            job.id.clone(),
            self.done,
            self.total.map(|t| t.max(self.done)),
        );
        let running = state
            .store
            .run(move |conn| jobs::beat(conn, &id, now_micros(), done, total))
            .await
            .map_err(ApiError::from)?;
        if running {
            Ok(())
        } else {
            Err(Stop::Cancelled)
        }
    }
}

/// The job folder's files: one NDJSON file per type, and the audit spool.
struct Output {
    dir: PathBuf,
    files: BTreeMap<String, (BufWriter<File>, u64)>,
    spool: BufWriter<File>,
}

fn create_private(path: &FsPath) -> std::io::Result<File> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)
}

impl Output {
    fn create(dir: &FsPath) -> std::io::Result<Output> {
        std::fs::create_dir_all(dir)?;
        Ok(Output {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            spool: BufWriter::new(create_private(&dir.join(SPOOL))?),
        })
    }

    fn write(&mut self, resource: &Value) -> std::io::Result<()> {
        let ty = resource["resourceType"].as_str().unwrap_or_default();
        if !self.files.contains_key(ty) {
            let file = create_private(&self.dir.join(format!("{ty}.ndjson")))?;
            self.files.insert(ty.to_string(), (BufWriter::new(file), 0));
        }
        let Some((writer, count)) = self.files.get_mut(ty) else {
            unreachable!("inserted above")
        };
        serde_json::to_writer(&mut *writer, resource)?;
        writer.write_all(b"\n")?;
        *count += 1;
        Ok(())
    }

    fn spool(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.spool, entry)?;
        self.spool.write_all(b"\n")
    }

    /// Flushes every file to disk; returns (type, count) and the spool's path.
    fn finish(self) -> std::io::Result<(Vec<(String, u64)>, PathBuf)> {
        let mut out = Vec::new();
        for (ty, (writer, count)) in self.files {
            writer
                .into_inner()
                .map_err(|e| e.into_error())?
                .sync_all()?;
            out.push((ty, count));
        }
        self.spool
            .into_inner()
            .map_err(|e| e.into_error())?
            .sync_all()?;
        Ok((out, self.dir.join(SPOOL)))
    }
}

/// Runs the export; returns the files written, or why it stopped.
async fn export(state: &AppState, job: &Job) -> Result<Vec<(String, u64)>, Stop> {
    let mut out = Output::create(&job.dir).map_err(Stop::storage)?;
    let total = state
        .store
        .run(jobs::consenting_patient_count)
        .await
        .map_err(ApiError::from)?;
    let mut beat = Heartbeat {
        last: None,
        done: 0,
        total: Some(total),
    };
    beat.tick(state, job, true).await?;
    let mut after: Option<String> = None;
    loop {
        let from = after.clone();
        let page = state
            .store
            .run(move |conn| jobs::consenting_patients(conn, from.as_deref(), PATIENT_PAGE))
            .await
            .map_err(ApiError::from)?;
        let Some(last) = page.last().cloned() else {
            break;
        };
        // The registration is read again for each page: a removed client or a study it no
        // longer acts for stops the export.
        let requester = release::requester(state, &job.claims)
            .await
            .map_err(|e| match e.kind {
                ErrorKind::Unauthorized => Stop::failed(
                    "client_not_active",
                    "the client that started the export is no longer registered",
                ),
                _ => Stop::from(ApiError::from(e)),
            })?;
        if !may_export(&requester, &job.study) {
            return Err(Stop::failed(
                "not_authorized",
                "the client no longer acts for this study",
            ));
        }
        let requester = for_study(requester, &job.study);
        for patient in page {
            if let Some(entry) =
                export_patient(state, job, &requester, &patient, &mut out, &mut beat).await?
            {
                out.spool(&entry).map_err(Stop::storage)?;
            }
            beat.done += 1;
            beat.tick(state, job, false).await?;
        }
        after = Some(last);
    }
    beat.tick(state, job, true).await?;
    let (files, spool) = out.finish().map_err(Stop::storage)?;
    replay_audit(state, job, &mut beat, &spool).await?;
    Ok(files)
}

/// Exports one patient's permitted resources; returns the audit entry when any left.
async fn export_patient(
    state: &AppState,
    job: &Job,
    requester: &Requester,
    patient: &str,
    out: &mut Output,
    beat: &mut Heartbeat,
) -> Result<Option<AuditEntry>, Stop> {
    let patient_id = PatientId::parse(patient)
        .map_err(|_| ApiError::internal("a stored patient id is not a FHIR id"))?;
    let context = PatientContext::load(state, &patient_id)
        .await
        .map_err(ApiError::from)?;
    let profile = state.shaping.profile();
    let mut released: Vec<String> = Vec::new();
    let mut consent_ids = BTreeSet::new();
    let mut policies = BTreeSet::new();
    let mut after: Option<(String, String)> = None;
    loop {
        let page = PatientPage {
            patient_id: patient.to_string(),
            types: job.types.clone(),
            since: job.since,
            after: after.take(),
            limit: RESOURCE_BATCH,
        };
        let rows = state
            .store
            .run(move |conn| jobs::patient_resources(conn, &page))
            .await
            .map_err(ApiError::from)?;
        let Some((ty, id, _)) = rows.last() else {
            break;
        };
        after = Some((ty.clone(), id.clone()));
        let mut resources = Vec::with_capacity(rows.len());
        for (ty, id, body) in rows {
            let value: Value = serde_json::from_str(&body)
                .map_err(|_| ApiError::internal(format!("stored body of {ty}/{id} is not JSON")))?;
            resources.push(value);
        }
        let recipient = Recipient {
            claims: &job.claims,
            requester,
        };
        let mut permitted = release::decide_each(
            state,
            recipient,
            &context,
            resources,
            PolicyAction::Export,
            Interaction::Read,
        );
        // Types the profile refuses are withheld by shaping, and the audit entry lists only
        // what shaping released.
        for Permitted { decision, .. } in &mut permitted {
            // An export is de-identified whatever the policies ask for.
            if !decision.obligations.iter().any(Obligation::deidentifies) {
                decision.obligations.push(Obligation::safe_harbor());
            }
        }
        let shaped =
            release::shape_for_study(state, &job.study, &context, permitted).map_err(|e| {
                Stop::Failed {
                    code: e.code,
                    message: e.message,
                    patient: Some(patient.to_string()),
                }
            })?;
        for resource in shaped.resources() {
            out.write(resource.body()).map_err(Stop::storage)?;
            let decision = resource.decision();
            consent_ids.extend(
                decision
                    .consent
                    .deciding
                    .iter()
                    .map(|p| p.consent_id.clone())
                    .filter(|c| validate::is_valid_id(c)),
            );
            policies.extend(decision.policies.iter().cloned());
        }
        released.extend(shaped.sources());
        beat.tick(state, job, false).await?;
    }
    if released.is_empty() {
        return Ok(None);
    }
    let mut entry = audit::entry_for(
        &Principal::Client(Box::new(job.claims.clone())),
        AuditAction::Export,
        AuditOutcome::Success,
        job.request_id.clone(),
    );
    entry.patient_id = Some(patient.to_string());
    entry.detail = BTreeMap::from([
        ("study".into(), job.study.clone()),
        ("job".into(), job.id.clone()),
        ("count".into(), released.len().to_string()),
        (
            "profile".into(),
            format!("{} {}", profile.name(), profile.version()),
        ),
    ]);
    entry.resources = released;
    entry.consents = consent_ids.into_iter().collect();
    entry.policies = policies.into_iter().collect();
    Ok(Some(entry))
}

/// Appends the spooled per-patient entries, durably, a chunk at a time.
async fn replay_audit(
    state: &AppState,
    job: &Job,
    beat: &mut Heartbeat,
    spool: &FsPath,
) -> Result<(), Stop> {
    let reader = BufReader::new(File::open(spool).map_err(Stop::storage)?);
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
        if chunk.len() == AUDIT_CHUNK || (line.is_none() && !chunk.is_empty()) {
            let results =
                futures_util::future::join_all(chunk.drain(..).map(|e| audit::record(state, e)))
                    .await;
            if let Some(Err(e)) = results.into_iter().find(Result::is_err) {
                return Err(e.into());
            }
            beat.tick(state, job, false).await?;
        }
        if line.is_none() {
            break;
        }
    }
    std::fs::remove_file(spool).map_err(Stop::storage)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kick_off_parameters() {
        let ok = |q: &str| parse_kick_off(q).unwrap();
        assert_eq!(ok(""), KickOff::default());
        assert_eq!(
            ok("_outputFormat=application%2Ffhir%2Bndjson").types,
            Vec::<String>::new()
        );
        assert_eq!(
            ok("_type=Observation,Patient,Observation").types,
            vec!["Observation", "Patient"]
        );
        assert_eq!(
            ok("_since=2024-01-01T00:00:00Z").since,
            Some(1_704_067_200_000_000)
        );
        assert_eq!(
            ok("_since=2024-01-01T01:00:00+01:00").since,
            Some(1_704_067_200_000_000),
            "an unencoded + is a space"
        );
        assert_eq!(
            ok("_since=2024-01-01T01:00:00%2B01:00").since,
            Some(1_704_067_200_000_000)
        );
        for (query, code) in [
            ("_outputFormat=text/csv", "unsupported_output_format"),
            ("_type=Observation,Nonsense", "invalid_type"),
            ("_type=", "invalid_type"),
            ("_since=2024-01-01", "invalid_since"),
            ("_since=yesterday", "invalid_since"),
            ("_type=Patient&_type=Observation", "duplicate_parameter"),
            (
                "_typeFilter=Observation%3Fcode%3Dx",
                "unsupported_parameter",
            ),
            ("patient=Patient/1", "unsupported_parameter"),
            ("_count=10", "unknown_parameter"),
        ] {
            assert_eq!(parse_kick_off(query).unwrap_err().code, code, "{query}");
        }
    }

    #[test]
    fn only_a_researcher_of_the_study_may_export() {
        let requester = |role: &str, refs: &[&str]| Requester {
            client_id: "c".into(),
            role: Role::parse(role).expect("a role"),
            organization: "o".into(),
            references: refs.iter().map(|r| r.to_string()).collect(),
        };
        assert!(may_export(
            &requester("researcher", &["Device/c", "Group/study1"]),
            "study1"
        ));
        assert!(!may_export(
            &requester("researcher", &["Group/study1"]),
            "study2"
        ));
        assert!(!may_export(
            &requester("researcher", &["Group/study10"]),
            "study1"
        ));
        assert!(!may_export(
            &requester("clinician", &["Group/study1"]),
            "study1"
        ));
        let narrowed = for_study(
            requester(
                "researcher",
                &["Device/c", "Group/study1", "Group/study2", "Organization/o"],
            ),
            "study2",
        );
        assert_eq!(
            narrowed.references,
            vec!["Device/c", "Group/study2", "Organization/o"]
        );
    }
}
