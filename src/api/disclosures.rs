//! Disclosure packages (DESIGN.md flow 3: evidence for a disability claim), described for
//! people in `docs/DISCLOSURES.md`:
//!
//! - `POST /api/v1/disclosures` (the patient, or an operator for a patient): records a Consent
//!   for one recipient, purpose and authorization (`policy`), selects the resources (a list
//!   or a filter), decides each with [`crate::decision::decide`] (action `disclose`), freezes
//!   the permitted ones into a FHIR Bundle (`collection`) and signs its exact bytes with a
//!   detached JWS (RFC 7515 appendix F) under a key of the gateway's JWKS;
//! - `GET /api/v1/disclosures?patient=`: what was sent, to whom, and when it was fetched;
//! - `GET /api/v1/disclosures/{id}/bundle` (the recipient only; others get 404): the stored
//!   bytes with `X-JWS-Signature`, until the package expires or its retrieval limit is
//!   reached (then 410), and only while the patient's consents still permit every entry;
//! - `GET /api/v1/disclosures/{id}/signature` (the recipient only): the detached JWS.
//!
//! Psychotherapy notes (`PSYTHPN`) never enter a package through a filter; only an explicit
//! list can carry them. The sensitive labels of the chosen resources are named in a nested
//! `permit` provision of the consent (the root's `securityLabel` is a match condition, so
//! naming them there would leave every unlabelled resource out).
//!
//! Why this file is long (about 1,100 lines): besides the four handlers it holds the
//! feature's domain code (the consent built for a selection, the filter, the frozen Bundle,
//! the detached JWS), which only these handlers use. Those parts are pure and unit-tested
//! below; they belong in a `disclosure` domain module beside `consent/` once a second
//! caller (the patient page, the CLI) needs them.

use std::collections::{BTreeMap, BTreeSet};

use actix_web::http::StatusCode;
use actix_web::http::header::{CACHE_CONTROL, LOCATION};
use actix_web::web::{Data, Json, Path};
use actix_web::{HttpRequest, HttpResponse, get, post};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::Ed25519KeyPair;
use serde::Deserialize;
use serde_json::{Value, json};

use super::auth::{ClientCaller, Reader};
use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::clients::{Client, Role};
use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::consent::model::CONSENT_ACTION_SYSTEM;
use crate::consent::{Coding, Consent};
use crate::decision::{self, Decision, Question, Requester};
use crate::policy::Obligation;
use crate::policy::PolicyAction;
use crate::records::dates::{format_instant, now_micros};
use crate::records::{consents, index, ingest, validate};
use crate::release::minimum_necessary;
use crate::store::disclosures::{self as rows, DisclosureRow};
use crate::store::{DbConn, identity, resources, write_tx};

/// Most resources one package may hold.
const MAX_SELECTED: usize = 500;
/// The label that a filter always leaves out: psychotherapy notes (45 CFR 164.508(a)(2)).
const PSYCHOTHERAPY_NOTES: &str = "PSYTHPN";
/// The roles a package may go to.
const RECIPIENT_ROLES: [Role; 3] = [Role::DisabilityAssessor, Role::Insurer, Role::Clinician];
/// The response header carrying the detached JWS.
pub const SIGNATURE_HEADER: &str = "X-JWS-Signature";
/// Longest validity of a package, in microseconds (a leap year's worth of days).
const MAX_LIFETIME_MICROS: i64 = 366 * 24 * 3600 * 1_000_000;

/// The body of `POST /api/v1/disclosures`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewDisclosure {
    /// The patient (required for operators; a patient may only name themself).
    #[serde(default)]
    pub patient: Option<String>,
    /// The recipient client's id.
    pub recipient: String,
    /// The v3 ActReason purpose of use.
    pub purpose: String,
    /// The URI naming the authorization (e.g. an SSA-827 form).
    pub policy: String,
    /// What to disclose.
    pub selection: Selection,
    /// A FHIR dateTime in the future, at most one year ahead.
    pub expires: String,
    /// How many times the recipient may fetch the package (1 to 100).
    pub max_retrievals: i64,
}

/// Exactly one of an explicit list or a filter.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Selection {
    /// `Type/id` of each resource.
    #[serde(default)]
    pub resources: Option<Vec<String>>,
    /// A filter over the patient's current resources.
    #[serde(default)]
    pub filter: Option<Filter>,
}

/// A filter over the patient's current resources.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Filter {
    /// Resource types to include.
    pub types: Vec<String>,
    /// Only resources whose clinical date starts on or after this FHIR date.
    #[serde(default)]
    pub since: Option<String>,
    /// Security label codes to leave out (`PSYTHPN` is always left out).
    #[serde(default)]
    pub exclude_labels: Vec<String>,
}

