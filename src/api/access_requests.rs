//! Access requests: a recipient asks a patient for access; the patient approves (a Consent
//! is created from the request) or declines.
//!
//! - `POST /api/v1/access-requests` (a recipient client): patient identifier, purpose, data
//!   classes, data period, reason. Always `202 {"id", "status": "submitted"}`, the same bytes
//!   whether the identifier matched one Patient, none or several: a recipient must not learn
//!   from the answer whether someone is a patient here. A request that matched no single
//!   Patient is kept as `unmatched`, with no patient, and only an operator ever sees it.
//! - `GET /api/v1/access-requests?status=&patient=&limit=&before=`: a patient's own requests,
//!   or (operator) all of them; newest first, paged by request id.
//! - `GET /api/v1/access-requests/{id}`: the requesting client sees the status only
//!   (`submitted`, `approved`, `declined`; an unmatched request stays `submitted`); the
//!   patient and an operator see the whole request.
//! - `POST /api/v1/access-requests/{id}/approve` `{"expires": dateTime}` (optional body) and
//!   `.../decline` (the patient, or an operator acting for them): once only, then 409.
//!
//! Approval writes a FHIR R4 Consent naming the client's own `Device/{client_id}` as the
//! actor, so the decision engine matches it for that client only (see
//! [`super::decisions::requester_of`]). The Consent and the request's new status commit in
//! one transaction. The reason is the recipient's free text: it is stored and shown to the
//! patient, never logged or written to the audit log.
//!
//! Longer than the ~600 lines STYLE.md asks for: the five handlers share the request checks,
//! the views and the Consent builder, and splitting them would only spread one resource's
//! rules over several files. Read it top-down: body types, `check`, the handlers in route
//! order, then approval and decline.

use actix_web::http::StatusCode;
use actix_web::web::{Bytes, Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{Caller, ClientCaller, Reader};
use super::error::ApiError;
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::{Client, Role};
use crate::auth::registry;
use crate::consent::Consent;
use crate::consent::dates::parse_date_time;
use crate::consent::model::{ACT_CODE_SYSTEM, RESOURCE_TYPES_SYSTEM};
use crate::consent::purpose::ACT_REASON_SYSTEM;
use crate::notify;
use crate::records::dates::{format_instant, now_micros};
use crate::records::{ingest, validate};
use crate::store::access_requests::{
    self as rows, AccessRequestRow, Decided, ListQuery, Listed, RequestStatus,
};
use crate::store::resources::{TokenFilter, ids_by_identifier};
use crate::store::{identity, write_tx};

/// Longest reason, in characters.
const MAX_REASON_CHARS: usize = 1000;
/// Most data classes in one request (keeps the audit detail within its 1024 characters).
const MAX_CLASSES: usize = 20;
/// Longest identifier system or value, in characters.
const MAX_IDENTIFIER_CHARS: usize = 256;
/// Page size when `limit` is absent, and the largest honoured.
const DEFAULT_LIMIT: i64 = 50;
const MAX_LIMIT: i64 = 200;
/// The system of the Consent identifier that names the request it was created from.
pub const REQUEST_IDENTIFIER_SYSTEM: &str = "https://consentgate.dev/fhir/access-request";
const PARTICIPATION_TYPE_SYSTEM: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

/// A patient identifier as the recipient knows it.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentifierBody {
    /// The identifier's system (a URI).
    pub system: String,
    /// The identifier's value.
    pub value: String,
}

/// The patient asked about.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PatientBody {
    /// Matched against stored Patient identifiers.
    pub identifier: IdentifierBody,
}

/// A FHIR Period of dates or dateTimes.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PeriodBody {
    /// Start, inclusive.
    #[serde(default)]
    pub start: Option<String>,
    /// End, inclusive.
    #[serde(default)]
    pub end: Option<String>,
}

