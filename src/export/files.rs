//! A job's folder, `{data_dir}/exports/{job}/`: one NDJSON file per resource type, the
//! `error` file of OperationOutcomes, and the audit spool; the list of files a complete job
//! keeps in its row; removal and the sweep of folders whose jobs are over.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::audit::AuditEntry;
use crate::gateway::Gateway;
use crate::records::dates::now_micros;
use crate::release::{Withheld, WithheldReason};
use crate::store::exports as jobs;
use crate::store::{DbConn, StoreError};

/// The file of OperationOutcomes the manifest's `error` array points to.
pub const ERROR_FILE: &str = "errors.ndjson";
/// The audit spool (not an output file: output files are `{Type}.ndjson`).
const SPOOL: &str = "audit-spool.jsonl";
/// Bytes buffered per open file.
const WRITE_BUFFER: usize = 64 * 1024;
/// The code system of the codes in the `error` file.
pub const ISSUE_SYSTEM: &str = "https://consentgate.dev/fhir/CodeSystem/export-issue";

/// One file of a complete job, as its row keeps it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OutputFile {
    /// The resource type of its lines (`OperationOutcome` for the error file).
    #[serde(rename = "type")]
    pub resource_type: String,
    /// How many lines.
    pub count: u64,
    /// Whether it is the `error` file.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub error: bool,
}

impl OutputFile {
    /// The file's name in the job folder and in its URL.
    pub fn file_name(&self) -> String {
        if self.error {
            ERROR_FILE.to_string()
        } else {
            format!("{}.ndjson", self.resource_type)
        }
    }
}

/// The files of a complete job from its row (none when absent or unreadable).
pub fn decode(text: Option<&str>) -> Vec<OutputFile> {
    text.and_then(|t| serde_json::from_str(t).ok())
        .unwrap_or_default()
}

/// The row's form of a job's files.
pub fn encode(files: &[OutputFile]) -> String {
    serde_json::to_string(files).unwrap_or_else(|_| "[]".into())
}

/// The folder of every job.
pub fn exports_dir(gateway: &Gateway) -> PathBuf {
    gateway.settings.data_path(Path::new("exports"))
}

/// The folder of one job.
pub fn job_dir(gateway: &Gateway, job: &str) -> PathBuf {
    exports_dir(gateway).join(job)
}

/// Removes a job folder; a folder already gone is fine.
pub fn remove_dir(dir: &Path) {
    if let Err(e) = std::fs::remove_dir_all(dir)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::error!(error = %e, "cannot remove an export folder");
    }
}

/// Removes the folders under `root` whose jobs are over (cancelled, failed, expired,
/// unknown).
pub fn sweep(root: &Path, conn: &mut DbConn) -> Result<(), StoreError> {
    let Ok(entries) = std::fs::read_dir(root) else {
        return Ok(());
    };
    let ids: Vec<String> = entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    for id in jobs::removable(conn, &ids, now_micros())? {
        remove_dir(&root.join(id));
    }
    Ok(())
}

fn create_private(path: &Path) -> std::io::Result<BufWriter<File>> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    Ok(BufWriter::with_capacity(WRITE_BUFFER, options.open(path)?))
}

/// An OperationOutcome line of the `error` file.
fn issue(severity: &str, issue_type: &str, code: &str, text: &str, at: Option<&str>) -> Value {
    let mut issue = json!({
        "severity": severity,
        "code": issue_type,
        "details": {"coding": [{"system": ISSUE_SYSTEM, "code": code}], "text": text},
        "diagnostics": text,
    });
    if let Some(at) = at.filter(|a| !a.is_empty()) {
        issue["expression"] = json!([at]);
    }
    json!({"resourceType": "OperationOutcome", "issue": [issue]})
}

