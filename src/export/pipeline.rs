//! The export of one job as a bounded pipeline on both cores:
//!
//! ```text
//! reader ──units──> shapers (one per core) ──shaped──> writer (the job's thread)
//!    ^                                                    │
//!    └──────────────────── credits ───────────────────────┘
//! ```
//!
//! - **Read** (one thread, one connection): candidate patients a page at a time
//!   ([`PATIENT_PAGE`]), then for the whole page one query for their consents, one for their
//!   Patient records and keyset pages of [`ROWS_PER_READ`] of their other resources. The rows
//!   are cut into units: one patient's resources, at most [`UNIT_ROWS`] each, the Patient
//!   record first in the patient's first unit.
//! - **Decide and shape** (a pool of one thread per core): each stored body is parsed once,
//!   decided ([`release::decide_each`], action `export`), de-identified under the study's key
//!   and leak-scanned ([`release::shape_for_study`]), and serialised once. A resource that fails the scan is withheld and reported, not fatal.
//! - **Write** (`writer.rs`): units in their original order, so the output is deterministic
//!   and a patient whose Patient record is withheld is withheld whole.
//!
//! A person's own copy ([`Scope::Own`]) runs the same pipeline with one candidate, its
//! patient, whose consents are not read: each resource is filtered as a study's, then leaves
//! as stored when `release::direct::in_own_copy` admits it (no decision, no
//! de-identification, nothing withheld).
//!
//! Memory is bounded by the credits: the reader takes one before it sends a unit and the
//! writer returns it once the unit is written, so at most [`IN_FLIGHT`] units exist at a time
//! whatever the population. A failure anywhere that is not about one resource (storage, the
//! study key, a consent that no longer parses) stops the whole job with its cause.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::sync::{Arc, Mutex, OnceLock};

use serde_json::Value;

use super::job::{for_study, may_export};
use super::worker::{ExportMetrics, Job, Scope, Stop};
use super::writer::{self, Written};
use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::consent::Consent;
use crate::decision::Requester;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::policy::{Obligation, PolicyAction};
use crate::release::{self, Interaction, PatientContext, Permitted, Recipient, Withheld};
use crate::store::DbConn;
use crate::store::exports::{self as jobs, ResourcePage, StoredResource};

/// Candidate patients read at a time.
pub const PATIENT_PAGE: i64 = 64;
/// Resource rows read per query.
pub const ROWS_PER_READ: i64 = 2048;
/// Most resources in one unit of work.
pub const UNIT_ROWS: usize = 256;
/// Most units between the reader and the writer.
pub const IN_FLIGHT: usize = 16;

/// One patient as the reader found them, shared by the units of that patient.
pub(super) struct PatientInput {
    /// The patient.
    pub patient: PatientId,
    /// The requester facts as of the page this patient was read in; `None` for a person's
    /// own copy, which nothing decides.
    requester: Option<Arc<Requester>>,
    /// The stored bodies of the patient's consents.
    consents: Vec<String>,
    /// The stored Patient record, and when it was stored.
    source: Option<(String, i64)>,
    /// Parsed once, by whichever shaper reaches the patient first.
    context: OnceLock<Result<PatientContext, Stop>>,
}