/// The body of `POST /api/v1/access-requests`. No `Debug`: it holds an identifier and free text.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewAccessRequest {
    /// Whose records.
    pub patient: PatientBody,
    /// The purpose of use (v3 ActReason code) the client's registration allows.
    pub purpose: String,
    /// FHIR resource types asked for.
    pub data_classes: Vec<String>,
    /// The clinical dates asked for, if limited.
    #[serde(default)]
    pub period: Option<PeriodBody>,
    /// Why, in the recipient's words (at most 1000 characters).
    pub reason: String,
}

/// The optional body of `.../approve`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    /// When the consent ends (FHIR dateTime); open-ended when absent.
    #[serde(default)]
    pub expires: Option<String>,
}

fn problem(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

fn unprocessable(code: &'static str, message: impl Into<String>) -> ApiError {
    problem(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn unknown_request() -> ApiError {
    problem(
        StatusCode::NOT_FOUND,
        "unknown_access_request",
        "no such access request",
    )
}

/// A request that passed every check, ready to store.
struct Checked {
    token: String,
    classes: Vec<String>,
    period: (Option<String>, Option<String>),
}

/// Checks a request against the client's registration. Nothing here looks at stored
/// patients, so a refusal says nothing about whether the patient exists.
fn check(body: &NewAccessRequest, client: &Client, state: &AppState) -> Result<Checked, ApiError> {
    let id = &body.patient.identifier;
    let fits = |s: &str| {
        (1..=MAX_IDENTIFIER_CHARS).contains(&s.chars().count()) && !s.chars().any(char::is_control)
    };
    if !fits(&id.system) || !fits(&id.value) || id.system.contains(['|', ' ']) {
        return Err(unprocessable(
            "invalid_identifier",
            "patient.identifier needs a system (a URI, no `|`) and a value, each 1 to 256 characters",
        ));
    }
    let catalog = state.purposes;
    if !catalog.is_known(&body.purpose) {
        return Err(unprocessable(
            "unknown_purpose",
            "purpose must be a v3 ActReason purpose of use",
        ));
    }
    if !client.may_use_purpose(&body.purpose, catalog, &state.settings.roles) {
        return Err(unprocessable(
            "purpose_not_allowed",
            "the purpose is not allowed for this client",
        ));
    }
    let mut classes: Vec<String> = Vec::new();
    for class in &body.data_classes {
        if !validate::is_resource_type(class) {
            return Err(unprocessable(
                "unknown_data_class",
                format!(
                    "data class `{}` is not a FHIR R4 resource type",
                    validate::printable(class, 64)
                ),
            ));
        }
        if !client.resources.iter().any(|r| r == "*" || r == class) {
            return Err(unprocessable(
                "data_class_not_allowed",
                format!("data class `{class}` is outside this client's registration"),
            ));
        }
        if !classes.contains(class) {
            classes.push(class.clone());
        }
    }
    if classes.is_empty() || classes.len() > MAX_CLASSES {
        return Err(unprocessable(
            "invalid_data_classes",
            "give 1 to 20 data classes",
        ));
    }
    let period = match &body.period {
        None => (None, None),
        Some(p) => {
            let start = p.start.as_deref().map(|s| parse_date_time(s).ok_or(()));
            let end = p.end.as_deref().map(|s| parse_date_time(s).ok_or(()));
            let bad = || {
                unprocessable(
                    "invalid_period",
                    "period.start and period.end must be FHIR dates or dateTimes, start before end",
                )
            };
            match (start, end) {
                (Some(Err(())), _) | (_, Some(Err(()))) => return Err(bad()),
                (Some(Ok(s)), Some(Ok(e))) if s.0 > e.1 => return Err(bad()),
                _ => (p.start.clone(), p.end.clone()),
            }
        }
    };
    let reason = body.reason.trim();
    if !(1..=MAX_REASON_CHARS).contains(&reason.chars().count())
        || reason
            .chars()
            .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
    {
        return Err(unprocessable(
            "invalid_reason",
            "reason must be 1 to 1000 characters of text",
        ));
    }
    Ok(Checked {
        token: format!("{}|{}", id.system, id.value),
        classes,
        period,
    })
}

/// `POST /api/v1/access-requests`.
#[post("/api/v1/access-requests")]
pub async fn create(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    body: Json<NewAccessRequest>,
) -> Result<HttpResponse, ApiError> {
    let body = body.into_inner();
    let client_id = claims.client_id.clone();
    let row = state
        .store
        .run(move |conn| identity::active_client(conn, &client_id))
        .await
        .map_err(ApiError::from)?
        .ok_or_else(ApiError::unauthorized)?;
    let client = registry::from_row(row)?;
    if client.role == Role::DataSource {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a data source may not ask for access",
        ));
    }
    let checked = check(&body, &client, &state)?;
    let id = uuid::Uuid::now_v7().to_string();
    let row = AccessRequestRow {
        id: id.clone(),
        client_id: client.id.clone(),
        patient_id: None,
        status: RequestStatus::Unmatched.as_str().into(),
        identifier_system: body.patient.identifier.system,
        identifier_value: body.patient.identifier.value,
        purpose: body.purpose,
        data_classes: json!(checked.classes).to_string(),
        period_start: checked.period.0,
        period_end: checked.period.1,
        reason: body.reason.trim().to_string(),
        created: now_micros(),
        decided_at: None,
        decided_by: None,
        consent_id: None,
    };
    let token = checked.token;
    let (patient, row) = state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let filter = TokenFilter {
                    kind: "identifier".into(),
                    tokens: vec![token],
                    codes: Vec::new(),
                };
                // Up to two ids: one is a match, two is ambiguous and as good as none.
                let found = ids_by_identifier(conn, "Patient", &filter)?;
                let mut row = row;
                if let [only] = found.as_slice() {
                    row.patient_id = Some(only.clone());
                    row.status = RequestStatus::Pending.as_str().into();
                }
                rows::insert(conn, &row)?;
                if let Some(patient) = &row.patient_id {
                    notify::enqueue_access_request(conn, patient, &row.id).map_err(
                        |e| match e {
                            notify::NotifyError::Store(e) => ApiError::from(e),
                            other => ApiError::internal(other),
                        },
                    )?;
                }
                Ok::<_, ApiError>((row.patient_id.clone(), row))
            })
        })
        .await?;
    let mut entry = audit::entry_for(
        &Principal::Client(Box::new(claims)),
        AuditAction::Request,
        AuditOutcome::Success,
        audit::request_id(&req),
    );
    entry.patient_id = patient.clone();
    entry.detail.insert("access_request".into(), id.clone());
    entry
        .detail
        .insert("requested_purpose".into(), row.purpose.clone());
    entry
        .detail
        .insert("data_classes".into(), checked.classes.join(","));
    audit::record(&state, entry).await?;
    tracing::info!(access_request = %id, client_id = %row.client_id, matched = patient.is_some(), "access request received");
    Ok(HttpResponse::Accepted()
        .insert_header(("Location", format!("/api/v1/access-requests/{id}")))
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"id": id, "status": "submitted"})))
}

