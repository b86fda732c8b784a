//! The FHIR R4 Consent as the gateway keeps it: only what deciding and explaining need,
//! checked once by [`Consent::from_fhir`] and precomputed for the evaluator.
//!
//! Values can only be built by parsing, so every `Consent` the evaluator sees has passed the
//! R4 checks of [`super::parse`], and every provision knows its effect (`permit` or `deny`).

use super::dates::MicrosRange;
use super::purpose::PurposeId;

/// The code system of v3 Confidentiality (U < L < M < N < R < V).
pub const CONFIDENTIALITY_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
/// The code system of v3 ActCode, which holds the sensitivity policy labels (`PSY`, `HIV`, ...).
pub const ACT_CODE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// The code system of consent actions (`collect`, `access`, `use`, `disclose`, `correct`).
pub const CONSENT_ACTION_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentaction";
/// The code system whose codes are FHIR resource type names, used in `provision.class`.
pub const RESOURCE_TYPES_SYSTEM: &str = "http://hl7.org/fhir/resource-types";

/// The labels that leave only when a consent names them (DESIGN.md section 4), as
/// `(system, code)`: the ActCode sensitivity policies and the two highest confidentiality levels.
pub const SENSITIVE_LABELS: &[(&str, &str)] = &[
    (ACT_CODE_SYSTEM, "ETH"),
    (ACT_CODE_SYSTEM, "PSY"),
    (ACT_CODE_SYSTEM, "PSYTHPN"),
    (ACT_CODE_SYSTEM, "HIV"),
    (ACT_CODE_SYSTEM, "SEX"),
    (ACT_CODE_SYSTEM, "GDIS"),
    (CONFIDENTIALITY_SYSTEM, "R"),
    (CONFIDENTIALITY_SYSTEM, "V"),
];

/// Deepest nesting of provisions accepted, the root counting as level 1.
pub const MAX_PROVISION_DEPTH: usize = 16;

/// A code from a code system; two codings are equal when system and code are.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Coding {
    /// The code system URL.
    pub system: String,
    /// The code within it.
    pub code: String,
}

impl Coding {
    /// A coding from a system and a code.
    pub fn new(system: impl Into<String>, code: impl Into<String>) -> Coding {
        Coding {
            system: system.into(),
            code: code.into(),
        }
    }

    /// Whether this coding is `system|code`, without allocating.
    pub fn is(&self, system: &str, code: &str) -> bool {
        self.system == system && self.code == code
    }

    /// Whether this is one of [`SENSITIVE_LABELS`].
    pub fn is_sensitive_label(&self) -> bool {
        SENSITIVE_LABELS.iter().any(|&(s, c)| self.is(s, c))
    }
}

/// `Consent.status` (the R4 value set `consent-state-codes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ConsentStatus {
    /// Being drafted; not to be acted upon.
    Draft,
    /// Proposed, not yet agreed.
    Proposed,
    /// In force: the only status under which a consent decides anything.
    Active,
    /// Rejected by a party.
    Rejected,
    /// Terminated or replaced, e.g. revoked by the patient.
    Inactive,
    /// Created in error; ignore.
    EnteredInError,
}

impl ConsentStatus {
    /// Reads an R4 status code.
    pub fn from_code(code: &str) -> Option<ConsentStatus> {
        Some(match code {
            "draft" => ConsentStatus::Draft,
            "proposed" => ConsentStatus::Proposed,
            "active" => ConsentStatus::Active,
            "rejected" => ConsentStatus::Rejected,
            "inactive" => ConsentStatus::Inactive,
            "entered-in-error" => ConsentStatus::EnteredInError,
            _ => return None,
        })
    }

    /// The R4 code.
    pub fn code(self) -> &'static str {
        match self {
            ConsentStatus::Draft => "draft",
            ConsentStatus::Proposed => "proposed",
            ConsentStatus::Active => "active",
            ConsentStatus::Rejected => "rejected",
            ConsentStatus::Inactive => "inactive",
            ConsentStatus::EnteredInError => "entered-in-error",
        }
    }
}

