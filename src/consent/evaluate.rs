//! Step 1 of a decision (DESIGN.md section 4): what the patient's consents say about one
//! request for one resource.
//!
//! # When a consent applies
//! Its `status` is `active`, `now` lies inside the root provision's `period` (R4 gives a
//! Consent no other period), and the root provision matches the request.
//!
//! # When a provision matches
//! Every attribute it states must hold (AND); an attribute with several values holds when
//! one of them does (OR); an attribute it does not state holds for anything. A nested
//! provision is only tried when its parent matched, so it is always read inside its
//! ancestors' conditions. The attributes:
//! - `period`: `now` is inside it (inclusive, at the precision written).
//! - `actor`: some entry matches the requester: its `reference` equals one of
//!   [`ActorFacts::references`] (exact string; the consent's `/_history/{vid}` is dropped;
//!   list the client's `Device/...`, its `Organization/...`, a `Practitioner/...`, and a
//!   `Group/...` for each group it belongs to), **and**, when [`ActorFacts::roles`] is not
//!   empty, one of the entry's role codings equals one of those roles (system and code).
//!   With no roles given, the reference alone decides.
//! - `purpose`: the request's purpose is-a one of the provision's v3 ActReason purposes in the
//!   official hierarchy (a consent to `TREAT` covers `ETREAT`, never the reverse). Purposes of
//!   other code systems never match.
//! - `action`: one `consentaction` coding equals the request's action. A request with no
//!   action (`None`) is not restricted by action conditions: pass the action whenever the
//!   request has one.
//! - `securityLabel`: the resource carries one of the labels. For v3 Confidentiality R4 reads
//!   a label as a high-water mark ("a label of R applies to all resources labelled R or
//!   lower"), so `N` covers resources labelled U, L, M or N; other labels match exactly.
//! - `class`: a `resource-types` coding matches the resource's type; any coding matches when
//!   it equals one of [`ResourceFacts::classes`] (type, category, document format ...).
//! - `code`: a coding equals one of [`ResourceFacts::codes`].
//! - `dataPeriod`: overlaps the resource's clinical period; a resource without a clinical
//!   date does not match a provision restricted by `dataPeriod`.
//! - `data`, by `meaning`, with `X` the referenced resource:
//!   - `instance`: the resource is `X`;
//!   - `related`: the resource is `X` or refers to `X` (e.g. the results of an order). R4
//!     also counts the resources `X` refers to; that needs `X`'s content, which
//!     [`ResourceFacts`] does not carry, so it is not covered;
//!   - `dependents`: the resource is `X` or refers to `X` (R4: "the instance and instances
//!     that refer to it");
//!   - `authoredby`: [`ResourceFacts::author_references`] contains `X`.
//!
//! # What a matching provision decides
//! Its effect is its `type` when it states one. Without a `type`:
//! - the **root** is `deny`, whatever `policyRule` says. R4 forbids `type` on the root and
//!   leaves the direction to `policyRule` (`Consent.provision`: "Constraints to the base
//!   Consent.policyRule"), but the official examples use one `policyRule` and one root shape
//!   for opposite meanings (consent-example-basic and -notTime are both `OPTIN` with only a
//!   period; one grants, the other withholds), so following `policyRule` would grant what
//!   some consents withhold. A misread consent must withhold, never leak; the direction
//!   `policyRule` states is kept only as information ([`Consent::base_policy`],
//!   [`Consent::untyped_root_under_opt_in`]);
//! - a **nested** provision has the opposite of its parent's effect: it is an exception
//!   (`Consent.provision.provision`: "Rules which provide exceptions to the base rule or
//!   subrules").
//!
//! An explicit root `type` wins (R4 forbids it, but consent-example-notOrg uses it, and it is
//! unambiguous): consents written for the gateway always state it.
//!
//! Nested provisions are exceptions: if any child matches, the matching children decide
//! (recursively) instead of the parent, deny winning among them; if none matches, the
//! provision's own effect holds. Among applicable consents deny wins too. No applicable
//! consent gives [`Decision::NotApplicable`].
//!
//! # What the result names
//! [`ConsentResult::deciding`] lists every provision whose effect is the final decision
//! (several when siblings or consents agree). [`ConsentResult::consented_labels`] lists the
//! [`super::model::SENSITIVE_LABELS`] that a permitting provision, or one of its ancestors
//! (whose scope it lies within), named in `securityLabel`; a general permit names none.
//!
//! # Which consents take part
//! Every active consent of the patient, whatever its scope (`patient-privacy`, `research`,
//! `treatment`), except an advance directive (scope `adr` alone,
//! [`super::model::is_advance_directive_scope`]): that is the patient's wishes about their
//! care, a clinical record that is released like any other, and it neither permits nor
//! denies anything.
//!
//! The evaluator does not check which patient a consent belongs to: pass the consents of
//! the resource's patient. It allocates only the result (and one scratch vector).

