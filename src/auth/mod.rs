//! Who is asking: recipient clients (SMART Backend Services), people (patients, operators),
//! and the gateway's own keys and tokens.
//!
//! - [`keys`]: the gateway's Ed25519 keyring (generated with ring, 0600, rotation).
//! - [`jwt_ring`]: the ring-backed crypto provider for `jsonwebtoken`.
//! - [`tokens`]: issuing and verifying the gateway's access and development tokens.
//! - [`assertion`]: client assertions (`private_key_jwt`) under RFC 8725 and SMART.
//! - [`clients`]: client registrations, roles and their keys.
//! - [`scopes`]: SMART v2 system scopes granted per registration.
//! - [`purposes`]: purposes of use and the v3 ActReason hierarchy.
//! - [`people`]: tokens of people from trusted OpenID Connect issuers.
//! - [`jwks_fetch`]: fetching JWKS URLs with timeouts, a size limit and a cache.
//! - [`jws`]: detached JWS signatures over exact bytes (disclosure packages).
//!
//! [`Authority`] ties them together for the HTTP layer. Consent is never baked into a token:
//! tokens say who asks and why; every request is decided afresh.

pub mod assertion;
pub mod bearer;
pub mod clients;
pub mod jwks_fetch;
pub mod jws;
pub mod jwt_ring;
pub mod keys;
pub mod people;
pub mod purposes;
pub mod registry;
pub mod scopes;
pub mod token_endpoint;
pub mod tokens;

use std::collections::HashMap;
use std::sync::Mutex;

use crate::audit::{AuditAction, AuditEntry, AuditOutcome};
use crate::config::{Profile, Settings};
use jwks_fetch::JwksFetcher;
use keys::Keyring;
use people::PersonIssuers;

/// A verified caller, as every protected handler sees it.
#[derive(Debug, Clone, PartialEq)]
pub enum Principal {
    /// A recipient client with a gateway access token.
    Client(Box<tokens::AccessClaims>),
    /// A patient acting for themself.
    Patient {
        /// The Patient resource id.
        patient_id: String,
        /// The account (`sub`) for the audit trail.
        subject: String,
    },
    /// An operator of the gateway.
    Operator {
        /// The account (`sub`) for the audit trail.
        subject: String,
    },
    /// A delegate (a `RelatedPerson`) acting for a patient within a delegation's grant.
    Delegate(Box<crate::delegation::Delegate>),
}

impl Principal {
    /// The one patient this principal may act for: a patient's own id, or the patient a
    /// delegate acts for; `None` for an operator (any patient) and for a client (which acts
    /// for no patient). What a delegate may do for that patient is [`Principal::may`].
    pub fn own_patient(&self) -> Option<&str> {
        match self {
            Principal::Patient { patient_id, .. } => Some(patient_id),
            Principal::Delegate(d) => Some(&d.patient_id),
            Principal::Client(_) | Principal::Operator { .. } => None,
        }
    }

    /// Whether this principal may do `action` for the patient it acts for: a delegate only
    /// within its delegation (403 `outside_delegation` otherwise); everyone else is bounded
    /// by the rules of the workflow itself.
    pub fn may(&self, action: crate::delegation::Action) -> Result<(), crate::error::DomainError> {
        match self {
            Principal::Delegate(d) if !d.may(action) => {
                Err(crate::delegation::model::outside_delegation(action))
            }
            _ => Ok(()),
        }
    }

    /// The person acting, as a FHIR reference: `Patient/{id}` or `RelatedPerson/{id}`;
    /// `None` for clients and operators.
    pub fn person_reference(&self) -> Option<String> {
        match self {
            Principal::Patient { patient_id, .. } => Some(format!("Patient/{patient_id}")),
            Principal::Delegate(d) => Some(d.reference()),
            Principal::Client(_) | Principal::Operator { .. } => None,
        }
    }

