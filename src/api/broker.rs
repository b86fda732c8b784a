//! Consent-checked reads for recipient clients: `GET /fhir/{type}/{id}`,
//! `GET /fhir/{type}?patient=...` and `GET /fhir/Patient/{id}/$everything`.
//!
//! Every resource passes the one decision engine ([`crate::decision::decide`]) with the
//! patient's consents read afresh for this request, so a revoked or expired consent stops
//! access at the next request whatever tokens were issued. Obligations are applied before
//! anything leaves (de-identification for researchers, minimum necessary for insurers), and
//! each response is audited durably before it is sent.
//!
//! A recipient cannot tell a hidden resource from a missing one: a read answers the same 404
//! either way; a search leaves hidden resources out and fills its pages from the visible ones
//! only, so neither a page size nor a `next` link gives them away; searchsets carry no total.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use serde_json::{Value, json};

use super::error::{ApiError, FHIR_JSON};
use super::{AppState, audit};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::registry;
use crate::auth::tokens::AccessClaims;
use crate::auth::{Principal, scopes};
use crate::consent::Consent;
use crate::decision::{self, Decision, Question, Requester};
use crate::deid::{DeidError, Deidentifier, IdentifierSet};
use crate::policy::{Obligation, PolicyAction};
use crate::records::{RecordError, consents, index, ingest, search, validate};
use crate::store::identity;
use crate::store::resources as rows;

fn not_known(resource_type: &str, id: &str) -> ApiError {
    RecordError::not_found("not_found", format!("{resource_type}/{id} is not known")).into()
}

/// The registered client behind a token, as the decision engine sees it.
pub async fn requester(state: &AppState, claims: &AccessClaims) -> Result<Requester, ApiError> {
    let id = claims.client_id.clone();
    let row = state
        .store
        .run(move |conn| identity::active_client(conn, &id))
        .await?
        .ok_or_else(ApiError::unauthorized)?;
    Ok(Requester::of(&registry::from_row(row)?))
}

/// Whether the granted scopes reach this resource (type, permission and `?category=`).
fn scope_allows(claims: &AccessClaims, resource: &Value, search: bool) -> bool {
    let ty = resource["resourceType"].as_str().unwrap_or_default();
    claims
        .scope
        .split_ascii_whitespace()
        .filter_map(scopes::Scope::parse)
        .filter(|s| {
            (s.resource == "*" || s.resource == ty) && if search { s.search } else { s.read }
        })
        .any(|s| match &s.query {
            None => true,
            Some(q) => form_urlencoded::parse(q.as_bytes()).all(|(k, v)| {
                k != "category"
                    || index::extract(ty, "", resource).terms.iter().any(|t| {
                        t.kind == "category"
                            && v.split(',').any(|want| {
                                want == t.code || want == format!("{}|{}", t.system, t.code)
                            })
                    })
            }),
        })
}

/// Decides each resource; returns the permitted ones with their decisions.
#[allow(clippy::too_many_arguments)]
pub fn decide_each(
    state: &AppState,
    requester: &Requester,
    claims: &AccessClaims,
    consents: &[Consent],
    patient: &str,
    resources: Vec<Value>,
    action: PolicyAction,
    search: bool,
) -> Vec<(Value, Decision)> {
    let now = crate::records::dates::now_micros();
    resources
        .into_iter()
        .filter(|r| scope_allows(claims, r, search))
        .filter_map(|r| {
            let d = decision::decide(
                &state.institution.policies,
                state.purposes,
                consents,
                &Question {
                    requester,
                    purpose: &claims.purpose_of_use,
                    action,
                    patient_id: patient,
                    resource: &r,
                    break_glass: claims.justification.as_deref(),
                    now,
                },
            );
            d.permit.then_some((r, d))
        })
        .collect()
}

/// Applies the obligations of each decision; a de-identification leak fails loudly.
pub fn shape(
    state: &AppState,
    claims: &AccessClaims,
    patient: &str,
    sources: &[Value],
    permitted: Vec<(Value, Decision)>,
) -> Result<Vec<Value>, ApiError> {
    let key_name = format!("client:{}", claims.client_id);
    shape_under(state, claims, &key_name, patient, sources, permitted)
}

/// As [`shape`], de-identifying under the key of study Group `study` (a Bulk Data export):
/// pseudonyms stable within the study, unlinkable across studies and clients.
pub fn shape_for_study(
    state: &AppState,
    claims: &AccessClaims,
    study: &str,
    patient: &str,
    sources: &[Value],
    permitted: Vec<(Value, Decision)>,
) -> Result<Vec<Value>, ApiError> {
    shape_under(
        state,
        claims,
        &format!("group:{study}"),
        patient,
        sources,
        permitted,
    )
}

