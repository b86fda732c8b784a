//! Access requests: a recipient client asks a patient for access to some of their records;
//! the patient (or an operator acting for them) approves, and a Consent is created, or
//! declines.
//!
//! Start here, in the order a request lives:
//!
//! - [`check`]: what a new request must be (a purpose the client may use, resource types its
//!   registration covers, a data period, a reason). Pure; it never looks at stored patients,
//!   so a refusal says nothing about whether the patient exists.
//! - [`submit`]: the patient is looked up by identifier and the request stored, `pending`
//!   with its patient (who is told) or `unmatched` without one (none or several matched; only
//!   an operator ever sees it). [`submit::submit`] returns the new id and nothing else, so no
//!   caller can answer differently for a known and an unknown patient.
//! - [`read`]: the listing (a patient's own requests, or all of them for an operator) and one
//!   request; an operator's look is audited.
//! - [`decide`]: approval writes the Consent (built by [`crate::consent::grant::Grant`], the
//!   client's own `Device/{client_id}` as the actor) and the new status in one transaction;
//!   decline only the status. Either happens once; a second decision is a conflict.
//! - [`view`]: what each audience sees: the requesting client the status only (an unmatched
//!   request looks `submitted`), the patient the whole request, an operator also the
//!   identifier given.
//! - [`model`]: the request as the domain sees it (typed ids, a status enum) and who reviews.
//!
//! The reason is the recipient's free text: it is stored and shown to the patient, never
//! logged or written to the audit log. HTTP (`api/access_requests.rs`) only parses, calls one
//! function here and renders.

pub mod check;
pub mod decide;
pub mod model;
pub mod read;
pub mod submit;
pub mod view;

pub use check::NewRequest;
pub use decide::{approve, decline};
pub use model::{AccessRequest, DecidedBy, Reviewer};
pub use read::{ListQuery, Page, list, show};
pub use submit::submit;
pub use view::{Audience, view};

pub use crate::store::access_requests::RequestStatus;

use crate::error::DomainError;

/// The system of the Consent identifier that names the request it was created from.
pub const REQUEST_IDENTIFIER_SYSTEM: &str = "https://consentgate.dev/fhir/access-request";

/// The answer for a request that does not exist or that the caller may not see.
fn unknown_request() -> DomainError {
    DomainError::not_found("unknown_access_request", "no such access request")
}
