//! Which CPUs the HTTP workers run on (`server.pin_workers`), and blocking work kept free of
//! that choice.
//!
//! On a host whose CPUs are the gateway's, each HTTP worker gets a CPU of its own. Left to
//! itself, the kernel of the benchmark machine ran both workers on one CPU for whole runs,
//! queued behind each other, while the other CPU held the audit writer, the disk's
//! interrupts and the load generator and sat idle during fsyncs. Pinned, the search page won
//! seven pairs of seven against the same code unpinned, the operator's read seven, the
//! consent-checked read five (`docs/PERFORMANCE.md`, "Twenty-first step").
//!
//! A thread inherits its creator's CPUs, so the blocking threads a pinned worker starts
//! (its runtime's pool) would run on its one CPU too. Blocking work therefore goes through
//! [`spawn_blocking`], which gives its thread back every CPU the process may use before
//! the first piece of work it runs.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use serde::{Deserialize, Serialize};

/// Whether the HTTP workers are pinned, one CPU each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PinWorkers {
    /// Pinned when the database is the embedded SQLite and the workers are exactly as many
    /// as the CPUs this process may run on: a host, VM or exclusive cpuset given to the
    /// gateway. With fewer workers than CPUs (a CPU quota, a shared machine) the kernel
    /// places them, and so with PostgreSQL, whose server processes may share the host and
    /// which pinned workers could not step aside from (measured: a small loss there).
    Auto,
    /// Pinned, round robin over the CPUs this process may run on.
    On,
    /// Left to the kernel.
    Off,
}

/// The CPUs this process may run on, as the server started: what blocking threads are
/// given back. Set only once workers are pinned.
static ALLOWED: OnceLock<Vec<usize>> = OnceLock::new();

/// Where each HTTP worker goes: the next CPU in turn.
#[derive(Debug)]
pub struct WorkerPlacement {
    cpus: Vec<usize>,
    next: AtomicUsize,
}

impl WorkerPlacement {
    /// The placement for `workers` HTTP workers under `setting`, on the CPUs the calling
    /// thread may run on, for a gateway whose database is the embedded SQLite or not;
    /// `None` when the workers are left to the kernel (also where affinity cannot be read).
    pub fn plan(
        setting: PinWorkers,
        workers: usize,
        embedded_database: bool,
    ) -> Option<WorkerPlacement> {
        let cpus = allowed_cpus()?;
        let pin = match setting {
            PinWorkers::Off => false,
            PinWorkers::On => true,
            PinWorkers::Auto => embedded_database && workers == cpus.len(),
        };
        (pin && !cpus.is_empty()).then(|| WorkerPlacement {
            cpus,
            next: AtomicUsize::new(0),
        })
    }

    /// The CPUs the workers are spread over.
    pub fn cpus(&self) -> &[usize] {
        &self.cpus
    }

    /// Pins the calling thread (a worker, as it starts) to the next CPU in turn; returns
    /// that CPU, or `None` when the kernel refused (the worker then runs where it may).
    pub fn pin_current(&self) -> Option<usize> {
        // Blocking threads started from now on must be able to give the pin back.
        ALLOWED.get_or_init(|| self.cpus.clone());
        let turn = self.next.fetch_add(1, Ordering::Relaxed);
        let cpu = self.cpus[turn % self.cpus.len()];
        set_current(&[cpu]).then_some(cpu)
    }
}

/// `tokio::task::spawn_blocking`, on a thread that may use every CPU the process may: a
/// blocking thread started by a pinned worker inherits its one CPU, and is given the rest
/// back before its first piece of work (once per thread).
pub fn spawn_blocking<F, R>(work: F) -> tokio::task::JoinHandle<R>
where
    F: FnOnce() -> R + Send + 'static,
    R: Send + 'static,
{
    #[allow(clippy::disallowed_methods)] // the one place that may
    tokio::task::spawn_blocking(move || {
        release_inherited();
        work()
    })
}

