//! Unit tests of matching, per label with real codes, and of `apply`.

use serde_json::{Value, json};

use super::*;

const SCT: &str = "http://snomed.info/sct";
const ICD: &str = "http://hl7.org/fhir/sid/icd-10-cm";
const LOINC: &str = "http://loinc.org";
const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

fn labeller() -> Labeller {
    Labeller::builtin().expect("the shipped value sets load")
}

fn codes(labels: &[SecurityLabel]) -> Vec<&str> {
    labels.iter().map(|l| l.code.as_str()).collect()
}

fn coding(system: &str, code: &str) -> Value {
    json!({ "coding": [{ "system": system, "code": code }] })
}

/// A resource of `resource_type` with one coding in `element` (an array for `category`).
fn with(resource_type: &str, element: &str, system: &str, code: &str) -> Value {
    let concept = coding(system, code);
    let value = if element == "category" {
        json!([concept])
    } else {
        concept
    };
    let mut resource = json!({ "resourceType": resource_type, "id": "x" });
    resource[element] = value;
    resource
}

fn condition(system: &str, code: &str) -> Value {
    with("Condition", "code", system, code)
}

/// Runs a table of (why, resource, expected label codes in order).
fn check(cases: &[(&str, Value, &[&str])]) {
    let labeller = labeller();
    for (why, resource, expected) in cases {
        let got = labeller.labels_for(resource);
        assert_eq!(codes(&got), *expected, "{why}");
    }
}

#[test]
fn substance_use_codes_are_eth() {
    check(&[
        (
            "SNOMED alcoholism",
            condition(SCT, "7200002"),
            &["ETH", "R"],
        ),
        (
            "SNOMED opioid dependence",
            condition(SCT, "75544000"),
            &["ETH", "R"],
        ),
        (
            "ICD-10-CM F10 family",
            condition(ICD, "F10.20"),
            &["ETH", "R"],
        ),
        (
            "ICD-10-CM without the dot",
            condition(ICD, "F1120"),
            &["ETH", "R"],
        ),
        (
            "ICD-10-CM in lower case",
            condition(ICD, "f12.90"),
            &["ETH", "R"],
        ),
        ("ICD-10-CM F19", condition(ICD, "F19.10"), &["ETH", "R"]),
        (
            "SNOMED by OID",
            condition("urn:oid:2.16.840.1.113883.6.96", "66214007"),
            &["ETH", "R"],
        ),
        (
            "buprenorphine/naloxone film",
            with(
                "MedicationRequest",
                "medicationCodeableConcept",
                RXNORM,
                "1010600",
            ),
            &["ETH", "R"],
        ),
        (
            "substance abuse note",
            with("DocumentReference", "type", LOINC, "34857-3"),
            &["ETH", "R"],
        ),
        (
            "tobacco is not ETH (42 CFR 2.11)",
            condition(ICD, "F17.210"),
            &[],
        ),
        (
            "a smoker's status is not ETH",
            with("Observation", "valueCodeableConcept", SCT, "449868002"),
            &[],
        ),
    ]);
}

#[test]
fn hiv_codes_are_hiv() {
    check(&[
        (
            "SNOMED HIV infection",
            condition(SCT, "86406008"),
            &["HIV", "R"],
        ),
        ("ICD-10-CM B20", condition(ICD, "B20"), &["HIV", "R"]),
        ("ICD-10-CM Z21", condition(ICD, "Z21"), &["HIV", "R"]),
        ("B20 is not a prefix of B200", condition(ICD, "B200"), &[]),
        (
            "HIV in pregnancy is HIV and SEX",
            condition(ICD, "O98.711"),
            &["HIV", "SEX", "R"],
        ),
        (
            "HIV screening test",
            with("Observation", "code", LOINC, "75622-1"),
            &["HIV", "R"],
        ),
        (
            "a negative HIV result still discloses the test",
            with("Observation", "valueCodeableConcept", SCT, "165815009"),
            &["HIV", "R"],
        ),
        (
            "viral load",
            with("Observation", "code", LOINC, "20447-9"),
            &["HIV", "R"],
        ),
        (
            "bictegravir combination",
            with(
                "MedicationRequest",
                "medicationCodeableConcept",
                RXNORM,
                "1999667",
            ),
            &["HIV", "R"],
        ),
    ]);
}