/// A selection once checked.
enum Chosen {
    Listed(Vec<(String, String)>),
    Filtered {
        types: BTreeSet<String>,
        since: Option<i64>,
        exclude: BTreeSet<String>,
    },
}

fn problem(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

fn invalid(code: &'static str, message: impl Into<String>) -> ApiError {
    problem(StatusCode::UNPROCESSABLE_ENTITY, code, message)
}

fn unknown_disclosure() -> ApiError {
    problem(
        StatusCode::NOT_FOUND,
        "unknown_disclosure",
        "no such disclosure",
    )
}

/// Runs database work off the async workers; failures answer as problem+json.
async fn db<T, F>(state: &AppState, work: F) -> Result<T, ApiError>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn) -> Result<T, ApiError> + Send + 'static,
{
    state.store.run(work).await
}

/// The patient a reader acts for: a patient for themself, an operator for the one named.
fn patient_for(reader: &Reader, named: Option<String>) -> Result<String, ApiError> {
    let patient = match (&reader.only_patient, named) {
        (Some(own), Some(named)) if *own != named => {
            return Err(problem(
                StatusCode::FORBIDDEN,
                "forbidden",
                "a patient discloses only their own records",
            ));
        }
        (Some(own), _) => own.clone(),
        (None, Some(named)) => named,
        (None, None) => {
            return Err(problem(
                StatusCode::BAD_REQUEST,
                "missing_patient",
                "`patient` is required",
            ));
        }
    };
    if !validate::is_valid_id(&patient) {
        return Err(problem(
            StatusCode::BAD_REQUEST,
            "invalid_patient",
            "patient must be a FHIR id",
        ));
    }
    Ok(patient)
}

fn parse_selection(selection: Selection) -> Result<Chosen, ApiError> {
    match (selection.resources, selection.filter) {
        (Some(list), None) => {
            if list.is_empty() || list.len() > MAX_SELECTED {
                return Err(invalid(
                    "invalid_selection",
                    format!("list 1 to {MAX_SELECTED} resources"),
                ));
            }
            let mut seen = BTreeSet::new();
            let mut out = Vec::new();
            for r in list {
                let parsed = r
                    .split_once('/')
                    .filter(|(ty, id)| validate::is_resource_type(ty) && validate::is_valid_id(id));
                let Some((ty, id)) = parsed else {
                    return Err(invalid(
                        "invalid_reference",
                        format!(
                            "`{}` is not a reference Type/id",
                            validate::printable(&r, 80)
                        ),
                    ));
                };
                if seen.insert(r.clone()) {
                    out.push((ty.to_string(), id.to_string()));
                }
            }
            Ok(Chosen::Listed(out))
        }
        (None, Some(f)) => {
            if f.types.is_empty()
                || f.types.len() > 50
                || !f.types.iter().all(|t| validate::is_resource_type(t))
            {
                return Err(invalid(
                    "invalid_selection",
                    "filter.types must list 1 to 50 FHIR resource types",
                ));
            }
            let since = match &f.since {
                None => None,
                Some(s) => Some(
                    crate::consent::dates::parse_date_time(s)
                        .map(|r| r.0)
                        .ok_or_else(|| {
                            invalid("invalid_selection", "filter.since must be a FHIR date")
                        })?,
                ),
            };
            if f.exclude_labels
                .iter()
                .any(|l| l.is_empty() || l.len() > 64 || l.contains(char::is_whitespace))
            {
                return Err(invalid(
                    "invalid_selection",
                    "filter.exclude_labels must be label codes",
                ));
            }
            let mut exclude: BTreeSet<String> = f.exclude_labels.into_iter().collect();
            exclude.insert(PSYCHOTHERAPY_NOTES.to_string());
            Ok(Chosen::Filtered {
                types: f.types.into_iter().collect(),
                since,
                exclude,
            })
        }
        _ => Err(invalid(
            "invalid_selection",
            "give exactly one of selection.resources and selection.filter",
        )),
    }
}

/// `Type/id` of a resource.
fn reference_of(resource: &Value) -> String {
    format!(
        "{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    )
}

/// The codes of a resource's `meta.security`.
fn label_codes(resource: &Value) -> impl Iterator<Item = &str> {
    resource
        .pointer("/meta/security")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|c| c.get("code").and_then(Value::as_str))
}

/// Whether a resource passes a filter.
fn passes(
    resource: &Value,
    types: &BTreeSet<String>,
    since: Option<i64>,
    exclude: &BTreeSet<String>,
) -> bool {
    let ty = resource["resourceType"].as_str().unwrap_or_default();
    let id = resource["id"].as_str().unwrap_or_default();
    types.contains(ty)
        && since.is_none_or(|s| {
            index::extract(ty, id, resource)
                .clinical
                .is_some_and(|(start, _)| start >= s)
        })
        && !label_codes(resource).any(|code| exclude.contains(code))
}

