//! The question asked of the policies and its answer, and their translation into Cedar.
//!
//! Entities and context are built directly from typed values (no JSON round trip) and
//! without schema checks on the hot path: the shape is fixed here, and the engine checks a
//! probe request against the schema once, at load time.

use std::collections::{HashMap, HashSet};
use std::fmt;

use cedar_policy::{
    Context, Entities, Entity, EntityId, EntityTypeName, EntityUid, Request, RestrictedExpression,
    Schema,
};

/// What the client wants to do with the resource (the Cedar action).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyAction {
    /// Read one resource or a page of search results.
    Read,
    /// Bulk Data export (NDJSON).
    Export,
    /// A patient-directed disclosure bundle.
    Disclose,
}

impl PolicyAction {
    /// Every action, in schema order.
    pub const ALL: [PolicyAction; 3] = [
        PolicyAction::Read,
        PolicyAction::Export,
        PolicyAction::Disclose,
    ];

    /// The Cedar action id in `policies/schema.cedarschema`.
    pub fn as_str(self) -> &'static str {
        match self {
            PolicyAction::Read => "read",
            PolicyAction::Export => "export",
            PolicyAction::Disclose => "disclose",
        }
    }
}

/// The result of the patient's consents for this resource (DESIGN.md section 4, step 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ConsentOutcome {
    /// A consent permits.
    Permit,
    /// A consent denies (deny wins among consents).
    Deny,
    /// No consent applies.
    None,
}

impl ConsentOutcome {
    /// The value of `context.consent` in the policies.
    pub fn as_str(self) -> &'static str {
        match self {
            ConsentOutcome::Permit => "permit",
            ConsentOutcome::Deny => "deny",
            ConsentOutcome::None => "none",
        }
    }
}

/// One decision request: who, what action, which resource, and the consent result.
#[derive(Clone, Copy)]
pub struct PolicyRequest<'a> {
    /// The recipient client's id.
    pub client_id: &'a str,
    /// The client's role: clinician, researcher, disability_assessor, insurer, data_source.
    pub role: &'a str,
    /// The organisation the client is registered for.
    pub organization: &'a str,
    /// What the client wants to do.
    pub action: PolicyAction,
    /// FHIR resource type, e.g. `Observation`.
    pub resource_type: &'a str,
    /// FHIR resource id.
    pub resource_id: &'a str,
    /// Security label codes on the resource (`meta.security`), without their system.
    pub labels: &'a [String],
    /// Id of the patient the resource is about.
    pub patient: &'a str,
    /// The requested purpose of use (v3 ActReason code).
    pub purpose: &'a str,
    /// The purpose and all its ancestors in the v3 ActReason hierarchy.
    pub purpose_family: &'a [String],
    /// The result of the patient's consents.
    pub consent: ConsentOutcome,
    /// Sensitive labels the permitting consent provision named explicitly.
    pub consented_labels: &'a [String],
    /// The client asked for break-the-glass access.
    pub break_glass: bool,
    /// The patient opted out of emergency access.
    pub emergency_opt_out: bool,
    /// The permitting consent authorizes identified research.
    pub identified_research: bool,
    /// Free-text break-glass justification; empty when none was given.
    pub justification: &'a str,
}

impl fmt::Debug for PolicyRequest<'_> {
    // By hand, because the justification is free text that may describe the patient; the
    // rest is ids and codes, which may be logged.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PolicyRequest")
            .field("client_id", &self.client_id)
            .field("role", &self.role)
            .field("organization", &self.organization)
            .field("action", &self.action)
            .field("resource_type", &self.resource_type)
            .field("resource_id", &self.resource_id)
            .field("labels", &self.labels)
            .field("patient", &self.patient)
            .field("purpose", &self.purpose)
            .field("purpose_family", &self.purpose_family)
            .field("consent", &self.consent)
            .field("consented_labels", &self.consented_labels)
            .field("break_glass", &self.break_glass)
            .field("emergency_opt_out", &self.emergency_opt_out)
            .field("identified_research", &self.identified_research)
            .field(
                "justification",
                &format_args!("<{} chars>", self.justification.chars().count()),
            )
            .finish()
    }
}

