//! The end of the pipeline, on the job's own thread: shaped units back in their original
//! order, their lines into the type files, what was withheld into the `error` file, the log
//! and the metric, one spooled audit entry per exported patient, and the job's heartbeat.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender};
use std::time::Instant;

use super::files::{self, Output, OutputFile};
use super::pipeline::{Msg, Shaped};
use super::worker::{ExportMetrics, HEARTBEAT_EVERY, Job, Scope, Stop};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::gateway::Gateway;
use crate::records::dates::now_micros;
use crate::release::{Withheld, WithheldReason};
use crate::store::exports as jobs;

/// What a finished pipeline wrote.
#[derive(Debug)]
pub(super) struct Written {
    /// The files, with their line counts.
    pub files: Vec<OutputFile>,
    /// The spooled per-patient audit entries.
    pub spool: PathBuf,
    /// Patients with at least one resource exported.
    pub patients: u64,
    /// Resources exported.
    pub resources: u64,
    /// Resources withheld, by why.
    pub withheld: BTreeMap<WithheldReason, u64>,
    /// Candidate patients handled (all of them, once done).
    pub done: i64,
}

/// One patient's share of the output so far.
struct PatientAcc {
    /// Its Patient record was withheld: so is everything else of it.
    withheld_whole: bool,
    sources: Vec<String>,
    consents: BTreeSet<String>,
    policies: BTreeSet<String>,
    withheld: u64,
}

struct Writer<'a> {
    gateway: &'a Gateway,
    job: &'a Job,
    metrics: &'a ExportMetrics,
    out: Output,
    patient: Option<PatientAcc>,
    written: u64,
    patients: u64,
    withheld: BTreeMap<WithheldReason, u64>,
    done: i64,
    total: i64,
    last_beat: Instant,
}

/// Writes what the shapers send until the reader's last unit is written.
pub(super) fn write(
    gateway: &Gateway,
    job: &Job,
    metrics: &ExportMetrics,
    shutdown: &AtomicBool,
    total: i64,
    report: Receiver<Msg>,
    credits: SyncSender<()>,
) -> Result<Written, Stop> {
    let mut w = Writer {
        gateway,
        job,
        metrics,
        out: Output::create(&job.dir).map_err(Stop::storage)?,
        patient: None,
        written: 0,
        patients: 0,
        withheld: BTreeMap::new(),
        done: 0,
        total,
        last_beat: Instant::now(),
    };
    for message in &job.request.ignored {
        w.out
            .error(&files::ignored_outcome(message))
            .map_err(Stop::storage)?;
    }
    w.beat()?;
    let mut pending: BTreeMap<u64, Shaped> = BTreeMap::new();
    let mut next = 0u64;
    let mut expected: Option<u64> = None;
    while expected != Some(next) {
        match report.recv() {
            Ok(Msg::Shaped(shaped)) => {
                pending.insert(shaped.seq, shaped);
            }
            Ok(Msg::Done(units)) => expected = Some(units),
            Ok(Msg::Failed(stop)) => return Err(stop),
            Err(_) => return Err(Stop::internal("the export pipeline stopped early")),
        }
        while let Some(shaped) = pending.remove(&next) {
            w.apply(shaped)?;
            next += 1;
            // The reader may be gone already; a credit nobody takes is harmless.
            let _ = credits.try_send(());
            if shutdown.load(Ordering::Relaxed) {
                return Err(Stop::Shutdown);
            }
            if w.last_beat.elapsed() >= HEARTBEAT_EVERY {
                w.beat()?;
            }
        }
    }
    w.beat()?;
    let (files, spool) = w.out.finish().map_err(Stop::storage)?;
    Ok(Written {
        files,
        spool,
        patients: w.patients,
        resources: w.written,
        withheld: w.withheld,
        done: w.done,
    })
}

