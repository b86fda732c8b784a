//! Every kind of bad input gets a 4xx with an OperationOutcome and a stable code, stores
//! nothing, and never gets a 5xx.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, decode, spawn_app_with};

/// The stable code of an OperationOutcome.
fn code_of(body: &Value) -> &str {
    body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .unwrap_or("<none>")
}

async fn raw(
    app: &TestApp,
    method: reqwest::Method,
    path: &str,
    content_type: Option<&str>,
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = app
        .client
        .request(method, app.url(path))
        .bearer_auth(&app.operator_token)
        .body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    decode(req.send().await.unwrap()).await
}

async fn refused_with_outcomes(backend: Backend) {
    let Some(app) =
        spawn_app_with(backend, &[("CONSENTGATE__LIMITS__MAX_BODY_BYTES", "65536")]).await
    else {
        return;
    };
    use reqwest::Method;
    let fhir = Some("application/fhir+json");
    let patient = json!({"resourceType": "Patient", "id": "p1"})
        .to_string()
        .into_bytes();
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200)).into_bytes();
    let huge = json!({"resourceType": "Basic", "text": {"div": "x".repeat(70_000)}})
        .to_string()
        .into_bytes();
    type Case<'a> = (Method, &'a str, Option<&'a str>, Vec<u8>, u16, &'a str);
    let cases: Vec<Case> = vec![
        (
            Method::GET,
            "/fhir/Foo/1",
            None,
            vec![],
            400,
            "unknown_resource_type",
        ),
        (
            Method::GET,
            "/fhir/patient/1",
            None,
            vec![],
            400,
            "unknown_resource_type",
        ),
        (
            Method::GET,
            "/fhir/Foo?patient=1",
            None,
            vec![],
            400,
            "unknown_resource_type",
        ),
        (
            Method::PUT,
            "/fhir/Foo/1",
            fhir,
            patient.clone(),
            400,
            "unknown_resource_type",
        ),
        (
            Method::POST,
            "/fhir/Foo",
            fhir,
            patient.clone(),
            400,
            "unknown_resource_type",
        ),
        (
            Method::PUT,
            "/fhir/Patient/bad_id!",
            fhir,
            patient.clone(),
            400,
            "invalid_id",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p2",
            fhir,
            patient.clone(),
            400,
            "id_mismatch",
        ),
        (
            Method::PUT,
            "/fhir/Observation/p1",
            fhir,
            patient.clone(),
            400,
            "type_mismatch",
        ),
        (
            Method::GET,
            "/fhir/Patient/not%20an%20id",
            None,
            vec![],
            404,
            "not_found",
        ),
        (
            Method::GET,
            "/fhir/Patient/nobody",
            None,
            vec![],
            404,
            "not_found",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            fhir,
            b"{not json".to_vec(),
            400,
            "invalid_json",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            fhir,
            b"<Patient/>".to_vec(),
            400,
            "invalid_json",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            fhir,
            vec![],
            400,
            "empty_body",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            fhir,
            b"[]".to_vec(),
            400,
            "not_a_resource",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            fhir,
            b"{\"id\":\"p1\"}".to_vec(),
            400,
            "missing_resource_type",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            Some("text/plain"),
            patient.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            Some("application/fhir+xml"),
            patient.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::PUT,
            "/fhir/Patient/p1",
            None,
            patient.clone(),
            415,
            "unsupported_media_type",
        ),
        (
            Method::PUT,
            "/fhir/Basic/b1",
            fhir,
            huge,
            413,
            "body_too_large",
        ),
        (Method::POST, "/fhir", fhir, deep, 400, "too_deep"),
        (
            Method::POST,
            "/fhir",
            fhir,
            patient.clone(),
            400,
            "not_a_bundle",
        ),
        (
            Method::POST,
            "/fhir",
            fhir,
            json!({"resourceType": "Bundle", "type": "document"})
                .to_string()
                .into_bytes(),
            400,
            "unsupported_bundle_type",
        ),
        (
            Method::GET,
            "/fhir/Observation?name=x",
            None,
            vec![],
            400,
            "unsupported_search_parameter",
        ),
        (
            Method::GET,
            "/fhir/Observation?date=soon",
            None,
            vec![],
            400,
            "invalid_search_value",
        ),
        (
            Method::GET,
            "/fhir/Observation?_count=many",
            None,
            vec![],
            400,
            "invalid_search_value",
        ),
        (
            Method::DELETE,
            "/fhir/Patient/p1",
            None,
            vec![],
            404,
            "no_such_endpoint",
        ),
    ];
    for (method, path, ct, body, status, code) in cases {
        let (got, outcome) = raw(&app, method.clone(), path, ct, body).await;
        assert_eq!(
            (got, code_of(&outcome)),
            (status, code),
            "{method} {path}: {outcome}"
        );
        assert_eq!(
            outcome["resourceType"], "OperationOutcome",
            "{method} {path}"
        );
    }
    // Nothing of the refused writes was stored.
    for path in [
        "/fhir/Patient/p1",
        "/fhir/Patient/p2",
        "/fhir/Basic/b1",
        "/fhir/Observation/p1",
    ] {
        assert_eq!(app.get(path).await.0, 404, "{path}");
    }
}