/// What the requesting client may know: unmatched looks like pending, so nothing leaks.
fn status_for_client(status: &str) -> &'static str {
    match RequestStatus::parse(status) {
        Some(RequestStatus::Approved) => "approved",
        Some(RequestStatus::Declined) => "declined",
        _ => "submitted",
    }
}

/// The whole request, for the patient and operators; the identifier for operators only.
fn view((row, client): &Listed, operator: bool) -> Value {
    let classes: Value = serde_json::from_str(&row.data_classes).unwrap_or_else(|_| json!([]));
    let period = match (&row.period_start, &row.period_end) {
        (None, None) => Value::Null,
        (start, end) => json!({"start": start, "end": end}),
    };
    let mut out = json!({
        "id": row.id,
        "status": row.status,
        "patient": row.patient_id.as_ref().map(|p| format!("Patient/{p}")),
        "client": {"id": row.client_id, "name": client.name, "organization": client.organization, "role": client.role},
        "purpose": row.purpose,
        "data_classes": classes,
        "period": period,
        "reason": row.reason,
        "created": format_instant(row.created),
        "decided": row.decided_at.map(format_instant),
        "decided_by": row.decided_by,
        "consent": row.consent_id.as_ref().map(|c| format!("Consent/{c}")),
    });
    if operator {
        out["identifier"] = json!({"system": row.identifier_system, "value": row.identifier_value});
    }
    out
}

