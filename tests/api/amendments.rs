//! Corrections (the right to amend): the patient's request, the answerers' queue, an extension,
//! acceptance with the corrected version and a Provenance linking both, denial with a reason,
//! the overdue flag, and a notification for every step. Each case runs on SQLite and
//! PostgreSQL against the real TLS server.

use std::time::Duration;

use consentgate::store::Store;
use diesel::RunQueryDsl;
use reqwest::Method;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, acts_as, call, client, client_token, consent, get_as,
    load_records, permit, register, spawn_app_with,
};

fn ask(record: &str) -> Value {
    json!({"record": record, "what_is_wrong": "The diagnosis date is wrong.",
        "proposed_correction": "It was diagnosed in 2021, not 2023."})
}

fn instant(text: &Value) -> OffsetDateTime {
    OffsetDateTime::parse(text.as_str().expect("an instant"), &Rfc3339).expect("RFC 3339")
}

async fn steps(app: &TestApp, patient: &str) -> Vec<String> {
    let token = app.patient_token(patient);
    let (status, feed) = get_as(
        app,
        &token,
        &format!("/api/v1/patients/{patient}/notifications"),
    )
    .await;
    assert_eq!(status, 200, "{feed}");
    feed["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|n| n["kind"] == "amendment")
        .map(|n| n["summary"]["step"].as_str().unwrap().to_string())
        .collect()
}

async fn an_accepted_amendment_links_both_versions(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[]).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let post = |token: String, body: Value| {
        let app = &app;
        async move { call(app, &token, Method::POST, "/api/v1/amendments", Some(&body)).await }
    };

    // Bad and foreign requests are refused; someone else's record looks missing.
    assert_eq!(post(pat.clone(), ask("Patient/other")).await.0, 404);
    assert_eq!(post(pat.clone(), ask("Condition/nope")).await.0, 404);
    let bad = post(pat.clone(), ask("Condition")).await;
    assert_eq!(
        (bad.0, &bad.1["code"]),
        (400, &json!("invalid_record")),
        "{}",
        bad.1
    );
    let mut empty = ask("Condition/htn");
    empty["what_is_wrong"] = json!("  ");
    let bad = post(pat.clone(), empty).await;
    assert_eq!(
        (bad.0, &bad.1["code"]),
        (400, &json!("invalid_amendment")),
        "{}",
        bad.1
    );
    let by_operator = post(app.operator_token.clone(), ask("Condition/htn")).await;
    assert_eq!(by_operator.0, 403, "{}", by_operator.1);

    let (status, filed) = post(pat.clone(), ask("Condition/htn")).await;
    assert_eq!(status, 201, "{filed}");
    assert_eq!(filed["status"], "pending");
    assert_eq!(filed["record"], "Condition/htn/_history/1");
    assert_eq!(filed["requested_by"], "Patient/pat");
    assert_eq!(filed["overdue"], false);
    let days = (instant(&filed["due"]) - instant(&filed["created"])).whole_days();
    assert_eq!(days, 60, "{filed}");
    let id = filed["id"].as_str().unwrap();

    // The answerers' queue has it; another patient does not see it.
    let (status, queue) =
        get_as(&app, &app.operator_token, "/api/v1/amendments?pending=true").await;
    assert_eq!(status, 200, "{queue}");
    assert!(
        queue["amendments"]
            .as_array()
            .unwrap()
            .iter()
            .any(|a| a["id"] == id)
    );
    let other = app.patient_token("other");
    assert_eq!(
        get_as(&app, &other, &format!("/api/v1/amendments/{id}"))
            .await
            .0,
        404
    );
    let (_, theirs) = get_as(&app, &other, "/api/v1/amendments").await;
    assert_eq!(theirs["amendments"], json!([]));

    // One extension of 30 days, with a reason; the patient cannot answer.
    let answer = format!("/api/v1/amendments/{id}/answer");
    let extend = json!({"decision": "extend", "reason": "Waiting for the lab's records."});
    let refused = call(&app, &pat, Method::POST, &answer, Some(&extend)).await;
    assert_eq!(refused.0, 403, "{}", refused.1);
    let (status, extended) = app.post_json(&answer, &extend).await;
    assert_eq!(status, 200, "{extended}");
    let days = (instant(&extended["due"]) - instant(&filed["due"])).whole_days();
    assert_eq!(days, 30, "{extended}");
    assert_eq!(app.post_json(&answer, &extend).await.0, 409);

    // Accepting stores the corrected version and a Provenance linking both.
    let (_, current) = get_as(&app, &pat, "/fhir/Condition/htn").await;
    let mut corrected = current.clone();
    corrected["recordedDate"] = json!("2021-05-01");
    let wrong = json!({"decision": "accept", "resource": {"resourceType": "Condition", "id": "hiv",
        "subject": {"reference": "Patient/pat"}}});
    let refused = app.post_json(&answer, &wrong).await;
    assert_eq!(
        (refused.0, &refused.1["code"]),
        (400, &json!("not_the_record")),
        "{}",
        refused.1
    );
    let (status, accepted) = app
        .post_json(
            &answer,
            &json!({"decision": "accept", "resource": corrected}),
        )
        .await;
    assert_eq!(status, 200, "{accepted}");
    assert_eq!(accepted["status"], "accepted");
    assert_eq!(accepted["corrected"], "Condition/htn/_history/2");
    let (status, now) = get_as(&app, &pat, "/fhir/Condition/htn").await;
    assert_eq!(
        (status, &now["recordedDate"]),
        (200, &json!("2021-05-01")),
        "{now}"
    );
    let (status, old) = get_as(&app, &pat, "/fhir/Condition/htn/_history/1").await;
    assert_eq!(
        (status, &old["recordedDate"]),
        (200, &json!("2023-05-01")),
        "{old}"
    );
    let path = format!("/fhir/{}", accepted["provenance"].as_str().unwrap());
    let (status, provenance) = app.get(&path).await;
    assert_eq!(status, 200, "{provenance}");
    assert_eq!(
        provenance["target"][0]["reference"],
        "Condition/htn/_history/2"
    );
    assert_eq!(
        provenance["entity"][0]["what"]["reference"],
        "Condition/htn/_history/1"
    );
    assert_eq!(provenance["entity"][0]["role"], "revision");
    let again = app
        .post_json(&answer, &json!({"decision": "deny", "reason": "x"}))
        .await;
    assert_eq!(
        (again.0, &again.1["code"]),
        (409, &json!("amendment_answered")),
        "{}",
        again.1
    );

    assert_eq!(
        steps(&app, "pat").await,
        ["accepted", "extended", "requested"]
    );
}

