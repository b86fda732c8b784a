//! Typed settings: `config/default.toml` (compiled in), an optional file, then
//! `CONSENTGATE__SECTION__KEY` environment variables, the environment winning.
//!
//! Settings are loaded once in `main` and passed explicitly; nothing reads them from a global.
//! Unknown keys are refused so that a typo fails start-up instead of being silently ignored,
//! and [`Settings::validate`] checks what types alone cannot, naming the key at fault.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize, Serializer};

/// Longest `server.public_base_url`, so that a SMART Health Link's manifest URL fits the
/// specification's 128 characters.
pub const MAX_PUBLIC_BASE_URL_CHARS: usize = 73;

/// The defaults, compiled into the binary so it runs from any directory.
pub const DEFAULT_TOML: &str = include_str!("../config/default.toml");

/// Prefix of the environment variables that override settings.
pub const ENV_PREFIX: &str = "CONSENTGATE";

/// Everything the gateway can be told.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Development or production behaviour.
    pub profile: Profile,
    /// Where generated files (dev certificate, operator credential, SQLite) live.
    pub data_dir: PathBuf,
    /// Listening and TLS.
    pub server: ServerSettings,
    /// Storage.
    pub database: DatabaseSettings,
    /// Explicit limits on what a request may carry.
    pub limits: Limits,
    /// Tokens, keys and trusted issuers.
    pub auth: AuthSettings,
    /// The purposes each recipient role may ask for.
    pub roles: RolePurposes,
    /// Institution policies and value sets.
    pub policies: PolicySettings,
    /// Tracing output.
    pub log: LogSettings,
    /// Which addresses the gateway's own outbound requests (JWKS URLs, webhooks) may reach.
    pub outbound: OutboundSettings,
    /// Request rates per client and per source address.
    pub rate_limits: RateLimitSettings,
    /// The patient's own rights: amendments and delegates.
    pub rights: RightsSettings,
    /// The patient page.
    pub web: WebSettings,
}

/// Deadlines and limits of the patient's rights (docs/PATIENT_RIGHTS.md).
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RightsSettings {
    /// Days a data source has to answer an amendment request (HIPAA: 60).
    pub amendment_due_days: u32,
    /// Days one extension adds (HIPAA: 30, once).
    pub amendment_extension_days: u32,
    /// The age at which a parent's or guardian's delegation ends.
    pub age_of_majority: u32,
    /// Seconds between sweeps for overdue amendments and delegates whose patient came of age.
    pub sweep_interval_secs: u64,
}

/// The patient page (`GET /` and below).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct WebSettings {
    /// How long a sign-in lasts, in seconds (60 to 86400); then the patient signs in again.
    pub session_lifetime_secs: u64,
}

/// Outbound requests: special-purpose addresses are refused unless allow-listed here.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutboundSettings {
    /// Networks (CIDR, e.g. `10.20.0.0/16` or `127.0.0.1/32`) that JWKS URLs and webhooks may
    /// reach although they are loopback, private or otherwise special-purpose.
    pub allowed_networks: Vec<String>,
}

/// One limit: a sustained rate and a burst.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests per minute, sustained; 0 turns this limit off.
    pub per_minute: u32,
    /// Requests allowed at once before the rate applies.
    pub burst: u32,
}

/// Rate limits on authentication, answered with 429 and `Retry-After`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSettings {
    /// `POST /oauth/token` per source address.
    pub token_per_address: RateLimit,
    /// `POST /oauth/token` per client id named in the assertion.
    pub token_per_client: RateLimit,
    /// Failed bearer tokens per source address.
    pub failed_auth_per_address: RateLimit,
    /// Sign-in attempts per source address (the patient page's sign-in).
    pub sign_in_per_address: RateLimit,
    /// Requests to SMART Health Link manifests and files per source address.
    pub share_link_per_address: RateLimit,
    /// Proxies (CIDR) whose `X-Forwarded-For` names the real source address.
    pub trusted_proxies: Vec<String>,
}

