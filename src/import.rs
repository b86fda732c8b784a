//! `consentgate import`: loading FHIR Bundles and NDJSON files straight into the store,
//! through the same ingest code as `POST /fhir`.
//!
//! A `.json` file is a Bundle (transaction, batch or collection: as posted to `/fhir`) or a
//! single resource. An `.ndjson` file holds one resource per line; lines are written in
//! transactions of [`NDJSON_CHUNK`], and a line that fails is reported by number and code
//! (never by content) while the others are kept. Nothing fails silently: the summary counts
//! every failure and the command exits non-zero when there was one.

use std::io::{BufRead, BufReader, Read};
use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::config::Limits;
use crate::labels::Labeller;
use crate::records::outcome::describe;
use crate::records::{RecordError, bundle, ingest, validate};
use crate::store::{DbConn, Store, write_tx};

/// NDJSON lines written per transaction.
pub const NDJSON_CHUNK: usize = 500;

/// What an import did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct ImportSummary {
    /// Resources stored (created or updated).
    pub stored: usize,
    /// Failures, as `file:line: code: message` (no record content).
    pub failures: Vec<String>,
}

/// Imports `files` in order, showing a progress bar over their total size unless `quiet`.
pub fn import_files(
    store: &Store,
    limits: &Limits,
    labeller: &Labeller,
    files: &[impl AsRef<Path>],
    quiet: bool,
) -> anyhow::Result<ImportSummary> {
    let total: u64 = files
        .iter()
        .map(|f| std::fs::metadata(f.as_ref()).map(|m| m.len()).unwrap_or(0))
        .sum();
    let bar = if quiet {
        ProgressBar::hidden()
    } else {
        ProgressBar::new(total)
    };
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {wide_bar} {bytes}/{total_bytes} {msg}",
        )?
        .progress_chars("=> "),
    );
    let mut conn = store.conn()?;
    let mut summary = ImportSummary::default();
    for file in files {
        let path = file.as_ref();
        let name = path.display().to_string();
        bar.set_message(
            path.file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        );
        let is_ndjson = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("ndjson"));
        let reader = std::fs::File::open(path).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let reader = bar.wrap_read(reader);
        if is_ndjson {
            import_ndjson(&mut conn, limits, labeller, reader, &name, &mut summary)?;
        } else {
            import_json(&mut conn, limits, labeller, reader, &name, &mut summary)?;
        }
    }
    bar.finish_and_clear();
    Ok(summary)
}

fn failure(summary: &mut ImportSummary, place: String, e: &RecordError) {
    let (_, _, code, message) = describe(e);
    summary.failures.push(format!("{place}: {code}: {message}"));
}

fn import_json(
    conn: &mut DbConn,
    limits: &Limits,
    labeller: &Labeller,
    mut reader: impl Read,
    name: &str,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    let value = match validate::parse_body(&bytes, limits) {
        Ok(v) => v,
        Err(e) => {
            failure(summary, name.to_string(), &e);
            return Ok(());
        }
    };
    let is_bundle = value.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(
            value.get("type").and_then(Value::as_str),
            Some("transaction" | "batch" | "collection")
        );
    if is_bundle {
        match bundle::process(conn, value, limits, labeller) {
            Ok(response) => count_bundle_response(&response, name, summary),
            Err(e) => failure(summary, name.to_string(), &e),
        }
    } else {
        match write_tx(conn, |conn| store_one(conn, labeller, value)) {
            Ok(()) => summary.stored += 1,
            Err(e) => failure(summary, name.to_string(), &e),
        }
    }
    Ok(())
}

/// Counts the entries of a response Bundle, reporting those that failed (batches).
fn count_bundle_response(response: &Value, name: &str, summary: &mut ImportSummary) {
    let entries = response
        .get("entry")
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default();
    for (i, entry) in entries.iter().enumerate() {
        let status = entry
            .pointer("/response/status")
            .and_then(Value::as_str)
            .unwrap_or_default();
        if status.starts_with('2') {
            summary.stored += 1;
        } else {
            let text = entry
                .pointer("/response/outcome/issue/0/diagnostics")
                .and_then(Value::as_str)
                .unwrap_or(status);
            summary.failures.push(format!("{name}: entry {i}: {text}"));
        }
    }
}

/// Stores one resource under its own id, or a new one when it has none.
fn store_one(conn: &mut DbConn, labeller: &Labeller, resource: Value) -> Result<(), RecordError> {
    let resource_type = validate::resource(&resource)?.to_string();
    let id = resource
        .get("id")
        .and_then(Value::as_str)
        .map_or_else(ingest::new_id, str::to_string);
    ingest::put_labelled(
        conn,
        labeller,
        &crate::records::source::Writer::Gateway,
        &resource_type,
        &id,
        resource,
    )
    .map(|_| ())
}

fn import_ndjson(
    conn: &mut DbConn,
    limits: &Limits,
    labeller: &Labeller,
    reader: impl Read,
    name: &str,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    let mut lines = BufReader::new(reader).lines().enumerate().peekable();
    while lines.peek().is_some() {
        let mut chunk = Vec::with_capacity(NDJSON_CHUNK);
        for (number, line) in lines.by_ref().take(NDJSON_CHUNK) {
            chunk.push((number + 1, line?));
        }
        let mut failed_in_chunk = Vec::new();
        let stored = write_tx(conn, |conn| {
            let mut stored = 0;
            for (number, line) in &chunk {
                if line.trim().is_empty() {
                    continue;
                }
                let result = validate::parse_body(line.as_bytes(), limits)
                    .and_then(|value| store_one(conn, labeller, value));
                match result {
                    Ok(()) => stored += 1,
                    // Storage failures abort the chunk; bad lines are reported and skipped.
                    Err(RecordError::Store(e)) => return Err(RecordError::Store(e)),
                    Err(e) => failed_in_chunk.push((*number, e)),
                }
            }
            Ok::<_, RecordError>(stored)
        });
        match stored {
            Ok(n) => summary.stored += n,
            Err(e) => return Err(anyhow::anyhow!("{name}: {e}")),
        }
        for (number, e) in failed_in_chunk {
            failure(summary, format!("{name}:{number}"), &e);
        }
    }
    Ok(())
}
