//! Advance directives (docs/PATIENT_RIGHTS.md): a Consent of scope `adr` is the patient's
//! wishes about their care, a clinical record. It decides nothing (neither permits nor denies),
//! is released like any other record through the one decision engine, and comes first for a
//! break-glass clinician (`$everything`, `$summary`). Privacy consents are never released.
//! Each case runs on SQLite and PostgreSQL.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, actor, acts_as, ask_decision, client_token, client_token_with,
    consent, get_as, load_records, permit, purpose, register, spawn_app,
};
use crate::patient_export::advance_directive;

async fn post_consent(app: &TestApp, c: &Value) -> String {
    let (status, body) = app.post("/fhir/Consent", c).await;
    assert_eq!(status, 201, "{body}");
    body["id"].as_str().unwrap().to_string()
}

/// An advance directive of `pat` that also carries a provision, as if to grant or refuse.
fn directive_with(provision: Value) -> Value {
    let mut d = advance_directive("pat");
    d["provision"] = provision;
    d
}

fn resources(bundle: &Value) -> Vec<Value> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .collect()
}

fn consent_ids(list: &[Value]) -> Vec<String> {
    list.iter()
        .filter(|r| r["resourceType"] == "Consent")
        .map(|r| r["id"].as_str().unwrap().to_string())
        .collect()
}

async fn a_break_glass_clinician_gets_the_directive_first(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let privacy = post_consent(
        &app,
        &consent("pat", permit("Organization/clinic", "TREAT")),
    )
    .await;
    let directive = post_consent(&app, &advance_directive("pat")).await;
    let key = ClientKey::ed25519("k");
    let er = register(&app, "clinician", key.jwks(), acts_as("Organization/er")).await;
    let glass = client_token_with(&app, &key, &er, "ETREAT", Some("unconscious in the ER")).await;

    // Break-glass: the directive first, the privacy consent never.
    let (status, bundle) = get_as(&app, &glass, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 200, "{bundle}");
    let list = resources(&bundle);
    assert_eq!(list[0]["id"], json!(directive), "{bundle}");
    assert_eq!(list[0]["scope"]["coding"][0]["code"], "adr");
    assert_eq!(
        consent_ids(&list),
        std::slice::from_ref(&directive),
        "{bundle}"
    );
    assert!(list.len() > 3, "the rest follows: {bundle}");

    // The summary leads with the advance directives section, for recipients too.
    let (status, document) = get_as(&app, &glass, "/fhir/Patient/pat/$summary").await;
    assert_eq!(status, 200, "{document}");
    let composition = &document["entry"][0]["resource"];
    assert_eq!(
        composition["section"][0]["code"]["coding"][0]["code"], "42348-3",
        "{composition}"
    );
    assert_eq!(
        composition["section"][0]["entry"][0]["reference"],
        json!(format!("Consent/{directive}"))
    );
    assert_eq!(document["entry"][1]["resource"]["id"], json!(directive));
    // Still a valid R4 (R4B) document to an independent validator.
    crate::summary::validate_with_fhir_resources(&document);

    // A clinician the patient consented to gets it too (first in `$everything`), but not the
    // privacy consent; without a consent or an emergency, nothing.
    let clinic_key = ClientKey::ed25519("c");
    let clinic = register(
        &app,
        "clinician",
        clinic_key.jwks(),
        acts_as("Organization/clinic"),
    )
    .await;
    let treat = client_token(&app, &clinic_key, &clinic, "TREAT").await;
    let (status, bundle) = get_as(&app, &treat, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 200, "{bundle}");
    let list = resources(&bundle);
    assert_eq!(list[0]["id"], json!(directive));
    assert!(!consent_ids(&list).contains(&privacy), "{bundle}");
    let (status, document) = get_as(&app, &treat, "/fhir/Patient/pat/$summary").await;
    assert_eq!(status, 200, "{document}");
    let sections: Vec<&str> = document["entry"][0]["resource"]["section"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
        .collect();
    assert!(sections.contains(&"42348-3"), "{sections:?}");
    assert_eq!(sections[0], "11450-4", "not first without break-glass");
    let plain = client_token(&app, &key, &er, "TREAT").await;
    let (status, _) = get_as(&app, &plain, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 404, "no consent, no emergency: nothing");

    // The patient's own consent list shows directives first.
    let pat = app.patient_token("pat");
    let (status, bundle) = get_as(&app, &pat, "/fhir/Consent?patient=pat").await;
    assert_eq!(status, 200, "{bundle}");
    assert_eq!(consent_ids(&resources(&bundle)), [directive, privacy]);
}

async fn an_advance_directive_decides_nothing(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let key = ClientKey::ed25519("k");
    let clinic = register(
        &app,
        "clinician",
        key.jwks(),
        acts_as("Organization/clinic"),
    )
    .await;
    let token = client_token(&app, &key, &clinic, "TREAT").await;
    let decide = |resource: &'static str| ask_decision(&app, &clinic, "TREAT", resource, None);
    assert_ne!(decide("Observation/vitals").await.0, "permit");

    // A directive written as a grant permits nothing.
    let smuggled = post_consent(
        &app,
        &directive_with(permit("Organization/clinic", "TREAT")),
    )
    .await;
    let (d, _, answer) = decide("Observation/vitals").await;
    assert_ne!(d, "permit", "{answer}");
    assert!(!answer.to_string().contains(&smuggled), "{answer}");
    let (status, _) = get_as(&app, &token, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 404, "nothing released on a directive's say-so");
    let (status, _) = get_as(&app, &token, "/fhir/Observation/vitals").await;
    assert_eq!(status, 404);

    // A privacy consent permits; a directive written as a refusal takes nothing away.
    let privacy = post_consent(
        &app,
        &consent("pat", permit("Organization/clinic", "TREAT")),
    )
    .await;
    assert_eq!(decide("Observation/vitals").await.0, "permit");
    let refusal = post_consent(
        &app,
        &directive_with(
            json!({"type": "deny", "actor": actor("Organization/clinic"),
            "purpose": purpose("TREAT")}),
        ),
    )
    .await;
    let (d, _, answer) = decide("Observation/vitals").await;
    assert_eq!(d, "permit", "{answer}");
    assert!(!answer.to_string().contains(&refusal), "{answer}");
    // The directives themselves are records the privacy consent releases; it is not.
    let (status, bundle) = get_as(&app, &token, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 200, "{bundle}");
    let released = consent_ids(&resources(&bundle));
    assert!(
        released.contains(&smuggled) && released.contains(&refusal),
        "{released:?}"
    );
    assert!(!released.contains(&privacy), "{released:?}");
    let asked = format!("Consent/{privacy}");
    let (d, _, answer) = ask_decision(&app, &clinic, "TREAT", &asked, None).await;
    assert_ne!(d, "permit", "a privacy consent is never released: {answer}");

    // A consent whose scope names a privacy code beside `adr` is a privacy consent: its deny
    // holds (fail-safe), and it is never released.
    let mut mixed = consent(
        "pat",
        json!({"type": "deny", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
    );
    mixed["scope"]["coding"].as_array_mut().unwrap().push(
        json!({"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "adr"}),
    );
    let mixed = post_consent(&app, &mixed).await;
    assert_eq!(decide("Observation/vitals").await.0, "deny");
    let (status, _) = get_as(&app, &token, "/fhir/Patient/pat/$everything").await;
    assert_eq!(status, 404, "the mixed consent denies: {mixed}");
}

both_backends!(
    a_break_glass_clinician_gets_the_directive_first,
    an_advance_directive_decides_nothing,
);
