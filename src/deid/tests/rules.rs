//! One test per Safe Harbor rule, on small hand-written resources; plus the pieces below
//! them (dates, keys, the element table, profile loading).

use serde_json::{Value, json};
use time::Date;
use time::macros::date;

use super::super::dates::{self, FhirDate};
use super::super::schema::{self, TypeKind};
use super::super::{AGE_EXTENSION_URL, DeidError, Deidentifier, Profile, StudyKey};

const TODAY: Date = date!(2026 - 11 - 29);
const PATIENT: &str = "pat-1";

fn key(secret: &str) -> StudyKey {
    StudyKey::from_bytes(format!("{secret}: sixteen bytes or more").as_bytes())
        .expect("long enough")
}

/// De-identifies with the Safe Harbor profile and the key "a".
fn safe_harbor(resource: Value) -> Result<Value, DeidError> {
    let profile = Profile::safe_harbor();
    let key = key("a");
    Deidentifier::new(&profile, &key, TODAY).deidentify(&resource, PATIENT)
}

fn offset() -> i64 {
    let profile = Profile::safe_harbor();
    let key = key("a");
    Deidentifier::new(&profile, &key, TODAY).date_offset_days(PATIENT)
}

/// `date` moved by the patient's offset, as `YYYY-MM-DD`.
fn shifted(date: Date) -> String {
    dates::format_date(dates::shift(date, offset()).expect("in range"))
}

#[test]
fn elements_not_listed_are_dropped() {
    let out = safe_harbor(json!({
        "resourceType": "Patient", "id": "pat-1",
        "text": {"status": "generated", "div": "<div>Jane Doe</div>"},
        "identifier": [{"system": "http://hl7.org/fhir/sid/us-ssn", "value": "999-11-2222"}],
        "name": [{"family": "Doe", "given": ["Jane"]}],
        "telecom": [{"system": "phone", "value": "555-123-4567"}],
        "photo": [{"contentType": "image/png", "data": "AAAA"}],
        "contact": [{"name": {"family": "Roe"}}],
        "notAnElement": "free text",
        "gender": "female"
    }))
    .expect("patient");
    let keys: Vec<&str> = out
        .as_object()
        .expect("object")
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys, ["resourceType", "id", "gender"]);
    // A malformed primitive cannot smuggle nested data through an allowed element.
    let malformed =
        safe_harbor(json!({"resourceType": "Patient", "id": "p", "gender": {"note": "Jane Doe"}}))
            .expect("patient");
    assert!(malformed.get("gender").is_none());
}

#[test]
fn free_text_goes_even_inside_allowed_elements() {
    let out = safe_harbor(json!({
        "resourceType": "Observation", "id": "o1", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}], "text": "typed by Dr Who"},
        "valueString": "patient says her neighbour Jane",
        "note": [{"text": "call 555-123-4567"}],
        "referenceRange": [{"low": {"value": 1}, "text": "free"}]
    }))
    .expect("observation");
    assert_eq!(
        out["code"],
        json!({"coding": [{"system": "http://loinc.org", "code": "8302-2", "display": "Body Height"}]})
    );
    assert!(out.get("valueString").is_none() && out.get("note").is_none());
    assert_eq!(out["referenceRange"], json!([{"low": {"value": 1}}]));
}

#[test]
fn values_and_their_choices_are_kept_by_type() {
    let cases = [
        (
            json!({"valueQuantity": {"value": 7.2, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}}),
            true,
        ),
        (
            json!({"valueCodeableConcept": {"coding": [{"system": "http://snomed.info/sct", "code": "373066001"}]}}),
            true,
        ),
        (json!({"valueBoolean": true}), true),
        (json!({"valueInteger": 3}), true),
        (json!({"valueString": "free text"}), false),
    ];
    for (value, kept) in cases {
        let mut resource = json!({"resourceType": "Observation", "id": "o1", "status": "final"});
        let (name, inner) = value
            .as_object()
            .and_then(|o| o.iter().next())
            .expect("one value");
        resource[name] = inner.clone();
        let out = safe_harbor(resource).expect("observation");
        assert_eq!(out.get(name) == Some(inner), kept, "{name}");
    }
}

