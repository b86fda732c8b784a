//! The log as FHIR R4 AuditEvents shaped after IHE BALP, built from the entries on every
//! request (never stored as resources): a search (`patient`, `agent`, `date`, paged by
//! `_cursor`) and a read by sequence. Unlike the access log, this view shows every entry
//! about the patient, the patient's own reads and refusals included.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::entries::{self, Decoded};
use super::query::{EventQuery, cursor, url_with, with_count};
use super::{DISCLOSURE_ACTIONS, Viewer};
use crate::audit::{AuditOutcome, OPERATOR_CLIENT, leaf_hash};
use crate::auth::purposes::PurposeCatalog;
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::records::dates::format_instant;
use crate::store::audit::EntryFilter;
use crate::store::identity::ClientRow;

/// Base of the gateway's FHIR extension and code system URLs.
const CANONICAL: &str = "https://consentgate.dev/fhir";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";

/// The entries matching `q` that `viewer` may see, as a FHIR searchset Bundle. A patient
/// asking about someone else finds nothing, as in record searches.
pub async fn search_events(
    gateway: &Gateway,
    viewer: &Viewer,
    q: &EventQuery,
) -> Result<Value, DomainError> {
    let (patient, nobody_else) = match (viewer, &q.patient) {
        (Viewer::Patient(own), Some(asked)) => (Some(own), asked != own),
        (Viewer::Patient(own), None) => (Some(own), false),
        (Viewer::Operator, asked) => (asked.as_ref(), false),
    };
    let filter = EntryFilter {
        patient_id: patient.map(|p| p.to_string()),
        client_id: q.agent.clone(),
        since: q.since,
        until: q.until,
        before_seq: q.before,
        limit: if nobody_else { 0 } else { (q.count + 1) as i64 },
        ..EntryFilter::default()
    };
    let page = entries::page(gateway, filter, q.count).await?;
    let fhir_base = gateway.fhir_base();
    let mut links = vec![json!({
        "relation": "self",
        "url": url_with(&fhir_base, "/AuditEvent", &with_count(&q.echo, q.count, q.before)),
    })];
    if page.more
        && let Some(last) = page.entries.last()
    {
        links.push(json!({
            "relation": "next",
            "url": url_with(&fhir_base, "/AuditEvent", &with_count(&q.echo, q.count, Some(last.row.seq))),
        }));
    }
    let entries: Vec<Value> = page
        .entries
        .iter()
        .map(|d| {
            json!({
                "fullUrl": format!("{fhir_base}/AuditEvent/{}", d.row.seq),
                "resource": audit_event(&gateway.base_url, gateway.purposes, d, page.clients.get(&d.entry.client_id)),
                "search": {"mode": "match"},
            })
        })
        .collect();
    Ok(json!({
        "resourceType": "Bundle",
        "type": "searchset",
        "link": links,
        "entry": entries,
    }))
}

/// The entry at sequence `id` as an AuditEvent; not found for anything else, and for an
/// entry about another patient when `viewer` is a patient.
pub async fn read_event(
    gateway: &Gateway,
    viewer: &Viewer,
    id: &str,
) -> Result<Value, DomainError> {
    let not_found = || DomainError::not_found("not_found", "AuditEvent is not known");
    let seq = cursor(id).ok_or_else(not_found)? as u64;
    let (d, client) = entries::at(gateway, seq).await?.ok_or_else(not_found)?;
    if let Viewer::Patient(own) = viewer
        && d.entry.patient_id.as_deref() != Some(own.as_str())
    {
        return Err(not_found());
    }
    Ok(audit_event(
        &gateway.base_url,
        gateway.purposes,
        &d,
        client.as_ref(),
    ))
}

