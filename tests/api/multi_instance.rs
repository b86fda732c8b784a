//! Several gateway processes on one PostgreSQL, sharing one data and key folder, behind
//! one public name ([`served::PUBLIC_BASE`]) as a load balancer would put them: a revocation
//! through one instance holds on the next request to another; concurrent reads on all of
//! them leave one gapless, verifiable log holding every acknowledged request; the checkpoint
//! signer role moves when its holder is killed, and the checkpoints on both sides of the
//! hand-over are consistent (checked by the independent verifier of `audit.rs`); a client
//! removed or a token revoked on one instance is refused on another; a key rotated on the
//! shared folder is used and published by the others.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use diesel::sql_types::{BigInt, Text};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use reqwest::Method;
use serde_json::{Value, json};

use crate::audit::{hashes, open_checkpoint, rfc9162_consistency};
use crate::helpers::{ClientKey, now};
use crate::helpers::{PgDatabase, decode};
use crate::served::{self, PUBLIC_BASE, Served};

const FHIR: &str = "application/fhir+json";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// Three instances on one database and one folder.
struct Deployment {
    dir: tempfile::TempDir,
    url: String,
    instances: Vec<Served>,
    client: reqwest::Client,
    operator: String,
    _pg: PgDatabase,
}

impl Deployment {
    async fn start() -> Option<Deployment> {
        let pg = PgDatabase::create()?;
        let dir = tempfile::tempdir().unwrap();
        let url = pg.url.clone();
        // The first instance migrates and creates the keys and certificate; the others
        // start on what it made.
        let mut instances = vec![served::serve(dir.path(), &url, "a", &[]).await];
        for name in ["b", "c"] {
            instances.push(served::serve(dir.path(), &url, name, &[]).await);
        }
        let operator = served::operator(dir.path(), &url);
        Some(Deployment {
            client: served::plain_client(),
            operator,
            dir,
            url,
            instances,
            _pg: pg,
        })
    }

    fn at(&self, i: usize, path: &str) -> String {
        self.instances[i].url(path)
    }

    async fn call(
        &self,
        i: usize,
        method: Method,
        path: &str,
        token: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = self
            .client
            .request(method, self.at(i, path))
            .bearer_auth(token);
        if let Some(body) = body {
            let kind = if path.starts_with("/fhir") {
                FHIR
            } else {
                "application/json"
            };
            req = req.header("content-type", kind).body(body.to_string());
        }
        decode(req.send().await.unwrap()).await
    }

    fn patient(&self, id: &str) -> String {
        served::person(
            self.dir.path(),
            &self.url,
            &format!("patient-{id}"),
            Some(id),
            &[],
        )
    }

    /// Registers a clinician acting for Organization/clinic through instance `i`.
    async fn clinician(&self, i: usize, key: &ClientKey) -> String {
        let body = json!({"name": "clinic app", "organization": "clinic", "role": "clinician",
                          "jwks": key.jwks(), "acts_as": ["Organization/clinic"]});
        let (status, client) = self
            .call(
                i,
                Method::POST,
                "/api/v1/clients",
                &self.operator,
                Some(&body),
            )
            .await;
        assert_eq!(status, 201, "{client}");
        client["id"].as_str().unwrap().to_string()
    }

    /// A treatment token from instance `i` (the assertion names the shared token URL).
    async fn token(&self, i: usize, key: &ClientKey, client_id: &str) -> (u16, Value) {
        let claims = json!({"iss": client_id, "sub": client_id,
            "aud": format!("{PUBLIC_BASE}/oauth/token"), "exp": now() + 240, "iat": now(),
            "jti": uuid::Uuid::now_v7().to_string()});
        let assertion = key.sign(&claims, Some(&key.kid));
        let form = [
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
            ("scope", "system/*.rs"),
            ("purpose_of_use", "TREAT"),
        ];
        decode(
            self.client
                .post(self.at(i, "/oauth/token"))
                .form(&form)
                .send()
                .await
                .unwrap(),
        )
        .await
    }

    async fn access_token(&self, i: usize, key: &ClientKey, client_id: &str) -> String {
        let (status, body) = self.token(i, key, client_id).await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_string()
    }

    async fn text(&self, i: usize, path: &str) -> String {
        let resp = self.client.get(self.at(i, path)).send().await.unwrap();
        assert_eq!(resp.status().as_u16(), 200, "{path}");
        resp.text().await.unwrap()
    }
}

async fn seed(d: &Deployment) {
    let entry = |ty: &str, id: &str, body: Value| {
        let mut resource = body;
        resource["resourceType"] = json!(ty);
        resource["id"] = json!(id);
        json!({"resource": resource, "request": {"method": "PUT", "url": format!("{ty}/{id}")}})
    };
    let obs = json!({"status": "final", "code": {"text": "x"}, "subject": {"reference": "Patient/alice"}});
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("Patient", "alice", json!({})),
        entry("Observation", "a1", obs.clone()),
        entry("Observation", "a2", obs),
    ]});
    let (status, body) = d
        .call(0, Method::POST, "/fhir", &d.operator, Some(&bundle))
        .await;
    assert_eq!(status, 200, "{body}");
}