#[test]
fn resource_types_not_in_the_profile_are_refused() {
    for (resource, code) in [
        (
            json!({"resourceType": "RelatedPerson", "id": "r"}),
            "resource_type_not_in_profile",
        ),
        (
            json!({"resourceType": "Patient", "id": "p", "contained": [{"resourceType": "Media", "id": "m"}]}),
            "resource_type_not_in_profile",
        ),
        (json!({"id": "no-type"}), "not_a_resource"),
        (json!(["not", "an", "object"]), "not_a_resource"),
    ] {
        assert_eq!(safe_harbor(resource).expect_err("refused").code(), code);
    }
}

#[test]
fn extensions_leave_only_when_listed() {
    let race = "http://hl7.org/fhir/us/core/StructureDefinition/us-core-race";
    let out = safe_harbor(json!({
        "resourceType": "Patient", "id": "p",
        "extension": [
            {"url": race, "extension": [
                {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}},
                {"url": "text", "valueString": "White"}
            ]},
            {"url": "http://hl7.org/fhir/StructureDefinition/patient-mothersMaidenName", "valueString": "Roe"},
            {"url": "http://example.org/unknown", "valueString": "anything"}
        ]
    }))
    .expect("patient");
    assert_eq!(
        out["extension"],
        json!([{"url": race, "extension": [
            {"url": "ombCategory", "valueCoding": {"system": "urn:oid:2.16.840.1.113883.6.238", "code": "2106-3"}}
        ]}])
    );
    let refused = safe_harbor(json!({
        "resourceType": "Observation", "id": "o", "status": "final",
        "modifierExtension": [{"url": "http://example.org/negation", "valueBoolean": true}]
    }));
    assert_eq!(
        refused.expect_err("unknown modifier").code(),
        "modifier_extension_not_allowed"
    );
}

#[test]
fn every_date_moves_by_the_same_offset_keeping_time_and_zone() {
    let offset = offset();
    assert!(offset != 0 && offset.abs() <= 365);
    let moved = |d: Date| shifted(d);
    let cases = [
        ("2020-02-29", Some(moved(date!(2020 - 02 - 29)))),
        (
            "2021-06-01T08:15:30+02:00",
            Some(format!("{}T08:15:30+02:00", moved(date!(2021 - 06 - 01)))),
        ),
        (
            "2021-06-01T23:59:59.123Z",
            Some(format!("{}T23:59:59.123Z", moved(date!(2021 - 06 - 01)))),
        ),
        ("2014", Some("2014".to_string())),
        ("2014-05", Some("2014".to_string())),
        ("2021-13-01", None),
        ("2021-06-01T08:15", None),
        ("yesterday", None),
    ];
    for (source, expected) in cases {
        let out =
            safe_harbor(json!({"resourceType": "Condition", "id": "c", "recordedDate": source}))
                .expect("condition");
        assert_eq!(
            out.get("recordedDate").and_then(Value::as_str),
            expected.as_deref(),
            "{source}"
        );
    }
    let out = safe_harbor(json!({"resourceType": "Observation", "id": "o", "status": "final", "issued": "2021-06-01T08:15:30.5-05:00"}))
        .expect("instant");
    assert_eq!(
        out["issued"],
        json!(format!("{}T08:15:30.5-05:00", moved(date!(2021 - 06 - 01))))
    );
}