/// What the consent records, apart from the resources.
struct Terms {
    consent_id: String,
    patient: String,
    recipient: String,
    purpose: String,
    policy: String,
    start: i64,
    expires: String,
}

impl Terms {
    /// The Consent for exactly these resources; their sensitive labels are named in a nested
    /// permit, since on the root a `securityLabel` would restrict it to labelled resources.
    fn consent(&self, selected: &[Value]) -> Value {
        let data: Vec<Value> = selected
            .iter()
            .map(|r| json!({"meaning": "instance", "reference": {"reference": reference_of(r)}}))
            .collect();
        let labels: BTreeSet<(String, String)> = selected
            .iter()
            .flat_map(|r| decision::resource_facts(r).security_labels)
            .filter(Coding::is_sensitive_label)
            .map(|c| (c.system, c.code))
            .collect();
        let mut provision = json!({
            "type": "permit",
            "period": {"start": format_instant(self.start), "end": self.expires},
            "actor": [{
                "role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
                "reference": {"reference": format!("Device/{}", self.recipient)}
            }],
            "action": [{"coding": [{"system": CONSENT_ACTION_SYSTEM, "code": "disclose"}]}],
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": self.purpose}],
            "data": data,
        });
        if !labels.is_empty() {
            let named: Vec<Value> = labels
                .iter()
                .map(|(s, c)| json!({"system": s, "code": c}))
                .collect();
            provision["provision"] = json!([{"type": "permit", "securityLabel": named}]);
        }
        json!({
            "resourceType": "Consent",
            "id": self.consent_id,
            "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": format!("Patient/{}", self.patient)},
            "dateTime": format_instant(self.start),
            "performer": [{"reference": format!("Patient/{}", self.patient)}],
            "policy": [{"uri": self.policy}],
            "provision": provision,
        })
    }
}

/// The patient's consents plus `consent`, checked as any stored consent is.
fn with_consent(existing: &[Consent], consent: &Value) -> Result<Vec<Consent>, ApiError> {
    let parsed = Consent::from_fhir(consent).map_err(|defects| {
        let first = defects
            .defects
            .first()
            .map(ToString::to_string)
            .unwrap_or_default();
        invalid(
            "invalid_disclosure",
            format!("the disclosure does not make a valid Consent: {first}"),
        )
    })?;
    let mut all = existing.to_vec();
    all.push(parsed);
    Ok(all)
}

/// Decides each resource for disclosure to `requester` under `consents`.
fn decide_all(
    state: &AppState,
    requester: &Requester,
    consents: &[Consent],
    patient: &str,
    purpose: &str,
    resources: &[Value],
) -> Vec<Decision> {
    let now = now_micros();
    resources
        .iter()
        .map(|r| {
            decision::decide(
                &state.institution.policies,
                state.purposes,
                consents,
                &Question {
                    requester,
                    purpose,
                    action: PolicyAction::Disclose,
                    patient_id: patient,
                    resource: r,
                    break_glass: None,
                    now,
                },
            )
        })
        .collect()
}

/// A permit whose obligations a package can honour (only minimum necessary; anything else,
/// such as de-identification, cannot go into an identified evidence package).
fn releasable(d: &Decision) -> bool {
    d.permit
        && d.obligations
            .iter()
            .all(|o| *o == Obligation::MinimumNecessary)
}

/// The frozen Bundle's exact bytes.
fn freeze(fhir_base: &str, id: &str, now: i64, resources: &[Value]) -> Vec<u8> {
    let entries: Vec<Value> = resources
        .iter()
        .map(|r| json!({"fullUrl": format!("{fhir_base}/{}", reference_of(r)), "resource": r}))
        .collect();
    let bundle = json!({
        "resourceType": "Bundle",
        "id": id,
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{id}")},
        "type": "collection",
        "timestamp": format_instant(now),
        "entry": entries,
    });
    bundle.to_string().into_bytes()
}

/// A JWS in compact serialization with a detached payload (RFC 7515 appendix F): the
/// signature covers `base64url(header) . base64url(payload)`, the payload part is left empty.
pub fn detached_jws(kid: &str, key: &Ed25519KeyPair, payload: &[u8]) -> String {
    let header = json!({"alg": "EdDSA", "kid": kid, "typ": "JOSE", "cty": "fhir+json"});
    let header = URL_SAFE_NO_PAD.encode(header.to_string());
    let input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(payload));
    let signature = key.sign(input.as_bytes());
    format!("{header}..{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
}

