//! Interoperability: clients built with other software than this crate's. A client whose
//! assertions are signed by a standard JWT library in another language (Python's PyJWT), and
//! clients registered with a JWKS URL served over HTTPS by a separate server (fetching,
//! caching, key rotation, size limits). Each case runs on SQLite and PostgreSQL.

use std::collections::HashMap;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::web::{self, Bytes};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer};
use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer};
use serde_json::{Value, json};

use crate::both_backends;
use crate::helpers::{
    Backend, ClientKey, TestApp, assertion_claims, register, request_token, revoke_token,
    spawn_app, spawn_app_with, whoami,
};

// ---------------------------------------------------------------------------------------------
// A client written in Python with PyJWT.
// ---------------------------------------------------------------------------------------------

/// The client's own software: generates its key pair (private key kept as PEM in its folder),
/// publishes the public JWKS, and signs assertions with PyJWT.
///
/// `keygen DIR rsa|ec KID` prints the public JWKS; `sign DIR CLIENT_ID TOKEN_URL JTI` prints
/// an assertion.
const PYJWT_CLIENT: &str = r#"
import base64, json, os, pathlib, sys, time

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa


def b64(number, length=None):
    if length is None:
        length = (number.bit_length() + 7) // 8
    return base64.urlsafe_b64encode(number.to_bytes(length, "big")).rstrip(b"=").decode()


