//! Who is asking: client registration, SMART Backend Services tokens, revocation, removal,
//! people's tokens, and a hostile-token suite. Each case runs on SQLite and PostgreSQL.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentgate::auth::keys::Keyring;
use consentgate::auth::tokens::{self, AccessClaims, PersonClaims};
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use reqwest::Method;
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, assertion_claims, call, client_token, decode, entry, now, post_transaction,
    register, request_token, revoke_token, spawn_app, whoami,
};

async fn client_lifecycle(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = ClientKey::es256("k1");
    let id = register(
        &app,
        "clinician",
        key.jwks(),
        json!({"resources": ["Observation", "Condition"]}),
    )
    .await;

    // Discovery names the endpoints and algorithms.
    let (_, smart) = app.get("/.well-known/smart-configuration").await;
    assert_eq!(smart["token_endpoint"], format!("{}/oauth/token", app.base));
    let (_, jwks) = app.get("/.well-known/jwks.json").await;
    assert_eq!(jwks["keys"][0]["alg"], "EdDSA");

    let assertion = key.sign(&assertion_claims(&app, &id), Some("k1"));
    let (status, body) = request_token(
        &app,
        &assertion,
        &[
            ("scope", "system/*.rs system/Patient.rs"),
            ("purpose_of_use", "TREAT"),
        ],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "Bearer");
    assert!(body["expires_in"].as_i64().unwrap() <= 300);
    assert_eq!(
        body["scope"], "system/Condition.rs system/Observation.rs",
        "narrowed to the registration"
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.typ.as_deref(), Some("at+jwt"));
    assert!(header.kid.is_some());

    let (status, me) = whoami(&app, &token).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(
        (
            me["client_id"].as_str(),
            me["role"].as_str(),
            me["purpose_of_use"].as_str()
        ),
        (Some(id.as_str()), Some("clinician"), Some("TREAT"))
    );

    // Introspection by the operator.
    let introspect = |t: String| {
        let app = &app;
        async move {
            let resp = app
                .client
                .post(app.url("/oauth/introspect"))
                .bearer_auth(&app.operator_token)
                .form(&[("token", t.as_str())])
                .send()
                .await
                .unwrap();
            decode(resp).await
        }
    };
    let (status, info) = introspect(token.clone()).await;
    assert_eq!(
        (status, info["active"].as_bool()),
        (200, Some(true)),
        "{info}"
    );

    // Revocation by the client itself (authenticated by a fresh assertion).
    let own = key.sign(&assertion_claims(&app, &id), Some("k1"));
    let (status, body) = revoke_token(&app, &token, &own).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        whoami(&app, &token).await.0,
        401,
        "a revoked token is refused at once"
    );
    assert_eq!(introspect(token.clone()).await.1["active"], false);

    // Removal: a fresh token works, then stops working at once.
    let second = client_token(&app, &key, &id, "TREAT").await;
    assert_eq!(whoami(&app, &second).await.0, 200);
    let resp = app
        .client
        .delete(app.url(&format!("/api/v1/clients/{id}")))
        .bearer_auth(&app.operator_token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert_eq!(
        whoami(&app, &second).await.0,
        401,
        "a removed client's token is refused at once"
    );
    let again = key.sign(&assertion_claims(&app, &id), Some("k1"));
    let (status, body) = request_token(
        &app,
        &again,
        &[("scope", "system/*.rs"), ("purpose_of_use", "TREAT")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client"))
    );
}

async fn purposes_and_break_glass(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let clinician_key = ClientKey::ed25519("c");
    let clinician = register(&app, "clinician", clinician_key.jwks(), json!({})).await;
    let researcher_key = ClientKey::ed25519("r");
    let researcher = register(&app, "researcher", researcher_key.jwks(), json!({})).await;
    let ask = |key: &ClientKey, id: &str, form: Vec<(&'static str, &'static str)>| {
        let assertion = key.sign(&assertion_claims(&app, id), Some(&key.kid));
        let app = &app;
        async move {
            let mut form = form;
            form.push(("scope", "system/*.rs"));
            request_token(app, &assertion, &form).await
        }
    };
    type Case<'a> = (
        &'a ClientKey,
        &'a str,
        Vec<(&'static str, &'static str)>,
        u16,
        Option<&'static str>,
    );
    let cases: Vec<Case> = vec![
        (
            &researcher_key,
            &researcher,
            vec![("purpose_of_use", "TREAT")],
            400,
            Some("invalid_scope"),
        ),
        (
            &researcher_key,
            &researcher,
            vec![("purpose_of_use", "CLINTRCH")],
            200,
            None,
        ),
        (
            &clinician_key,
            &clinician,
            vec![("purpose_of_use", "HRESCH")],
            400,
            Some("invalid_scope"),
        ),
        (
            &clinician_key,
            &clinician,
            vec![("purpose_of_use", "NOTACODE")],
            400,
            Some("invalid_scope"),
        ),
        (
            &clinician_key,
            &clinician,
            vec![],
            400,
            Some("invalid_request"),
        ),
        (
            &clinician_key,
            &clinician,
            vec![("purpose_of_use", "ETREAT")],
            400,
            Some("invalid_request"),
        ),
        (
            &clinician_key,
            &clinician,
            vec![("purpose_of_use", "BTG"), ("justification", "  ")],
            400,
            Some("invalid_request"),
        ),
        (
            &researcher_key,
            &researcher,
            vec![
                ("purpose_of_use", "ETREAT"),
                ("justification", "unconscious in ER"),
            ],
            400,
            Some("invalid_scope"),
        ),
        (
            &clinician_key,
            &clinician,
            vec![
                ("purpose_of_use", "ETREAT"),
                ("justification", "unconscious in ER"),
            ],
            200,
            None,
        ),
    ];
    for (key, id, form, status, error) in cases {
        let (got, body) = ask(key, id, form.clone()).await;
        assert_eq!(
            (got, body["error"].as_str()),
            (status, error),
            "{form:?}: {body}"
        );
    }
    // The purpose may come from the UDAP hl7-b2b extension of the assertion.
    let mut claims = assertion_claims(&app, &clinician);
    claims["extensions"] = json!({"hl7-b2b": {"version": "1", "purpose_of_use": ["urn:oid:2.16.840.1.113883.5.8#TREAT"]}});
    let (status, body) = request_token(
        &app,
        &clinician_key.sign(&claims, Some("c")),
        &[("scope", "system/*.rs")],
    )
    .await;
    assert_eq!(
        (status, body["purpose_of_use"].as_str()),
        (200, Some("TREAT")),
        "{body}"
    );
    // A break-glass token carries its justification.
    let assertion = clinician_key.sign(&assertion_claims(&app, &clinician), Some("c"));
    let (_, body) = request_token(
        &app,
        &assertion,
        &[
            ("scope", "system/*.rs"),
            ("purpose_of_use", "ETREAT"),
            ("justification", "unconscious in ER"),
        ],
    )
    .await;
    let (_, me) = whoami(&app, body["access_token"].as_str().unwrap()).await;
    assert_eq!(me["break_glass"], true);
}