fn bad_query(message: &str) -> ApiError {
    problem(StatusCode::BAD_REQUEST, "invalid_query", message)
}

/// The listing's query; a patient always sees only their own requests.
fn parse_list_query(reader: &Reader, query: &str) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery {
        patient_id: reader.only_patient.clone(),
        limit: DEFAULT_LIMIT,
        ..ListQuery::default()
    };
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        match key.as_ref() {
            "status" => {
                q.status = Some(RequestStatus::parse(&value).ok_or_else(|| {
                    bad_query("status must be pending, approved, declined or unmatched")
                })?);
            }
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(&value).to_string();
                if !validate::is_valid_id(&id) {
                    return Err(bad_query("patient must be a FHIR id"));
                }
                if reader.only_patient.as_ref().is_some_and(|own| *own != id) {
                    return Err(problem(
                        StatusCode::FORBIDDEN,
                        "forbidden",
                        "a patient sees only their own requests",
                    ));
                }
                q.patient_id = Some(id);
            }
            "limit" => {
                q.limit = value
                    .parse::<i64>()
                    .ok()
                    .filter(|n| (1..=MAX_LIMIT).contains(n))
                    .ok_or_else(|| bad_query("limit must be an integer from 1 to 200"))?;
            }
            "before" => {
                let id = uuid::Uuid::parse_str(&value)
                    .map_err(|_| bad_query("before must be a request id"))?;
                q.before = Some(id.hyphenated().to_string());
            }
            _ => {
                return Err(bad_query(
                    "unknown parameter; use status, patient, limit or before",
                ));
            }
        }
    }
    Ok(q)
}

/// Records an operator's look at requests (a patient's look at their own discloses nothing).
async fn audit_operator_view(
    state: &AppState,
    reader: &Reader,
    req: &HttpRequest,
    patient: Option<String>,
    count: usize,
) -> Result<(), ApiError> {
    if reader.only_patient.is_some() {
        return Ok(());
    }
    let mut entry = audit::entry_for(
        &reader.principal,
        AuditAction::Read,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = patient;
    entry.detail.insert("view".into(), "access_requests".into());
    entry.detail.insert("count".into(), count.to_string());
    audit::record(state, entry).await.map(|_| ())
}

/// `GET /api/v1/access-requests`.
#[get("/api/v1/access-requests")]
pub async fn list(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let query = parse_list_query(&reader, req.query_string())?;
    let page = ListQuery {
        limit: query.limit + 1,
        ..query.clone()
    };
    let mut found = state
        .store
        .run(move |conn| rows::list(conn, &page))
        .await
        .map_err(ApiError::from)?;
    let more = found.len() as i64 > query.limit;
    found.truncate(query.limit as usize);
    let next = match found.last() {
        Some((last, _)) if more => {
            let mut link = form_urlencoded::Serializer::new(String::new());
            if let Some(status) = query.status {
                link.append_pair("status", status.as_str());
            }
            if let Some(patient) = &query.patient_id {
                link.append_pair("patient", patient);
            }
            link.append_pair("limit", &query.limit.to_string());
            link.append_pair("before", &last.id);
            Some(format!("/api/v1/access-requests?{}", link.finish()))
        }
        _ => None,
    };
    audit_operator_view(&state, &reader, &req, query.patient_id.clone(), found.len()).await?;
    let operator = reader.only_patient.is_none();
    let items: Vec<Value> = found.iter().map(|l| view(l, operator)).collect();
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(json!({"access_requests": items, "next": next})))
}

/// Loads a request; `None` for an id that cannot be one.
async fn load(state: &AppState, id: &str) -> Result<Option<Listed>, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let id = id.to_string();
    state
        .store
        .run(move |conn| rows::find(conn, &id))
        .await
        .map_err(ApiError::from)
}