/// `Consent.provision.type`: what a provision does when its conditions hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProvisionType {
    /// Consent is refused for what the provision covers.
    Deny,
    /// Consent is given for what the provision covers.
    Permit,
}

impl ProvisionType {
    /// Reads an R4 provision type code.
    pub fn from_code(code: &str) -> Option<ProvisionType> {
        match code {
            "deny" => Some(ProvisionType::Deny),
            "permit" => Some(ProvisionType::Permit),
            _ => None,
        }
    }

    /// The opposite effect: what an untyped nested provision does.
    pub fn flipped(self) -> ProvisionType {
        match self {
            ProvisionType::Deny => ProvisionType::Permit,
            ProvisionType::Permit => ProvisionType::Deny,
        }
    }

    /// The direction a `policyRule` states (see [`POLICY_RULE_DIRECTIONS`]), for information
    /// only: an untyped root is `deny` whatever it says. `None` when no coding names one of
    /// those codes, or when the codings disagree.
    pub fn from_policy_rule(policy_rule: &[Coding]) -> Option<ProvisionType> {
        let mut found = None;
        for coding in policy_rule {
            let direction = POLICY_RULE_DIRECTIONS
                .iter()
                .find(|&&(code, _)| coding.is(ACT_CODE_SYSTEM, code))
                .map(|&(_, direction)| direction);
            match (found, direction) {
                (_, None) => {}
                (None, Some(d)) => found = Some(d),
                // Codings of one CodeableConcept are synonyms; a consent that says both
                // opt-in and opt-out states no direction.
                (Some(f), Some(d)) if f != d => return None,
                (Some(_), Some(_)) => {}
            }
        }
        found
    }
}

/// The v3 ActCode consent directive codes (`_ActConsentDirective`) that state a direction, as
/// `(code, direction)`; informational, the evaluator does not follow them. `OPTIN` "assent to the terms of an agreement" and `OPTINR` "opt-in
/// with restrictions" permit; `OPTOUT` "dissent to the terms of agreement" and `OPTOUTE`
/// "opt-out with exceptions" deny. The restrictions and exceptions are the nested provisions.
/// The directive's other codes (`IMPLIED`, `EMRGONLY`, `NOPP` ...) state none.
pub const POLICY_RULE_DIRECTIONS: &[(&str, ProvisionType)] = &[
    ("OPTIN", ProvisionType::Permit),
    ("OPTINR", ProvisionType::Permit),
    ("OPTOUT", ProvisionType::Deny),
    ("OPTOUTE", ProvisionType::Deny),
];

/// `Consent.provision.data.meaning`: how a data reference selects resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DataMeaning {
    /// The referenced resource itself.
    Instance,
    /// The referenced resource and resources tied to it (see the evaluator's doc).
    Related,
    /// The referenced resource and resources that refer to it.
    Dependents,
    /// Resources authored by the referenced actor.
    AuthoredBy,
}

impl DataMeaning {
    /// Reads an R4 data meaning code.
    pub fn from_code(code: &str) -> Option<DataMeaning> {
        match code {
            "instance" => Some(DataMeaning::Instance),
            "related" => Some(DataMeaning::Related),
            "dependents" => Some(DataMeaning::Dependents),
            "authoredby" => Some(DataMeaning::AuthoredBy),
            _ => None,
        }
    }
}

/// A FHIR Period, as written and as the range of instants it covers (open ends unbounded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Period {
    pub(super) start: Option<String>,
    pub(super) end: Option<String>,
    pub(super) range: MicrosRange,
}

impl Period {
    /// `start` as written.
    pub fn start(&self) -> Option<&str> {
        self.start.as_deref()
    }

    /// `end` as written.
    pub fn end(&self) -> Option<&str> {
        self.end.as_deref()
    }

    /// From the first instant of `start` to the last instant of `end`, inclusive.
    pub fn range(&self) -> MicrosRange {
        self.range
    }

    /// Whether the instant lies inside the period.
    pub fn contains(&self, micros: i64) -> bool {
        self.range.0 <= micros && micros <= self.range.1
    }