fn sign(state: &AppState, payload: &[u8]) -> Result<String, ApiError> {
    let (kid, key) = state
        .auth
        .keyring
        .signing_key_pair()
        .ok_or_else(|| ApiError::internal("the keyring has no signing key"))?;
    Ok(detached_jws(&kid, &key, payload))
}

/// The `kid` of a compact JWS.
fn kid_of(jws: &str) -> Option<String> {
    let header = URL_SAFE_NO_PAD.decode(jws.split('.').next()?).ok()?;
    let header: Value = serde_json::from_slice(&header).ok()?;
    header.get("kid")?.as_str().map(str::to_string)
}

fn sha256_hex(bytes: &[u8]) -> String {
    ring::digest::digest(&ring::digest::SHA256, bytes)
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Whether a client may receive packages for `purpose`: an allowed role, and a purpose its
/// registration and its role allow (the same test as the token endpoint's).
fn check_recipient(state: &AppState, client: &Client, purpose: &str) -> Result<(), ApiError> {
    if !RECIPIENT_ROLES.contains(&client.role) {
        return Err(invalid(
            "recipient_role_not_allowed",
            "a disclosure goes to a disability assessor, an insurer or a clinician",
        ));
    }
    if !client.may_use_purpose(purpose, state.purposes, &state.settings.roles) {
        return Err(invalid(
            "purpose_not_allowed",
            "the purpose is not one the recipient's registration allows",
        ));
    }
    Ok(())
}

/// `POST /api/v1/disclosures`.
#[post("/api/v1/disclosures")]
pub async fn create(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
    body: Json<NewDisclosure>,
) -> Result<HttpResponse, ApiError> {
    create_package(&state, &reader, &req, body.into_inner()).await
}

async fn create_package(
    state: &AppState,
    reader: &Reader,
    req: &HttpRequest,
    ask: NewDisclosure,
) -> Result<HttpResponse, ApiError> {
    let patient = patient_for(reader, ask.patient)?;
    if !(1..=100).contains(&ask.max_retrievals) {
        return Err(invalid(
            "invalid_max_retrievals",
            "max_retrievals must be 1 to 100",
        ));
    }
    let now = now_micros();
    let expires = crate::consent::dates::parse_date_time(&ask.expires)
        .map(|r| r.1)
        .ok_or_else(|| {
            invalid(
                "invalid_expires",
                "expires must be a FHIR dateTime with a time zone",
            )
        })?;
    if expires <= now || expires > now + MAX_LIFETIME_MICROS {
        return Err(invalid(
            "invalid_expires",
            "expires must be in the future and at most one year ahead",
        ));
    }
    let policy_ok = reqwest::Url::parse(&ask.policy)
        .is_ok_and(|u| !u.cannot_be_a_base() || u.scheme() == "urn");
    if !policy_ok || ask.policy.len() > 2048 {
        return Err(invalid(
            "invalid_policy",
            "policy must be an absolute URI naming the authorization",
        ));
    }
    let chosen = parse_selection(ask.selection)?;
    let is_list = matches!(chosen, Chosen::Listed(_));
    let (recipient, p) = (ask.recipient.clone(), patient.clone());
    let (client, candidates, existing) = state
        .store
        .run(move |conn| {
            let client = identity::active_client(conn, &recipient)?.ok_or_else(|| {
                invalid(
                    "unknown_recipient",
                    "the recipient is not a registered client",
                )
            })?;
            let candidates: Vec<Value> = match chosen {
                Chosen::Listed(listed) => {
                    let mut out = Vec::with_capacity(listed.len());
                    for (ty, id) in listed {
                        let not_theirs = || {
                            invalid(
                                "not_a_record_of_the_patient",
                                format!("{ty}/{id} is not a record of this patient"),
                            )
                        };
                        let body = ingest::read(conn, &ty, &id).map_err(|_| not_theirs())?;
                        if index::patient_of(&ty, &id, &body).as_deref() != Some(p.as_str()) {
                            return Err(not_theirs());
                        }
                        out.push(body);
                    }
                    out
                }
                Chosen::Filtered {
                    types,
                    since,
                    exclude,
                } => resources::current_for_patient(conn, &p)?
                    .into_iter()
                    .filter(|(ty, _, _)| types.contains(ty))
                    .filter_map(|(_, _, body)| serde_json::from_str::<Value>(&body).ok())
                    .filter(|r| passes(r, &types, since, &exclude))
                    .collect(),
            };
            Ok::<_, ApiError>((client, candidates, consents::for_patient(conn, &p)?))
        })
        .await?;
    let client = registry::from_row(client)?;
    check_recipient(state, &client, &ask.purpose)?;
    if candidates.is_empty() {
        return Err(invalid(
            "empty_selection",
            "none of the patient's records matches the selection",
        ));
    }
    if candidates.len() > MAX_SELECTED {
        return Err(invalid(
            "selection_too_large",
            format!("a disclosure holds at most {MAX_SELECTED} resources"),
        ));
    }
    let requester = Requester::of(&client);
    let terms = Terms {
        consent_id: ingest::new_id(),
        patient: patient.clone(),
        recipient: client.id.clone(),
        purpose: ask.purpose.clone(),
        policy: ask.policy.clone(),
        start: now,
        expires: ask.expires.clone(),
    };
    // First pass: what institution policy and the patient's other consents let through.
    let all = with_consent(&existing, &terms.consent(&candidates))?;
    let decisions = decide_all(state, &requester, &all, &patient, &ask.purpose, &candidates);
    let (mut chosen, mut withheld) = (Vec::new(), Vec::new());
    for (r, d) in candidates.into_iter().zip(&decisions) {
        if releasable(d) {
            chosen.push(r)
        } else {
            withheld.push(reference_of(&r))
        }
    }
    // An explicit list is all or nothing: the patient picked each resource, so a package that
    // silently lacked one would misrepresent the evidence. A filter leaves withheld ones out.
    if chosen.is_empty() || (is_list && !withheld.is_empty()) {
        let named: Vec<&str> = withheld.iter().take(20).map(String::as_str).collect();
        return Err(invalid(
            "selection_not_permitted",
            format!(
                "policy or the patient's other consents do not permit disclosing: {}",
                named.join(", ")
            ),
        ));
    }
    // Second pass: the consent names exactly what is sent.
    let consent = terms.consent(&chosen);
    let all = with_consent(&existing, &consent)?;
    let decisions = decide_all(state, &requester, &all, &patient, &ask.purpose, &chosen);
    if !decisions.iter().all(releasable) {
        return Err(ApiError::internal(
            "a disclosure's own consent does not permit its selection",
        ));
    }
    let refs: Vec<String> = chosen.iter().map(reference_of).collect();
    let shaped: Vec<Value> = chosen
        .into_iter()
        .zip(&decisions)
        .map(|(mut r, d)| {
            if d.obligations.contains(&Obligation::MinimumNecessary) {
                minimum_necessary(&mut r);
            }
            r
        })
        .collect();
    let id = uuid::Uuid::now_v7().to_string();
    let bytes = freeze(&state.fhir_base(), &id, now, &shaped);
    let row = DisclosureRow {
        id: id.clone(),
        patient_id: patient.clone(),
        recipient: client.id.clone(),
        purpose: ask.purpose.clone(),
        policy_uri: ask.policy.clone(),
        consent_id: terms.consent_id.clone(),
        created: now,
        expires,
        max_retrievals: ask.max_retrievals,
        retrievals: 0,
        resources: Value::from(refs.clone()).to_string(),
        bundle_sha256: sha256_hex(&bytes),
        signature: sign(state, &bytes)?,
        bundle: String::from_utf8(bytes).map_err(ApiError::internal)?,
    };
    let (stored, consent_id) = (row.clone(), terms.consent_id.clone());
    state
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put(conn, "Consent", &consent_id, consent)?;
                rows::insert(conn, &stored)?;
                Ok::<_, ApiError>(())
            })
        })
        .await?;
    let mut entry = audit::entry_for(
        &reader.principal,
        AuditAction::Disclose,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = Some(patient);
    entry.resources = refs.clone();
    entry.consents = vec![row.consent_id.clone()];
    entry.policies = policies_of(&decisions);
    entry.detail = BTreeMap::from([
        ("phase".into(), "grant".into()),
        ("disclosure".into(), id.clone()),
        ("recipient".into(), row.recipient.clone()),
        ("bundle_sha256".into(), row.bundle_sha256.clone()),
        ("count".into(), refs.len().to_string()),
    ]);
    audit::record(state, entry).await?;
    tracing::info!(disclosure = %id, recipient = %row.recipient, count = refs.len(), "disclosure created");
    Ok(HttpResponse::Created()
        .insert_header((LOCATION, format!("/api/v1/disclosures/{id}/bundle")))
        .json(json!({
            "id": id,
            "consent": row.consent_id,
            "recipient": row.recipient,
            "purpose": row.purpose,
            "policy": row.policy_uri,
            "bundle_sha256": row.bundle_sha256,
            "resources": refs,
            "withheld": withheld,
            "expires": ask.expires,
            "max_retrievals": row.max_retrievals,
        })))
}

