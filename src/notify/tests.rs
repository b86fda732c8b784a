//! Which audit entries notify, the retry schedule, signatures and URL rules; no I/O.

use std::collections::BTreeMap;
use std::time::Duration;

use super::webhook::{UrlError, hex, new_secret, signature, validate_url, verify};
use super::worker::{MAX_ATTEMPTS, backoff, retry_at};
use super::{Kind, for_audit_entry};
use crate::audit::{AuditAction, AuditEntry, AuditOutcome};

fn entry(client: &str, action: AuditAction, outcome: AuditOutcome) -> AuditEntry {
    AuditEntry {
        sequence: 7,
        recorded_micros: 1_767_225_600_000_000,
        action,
        outcome,
        client_id: client.into(),
        organisation: "northside".into(),
        user: None,
        purpose_of_use: "TREAT".into(),
        patient_id: Some("pat-1".into()),
        resources: vec![
            "Observation/o1".into(),
            "Condition/c1".into(),
            "Observation/o2".into(),
        ],
        consents: vec!["consent-9".into()],
        policies: vec!["baseline-permit".into()],
        break_glass: None,
        request_id: "req-1".into(),
        detail: BTreeMap::new(),
    }
}

#[test]
fn which_entries_notify() {
    use AuditAction as A;
    use AuditOutcome as O;
    let cases: Vec<(&str, AuditAction, AuditOutcome, bool, Option<Kind>)> = vec![
        ("clinic", A::Read, O::Success, false, Some(Kind::Disclosure)),
        (
            "clinic",
            A::Search,
            O::Success,
            false,
            Some(Kind::Disclosure),
        ),
        (
            "clinic",
            A::Export,
            O::Success,
            false,
            Some(Kind::Disclosure),
        ),
        (
            "clinic",
            A::Disclose,
            O::Success,
            false,
            Some(Kind::Disclosure),
        ),
        ("clinic", A::Read, O::Success, true, Some(Kind::BreakGlass)),
        ("clinic", A::Read, O::Denied, true, None),
        ("clinic", A::Read, O::Denied, false, None),
        ("clinic", A::Read, O::Error, false, None),
        ("clinic", A::Decision, O::Success, false, None),
        ("clinic", A::Token, O::Success, true, None),
        ("clinic", A::Grant, O::Success, false, None),
        ("clinic", A::Request, O::Success, false, None),
        ("patient", A::Read, O::Success, false, None),
        ("operator", A::Search, O::Success, false, None),
    ];
    for (client, action, outcome, break_glass, want) in cases {
        let mut e = entry(client, action, outcome);
        if break_glass {
            e.break_glass = Some("unconscious in ER".into());
        }
        let got = for_audit_entry(&e).map(|n| n.kind);
        assert_eq!(
            got, want,
            "{client} {action:?} {outcome:?} break_glass={break_glass}"
        );
    }
    let mut no_patient = entry("clinic", A::Read, O::Success);
    no_patient.patient_id = None;
    assert!(for_audit_entry(&no_patient).is_none());
}

#[test]
fn summaries_hold_ids_and_codes_only() {
    let mut e = entry("clinic", AuditAction::Search, AuditOutcome::Success);
    e.break_glass = Some("free text from a request".into());
    e.user = Some("Practitioner/dr-lee".into());
    let n = for_audit_entry(&e).unwrap();
    assert_eq!(n.patient_id, "pat-1");
    assert_eq!(n.audit_seq, Some(7));
    assert_eq!(n.created, e.recorded_micros);
    assert_eq!(
        n.summary,
        serde_json::json!({
            "action": "search", "client_id": "clinic", "organisation": "northside",
            "purpose_of_use": "TREAT", "resource_types": ["Condition", "Observation"],
            "resource_count": 3, "consents": ["consent-9"], "user": "Practitioner/dr-lee",
            "break_glass": true,
        })
    );
    assert!(!n.summary.to_string().contains("free text"));
}

#[test]
fn an_amendment_answer_names_its_answerer_and_a_write_tells_nobody() {
    let step = |client: &str, step: &str| {
        let mut e = entry(client, AuditAction::Amend, AuditOutcome::Success);
        e.detail.insert("step".into(), step.into());
        e.detail.insert("amendment".into(), "a-1".into());
        for_audit_entry(&e).expect("told").summary
    };
    assert_eq!(step("ehr-a", "accepted")["answered_by"], "ehr-a");
    assert_eq!(step("operator", "denied")["answered_by"], "operator");
    assert_eq!(step("ehr-a", "extended")["answered_by"], "ehr-a");
    assert!(step("patient", "requested").get("answered_by").is_none());
    assert!(step("operator", "overdue").get("answered_by").is_none());
    let write = entry("ehr-a", AuditAction::Write, AuditOutcome::Success);
    assert_eq!(for_audit_entry(&write), None);
}

