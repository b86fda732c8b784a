//! One access decision: [`decision::decide`] (the patient's consents, then the Cedar
//! policies, then the explanation) for a patient with ten consents on file, as every read,
//! export, disclosure and the decisions API run it.
//!
//! - `decide/{unlabelled,labelled}`: the whole decision, for a vital-signs Observation and
//!   for an HIV Condition labelled `HIV` and `R` (the labeller's output), both permitted.
//! - `consent_evaluate/*`: step 1 alone ([`consent::evaluate`] over the ten consents, with the
//!   resource facts extracted beforehand).
//! - `policy_decide/*`: step 2 alone ([`PolicyEngine::decide`], with the step-1 result).
//! - `resource_facts/*`: extracting what step 1 matches on from the FHIR JSON.
//! - `parts/*`: the other work `decide` does per call: the purpose's ancestors for the Cedar
//!   context (`PurposeCatalog::family`) and the copy of the patient's consents it filters.
//!
//! The consents are parsed once with [`Consent::from_fhir`], outside the timed loops, as the
//! gateway parses them when it loads them. Run with `cargo bench --bench decision`; the
//! figures are in `docs/DECISIONS.md`.

use std::hint::black_box;

use consentgate::auth::clients::Role;
use consentgate::auth::purposes::PurposeCatalog;
use consentgate::consent::{self, ActorFacts, Consent, ConsentQuery};
use consentgate::decision::stored::StoredFacts;
use consentgate::decision::{self, Question, Requester, Subject};
use consentgate::policy::{ConsentOutcome, PolicyAction, PolicyEngine, PolicyRequest};
use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};

const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
const ACT_REASON: &str = "http://terminology.hl7.org/CodeSystem/v3-ActReason";
const CONFIDENTIALITY: &str = "http://terminology.hl7.org/CodeSystem/v3-Confidentiality";
const RESOURCE_TYPES: &str = "http://hl7.org/fhir/resource-types";

/// 2026-06-01T00:00:00Z in microseconds: inside the current consents' periods.
const NOW: i64 = 1_780_272_000_000_000;

fn consent(id: &str, status: &str, provision: Value) -> Value {
    json!({
        "resourceType": "Consent",
        "id": id,
        "status": status,
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": "Patient/pat"},
        "dateTime": "2025-01-01T09:00:00Z",
        "policyRule": {"coding": [{"system": ACT_CODE, "code": "OPTIN"}]},
        "provision": provision,
    })
}

fn actor(reference: &str) -> Value {
    json!([{"role": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": "IRCP"}]},
            "reference": {"reference": reference}}])
}

fn purpose(code: &str) -> Value {
    json!([{"system": ACT_REASON, "code": code}])
}

fn class(types: &[&str]) -> Value {
    Value::Array(
        types
            .iter()
            .map(|t| json!({"system": RESOURCE_TYPES, "code": t}))
            .collect(),
    )
}

fn label(system: &str, code: &str) -> Value {
    json!({"system": system, "code": code})
}

