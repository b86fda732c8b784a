//! Builders for the clinical resources recorded inside an encounter.
//!
//! Each builder writes one resource (a panel writes its members and the report) into the
//! patient's bundle, timed inside the encounter's period, and notes what it did on the
//! encounter so the visit note can summarise it.

use rand::Rng;
use serde_json::{Value, json};
use time::{Duration, PrimitiveDateTime};
use uuid::Uuid;

use super::care::{Allergy, ChronicKind};
use super::codes::{
    self, ALLERGY_CLINICAL, ALLERGY_VERIFICATION, CONDITION_CATEGORY, CONDITION_CLINICAL,
    CONDITION_VERIFICATION, Code, DIAGNOSTIC_SERVICE, DOCUMENT_CATEGORY, Dx, Measure,
    OBSERVATION_CATEGORY, Panel,
};
use super::fhir::{self, concept, date_time, quantity, reference, reference_to, simple_concept};
use super::patient::{Enc, Gen, REFERENCE_DATE};

/// A standing prescription stays `active` for this long after it was written.
const PRESCRIPTION_VALIDITY_DAYS: i64 = 365;

/// What an observation reports: a measurement, a coded finding or free text.
pub(super) enum ObsValue {
    Quantity(f64, Measure),
    Coded(Code),
    Text(String),
}

