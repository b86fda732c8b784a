//! The patient's rights on the patient page, driven as a browser without JavaScript (the
//! `Browser` of `web.rs`). "My records": the own copy listed and downloaded, a correction
//! asked for from a record's row, the operator's refusal shown with its reason, the statement
//! of disagreement filed from the page and seen by the API. "Delegates": a carer named with
//! one permission acts within it and no further, and revoking on the page ends it on their
//! next request. Each case on SQLite and PostgreSQL.

use consentgate::cli::person_token;
use reqwest::header::CONTENT_DISPOSITION;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, get_as, load_records, spawn_app};
use crate::web::Browser;

async fn my_records_copy_and_corrections(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let mut browser = Browser::new(&app);
    let csrf = browser.sign_in("pat").await.hidden("csrf");

    // The page lists pat's records with a way to report a mistake in each, and no one else's.
    let page = browser.get("/records").await;
    assert_eq!(page.status, 200, "{}", page.body);
    for own in ["Observation/vitals", "Condition/htn", "Patient/pat"] {
        assert!(
            page.body.contains(&format!("/records/{own}/correct")),
            "{own} is listed: {}",
            page.body
        );
    }
    assert!(!page.body.contains("Patient/other"), "{}", page.body);
    assert!(page.body.contains("You have not asked for any correction."));

    // The download is the same copy as one FHIR collection Bundle: identified, pat's only,
    // no gateway record.
    let file = browser.get("/records/download").await;
    assert_eq!(file.status, 200, "{}", file.body);
    assert!(
        file.headers[CONTENT_DISPOSITION]
            .to_str()
            .unwrap()
            .starts_with("attachment"),
    );
    let bundle: Value = serde_json::from_str(&file.body).unwrap();
    assert_eq!(bundle["type"], "collection");
    let mut held: Vec<String> = bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect();
    held.sort();
    assert_eq!(
        held,
        [
            "Condition/hiv",
            "Condition/htn",
            "Observation/brca",
            "Observation/vitals",
            "Patient/pat"
        ]
    );

    // Someone else's record and a missing one look alike.
    for foreign in [
        "/records/Patient/other/correct",
        "/records/Observation/nope/correct",
    ] {
        assert_eq!(browser.get(foreign).await.status, 404, "{foreign}");
    }

    // Asking for a correction from the record's row; a form without the CSRF token is refused.
    let form = browser.get("/records/Condition/htn/correct").await;
    assert_eq!(form.status, 200, "{}", form.body);
    let ask = [
        ("csrf", csrf.as_str()),
        (
            "what_is_wrong",
            "I was never told I have high blood pressure.",
        ),
        ("proposed_correction", "Remove this diagnosis."),
    ];
    let forged = browser
        .post("/records/Condition/htn/correct", &ask[1..])
        .await;
    assert_eq!(forged.status, 403, "CSRF");
    let asked = browser.post("/records/Condition/htn/correct", &ask).await;
    assert_eq!(asked.status, 303, "{}", asked.body);
    assert_eq!(asked.location(), "/records#corrections");
    let page = browser.get("/records").await;
    assert!(page.body.contains("Waiting for an answer"), "{}", page.body);
    assert!(page.body.contains("Remove this diagnosis."));

    // The same request through the API; the operator refuses it with a reason.
    let patient = app.patient_token("pat");
    let (status, listed) = get_as(&app, &patient, "/api/v1/amendments").await;
    assert_eq!(status, 200, "{listed}");
    let id = listed["amendments"][0]["id"].as_str().unwrap().to_string();
    assert_eq!(
        listed["amendments"][0]["record"],
        "Condition/htn/_history/1"
    );
    let (status, denied) = app
        .post_json(
            &format!("/api/v1/amendments/{id}/answer"),
            &json!({"decision": "deny", "reason": "Confirmed by two readings."}),
        )
        .await;
    assert_eq!(status, 200, "{denied}");
    let page = browser.get("/records").await;
    assert!(page.body.contains("Refused"), "{}", page.body);
    assert!(page.body.contains("Confirmed by two readings."));
    let action = format!("/records/corrections/{id}/disagreement");
    assert!(page.body.contains(&action), "{}", page.body);

    // The statement of disagreement from the page; afterwards the form is gone and the API
    // names the statement.
    let statement = [
        ("csrf", csrf.as_str()),
        ("statement", "My own readings at home were always normal."),
    ];
    let filed = browser.post(&action, &statement).await;
    assert_eq!(filed.status, 303, "{}", filed.body);
    let page = browser.get("/records").await;
    assert!(
        page.body.contains("travels with this record"),
        "{}",
        page.body
    );
    assert!(!page.body.contains(&action), "one statement only");
    let (_, shown) = get_as(&app, &patient, &format!("/api/v1/amendments/{id}")).await;
    assert!(
        shown["statement"]
            .as_str()
            .is_some_and(|s| s.starts_with("DocumentReference/")),
        "{shown}"
    );
}

