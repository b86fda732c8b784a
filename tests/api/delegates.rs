//! Delegates: a patient (or an operator citing a legal document) names a RelatedPerson who then
//! signs in with their own identity and acts for the patient within the grant only; revoking
//! ends it on the next request; a guardian's delegation ends at the age of majority. Each case
//! runs on SQLite and PostgreSQL against the real TLS server.

use std::time::Duration;

use consentgate::cli::person_token;
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, TestApp, actor, call, consent, entry, get_as, load_records, post_transaction, purpose,
    spawn_app, spawn_app_with,
};

/// A token for the person whose identity provider says `fhirUser` = `delegate`.
fn delegate_token(app: &TestApp, delegate: &str) -> String {
    person_token(
        &app.settings,
        &app.base,
        &format!("sub-{delegate}"),
        Some(delegate.to_string()),
        vec![],
        7200,
    )
    .expect("delegate token")
}

/// Whether an error answer (problem+json or OperationOutcome) carries `code`.
fn refused_with(answer: &(u16, Value), status: u16, code: &str) -> bool {
    answer.0 == status && answer.1.to_string().contains(code)
}

async fn feed(app: &TestApp, patient: &str) -> Vec<Value> {
    let token = app.patient_token(patient);
    let (status, feed) = get_as(
        app,
        &token,
        &format!("/api/v1/patients/{patient}/notifications"),
    )
    .await;
    assert_eq!(status, 200, "{feed}");
    feed["notifications"].as_array().expect("a list").clone()
}

async fn a_delegate_acts_within_its_grant_only(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");

    // The patient names a carer who may see the access log and manage consents.
    let ask = json!({"name": "Sam Carer", "relationship": "carer",
        "actions": ["view_access_log", "manage_consents"]});
    let (status, made) = call(&app, &pat, Method::POST, "/api/v1/delegations", Some(&ask)).await;
    assert_eq!(status, 201, "{made}");
    assert_eq!(made["status"], "active");
    assert_eq!(made["created_by"], "Patient/pat");
    let delegate = made["delegate"].as_str().unwrap().to_string();
    assert!(delegate.starts_with("RelatedPerson/"), "{made}");
    let carer = delegate_token(&app, &delegate);

    let (status, me) = get_as(&app, &carer, "/api/v1/whoami").await;
    assert_eq!(
        (status, &me["kind"], &me["patient"]),
        (200, &json!("delegate"), &json!("pat")),
        "{me}"
    );

    // Inside the grant: the patient's access log, and a consent for the patient.
    let (status, log) = get_as(&app, &carer, "/api/v1/patients/pat/access-log").await;
    assert_eq!(status, 200, "{log}");
    let mine = consent(
        "pat",
        json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
    );
    let (status, created) = app
        .send_as(&carer, Method::POST, "/fhir/Consent", Some(&mine))
        .await;
    assert_eq!(status, 201, "{created}");
    let (status, found) = get_as(&app, &carer, "/fhir/Consent?patient=pat").await;
    assert_eq!(status, 200, "{found}");

    // Outside it: another patient, reading records, sending evidence, naming delegates,
    // writing records.
    let other_log = get_as(&app, &carer, "/api/v1/patients/other/access-log").await;
    assert_eq!(other_log.0, 403, "{}", other_log.1);
    let theirs = consent("other", json!({"type": "permit"}));
    let answer = app
        .send_as(&carer, Method::POST, "/fhir/Consent", Some(&theirs))
        .await;
    assert_eq!(answer.0, 403, "{}", answer.1);
    let answer = get_as(&app, &carer, "/fhir/Observation?patient=pat").await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );
    let answer = get_as(&app, &carer, "/fhir/Patient/pat").await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );
    // (A well-formed query: a malformed one may be refused before the caller is.)
    let answer = get_as(&app, &carer, "/api/v1/disclosures?recipient=someone").await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );
    let answer = call(
        &app,
        &carer,
        Method::POST,
        "/api/v1/delegations",
        Some(&ask),
    )
    .await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );
    let body = json!({"resourceType": "Patient", "id": "pat"});
    let answer = app
        .send_as(&carer, Method::PUT, "/fhir/Patient/pat", Some(&body))
        .await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );

    // The audit trail and the patient's feed name both the delegate and the patient.
    let (status, log) = get_as(&app, &pat, "/api/v1/patients/pat/access-log").await;
    assert_eq!(status, 200, "{log}");
    let (status, events) = get_as(&app, &app.operator_token, "/fhir/AuditEvent?patient=pat").await;
    assert_eq!(status, 200, "{events}");
    let text = events.to_string();
    assert!(text.contains(&delegate), "the delegate is named: {text}");
    let notices = feed(&app, "pat").await;
    let granted = notices
        .iter()
        .find(|n| n["kind"] == "delegation" && n["summary"]["action"] == "grant")
        .unwrap_or_else(|| panic!("the patient is told of the delegation: {notices:?}"));
    assert_eq!(granted["summary"]["delegate"], json!(delegate));
    let acted = notices
        .iter()
        .find(|n| n["kind"] == "delegate_action")
        .unwrap_or_else(|| panic!("the patient is told of the carer's action: {notices:?}"));
    assert_eq!(acted["summary"]["delegate"], json!(delegate));
    assert_eq!(acted["summary"]["on_behalf_of"], "Patient/pat");
    assert_eq!(acted["summary"]["action"], "grant");

    // Revoking ends it on the delegate's very next request.
    let id = made["id"].as_str().unwrap();
    let revoke = format!("/api/v1/delegations/{id}/revoke");
    let answer = call(&app, &carer, Method::POST, &revoke, None).await;
    assert_eq!(answer.0, 403, "a delegate cannot revoke: {}", answer.1);
    let (status, ended) = call(&app, &pat, Method::POST, &revoke, None).await;
    assert_eq!(
        (status, &ended["status"]),
        (200, &json!("revoked")),
        "{ended}"
    );
    assert_eq!(get_as(&app, &carer, "/api/v1/whoami").await.0, 401);
    assert_eq!(
        get_as(&app, &carer, "/api/v1/patients/pat/access-log")
            .await
            .0,
        401
    );
    let again = call(&app, &pat, Method::POST, &revoke, None).await;
    assert_eq!(again.0, 409, "{}", again.1);
    assert!(
        feed(&app, "pat")
            .await
            .iter()
            .any(|n| n["kind"] == "delegation" && n["summary"]["action"] == "revoke"),
        "the patient is told of the revocation"
    );

    // An operator names a delegate only with the legal document behind it.
    let by_operator = json!({"patient": "pat", "name": "A. Attorney",
        "relationship": "power_of_attorney", "actions": ["answer_requests"]});
    let answer = app.post_json("/api/v1/delegations", &by_operator).await;
    assert!(
        refused_with(&answer, 400, "legal_document_required"),
        "{answer:?}"
    );
    let mut cited = by_operator.clone();
    cited["legal_document"] = json!("Registered LPA 7000-1234");
    let (status, made) = app.post_json("/api/v1/delegations", &cited).await;
    assert_eq!(
        (status, &made["created_by"]),
        (201, &json!("operator")),
        "{made}"
    );
    let attorney = delegate_token(&app, made["delegate"].as_str().unwrap());
    assert_eq!(
        get_as(&app, &attorney, "/api/v1/access-requests").await.0,
        200
    );
    let answer = get_as(&app, &attorney, "/api/v1/patients/pat/access-log").await;
    assert!(
        refused_with(&answer, 403, "outside_delegation"),
        "{answer:?}"
    );
    let (status, listed) = get_as(&app, &pat, "/api/v1/patients/pat/delegations").await;
    assert_eq!(status, 200, "{listed}");
    assert_eq!(
        listed["delegations"].as_array().unwrap().len(),
        2,
        "{listed}"
    );
    let answer = get_as(&app, &pat, "/api/v1/patients/other/delegations").await;
    assert_eq!(answer.0, 403, "{}", answer.1);

    // A RelatedPerson nobody named is refused like any bad token.
    let stranger = delegate_token(&app, "RelatedPerson/nobody");
    assert_eq!(get_as(&app, &stranger, "/api/v1/whoami").await.0, 401);
}