impl Gen<'_> {
    /// Records a diagnosis made in `enc`. With `abatement` before the reference date the
    /// condition is `resolved`; otherwise it is still `active`.
    pub(super) fn condition(
        &mut self,
        enc: &mut Enc<'_>,
        dx: &Dx,
        abatement: Option<PrimitiveDateTime>,
    ) -> Uuid {
        let id = self.new_id();
        let abatement = abatement.filter(|t| *t < REFERENCE_DATE.midnight());
        let status = if abatement.is_some() {
            ("resolved", "Resolved")
        } else {
            ("active", "Active")
        };
        let mut resource = json!({
            "resourceType": "Condition",
            "id": id.to_string(),
            "clinicalStatus": simple_concept(CONDITION_CLINICAL, status.0, status.1),
            "verificationStatus": simple_concept(CONDITION_VERIFICATION, "confirmed", "Confirmed"),
            "category": [simple_concept(CONDITION_CATEGORY, "encounter-diagnosis", "Encounter Diagnosis")],
            "code": fhir::dx_concept(dx),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "onsetDateTime": date_time(enc.at(0.2)),
            "recordedDate": date_time(enc.at(0.5)),
            "recorder": reference_to(enc.clinician.id, &enc.clinician.display),
        });
        if let Some(t) = abatement
            && let Some(fields) = resource.as_object_mut()
        {
            fields.insert("abatementDateTime".into(), Value::String(date_time(t)));
        }
        self.push("Condition", id, resource);
        enc.assessment.push(dx.snomed.display);
        id
    }

    /// Writes an Observation of `category` (`vital-signs` or `laboratory`).
    pub(super) fn observation(
        &mut self,
        enc: &Enc<'_>,
        category: &str,
        code: &Code,
        value: ObsValue,
        at: PrimitiveDateTime,
    ) -> Uuid {
        let id = self.new_id();
        let display = if category == "vital-signs" {
            "Vital Signs"
        } else {
            "Laboratory"
        };
        // Bedside measurements are released at once; laboratory results a few hours later.
        let issued = if category == "vital-signs" {
            at
        } else {
            at + Duration::minutes(self.rng.random_range(60..=360))
        };
        let mut resource = json!({
            "resourceType": "Observation",
            "id": id.to_string(),
            "status": "final",
            "category": [simple_concept(OBSERVATION_CATEGORY, category, display)],
            "code": concept(code),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "effectiveDateTime": date_time(at),
            "issued": date_time(issued),
            "performer": [reference_to(enc.clinician.id, &enc.clinician.display)],
        });
        let (key, value) = match value {
            ObsValue::Quantity(v, m) => ("valueQuantity", quantity(v, &m)),
            ObsValue::Coded(c) => ("valueCodeableConcept", concept(&c)),
            ObsValue::Text(t) => ("valueString", Value::String(t)),
        };
        if let Some(fields) = resource.as_object_mut() {
            fields.insert(key.into(), value);
        }
        self.push("Observation", id, resource);
        id
    }

    /// A vital sign taken at the start of `enc`; `value` defaults to the measure's normal range.
    pub(super) fn vital(&mut self, enc: &Enc<'_>, m: &Measure, value: Option<f64>) -> Uuid {
        let v = value.unwrap_or_else(|| fhir::sample(&mut self.rng, m.low, m.high, m.decimals));
        self.observation(
            enc,
            "vital-signs",
            &m.code,
            ObsValue::Quantity(v, *m),
            enc.at(0.1),
        )
    }

    /// A blood-pressure panel with systolic and diastolic components; raised for hypertensives.
    pub(super) fn blood_pressure(&mut self, enc: &Enc<'_>) -> Uuid {
        let (sys_range, dia_range) = if self.person.has(ChronicKind::Hypertension) {
            ((134.0, 162.0), (84.0, 98.0))
        } else {
            (
                (codes::SYSTOLIC.low, codes::SYSTOLIC.high),
                (codes::DIASTOLIC.low, codes::DIASTOLIC.high),
            )
        };
        let systolic = fhir::sample(&mut self.rng, sys_range.0, sys_range.1, 0);
        let diastolic = fhir::sample(&mut self.rng, dia_range.0, dia_range.1, 0);
        let id = self.new_id();
        let at = date_time(enc.at(0.1));
        let resource = json!({
            "resourceType": "Observation",
            "id": id.to_string(),
            "status": "final",
            "category": [simple_concept(OBSERVATION_CATEGORY, "vital-signs", "Vital Signs")],
            "code": concept(&codes::BP_PANEL),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "effectiveDateTime": at,
            "issued": at,
            "performer": [reference_to(enc.clinician.id, &enc.clinician.display)],
            "component": [
                { "code": concept(&codes::SYSTOLIC.code), "valueQuantity": quantity(systolic, &codes::SYSTOLIC) },
                { "code": concept(&codes::DIASTOLIC.code), "valueQuantity": quantity(diastolic, &codes::DIASTOLIC) },
            ],
        });
        self.push("Observation", id, resource);
        id
    }

    /// The value of a laboratory measure for this patient, shifted by their chronic conditions.
    fn lab_value(&mut self, m: &Measure) -> f64 {
        let (low, high) = match m.code.code {
            c if c == codes::GLUCOSE.code.code && self.person.has(ChronicKind::Diabetes) => {
                (130.0, 210.0)
            }
            c if c == codes::HBA1C.code.code && self.person.has(ChronicKind::Diabetes) => {
                (6.5, 9.2)
            }
            c if c == codes::CHOLESTEROL.code.code
                && self.person.has(ChronicKind::Hyperlipidemia) =>
            {
                (215.0, 280.0)
            }
            c if c == codes::LDL.code.code && self.person.has(ChronicKind::Hyperlipidemia) => {
                (135.0, 190.0)
            }
            _ => (m.low, m.high),
        };
        fhir::sample(&mut self.rng, low, high, m.decimals)
    }

    /// A laboratory panel: one Observation per member and a DiagnosticReport grouping them.
    pub(super) fn panel(&mut self, enc: &mut Enc<'_>, panel: &Panel) -> Uuid {
        let at = enc.at(0.4);
        let mut results = Vec::with_capacity(panel.members.len());
        for m in panel.members {
            let value = self.lab_value(m);
            results.push(self.observation(
                enc,
                "laboratory",
                &m.code,
                ObsValue::Quantity(value, *m),
                at,
            ));
        }
        enc.plan.push(format!("{} drawn.", panel.code.display));
        self.report(enc, &panel.code, ("LAB", "Laboratory"), &results, at, None)
    }

    /// A single HbA1c result, the usual diabetes monitoring test.
    pub(super) fn hba1c(&mut self, enc: &mut Enc<'_>) -> Uuid {
        let value = self.lab_value(&codes::HBA1C);
        enc.plan.push("HbA1c checked.".into());
        self.observation(
            enc,
            "laboratory",
            &codes::HBA1C.code,
            ObsValue::Quantity(value, codes::HBA1C),
            enc.at(0.4),
        )
    }

    /// A DiagnosticReport over `results`, in diagnostic-service section `section` (v2-0074).
    pub(super) fn report(
        &mut self,
        enc: &Enc<'_>,
        code: &Code,
        section: (&str, &str),
        results: &[Uuid],
        at: PrimitiveDateTime,
        conclusion: Option<&str>,
    ) -> Uuid {
        let id = self.new_id();
        let issued = at + Duration::hours(self.rng.random_range(6..=48));
        let mut resource = json!({
            "resourceType": "DiagnosticReport",
            "id": id.to_string(),
            "status": "final",
            "category": [simple_concept(DIAGNOSTIC_SERVICE, section.0, section.1)],
            "code": concept(code),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "effectiveDateTime": date_time(at),
            "issued": date_time(issued),
            "performer": [reference_to(enc.org.id, enc.org.name)],
            "result": results.iter().map(|r| reference(*r)).collect::<Vec<_>>(),
        });
        if let Some(text) = conclusion
            && let Some(fields) = resource.as_object_mut()
        {
            fields.insert("conclusion".into(), Value::String(text.into()));
        }
        self.push("DiagnosticReport", id, resource);
        id
    }

    /// A completed Procedure performed during `enc`, optionally for a recorded condition.
    pub(super) fn procedure(
        &mut self,
        enc: &mut Enc<'_>,
        code: &Code,
        reason: Option<Uuid>,
    ) -> Uuid {
        let id = self.new_id();
        let mut resource = json!({
            "resourceType": "Procedure",
            "id": id.to_string(),
            "status": "completed",
            "code": concept(code),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "performedPeriod": fhir::period(enc.at(0.3), enc.at(0.7)),
            "performer": [{ "actor": reference_to(enc.clinician.id, &enc.clinician.display) }],
        });
        if let Some(reason) = reason
            && let Some(fields) = resource.as_object_mut()
        {
            fields.insert("reasonReference".into(), json!([reference(reason)]));
        }
        self.push("Procedure", id, resource);
        enc.plan.push(format!("{} performed.", code.display));
        id
    }

    /// A MedicationRequest. A `standing` (chronic) prescription is `active` for a year after it
    /// is written, an acute course is `completed`.
    pub(super) fn prescription(
        &mut self,
        enc: &mut Enc<'_>,
        med: &Code,
        reason: Option<Uuid>,
        standing: bool,
    ) -> Uuid {
        let id = self.new_id();
        let authored = enc.at(0.85);
        let valid_until = authored + Duration::days(PRESCRIPTION_VALIDITY_DAYS);
        let status = if standing && valid_until >= REFERENCE_DATE.midnight() {
            "active"
        } else {
            "completed"
        };
        let dosage = if standing {
            "Take as directed, once daily. Refills at each follow-up visit."
        } else {
            "Take as directed until symptoms resolve, for at most ten days."
        };
        let mut resource = json!({
            "resourceType": "MedicationRequest",
            "id": id.to_string(),
            "status": status,
            "intent": "order",
            "medicationCodeableConcept": concept(med),
            "subject": reference(self.person.id),
            "encounter": reference(enc.id),
            "authoredOn": date_time(authored),
            "requester": reference_to(enc.clinician.id, &enc.clinician.display),
            "dosageInstruction": [{ "sequence": 1, "text": dosage }],
        });
        if let Some(fields) = resource.as_object_mut() {
            if let Some(reason) = reason {
                fields.insert("reasonReference".into(), json!([reference(reason)]));
            }
            if standing {
                fields.insert(
                    "dispenseRequest".into(),
                    json!({ "validityPeriod": fhir::period(authored, valid_until), "numberOfRepeatsAllowed": 3 }),
                );
            }
        }
        self.push("MedicationRequest", id, resource);
        enc.plan.push(format!("Prescribed {}.", med.display));
        id
    }

    /// A completed Immunization given during `enc`.
    pub(super) fn immunization(&mut self, enc: &mut Enc<'_>, vaccine: &Code) -> Uuid {
        let id = self.new_id();
        let at = date_time(enc.at(0.8));
        let lot = format!("LOT{:06}", self.rng.random_range(0..1_000_000u32));
        let resource = json!({
            "resourceType": "Immunization",
            "id": id.to_string(),
            "status": "completed",
            "vaccineCode": concept(vaccine),
            "patient": reference(self.person.id),
            "encounter": reference(enc.id),
            "occurrenceDateTime": at,
            "recorded": at,
            "primarySource": true,
            "lotNumber": lot,
            "performer": [{ "actor": reference_to(enc.clinician.id, &enc.clinician.display) }],
        });
        self.push("Immunization", id, resource);
        self.vaccines.push(vaccine.code);
        enc.plan
            .push(format!("Vaccine given: {}.", vaccine.display));
        id
    }

    /// Records the patient's allergy, as taken at intake.
    pub(super) fn allergy(&mut self, enc: &mut Enc<'_>, allergy: &Allergy) -> Uuid {
        let id = self.new_id();
        let anaphylaxis = allergy.reaction.code == "39579001";
        let resource = json!({
            "resourceType": "AllergyIntolerance",
            "id": id.to_string(),
            "clinicalStatus": simple_concept(ALLERGY_CLINICAL, "active", "Active"),
            "verificationStatus": simple_concept(ALLERGY_VERIFICATION, "confirmed", "Confirmed"),
            "type": "allergy",
            "category": [allergy.category],
            "criticality": if anaphylaxis { "high" } else { "low" },
            "code": concept(&allergy.code),
            "patient": reference(self.person.id),
            "encounter": reference(enc.id),
            "recordedDate": date_time(enc.at(0.3)),
            "recorder": reference_to(enc.clinician.id, &enc.clinician.display),
            "reaction": [{
                "manifestation": [concept(&allergy.reaction)],
                "severity": if anaphylaxis { "severe" } else { "mild" },
            }],
        });
        self.push("AllergyIntolerance", id, resource);
        enc.assessment.push(allergy.code.display);
        id
    }

    /// The clinician's note for `enc` as a DocumentReference with a short text/plain attachment.
    /// `types` are its LOINC document types, most specific first; `extra` adds a category (code
    /// and text, the text also serving as description) beside US Core's `clinical-note`; `body`
    /// replaces the generated reason/assessment/plan summary.
    pub(super) fn note(
        &mut self,
        enc: &Enc<'_>,
        types: &[Code],
        extra: Option<(&Code, &str)>,
        body: Option<String>,
    ) -> Uuid {
        let id = self.new_id();
        let title = types.first().map_or("Clinical note", |t| t.display);
        let text = body.unwrap_or_else(|| summary(enc));
        let text = format!(
            "{title}\nDate: {}\nClinician: {}, {}\n{text}\nSynthetic record generated for the consentgate demo.\n",
            fhir::date(enc.day()),
            enc.clinician.display,
            enc.org.name,
        );
        let mut categories = vec![simple_concept(
            DOCUMENT_CATEGORY,
            "clinical-note",
            "Clinical Note",
        )];
        if let Some((code, text)) = extra {
            categories.push(json!({ "coding": [fhir::coding(code)], "text": text }));
        }
        let written = date_time(enc.end);
        let resource = json!({
            "resourceType": "DocumentReference",
            "id": id.to_string(),
            "status": "current",
            "docStatus": "final",
            "type": { "coding": types.iter().map(fhir::coding).collect::<Vec<_>>(), "text": title },
            "category": categories,
            "subject": reference(self.person.id),
            "date": written,
            "author": [reference_to(enc.clinician.id, &enc.clinician.display)],
            "custodian": reference_to(enc.org.id, enc.org.name),
            "description": extra.map_or(title, |(_, text)| text),
            "content": [{
                "attachment": {
                    "contentType": "text/plain",
                    "language": "en-US",
                    "data": fhir::base64(text.as_bytes()),
                    "title": title,
                    "creation": written,
                },
            }],
            "context": {
                "encounter": [reference(enc.id)],
                "period": fhir::period(enc.start, enc.end),
            },
        });
        self.push("DocumentReference", id, resource);
        id
    }
}

/// The body of an ordinary visit note: reason, assessment and plan.
fn summary(enc: &Enc<'_>) -> String {
    let assessment = if enc.assessment.is_empty() {
        "No new problems identified.".to_string()
    } else {
        format!("{}.", enc.assessment.join("; "))
    };
    let plan = if enc.plan.is_empty() {
        "Routine follow-up.".to_string()
    } else {
        enc.plan.join(" ")
    };
    format!(
        "Reason for visit: {}.\nAssessment: {assessment}\nPlan: {plan}",
        enc.kind.display
    )
}
