//! SMART Health Links: the patient makes a link to their summary; a receiver written from the
//! specification in Python (`shl_receiver.py`, the `cryptography` package's AES-GCM, nothing
//! of the gateway's code) opens it and decrypts an IPS document of that patient. Wrong
//! passcodes count down and lock the link; expiry, the use limit, deactivation and
//! single-use tickets each end access with the same 404; another patient can neither list
//! nor deactivate the link; every fetch is in the patient's access log and feed; a delegate
//! shares only with `send_evidence` and `read_records`. Both backends. The page's side is in
//! `share_links_page.rs`.

use std::path::PathBuf;
use std::process::Command;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentgate::cli::person_token;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Answer, Backend, TestApp, call, get_as, load_records, spawn_app};

/// A Python with `cryptography`: `CONSENTGATE_SHL_PYTHON`, else the venv `.ci/run` makes
/// (`target/ci-venv`), else `python3`. Under CI its absence is a failure; elsewhere the
/// independent check is skipped after one loud line.
fn receiver_python() -> Option<PathBuf> {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let candidates = std::env::var_os("CONSENTGATE_SHL_PYTHON")
        .map(PathBuf::from)
        .into_iter()
        .chain([root.join("target/ci-venv/bin/python3"), "python3".into()]);
    for python in candidates {
        let ok = Command::new(&python)
            .args(["-c", "import cryptography.hazmat.primitives.ciphers.aead"])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return Some(python);
        }
    }
    if std::env::var("CI").is_ok_and(|v| v == "true") {
        panic!("python with `cryptography` is required under CI (.ci/run makes target/ci-venv)");
    }
    eprintln!(
        "!!!!! SHL RECEIVER CHECK SKIPPED: no python with `cryptography`; \
         python3 -m venv target/ci-venv && target/ci-venv/bin/pip install cryptography !!!!!"
    );
    None
}

/// Opens `link` with the independent receiver; its JSON output.
async fn receive(app: &TestApp, link: &str, recipient: &str, extra: &[&str]) -> Option<Value> {
    let python = receiver_python()?;
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/api/shl_receiver.py");
    let mut command = Command::new(python);
    command
        .arg(script)
        .args([link, recipient])
        .arg(app.dir.path().join("tls/dev-cert.pem"))
        .args(extra);
    // The server runs on this test's runtime: wait for the child off it.
    let out = tokio::task::spawn_blocking(move || command.output())
        .await
        .unwrap()
        .expect("python runs");
    assert!(
        out.status.success(),
        "the receiver failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(serde_json::from_slice(&out.stdout).expect("the receiver prints JSON"))
}

/// Makes a link as `token`'s bearer.
async fn make(app: &TestApp, token: &str, ask: Value) -> Value {
    let (status, made) = call(app, token, Method::POST, "/api/v1/share-links", Some(&ask)).await;
    assert_eq!(status, 201, "{made}");
    made
}

/// A manifest request or a file fetch with no credentials, as a receiver sends it.
pub(crate) async fn open(app: &TestApp, method: Method, url: &str, body: Option<Value>) -> Answer {
    let mut request = app.client.request(method, url);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("answered");
    let status = response.status().as_u16();
    let media = response
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string())
        .unwrap_or_default();
    let bytes = response.bytes().await.unwrap().to_vec();
    Answer {
        status,
        media,
        body: crate::helpers::json_or_text(&bytes),
        bytes,
    }
}

/// The decoded `shlink:/` payload.
pub(crate) fn payload(link: &str) -> Value {
    let encoded = link.strip_prefix("shlink:/").expect("a shlink:/ link");
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(encoded).unwrap()).unwrap()
}

pub(crate) fn gone(answer: &Answer) {
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (404, Some("unknown_share_link")),
        "{}",
        answer.body
    );
}