async fn a_denied_or_late_amendment_is_told(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        &[("CONSENTGATE__RIGHTS__SWEEP_INTERVAL_SECS", "1")],
    )
    .await
    else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let (status, filed) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Observation/vitals")),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    let answer = format!(
        "/api/v1/amendments/{}/answer",
        filed["id"].as_str().unwrap()
    );
    let (status, denied) = app
        .post_json(
            &answer,
            &json!({"decision": "deny", "reason": "The device reading is correct."}),
        )
        .await;
    assert_eq!(status, 200, "{denied}");
    assert_eq!(denied["status"], "denied");
    assert_eq!(denied["denial_reason"], "The device reading is correct.");
    let (_, mine) = get_as(
        &app,
        &pat,
        &format!("/api/v1/amendments/{}", filed["id"].as_str().unwrap()),
    )
    .await;
    assert_eq!(mine["status"], "denied", "{mine}");

    // A request past its deadline is shown overdue and the patient is told, once.
    let (status, late) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Condition/hiv")),
    )
    .await;
    assert_eq!(status, 201, "{late}");
    let store = Store::open(&app.settings).expect("store opens");
    let mut conn = store.conn().unwrap();
    let sql = format!(
        "UPDATE amendments SET due = 1000 WHERE id = '{}'",
        late["id"].as_str().unwrap()
    );
    diesel::sql_query(sql).execute(&mut *conn).unwrap();
    let show = format!("/api/v1/amendments/{}", late["id"].as_str().unwrap());
    let (_, shown) = get_as(&app, &pat, &show).await;
    assert_eq!(shown["overdue"], true, "{shown}");
    let mut told = Vec::new();
    for _ in 0..100 {
        told = steps(&app, "pat").await;
        if told.contains(&"overdue".to_string()) {
            break;
        }
        actix_web::rt::time::sleep(Duration::from_millis(100)).await;
    }
    actix_web::rt::time::sleep(Duration::from_millis(1500)).await;
    let told_after = steps(&app, "pat").await;
    assert_eq!(
        told_after.iter().filter(|s| *s == "overdue").count(),
        1,
        "told once: {told:?} {told_after:?}"
    );
    assert_eq!(told_after.iter().filter(|s| *s == "denied").count(), 1);

    // A delegate asks only when allowed to.
    let make =
        |actions: Value| json!({"name": "Carer", "relationship": "carer", "actions": actions});
    let (_, allowed) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/delegations",
        Some(&make(json!(["request_amendments"]))),
    )
    .await;
    let (_, not_allowed) = call(
        &app,
        &pat,
        Method::POST,
        "/api/v1/delegations",
        Some(&make(json!(["view_access_log"]))),
    )
    .await;
    let token = |d: &Value| {
        consentgate::cli::person_token(
            &app.settings,
            &app.base,
            "carer",
            Some(d["delegate"].as_str().unwrap().to_string()),
            vec![],
            600,
        )
        .unwrap()
    };
    let (status, by_carer) = call(
        &app,
        &token(&allowed),
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Condition/htn")),
    )
    .await;
    assert_eq!(status, 201, "{by_carer}");
    assert_eq!(by_carer["requested_by"], allowed["delegate"]);
    let refused = call(
        &app,
        &token(&not_allowed),
        Method::POST,
        "/api/v1/amendments",
        Some(&ask("Condition/htn")),
    )
    .await;
    assert_eq!(refused.0, 403, "{}", refused.1);
}