def keygen(folder, kind, kid):
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        numbers = key.public_key().public_numbers()
        alg = "RS384"
        jwk = {"kty": "RSA", "n": b64(numbers.n), "e": b64(numbers.e)}
    elif kind == "ec":
        key = ec.generate_private_key(ec.SECP384R1())
        numbers = key.public_key().public_numbers()
        alg = "ES384"
        jwk = {"kty": "EC", "crv": "P-384", "x": b64(numbers.x, 48), "y": b64(numbers.y, 48)}
    else:
        sys.exit("unknown key kind " + kind)
    jwk.update({"kid": kid, "alg": alg, "use": "sig"})
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(folder / "private-key.pem", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    (folder / "key.json").write_text(json.dumps({"kid": kid, "alg": alg}))
    print(json.dumps({"keys": [jwk]}))


def sign(folder, client_id, token_url, jti):
    meta = json.loads((folder / "key.json").read_text())
    key = serialization.load_pem_private_key(
        (folder / "private-key.pem").read_bytes(), password=None
    )
    now = int(time.time())
    claims = {
        "iss": client_id,
        "sub": client_id,
        "aud": token_url,
        "iat": now,
        "exp": now + 240,
        "jti": jti,
    }
    print(jwt.encode(claims, key, algorithm=meta["alg"], headers={"kid": meta["kid"]}))


command, folder = sys.argv[1], pathlib.Path(sys.argv[2])
if command == "keygen":
    keygen(folder, sys.argv[3], sys.argv[4])
elif command == "sign":
    sign(folder, sys.argv[3], sys.argv[4], sys.argv[5])
else:
    sys.exit("unknown command " + command)
"#;

/// Whether `python3` with PyJWT and `cryptography` is here. Under CI their absence is a
/// failure (`.ci/run` installs them); elsewhere the test is skipped after one loud line.
fn pyjwt_available() -> bool {
    let ok = Command::new("python3")
        .args(["-c", "import jwt, cryptography"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!(
                "python3 with PyJWT and cryptography is required under CI: \
                 python3 -m pip install pyjwt cryptography"
            );
        }
        eprintln!(
            "!!!!! PYJWT INTEROPERABILITY TEST SKIPPED: `python3 -c \"import jwt, cryptography\"` \
             failed; run `python3 -m pip install pyjwt cryptography` !!!!!"
        );
    }
    ok
}

/// One Python client: its script and its key folder.
struct PyClient {
    script: PathBuf,
    folder: PathBuf,
}

impl PyClient {
    fn new(root: &Path, name: &str) -> PyClient {
        let script = root.join("pyjwt_client.py");
        std::fs::write(&script, PYJWT_CLIENT).expect("write the Python client");
        let folder = root.join(name);
        std::fs::create_dir_all(&folder).expect("client folder");
        PyClient { script, folder }
    }

    fn run(&self, args: &[&str]) -> String {
        let out = Command::new("python3")
            .arg(&self.script)
            .args(args)
            .output()
            .expect("python3 runs");
        assert!(
            out.status.success(),
            "python3 {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout)
            .expect("UTF-8 output")
            .trim()
            .to_string()
    }

    /// Generates the key pair; returns the public JWKS.
    fn keygen(&self, kind: &str, kid: &str) -> Value {
        let folder = self.folder.display().to_string();
        serde_json::from_str(&self.run(&["keygen", &folder, kind, kid])).expect("JWKS is JSON")
    }

    /// A fresh assertion for `client_id` at this gateway.
    fn assertion(&self, app: &TestApp, client_id: &str) -> String {
        let folder = self.folder.display().to_string();
        let token_url = app.url("/oauth/token");
        let jti = uuid::Uuid::now_v7().to_string();
        self.run(&["sign", &folder, client_id, &token_url, &jti])
    }
}

/// Asks for a token with a PyJWT assertion: `system/*.rs` for treatment.
async fn py_token(app: &TestApp, assertion: &str) -> (u16, Value) {
    request_token(
        app,
        assertion,
        &[("scope", "system/*.rs"), ("purpose_of_use", "TREAT")],
    )
    .await
}

/// A client registered with only the public JWKS its PyJWT software made obtains a token,
/// uses it, and sees it refused after revocation and after the client's removal; for an RSA
/// 2048 key (RS384) and an EC P-384 key (ES384).
async fn pyjwt_client(backend: Backend) {
    if !pyjwt_available() {
        return;
    }
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    for (kind, alg, kid) in [
        ("rsa", jsonwebtoken::Algorithm::RS384, "py-rsa-1"),
        ("ec", jsonwebtoken::Algorithm::ES384, "py-ec-1"),
    ] {
        let py = PyClient::new(app.dir.path(), kind);
        let jwks = py.keygen(kind, kid);
        let keys = jwks["keys"].as_array().expect("keys");
        assert_eq!(keys.len(), 1, "{jwks}");
        for private in ["d", "p", "q", "dp", "dq", "qi"] {
            assert!(keys[0].get(private).is_none(), "{kind}: public JWKS only");
        }
        let id = register(&app, "clinician", jwks.clone(), json!({})).await;

        // A token, from an assertion PyJWT signed, and its use.
        let assertion = py.assertion(&app, &id);
        let header = jsonwebtoken::decode_header(&assertion).expect("a JWT");
        assert_eq!(
            (header.alg, header.kid.as_deref()),
            (alg, Some(kid)),
            "{kind}"
        );
        let (status, body) = py_token(&app, &assertion).await;
        assert_eq!(status, 200, "{kind}: {body}");
        assert_eq!(body["token_type"], "Bearer");
        let token = body["access_token"].as_str().unwrap().to_string();
        let (status, me) = whoami(&app, &token).await;
        assert_eq!(status, 200, "{kind}: {me}");
        assert_eq!(
            (
                me["client_id"].as_str(),
                me["role"].as_str(),
                me["purpose_of_use"].as_str()
            ),
            (Some(id.as_str()), Some("clinician"), Some("TREAT")),
            "{kind}: {me}"
        );
        // The same assertion cannot be used twice.
        let (status, body) = py_token(&app, &assertion).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{kind}: a replayed PyJWT assertion: {body}"
        );

        // Revocation by the client, authenticated by another PyJWT assertion.
        let own = py.assertion(&app, &id);
        let (status, body) = revoke_token(&app, &token, &own).await;
        assert_eq!(status, 200, "{kind}: revoke: {body}");
        assert_eq!(
            whoami(&app, &token).await.0,
            401,
            "{kind}: a revoked token is refused"
        );

        // Removal: a second token works, then stops working.
        let (status, body) = py_token(&app, &py.assertion(&app, &id)).await;
        assert_eq!(status, 200, "{kind}: second token: {body}");
        let second = body["access_token"].as_str().unwrap().to_string();
        assert_eq!(whoami(&app, &second).await.0, 200, "{kind}");
        let resp = app
            .client
            .delete(app.url(&format!("/api/v1/clients/{id}")))
            .bearer_auth(&app.operator_token)
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 204, "{kind}: removal");
        assert_eq!(
            whoami(&app, &second).await.0,
            401,
            "{kind}: a removed client's token is refused"
        );
        let (status, body) = py_token(&app, &py.assertion(&app, &id)).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{kind}: a removed client gets no token: {body}"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// Clients registered with a JWKS URL.
// ---------------------------------------------------------------------------------------------

/// What the JWKS server serves, and how often it was asked, by path.
#[derive(Default)]
struct Served {
    /// `/jwks.json`.
    jwks: RwLock<Value>,
    /// The set that `/big.json`, `/stream.json` and `/slow.json` serve padded or late.
    other: Value,
    hits: Mutex<HashMap<String, usize>>,
}

impl Served {
    fn count(&self, req: &HttpRequest) {
        *self
            .hits
            .lock()
            .unwrap()
            .entry(req.path().to_string())
            .or_default() += 1;
    }
}

/// `/jwks.json`: the current set, which the test swaps at will.
async fn serve_jwks(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    served.count(&req);
    let doc = served.jwks.read().unwrap().clone();
    HttpResponse::Ok().json(doc)
}

/// `/big.json`: the valid set padded to 16 KiB, with its Content-Length.
async fn serve_big(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    served.count(&req);
    let mut doc = served.other.clone();
    doc["padding"] = json!("x".repeat(16 * 1024));
    HttpResponse::Ok()
        .content_type("application/json")
        .body(doc.to_string())
}

/// `/stream.json`: 4 MiB streamed without a Content-Length (chunked).
async fn serve_stream(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    served.count(&req);
    let mut head = served.other.to_string();
    head.pop(); // the closing brace
    head.push_str(r#","padding":""#);
    let chunk = Bytes::from(vec![b'x'; 8 * 1024]);
    let parts = std::iter::once(Bytes::from(head))
        .chain(std::iter::repeat_n(chunk, 512))
        .chain(std::iter::once(Bytes::from_static(b"\"}")))
        .map(Ok::<_, std::io::Error>);
    HttpResponse::Ok()
        .content_type("application/json")
        .streaming(futures_util::stream::iter(parts))
}

/// `/slow.json`: answers only after 20 s.
async fn serve_slow(req: HttpRequest, served: web::Data<Served>) -> HttpResponse {
    served.count(&req);
    actix_web::rt::time::sleep(Duration::from_secs(20)).await;
    HttpResponse::Ok().json(served.other.clone())
}

/// A client's HTTPS server publishing its JWKS, with a self-signed certificate for
/// `localhost` whose PEM the gateway is told to trust.
struct JwksServer {
    port: u16,
    served: web::Data<Served>,
    ca_file: PathBuf,
    handle: ServerHandle,
    _dir: tempfile::TempDir,
}

impl JwksServer {
    fn start(jwks: Value, other: Value) -> JwksServer {
        let dir = tempfile::tempdir().expect("temporary directory");
        let generated =
            rcgen::generate_simple_self_signed(vec!["localhost".to_string()]).expect("certificate");
        let ca_file = dir.path().join("jwks-server.pem");
        std::fs::write(&ca_file, generated.cert.pem()).expect("write certificate");
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(
            generated.signing_key.serialize_der(),
        ));
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![generated.cert.der().clone()], key)
        .expect("server certificate");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().unwrap().port();
        let served = web::Data::new(Served {
            jwks: RwLock::new(jwks),
            other,
            ..Served::default()
        });
        let state = served.clone();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(state.clone())
                .route("/jwks.json", web::get().to(serve_jwks))
                .route("/big.json", web::get().to(serve_big))
                .route("/stream.json", web::get().to(serve_stream))
                .route("/slow.json", web::get().to(serve_slow))
        })
        .workers(1)
        .disable_signals()
        .shutdown_timeout(1)
        .listen_rustls_0_23(listener, config)
        .expect("listen")
        .run();
        let handle = server.handle();
        actix_web::rt::spawn(server);
        JwksServer {
            port,
            served,
            ca_file,
            handle,
            _dir: dir,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.port)
    }

    fn hits(&self, path: &str) -> usize {
        self.served
            .hits
            .lock()
            .unwrap()
            .get(path)
            .copied()
            .unwrap_or(0)
    }

    fn publish(&self, jwks: Value) {
        *self.served.jwks.write().unwrap() = jwks;
    }
}