/// Every hostile token or assertion is refused.
async fn hostile_tokens(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let key = ClientKey::ed25519("k1");
    let id = register(&app, "clinician", key.jwks(), json!({})).await;
    let other_key = ClientKey::ed25519("k2");
    let _other = register(&app, "clinician", other_key.jwks(), json!({})).await;
    let good = client_token(&app, &key, &id, "TREAT").await;
    assert_eq!(whoami(&app, &good).await.0, 200);

    // Access tokens forged or bent in every way the RFCs name.
    let keyring = Keyring::open(&app.dir.path().join("keys"), 600).unwrap();
    let claims: AccessClaims = serde_json::from_value(
        jsonwebtoken::dangerous::insecure_decode_claims::<Value>(&good).unwrap(),
    )
    .unwrap();
    let sign = |c: &AccessClaims, typ: &str| tokens::sign(&keyring, typ, c).unwrap();
    let bent = |f: &dyn Fn(&mut AccessClaims)| {
        let mut c = claims.clone();
        c.jti = uuid::Uuid::now_v7().to_string();
        f(&mut c);
        sign(&c, tokens::ACCESS_TOKEN_TYP)
    };
    let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
    let parts: Vec<&str> = good.split('.').collect();
    let alg_none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "typ": "at+jwt"})),
        parts[1]
    );
    let gateway_x = app.get("/.well-known/jwks.json").await.1["keys"][0]["x"]
        .as_str()
        .unwrap()
        .to_string();
    let hs256 = {
        let header = b64(
            &json!({"alg": "HS256", "typ": "at+jwt", "kid": jsonwebtoken::decode_header(&good).unwrap().kid}),
        );
        let signing_input = format!("{header}.{}", parts[1]);
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, gateway_x.as_bytes()),
            signing_input.as_bytes(),
        );
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let foreign = {
        // Signed by a key the gateway does not know, under the gateway's kid.
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = jsonwebtoken::decode_header(&good).unwrap().kid;
        jsonwebtoken::encode(
            &header,
            &claims,
            &EncodingKey::from_ed_der(&ClientKey::ed25519("x").pkcs8),
        )
        .unwrap()
    };
    let unknown_kid = {
        let mut header = Header::new(Algorithm::EdDSA);
        header.typ = Some("at+jwt".into());
        header.kid = Some("no-such-kid".into());
        let (_, k) = keyring.signing_key().unwrap();
        jsonwebtoken::encode(&header, &claims, &k).unwrap()
    };
    let person_as_access = {
        let person = PersonClaims {
            iss: app.base.clone(),
            sub: "x".into(),
            aud: tokens::PERSON_AUDIENCE.into(),
            exp: now() + 60,
            iat: now(),
            jti: "p".into(),
            fhir_user: None,
            roles: vec!["operator".into()],
        };
        tokens::sign(&keyring, tokens::ACCESS_TOKEN_TYP, &person).unwrap()
    };
    let hostile: Vec<(&str, String)> = vec![
        ("alg none", alg_none),
        ("HS256 keyed with the public key", hs256),
        ("signed by another key", foreign),
        ("unknown kid", unknown_kid),
        (
            "wrong aud",
            bent(&|c| c.aud = "https://elsewhere/fhir".into()),
        ),
        (
            "wrong iss",
            bent(&|c| c.iss = "https://evil.example".into()),
        ),
        ("wrong typ", {
            let mut c = claims.clone();
            c.jti = "t".into();
            sign(&c, "JWT")
        }),
        (
            "expired",
            bent(&|c| {
                c.exp = now() - 120;
                c.iat = now() - 420;
                c.nbf = now() - 420;
            }),
        ),
        ("not yet valid", bent(&|c| c.nbf = now() + 3600)),
        ("person claims as an access token", person_as_access),
        (
            "oversized",
            format!("{}.{}.{}", parts[0], "A".repeat(10_000), parts[2]),
        ),
        ("malformed", "not.a.jwt".into()),
        ("empty segments", "..".into()),
        ("garbage", "%%%".into()),
    ];
    for (name, token) in &hostile {
        let (status, _) = whoami(&app, token).await;
        assert_eq!(status, 401, "{name} must be refused");
    }
    // Also refused by a FHIR endpoint, with an OperationOutcome and a challenge.
    let resp = app
        .client
        .get(app.url("/fhir/Patient?_count=1"))
        .bearer_auth(&hostile[0].1)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    assert!(
        resp.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .starts_with("Bearer")
    );

    // Client assertions bent in every way SMART and RFC 7523 forbid.
    let ok = assertion_claims(&app, &id);
    let with = |f: &dyn Fn(&mut Value)| {
        let mut c = ok.clone();
        c["jti"] = json!(uuid::Uuid::now_v7().to_string());
        f(&mut c);
        c
    };
    let replayed = key.sign(&ok, Some("k1"));
    let (status, _) = request_token(
        &app,
        &replayed,
        &[("scope", "system/*.rs"), ("purpose_of_use", "TREAT")],
    )
    .await;
    assert_eq!(status, 200, "first use of an assertion");
    let assertion_hs256 = {
        let header = b64(&json!({"alg": "HS256", "kid": "k1"}));
        let body = b64(&with(&|_| {}));
        let input = format!("{header}.{body}");
        let x = key.jwk["x"].as_str().unwrap();
        let mac = ring::hmac::sign(
            &ring::hmac::Key::new(ring::hmac::HMAC_SHA256, x.as_bytes()),
            input.as_bytes(),
        );
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.as_ref()))
    };
    let bad_assertions: Vec<(&str, String)> = vec![
        ("replayed jti", replayed),
        (
            "alg none",
            format!("{}.{}.", b64(&json!({"alg": "none"})), b64(&with(&|_| {}))),
        ),
        ("HS256 keyed with the client's public key", assertion_hs256),
        (
            "another client's key",
            other_key.sign(&with(&|_| {}), Some("k1")),
        ),
        (
            "another client's key and kid",
            other_key.sign(&with(&|_| {}), Some("k2")),
        ),
        ("unknown kid", key.sign(&with(&|_| {}), Some("nope"))),
        (
            "wrong aud",
            key.sign(
                &with(&|c| c["aud"] = json!("https://elsewhere/oauth/token")),
                Some("k1"),
            ),
        ),
        (
            "iss differs from sub",
            key.sign(&with(&|c| c["sub"] = json!("someone-else")), Some("k1")),
        ),
        (
            "unregistered iss",
            key.sign(
                &with(&|c| {
                    c["iss"] = json!("nobody");
                    c["sub"] = json!("nobody");
                }),
                Some("k1"),
            ),
        ),
        (
            "expired",
            key.sign(&with(&|c| c["exp"] = json!(now() - 120)), Some("k1")),
        ),
        (
            "exp too far ahead",
            key.sign(&with(&|c| c["exp"] = json!(now() + 3600)), Some("k1")),
        ),
        (
            "no jti",
            key.sign(
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("jti");
                }),
                Some("k1"),
            ),
        ),
        (
            "no exp",
            key.sign(
                &with(&|c| {
                    c.as_object_mut().unwrap().remove("exp");
                }),
                Some("k1"),
            ),
        ),
        (
            "oversized",
            format!("{}.{}.x", b64(&json!({"alg": "EdDSA"})), "A".repeat(10_000)),
        ),
        ("malformed", "abc".into()),
    ];
    for (name, assertion) in &bad_assertions {
        let (status, body) = request_token(
            &app,
            assertion,
            &[("scope", "system/*.rs"), ("purpose_of_use", "TREAT")],
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{name}: {body}"
        );
    }
    // Protocol errors per RFC 6749 section 5.2.
    let fresh = key.sign(&with(&|_| {}), Some("k1"));
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_assertion", fresh.as_str()),
        ])
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("unsupported_grant_type"))
    );
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .body("{}")
        .header("content-type", "application/json")
        .send()
        .await
        .unwrap();
    let (status, body) = decode(resp).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    let (status, body) = request_token(
        &app,
        &key.sign(&with(&|_| {}), Some("k1")),
        &[("scope", "patient/*.rs"), ("purpose_of_use", "TREAT")],
    )
    .await;
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
}

