//! Schemas of the API's own shapes for the OpenAPI document ([`super`]).
//!
//! Most response types are the types the handlers serialise (they derive `ToSchema` where
//! they are defined). The types here describe bodies that are built elsewhere as JSON values
//! (an error's problem details, a FHIR resource, a domain view returned as a `Value`): each
//! says which code builds the body it describes, and the contract tests (`scripts/contract`)
//! check every response against it on a live server.

use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;

/// RFC 9457 problem details: every error outside `/fhir` and `/oauth` (built by
/// `ApiError::render`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Problem {
    /// `https://consentgate.dev/problems/{code}`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The code in words.
    pub title: String,
    /// The HTTP status.
    pub status: u16,
    /// What went wrong, without patient data or internal causes.
    pub detail: String,
    /// The stable snake_case code clients can rely on.
    pub code: String,
}

/// An RFC 6749 error (section 5.2): every error of `/oauth/...`.
#[derive(Debug, Serialize, ToSchema)]
pub struct OAuthError {
    /// `invalid_request`, `invalid_client`, `invalid_grant`, `invalid_scope`,
    /// `unauthorized_client`, `unsupported_grant_type`, `too_many_requests`,
    /// `temporarily_unavailable` or `server_error`.
    pub error: String,
    /// What went wrong, for a developer.
    pub error_description: String,
}

/// A coding of an OperationOutcome issue's details: the gateway's stable code.
#[derive(Debug, Serialize, ToSchema)]
pub struct Coding {
    /// `https://consentgate.dev/fhir/CodeSystem/error` for the gateway's codes.
    #[schema(required = false)]
    pub system: Option<String>,
    /// The stable snake_case code.
    pub code: String,
}

/// An issue's details.
#[derive(Debug, Serialize, ToSchema)]
pub struct IssueDetails {
    /// The stable code.
    #[schema(required = false)]
    pub coding: Option<Vec<Coding>>,
    /// What went wrong.
    #[schema(required = false)]
    pub text: Option<String>,
}

/// One issue of an OperationOutcome.
#[derive(Debug, Serialize, ToSchema)]
pub struct Issue {
    /// `fatal`, `error`, `warning` or `information`.
    pub severity: String,
    /// The FHIR issue type (`invalid`, `not-found`, `forbidden`, `exception`, ...).
    pub code: String,
    /// The gateway's stable code and message.
    #[schema(required = false)]
    pub details: Option<IssueDetails>,
    /// The message again, for tools that show only this.
    #[schema(required = false)]
    pub diagnostics: Option<String>,
    /// FHIRPath of the element at fault, where there is one.
    #[schema(required = false)]
    pub expression: Option<Vec<String>>,
}

/// A FHIR OperationOutcome: every error under `/fhir` (built by
/// `records::outcome::operation_outcome`, and one issue per defect of a refused Consent).
#[derive(Debug, Serialize, ToSchema)]
pub struct OperationOutcome {
    /// `OperationOutcome`.
    #[serde(rename = "resourceType")]
    #[schema(pattern = "^OperationOutcome$")]
    pub resource_type: String,
    /// At least one issue.
    #[schema(min_items = 1)]
    pub issue: Vec<Issue>,
}

/// Any FHIR R4 resource (the document does not repeat the FHIR specification).
#[derive(Debug, Serialize, ToSchema)]
pub struct Resource {
    /// The resource type.
    #[serde(rename = "resourceType")]
    pub resource_type: String,
    /// The logical id.
    #[schema(required = false)]
    pub id: Option<String>,
}

/// A FHIR Bundle (searchset, transaction-response, batch-response, or a disclosure's
/// document).
#[derive(Debug, Serialize, ToSchema)]
pub struct Bundle {
    /// `Bundle`.
    #[serde(rename = "resourceType")]
    #[schema(pattern = "^Bundle$")]
    pub resource_type: String,
    /// The Bundle type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The entries.
    #[schema(required = false)]
    pub entry: Option<Vec<Value>>,
    /// Paging links (`self`, `next`).
    #[schema(required = false)]
    pub link: Option<Vec<Value>>,
}

/// An access request as the patient or an operator sees it (built by
/// `access_request::view`); the requesting client sees [`RequestStatus`] only.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRequestFull {
    /// The request id.
    pub id: String,
    /// `pending`, `approved`, `declined` or `unmatched`.
    pub status: String,
    /// `Patient/{id}`, when the identifier matched one patient.
    pub patient: Option<String>,
    /// Who asks.
    pub client: RequestingClient,
    /// The purpose of use.
    pub purpose: String,
    /// Resource types asked for.
    pub data_classes: Vec<String>,
    /// The clinical dates asked for (`start`, `end`), if limited.
    pub period: Option<Value>,
    /// Why, in the recipient's words.
    pub reason: String,
    /// When it was made (FHIR instant).
    pub created: String,
    /// When it was decided.
    pub decided: Option<String>,
    /// `patient` or `operator`.
    pub decided_by: Option<String>,
    /// `Consent/{id}` created by the approval.
    pub consent: Option<String>,
    /// The identifier the client gave (`system`, `value`); operators only.
    #[schema(required = false)]
    pub identifier: Option<Value>,
}

