//! The log read back: the patient's accounting of disclosures and a FHIR AuditEvent view.
//!
//! - `GET /api/v1/patients/{id}/access-log`: what left about one patient, when, to whom,
//!   why and under which consents, each with what the patient needs to check that the
//!   entry is in the signed log (leaf index, leaf hash, canonical bytes, the newest
//!   checkpoint and the inclusion proof URL at its size). JSON, or CSV (RFC 4180) with
//!   `?format=csv` or `Accept: text/csv`. Errors are problem+json.
//! - `GET /fhir/AuditEvent?patient=&agent=&date=&_count=&_cursor=` and
//!   `GET /fhir/AuditEvent/{sequence}`: the entries as FHIR R4 AuditEvents, built on every
//!   request from the entries (never stored as resources). Errors are OperationOutcomes.
//!
//! Who sees what: a patient sees only entries about themself; an operator sees any.
//!
//! Choices, also written down in `docs/AUDIT.md`:
//! - The access log lists successful `read`, `search`, `export` and `disclose` entries by
//!   recipients and by operators (marked `operator`), and leaves out the patient's own
//!   reads (entries by the patient page's client id `patient`): HIPAA's accounting covers
//!   disclosures to others, and the patient knows what they read. The AuditEvent view
//!   shows every entry about the patient, own reads and refusals included.
//! - Reading the log is not itself audited: the log holds ids only (no patient data), and
//!   an entry per look at the log would make every look change it. An IHE "audit log
//!   used" event needs its own action code in `audit::entry` first.
//! - Paging is keyset on the sequence (newest first), so pages stay stable while the log
//!   grows; there is no total.
//!
//! One file (about 1000 lines, a fifth of them tests) holds both views because they share
//! the query parsing, the recipient join and the entry decoding; the CSV writer is small
//! enough to live here too.

use std::collections::{BTreeMap, HashMap};

use actix_web::http::StatusCode;
use actix_web::http::header::{ACCEPT, LINK};
use actix_web::web::{Data, Path};
use actix_web::{HttpRequest, HttpResponse, get};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::AppState;
use super::auth::Reader;
use super::error::{ApiError, FHIR_JSON};
use crate::audit::{AuditEntry, AuditOutcome, leaf_hash};
use crate::records::dates;
use crate::store::audit::{self as rows, CheckpointRow, EntryFilter, EntryRow};
use crate::store::identity::ClientRow;

/// The actions that disclose patient data, listed in the access log.
const DISCLOSURE_ACTIONS: [&str; 4] = ["read", "search", "export", "disclose"];
/// The client id the gateway writes for a patient acting for themself.
const PATIENT_CLIENT: &str = "patient";
/// The client id the gateway writes for an operator.
const OPERATOR_CLIENT: &str = "operator";
/// Base of the gateway's FHIR extension and code system URLs.
const CANONICAL: &str = "https://consentgate.dev/fhir";

/// Query of the access log, parsed.
#[derive(Debug, Default)]
pub(crate) struct LogQuery {
    since: Option<i64>,
    until: Option<i64>,
    recipient: Option<String>,
    count: usize,
    before: Option<i64>,
    format: Option<Format>,
    /// The parameters to repeat in a `next` link.
    echo: Vec<(&'static str, String)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Json,
    Csv,
}

fn bad_query(code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, message)
}

/// Each parameter at most once, so a request means one thing.
fn single_params(raw: &str) -> Result<BTreeMap<String, String>, (&'static str, String)> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let name = name.into_owned();
        if params.insert(name.clone(), value.into_owned()).is_some() {
            return Err((
                "repeated_parameter",
                format!(
                    "the parameter `{}` may appear once",
                    crate::records::validate::printable(&name, 40)
                ),
            ));
        }
    }
    Ok(params)
}

fn page_size(value: &str, limits: &crate::config::Limits) -> Option<usize> {
    let n: usize = value.parse().ok()?;
    Some(n.clamp(1, limits.max_page_size))
}

fn cursor(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0 && value.bytes().all(|b| b.is_ascii_digit()))
}

