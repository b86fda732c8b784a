//! Sharing: what a patient (or an operator acting for one) does with their consents, and the
//! questions anyone may ask of the decision engine before sharing.
//!
//! - [`consents`]: grant, revise, revoke, read and list consents, each audited; one
//!   ownership rule decides whose consent it is.
//! - [`preview`]: what a grant (or a disclosure package) would let the recipient see, from the
//!   decision engine over the patient's records with the proposed consent added.
//! - [`question`]: "what would the gateway decide for this client?", with the whole answer
//!   for the patient and operators and no more than a read would tell for a client.

pub mod consents;
pub mod preview;
pub mod question;