async fn a_transaction_is_all_or_nothing(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[]).await else {
        return;
    };
    let good = |id: &str| json!({"fullUrl": format!("urn:uuid:{id}"), "resource": {"resourceType": "Patient", "id": id}, "request": {"method": "POST", "url": "Patient"}});
    let cases = [
        (
            json!({"fullUrl": "urn:uuid:c3", "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:nowhere"}}, "request": {"method": "POST", "url": "Observation"}}),
            422,
            "unresolved_reference",
        ),
        (
            json!({"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "performer": [{"reference": "Organization?identifier=urn:none|1"}]}, "request": {"method": "POST", "url": "Observation"}}),
            422,
            "unresolved_reference",
        ),
        (
            json!({"resource": {"resourceType": "Patient"}, "request": {"method": "DELETE", "url": "Patient/x"}}),
            400,
            "unsupported_method",
        ),
        (
            json!({"resource": {"resourceType": "Nope"}, "request": {"method": "POST", "url": "Nope"}}),
            400,
            "unknown_resource_type",
        ),
    ];
    for (bad, status, code) in cases {
        let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [good("c1"), good("c2"), bad]});
        let (got, outcome) = app.post("/fhir", &bundle).await;
        assert_eq!((got, code_of(&outcome)), (status, code), "{outcome}");
        assert!(
            outcome["issue"][0]["diagnostics"]
                .as_str()
                .unwrap()
                .contains("entry 2"),
            "{outcome}"
        );
        assert_eq!(
            app.get("/fhir/Patient/c1").await.0,
            404,
            "nothing half-stored"
        );
    }
    // A batch keeps the good entries and reports the bad one.
    let bundle = json!({"resourceType": "Bundle", "type": "batch", "entry": [good("c1"), {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "subject": {"reference": "urn:uuid:nowhere"}}, "request": {"method": "POST", "url": "Observation"}}]});
    let (status, response) = app.post("/fhir", &bundle).await;
    assert_eq!(status, 200, "{response}");
    assert_eq!(response["entry"][0]["response"]["status"], "201 Created");
    assert_eq!(
        response["entry"][1]["response"]["status"],
        "422 Unprocessable Entity"
    );
    assert_eq!(app.get("/fhir/Patient/c1").await.0, 200);
}

async fn operator_only(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[]).await else {
        return;
    };
    for token in [None, Some("wrong"), Some("")] {
        let mut req = app.client.get(app.url("/fhir/Patient/p1"));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 401);
        assert!(
            resp.headers()
                .get("www-authenticate")
                .unwrap()
                .to_str()
                .unwrap()
                .starts_with("Bearer")
        );
        let (_, body) = decode(resp).await;
        assert_eq!(code_of(&body), "unauthorized");
    }
    // Public endpoints stay public.
    for path in ["/healthz", "/readyz", "/metrics", "/fhir/metadata"] {
        let resp = app.client.get(app.url(path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
    }
}

both_backends!(
    refused_with_outcomes,
    a_transaction_is_all_or_nothing,
    operator_only
);