fn is_token(value: &str) -> bool {
    (1..=256).contains(&value.len()) && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

pub(crate) fn parse_log_query(
    raw: &str,
    limits: &crate::config::Limits,
) -> Result<LogQuery, ApiError> {
    let params = single_params(raw).map_err(|(c, m)| bad_query(c, m))?;
    let mut q = LogQuery {
        count: limits.default_page_size,
        ..LogQuery::default()
    };
    let bad = |code, message: &str| bad_query(code, message);
    for (name, value) in params {
        match name.as_str() {
            "since" | "until" => {
                let (start, end) = dates::parse(&value).map_err(|e| match e {
                    dates::DateError::Malformed => bad(
                        "invalid_date",
                        "`since` and `until` must be FHIR dates or dateTimes",
                    ),
                    dates::DateError::OutOfRange => bad(e.code(), &e.to_string()),
                })?;
                if name == "since" {
                    q.since = Some(start);
                    q.echo.push(("since", value));
                } else {
                    q.until = Some(end);
                    q.echo.push(("until", value));
                }
            }
            "recipient" => {
                if !is_token(&value) {
                    return Err(bad("invalid_recipient", "`recipient` must be a client id"));
                }
                q.recipient = Some(value.clone());
                q.echo.push(("recipient", value));
            }
            "_count" => {
                q.count = page_size(&value, limits)
                    .ok_or_else(|| bad("invalid_count", "`_count` must be a whole number"))?;
            }
            "before" => {
                q.before = Some(cursor(&value).ok_or_else(|| {
                    bad("invalid_cursor", "`before` must be a log sequence number")
                })?);
            }
            "format" | "_format" => {
                q.format = Some(match value.as_str() {
                    "json" | "application/json" => Format::Json,
                    "csv" | "text/csv" => Format::Csv,
                    _ => return Err(bad("unsupported_format", "`format` is `json` or `csv`")),
                });
                q.echo.push(("format", value));
            }
            other => {
                return Err(bad_query(
                    "unknown_parameter",
                    format!(
                        "the parameter `{}` is not supported here",
                        crate::records::validate::printable(other, 40)
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// CSV when asked for by `format`, or by an `Accept` header naming `text/csv`.
fn wants_csv(req: &HttpRequest, format: Option<Format>) -> bool {
    match format {
        Some(f) => f == Format::Csv,
        None => req
            .headers()
            .get(ACCEPT)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.to_ascii_lowercase().contains("text/csv")),
    }
}

/// A URL on this gateway with a query string.
fn url_with(base: &str, path: &str, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    }
}

/// One row, decoded; a row that does not decode is a damaged log, never shown half.
struct Decoded<'r> {
    row: &'r EntryRow,
    entry: AuditEntry,
}

fn decode(rows: &[EntryRow]) -> Result<Vec<Decoded<'_>>, ApiError> {
    rows.iter()
        .map(|row| {
            serde_json::from_str(&row.body)
                .map(|entry| Decoded { row, entry })
                .map_err(|_| {
                    ApiError::internal(format!(
                        "audit entry {} does not decode; run `consentgate audit verify`",
                        row.seq
                    ))
                })
        })
        .collect()
}

/// Runs `filter` (one row more than a page) and joins the clients named.
async fn load(
    state: &AppState,
    filter: EntryFilter,
) -> Result<(Vec<EntryRow>, HashMap<String, ClientRow>), ApiError> {
    state
        .store
        .run(move |conn| {
            let found = rows::find_entries(conn, &filter)?;
            let mut ids: Vec<String> = found.iter().map(|r| r.client_id.clone()).collect();
            ids.sort();
            ids.dedup();
            let clients = rows::clients_named(conn, &ids)?
                .into_iter()
                .map(|c| (c.id.clone(), c))
                .collect();
            Ok::<_, ApiError>((found, clients))
        })
        .await
}

/// The newest checkpoint, signed now when this instance signs and the log has grown.
async fn newest_checkpoint(state: &Data<AppState>) -> Result<Option<CheckpointRow>, ApiError> {
    let st = state.clone();
    tokio::task::spawn_blocking(move || st.checkpoints.latest(&st.store))
        .await
        .map_err(ApiError::internal)?
        .map_err(|e| ApiError::internal(e.to_string()))
}

/// `GET /api/v1/patients/{id}/access-log`.
#[get("/api/v1/patients/{id}/access-log")]
pub async fn access_log(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let patient = path.into_inner();
    if let Some(own) = &reader.only_patient
        && *own != patient
    {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a patient may read only their own access log",
        ));
    }
    if !crate::records::validate::is_valid_id(&patient) {
        return Err(bad_query(
            "invalid_patient_id",
            "the patient id is not a FHIR id",
        ));
    }
    let q = parse_log_query(req.query_string(), &state.settings.limits)?;
    let csv = wants_csv(&req, q.format);
    let filter = EntryFilter {
        patient_id: Some(patient.clone()),
        client_id: q.recipient.clone(),
        exclude_clients: vec![PATIENT_CLIENT.into()],
        actions: DISCLOSURE_ACTIONS.iter().map(|a| a.to_string()).collect(),
        outcomes: vec![AuditOutcome::Success.as_str().into()],
        since: q.since,
        until: q.until,
        before_seq: q.before,
        limit: (q.count + 1) as i64,
    };
    let (mut found, clients) = load(&state, filter).await?;
    let more = found.len() > q.count;
    found.truncate(q.count);
    // Read after the entries, so that it covers them whenever this instance signs.
    let checkpoint = newest_checkpoint(&state).await?;
    let decoded = decode(&found)?;
    let path = format!("/api/v1/patients/{patient}/access-log");
    let next = more.then(|| {
        let mut params = q.echo.clone();
        params.push(("_count", q.count.to_string()));
        params.push(("before", found.last().map_or(0, |r| r.seq).to_string()));
        url_with(&state.base_url, &path, &params)
    });
    let view = LogView {
        base: &state.base_url,
        checkpoint: checkpoint.as_ref(),
        clients: &clients,
    };
    let mut response = HttpResponse::Ok();
    response.insert_header(("Cache-Control", "no-store"));
    if let Some(next) = &next {
        response.insert_header((LINK, format!("<{next}>; rel=\"next\"")));
    }
    if csv {
        return Ok(response
            .content_type("text/csv; charset=utf-8; header=present")
            .body(view.csv(&decoded)));
    }
    let disclosures: Vec<Value> = decoded.iter().map(|d| view.json(d)).collect();
    Ok(response.json(json!({
        "patient_id": patient,
        "disclosures": disclosures,
        "checkpoint": checkpoint.as_ref().map(|c| json!({
            "size": c.size,
            "note": c.note,
            "verifier_key": state.checkpoints.verifier_key(),
            "verifier_key_url": format!("{}/api/v1/audit/verifier-key", state.base_url),
        })),
        "next": next,
    })))
}

/// Who received a disclosure, as the access log shows it.
struct Recipient<'a> {
    kind: &'static str,
    client_name: Option<&'a str>,
    organisation: Option<&'a str>,
}

/// What the access log needs to render entries.
struct LogView<'a> {
    base: &'a str,
    checkpoint: Option<&'a CheckpointRow>,
    clients: &'a HashMap<String, ClientRow>,
}

