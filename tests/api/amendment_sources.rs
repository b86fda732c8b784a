//! The data source's side of records and corrections: a client with role `data_source` writes
//! records within its write scopes (never a gateway record, never a record it did not supply)
//! and reads none; each of its writes is audited; a request to amend one of its records goes
//! to its own queue, which no other source sees, and it answers there (extend, accept with a
//! corrected version, deny), named as the answerer. Each case runs on SQLite and PostgreSQL
//! against the real TLS server.

use consentgate::store::{DbConn, Store};
use diesel::RunQueryDsl;
use diesel::sql_types::{Nullable, Text};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, acts_as, assertion_claims, call, client, consent, data_source,
    data_source_token, get_as, permit, register, request_token, spawn_app,
};

/// The stable code of an OperationOutcome or a problem+json body.
fn code_of(body: &Value) -> &str {
    body["issue"][0]["details"]["coding"][0]["code"]
        .as_str()
        .or_else(|| body["code"].as_str())
        .unwrap_or("<none>")
}

fn assert_refused(answer: &(u16, Value), status: u16, code: &str) {
    assert_eq!(
        (answer.0, code_of(&answer.1)),
        (status, code),
        "{}",
        answer.1
    );
}

fn ask(record: &str) -> Value {
    json!({"record": record, "what_is_wrong": "The diagnosis date is wrong.",
        "proposed_correction": "It was diagnosed in 2021, not 2023."})
}

fn htn() -> Value {
    json!({"resourceType": "Condition", "id": "htn", "subject": {"reference": "Patient/pat"},
        "recordedDate": "2023-05-01",
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003"}]}})
}

/// Patient `pat`, a hypertension diagnosis and a heart rate, sent by a data source as one
/// transaction Bundle (PUTs and a `urn:uuid:` POST).
async fn send_records(app: &TestApp, token: &str) -> Value {
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "pat", "gender": "female"},
         "request": {"method": "PUT", "url": "Patient/pat"}},
        {"resource": htn(), "request": {"method": "PUT", "url": "Condition/htn"}},
        {"fullUrl": "urn:uuid:0b4e1c1e-8d7a-4f7e-9d43-3f1a5c2b9e10",
         "resource": {"resourceType": "Observation", "status": "final",
            "subject": {"reference": "Patient/pat"},
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "valueQuantity": {"value": 72, "unit": "/min"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]});
    let (status, response) = app
        .send_as(token, Method::POST, "/fhir", Some(&bundle))
        .await;
    assert_eq!(status, 200, "{response}");
    for entry in response["entry"].as_array().unwrap() {
        assert_eq!(entry["response"]["status"], "201 Created", "{response}");
    }
    response
}

#[derive(diesel::QueryableByName)]
struct SourceRow {
    #[diesel(sql_type = Nullable<Text>)]
    source_client: Option<String>,
}

/// The record's source, then the writer of each version, oldest first, as stored.
fn sources(app: &TestApp, ty: &str, id: &str) -> (Option<String>, Vec<Option<String>>) {
    let store = Store::open(&app.settings).expect("store opens");
    let mut conn = store.conn().unwrap();
    let conn: &mut DbConn = &mut conn;
    let query = |table: &str| {
        format!(
            "SELECT source_client FROM {table} WHERE resource_type = '{ty}' AND id = '{id}' \
             ORDER BY {}",
            if table == "resources" {
                "id"
            } else {
                "version_id"
            }
        )
    };
    let record = diesel::sql_query(query("resources"))
        .get_result::<SourceRow>(conn)
        .expect("the record is stored")
        .source_client;
    let versions = diesel::sql_query(query("resource_versions"))
        .load::<SourceRow>(conn)
        .expect("versions")
        .into_iter()
        .map(|r| r.source_client)
        .collect();
    (record, versions)
}

