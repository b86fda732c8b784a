//! Fetching JWKS documents from URLs (clients registered with `jwks_url`, OpenID Connect
//! issuers), with a timeout, a size limit and a cache.
//!
//! A set is reused for `auth.jwks_cache_secs`. When an assertion names a `kid` the cached set
//! lacks (the client rotated its keys), the set is fetched again, at most once per
//! [`MIN_REFETCH_SECS`] per URL so that a stream of bogus `kid`s cannot turn the gateway into
//! a request amplifier. Only https URLs are fetched, verified against the Mozilla roots plus an
//! optional extra CA (`auth.jwks_ca_file`), through the [`crate::net`] guard: a URL whose
//! host is (or resolves to) a loopback, private or other special-purpose address outside
//! `outbound.allowed_networks` is refused without a connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use jsonwebtoken::jwk::JwkSet;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

use crate::config::AuthSettings;
use crate::net::{OutboundClient, OutboundGuard, OutboundOptions, refusal_in};

/// Least time between two fetches of one URL, in seconds.
pub const MIN_REFETCH_SECS: u64 = 10;

/// A failed fetch; the message names the URL's host at most.
#[derive(Debug, thiserror::Error)]
#[error("JWKS fetch failed: {0}")]
pub struct FetchError(pub String);

impl FetchError {
    /// Whether the address guard refused the URL (no connection was made).
    pub fn is_address_refused(&self) -> bool {
        self.0.starts_with(crate::net::ADDRESS_REFUSED)
    }
}

impl From<crate::net::AddressRefused> for FetchError {
    fn from(refused: crate::net::AddressRefused) -> Self {
        FetchError(refused.to_string())
    }
}

#[derive(Clone)]
struct Cached {
    /// The last good set, if any fetch ever succeeded.
    set: Option<Arc<JwkSet>>,
    /// When the last attempt (good or not) was made.
    fetched: Instant,
}

/// A JWKS fetcher with its cache. Cheap to clone.
#[derive(Clone)]
pub struct JwksFetcher {
    client: OutboundClient,
    max_bytes: usize,
    ttl: Duration,
    cache: Arc<Mutex<HashMap<String, Cached>>>,
}

impl std::fmt::Debug for JwksFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwksFetcher").finish_non_exhaustive()
    }
}

impl JwksFetcher {
    /// Builds the HTTP client (rustls with ring, https only, no redirects, guarded addresses).
    pub fn new(settings: &AuthSettings, guard: OutboundGuard) -> anyhow::Result<JwksFetcher> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if !settings.jwks_ca_file.as_os_str().is_empty() {
            for cert in CertificateDer::pem_file_iter(&settings.jwks_ca_file)? {
                roots.add(cert?)?;
            }
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let timeout = Duration::from_secs(settings.jwks_fetch_timeout_secs.max(1));
        let client = OutboundClient::new(
            guard,
            OutboundOptions {
                tls,
                connect_timeout: timeout,
                timeout,
            },
        )?;
        Ok(JwksFetcher {
            client,
            max_bytes: settings.jwks_max_bytes,
            ttl: Duration::from_secs(settings.jwks_cache_secs),
            cache: Arc::new(Mutex::new(HashMap::new())),
        })
    }

    /// The set at `url`, from the cache when fresh; `want_kid` forces a refetch when the
    /// cached set lacks that key (rate-limited).
    pub async fn get(&self, url: &str, want_kid: Option<&str>) -> Result<Arc<JwkSet>, FetchError> {
        let cached = self.cache.lock().ok().and_then(|c| c.get(url).cloned());
        if let Some(c) = &cached {
            let fresh = c.fetched.elapsed() < self.ttl;
            let may_refetch = c.fetched.elapsed() >= Duration::from_secs(MIN_REFETCH_SECS);
            match &c.set {
                Some(set) => {
                    let has_kid = want_kid.is_none_or(|k| set.find(k).is_some());
                    if (fresh && has_kid) || !may_refetch {
                        return Ok(set.clone());
                    }
                }
                // A failed attempt is remembered too, so a slow or broken URL costs one
                // outbound request per interval, not one per token request.
                None if !may_refetch => {
                    return Err(FetchError("the last fetch failed; retrying later".into()));
                }
                None => {}
            }
        }
        let result = self.fetch(url).await.map(Arc::new);
        if let Ok(mut cache) = self.cache.lock() {
            let previous = cached.and_then(|c| c.set);
            cache.insert(
                url.to_string(),
                Cached {
                    set: result.as_ref().ok().cloned().or(previous),
                    fetched: Instant::now(),
                },
            );
        }
        result
    }

    async fn fetch(&self, url: &str) -> Result<JwkSet, FetchError> {
        let response = self
            .client
            .request(reqwest::Method::GET, url)?
            .header("accept", "application/json")
            .send()
            .await
            .map_err(|e| match refusal_in(&e) {
                Some(refused) => FetchError::from(refused),
                None => FetchError(format!("request failed: {}", e.without_url())),
            })?;
        if !response.status().is_success() {
            return Err(FetchError(format!("status {}", response.status())));
        }
        if response
            .content_length()
            .is_some_and(|n| n > self.max_bytes as u64)
        {
            return Err(FetchError("document too large".into()));
        }
        let mut body = Vec::new();
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk =
                chunk.map_err(|e| FetchError(format!("read failed: {}", e.without_url())))?;
            if body.len() + chunk.len() > self.max_bytes {
                return Err(FetchError("document too large".into()));
            }
            body.extend_from_slice(&chunk);
        }
        let value: serde_json::Value =
            serde_json::from_slice(&body).map_err(|_| FetchError("not JSON".into()))?;
        super::clients::parse_jwks(&value).map_err(|e| FetchError(e.to_string()))
    }
}
