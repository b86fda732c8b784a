//! De-identified, scanned resources per second on one core: the pure path of a research
//! export, without storage or HTTP.
//!
//! The workload is the demo population (`consentgate::demo`, seed 2026) of 200 patients,
//! generated in memory with their `urn:uuid:` references resolved to `Type/id` the way the
//! gateway stores them. Per patient, as the export does it: build the patient's identifier
//! matcher once from its source resources, then de-identify and scan each resource.
//!
//! - `safe_harbor/population`: the whole per-patient path (matcher + de-identify + scan).
//! - `safe_harbor/deidentify`: de-identification alone.
//! - `safe_harbor/scan`: the leak scan alone, over outputs made beforehand.
//! - `safe_harbor/matcher`: building the per-patient matchers alone.
//!
//! Throughput is in resources (elements) per second of the benchmark thread's CPU time (read
//! from `/proc/thread-self/schedstat`), not of wall time: the machine is shared, and other
//! processes would otherwise inflate the figures; on an idle machine the two agree. Run with
//! `cargo bench --bench deid`;
//! profile with `cargo bench --bench deid -- --profile-time 20 safe_harbor/population`
//! under `perf record -g`. The figures are in `docs/PERFORMANCE.md`.

use std::collections::HashMap;
use std::hint::black_box;
use std::time::Duration;

use consentgate::deid::{Deidentifier, IdentifierSet, Profile, StudyKey};
use consentgate::demo::{DemoOptions, patient_bundles};
use criterion::measurement::{Measurement, ValueFormatter};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use serde_json::Value;
use time::macros::date;

/// Patients in the workload.
const PATIENTS: usize = 200;

/// One patient's id and resources.
struct PatientRecords {
    id: String,
    resources: Vec<Value>,
}

/// The demo population with references resolved, as the gateway stores it.
fn population() -> Vec<PatientRecords> {
    let options = DemoOptions {
        patients: PATIENTS,
        seed: 2026,
    };
    patient_bundles(&options)
        .map(|bundle| {
            let entries = bundle["entry"].as_array().cloned().unwrap_or_default();
            let mut targets = HashMap::new();
            for entry in &entries {
                let resource = &entry["resource"];
                targets.insert(
                    entry["fullUrl"].as_str().unwrap_or("").to_string(),
                    format!(
                        "{}/{}",
                        resource["resourceType"].as_str().unwrap_or(""),
                        resource["id"].as_str().unwrap_or("")
                    ),
                );
            }
            let mut resources: Vec<Value> =
                entries.into_iter().map(|e| e["resource"].clone()).collect();
            for resource in &mut resources {
                resolve(resource, &targets);
            }
            let id = resources
                .iter()
                .find(|r| r["resourceType"] == "Patient")
                .and_then(|p| p["id"].as_str())
                .unwrap_or("")
                .to_string();
            PatientRecords { id, resources }
        })
        .collect()
}

/// Rewrites `urn:uuid:` references within the bundle to `Type/id`; references to the
/// directory become `Organization/<uuid>`-style literal references too.
fn resolve(value: &mut Value, targets: &HashMap<String, String>) {
    match value {
        Value::Object(map) => {
            for (key, inner) in map.iter_mut() {
                if key == "reference"
                    && let Some(text) = inner.as_str()
                {
                    if let Some(target) = targets.get(text) {
                        *inner = Value::String(target.clone());
                    } else if let Some(uuid) = text.strip_prefix("urn:uuid:") {
                        *inner = Value::String(format!("Organization/{uuid}"));
                    }
                    continue;
                }
                resolve(inner, targets);
            }
        }
        Value::Array(items) => items.iter_mut().for_each(|item| resolve(item, targets)),
        _ => {}
    }
}

/// The calling thread's CPU time, in nanoseconds, as criterion's measurement.
struct ThreadCpuTime;

impl ThreadCpuTime {
    /// Nanoseconds this thread has run on a CPU; the first field of `schedstat`.
    fn now() -> u64 {
        std::fs::read_to_string("/proc/thread-self/schedstat")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }
}

impl Measurement for ThreadCpuTime {
    type Intermediate = u64;
    type Value = u64;

