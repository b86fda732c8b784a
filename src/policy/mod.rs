//! Institution policy: step 2 of a decision (DESIGN.md section 4), in Cedar.
//!
//! The patient's consents are evaluated first (the `consent` module); their result goes into
//! the Cedar request context and the policies in `policies/*.cedar` decide, validated
//! strictly against `policies/schema.cedarschema`. Forbid policies state the rules (a consent
//! permit is needed, sensitive labels need the consent to name them, roles limit purposes,
//! break-glass must qualify); permit policies say who may have data and carry obligations.
//!
//! Use it like this: build a [`PolicyEngine`] once at start-up, with
//! [`PolicyEngine::load`] on the configured directory or [`PolicyEngine::builtin`] for the
//! shipped policies (either fails with a [`PolicyError`] naming file, line and column, and
//! start-up should stop), share it (`Arc`), and call [`PolicyEngine::decide`] per resource.
//!
//! Conventions the loader enforces on every policy:
//! - `@id("...")`, unique across files: the name decisions and explanations report;
//! - `@obligation("...")` and `@obligation_<name>("...")` on permit policies only, one
//!   obligation code each (Cedar allows an annotation key once per policy, hence the named
//!   variants for a second obligation); no other annotations, so that a misspelt obligation
//!   stops start-up instead of being dropped.
//!
//! On a permit the obligations of every permit policy that held (Cedar's determining
//! policies) apply together. Any evaluation error denies, stricter than Cedar, which only
//! skips the erroring policy (so an erroring forbid would not stop a permit); errors are
//! reported in the decision by policy id and kind, without values.
//!
//! The purpose hierarchy is resolved by the caller: `purpose_family` is the requested v3
//! ActReason code and all its ancestors, so the policies test family membership.

mod error;
mod loader;
mod memo;
pub mod obligation;
mod request;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_loading;
#[cfg(test)]
mod tests_shipped;

use std::collections::HashMap;
use std::path::Path;

use cedar_policy::{
    AuthorizationError, Authorizer, Decision, EvaluationError, PolicyId, PolicySet,
};

pub use error::PolicyError;
pub use memo::MEMO_LIMIT;
pub use obligation::Obligation;
pub use request::{ConsentOutcome, PolicyAction, PolicyDecision, PolicyRequest};

use loader::{Compiled, SCHEMA_FILE, Source};
use request::CedarShapes;

/// The shipped schema, compiled into the binary.
const BUILTIN_SCHEMA: &str = include_str!("../../policies/schema.cedarschema");
/// The shipped policy files as `(file name, text)`, in file-name order like `load`.
const BUILTIN_POLICIES: [(&str, &str); 5] = [
    (
        "break_glass.cedar",
        include_str!("../../policies/break_glass.cedar"),
    ),
    (
        "consent.cedar",
        include_str!("../../policies/consent.cedar"),
    ),
    (
        "recipients.cedar",
        include_str!("../../policies/recipients.cedar"),
    ),
    ("roles.cedar", include_str!("../../policies/roles.cedar")),
    (
        "sensitive_labels.cedar",
        include_str!("../../policies/sensitive_labels.cedar"),
    ),
];

/// The validated policies with a ready authorizer; build once, share, call `decide`.
pub struct PolicyEngine {
    policies: PolicySet,
    obligations: HashMap<PolicyId, Vec<Obligation>>,
    authorizer: Authorizer,
    shapes: CedarShapes,
    warnings: Vec<String>,
    /// Answers already given, when the policies cannot observe ids ([`memo`]).
    memo: Option<memo::Memo>,
}

impl PolicyEngine {
    /// Loads schema + every *.cedar in dir, validates strictly; error names file, line and reason.
    pub fn load(dir: &Path) -> Result<PolicyEngine, PolicyError> {
        let (schema, files) = loader::read_dir(dir)?;
        PolicyEngine::from_sources(&schema, &files)
    }

    /// The shipped policies, embedded (include_str!) — same validation.
    pub fn builtin() -> Result<PolicyEngine, PolicyError> {
        let schema = Source {
            file: format!("policies/{SCHEMA_FILE}"),
            text: BUILTIN_SCHEMA.to_owned(),
        };
        let files: Vec<Source> = BUILTIN_POLICIES
            .iter()
            .map(|(name, text)| Source {
                file: format!("policies/{name}"),
                text: (*text).to_owned(),
            })
            .collect();
        PolicyEngine::from_sources(&schema, &files)
    }

    fn from_sources(schema: &Source, files: &[Source]) -> Result<PolicyEngine, PolicyError> {
        let Compiled {
            schema: cedar_schema,
            policies,
            obligations,
            warnings,
        } = loader::compile(schema, files)?;
        let shapes = CedarShapes::new().map_err(|reason| PolicyError::SchemaMismatch {
            file: schema.file.clone(),
            reason,
        })?;
        // A schema that type-checks the policies but not the gateway's own requests would
        // turn every decision into an evaluation error; catch that at start-up instead.
        for action in PolicyAction::ALL {
            let probe = PolicyRequest {
                action,
                ..probe_request()
            };
            shapes
                .build(&probe, Some(&cedar_schema))
                .map_err(|reason| PolicyError::SchemaMismatch {
                    file: schema.file.clone(),
                    reason: format!("{reason}; {REQUEST_SHAPE}"),
                })?;
        }
        let memo = memo::blind_to_ids(&policies).then(memo::Memo::new);
        Ok(PolicyEngine {
            policies,
            obligations,
            authorizer: Authorizer::new(),
            shapes,
            warnings,
            memo,
        })
    }