/// The AuditEvents about `patient` (as the operator sees them).
async fn audit_events(app: &TestApp, patient: &str) -> Vec<Value> {
    let (status, found) = app
        .get(&format!("/fhir/AuditEvent?patient={patient}&_count=100"))
        .await;
    assert_eq!(status, 200, "{found}");
    found["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect()
}

/// Whether an AuditEvent of `action` names `client` as its requesting client.
fn audited(events: &[Value], action: &str, client: &str) -> bool {
    events.iter().any(|e| {
        e["subtype"][0]["code"] == action && e["agent"][0]["who"]["identifier"]["value"] == client
    })
}

async fn a_data_source_writes_its_own_records_and_reads_none(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (a_id, a_key, a) = data_source(&app).await;
    let (b_id, _, b) = data_source(&app).await;
    send_records(&app, &a).await;
    let obs = json!({"resourceType": "Observation", "status": "final",
        "subject": {"reference": "Patient/pat"}, "code": {"text": "weight"}});
    let (status, created) = app
        .send_as(&a, Method::POST, "/fhir/Observation", Some(&obs))
        .await;
    assert_eq!(status, 201, "{created}");
    let path = format!("/fhir/Observation/{}", created["id"].as_str().unwrap());
    let (status, updated) = app.send_as(&a, Method::PUT, &path, Some(&created)).await;
    assert_eq!(status, 200, "{updated}");

    // It reads nothing, its own records included.
    for read in [
        "/fhir/Condition/htn",
        "/fhir/Condition?patient=pat",
        "/fhir/Patient/pat/$everything",
    ] {
        assert_refused(&get_as(&app, &a, read).await, 403, "forbidden");
    }

    // Never a gateway record: a Consent (the consent routes are the patient's and the
    // operators'), one in a Bundle, an AuditEvent, anything tagged gateway-internal.
    let mine = consent("pat", permit("Organization/clinic", "TREAT"));
    let refused = app
        .send_as(&a, Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_refused(&refused, 403, "forbidden");
    let event = json!({"resourceType": "AuditEvent", "id": "a1", "recorded": "2024-01-01T00:00:00Z",
        "type": {"code": "rest"}, "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    let refused = app
        .send_as(&a, Method::PUT, "/fhir/AuditEvent/a1", Some(&event))
        .await;
    assert_refused(&refused, 403, "gateway_record");
    let in_bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": mine, "request": {"method": "POST", "url": "Consent"}}]});
    let refused = app
        .send_as(&a, Method::POST, "/fhir", Some(&in_bundle))
        .await;
    assert_refused(&refused, 403, "gateway_record");
    let tagged = json!({"resourceType": "Provenance", "id": "p1",
        "meta": {"tag": [{"system": "https://consentgate.dev/fhir/CodeSystem/tag", "code": "gateway-internal"}]},
        "target": [{"reference": "Condition/htn"}], "recorded": "2024-01-01T00:00:00Z",
        "agent": [{"who": {"display": "x"}}]});
    let refused = app
        .send_as(&a, Method::PUT, "/fhir/Provenance/p1", Some(&tagged))
        .await;
    assert_refused(&refused, 403, "gateway_record");

    // Never a record it did not supply: another source's, or one an operator wrote.
    let refused = app
        .send_as(&b, Method::PUT, "/fhir/Condition/htn", Some(&htn()))
        .await;
    assert_refused(&refused, 403, "not_your_record");
    // In a batch, the entry is refused and the rest stored.
    let batch = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": htn(), "request": {"method": "PUT", "url": "Condition/htn"}},
        {"resource": {"resourceType": "Observation", "id": "b-obs", "status": "final",
            "subject": {"reference": "Patient/pat"}, "code": {"text": "temperature"}},
         "request": {"method": "PUT", "url": "Observation/b-obs"}},
    ]});
    let (status, response) = app.send_as(&b, Method::POST, "/fhir", Some(&batch)).await;
    assert_eq!(status, 200, "{response}");
    let statuses: Vec<&str> = response["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses, ["403 Forbidden", "201 Created"], "{response}");
    let (status, _) = app
        .put(
            "/fhir/Organization/org1",
            &json!({"resourceType": "Organization", "id": "org1", "name": "Clinic"}),
        )
        .await;
    assert_eq!(status, 201);
    let org = json!({"resourceType": "Organization", "id": "org1", "name": "Not the clinic"});
    let refused = app
        .send_as(&a, Method::PUT, "/fhir/Organization/org1", Some(&org))
        .await;
    assert_refused(&refused, 403, "not_your_record");
    // An operator may correct a source's record; it stays the source's.
    let (status, _) = app.put("/fhir/Condition/htn", &htn()).await;
    assert_eq!(status, 200);
    let (status, _) = app
        .send_as(&a, Method::PUT, "/fhir/Condition/htn", Some(&htn()))
        .await;
    assert_eq!(status, 200);
    let a_source = Some(a_id.clone());
    assert_eq!(
        sources(&app, "Condition", "htn"),
        (
            a_source.clone(),
            vec![a_source.clone(), None, a_source.clone()]
        )
    );
    assert_eq!(sources(&app, "Organization", "org1"), (None, vec![None]));

    // Within its scopes: `c` creates, `u` updates, for the types named.
    let create_only = data_source_token(&app, &a_key, &a_id, "system/Observation.c")
        .await
        .unwrap();
    let (status, _) = app
        .send_as(&create_only, Method::POST, "/fhir/Observation", Some(&obs))
        .await;
    assert_eq!(status, 201);
    let refused = app
        .send_as(&create_only, Method::PUT, &path, Some(&created))
        .await;
    assert_refused(&refused, 403, "insufficient_scope");
    let refused = app
        .send_as(
            &create_only,
            Method::PUT,
            "/fhir/Condition/htn",
            Some(&htn()),
        )
        .await;
    assert_refused(&refused, 403, "insufficient_scope");
    // A data source is granted no read scope, a recipient no write scope.
    let (status, body) = data_source_token(&app, &a_key, &a_id, "system/*.rs")
        .await
        .unwrap_err();
    assert_eq!((status, &body["error"]), (400, &json!("invalid_scope")));
    let key = ClientKey::ed25519("clinic-key");
    let clinic = register(&app, "clinician", key.jwks(), json!({})).await;
    let assertion = key.sign(&assertion_claims(&app, &clinic), Some(&key.kid));
    let (status, body) = request_token(
        &app,
        &assertion,
        &[("scope", "system/*.write"), ("purpose_of_use", "TREAT")],
    )
    .await;
    assert_eq!((status, &body["error"]), (400, &json!("invalid_scope")));
    let assertion = key.sign(&assertion_claims(&app, &clinic), Some(&key.kid));
    let (status, body) = request_token(
        &app,
        &assertion,
        &[("scope", "system/*.cruds"), ("purpose_of_use", "TREAT")],
    )
    .await;
    assert_eq!((status, &body["scope"]), (200, &json!("system/*.rs")));
    let refused = app
        .send_as(
            body["access_token"].as_str().unwrap(),
            Method::POST,
            "/fhir/Observation",
            Some(&obs),
        )
        .await;
    assert_refused(&refused, 403, "forbidden");

    // Each write is audited, naming the data source and what it stored.
    let events = audit_events(&app, "pat").await;
    assert!(audited(&events, "write", &a_id));
    let b_writes: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["subtype"][0]["code"] == "write"
                && e["agent"][0]["who"]["identifier"]["value"] == json!(b_id)
        })
        .collect();
    assert_eq!(b_writes.len(), 1, "{events:?}");
    assert!(
        b_writes[0].to_string().contains("Observation/b-obs"),
        "{}",
        b_writes[0]
    );
    assert!(
        !b_writes[0].to_string().contains("Condition/htn"),
        "{}",
        b_writes[0]
    );
}

