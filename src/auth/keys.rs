//! The gateway's own signing keys (Ed25519, generated with ring).
//!
//! They live in one keyring file, `{data_dir}/{auth.key_dir}/keyring.json`, created with mode
//! 0600 on first run. When `CONSENTGATE_KEY_ENCRYPTION_KEY` holds a base64 32-byte key, each
//! private key is stored encrypted with AES-256-GCM instead of in the clear.
//!
//! Rotation (`consentgate keys rotate`) adds a new key and retires the current one; a retired
//! key stays published in the JWKS, and accepted for verification, until every token it signed
//! has expired. Running servers notice a rotated keyring file by its modification time and
//! inode, checked before every signature, verification and JWKS answer (one `stat`), so
//! several instances sharing the key directory agree on the keys without a restart: a token
//! signed with a key another instance just created verifies on the next request, and the
//! new key is published at once (`tests/api/multi_instance.rs`).

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::RwLock;
use std::time::SystemTime;

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{DecodingKey, EncodingKey};
use ring::aead::{AES_256_GCM, Aad, LessSafeKey, NONCE_LEN, Nonce, UnboundKey};
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// Environment variable holding the at-rest encryption key (base64 of 32 bytes).
pub const ENCRYPTION_KEY_ENV: &str = "CONSENTGATE_KEY_ENCRYPTION_KEY";

/// A keyring problem. Messages name files, never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// Reading or writing the keyring failed.
    #[error("keyring {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The keyring file is not what the gateway wrote.
    #[error("keyring {path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredKey {
    kid: String,
    alg: String,
    /// Base64url PKCS#8, or `enc:v1:` + base64url(nonce || AES-256-GCM ciphertext).
    private: String,
    public: String,
    created: i64,
    retired_at: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct KeyringFile {
    keys: Vec<StoredKey>,
}

/// One usable key.
#[derive(Clone)]
struct LoadedKey {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
    created: i64,
    retired_at: Option<i64>,
}

struct Loaded {
    keys: Vec<LoadedKey>,
    /// Modification time and inode of the file read: a rotation replaces the file by rename,
    /// so the inode changes even where timestamps are coarse.
    version: Option<(SystemTime, u64)>,
}

fn file_version(path: &Path) -> Option<(SystemTime, u64)> {
    use std::os::unix::fs::MetadataExt;
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.ino()))
}

/// The gateway's signing keys.
pub struct Keyring {
    path: PathBuf,
    /// How long after retirement a key still verifies (the longest token lifetime + skew).
    grace_secs: i64,
    state: RwLock<Loaded>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn at_rest_key() -> Result<Option<LessSafeKey>, String> {
    let Ok(encoded) = std::env::var(ENCRYPTION_KEY_ENV) else {
        return Ok(None);
    };
    let bytes = STANDARD
        .decode(encoded.trim())
        .map_err(|_| format!("{ENCRYPTION_KEY_ENV} is not base64"))?;
    let key = UnboundKey::new(&AES_256_GCM, &bytes)
        .map_err(|_| format!("{ENCRYPTION_KEY_ENV} must hold exactly 32 bytes"))?;
    Ok(Some(LessSafeKey::new(key)))
}

fn seal(pkcs8: &[u8], kid: &str) -> Result<String, String> {
    seal_with(at_rest_key()?.as_ref(), pkcs8, kid)
}

fn seal_with(key: Option<&LessSafeKey>, pkcs8: &[u8], kid: &str) -> Result<String, String> {
    let Some(key) = key else {
        return Ok(URL_SAFE_NO_PAD.encode(pkcs8));
    };
    let mut nonce = [0u8; NONCE_LEN];
    SystemRandom::new()
        .fill(&mut nonce)
        .map_err(|_| "random generator failed".to_string())?;
    let mut data = pkcs8.to_vec();
    key.seal_in_place_append_tag(
        Nonce::assume_unique_for_key(nonce),
        Aad::from(kid.as_bytes()),
        &mut data,
    )
    .map_err(|_| "encryption failed".to_string())?;
    let mut out = nonce.to_vec();
    out.extend_from_slice(&data);
    Ok(format!("enc:v1:{}", URL_SAFE_NO_PAD.encode(out)))
}

fn open(stored: &str, kid: &str) -> Result<Vec<u8>, String> {
    open_with(at_rest_key()?.as_ref(), stored, kid)
}

fn open_with(key: Option<&LessSafeKey>, stored: &str, kid: &str) -> Result<Vec<u8>, String> {
    let Some(sealed) = stored.strip_prefix("enc:v1:") else {
        return URL_SAFE_NO_PAD
            .decode(stored)
            .map_err(|_| format!("key {kid} is not base64url"));
    };
    let key =
        key.ok_or_else(|| format!("key {kid} is encrypted but {ENCRYPTION_KEY_ENV} is not set"))?;
    let mut data = URL_SAFE_NO_PAD
        .decode(sealed)
        .map_err(|_| format!("key {kid} is not base64url"))?;
    if data.len() < NONCE_LEN {
        return Err(format!("key {kid} is truncated"));
    }
    let ciphertext = data.split_off(NONCE_LEN);
    let nonce = Nonce::try_assume_unique_for_key(&data).map_err(|_| "bad nonce".to_string())?;
    let mut ciphertext = ciphertext;
    let plain = key
        .open_in_place(nonce, Aad::from(kid.as_bytes()), &mut ciphertext)
        .map_err(|_| format!("key {kid} does not decrypt with {ENCRYPTION_KEY_ENV}"))?;
    Ok(plain.to_vec())
}

fn new_key() -> Result<LoadedKey, String> {
    let rng = SystemRandom::new();
    let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| "key generation failed")?;
    let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| "key generation failed")?;
    let public = pair.public_key().as_ref().to_vec();
    // The key id is the base64url SHA-256 of the public key: stable and collision-free.
    let kid = URL_SAFE_NO_PAD
        .encode(&ring::digest::digest(&ring::digest::SHA256, &public).as_ref()[..16]);
    Ok(LoadedKey {
        kid,
        pkcs8: pkcs8.as_ref().to_vec(),
        public,
        created: now_secs(),
        retired_at: None,
    })
}