fn shape_under(
    state: &AppState,
    claims: &AccessClaims,
    key_name: &str,
    patient: &str,
    sources: &[Value],
    permitted: Vec<(Value, Decision)>,
) -> Result<Vec<Value>, ApiError> {
    let needs_deid = permitted
        .iter()
        .any(|(_, d)| d.obligations.iter().any(Obligation::deidentifies));
    let key = if needs_deid {
        Some(state.shaping.study_key(key_name)?)
    } else {
        None
    };
    let identifiers = needs_deid.then(|| IdentifierSet::from_sources(sources));
    let today = time::OffsetDateTime::now_utc().date();
    let mut out = Vec::with_capacity(permitted.len());
    for (resource, d) in permitted {
        let mut shaped = resource;
        for obligation in &d.obligations {
            match obligation {
                Obligation::Deidentify(_) => {
                    let (Some(key), Some(ids)) = (&key, &identifiers) else {
                        continue;
                    };
                    let deid = Deidentifier::new(state.shaping.profile(), key, today);
                    match deid.deidentify_checked(&shaped, patient, ids) {
                        Ok(v) => shaped = v,
                        Err(DeidError::ResourceTypeNotInProfile { .. }) => {
                            // Default-deny: a type the profile does not allow never leaves.
                            shaped = Value::Null;
                        }
                        Err(e) => {
                            tracing::error!(code = e.code(), client_id = %claims.client_id, "de-identified output failed its leak scan");
                            return Err(ApiError::new(
                                StatusCode::INTERNAL_SERVER_ERROR,
                                "deidentification_failed",
                                "the de-identified output failed its identifier scan; nothing was sent",
                            ));
                        }
                    }
                }
                Obligation::MinimumNecessary => crate::release::minimum_necessary(&mut shaped),
                _ => {}
            }
        }
        if !shaped.is_null() {
            out.push(shaped);
        }
    }
    Ok(out)
}

/// Audits what leaves (one entry, this patient) and waits until it is durable.
async fn audit_release(
    state: &AppState,
    claims: &AccessClaims,
    req: &HttpRequest,
    action: AuditAction,
    patient: &str,
    released: &[(String, Decision)],
) -> Result<(), ApiError> {
    let mut entry = audit::entry_for(
        &Principal::Client(Box::new(claims.clone())),
        action,
        AuditOutcome::Success,
        audit::request_id(req),
    );
    entry.patient_id = Some(patient.to_string());
    entry.resources = released.iter().map(|(r, _)| r.clone()).collect();
    let mut consents: Vec<String> = released
        .iter()
        .flat_map(|(_, d)| d.consent.deciding.iter().map(|p| p.consent_id.clone()))
        .filter(|c| validate::is_valid_id(c))
        .collect();
    consents.sort();
    consents.dedup();
    entry.consents = consents;
    let mut policies: Vec<String> = released
        .iter()
        .flat_map(|(_, d)| d.policies.clone())
        .collect();
    policies.sort();
    policies.dedup();
    entry.policies = policies;
    entry
        .detail
        .insert("count".into(), released.len().to_string());
    audit::record(state, entry).await.map(|_| ())
}

/// Loads the consents of a patient and the patient's own resource (for the leak scan).
pub async fn patient_context(
    state: &AppState,
    patient: &str,
) -> Result<(Vec<Consent>, Vec<Value>), ApiError> {
    let p = patient.to_string();
    Ok(state
        .store
        .run(move |conn| {
            let consents = consents::for_patient(conn, &p)?;
            let sources: Vec<Value> = match ingest::read(conn, "Patient", &p) {
                Ok(v) => vec![v],
                Err(_) => Vec::new(),
            };
            Ok::<_, RecordError>((consents, sources))
        })
        .await?)
}

fn with_released_ids(permitted: &[(Value, Decision)]) -> Vec<(String, Decision)> {
    permitted
        .iter()
        .map(|(r, d)| {
            (
                format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap_or_default(),
                    r["id"].as_str().unwrap_or_default()
                ),
                d.clone(),
            )
        })
        .collect()
}

/// `GET /fhir/{type}/{id}` by a recipient.
pub async fn read(
    state: &AppState,
    claims: &AccessClaims,
    req: &HttpRequest,
    resource_type: String,
    id: String,
) -> Result<HttpResponse, ApiError> {
    validate::resource_type(&resource_type)?;
    let requester = requester(state, claims).await?;
    let (ty, key) = (resource_type.clone(), id.clone());
    let stored = state
        .store
        .run(move |conn| match ingest::read(conn, &ty, &key) {
            Ok(v) => Ok(Some(v)),
            Err(RecordError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        })
        .await?;
    // Missing, outside any patient, or hidden: the same answer.
    let Some(resource) = stored else {
        return Err(not_known(&resource_type, &id));
    };
    let Some(patient) = index::patient_of(&resource_type, &id, &resource) else {
        return Err(not_known(&resource_type, &id));
    };
    let (consents, sources) = patient_context(state, &patient).await?;
    let permitted = decide_each(
        state,
        &requester,
        claims,
        &consents,
        &patient,
        vec![resource],
        PolicyAction::Read,
        false,
    );
    if permitted.is_empty() {
        return Err(not_known(&resource_type, &id));
    }
    let released = with_released_ids(&permitted);
    let shaped = shape(state, claims, &patient, &sources, permitted)?;
    let Some(body) = shaped.into_iter().next() else {
        return Err(not_known(&resource_type, &id));
    };
    audit_release(state, claims, req, AuditAction::Read, &patient, &released).await?;
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(body.to_string()))
}