impl PatientInput {
    fn context(&self) -> Result<&PatientContext, Stop> {
        self.context
            .get_or_init(|| {
                let consents = self
                    .consents
                    .iter()
                    .map(|body| {
                        serde_json::from_str::<Value>(body)
                            .ok()
                            .and_then(|v| Consent::from_fhir(&v).ok())
                            .ok_or_else(|| {
                                Stop::internal(format!(
                                    "a stored consent of Patient/{} no longer validates",
                                    self.patient
                                ))
                            })
                    })
                    .collect::<Result<Vec<_>, Stop>>()?;
                let sources = match &self.source {
                    Some((body, _)) => vec![serde_json::from_str(body).map_err(|_| {
                        Stop::internal(format!("stored Patient/{} is not JSON", self.patient))
                    })?],
                    None => Vec::new(),
                };
                Ok(PatientContext {
                    patient: self.patient.clone(),
                    consents: consents.into(),
                    sources: sources.into(),
                    // An export is de-identified, and de-identified records are not marked
                    // as disputed (`Released::mark_disputed`), so the disputes are not read.
                    disputed: Default::default(),
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// Some of one patient's resources.
pub(super) struct Unit {
    seq: u64,
    input: Arc<PatientInput>,
    /// Whether the Patient record goes out with this unit (the patient's first).
    with_patient: bool,
    rows: Vec<StoredResource>,
    first: bool,
    last: bool,
}

/// One shaped resource, serialised.
pub(super) struct Line {
    /// Its type (the file it goes to).
    pub resource_type: String,
    /// `Type/pseudonym`.
    pub reference: String,
    /// The stored resource it came from, `Type/id` (for the audit entry).
    pub source: String,
    /// The NDJSON line, without its newline.
    pub json: Vec<u8>,
}

/// A unit after deciding and shaping.
pub(super) struct Shaped {
    pub seq: u64,
    pub input: Arc<PatientInput>,
    pub first: bool,
    pub last: bool,
    /// What leaves, in order.
    pub lines: Vec<Line>,
    /// The consents and policies that let them (for the audit entry).
    pub consents: Vec<String>,
    pub policies: Vec<String>,
    /// What shaping withheld.
    pub withheld: Vec<Withheld>,
}

/// What reaches the writer.
pub(super) enum Msg {
    Shaped(Shaped),
    Failed(Stop),
    /// The reader sent this many units and no more.
    Done(u64),
}

/// Runs the export of `job`; `total` is the number of candidate patients when it started.
pub(super) fn run(
    gateway: &Gateway,
    job: &Job,
    metrics: &ExportMetrics,
    shutdown: &AtomicBool,
    total: i64,
) -> Result<Written, Stop> {
    let shapers = std::thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 8));
    let (credit_tx, credit_rx) = sync_channel::<()>(IN_FLIGHT);
    for _ in 0..IN_FLIGHT {
        credit_tx
            .send(())
            .map_err(|_| Stop::internal("export credits"))?;
    }
    let (work_tx, work_rx) = sync_channel::<Unit>(IN_FLIGHT);
    let (report_tx, report_rx) = sync_channel::<Msg>(IN_FLIGHT + shapers + 2);
    let work_rx = Arc::new(Mutex::new(work_rx));
    std::thread::scope(|scope| {
        let reader_report = report_tx.clone();
        std::thread::Builder::new()
            .name("export-read".into())
            .spawn_scoped(scope, move || {
                let msg = match read(gateway, job, shutdown, &credit_rx, &work_tx) {
                    Ok(units) => Msg::Done(units),
                    Err(stop) => Msg::Failed(stop),
                };
                let _ = reader_report.send(msg);
            })
            .map_err(|e| Stop::internal(format!("cannot start the export reader: {e}")))?;
        for _ in 0..shapers {
            let (work_rx, report) = (work_rx.clone(), report_tx.clone());
            std::thread::Builder::new()
                .name("export-shape".into())
                .spawn_scoped(scope, move || shape_all(gateway, job, &work_rx, &report))
                .map_err(|e| Stop::internal(format!("cannot start an export shaper: {e}")))?;
        }
        drop(report_tx);
        writer::write(gateway, job, metrics, shutdown, total, report_rx, credit_tx)
    })
}

/// The reader: every candidate patient, cut into units. Returns how many units it sent.
fn read(
    gateway: &Gateway,
    job: &Job,
    shutdown: &AtomicBool,
    credits: &Receiver<()>,
    work: &SyncSender<Unit>,
) -> Result<u64, Stop> {
    let mut conn = gateway.store.conn().map_err(Stop::from_store)?;
    let exports_patients =
        job.request.types.is_empty() || job.request.types.iter().any(|t| t == "Patient");
    let mut sent = 0u64;
    let mut emit = |mut unit: Unit| -> Result<(), Stop> {
        if shutdown.load(Ordering::Relaxed) {
            return Err(Stop::Shutdown);
        }
        // No credit means the writer has stopped; so does the reader.
        credits.recv().map_err(|_| Stop::Cancelled)?;
        unit.seq = sent;
        sent += 1;
        work.send(unit).map_err(|_| Stop::Cancelled)
    };
    let mut after: Option<String> = None;
    loop {
        let mut page = match &job.scope {
            Scope::Study { .. } => {
                jobs::consenting_patients(&mut conn, after.as_deref(), PATIENT_PAGE)
                    .map_err(Stop::from_store)?
            }
            // A person's own copy: their one patient, whether or not they hold a consent.
            Scope::Own { patient, .. } if after.is_none() => vec![patient.to_string()],
            Scope::Own { .. } => Vec::new(),
        };
        let Some(last) = page.last().cloned() else {
            break;
        };
        // `patient` narrows the study to the members named; a patient who is not a member
        // is never a candidate, so nothing of theirs can go out.
        if !job.request.patients.is_empty() {
            page.retain(|p| job.request.patients.contains(p));
        }
        let requester = match &job.scope {
            Scope::Study { study, claims, .. } => {
                Some(Arc::new(current_requester(&mut conn, claims, study)?))
            }
            Scope::Own { .. } => None,
        };
        let inputs = patient_inputs(&mut conn, &page, requester.as_ref())?;
        let mut cut = Cutter {
            inputs: inputs.into_iter(),
            current: None,
            exports_patients,
        };
        let mut from: Option<(String, String, String)> = None;
        loop {
            let rows = jobs::resources_of(
                &mut conn,
                &ResourcePage {
                    patients: page.clone(),
                    types: job.request.types.clone(),
                    except: vec!["Patient".into()],
                    since: job.request.since,
                    after: from.take(),
                    limit: ROWS_PER_READ,
                },
            )
            .map_err(Stop::from_store)?;
            let full = rows.len() as i64 == ROWS_PER_READ;
            from = rows
                .last()
                .map(|r| (r.patient_id.clone(), r.resource_type.clone(), r.id.clone()));
            for row in rows {
                cut.push(row, &mut emit)?;
            }
            if !full {
                break;
            }
        }
        cut.finish(&mut emit)?;
        after = Some(last);
    }
    Ok(sent)
}

/// The client's registration, read again for each page: a removed client, or one that no
/// longer acts for the study, stops the export.
fn current_requester(
    conn: &mut DbConn,
    claims: &AccessClaims,
    study: &str,
) -> Result<Requester, Stop> {
    let client = registry::active(conn, &claims.client_id)
        .map_err(Stop::from_domain)?
        .ok_or_else(|| {
            Stop::failed(
                "client_not_active",
                "the client that started the export is no longer registered",
            )
        })?;
    let requester = Requester::of(&client);
    if !may_export(&requester, study) {
        return Err(Stop::failed(
            "not_authorized",
            "the client no longer acts for this study",
        ));
    }
    Ok(for_study(requester, study))
}

/// The page's patients with their consents (only when something decides) and Patient
/// records: two queries for the page.
fn patient_inputs(
    conn: &mut DbConn,
    page: &[String],
    requester: Option<&Arc<Requester>>,
) -> Result<Vec<Arc<PatientInput>>, Stop> {
    let mut consents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    if requester.is_some() {
        for row in jobs::of_type_for(conn, "Consent", page).map_err(Stop::from_store)? {
            consents.entry(row.patient_id).or_default().push(row.body);
        }
    }
    let mut sources: BTreeMap<String, (String, i64)> = jobs::of_type_for(conn, "Patient", page)
        .map_err(Stop::from_store)?
        .into_iter()
        .filter(|r| r.id == r.patient_id)
        .map(|r| (r.patient_id, (r.body, r.last_updated)))
        .collect();
    page.iter()
        .map(|p| {
            let patient = PatientId::parse(p)
                .map_err(|_| Stop::internal("a stored patient id is not a FHIR id"))?;
            Ok(Arc::new(PatientInput {
                patient,
                requester: requester.cloned(),
                consents: consents.remove(p).unwrap_or_default(),
                source: sources.remove(p),
                context: OnceLock::new(),
            }))
        })
        .collect()
}

/// Cuts rows ordered by patient into units, in the order of the page's patients (the same
/// database order), including patients with no rows at all.
struct Cutter {
    inputs: std::vec::IntoIter<Arc<PatientInput>>,
    current: Option<Unit>,
    exports_patients: bool,
}

impl Cutter {
    fn start(&self, input: Arc<PatientInput>) -> Unit {
        Unit {
            seq: 0,
            with_patient: self.exports_patients && input.source.is_some(),
            input,
            rows: Vec::new(),
            first: true,
            last: false,
        }
    }

    fn push(
        &mut self,
        row: StoredResource,
        emit: &mut impl FnMut(Unit) -> Result<(), Stop>,
    ) -> Result<(), Stop> {
        if let Some(current) = &self.current
            && current.input.patient.as_str() != row.patient_id
        {
            self.close(emit)?;
        }
        if self.current.is_none() {
            loop {
                let input = self
                    .inputs
                    .next()
                    .ok_or_else(|| Stop::internal("a resource row of a patient not in the page"))?;
                if input.patient.as_str() == row.patient_id {
                    self.current = Some(self.start(input));
                    break;
                }
                let mut empty = self.start(input);
                empty.last = true;
                emit(empty)?;
            }
        }
        if let Some(current) = &mut self.current {
            current.rows.push(row);
            if current.rows.len() == UNIT_ROWS {
                let next = Unit {
                    seq: 0,
                    input: current.input.clone(),
                    with_patient: false,
                    rows: Vec::new(),
                    first: false,
                    last: false,
                };
                emit(std::mem::replace(current, next))?;
            }
        }
        Ok(())
    }

    fn close(&mut self, emit: &mut impl FnMut(Unit) -> Result<(), Stop>) -> Result<(), Stop> {
        if let Some(mut unit) = self.current.take() {
            unit.last = true;
            emit(unit)?;
        }
        Ok(())
    }

    fn finish(mut self, emit: &mut impl FnMut(Unit) -> Result<(), Stop>) -> Result<(), Stop> {
        self.close(emit)?;
        while let Some(input) = self.inputs.next() {
            let mut unit = self.start(input);
            unit.last = true;
            emit(unit)?;
        }
        Ok(())
    }
}

/// A shaper: units from the shared queue until it closes.
fn shape_all(gateway: &Gateway, job: &Job, work: &Mutex<Receiver<Unit>>, report: &SyncSender<Msg>) {
    loop {
        let unit = work.lock().unwrap_or_else(|e| e.into_inner()).recv();
        let Ok(unit) = unit else { return };
        let msg = match shape(gateway, job, unit) {
            Ok(shaped) => Msg::Shaped(shaped),
            Err(stop) => Msg::Failed(stop),
        };
        if report.send(msg).is_err() {
            return;
        }
    }
}

/// Decides and shapes one unit: each body parsed once and each output serialised once.
fn shape(gateway: &Gateway, job: &Job, unit: Unit) -> Result<Shaped, Stop> {
    let input = &unit.input;
    let context = input.context()?;
    let mut resources = Vec::with_capacity(unit.rows.len() + 1);
    if unit.with_patient
        && let (Some(patient), Some((_, stored))) = (context.sources.first(), &input.source)
        && job.request.since.is_none_or(|since| *stored > since)
        && job.request.filters.admits("Patient", patient, *stored)
    {
        resources.push(patient.clone());
    }
    for row in unit.rows {
        let value: Value = serde_json::from_str(&row.body).map_err(|_| {
            Stop::internal(format!(
                "stored body of {}/{} is not JSON",
                row.resource_type, row.id
            ))
        })?;
        if job
            .request
            .filters
            .admits(&row.resource_type, &value, row.last_updated)
        {
            resources.push(value);
        }
    }
    let (study, claims, requester) = match (&job.scope, &input.requester) {
        (Scope::Study { study, claims, .. }, Some(requester)) => (study, claims, requester),
        _ => return own_copy(unit.seq, &unit.input, unit.first, unit.last, resources),
    };
    let recipient = Recipient { claims, requester };
    let mut permitted = release::decide_each(
        gateway,
        recipient,
        context,
        resources,
        PolicyAction::Export,
        Interaction::Read,
    );
    for Permitted { decision, .. } in &mut permitted {
        // An export is de-identified whatever the policies ask for.
        if !decision.obligations.iter().any(Obligation::deidentifies) {
            decision.obligations.push(Obligation::safe_harbor());
        }
    }
    let released = release::shape_for_study(gateway, study, context, permitted)
        .map_err(|e| Stop::from_domain(e).about(&input.patient))?;
    let (resources, withheld) = released.into_parts();
    let mut consents = Vec::new();
    let mut policies = Vec::new();
    let mut lines = Vec::with_capacity(resources.len());
    for resource in &resources {
        let decision = resource.decision();
        consents.extend(
            decision
                .consent
                .deciding
                .iter()
                .map(|p| p.consent_id.clone()),
        );
        policies.extend(decision.policies.iter().cloned());
        let json = resource.to_json();
        lines.push(Line {
            resource_type: resource.resource_type().to_string(),
            reference: format!(
                "{}/{}",
                resource.resource_type(),
                resource
                    .body()
                    .and_then(|b| b.get("id"))
                    .and_then(Value::as_str)
                    .unwrap_or_default()
            ),
            source: resource.source().to_string(),
            json,
        });
    }
    consents.sort();
    consents.dedup();
    policies.sort();
    policies.dedup();
    Ok(Shaped {
        seq: unit.seq,
        input: unit.input,
        first: unit.first,
        last: unit.last,
        lines,
        consents,
        policies,
        withheld,
    })
}

/// A unit of a person's own copy: what `release::direct` gives them, as stored (no decision,
/// no de-identification; gateway-internal records left out).
fn own_copy(
    seq: u64,
    input: &Arc<PatientInput>,
    first: bool,
    last: bool,
    resources: Vec<Value>,
) -> Result<Shaped, Stop> {
    let mut lines = Vec::with_capacity(resources.len());
    for resource in resources.into_iter().filter(release::direct::in_own_copy) {
        let reference = format!(
            "{}/{}",
            resource["resourceType"].as_str().unwrap_or_default(),
            resource["id"].as_str().unwrap_or_default()
        );
        let json = serde_json::to_vec(&resource)
            .map_err(|e| Stop::internal(format!("cannot serialise an exported resource: {e}")))?;
        lines.push(Line {
            resource_type: resource["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            source: reference.clone(),
            reference,
            json,
        });
    }
    Ok(Shaped {
        seq,
        input: input.clone(),
        first,
        last,
        lines,
        consents: Vec::new(),
        policies: Vec::new(),
        withheld: Vec::new(),
    })
}