fn is_disputed(resource: &Value) -> Option<String> {
    let tagged = resource["meta"]["tag"]
        .as_array()?
        .iter()
        .any(|t| t["code"] == "disputed-by-patient");
    let statement = resource["meta"]["extension"].as_array()?.iter().find(|e| {
        e["url"]
            .as_str()
            .is_some_and(|u| u.ends_with("statement-of-disagreement"))
    })?;
    tagged.then(|| {
        statement["valueReference"]["reference"]
            .as_str()
            .unwrap()
            .to_string()
    })
}

async fn a_statement_of_disagreement_travels_with_the_record(backend: Backend) {
    let Some(app) = spawn_app_with(backend, &[]).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let amend = |record: &str| {
        let (app, pat, body) = (&app, pat.clone(), ask(record));
        async move { call(app, &pat, Method::POST, "/api/v1/amendments", Some(&body)).await }
    };
    let (_, htn) = amend("Condition/htn").await;
    let (_, pending) = amend("Observation/vitals").await;
    let disagree = |id: &Value| format!("/api/v1/amendments/{}/disagreement", id.as_str().unwrap());
    let statement = json!({"statement": "My blood pressure has always been normal."});
    // Only after a denial.
    let early = call(
        &app,
        &pat,
        Method::POST,
        &disagree(&pending["id"]),
        Some(&statement),
    )
    .await;
    assert_eq!(
        (early.0, &early.1["code"]),
        (409, &json!("not_disputable")),
        "{}",
        early.1
    );
    let answer = format!("/api/v1/amendments/{}/answer", htn["id"].as_str().unwrap());
    let (status, _) = app
        .post_json(
            &answer,
            &json!({"decision": "deny", "reason": "Confirmed twice."}),
        )
        .await;
    assert_eq!(status, 200);
    let other = app.patient_token("other");
    let foreign = call(
        &app,
        &other,
        Method::POST,
        &disagree(&htn["id"]),
        Some(&statement),
    )
    .await;
    assert_eq!(foreign.0, 404, "{}", foreign.1);
    let (status, filed) = call(
        &app,
        &pat,
        Method::POST,
        &disagree(&htn["id"]),
        Some(&statement),
    )
    .await;
    assert_eq!(status, 201, "{filed}");
    let again = call(
        &app,
        &pat,
        Method::POST,
        &disagree(&htn["id"]),
        Some(&statement),
    )
    .await;
    assert_eq!(again.0, 409, "{}", again.1);
    assert!(steps(&app, "pat").await.contains(&"statement".to_string()));

    // A clinician the patient consented to sees the record as disputed, with the statement
    // linked; an undisputed record is unmarked.
    let (_, clinician) = client(
        &app,
        "clinician",
        acts_as("Organization/clinic"),
        "TREAT",
        None,
    )
    .await;
    let mine = consent("pat", permit("Organization/clinic", "TREAT"));
    let (status, body) = app
        .send_as(&pat, Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_eq!(status, 201, "{body}");
    let (status, read) = get_as(&app, &clinician, "/fhir/Condition/htn").await;
    assert_eq!(status, 200, "{read}");
    let statement_ref = is_disputed(&read).unwrap_or_else(|| panic!("marked: {read}"));
    let (status, vitals) = get_as(&app, &clinician, "/fhir/Observation/vitals").await;
    assert_eq!(status, 200, "{vitals}");
    assert_eq!(is_disputed(&vitals), None, "{vitals}");
    let (status, found) = get_as(&app, &clinician, "/fhir/Condition?patient=pat").await;
    assert_eq!(status, 200, "{found}");
    let htn_entry = found["entry"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["resource"]["id"] == "htn")
        .unwrap_or_else(|| panic!("htn found: {found}"));
    assert_eq!(
        is_disputed(&htn_entry["resource"]),
        Some(statement_ref.clone())
    );
    let (status, document) = app.get(&format!("/fhir/{statement_ref}")).await;
    assert_eq!(status, 200, "{document}");
    assert_eq!(
        document["context"]["related"][0]["reference"],
        "Condition/htn"
    );

    // A disclosure package carries the mark and the statement itself.
    let key = ClientKey::ed25519("assessor-key");
    let assessor = register(&app, "disability_assessor", key.jwks(), json!({})).await;
    let expires = (OffsetDateTime::now_utc() + time::Duration::days(7))
        .replace_nanosecond(0)
        .unwrap()
        .format(&Rfc3339)
        .unwrap();
    let ask = json!({"recipient": assessor, "purpose": "PATRQT",
        "policy": "https://www.ssa.gov/forms/ssa-827.pdf",
        "selection": {"resources": ["Condition/htn"]}, "expires": expires, "max_retrievals": 1});
    let (status, created) = call(&app, &pat, Method::POST, "/api/v1/disclosures", Some(&ask)).await;
    assert_eq!(status, 201, "{created}");
    let token = client_token(&app, &key, &assessor, "PATRQT").await;
    let path = format!(
        "/api/v1/disclosures/{}/bundle",
        created["id"].as_str().unwrap()
    );
    let (status, bundle) = get_as(&app, &token, &path).await;
    assert_eq!(status, 200, "{bundle}");
    let resources: Vec<&Value> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .collect();
    assert_eq!(resources.len(), 2, "{bundle}");
    assert_eq!(is_disputed(resources[0]), Some(statement_ref.clone()));
    assert_eq!(
        format!("DocumentReference/{}", resources[1]["id"].as_str().unwrap()),
        statement_ref
    );
}

both_backends!(
    an_accepted_amendment_links_both_versions,
    a_denied_or_late_amendment_is_told,
    a_statement_of_disagreement_travels_with_the_record,
);