impl Drop for JwksServer {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

/// Registers a client by JWKS URL; returns its id.
async fn register_url(app: &TestApp, url: &str) -> String {
    let body = json!({"name": "URL app", "organization": "URL org", "role": "clinician",
                      "jwks_url": url});
    let (status, client) = app.post_json("/api/v1/clients", &body).await;
    assert_eq!(status, 201, "{client}");
    assert_eq!(client["jwks_url"], url, "{client}");
    client["id"].as_str().unwrap().to_string()
}

/// Asks for a treatment token with an assertion signed by `key` under `kid`.
async fn token_with(app: &TestApp, key: &ClientKey, kid: &str, id: &str) -> (u16, Value) {
    let assertion = key.sign(&assertion_claims(app, id), Some(kid));
    request_token(
        app,
        &assertion,
        &[("scope", "system/*.rs"), ("purpose_of_use", "TREAT")],
    )
    .await
}

/// A client registered with a JWKS URL: the set is fetched over HTTPS (trusting the
/// configured CA), reused from the cache, and fetched again when the client rotates to a key
/// the cached set lacks — at most once per `MIN_REFETCH_SECS` (10 s) per URL.
async fn jwks_url_fetch_cache_rotation(backend: Backend) {
    let k1 = ClientKey::ed25519("k1");
    let k2 = ClientKey::ed25519("k2");
    let server = JwksServer::start(k1.jwks(), json!({}));
    let ca = server.ca_file.display().to_string();
    let Some(app) = spawn_app_with(
        backend,
        &[
            ("CONSENTGATE__AUTH__JWKS_CA_FILE", &ca),
            // The test server listens on loopback, which the address guard refuses unless allowed.
            ("CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS", "127.0.0.1/32"),
        ],
    )
    .await
    else {
        return;
    };
    // Only https URLs are registered.
    let (status, body) = app
        .post_json(
            "/api/v1/clients",
            &json!({"name": "n", "organization": "o", "role": "clinician",
                    "jwks_url": format!("http://localhost:{}/jwks.json", server.port)}),
        )
        .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (422, Some("invalid_client_registration")),
        "an http:// JWKS URL: {body}"
    );