    /// Whether an inclusive range shares at least one instant with the period.
    pub fn overlaps(&self, other: MicrosRange) -> bool {
        other.0 <= self.range.1 && self.range.0 <= other.1
    }
}

/// `Consent.provision.actor`: who the provision is about, by role and reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub(super) roles: Vec<Coding>,
    pub(super) reference: String,
}

impl Actor {
    /// The codings of `role` (synonyms: any one matching is enough).
    pub fn roles(&self) -> &[Coding] {
        &self.roles
    }

    /// The literal reference, `/_history/{vid}` removed.
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// `Consent.provision.data`: a resource the provision is about, and how to read it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataReference {
    pub(super) meaning: DataMeaning,
    pub(super) reference: String,
}

impl DataReference {
    /// How the reference selects resources.
    pub fn meaning(&self) -> DataMeaning {
        self.meaning
    }

    /// The literal reference, `/_history/{vid}` removed.
    pub fn reference(&self) -> &str {
        &self.reference
    }
}

/// `Consent.policy`: a policy the consent is made under.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub(super) authority: Option<String>,
    pub(super) uri: Option<String>,
}

impl Policy {
    /// The enforcing authority.
    pub fn authority(&self) -> Option<&str> {
        self.authority.as_deref()
    }

    /// The policy's URI.
    pub fn uri(&self) -> Option<&str> {
        self.uri.as_deref()
    }
}

/// One rule of a consent (`Consent.provision` or a nested `provision`), with its exceptions.
#[derive(Debug, Clone)]
pub struct Provision {
    pub(super) path: String,
    pub(super) declared_type: Option<ProvisionType>,
    pub(super) effect: ProvisionType,
    pub(super) period: Option<Period>,
    pub(super) actors: Vec<Actor>,
    pub(super) actions: Vec<Coding>,
    pub(super) security_labels: Vec<Coding>,
    /// Rank in U < L < M < N < R < V for each label that is a confidentiality code.
    pub(super) label_ranks: Vec<Option<u8>>,
    pub(super) purposes: Vec<Coding>,
    /// The ActReason purposes resolved in the hierarchy; other systems never match.
    pub(super) purpose_ids: Vec<PurposeId>,
    pub(super) classes: Vec<Coding>,
    pub(super) codes: Vec<Coding>,
    pub(super) data_period: Option<Period>,
    pub(super) data: Vec<DataReference>,
    /// Sensitive labels named by this provision or an ancestor, for `consented_labels`.
    pub(super) named_sensitive_labels: Vec<Coding>,
    pub(super) provisions: Vec<Provision>,
}

impl Provision {
    /// Where it sits, e.g. `provision` or `provision.provision[0]`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// `type` as written, if it was.
    pub fn declared_type(&self) -> Option<ProvisionType> {
        self.declared_type
    }

    /// What the provision does when it matches: `type`, else the parent's effect flipped,
    /// else (an untyped root) `deny`, whatever `policyRule` says.
    pub fn effect(&self) -> ProvisionType {
        self.effect
    }

    /// `period`: when the rule is in force.
    pub fn period(&self) -> Option<&Period> {
        self.period.as_ref()
    }

    /// `actor`.
    pub fn actors(&self) -> &[Actor] {
        &self.actors
    }

    /// `action`, the codings of every CodeableConcept.
    pub fn actions(&self) -> &[Coding] {
        &self.actions
    }

    /// `securityLabel`.
    pub fn security_labels(&self) -> &[Coding] {
        &self.security_labels
    }

    /// `purpose`.
    pub fn purposes(&self) -> &[Coding] {
        &self.purposes
    }

    /// `class`.
    pub fn classes(&self) -> &[Coding] {
        &self.classes
    }

    /// `code`, the codings of every CodeableConcept.
    pub fn codes(&self) -> &[Coding] {
        &self.codes
    }

    /// `dataPeriod`: the clinical time of the data the rule covers.
    pub fn data_period(&self) -> Option<&Period> {
        self.data_period.as_ref()
    }