async fn share_link_entries(app: &TestApp, token: &str) -> Vec<Value> {
    let (status, log) = get_as(app, token, "/api/v1/patients/pat/access-log").await;
    assert_eq!(status, 200, "{log}");
    log["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["recipient"]["kind"] == "share_link")
        .cloned()
        .collect()
}

async fn a_link_opens_in_an_independent_receiver(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let made = make(
        &app,
        &pat,
        json!({"label": "Travel summary", "passcode": "2468", "max_uses": 3}),
    )
    .await;
    let link = made["link"].as_str().unwrap();
    let p = payload(link);
    assert_eq!(p, made["payload"]);
    assert_eq!(
        (&p["flag"], &p["v"], &p["label"]),
        (&json!("P"), &json!(1), &json!("Travel summary"))
    );
    assert_eq!(p["key"].as_str().unwrap().len(), 43);
    let url = p["url"].as_str().unwrap();
    assert!(
        url.starts_with(&format!("{}/api/v1/shl/", app.base)) && url.len() <= 128,
        "{url}"
    );
    assert!(p["exp"].as_i64().unwrap() > 1_700_000_000);
    assert!(made["qr_svg"].as_str().unwrap().starts_with("<svg"));
    assert_eq!(made["share_link"]["status"], "active");

    // The listing never shows the key, the file or the manifest URL.
    let (status, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(listed["share_links"][0]["id"], made["id"]);
    assert_eq!(listed["share_links"][0]["passcode"], true);
    let text = listed.to_string();
    let secret = url.rsplit('/').next().unwrap();
    assert!(!text.contains(p["key"].as_str().unwrap()) && !text.contains(secret));

    // The receiver: manifest, ticket, decryption, an IPS document of pat.
    let Some(received) = receive(&app, link, "Dr Lee, Lisbon", &["--passcode", "2468"]).await
    else {
        return;
    };
    let file = &received["files"][0];
    assert_eq!(file["via"], "location");
    assert_eq!(
        file["header"],
        json!({"alg": "dir", "enc": "A256GCM", "cty": "application/fhir+json"})
    );
    let ips = &file["content"];
    assert_eq!(ips["type"], "document");
    let composition = &ips["entry"][0]["resource"];
    assert_eq!(composition["resourceType"], "Composition");
    assert_eq!(composition["type"]["coding"][0]["code"], "60591-5");
    assert_eq!(composition["subject"]["reference"], "Patient/pat");
    let inside: Vec<String> = ips["entry"].as_array().unwrap()[1..]
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    assert!(inside.contains(&"Patient/pat".to_string()), "{inside:?}");
    assert!(inside.contains(&"Condition/htn".to_string()), "{inside:?}");
    assert!(!inside.iter().any(|r| r == "Patient/other"));

    // The ticket was single-use.
    let location = file["location"].as_str().unwrap();
    gone(&open(&app, Method::GET, location, None).await);

    // Embedded, when the receiver takes files that long.
    let embedded = receive(
        &app,
        link,
        "Dr Lee, Lisbon",
        &["--passcode", "2468", "--embedded-length-max", "10000000"],
    )
    .await
    .unwrap();
    assert_eq!(embedded["files"][0]["via"], "embedded");
    assert_eq!(
        embedded["files"][0]["content"]["entry"][0]["resource"]["subject"],
        composition["subject"]
    );

    // Every fetch is in the access log, under the recipient's own words: two manifests and
    // one file, the resources listed where they left.
    let entries = share_link_entries(&app, &pat).await;
    assert_eq!(entries.len(), 3, "{entries:?}");
    for e in &entries {
        assert_eq!(e["recipient"]["named"], "Dr Lee, Lisbon");
        assert_eq!(e["recipient"]["share_link"], made["id"]);
        assert_eq!(e["action"], "disclose");
    }
    let carried: Vec<usize> = entries
        .iter()
        .map(|e| e["disclosed"]["resources"].as_array().unwrap().len())
        .collect();
    assert_eq!(
        carried,
        [inside.len(), inside.len(), 0],
        "newest first: embedded, file, manifest"
    );
    let (_, feed) = get_as(&app, &pat, "/api/v1/patients/pat/notifications").await;
    let steps: Vec<&str> = feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "share_link")
        .map(|n| n["summary"]["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["manifest", "file", "manifest", "created"], "{feed}");
    assert!(
        !feed.to_string().contains("Dr Lee"),
        "no free text in notifications"
    );
    let (_, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    assert_eq!(listed["share_links"][0]["uses"], 2);
}

async fn passcodes_count_down_and_lock(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let made = make(&app, &pat, json!({"passcode": "right-one"})).await;
    let url = made["payload"]["url"].as_str().unwrap().to_string();
    let ask = |passcode: Option<&str>| {
        let mut body = json!({"recipient": "A clinic"});
        if let Some(p) = passcode {
            body["passcode"] = json!(p);
        }
        Some(body)
    };

    let missing = open(&app, Method::POST, &url, ask(None)).await;
    assert_eq!(
        (missing.status, &missing.body["remainingAttempts"]),
        (401, &json!(5)),
        "{}",
        missing.body
    );
    for remaining in [4, 3, 2, 1] {
        let wrong = open(&app, Method::POST, &url, ask(Some("wrong"))).await;
        assert_eq!(wrong.status, 401, "{}", wrong.body);
        assert_eq!(wrong.body["remainingAttempts"], remaining);
        assert_eq!(wrong.body["code"], "wrong_passcode");
    }
    // The right passcode still opens it, and costs no attempt.
    let right = open(&app, Method::POST, &url, ask(Some("right-one"))).await;
    assert_eq!(right.status, 200, "{}", right.body);
    let last = open(&app, Method::POST, &url, ask(Some("wrong"))).await;
    assert_eq!(
        (last.status, &last.body["remainingAttempts"]),
        (401, &json!(0))
    );
    gone(&open(&app, Method::POST, &url, ask(Some("right-one"))).await);

    let (_, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    assert_eq!(listed["share_links"][0]["status"], "locked");
    assert_eq!(listed["share_links"][0]["active"], false);
    let (_, feed) = get_as(&app, &pat, "/api/v1/patients/pat/notifications").await;
    assert!(
        feed["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["kind"] == "share_link" && n["summary"]["step"] == "locked"),
        "{feed}"
    );
    // Over-long input is refused before anything is counted.
    let long = open(
        &app,
        Method::POST,
        &url,
        Some(json!({"recipient": "x".repeat(201)})),
    )
    .await;
    assert_eq!(
        (long.status, &long.body["code"]),
        (400, &json!("invalid_recipient"))
    );
}

async fn limits_hold_against_parallel_guesses_and_many_links(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let made = make(&app, &pat, json!({"passcode": "right-one"})).await;
    let url = made["payload"]["url"].as_str().unwrap().to_string();
    let wrong = || Some(json!({"recipient": "A guesser", "passcode": "wrong"}));
    let guesses = (0..12).map(|_| open(&app, Method::POST, &url, wrong()));
    let answers = futures_util::future::join_all(guesses).await;
    let statuses: Vec<u16> = answers.iter().map(|a| a.status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 401).count(),
        5,
        "exactly the lifetime limit of guesses is tried: {statuses:?}"
    );
    assert!(
        statuses.iter().all(|s| *s == 401 || *s == 404),
        "{statuses:?}"
    );
    let right = Some(json!({"recipient": "A clinic", "passcode": "right-one"}));
    gone(&open(&app, Method::POST, &url, right).await);

    // At most 20 links work at once; a locked one does not count.
    for _ in 0..20 {
        make(&app, &pat, json!({})).await;
    }
    let (status, refused) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/share-links",
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (status, &refused["code"]),
        (409, &json!("too_many_share_links")),
        "{refused}"
    );
    let (_, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    let first = listed["share_links"][0]["id"].as_str().unwrap();
    let path = format!("/api/v1/share-links/{first}");
    assert_eq!(call(&app, &pat, Method::DELETE, &path, None).await.0, 200);
    make(&app, &pat, json!({})).await;
}

async fn expiry_uses_deactivation_and_owners_end_access(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let other = app.patient_token("other");
    let body = || Some(json!({"recipient": "A clinic"}));

    // A use limit of one: one manifest; the ticket it gave still works once.
    let once = make(&app, &pat, json!({"max_uses": 1})).await;
    let url = once["payload"]["url"].as_str().unwrap();
    assert!(
        once["payload"].get("flag").is_none(),
        "no passcode, no flag"
    );
    let first = open(&app, Method::POST, url, body()).await;
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(
        first.body["files"][0]["contentType"],
        "application/fhir+json"
    );
    gone(&open(&app, Method::POST, url, body()).await);
    let location = first.body["files"][0]["location"].as_str().unwrap();
    let file = open(&app, Method::GET, location, None).await;
    assert_eq!(
        (file.status, file.media.as_str()),
        (200, "application/jose")
    );
    assert_eq!(String::from_utf8(file.bytes).unwrap().split('.').count(), 5);
    gone(&open(&app, Method::GET, location, None).await);

    // Expiry.
    let soon = (time::OffsetDateTime::now_utc() + time::Duration::seconds(2))
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap();
    let brief = make(&app, &pat, json!({"expires": soon})).await;
    let url = brief["payload"]["url"].as_str().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(2500)).await;
    gone(&open(&app, Method::POST, url, body()).await);

    // Deactivation: only by its patient; the next fetch and an earlier ticket are 404.
    let kept = make(&app, &pat, json!({"label": "For Dr Lee"})).await;
    let url = kept["payload"]["url"].as_str().unwrap();
    let ticketed = open(&app, Method::POST, url, body()).await;
    let location = ticketed.body["files"][0]["location"].as_str().unwrap();
    let path = format!("/api/v1/share-links/{}", kept["id"].as_str().unwrap());
    let (status, theirs) = get_as(&app, &other, "/api/v1/share-links").await;
    assert_eq!((status, &theirs["share_links"]), (200, &json!([])));
    let (status, refused) = call(&app, &other, Method::DELETE, &path, None).await;
    assert_eq!(
        (status, &refused["code"]),
        (404, &json!("unknown_share_link"))
    );
    assert_eq!(
        open(&app, Method::POST, url, body()).await.status,
        200,
        "still active"
    );
    let (status, off) = call(&app, &pat, Method::DELETE, &path, None).await;
    assert_eq!(
        (status, &off["status"]),
        (200, &json!("deactivated")),
        "{off}"
    );
    gone(&open(&app, Method::POST, url, body()).await);
    gone(&open(&app, Method::GET, location, None).await);
    let (status, _) = call(&app, &pat, Method::DELETE, &path, None).await;
    assert_eq!(status, 200, "deactivating twice changes nothing");

    // Unknown and malformed ids look the same as a dead link.
    let unknown = format!("{}/api/v1/shl/{}", app.base, "A".repeat(43));
    gone(&open(&app, Method::POST, &unknown, body()).await);
    gone(
        &open(
            &app,
            Method::POST,
            &format!("{}/api/v1/shl/x", app.base),
            body(),
        )
        .await,
    );

    // Only people with the key's patient make links; bad limits are refused.
    let (status, _) = call(
        &app,
        &app.operator_token,
        Method::POST,
        "/api/v1/share-links",
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 403);
    for (ask, code) in [
        (json!({"label": "x".repeat(81)}), "invalid_label"),
        (json!({"passcode": "123"}), "invalid_passcode"),
        (json!({"lifetime_days": 400}), "invalid_expires"),
        (json!({"max_uses": 0}), "invalid_max_uses"),
    ] {
        let (status, refused) =
            call(&app, &pat, Method::POST, "/api/v1/share-links", Some(&ask)).await;
        assert_eq!(
            (status, refused["code"].as_str()),
            (400, Some(code)),
            "{refused}"
        );
    }

    // The listing tells each link's state.
    let (_, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    let states: Vec<&str> = listed["share_links"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["status"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["deactivated", "expired", "used_up"]);
}

async fn a_delegate_shares_only_when_allowed_to_send_and_read(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let mut tokens = Vec::new();
    for (name, actions) in [
        ("Sam Sender", json!(["send_evidence"])),
        ("Ada Carer", json!(["send_evidence", "read_records"])),
    ] {
        let ask = json!({"name": name, "relationship": "carer", "actions": actions});
        let (status, made) =
            call(&app, &pat, Method::POST, "/api/v1/delegations", Some(&ask)).await;
        assert_eq!(status, 201, "{made}");
        let delegate = made["delegate"].as_str().unwrap().to_string();
        let token = person_token(
            &app.settings,
            &app.base,
            &format!("sub-{delegate}"),
            Some(delegate),
            vec![],
            7200,
        )
        .unwrap();
        tokens.push(token);
    }
    let (status, refused) = call(
        &app,
        &tokens[0],
        Method::POST,
        "/api/v1/share-links",
        Some(&json!({})),
    )
    .await;
    assert_eq!(
        (status, &refused["code"]),
        (403, &json!("outside_delegation")),
        "{refused}"
    );
    let made = make(&app, &tokens[1], json!({})).await;
    assert!(
        made["share_link"]["created_by"]
            .as_str()
            .unwrap()
            .starts_with("RelatedPerson/")
    );
    let (_, listed) = get_as(&app, &pat, "/api/v1/share-links").await;
    assert_eq!(listed["share_links"][0]["id"], made["id"]);
}

/// A receiver running in a web page on another origin: the preflight and every answer of the
/// two receiver routes allow any origin (errors too, so it can read a 401's attempts); the
/// patient's own routes do not.
async fn browser_receivers_get_cors_answers(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let made = make(&app, &pat, json!({"passcode": "4711 river"})).await;
    let url = made["payload"]["url"].as_str().unwrap().to_string();
    let origin = "https://viewer.example";
    let allowed = |r: &reqwest::Response| {
        r.headers()
            .get("access-control-allow-origin")
            .map(|v| v.to_str().unwrap().to_string())
    };

    let preflight = app
        .client
        .request(Method::OPTIONS, &url)
        .header("origin", origin)
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "content-type")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status().as_u16(), 204);
    assert_eq!(allowed(&preflight).as_deref(), Some("*"));
    assert_eq!(preflight.headers()["access-control-allow-methods"], "POST");
    assert_eq!(
        preflight.headers()["access-control-allow-headers"],
        "content-type"
    );

    let post = |body: Value| {
        app.client
            .post(&url)
            .header("origin", origin)
            .json(&body)
            .send()
    };
    let wrong = post(json!({"recipient": "A viewer", "passcode": "nope"}))
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    assert_eq!(allowed(&wrong).as_deref(), Some("*"), "a 401 is readable");
    let bad = app
        .client
        .post(&url)
        .header("origin", origin)
        .header("content-type", "application/json")
        .body("{")
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status().as_u16(), 400);

    assert_eq!(allowed(&bad).as_deref(), Some("*"), "refused bodies too");
    let right = post(json!({"recipient": "A viewer", "passcode": "4711 river"}))
        .await
        .unwrap();
    assert_eq!(allowed(&right).as_deref(), Some("*"));
    let manifest: Value = right.json().await.unwrap();
    let location = manifest["files"][0]["location"].as_str().unwrap();
    let file = app
        .client
        .get(location)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(file.status().as_u16(), 200);
    assert_eq!(allowed(&file).as_deref(), Some("*"));
    let again = app
        .client
        .get(location)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status().as_u16(), 404);
    assert_eq!(allowed(&again).as_deref(), Some("*"));

    // The patient's routes, which take a bearer token, answer no origin but their own.
    let own = app
        .client
        .get(format!("{}/api/v1/share-links", app.base))
        .bearer_auth(&pat)
        .header("origin", origin)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status().as_u16(), 200);
    assert_eq!(allowed(&own), None);
}

both_backends!(
    browser_receivers_get_cors_answers,
    limits_hold_against_parallel_guesses_and_many_links,
    a_link_opens_in_an_independent_receiver,
    passcodes_count_down_and_lock,
    expiry_uses_deactivation_and_owners_end_access,
    a_delegate_shares_only_when_allowed_to_send_and_read,
);
