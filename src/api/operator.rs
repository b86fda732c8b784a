//! The operator's credential and the [`Operator`] extractor that every operator-only
//! handler takes, so that no handler can forget the check.
//!
//! Until operators sign in with OpenID Connect, the operator presents a random bearer
//! credential that the gateway generates on first run into a file only its owner can read
//! (mode 0600). The gateway keeps only its SHA-256 digest in memory and compares digests in
//! constant time.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use actix_web::dev::Payload;
use actix_web::http::header::AUTHORIZATION;
use actix_web::web::Data;
use actix_web::{FromRequest, HttpRequest};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use futures_util::future::{Ready, ready};
use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};

use super::AppState;
use super::error::ApiError;

/// The digest of the operator's bearer credential.
#[derive(Clone)]
pub struct OperatorCredential {
    digest: [u8; 32],
    path: PathBuf,
}

impl std::fmt::Debug for OperatorCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OperatorCredential")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl OperatorCredential {
    /// Reads the credential file, creating it with a fresh random credential when missing.
    /// Returns the credential and whether it was created.
    pub fn load_or_create(path: &Path) -> std::io::Result<(OperatorCredential, bool)> {
        let created = if path.exists() {
            false
        } else {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            let mut bytes = [0u8; 32];
            SystemRandom::new()
                .fill(&mut bytes)
                .map_err(|_| std::io::Error::other("the system random generator failed"))?;
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(path)?;
            writeln!(file, "{}", URL_SAFE_NO_PAD.encode(bytes))?;
            true
        };
        let token = std::fs::read_to_string(path)?;
        let token = token.trim();
        if token.len() < 32 {
            return Err(std::io::Error::other(format!(
                "{} holds too short a credential (at least 32 characters)",
                path.display()
            )));
        }
        Ok((
            OperatorCredential {
                digest: hash(token),
                path: path.to_path_buf(),
            },
            created,
        ))
    }

    /// Where the credential is kept.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether `presented` is the operator's credential.
    pub fn accepts(&self, presented: &str) -> bool {
        let presented = hash(presented);
        // Constant-time: fold the differences instead of returning at the first one.
        presented
            .iter()
            .zip(self.digest.iter())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
    }
}

fn hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest(&SHA256, token.as_bytes()).as_ref());
    out
}

/// Proof that the request came from the operator.
#[derive(Debug, Clone, Copy)]
pub struct Operator;

impl FromRequest for Operator {
    type Error = ApiError;
    type Future = Ready<Result<Operator, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(state) = req.app_data::<Data<AppState>>() else {
            return ready(Err(ApiError::internal("application state missing")));
        };
        let presented = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim);
        ready(match presented {
            Some(token) if state.operator.accepts(token) => Ok(Operator),
            _ => Err(ApiError::unauthorized()),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn created_once_private_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/operator.token");
        let (cred, created) = OperatorCredential::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let token = std::fs::read_to_string(&path).unwrap();
        assert!(cred.accepts(token.trim()));
        assert!(!cred.accepts("not-it"));
        assert!(!cred.accepts(""));
        let (again, created) = OperatorCredential::load_or_create(&path).unwrap();
        assert!(!created);
        assert!(again.accepts(token.trim()));
    }
}