/// The AuditEvent `action` code of an entry's action.
pub fn action_code(action: &str) -> &'static str {
    match action {
        "read" | "search" | "export" | "disclose" => "R",
        "grant" | "request" => "C",
        "revoke" | "approve" | "decline" | "amend" | "write" => "U",
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

/// An entry as a FHIR R4 AuditEvent shaped after IHE BALP. `catalog` decides which purposes
/// of use are real ActReason codes (others are left out of `purposeOfEvent`).
pub fn audit_event(
    base: &str,
    catalog: &PurposeCatalog,
    d: &Decoded,
    client: Option<&ClientRow>,
) -> Value {
    let e = &d.entry;
    let action = e.action.as_str();
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
    let mut purposes = Vec::new();
    if catalog.is_known(&e.purpose_of_use) {
        purposes.push(json!({"coding": [{"system": ACT_REASON, "code": e.purpose_of_use}]}));
    }
    if e.break_glass.is_some() {
        purposes.push(json!({"coding": [coding(ACT_REASON, "BTG", "break the glass")]}));
    }
    let mut event = json!({
        "resourceType": "AuditEvent",
        "id": d.row.seq.to_string(),
        "extension": extensions(base, d),
        "type": coding("http://terminology.hl7.org/CodeSystem/audit-event-type", "rest", "RESTful Operation"),
        "subtype": subtype,
        "action": action_code(action),
        "recorded": format_instant(e.recorded_micros),
        "outcome": outcome,
        "agent": agents(base, d, client, &purposes),
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
    let entities = entities(d);
    if !entities.is_empty() {
        event["entity"] = json!(entities);
    }
    event
}

/// The client (requestor, with its policies and purposes), the person at it, and the
/// organisation (the information recipient of a disclosure).
fn agents(base: &str, d: &Decoded, client: Option<&ClientRow>, purposes: &[Value]) -> Vec<Value> {
    let e = &d.entry;
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
    if DISCLOSURE_ACTIONS.contains(&e.action.as_str()) {
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
    agents
}

/// The patient, the resources touched and the consents that decided.
fn entities(d: &Decoded) -> Vec<Value> {
    let e = &d.entry;
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
    entities
}

/// The log position, leaf hash, request id, break-glass justification and details.
fn extensions(base: &str, d: &Decoded) -> Vec<Value> {
    let e = &d.entry;
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
    extensions
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounting::access_log::tests::sample;

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
            ("amend", "U"),
            ("write", "U"),
            ("decision", "E"),
            ("token", "E"),
            ("refusal", "E"),
        ];
        for (action, code) in cases {
            assert_eq!(action_code(action), code, "{action}");
        }
    }

    #[test]
    fn an_event_names_who_what_why_and_where_in_the_log() {
        let d = &sample_entries()[1];
        let client: ClientRow = crate::auth::registry::to_row(
            &serde_json::from_value(json!({
                "id": "c1", "name": "clinic app", "organization": "clinic", "role": "clinician",
                "purposes": ["TREAT"], "resources": ["*"], "created_at": 0,
            }))
            .unwrap(),
        );
        let event = audit_event("https://gw", PurposeCatalog::official(), d, Some(&client));
        assert_eq!(event["id"], "4");
        assert_eq!(event["action"], "R");
        assert_eq!(event["outcome"], "0");
        assert_eq!(event["purposeOfEvent"][0]["coding"][0]["code"], "TREAT");
        assert_eq!(event["agent"][0]["who"]["display"], "clinic app");
        assert_eq!(event["agent"][1]["type"]["coding"][0]["code"], "IRCP");
        let what: Vec<&str> = event["entity"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["what"]["reference"].as_str().unwrap())
            .collect();
        assert_eq!(
            what,
            [
                "Patient/pat",
                "Observation/o1",
                "Observation/o2",
                "Consent/k1"
            ]
        );
        assert_eq!(
            event["extension"][1]["valueBase64Binary"],
            STANDARD.encode(leaf_hash(d.row.body.as_bytes()))
        );
    }

    #[test]
    fn only_catalogued_purposes_and_break_glass_become_purposes_of_event() {
        let mut d = sample_entries()[0].clone();
        d.entry.purpose_of_use = "NOT-A-PURPOSE".into();
        let event = audit_event("https://gw", PurposeCatalog::official(), &d, None);
        assert_eq!(
            event["purposeOfEvent"],
            json!([{"coding": [{"system": ACT_REASON, "code": "BTG", "display": "break the glass"}]}])
        );
        assert_eq!(event["agent"][0]["who"]["display"], "gateway operator");
    }

    fn sample_entries() -> Vec<Decoded> {
        sample().entries().to_vec()
    }
}