    /// A new audit entry for what this principal did: who (client id, organisation, person),
    /// under which purpose of use, and the break-glass justification of an emergency token.
    pub fn audit_entry(
        &self,
        action: AuditAction,
        outcome: AuditOutcome,
        request_id: String,
    ) -> AuditEntry {
        let (client_id, organisation, user, purpose, break_glass) = match self {
            Principal::Client(c) => (
                c.client_id.clone(),
                crate::audit::organisation_token(&c.organization),
                None,
                c.purpose_of_use.clone(),
                c.justification.clone(),
            ),
            Principal::Patient { patient_id, .. } => (
                crate::audit::PATIENT_CLIENT.to_string(),
                "consentgate".to_string(),
                Some(format!("Patient/{patient_id}")),
                "PATRQT".to_string(),
                None,
            ),
            Principal::Operator { .. } => (
                crate::audit::OPERATOR_CLIENT.to_string(),
                "consentgate".to_string(),
                None,
                "HSYSADMIN".to_string(),
                None,
            ),
            Principal::Delegate(d) => (
                crate::audit::DELEGATE_CLIENT.to_string(),
                "consentgate".to_string(),
                Some(d.reference()),
                "PATRQT".to_string(),
                None,
            ),
        };
        let mut entry = AuditEntry {
            client_id,
            organisation,
            user,
            purpose_of_use: purpose,
            break_glass,
            ..AuditEntry::new(action, outcome, request_id)
        };
        // Whether the purpose was the client's registered default, not one it named.
        if let Principal::Client(c) = self
            && c.purpose_defaulted
        {
            entry
                .detail
                .insert("purpose_defaulted".into(), "true".into());
        }
        // A delegate's entry names both: the person who acted (`user`) and the patient they
        // acted for, with the delegation that allowed it.
        if let Principal::Delegate(d) = self {
            entry.patient_id = Some(d.patient_id.clone()).filter(|p| !p.is_empty());
            entry
                .detail
                .insert("on_behalf_of".into(), format!("Patient/{}", d.patient_id));
            entry
                .detail
                .insert("delegation".into(), d.delegation_id.clone());
        }
        entry
    }
}

/// Most verified tokens kept in the cache before it is cleared.
const TOKEN_CACHE_LIMIT: usize = 10_000;

/// The identity machinery one application uses.
pub struct Authority {
    /// The gateway's keys.
    pub keyring: Keyring,
    /// JWKS fetching for clients registered by URL.
    pub fetcher: JwksFetcher,
    /// Trusted issuers of people's tokens.
    pub people: PersonIssuers,
    /// `iss` of gateway tokens.
    pub issuer: String,
    /// The FHIR base, `aud` of access tokens.
    pub fhir_audience: String,
    /// The token endpoint URL, `aud` of client assertions.
    pub token_url: String,
    /// Whether the gateway's own development tokens for people are honoured.
    pub dev_people_tokens: bool,
    /// Verified tokens by SHA-256, until they expire: a signature check costs tens of
    /// microseconds; a hash lookup costs less than one.
    cache: Mutex<HashMap<[u8; 32], (Principal, i64)>>,
}

impl std::fmt::Debug for Authority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authority")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl Authority {
    /// Opens the keyring and the issuers for an application whose base URL is `base_url`.
    pub fn new(settings: &Settings, base_url: &str) -> anyhow::Result<Authority> {
        jwt_ring::install();
        let grace =
            settings.auth.access_token_lifetime_secs as i64 + settings.auth.clock_skew_secs as i64;
        let keyring = Keyring::open(&settings.data_path(&settings.auth.key_dir), grace)?;
        let issuer = issuer_for(settings, base_url);
        Ok(Authority {
            keyring,
            fetcher: JwksFetcher::new(
                &settings.auth,
                crate::net::OutboundGuard::from_settings(&settings.outbound)?,
            )?,
            people: PersonIssuers::load(&settings.auth)?,
            fhir_audience: format!("{base_url}/fhir"),
            token_url: format!("{base_url}/oauth/token"),
            issuer,
            dev_people_tokens: settings.profile != Profile::Production,
            cache: Mutex::new(HashMap::new()),
        })
    }

    /// A cached principal for this token, if verified before and not yet expired.
    pub fn cached(&self, token: &str, now: i64) -> Option<Principal> {
        let key = token_hash(token);
        let cache = self.cache.lock().ok()?;
        cache
            .get(&key)
            .filter(|(_, exp)| *exp > now)
            .map(|(p, _)| p.clone())
    }

    /// Remembers a verified token until `exp`.
    pub fn remember(&self, token: &str, principal: &Principal, exp: i64) {
        if let Ok(mut cache) = self.cache.lock() {
            if cache.len() >= TOKEN_CACHE_LIMIT {
                cache.clear();
            }
            cache.insert(token_hash(token), (principal.clone(), exp));
        }
    }
}

/// The issuer the settings name, or the base URL.
pub fn issuer_for(settings: &Settings, base_url: &str) -> String {
    if settings.auth.issuer.is_empty() {
        base_url.to_string()
    } else {
        settings.auth.issuer.trim_end_matches('/').to_string()
    }
}

fn token_hash(token: &str) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(ring::digest::digest(&ring::digest::SHA256, token.as_bytes()).as_ref());
    out
}

/// Seconds since the epoch.
pub fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}
