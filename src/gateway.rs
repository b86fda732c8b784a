//! The gateway's services: what every domain workflow needs, built once at start-up.
//!
//! [`Gateway`] is the composition root below HTTP: the store, the durable audit log and its
//! checkpoint signer, keys and trusted issuers, the institution's policies and value sets,
//! the de-identification secrets, the purposes of use and the settings. Handlers reach it
//! through `api::AppState`, background workers (exports, notifications) hold an `Arc` of it,
//! and domain functions take `&Gateway`, so none of them needs to know HTTP.

use std::sync::Arc;

use crate::audit::AuditEntry;
use crate::audit::log::{AuditError, AuditLog, CheckpointSigner};
use crate::auth::Authority;
use crate::auth::purposes::PurposeCatalog;
use crate::config::Settings;
use crate::institution::Institution;
use crate::release::{ContextCache, Shaping};
use crate::store::Store;

/// Everything a domain workflow needs.
pub struct Gateway {
    /// The database.
    pub store: Store,
    /// The effective configuration.
    pub settings: Arc<Settings>,
    /// Keys, tokens and trusted issuers.
    pub auth: Authority,
    /// The durable audit log (group commit).
    pub audit: AuditLog,
    /// Signs audit checkpoints.
    pub checkpoints: CheckpointSigner,
    /// De-identification secrets and profile.
    pub shaping: Shaping,
    /// Cedar policies and sensitivity value sets.
    pub institution: Institution,
    /// The purposes of use and their hierarchy.
    pub purposes: &'static PurposeCatalog,
    /// The externally visible base URL, without a trailing slash.
    pub base_url: String,
    /// Patients' parsed consents and records, used only while their stored versions are
    /// current (`release::context`).
    pub contexts: Arc<ContextCache>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("base_url", &self.base_url)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// The base of FHIR URLs, `{base_url}/fhir`.
    pub fn fhir_base(&self) -> String {
        format!("{}/fhir", self.base_url)
    }

    /// Appends `entry` to the audit log and waits until it is durable. A failure means the
    /// caller must not send patient data.
    pub async fn record(&self, entry: AuditEntry) -> Result<u64, AuditError> {
        self.audit.record(entry).await
    }
}