/// The minor `id`, born `birth_date`.
async fn put_patient(app: &TestApp, id: &str, birth_date: &str) {
    post_transaction(
        app,
        vec![entry(
            "Patient",
            id,
            json!({"gender": "male", "birthDate": birth_date}),
        )],
    )
    .await;
}

fn guardian_of(patient: &str) -> Value {
    json!({"patient": patient, "name": "Guardian", "relationship": "guardian",
        "actions": ["view_access_log"], "legal_document": "Court order 42"})
}

async fn a_guardians_delegation_ends_at_majority(backend: Backend) {
    let Some(app) = spawn_app_with(
        backend,
        &[("CONSENTGATE__RIGHTS__SWEEP_INTERVAL_SECS", "1")],
    )
    .await
    else {
        return;
    };
    let this_year = time::OffsetDateTime::now_utc().year();
    let child = format!("{}-06-01", this_year - 10);
    put_patient(&app, "kid", &child).await;
    put_patient(&app, "teen", &child).await;
    put_patient(&app, "adult", "1990-01-01").await;

    // A guardian is named only for a minor.
    let answer = app
        .post_json("/api/v1/delegations", &guardian_of("adult"))
        .await;
    assert!(refused_with(&answer, 422, "not_a_minor"), "{answer:?}");
    let (status, kid) = app
        .post_json("/api/v1/delegations", &guardian_of("kid"))
        .await;
    assert_eq!(status, 201, "{kid}");
    let (status, teen) = app
        .post_json("/api/v1/delegations", &guardian_of("teen"))
        .await;
    assert_eq!(status, 201, "{teen}");
    let guardian = delegate_token(&app, kid["delegate"].as_str().unwrap());
    assert_eq!(
        get_as(&app, &guardian, "/api/v1/patients/kid/access-log")
            .await
            .0,
        200
    );

    // Both come of age (their birth date corrected by the operator). The guardian who signs
    // in is refused on that very request; the other delegation is ended by the sweep even
    // though its delegate never signs in again.
    put_patient(&app, "kid", "2000-01-01").await;
    put_patient(&app, "teen", "2000-01-01").await;
    assert_eq!(
        get_as(&app, &guardian, "/api/v1/patients/kid/access-log")
            .await
            .0,
        401
    );
    for (patient, made) in [("kid", &kid), ("teen", &teen)] {
        let mut ended = false;
        for _ in 0..100 {
            let (status, listed) = get_as(
                &app,
                &app.operator_token,
                &format!("/api/v1/patients/{patient}/delegations"),
            )
            .await;
            assert_eq!(status, 200, "{listed}");
            let status = &listed["delegations"][0]["status"];
            if *status == "ended_at_majority" {
                assert_eq!(listed["delegations"][0]["id"], made["id"]);
                ended = true;
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(ended, "{patient}'s guardian delegation ends at majority");
        // The notice rides on the audit entry, appended just after the status changes.
        let mut told = Vec::new();
        for _ in 0..50 {
            told = feed(&app, patient).await;
            if told
                .iter()
                .any(|n| n["kind"] == "delegation" && n["summary"]["reason"] == "majority")
            {
                break;
            }
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        assert!(
            told.iter()
                .any(|n| n["kind"] == "delegation" && n["summary"]["reason"] == "majority"),
            "{patient} is told: {told:?}"
        );
    }
}

both_backends!(
    a_delegate_acts_within_its_grant_only,
    a_guardians_delegation_ends_at_majority,
);

/// The patient's own copy: `$everything` for themself is audited as their own access (the
/// AuditEvent trail has it) and stays out of the accounting of disclosures; a delegate
/// allowed to read records gets the same copy, which the accounting does list, naming them.
async fn the_patients_own_copy_is_not_a_disclosure(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let pat = app.patient_token("pat");
    let path = "/fhir/Patient/pat/$everything";
    let own = crate::helpers::request(&app, &pat, Method::GET, path)
        .header("x-request-id", "own-copy-1")
        .send()
        .await
        .expect("answered");
    let (status, bundle) = crate::helpers::decode(own).await;
    assert_eq!(status, 200, "{bundle}");
    let ids: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            )
        })
        .collect();
    for want in [
        "Patient/pat",
        "Observation/vitals",
        "Condition/htn",
        "Condition/hiv",
    ] {
        assert!(
            ids.iter().any(|i| i == want),
            "{want} in the own copy: {ids:?}"
        );
    }
    assert!(ids.iter().all(|i| !i.starts_with("Patient/other")));
    assert_eq!(
        get_as(&app, &pat, "/fhir/Patient/other/$everything")
            .await
            .0,
        404
    );

    let (status, events) = get_as(&app, &app.operator_token, "/fhir/AuditEvent?patient=pat").await;
    assert_eq!(status, 200, "{events}");
    assert!(
        events.to_string().contains("own-copy-1"),
        "audited: {events}"
    );
    let (status, log) = get_as(&app, &pat, "/api/v1/patients/pat/access-log").await;
    assert_eq!(status, 200, "{log}");
    assert!(
        log["disclosures"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["request_id"] != "own-copy-1"),
        "the patient's own copy is not a disclosure: {log}"
    );

    let ask = json!({"name": "Reader", "relationship": "carer", "actions": ["read_records"]});
    let (status, made) = call(&app, &pat, Method::POST, "/api/v1/delegations", Some(&ask)).await;
    assert_eq!(status, 201, "{made}");
    let delegate = made["delegate"].as_str().unwrap().to_string();
    let reader = delegate_token(&app, &delegate);
    let (status, theirs) = get_as(&app, &reader, path).await;
    assert_eq!(status, 200, "{theirs}");
    // The same copy as the patient's own, which leaves out the delegate's RelatedPerson: the
    // gateway wrote it about sharing (gateway-internal); the delegations API shows it.
    let (_, again) = get_as(&app, &pat, path).await;
    assert_eq!(theirs["entry"], again["entry"]);
    assert_eq!(again["entry"].as_array().unwrap().len(), ids.len());
    assert!(!again.to_string().contains(&delegate), "{again}");
    let (_, operators) = get_as(&app, &app.operator_token, path).await;
    assert!(
        operators
            .to_string()
            .contains(delegate.trim_start_matches("RelatedPerson/")),
        "an operator's $everything has every record: {operators}"
    );
    assert_eq!(
        get_as(&app, &reader, "/fhir/Patient/other/$everything")
            .await
            .0,
        404
    );
    let (_, log) = get_as(&app, &pat, "/api/v1/patients/pat/access-log").await;
    let by_delegate: Vec<&Value> = log["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|d| d["recipient"]["kind"] == "delegate")
        .collect();
    assert!(
        by_delegate
            .iter()
            .any(|d| d["recipient"]["user"] == json!(delegate)),
        "a delegate's copy is listed, naming them: {log}"
    );
}

both_backends!(the_patients_own_copy_is_not_a_disclosure);