impl Keyring {
    /// Opens the keyring in `dir`, creating it with one fresh key when missing.
    pub fn open(dir: &Path, grace_secs: i64) -> Result<Keyring, KeyError> {
        let path = dir.join("keyring.json");
        let io = |source| KeyError::Io {
            path: path.clone(),
            source,
        };
        if !path.exists() {
            std::fs::create_dir_all(dir).map_err(io)?;
            let key = new_key().map_err(|reason| KeyError::Corrupt {
                path: path.clone(),
                reason,
            })?;
            write(&path, &[key])?;
        }
        let loaded = read(&path)?;
        Ok(Keyring {
            path,
            grace_secs,
            state: RwLock::new(loaded),
        })
    }

    /// Retires the current key and adds a new one; drops keys whose tokens have all expired.
    /// Returns the new key id.
    pub fn rotate(&self) -> Result<String, KeyError> {
        self.refresh();
        let now = now_secs();
        let mut keys = self.keys();
        for k in keys.iter_mut() {
            k.retired_at.get_or_insert(now);
        }
        keys.retain(|k| k.retired_at.is_none_or(|r| r + self.grace_secs > now));
        let fresh = new_key().map_err(|reason| KeyError::Corrupt {
            path: self.path.clone(),
            reason,
        })?;
        let kid = fresh.kid.clone();
        keys.push(fresh);
        write(&self.path, &keys)?;
        self.refresh();
        Ok(kid)
    }

    /// Rereads the file when it changed since the last read (another instance rotated).
    fn refresh(&self) {
        let version = file_version(&self.path);
        let stale = self
            .state
            .read()
            .map(|s| s.version != version)
            .unwrap_or(true);
        if stale {
            match read(&self.path) {
                Ok(loaded) => {
                    if let Ok(mut state) = self.state.write() {
                        *state = loaded;
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "keyring could not be reread; keeping the loaded keys")
                }
            }
        }
    }

    fn keys(&self) -> Vec<LoadedKey> {
        self.state
            .read()
            .map(|s| s.keys.clone())
            .unwrap_or_default()
    }

    /// The key to sign with now: the newest unretired one.
    pub fn signing_key(&self) -> Option<(String, EncodingKey)> {
        self.refresh();
        self.keys()
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .max_by_key(|k| k.created)
            .map(|k| (k.kid, EncodingKey::from_ed_der(&k.pkcs8)))
    }

    /// The raw Ed25519 key pair of the signing key (for detached signatures and checkpoints).
    pub fn signing_key_pair(&self) -> Option<(String, Ed25519KeyPair)> {
        self.refresh();
        self.keys()
            .into_iter()
            .filter(|k| k.retired_at.is_none())
            .max_by_key(|k| k.created)
            .and_then(|k| {
                Ed25519KeyPair::from_pkcs8_maybe_unchecked(&k.pkcs8)
                    .ok()
                    .map(|p| (k.kid, p))
            })
    }

    /// The verification key for `kid`, while it is still valid.
    pub fn verification_key(&self, kid: &str) -> Option<DecodingKey> {
        self.refresh();
        let now = now_secs();
        self.keys()
            .into_iter()
            .find(|k| k.kid == kid && k.retired_at.is_none_or(|r| r + self.grace_secs > now))
            .map(|k| DecodingKey::from_ed_der(&k.public))
    }

