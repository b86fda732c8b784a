//! Disclosure packages (DESIGN.md flow 3): a patient sends evidence for a disability claim to
//! an assessor. The signature is checked here independently of the gateway's code: the key
//! comes from the published JWKS and the check is ring's Ed25519 over RFC 7515's signing
//! input. Each case runs on SQLite and PostgreSQL.

use std::collections::BTreeSet;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{ED25519, UnparsedPublicKey};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::both_backends;
use crate::helpers::{
    ACT_CODE, Backend, ClientKey, TestApp, call, client_token, decode, fixture, register, spawn_app,
};

const TODD: &str = "0ce18c7d-fd78-46d9-81b5-8bed231c337a";
const LUISA: &str = "2feb4fc9-0b59-4d72-bc87-aafcf11083d9";
/// Luisa's miscarriage, labelled SEX and R by the gateway at ingest.
const MISCARRIAGE: &str = "Condition/78dca8ed-e09d-4a6a-ac8b-3c4ace6c2515";
const SSA_827: &str = "https://www.ssa.gov/forms/ssa-827.pdf";

fn synthea(name: &str) -> Value {
    let dir = crate::helpers::fixtures().join("synthea");
    let file = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .find(|f| f.starts_with(name))
        .unwrap_or_else(|| panic!("no fixture {name}"));
    fixture(&format!("synthea/{file}"))
}

/// A FHIR dateTime `secs` seconds from now.
fn in_secs(secs: i64) -> String {
    let t = OffsetDateTime::now_utc() + time::Duration::seconds(secs);
    t.replace_nanosecond(0).unwrap().format(&Rfc3339).unwrap()
}

/// Hand-made records of Todd: a psychotherapy note (never in a filtered package) and a
/// record labelled SEX (which the patient's consent must then name).
fn extra_records() -> Value {
    let condition = |id: &str, date: &str, label: &str| {
        json!({"resource": {"resourceType": "Condition", "id": id,
            "meta": {"security": [{"system": ACT_CODE, "code": label}]},
            "subject": {"reference": format!("Patient/{TODD}")}, "onsetDateTime": date,
            "code": {"text": "hand-made"}},
            "request": {"method": "PUT", "url": format!("Condition/{id}")}})
    };
    json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        condition("todd-psychotherapy", "2020-02-01T10:00:00Z", "PSYTHPN"),
        condition("todd-reproductive", "2016-03-01T10:00:00Z", "SEX"),
    ]})
}

/// The Conditions and Procedures of a patient bundle dated on or after 2015-01-01 (UTC),
/// computed from the fixture itself.
fn since_2015(bundle: &Value) -> BTreeSet<String> {
    let cutoff = OffsetDateTime::parse("2015-01-01T00:00:00Z", &Rfc3339).unwrap();
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .filter(|r| r["resourceType"] == "Condition" || r["resourceType"] == "Procedure")
        .filter(|r| {
            let date = r["onsetDateTime"]
                .as_str()
                .or(r["performedPeriod"]["start"].as_str())
                .or(r["performedDateTime"].as_str())
                .expect("a clinical date");
            OffsetDateTime::parse(date, &Rfc3339).unwrap() >= cutoff
        })
        .map(|r| {
            format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            )
        })
        .collect()
}