impl LogView<'_> {
    fn recipient(&self, entry: &AuditEntry) -> Recipient<'_> {
        let client = self.clients.get(&entry.client_id);
        Recipient {
            kind: if entry.client_id == OPERATOR_CLIENT && client.is_none() {
                "operator"
            } else {
                "client"
            },
            client_name: client.map(|c| c.name.as_str()),
            organisation: client.map(|c| c.organization.as_str()),
        }
    }

    /// The proof URL for a leaf, when the newest checkpoint covers it.
    fn proof_url(&self, seq: i64) -> Option<String> {
        let cp = self.checkpoint.filter(|c| seq < c.size)?;
        Some(url_with(
            self.base,
            "/api/v1/audit/proofs/inclusion",
            &[
                ("index", seq.to_string()),
                ("tree_size", cp.size.to_string()),
            ],
        ))
    }

    fn json(&self, d: &Decoded<'_>) -> Value {
        let e = &d.entry;
        let recipient = self.recipient(e);
        json!({
            "date": dates::format_instant(e.recorded_micros),
            "action": e.action.as_str(),
            "recipient": {
                "kind": recipient.kind,
                "client_id": e.client_id,
                "client_name": recipient.client_name,
                "organisation": recipient.organisation,
                "organisation_id": e.organisation,
                "user": e.user,
            },
            "disclosed": {
                "resource_types": type_counts(&e.resources),
                "resources": e.resources,
            },
            "purpose_of_use": e.purpose_of_use,
            "consents": e.consents,
            "policies": e.policies,
            "break_glass": e.break_glass.is_some(),
            "justification": e.break_glass,
            "request_id": e.request_id,
            "inclusion": {
                "leaf_index": d.row.seq,
                "leaf_hash": STANDARD.encode(leaf_hash(d.row.body.as_bytes())),
                "entry": d.row.body,
                "tree_size": self.checkpoint.map(|c| c.size),
                "proof_url": self.proof_url(d.row.seq),
            },
        })
    }

    fn csv(&self, decoded: &[Decoded<'_>]) -> String {
        let mut out = String::new();
        csv_record(&mut out, &CSV_HEADER);
        for d in decoded {
            let e = &d.entry;
            let r = self.recipient(e);
            let types = type_counts(&e.resources)
                .iter()
                .map(|(t, n)| format!("{t}:{n}"))
                .collect::<Vec<_>>()
                .join(" ");
            let fields = [
                dates::format_instant(e.recorded_micros),
                e.action.as_str().to_string(),
                r.kind.to_string(),
                e.client_id.clone(),
                r.client_name.unwrap_or_default().to_string(),
                r.organisation.unwrap_or_default().to_string(),
                e.user.clone().unwrap_or_default(),
                types,
                e.resources.join(" "),
                e.purpose_of_use.clone(),
                e.consents.join(" "),
                e.policies.join(" "),
                e.break_glass.is_some().to_string(),
                e.break_glass.clone().unwrap_or_default(),
                d.row.seq.to_string(),
                STANDARD.encode(leaf_hash(d.row.body.as_bytes())),
                d.row.body.clone(),
                self.checkpoint
                    .map(|c| c.size.to_string())
                    .unwrap_or_default(),
                self.checkpoint.map(|c| c.note.clone()).unwrap_or_default(),
                self.proof_url(d.row.seq).unwrap_or_default(),
            ];
            csv_record(&mut out, &fields.each_ref().map(String::as_str));
        }
        out
    }
}