/// Ten consents of one patient, as a patient accumulates them: current and revoked, expired
/// and open-ended, permits with deny exceptions, an opt-out, several recipients.
fn consents() -> Vec<Consent> {
    let current = json!({"start": "2025-01-01", "end": "2030-12-31"});
    let fhir = [
        // The clinic may treat, except psychiatric records.
        consent(
            "c1",
            "active",
            json!({"type": "permit", "period": current, "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
            "provision": [{"type": "deny", "securityLabel": [label(ACT_CODE, "PSY")]}]}),
        ),
        // The clinic may see the HIV record (named, restricted), except genetic results.
        consent(
            "c2",
            "active",
            json!({"type": "permit", "period": current, "actor": actor("Organization/clinic"), "purpose": purpose("TREAT"),
            "securityLabel": [label(ACT_CODE, "HIV"), label(CONFIDENTIALITY, "R")],
            "provision": [{"type": "deny", "securityLabel": [label(ACT_CODE, "GDIS")]},
                          {"type": "deny", "code": [{"coding": [{"system": "http://snomed.info/sct", "code": "165816005"}]}]}]}),
        ),
        // A named practitioner, medications and allergies since 2020.
        consent(
            "c3",
            "active",
            json!({"type": "permit", "period": current, "actor": actor("Practitioner/dr-lee"), "purpose": purpose("TREAT"),
            "class": class(&["MedicationRequest", "AllergyIntolerance"]), "dataPeriod": {"start": "2020-01-01"}}),
        ),
        // No insurer, ever.
        consent(
            "c4",
            "active",
            json!({"type": "deny", "actor": actor("Organization/insurer")}),
        ),
        // A study: observations, de-identified, except genetics and psychotherapy notes.
        consent(
            "c5",
            "active",
            json!({"type": "permit", "period": current, "actor": actor("Group/study1"), "purpose": purpose("HRESCH"),
            "class": class(&["Observation", "Condition"]),
            "provision": [{"type": "deny", "securityLabel": [label(ACT_CODE, "GDIS"), label(ACT_CODE, "PSYTHPN")],
                           "provision": [{"type": "permit", "class": class(&["Observation"]), "dataPeriod": {"end": "2015-12-31"}}]}]}),
        ),
        // A disability claim: conditions and procedures since 2021, no psychotherapy notes.
        consent(
            "c6",
            "active",
            json!({"type": "permit", "period": current, "actor": actor("Organization/disability-agency"), "purpose": purpose("CLMATTCH"),
            "class": class(&["Condition", "Procedure"]), "dataPeriod": {"start": "2021-01-01"},
            "provision": [{"type": "deny", "securityLabel": [label(ACT_CODE, "PSYTHPN")]}]}),
        ),
        // Revoked: the old clinic.
        consent(
            "c7",
            "inactive",
            json!({"type": "permit", "actor": actor("Organization/old-clinic"), "purpose": purpose("TREAT")}),
        ),
        // Expired: a second opinion in 2022.
        consent(
            "c8",
            "active",
            json!({"type": "permit", "period": {"start": "2022-03-01", "end": "2022-06-30"},
            "actor": actor("Organization/second-opinion"), "purpose": purpose("TREAT")}),
        ),
        // The gateway client itself, from an approved access request: labs since 2020.
        consent(
            "c9",
            "active",
            json!({"type": "permit", "period": {"start": "2025-06-01T08:00:00Z"}, "actor": actor("Device/bench-client"),
            "purpose": purpose("TREAT"), "class": class(&["Observation", "DiagnosticReport"]), "dataPeriod": {"start": "2020-01-01"}}),
        ),
        // Emergency access opt-out for sexual-health records only.
        consent(
            "c10",
            "active",
            json!({"type": "deny", "purpose": purpose("ETREAT"), "securityLabel": [label(ACT_CODE, "SEX")]}),
        ),
    ];
    fhir.iter()
        .map(|c| Consent::from_fhir(c).unwrap_or_else(|d| panic!("{}: {d:?}", c["id"])))
        .collect()
}

/// A vital-signs Observation, as stored.
fn unlabelled() -> Value {
    json!({
        "resourceType": "Observation", "id": "vitals-1",
        "meta": {"versionId": "1", "lastUpdated": "2026-05-01T10:00:00.000000Z"},
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "vital-signs"}]}],
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
        "subject": {"reference": "Patient/pat"},
        "encounter": {"reference": "Encounter/e1"},
        "performer": [{"reference": "Practitioner/dr-lee"}],
        "effectiveDateTime": "2024-03-01T10:00:00Z",
        "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}
    })
}

/// An HIV diagnosis with the labels the labeller adds at ingest.
fn labelled() -> Value {
    json!({
        "resourceType": "Condition", "id": "hiv-1",
        "meta": {"versionId": "1", "lastUpdated": "2026-05-01T10:00:00.000000Z",
                 "security": [label(ACT_CODE, "HIV"), label(CONFIDENTIALITY, "R")]},
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "86406008"}, {"system": "http://hl7.org/fhir/sid/icd-10-cm", "code": "B20"}]},
        "subject": {"reference": "Patient/pat"},
        "recorder": {"reference": "Practitioner/dr-lee"},
        "recordedDate": "2023-05-01"
    })
}

