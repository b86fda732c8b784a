use super::*;

fn hex(hash: &Hash) -> String {
    hash.iter().map(|b| format!("{b:02x}")).collect()
}

/// The example of the module doc.
fn example() -> AuditEntry {
    AuditEntry {
        sequence: 42,
        recorded_micros: 1_767_225_600_000_000,
        action: AuditAction::Read,
        outcome: AuditOutcome::Success,
        client_id: "clinic-app".into(),
        organisation: "Organization/northside".into(),
        user: Some("Practitioner/dr-lee".into()),
        purpose_of_use: "TREAT".into(),
        patient_id: Some("pat-1".into()),
        resources: vec!["Observation/obs-7".into(), "Condition/c-2".into()],
        consents: vec!["consent-9".into()],
        policies: vec!["baseline-permit".into()],
        break_glass: None,
        request_id: "req-0001".into(),
        detail: BTreeMap::new(),
    }
}

fn canonical(entry: &AuditEntry) -> String {
    String::from_utf8(entry.canonical_bytes()).unwrap()
}

#[test]
fn documented_example_reproduces() {
    // Cross-checked with Python: json.dumps(sort_keys=True, separators=(",", ":"),
    // ensure_ascii=False) and hashlib.sha256(b"\0" + bytes).
    let want = r#"{"action":"read","client_id":"clinic-app","consents":["consent-9"],"organisation":"Organization/northside","outcome":"success","patient_id":"pat-1","policies":["baseline-permit"],"purpose_of_use":"TREAT","recorded_micros":1767225600000000,"request_id":"req-0001","resources":["Observation/obs-7","Condition/c-2"],"sequence":42,"user":"Practitioner/dr-lee","v":1}"#;
    assert_eq!(canonical(&example()), want);
    assert_eq!(
        hex(&example().leaf_hash()),
        "2b74703f3ba4249a67c5f7670020908bc22580b6608838dc5dc048861cee7342"
    );
    let doc = include_str!("../entry.rs");
    assert!(doc.contains(want), "the module doc shows other bytes");
    assert!(doc.contains("2b74703f3ba4249a67c5f7670020908bc22580b6608838dc5dc048861cee7342"));
}