/// The `error` line of a withheld resource: its pseudonymous reference, the element path and
/// the kind of value, never the value.
pub fn withheld_outcome(w: &Withheld) -> Value {
    let text = match w.reason {
        WithheldReason::Leak(kind) => format!(
            "{} was withheld: after de-identification it still held a {kind} of the patient's records at {}",
            w.reference, w.path
        ),
        WithheldReason::ModifierExtension => format!(
            "{} was withheld: it carries a modifier extension the de-identification profile does not list",
            w.reference
        ),
        WithheldReason::MethodNotApplicable => format!(
            "{} was withheld: an anonymizer rule's method cannot apply to the element at {}",
            w.reference, w.path
        ),
        WithheldReason::PatientWithheld => format!(
            "{} was withheld with its patient, whose Patient resource failed de-identification",
            w.reference
        ),
    };
    issue(
        "error",
        "security",
        &format!("withheld_{}", w.reason.code()),
        &text,
        Some(&w.path),
    )
}

/// The `error` line of a kick-off parameter (or `_typeFilter`) that `Prefer:
/// handling=lenient` had ignored: the export went ahead without it.
pub fn ignored_outcome(message: &str) -> Value {
    issue(
        "warning",
        "not-supported",
        "ignored_parameter",
        message,
        None,
    )
}

/// The open files of a running job.
pub struct Output {
    dir: PathBuf,
    files: BTreeMap<String, (BufWriter<File>, u64)>,
    errors: Option<(BufWriter<File>, u64)>,
    spool: BufWriter<File>,
}

impl Output {
    /// Creates the job folder and its audit spool.
    pub fn create(dir: &Path) -> std::io::Result<Output> {
        std::fs::create_dir_all(dir)?;
        Ok(Output {
            dir: dir.to_path_buf(),
            files: BTreeMap::new(),
            errors: None,
            spool: create_private(&dir.join(SPOOL))?,
        })
    }

    /// Appends one serialised resource to its type's file.
    pub fn write(&mut self, resource_type: &str, line: &[u8]) -> std::io::Result<()> {
        if !self.files.contains_key(resource_type) {
            let file = create_private(&self.dir.join(format!("{resource_type}.ndjson")))?;
            self.files.insert(resource_type.to_string(), (file, 0));
        }
        if let Some((writer, count)) = self.files.get_mut(resource_type) {
            writer.write_all(line)?;
            writer.write_all(b"\n")?;
            *count += 1;
        }
        Ok(())
    }

    /// Appends one OperationOutcome to the `error` file.
    pub fn error(&mut self, outcome: &Value) -> std::io::Result<()> {
        if self.errors.is_none() {
            self.errors = Some((create_private(&self.dir.join(ERROR_FILE))?, 0));
        }
        if let Some((writer, count)) = &mut self.errors {
            serde_json::to_writer(&mut *writer, outcome)?;
            writer.write_all(b"\n")?;
            *count += 1;
        }
        Ok(())
    }

    /// Spools a patient's audit entry until the job completes.
    pub fn spool(&mut self, entry: &AuditEntry) -> std::io::Result<()> {
        serde_json::to_writer(&mut self.spool, entry)?;
        self.spool.write_all(b"\n")
    }

    /// Flushes every file to disk; returns the files and the spool's path.
    pub fn finish(self) -> std::io::Result<(Vec<OutputFile>, PathBuf)> {
        fn sync(writer: BufWriter<File>) -> std::io::Result<()> {
            writer.into_inner().map_err(|e| e.into_error())?.sync_all()
        }
        let mut out = Vec::new();
        for (resource_type, (writer, count)) in self.files {
            sync(writer)?;
            out.push(OutputFile {
                resource_type,
                count,
                error: false,
            });
        }
        if let Some((writer, count)) = self.errors {
            sync(writer)?;
            out.push(OutputFile {
                resource_type: "OperationOutcome".into(),
                count,
                error: true,
            });
        }
        sync(self.spool)?;
        Ok((out, self.dir.join(SPOOL)))
    }
}
