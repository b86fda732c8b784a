//! Disclosure packages: signed evidence a patient sends to one recipient (DESIGN.md flow 3,
//! evidence for a disability claim), described for people in `docs/DISCLOSURES.md`.
//!
//! Start here, in the order a package lives:
//!
//! - [`request`]: the new disclosure and what it must be before a record is read (whose
//!   records, a retrieval limit of 1 to 100, an expiry at most a year ahead, the
//!   authorization's URI, a recipient whose role and registration allow the purpose).
//! - [`selection`]: an explicit list of the patient's records or a filter over them (types,
//!   a clinical date, labels to leave out). Psychotherapy notes (`PSYTHPN`) never enter a
//!   package through a filter; only an explicit list can carry them.
//! - [`package`]: the Consent the package records (built by
//!   [`crate::consent::grant::Grant`]: actor `Device/{recipient}` IRCP, action `disclose`,
//!   the purpose, one data instance per record, the sensitive labels named in a nested
//!   permit, the authorization as `policy.uri`, the period until expiry), the decision of
//!   each record with [`crate::decision::decide`] (action `disclose`), and the frozen
//!   Bundle (`collection`).
//! - [`create()`]: the workflow: check, select, decide with the new consent, rebuild the
//!   consent for exactly what goes and decide again, freeze, sign the exact bytes with a
//!   detached JWS ([`crate::auth::jws`], the gateway's keyring), store the consent and the
//!   package in one transaction, audit.
//! - [`fetch()`]: the recipient's fetch, refused once the package has expired, has been
//!   fetched as often as allowed, or is no longer permitted by the patient's consents read
//!   afresh; each retrieval is counted atomically and audited before a byte leaves.
//!   [`signature`] serves the JWS alone.
//! - [`list()`]: the patient's packages with their [`Status`].
//!
//! SQL stays in `store/disclosures.rs`; HTTP (`api/disclosures.rs`) parses, calls one
//! function here and renders (the signature header, the content types).

mod create;
mod fetch;
mod list;
pub mod package;
pub mod request;
pub mod selection;

pub use create::{Created, create};
pub use fetch::{Served, fetch, signature};
pub use list::{RecipientName, Status, Summary, list};
pub use request::{NewDisclosure, patient_for};
pub use selection::{Filter, Selection};

use serde_json::Value;

use crate::error::DomainError;
use crate::gateway::Gateway;

/// Most resources one package may hold.
pub const MAX_SELECTED: usize = 500;

/// `Type/id` of a resource.
fn reference_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )
}

/// A detached JWS over `payload` with the gateway's current key.
fn sign(gateway: &Gateway, payload: &[u8]) -> Result<String, DomainError> {
    crate::auth::jws::sign_detached(&gateway.auth.keyring, payload)
        .ok_or_else(|| DomainError::internal("the keyring has no signing key"))
}
