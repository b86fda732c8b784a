//! A standard client replayed from the specifications, not from our helpers: SMART Backend
//! Services (discovery, the four-field token request with a `private_key_jwt` assertion
//! signed ES384) and Bulk Data IG v2 (GET and POST kick-off with `Prefer: respond-async`,
//! status polling that honours `Retry-After` and reads `X-Progress`, downloads with
//! `Accept: application/fhir+ndjson`, DELETE of the job and 404 after). Only the setup
//! (records, consents, the client's registration) goes through the test helpers; every
//! protocol step is written here from the specifications' text. Runs on both backends.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use reqwest::header::HeaderMap;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, consent_in_scope, permit, spawn_app, synthea_bundles};

/// The client's own key: P-384, as SMART Backend Services requires servers to accept (ES384).
struct Es384 {
    kid: String,
    pkcs8: Vec<u8>,
    jwk: Value,
}

fn es384(kid: &str) -> Es384 {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    // An uncompressed point: 0x04, then x and y of 48 bytes each.
    let point = pair.public_key().as_ref();
    Es384 {
        kid: kid.into(),
        pkcs8: pkcs8.as_ref().to_vec(),
        jwk: json!({"kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384",
                    "x": URL_SAFE_NO_PAD.encode(&point[1..49]),
                    "y": URL_SAFE_NO_PAD.encode(&point[49..])}),
    }
}