#[test]
fn kinds_round_trip() {
    for k in [
        Kind::BreakGlass,
        Kind::Disclosure,
        Kind::AccessRequest,
        Kind::Delegation,
        Kind::DelegateAction,
        Kind::Amendment,
        Kind::ShareLink,
    ] {
        assert_eq!(Kind::parse(k.as_str()), Some(k));
    }
    assert_eq!(Kind::parse("other"), None);
}

#[test]
fn share_link_steps_are_told_without_the_recipients_words() {
    let mut e = entry("share_link", AuditAction::Disclose, AuditOutcome::Success);
    e.detail.insert("share_link".into(), "handle-1".into());
    e.detail.insert("step".into(), "file".into());
    e.detail.insert("recipient".into(), "free text".into());
    let n = for_audit_entry(&e).expect("an opened link is told");
    assert_eq!(n.kind, Kind::ShareLink);
    assert_eq!(n.summary["share_link"], "handle-1");
    assert_eq!(n.summary["step"], "file");
    assert!(!n.summary.to_string().contains("free text"));
    e.outcome = AuditOutcome::Denied;
    e.detail.insert("step".into(), "passcode".into());
    assert!(
        for_audit_entry(&e).is_none(),
        "one wrong passcode is not told"
    );
    e.detail.insert("locked".into(), "true".into());
    assert_eq!(for_audit_entry(&e).unwrap().summary["step"], "locked");
}

#[test]
fn backoff_doubles_up_to_the_cap() {
    let secs: Vec<u64> = (1..=14).map(|a| backoff(a).as_secs()).collect();
    assert_eq!(
        secs,
        vec![
            2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 3600, 3600, 3600
        ]
    );
    assert_eq!(backoff(0), Duration::from_secs(2));
    assert_eq!(backoff(i32::MAX), Duration::from_secs(3600));
    let total: u64 = (1..MAX_ATTEMPTS).map(|a| backoff(a).as_secs()).sum();
    assert!(
        (8 * 3600..10 * 3600).contains(&total),
        "retries span about 9 hours, got {total} s"
    );
}

#[test]
fn the_last_attempt_is_not_retried() {
    assert_eq!(retry_at(1, 1_000_000), Some(3_000_000));
    assert_eq!(retry_at(MAX_ATTEMPTS - 1, 0).map(|t| t > 0), Some(true));
    assert_eq!(retry_at(MAX_ATTEMPTS, 0), None);
}