    /// The public keys as a JWKS (RFC 7517), retired keys included until they lapse.
    pub fn jwks(&self) -> Value {
        self.refresh();
        let now = now_secs();
        let keys: Vec<Value> = self
            .keys()
            .iter()
            .filter(|k| k.retired_at.is_none_or(|r| r + self.grace_secs > now))
            .map(|k| {
                json!({
                    "kty": "OKP",
                    "crv": "Ed25519",
                    "x": URL_SAFE_NO_PAD.encode(&k.public),
                    "kid": k.kid,
                    "alg": "EdDSA",
                    "use": "sig",
                })
            })
            .collect();
        json!({ "keys": keys })
    }
}

fn read(path: &Path) -> Result<Loaded, KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let version = file_version(path);
    let text = std::fs::read_to_string(path).map_err(|source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let file: KeyringFile =
        serde_json::from_str(&text).map_err(|e| corrupt(format!("not a keyring: {e}")))?;
    let mut keys = Vec::with_capacity(file.keys.len());
    for k in file.keys {
        if k.alg != "EdDSA" {
            return Err(corrupt(format!(
                "key {} has unsupported alg {}",
                k.kid, k.alg
            )));
        }
        let pkcs8 = open(&k.private, &k.kid).map_err(corrupt)?;
        let public = URL_SAFE_NO_PAD
            .decode(&k.public)
            .map_err(|_| corrupt(format!("key {} public part is not base64url", k.kid)))?;
        let pair = Ed25519KeyPair::from_pkcs8_maybe_unchecked(&pkcs8)
            .map_err(|_| corrupt(format!("key {} is not an Ed25519 PKCS#8 key", k.kid)))?;
        if pair.public_key().as_ref() != public.as_slice() {
            return Err(corrupt(format!("key {} public part does not match", k.kid)));
        }
        keys.push(LoadedKey {
            kid: k.kid,
            pkcs8,
            public,
            created: k.created,
            retired_at: k.retired_at,
        });
    }
    if keys.is_empty() {
        return Err(corrupt("no keys".into()));
    }
    Ok(Loaded { keys, version })
}

/// Writes the keyring atomically (temporary file, then rename) with mode 0600.
fn write(path: &Path, keys: &[LoadedKey]) -> Result<(), KeyError> {
    let corrupt = |reason: String| KeyError::Corrupt {
        path: path.to_path_buf(),
        reason,
    };
    let io = |source| KeyError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut stored = Vec::with_capacity(keys.len());
    for k in keys {
        stored.push(StoredKey {
            kid: k.kid.clone(),
            alg: "EdDSA".into(),
            private: seal(&k.pkcs8, &k.kid).map_err(corrupt)?,
            public: URL_SAFE_NO_PAD.encode(&k.public),
            created: k.created,
            retired_at: k.retired_at,
        });
    }
    let text = serde_json::to_string_pretty(&KeyringFile { keys: stored })
        .map_err(|e| corrupt(e.to_string()))?;
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io)?;
    file.write_all(text.as_bytes()).map_err(io)?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&tmp, path).map_err(io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_private_rotated_and_published() {
        let dir = tempfile::tempdir().unwrap();
        let ring = Keyring::open(dir.path(), 600).unwrap();
        let mode = std::fs::metadata(dir.path().join("keyring.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let (first, _) = ring.signing_key().unwrap();
        let second = ring.rotate().unwrap();
        assert_ne!(first, second);
        assert_eq!(ring.signing_key().unwrap().0, second);
        // The retired key still verifies and is still published during its grace period.
        assert!(ring.verification_key(&first).is_some());
        assert_eq!(ring.jwks()["keys"].as_array().unwrap().len(), 2);
        // Another handle on the same directory sees the rotation.
        let other = Keyring::open(dir.path(), 600).unwrap();
        assert_eq!(other.signing_key().unwrap().0, second);
        // With no grace, the next rotation drops the first key.
        let short = Keyring::open(dir.path(), 0).unwrap();
        short.rotate().unwrap();
        assert!(short.verification_key(&first).is_none());
    }

    #[test]
    fn sealed_keys_round_trip() {
        let bytes = b"key material";
        let key = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[7u8; 32]).unwrap());
        let other = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &[8u8; 32]).unwrap());
        let sealed = seal_with(Some(&key), bytes, "k1").unwrap();
        assert!(sealed.starts_with("enc:v1:"));
        assert_eq!(open_with(Some(&key), &sealed, "k1").unwrap(), bytes);
        assert!(open_with(Some(&other), &sealed, "k1").is_err(), "wrong key");
        assert!(
            open_with(Some(&key), &sealed, "k2").is_err(),
            "bound to the key id"
        );
        assert!(open_with(None, &sealed, "k1").is_err(), "needs the key");
        let plain = seal_with(None, bytes, "k1").unwrap();
        assert_eq!(open_with(None, &plain, "k1").unwrap(), bytes);
    }
}
