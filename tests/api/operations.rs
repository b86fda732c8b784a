//! Operations: health, readiness, metrics, metadata, request ids, TLS and shutdown.

use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, ClientKey, database_for, spawn_app};
use crate::served;

async fn operations_endpoints(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let resp = app
        .client
        .get(app.url("/readyz"))
        .header("x-request-id", "abc-123")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["x-request-id"], "abc-123");
    let generated = app
        .client
        .get(app.url("/healthz"))
        .header("x-request-id", "bad id with spaces")
        .send()
        .await
        .unwrap();
    assert_ne!(generated.headers()["x-request-id"], "bad id with spaces");

    let metrics = app.metrics().await;
    assert!(
        metrics.contains(
            "consentgate_http_requests_total{method=\"GET\",route=\"/readyz\",status=\"200\"} 1"
        ),
        "{metrics}"
    );
    assert!(metrics.contains("consentgate_http_request_duration_seconds_bucket"));

    let (status, cap) = app.get("/fhir/metadata").await;
    assert_eq!(status, 200);
    assert_eq!(cap["fhirVersion"], "4.0.1");
    assert_eq!(cap["rest"][0]["resource"].as_array().unwrap().len(), 146);

    // The route label is the pattern the router matched, read after routing: a nested
    // scope's pattern, a parameterised one, and none for a path no route takes.
    let (status, _) = app.get("/fhir/Observation/no-such-id").await;
    assert_eq!(status, 404);
    let (status, _) = app.get("/no/such/endpoint").await;
    assert_eq!(status, 404);
    let metrics = app.metrics().await;
    for line in [
        "consentgate_http_requests_total{method=\"GET\",route=\"/fhir/metadata\",status=\"200\"} 1",
        "consentgate_http_requests_total{method=\"GET\",route=\"/fhir/{type}/{id}\",status=\"404\"} 1",
        "consentgate_http_requests_total{method=\"GET\",route=\"unmatched\",status=\"404\"} 1",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

/// The server speaks TLS only: a plain HTTP request to its port gets no HTTP answer, and
/// the handshake negotiates TLS 1.3 with the generated certificate.
async fn tls_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    use std::io::{Read, Write};
    let port = app.base.rsplit(':').next().unwrap().parse::<u16>().unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    stream
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/1.1 200"),
        "plain HTTP must not be served on the TLS port"
    );
    let resp = app.client.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 200);
}

/// The JSON request log: one `request served` line per request with the request id, the
/// method, the route *pattern*, the status and the latency as its own fields, and nothing
/// of the path's ids or the query string; an event inside the handler carries the request id
/// from the request's span.
async fn request_log_lines(backend: Backend) {
    let dir = tempfile::tempdir().unwrap();
    let Some((url, _pg)) = database_for(backend, dir.path()) else {
        return;
    };
    let server = served::serve(
        dir.path(),
        &url,
        "request-log",
        &[
            ("CONSENTGATE__LOG__FORMAT", "json"),
            ("CONSENTGATE__LOG__FILTER", "info"),
        ],
    )
    .await;
    let token = served::operator(dir.path(), &url);
    let client = served::plain_client();
    let (status, ..) = served::get(
        &client,
        &server.url("/fhir/Observation/secret-observation-id"),
        &token,
        "log-read-1",
    )
    .await
    .unwrap();
    assert_eq!(status, 404);
    let (status, ..) = served::get(
        &client,
        &server.url("/fhir/Observation?patient=secret-patient-id&code=secret-code"),
        &token,
        "log-search-1",
    )
    .await
    .unwrap();
    assert_eq!(status, 200);
    let (status, ..) = served::get(&client, &server.url("/healthz"), &token, "log-bare-1")
        .await
        .unwrap();
    assert_eq!(status, 200);
    let registered = client
        .post(server.url("/api/v1/clients"))
        .bearer_auth(&token)
        .header("x-request-id", "log-register-1")
        .json(
            &serde_json::json!({"name": "Log app", "organization": "Log org",
                                  "role": "clinician", "jwks": ClientKey::ed25519("log").jwks()}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(registered.status().as_u16(), 201);

    let text = server
        .log_text_once(|text| {
            text.lines()
                .any(|l| l.contains("request served") && l.contains("log-register-1"))
        })
        .await;
    assert!(
        !text.contains("secret-"),
        "ids or query values logged: {text}"
    );
    // The log lines; the start-up banner is plain text.
    let lines: Vec<Value> = text
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: not JSON: {l}")))
        .collect();
    let served_line = |request_id: &str| -> Value {
        let found: Vec<&Value> = lines
            .iter()
            .filter(|l| l["message"] == "request served" && l["request_id"] == request_id)
            .collect();
        assert_eq!(found.len(), 1, "one line for {request_id}: {text}");
        found[0].clone()
    };
    for (request_id, method, route, status) in [
        ("log-read-1", "GET", "/fhir/{type}/{id}", 404),
        ("log-search-1", "GET", "/fhir/{type}", 200),
        ("log-bare-1", "GET", "/healthz", 200),
        ("log-register-1", "POST", "/api/v1/clients", 201),
    ] {
        let line = served_line(request_id);
        assert_eq!(line["method"], method, "{line}");
        assert_eq!(line["route"], route, "{line}");
        assert_eq!(line["status"], status, "{line}");
        assert!(line["latency_ms"].as_f64().is_some(), "{line}");
        assert_eq!(line["level"], "INFO", "{line}");
    }
    // An event logged inside a handler is tied to its request by the span's request id.
    let inner: Vec<&Value> = lines
        .iter()
        .filter(|l| l["message"] == "client registered")
        .collect();
    assert_eq!(inner.len(), 1, "{text}");
    assert_eq!(inner[0]["span"]["request_id"], "log-register-1", "{text}");
    assert_eq!(inner[0]["span"]["name"], "request", "{text}");
}

both_backends!(operations_endpoints, tls_only, request_log_lines);

#[test]
fn migrations_match_between_backends() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("migrations");
    let list = |backend: &str| {
        let mut names: Vec<String> = std::fs::read_dir(root.join(backend))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let (sqlite, postgres) = (list("sqlite"), list("postgres"));
    assert!(!sqlite.is_empty());
    assert_eq!(
        sqlite, postgres,
        "migrations/sqlite and migrations/postgres must list the same migrations"
    );
    for name in &sqlite {
        for file in ["up.sql", "down.sql"] {
            assert!(
                root.join("sqlite").join(name).join(file).exists(),
                "{name}/{file}"
            );
            assert!(
                root.join("postgres").join(name).join(file).exists(),
                "{name}/{file}"
            );
        }
    }
}