fn policies_of(decisions: &[Decision]) -> Vec<String> {
    let set: BTreeSet<String> = decisions
        .iter()
        .flat_map(|d| d.policies.iter().cloned())
        .collect();
    set.into_iter().collect()
}

/// What a package's state is now, for its patient.
fn status_of(row: &DisclosureRow, consent_status: Option<&str>, now: i64) -> &'static str {
    if consent_status != Some("active") {
        "revoked"
    } else if now > row.expires {
        "expired"
    } else if row.retrievals >= row.max_retrievals {
        "exhausted"
    } else {
        "active"
    }
}

/// `GET /api/v1/disclosures?patient=`: the patient's packages, newest first, each with what
/// it holds and when it was fetched. Not audited: it holds ids only, like the access log.
#[get("/api/v1/disclosures")]
pub async fn for_patient(
    state: Data<AppState>,
    reader: Reader,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    let mut named = None;
    for (key, value) in form_urlencoded::parse(req.query_string().as_bytes()) {
        match key.as_ref() {
            "patient" => {
                named = Some(
                    index::patient_id_from_reference(&value).unwrap_or_else(|| value.into_owned()),
                )
            }
            _ => {
                return Err(problem(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    "the only parameter is `patient`",
                ));
            }
        }
    }
    let patient = patient_for(&reader, named)?;
    let (packages, retrievals, statuses, names) = state
        .store
        .run(move |conn| {
            let packages = rows::for_patient(conn, &patient)?;
            let ids: Vec<String> = packages.iter().map(|r| r.id.clone()).collect();
            let retrievals = rows::retrievals_of(conn, &ids)?;
            let statuses: BTreeMap<String, String> = consents::stored_for_patient(conn, &patient)?
                .into_iter()
                .filter_map(|c| {
                    Some((
                        c["id"].as_str()?.to_string(),
                        c["status"].as_str()?.to_string(),
                    ))
                })
                .collect();
            let mut names = BTreeMap::new();
            for recipient in packages
                .iter()
                .map(|r| r.recipient.clone())
                .collect::<BTreeSet<_>>()
            {
                if let Some(c) = identity::active_client(conn, &recipient)? {
                    names.insert(recipient, (c.name, c.organization));
                }
            }
            Ok::<_, ApiError>((packages, retrievals, statuses, names))
        })
        .await?;
    let now = now_micros();
    let out: Vec<Value> = packages
        .iter()
        .map(|row| {
            let fetched: Vec<String> = retrievals
                .iter()
                .filter(|r| r.disclosure_id == row.id)
                .map(|r| format_instant(r.fetched))
                .collect();
            let (name, organization) = names.get(&row.recipient).cloned().unzip();
            json!({
                "id": row.id,
                "status": status_of(row, statuses.get(&row.consent_id).map(String::as_str), now),
                "recipient": {"id": row.recipient, "name": name, "organization": organization},
                "purpose": row.purpose,
                "policy": row.policy_uri,
                "consent": row.consent_id,
                "created": format_instant(row.created),
                "expires": format_instant(row.expires),
                "max_retrievals": row.max_retrievals,
                "retrievals": fetched,
                "resources": serde_json::from_str::<Value>(&row.resources).unwrap_or(Value::Null),
                "bundle_sha256": row.bundle_sha256,
            })
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "disclosures": out })))
}