/// `GET /api/v1/access-requests/{id}`.
#[get("/api/v1/access-requests/{id}")]
pub async fn show(
    state: Data<AppState>,
    Caller(principal): Caller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let listed = load(&state, &path.into_inner())
        .await?
        .ok_or_else(unknown_request)?;
    let row = &listed.0;
    let body = match &principal {
        Principal::Client(c) if c.client_id == row.client_id => {
            json!({"id": row.id, "status": status_for_client(&row.status)})
        }
        Principal::Patient { patient_id, .. } if row.patient_id.as_ref() == Some(patient_id) => {
            view(&listed, false)
        }
        Principal::Operator { .. } => {
            let reader = Reader {
                principal: principal.clone(),
                only_patient: None,
            };
            audit_operator_view(&state, &reader, &req, row.patient_id.clone(), 1).await?;
            view(&listed, true)
        }
        _ => return Err(unknown_request()),
    };
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(body))
}

/// A request the reader may decide, still pending.
async fn decidable(state: &AppState, reader: &Reader, id: &str) -> Result<Listed, ApiError> {
    let listed = load(state, id).await?.ok_or_else(unknown_request)?;
    let row = &listed.0;
    let visible = match &reader.only_patient {
        Some(own) => row.patient_id.as_ref() == Some(own),
        None => true,
    };
    if !visible {
        return Err(unknown_request());
    }
    if row.status != RequestStatus::Pending.as_str() {
        return Err(already_decided());
    }
    Ok(listed)
}

fn already_decided() -> ApiError {
    problem(
        StatusCode::CONFLICT,
        "access_request_not_pending",
        "this access request is no longer pending",
    )
}

fn decided_by(reader: &Reader) -> &'static str {
    if reader.only_patient.is_some() {
        "patient"
    } else {
        "operator"
    }
}

/// The Consent an approval creates: the client (as `Device/{client_id}`, role IRCP) may have
/// the requested classes for the requested purpose, from now until `expires`.
fn consent_for(
    row: &AccessRequestRow,
    patient: &str,
    consent_id: &str,
    now: i64,
    expires: Option<&str>,
) -> Value {
    let classes: Vec<String> = serde_json::from_str(&row.data_classes).unwrap_or_default();
    let mut provision = json!({
        "type": "permit",
        "period": {"start": format_instant(now)},
        "actor": [{
            "role": {"coding": [{"system": PARTICIPATION_TYPE_SYSTEM, "code": "IRCP"}]},
            "reference": {"reference": format!("Device/{}", row.client_id)}
        }],
        "purpose": [{"system": ACT_REASON_SYSTEM, "code": row.purpose}],
        "class": classes.iter().map(|c| json!({"system": RESOURCE_TYPES_SYSTEM, "code": c})).collect::<Vec<_>>(),
    });
    if let Some(end) = expires {
        provision["period"]["end"] = json!(end);
    }
    if row.period_start.is_some() || row.period_end.is_some() {
        let mut period = json!({});
        if let Some(start) = &row.period_start {
            period["start"] = json!(start);
        }
        if let Some(end) = &row.period_end {
            period["end"] = json!(end);
        }
        provision["dataPeriod"] = period;
    }
    json!({
        "resourceType": "Consent",
        "id": consent_id,
        "identifier": [{"system": REQUEST_IDENTIFIER_SYSTEM, "value": row.id}],
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": format_instant(now),
        "performer": [{"reference": format!("Patient/{patient}")}],
        "policyRule": {"coding": [{"system": ACT_CODE_SYSTEM, "code": "OPTIN"}]},
        "provision": provision,
    })
}

/// The approval body: empty, or `{"expires": dateTime}` in the future.
fn parse_approval(bytes: &[u8], now: i64) -> Result<Approval, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Approval::default());
    }
    let approval: Approval = serde_json::from_slice(bytes).map_err(|e| {
        problem(
            StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not the JSON this endpoint takes: {e}"),
        )
    })?;
    if let Some(expires) = &approval.expires {
        match parse_date_time(expires) {
            Some((_, last)) if last > now => {}
            _ => {
                return Err(unprocessable(
                    "invalid_expires",
                    "expires must be a FHIR dateTime in the future",
                ));
            }
        }
    }
    Ok(approval)
}