/// The access log's CSV columns.
const CSV_HEADER: [&str; 20] = [
    "date",
    "action",
    "recipient_kind",
    "client_id",
    "client_name",
    "organisation",
    "user",
    "resource_types",
    "resources",
    "purpose_of_use",
    "consents",
    "policies",
    "break_glass",
    "justification",
    "leaf_index",
    "leaf_hash",
    "entry",
    "tree_size",
    "checkpoint",
    "proof_url",
];

/// Resource types with how many resources of each an entry names.
fn type_counts(resources: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for r in resources {
        let ty = r.split_once('/').map_or(r.as_str(), |(t, _)| t);
        *counts.entry(ty).or_insert(0) += 1;
    }
    counts
}

/// Appends one RFC 4180 record (CRLF-terminated). A field is quoted when it holds a comma,
/// a double quote, CR or LF, with quotes doubled. A field a spreadsheet would run as a
/// formula (leading `=`, `+`, `-`, `@`, TAB or CR) gets a leading `'` (OWASP's advice on
/// CSV injection); the `entry` and `checkpoint` fields never start that way, so they stay
/// byte-exact for verification.
fn csv_record(out: &mut String, fields: &[&str]) {
    for (i, field) in fields.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        let guard = field.starts_with(['=', '+', '-', '@', '\t', '\r']);
        let quote = field.contains([',', '"', '\r', '\n']);
        if quote {
            out.push('"');
        }
        if guard {
            out.push('\'');
        }
        if quote {
            out.push_str(&field.replace('"', "\"\""));
            out.push('"');
        } else {
            out.push_str(field);
        }
    }
    out.push_str("\r\n");
}

