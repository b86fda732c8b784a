//! The demo loader's pipeline (`import::load_demo`: Bundles prepared on one thread, stored
//! on another, many patients per transaction) stores exactly what the same Bundles give when
//! processed one at a time, the way `POST /fhir` does; and a group is all or nothing.

use std::collections::BTreeMap;

use consentgate::demo::{self, DemoOptions};
use consentgate::import;
use consentgate::institution::Institution;
use consentgate::records::bundle;
use consentgate::records::source::Writer;
use consentgate::store::Store;
use consentgate::store::exports::{self, ResourcePage};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, spawn_app};

/// More patients than one group ([`import::DEMO_GROUP`]), so a group boundary is crossed; a
/// seed other than the default's, so the data is not the population the rest of the suite
/// sees.
const OPTIONS: DemoOptions = DemoOptions {
    patients: import::DEMO_GROUP + 9,
    seed: 4711,
};

/// Every current resource of the demo patients, by `Type/id`, without `meta.lastUpdated`
/// (the one part that depends on when it was stored).
fn stored(app: &TestApp, patients: &[String]) -> BTreeMap<String, Value> {
    let store = Store::open(&app.settings).expect("store opens");
    let mut conn = store.conn().expect("connection");
    let rows = exports::resources_of(
        &mut conn,
        &ResourcePage {
            patients: patients.to_vec(),
            limit: 1_000_000,
            ..ResourcePage::default()
        },
    )
    .expect("rows");
    rows.into_iter()
        .map(|row| {
            let mut body: Value = serde_json::from_str(&row.body).expect("JSON");
            body["meta"]
                .as_object_mut()
                .expect("meta")
                .remove("lastUpdated");
            (format!("{}/{}", row.resource_type, row.id), body)
        })
        .collect()
}

/// The ids of the demo patients (their Patient entries' `urn:uuid:` fullUrls).
fn patient_ids() -> Vec<String> {
    demo::patient_bundles(&OPTIONS)
        .flat_map(|b| b["entry"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["resource"]["resourceType"] == "Patient")
        .map(|e| {
            e["fullUrl"]
                .as_str()
                .expect("fullUrl")
                .trim_start_matches("urn:uuid:")
                .to_string()
        })
        .collect()
}

async fn groups_store_what_single_bundles_do(backend: Backend) {
    let Some(grouped) = spawn_app(backend).await else {
        return;
    };
    let Some(single) = spawn_app(backend).await else {
        return;
    };
    let institution = Institution::load(&grouped.settings).expect("policies");
    let labeller = &institution.labeller;

    let mut progress = 0;
    let count = import::load_demo(
        &Store::open(&grouped.settings).expect("store opens"),
        &grouped.settings.limits,
        labeller,
        &OPTIONS,
        || progress += 1,
    )
    .expect("demo loads");
    assert_eq!(progress, OPTIONS.patients + 1, "one tick per Bundle");

    let store = Store::open(&single.settings).expect("store opens");
    let mut conn = store.conn().expect("connection");
    let mut one_by_one = 0;
    for b in
        std::iter::once(demo::directory_bundle(&OPTIONS)).chain(demo::patient_bundles(&OPTIONS))
    {
        let response = bundle::process(&mut conn, b, &single.settings.limits, labeller)
            .expect("bundle stored");
        one_by_one += response["entry"].as_array().expect("entries").len();
    }
    assert_eq!(count, one_by_one);

    let patients = patient_ids();
    assert_eq!(patients.len(), OPTIONS.patients);
    let (a, b) = (stored(&grouped, &patients), stored(&single, &patients));
    assert!(a.len() > 40 * OPTIONS.patients, "{} resources", a.len());
    assert_eq!(a.keys().collect::<Vec<_>>(), b.keys().collect::<Vec<_>>());
    for (reference, body) in &a {
        assert_eq!(body, &b[reference], "{reference}");
    }
    // The labeller ran on the grouped path too: some demo patients carry sensitive items.
    assert!(
        a.values().any(|r| r["meta"].get("security").is_some()),
        "no resource was labelled"
    );
}

async fn a_group_is_all_or_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let institution = Institution::load(&app.settings).expect("policies");
    let limits = &app.settings.limits;
    let patient = |id: &str, reference: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [{
            "fullUrl": format!("urn:uuid:{id}"),
            "resource": {"resourceType": "Patient", "gender": "female",
                "managingOrganization": {"reference": reference}},
            "request": {"method": "POST", "url": "Patient"}
        }]})
    };
    let good = patient("0f6c3c0e-4a53-4d43-9b8e-2f3b1d7c9a01", "Patient/elsewhere");
    // A `urn:uuid:` reference that is neither in the Bundle nor stored is refused.
    let bad = patient(
        "0f6c3c0e-4a53-4d43-9b8e-2f3b1d7c9a02",
        "urn:uuid:5b1f0c7e-0000-4000-8000-000000000000",
    );
    let prepared = [good, bad]
        .into_iter()
        .map(|b| bundle::prepare(b, limits, &institution.labeller).expect("prepared"))
        .collect();
    let store = Store::open(&app.settings).expect("store opens");
    let mut conn = store.conn().expect("connection");
    let refused = bundle::commit_together(&mut conn, &Writer::Gateway, prepared);
    assert!(refused.is_err(), "{refused:?}");
    let (status, body) = app
        .get("/fhir/Patient/0f6c3c0e-4a53-4d43-9b8e-2f3b1d7c9a01")
        .await;
    assert_eq!(
        status, 404,
        "the first Bundle of the group was kept: {body}"
    );
}

both_backends!(
    groups_store_what_single_bundles_do,
    a_group_is_all_or_nothing
);