/// The client behind an access request.
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestingClient {
    /// The client id.
    pub id: String,
    /// Its name, while registered.
    pub name: Option<String>,
    /// Its organisation, while registered.
    pub organization: Option<String>,
    /// Its role, while registered.
    pub role: Option<String>,
}

/// An access request as the requesting client sees it: the status only (`submitted` until
/// the patient decides, whether or not the patient was found).
#[derive(Debug, Serialize, ToSchema)]
pub struct RequestStatus {
    /// The request id.
    pub id: String,
    /// `submitted`, `approved` or `declined`.
    pub status: String,
}

/// An access request as its caller may see it.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum AccessRequestView {
    /// The patient's or an operator's view.
    Full(Box<AccessRequestFull>),
    /// The requesting client's view.
    Status(RequestStatus),
}

/// One page of access requests.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessRequestList {
    /// Newest first.
    pub access_requests: Vec<AccessRequestFull>,
    /// The next page's URL, if any.
    pub next: Option<String>,
}

/// A patient's SMART Health Links (`GET /api/v1/share-links`).
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareLinkList {
    /// Newest first; never a key or a file.
    pub share_links: Vec<crate::shl::LinkView>,
}

/// A notification (built by `notify::view`).
#[derive(Debug, Serialize, ToSchema)]
pub struct Notification {
    /// The notification id: a UUID, the same on every read and every delivery (a UUIDv7 for
    /// a stored notification, a UUIDv8 made from its audit entry for a derived one); the
    /// feed is ordered by it.
    pub id: String,
    /// The patient.
    pub patient_id: String,
    /// What happened (`disclosure`, `break_glass`, `access_request`, ...).
    pub kind: String,
    /// When (FHIR instant).
    pub created: String,
    /// The audit entry it is about, if any.
    pub audit_seq: Option<i64>,
    /// The access request it is about, if any.
    pub access_request_id: Option<String>,
    /// Ids and codes only: who, what, why.
    pub summary: Value,
    /// When the patient read it (feed only).
    #[schema(required = false)]
    pub read_at: Option<String>,
}

/// The patient's accounting of disclosures (built by `accounting::AccessLog::to_json`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLog {
    /// The patient.
    pub patient_id: String,
    /// Newest first.
    pub disclosures: Vec<AccessLogEntry>,
    /// The newest signed checkpoint, to check each entry's inclusion against.
    pub checkpoint: Option<LogCheckpoint>,
    /// The next page's URL, if any.
    pub next: Option<String>,
}

/// A checkpoint as the access log carries it.
#[derive(Debug, Serialize, ToSchema)]
pub struct LogCheckpoint {
    /// The tree size.
    pub size: i64,
    /// The C2SP signed note.
    pub note: String,
    /// The note verifier key.
    pub verifier_key: String,
    /// Where the verifier key is served.
    pub verifier_key_url: String,
}

/// One disclosure: when, to whom, what, why, and its place in the log.
#[derive(Debug, Serialize, ToSchema)]
pub struct AccessLogEntry {
    /// When (FHIR instant).
    pub date: String,
    /// `read`, `search`, `export`, `disclose`, ...
    pub action: String,
    /// Who received it (`kind`, `client_id`, `client_name`, `organisation`, ...).
    pub recipient: Value,
    /// `resource_types` (counts by type) and `resources` (`Type/id`).
    pub disclosed: Value,
    /// The purpose of use.
    pub purpose_of_use: Option<String>,
    /// Consents that permitted it.
    pub consents: Vec<String>,
    /// Policies that permitted it.
    pub policies: Vec<String>,
    /// Whether it was break-glass access.
    pub break_glass: bool,
    /// The break-glass justification.
    pub justification: Option<String>,
    /// The request id.
    pub request_id: Option<String>,
    /// `leaf_index`, `leaf_hash`, `entry`, `tree_size`, `proof_url`.
    pub inclusion: Value,
}

/// A Bulk Data export manifest.
#[derive(Debug, Serialize, ToSchema)]
pub struct ExportManifest {
    /// When the export's snapshot was taken (FHIR instant).
    #[serde(rename = "transactionTime")]
    pub transaction_time: String,
    /// The kick-off URL.
    pub request: String,
    /// Always true.
    #[serde(rename = "requiresAccessToken")]
    pub requires_access_token: bool,
    /// One file per resource type (`type`, `url`, `count`).
    pub output: Vec<Value>,
    /// Error files (`type` OperationOutcome, `url`, `count`): resources withheld, and why.
    pub error: Vec<Value>,
}

/// `_count`: a page size. Any whole number is taken and the server serves between 1 and its
/// configured maximum (`limits.max_page_size`), so the schema has no upper bound.
pub struct PageSize;

impl utoipa::PartialSchema for PageSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::Type::Integer)
            .minimum(Some(0))
            .description(Some(
                "Page size: 0 counts as 1, and more than the configured maximum as the maximum",
            ))
            .into()
    }
}

impl ToSchema for PageSize {}