    fn start(&self) -> u64 {
        ThreadCpuTime::now()
    }
    fn end(&self, start: u64) -> u64 {
        ThreadCpuTime::now().saturating_sub(start)
    }
    fn add(&self, a: &u64, b: &u64) -> u64 {
        a + b
    }
    fn zero(&self) -> u64 {
        0
    }
    fn to_f64(&self, value: &u64) -> f64 {
        *value as f64
    }
    fn formatter(&self) -> &dyn ValueFormatter {
        &CpuFormatter
    }
}

/// Formats CPU nanoseconds as times and throughputs as elements per CPU second.
struct CpuFormatter;

impl ValueFormatter for CpuFormatter {
    fn scale_values(&self, typical: f64, values: &mut [f64]) -> &'static str {
        let (factor, unit) = match typical {
            t if t < 1e3 => (1.0, "ns"),
            t if t < 1e6 => (1e-3, "µs"),
            t if t < 1e9 => (1e-6, "ms"),
            _ => (1e-9, "s"),
        };
        values.iter_mut().for_each(|v| *v *= factor);
        unit
    }

    fn scale_throughputs(
        &self,
        typical: f64,
        throughput: &Throughput,
        values: &mut [f64],
    ) -> &'static str {
        let count = match throughput {
            Throughput::Elements(n) | Throughput::ElementsAndBytes { elements: n, .. } => *n,
            Throughput::Bytes(n) | Throughput::BytesDecimal(n) | Throughput::Bits(n) => *n,
        } as f64;
        let per_second = count * 1e9 / typical;
        let (denominator, unit) = if per_second < 1e3 {
            (1.0, " elem/cpu-s")
        } else if per_second < 1e6 {
            (1e3, "Kelem/cpu-s")
        } else {
            (1e6, "Melem/cpu-s")
        };
        values
            .iter_mut()
            .for_each(|v| *v = count * 1e9 / *v / denominator);
        unit
    }

    fn scale_for_machines(&self, _values: &mut [f64]) -> &'static str {
        "ns"
    }
}

fn safe_harbor(c: &mut Criterion<ThreadCpuTime>) {
    let patients = population();
    let total: usize = patients.iter().map(|p| p.resources.len()).sum();
    let profile = Profile::safe_harbor();
    let key = StudyKey::from_bytes(b"bench-study-key-0123456789abcdef").expect("key");
    let deid = Deidentifier::new(&profile, &key, date!(2026 - 01 - 01));

    let mut group = c.benchmark_group("safe_harbor");
    group
        .throughput(Throughput::Elements(total as u64))
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(15));

    group.bench_function("population", |b| {
        b.iter(|| {
            let mut kept = 0usize;
            for patient in &patients {
                let sources = IdentifierSet::from_sources(&patient.resources);
                for resource in &patient.resources {
                    if deid
                        .deidentify_checked(resource, &patient.id, &sources)
                        .is_ok()
                    {
                        kept += 1;
                    }
                }
            }
            black_box(kept)
        })
    });

    group.bench_function("deidentify", |b| {
        b.iter(|| {
            for patient in &patients {
                for resource in &patient.resources {
                    black_box(deid.deidentify(resource, &patient.id).ok());
                }
            }
        })
    });

    let sources: Vec<IdentifierSet> = patients
        .iter()
        .map(|p| IdentifierSet::from_sources(&p.resources))
        .collect();
    let outputs: Vec<Vec<Value>> = patients
        .iter()
        .map(|p| {
            p.resources
                .iter()
                .filter_map(|r| deid.deidentify(r, &p.id).ok())
                .collect()
        })
        .collect();
    group.bench_function("scan", |b| {
        b.iter(|| {
            for (set, outputs) in sources.iter().zip(&outputs) {
                for output in outputs {
                    black_box(set.scan(output));
                }
            }
        })
    });

    group.bench_function("matcher", |b| {
        b.iter(|| {
            for patient in &patients {
                black_box(IdentifierSet::from_sources(&patient.resources));
            }
        })
    });
    group.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().with_measurement(ThreadCpuTime);
    targets = safe_harbor
}
criterion_main!(benches);