#[test]
fn mental_health_codes_are_psy() {
    check(&[
        (
            "SNOMED depression",
            condition(SCT, "35489007"),
            &["PSY", "R"],
        ),
        ("ICD-10-CM F32.9", condition(ICD, "F32.9"), &["PSY", "R"]),
        ("ICD-10-CM F41.9", condition(ICD, "F41.9"), &["PSY", "R"]),
        (
            "ICD-10-CM F90.0 ADHD",
            condition(ICD, "F90.0"),
            &["PSY", "R"],
        ),
        (
            "suicidal ideation",
            condition(ICD, "R45.851"),
            &["PSY", "R"],
        ),
        ("suicide attempt", condition(ICD, "T14.91XA"), &["PSY", "R"]),
        ("dementia is not PSY", condition(ICD, "F03.90"), &[]),
        (
            "intellectual disability is not PSY",
            condition(ICD, "F70"),
            &[],
        ),
        (
            "a psychotherapy procedure is PSY, not a psychotherapy note",
            with("Procedure", "code", SCT, "75516001"),
            &["PSY", "R"],
        ),
        (
            "PHQ-9 total score",
            with("Observation", "code", LOINC, "44261-6"),
            &["PSY", "R"],
        ),
        (
            "a psychiatry consult note is PSY only",
            with("DocumentReference", "type", LOINC, "34788-0"),
            &["PSY", "R"],
        ),
    ]);
}

#[test]
fn psychotherapy_notes_are_psythpn_and_psy() {
    check(&[
        (
            "psychiatry counselling note",
            with("DocumentReference", "type", LOINC, "34865-6"),
            &["PSY", "PSYTHPN", "R"],
        ),
        (
            "psychology group counselling note as a Composition",
            with("Composition", "type", LOINC, "34793-0"),
            &["PSY", "PSYTHPN", "R"],
        ),
        (
            "a note categorised as psychotherapy",
            with("DocumentReference", "category", SCT, "75516001"),
            &["PSY", "PSYTHPN", "R"],
        ),
        (
            "a note report coded as a counselling note",
            with("DiagnosticReport", "code", LOINC, "34864-9"),
            &["PSY", "PSYTHPN", "R"],
        ),
        (
            "outside a document the code is only PSY",
            with("Observation", "code", LOINC, "34865-6"),
            &["PSY", "R"],
        ),
        (
            "in a document element other than type/category/code it is only PSY",
            json!({
                "resourceType": "DocumentReference",
                "context": { "practiceSetting": coding(SCT, "75516001") }
            }),
            &["PSY", "R"],
        ),
    ]);
}

#[test]
fn reproductive_and_sexual_health_codes_are_sex() {
    check(&[
        (
            "normal pregnancy",
            condition(SCT, "72892002"),
            &["SEX", "R"],
        ),
        ("miscarriage", condition(SCT, "19169002"), &["SEX", "R"]),
        ("pregnancy chapter", condition(ICD, "O03.9"), &["SEX", "R"]),
        (
            "supervision of pregnancy",
            condition(ICD, "Z34.90"),
            &["SEX", "R"],
        ),
        (
            "gonorrhoea, ICD-10-CM",
            condition(ICD, "A54.9"),
            &["SEX", "R"],
        ),
        (
            "gonorrhoea, SNOMED",
            condition(SCT, "15628003"),
            &["SEX", "R"],
        ),
        (
            "prenatal visit",
            with("Encounter", "type", SCT, "424441002"),
            &["SEX", "R"],
        ),
        (
            "termination of pregnancy",
            with("Procedure", "code", SCT, "386639001"),
            &["SEX", "R"],
        ),
        (
            "vasectomy",
            with("Procedure", "code", SCT, "22523008"),
            &["SEX", "R"],
        ),
        (
            "hormonal IUD",
            with(
                "MedicationRequest",
                "medicationCodeableConcept",
                RXNORM,
                "807283",
            ),
            &["SEX", "R"],
        ),
        (
            "HPV vaccination is routine, not SEX",
            with(
                "Immunization",
                "vaccineCode",
                "http://hl7.org/fhir/sid/cvx",
                "62",
            ),
            &[],
        ),
        (
            "a code of another system is not a LOINC code (race 2106-3)",
            with(
                "Patient",
                "extension",
                "urn:oid:2.16.840.1.113883.6.238",
                "2106-3",
            ),
            &[],
        ),
    ]);
}

