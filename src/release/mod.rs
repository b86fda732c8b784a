//! Release: what a recipient client gets, and what the patient's log says it got.
//!
//! Every resource a recipient reads, searches or exports passes the one decision engine
//! ([`crate::decision::decide`]) with the patient's consents read afresh for the request,
//! then the obligations of its decision shape it (de-identification, minimum necessary),
//! and the audit entry lists exactly what left.

mod minimum;
mod shaping;

pub use minimum::minimum_necessary;
pub use shaping::Shaping;