/// The package `id` if `claims` names its recipient; 404 for anyone else.
async fn recipients_package(
    state: &AppState,
    claims: &AccessClaims,
    id: String,
) -> Result<DisclosureRow, ApiError> {
    if !validate::is_valid_id(&id) {
        return Err(unknown_disclosure());
    }
    let row = db(state, move |conn| Ok(rows::find(conn, &id)?)).await?;
    row.filter(|r| r.recipient == claims.client_id)
        .ok_or_else(unknown_disclosure)
}

/// The package's signature, re-signed with the current key when its key has left the JWKS
/// (rotated out), so that it can always be checked against the published keys.
async fn current_signature(state: &AppState, row: &DisclosureRow) -> Result<String, ApiError> {
    let published = kid_of(&row.signature).is_some_and(|kid| {
        state.auth.keyring.jwks()["keys"]
            .as_array()
            .is_some_and(|keys| keys.iter().any(|k| k["kid"] == kid.as_str()))
    });
    if published {
        return Ok(row.signature.clone());
    }
    let jws = sign(state, row.bundle.as_bytes())?;
    let (id, stored) = (row.id.clone(), jws.clone());
    db(state, move |conn| {
        Ok(rows::set_signature(conn, &id, &stored)?)
    })
    .await?;
    Ok(jws)
}