#[test]
fn signatures_are_hmac_sha256_hex() {
    // RFC 4231, test case 2.
    assert_eq!(
        signature("Jefe", b"what do ya want for nothing?"),
        "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
    let sig = signature("s3cret", b"{\"id\":1}");
    assert!(verify("s3cret", b"{\"id\":1}", &sig));
    assert!(!verify("other", b"{\"id\":1}", &sig));
    assert!(!verify("s3cret", b"{\"id\":2}", &sig));
    assert!(!verify(
        "s3cret",
        b"{\"id\":1}",
        sig.trim_start_matches("sha256=")
    ));
    assert!(!verify("s3cret", b"{\"id\":1}", "sha256=zz"));
    assert!(!verify("s3cret", b"{\"id\":1}", "sha256=+f"));
}

#[test]
fn secrets_are_random_and_long() {
    let a = new_secret().unwrap();
    let b = new_secret().unwrap();
    assert_ne!(a, b);
    assert!(a.starts_with("cgwhsec_") && a.len() == 8 + 64, "{a}");
    assert_eq!(hex(&[0x00, 0x0f, 0xa0, 0xff]), "000fa0ff");
}

#[test]
fn webhook_urls_are_https_without_credentials() {
    let ok = [
        (
            "https://hooks.example.org/cg",
            "https://hooks.example.org/cg",
        ),
        (
            "https://127.0.0.1:8443/x?y=1",
            "https://127.0.0.1:8443/x?y=1",
        ),
        ("https://EXAMPLE.org", "https://example.org/"),
    ];
    for (input, normalised) in ok {
        assert_eq!(validate_url(input).as_deref(), Ok(normalised), "{input}");
    }
    let refused = [
        ("http://hooks.example.org/cg", UrlError::NotHttps),
        ("ftp://hooks.example.org/cg", UrlError::NotHttps),
        ("hooks.example.org/cg", UrlError::Malformed),
        ("", UrlError::Malformed),
        ("https://", UrlError::Malformed),
        ("https://user:pw@hooks.example.org/", UrlError::Credentials),
        ("https://user@hooks.example.org/", UrlError::Credentials),
        ("https://hooks.example.org/#frag", UrlError::Fragment),
    ];
    for (input, error) in refused {
        assert_eq!(validate_url(input), Err(error), "{input}");
    }
    let long = format!("https://example.org/{}", "a".repeat(3000));
    assert_eq!(validate_url(&long), Err(UrlError::TooLong));
}

#[test]
fn delegates_are_told_to_the_patient_naming_both() {
    let mut by_delegate = entry("delegate", AuditAction::Grant, AuditOutcome::Success);
    by_delegate.user = Some("RelatedPerson/rp-1".into());
    by_delegate.detail.insert("delegation".into(), "d-1".into());
    let n = for_audit_entry(&by_delegate).unwrap();
    assert_eq!(n.kind, Kind::DelegateAction);
    assert_eq!(n.summary["delegate"], "RelatedPerson/rp-1");
    assert_eq!(n.summary["on_behalf_of"], "Patient/pat-1");
    assert_eq!(n.summary["delegation"], "d-1");
    let mut denied = by_delegate.clone();
    denied.outcome = AuditOutcome::Denied;
    assert!(for_audit_entry(&denied).is_none());
    let mut feed = by_delegate.clone();
    feed.action = AuditAction::Read;
    feed.detail.insert("view".into(), "notifications".into());
    assert!(
        for_audit_entry(&feed).is_none(),
        "reading the feed is not news"
    );

    let mut ended = entry("operator", AuditAction::Revoke, AuditOutcome::Success);
    ended.resources = vec!["RelatedPerson/rp-1".into()];
    ended.detail.insert("delegation".into(), "d-1".into());
    ended
        .detail
        .insert("relationship".into(), "guardian".into());
    ended.detail.insert("reason".into(), "majority".into());
    let n = for_audit_entry(&ended).unwrap();
    assert_eq!(n.kind, Kind::Delegation);
    assert_eq!(n.summary["reason"], "majority");
    assert_eq!(n.summary["delegate"], "RelatedPerson/rp-1");
}

mod derived_ids {
    use proptest::prelude::*;

    use super::super::{derived_id, parse_derived_id};

    /// A time from the epoch to year 10889 (48 bits of milliseconds), in microseconds.
    fn recorded() -> impl Strategy<Value = i64> {
        0..(1i64 << 48) * 1000
    }

    fn seq() -> impl Strategy<Value = i64> {
        0..1i64 << 62
    }

    proptest! {
        #[test]
        fn an_id_gives_back_its_entry(r in recorded(), s in seq()) {
            let id = derived_id(r, s).expect("in range");
            let parsed = uuid::Uuid::parse_str(&id).expect("a UUID");
            prop_assert_eq!(parsed.get_version_num(), 8);
            prop_assert_eq!(parsed.get_variant(), uuid::Variant::RFC4122);
            prop_assert_eq!(parse_derived_id(&parsed), Some((r, s)));
        }

        /// Ids, compared as the feed compares them (their text), order as the entries'
        /// `(recorded, seq)` do.
        #[test]
        fn ids_order_as_their_entries(a in (recorded(), seq()), b in (recorded(), seq())) {
            let (x, y) = (derived_id(a.0, a.1).unwrap(), derived_id(b.0, b.1).unwrap());
            prop_assert_eq!(x.cmp(&y), a.cmp(&b));
        }

        /// A stored notification's UUIDv7 comes after every derived id of an earlier
        /// millisecond and before every one of its own or a later one.
        #[test]
        fn a_uuidv7_sits_between_the_milliseconds(r in recorded(), s in seq(), rest in any::<[u8; 10]>()) {
            let millis = (r / 1000) as u64;
            let v7 = uuid::Builder::from_unix_timestamp_millis(millis, &rest).into_uuid();
            prop_assert_eq!(parse_derived_id(&v7), None);
            let v7 = v7.hyphenated().to_string();
            let same = derived_id(r, s).unwrap();
            prop_assert!(v7 < same);
            if millis > 0 {
                let earlier = derived_id((millis as i64 - 1) * 1000 + 999, s).unwrap();
                prop_assert!(earlier < v7);
            }
        }
    }

    #[test]
    fn out_of_range_entries_have_no_id() {
        assert_eq!(derived_id(-1, 0), None);
        assert_eq!(derived_id((1 << 48) * 1000, 0), None);
        assert_eq!(derived_id(0, 1 << 62), None);
        assert_eq!(derived_id(0, -1), None);
        assert!(derived_id((1 << 48) * 1000 - 1, (1 << 62) - 1).is_some());
    }

    #[test]
    fn other_uuids_are_not_derived_ids() {
        let v4 = uuid::Builder::from_random_bytes([0x5a; 16]).into_uuid();
        assert_eq!(v4.get_version_num(), 4);
        assert_eq!(parse_derived_id(&v4), None);
        // Version 8 with a microsecond field past 999 is not one of ours.
        let mut bytes = *uuid::Uuid::parse_str(&derived_id(5_000_999, 3).unwrap())
            .unwrap()
            .as_bytes();
        bytes[7] = 0xe8; // 0x3e8 = 1000
        bytes[6] = 0x83;
        assert_eq!(parse_derived_id(&uuid::Uuid::from_bytes(bytes)), None);
    }
}
