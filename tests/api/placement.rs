//! `server.pin_workers` in a real `consentgate serve`: each HTTP worker runs on a CPU of its
//! own, and every other thread, the blocking threads the workers start among them, may run
//! on every CPU the process may (`consentgate::cpus`).

use std::collections::BTreeSet;

use serde_json::json;

use crate::served;

/// A thread of a process: its name and the CPUs it may run on.
struct Thread {
    name: String,
    cpus: Vec<usize>,
}

/// Every thread of process `pid`, from `/proc`.
fn threads(pid: u32) -> Vec<Thread> {
    let mut found = Vec::new();
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("the process's threads") {
        let path = task.expect("a thread").path();
        let (Ok(name), Ok(status)) = (
            std::fs::read_to_string(path.join("comm")),
            std::fs::read_to_string(path.join("status")),
        ) else {
            continue; // ended meanwhile
        };
        let list = status
            .lines()
            .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
            .expect("Cpus_allowed_list in status");
        found.push(Thread {
            name: name.trim().to_string(),
            cpus: cpu_list(list.trim()),
        });
    }
    found
}

/// The kernel's CPU list format: `0-3,8,10-11`.
fn cpu_list(text: &str) -> Vec<usize> {
    let mut cpus = Vec::new();
    for part in text.split(',').filter(|p| !p.is_empty()) {
        let (from, to) = part.split_once('-').unwrap_or((part, part));
        let (from, to): (usize, usize) = (from.parse().unwrap(), to.parse().unwrap());
        cpus.extend(from..=to);
    }
    cpus
}

#[test]
fn cpu_lists_are_read_as_the_kernel_writes_them() {
    assert_eq!(cpu_list("0"), vec![0]);
    assert_eq!(cpu_list("0-1"), vec![0, 1]);
    assert_eq!(cpu_list("0-2,5,7-8"), vec![0, 1, 2, 5, 7, 8]);
}

#[actix_web::test]
async fn workers_are_pinned_one_cpu_each_and_blocking_threads_are_not() {
    let all = consentgate::cpus::allowed_cpus().expect("affinity readable on Linux");
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/consentgate.db", dir.path().display());
    // Two workers (the served default), pinned whatever the machine's CPU count.
    let server = served::serve(
        dir.path(),
        &url,
        "pinned",
        &[("CONSENTGATE__SERVER__PIN_WORKERS", "on")],
    )
    .await;
    let client = served::plain_client();
    let operator = served::operator(dir.path(), &url);
    // Writes run on the workers' blocking threads (`Store::run`), started by pinned workers.
    for i in 0..6 {
        let id = format!("p{i}");
        let (status, _) = served::send_json(
            &client,
            reqwest::Method::PUT,
            &server.url(&format!("/fhir/Patient/{id}")),
            &operator,
            &json!({"resourceType": "Patient", "id": id}),
            "application/fhir+json",
        )
        .await;
        assert_eq!(status, 201);
    }
    let metrics = client
        .get(server.url("/metrics"))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("consentgate_http_workers_pinned 2"),
        "{metrics}"
    );

    let threads = threads(server.pid());
    let workers: Vec<&Thread> = threads
        .iter()
        .filter(|t| t.name.starts_with("actix-rt|system"))
        .collect();
    assert_eq!(workers.len(), 2, "two HTTP workers");
    let pinned: BTreeSet<usize> = workers
        .iter()
        .map(|w| {
            assert_eq!(w.cpus.len(), 1, "a worker runs on one CPU: {:?}", w.cpus);
            w.cpus[0]
        })
        .collect();
    let expected: BTreeSet<usize> = [all[0], all[1 % all.len()]].into();
    assert_eq!(pinned, expected, "the workers take the CPUs in turn");
    let others: Vec<&Thread> = threads
        .iter()
        .filter(|t| !t.name.starts_with("actix-rt|system"))
        .collect();
    assert!(
        others.iter().any(|t| t.name.starts_with("tokio")),
        "a blocking thread ran the writes: {:?}",
        others.iter().map(|t| &t.name).collect::<Vec<_>>()
    );
    for thread in others {
        assert_eq!(thread.cpus, all, "{} may run on every CPU", thread.name);
    }
}