/// Whether the patient's consents, read afresh, still permit every entry of the package to
/// go to its recipient: the package's own consent active, and each resource decided again.
async fn still_permitted(state: &AppState, row: &DisclosureRow) -> Result<Vec<Decision>, ApiError> {
    let (patient, recipient, consent_id) = (
        row.patient_id.clone(),
        row.recipient.clone(),
        row.consent_id.clone(),
    );
    let (client, own, consents) = db(state, move |conn| {
        let client = identity::active_client(conn, &recipient)?;
        let own = ingest::read(conn, "Consent", &consent_id).ok();
        Ok((client, own, consents::for_patient(conn, &patient)?))
    })
    .await?;
    if own.as_ref().and_then(|c| c["status"].as_str()) != Some("active") {
        return Err(problem(
            StatusCode::GONE,
            "disclosure_revoked",
            "the patient revoked this disclosure",
        ));
    }
    let Some(client) = client else {
        return Err(unknown_disclosure());
    };
    let bundle: Value = serde_json::from_str(&row.bundle).map_err(ApiError::internal)?;
    let resources: Vec<Value> = bundle["entry"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| e["resource"].clone())
        .collect();
    let decisions = decide_all(
        state,
        &Requester::of(&registry::from_row(client)?),
        &consents,
        &row.patient_id,
        &row.purpose,
        &resources,
    );
    if decisions.iter().all(releasable) {
        Ok(decisions)
    } else {
        Err(problem(
            StatusCode::GONE,
            "disclosure_withdrawn",
            "the patient's consents no longer permit this disclosure",
        ))
    }
}

/// `GET /api/v1/disclosures/{id}/bundle`: the frozen bundle, for its recipient.
#[get("/api/v1/disclosures/{id}/bundle")]
pub async fn fetch_bundle(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    req: HttpRequest,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    serve_bundle(&state, claims, &req, path.into_inner()).await
}

async fn serve_bundle(
    state: &AppState,
    claims: AccessClaims,
    req: &HttpRequest,
    id: String,
) -> Result<HttpResponse, ApiError> {
    let row = recipients_package(state, &claims, id).await?;
    if !state.purposes.is_a(&claims.purpose_of_use, &row.purpose) {
        return Err(problem(
            StatusCode::FORBIDDEN,
            "purpose_mismatch",
            "the token's purpose of use is not the one the patient authorized",
        ));
    }
    let now = now_micros();
    if now > row.expires {
        return Err(problem(
            StatusCode::GONE,
            "disclosure_expired",
            "this disclosure has expired",
        ));
    }
    if row.retrievals >= row.max_retrievals {
        return Err(problem(
            StatusCode::GONE,
            "retrieval_limit_reached",
            "this disclosure was fetched as often as the patient allowed",
        ));
    }
    let decisions = still_permitted(state, &row).await?;
    let signature = current_signature(state, &row).await?;
    let id = row.id.clone();
    let claimed = db(state, move |conn| {
        Ok(rows::claim_retrieval(conn, &id, now)?)
    })
    .await?;
    let Some((retrieval, number)) = claimed else {
        return Err(problem(
            StatusCode::GONE,
            "retrieval_limit_reached",
            "this disclosure was fetched as often as the patient allowed",
        ));
    };
    let mut entry = audit::entry_for(
        &Principal::Client(Box::new(claims.clone())),
        AuditAction::Disclose,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = Some(row.patient_id.clone());
    entry.resources = serde_json::from_str(&row.resources).map_err(ApiError::internal)?;
    let mut consents: BTreeSet<String> = decisions
        .iter()
        .flat_map(|d| d.consent.deciding.iter().map(|p| p.consent_id.clone()))
        .filter(|c| validate::is_valid_id(c))
        .collect();
    consents.insert(row.consent_id.clone());
    entry.consents = consents.into_iter().collect();
    entry.policies = policies_of(&decisions);
    entry.detail = BTreeMap::from([
        ("phase".into(), "retrieval".into()),
        ("disclosure".into(), row.id.clone()),
        ("retrieval".into(), number.to_string()),
        ("bundle_sha256".into(), row.bundle_sha256.clone()),
        ("count".into(), entry.resources.len().to_string()),
    ]);
    let seq = match audit::record(state, entry).await {
        Ok(seq) => seq,
        Err(e) => {
            // Nothing is sent, so the retrieval is given back.
            let (id, r) = (row.id.clone(), retrieval.clone());
            if let Err(undo) = state
                .store
                .run(move |conn| rows::release_retrieval(conn, &id, &r))
                .await
            {
                tracing::error!(error = %undo, disclosure = %row.id, "an unsent retrieval could not be given back");
            }
            return Err(e);
        }
    };
    let linked = state
        .store
        .run(move |conn| rows::set_retrieval_audit(conn, &retrieval, seq as i64))
        .await;
    if let Err(e) = linked {
        tracing::warn!(error = %e, disclosure = %row.id, "retrieval not linked to its audit entry");
    }
    tracing::info!(disclosure = %row.id, client_id = %claims.client_id, retrieval = number, "disclosure fetched");
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .insert_header((SIGNATURE_HEADER, signature))
        .insert_header((CACHE_CONTROL, "no-store"))
        .body(row.bundle))
}