thread_local! {
    static RELEASED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Gives the calling thread every CPU the process could use when the workers were pinned,
/// the first time it is called on a thread; nothing when no worker is pinned.
fn release_inherited() {
    let Some(all) = ALLOWED.get() else {
        return;
    };
    RELEASED.with(|released| {
        if !released.get() {
            // A refusal leaves the thread where it is: slower, never wrong.
            set_current(all);
            released.set(true);
        }
    });
}

/// The CPUs the calling thread may run on; `None` where that cannot be read.
#[cfg(target_os = "linux")]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    use rustix::thread::{CpuSet, sched_getaffinity};
    let set = sched_getaffinity(None).ok()?;
    Some((0..CpuSet::MAX_CPU).filter(|&i| set.is_set(i)).collect())
}

/// The CPUs the calling thread may run on; `None` where that cannot be read.
#[cfg(not(target_os = "linux"))]
pub fn allowed_cpus() -> Option<Vec<usize>> {
    None
}

/// Lets the calling thread run on `cpus` only; whether the kernel agreed.
#[cfg(target_os = "linux")]
fn set_current(cpus: &[usize]) -> bool {
    use rustix::thread::{CpuSet, sched_setaffinity};
    let mut set = CpuSet::new();
    for &cpu in cpus.iter().filter(|&&cpu| cpu < CpuSet::MAX_CPU) {
        set.set(cpu);
    }
    sched_setaffinity(None, &set).is_ok()
}

#[cfg(not(target_os = "linux"))]
fn set_current(_cpus: &[usize]) -> bool {
    false
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn auto_pins_only_on_sqlite_with_a_worker_per_cpu() {
        let cpus = allowed_cpus().expect("affinity readable on Linux");
        let n = cpus.len();
        let plan = WorkerPlacement::plan(PinWorkers::Auto, n, true).expect("a worker per CPU pins");
        assert_eq!(plan.cpus(), cpus.as_slice());
        assert!(WorkerPlacement::plan(PinWorkers::Auto, n + 1, true).is_none());
        assert!(WorkerPlacement::plan(PinWorkers::Auto, n, false).is_none());
        assert!(WorkerPlacement::plan(PinWorkers::Off, n, true).is_none());
        assert!(WorkerPlacement::plan(PinWorkers::On, n + 1, false).is_some());
    }

    /// Each worker in turn gets the next CPU, round robin; every pinned thread runs on the
    /// one CPU it was given, and a blocking task started from a pinned thread runs with
    /// every CPU again.
    #[test]
    fn workers_take_the_cpus_in_turn_and_blocking_threads_get_them_all_back() {
        let all = allowed_cpus().expect("affinity readable on Linux");
        let plan = std::sync::Arc::new(
            WorkerPlacement::plan(PinWorkers::On, all.len(), true).expect("pinning on"),
        );
        let workers = 2 * all.len() + 1;
        let seen: Vec<(Option<usize>, Vec<usize>, Vec<usize>)> = (0..workers)
            .map(|_| {
                let plan = plan.clone();
                std::thread::spawn(move || {
                    let pinned = plan.pin_current();
                    let own = allowed_cpus().expect("readable");
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .build()
                        .expect("runtime");
                    let blocking = runtime
                        .block_on(async {
                            spawn_blocking(|| allowed_cpus().expect("readable")).await
                        })
                        .expect("blocking task");
                    (pinned, own, blocking)
                })
                .join()
                .expect("worker thread")
            })
            .collect();
        for (turn, (pinned, own, blocking)) in seen.into_iter().enumerate() {
            let expected = all[turn % all.len()];
            assert_eq!(pinned, Some(expected), "worker {turn}");
            assert_eq!(own, vec![expected], "worker {turn} runs on its CPU only");
            assert_eq!(
                blocking, all,
                "worker {turn}'s blocking thread has every CPU"
            );
        }
    }
}
