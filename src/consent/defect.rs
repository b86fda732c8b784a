//! What can be wrong with a submitted Consent: one [`ConsentDefect`] per problem, each with
//! an element path and a stable code, so the API can answer one OperationOutcome issue each.
//!
//! Messages name elements, invariants and codes only, never a value from the resource.

/// The kind of a defect, with a stable snake_case [`DefectKind::code`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DefectKind {
    /// The resource is not a JSON object, or `resourceType` is not `Consent`.
    #[error("the resource is not a Consent")]
    NotConsent,
    /// A value has the wrong JSON type (e.g. an object where an array belongs).
    #[error("the element has the wrong JSON type")]
    InvalidType,
    /// A value is empty or malformed (empty string, empty array, empty object).
    #[error("the element is empty or malformed")]
    InvalidValue,
    /// A required element is missing.
    #[error("a required element is missing")]
    Required,
    /// `id` is not a FHIR id (1-64 of `A-Z a-z 0-9 - .`).
    #[error("the id is not a valid FHIR id")]
    InvalidId,
    /// A code is not in the element's required value set.
    #[error("the code is not in the required value set")]
    InvalidCode,
    /// `patient` is missing: the gateway stores patient consents only.
    #[error("the consent names no patient; only patient consents are accepted")]
    PatientRequired,
    /// `patient.reference` is not `Patient/{id}`.
    #[error("the patient reference is not of the form Patient/{{id}}")]
    PatientReferenceInvalid,
    /// A date or dateTime is not valid R4 syntax (a time needs seconds and a zone).
    #[error("the value is not a valid FHIR dateTime")]
    InvalidDateTime,
    /// A dateTime is valid R4 syntax but ends outside the supported years (0001 to 9999).
    #[error("the dateTime is outside the supported range (years 0001 to 9999)")]
    DateOutOfRange,
    /// per-1: the period's start is after its end.
    #[error("per-1: the period starts after it ends")]
    PeriodReversed,
    /// ppc-1: neither `policy` nor `policyRule` is present.
    #[error("ppc-1: a consent needs policy or policyRule")]
    PolicyRequired,
    /// A `policy` entry has neither `authority` nor `uri`.
    #[error("a policy entry needs authority or uri")]
    PolicyEmpty,
    /// A Coding lacks `system` or `code`, so it could never match anything.
    #[error("a coding needs both system and code")]
    CodingIncomplete,
    /// A CodeableConcept used as a condition has no coding, so it could never match.
    #[error("the concept needs at least one coding")]
    CodingRequired,
    /// A Reference has no literal `reference`, so it could never match anything.
    #[error("the reference needs a literal reference")]
    ReferenceNotLiteral,
    /// A purpose claims v3 ActReason but the code is not in that code system.
    #[error("the purpose code is not in v3 ActReason")]
    UnknownPurpose,
    /// Provisions nest deeper than the gateway accepts.
    #[error("provisions nest deeper than 16 levels")]
    TooDeep,
    /// A `modifierExtension` is present; its meaning is unknown, so the consent cannot be
    /// enforced safely.
    #[error("modifierExtension is not supported")]
    UnsupportedModifierExtension,
    /// `implicitRules` is present; the rules it names are unknown to the gateway.
    #[error("implicitRules is not supported")]
    UnsupportedImplicitRules,
}

impl DefectKind {
    /// The stable code, for clients and for OperationOutcome `details`.
    pub fn code(self) -> &'static str {
        match self {
            DefectKind::NotConsent => "not_consent",
            DefectKind::InvalidType => "invalid_type",
            DefectKind::InvalidValue => "invalid_value",
            DefectKind::Required => "required",
            DefectKind::InvalidId => "invalid_id",
            DefectKind::InvalidCode => "invalid_code",
            DefectKind::PatientRequired => "patient_required",
            DefectKind::PatientReferenceInvalid => "patient_reference_invalid",
            DefectKind::InvalidDateTime => "invalid_date_time",
            DefectKind::DateOutOfRange => "date_out_of_range",
            DefectKind::PeriodReversed => "period_reversed",
            DefectKind::PolicyRequired => "policy_required",
            DefectKind::PolicyEmpty => "policy_empty",
            DefectKind::CodingIncomplete => "coding_incomplete",
            DefectKind::CodingRequired => "coding_required",
            DefectKind::ReferenceNotLiteral => "reference_not_literal",
            DefectKind::UnknownPurpose => "unknown_purpose",
            DefectKind::TooDeep => "too_deep",
            DefectKind::UnsupportedModifierExtension => "unsupported_modifier_extension",
            DefectKind::UnsupportedImplicitRules => "unsupported_implicit_rules",
        }
    }
}

/// One problem in a submitted Consent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{path}: {kind}")]
pub struct ConsentDefect {
    /// The element, relative to the resource, e.g. `provision.provision[1].period.start`;
    /// empty for the resource as a whole.
    pub path: String,
    /// What is wrong.
    pub kind: DefectKind,
}

impl ConsentDefect {
    /// The FHIRPath of the element, for OperationOutcome `issue.expression`
    /// (`Consent` or `Consent.{path}`).
    pub fn expression(&self) -> String {
        if self.path.is_empty() {
            "Consent".to_owned()
        } else {
            format!("Consent.{}", self.path)
        }
    }

    /// The stable code of [`ConsentDefect::kind`].
    pub fn code(&self) -> &'static str {
        self.kind.code()
    }
}

/// Every defect found in a submitted Consent (never empty).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the Consent has {} defect(s), the first at {}: {}", .defects.len(), first_path(.defects), first_kind(.defects))]
pub struct ConsentDefects {
    /// The defects, in document order.
    pub defects: Vec<ConsentDefect>,
}

fn first_path(defects: &[ConsentDefect]) -> &str {
    defects.first().map_or("", |d| d.path.as_str())
}

fn first_kind(defects: &[ConsentDefect]) -> &'static str {
    defects.first().map_or("", |d| d.kind.code())
}

impl ConsentDefects {
    /// Whether a defect of `kind` was found at `path`.
    pub fn has(&self, path: &str, kind: DefectKind) -> bool {
        self.defects
            .iter()
            .any(|d| d.path == path && d.kind == kind)
    }
}