/// `GET /api/v1/disclosures/{id}/signature`: the detached JWS, for the recipient. It holds no
/// record content, so it stays available after the package expires, for later checks.
#[get("/api/v1/disclosures/{id}/signature")]
pub async fn fetch_signature(
    state: Data<AppState>,
    ClientCaller(claims): ClientCaller,
    path: Path<String>,
) -> Result<HttpResponse, ApiError> {
    let row = recipients_package(&state, &claims, path.into_inner()).await?;
    let signature = current_signature(&state, &row).await?;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; charset=utf-8")
        .body(signature))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::model::ACT_CODE_SYSTEM;
    use ring::signature::{ED25519, KeyPair, UnparsedPublicKey};

    #[test]
    fn detached_jws_verifies_and_omits_the_payload() {
        let pkcs8 = Ed25519KeyPair::generate_pkcs8(&ring::rand::SystemRandom::new()).unwrap();
        let key = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap();
        let payload = br#"{"resourceType":"Bundle"}"#;
        let jws = detached_jws("k1", &key, payload);
        let parts: Vec<&str> = jws.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert!(parts[1].is_empty(), "the payload is detached");
        assert_eq!(kid_of(&jws).as_deref(), Some("k1"));
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(parts[0]).unwrap()).unwrap();
        assert_eq!(header["alg"], "EdDSA");
        let public = UnparsedPublicKey::new(&ED25519, key.public_key().as_ref().to_vec());
        let input = |p: &[u8]| format!("{}.{}", parts[0], URL_SAFE_NO_PAD.encode(p));
        let sig = URL_SAFE_NO_PAD.decode(parts[2]).unwrap();
        assert!(public.verify(input(payload).as_bytes(), &sig).is_ok());
        assert!(
            public
                .verify(input(br#"{"resourceType":"Bundlf"}"#).as_bytes(), &sig)
                .is_err()
        );
    }

    fn terms() -> Terms {
        Terms {
            consent_id: "c1".into(),
            patient: "p1".into(),
            recipient: "client-1".into(),
            purpose: "PATRQT".into(),
            policy: "https://www.ssa.gov/forms/ssa-827.pdf".into(),
            start: now_micros(),
            expires: "2099-01-01T00:00:00Z".into(),
        }
    }

    #[test]
    fn the_consent_validates_and_names_sensitive_labels_in_a_nested_permit() {
        let plain =
            json!({"resourceType": "Condition", "id": "a", "subject": {"reference": "Patient/p1"}});
        let labelled = json!({"resourceType": "Condition", "id": "b", "subject": {"reference": "Patient/p1"},
            "meta": {"security": [{"system": ACT_CODE_SYSTEM, "code": "SEX"}, {"system": ACT_CODE_SYSTEM, "code": "OTHER"}]}});
        let consent = terms().consent(&[plain.clone(), labelled]);
        let parsed = Consent::from_fhir(&consent).unwrap();
        assert_eq!(consent["provision"]["type"], "permit");
        assert_eq!(consent["provision"]["data"].as_array().unwrap().len(), 2);
        assert_eq!(
            consent["provision"]["provision"][0]["securityLabel"],
            json!([{"system": ACT_CODE_SYSTEM, "code": "SEX"}])
        );
        assert_eq!(parsed.patient_id(), "p1");
        let unlabelled = terms().consent(&[plain]);
        assert!(unlabelled["provision"].get("provision").is_none());
    }

    #[test]
    fn filters_leave_out_psychotherapy_notes_and_older_records() {
        let chosen = parse_selection(Selection {
            resources: None,
            filter: Some(Filter {
                types: vec!["Condition".into()],
                since: Some("2015-01-01".into()),
                exclude_labels: vec![],
            }),
        })
        .ok()
        .unwrap();
        let Chosen::Filtered {
            types,
            since,
            exclude,
        } = chosen
        else {
            panic!("a filter")
        };
        let at = |date: &str, label: Option<&str>| {
            let mut r = json!({"resourceType": "Condition", "id": "x", "onsetDateTime": date});
            if let Some(l) = label {
                r["meta"] = json!({"security": [{"system": ACT_CODE_SYSTEM, "code": l}]});
            }
            r
        };
        assert!(passes(&at("2016-05-01", None), &types, since, &exclude));
        assert!(!passes(&at("2014-12-31", None), &types, since, &exclude));
        assert!(!passes(
            &at("2016-05-01", Some(PSYCHOTHERAPY_NOTES)),
            &types,
            since,
            &exclude
        ));
        let both = Selection {
            resources: Some(vec!["Condition/x".into()]),
            filter: Some(Filter {
                types: vec![],
                since: None,
                exclude_labels: vec![],
            }),
        };
        assert!(parse_selection(both).is_err());
    }
}