async fn delegates_are_named_and_revoked_on_the_page(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let mut browser = Browser::new(&app);
    let csrf = browser.sign_in("pat").await.hidden("csrf");
    let page = browser.get("/delegates").await;
    assert_eq!(page.status, 200, "{}", page.body);
    assert!(page.body.contains("You have not named anyone."));

    let until = (time::OffsetDateTime::now_utc() + time::Duration::days(365))
        .date()
        .to_string();
    let name = [
        ("csrf", csrf.as_str()),
        ("name", "Sam Carer"),
        ("relationship", "carer"),
        ("action", "view_access_log"),
        ("end", until.as_str()),
    ];
    assert_eq!(
        browser.post("/delegates", &name[1..]).await.status,
        403,
        "CSRF"
    );
    // Nothing ticked: refused with the API's code, and nothing named.
    let nothing = browser
        .post("/delegates", &[name[0], name[1], name[2], name[4]])
        .await;
    assert_eq!(nothing.status, 400, "{}", nothing.body);
    let named = browser.post("/delegates", &name).await;
    assert_eq!(named.status, 303, "{}", named.body);
    let page = browser.get("/delegates").await;
    assert!(page.body.contains("In effect"), "{}", page.body);
    // What they may do is listed on their card; the form below offers every action.
    assert!(
        page.body
            .contains("<li>see who looked at my records, and my notifications</li>")
    );
    assert!(
        !page
            .body
            .contains("<li>see my records, my summary and my own copy</li>")
    );

    // The delegate signs in as themself and acts within the grant only.
    let patient = app.patient_token("pat");
    let (_, listed) = get_as(&app, &patient, "/api/v1/patients/pat/delegations").await;
    assert_eq!(
        listed["delegations"].as_array().unwrap().len(),
        1,
        "{listed}"
    );
    let delegation = listed["delegations"][0]["id"].as_str().unwrap().to_string();
    let who = listed["delegations"][0]["delegate"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        page.body.contains(&who),
        "the page names the account to give them"
    );
    let carer = person_token(&app.settings, &app.base, "sub-sam", Some(who), vec![], 7200)
        .expect("delegate token");
    let log = "/api/v1/patients/pat/access-log";
    assert_eq!(get_as(&app, &carer, log).await.0, 200);
    let records = "/fhir/Patient/pat/$everything";
    assert_eq!(
        get_as(&app, &carer, records).await.0,
        403,
        "outside the grant"
    );

    // Revoked on the page: their very next request is refused.
    let revoke = format!("/delegates/{delegation}/revoke");
    assert!(page.body.contains(&revoke));
    let revoked = browser.post(&revoke, &[("csrf", csrf.as_str())]).await;
    assert_eq!(revoked.status, 303, "{}", revoked.body);
    assert_eq!(get_as(&app, &carer, log).await.0, 401);
    let page = browser.get("/delegates").await;
    assert!(page.body.contains("Revoked"), "{}", page.body);
    assert!(!page.body.contains(&revoke), "nothing left to revoke");
}

both_backends!(
    my_records_copy_and_corrections,
    delegates_are_named_and_revoked_on_the_page,
);