/// `GET /fhir/{type}?patient=...` by a recipient: one patient at a time.
pub async fn search_type(
    state: &AppState,
    claims: &AccessClaims,
    req: &HttpRequest,
    resource_type: String,
) -> Result<HttpResponse, ApiError> {
    let mut parsed = search::parse(&resource_type, req.query_string(), &state.settings.limits)?;
    let [patient] = parsed.query.patient_ids.as_slice() else {
        return Err(RecordError::invalid(
            "patient_required",
            "a recipient searches one patient's records: give exactly one `patient`",
        )
        .into());
    };
    let patient = patient.clone();
    let requester = requester(state, claims).await?;
    let (consents, sources) = patient_context(state, &patient).await?;
    // Fill the page from visible resources only, one more than the page to know whether
    // a next page exists, so that hidden resources change neither the page nor the links.
    let want = parsed.count;
    let mut visible: Vec<(Value, Decision)> = Vec::new();
    let mut exhausted = false;
    while visible.len() <= want && !exhausted {
        parsed.query.limit = (want as i64 + 1) * 2;
        let q = parsed.query.clone();
        let batch = state.store.run(move |conn| rows::search(conn, &q)).await?;
        exhausted = batch.len() < parsed.query.limit as usize;
        if let Some((last, _)) = batch.last() {
            parsed.query.after_id = Some(last.clone());
        }
        let resources: Vec<Value> = batch
            .into_iter()
            .filter_map(|(_, body)| serde_json::from_str(&body).ok())
            .collect();
        visible.extend(decide_each(
            state,
            &requester,
            claims,
            &consents,
            &patient,
            resources,
            PolicyAction::Read,
            true,
        ));
    }
    let has_next = visible.len() > want;
    visible.truncate(want);
    let next_cursor = visible
        .last()
        .and_then(|(r, _)| r["id"].as_str())
        .map(str::to_string);
    let released = with_released_ids(&visible);
    let shaped = shape(state, claims, &patient, &sources, visible)?;
    audit_release(state, claims, req, AuditAction::Search, &patient, &released).await?;
    let base = state.fhir_base();
    let link = |cursor: Option<&str>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &parsed.echo {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &want.to_string());
        if let Some(c) = cursor {
            q.append_pair("_cursor", c);
        }
        format!("{base}/{resource_type}?{}", q.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    if has_next && let Some(c) = &next_cursor {
        links.push(json!({"relation": "next", "url": link(Some(c))}));
    }
    let entries: Vec<Value> = shaped
        .into_iter()
        .map(|r| search::match_entry(&base, r))
        .collect();
    Ok(HttpResponse::Ok().content_type(FHIR_JSON).body(
        json!({"resourceType": "Bundle", "type": "searchset", "link": links, "entry": entries})
            .to_string(),
    ))
}

/// `GET /fhir/Patient/{id}/$everything` by a recipient: every visible resource of the
/// patient, shaped, in one searchset.
pub async fn everything(
    state: &AppState,
    claims: &AccessClaims,
    req: &HttpRequest,
    patient: String,
) -> Result<HttpResponse, ApiError> {
    if !validate::is_valid_id(&patient) {
        return Err(not_known("Patient", &patient));
    }
    let requester = requester(state, claims).await?;
    let (consents, sources) = patient_context(state, &patient).await?;
    let p = patient.clone();
    let all = state
        .store
        .run(move |conn| rows::current_for_patient(conn, &p))
        .await?;
    let resources: Vec<Value> = all
        .into_iter()
        .filter_map(|(_, _, body)| serde_json::from_str(&body).ok())
        .collect();
    let visible = decide_each(
        state,
        &requester,
        claims,
        &consents,
        &patient,
        resources,
        PolicyAction::Read,
        true,
    );
    if visible.is_empty() {
        return Err(not_known("Patient", &patient));
    }
    let released = with_released_ids(&visible);
    let shaped = shape(state, claims, &patient, &sources, visible)?;
    audit_release(state, claims, req, AuditAction::Read, &patient, &released).await?;
    let base = state.fhir_base();
    let entries: Vec<Value> = shaped
        .into_iter()
        .map(|r| search::match_entry(&base, r))
        .collect();
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for (r, _) in &released {
        *by_type
            .entry(r.split('/').next().unwrap_or_default().to_string())
            .or_default() += 1;
    }
    tracing::info!(client_id = %claims.client_id, types = by_type.len(), "everything released");
    Ok(HttpResponse::Ok()
        .content_type(FHIR_JSON)
        .body(json!({"resourceType": "Bundle", "type": "searchset", "entry": entries}).to_string()))
}
