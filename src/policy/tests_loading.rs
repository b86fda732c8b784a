//! Loading a policy directory: what start-up refuses, and where the error points.

use std::path::{Path, PathBuf};

use super::{
    BUILTIN_SCHEMA, ConsentOutcome, PolicyAction, PolicyEngine, PolicyError, PolicyRequest,
};

/// A temporary policy directory holding the shipped schema (unless replaced) and `files`.
fn policy_dir(schema: Option<&str>, files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("temp dir");
    if let Some(schema) = schema
        .or(Some(BUILTIN_SCHEMA))
        .filter(|text| !text.is_empty())
    {
        std::fs::write(dir.path().join("schema.cedarschema"), schema).expect("write schema");
    }
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).expect("write policy");
    }
    dir
}

fn load_error(dir: &Path) -> PolicyError {
    match PolicyEngine::load(dir) {
        Ok(_) => panic!("{} loaded, expected an error", dir.display()),
        Err(error) => error,
    }
}

const GOOD: &str = r#"// permits everything with a consent
@id("ok")
permit (principal, action, resource) when { context.consent == "permit" };
"#;

/// (name, files, expected code, file that should be named, expected line, reason fragment)
type LoadCase = (
    &'static str,
    &'static [(&'static str, &'static str)],
    &'static str,
    &'static str,
    usize,
    &'static str,
);

const LOAD_CASES: &[LoadCase] = &[
    (
        "syntax error on line 3",
        &[
            ("a.cedar", GOOD),
            (
                "bad.cedar",
                "// comment\n@id(\"x\")\npermit (principal, action, resource) when { context.consent == };\n",
            ),
        ],
        "policy_parse",
        "bad.cedar",
        3,
        "",
    ),
    (
        "attribute missing from the schema",
        &[(
            "bad.cedar",
            "@id(\"first\")\npermit (principal, action, resource);\n\n@id(\"nick\")\npermit (principal, action, resource)\nwhen { principal.nickname == \"x\" };\n",
        )],
        "policy_validation",
        "bad.cedar",
        6,
        "nickname",
    ),
    (
        "context attribute of the wrong type",
        &[(
            "bad.cedar",
            "@id(\"t\")\nforbid (principal, action, resource)\nwhen { context.break_glass == \"yes\" };\n",
        )],
        "policy_validation",
        "bad.cedar",
        3,
        "",
    ),
    (
        "action not in the schema",
        &[(
            "bad.cedar",
            "@id(\"t\")\npermit (principal, action == Consentgate::Action::\"delete\", resource);\n",
        )],
        "policy_validation",
        "bad.cedar",
        2,
        "delete",
    ),
    (
        "missing @id",
        &[(
            "bad.cedar",
            "@id(\"a\")\npermit (principal, action, resource);\n\npermit (principal, action, resource);\n",
        )],
        "policy_annotation",
        "bad.cedar",
        4,
        "@id",
    ),
    (
        "duplicate @id across files",
        &[
            ("a.cedar", GOOD),
            (
                "b.cedar",
                "\n\n@id(\"ok\")\nforbid (principal, action, resource);\n",
            ),
        ],
        "policy_annotation",
        "b.cedar",
        3,
        "a.cedar:2:1",
    ),
    (
        "misspelt obligation",
        &[(
            "bad.cedar",
            "@id(\"t\")\n@obligaton(\"minimum-necessary\")\npermit (principal, action, resource);\n",
        )],
        "policy_annotation",
        "bad.cedar",
        1,
        "@obligaton",
    ),
    (
        "obligation on a forbid",
        &[(
            "bad.cedar",
            "@id(\"t\")\n@obligation(\"audit:x\")\nforbid (principal, action, resource);\n",
        )],
        "policy_annotation",
        "bad.cedar",
        1,
        "forbid",
    ),
    (
        "an obligation the gateway does not know",
        &[(
            "bad.cedar",
            "@id(\"t\")\n@obligation(\"deidentify-everything\")\npermit (principal, action, resource);\n",
        )],
        "policy_annotation",
        "bad.cedar",
        1,
        "not an obligation the gateway knows",
    ),
    (
        "two obligations in one annotation",
        &[(
            "bad.cedar",
            "@id(\"t\")\n@obligation(\"audit:x, notify:patient\")\npermit (principal, action, resource);\n",
        )],
        "policy_annotation",
        "bad.cedar",
        1,
        "not an obligation the gateway knows",
    ),
    (
        "policy template",
        &[
            ("a.cedar", GOOD),
            (
                "bad.cedar",
                "\n@id(\"t\")\npermit (principal == ?principal, action, resource);\n",
            ),
        ],
        "policy_annotation",
        "bad.cedar",
        2,
        "template",
    ),
];

