//! A `jsonwebtoken` crypto provider backed by ring, so that TLS, tokens and signatures rest
//! on one crypto library.
//!
//! It signs with EdDSA (Ed25519) and ES256, the algorithms of the gateway's own keys, and
//! verifies RS256/RS384/RS512, ES256, ES384 and EdDSA, the algorithms SMART Backend Services
//! clients use (RS384 and ES384 required by SMART, ES256 and EdDSA added). HMAC and RSA-PSS
//! are deliberately absent: with no HMAC verifier, a token "signed" with HS256 using a public
//! key as the secret can never verify. Unsupported requests are errors, never panics.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{Error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use jsonwebtoken::{DecodingKeyKind, signature};
use ring::rand::SystemRandom;
use ring::signature::{self as sig, EcdsaKeyPair, Ed25519KeyPair, KeyPair};

/// The provider; installed once per process by [`install`].
pub static RING_PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: |_| {
            Err(ErrorKind::InvalidRsaKey("RSA signing keys are not supported".into()).into())
        },
        rsa_pub_components_from_public_key: |_| {
            Err(ErrorKind::InvalidRsaKey("RSA key parsing is not supported".into()).into())
        },
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key,
        compute_digest,
    },
};

/// Installs the ring provider as jsonwebtoken's process default. Safe to call many times.
pub fn install() {
    // Err means a provider is already installed: ours, by an earlier call.
    let _ = RING_PROVIDER.install_default();
}

struct EdDsaSigner(Ed25519KeyPair);
struct EcdsaSigner(EcdsaKeyPair, Algorithm);
struct Verifier {
    algorithm: Algorithm,
    key: DecodingKey,
}

impl signature::Signer<Vec<u8>> for EdDsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        Ok(self.0.sign(msg).as_ref().to_vec())
    }
}

impl JwtSigner for EdDsaSigner {
    fn algorithm(&self) -> Algorithm {
        Algorithm::EdDSA
    }
}

impl signature::Signer<Vec<u8>> for EcdsaSigner {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        self.0
            .sign(&SystemRandom::new(), msg)
            .map(|s| s.as_ref().to_vec())
            .map_err(|_| signature::Error::new())
    }
}

impl JwtSigner for EcdsaSigner {
    fn algorithm(&self) -> Algorithm {
        self.1
    }
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        let fail = |_| signature::Error::new();
        match (self.algorithm, self.key.kind()) {
            (Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512, kind) => {
                let params = match self.algorithm {
                    Algorithm::RS256 => &sig::RSA_PKCS1_2048_8192_SHA256,
                    Algorithm::RS384 => &sig::RSA_PKCS1_2048_8192_SHA384,
                    _ => &sig::RSA_PKCS1_2048_8192_SHA512,
                };
                match kind {
                    DecodingKeyKind::RsaModulusExponent { n, e } => {
                        sig::RsaPublicKeyComponents { n, e }
                            .verify(params, msg, signature)
                            .map_err(fail)
                    }
                    DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(params, der)
                        .verify(msg, signature)
                        .map_err(fail),
                }
            }
            (alg, DecodingKeyKind::SecretOrDer(point)) => {
                let algorithm: &dyn sig::VerificationAlgorithm = match alg {
                    Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
                    Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
                    Algorithm::EdDSA => &sig::ED25519,
                    _ => return Err(signature::Error::new()),
                };
                sig::UnparsedPublicKey::new(algorithm, point)
                    .verify(msg, signature)
                    .map_err(fail)
            }
            _ => Err(signature::Error::new()),
        }
    }
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

fn new_signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    match algorithm {
        Algorithm::EdDSA => Ok(Box::new(EdDsaSigner(
            Ed25519KeyPair::from_pkcs8_maybe_unchecked(key.as_bytes())
                .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?,
        ))),
        Algorithm::ES256 => Ok(Box::new(EcdsaSigner(
            EcdsaKeyPair::from_pkcs8(
                &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
                key.as_bytes(),
                &SystemRandom::new(),
            )
            .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?,
            Algorithm::ES256,
        ))),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn new_verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    use jsonwebtoken::AlgorithmFamily;
    let family_fits = matches!(
        (algorithm, key.family()),
        (
            Algorithm::RS256 | Algorithm::RS384 | Algorithm::RS512,
            AlgorithmFamily::Rsa
        ) | (Algorithm::ES256 | Algorithm::ES384, AlgorithmFamily::Ec)
            | (Algorithm::EdDSA, AlgorithmFamily::Ed)
    );
    if !family_fits {
        return Err(ErrorKind::InvalidAlgorithm.into());
    }
    Ok(Box::new(Verifier {
        algorithm: *algorithm,
        key: key.clone(),
    }))
}