async fn audit_decision(
    state: &AppState,
    reader: &Reader,
    req: &HttpRequest,
    action: AuditAction,
    row: &AccessRequestRow,
    consent_id: Option<&str>,
) -> Result<(), ApiError> {
    let mut entry = audit::entry_for(
        &reader.principal,
        action,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = row.patient_id.clone();
    if let Some(id) = consent_id {
        entry.consents = vec![id.to_string()];
        entry.resources = vec![format!("Consent/{id}")];
    }
    entry.detail.insert("access_request".into(), row.id.clone());
    entry
        .detail
        .insert("requesting_client".into(), row.client_id.clone());
    audit::record(state, entry).await.map(|_| ())
}

/// `POST /api/v1/access-requests/{id}/approve`.
#[post("/api/v1/access-requests/{id}/approve")]
pub async fn approve(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
    body: Bytes,
) -> Result<HttpResponse, ApiError> {
    let now = now_micros();
    let approval = parse_approval(&body, now)?;
    let (mut row, client) = decidable(&state, &reader, &path.into_inner()).await?;
    let patient = row.patient_id.clone().ok_or_else(already_decided)?;
    let consent_id = ingest::new_id();
    let consent = consent_for(
        &row,
        &patient,
        &consent_id,
        now,
        approval.expires.as_deref(),
    );
    if let Err(defects) = Consent::from_fhir(&consent) {
        let codes: Vec<&str> = defects.defects.iter().map(|d| d.kind.code()).collect();
        return Err(unprocessable(
            "invalid_consent",
            format!("the consent would be invalid: {}", codes.join(", ")),
        ));
    }
    let by = decided_by(&reader);
    let (key, cid) = (row.id.clone(), consent_id.clone());
    state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                let decided = Decided {
                    id: &key,
                    status: RequestStatus::Approved,
                    at: now,
                    by,
                    consent_id: Some(&cid),
                };
                if !rows::decide(conn, &decided)? {
                    return Err(already_decided());
                }
                ingest::put(conn, "Consent", &cid, consent)?;
                Ok(())
            })
        })
        .await?;
    row.status = RequestStatus::Approved.as_str().into();
    row.decided_at = Some(now);
    row.decided_by = Some(by.into());
    row.consent_id = Some(consent_id.clone());
    audit_decision(
        &state,
        &reader,
        &req,
        AuditAction::Grant,
        &row,
        Some(&consent_id),
    )
    .await?;
    audit_decision(
        &state,
        &reader,
        &req,
        AuditAction::Approve,
        &row,
        Some(&consent_id),
    )
    .await?;
    tracing::info!(access_request = %row.id, consent = %consent_id, "access request approved");
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view(&(row, client), reader.only_patient.is_none())))
}

/// `POST /api/v1/access-requests/{id}/decline`.
#[post("/api/v1/access-requests/{id}/decline")]
pub async fn decline(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let now = now_micros();
    let (mut row, client) = decidable(&state, &reader, &path.into_inner()).await?;
    let by = decided_by(&reader);
    let key = row.id.clone();
    let decided = state
        .store
        .run(move |conn| {
            let d = Decided {
                id: &key,
                status: RequestStatus::Declined,
                at: now,
                by,
                consent_id: None,
            };
            rows::decide(conn, &d)
        })
        .await
        .map_err(ApiError::from)?;
    if !decided {
        return Err(already_decided());
    }
    row.status = RequestStatus::Declined.as_str().into();
    row.decided_at = Some(now);
    row.decided_by = Some(by.into());
    audit_decision(&state, &reader, &req, AuditAction::Decline, &row, None).await?;
    tracing::info!(access_request = %row.id, "access request declined");
    Ok(HttpResponse::Ok()
        .insert_header(("Cache-Control", "no-store"))
        .json(view(&(row, client), reader.only_patient.is_none())))
}
