//! Recipient clients as real client software is: its own key pair, a registration through
//! the API, SMART Backend Services assertions it signs itself, and the tokens they buy.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use super::{TestApp, decode};

/// A client's key pair, as the client's own software would hold it.
pub struct ClientKey {
    /// The key id the JWKS publishes and assertions name.
    pub kid: String,
    /// The one algorithm it signs with.
    pub alg: Algorithm,
    /// The private key (PKCS#8 DER), for tests that build a token by hand.
    pub pkcs8: Vec<u8>,
    /// The public key as a JWK.
    pub jwk: Value,
}

impl ClientKey {
    /// A new Ed25519 key pair.
    pub fn ed25519(kid: &str) -> ClientKey {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        ClientKey {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref())}),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// A new P-256 key pair (ES256).
    pub fn es256(kid: &str) -> ClientKey {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        let point = pair.public_key().as_ref();
        ClientKey {
            kid: kid.into(),
            alg: Algorithm::ES256,
            jwk: json!({"kty": "EC", "crv": "P-256", "kid": kid,
                        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
                        "y": URL_SAFE_NO_PAD.encode(&point[33..])}),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    /// The public key as a JWKS.
    pub fn jwks(&self) -> Value {
        json!({"keys": [self.jwk]})
    }

    /// Signs arbitrary claims with this key.
    pub fn sign(&self, claims: &Value, kid: Option<&str>) -> String {
        let mut header = Header::new(self.alg);
        header.kid = kid.map(str::to_string);
        let key = match self.alg {
            Algorithm::EdDSA => EncodingKey::from_ed_der(&self.pkcs8),
            _ => EncodingKey::from_ec_der(&self.pkcs8),
        };
        jsonwebtoken::encode(&header, claims, &key).unwrap()
    }
}

/// Now, in seconds since the epoch.
pub fn now() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

/// A correct assertion for `client_id` at this gateway.
pub fn assertion_claims(app: &TestApp, client_id: &str) -> Value {
    json!({
        "iss": client_id, "sub": client_id,
        "aud": format!("{}/oauth/token", app.base),
        "exp": now() + 240, "iat": now(),
        "jti": uuid::Uuid::now_v7().to_string(),
    })
}

/// Registers a client through the API; returns its id.
pub async fn register(app: &TestApp, role: &str, jwks: Value, extra: Value) -> String {
    let mut body = json!({"name": format!("{role} app"), "organization": format!("{role} org"),
                          "role": role, "jwks": jwks});
    if let Value::Object(extra) = extra {
        for (k, v) in extra {
            body[k] = v;
        }
    }
    let (status, client) = app.post_json("/api/v1/clients", &body).await;
    assert_eq!(status, 201, "{client}");
    client["id"].as_str().unwrap().to_string()
}

/// Asks for a token; returns status and body.
pub async fn request_token(app: &TestApp, assertion: &str, form: &[(&str, &str)]) -> (u16, Value) {
    let mut fields = vec![
        ("grant_type", "client_credentials"),
        (
            "client_assertion_type",
            "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        ),
        ("client_assertion", assertion),
    ];
    fields.extend_from_slice(form);
    let resp = app
        .client
        .post(app.url("/oauth/token"))
        .form(&fields)
        .send()
        .await
        .unwrap();
    decode(resp).await
}

/// `POST /oauth/revoke` (RFC 7009) of `token` by the client that `assertion` authenticates.
pub async fn revoke_token(app: &TestApp, token: &str, assertion: &str) -> (u16, Value) {
    let resp = app
        .client
        .post(app.url("/oauth/revoke"))
        .form(&[
            ("token", token),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion),
        ])
        .send()
        .await
        .unwrap();
    decode(resp).await
}

/// A token (scope `system/*.rs`) for a registered client with this purpose.
pub async fn client_token(
    app: &TestApp,
    key: &ClientKey,
    client_id: &str,
    purpose: &str,
) -> String {
    client_token_with(app, key, client_id, purpose, None).await
}

/// As [`client_token`], with a break-glass justification when one is given.
pub async fn client_token_with(
    app: &TestApp,
    key: &ClientKey,
    client_id: &str,
    purpose: &str,
    justification: Option<&str>,
) -> String {
    let assertion = key.sign(&assertion_claims(app, client_id), Some(&key.kid));
    let mut form = vec![("scope", "system/*.rs"), ("purpose_of_use", purpose)];
    if let Some(j) = justification {
        form.push(("justification", j));
    }
    let (status, body) = request_token(app, &assertion, &form).await;
    assert_eq!(status, 200, "{body}");
    body["access_token"].as_str().unwrap().to_string()
}

/// The registration fields of a client that acts as `reference` (an Organization, a Group).
pub fn acts_as(reference: &str) -> Value {
    json!({"acts_as": [reference]})
}

/// Registers a client of `role` (an Ed25519 key, `extra` registration fields) and gets it a
/// token for `purpose` (with a break-glass justification when one is given): (id, token).
pub async fn client(
    app: &TestApp,
    role: &str,
    extra: Value,
    purpose: &str,
    justification: Option<&str>,
) -> (String, String) {
    let key = ClientKey::ed25519("k");
    let id = register(app, role, key.jwks(), extra).await;
    let token = client_token_with(app, &key, &id, purpose, justification).await;
    (id, token)
}

/// `GET /api/v1/whoami` with this token.
pub async fn whoami(app: &TestApp, token: &str) -> (u16, Value) {
    let resp = app
        .client
        .get(app.url("/api/v1/whoami"))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    decode(resp).await
}

/// A data source's token for these scopes (`None`: the status and body of the refusal).
pub async fn data_source_token(
    app: &TestApp,
    key: &ClientKey,
    client_id: &str,
    scope: &str,
) -> Result<String, (u16, Value)> {
    let assertion = key.sign(&assertion_claims(app, client_id), Some(&key.kid));
    let (status, body) = request_token(app, &assertion, &[("scope", scope)]).await;
    match (status, body["access_token"].as_str()) {
        (200, Some(token)) => Ok(token.to_string()),
        _ => Err((status, body)),
    }
}

/// Registers a data source (an Ed25519 key, role `data_source`, its purpose defaulted) and
/// gets it a token with `system/*.write`: (id, key, token).
pub async fn data_source(app: &TestApp) -> (String, ClientKey, String) {
    let key = ClientKey::ed25519("source-key");
    let id = register(app, "data_source", key.jwks(), json!({})).await;
    let token = data_source_token(app, &key, &id, "system/*.write")
        .await
        .unwrap_or_else(|refused| panic!("data source token: {refused:?}"));
    (id, key, token)
}
