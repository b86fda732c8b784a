//! When the writer extends the patient index (`store::patient_index`): after a commit once
//! enough entries are behind it or the oldest has waited long enough, and whenever the
//! writer has been idle for a moment. The larger the step, the more entries share each
//! patient's index leaf; the smaller, the shorter the tail readers take from the table.

use std::time::{Duration, Instant};

use crate::store::patient_index::{self, IndexKey};
use crate::store::{DbConn, StoreError, write_tx};

/// Entries behind the index at which the writer extends it after a commit.
pub(super) const BEHIND_AT_MOST: usize = 8_192;
/// The longest an entry waits for the index while the writer is busy.
pub(super) const WAITS_AT_MOST: Duration = Duration::from_millis(500);
/// How long the writer, with entries behind the index, waits for new ones before it
/// extends the index instead.
pub(super) const IDLE: Duration = Duration::from_millis(50);
/// Most sequences indexed in one transaction.
const STEP: i64 = 32_768;

/// What the writer has committed since it last extended the index. On PostgreSQL another
/// instance's writer may have extended it meanwhile; an extension then finds less to do.
#[derive(Debug, Default)]
pub(super) struct Behind {
    /// The sequences `[from, to)` committed since, when they are one run; `None` when
    /// nothing was, or when they are not (another instance's entries came between).
    run: Option<(i64, i64)>,
    /// The index keys of the entries of `run`.
    keys: Vec<IndexKey>,
    entries: usize,
    since: Option<Instant>,
    /// After a failed extension, not before this.
    retry_at: Option<Instant>,
}

impl Behind {
    /// A batch of `n` entries committed from sequence `first`, with their index keys.
    pub(super) fn committed(&mut self, first: i64, n: usize, keys: Vec<IndexKey>) {
        let end = first + n as i64;
        self.run = match self.run {
            None if self.entries == 0 => Some((first, end)),
            Some((from, to)) if to == first => Some((from, end)),
            _ => None,
        };
        if self.run.is_some() {
            self.keys.extend(keys);
        } else {
            self.keys = Vec::new();
        }
        self.entries += n;
        self.since.get_or_insert_with(Instant::now);
    }

    /// Whether entries are behind the index.
    pub(super) fn any(&self) -> bool {
        self.entries > 0
    }

    /// How many entries are behind, as this writer counts them.
    pub(super) fn entries(&self) -> usize {
        self.entries
    }

    /// Whether the writer, still busy, should extend the index now.
    pub(super) fn due(&self) -> bool {
        let waited = self.since.is_some_and(|t| t.elapsed() >= WAITS_AT_MOST);
        (self.entries >= BEHIND_AT_MOST || waited) && self.retry_allowed()
    }

    /// Whether a failed extension's pause is over.
    pub(super) fn retry_allowed(&self) -> bool {
        self.retry_at.is_none_or(|t| Instant::now() >= t)
    }

    /// An extension failed: tried again after a pause, not after every commit, from the
    /// table.
    pub(super) fn failed(&mut self) {
        self.run = None;
        self.keys = Vec::new();
        self.retry_at = Some(Instant::now() + WAITS_AT_MOST);
    }

    /// Extends the index to the log's end: with the keys of the run this writer committed
    /// when the index stops where the run starts (the usual case, and the only one on
    /// SQLite after the writer's first extension), otherwise from the table, a bounded step
    /// per transaction. Forgets what was behind once done.
    pub(super) fn extend(&mut self, conn: &mut DbConn) -> Result<(), StoreError> {
        if let Some((from, to)) = self.run {
            let keys = &self.keys;
            if write_tx(conn, |conn| {
                patient_index::extend_with(conn, from, to, keys)
            })? {
                *self = Behind::default();
                return Ok(());
            }
        }
        loop {
            let step = write_tx(conn, |conn| patient_index::extend(conn, STEP))?;
            if step < STEP {
                *self = Behind::default();
                return Ok(());
            }
        }
    }
}
