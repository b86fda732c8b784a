//! De-identification: profiles, the Safe Harbor de-identifier, the leak scan, and the
//! Microsoft FHIR anonymizer's `cryptoHash`, `dateShift` and `redact` methods.
//!
//! Pure: no I/O except [`Profile::load`] reading a profile file. What leaves for a researcher
//! is made like this (`today` judges ages; the key decides every pseudonym and date offset):
//!
//! ```text
//! let profile = Profile::safe_harbor();                       // or Profile::load(path)? (an
//!                                                             // allow-list or an MS config)
//! let key = StudyKey::for_study(master_secret, study_id)?;    // unlinkable across studies
//! let deid = Deidentifier::new(&profile, &key, today);        // Copy + Send + Sync
//! // Once per patient: its identifiers compiled, its date offset computed.
//! let sources = IdentifierSet::from_sources(&patient_resources);
//! let patient = deid.patient(patient_id, &sources);
//! for resource in &patient_resources {
//!     match patient.deidentify_checked(resource) {             // de-identify, then scan
//!         Ok(out) => write(out),
//!         Err(DeidError::ResourceTypeNotInProfile { .. }) => {} // default deny: left out
//!         Err(e) => match e.location() {                       // withhold just this one:
//!             Some(at) => withhold(at.resource_type, at.reference, at.path, e.code()),
//!             None => return Err(e),                           // configuration or key
//!         },
//!     }
//! }
//! ```
//!
//! # Profiles (`policies/deid/<name>.json`)
//!
//! A profile is a default-deny allow-list: an element leaves only when the profile lists it.
//!
//! | field | meaning |
//! | --- | --- |
//! | `profile`, `version`, `description` | name, version and purpose |
//! | `dateShiftMaxDays` | dates move by a per-patient offset in `[-n, -1] ∪ [1, n]` days |
//! | `maxAge` | ages above it (89) become "90 or older" |
//! | `restrictedZip3` | file (next to the profile) of ZIP3 prefixes that become `000`, with `version` and `source` |
//! | `common` | paths allowed in every listed resource type (`id`, `meta`, `contained`) |
//! | `resources` | resource type → allowed paths; a type not listed is refused |
//! | `datatypes` | datatype → allowed paths inside it (e.g. `CodeableConcept: ["coding"]`); a datatype not listed keeps nothing |
//! | `extensions` | extension URL → allowed nested-extension URLs; an extension not listed is dropped |
//!
//! Paths are relative to the resource or datatype and go through backbone elements only
//! (`component.code`); what sits inside a datatype is decided by that datatype's list, so
//! allow-lists compose. `name[x]` allows every type of a choice, `valueQuantity` one of them.
//! Listing `a.b` also lets its parent `a` through. Every path is checked against the R4
//! element table when the profile loads. `extension` elements are always examined and kept
//! only for listed URLs; a `modifierExtension` with an unlisted URL is an error, because
//! dropping it would change the meaning of what is left.
//!
//! # What the Safe Harbor de-identifier does
//!
//! The walk knows each value's type from the generated table of R4 element types
//! (`element_types.rs`, generated from the official StructureDefinitions), then:
//! - drops what the profile does not list: names, identifiers, telecom, narrative, notes,
//!   free text (`CodeableConcept.text`, `*String` choices), attachment data, unknown extensions;
//! - shifts every `date`, `dateTime` and `instant` of one patient by the same offset (see
//!   [`StudyKey::date_offset_days`]), so intervals survive exactly; a time of day and its zone
//!   are kept; a date with only a year (or year and month) is kept as the year alone;
//! - treats ages over `maxAge`: a date that shows one (earlier than `maxAge` full years before
//!   the reference date, shifted or not) is dropped, except `Patient.birthDate`, which is
//!   replaced by `_birthDate` extensions `data-absent-reason = masked` and [`AGE_EXTENSION_URL`]
//!   `valueAge >= 90 a`; an `Age` over the limit becomes `>= 90 a`;
//! - keeps ZIP3 of `Address.postalCode` (`000` for restricted prefixes) and drops postal codes
//!   that do not start with three digits; state and country stay;
//! - replaces the resource id with [`StudyKey::pseudonym`] and every `Reference.reference` with
//!   the pseudonym of its target (`Type/id`, absolute or versioned URLs become `Type/pseudonym`;
//!   `#id` and `urn:uuid:` get their own pseudonyms; conditional and other references are dropped).
//!
//! The output carries no `meta.security` label of its own: the caller records which profile
//! (name and version) shaped a disclosure in its audit entry.
//!
//! # Leak scan
//!
//! [`IdentifierSet`] gathers the identifying values of a patient's source records and
//! [`IdentifierSet::scan`] reports where any of them shows up in an output; the matching rules
//! are documented on [`leak`].
//!
//! # Errors
//!
//! [`DeidError`] carries a stable [`DeidError::code`]; messages name element paths, resource
//! types, pseudonymous references, URLs and files, never patient values. Callers match on
//! the variants; [`DeidError::location`] tells a failure of one resource (withhold it) from a
//! failure of the configuration or key (stop).