/// The policies' answer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicyDecision {
    /// Whether the data may leave.
    pub permit: bool,
    /// Obligations of every permit policy that held, sorted and deduplicated; empty on deny.
    pub obligations: Vec<super::Obligation>,
    /// `@id` of the determining policies, sorted: the permits that held, or the forbids
    /// that fired, or on an evaluation error the erroring policies; empty when nothing
    /// permitted (Cedar's default deny).
    pub policies: Vec<String>,
    /// Evaluation errors, as `policy-id: kind`; any error makes the decision a deny.
    pub errors: Vec<String>,
}

/// Cedar names of the schema's entity types and actions, parsed once at load.
pub(super) struct CedarShapes {
    client_type: EntityTypeName,
    resource_type: EntityTypeName,
    read: EntityUid,
    export: EntityUid,
    disclose: EntityUid,
}

/// The namespace of `policies/schema.cedarschema`.
const NAMESPACE: &str = "Consentgate";

impl CedarShapes {
    /// Builds the fixed names; only fails if the names written here are not valid Cedar.
    pub fn new() -> Result<CedarShapes, String> {
        let type_name = |name: &str| {
            format!("{NAMESPACE}::{name}")
                .parse::<EntityTypeName>()
                .map_err(|error| format!("entity type {name}: {error}"))
        };
        let action_type = type_name("Action")?;
        let action = |a: PolicyAction| {
            EntityUid::from_type_name_and_id(action_type.clone(), EntityId::new(a.as_str()))
        };
        Ok(CedarShapes {
            client_type: type_name("Client")?,
            resource_type: type_name("Resource")?,
            read: action(PolicyAction::Read),
            export: action(PolicyAction::Export),
            disclose: action(PolicyAction::Disclose),
        })
    }

    /// Translates a request; with a schema, Cedar also checks it against the schema.
    pub fn build(
        &self,
        request: &PolicyRequest<'_>,
        schema: Option<&Schema>,
    ) -> Result<(Request, Entities), String> {
        let principal = EntityUid::from_type_name_and_id(
            self.client_type.clone(),
            EntityId::new(request.client_id),
        );
        let resource = EntityUid::from_type_name_and_id(
            self.resource_type.clone(),
            EntityId::new(format!("{}/{}", request.resource_type, request.resource_id)),
        );
        let action = match request.action {
            PolicyAction::Read => self.read.clone(),
            PolicyAction::Export => self.export.clone(),
            PolicyAction::Disclose => self.disclose.clone(),
        };

        let client = Entity::new(
            principal.clone(),
            HashMap::from([
                ("role".to_owned(), string(request.role)),
                ("organization".to_owned(), string(request.organization)),
            ]),
            HashSet::new(),
        )
        .map_err(|error| format!("client entity: {error}"))?;
        let resource_entity = Entity::new(
            resource.clone(),
            HashMap::from([
                ("resource_type".to_owned(), string(request.resource_type)),
                ("labels".to_owned(), string_set(request.labels)),
                ("patient".to_owned(), string(request.patient)),
            ]),
            HashSet::new(),
        )
        .map_err(|error| format!("resource entity: {error}"))?;
        let entities = Entities::from_entities([client, resource_entity], schema)
            .map_err(|error| format!("entities: {error}"))?;

        let context = Context::from_pairs([
            ("purpose".to_owned(), string(request.purpose)),
            (
                "purpose_family".to_owned(),
                string_set(request.purpose_family),
            ),
            ("consent".to_owned(), string(request.consent.as_str())),
            (
                "consented_labels".to_owned(),
                string_set(request.consented_labels),
            ),
            (
                "break_glass".to_owned(),
                RestrictedExpression::new_bool(request.break_glass),
            ),
            (
                "emergency_opt_out".to_owned(),
                RestrictedExpression::new_bool(request.emergency_opt_out),
            ),
            (
                "identified_research".to_owned(),
                RestrictedExpression::new_bool(request.identified_research),
            ),
            // Trimmed so that a blank justification cannot pass for one.
            (
                "justification".to_owned(),
                string(request.justification.trim()),
            ),
        ])
        .map_err(|error| format!("context: {error}"))?;

        let cedar_request = Request::new(principal, action, resource, context, schema)
            .map_err(|error| format!("request: {error}"))?;
        Ok((cedar_request, entities))
    }
}

fn string(value: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(value.to_owned())
}

fn string_set(values: &[String]) -> RestrictedExpression {
    RestrictedExpression::new_set(values.iter().map(|value| string(value)))
}