use super::dates::MicrosRange;
use super::model::{
    Actor, CONFIDENTIALITY_SYSTEM, CONSENT_ACTION_SYSTEM, Coding, Consent, ConsentStatus,
    DataMeaning, DataReference, Provision, ProvisionType, RESOURCE_TYPES_SYSTEM,
};
use super::parse::confidentiality_rank;
use super::purpose::{PurposeHierarchy, PurposeId};

/// What is known about the requester.
#[derive(Debug, Clone, Default)]
pub struct ActorFacts {
    /// Every reference the requester is known by: `Device/{client}`, `Organization/o1`,
    /// `Practitioner/p1`, and `Group/g1` for each group it is a member of.
    pub references: Vec<String>,
    /// Its roles, e.g. v3 ParticipationType `PRCP`; empty when roles are not to be checked.
    pub roles: Vec<Coding>,
}

/// What is known about the requested resource.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ResourceFacts {
    /// The resource type, e.g. `Observation`.
    pub resource_type: String,
    /// The resource id.
    pub id: String,
    /// Classes: `http://hl7.org/fhir/resource-types|{type}` and the category codings.
    pub classes: Vec<Coding>,
    /// Clinical codes (e.g. `Observation.code` codings).
    pub codes: Vec<Coding>,
    /// `meta.security`, including labels added at ingest.
    pub security_labels: Vec<Coding>,
    /// The clinical date as an inclusive microsecond range, if it has one.
    pub clinical_period: Option<MicrosRange>,
    /// Every `Type/id` the resource refers to.
    pub references: Vec<String>,
    /// The `Type/id` of each author (e.g. `Observation.performer`, `Composition.author`).
    pub author_references: Vec<String>,
}

/// One request to decide.
#[derive(Debug, Clone, Copy)]
pub struct ConsentQuery<'a> {
    /// Who asks.
    pub actor: &'a ActorFacts,
    /// The purpose of use, a v3 ActReason code (e.g. `TREAT`).
    pub purpose: &'a str,
    /// The `consentaction` code (`access`, `disclose`, `collect` ...), if the request has one.
    pub action: Option<&'a str>,
    /// What is asked for.
    pub resource: &'a ResourceFacts,
    /// The time of the request, microseconds since the epoch.
    pub now: i64,
    /// The purpose-of-use hierarchy the purposes are judged by.
    pub purposes: &'a PurposeHierarchy,
}

/// The consents' answer for one resource.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// A consent permits.
    Permit,
    /// A consent denies.
    Deny,
    /// No consent applies.
    NotApplicable,
}

impl Decision {
    /// The word DESIGN.md uses: `permit`, `deny` or `none`.
    pub fn code(self) -> &'static str {
        match self {
            Decision::Permit => "permit",
            Decision::Deny => "deny",
            Decision::NotApplicable => "none",
        }
    }
}

impl From<ProvisionType> for Decision {
    fn from(t: ProvisionType) -> Decision {
        match t {
            ProvisionType::Permit => Decision::Permit,
            ProvisionType::Deny => Decision::Deny,
        }
    }
}

/// A provision that decided.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct DecidingProvision {
    /// The consent's id (empty if it has none yet).
    pub consent_id: String,
    /// The provision's path, e.g. `provision.provision[0]`.
    pub path: String,
    /// Its effect: the decision.
    pub effect: Decision,
}

/// The outcome of step 1.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ConsentResult {
    /// Permit, deny or not applicable.
    pub decision: Decision,
    /// Every provision that decided; empty when not applicable.
    pub deciding: Vec<DecidingProvision>,
    /// Sensitive labels the permitting provisions named; empty unless permitted.
    pub consented_labels: Vec<Coding>,
}

/// Decides what the consents say about `query` (see the module doc for the rules).
pub fn evaluate(consents: &[Consent], query: &ConsentQuery) -> ConsentResult {
    let ctx = Context {
        q: query,
        purpose: query.purposes.id(query.purpose),
    };
    // (consent index, provision) of the current deciders; deny wins, so permits are dropped
    // the moment a deny appears at the same level.
    let mut deciders: Vec<(usize, &Provision)> = Vec::new();
    let mut any = false;
    let mut deny = false;
    for (i, consent) in consents.iter().enumerate() {
        // An advance directive records the patient's wishes for their care; it is not a
        // privacy consent and may neither permit nor deny anything.
        if consent.status() != ConsentStatus::Active || consent.is_advance_directive() {
            continue;
        }
        let Some(root) = consent.provision() else {
            continue;
        };
        if !ctx.matches(root) {
            continue;
        }
        let start = deciders.len();
        let effect = decide(root, i, &ctx, &mut deciders);
        any = true;
        combine(effect, &mut deny, &mut deciders, 0, start);
    }
    let decision = match (any, deny) {
        (false, _) => Decision::NotApplicable,
        (true, true) => Decision::Deny,
        (true, false) => Decision::Permit,
    };
    let mut consented_labels: Vec<Coding> = Vec::new();
    if decision == Decision::Permit {
        for (_, p) in &deciders {
            for label in &p.named_sensitive_labels {
                if !consented_labels.contains(label) {
                    consented_labels.push(label.clone());
                }
            }
        }
    }
    let deciding = deciders
        .iter()
        .map(|&(i, p)| DecidingProvision {
            consent_id: consents
                .get(i)
                .and_then(Consent::id)
                .unwrap_or_default()
                .to_owned(),
            path: p.path().to_owned(),
            effect: p.effect().into(),
        })
        .collect();
    ConsentResult {
        decision,
        deciding,
        consented_labels,
    }
}