mod dates;
mod deidentifier;
mod element_types;
mod keys;
pub mod leak;
pub mod methods;
mod profile;
mod schema;

#[cfg(test)]
mod tests;

pub use deidentifier::{AGE_EXTENSION_URL, Deidentifier};
pub use keys::StudyKey;
pub use leak::{IdentifierSet, Leak, LeakKind, ScanContext};
pub use profile::Profile;

/// Why de-identification (or loading its configuration) failed.
///
/// Two families, told apart by [`DeidError::location`]: a failure of one resource (a leak, an
/// unlisted modifier extension, a method that cannot apply) names that resource by type and
/// pseudonymous reference and the element path, so the caller can withhold just it and report
/// where; everything else is about the configuration or the key, and stops the whole job.
/// Messages and fields never carry a patient value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeidError {
    /// The input has no `resourceType`.
    #[error("the input is not a FHIR resource")]
    NotAResource,
    /// The profile does not list the resource type (default deny: drop it, it is no failure).
    #[error("resource type {resource_type} is not allowed by the de-identification profile")]
    ResourceTypeNotInProfile {
        /// The refused type.
        resource_type: String,
    },
    /// A modifier extension the profile does not list: dropping it would change the meaning
    /// of what is left, so the resource is withheld.
    #[error(
        "{resource_type} {reference}: modifier extension {url} at {path} is not allowed by the de-identification profile"
    )]
    ModifierExtensionNotAllowed {
        /// The resource's type.
        resource_type: String,
        /// `Type/pseudonym` of the resource in the study.
        reference: String,
        /// Where, as a JSON path.
        path: String,
        /// The extension URL.
        url: String,
    },
    /// The output still carries a value of the source records.
    #[error(
        "{resource_type} {reference}: de-identified output still holds a {kind} of the source records at {path}"
    )]
    Leak {
        /// The resource's type.
        resource_type: String,
        /// `Type/pseudonym` of the resource in the study.
        reference: String,
        /// Where, as a JSON path.
        path: String,
        /// What kind of value.
        kind: LeakKind,
    },
    /// An anonymizer rule's method cannot apply to the element it selected (e.g. `perturb`
    /// on a string), and the configuration says to raise processing errors.
    #[error("{resource_type} {reference}: method {method} cannot apply at {path}")]
    MethodNotApplicable {
        /// The resource's type.
        resource_type: String,
        /// `Type/pseudonym` of the resource in the study.
        reference: String,
        /// Where, as a JSON path.
        path: String,
        /// The anonymizer method.
        method: &'static str,
    },
    /// A profile file could not be read.
    #[error("cannot read de-identification profile file {path}")]
    ProfileUnreadable {
        /// The file.
        path: String,
    },
    /// A profile (or its ZIP3 list) is malformed or names elements that do not exist.
    #[error("invalid de-identification profile: {reason}")]
    ProfileInvalid {
        /// What is wrong.
        reason: String,
    },
    /// A study key shorter than the minimum.
    #[error("a study key needs at least {min} bytes")]
    KeyTooShort {
        /// The minimum length.
        min: usize,
    },
    /// The operating system's random source failed (for `encrypt` IVs and `perturb` noise).
    #[error("no randomness available for encrypt or perturb")]
    Randomness,
    /// A Microsoft anonymizer configuration this module cannot interpret.
    #[error("{}", anonymizer_config_message(file, *rule, reason))]
    AnonymizerConfig {
        /// The configuration file (its name as given to the loader).
        file: String,
        /// The index in `fhirPathRules` of the rule at fault, when one is.
        rule: Option<usize>,
        /// What is not supported.
        reason: String,
    },
}