#[test]
fn genetic_codes_are_gdis() {
    check(&[
        (
            "BRCA1 result",
            with("Observation", "code", LOINC, "21636-6"),
            &["GDIS", "R"],
        ),
        (
            "genetic analysis report",
            with("DiagnosticReport", "code", LOINC, "51969-4"),
            &["GDIS", "R"],
        ),
        (
            "Down syndrome, ICD-10-CM",
            condition(ICD, "Q90.9"),
            &["GDIS", "R"],
        ),
        (
            "BRCA susceptibility",
            condition(ICD, "Z15.01"),
            &["GDIS", "R"],
        ),
        (
            "cystic fibrosis",
            condition(SCT, "190905008"),
            &["GDIS", "R"],
        ),
    ]);
}

#[test]
fn the_demo_generators_sensitive_codes_are_all_found() {
    // The codes `src/demo/sensitive.rs` writes, so the demo exercises every label.
    check(&[
        ("alcoholism ICD", condition(ICD, "F10.20"), &["ETH", "R"]),
        (
            "opioid dependence ICD",
            condition(ICD, "F11.20"),
            &["ETH", "R"],
        ),
        ("HIV SNOMED", condition(SCT, "86406008"), &["HIV", "R"]),
        ("depression ICD", condition(ICD, "F32.9"), &["PSY", "R"]),
        ("anxiety SNOMED", condition(SCT, "197480006"), &["PSY", "R"]),
        (
            "pregnancy SNOMED",
            condition(SCT, "72892002"),
            &["SEX", "R"],
        ),
        (
            "gonorrhoea SNOMED",
            condition(SCT, "15628003"),
            &["SEX", "R"],
        ),
        (
            "psychotherapy note",
            json!({
                "resourceType": "DocumentReference",
                "type": { "coding": [
                    { "system": LOINC, "code": "34788-0" },
                    { "system": LOINC, "code": "11488-4" }
                ]},
                "category": [
                    coding("http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category", "clinical-note"),
                    coding(SCT, "75516001")
                ]
            }),
            &["PSY", "PSYTHPN", "R"],
        ),
    ]);
}