#[test]
fn invalid_policies_stop_loading_with_file_and_line() {
    let mut failures = Vec::new();
    for (name, files, code, file, line, fragment) in LOAD_CASES {
        let dir = policy_dir(None, files);
        let error = load_error(dir.path());
        let expected_file = dir.path().join(file).display().to_string();
        let (actual_file, actual_line) = match &error {
            PolicyError::Parse { file, line, .. }
            | PolicyError::Validation { file, line, .. }
            | PolicyError::Annotation { file, line, .. } => (file.clone(), *line),
            other => (format!("{other:?}"), 0),
        };
        let message = error.to_string();
        let ok = error.code() == *code
            && actual_file == expected_file
            && actual_line == *line
            && message.starts_with(&format!("{expected_file}:{line}:"))
            && message.contains(fragment);
        if !ok {
            failures.push(format!("{name}: got {} {message}", error.code()));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn column_points_at_the_error() {
    let dir = policy_dir(
        None,
        &[(
            "bad.cedar",
            "@id(\"t\")\npermit (principal, action, resource)\n  when { principal.nickname == \"x\" };\n",
        )],
    );
    match load_error(dir.path()) {
        PolicyError::Validation { line, column, .. } => assert_eq!((line, column), (3, 10)),
        other => panic!("expected a validation error, got {other}"),
    }
}

#[test]
fn schema_problems_stop_loading() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "syntax error",
            "namespace Consentgate {\n  entity Client = {\n    role String,\n  };\n}\n",
            "policy_schema",
        ),
        (
            "valid schema the gateway cannot fill",
            "namespace Consentgate {\n  entity Client = { role: String, organization: String };\n  \
             entity Resource = { resource_type: String, labels: Set<String>, patient: String };\n  \
             action read, export, disclose appliesTo { principal: Client, resource: Resource, \
             context: { consent: String, ticket: String } };\n}\n",
            "policy_schema_mismatch",
        ),
        ("no schema file", "", "policy_io"),
    ];
    for (name, schema, code) in cases {
        let dir = policy_dir(Some(schema), &[("a.cedar", GOOD)]);
        let error = load_error(dir.path());
        assert_eq!(error.code(), *code, "{name}: {error}");
        assert!(
            error.to_string().contains("schema.cedarschema"),
            "{name}: {error}"
        );
        if let PolicyError::Schema { line, .. } = error {
            assert_eq!(line, 3, "{name}");
        }
    }
}

#[test]
fn a_directory_without_policies_is_refused() {
    let dir = policy_dir(None, &[("notes.txt", "not a policy")]);
    assert_eq!(load_error(dir.path()).code(), "policy_none");
    let missing: PathBuf = dir.path().join("missing");
    assert_eq!(load_error(&missing).code(), "policy_io");
}

fn request<'a>(consent: ConsentOutcome, labels: &'a [String]) -> PolicyRequest<'a> {
    PolicyRequest {
        client_id: "c",
        role: "researcher",
        organization: "o",
        action: PolicyAction::Read,
        resource_type: "Observation",
        resource_id: "1",
        labels,
        patient: "p",
        purpose: "HRESCH",
        purpose_family: &[],
        consent,
        consented_labels: &[],
        break_glass: false,
        emergency_opt_out: false,
        identified_research: false,
        justification: "",
    }
}

#[test]
fn obligations_of_all_permits_that_held_are_merged() {
    let dir = policy_dir(
        None,
        &[
            (
                "a.cedar",
                "@id(\"a\")\n@obligation(\"deidentify:safe-harbor\")\n@obligation_audit(\"audit:break-glass\")\n\
                 permit (principal, action, resource) when { context.consent == \"permit\" };\n",
            ),
            (
                "b.cedar",
                "@id(\"b\")\n@obligation(\"audit:break-glass\")\npermit (principal, action, resource);\n\n\
                 @id(\"c\")\n@obligation(\"notify:patient\")\npermit (principal, action, resource) \
                 when { context.consent == \"deny\" };\n",
            ),
        ],
    );
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    let decision = engine.decide(&request(ConsentOutcome::Permit, &[]));
    assert!(decision.permit);
    let codes: Vec<String> = decision.obligations.iter().map(|o| o.code()).collect();
    assert_eq!(codes, ["deidentify:safe-harbor", "audit:break-glass"]);
    assert_eq!(decision.policies, ["a", "b"]);
}

#[test]
fn obligations_are_dropped_when_a_forbid_wins() {
    let dir = policy_dir(
        None,
        &[(
            "a.cedar",
            "@id(\"p\")\n@obligation(\"audit:break-glass\")\npermit (principal, action, resource);\n\n\
             @id(\"f\")\nforbid (principal, action, resource) when { context.consent == \"none\" };\n",
        )],
    );
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    let decision = engine.decide(&request(ConsentOutcome::None, &[]));
    assert!(!decision.permit);
    assert!(decision.obligations.is_empty());
    assert_eq!(decision.policies, ["f"]);
}

#[test]
fn evaluation_errors_deny_and_are_reported_without_values() {
    // Cedar alone would skip the erroring forbid and permit; the engine fails closed.
    let dir = policy_dir(
        None,
        &[(
            "a.cedar",
            "@id(\"always\")\n@obligation(\"audit:break-glass\")\npermit (principal, action, resource);\n\n\
             @id(\"overflowing\")\nforbid (principal, action, resource)\n\
             when { 9223372036854775807 + 1 > 0 };\n",
        )],
    );
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    let decision = engine.decide(&request(ConsentOutcome::Permit, &[]));
    assert!(!decision.permit);
    assert!(decision.obligations.is_empty());
    assert_eq!(decision.policies, ["overflowing"]);
    assert_eq!(decision.errors, ["overflowing: integer_overflow"]);
}

#[test]
fn policies_that_name_ids_are_never_memoised() {
    // An institution's policy about one patient must see every request's patient.
    let dir = policy_dir(
        None,
        &[(
            "a.cedar",
            "@id(\"all\")\npermit (principal, action, resource);\n\n\
             @id(\"not-p\")\nforbid (principal, action, resource) when { resource.patient == \"p\" };\n",
        )],
    );
    let engine = PolicyEngine::load(dir.path()).expect("loads");
    assert!(!engine.memoises());
    let first = engine.decide(&request(ConsentOutcome::Permit, &[]));
    assert!(!first.permit, "patient p is refused");
    let other = PolicyRequest {
        patient: "q",
        ..request(ConsentOutcome::Permit, &[])
    };
    assert!(engine.decide(&other).permit, "patient q is not");
}
