//! JWT headers and claims: gateway access tokens (`auth::tokens::verify`) and client
//! assertions (`auth::assertion::verify`, `claimed_client_id`), given tokens bent in every
//! part: headers with other algorithms (`none`, HMAC, RSA), odd `typ`, `kid`, `crit`, `jku`
//! and embedded keys; claims of the wrong types or out of range; flipped, cut and re-dotted
//! bytes. Properties: nothing panics; a token whose header or claims were changed never
//! verifies; whatever the right key signed is accepted only when its claims meet the rules.

use std::sync::OnceLock;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use consentgate::auth::assertion::{self, AssertionRules};
use consentgate::auth::clients::parse_jwks;
use consentgate::auth::keys::Keyring;
use consentgate::auth::tokens::{self, AccessClaims, Expectation};
use consentgate::auth::{jwt_ring, now_secs};
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use proptest::prelude::*;
use ring::rand::SystemRandom;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde_json::{Value, json};

use crate::cases;
use crate::values::{any_json, nasty_string};

const ISSUER: &str = "https://gateway.test";
const AUDIENCE: &str = "https://gateway.test/fhir";
const TOKEN_URL: &str = "https://gateway.test/oauth/token";
const CLIENT: &str = "client-1";

struct Keys {
    _dir: tempfile::TempDir,
    keyring: Keyring,
    client_pkcs8: Vec<u8>,
    client_jwks: JwkSet,
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        jwt_ring::install();
        let dir = tempfile::tempdir().unwrap();
        let keyring = Keyring::open(dir.path(), 600).unwrap();
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let jwks = parse_jwks(&json!({"keys": [{
            "kty": "OKP", "crv": "Ed25519", "alg": "EdDSA", "kid": "k1",
            "x": URL_SAFE_NO_PAD.encode(pair.public_key().as_ref()),
        }]}))
        .unwrap();
        Keys {
            _dir: dir,
            keyring,
            client_pkcs8: pkcs8.as_ref().to_vec(),
            client_jwks: jwks,
        }
    })
}

fn good_access_claims() -> Value {
    let now = now_secs();
    json!({
        "iss": ISSUER, "sub": CLIENT, "aud": AUDIENCE, "exp": now + 300, "iat": now,
        "nbf": now, "jti": "j1", "client_id": CLIENT, "role": "clinician",
        "organization": "Organization/o1", "scope": "system/*.rs", "purpose_of_use": "TREAT",
    })
}

fn good_assertion_claims() -> Value {
    json!({"iss": CLIENT, "sub": CLIENT, "aud": TOKEN_URL, "exp": now_secs() + 120, "jti": "a1"})
}

fn access_token(claims: &Value) -> String {
    tokens::sign(&keys().keyring, tokens::ACCESS_TOKEN_TYP, claims).unwrap()
}

fn assertion_token(claims: &Value) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some("k1".into());
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(
        &header,
        claims,
        &EncodingKey::from_ed_der(&keys().client_pkcs8),
    )
    .unwrap()
}

fn verify_access(token: &str) -> Option<AccessClaims> {
    tokens::verify::<AccessClaims>(
        &keys().keyring,
        token,
        &Expectation {
            typ: tokens::ACCESS_TOKEN_TYP,
            issuer: ISSUER,
            audience: AUDIENCE,
            skew_secs: 30,
            allow_expired: false,
        },
    )
    .ok()
}

fn verify_assertion(token: &str) -> Option<assertion::AssertionClaims> {
    assertion::verify(
        token,
        &keys().client_jwks,
        &AssertionRules {
            client_id: CLIENT,
            token_url: TOKEN_URL,
            now: now_secs(),
            max_lifetime_secs: 300,
            skew_secs: 30,
            max_bytes: 8192,
        },
    )
    .ok()
}

/// Headers an attacker would try.
fn header() -> impl Strategy<Value = Value> {
    let alg = prop::sample::select(vec![
        "none", "None", "NONE", "HS256", "RS256", "ES256", "PS256", "EdDSA", "ES256K", "", "eddsa",
    ]);
    let typ = prop::sample::select(vec![
        json!("at+jwt"),
        json!("JWT"),
        json!("AT+JWT"),
        json!(null),
        json!(7),
        json!(""),
    ]);
    let kid = prop_oneof![
        Just(json!("k1")),
        Just(json!(null)),
        Just(json!(["k1"])),
        Just(json!("../../etc/passwd")),
        nasty_string().prop_map(Value::String),
    ];
    (alg, typ, kid, any_json(), any::<u8>()).prop_map(|(alg, typ, kid, extra, pick)| {
        let mut h = json!({"alg": alg, "typ": typ, "kid": kid});
        match pick % 5 {
            0 => h["crit"] = json!(["exp"]),
            1 => h["jku"] = json!("https://attacker.example/jwks"),
            2 => h["jwk"] = json!({"kty": "oct", "k": "AAAA"}),
            3 => h["x5u"] = extra,
            _ => {}
        }
        h
    })
}