/// Folds one more matching result into a level where deny wins: the deciders pushed since
/// `start` belong to the new result, those in `mark..start` to earlier ones.
fn combine(
    effect: ProvisionType,
    deny: &mut bool,
    deciders: &mut Vec<(usize, &Provision)>,
    mark: usize,
    start: usize,
) {
    match effect {
        ProvisionType::Deny if !*deny => {
            *deny = true;
            deciders.drain(mark..start);
        }
        ProvisionType::Permit if *deny => deciders.truncate(start),
        _ => {}
    }
}

/// The effect of a provision that matched: its matching children's (deny winning), or its own.
fn decide<'c>(
    p: &'c Provision,
    consent: usize,
    ctx: &Context,
    deciders: &mut Vec<(usize, &'c Provision)>,
) -> ProvisionType {
    let mark = deciders.len();
    let mut any = false;
    let mut deny = false;
    for child in p.provisions() {
        if !ctx.matches(child) {
            continue;
        }
        let start = deciders.len();
        let effect = decide(child, consent, ctx, deciders);
        any = true;
        combine(effect, &mut deny, deciders, mark, start);
    }
    match (any, deny) {
        (false, _) => {
            deciders.push((consent, p));
            p.effect()
        }
        (true, true) => ProvisionType::Deny,
        (true, false) => ProvisionType::Permit,
    }
}

struct Context<'q, 'a> {
    q: &'q ConsentQuery<'a>,
    /// The request's purpose resolved once; `None` if it is not an ActReason code.
    purpose: Option<PurposeId>,
}

impl Context<'_, '_> {
    /// Whether every condition the provision states holds for the request.
    fn matches(&self, p: &Provision) -> bool {
        let q = self.q;
        let r = q.resource;
        p.period().is_none_or(|period| period.contains(q.now))
            && (p.actors().is_empty() || p.actors().iter().any(|a| self.actor_matches(a)))
            && (p.purposes.is_empty() || self.purpose_matches(p))
            && (p.actions().is_empty() || self.action_matches(p))
            && (p.security_labels().is_empty() || label_matches(p, &r.security_labels))
            && (p.classes().is_empty() || p.classes().iter().any(|c| class_matches(c, r)))
            && (p.codes().is_empty() || p.codes().iter().any(|c| r.codes.contains(c)))
            && p.data_period()
                .is_none_or(|dp| r.clinical_period.is_some_and(|cp| dp.overlaps(cp)))
            && (p.data().is_empty() || p.data().iter().any(|d| data_matches(d, r)))
    }

    fn actor_matches(&self, actor: &Actor) -> bool {
        let facts = self.q.actor;
        facts.references.iter().any(|r| r == actor.reference())
            && (facts.roles.is_empty() || actor.roles().iter().any(|c| facts.roles.contains(c)))
    }

    fn purpose_matches(&self, p: &Provision) -> bool {
        let Some(asked) = self.purpose else {
            return false;
        };
        p.purpose_ids
            .iter()
            .any(|&g| self.q.purposes.id_is_a(asked, g))
    }

    fn action_matches(&self, p: &Provision) -> bool {
        match self.q.action {
            None => true,
            Some(action) => p
                .actions()
                .iter()
                .any(|c| c.is(CONSENT_ACTION_SYSTEM, action)),
        }
    }
}

fn label_matches(p: &Provision, resource_labels: &[Coding]) -> bool {
    p.security_labels()
        .iter()
        .zip(&p.label_ranks)
        .any(|(label, rank)| match rank {
            Some(ceiling) => resource_labels.iter().any(|l| {
                l.system == CONFIDENTIALITY_SYSTEM
                    && confidentiality_rank(&l.code).is_some_and(|r| r <= *ceiling)
            }),
            None => resource_labels.contains(label),
        })
}

fn class_matches(class: &Coding, r: &ResourceFacts) -> bool {
    class.is(RESOURCE_TYPES_SYSTEM, &r.resource_type) || r.classes.contains(class)
}

fn data_matches(d: &DataReference, r: &ResourceFacts) -> bool {
    let x = d.reference();
    let is_x = || {
        x.strip_prefix(r.resource_type.as_str())
            .and_then(|rest| rest.strip_prefix('/'))
            .is_some_and(|id| id == r.id)
    };
    let refers_to_x = || r.references.iter().any(|s| s == x);
    match d.meaning() {
        DataMeaning::Instance => is_x(),
        DataMeaning::Related | DataMeaning::Dependents => is_x() || refers_to_x(),
        DataMeaning::AuthoredBy => r.author_references.iter().any(|a| a == x),
    }
}