    let id = register_url(&app, &server.url("/jwks.json")).await;
    let (status, body) = token_with(&app, &k1, "k1", &id).await;
    assert_eq!(status, 200, "first token: {body}");
    // The last fetch happened before this instant.
    let fetched_by = Instant::now();
    let fetches = server.hits("/jwks.json");
    assert!(fetches >= 1, "the set was fetched");
    let token = body["access_token"].as_str().unwrap().to_string();
    let (status, me) = whoami(&app, &token).await;
    assert_eq!((status, me["client_id"].as_str()), (200, Some(id.as_str())));

    // Within the cache period: no new fetch.
    let (status, body) = token_with(&app, &k1, "k1", &id).await;
    assert_eq!(status, 200, "second token: {body}");
    assert_eq!(server.hits("/jwks.json"), fetches, "a cached set is reused");

    // The client rotates: its server now publishes only k2.
    server.publish(k2.jwks());
    if fetched_by.elapsed() < Duration::from_secs(9) {
        // Less than MIN_REFETCH_SECS since the fetch: the unknown kid does not trigger a
        // refetch yet, and the cached set (still holding k1) is used.
        let (status, body) = token_with(&app, &k2, "k2", &id).await;
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "k2 before the refetch: {body}"
        );
        assert_eq!(server.hits("/jwks.json"), fetches, "refetch rate-limited");
        let (status, body) = token_with(&app, &k1, "k1", &id).await;
        assert_eq!(status, 200, "k1 from the cached set: {body}");
    } else {
        eprintln!("slow machine: skipped the checks made before the refetch window opens");
    }

    // Once MIN_REFETCH_SECS have passed, the unknown kid makes the gateway fetch again.
    let window = Duration::from_secs(consentgate::auth::jwks_fetch::MIN_REFETCH_SECS)
        + Duration::from_millis(300);
    if let Some(rest) = window.checked_sub(fetched_by.elapsed()) {
        actix_web::rt::time::sleep(rest).await;
    }
    let (status, body) = token_with(&app, &k2, "k2", &id).await;
    assert_eq!(status, 200, "k2 after the refetch window: {body}");
    assert_eq!(
        server.hits("/jwks.json"),
        fetches + 1,
        "exactly one refetch"
    );
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(whoami(&app, &token).await.0, 200);
    // The retired key is gone from the fresh set; k2 is served from the cache.
    let (status, body) = token_with(&app, &k1, "k1", &id).await;
    assert_eq!(
        (status, body["error"].as_str()),
        (401, Some("invalid_client")),
        "k1 after rotation: {body}"
    );
    let (status, body) = token_with(&app, &k2, "k2", &id).await;
    assert_eq!(status, 200, "k2 again: {body}");
    assert_eq!(
        server.hits("/jwks.json"),
        fetches + 1,
        "served from the cache"
    );
}

