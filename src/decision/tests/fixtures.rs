//! What the decision rows are made of: the consents a patient may have on file (parsed from
//! FHIR JSON by [`Consent::from_fhir`]), resources as the labeller leaves them, and the
//! requesters.

use serde_json::{Value, json};

use super::super::Requester;
use crate::auth::clients::Role;
use crate::consent::Consent;

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// A coding of a label.
pub(super) fn label(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

/// A provision's actor: the information recipient known by `reference`.
pub(super) fn actor(reference: &str) -> Value {
    json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": reference}}])
}

/// A provision's purpose.
pub(super) fn purpose(code: &str) -> Value {
    json!([{"system": ACT_REASON, "code": code}])
}

/// The consents a row may put on file, by id; all of patient `pat` but `other-patient`.
pub(super) fn consent(id: &str) -> Consent {
    let (patient, status, provision) = match id {
        "treat" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
        ),
        "treat-revoked" => (
            "pat",
            "inactive",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
        ),
        "treat-hiv" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
                   "securityLabel": [label(ACT_CODE, "HIV"), label(CONFIDENTIALITY, "R")]}),
        ),
        "treat-eth-psythpn" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
                   "securityLabel": [label(ACT_CODE, "ETH"), label(ACT_CODE, "PSYTHPN"), label(CONFIDENTIALITY, "R")]}),
        ),
        "emergency-only" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("ETREAT")}),
        ),
        "no-clinic" => (
            "pat",
            "active",
            json!({"type": "deny", "actor": actor("Organization/clinic")}),
        ),
        "no-treatment" => (
            "pat",
            "active",
            json!({"type": "deny", "purpose": purpose("TREAT")}),
        ),
        "no-emergency" => (
            "pat",
            "active",
            json!({"type": "deny", "purpose": purpose("ETREAT")}),
        ),
        "study" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Group/study1"), "purpose": purpose("HRESCH")}),
        ),
        "insurer-conditions" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/insurer"), "purpose": purpose("HPAYMT"),
                   "class": [{"system": RESOURCE_TYPES, "code": "Condition"}]}),
        ),
        "claim" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/disability-agency"), "purpose": purpose("CLMATTCH")}),
        ),
        "claim-access-only" => (
            "pat",
            "active",
            json!({"type": "permit", "actor": actor("Organization/disability-agency"), "purpose": purpose("CLMATTCH"),
                   "action": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentaction", "code": "access"}]}]}),
        ),
        "other-patient" => (
            "someone-else",
            "active",
            json!({"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}),
        ),
        other => panic!("no consent {other}"),
    };
    let fhir = json!({
        "resourceType": "Consent",
        "id": id,
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": format!("Patient/{patient}")},
        "dateTime": "2026-01-01T09:00:00Z",
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": provision,
    });
    Consent::from_fhir(&fhir).unwrap_or_else(|e| panic!("{id}: {:?}", e.defects))
}

/// A vital-signs Observation: nothing sensitive.
pub(super) fn vitals() -> Value {
    json!({
        "resourceType": "Observation", "id": "vitals-1", "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": "Patient/pat"},
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min"}
    })
}

/// A Condition of `pat` with the labels the labeller would have added at ingest.
pub(super) fn condition(id: &str, code: &str, labels: &[(&str, &str)]) -> Value {
    let security: Vec<Value> = labels.iter().map(|(s, c)| label(s, c)).collect();
    json!({
        "resourceType": "Condition", "id": id,
        "meta": {"security": security},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": code}]},
        "subject": {"reference": "Patient/pat"},
        "recordedDate": "2023-05-01"
    })
}

/// Essential hypertension: nothing sensitive.
pub(super) fn hypertension() -> Value {
    condition("htn-1", "59621000", &[])
}

/// An HIV diagnosis.
pub(super) fn hiv() -> Value {
    condition(
        "hiv-1",
        "86406008",
        &[(ACT_CODE, "HIV"), (CONFIDENTIALITY, "R")],
    )
}

/// A depressive disorder.
pub(super) fn psychiatric() -> Value {
    condition(
        "psy-1",
        "35489007",
        &[(ACT_CODE, "PSY"), (CONFIDENTIALITY, "R")],
    )
}

/// Alcohol dependence (42 CFR Part 2).
pub(super) fn substance_use() -> Value {
    condition(
        "eth-1",
        "7200002",
        &[(ACT_CODE, "ETH"), (CONFIDENTIALITY, "R")],
    )
}

/// A psychotherapy note.
pub(super) fn psychotherapy_note() -> Value {
    json!({
        "resourceType": "DocumentReference", "id": "note-1", "status": "current",
        "meta": {"security": [label(ACT_CODE, "PSYTHPN"), label(CONFIDENTIALITY, "R")]},
        "type": {"coding": [{"system": "http://loinc.org", "code": "11488-4"}]},
        "subject": {"reference": "Patient/pat"},
        "content": [{"attachment": {"contentType": "text/plain"}}]
    })
}

/// A client acting as `acts_as`.
pub(super) fn requester(
    client_id: &str,
    role: Role,
    organization: &str,
    acts_as: &str,
) -> Requester {
    Requester {
        client_id: client_id.into(),
        role,
        organization: organization.into(),
        references: vec![format!("Device/{client_id}"), acts_as.into()],
    }
}

/// A clinician of the clinic the consents name.
pub(super) fn clinician() -> Requester {
    requester(
        "clin",
        Role::Clinician,
        "Northside Clinic",
        "Organization/clinic",
    )
}

/// A clinician of a clinic no consent names.
pub(super) fn stranger() -> Requester {
    requester(
        "elsewhere",
        Role::Clinician,
        "Far Clinic",
        "Organization/elsewhere",
    )
}

/// A researcher of study 1.
pub(super) fn researcher() -> Requester {
    requester("res", Role::Researcher, "University", "Group/study1")
}

/// An insurer.
pub(super) fn insurer() -> Requester {
    requester("ins", Role::Insurer, "Insurer", "Organization/insurer")
}

/// A disability assessor of the agency.
pub(super) fn assessor() -> Requester {
    requester(
        "dis",
        Role::DisabilityAssessor,
        "Disability Agency",
        "Organization/disability-agency",
    )
}

/// A Consent record of `pat`, as stored: the gateway's own record about sharing.
pub(super) fn consent_record() -> Value {
    json!({
        "resourceType": "Consent", "id": "treat", "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat"},
        "provision": {"type": "permit", "actor": actor("Organization/clinic"), "purpose": purpose("TREAT")}
    })
}

/// An AuditEvent about `pat`.
pub(super) fn audit_event() -> Value {
    json!({
        "resourceType": "AuditEvent", "id": "7",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest"},
        "recorded": "2026-05-01T10:00:00Z",
        "agent": [{"requestor": true, "who": {"reference": "Device/clin"}}],
        "source": {"observer": {"display": "consentgate"}},
        "entity": [{"what": {"reference": "Patient/pat"}}]
    })
}

/// A Provenance the gateway wrote about sharing, tagged as its own.
pub(super) fn tagged_provenance() -> Value {
    json!({
        "resourceType": "Provenance", "id": "amend-1",
        "meta": {"tag": [{"system": "https://consentgate.dev/fhir/CodeSystem/tag", "code": "gateway-internal"}]},
        "target": [{"reference": "Condition/htn-1"}],
        "recorded": "2026-05-01T10:00:00Z",
        "agent": [{"who": {"reference": "Patient/pat"}}]
    })
}
