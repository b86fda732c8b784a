//! The hot path's caches never outlive a revocation (issue 11): with every cache warm (the
//! token's verified signature, the memoised Cedar decision for the same inputs, pooled
//! connections), a consent revoked, a token revoked or a client removed holds on the very
//! next read and search, on SQLite and PostgreSQL, and on a second `consentgate serve`
//! process sharing the PostgreSQL database with the one that took the revocation. The bearer
//! token's database check of these routes is made inside the release's one database trip
//! (`release::context`), so these tests are what proves it is still made.

use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, acts_as, call, client, consent, get_as, permit, spawn_app};
use crate::helpers::{ClientKey, PgDatabase, decode, now};
use crate::served::{self, PUBLIC_BASE};

const CLINIC: &str = "Organization/hp-clinic";
/// The patient who revokes, and one who does not: both ask the same question of Cedar
/// (same role, type, labels, purpose, consent outcome), so the second one's reads prove
/// the memo stays warm while the first one's revocation holds.
const PATIENTS: [&str; 2] = ["hp-revokes", "hp-stays"];

fn observation(id: &str, patient: &str) -> Value {
    json!({"resourceType": "Observation", "id": id, "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": format!("Patient/{patient}")},
           "effectiveDateTime": "2025-02-01",
           "valueQuantity": {"value": 72, "unit": "/min",
                             "system": "http://unitsofmeasure.org", "code": "/min"}})
}