#[test]
fn non_sensitive_resources_get_nothing() {
    check(&[
        (
            "hypertension",
            json!({
                "resourceType": "Condition",
                "code": { "coding": [
                    { "system": SCT, "code": "38341003" },
                    { "system": ICD, "code": "I10" }
                ]}
            }),
            &[],
        ),
        (
            "blood pressure vital signs",
            json!({
                "resourceType": "Observation",
                "category": [coding("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs")],
                "code": coding(LOINC, "85354-9"),
                "component": [
                    { "code": coding(LOINC, "8480-6"), "valueQuantity": { "value": 120, "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } },
                    { "code": coding(LOINC, "8462-4"), "valueQuantity": { "value": 80, "system": "http://unitsofmeasure.org", "code": "mm[Hg]" } }
                ]
            }),
            &[],
        ),
        (
            "an ambulatory encounter (class is a v3-ActCode coding)",
            json!({ "resourceType": "Encounter", "class": { "system": ACT_CODE_SYSTEM, "code": "AMB" } }),
            &[],
        ),
        (
            "reference displays and free text are never read",
            json!({
                "resourceType": "Encounter",
                "serviceProvider": { "reference": "Organization/1", "display": "HIV and addiction clinic" },
                "reasonCode": [{ "text": "pregnancy" }]
            }),
            &[],
        ),
        (
            "labels in meta are not codes to match",
            json!({ "resourceType": "Observation", "meta": { "security": [{ "system": SCT, "code": "86406008" }] } }),
            &[],
        ),
        (
            "a catalogue Medication is not patient data",
            with("Medication", "code", RXNORM, "1999667"),
            &[],
        ),
        (
            "a Consent naming what it restricts is not labelled",
            json!({ "resourceType": "Consent", "provision": { "code": [coding(SCT, "86406008")] } }),
            &[],
        ),
        ("not an object", json!("B20"), &[]),
    ]);
}

#[test]
fn claims_and_nested_resources_disclose_their_codes() {
    check(&[
        (
            "claim diagnosis",
            json!({ "resourceType": "Claim", "diagnosis": [{ "sequence": 1, "diagnosisCodeableConcept": coding(ICD, "B20") }] }),
            &["HIV", "R"],
        ),
        (
            "claim procedure",
            json!({ "resourceType": "Claim", "procedure": [{ "sequence": 1, "procedureCodeableConcept": coding(SCT, "22523008") }] }),
            &["SEX", "R"],
        ),
        (
            "EOB billed item",
            json!({ "resourceType": "ExplanationOfBenefit", "item": [{ "sequence": 1, "productOrService": coding(SCT, "19169002") }] }),
            &["SEX", "R"],
        ),
        (
            "a contained Medication of a prescription",
            json!({
                "resourceType": "MedicationRequest",
                "contained": [{ "resourceType": "Medication", "id": "m", "code": coding(RXNORM, "1999667") }],
                "medicationReference": { "reference": "#m" }
            }),
            &["HIV", "R"],
        ),
        (
            "a document Bundle discloses its entries",
            json!({ "resourceType": "Bundle", "type": "document", "entry": [{ "resource": condition(SCT, "7200002") }] }),
            &["ETH", "R"],
        ),
    ]);
}

#[test]
fn apply_adds_missing_labels_once_and_keeps_existing_ones() {
    let labeller = labeller();
    let mut resource = condition(SCT, "86406008");
    resource["meta"] = json!({
        "tag": [{ "system": "urn:example", "code": "t" }],
        "security": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST" }]
    });
    let added = labeller.apply(&mut resource).expect("labels");
    assert_eq!(codes(&added), ["HIV", "R"]);
    assert_eq!(
        resource["meta"]["security"],
        json!([
            { "system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "HTEST" },
            { "system": ACT_CODE_SYSTEM, "code": "HIV", "display": "HIV/AIDS information sensitivity" },
            { "system": CONFIDENTIALITY_SYSTEM, "code": "R", "display": "restricted" }
        ])
    );
    assert_eq!(resource["meta"]["tag"][0]["code"], "t");

    let before = resource.clone();
    assert!(labeller.apply(&mut resource).expect("labels").is_empty());
    assert_eq!(resource, before, "a second apply changes nothing");
}

#[test]
fn apply_tables() {
    let labeller = labeller();
    let hiv = || json!({ "system": ACT_CODE_SYSTEM, "code": "HIV", "display": "x" });
    let conf = |code: &str| json!({ "system": CONFIDENTIALITY_SYSTEM, "code": code });
    let cases: Vec<(&str, Value, Value, &[&str])> = vec![
        (
            "no meta yet",
            condition(ICD, "B20"),
            Value::Null,
            &["HIV", "R"],
        ),
        (
            "label present, R missing",
            condition(ICD, "B20"),
            json!({ "security": [hiv()] }),
            &["R"],
        ),
        (
            "V already stricter than R",
            condition(ICD, "B20"),
            json!({ "security": [conf("V")] }),
            &["HIV"],
        ),
        (
            "N kept, R added",
            condition(ICD, "B20"),
            json!({ "security": [conf("N")] }),
            &["HIV", "R"],
        ),
        (
            "a source's own sensitivity label brings R",
            condition(SCT, "38341003"),
            json!({ "security": [hiv()] }),
            &["R"],
        ),
        (
            "nothing sensitive, nothing added",
            condition(SCT, "38341003"),
            json!({ "security": [] }),
            &[],
        ),
    ];
    for (why, mut resource, meta, expected) in cases {
        if !meta.is_null() {
            resource["meta"] = meta;
        }
        let added = labeller.apply(&mut resource).expect(why);
        assert_eq!(codes(&added), expected, "{why}");
        let listed = resource["meta"]["security"].as_array().map_or(0, Vec::len);
        let unique: HashSet<String> = resource["meta"]["security"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|l| format!("{}|{}", l["system"], l["code"]))
            .collect();
        assert_eq!(listed, unique.len(), "{why}: no duplicates");
    }
}

#[test]
fn apply_refuses_a_malformed_meta_rather_than_leave_it_unlabelled() {
    let labeller = labeller();
    for (meta, element) in [
        (json!("x"), "meta"),
        (json!({ "security": {} }), "meta.security"),
    ] {
        let mut resource = condition(ICD, "B20");
        resource["meta"] = meta;
        let err = labeller.apply(&mut resource).expect_err("malformed meta");
        assert_eq!(err.code(), "label_meta_malformed");
        assert!(err.to_string().contains(element), "{err}");
    }
}