/// Where the institution's policies come from.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct PolicySettings {
    /// A folder with Cedar policies and label value sets; empty for the built-in copies.
    pub dir: PathBuf,
}

/// Development relaxes what production refuses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Profile {
    /// Generated certificate, development tokens and plain HTTP on loopback allowed.
    Development,
    /// Only configured certificates; no development shortcuts.
    Production,
}

/// Where and how the HTTP server listens.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct ServerSettings {
    /// Address to bind.
    pub host: IpAddr,
    /// Port to bind; 0 picks a free one.
    pub port: u16,
    /// HTTP worker threads; 0 means one per core.
    pub workers: usize,
    /// Whether each HTTP worker is pinned to a CPU of its own (`crate::cpus`).
    pub pin_workers: crate::cpus::PinWorkers,
    /// Grace period for in-flight requests on shutdown.
    pub shutdown_timeout_secs: u64,
    /// Serve plain HTTP (loopback only, never in production).
    pub plain_http: bool,
    /// Externally visible base URL; empty means derived from the bound address.
    pub public_base_url: String,
    /// Seconds a client has to send a request's headers (slow clients are cut off).
    pub client_request_timeout_secs: u64,
    /// Seconds a client has to send a request's whole body.
    pub client_body_timeout_secs: u64,
    /// Seconds a connection may take to close after its response.
    pub client_disconnect_timeout_secs: u64,
    /// Seconds an idle keep-alive connection stays open; 0 closes after each response.
    pub keep_alive_secs: u64,
    /// Most connections per worker thread.
    pub max_connections_per_worker: usize,
    /// Request body bytes held in memory at once across all requests; beyond it, new body
    /// bytes wait briefly, then the request is answered 503.
    pub max_inflight_body_bytes: usize,
    /// Certificate and key.
    pub tls: TlsSettings,
}

/// PEM files for TLS; both empty means a generated development certificate.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM certificate chain, leaf first.
    pub cert_file: PathBuf,
    /// PEM private key.
    pub key_file: PathBuf,
}

/// Storage connection settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseSettings {
    /// `sqlite://PATH` or `postgres://...`; may hold a password, so it is a secret.
    #[serde(serialize_with = "serialize_masked_url")]
    pub url: SecretString,
    /// Pooled connections.
    pub pool_size: u32,
    /// Seconds to wait for a pooled connection.
    pub connect_timeout_secs: u64,
    /// SQLite `busy_timeout` in milliseconds.
    pub sqlite_busy_timeout_ms: u64,
    /// Run pending migrations when serving starts.
    pub migrate_on_start: bool,
    /// Microseconds the audit writer may hold a batch open for entries that requests under
    /// way have announced (0: commit at once); see `audit::log`.
    pub audit_commit_wait_us: u64,
    /// On SQLite, run a request's short read-only trip on the request's own worker thread
    /// when a pooled connection is free, instead of handing it to a blocking thread; see
    /// `Store::run_read`.
    pub sqlite_inline_reads: bool,
}

/// Limits on request bodies and searches.
#[derive(Debug, Clone, Copy, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Deepest accepted JSON nesting.
    pub max_json_depth: usize,
    /// Most entries in one posted Bundle.
    pub max_bundle_entries: usize,
    /// Page size when `_count` is absent.
    pub default_page_size: usize,
    /// Largest honoured `_count`.
    pub max_page_size: usize,
}

