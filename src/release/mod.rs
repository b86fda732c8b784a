//! Release: what a recipient client gets, and what the patient's log says it got.
//!
//! Start at [`read`], [`search`] and [`everything`], one function per thing a recipient can
//! ask for; the HTTP handlers parse, call one of them and render. Each goes the same way:
//!
//! 1. **Who and about whom** ([`requester`], and [`ContextCache::load_at`] in the same
//!    database trip, with the resource for a read): the client's registration is read
//!    afresh for the request, and the patient's parsed consents are used only while the
//!    patient's context version, read for the request, is unchanged, so a removed client
//!    or a revoked consent stops access at the next request whatever tokens exist.
//! 2. **Decide each** ([`decide_each`]): a resource passes when the token's scopes reach it
//!    and the one decision engine ([`crate::decision::decide`]) permits it.
//! 3. **Shape** ([`shape`], [`shape_for_study`]): the obligations of each decision change
//!    what leaves (de-identification under the client's or the study's key, minimum
//!    necessary). A resource that shaping withholds does not leave; a de-identified output
//!    that still holds an identifier fails the release closed (`deidentification_failed`,
//!    nothing sent).
//! 4. **Record what left** ([`Released::audit_entry`]): shaping returns a [`Released`], the
//!    only way to make one, whose resources carry the `Type/id` they came from; the audit
//!    entry is built from it alone and made durable before anything is sent. The patient's
//!    access log therefore lists exactly what a response carried, by construction.
//!
//! [`direct`] holds the reads of people (an operator, or a patient reading their own
//! records): no consent decision applies, but they are recorded by the same rule. Bulk
//! export builds on steps 1 to 3 ([`decide_each`] with the export action,
//! [`shape_for_study`]).

mod context;
mod decide;
pub mod direct;
mod minimum;
mod recipient;
mod released;
mod shaping;

pub use context::{CONTEXT_CACHE_LIMIT, ContextCache, PatientContext, Recipient, requester};
pub use decide::{Interaction, Permitted, decide_each};
pub use minimum::minimum_necessary;
pub use recipient::{SearchPage, everything, read, search};
pub use released::{
    Payload, Released, ReleasedResource, Withheld, WithheldReason, shape, shape_for_study,
};
pub use shaping::Shaping;
