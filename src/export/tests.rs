//! Pure parts of the export: reading kick-offs, who may export.

use super::job::{for_study, may_export};
use super::request::ExportRequest;
use crate::auth::clients::Role;
use crate::decision::Requester;

fn query(q: &str) -> Result<ExportRequest, &'static str> {
    ExportRequest::from_query(q).map_err(|e| e.code)
}

#[test]
fn kick_off_parameters() {
    let ok = |q: &str| query(q).unwrap();
    assert_eq!(ok(""), ExportRequest::default());
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
            "_typeFilter=Observation%3Fcode%3Dx",
            "unsupported_parameter",
        ),
        ("patient=Patient/1", "unsupported_parameter"),
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