/// Claims with the right names and bent values.
fn claims_from(base: Value) -> impl Strategy<Value = Value> {
    let keys: Vec<String> = base.as_object().unwrap().keys().cloned().collect();
    let bent_value = prop_oneof![
        any_json(),
        Just(json!(i64::MAX)),
        Just(json!(i64::MIN)),
        Just(json!(-1)),
        Just(json!(1e300)),
        Just(json!("1700000000")),
        Just(json!([AUDIENCE, "other"])),
        Just(json!(ISSUER)),
    ];
    (prop::sample::select(keys), bent_value, any::<bool>()).prop_map(move |(key, value, drop)| {
        let mut claims = base.clone();
        if drop {
            claims.as_object_mut().unwrap().remove(&key);
        } else {
            claims[&key] = value;
        }
        claims
    })
}

fn b64(value: &Value) -> String {
    URL_SAFE_NO_PAD.encode(value.to_string())
}

/// A bent form of `token`, made by one of several kinds of change.
fn bent(token: String) -> impl Strategy<Value = String> {
    let parts: Vec<String> = token.split('.').map(str::to_string).collect();
    let len = token.len();
    (
        0..6u8,
        header(),
        any_json(),
        0..len.max(1),
        any::<u8>(),
        "\\PC{0,80}",
    )
        .prop_map(move |(how, header, claims, at, byte, junk)| match how {
            0 => format!("{}.{}.{}", b64(&header), parts[1], parts[2]),
            1 => format!("{}.{}.{}", parts[0], b64(&claims), parts[2]),
            2 => {
                let mut bytes = token.clone().into_bytes();
                bytes[at] ^= byte | 1;
                String::from_utf8_lossy(&bytes).into_owned()
            }
            3 => token[..at].to_string(),
            4 => format!("{}.{}", token, junk),
            _ => format!("{}.{}.", b64(&header), parts[1]),
        })
}

/// Whether `candidate` carries the same signed bytes as `original` (only an encoding of the
/// signature that decodes to the same bytes may differ).
fn same_signed_content(original: &str, candidate: &str) -> bool {
    let (Some((o_signed, o_sig)), Some((c_signed, c_sig))) =
        (original.rsplit_once('.'), candidate.rsplit_once('.'))
    else {
        return false;
    };
    o_signed == c_signed && URL_SAFE_NO_PAD.decode(o_sig).ok() == URL_SAFE_NO_PAD.decode(c_sig).ok()
}

proptest! {
    #![proptest_config(cases(384))]

    #[test]
    fn bent_access_tokens_never_verify(token in bent(access_token(&good_access_claims()))) {
        let original = access_token(&good_access_claims());
        prop_assert!(verify_access(&original).is_some(), "the unbent token verifies");
        if verify_access(&token).is_some() {
            prop_assert!(same_signed_content(&original, &token), "a bent token verified: {token}");
        }
    }

    #[test]
    fn bent_assertions_never_verify(token in bent(assertion_token(&good_assertion_claims()))) {
        let _ = assertion::claimed_client_id(&token);
        let original = assertion_token(&good_assertion_claims());
        prop_assert!(verify_assertion(&original).is_some(), "the unbent assertion verifies");
        if verify_assertion(&token).is_some() {
            prop_assert!(same_signed_content(&original, &token), "a bent assertion verified: {token}");
        }
    }

    #[test]
    fn signed_access_claims_are_checked(claims in claims_from(good_access_claims())) {
        if let Some(accepted) = verify_access(&access_token(&claims)) {
            prop_assert_eq!(accepted.iss.as_str(), ISSUER);
            prop_assert_eq!(accepted.aud.as_str(), AUDIENCE);
            prop_assert!(accepted.exp.saturating_add(30) >= now_secs());
            prop_assert!(accepted.nbf <= now_secs() + 30);
        }
    }

    #[test]
    fn signed_assertion_claims_are_checked(claims in claims_from(good_assertion_claims())) {
        let token = assertion_token(&claims);
        let _ = assertion::claimed_client_id(&token);
        if let Some(accepted) = verify_assertion(&token) {
            prop_assert_eq!(accepted.iss.as_str(), CLIENT);
            prop_assert_eq!(accepted.sub.as_str(), CLIENT);
            prop_assert!(accepted.exp.saturating_add(30) >= now_secs());
            prop_assert!(accepted.exp <= now_secs() + 330);
            prop_assert!(!accepted.jti.is_empty());
        }
    }

    #[test]
    fn arbitrary_text(token in "\\PC{0,300}") {
        prop_assert!(verify_access(&token).is_none());
        prop_assert!(verify_assertion(&token).is_none());
        let _ = assertion::claimed_client_id(&token);
    }
}