fn anonymizer_config_message(file: &str, rule: Option<usize>, reason: &str) -> String {
    match rule {
        Some(index) => {
            format!("unsupported anonymizer configuration {file}, fhirPathRules[{index}]: {reason}")
        }
        None => format!("unsupported anonymizer configuration {file}: {reason}"),
    }
}

/// The resource a per-resource failure is about, and where in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FailureLocation<'e> {
    /// The resource's type.
    pub resource_type: &'e str,
    /// `Type/pseudonym` of the resource in the study.
    pub reference: &'e str,
    /// The element's JSON path.
    pub path: &'e str,
}

impl DeidError {
    /// A stable snake_case code for clients and logs.
    pub fn code(&self) -> &'static str {
        match self {
            DeidError::NotAResource => "not_a_resource",
            DeidError::ResourceTypeNotInProfile { .. } => "resource_type_not_in_profile",
            DeidError::ModifierExtensionNotAllowed { .. } => "modifier_extension_not_allowed",
            DeidError::Leak { .. } => "identifier_leak",
            DeidError::MethodNotApplicable { .. } => "method_not_applicable",
            DeidError::ProfileUnreadable { .. } => "profile_unreadable",
            DeidError::ProfileInvalid { .. } => "profile_invalid",
            DeidError::KeyTooShort { .. } => "study_key_too_short",
            DeidError::AnonymizerConfig { .. } => "anonymizer_config_unsupported",
            DeidError::Randomness => "randomness_unavailable",
        }
    }

    /// For a failure of one resource, which resource and where; `None` for everything else.
    pub fn location(&self) -> Option<FailureLocation<'_>> {
        match self {
            DeidError::ModifierExtensionNotAllowed {
                resource_type,
                reference,
                path,
                ..
            }
            | DeidError::Leak {
                resource_type,
                reference,
                path,
                ..
            }
            | DeidError::MethodNotApplicable {
                resource_type,
                reference,
                path,
                ..
            } => Some(FailureLocation {
                resource_type,
                reference,
                path,
            }),
            _ => None,
        }
    }

    /// Prefixes the path of a per-resource failure with one more step (`.key` or `[i]`),
    /// as the error travels up the walk that found it.
    pub(crate) fn within(mut self, step: &str) -> Self {
        if let DeidError::ModifierExtensionNotAllowed { path, .. }
        | DeidError::MethodNotApplicable { path, .. } = &mut self
        {
            path.insert_str(0, step);
        }
        self
    }

    /// Names the resource of a per-resource failure found inside it: `name` gives its type
    /// and pseudonymous reference, asked only for a failure that carries them.
    pub(crate) fn in_resource(mut self, name: impl FnOnce() -> (String, String)) -> Self {
        if let DeidError::ModifierExtensionNotAllowed {
            resource_type,
            reference,
            path,
            ..
        }
        | DeidError::MethodNotApplicable {
            resource_type,
            reference,
            path,
            ..
        } = &mut self
        {
            let (resource, pseudonymous) = name();
            path.insert_str(0, &resource);
            *resource_type = resource;
            *reference = pseudonymous;
        }
        self
    }
}
