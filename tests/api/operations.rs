//! Operations: health, readiness, metrics, metadata, request ids, TLS and shutdown.

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

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

both_backends!(operations_endpoints, tls_only);

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