fn bench(c: &mut Criterion) {
    let engine = PolicyEngine::builtin().expect("shipped policies load");
    let consents = consents();
    let requester = Requester {
        client_id: "bench-client".into(),
        role: Role::Clinician,
        organization: "Northside Clinic".into(),
        references: vec![
            "Device/bench-client".into(),
            "Organization/clinic".into(),
            "Practitioner/dr-lee".into(),
        ],
    };
    let catalog = PurposeCatalog::official();
    let family = catalog.family("TREAT");
    // Two steps of `decide` outside consents and Cedar, timed to account for the rest.
    c.bench_function("parts/purpose_family", |b| {
        b.iter(|| catalog.family(black_box("TREAT")))
    });
    c.bench_function("parts/clone_consents", |b| {
        b.iter(|| black_box(&consents).to_vec())
    });
    for (name, resource) in [("unlabelled", unlabelled()), ("labelled", labelled())] {
        let question = Question {
            requester: &requester,
            purpose: "TREAT",
            action: PolicyAction::Read,
            patient_id: "pat",
            resource: Subject::Body(&resource),
            break_glass: None,
            now: NOW,
            // With its sentences, as the decisions API asks.
            explain: true,
        };
        let whole = decision::decide(&engine, catalog, &consents, &question);
        assert!(whole.permit, "{name}: {:?}", whole.explanation);

        c.bench_function(&format!("decide/{name}"), |b| {
            b.iter(|| {
                decision::decide(
                    black_box(&engine),
                    catalog,
                    black_box(&consents),
                    black_box(&question),
                )
            })
        });

        // The same decision on the facts stored at ingest (`decision::stored`), as a
        // recipient's read and search decide: without sentences.
        let stored = StoredFacts::of(&resource);
        let on_stored = Question {
            resource: Subject::Stored(&stored),
            explain: false,
            ..question
        };
        c.bench_function(&format!("decide_stored/{name}"), |b| {
            b.iter(|| {
                decision::decide(
                    black_box(&engine),
                    catalog,
                    black_box(&consents),
                    black_box(&on_stored),
                )
            })
        });

        c.bench_function(&format!("resource_facts/{name}"), |b| {
            b.iter(|| decision::resource_facts(black_box(&resource)))
        });

        let facts = decision::resource_facts(&resource);
        let actor = ActorFacts {
            references: requester.references.clone(),
            roles: Vec::new(),
        };
        let query = ConsentQuery {
            actor: &actor,
            purpose: "TREAT",
            action: Some("access"),
            resource: &facts,
            now: NOW,
            purposes: catalog.hierarchy(),
        };
        c.bench_function(&format!("consent_evaluate/{name}"), |b| {
            b.iter(|| consent::evaluate(black_box(&consents), black_box(&query)))
        });

        let result = consent::evaluate(&consents, &query);
        let labels: Vec<String> = facts
            .security_labels
            .iter()
            .map(|l| l.code.clone())
            .collect();
        let consented: Vec<String> = result
            .consented_labels
            .iter()
            .map(|l| l.code.clone())
            .collect();
        let request = PolicyRequest {
            client_id: &requester.client_id,
            role: requester.role.as_str(),
            organization: &requester.organization,
            action: PolicyAction::Read,
            resource_type: &facts.resource_type,
            resource_id: &facts.id,
            labels: &labels,
            patient: "pat",
            purpose: "TREAT",
            purpose_family: family,
            consent: ConsentOutcome::Permit,
            consented_labels: &consented,
            break_glass: false,
            emergency_opt_out: false,
            identified_research: false,
            justification: "",
        };
        assert!(engine.decide(&request).permit, "{name}: step 2 alone");
        c.bench_function(&format!("policy_decide/{name}"), |b| {
            b.iter(|| engine.decide(black_box(&request)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