async fn a_data_source_answers_the_requests_about_its_records(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (a_id, _, a) = data_source(&app).await;
    let (_, _, b) = data_source(&app).await;
    send_records(&app, &a).await;
    let (status, _) = app
        .put(
            "/fhir/Observation/op-vitals",
            &json!({"resourceType": "Observation", "status": "final",
                "subject": {"reference": "Patient/pat"}, "code": {"text": "pulse"}}),
        )
        .await;
    assert_eq!(status, 201);
    let pat = app.patient_token("pat");
    let (status, filed) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Condition/htn")),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["source"], json!(a_id), "{filed}");
    let (status, unsourced) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Observation/op-vitals")),
    )
    .await;
    assert_eq!(status, 201, "{unsourced}");
    assert_eq!(unsourced["source"], Value::Null);
    let id = filed["id"].as_str().unwrap();

    // The source's queue has its own request, and of it only what it needs to answer.
    let (status, queue) = get_as(&app, &a, "/api/v1/amendments?pending=true").await;
    assert_eq!(status, 200, "{queue}");
    let items = queue["amendments"].as_array().unwrap();
    assert_eq!(items.len(), 1, "{queue}");
    let item = &items[0];
    assert_eq!(
        (&item["id"], &item["record"]),
        (&json!(id), &json!("Condition/htn/_history/1"))
    );
    assert_eq!(item["what_is_wrong"], "The diagnosis date is wrong.");
    assert_eq!(
        item["proposed_correction"],
        "It was diagnosed in 2021, not 2023."
    );
    assert!(item["due"].is_string(), "{item}");
    for hidden in ["patient", "requested_by"] {
        assert!(item.get(hidden).is_none(), "{hidden}: {item}");
    }
    let (status, shown) = get_as(&app, &a, &format!("/api/v1/amendments/{id}")).await;
    assert_eq!((status, shown.get("patient")), (200, None), "{shown}");
    let other = format!("/api/v1/amendments/{}", unsourced["id"].as_str().unwrap());
    assert_refused(&get_as(&app, &a, &other).await, 404, "unknown_amendment");
    // Another source sees nothing of it, and cannot answer it.
    let (_, theirs) = get_as(&app, &b, "/api/v1/amendments?pending=true").await;
    assert_eq!(theirs["amendments"], json!([]));
    let show = format!("/api/v1/amendments/{id}");
    assert_refused(&get_as(&app, &b, &show).await, 404, "unknown_amendment");
    let answer = format!("/api/v1/amendments/{id}/answer");
    let extend = json!({"decision": "extend", "reason": "Waiting for the lab's records."});
    let refused = call(&app, &b, Method::POST, &answer, Some(&extend)).await;
    assert_refused(&refused, 404, "unknown_amendment");
    // The operators' queue has both.
    let (_, all) = get_as(&app, &app.operator_token, "/api/v1/amendments?pending=true").await;
    assert_eq!(all["amendments"].as_array().unwrap().len(), 2, "{all}");

    // The source extends, then accepts with a corrected version.
    let (status, extended) = call(&app, &a, Method::POST, &answer, Some(&extend)).await;
    assert_eq!(status, 200, "{extended}");
    let mut corrected = htn();
    corrected["recordedDate"] = json!("2021-05-01");
    let accept = json!({"decision": "accept", "resource": corrected});
    let (status, accepted) = call(&app, &a, Method::POST, &answer, Some(&accept)).await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["answered_by"], json!(a_id));
    assert_eq!(accepted["corrected"], "Condition/htn/_history/2");
    let (status, provenance) = app
        .get(&format!(
            "/fhir/{}",
            accepted["provenance"].as_str().unwrap()
        ))
        .await;
    assert_eq!(status, 200, "{provenance}");
    assert_eq!(
        provenance["target"][0]["reference"],
        "Condition/htn/_history/2"
    );
    assert_eq!(
        provenance["entity"][0]["what"]["reference"],
        "Condition/htn/_history/1"
    );
    assert_eq!(
        provenance["agent"][0]["who"]["identifier"]["value"],
        json!(a_id)
    );
    // The corrected version is the source's write.
    let a_source = Some(a_id.clone());
    assert_eq!(
        sources(&app, "Condition", "htn"),
        (a_source.clone(), vec![a_source.clone(), a_source.clone()])
    );

    // The patient sees it corrected, and was told who answered.
    let (_, mine) = get_as(&app, &pat, &show).await;
    assert_eq!(
        (&mine["status"], &mine["corrected"]),
        (&json!("accepted"), &json!("Condition/htn/_history/2")),
        "{mine}"
    );
    let (_, record) = get_as(&app, &pat, "/fhir/Condition/htn").await;
    assert_eq!(record["recordedDate"], "2021-05-01");
    let (status, feed) = get_as(&app, &pat, "/api/v1/patients/pat/notifications").await;
    assert_eq!(status, 200, "{feed}");
    let answers: Vec<(&Value, &Value)> = feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "amendment" && n["summary"]["answered_by"].is_string())
        .map(|n| (&n["summary"]["step"], &n["summary"]["answered_by"]))
        .collect();
    let a_json = json!(a_id);
    assert_eq!(
        answers,
        [(&json!("accepted"), &a_json), (&json!("extended"), &a_json)],
        "{feed}"
    );
    assert!(audited(&audit_events(&app, "pat").await, "amend", &a_id));
}