/// A patient's token reads that patient's records and nobody else's; a patient cannot use
/// operator endpoints.
async fn patients_see_only_themselves(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    post_transaction(&app, vec![
        entry("Patient", "alice", json!({})),
        entry("Patient", "bob", json!({})),
        entry("Observation", "a1", json!({"status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/alice"}})),
        entry("Observation", "b1", json!({"status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/bob"}})),
        entry("Organization", "org", json!({"name": "shared"})),
    ])
    .await;
    let alice = app.patient_token("alice");
    let get = |path: &'static str| call(&app, &alice, Method::GET, path, None);
    assert_eq!(get("/fhir/Patient/alice").await.0, 200);
    assert_eq!(get("/fhir/Observation/a1").await.0, 200);
    assert_eq!(get("/fhir/Observation/a1/_history/1").await.0, 200);
    for path in [
        "/fhir/Patient/bob",
        "/fhir/Observation/b1",
        "/fhir/Observation/b1/_history/1",
        "/fhir/Organization/org",
    ] {
        let (status, body) = get(path).await;
        assert_eq!(status, 404, "{path}: {body}");
    }
    let ids = |bundle: Value| -> Vec<String> {
        bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|e| e["resource"]["id"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(ids(get("/fhir/Observation").await.1), vec!["a1"]);
    assert_eq!(
        ids(get("/fhir/Observation?patient=bob").await.1),
        Vec::<String>::new()
    );
    assert_eq!(
        ids(get("/fhir/Observation?patient=alice,bob").await.1),
        vec!["a1"]
    );
    assert_eq!(ids(get("/fhir/Patient").await.1), vec!["alice"]);
    // Writes and the client registry are the operator's.
    let alice_patient = json!({"resourceType": "Patient", "id": "alice"});
    let (status, _) = app
        .send_as(
            &alice,
            Method::PUT,
            "/fhir/Patient/alice",
            Some(&alice_patient),
        )
        .await;
    assert_eq!(status, 403);
    assert_eq!(get("/api/v1/clients").await.0, 403);
    assert_eq!(whoami(&app, &alice).await.1["patient"], "alice");
}

both_backends!(
    client_lifecycle,
    purposes_and_break_glass,
    hostile_tokens,
    patients_see_only_themselves
);