#[test]
fn strings_escape_and_keys_sort_as_jcs_does() {
    let entry = AuditEntry {
        sequence: 0,
        recorded_micros: -5,
        action: AuditAction::Disclose,
        outcome: AuditOutcome::Denied,
        client_id: "c".into(),
        organisation: "o/p".into(),
        user: None,
        purpose_of_use: "ETREAT".into(),
        patient_id: None,
        resources: vec![],
        consents: vec![],
        policies: vec![],
        break_glass: Some(
            "q\"b\\n\nt\tb\u{8}f\u{c}r\r\u{1}\u{1f}\u{7f}\u{e9}\u{2028}\u{1f600}".into(),
        ),
        request_id: "r".into(),
        // UTF-16 order puts the astral U+1F600 (a surrogate pair, 0xD83D…) before U+E000,
        // although its UTF-8 bytes sort after.
        detail: [
            ("z", "1"),
            ("a", "2"),
            ("\u{e000}", "pua"),
            ("\u{1f600}", "astral"),
            ("A", "x"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    };
    let want = concat!(
        r#"{"action":"disclose","#,
        r#""break_glass":"q\"b\\n\nt\tb\bf\fr\r\u0001\u001f"#,
        "\u{7f}\u{e9}\u{2028}\u{1f600}",
        r#"","client_id":"c","consents":[],"#,
        r#""detail":{"A":"x","a":"2","z":"1","#,
        "\"\u{1f600}\":\"astral\",\"\u{e000}\":\"pua\"},",
        r#""organisation":"o/p","outcome":"denied","policies":[],"purpose_of_use":"ETREAT","#,
        r#""recorded_micros":-5,"request_id":"r","resources":[],"sequence":0,"v":1}"#,
    );
    assert_eq!(canonical(&entry), want);
    // Whatever the escaping, the bytes stay JSON that reads back as the same entry.
    let back: AuditEntry = serde_json::from_slice(&entry.canonical_bytes()).unwrap();
    assert_eq!(back, entry);
}

#[test]
fn absent_members_are_omitted_and_empty_lists_kept() {
    let mut entry = example();
    entry.user = None;
    entry.patient_id = None;
    entry.resources.clear();
    let text = canonical(&entry);
    for absent in [
        "\"user\"",
        "\"patient_id\"",
        "\"break_glass\"",
        "\"detail\"",
        "null",
    ] {
        assert!(!text.contains(absent), "{absent} in {text}");
    }
    assert!(text.contains(r#""resources":[]"#), "{text}");
}

#[test]
fn every_field_is_bound_by_the_leaf_hash() {
    type Change = fn(&mut AuditEntry);
    let changes: [(&str, Change); 19] = [
        ("sequence", |e| e.sequence += 1),
        ("recorded_micros", |e| e.recorded_micros += 1),
        ("action", |e| e.action = AuditAction::Search),
        ("outcome", |e| e.outcome = AuditOutcome::Denied),
        ("client_id", |e| e.client_id.push('x')),
        ("organisation", |e| e.organisation.push('x')),
        ("user", |e| e.user = None),
        ("purpose_of_use", |e| e.purpose_of_use = "ETREAT".into()),
        ("patient_id", |e| e.patient_id = Some("pat-2".into())),
        ("resources order", |e| e.resources.reverse()),
        ("resources", |e| e.resources.push("Patient/pat-1".into())),
        ("consents", |e| e.consents.clear()),
        ("policies", |e| e.policies.push("deny-sensitive".into())),
        ("break_glass", |e| {
            e.break_glass = Some("unresponsive on arrival".into())
        }),
        ("request_id", |e| e.request_id.push('x')),
        ("detail", |e| {
            drop(e.detail.insert("count".into(), "3".into()))
        }),
        // A list item must not be confusable with two items or with a neighbouring field.
        ("list split", |e| {
            e.consents = vec!["consent".into(), "9".into()]
        }),
        ("list join", |e| e.consents = vec!["consent-9\",\"x".into()]),
        ("field shift", |e| {
            e.client_id = "clinic-app\",\"consents\":[\"consent-9\"]".into();
            e.consents.clear();
        }),
    ];
    let base = example();
    for (name, change) in changes {
        let mut changed = example();
        change(&mut changed);
        assert_ne!(changed.canonical_bytes(), base.canonical_bytes(), "{name}");
        assert_ne!(changed.leaf_hash(), base.leaf_hash(), "{name}");
    }
}

#[test]
fn stored_form_round_trips_to_the_same_leaf() {
    let mut entries = vec![example()];
    let mut full = example();
    full.break_glass = Some("unresponsive on arrival".into());
    full.detail.insert("study".into(), "Group/study-1".into());
    entries.push(full);
    for entry in entries {
        let stored = serde_json::to_string(&entry).unwrap();
        let back: AuditEntry = serde_json::from_str(&stored).unwrap();
        assert_eq!(back.leaf_hash(), entry.leaf_hash());
        let from_canonical: AuditEntry = serde_json::from_slice(&entry.canonical_bytes()).unwrap();
        assert_eq!(from_canonical, entry);
    }
}

#[test]
fn codes_match_their_serde_names() {
    use AuditAction::*;
    let actions = [
        Read, Search, Export, Disclose, Decision, Grant, Revoke, Token, Refusal, Request, Approve,
        Decline,
    ];
    for action in actions {
        assert_eq!(serde_json::to_value(action).unwrap(), action.as_str());
    }
    for outcome in [
        AuditOutcome::Success,
        AuditOutcome::Denied,
        AuditOutcome::Error,
    ] {
        assert_eq!(serde_json::to_value(outcome).unwrap(), outcome.as_str());
    }
}

#[test]
fn validation_keeps_fields_to_ids() {
    type Change = fn(&mut AuditEntry);
    /// The field and position the error must name, or `None` for a valid entry.
    type Blame = Option<(&'static str, Option<usize>)>;
    let cases: [(Change, Blame); 17] = [
        (|_| {}, None),
        (
            |e| e.break_glass = Some("patient unresponsive, no proxy reachable".into()),
            None,
        ),
        (|e| drop(e.detail.insert("count".into(), "12".into())), None),
        (|e| e.client_id.clear(), Some(("client_id", None))),
        (
            |e| e.organisation = "North Side Clinic".into(),
            Some(("organisation", None)),
        ),
        (
            |e| e.purpose_of_use = "x".repeat(257),
            Some(("purpose_of_use", None)),
        ),
        (
            |e| e.request_id = "req\n1".into(),
            Some(("request_id", None)),
        ),
        (
            |e| e.user = Some("Dr Jane Lee".into()),
            Some(("user", None)),
        ),
        (
            |e| e.patient_id = Some("Jane Doe".into()),
            Some(("patient_id", None)),
        ),
        (
            |e| e.patient_id = Some("p".repeat(65)),
            Some(("patient_id", None)),
        ),
        (
            |e| e.resources.push("Observation".into()),
            Some(("resources", Some(2))),
        ),
        (
            |e| e.resources[0] = "observation/obs-7".into(),
            Some(("resources", Some(0))),
        ),
        (
            |e| e.resources[1] = "Condition/diabetes type 2".into(),
            Some(("resources", Some(1))),
        ),
        (
            |e| e.consents.push("consent_9".into()),
            Some(("consents", Some(1))),
        ),
        (
            |e| e.policies[0] = String::new(),
            Some(("policies", Some(0))),
        ),
        (
            |e| e.break_glass = Some("line\nbreak".into()),
            Some(("break_glass", None)),
        ),
        (
            |e| drop(e.detail.insert("a key".into(), "1".into())),
            Some(("detail", Some(0))),
        ),
    ];
    for (change, want) in cases {
        let mut entry = example();
        change(&mut entry);
        match (entry.validate(), want) {
            (Ok(()), None) => {}
            (
                Err(EntryError::InvalidField {
                    field, position, ..
                }),
                Some(want),
            ) => {
                assert_eq!((field, position), want);
            }
            (got, want) => panic!("got {got:?}, want {want:?}"),
        }
    }
}

#[test]
fn validation_errors_never_echo_the_value() {
    let mut entry = example();
    entry.patient_id = Some("Jane Doe".into());
    let err = entry.validate().unwrap_err();
    assert_eq!(err.code(), "invalid_audit_entry");
    let message = err.to_string();
    assert!(!message.contains("Jane"), "{message}");
    assert!(
        message.starts_with("audit entry field patient_id must be"),
        "{message}"
    );
    entry.patient_id = None;
    entry.resources.push("Patient/Jane Doe".into());
    let message = entry.validate().unwrap_err().to_string();
    assert!(
        message.contains("resources[2]") && !message.contains("Jane"),
        "{message}"
    );
}

proptest::proptest! {
    /// A string member is written as serde_json writes a string, which for strings is
    /// exactly JCS (RFC 8785 3.2.2.2): an oracle that is not our code. Any text, controls
    /// and characters beyond the BMP included.
    #[test]
    fn strings_are_written_as_serde_json_writes_them(s in proptest::prelude::any::<String>()) {
        let mut out = Vec::new();
        write_string(&mut out, &s);
        proptest::prop_assert_eq!(String::from_utf8(out).unwrap(), serde_json::to_string(&s).unwrap());
    }

    /// Member names sort by UTF-16 code units, ASCII or not.
    #[test]
    fn member_order_is_utf16_order(a in "[a-z\u{e000}-\u{e002}\u{10000}-\u{10002}]{0,4}", b in "[a-z\u{e000}-\u{e002}\u{10000}-\u{10002}]{0,4}") {
        proptest::prop_assert_eq!(utf16_order(&a, &b), a.encode_utf16().cmp(b.encode_utf16()));
    }

    /// An entry's canonical bytes are serde_json's own writing of the entry with its
    /// members sorted (for these ASCII names, UTF-8 order is JCS's UTF-16 order) and the
    /// format version added: an oracle that is not our writer. Any sequence, a detail map
    /// (a nested object) and the optional members.
    #[test]
    fn canonical_bytes_are_the_sorted_json_of_the_entry(
        sequence in proptest::prelude::any::<u64>(),
        detail in proptest::collection::btree_map("[a-z_]{1,8}", "[ -~]{0,12}", 0..3),
        break_glass in proptest::option::of("[ -~]{1,12}"),
        resources in proptest::collection::vec("Observation/[a-z0-9]{1,6}", 0..3),
    ) {
        let mut entry = example();
        entry.detail = detail;
        entry.break_glass = break_glass;
        entry.resources = resources;
        entry.sequence = sequence;
        let mut oracle = serde_json::to_value(&entry).unwrap();
        oracle["v"] = serde_json::Value::from(ENTRY_FORMAT_VERSION);
        let want = serde_json::to_string(&sorted(oracle)).unwrap();
        proptest::prop_assert_eq!(canonical(&entry), want);
    }
}

/// `value` with every object's members in name order.
fn sorted(value: serde_json::Value) -> serde_json::Value {
    match value {
        serde_json::Value::Object(map) => {
            let mut members: Vec<_> = map.into_iter().collect();
            members.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(members.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}