#[test]
fn ages_over_89_become_90_or_older() {
    // Born 1930: 96 on the reference day, masked whatever the shift.
    let out = safe_harbor(json!({"resourceType": "Patient", "id": "p", "birthDate": "1930-05-17"}))
        .expect("old");
    assert!(out.get("birthDate").is_none());
    assert_eq!(
        out["_birthDate"]["extension"],
        json!([
            {"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "masked"},
            {"url": AGE_EXTENSION_URL, "valueAge": {"value": 90, "comparator": ">=", "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}
        ])
    );
    let young =
        safe_harbor(json!({"resourceType": "Patient", "id": "p", "birthDate": "1990-05-17"}))
            .expect("young");
    assert_eq!(young["birthDate"], json!(shifted(date!(1990 - 05 - 17))));
    // A year alone counts from its first day, the oldest reading.
    let year = safe_harbor(json!({"resourceType": "Patient", "id": "p", "birthDate": "1936"}))
        .expect("year");
    assert!(year.get("birthDate").is_none());
    // Other dates that show such an age are dropped; ages themselves are capped.
    let condition = safe_harbor(json!({
        "resourceType": "Condition", "id": "c", "onsetDateTime": "1925-01-01", "recordedDate": "2020-01-01",
        "abatementAge": {"value": 95, "unit": "years", "system": "http://unitsofmeasure.org", "code": "a"}
    }))
    .expect("condition");
    assert!(condition.get("onsetDateTime").is_none());
    assert!(condition.get("recordedDate").is_some());
    assert_eq!(
        condition["abatementAge"],
        json!({"value": 90, "comparator": ">=", "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"})
    );
    for (age, capped) in [
        (json!({"value": 45, "code": "a"}), false),
        (json!({"value": 1068, "code": "mo"}), false),
        (json!({"value": 1100, "code": "wk"}), false),
        (json!({"value": 1080, "code": "mo"}), true),
    ] {
        let out = safe_harbor(json!({"resourceType": "Condition", "id": "c", "onsetAge": age}))
            .expect("condition");
        assert_eq!(
            out["onsetAge"]["comparator"] == json!(">="),
            capped,
            "{age}"
        );
    }
}

#[test]
fn postal_codes_keep_zip3_unless_restricted() {
    for (postal_code, expected) in [
        ("98053", Some("980")),
        ("02138-1234", Some("021")),
        ("03601", Some("000")),
        ("893", Some("000")),
        ("K1A 0B1", None),
        ("12", None),
    ] {
        let out = safe_harbor(json!({"resourceType": "Patient", "id": "p", "address": [{
            "line": ["1 Main St"], "city": "Springfield", "district": "County", "state": "MA", "country": "US", "postalCode": postal_code
        }]}))
        .expect("patient");
        let mut address = json!({"state": "MA", "country": "US"});
        if let Some(zip3) = expected {
            address["postalCode"] = json!(zip3);
        }
        assert_eq!(out["address"], json!([address]), "{postal_code}");
    }
}

#[test]
fn ids_and_references_become_pseudonyms() {
    let profile = Profile::safe_harbor();
    let key = key("a");
    let deid = Deidentifier::new(&profile, &key, TODAY);
    let p = |t: &str, id: &str| deid.pseudonym(t, id);
    let cases = [
        (
            "Patient/123",
            Some(format!("Patient/{}", p("Patient", "123"))),
        ),
        (
            "https://ehr.example/fhir/Patient/123",
            Some(format!("Patient/{}", p("Patient", "123"))),
        ),
        (
            "Encounter/e.9/_history/2",
            Some(format!("Encounter/{}", p("Encounter", "e.9"))),
        ),
        ("#med", Some(format!("#{}", key.contained_pseudonym("med")))),
        ("#", Some("#".to_string())),
        (
            "Patient?identifier=http://hl7.org/fhir/sid/us-ssn|999-11-2222",
            None,
        ),
        ("urn:oid:1.2.3", None),
        ("Unknown/123", None),
        ("Patient/not valid", None),
    ];
    for (reference, expected) in cases {
        assert_eq!(
            deid.pseudonymise_reference(reference),
            expected,
            "{reference}"
        );
    }
    let uuid = deid
        .pseudonymise_reference("urn:uuid:04121321-4af5-424c-a0e1-ed3aab1c349d")
        .expect("uuid");
    assert!(uuid.starts_with("urn:uuid:") && uuid.len() == 45 && !uuid.contains("04121321"));
    let pseudonym = p("Patient", "123");
    assert_eq!(pseudonym.len(), 32);
    assert!(pseudonym.bytes().all(|b| b.is_ascii_hexdigit()));
    assert_ne!(pseudonym, p("Patient", "124"));
    assert_ne!(pseudonym, p("Group", "123"));
    // A contained resource and the local reference to it keep matching.
    let out = safe_harbor(json!({
        "resourceType": "MedicationRequest", "id": "mr", "status": "active", "intent": "order",
        "contained": [{"resourceType": "Coverage", "id": "cov", "status": "active"}],
        "insurance": [{"reference": "#cov"}],
        "subject": {"reference": "Patient/pat-1", "display": "Jane Doe", "identifier": {"value": "MRN-1"}}
    }))
    .expect("request");
    assert_eq!(
        out["insurance"][0]["reference"],
        json!(format!(
            "#{}",
            out["contained"][0]["id"].as_str().expect("id")
        ))
    );
    assert_eq!(
        out["subject"],
        json!({"reference": format!("Patient/{}", p("Patient", "pat-1"))})
    );
    assert_eq!(out["id"], json!(p("MedicationRequest", "mr")));
}

#[test]
fn study_keys_are_unlinkable_and_secret() {
    assert_eq!(
        StudyKey::from_bytes(b"short")
            .expect_err("too short")
            .code(),
        "study_key_too_short"
    );
    let master = b"the gateway's master secret, 32+";
    let (a, b) = (
        StudyKey::for_study(master, "study-a").expect("a"),
        StudyKey::for_study(master, "study-b").expect("b"),
    );
    assert_ne!(a.pseudonym("Patient", "1"), b.pseudonym("Patient", "1"));
    assert_eq!(
        a.pseudonym("Patient", "1"),
        StudyKey::for_study(master, "study-a")
            .expect("a")
            .pseudonym("Patient", "1")
    );
    assert_eq!(format!("{a:?}"), "StudyKey(..)");
    // Offsets spread over the whole range and are never zero.
    let offsets: Vec<i64> = (0..2000)
        .map(|i| a.date_offset_days(&format!("patient-{i}"), 365))
        .collect();
    assert!(offsets.iter().all(|o| *o != 0 && o.abs() <= 365));
    assert!(offsets.iter().any(|o| *o <= -300) && offsets.iter().any(|o| *o >= 300));
    assert!((0..50).all(|i| a.date_offset_days(&format!("p{i}"), 1).abs() == 1));
}

#[test]
fn fhir_dates_parse_as_the_spec_writes_them() {
    let cases = [
        ("2020", true, Some((2020, None, None, ""))),
        ("2020-02", true, Some((2020, Some(2), None, ""))),
        ("2020-02-29", true, Some((2020, Some(2), Some(29), ""))),
        ("2021-02-29", false, None),
        (
            "2020-02-29T10:00:00Z",
            true,
            Some((2020, Some(2), Some(29), "T10:00:00Z")),
        ),
        (
            "2020-02-29T24:00:00Z",
            false,
            Some((2020, Some(2), Some(29), "T24:00:00Z")),
        ),
        ("2020-02-29Z", false, Some((2020, Some(2), Some(29), "Z"))),
        ("0000", false, None),
        ("20", false, None),
    ];
    for (text, strict, prefix) in cases {
        let parsed = FhirDate::parse_prefix(text).map(|d| (d.year, d.month, d.day, d.rest));
        assert_eq!(parsed, prefix, "{text}");
        assert_eq!(FhirDate::parse_strict(text).is_some(), strict, "{text}");
    }
    assert_eq!(
        dates::full_years(date!(1936 - 11 - 30), date!(2026 - 11 - 29)),
        89
    );
    assert_eq!(
        dates::full_years(date!(1936 - 11 - 29), date!(2026 - 11 - 29)),
        90
    );
    assert_eq!(dates::shift(date!(0001 - 01 - 05), -10), None);
}

#[test]
fn the_element_table_knows_types() {
    let cases = [
        ("Patient", "birthDate", "date", TypeKind::Primitive, "date"),
        (
            "Patient",
            "contact",
            "BackboneElement",
            TypeKind::Backbone,
            "Patient.contact",
        ),
        (
            "Observation",
            "valueQuantity",
            "Quantity",
            TypeKind::Datatype,
            "Quantity",
        ),
        (
            "Questionnaire.item",
            "item",
            "#Questionnaire.item",
            TypeKind::Backbone,
            "Questionnaire.item",
        ),
        (
            "Bundle.entry",
            "resource",
            "Resource",
            TypeKind::Resource,
            "Resource",
        ),
        ("Extension", "url", "uri", TypeKind::Primitive, "uri"),
        (
            "date",
            "extension",
            "Extension",
            TypeKind::Datatype,
            "Extension",
        ),
    ];
    for (base, name, type_code, kind, child_base) in cases {
        let def = schema::child(base, name).unwrap_or_else(|| panic!("{base}.{name}"));
        assert_eq!(
            (def.type_code, def.kind(), def.child_base()),
            (type_code, kind, child_base),
            "{base}.{name}"
        );
    }
    let choice = schema::child("Observation", "valueQuantity").expect("choice");
    assert_eq!(choice.choice_stem(), Some("value"));
    let names: Vec<&str> = schema::choices_of("Observation", "value").collect();
    assert!(names.contains(&"valueQuantity") && names.contains(&"valueString"));
    assert!(
        !names.iter().any(|n| n.starts_with("valueSet")),
        "{names:?}"
    );
    assert!(schema::child("Patient", "valueQuantity").is_none());
    assert!(schema::is_resource_type("Patient") && !schema::is_resource_type("HumanName"));
}

#[test]
fn profiles_are_checked_against_the_element_table() {
    let zip = r#"{"version": "1", "zip3": ["036"]}"#;
    let profile = |resources: &str, datatypes: &str| {
        format!(
            r#"{{"profile": "t", "version": "1", "dateShiftMaxDays": 30, "maxAge": 89, "restrictedZip3": "z.json", "resources": {resources}, "datatypes": {datatypes}}}"#
        )
    };
    let valid = Profile::from_texts(
        &profile(
            r#"{"Observation": ["code", "component.value[x]", "valueQuantity"]}"#,
            r#"{"Coding": ["code"]}"#,
        ),
        zip,
    );
    assert!(valid.is_ok(), "{valid:?}");
    for (resources, datatypes, zip3) in [
        (r#"{"Observation": ["cod"]}"#, "{}", zip),
        (r#"{"Observation": ["code.coding"]}"#, "{}", zip),
        (r#"{"Observation": ["value"]}"#, "{}", zip),
        (r#"{"Observations": ["code"]}"#, "{}", zip),
        (
            r#"{"Observation": ["code"]}"#,
            r#"{"Coding": ["text"]}"#,
            zip,
        ),
        (
            r#"{"Observation": ["code"]}"#,
            "{}",
            r#"{"version": "1", "zip3": ["36"]}"#,
        ),
        (
            r#"{"Observation": ["code"]}"#,
            "{}",
            r#"{"version": "", "zip3": []}"#,
        ),
    ] {
        let error = Profile::from_texts(&profile(resources, datatypes), zip3).expect_err(resources);
        assert_eq!(error.code(), "profile_invalid", "{resources} {datatypes}");
    }
    let missing =
        Profile::load(std::path::Path::new("/nonexistent/profile.json")).expect_err("missing");
    assert_eq!(missing.code(), "profile_unreadable");
}

#[test]
fn safe_harbor_profile_loads_from_its_file_too() {
    let path = super::project_root().join("policies/deid/safe-harbor.json");
    let loaded = Profile::load(&path).expect("the policy file");
    let embedded = Profile::safe_harbor();
    assert_eq!(
        (loaded.name(), loaded.version()),
        (embedded.name(), embedded.version())
    );
    assert_eq!(
        loaded.restricted_zip3_version(),
        embedded.restricted_zip3_version()
    );
    assert!(
        loaded.allows_resource_type("Observation") && !loaded.allows_resource_type("RelatedPerson")
    );
}

#[test]
fn primitive_extensions_travel_with_their_primitive() {
    const DAR: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
    let out = safe_harbor(json!({
        "resourceType": "Patient", "id": "p",
        "_gender": {"extension": [
            {"url": DAR, "valueCode": "unknown"},
            {"url": "http://example.org/nickname", "valueString": "Janie"}
        ]},
        "gender": "female",
        // A `_name` without its primitive keeps its allowed extensions.
        "_birthDate": {"extension": [{"url": DAR, "valueCode": "asked-unknown"}]},
        // The sibling of a dropped element goes with it.
        "address": [{"state": "KS", "line": ["1 Main St"], "_line": [{"extension": [{"url": DAR, "valueCode": "masked"}]}]}],
        "_notAnElement": {"extension": [{"url": DAR, "valueCode": "masked"}]}
    }))
    .expect("patient");
    assert_eq!(out["gender"], json!("female"));
    assert_eq!(
        out["_gender"],
        json!({"extension": [{"url": DAR, "valueCode": "unknown"}]})
    );
    assert!(out.get("birthDate").is_none());
    assert_eq!(
        out["_birthDate"],
        json!({"extension": [{"url": DAR, "valueCode": "asked-unknown"}]})
    );
    assert_eq!(out["address"], json!([{"state": "KS"}]));
    assert!(out.get("_notAnElement").is_none());
    let text = out.to_string();
    assert!(!text.contains("Janie") && !text.contains("Main"), "{text}");
}