/// Tokens, keys and trusted issuers.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct AuthSettings {
    /// `iss` of gateway tokens; empty means the base URL.
    pub issuer: String,
    /// Keyring directory (relative paths are inside `data_dir`).
    pub key_dir: PathBuf,
    /// Access token lifetime in seconds (at most 300).
    pub access_token_lifetime_secs: u64,
    /// Latest `exp` of a client assertion, in seconds from now.
    pub assertion_max_lifetime_secs: u64,
    /// Tolerated clock skew in seconds.
    pub clock_skew_secs: u64,
    /// Largest accepted token in bytes.
    pub max_token_bytes: usize,
    /// JWKS URL fetch timeout in seconds.
    pub jwks_fetch_timeout_secs: u64,
    /// Largest JWKS document in bytes.
    pub jwks_max_bytes: usize,
    /// How long a fetched JWKS is reused, in seconds.
    pub jwks_cache_secs: u64,
    /// Extra CA certificate (PEM) for JWKS URLs; empty for none.
    pub jwks_ca_file: PathBuf,
    /// Longest break-glass justification.
    pub max_justification_chars: usize,
    /// Lifetime of a break-glass token, in seconds (the time box).
    pub break_glass_lifetime_secs: u64,
    /// Trusted OpenID Connect issuers for people.
    pub oidc_issuers: Vec<OidcIssuer>,
}

/// A trusted OpenID Connect issuer of tokens for patients, delegates and operators.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OidcIssuer {
    /// The `iss` claim.
    pub issuer: String,
    /// The `aud` claim required.
    pub audience: String,
    /// A JWKS file.
    #[serde(default)]
    pub jwks_file: PathBuf,
    /// Or a JWKS URL.
    #[serde(default)]
    pub jwks_url: String,
    /// The claim carrying `Patient/{id}` or `RelatedPerson/{id}`.
    #[serde(default = "default_fhir_user_claim")]
    pub fhir_user_claim: String,
    /// The claim carrying roles (an array of strings).
    #[serde(default = "default_roles_claim")]
    pub roles_claim: String,
    /// The name the patient page's sign-in button shows; empty means the issuer's host.
    #[serde(default)]
    pub name: String,
    /// The authorization endpoint for the patient page's sign-in; empty means the one the
    /// issuer's discovery document (`{issuer}/.well-known/openid-configuration`) names.
    #[serde(default)]
    pub authorization_endpoint: String,
    /// The token endpoint, likewise.
    #[serde(default)]
    pub token_endpoint: String,
    /// A file holding the page's client secret at this issuer (`client_secret_post`); empty
    /// for a public client that proves itself with PKCE alone. The client id is `audience`.
    #[serde(default)]
    pub client_secret_file: PathBuf,
}

fn default_fhir_user_claim() -> String {
    "fhirUser".into()
}

fn default_roles_claim() -> String {
    "roles".into()
}

/// Purposes of use per recipient role (v3 ActReason codes; descendants included).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct RolePurposes {
    /// Clinicians.
    pub clinician: Vec<String>,
    /// Researchers.
    pub researcher: Vec<String>,
    /// Disability assessors.
    pub disability_assessor: Vec<String>,
    /// Insurers.
    pub insurer: Vec<String>,
    /// Data sources (send records in; read nothing).
    pub data_source: Vec<String>,
}

/// Tracing output settings.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LogSettings {
    /// Human or machine format.
    pub format: LogFormat,
    /// `RUST_LOG`-style filter.
    pub filter: String,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line.
    Json,
}

/// Which storage engine a database URL selects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseTarget {
    /// An SQLite file at this path.
    Sqlite(PathBuf),
    /// A PostgreSQL connection string.
    Postgres(String),
}