async fn a_data_source_denies_and_the_disagreement_travels(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let (a_id, _, a) = data_source(&app).await;
    send_records(&app, &a).await;
    let pat = app.patient_token("pat");
    let file = |record: &str| {
        let (app, pat, body) = (&app, pat.clone(), ask(record));
        async move { call(app, &pat, Method::POST, "/api/v1/amendments", Some(&body)).await }
    };
    let (status, filed) = file("Condition/htn").await;
    assert_eq!(status, 201, "{filed}");
    let id = filed["id"].as_str().unwrap();
    let deny = json!({"decision": "deny", "reason": "Confirmed by two readings."});
    let answer = format!("/api/v1/amendments/{id}/answer");
    let (status, denied) = call(&app, &a, Method::POST, &answer, Some(&deny)).await;
    assert_eq!(status, 200, "{denied}");
    assert_eq!(
        (&denied["status"], &denied["answered_by"]),
        (&json!("denied"), &json!(a_id))
    );
    // The operators may still answer a source's request.
    let (status, second) = file("Patient/pat").await;
    assert_eq!((status, &second["source"]), (201, &json!(a_id)));
    let extend = json!({"decision": "extend", "reason": "Asking the source."});
    let path = format!(
        "/api/v1/amendments/{}/answer",
        second["id"].as_str().unwrap()
    );
    assert_eq!(app.post_json(&path, &extend).await.0, 200);

    // The statement of disagreement travels with the next read by a recipient.
    let statement = json!({"statement": "My blood pressure has always been normal."});
    let disagree = format!("/api/v1/amendments/{id}/disagreement");
    let (status, _) = call(&app, &pat, Method::POST, &disagree, Some(&statement)).await;
    assert_eq!(status, 201);
    let (_, clinician) = client(
        &app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await;
    let mine = consent("pat", permit("Organization/clinic", "TREAT"));
    let (status, _) = app
        .send_as(&pat, Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_eq!(status, 201);
    let (status, read) = get_as(&app, &clinician, "/fhir/Condition/htn").await;
    assert_eq!(status, 200, "{read}");
    let marked = read["meta"]["tag"]
        .as_array()
        .unwrap()
        .iter()
        .any(|t| t["code"] == "disputed-by-patient");
    assert!(marked, "{read}");
    assert!(read["meta"]["extension"][0]["valueReference"]["reference"].is_string());
}

both_backends!(
    a_data_source_writes_its_own_records_and_reads_none,
    a_data_source_answers_the_requests_about_its_records,
    a_data_source_denies_and_the_disagreement_travels,
);
