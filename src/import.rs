//! `consentgate import`: loading FHIR Bundles and NDJSON files straight into the store,
//! through the same ingest code as `POST /fhir`.
//!
//! A `.json` file is a Bundle (transaction, batch or collection: as posted to `/fhir`) or a
//! single resource. An `.ndjson` file holds one resource per line; lines are written in
//! transactions of [`NDJSON_CHUNK`], and a line that fails is reported by number and code
//! (never by content) while the others are kept. Nothing fails silently: the summary counts
//! every failure and the command exits non-zero when there was one.
//!
//! Both loaders here are two-stage pipelines: one thread reads, parses, labels and plans
//! ([`bundle::prepare`]) while the calling thread, the only writer, stores what is ready.
//! SQLite has one writer at a time, so the writer is the stage to keep busy; the other core
//! does the rest. [`load_demo`] also stores [`DEMO_GROUP`] patients per database
//! transaction, since each commit waits for a flush to disk.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::mpsc::sync_channel;

use indicatif::{ProgressBar, ProgressStyle};
use serde_json::Value;

use crate::config::Limits;
use crate::demo::{self, DemoOptions};
use crate::labels::Labeller;
use crate::records::outcome::describe;
use crate::records::source::Writer;
use crate::records::{RecordError, bundle, ingest, validate};
use crate::store::{DbConn, Store, write_tx};

/// NDJSON lines written per transaction.
pub const NDJSON_CHUNK: usize = 500;

/// Demo patients stored per database transaction.
pub const DEMO_GROUP: usize = 32;

/// Bundles prepared ahead of the writer; bounds the loaders' memory.
pub const PREPARED_AHEAD: usize = 8;

/// Loads the demo directory and `opts.patients` patients: generated, labelled and planned on
/// one thread, stored on this one, [`DEMO_GROUP`] patients per transaction (the directory
/// first, alone, since every patient refers to it). Calls `progress` once per Bundle stored;
/// returns how many resources were stored. Any refusal stops the load: generated data that
/// does not pass is a bug, not a record to skip.
pub fn load_demo(
    store: &Store,
    limits: &Limits,
    labeller: &Labeller,
    opts: &DemoOptions,
    mut progress: impl FnMut(),
) -> anyhow::Result<usize> {
    let mut conn = store.conn()?;
    let (ready, prepared) = sync_channel::<Result<bundle::Prepared, RecordError>>(PREPARED_AHEAD);
    let opts = *opts;
    std::thread::scope(|scope| {
        std::thread::Builder::new()
            .name("demo-prepare".into())
            .spawn_scoped(scope, move || {
                let bundles = std::iter::once(demo::directory_bundle(&opts))
                    .chain(demo::patient_bundles(&opts));
                for b in bundles {
                    // A closed channel means the writer has stopped on an error.
                    if ready.send(bundle::prepare(b, limits, labeller)).is_err() {
                        return;
                    }
                }
            })?;
        let mut stored = 0usize;
        let mut group: Vec<bundle::Prepared> = Vec::with_capacity(DEMO_GROUP);
        let mut flush = |group: &mut Vec<bundle::Prepared>, conn: &mut DbConn| {
            let count = group.len();
            let entries: usize = group.iter().map(bundle::Prepared::len).sum();
            bundle::commit_together(conn, &Writer::Gateway, std::mem::take(group))
                .map_err(|e| anyhow::anyhow!("demo bundle refused: {e}"))?;
            stored += entries;
            (0..count).for_each(|_| progress());
            anyhow::Ok(())
        };
        for (index, b) in prepared.into_iter().enumerate() {
            group.push(b.map_err(|e| anyhow::anyhow!("demo bundle refused: {e}"))?);
            // The directory goes alone: one small transaction, then groups of patients.
            if index == 0 || group.len() == DEMO_GROUP {
                flush(&mut group, &mut conn)?;
            }
        }
        if !group.is_empty() {
            flush(&mut group, &mut conn)?;
        }
        Ok(stored)
    })
}

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
    files: &[impl AsRef<Path> + Sync],
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
    let (ready, read) = sync_channel::<anyhow::Result<Read>>(PREPARED_AHEAD);
    std::thread::scope(|scope| {
        let bar = &bar;
        std::thread::Builder::new()
            .name("import-read".into())
            .spawn_scoped(scope, move || {
                for file in files {
                    let path = file.as_ref();
                    bar.set_message(
                        path.file_name()
                            .map(|n| n.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                    );
                    let name = path.display().to_string();
                    let sent = match std::fs::File::open(path) {
                        Ok(f) => read_file(bar.wrap_read(f), path, name, limits, labeller, &ready),
                        Err(e) => ready.send(Err(anyhow::anyhow!("{name}: {e}"))).is_ok(),
                    };
                    // A closed channel means the writer has stopped on an error.
                    if !sent {
                        return;
                    }
                }
            })?;
        for item in read {
            store_read(&mut conn, labeller, item?, &mut summary)?;
        }
        anyhow::Ok(())
    })?;
    bar.finish_and_clear();
    Ok(summary)
}