/// A JWKS URL that answers with too large a document (declared or streamed), too slowly, or
/// with a certificate for another name: the token request fails with 401 `invalid_client`,
/// promptly, and the gateway keeps serving.
async fn jwks_url_refusals(backend: Backend) {
    // `/jwks.json` serves `good`; the other paths serve `key`, each in a way that must fail.
    let good = ClientKey::ed25519("good");
    let key = ClientKey::ed25519("k");
    let server = JwksServer::start(good.jwks(), key.jwks());
    let ca = server.ca_file.display().to_string();
    let Some(app) = spawn_app_with(
        backend,
        &[
            ("CONSENTGATE__AUTH__JWKS_CA_FILE", &ca),
            ("CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS", "127.0.0.1/32"),
            ("CONSENTGATE__AUTH__JWKS_MAX_BYTES", "1024"),
            ("CONSENTGATE__AUTH__JWKS_FETCH_TIMEOUT_SECS", "2"),
        ],
    )
    .await
    else {
        return;
    };
    // Under the limit: fine.
    let id = register_url(&app, &server.url("/jwks.json")).await;
    let (status, body) = token_with(&app, &good, "good", &id).await;
    assert_eq!(status, 200, "a small set: {body}");

    let cases = [
        ("/big.json", server.url("/big.json"), &key, "k"),
        ("/stream.json", server.url("/stream.json"), &key, "k"),
        ("/slow.json", server.url("/slow.json"), &key, "k"),
        // The certificate names localhost only.
        (
            "/jwks.json",
            format!("https://127.0.0.1:{}/jwks.json", server.port),
            &good,
            "good",
        ),
    ];
    for (path, url, key, kid) in cases {
        let id = register_url(&app, &url).await;
        let before = server.hits(path);
        let started = Instant::now();
        let answer =
            tokio::time::timeout(Duration::from_secs(15), token_with(&app, key, kid, &id)).await;
        let (status, body) = answer.unwrap_or_else(|_| panic!("{url}: the token request hangs"));
        assert_eq!(
            (status, body["error"].as_str()),
            (401, Some("invalid_client")),
            "{url}: {body}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "{url}: answered after {:?}",
            started.elapsed()
        );
        if path != "/jwks.json" {
            assert!(server.hits(path) > before, "{url}: the gateway asked");
        }
    }
    // The gateway is still well: the good client gets another token, FHIR answers.
    let (status, body) = token_with(&app, &good, "good", &id).await;
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap().to_string();
    assert_eq!(whoami(&app, &token).await.0, 200);
    assert_eq!(app.get("/fhir/metadata").await.0, 200);
}

both_backends!(
    pyjwt_client,
    jwks_url_fetch_cache_rotation,
    jwks_url_refusals
);