async fn revocation_and_removal_hold_with_caches_warm(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let mut consent_ids = Vec::new();
    for patient in PATIENTS {
        let (status, body) = app
            .put(
                &format!("/fhir/Patient/{patient}"),
                &json!({"resourceType": "Patient", "id": patient, "gender": "female"}),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let obs = format!("{patient}-obs");
        let (status, body) = app
            .put(
                &format!("/fhir/Observation/{obs}"),
                &observation(&obs, patient),
            )
            .await;
        assert_eq!(status, 201, "{body}");
        let (status, body) = call(
            &app,
            &app.patient_token(patient),
            Method::POST,
            "/fhir/Consent",
            Some(&consent(patient, permit(CLINIC, "TREAT"))),
        )
        .await;
        assert_eq!(status, 201, "{body}");
        consent_ids.push(body["id"].as_str().unwrap().to_string());
    }
    let (client_id, token) = client(&app, "clinician", acts_as(CLINIC), "TREAT", None).await;
    let (_, revoked_token) = client(&app, "clinician", acts_as(CLINIC), "TREAT", None).await;
    let read = |patient: &str| format!("/fhir/Observation/{patient}-obs");
    let search = |patient: &str| format!("/fhir/Observation?patient={patient}&_count=10");
    let found = |page: &Value| page["entry"].as_array().map_or(0, Vec::len);

    // Warm every cache: the tokens' signatures, the decision memo, the pool.
    for _ in 0..3 {
        for patient in PATIENTS {
            for t in [&token, &revoked_token] {
                let (status, body) = get_as(&app, t, &read(patient)).await;
                assert_eq!(status, 200, "{body}");
                let (status, page) = get_as(&app, t, &search(patient)).await;
                assert_eq!((status, found(&page)), (200, 1), "{page}");
            }
        }
    }

    // A token revoked (RFC 7009) is refused on its very next read, search and $everything,
    // its verified signature still cached.
    let resp = app
        .client
        .post(app.url("/oauth/revoke"))
        .bearer_auth(&app.operator_token)
        .form(&[("token", revoked_token.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let everything = format!("/fhir/Patient/{}/$everything", PATIENTS[1]);
    for path in [read(PATIENTS[1]), search(PATIENTS[1]), everything] {
        let (status, body) = get_as(&app, &revoked_token, &path).await;
        assert_eq!(status, 401, "{path}: a revoked token gets nothing: {body}");
    }

    // The first patient revokes: her very next read and search release nothing, while the
    // other patient's identical question is still answered (from the warm memo).
    let (status, body) = call(
        &app,
        &app.patient_token(PATIENTS[0]),
        Method::POST,
        &format!("/fhir/Consent/{}/$revoke", consent_ids[0]),
        Some(&json!({})),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let (status, body) = get_as(&app, &token, &read(PATIENTS[0])).await;
    assert_eq!(status, 404, "revoked, hidden like a missing record: {body}");
    let (status, page) = get_as(&app, &token, &search(PATIENTS[0])).await;
    assert_eq!((status, found(&page)), (200, 0), "{page}");
    let (status, body) = get_as(&app, &token, &read(PATIENTS[1])).await;
    assert_eq!(
        status, 200,
        "the other patient's consent still holds: {body}"
    );

    // The operator removes the client: its very next request, with the same cached token,
    // is refused.
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/clients/{client_id}")))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    for path in [read(PATIENTS[1]), search(PATIENTS[1])] {
        let (status, body) = get_as(&app, &token, &path).await;
        assert_eq!(status, 401, "{path}: a removed client gets nothing: {body}");
    }
}

both_backends!(revocation_and_removal_hold_with_caches_warm);

/// Two `consentgate serve` processes on one PostgreSQL: what instance A is told (a consent
/// revoked, a token revoked, a client removed) holds on instance B's very next request,
/// with B's token cache, decision memo and pool warm from the same requests just before.
#[actix_web::test]
async fn second_instance_holds_revocations_with_caches_warm() {
    let Some(pg) = PgDatabase::create() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let a = served::serve(dir.path(), &pg.url, "a", &[]).await;
    let b = served::serve(dir.path(), &pg.url, "b", &[]).await;
    let http = served::plain_client();
    let operator = served::operator(dir.path(), &pg.url);
    let patient = PATIENTS[0];
    let alice = served::person(dir.path(), &pg.url, "hp-alice", Some(patient), &[]);
    let send = |method: Method, url: String, token: String, body: Option<Value>| {
        let http = http.clone();
        async move {
            let mut req = http.request(method, url).bearer_auth(token);
            if let Some(body) = body {
                req = req
                    .header("content-type", "application/fhir+json")
                    .body(body.to_string());
            }
            decode(req.send().await.unwrap()).await
        }
    };
    let obs = format!("{patient}-obs");
    for (path, body) in [
        (
            format!("/fhir/Patient/{patient}"),
            json!({"resourceType": "Patient", "id": patient}),
        ),
        (
            format!("/fhir/Observation/{obs}"),
            observation(&obs, patient),
        ),
    ] {
        let (status, body) = send(Method::PUT, a.url(&path), operator.clone(), Some(body)).await;
        assert_eq!(status, 201, "{body}");
    }
    let give_consent = || {
        send(
            Method::POST,
            a.url("/fhir/Consent"),
            alice.clone(),
            Some(consent(patient, permit(CLINIC, "TREAT"))),
        )
    };
    let (status, body) = give_consent().await;
    assert_eq!(status, 201, "{body}");
    let consent_id = body["id"].as_str().unwrap().to_string();

    // A clinician registered on A; its tokens come from B.
    let key = ClientKey::ed25519("k1");
    let registration = json!({"name": "hp clinic app", "organization": "hp clinic",
        "role": "clinician", "jwks": key.jwks(), "acts_as": [CLINIC]});
    let resp = http
        .post(a.url("/api/v1/clients"))
        .bearer_auth(&operator)
        .json(&registration)
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(status, 201, "{body}");
    let client_id = body["id"].as_str().unwrap().to_string();
    let token = || {
        let claims = json!({"iss": client_id, "sub": client_id,
            "aud": format!("{PUBLIC_BASE}/oauth/token"), "exp": now() + 240, "iat": now(),
            "jti": uuid::Uuid::now_v7().to_string()});
        let assertion = key.sign(&claims, Some(&key.kid));
        let http = http.clone();
        let url = b.url("/oauth/token");
        async move {
            let form = [
                ("grant_type", "client_credentials"),
                (
                    "client_assertion_type",
                    "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                ),
                ("client_assertion", assertion.as_str()),
                ("scope", "system/*.rs"),
                ("purpose_of_use", "TREAT"),
            ];
            let (status, body) = decode(http.post(url).form(&form).send().await.unwrap()).await;
            assert_eq!(status, 200, "{body}");
            body["access_token"].as_str().unwrap().to_string()
        }
    };
    let read = b.url(&format!("/fhir/Observation/{obs}"));
    let search = b.url(&format!("/fhir/Observation?patient={patient}&_count=10"));
    let entries = |page: &Value| page["entry"].as_array().map_or(0, Vec::len);
    let on_b = |t: &str| {
        let (read, search, t) = (read.clone(), search.clone(), t.to_string());
        let send = &send;
        async move {
            let (read_status, _) = send(Method::GET, read, t.clone(), None).await;
            let (search_status, page) = send(Method::GET, search, t, None).await;
            (read_status, search_status, entries(&page))
        }
    };

    // B's caches warm; A takes the consent's revocation; B's next request releases nothing.
    let first = token().await;
    for _ in 0..3 {
        assert_eq!(on_b(&first).await, (200, 200, 1));
    }
    let revoke = a.url(&format!("/fhir/Consent/{consent_id}/$revoke"));
    let (status, body) = send(Method::POST, revoke, alice.clone(), Some(json!({}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        on_b(&first).await,
        (404, 200, 0),
        "A's consent revocation holds on B"
    );

    // Consent again; A revokes the token; B refuses it on its next read and search.
    let (status, body) = give_consent().await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(on_b(&first).await, (200, 200, 1));
    let resp = http
        .post(a.url("/oauth/revoke"))
        .bearer_auth(&operator)
        .form(&[("token", first.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(
        on_b(&first).await,
        (401, 401, 0),
        "A's token revocation holds on B"
    );

    // A removes the client; B refuses its other (warm) token on the next request.
    let second = token().await;
    assert_eq!(on_b(&second).await, (200, 200, 1));
    let resp = http
        .delete(a.url(&format!("/api/v1/clients/{client_id}")))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(on_b(&second).await, (401, 401, 0), "A's removal holds on B");
}