/// A recipient's fetch: status, raw body, signature header.
async fn fetch(app: &TestApp, token: &str, id: &str) -> (u16, Vec<u8>, Option<String>) {
    let resp = app
        .client
        .get(app.url(&format!("/api/v1/disclosures/{id}/bundle")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    let status = resp.status().as_u16();
    if status == 200 {
        let ct = resp.headers()["content-type"].to_str().unwrap().to_string();
        assert!(ct.starts_with("application/fhir+json"), "{ct}");
    }
    let sig = resp
        .headers()
        .get("x-jws-signature")
        .map(|v| v.to_str().unwrap().to_string());
    (status, resp.bytes().await.unwrap().to_vec(), sig)
}

fn problem_code(body: &[u8]) -> String {
    let v: Value = serde_json::from_slice(body).unwrap();
    v["code"].as_str().unwrap_or_default().to_string()
}

/// Checks a detached compact JWS over `payload` against the gateway's published JWKS, as any
/// third party would: nothing of the gateway's code is used.
async fn verify(app: &TestApp, jws: &str, payload: &[u8]) -> bool {
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "compact serialization");
    assert_eq!(parts[1], "", "the payload is detached");
    let header: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(header["alg"], "EdDSA");
    let resp = app
        .client
        .get(app.url("/.well-known/jwks.json"))
        .send()
        .await
        .unwrap();
    let (status, jwks) = decode(resp).await;
    assert_eq!(status, 200);
    let key = jwks["keys"]
        .as_array()
        .unwrap()
        .iter()
        .find(|k| k["kid"] == header["kid"])
        .expect("the kid is published");
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("OKP"), Some("Ed25519"))
    );
    let public = URL_SAFE_NO_PAD.decode(key["x"].as_str().unwrap()).unwrap();
    let input = format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(payload));
    let signature = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
    UnparsedPublicKey::new(&ED25519, public)
        .verify(input.as_bytes(), &signature)
        .is_ok()
}

fn entry_refs(bundle: &Value) -> BTreeSet<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            let r = &e["resource"];
            let reference = format!(
                "{}/{}",
                r["resourceType"].as_str().unwrap(),
                r["id"].as_str().unwrap()
            );
            assert!(
                e["fullUrl"]
                    .as_str()
                    .unwrap()
                    .ends_with(&format!("/fhir/{reference}")),
                "{e}"
            );
            reference
        })
        .collect()
}

