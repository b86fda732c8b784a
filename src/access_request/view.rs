//! What each audience sees of a request.
//!
//! The requesting client learns the status only, and an unmatched request looks `submitted`
//! to it, like a pending one: nothing it reads tells it whether the patient exists. The
//! patient sees the whole request; an operator also the identifier the client gave.

use serde_json::{Value, json};

use super::model::{AccessRequest, Reviewer};
use crate::fhir_time::format_instant;
use crate::store::access_requests::RequestStatus;

/// Whom a request is shown to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Audience {
    /// The client that asked.
    Requester,
    /// The patient it is about.
    Patient,
    /// An operator.
    Operator,
}

impl Audience {
    /// The audience a reviewer is.
    pub fn of(reviewer: &Reviewer) -> Audience {
        match reviewer {
            Reviewer::Patient(_) => Audience::Patient,
            Reviewer::Operator => Audience::Operator,
        }
    }
}

/// The status as the requesting client may know it.
pub fn status_for_requester(status: RequestStatus) -> &'static str {
    match status {
        RequestStatus::Approved => "approved",
        RequestStatus::Declined => "declined",
        RequestStatus::Pending | RequestStatus::Unmatched => "submitted",
    }
}

/// The request as `audience` sees it.
pub fn view(r: &AccessRequest, audience: Audience) -> Value {
    if audience == Audience::Requester {
        return json!({"id": r.id, "status": status_for_requester(r.status)});
    }
    let period = match &r.period {
        (None, None) => Value::Null,
        (start, end) => json!({"start": start, "end": end}),
    };
    let mut out = json!({
        "id": r.id,
        "status": r.status.as_str(),
        "patient": r.patient.as_ref().map(|p| p.reference()),
        "client": {
            "id": r.client,
            "name": r.requester.name,
            "organization": r.requester.organization,
            "role": r.requester.role,
        },
        "purpose": r.purpose,
        "data_classes": r.data_classes,
        "period": period,
        "reason": r.reason,
        "created": format_instant(r.created),
        "decided": r.decided_at.map(format_instant),
        "decided_by": r.decided_by.map(|by| by.as_str()),
        "consent": r.consent_id.as_ref().map(|c| format!("Consent/{c}")),
    });
    if audience == Audience::Operator {
        let (system, value) = &r.identifier;
        out["identifier"] = json!({"system": system, "value": value});
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::access_request::model::tests::stored;

    fn request() -> AccessRequest {
        AccessRequest::from_stored(stored()).unwrap()
    }

    #[test]
    fn the_requester_cannot_tell_unmatched_from_pending() {
        let mut r = request();
        let pending = view(&r, Audience::Requester);
        r.status = RequestStatus::Unmatched;
        r.patient = None;
        let unmatched = view(&r, Audience::Requester);
        assert_eq!(pending, unmatched);
        assert_eq!(pending, json!({"id": r.id, "status": "submitted"}));
        for (status, shown) in [
            (RequestStatus::Approved, "approved"),
            (RequestStatus::Declined, "declined"),
        ] {
            assert_eq!(status_for_requester(status), shown);
        }
    }

    #[test]
    fn only_operators_see_the_identifier() {
        let r = request();
        let patient = view(&r, Audience::Patient);
        assert!(patient.get("identifier").is_none());
        assert_eq!(patient["reason"], "Follow-up");
        assert_eq!(patient["patient"], "Patient/pat");
        assert_eq!(patient["data_classes"], json!(["Observation", "Condition"]));
        assert_eq!(
            patient["period"],
            json!({"start": "2020-01-01", "end": null})
        );
        assert_eq!(patient["client"]["id"], "client-1");
        assert_eq!(patient["created"], "2026-01-01T00:00:00.000000Z");
        let operator = view(&r, Audience::Operator);
        assert_eq!(
            operator["identifier"],
            json!({"system": "urn:mrn", "value": "MRN-1"})
        );
        let without = {
            let mut o = operator.clone();
            o.as_object_mut().unwrap().remove("identifier");
            o
        };
        assert_eq!(without, patient, "the rest is the same");
    }
}