fn consent() -> Value {
    json!({
        "resourceType": "Consent", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/alice"},
        "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
        "provision": {"type": "permit",
            "actor": [{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                       "reference": {"reference": "Organization/clinic"}}],
            "purpose": [{"system": ACT_REASON, "code": "TREAT"}]},
    })
}

#[derive(QueryableByName)]
struct EntryRow {
    #[diesel(sql_type = BigInt)]
    seq: i64,
    #[diesel(sql_type = Text)]
    body: String,
}

/// Every entry's sequence and request id, straight from the database.
fn log_entries(url: &str) -> Vec<(i64, String)> {
    let mut conn = PgConnection::establish(url).unwrap();
    diesel::sql_query("SELECT seq, body FROM audit_entries ORDER BY seq")
        .load::<EntryRow>(&mut conn)
        .unwrap()
        .into_iter()
        .map(|r| {
            let body: Value = serde_json::from_str(&r.body).unwrap();
            (
                r.seq,
                body["request_id"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// Concurrent recipient reads on every instance; returns the acknowledged request ids.
async fn read_everywhere(d: &Deployment, token: &str, per_task: usize) -> BTreeSet<String> {
    let mut tasks = Vec::new();
    for (i, instance) in d.instances.iter().enumerate() {
        for t in 0..3 {
            let (client, url, token) = (
                d.client.clone(),
                instance.url("/fhir/Observation/a1"),
                token.to_string(),
            );
            tasks.push(actix_web::rt::spawn(async move {
                let mut acknowledged = Vec::new();
                for n in 0..per_task {
                    let id = format!("multi-{i}-{t}-{n}-{}", uuid::Uuid::now_v7().simple());
                    if let Ok((200, body, _)) = served::get(&client, &url, &token, &id).await {
                        assert_eq!(body["id"], "a1");
                        acknowledged.push(id);
                    }
                }
                acknowledged
            }));
        }
    }
    let mut all = BTreeSet::new();
    for t in tasks {
        all.extend(t.await.unwrap());
    }
    all
}

#[actix_web::test]
async fn instances_share_one_truth() {
    let Some(mut d) = Deployment::start().await else {
        return;
    };
    seed(&d).await;
    let key = ClientKey::ed25519("k1");
    let clinic = d.clinician(0, &key).await;
    let alice = d.patient("alice");
    let (status, created) = d
        .call(1, Method::POST, "/fhir/Consent", &alice, Some(&consent()))
        .await;
    assert_eq!(status, 201, "{created}");
    let consent_id = created["id"].as_str().unwrap().to_string();
    let token = d.access_token(2, &key, &clinic).await;

    // Concurrent reads on all three: one gapless log with every acknowledged request.
    let acknowledged = read_everywhere(&d, &token, 15).await;
    assert_eq!(acknowledged.len(), 3 * 3 * 15, "every read was answered");
    let entries = log_entries(&d.url);
    for (expected, (seq, _)) in entries.iter().enumerate() {
        assert_eq!(*seq, expected as i64, "the log has a gap or a duplicate");
    }
    let logged: BTreeSet<String> = entries.iter().map(|(_, id)| id.clone()).collect();
    let lost: Vec<&String> = acknowledged.difference(&logged).collect();
    assert!(lost.is_empty(), "acknowledged but not logged: {lost:?}");
    let (code, out) = served::cli(d.dir.path(), &d.url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "{out}");

    // Revocation through A holds on B's very next request (B's caches are warm).
    let read = |i: usize| {
        let (client, url, token) = (
            d.client.clone(),
            d.at(i, "/fhir/Observation/a1"),
            token.clone(),
        );
        async move {
            served::get(&client, &url, &token, &uuid::Uuid::now_v7().to_string())
                .await
                .unwrap()
                .0
        }
    };
    assert_eq!(read(1).await, 200);
    let (status, body) = d
        .call(
            0,
            Method::POST,
            &format!("/fhir/Consent/{consent_id}/$revoke"),
            &alice,
            Some(&json!({})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        read(1).await,
        404,
        "B enforces A's revocation on its next request"
    );
    assert_eq!(read(2).await, 404);
    let (status, bundle) = d
        .call(
            2,
            Method::GET,
            "/fhir/Observation?patient=alice",
            &token,
            None,
        )
        .await;
    assert_eq!(status, 200);
    assert!(
        bundle["entry"].as_array().is_none_or(Vec::is_empty),
        "{bundle}"
    );

    // The checkpoint signer: A takes the role, is killed, B signs the next checkpoint.
    let vkey = d.text(0, "/api/v1/audit/verifier-key").await;
    let before = open_checkpoint(&d.text(0, "/api/v1/audit/checkpoint").await, &vkey);
    assert_eq!(before.origin, "gateway.test/audit");
    d.instances[0].kill();
    let (status, created) = d
        .call(1, Method::POST, "/fhir/Consent", &alice, Some(&consent()))
        .await;
    assert_eq!(status, 201, "{created}");
    let more = read_everywhere_but_first(&d, &token).await;
    assert!(!more.is_empty());
    let mut after = open_checkpoint(&d.text(1, "/api/v1/audit/checkpoint").await, &vkey);
    for _ in 0..50 {
        if after.size > before.size {
            break;
        }
        // PostgreSQL frees the killed session's advisory lock once it notices the socket.
        actix_web::rt::time::sleep(Duration::from_millis(200)).await;
        after = open_checkpoint(&d.text(1, "/api/v1/audit/checkpoint").await, &vkey);
    }
    assert!(
        after.size > before.size,
        "B signs once A is gone: {} -> {}",
        before.size,
        after.size
    );
    let (status, proof) = d
        .call(
            2,
            Method::GET,
            &format!(
                "/api/v1/audit/proofs/consistency?from={}&to={}",
                before.size, after.size
            ),
            &d.operator,
            None,
        )
        .await;
    assert_eq!(status, 200, "{proof}");
    assert!(
        rfc9162_consistency(
            before.size,
            after.size,
            &before.root,
            &after.root,
            &hashes(&proof["proof"])
        ),
        "the checkpoints before and after the hand-over are consistent"
    );
    let (code, out) = served::cli(d.dir.path(), &d.url, &["audit", "verify"], &[]).await;
    assert_eq!(code, 0, "{out}");

    // A client removed, or a token revoked, on one instance is refused on another.
    let key2 = ClientKey::ed25519("k2");
    let other = d.clinician(1, &key2).await;
    let other_token = d.access_token(1, &key2, &other).await;
    let whoami = |i: usize, t: String| {
        let (client, url) = (d.client.clone(), d.at(i, "/api/v1/whoami"));
        async move {
            client
                .get(url)
                .bearer_auth(t)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    assert_eq!(
        whoami(2, other_token.clone()).await,
        200,
        "C knows the token (cache warm)"
    );
    let (status, _) = d
        .call(
            1,
            Method::DELETE,
            &format!("/api/v1/clients/{other}"),
            &d.operator,
            None,
        )
        .await;
    assert_eq!(status, 204);
    assert_eq!(
        whoami(2, other_token).await,
        401,
        "removed on B, refused on C"
    );
    let (status, _) = d.token(2, &key2, &other).await;
    assert_eq!(status, 401, "a removed client gets no token anywhere");
    let fresh = d.access_token(2, &key, &clinic).await;
    assert_eq!(whoami(1, fresh.clone()).await, 200);
    let revoke = d
        .client
        .post(d.at(2, "/oauth/revoke"))
        .bearer_auth(&d.operator)
        .form(&[("token", fresh.as_str())])
        .send()
        .await
        .unwrap();
    assert_eq!(revoke.status().as_u16(), 200);
    assert_eq!(whoami(1, fresh).await, 401, "revoked on C, refused on B");

    // A key rotated on the shared folder is used and published by the others.
    let kids = |jwks: Value| -> BTreeSet<String> {
        jwks["keys"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| k["kid"].as_str().unwrap().to_string())
            .collect()
    };
    let (_, jwks) = d
        .call(2, Method::GET, "/.well-known/jwks.json", &d.operator, None)
        .await;
    let old = kids(jwks);
    let (code, out) = served::cli(d.dir.path(), &d.url, &["keys", "rotate"], &[]).await;
    assert_eq!(code, 0, "{out}");
    let (_, jwks) = d
        .call(2, Method::GET, "/.well-known/jwks.json", &d.operator, None)
        .await;
    let new = kids(jwks);
    let added: Vec<&String> = new.difference(&old).collect();
    assert_eq!(
        added.len(),
        1,
        "C publishes the rotated key: {old:?} -> {new:?}"
    );
    assert!(new.is_superset(&old), "the retired key stays published");
    let rotated = d.access_token(1, &key, &clinic).await;
    let header = jsonwebtoken::decode_header(&rotated).unwrap();
    assert_eq!(
        header.kid.as_deref(),
        Some(added[0].as_str()),
        "B signs with the new key"
    );
    assert_eq!(whoami(2, rotated).await, 200, "C verifies B's new tokens");
    let _ = Path::new("");
}

/// Reads on the instances still running (all but the first).
async fn read_everywhere_but_first(d: &Deployment, token: &str) -> Vec<u16> {
    let mut statuses = Vec::new();
    for instance in &d.instances[1..] {
        let (status, ..) = served::get(
            &d.client,
            &instance.url("/fhir/Patient/alice"),
            &d.operator,
            "after-kill",
        )
        .await
        .unwrap();
        statuses.push(status);
        let (status, ..) = served::get(
            &d.client,
            &instance.url("/fhir/Observation/a2"),
            token,
            "after-kill-2",
        )
        .await
        .unwrap();
        statuses.push(status);
    }
    statuses
}
