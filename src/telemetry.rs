//! Tracing output: human-readable or JSON lines, filtered as configured.
//!
//! **Written off the request threads.** Every request ends in one log line
//! (`api::observe`), and writing it to stderr from the worker that served the request was one
//! `write` system call per request, 4 % of a consent-checked read's CPU
//! (`docs/PERFORMANCE.md`, thirteenth step). Lines are handed instead to one thread of their
//! own (`tracing-appender`'s non-blocking writer), which writes whatever has queued since its
//! last write through a buffer, in one call, and flushes whenever the queue is empty: a line
//! is never held back waiting for others.
//!
//! **Nothing is dropped.** The queue holds [`QUEUED_LINES`] lines; a request that finds it
//! full waits for room (the writer is not lossy) rather than losing its line. The lines still
//! queued when the process ends are written when the [`LogGuard`] is dropped, which
//! `cli::run` holds until its command returns. A process killed outright can lose the lines
//! of its last moments, as a buffered log can; the audit log, not this one, is the record of
//! disclosures, and its entries are durable before any answer leaves.

use std::io::{BufWriter, Stderr};

use tracing_appender::non_blocking::{NonBlocking, NonBlockingBuilder, WorkerGuard};
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LogSettings};

/// How many lines may wait for the log writer before a request waits for room.
pub const QUEUED_LINES: usize = 65_536;

/// The write buffer of the log writer: the most one write call carries.
const WRITE_BUFFER: usize = 64 * 1024;

/// Keeps the log writer running; dropping it writes every queued line and stops it.
#[must_use = "dropping the guard stops the log writer"]
#[derive(Debug)]
pub struct LogGuard {
    _writer: Option<WorkerGuard>,
}

/// Installs the global subscriber once; later calls (tests) keep the first and get a guard
/// that holds nothing.
pub fn init(settings: &LogSettings) -> LogGuard {
    let filter = EnvFilter::try_new(&settings.filter).unwrap_or_else(|_| EnvFilter::new("info"));
    let (writer, guard) = stderr_writer();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer);
    let installed = match settings.format {
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
        LogFormat::Pretty => builder.try_init(),
    };
    LogGuard {
        _writer: installed.is_ok().then_some(guard),
    }
}

/// Stderr behind the non-blocking writer: a writer thread of its own, not lossy.
fn stderr_writer() -> (NonBlocking, WorkerGuard) {
    NonBlockingBuilder::default()
        .lossy(false)
        .buffered_lines_limit(QUEUED_LINES)
        .thread_name("log-writer")
        .finish(BufWriter::<Stderr>::with_capacity(
            WRITE_BUFFER,
            std::io::stderr(),
        ))
}
