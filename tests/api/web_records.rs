//! "My records" on the patient page, driven as a browser without JavaScript (the `Browser`
//! of `web.rs`): the patient's own copy listed and downloaded, a correction asked for from a
//! record's row, the operator's refusal shown with its reason, and the statement of
//! disagreement filed from the page and seen by the API. Each case on SQLite and PostgreSQL.

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

both_backends!(my_records_copy_and_corrections);
