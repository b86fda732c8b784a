//! The International Patient Summary (HL7 IPS): `GET /fhir/Patient/{id}/$summary` builds a
//! FHIR `document` Bundle whose first entry is a `Composition` (LOINC 60591-5) with the three
//! required sections (problems, medications, allergies; each with an `emptyReason` when the
//! patient has none) and, when present, immunizations, results, procedures and advance
//! directives, followed by the Patient and every resource a section names.
//!
//! What goes in is exactly what the caller may see of the patient: a recipient gets the
//! resources the one decision engine permits (`release::everything`, so the patient's
//! consents, sensitive-category choices included, decide and the release is audited and
//! told), a patient or delegate their own copy (`release::direct::everything`). [`compose`]
//! is pure: it only sorts and references what it is given.

use serde_json::{Value, json};

use crate::auth::Principal;
use crate::auth::tokens::AccessClaims;
use crate::error::DomainError;
use crate::fhir_time::{format_instant, now_micros};
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::release;

const LOINC: &str = "http://loinc.org";

/// One section: (LOINC code, title, required).
struct Section {
    code: &'static str,
    title: &'static str,
    required: bool,
    holds: fn(&Value) -> bool,
}

fn of_type(r: &Value, ty: &str) -> bool {
    r.get("resourceType").and_then(Value::as_str) == Some(ty)
}

fn has_code(list: Option<&Value>, code: &str) -> bool {
    list.and_then(Value::as_array).is_some_and(|items| {
        items.iter().any(|c| {
            c.get("coding").and_then(Value::as_array).is_some_and(|cs| {
                cs.iter()
                    .any(|x| x.get("code").and_then(Value::as_str) == Some(code))
            })
        })
    })
}

const SECTIONS: [Section; 7] = [
    Section {
        code: "11450-4",
        title: "Problem list",
        required: true,
        holds: |r| of_type(r, "Condition"),
    },
    Section {
        code: "10160-0",
        title: "Medication summary",
        required: true,
        holds: |r| of_type(r, "MedicationStatement") || of_type(r, "MedicationRequest"),
    },
    Section {
        code: "48765-2",
        title: "Allergies and intolerances",
        required: true,
        holds: |r| of_type(r, "AllergyIntolerance"),
    },
    Section {
        code: "11369-6",
        title: "History of immunizations",
        required: false,
        holds: |r| of_type(r, "Immunization"),
    },
    Section {
        code: "30954-2",
        title: "Diagnostic results",
        required: false,
        holds: |r| {
            (of_type(r, "Observation") && has_code(r.get("category"), "laboratory"))
                || of_type(r, "DiagnosticReport")
        },
    },
    Section {
        code: "47519-4",
        title: "History of procedures",
        required: false,
        holds: |r| of_type(r, "Procedure"),
    },
    Section {
        code: "42348-3",
        title: "Advance directives",
        required: false,
        holds: |r| {
            of_type(r, "Consent")
                && r.get("scope")
                    .is_some_and(|s| has_code(Some(&json!([s])), "adr"))
        },
    },
];

fn reference(r: &Value) -> String {
    format!(
        "{}/{}",
        r["resourceType"].as_str().unwrap_or_default(),
        r["id"].as_str().unwrap_or_default()
    )
}

fn narrative(text: &str) -> Value {
    json!({"status": "generated",
           "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{text}</div>")})
}

/// The IPS document of `patient` from `resources` (the Patient among them), at `now`.
pub fn compose(fhir_base: &str, patient: &PatientId, resources: &[Value], now: i64) -> Value {
    let id = uuid::Uuid::now_v7().to_string();
    let mut included: Vec<&Value> = resources
        .iter()
        .filter(|r| of_type(r, "Patient") && r["id"] == patient.as_str())
        .collect();
    let mut sections = Vec::new();
    for section in &SECTIONS {
        let found: Vec<&Value> = resources.iter().filter(|r| (section.holds)(r)).collect();
        if found.is_empty() && !section.required {
            continue;
        }
        let mut s = json!({
            "title": section.title,
            "code": {"coding": [{"system": LOINC, "code": section.code}]},
            "text": narrative(&format!("{}: {} entries", section.title, found.len())),
        });
        if found.is_empty() {
            s["emptyReason"] = json!({"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/list-empty-reason",
                "code": "unavailable", "display": "Unavailable"}]});
        } else {
            s["entry"] = found
                .iter()
                .map(|r| json!({"reference": reference(r)}))
                .collect();
            included.extend(found);
        }
        sections.push(s);
    }
    let composition = json!({
        "resourceType": "Composition",
        "id": id,
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": patient.reference()},
        "date": format_instant(now),
        "author": [{"display": "consentgate"}],
        "title": "International Patient Summary",
        "confidentiality": "N",
        "section": sections,
    });
    let entry =
        |r: &Value| json!({"fullUrl": format!("{fhir_base}/{}", reference(r)), "resource": r});
    let mut entries = vec![entry(&composition)];
    entries.extend(included.into_iter().map(entry));
    json!({
        "resourceType": "Bundle",
        "id": uuid::Uuid::now_v7().to_string(),
        "identifier": {"system": "urn:ietf:rfc:3986", "value": format!("urn:uuid:{id}")},
        "type": "document",
        "timestamp": format_instant(now),
        "entry": entries,
    })
}