fn unix_now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// SMART Backend Services, "Obtaining an access token": discovery, then a POST of exactly
/// `grant_type`, `scope`, `client_assertion_type` and `client_assertion`.
async fn token(app: &TestApp, key: &Es384, client_id: &str) -> String {
    let resp = app
        .client
        .get(app.url("/.well-known/smart-configuration"))
        .header("accept", "application/json")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let config: Value = resp.json().await.unwrap();
    let token_endpoint = config["token_endpoint"].as_str().unwrap().to_string();
    let has = |field: &str, value: &str| {
        config[field]
            .as_array()
            .is_some_and(|a| a.iter().any(|v| v == value))
    };
    assert!(has(
        "token_endpoint_auth_methods_supported",
        "private_key_jwt"
    ));
    assert!(has(
        "token_endpoint_auth_signing_alg_values_supported",
        "ES384"
    ));
    assert!(has(
        "token_endpoint_auth_signing_alg_values_supported",
        "RS384"
    ));
    assert!(has("grant_types_supported", "client_credentials"));
    assert!(has("capabilities", "client-confidential-asymmetric"));
    assert!(has("scopes_supported", "system/*.rs"));
    for endpoint in ["revocation_endpoint", "introspection_endpoint", "jwks_uri"] {
        assert!(
            config[endpoint]
                .as_str()
                .is_some_and(|u| u.starts_with("https://")),
            "{endpoint}: {config}"
        );
    }

    // The assertion, a compact JWS (RFC 7515) signed here with ring: header alg ES384, kid and
    // typ JWT; iss and sub the client, aud the token endpoint, exp at most five minutes
    // ahead, a fresh jti. ES384 signatures are r || s, 48 bytes each (RFC 7518 section 3.4).
    let header = json!({"alg": "ES384", "kid": key.kid, "typ": "JWT"});
    let claims = json!({
        "iss": client_id, "sub": client_id, "aud": token_endpoint,
        "exp": unix_now() + 300, "jti": uuid::Uuid::now_v7().to_string(),
    });
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header.to_string()),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let rng = SystemRandom::new();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &key.pkcs8, &rng).unwrap();
    let signature = pair.sign(&rng, signing_input.as_bytes()).unwrap();
    assert_eq!(signature.as_ref().len(), 96);
    let assertion = format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(signature.as_ref())
    );
    let resp = app
        .client
        .post(&token_endpoint)
        .header("accept", "application/json")
        .form(&[
            ("grant_type", "client_credentials"),
            ("scope", "system/*.rs"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().await.unwrap();
    assert!(
        body["token_type"]
            .as_str()
            .is_some_and(|t| t.eq_ignore_ascii_case("bearer")),
        "{body}"
    );
    assert!(
        body["expires_in"]
            .as_i64()
            .is_some_and(|e| e > 0 && e <= 300)
    );
    assert!(body["scope"].as_str().is_some(), "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// Bulk Data v2 kick-off response: 202 Accepted with the status URL in `Content-Location`.
fn accepted(status: u16, headers: &HeaderMap, body: &str) -> String {
    assert_eq!(status, 202, "{body}");
    headers["content-location"].to_str().unwrap().to_string()
}

async fn get_kick_off(app: &TestApp, token: &str, path: &str) -> String {
    let resp = app
        .client
        .get(app.url(path))
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .header("prefer", "respond-async")
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    accepted(status, &headers, &resp.text().await.unwrap())
}

async fn post_kick_off(
    app: &TestApp,
    token: &str,
    path: &str,
    prefer: &str,
    parameters: &Value,
) -> (u16, HeaderMap, String) {
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(token)
        .header("accept", "application/fhir+json")
        .header("content-type", "application/fhir+json")
        .header("prefer", prefer)
        .body(parameters.to_string())
        .send()
        .await
        .unwrap();
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    (status, headers, resp.text().await.unwrap())
}

/// Bulk Data v2 status requests: while 202, wait as `Retry-After` says (X-Progress is
/// informational); 200 carries the manifest.
async fn poll(app: &TestApp, token: &str, status_url: &str) -> Value {
    for _ in 0..300 {
        let resp = app
            .client
            .get(status_url)
            .bearer_auth(token)
            .send()
            .await
            .unwrap();
        match resp.status().as_u16() {
            202 => {
                let progress = resp.headers().get("x-progress").expect("X-Progress");
                assert!(!progress.to_str().unwrap().is_empty());
                let wait: u64 = resp.headers()["retry-after"]
                    .to_str()
                    .unwrap()
                    .parse()
                    .expect("Retry-After in seconds");
                assert!((1..=120).contains(&wait), "{wait}");
                actix_web::rt::time::sleep(Duration::from_secs(wait)).await;
            }
            200 => {
                let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
                assert!(
                    content_type.starts_with("application/json"),
                    "{content_type}"
                );
                return resp.json().await.unwrap();
            }
            other => panic!("status {other}: {}", resp.text().await.unwrap()),
        }
    }
    panic!("the export did not finish");
}

/// Downloads one file of a manifest (`requiresAccessToken`: with the bearer token).
async fn download(app: &TestApp, token: &str, url: &str) -> Vec<Value> {
    let resp = app
        .client
        .get(url)
        .bearer_auth(token)
        .header("accept", "application/fhir+ndjson")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200, "{url}");
    let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
    assert!(
        content_type.starts_with("application/fhir+ndjson"),
        "{content_type}"
    );
    resp.text()
        .await
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect()
}

/// Every file of a manifest, checked against the manifest: (type, resources) per output and
/// the OperationOutcomes of the `error` files.
async fn fetch_all(
    app: &TestApp,
    token: &str,
    manifest: &Value,
) -> (Vec<(String, Vec<Value>)>, Vec<Value>) {
    assert!(manifest["transactionTime"].is_string(), "{manifest}");
    assert_eq!(manifest["requiresAccessToken"], true);
    let mut outputs = Vec::new();
    for file in manifest["output"].as_array().unwrap() {
        let ty = file["type"].as_str().unwrap().to_string();
        let lines = download(app, token, file["url"].as_str().unwrap()).await;
        assert!(lines.iter().all(|r| r["resourceType"] == ty.as_str()));
        outputs.push((ty, lines));
    }
    let mut errors = Vec::new();
    for file in manifest["error"].as_array().unwrap() {
        assert_eq!(file["type"], "OperationOutcome");
        errors.extend(download(app, token, file["url"].as_str().unwrap()).await);
    }
    (outputs, errors)
}

fn of_type<'a>(outputs: &'a [(String, Vec<Value>)], ty: &str) -> Vec<&'a Value> {
    outputs
        .iter()
        .filter(|(t, _)| t == ty)
        .flat_map(|(_, lines)| lines)
        .collect()
}

/// DELETE on the status URL ends the job; its status is then not found.
async fn delete_then_gone(app: &TestApp, token: &str, status_url: &str) {
    let resp = app
        .client
        .delete(status_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 202);
    let resp = app
        .client
        .get(status_url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
}

fn has_category(resource: &Value, code: &str) -> bool {
    resource["category"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|c| c["coding"].as_array().into_iter().flatten())
        .any(|c| c["code"] == code)
}

async fn a_standard_bulk_client_replayed_from_the_specifications(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // Setup: the records, two consenting members of study1, one patient who is not a member.
    let bundles = synthea_bundles();
    for bundle in &bundles {
        let (status, body) = app.post("/fhir", bundle).await;
        assert_eq!(status, 200, "{body}");
    }
    let patients: Vec<String> = bundles
        .iter()
        .flat_map(|b| b["entry"].as_array().unwrap().iter())
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
        .collect();
    assert!(patients.len() >= 3);
    for member in &patients[..2] {
        let consent = consent_in_scope("research", member, permit("Group/study1", "HRESCH"));
        let (status, body) = app.post("/fhir/Consent", &consent).await;
        assert_eq!(status, 201, "{body}");
    }
    let key = es384("replay-es384");
    let (status, client) = app
        .post_json(
            "/api/v1/clients",
            &json!({"name": "bulk client", "organization": "research org", "role": "researcher",
                    "jwks": {"keys": [key.jwk]}, "purposes": ["HRESCH"],
                    "acts_as": ["Group/study1"]}),
        )
        .await;
    assert_eq!(status, 201, "{client}");
    let client_id = client["id"].as_str().unwrap().to_string();

    // The protocol, as the specifications write it.
    let token = token(&app, &key, &client_id).await;

    // GET kick-off: every member's records.
    let everything_url = get_kick_off(&app, &token, "/fhir/Group/study1/$export").await;
    let manifest = poll(&app, &token, &everything_url).await;
    let (everything, errors) = fetch_all(&app, &token, &manifest).await;
    assert!(errors.is_empty(), "{errors:?}");
    assert_eq!(of_type(&everything, "Patient").len(), 2);
    let laboratory_total = of_type(&everything, "Observation")
        .iter()
        .filter(|o| has_category(o, "laboratory"))
        .count();
    let observation_total = of_type(&everything, "Observation").len();
    assert!(
        laboratory_total > 0 && laboratory_total < observation_total,
        "{laboratory_total} of {observation_total}"
    );
    delete_then_gone(&app, &token, &everything_url).await;

    // POST kick-off with Parameters: one member, laboratory Observations only, and one
    // parameter the gateway does not support, ignored and reported under lenient handling.
    let parameters = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "_type", "valueString": "Patient,Observation"},
        {"name": "_typeFilter", "valueString": "Observation?category=laboratory"},
        {"name": "_typeFilter", "valueString": "Observation?value-quantity=gt5"},
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", patients[0])}},
        {"name": "includeAssociatedData", "valueCode": "LatestProvenanceResources"},
    ]});
    let path = "/fhir/Group/study1/$export";
    // Without lenient handling, the unsupported parts are refused with the GET's codes.
    let (status, _, body) = post_kick_off(&app, &token, path, "respond-async", &parameters).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("unsupported_type_filter"), "{body}");
    let (status, headers, body) = post_kick_off(
        &app,
        &token,
        path,
        "respond-async, handling=lenient",
        &parameters,
    )
    .await;
    let narrowed_url = accepted(status, &headers, &body);
    let manifest = poll(&app, &token, &narrowed_url).await;
    let (narrowed, errors) = fetch_all(&app, &token, &manifest).await;
    assert_eq!(
        of_type(&narrowed, "Patient").len(),
        1,
        "one member asked for"
    );
    let observations = of_type(&narrowed, "Observation");
    assert!(!observations.is_empty());
    assert!(observations.iter().all(|o| has_category(o, "laboratory")));
    assert!(observations.len() <= laboratory_total);
    assert!(
        narrowed
            .iter()
            .all(|(t, _)| t == "Patient" || t == "Observation")
    );
    // The error file says what was ignored, by parameter name only.
    let ignored: Vec<&Value> = errors
        .iter()
        .filter(|o| o["issue"][0]["details"]["coding"][0]["code"] == "ignored_parameter")
        .collect();
    assert_eq!(ignored.len(), 2, "{errors:?}");
    assert!(
        ignored
            .iter()
            .all(|o| o["issue"][0]["severity"] == "warning")
    );
    let said = serde_json::to_string(&ignored).unwrap();
    assert!(said.contains("includeAssociatedData") && said.contains("value-quantity"));
    delete_then_gone(&app, &token, &narrowed_url).await;

    // A patient who is not a member of the study: nothing of theirs goes out.
    let outsider = json!({"resourceType": "Parameters", "parameter": [
        {"name": "patient", "valueReference": {"reference": format!("Patient/{}", patients[2])}},
    ]});
    let (status, headers, body) =
        post_kick_off(&app, &token, path, "respond-async", &outsider).await;
    let outsider_url = accepted(status, &headers, &body);
    let manifest = poll(&app, &token, &outsider_url).await;
    assert_eq!(manifest["output"], json!([]), "{manifest}");
    delete_then_gone(&app, &token, &outsider_url).await;

    // The POST kick-off reads a JSON body only, and refuses what the GET refuses.
    let resp = app
        .client
        .post(app.url(path))
        .bearer_auth(&token)
        .header("prefer", "respond-async")
        .header("content-type", "text/plain")
        .body("_type=Patient")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 415);
    let bad_since = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_since", "valueInstant": "yesterday"}]});
    let (status, _, body) = post_kick_off(
        &app,
        &token,
        path,
        "respond-async, handling=lenient",
        &bad_since,
    )
    .await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("invalid_since"), "{body}");
    let (status, _, body) = post_kick_off(&app, &token, path, "", &outsider).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("respond_async_required"), "{body}");
}

/// The CapabilityStatement names the operations where they are served, with their
/// canonical definitions, and instantiates the Bulk Data server CapabilityStatement.
async fn capability_statement_names_the_operations(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (status, cap) = app.get("/fhir/metadata").await;
    assert_eq!(status, 200);
    assert!(
        cap["instantiates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c == "http://hl7.org/fhir/uv/bulkdata/CapabilityStatement/bulk-data")
    );
    let operations = |ty: &str| -> Vec<Value> {
        cap["rest"][0]["resource"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["type"] == ty)
            .and_then(|r| r["operation"].as_array().cloned())
            .unwrap_or_default()
    };
    assert_eq!(
        operations("Group"),
        [
            json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/group-export"})
        ]
    );
    assert_eq!(
        operations("Patient"),
        [
            json!({"name": "everything", "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything"}),
            json!({"name": "export", "definition": "http://hl7.org/fhir/uv/bulkdata/OperationDefinition/patient-export"})
        ]
    );
    assert!(operations("Observation").is_empty());
    // No system-level export is served, so none is announced.
    assert!(cap["rest"][0].get("operation").is_none());
}

both_backends!(
    a_standard_bulk_client_replayed_from_the_specifications,
    capability_statement_names_the_operations
);