/// What the reading thread hands the writer.
enum Read {
    /// A Bundle file, labelled and planned (or why not).
    Bundle(String, Result<bundle::Prepared, RecordError>),
    /// A file holding one resource (or why it could not be read).
    One(String, Result<Value, RecordError>),
    /// Up to [`NDJSON_CHUNK`] lines of an NDJSON file, parsed, with their line numbers.
    Lines(String, Vec<(usize, Result<Value, RecordError>)>),
}

/// Reads, parses and prepares one file onto `ready`; `false` when the writer has gone.
fn read_file(
    mut reader: impl std::io::Read,
    path: &Path,
    name: String,
    limits: &Limits,
    labeller: &Labeller,
    ready: &std::sync::mpsc::SyncSender<anyhow::Result<Read>>,
) -> bool {
    let is_ndjson = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("ndjson"));
    if is_ndjson {
        let mut lines = BufReader::new(reader).lines().enumerate().peekable();
        while lines.peek().is_some() {
            let mut chunk = Vec::with_capacity(NDJSON_CHUNK);
            for (number, line) in lines.by_ref().take(NDJSON_CHUNK) {
                let line = match line {
                    Ok(line) => line,
                    Err(e) => return ready.send(Err(anyhow::anyhow!("{name}: {e}"))).is_ok(),
                };
                if !line.trim().is_empty() {
                    chunk.push((number + 1, validate::parse_body(line.as_bytes(), limits)));
                }
            }
            if ready.send(Ok(Read::Lines(name.clone(), chunk))).is_err() {
                return false;
            }
        }
        return true;
    }
    let mut bytes = Vec::new();
    if let Err(e) = std::io::Read::read_to_end(&mut reader, &mut bytes) {
        return ready.send(Err(anyhow::anyhow!("{name}: {e}"))).is_ok();
    }
    let read = match validate::parse_body(&bytes, limits) {
        Ok(value) if is_bundle(&value) => {
            Read::Bundle(name, bundle::prepare(value, limits, labeller))
        }
        other => Read::One(name, other),
    };
    ready.send(Ok(read)).is_ok()
}

/// Whether `value` is a Bundle that `POST /fhir` would process.
fn is_bundle(value: &Value) -> bool {
    value.get("resourceType").and_then(Value::as_str) == Some("Bundle")
        && matches!(
            value.get("type").and_then(Value::as_str),
            Some("transaction" | "batch" | "collection")
        )
}

/// Stores what the reading thread prepared; only a storage failure is an error, anything
/// else is counted in `summary`.
fn store_read(
    conn: &mut DbConn,
    labeller: &Labeller,
    read: Read,
    summary: &mut ImportSummary,
) -> anyhow::Result<()> {
    match read {
        Read::Bundle(name, prepared) => {
            match prepared.and_then(|p| bundle::commit(conn, &Writer::Gateway, p)) {
                Ok((response, _)) => count_bundle_response(&response, &name, summary),
                Err(e) => failure(summary, name, &e),
            }
        }
        Read::One(name, value) => {
            match value.and_then(|v| write_tx(conn, |conn| store_one(conn, labeller, v))) {
                Ok(()) => summary.stored += 1,
                Err(e) => failure(summary, name, &e),
            }
        }
        Read::Lines(name, chunk) => {
            let mut failed_in_chunk = Vec::new();
            let stored = write_tx(conn, |conn| {
                let mut stored = 0;
                for (number, value) in chunk {
                    match value.and_then(|value| store_one(conn, labeller, value)) {
                        Ok(()) => stored += 1,
                        // Storage failures abort the chunk; bad lines are reported and skipped.
                        Err(RecordError::Store(e)) => return Err(RecordError::Store(e)),
                        Err(e) => failed_in_chunk.push((number, e)),
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
    }
    Ok(())
}

fn failure(summary: &mut ImportSummary, place: String, e: &RecordError) {
    let (_, _, code, message) = describe(e);
    summary.failures.push(format!("{place}: {code}: {message}"));
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