async fn disability_claim(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let todd = synthea("Todd315");
    for bundle in [
        synthea("hospital"),
        synthea("practitioner"),
        todd.clone(),
        synthea("Luisa710"),
        extra_records(),
    ] {
        let (status, body) = app.post("/fhir", &bundle).await;
        assert_eq!(status, 200, "{body}");
    }
    let key = ClientKey::ed25519("assessor-key");
    let assessor = register(&app, "disability_assessor", key.jwks(), json!({})).await;
    let other_key = ClientKey::ed25519("other-key");
    let other = register(&app, "disability_assessor", other_key.jwks(), json!({})).await;
    let researcher = register(
        &app,
        "researcher",
        ClientKey::ed25519("r").jwks(),
        json!({}),
    )
    .await;
    let patient = app.patient_token(TODD);
    let post = |body: Value| {
        let patient = patient.clone();
        let app = &app;
        async move {
            call(
                app,
                &patient,
                reqwest::Method::POST,
                "/api/v1/disclosures",
                Some(&body),
            )
            .await
        }
    };
    let ask = |selection: Value, expires: String, max: i64| {
        json!({"recipient": assessor, "purpose": "PATRQT", "policy": SSA_827,
               "selection": selection, "expires": expires, "max_retrievals": max})
    };
    let filter = json!({"filter": {"types": ["Condition", "Procedure"], "since": "2015-01-01"}});

    // Conditions and procedures since 2015, no psychotherapy notes (left out without asking).
    let (status, created) = post(ask(filter.clone(), in_secs(30 * 86400), 2)).await;
    assert_eq!(status, 201, "{created}");
    let mut expected = since_2015(&todd);
    assert_eq!(expected.len(), 6, "the fixture's own count");
    expected.insert("Condition/todd-reproductive".into());
    let listed: BTreeSet<String> = created["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r.as_str().unwrap().to_string())
        .collect();
    assert_eq!(listed, expected);
    let id = created["id"].as_str().unwrap().to_string();

    // The consent: an explicit permit for the assessor to receive exactly these, naming the
    // sensitive label of the one labelled record, under the SSA-827 authorization.
    let consent_id = created["consent"].as_str().unwrap();
    let (status, consent) = call(
        &app,
        &patient,
        reqwest::Method::GET,
        &format!("/fhir/Consent/{consent_id}"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{consent}");
    assert_eq!(consent["status"], "active");
    assert_eq!(consent["policy"][0]["uri"], SSA_827);
    let root = &consent["provision"];
    assert_eq!(root["type"], "permit");
    assert_eq!(
        root["actor"][0]["reference"]["reference"],
        format!("Device/{assessor}")
    );
    assert_eq!(root["action"][0]["coding"][0]["code"], "disclose");
    assert_eq!(root["data"].as_array().unwrap().len(), expected.len());
    assert!(
        root["data"]
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["meaning"] == "instance")
    );
    let named: Vec<&str> = root["provision"][0]["securityLabel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(
        named.contains(&"SEX") && !named.contains(&"PSYTHPN"),
        "{named:?}"
    );

    // The assessor fetches the package; the signature checks out against the JWKS.
    let token = client_token(&app, &key, &assessor, "PATRQT").await;
    let (status, bytes, jws) = fetch(&app, &token, &id).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&bytes));
    let jws = jws.expect("X-JWS-Signature");
    assert!(verify(&app, &jws, &bytes).await, "the signature verifies");
    let digest = ring::digest::digest(&ring::digest::SHA256, &bytes);
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(created["bundle_sha256"], hex.as_str());
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    assert!(bundle["timestamp"].is_string() && bundle["id"].is_string());
    assert_eq!(entry_refs(&bundle), expected, "exactly the selection");
    // One byte changed and the signature fails.
    let mut tampered = bytes.clone();
    let at = tampered.len() / 2;
    tampered[at] ^= 0x01;
    assert!(
        !verify(&app, &jws, &tampered).await,
        "a tampered byte fails"
    );
    let (status, text) = call(
        &app,
        &token,
        reqwest::Method::GET,
        &format!("/api/v1/disclosures/{id}/signature"),
        None,
    )
    .await;
    assert_eq!((status, text.as_str()), (200, Some(jws.as_str())));

    // Anyone but the recipient: 404, the same as for no package at all.
    let other_token = client_token(&app, &other_key, &other, "PATRQT").await;
    assert_eq!(fetch(&app, &other_token, &id).await.0, 404);
    assert_eq!(fetch(&app, &other_token, "no-such-package").await.0, 404);
    assert_eq!(
        call(
            &app,
            &other_token,
            reqwest::Method::GET,
            &format!("/api/v1/disclosures/{id}/signature"),
            None
        )
        .await
        .0,
        404
    );
    assert_eq!(
        fetch(&app, &patient, &id).await.0,
        403,
        "a patient is not a recipient client"
    );

    // The second fetch is the last one allowed; the same bytes again.
    let (status, again, _) = fetch(&app, &token, &id).await;
    assert_eq!((status, again == bytes), (200, true));
    let (status, body, _) = fetch(&app, &token, &id).await;
    assert_eq!(
        (status, problem_code(&body)),
        (410, "retrieval_limit_reached".to_string())
    );

    // The patient sees what was sent and when it was fetched.
    let (status, list) = call(
        &app,
        &patient,
        reqwest::Method::GET,
        "/api/v1/disclosures",
        None,
    )
    .await;
    assert_eq!(status, 200, "{list}");
    let mine = list["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["id"] == id.as_str())
        .unwrap()
        .clone();
    assert_eq!(mine["status"], "exhausted");
    assert_eq!(mine["retrievals"].as_array().unwrap().len(), 2, "{mine}");
    assert_eq!(mine["recipient"]["id"], assessor.as_str());
    assert_eq!(mine["resources"].as_array().unwrap().len(), expected.len());
    // ... and each fetch is in the accounting of disclosures, naming the assessor.
    let (status, log) = call(
        &app,
        &patient,
        reqwest::Method::GET,
        &format!("/api/v1/patients/{TODD}/access-log"),
        None,
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let fetches = log["disclosures"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["action"] == "disclose" && e["recipient"]["client_id"] == assessor.as_str())
        .count();
    assert_eq!(fetches, 2, "{log}");
    let (status, _) = app
        .get(&format!("/api/v1/disclosures?patient={TODD}"))
        .await;
    assert_eq!(status, 200, "an operator may look");
    let (status, _) = call(
        &app,
        &patient,
        reqwest::Method::GET,
        &format!("/api/v1/disclosures?patient={LUISA}"),
        None,
    )
    .await;
    assert_eq!(status, 403, "a patient sees only their own");

    // Revoking the disclosure's consent stops it at the next fetch.
    let one = json!({"resources": [expected.iter().next().unwrap()]});
    let (status, created) = post(ask(one, in_secs(86400), 5)).await;
    assert_eq!(status, 201, "{created}");
    let revocable = created["id"].as_str().unwrap().to_string();
    assert_eq!(fetch(&app, &token, &revocable).await.0, 200);
    let path = format!(
        "/fhir/Consent/{}/$revoke",
        created["consent"].as_str().unwrap()
    );
    let resp = app
        .client
        .post(app.url(&path))
        .bearer_auth(&patient)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let (status, body, _) = fetch(&app, &token, &revocable).await;
    assert_eq!(
        (status, problem_code(&body)),
        (410, "disclosure_revoked".to_string())
    );

    // An explicit list must hold only the patient's own records, and names the stray one.
    let (status, answer) = post(ask(json!({"resources": [MISCARRIAGE]}), in_secs(86400), 1)).await;
    assert_eq!(status, 422, "{answer}");
    assert!(
        answer["detail"].as_str().unwrap().contains(MISCARRIAGE),
        "{answer}"
    );
    // Other refusals: a purpose the assessor may not have, a researcher, a bad limit.
    let mut wrong = ask(filter.clone(), in_secs(86400), 1);
    wrong["purpose"] = json!("TREAT");
    assert_eq!(post(wrong).await.1["code"], "purpose_not_allowed");
    let mut wrong = ask(filter.clone(), in_secs(86400), 1);
    wrong["recipient"] = json!(researcher);
    assert_eq!(post(wrong).await.1["code"], "recipient_role_not_allowed");
    assert_eq!(
        post(ask(filter.clone(), in_secs(86400), 0)).await.1["code"],
        "invalid_max_retrievals"
    );
    assert_eq!(
        post(ask(filter.clone(), in_secs(400 * 86400), 1)).await.1["code"],
        "invalid_expires"
    );

    // An operator acting for Luisa lists her labelled miscarriage explicitly: the consent
    // names its labels, and a token for another purpose than the authorized one is refused.
    let for_luisa = json!({"patient": LUISA, "recipient": assessor, "purpose": "ELIGDTRM", "policy": SSA_827,
        "selection": {"resources": [MISCARRIAGE]}, "expires": in_secs(86400), "max_retrievals": 1});
    let (status, created) = app.post_json("/api/v1/disclosures", &for_luisa).await;
    assert_eq!(status, 201, "{created}");
    let luisa_id = created["id"].as_str().unwrap().to_string();
    let (_, consent) = app
        .get(&format!(
            "/fhir/Consent/{}",
            created["consent"].as_str().unwrap()
        ))
        .await;
    let named: Vec<&str> = consent["provision"]["provision"][0]["securityLabel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["code"].as_str().unwrap())
        .collect();
    assert!(named.contains(&"SEX"), "{consent}");
    let (status, body, _) = fetch(&app, &token, &luisa_id).await;
    assert_eq!(
        (status, problem_code(&body)),
        (403, "purpose_mismatch".to_string())
    );
    let eligibility = client_token(&app, &key, &assessor, "ELIGDTRM").await;
    let (status, bytes, jws) = fetch(&app, &eligibility, &luisa_id).await;
    assert_eq!(status, 200);
    assert!(verify(&app, &jws.unwrap(), &bytes).await);
    let bundle: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(
        entry_refs(&bundle),
        BTreeSet::from([MISCARRIAGE.to_string()])
    );

    // A package that expires in two seconds is gone after it.
    let (status, created) = post(ask(filter, in_secs(2), 5)).await;
    assert_eq!(status, 201, "{created}");
    tokio::time::sleep(std::time::Duration::from_millis(3500)).await;
    let (status, body, _) = fetch(&app, &token, created["id"].as_str().unwrap()).await;
    assert_eq!(
        (status, problem_code(&body)),
        (410, "disclosure_expired".to_string())
    );
}

both_backends!(disability_claim);
