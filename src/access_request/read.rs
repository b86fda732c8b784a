//! Reading requests: the listing (a patient's own, or all for an operator) and one request.
//!
//! An operator's look at requests is audited (`read`, detail `view=access_requests`); a
//! patient's look at their own requests discloses nothing to anyone and is not.

use super::model::{AccessRequest, Reviewer};
use super::unknown_request;
use super::view::Audience;
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::store::access_requests::{self as rows, RequestStatus};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 50;
/// The largest page honoured.
pub const MAX_LIMIT: i64 = 200;

/// What a listing asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListQuery {
    /// Only this patient's requests (always the patient's own for a patient).
    pub patient: Option<PatientId>,
    /// Only requests with this status.
    pub status: Option<RequestStatus>,
    /// Keyset paging: requests older than this one (a request id).
    pub before: Option<String>,
    /// Most requests on the page.
    pub limit: i64,
}

fn bad_query(message: &str) -> DomainError {
    DomainError::invalid("invalid_query", message)
}

impl ListQuery {
    /// Parses `status=&patient=&limit=&before=`; a patient's listing is narrowed to their own
    /// requests, and naming another patient is refused.
    pub fn parse(raw: &str, reviewer: &Reviewer) -> Result<ListQuery, DomainError> {
        let own = match reviewer {
            Reviewer::Patient(own) => Some(own),
            Reviewer::Operator => None,
        };
        let mut q = ListQuery {
            patient: own.cloned(),
            status: None,
            before: None,
            limit: DEFAULT_LIMIT,
        };
        for (key, value) in form_urlencoded::parse(raw.as_bytes()) {
            match key.as_ref() {
                "status" => {
                    q.status = Some(RequestStatus::parse(&value).ok_or_else(|| {
                        bad_query("status must be pending, approved, declined or unmatched")
                    })?);
                }
                "patient" => {
                    let id = PatientId::parse(value.strip_prefix("Patient/").unwrap_or(&value))
                        .map_err(|_| bad_query("patient must be a FHIR id"))?;
                    if own.is_some_and(|own| *own != id) {
                        return Err(DomainError::forbidden(
                            "forbidden",
                            "a patient sees only their own requests",
                        ));
                    }
                    q.patient = Some(id);
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

    /// The query as a query string, for the link to the next page.
    pub fn query_string(&self) -> String {
        let mut out = form_urlencoded::Serializer::new(String::new());
        if let Some(status) = self.status {
            out.append_pair("status", status.as_str());
        }
        if let Some(patient) = &self.patient {
            out.append_pair("patient", patient.as_str());
        }
        out.append_pair("limit", &self.limit.to_string());
        if let Some(before) = &self.before {
            out.append_pair("before", before);
        }
        out.finish()
    }
}

/// One page of a listing.
#[derive(Debug)]
pub struct Page {
    /// Newest first.
    pub requests: Vec<AccessRequest>,
    /// The query of the next page, when there is one.
    pub next: Option<ListQuery>,
    /// Whom the requests are shown to.
    pub audience: Audience,
}

/// Requests matching `query`, newest first, as `principal` (a patient or an operator) may
/// see them.
pub async fn list(
    gateway: &Gateway,
    principal: &Principal,
    query: &ListQuery,
    request_id: &str,
) -> Result<Page, DomainError> {
    let reviewer = Reviewer::of(principal)?;
    if let Reviewer::Patient(own) = &reviewer
        && query.patient.as_ref() != Some(own)
    {
        return Err(DomainError::forbidden(
            "forbidden",
            "a patient sees only their own requests",
        ));
    }
    let page = rows::ListQuery {
        patient_id: query.patient.as_ref().map(|p| p.to_string()),
        status: query.status,
        before: query.before.clone(),
        limit: query.limit + 1,
    };
    let found = gateway
        .store
        .run(move |conn| rows::list(conn, &page))
        .await?;
    let more = found.len() as i64 > query.limit;
    let requests = found
        .into_iter()
        .take(query.limit as usize)
        .map(AccessRequest::from_stored)
        .collect::<Result<Vec<_>, _>>()?;
    let next = match requests.last() {
        Some(last) if more => Some(ListQuery {
            before: Some(last.id.clone()),
            ..query.clone()
        }),
        _ => None,
    };
    if reviewer == Reviewer::Operator {
        audit_operator_view(
            gateway,
            principal,
            request_id,
            query.patient.as_ref(),
            requests.len(),
        )
        .await?;
    }
    Ok(Page {
        requests,
        next,
        audience: Audience::of(&reviewer),
    })
}

/// One request as `principal` may see it: the requesting client, the patient it is about or
/// an operator; anyone else is told it does not exist.
pub async fn show(
    gateway: &Gateway,
    principal: &Principal,
    id: &str,
    request_id: &str,
) -> Result<(AccessRequest, Audience), DomainError> {
    let request = load(gateway, id).await?.ok_or_else(unknown_request)?;
    let audience = match principal {
        Principal::Client(c) if request.client.as_str() == c.client_id => Audience::Requester,
        Principal::Patient { .. } | Principal::Delegate(_)
            if principal
                .may(crate::delegation::Action::AnswerRequests)
                .is_ok()
                && request
                    .patient
                    .as_ref()
                    .is_some_and(|p| Some(p.as_str()) == principal.own_patient()) =>
        {
            Audience::Patient
        }
        Principal::Operator { .. } => {
            audit_operator_view(gateway, principal, request_id, request.patient.as_ref(), 1)
                .await?;
            Audience::Operator
        }
        _ => return Err(unknown_request()),
    };
    Ok((request, audience))
}

/// A request by id; `None` for an id that cannot be one.
pub(super) async fn load(
    gateway: &Gateway,
    id: &str,
) -> Result<Option<AccessRequest>, DomainError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Ok(None);
    }
    let id = id.to_string();
    gateway
        .store
        .run(move |conn| rows::find(conn, &id))
        .await?
        .map(AccessRequest::from_stored)
        .transpose()
}

/// Records an operator's look at `count` requests (about `patient`, when about one).
async fn audit_operator_view(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    patient: Option<&PatientId>,
    count: usize,
) -> Result<(), DomainError> {
    let mut entry = principal.audit_entry(
        AuditAction::Read,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = patient.map(|p| p.to_string());
    entry.detail.insert("view".into(), "access_requests".into());
    entry.detail.insert("count".into(), count.to_string());
    gateway.record(entry).await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn patient(id: &str) -> Reviewer {
        Reviewer::Patient(PatientId::parse(id).unwrap())
    }

    #[test]
    fn a_patient_lists_only_their_own() {
        let q = ListQuery::parse("", &patient("pat")).unwrap();
        assert_eq!(q.patient.as_ref().map(PatientId::as_str), Some("pat"));
        assert_eq!(q.limit, DEFAULT_LIMIT);
        let q = ListQuery::parse("patient=Patient/pat", &patient("pat")).unwrap();
        assert_eq!(q.patient.as_ref().map(PatientId::as_str), Some("pat"));
        let e = ListQuery::parse("patient=other", &patient("pat")).unwrap_err();
        assert_eq!(
            (e.kind, e.code),
            (crate::error::ErrorKind::Forbidden, "forbidden")
        );
        let q = ListQuery::parse("", &Reviewer::Operator).unwrap();
        assert_eq!(q.patient, None);
    }

    #[test]
    fn bad_parameters_are_invalid_queries() {
        for raw in [
            "status=maybe",
            "patient=a/b",
            "limit=0",
            "limit=201",
            "limit=x",
            "before=7",
            "sort=id",
        ] {
            let e = ListQuery::parse(raw, &Reviewer::Operator).unwrap_err();
            assert_eq!(e.code, "invalid_query", "{raw}");
        }
    }

    #[test]
    fn the_next_link_reads_back_as_the_same_query() {
        let raw = "status=pending&patient=pat&limit=7&before=0192C1F0-0000-7000-8000-000000000001";
        let q = ListQuery::parse(raw, &Reviewer::Operator).unwrap();
        assert_eq!(
            q.before.as_deref(),
            Some("0192c1f0-0000-7000-8000-000000000001")
        );
        let again = ListQuery::parse(&q.query_string(), &Reviewer::Operator).unwrap();
        assert_eq!(again, q);
        assert_eq!(
            q.query_string(),
            "status=pending&patient=pat&limit=7&before=0192c1f0-0000-7000-8000-000000000001"
        );
    }
}