/// Query of the AuditEvent search, parsed.
#[derive(Debug, Default)]
struct EventQuery {
    patient: Option<String>,
    agent: Option<String>,
    since: Option<i64>,
    until: Option<i64>,
    count: usize,
    before: Option<i64>,
    echo: Vec<(&'static str, String)>,
}

fn parse_event_query(raw: &str, limits: &crate::config::Limits) -> Result<EventQuery, ApiError> {
    let mut q = EventQuery {
        count: limits.default_page_size,
        ..EventQuery::default()
    };
    let bad = |message: &str| bad_query("invalid_search_value", message.to_string());
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        match name.as_str() {
            "patient" => {
                let id = value.strip_prefix("Patient/").unwrap_or(&value);
                if !crate::records::validate::is_valid_id(id) || q.patient.is_some() {
                    return Err(bad("`patient` must be one patient id or Patient reference"));
                }
                q.patient = Some(id.to_string());
                q.echo.push(("patient", value));
            }
            "agent" => {
                if !is_token(&value) || q.agent.is_some() {
                    return Err(bad("`agent` must be one client id"));
                }
                q.agent = Some(value.clone());
                q.echo.push(("agent", value));
            }
            "date" => {
                let (since, until) = date_bound(&value)?;
                q.since = q.since.max(since);
                q.until = match (q.until, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                q.echo.push(("date", value));
            }
            "_count" => {
                q.count = page_size(&value, limits)
                    .ok_or_else(|| bad("`_count` must be a whole number"))?;
            }
            "_cursor" => {
                q.before = Some(
                    cursor(&value)
                        .ok_or_else(|| bad("`_cursor` is not a paging token of this server"))?,
                );
            }
            "_format" if value.contains("json") => {}
            other => {
                return Err(bad_query(
                    "unsupported_search_parameter",
                    format!(
                        "search parameter `{}` is not supported on AuditEvent",
                        crate::records::validate::printable(other, 40)
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// `[since, until]` (inclusive micros) of one `date` value with FHIR's prefixes.
pub(crate) fn date_bound(value: &str) -> Result<(Option<i64>, Option<i64>), ApiError> {
    let (prefix, date) = match value.get(..2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (start, end) = dates::parse(date).map_err(|e| match e {
        dates::DateError::Malformed => bad_query(
            "invalid_search_value",
            "`date` must be a FHIR date or dateTime, optionally after eq, ge, gt, le or lt",
        ),
        dates::DateError::OutOfRange => bad_query(e.code(), e.to_string()),
    })?;
    Ok(match prefix {
        "eq" => (Some(start), Some(end)),
        "ge" => (Some(start), None),
        "gt" => (Some(end + 1), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start - 1)),
        _ => {
            return Err(bad_query(
                "unsupported_search_value",
                "on AuditEvent.date only the prefixes eq, ge, gt, le and lt are supported",
            ));
        }
    })
}

fn fhir_ok(body: &Value) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string())
}

/// `GET /fhir/AuditEvent?patient=&agent=&date=&_count=&_cursor=`.
#[get("/AuditEvent")]
pub async fn search_audit_events(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let q = parse_event_query(req.query_string(), &state.settings.limits)?;
    // A patient asking about someone else finds nothing, as in record searches.
    let (patient, nobody_else) = match (&reader.only_patient, &q.patient) {
        (Some(own), Some(asked)) => (Some(own.clone()), asked != own),
        (Some(own), None) => (Some(own.clone()), false),
        (None, asked) => (asked.clone(), false),
    };
    let filter = EntryFilter {
        patient_id: patient,
        client_id: q.agent.clone(),
        since: q.since,
        until: q.until,
        before_seq: q.before,
        limit: if nobody_else { 0 } else { (q.count + 1) as i64 },
        ..EntryFilter::default()
    };
    let (mut found, clients) = load(&state, filter).await?;
    let more = found.len() > q.count;
    found.truncate(q.count);
    let decoded = decode(&found)?;
    let mut links = vec![json!({
        "relation": "self",
        "url": url_with(&state.fhir_base(), "/AuditEvent", &with_count(&q.echo, q.count, q.before)),
    })];
    if more && let Some(last) = found.last() {
        links.push(json!({
            "relation": "next",
            "url": url_with(&state.fhir_base(), "/AuditEvent", &with_count(&q.echo, q.count, Some(last.seq))),
        }));
    }
    let entries: Vec<Value> = decoded
        .iter()
        .map(|d| {
            json!({
                "fullUrl": format!("{}/AuditEvent/{}", state.fhir_base(), d.row.seq),
                "resource": audit_event(&state.base_url, d, clients.get(&d.entry.client_id)),
                "search": {"mode": "match"},
            })
        })
        .collect();
    Ok(fhir_ok(&json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    })))
}

fn with_count(
    echo: &[(&'static str, String)],
    count: usize,
    cursor: Option<i64>,
) -> Vec<(&'static str, String)> {
    let mut params = echo.to_vec();
    params.push(("_count", count.to_string()));
    if let Some(c) = cursor {
        params.push(("_cursor", c.to_string()));
    }
    params
}

/// `GET /fhir/AuditEvent/{sequence}`. Only all-digit ids are log entries; any other id
/// falls through to the generic read of a stored resource (an AuditEvent a data source
/// sent, or an official example).
#[get("/AuditEvent/{id:\\d+}")]
pub async fn read_audit_event(
    state: Data<AppState>,
    reader: Reader,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = path.into_inner();
    let not_found = || {
        ApiError::new(
            StatusCode::NOT_FOUND,
            "not_found",
            "AuditEvent is not known",
        )
    };
    let seq = cursor(&id).ok_or_else(not_found)? as u64;
    let (row, client) = state
        .store
        .run(move |conn| {
            let Some(row) = rows::entry_at(conn, seq)? else {
                return Ok::<_, ApiError>((None, None));
            };
            let client = rows::clients_named(conn, std::slice::from_ref(&row.client_id))?.pop();
            Ok((Some(row), client))
        })
        .await?;
    let row = row.ok_or_else(not_found)?;
    let rows_ = [row];
    let decoded = decode(&rows_)?;
    let d = &decoded[0];
    if reader
        .only_patient
        .as_ref()
        .is_some_and(|own| d.entry.patient_id.as_ref() != Some(own))
    {
        return Err(not_found());
    }
    Ok(fhir_ok(&audit_event(&state.base_url, d, client.as_ref())))
}

/// The AuditEvent `action` code of an entry's action.
fn action_code(action: &str) -> &'static str {
    match action {
        "read" | "search" | "export" | "disclose" => "R",
        "grant" | "request" => "C",
        "revoke" | "approve" | "decline" => "U",
        _ => "E",
    }
}

/// The RESTful interaction behind an action, when there is one.
fn restful_interaction(action: &str) -> Option<&'static str> {
    match action {
        "read" => Some("read"),
        "search" => Some("search-type"),
        "export" => Some("operation"),
        _ => None,
    }
}

fn coding(system: &str, code: &str, display: &str) -> Value {
    json!({"system": system, "code": code, "display": display})
}

fn reference_or_identifier(value: &str, system: String) -> Value {
    if value.contains('/') {
        json!({"reference": value})
    } else {
        json!({"identifier": {"system": system, "value": value}})
    }
}

/// An entry as a FHIR R4 AuditEvent shaped after IHE BALP.
fn audit_event(base: &str, d: &Decoded<'_>, client: Option<&ClientRow>) -> Value {
    let e = &d.entry;
    let action = e.action.as_str();
    let disclosure = DISCLOSURE_ACTIONS.contains(&action);
    let mut subtype = vec![coding(
        &format!("{CANONICAL}/CodeSystem/audit-action"),
        action,
        action,
    )];
    if let Some(code) = restful_interaction(action) {
        subtype.push(coding(
            "http://hl7.org/fhir/restful-interaction",
            code,
            code,
        ));
    }
    let (outcome, outcome_desc) = match e.outcome {
        AuditOutcome::Success => ("0", None),
        AuditOutcome::Denied => ("4", Some("denied")),
        AuditOutcome::Error => ("8", Some("error")),
    };
    let act_reason = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
    let mut purposes = Vec::new();
    if crate::auth::purposes::PurposeCatalog::official().is_known(&e.purpose_of_use) {
        purposes.push(json!({"coding": [{"system": act_reason, "code": e.purpose_of_use}]}));
    }
    if e.break_glass.is_some() {
        purposes.push(json!({"coding": [coding(act_reason, "BTG", "break the glass")]}));
    }
    let (client_display, organisation_display) = match client {
        Some(c) => (Some(c.name.as_str()), Some(c.organization.as_str())),
        None if e.client_id == OPERATOR_CLIENT => (Some("gateway operator"), None),
        None => (None, None),
    };
    let mut client_agent = json!({
        "type": {"coding": [coding("http://dicom.nema.org/resources/ontology/DCM", "110153", "Source Role ID")]},
        "who": {"identifier": {"system": format!("{base}/api/v1/clients"), "value": e.client_id}},
        "requestor": true,
        "policy": e.policies.iter().map(|p| format!("urn:consentgate:policy:{p}")).collect::<Vec<_>>(),
    });
    if let Some(name) = client_display {
        client_agent["who"]["display"] = json!(name);
    }
    if !purposes.is_empty() {
        client_agent["purposeOfUse"] = json!(purposes);
    }
    let mut agents = vec![client_agent];
    if let Some(user) = &e.user {
        agents.push(json!({"who": {"reference": user}, "requestor": true}));
    }
    let mut organisation = json!({
        "type": {"text": "organisation"},
        "who": reference_or_identifier(&e.organisation, format!("{base}/organisations")),
        "requestor": false,
    });
    if disclosure {
        organisation["type"] = json!({"coding": [coding(
            "http://terminology.hl7.org/CodeSystem/v3-ParticipationType",
            "IRCP",
            "information recipient",
        )]});
    }
    if let Some(name) = organisation_display {
        organisation["who"]["display"] = json!(name);
    }
    agents.push(organisation);

    let entity_type = "http://terminology.hl7.org/CodeSystem/audit-entity-type";
    let object_role = "http://terminology.hl7.org/CodeSystem/object-role";
    let mut entities = Vec::new();
    if let Some(p) = &e.patient_id {
        entities.push(json!({
            "what": {"reference": format!("Patient/{p}")},
            "type": coding(entity_type, "1", "Person"),
            "role": coding(object_role, "1", "Patient"),
        }));
    }
    for r in &e.resources {
        entities.push(json!({
            "what": {"reference": r},
            "type": coding(entity_type, "2", "System Object"),
            "role": coding(object_role, "4", "Domain Resource"),
        }));
    }
    for c in &e.consents {
        entities.push(json!({
            "what": {"reference": format!("Consent/{c}")},
            "type": coding(entity_type, "2", "System Object"),
            "role": coding(object_role, "13", "Security Resource"),
        }));
    }

    let mut extensions = vec![
        json!({"url": format!("{CANONICAL}/StructureDefinition/audit-log-entry"),
               "valueIdentifier": {"system": format!("{base}/api/v1/audit"), "value": d.row.seq.to_string()}}),
        json!({"url": format!("{CANONICAL}/StructureDefinition/audit-leaf-hash"),
               "valueBase64Binary": STANDARD.encode(leaf_hash(d.row.body.as_bytes()))}),
        json!({"url": format!("{CANONICAL}/StructureDefinition/request-id"),
               "valueString": e.request_id}),
    ];
    if let Some(j) = &e.break_glass {
        extensions.push(
            json!({"url": format!("{CANONICAL}/StructureDefinition/break-glass-justification"),
                               "valueString": j}),
        );
    }
    for (k, v) in &e.detail {
        extensions.push(
            json!({"url": format!("{CANONICAL}/StructureDefinition/audit-detail"),
                               "extension": [{"url": "name", "valueString": k},
                                             {"url": "value", "valueString": v}]}),
        );
    }

    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": d.row.seq.to_string(),
        "extension": extensions,
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"),
        "subtype": subtype,
        "action": action_code(action),
        "recorded": dates::format_instant(e.recorded_micros),
        "outcome": outcome,
        "agent": agents,
        "source": {
            "observer": {"identifier": {"system": "urn:ietf:rfc:3986", "value": base}, "display": "consentgate"},
            "type": [coding("http://terminology.hl7.org/CodeSystem/security-source-type", "4", "Application Server")],
        },
    });
    if let Some(desc) = outcome_desc {
        event["outcomeDesc"] = json!(desc);
    }
    if !purposes.is_empty() {
        event["purposeOfEvent"] = json!(purposes);
    }
    if !entities.is_empty() {
        event["entity"] = json!(entities);
    }
    event
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(fields: &[&str]) -> String {
        let mut out = String::new();
        csv_record(&mut out, fields);
        out
    }

    #[test]
    fn csv_quotes_as_rfc_4180_asks() {
        let cases: [(&[&str], &str); 7] = [
            (&["a", "b"], "a,b\r\n"),
            (&["", ""], ",\r\n"),
            (&["a,b"], "\"a,b\"\r\n"),
            (&["say \"hi\""], "\"say \"\"hi\"\"\"\r\n"),
            (&["two\nlines", "x"], "\"two\nlines\",x\r\n"),
            (&["cr\r"], "\"cr\r\"\r\n"),
            (&["{\"a\":1}"], "\"{\"\"a\"\":1}\"\r\n"),
        ];
        for (fields, want) in cases {
            assert_eq!(record(fields), want, "{fields:?}");
        }
    }

    #[test]
    fn csv_defuses_formulas() {
        assert_eq!(record(&["=1+1"]), "'=1+1\r\n");
        assert_eq!(record(&["@x", "+y", "-z"]), "'@x,'+y,'-z\r\n");
        assert_eq!(record(&["=a,b"]), "\"'=a,b\"\r\n");
        assert_eq!(record(&["a=b"]), "a=b\r\n");
    }

    #[test]
    fn type_counts_group_references() {
        let refs = ["Observation/a", "Condition/b", "Observation/c"].map(String::from);
        let counts = type_counts(&refs);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![("Condition", 1), ("Observation", 2)]
        );
    }

    #[test]
    fn date_prefixes_become_bounds() {
        let (start, end) = dates::parse_range("2026-01").unwrap();
        let cases = [
            ("2026-01", (Some(start), Some(end))),
            ("eq2026-01", (Some(start), Some(end))),
            ("ge2026-01", (Some(start), None)),
            ("gt2026-01", (Some(end + 1), None)),
            ("le2026-01", (None, Some(end))),
            ("lt2026-01", (None, Some(start - 1))),
        ];
        for (value, want) in cases {
            assert_eq!(date_bound(value).unwrap(), want, "{value}");
        }
        for bad in ["ne2026", "sa2026", "yesterday", "ge"] {
            assert!(date_bound(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn actions_map_to_fhir_codes() {
        let cases = [
            ("read", "R"),
            ("search", "R"),
            ("export", "R"),
            ("disclose", "R"),
            ("grant", "C"),
            ("request", "C"),
            ("revoke", "U"),
            ("approve", "U"),
            ("decline", "U"),
            ("decision", "E"),
            ("token", "E"),
            ("refusal", "E"),
        ];
        for (action, code) in cases {
            assert_eq!(action_code(action), code, "{action}");
        }
    }

    #[test]
    fn access_log_queries_are_strict() {
        let limits = crate::config::Settings::load_from(None, Vec::<(String, String)>::new())
            .unwrap()
            .limits;
        let q = parse_log_query(
            "since=2026-01&until=2026-02-03&recipient=c1&_count=5000&before=9",
            &limits,
        )
        .unwrap();
        assert_eq!(q.count, limits.max_page_size);
        assert_eq!(q.before, Some(9));
        assert_eq!(q.since, Some(dates::parse_range("2026-01").unwrap().0));
        assert_eq!(q.until, Some(dates::parse_range("2026-02-03").unwrap().1));
        for (raw, code) in [
            ("since=yesterday", "invalid_date"),
            ("_count=x", "invalid_count"),
            ("before=-1", "invalid_cursor"),
            ("before=1e3", "invalid_cursor"),
            ("format=xml", "unsupported_format"),
            ("recipient=a%20b", "invalid_recipient"),
            ("since=2026&since=2027", "repeated_parameter"),
            ("nope=1", "unknown_parameter"),
        ] {
            let e = parse_log_query(raw, &limits).unwrap_err();
            assert_eq!(e.code, code, "{raw}");
        }
    }
}
