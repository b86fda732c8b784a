//! Pure parts of the export: reading kick-offs, who may export.

use super::job::{for_study, may_export};
use super::request::ExportRequest;
use crate::auth::clients::Role;
use crate::config::Limits;
use crate::decision::Requester;
use serde_json::json;

fn limits() -> Limits {
    Limits {
        max_body_bytes: 1 << 20,
        max_json_depth: 64,
        max_bundle_entries: 3,
        default_page_size: 10,
        max_page_size: 100,
    }
}

fn query(q: &str) -> Result<ExportRequest, &'static str> {
    ExportRequest::from_query(q, false, &limits()).map_err(|e| e.code)
}

#[test]
fn kick_off_parameters() {
    let ok = |q: &str| query(q).unwrap();
    let empty = ok("");
    assert!(empty.types.is_empty() && empty.since.is_none() && empty.filters.is_empty());
    assert_eq!(
        ok("_outputFormat=application%2Ffhir%2Bndjson").types,
        Vec::<String>::new()
    );
    assert_eq!(
        ok("_type=Observation,Patient,Observation").types,
        vec!["Observation", "Patient"]
    );
    assert_eq!(
        ok("_since=2024-01-01T00:00:00Z").since,
        Some(1_704_067_200_000_000)
    );
    assert_eq!(
        ok("_since=2024-01-01T01:00:00+01:00").since,
        Some(1_704_067_200_000_000),
        "an unencoded + is a space"
    );
    assert_eq!(
        ok("_since=2024-01-01T01:00:00%2B01:00").since,
        Some(1_704_067_200_000_000)
    );
    for (q, code) in [
        ("_outputFormat=text/csv", "unsupported_output_format"),
        ("_type=Observation,Nonsense", "invalid_type"),
        ("_type=", "invalid_type"),
        ("_since=2024-01-01", "invalid_since"),
        ("_since=yesterday", "invalid_since"),
        ("_type=Patient&_type=Observation", "duplicate_parameter"),
        (
            "_typeFilter=Observation%3Fvalue-quantity%3D5",
            "unsupported_type_filter",
        ),
        ("_typeFilter=Observation", "invalid_type_filter"),
        (
            "_typeFilter=Observation%3Fdate%3Dsoon",
            "invalid_type_filter",
        ),
        ("patient=Patient/1", "unsupported_parameter"),
        ("_elements=id", "unsupported_parameter"),
        ("_count=10", "unknown_parameter"),
    ] {
        assert_eq!(query(q).unwrap_err(), code, "{q}");
    }
}

#[test]
fn only_a_researcher_of_the_study_may_export() {
    let requester = |role: &str, refs: &[&str]| Requester {
        client_id: "c".into(),
        role: Role::parse(role).expect("a role"),
        organization: "o".into(),
        references: refs.iter().map(|r| r.to_string()).collect(),
    };
    assert!(may_export(
        &requester("researcher", &["Device/c", "Group/study1"]),
        "study1"
    ));
    assert!(!may_export(
        &requester("researcher", &["Group/study1"]),
        "study2"
    ));
    assert!(!may_export(
        &requester("researcher", &["Group/study10"]),
        "study1"
    ));
    assert!(!may_export(
        &requester("clinician", &["Group/study1"]),
        "study1"
    ));
    let narrowed = for_study(
        requester(
            "researcher",
            &["Device/c", "Group/study1", "Group/study2", "Organization/o"],
        ),
        "study2",
    );
    assert_eq!(
        narrowed.references,
        vec!["Device/c", "Group/study2", "Organization/o"]
    );
}

#[test]
fn type_filters_are_read_and_lenient_handling_reports_what_it_ignores() {
    let ok = query("_typeFilter=Observation%3Fcode%3D8867-4&_typeFilter=Condition%3Fcategory%3Dx")
        .unwrap();
    assert_eq!(ok.filters.len(), 2);
    assert!(ok.ignored.is_empty());
    let lenient = ExportRequest::from_query(
        "_type=Observation&_elements=id&_typeFilter=Observation%3Fvalue-quantity%3D5",
        true,
        &limits(),
    )
    .unwrap();
    assert_eq!(lenient.types, ["Observation"]);
    assert!(lenient.filters.is_empty());
    assert_eq!(lenient.ignored.len(), 2, "{:?}", lenient.ignored);
    // Lenient handling never excuses a malformed value, nor a patient filter it would drop.
    for q in [
        "_since=yesterday",
        "_typeFilter=Observation",
        "patient=Patient/1",
    ] {
        assert!(
            ExportRequest::from_query(q, true, &limits()).is_err(),
            "{q}"
        );
    }
}

#[test]
fn a_parameters_body_reads_like_the_query_string() {
    let body = json!({"resourceType": "Parameters", "parameter": [
        {"name": "_outputFormat", "valueString": "application/fhir+ndjson"},
        {"name": "_type", "valueString": "Observation,Patient"},
        {"name": "_type", "valueString": "Condition"},
        {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
        {"name": "_typeFilter", "valueString": "Observation?code=8867-4"},
        {"name": "patient", "valueReference": {"reference": "Patient/p1"}},
        {"name": "patient", "valueReference": {"reference": "https://x.example/fhir/Patient/p2"}},
    ]});
    let read = ExportRequest::from_parameters(&body, false, &limits()).unwrap();
    assert_eq!(read.types, ["Observation", "Patient", "Condition"]);
    assert_eq!(read.since, Some(1_704_067_200_000_000));
    assert_eq!(read.filters.len(), 1);
    assert_eq!(read.patients, ["p1", "p2"]);
    let code = |body: serde_json::Value| {
        ExportRequest::from_parameters(&body, false, &limits())
            .unwrap_err()
            .code
    };
    assert_eq!(
        code(json!({"resourceType": "Bundle"})),
        "invalid_parameters"
    );
    assert_eq!(
        code(json!({"resourceType": "Parameters", "parameter": [{"name": "_type"}]})),
        "invalid_parameters"
    );
    assert_eq!(
        code(json!({"resourceType": "Parameters", "parameter": [
            {"name": "patient", "valueReference": {"reference": "Group/g"}}]})),
        "invalid_patient"
    );
    assert_eq!(
        code(json!({"resourceType": "Parameters", "parameter": [
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"},
            {"name": "_since", "valueInstant": "2024-01-01T00:00:00Z"}]})),
        "duplicate_parameter"
    );
    assert_eq!(
        code(json!({"resourceType": "Parameters", "parameter": [
            {"name": "includeAssociatedData", "valueCode": "LatestProvenanceResources"}]})),
        "unsupported_parameter"
    );
    let many: Vec<_> = (0..=super::request::MAX_PARAMETERS)
        .map(|_| json!({"name": "_type", "valueString": "Patient"}))
        .collect();
    assert_eq!(
        code(json!({"resourceType": "Parameters", "parameter": many})),
        "too_many_parameters"
    );
}