/// Who asks for a summary.
pub enum Asker<'a> {
    /// A recipient client: what the patient's consents permit.
    Recipient(&'a AccessClaims),
    /// A patient or delegate (their own), or an operator.
    Person(&'a Principal),
}

/// The IPS of `patient` as `asker` may see it; the underlying release is audited.
pub async fn summary(
    gateway: &Gateway,
    asker: Asker<'_>,
    request_id: &str,
    patient: &PatientId,
) -> Result<Value, DomainError> {
    let resources = match asker {
        Asker::Recipient(claims) => {
            release::everything(gateway, claims, request_id, patient).await?
        }
        Asker::Person(person) => {
            release::direct::everything(gateway, person, request_id, patient).await?
        }
    };
    let mut document = compose(&gateway.fhir_base(), patient, &resources, now_micros());
    if let Asker::Recipient(claims) = asker
        && claims.justification.is_some()
    {
        directives_first(&mut document);
    }
    Ok(document)
}

/// Puts the advance directives section (42348-3) first in the Composition, and its
/// resources right after the Composition: what a break-glass clinician must see first.
pub fn directives_first(document: &mut Value) {
    let is_directives = |s: &Value| s.pointer("/code/coding/0/code") == Some(&json!("42348-3"));
    if let Some(sections) = document
        .pointer_mut("/entry/0/resource/section")
        .and_then(Value::as_array_mut)
    {
        sections.sort_by_key(|s| !is_directives(s));
    }
    if let Some(entries) = document.get_mut("entry").and_then(Value::as_array_mut)
        && entries.len() > 1
    {
        entries[1..]
            .sort_by_key(|e| !crate::records::internal::is_advance_directive(&e["resource"]));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn directives_lead_when_asked_to() {
        let p = PatientId::parse("p1").unwrap();
        let adr = json!({"resourceType": "Consent", "id": "d1",
            "scope": {"coding": [{"system": crate::consent::CONSENT_SCOPE_SYSTEM, "code": "adr"}]}});
        let resources = vec![
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"resourceType": "Condition", "id": "c1"}),
            adr,
        ];
        let mut doc = compose("https://g/fhir", &p, &resources, 0);
        let codes = |doc: &Value| -> Vec<String> {
            doc["entry"][0]["resource"]["section"]
                .as_array()
                .unwrap()
                .iter()
                .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(codes(&doc), ["11450-4", "10160-0", "48765-2", "42348-3"]);
        directives_first(&mut doc);
        assert_eq!(codes(&doc), ["42348-3", "11450-4", "10160-0", "48765-2"]);
        let refs: Vec<String> = doc["entry"].as_array().unwrap()[1..]
            .iter()
            .map(|e| reference(&e["resource"]))
            .collect();
        assert_eq!(refs, ["Consent/d1", "Patient/p1", "Condition/c1"]);
    }

    #[test]
    fn required_sections_are_always_there_and_others_only_when_filled() {
        let p = PatientId::parse("p1").unwrap();
        let resources = vec![
            json!({"resourceType": "Patient", "id": "p1"}),
            json!({"resourceType": "Condition", "id": "c1"}),
            json!({"resourceType": "Procedure", "id": "x1"}),
            json!({"resourceType": "Observation", "id": "o1",
                   "category": [{"coding": [{"code": "vital-signs"}]}]}),
        ];
        let doc = compose("https://g/fhir", &p, &resources, 0);
        assert_eq!(doc["type"], "document");
        let composition = &doc["entry"][0]["resource"];
        let codes: Vec<&str> = composition["section"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s["code"]["coding"][0]["code"].as_str().unwrap())
            .collect();
        assert_eq!(codes, ["11450-4", "10160-0", "48765-2", "47519-4"]);
        assert_eq!(
            composition["section"][0]["entry"][0]["reference"],
            "Condition/c1"
        );
        assert!(composition["section"][1]["emptyReason"].is_object());
        let refs: Vec<String> = doc["entry"].as_array().unwrap()[1..]
            .iter()
            .map(|e| reference(&e["resource"]))
            .collect();
        assert_eq!(
            refs,
            ["Patient/p1", "Condition/c1", "Procedure/x1"],
            "vital signs are not results"
        );
    }
}
