//! Standard SMART Backend Services clients send exactly four fields to the token endpoint and
//! know nothing of a purpose of use. A registration's default purpose (or its only purpose)
//! fills the gap; the token, introspection and every audit entry say it was defaulted, and
//! nothing widens: the patient's consent still decides.

use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{Backend, TestApp, decode, spawn_app};
use crate::helpers::{ClientKey, assertion_claims, register};

/// The four fields a standard client sends, and nothing else.
async fn standard_token_request(app: &TestApp, key: &ClientKey, client_id: &str) -> (u16, Value) {
    let assertion = key.sign(&assertion_claims(app, client_id), Some(&key.kid));
    let form = [
        ("grant_type", "client_credentials"),
        ("scope", "system/*.rs"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion.as_str()),
    ];
    decode(
        app.client
            .post(app.url("/oauth/token"))
            .form(&form)
            .send()
            .await
            .expect("answered"),
    )
    .await
}

async fn introspect(app: &TestApp, token: &str) -> Value {
    let (status, body) = decode(
        app.client
            .post(app.url("/oauth/introspect"))
            .bearer_auth(&app.operator_token)
            .form(&[("token", token)])
            .send()
            .await
            .expect("answered"),
    )
    .await;
    assert_eq!(status, 200, "{body}");
    body
}

async fn a_default_purpose_serves_standard_clients(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    // A researcher limited to one purpose: that purpose, marked as defaulted.
    let researcher_key = ClientKey::ed25519("r");
    let researcher = register(
        &app,
        "researcher",
        researcher_key.jwks(),
        json!({"purposes": ["HRESCH"], "acts_as": ["Group/study1"]}),
    )
    .await;
    let (status, body) = standard_token_request(&app, &researcher_key, &researcher).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purpose_of_use"], "HRESCH");
    assert_eq!(body["purpose_of_use_defaulted"], true);
    let token = body["access_token"].as_str().expect("token").to_string();
    let claims: Value = jsonwebtoken::dangerous::insecure_decode_claims(&token).expect("claims");
    assert_eq!(claims["purpose_of_use"], "HRESCH");
    assert_eq!(claims["purpose_defaulted"], true);
    let introspected = introspect(&app, &token).await;
    assert_eq!(introspected["active"], true, "{introspected}");
    assert_eq!(
        introspected["purpose_of_use_defaulted"], true,
        "{introspected}"
    );

    // A clinician with several purposes and a registered default.
    let clinic_key = ClientKey::ed25519("c");
    let clinic = register(
        &app,
        "clinician",
        clinic_key.jwks(),
        json!({"purposes": ["TREAT", "ETREAT"], "default_purpose": "TREAT"}),
    )
    .await;
    let (status, body) = standard_token_request(&app, &clinic_key, &clinic).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["purpose_of_use"], "TREAT");

    // Without a default and with several purposes: refused, saying how to send one.
    let plain_key = ClientKey::ed25519("p");
    let plain = register(
        &app,
        "clinician",
        plain_key.jwks(),
        json!({"purposes": ["TREAT", "ETREAT"]}),
    )
    .await;
    let (status, body) = standard_token_request(&app, &plain_key, &plain).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "invalid_request");
    let description = body["error_description"].as_str().unwrap_or_default();
    assert!(
        description.contains("purpose_of_use") && description.contains("default_purpose"),
        "{description}"
    );

    // A default the role does not allow, or an emergency default, is refused at registration.
    for (role, extra) in [
        ("clinician", json!({"default_purpose": "HRESCH"})),
        (
            "clinician",
            json!({"purposes": ["TREAT", "ETREAT"], "default_purpose": "ETREAT"}),
        ),
        ("researcher", json!({"default_purpose": "NOT-A-CODE"})),
    ] {
        let key = ClientKey::ed25519("x");
        let mut body =
            json!({"name": "app", "organization": "org", "role": role, "jwks": key.jwks()});
        for (k, v) in extra.as_object().expect("object") {
            body[k] = v.clone();
        }
        let (status, answer) = app.post_json("/api/v1/clients", &body).await;
        assert_eq!(status, 422, "{extra}: {answer}");
        assert!(
            answer["detail"]
                .as_str()
                .unwrap_or_default()
                .contains("default_purpose"),
            "{answer}"
        );
    }

    // The audit entries of the token say it was defaulted.
    let store = consentgate::store::Store::open(&app.settings).expect("store");
    let mut conn = store.conn().expect("connection");
    let entries = consentgate::store::audit::entries_from(&mut conn, 0, 10_000).expect("entries");
    let defaulted: Vec<_> = entries
        .iter()
        .filter(|e| e.client_id == researcher)
        .collect();
    assert!(!defaulted.is_empty(), "the token issue is audited");
    assert!(
        defaulted
            .iter()
            .all(|e| e.body.contains("\"purpose_defaulted\":\"true\"")),
        "{:?}",
        defaulted.iter().map(|e| &e.body).collect::<Vec<_>>()
    );
    let named: Vec<_> = entries.iter().filter(|e| e.client_id == clinic).collect();
    assert!(
        named
            .iter()
            .all(|e| e.body.contains("\"purpose_defaulted\":\"true\""))
    );
    let listed = app.get(&format!("/api/v1/clients/{clinic}")).await;
    assert_eq!(listed.1["default_purpose"], "TREAT", "{}", listed.1);
}

both_backends!(a_default_purpose_serves_standard_clients);