impl Writer<'_> {
    /// Records progress; `Stop::Cancelled` when the job is no longer running.
    fn beat(&mut self) -> Result<(), Stop> {
        self.last_beat = Instant::now();
        // Patients who consent while the job runs may push `done` past the first count.
        let total = self.total.max(self.done);
        let mut conn = self.gateway.store.conn().map_err(Stop::from_store)?;
        let running = jobs::beat(
            &mut conn,
            &self.job.id,
            now_micros(),
            self.done,
            Some(total),
        )
        .map_err(Stop::from_store)?;
        if running {
            Ok(())
        } else {
            Err(Stop::Cancelled)
        }
    }

    fn apply(&mut self, shaped: Shaped) -> Result<(), Stop> {
        if shaped.first || self.patient.is_none() {
            self.patient = Some(PatientAcc {
                withheld_whole: false,
                sources: Vec::new(),
                consents: BTreeSet::new(),
                policies: BTreeSet::new(),
                withheld: 0,
            });
        }
        if shaped
            .withheld
            .iter()
            .any(|w| w.reference.starts_with("Patient/"))
            && let Some(acc) = &mut self.patient
        {
            acc.withheld_whole = true;
        }
        for withheld in &shaped.withheld {
            self.withhold(withheld)?;
        }
        let whole = self.patient.as_ref().is_some_and(|a| a.withheld_whole);
        for line in shaped.lines {
            if whole {
                self.withhold(&Withheld {
                    reference: line.reference,
                    path: String::new(),
                    reason: WithheldReason::PatientWithheld,
                })?;
                continue;
            }
            self.out
                .write(&line.resource_type, &line.json)
                .map_err(Stop::storage)?;
            self.written += 1;
            if let Some(acc) = &mut self.patient {
                acc.sources.push(line.source);
            }
        }
        if !whole && let Some(acc) = &mut self.patient {
            acc.consents.extend(shaped.consents);
            acc.policies.extend(shaped.policies);
        }
        if shaped.last {
            self.done += 1;
            if let Some(acc) = self.patient.take()
                && !acc.sources.is_empty()
            {
                let patient = shaped.input.patient.as_str();
                self.patients += 1;
                let entry = self.entry(patient, acc);
                self.out.spool(&entry).map_err(Stop::storage)?;
            }
        }
        Ok(())
    }

    /// Reports a withheld resource: the `error` file, the log and the metric, by reference,
    /// path and kind, never a value.
    fn withhold(&mut self, w: &Withheld) -> Result<(), Stop> {
        tracing::warn!(
            job = %self.job.id,
            study = %self.job.subject().1,
            reference = %w.reference,
            path = %w.path,
            kind = w.reason.code(),
            "a resource was withheld from a study export"
        );
        self.out
            .error(&files::withheld_outcome(w))
            .map_err(Stop::storage)?;
        self.metrics.withheld(w.reason);
        *self.withheld.entry(w.reason).or_default() += 1;
        if let Some(acc) = &mut self.patient {
            acc.withheld += 1;
        }
        Ok(())
    }

    /// One exported patient's audit entry: what left, under which consents and policies. For
    /// a person's own copy it is the job's one entry, as the person's own access.
    fn entry(&self, patient: &str, acc: PatientAcc) -> AuditEntry {
        let job = self.job;
        let mut entry = job.principal().audit_entry(
            AuditAction::Export,
            AuditOutcome::Success,
            job.request_id.clone(),
        );
        entry.patient_id = Some(patient.to_string());
        // Extended, not replaced: a delegate's entry already names the patient and delegation.
        entry.detail.extend([
            ("job".to_string(), job.id.clone()),
            ("count".to_string(), acc.sources.len().to_string()),
        ]);
        if let Scope::Study { study, profile, .. } = &job.scope {
            entry.detail.insert("study".into(), study.clone());
            entry.detail.insert("profile".into(), profile.clone());
        }
        if acc.withheld > 0 {
            entry
                .detail
                .insert("withheld".into(), acc.withheld.to_string());
        }
        entry.resources = acc.sources;
        entry.consents = acc
            .consents
            .into_iter()
            .filter(|c| crate::records::validate::is_valid_id(c))
            .collect();
        entry.policies = acc.policies.into_iter().collect();
        entry
    }
}