    /// `data`.
    pub fn data(&self) -> &[DataReference] {
        &self.data
    }

    /// The nested provisions: exceptions to this one.
    pub fn provisions(&self) -> &[Provision] {
        &self.provisions
    }
}

/// The code system of `Consent.scope`.
pub const CONSENT_SCOPE_SYSTEM: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
/// The `Consent.scope` code of an advance directive.
pub const ADVANCE_DIRECTIVE_SCOPE: &str = "adr";

/// Whether a scope of these codings (system, code) makes a Consent an advance directive: it
/// names `adr` of the consentscope system and no other code of that system. An advance
/// directive is a clinical record, not a privacy consent, so it never takes part in a
/// decision; a scope that also names a privacy, research or treatment code stays a privacy
/// consent (fail-safe: a deny in it is never dropped).
pub fn is_advance_directive_scope<'a>(
    codings: impl IntoIterator<Item = (&'a str, &'a str)>,
) -> bool {
    let mut adr = false;
    for (system, code) in codings {
        if system == CONSENT_SCOPE_SYSTEM {
            if code != ADVANCE_DIRECTIVE_SCOPE {
                return false;
            }
            adr = true;
        }
    }
    adr
}

/// A patient's consent, as parsed by [`Consent::from_fhir`].
#[derive(Debug, Clone)]
pub struct Consent {
    pub(super) id: Option<String>,
    pub(super) status: ConsentStatus,
    pub(super) patient_id: String,
    pub(super) date_time: Option<String>,
    pub(super) scope: Vec<Coding>,
    pub(super) categories: Vec<Coding>,
    pub(super) policies: Vec<Policy>,
    pub(super) policy_rule: Option<Vec<Coding>>,
    pub(super) base_policy: Option<ProvisionType>,
    pub(super) provision: Option<Provision>,
}

impl Consent {
    /// `id`; absent on a consent that has not been stored yet.
    pub fn id(&self) -> Option<&str> {
        self.id.as_deref()
    }

    /// `status`.
    pub fn status(&self) -> ConsentStatus {
        self.status
    }

    /// The id of the patient the consent belongs to (from `patient` = `Patient/{id}`).
    pub fn patient_id(&self) -> &str {
        &self.patient_id
    }

    /// `dateTime` as written.
    pub fn date_time(&self) -> Option<&str> {
        self.date_time.as_deref()
    }

    /// The codings of `scope`.
    pub fn scope(&self) -> &[Coding] {
        &self.scope
    }

    /// Whether this is an advance directive (scope `adr`), which decides nothing
    /// ([`is_advance_directive_scope`]).
    pub fn is_advance_directive(&self) -> bool {
        is_advance_directive_scope(
            self.scope
                .iter()
                .map(|c| (c.system.as_str(), c.code.as_str())),
        )
    }

    /// The codings of every `category`.
    pub fn categories(&self) -> &[Coding] {
        &self.categories
    }

    /// `policy`.
    pub fn policies(&self) -> &[Policy] {
        &self.policies
    }

    /// The codings of `policyRule`, if present (possibly empty when it has only text).
    pub fn policy_rule(&self) -> Option<&[Coding]> {
        self.policy_rule.as_deref()
    }

    /// The direction `policyRule` states ([`ProvisionType::from_policy_rule`]), if any; for
    /// information only, it never makes an untyped root permit.
    pub fn base_policy(&self) -> Option<ProvisionType> {
        self.base_policy
    }

    /// The root is untyped and `policyRule` says opt-in: the gateway reads the root as `deny`,
    /// which may withhold what the author meant to grant. Worth a warning when it is stored.
    pub fn untyped_root_under_opt_in(&self) -> bool {
        self.base_policy == Some(ProvisionType::Permit)
            && self
                .provision
                .as_ref()
                .is_some_and(|root| root.declared_type.is_none())
    }

    /// The root provision, if any; a consent without one decides nothing.
    pub fn provision(&self) -> Option<&Provision> {
        self.provision.as_ref()
    }
}