/// A configuration that cannot be used, with the key at fault.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The sources could not be read or did not fit the types.
    #[error("configuration: {0}")]
    Load(#[from] config::ConfigError),
    /// A value is of the right type but not acceptable.
    #[error("configuration key `{key}`: {reason}")]
    Invalid {
        /// Dotted key, e.g. `server.plain_http`.
        key: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

impl Settings {
    /// Loads defaults, then `file` if given, then the environment, and validates the result.
    pub fn load(file: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_from(file, std::env::vars())
    }

    /// As [`Settings::load`], with the environment given explicitly (for tests).
    pub fn load_from(
        file: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Settings, ConfigError> {
        let mut builder = config::Config::builder().add_source(config::File::from_str(
            DEFAULT_TOML,
            config::FileFormat::Toml,
        ));
        if let Some(path) = file {
            builder = builder.add_source(
                config::File::from(path.to_path_buf()).format(config::FileFormat::Toml),
            );
        }
        let env_map: config::Map<String, String> = env
            .into_iter()
            .filter(|(k, _)| k.starts_with(&format!("{ENV_PREFIX}__")))
            .collect();
        builder = builder.add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .list_separator(",")
                .with_list_parse_key("outbound.allowed_networks")
                .with_list_parse_key("rate_limits.trusted_proxies")
                .source(Some(env_map)),
        );
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks what the types cannot: combinations and ranges.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, reason: &str| {
            Err(ConfigError::Invalid {
                key,
                reason: reason.to_string(),
            })
        };
        let r = &self.rights;
        let rights = [
            ("rights.amendment_due_days", r.amendment_due_days, 1, 3650),
            (
                "rights.amendment_extension_days",
                r.amendment_extension_days,
                0,
                3650,
            ),
            ("rights.age_of_majority", r.age_of_majority, 1, 150),
        ];
        for (key, value, low, high) in rights {
            if !(low..=high).contains(&value) {
                return invalid(key, &format!("must be between {low} and {high}"));
            }
        }
        if !(1..=86_400).contains(&r.sweep_interval_secs) {
            return invalid("rights.sweep_interval_secs", "must be between 1 and 86400");
        }
        if self.server.plain_http && !self.server.host.is_loopback() {
            return invalid(
                "server.plain_http",
                "plain HTTP is only allowed on a loopback host (127.0.0.1 or ::1)",
            );
        }
        if self.server.plain_http && self.profile == Profile::Production {
            return invalid(
                "server.plain_http",
                "plain HTTP is refused by the production profile",
            );
        }
        let has_cert = !self.server.tls.cert_file.as_os_str().is_empty();
        let has_key = !self.server.tls.key_file.as_os_str().is_empty();
        if has_cert != has_key {
            return invalid(
                if has_cert {
                    "server.tls.key_file"
                } else {
                    "server.tls.cert_file"
                },
                "set both server.tls.cert_file and server.tls.key_file, or neither",
            );
        }
        if self.profile == Profile::Production && !has_cert && !self.server.plain_http {
            return invalid(
                "server.tls.cert_file",
                "the production profile needs a configured certificate; the generated \
                 development certificate is refused",
            );
        }
        if self.database.pool_size == 0 {
            return invalid("database.pool_size", "must be at least 1");
        }
        self.database_target()?;
        if !(1024..=1 << 30).contains(&self.limits.max_body_bytes) {
            return invalid(
                "limits.max_body_bytes",
                "must be between 1024 and 1073741824",
            );
        }
        if !(4..=512).contains(&self.limits.max_json_depth) {
            return invalid("limits.max_json_depth", "must be between 4 and 512");
        }
        if self.limits.max_bundle_entries == 0 {
            return invalid("limits.max_bundle_entries", "must be at least 1");
        }
        if self.limits.max_page_size == 0
            || self.limits.default_page_size == 0
            || self.limits.default_page_size > self.limits.max_page_size
        {
            return invalid(
                "limits.default_page_size",
                "must be at least 1 and at most limits.max_page_size",
            );
        }
        if !(1..=300).contains(&self.auth.access_token_lifetime_secs) {
            return invalid(
                "auth.access_token_lifetime_secs",
                "must be between 1 and 300 seconds",
            );
        }
        if !(1..=300).contains(&self.auth.assertion_max_lifetime_secs) {
            return invalid(
                "auth.assertion_max_lifetime_secs",
                "must be between 1 and 300 seconds",
            );
        }
        if self.auth.break_glass_lifetime_secs == 0
            || self.auth.break_glass_lifetime_secs > self.auth.access_token_lifetime_secs
        {
            return invalid(
                "auth.break_glass_lifetime_secs",
                "must be between 1 and auth.access_token_lifetime_secs",
            );
        }
        if self.auth.clock_skew_secs > 300 {
            return invalid("auth.clock_skew_secs", "must be at most 300 seconds");
        }
        if !(1024..=65536).contains(&self.auth.max_token_bytes) {
            return invalid("auth.max_token_bytes", "must be between 1024 and 65536");
        }
        if !self.auth.issuer.is_empty() && !self.auth.issuer.starts_with("https://") {
            return invalid("auth.issuer", "must be an https:// URL or empty");
        }
        for issuer in &self.auth.oidc_issuers {
            if issuer.issuer.is_empty() || issuer.audience.is_empty() {
                return invalid(
                    "auth.oidc_issuers",
                    "each issuer needs `issuer` and `audience`",
                );
            }
            if issuer.jwks_file.as_os_str().is_empty() == issuer.jwks_url.is_empty() {
                return invalid(
                    "auth.oidc_issuers",
                    "each issuer needs exactly one of `jwks_file` and `jwks_url`",
                );
            }
        }
        for (key, endpoint) in self.auth.oidc_issuers.iter().flat_map(|i| {
            [
                ("authorization_endpoint", &i.authorization_endpoint),
                ("token_endpoint", &i.token_endpoint),
            ]
        }) {
            if !endpoint.is_empty() && !endpoint.starts_with("https://") {
                return invalid(
                    "auth.oidc_issuers",
                    &format!("`{key}` must be an https:// URL or empty"),
                );
            }
        }
        if !(60..=86_400).contains(&self.web.session_lifetime_secs) {
            return invalid(
                "web.session_lifetime_secs",
                "must be between 60 and 86400 seconds",
            );
        }
        let base = &self.server.public_base_url;
        if !base.is_empty() && !base.starts_with("https://") && !base.starts_with("http://") {
            return invalid(
                "server.public_base_url",
                "must start with https:// or http://",
            );
        }
        // A SMART Health Link's manifest URL (`{base}/api/v1/shl/` and a 43-character id)
        // may be at most 128 characters by the specification.
        if base.trim_end_matches('/').len() > MAX_PUBLIC_BASE_URL_CHARS {
            return invalid(
                "server.public_base_url",
                "must be at most 73 characters (SMART Health Link URLs are at most 128)",
            );
        }
        if self.server.max_inflight_body_bytes < self.limits.max_body_bytes {
            return invalid(
                "server.max_inflight_body_bytes",
                "must be at least limits.max_body_bytes",
            );
        }
        if self.server.client_request_timeout_secs == 0 || self.server.client_body_timeout_secs == 0
        {
            return invalid(
                "server.client_request_timeout_secs",
                "client timeouts must be at least 1 second",
            );
        }
        if self.server.max_connections_per_worker == 0 {
            return invalid("server.max_connections_per_worker", "must be at least 1");
        }
        if let Err(reason) = parse_networks(&self.outbound.allowed_networks) {
            return invalid("outbound.allowed_networks", &reason);
        }
        if let Err(reason) = parse_networks(&self.rate_limits.trusted_proxies) {
            return invalid("rate_limits.trusted_proxies", &reason);
        }
        if let Err(e) = tracing_subscriber::EnvFilter::try_new(&self.log.filter) {
            return Err(ConfigError::Invalid {
                key: "log.filter",
                reason: e.to_string(),
            });
        }
        Ok(())
    }

    /// The storage engine and location the database URL selects.
    pub fn database_target(&self) -> Result<DatabaseTarget, ConfigError> {
        let url = self.database.url.expose_secret();
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "database.url",
                    reason: "sqlite:// needs a file path".into(),
                });
            }
            Ok(DatabaseTarget::Sqlite(PathBuf::from(path)))
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(DatabaseTarget::Postgres(url.to_string()))
        } else {
            Err(ConfigError::Invalid {
                key: "database.url",
                reason: "must start with sqlite:// or postgres://".into(),
            })
        }
    }

    /// The externally visible base URL for a server bound to `port`: `public_base_url` when
    /// set, else derived from the bound address (`localhost` for a loopback host, matching the
    /// development certificate).
    pub fn base_url(&self, port: u16) -> String {
        if !self.server.public_base_url.is_empty() {
            return self
                .server
                .public_base_url
                .trim_end_matches('/')
                .to_string();
        }
        let scheme = if self.server.plain_http {
            "http"
        } else {
            "https"
        };
        let host = match self.server.host {
            h if h.is_loopback() => "localhost".to_string(),
            IpAddr::V6(v6) => format!("[{v6}]"),
            v4 => v4.to_string(),
        };
        format!("{scheme}://{host}:{port}")
    }

    /// A path from the settings, resolved inside `data_dir` when relative.
    pub fn data_path(&self, path: &Path) -> PathBuf {
        if path.is_absolute() {
            path.to_path_buf()
        } else {
            self.data_dir.join(path)
        }
    }

    /// The effective configuration as TOML, secrets masked.
    pub fn to_masked_toml(&self) -> String {
        // Serialising through serde_json first keeps the field order and applies the mask.
        match serde_json::to_value(self) {
            Ok(value) => toml_from_json(&value),
            Err(e) => format!("# could not render configuration: {e}\n"),
        }
    }
}