    /// Decides one request; never fails: anything unexpected denies and is in `errors`.
    ///
    /// When the policies cannot observe the client's, resource's or patient's id, the answer
    /// for the request's other inputs is remembered and given again without asking Cedar
    /// ([`memo`]); break-glass requests always go to Cedar.
    pub fn decide(&self, request: &PolicyRequest<'_>) -> PolicyDecision {
        match &self.memo {
            Some(memo) if memo::Memo::applies(request) => {
                memo.answer(request, || self.evaluate(request))
            }
            _ => self.evaluate(request),
        }
    }

    /// Whether decisions are memoised (the loaded policies cannot observe ids).
    pub fn memoises(&self) -> bool {
        self.memo.is_some()
    }

    /// Asks Cedar.
    fn evaluate(&self, request: &PolicyRequest<'_>) -> PolicyDecision {
        let (cedar_request, entities) = match self.shapes.build(request, None) {
            Ok(built) => built,
            Err(reason) => {
                return PolicyDecision {
                    errors: vec![reason],
                    ..PolicyDecision::default()
                };
            }
        };
        let response = self
            .authorizer
            .is_authorized(&cedar_request, &self.policies, &entities);
        let diagnostics = response.diagnostics();

        let mut errors = Vec::new();
        let mut erroring = Vec::new();
        for AuthorizationError::PolicyEvaluationError(error) in diagnostics.errors() {
            errors.push(format!(
                "{}: {}",
                error.policy_id(),
                error_kind(error.inner())
            ));
            erroring.push(error.policy_id().to_string());
        }
        errors.sort();
        erroring.sort();

        // Cedar skips an erroring policy, so an erroring forbid would let a permit through;
        // a health-data gateway fails closed instead, and names the erroring policies.
        if !errors.is_empty() {
            return PolicyDecision {
                permit: false,
                obligations: Vec::new(),
                policies: erroring,
                errors,
            };
        }

        let permit = response.decision() == Decision::Allow;
        let mut obligations = Vec::new();
        let mut policies = Vec::new();
        for id in diagnostics.reason() {
            policies.push(id.to_string());
            // On allow the determining policies are exactly the permits that held.
            if permit && let Some(carried) = self.obligations.get(id) {
                obligations.extend(carried.iter().cloned());
            }
        }
        policies.sort();
        obligations.sort();
        obligations.dedup();

        PolicyDecision {
            permit,
            obligations,
            policies,
            errors,
        }
    }

    /// Schema and validation warnings found at load time, for the start-up log.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The `@id` of every loaded policy, sorted.
    pub fn policy_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .policies
            .policies()
            .map(|policy| policy.id().to_string())
            .collect();
        ids.sort();
        ids
    }
}

/// What `request.rs` sends, for the message when a schema does not describe it.
const REQUEST_SHAPE: &str = "the gateway sends principal Consentgate::Client {role, \
    organization}, resource Consentgate::Resource {resource_type, labels, patient}, actions \
    read, export, disclose, and context {purpose, purpose_family, consent, consented_labels, \
    break_glass, emergency_opt_out, identified_research, justification}";

/// A request with every field filled, used to check the schema at load time.
fn probe_request() -> PolicyRequest<'static> {
    PolicyRequest {
        client_id: "probe",
        role: "clinician",
        organization: "probe",
        action: PolicyAction::Read,
        resource_type: "Observation",
        resource_id: "probe",
        labels: &[],
        patient: "probe",
        purpose: "TREAT",
        purpose_family: &[],
        consent: ConsentOutcome::None,
        consented_labels: &[],
        break_glass: false,
        emergency_opt_out: false,
        identified_research: false,
        justification: "",
    }
}

/// The kind of an evaluation error without its message, which may quote request values
/// (the justification is free text).
fn error_kind(error: &EvaluationError) -> &'static str {
    match error {
        EvaluationError::EntityDoesNotExist(_) => "entity_does_not_exist",
        EvaluationError::EntityAttrDoesNotExist(_) => "entity_attribute_does_not_exist",
        EvaluationError::RecordAttrDoesNotExist(_) => "record_attribute_does_not_exist",
        EvaluationError::FailedExtensionFunctionLookup(_) => "extension_function_lookup",
        EvaluationError::TypeError(_) => "type_error",
        EvaluationError::WrongNumArguments(_) => "wrong_number_of_arguments",
        EvaluationError::IntegerOverflow(_) => "integer_overflow",
        EvaluationError::UnlinkedSlot(_) => "unlinked_slot",
        EvaluationError::FailedExtensionFunctionExecution(_) => "extension_function_execution",
        EvaluationError::NonValue(_) => "non_value",
        EvaluationError::RecursionLimit(_) => "recursion_limit",
        #[allow(unreachable_patterns)]
        _ => "evaluation_error",
    }
}