fn ec_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (signing, curve, len) = match alg {
        Algorithm::ES256 => (
            &sig::ECDSA_P256_SHA256_FIXED_SIGNING,
            EllipticCurve::P256,
            32,
        ),
        Algorithm::ES384 => (
            &sig::ECDSA_P384_SHA384_FIXED_SIGNING,
            EllipticCurve::P384,
            48,
        ),
        _ => return Err(ErrorKind::InvalidEcdsaKey.into()),
    };
    let pair = EcdsaKeyPair::from_pkcs8(signing, der, &SystemRandom::new())
        .map_err(|_| Error::from(ErrorKind::InvalidEcdsaKey))?;
    let point = pair.public_key().as_ref();
    if point.len() != 1 + 2 * len || point[0] != 4 {
        return Err(ErrorKind::InvalidEcdsaKey.into());
    }
    let (x, y) = point[1..].split_at(len);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn ed_pub_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    match curve {
        EllipticCurve::Ed25519 => Ok(Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
            .map_err(|_| Error::from(ErrorKind::InvalidEddsaKey))?
            .public_key()
            .as_ref()
            .to_vec()),
        _ => Err(ErrorKind::InvalidAlgorithm.into()),
    }
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &ring::digest::SHA256,
        ThumbprintHash::SHA384 => &ring::digest::SHA384,
        ThumbprintHash::SHA512 => &ring::digest::SHA512,
        _ => return Err(ErrorKind::InvalidAlgorithm.into()),
    };
    Ok(ring::digest::digest(algorithm, data).as_ref().to_vec())
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonwebtoken::{Header, Validation, decode, encode};
    use serde_json::{Value, json};

    fn ed25519() -> (Vec<u8>, Vec<u8>) {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&SystemRandom::new()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
    }

    #[test]
    fn signs_and_verifies_eddsa_and_es256() {
        install();
        let (private, public) = ed25519();
        let claims = json!({"sub": "x", "exp": 4_000_000_000u64});
        let token = encode(
            &Header::new(Algorithm::EdDSA),
            &claims,
            &EncodingKey::from_ed_der(&private),
        )
        .unwrap();
        let key = DecodingKey::from_ed_der(&public);
        let ok = decode::<Value>(&token, &key, &Validation::new(Algorithm::EdDSA)).unwrap();
        assert_eq!(ok.claims["sub"], "x");

        let rng = SystemRandom::new();
        let pkcs8 =
            EcdsaKeyPair::generate_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let pair =
            EcdsaKeyPair::from_pkcs8(&sig::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
                .unwrap();
        let token = encode(
            &Header::new(Algorithm::ES256),
            &claims,
            &EncodingKey::from_ec_der(pkcs8.as_ref()),
        )
        .unwrap();
        let key = DecodingKey::from_ec_der(pair.public_key().as_ref());
        assert!(decode::<Value>(&token, &key, &Validation::new(Algorithm::ES256)).is_ok());
    }

    #[test]
    fn refuses_hmac_and_mismatched_families() {
        install();
        let (_, public) = ed25519();
        let claims = json!({"sub": "x", "exp": 4_000_000_000u64});
        assert!(
            encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(&public).unwrap()
            )
            .is_err()
        );
        let key = DecodingKey::from_secret(&public).unwrap();
        // A hand-made HS256 token: the verifier does not exist, so it cannot pass.
        let token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln";
        assert!(decode::<Value>(token, &key, &Validation::new(Algorithm::HS256)).is_err());
        let ed = DecodingKey::from_ed_der(&public);
        assert!(new_verifier(&Algorithm::ES256, &ed).is_err());
    }
}