/// Parses CIDR networks (`10.0.0.0/8`, `::1/128`; a bare address means that one address).
pub fn parse_networks(items: &[String]) -> Result<Vec<ipnet::IpNet>, String> {
    items
        .iter()
        .map(|item| {
            let item = item.trim();
            item.parse::<ipnet::IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(ipnet::IpNet::from))
                .map(|net| net.trunc())
                .map_err(|_| format!("`{item}` is not a CIDR network such as 10.0.0.0/8"))
        })
        .collect()
}

/// Replaces the password of a URL with asterisks; the rest stays readable.
pub fn mask_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (authority, tail) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, ""),
    };
    let Some((userinfo, host)) = authority.rsplit_once('@') else {
        return url.to_string();
    };
    let user = userinfo.split(':').next().unwrap_or_default();
    if userinfo.contains(':') {
        format!("{scheme}://{user}:********@{host}{tail}")
    } else {
        url.to_string()
    }
}

fn serialize_masked_url<S: Serializer>(url: &SecretString, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&mask_url(url.expose_secret()))
}

/// Renders a two-level JSON object (scalars and tables of scalars) as TOML.
fn toml_from_json(value: &serde_json::Value) -> String {
    fn scalar(v: &serde_json::Value) -> String {
        match v {
            serde_json::Value::String(s) => format!("{s:?}"),
            other => other.to_string(),
        }
    }
    fn table(out: &mut String, prefix: &str, map: &serde_json::Map<String, serde_json::Value>) {
        for (k, v) in map {
            if !v.is_object() {
                out.push_str(&format!("{k} = {}\n", scalar(v)));
            }
        }
        for (k, v) in map {
            if let serde_json::Value::Object(inner) = v {
                let name = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                out.push_str(&format!("\n[{name}]\n"));
                table(out, &name, inner);
            }
        }
    }
    let mut out = String::new();
    if let serde_json::Value::Object(map) = value {
        table(&mut out, "", map);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn defaults_load_and_validate() {
        let s = Settings::load_from(None, env(&[])).expect("defaults are valid");
        assert_eq!(s.server.port, 8443);
        assert_eq!(s.profile, Profile::Development);
        assert_eq!(
            s.database_target().unwrap(),
            DatabaseTarget::Sqlite("data/consentgate.db".into())
        );
    }

    #[test]
    fn a_public_base_url_leaves_room_for_share_link_urls() {
        let with = |base: &str| {
            Settings::load_from(None, env(&[("CONSENTGATE__SERVER__PUBLIC_BASE_URL", base)]))
        };
        let longest = format!("https://{}", "a".repeat(MAX_PUBLIC_BASE_URL_CHARS - 8));
        assert!(with(&longest).is_ok());
        assert!(
            with(&format!("{longest}/")).is_ok(),
            "a trailing slash is dropped"
        );
        let err = with(&format!("{longest}a")).unwrap_err().to_string();
        assert!(err.contains("server.public_base_url"), "{err}");
        // The manifest URL of the longest allowed base fits the specification's 128.
        assert_eq!(
            format!("{longest}/api/v1/shl/{}", "x".repeat(43)).len(),
            128
        );
    }

    #[test]
    fn environment_overrides_nested_keys() {
        let s = Settings::load_from(
            None,
            env(&[
                ("CONSENTGATE__SERVER__PORT", "9443"),
                ("CONSENTGATE__LIMITS__MAX_JSON_DEPTH", "32"),
                ("OTHER__SERVER__PORT", "1"),
            ]),
        )
        .unwrap();
        assert_eq!(s.server.port, 9443);
        assert_eq!(s.limits.max_json_depth, 32);
    }

    #[test]
    fn network_lists_come_from_the_environment() {
        let s = Settings::load_from(
            None,
            env(&[(
                "CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS",
                "127.0.0.1/32,::1,10.1.2.3/16",
            )]),
        )
        .unwrap();
        let nets = parse_networks(&s.outbound.allowed_networks).unwrap();
        let shown: Vec<String> = nets.iter().map(ToString::to_string).collect();
        assert_eq!(shown, ["127.0.0.1/32", "::1/128", "10.1.0.0/16"]);
        let none = Settings::load_from(None, env(&[])).unwrap();
        assert!(none.outbound.allowed_networks.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (
                &[
                    ("CONSENTGATE__SERVER__PLAIN_HTTP", "true"),
                    ("CONSENTGATE__SERVER__HOST", "0.0.0.0"),
                ],
                "server.plain_http",
            ),
            (
                &[("CONSENTGATE__DATABASE__URL", "mysql://x")],
                "database.url",
            ),
            (
                &[("CONSENTGATE__SERVER__TLS__CERT_FILE", "/x.pem")],
                "server.tls.key_file",
            ),
            (
                &[("CONSENTGATE__PROFILE", "production")],
                "server.tls.cert_file",
            ),
            (
                &[("CONSENTGATE__LIMITS__MAX_BODY_BYTES", "10")],
                "limits.max_body_bytes",
            ),
            (&[("CONSENTGATE__SERVER__PORT", "notaport")], "port"),
            (&[("CONSENTGATE__SERVER__NO_SUCH_KEY", "1")], "no_such_key"),
            (
                &[("CONSENTGATE__OUTBOUND__ALLOWED_NETWORKS", "10.0.0.0/33")],
                "outbound.allowed_networks",
            ),
            (
                &[("CONSENTGATE__SERVER__MAX_INFLIGHT_BODY_BYTES", "1024")],
                "server.max_inflight_body_bytes",
            ),
            (
                &[("CONSENTGATE__DATABASE__AUDIT_NOTICE_DELAY_MS", "25")],
                "audit_notice_delay_ms",
            ),
        ];
        for (vars, key) in cases {
            let err = Settings::load_from(None, env(vars))
                .unwrap_err()
                .to_string();
            assert!(err.contains(key), "{vars:?}: `{err}` should name {key}");
        }
    }

    #[test]
    fn passwords_are_masked() {
        assert_eq!(
            mask_url("postgres://cg:s3cret@db:5432/cg"),
            "postgres://cg:********@db:5432/cg"
        );
        assert_eq!(mask_url("sqlite://data/x.db"), "sqlite://data/x.db");
        let s = Settings::load_from(
            None,
            env(&[("CONSENTGATE__DATABASE__URL", "postgres://u:hunter2@h/d")]),
        )
        .unwrap();
        let shown = s.to_masked_toml();
        assert!(!shown.contains("hunter2"), "{shown}");
        assert!(shown.contains("[server.tls]"), "{shown}");
    }

    #[test]
    fn shipped_files_parse() {
        let production = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/production.toml");
        // Production needs real certificate files only at serve time; the file must load.
        let s = Settings::load_from(Some(&production), env(&[])).unwrap();
        assert_eq!(s.profile, Profile::Production);
    }
}
