//! The patient's consents: the FHIR R4 Consent model and the evaluator of DESIGN.md
//! section 4, step 1. Pure: no I/O, no HTTP, no SQL.
//!
//! How to use it:
//! 1. Parse a submitted or stored resource with [`Consent::from_fhir`]. It checks what R4
//!    requires of a Consent (plus a patient, which the gateway requires) and returns
//!    [`ConsentDefects`], one [`ConsentDefect`] per problem with an element path and a
//!    stable code, so the API can answer one OperationOutcome issue each.
//! 2. Describe the request as a [`ConsentQuery`] ([`ActorFacts`], purpose, action,
//!    [`ResourceFacts`], now) and call [`evaluate()`] with the patient's consents. The
//!    [`ConsentResult`] says permit, deny or not applicable, which provisions decided, and
//!    which sensitive labels the permitting provisions named.
//!
//! The rules are written down in the [`mod@evaluate`] module doc (and in docs/CONSENT.md, with
//! what each of the twelve official R4 examples means to the gateway); [`purpose`] holds the
//! official v3 ActReason hierarchy they use for purposes of use. An untyped root provision
//! is `deny` whatever `policyRule` says (fail-safe); give the root an explicit `type`.
//!
//! Submodules: [`model`] (the kept Consent), [`parse`] (the R4 checks), [`defect`] (what can
//! be wrong), [`mod@evaluate`] (the decision), [`purpose`] (ActReason), [`dates`] (FHIR dates).

pub mod dates;
pub mod defect;
pub mod evaluate;
pub mod grant;
pub mod model;
pub mod parse;
pub mod purpose;

#[cfg(test)]
mod examples;
#[cfg(test)]
mod tests;

pub use defect::{ConsentDefect, ConsentDefects, DefectKind};
pub use evaluate::{
    ActorFacts, ConsentQuery, ConsentResult, DecidingProvision, Decision, ResourceFacts, evaluate,
};
pub use model::{
    ADVANCE_DIRECTIVE_SCOPE, CONSENT_SCOPE_SYSTEM, Coding, Consent, ConsentStatus, DataMeaning,
    Provision, ProvisionType, is_advance_directive_scope,
};
pub use purpose::PurposeHierarchy;
