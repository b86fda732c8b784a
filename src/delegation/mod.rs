//! Delegates: a carer or legal representative acting for a patient within a scoped grant.
//!
//! Start at [`model`] (what a delegate may do, the relationships, the [`Delegate`] a request
//! runs as), then [`manage`] (naming, listing and revoking delegations; an operator names one
//! only with a legal document), [`signin`] (a delegate's token, `fhirUser` =
//! `RelatedPerson/{id}`, becomes a delegate acting for one patient; the delegation in force is
//! read afresh on every request, so a revocation holds from the next one) and [`majority`]
//! (a parent's or guardian's delegation ends when the patient comes of age, and the patient
//! is told).
//!
//! A delegate is `auth::Principal::Delegate`: `Principal::own_patient` answers the patient
//! they act for, and `Principal::may` whether the delegation allows an action. The HTTP
//! layer lets a delegate reach only the routes its table maps to an allowed action
//! (`api/delegates.rs`, default deny), and each audit entry of a delegate's action names
//! both: the delegate as `user`, the patient as `patient_id` (`auth::Principal::audit_entry`).

pub mod majority;
pub mod manage;
pub mod model;
pub mod signin;

pub use manage::{DelegationView, NewDelegation, create, list, revoke};
pub use model::{Action, Delegate, Relationship};
