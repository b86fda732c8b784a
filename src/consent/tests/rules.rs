//! The evaluator's rules (DESIGN.md section 4 step 1), one table row per rule.

use serde_json::{Value, json};

use super::*;
use Decision::{Deny, NotApplicable as None_, Permit};

struct Row {
    rule: &'static str,
    provisions: Vec<Value>,
    tweak: fn(&mut Req),
    expect: Decision,
}

fn row(rule: &'static str, provision: Value, tweak: fn(&mut Req), expect: Decision) -> Row {
    Row {
        rule,
        provisions: vec![provision],
        tweak,
        expect,
    }
}

fn same(_: &mut Req) {}

#[rustfmt::skip] // one row per rule reads better than rustfmt's vertical layout
#[test]
fn rules_of_section_4_step_1() {
    let rows = vec![
        // Absent attributes match anything; an untyped root denies, even under the OPTIN of
        // these rows (every other policyRule is in `untyped_root_denies_whatever_the_policy_rule`).
        row("a bare permit covers everything", json!({"type": "permit"}), same, Permit),
        row("a bare deny covers everything", json!({"type": "deny"}), same, Deny),
        row("an untyped root denies under OPTIN", json!({"period": {"start": "2000"}}), same, Deny),
        // The consent's period is the root provision's.
        row("period in force", json!({"type": "permit", "period": {"start": "2023-01-01", "end": "2024-12-31"}}), same, Permit),
        row("now before the period", json!({"type": "permit", "period": {"start": "2025-01-01"}}), same, None_),
        row("now after the period", json!({"type": "permit", "period": {"end": "2023-12-31"}}), same, None_),
        row("period end is inclusive to its precision", json!({"type": "permit", "period": {"end": "2024-01-01"}}),
            |r| r.now = micros("2024-01-01T23:59:59.999999Z"), Permit),
        // Root actor: reference AND (role, when roles are given).
        row("actor matches by reference and role", json!({"type": "permit", "actor": [actor("PRCP", "Organization/o1")]}), same, Permit),
        row("root actor reference mismatch", json!({"type": "permit", "actor": [actor("PRCP", "Organization/other")]}), same, None_),
        row("root actor role mismatch", json!({"type": "permit", "actor": [actor("IRCP", "Organization/o1")]}), same, None_),
        row("no roles given: the reference decides", json!({"type": "permit", "actor": [actor("IRCP", "Organization/o1")]}),
            |r| r.actor.roles.clear(), Permit),
        row("group membership matches", json!({"type": "permit", "actor": [actor("PRCP", "Group/g1")]}), same, Permit),
        row("the client itself matches", json!({"type": "permit", "actor": [actor("PRCP", "Device/client1")]}), same, Permit),
        row("a reference's history is ignored", json!({"type": "permit", "actor": [actor("PRCP", "Organization/o1/_history/3")]}), same, Permit),
        // Purpose through the ActReason hierarchy.
        row("TREAT covers ETREAT", json!({"type": "permit", "purpose": [purpose("TREAT")]}), |r| r.purpose = "ETREAT", Permit),
        row("ETREAT does not cover TREAT", json!({"type": "permit", "purpose": [purpose("ETREAT")]}), same, None_),
        row("HRESCH covers CLINTRCH", json!({"type": "permit", "purpose": [purpose("HRESCH")]}), |r| r.purpose = "CLINTRCH", Permit),
        row("HPAYMT covers CLMATTCH", json!({"type": "permit", "purpose": [purpose("HPAYMT")]}), |r| r.purpose = "CLMATTCH", Permit),
        row("an unknown asked purpose matches no purpose", json!({"type": "permit", "purpose": [purpose("TREAT")]}), |r| r.purpose = "TREATX", None_),
        row("a purpose of another system never matches", json!({"type": "permit", "purpose": [{"system": "urn:other", "code": "TREAT"}]}), same, None_),
        row("no purpose condition: any purpose", json!({"type": "permit"}), |r| r.purpose = "HMARKT", Permit),
        // AND across attributes, OR within one.
        row("AND: actor holds, class fails", json!({"type": "permit", "actor": [actor("PRCP", "Organization/o1")], "class": [class("Condition")]}), same, None_),
        row("AND: actor and class hold", json!({"type": "permit", "actor": [actor("PRCP", "Organization/o1")], "class": [class("Observation")]}), same, Permit),
        row("OR: one of two classes", json!({"type": "permit", "class": [class("Condition"), class("Observation")]}), same, Permit),
        row("OR: one of two actors", json!({"type": "permit", "actor": [actor("PRCP", "Organization/x"), actor("PRCP", "Group/g1")]}), same, Permit),
        row("OR: one of two purposes", json!({"type": "permit", "purpose": [purpose("HRESCH"), purpose("TREAT")]}), same, Permit),
        // Nested provisions are exceptions.
        row("a matching child flips permit to deny", json!({"type": "permit", "provision": [{"class": [class("Observation")]}]}), same, Deny),
        row("a child that does not match leaves the parent", json!({"type": "permit", "provision": [{"class": [class("Condition")]}]}), same, Permit),
        row("a matching child flips deny to permit", json!({"type": "deny", "provision": [{"code": [concept(LOINC, "1234-5")]}]}), same, Permit),
        row("a grandchild flips back", json!({"type": "permit", "provision": [{"class": [class("Observation")], "provision": [{"code": [concept(LOINC, "1234-5")]}]}]}), same, Permit),
        row("an explicit child type wins over flipping", json!({"type": "permit", "provision": [{"type": "permit", "class": [class("Observation")]}]}), same, Permit),
        row("an explicit deny child under deny", json!({"type": "deny", "provision": [{"type": "deny", "class": [class("Observation")]}]}), same, Deny),
        row("a child's own period must hold", json!({"type": "permit", "provision": [{"period": {"end": "2020-01-01"}}]}), same, Permit),
        row("the untyped child of an untyped root permits", json!({"class": [class("Observation")], "provision": [{"code": [concept(LOINC, "1234-5")]}]}), same, Permit),
        row("deny wins among matching siblings", json!({"type": "deny", "provision": [{"class": [class("Observation")]}, {"type": "deny", "code": [concept(LOINC, "1234-5")]}]}), same, Deny),
        row("deny wins among siblings in either order", json!({"type": "deny", "provision": [{"type": "deny", "code": [concept(LOINC, "1234-5")]}, {"class": [class("Observation")]}]}), same, Deny),
        // class, code, securityLabel.
        row("class by resource type", json!({"type": "permit", "class": [class("Observation")]}), same, Permit),
        row("class by category", json!({"type": "permit", "class": [{"system": OBS_CAT, "code": "laboratory"}]}), same, Permit),
        row("class mismatch", json!({"type": "permit", "class": [{"system": OBS_CAT, "code": "imaging"}]}), same, None_),
        row("code match needs the system too", json!({"type": "permit", "code": [concept("http://snomed.info/sct", "1234-5")]}), same, None_),
        row("code match", json!({"type": "permit", "code": [concept("urn:x", "9"), concept(LOINC, "1234-5")]}), same, Permit),
        row("securityLabel exact", json!({"type": "permit", "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}),
            |r| r.resource.security_labels.push(label(ACT_CODE, "PSY")), Permit),
        row("securityLabel absent on the resource", json!({"type": "permit", "securityLabel": [{"system": ACT_CODE, "code": "PSY"}]}), same, None_),
        row("confidentiality N covers L", json!({"type": "permit", "securityLabel": [{"system": CONF, "code": "N"}]}),
            |r| r.resource.security_labels = vec![label(CONF, "L")], Permit),
        row("confidentiality N does not cover R", json!({"type": "permit", "securityLabel": [{"system": CONF, "code": "N"}]}),
            |r| r.resource.security_labels = vec![label(CONF, "R")], None_),
        row("an unlabelled resource misses a label condition", json!({"type": "permit", "securityLabel": [{"system": CONF, "code": "V"}]}),
            |r| r.resource.security_labels.clear(), None_),
        // dataPeriod.
        row("dataPeriod overlaps", json!({"type": "permit", "dataPeriod": {"start": "2020-05-01", "end": "2020-06-01"}}), same, Permit),
        row("dataPeriod disjoint", json!({"type": "permit", "dataPeriod": {"start": "2021"}}), same, None_),
        row("no clinical date misses dataPeriod", json!({"type": "permit", "dataPeriod": {"start": "1900"}}),
            |r| r.resource.clinical_period = None, None_),
        // data meanings.
        row("data instance: the resource itself", json!({"type": "permit", "data": [data("instance", "Observation/obs1")]}), same, Permit),
        row("data instance: another resource", json!({"type": "permit", "data": [data("instance", "Observation/obs2")]}), same, None_),
        row("data instance: same id, other type", json!({"type": "permit", "data": [data("instance", "Condition/obs1")]}), same, None_),
        row("data instance: a referenced resource is not the instance", json!({"type": "permit", "data": [data("instance", "ServiceRequest/sr1")]}), same, None_),
        row("data related: the resource refers to it", json!({"type": "permit", "data": [data("related", "ServiceRequest/sr1")]}), same, Permit),
        row("data related: the resource is it", json!({"type": "permit", "data": [data("related", "ServiceRequest/sr1")]}),
            |r| { r.resource.resource_type = "ServiceRequest".into(); r.resource.id = "sr1".into(); }, Permit),
        row("data related: unrelated", json!({"type": "permit", "data": [data("related", "ServiceRequest/sr2")]}), same, None_),
        row("data dependents: the resource refers to it", json!({"type": "permit", "data": [data("dependents", "ServiceRequest/sr1")]}), same, Permit),
        row("data dependents: the resource is it", json!({"type": "permit", "data": [data("dependents", "Observation/obs1")]}), same, Permit),
        row("data authoredby: the author", json!({"type": "permit", "data": [data("authoredby", "Practitioner/author1")]}), same, Permit),
        row("data authoredby: someone else", json!({"type": "permit", "data": [data("authoredby", "Practitioner/other")]}), same, None_),
        row("data authoredby: a mere reference is not authorship", json!({"type": "permit", "data": [data("authoredby", "ServiceRequest/sr1")]}), same, None_),
        // action.
        row("action matches", json!({"type": "permit", "action": [action("access")]}), same, Permit),
        row("action mismatch", json!({"type": "permit", "action": [action("access")]}), |r| r.action = Some("disclose"), None_),
        row("no action asked: action conditions do not restrict", json!({"type": "permit", "action": [action("collect")]}), |r| r.action = None, Permit),
    ];
    for r in rows {
        let consents: Vec<Consent> = r.provisions.iter().map(|p| consent("c1", p.clone())).collect();
        let mut req = Req::new();
        (r.tweak)(&mut req);
        let result = req.run(&consents);
        assert_eq!(result.decision, r.expect, "{}", r.rule);
        assert_eq!(result.deciding.is_empty(), r.expect == None_, "{}: deciding", r.rule);
    }
}

/// Fail-safe: an untyped root denies whatever `policyRule` says; an explicit root `type`
/// wins; nested provisions are exceptions that flip the root's effect.
#[rustfmt::skip] // one row per rule reads better than rustfmt's vertical layout
#[test]
fn untyped_root_denies_whatever_the_policy_rule() {
    fn act(code: &str) -> Value {
        json!({"system": ACT_CODE, "code": code})
    }
    fn rule_of(codes: &[&str]) -> Option<Value> {
        Some(json!({"coding": codes.iter().map(|c| act(c)).collect::<Vec<_>>()}))
    }
    let only_period = || json!({"period": {"start": "2000"}});
    let exception = |class_code: &str| json!({"provision": [{"class": [class(class_code)]}]});
    let rows: Vec<(&str, Option<Value>, Value, Decision)> = vec![
        // The untyped root denies under every policyRule.
        ("OPTIN: untyped root denies", rule_of(&["OPTIN"]), only_period(), Deny),
        ("OPTINR: untyped root denies", rule_of(&["OPTINR"]), only_period(), Deny),
        ("OPTOUT: untyped root denies", rule_of(&["OPTOUT"]), only_period(), Deny),
        ("OPTOUTE: untyped root denies", rule_of(&["OPTOUTE"]), only_period(), Deny),
        ("IMPLIED: untyped root denies", rule_of(&["IMPLIED"]), only_period(), Deny),
        ("no policyRule (policy only): untyped root denies", None, only_period(), Deny),
        ("policyRule text only: untyped root denies", Some(json!({"text": "opt-in"})), only_period(), Deny),
        ("a regulation code: untyped root denies", Some(json!({"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentpolicycodes", "code": "hipaa-auth"}]})), only_period(), Deny),
        ("OPTIN and OPTINR: untyped root denies", rule_of(&["OPTIN", "OPTINR"]), only_period(), Deny),
        ("OPTIN and OPTOUT: untyped root denies", rule_of(&["OPTIN", "OPTOUT"]), only_period(), Deny),
        // An explicit root type wins, whatever policyRule says.
        ("explicit root permit wins over OPTIN", rule_of(&["OPTIN"]), json!({"type": "permit"}), Permit),
        ("explicit root permit wins over OPTOUT", rule_of(&["OPTOUT"]), json!({"type": "permit"}), Permit),
        ("explicit root permit wins over no policyRule", None, json!({"type": "permit"}), Permit),
        ("explicit root deny wins over OPTIN", rule_of(&["OPTIN"]), json!({"type": "deny"}), Deny),
        ("explicit root deny wins over OPTOUT", rule_of(&["OPTOUT"]), json!({"type": "deny"}), Deny),
        // Nested exceptions flip the root's effect, under every policyRule.
        ("OPTIN: a matching untyped exception of the untyped root permits", rule_of(&["OPTIN"]), exception("Observation"), Permit),
        ("OPTOUTE: a matching untyped exception of the untyped root permits", rule_of(&["OPTOUTE"]), exception("Observation"), Permit),
        ("no policyRule: a matching untyped exception of the untyped root permits", None, exception("Observation"), Permit),
        ("OPTIN: an exception that does not match leaves the deny", rule_of(&["OPTIN"]), exception("Condition"), Deny),
        ("OPTOUTE: an exception that does not match leaves the deny", rule_of(&["OPTOUTE"]), exception("Condition"), Deny),
        ("OPTOUT: an untyped exception of a root typed permit denies", rule_of(&["OPTOUT"]), json!({"type": "permit", "provision": [{"class": [class("Observation")]}]}), Deny),
        ("OPTIN: an untyped exception of a root typed deny permits", rule_of(&["OPTIN"]), json!({"type": "deny", "provision": [{"class": [class("Observation")]}]}), Permit),
        // A root that does not match decides nothing.
        ("OPTIN: a root that does not match decides nothing", rule_of(&["OPTIN"]), json!({"actor": [actor("PRCP", "Organization/other")]}), None_),
        ("OPTOUT: a root that does not match decides nothing", rule_of(&["OPTOUT"]), json!({"actor": [actor("PRCP", "Organization/other")]}), None_),
    ];
    for (rule, policy_rule, provision, expect) in rows {
        let mut v = consent_json("c1", provision);
        match policy_rule {
            Some(p) => v["policyRule"] = p,
            None => {
                let o = v.as_object_mut().unwrap();
                o.remove("policyRule");
                o.insert("policy".into(), json!([{"uri": "https://example.org/consent-policy"}]));
            }
        }
        let c = Consent::from_fhir(&v).unwrap_or_else(|e| panic!("{rule}: {:?}", e.defects));
        let result = Req::new().run(&[c]);
        assert_eq!(result.decision, expect, "{rule}");
        assert_eq!(result.deciding.is_empty(), expect == None_, "{rule}: deciding");
        assert!(result.deciding.iter().all(|d| d.effect == expect), "{rule}: effects");
    }
}

#[test]
fn only_active_consents_decide() {
    for (status, expect) in [
        ("active", Permit),
        ("draft", None_),
        ("proposed", None_),
        ("rejected", None_),
        ("inactive", None_),
        ("entered-in-error", None_),
    ] {
        let mut v = consent_json("c1", json!({"type": "permit"}));
        v["status"] = json!(status);
        let c = Consent::from_fhir(&v).unwrap();
        assert_eq!(Req::new().run(&[c]).decision, expect, "{status}");
    }
}

#[test]
fn deny_wins_among_consents_and_names_the_deciders() {
    let permit = consent("c-permit", json!({"type": "permit"}));
    let permit2 = consent(
        "c-permit2",
        json!({"type": "permit", "class": [class("Observation")]}),
    );
    let deny = consent(
        "c-deny",
        json!({"type": "deny", "code": [concept(LOINC, "1234-5")]}),
    );
    let other = consent(
        "c-other",
        json!({"type": "deny", "actor": [actor("PRCP", "Organization/x")]}),
    );
    let req = Req::new();
    let cases: [(&[&Consent], Decision, &[&str]); 5] = [
        (&[&permit, &deny], Deny, &["c-deny"]),
        (&[&deny, &permit], Deny, &["c-deny"]),
        (&[&permit, &permit2], Permit, &["c-permit", "c-permit2"]),
        (&[&permit, &other], Permit, &["c-permit"]),
        (&[&other], None_, &[]),
    ];
    for (consents, expect, ids) in cases {
        let owned: Vec<Consent> = consents.iter().map(|c| (*c).clone()).collect();
        let result = req.run(&owned);
        assert_eq!(result.decision, expect);
        let got: Vec<&str> = result
            .deciding
            .iter()
            .map(|d| d.consent_id.as_str())
            .collect();
        assert_eq!(got, ids);
        assert!(result.deciding.iter().all(|d| d.effect == expect));
    }
}

#[test]
fn deciding_names_the_provisions_that_decided() {
    let req = Req::new();
    let cases = [
        (json!({"type": "permit"}), vec!["provision"]),
        (
            json!({"type": "permit", "provision": [{"class": [class("Condition")]}, {"class": [class("Observation")]}]}),
            vec!["provision.provision[1]"],
        ),
        // Deny wins among siblings, and only the denying sibling is named.
        (
            json!({"type": "deny", "provision": [{"class": [class("Observation")]}, {"type": "deny", "code": [concept(LOINC, "1234-5")]}]}),
            vec!["provision.provision[1]"],
        ),
        // Agreeing siblings are all named.
        (
            json!({"type": "deny", "provision": [{"class": [class("Observation")]}, {"code": [concept(LOINC, "1234-5")]}]}),
            vec!["provision.provision[0]", "provision.provision[1]"],
        ),
        // A grandchild decides for its branch; a denying sibling branch then wins.
        (
            json!({"type": "permit", "provision": [
                {"type": "permit", "class": [class("Observation")], "provision": [{"code": [concept(LOINC, "1234-5")]}]},
                {"type": "permit", "class": [class("Observation")]}
            ]}),
            vec!["provision.provision[0].provision[0]"],
        ),
    ];
    for (provision, paths) in cases {
        let result = req.run(&[consent("c1", provision.clone())]);
        let got: Vec<&str> = result.deciding.iter().map(|d| d.path.as_str()).collect();
        assert_eq!(got, paths, "{provision}");
    }
}

#[test]
fn consented_labels_are_only_those_a_permit_named() {
    let psy = label(ACT_CODE, "PSY");
    let hiv = label(ACT_CODE, "HIV");
    let r_conf = label(CONF, "R");
    let psy_json = json!({"system": ACT_CODE, "code": "PSY"});
    let cases: Vec<(&str, Value, Vec<Coding>)> = vec![
        (
            "a general permit releases none",
            json!({"type": "permit"}),
            vec![],
        ),
        (
            "a permit naming PSY releases PSY",
            json!({"type": "permit", "securityLabel": [psy_json, {"system": CONF, "code": "N"}]}),
            vec![psy.clone()],
        ),
        (
            "a permit naming R releases R",
            json!({"type": "permit", "securityLabel": [{"system": CONF, "code": "R"}]}),
            vec![r_conf],
        ),
        (
            "a deny naming PSY releases nothing",
            json!({"type": "deny", "securityLabel": [psy_json]}),
            vec![],
        ),
        (
            "a permit inside a deny that named PSY releases PSY",
            json!({"type": "deny", "securityLabel": [psy_json], "provision": [{"actor": [actor("PRCP", "Organization/o1")]}]}),
            vec![psy.clone()],
        ),
        (
            "a permitting child adds its own label to its ancestors'",
            json!({"type": "deny", "securityLabel": [psy_json], "provision": [{"securityLabel": [{"system": ACT_CODE, "code": "HIV"}]}]}),
            vec![psy.clone(), hiv],
        ),
        (
            "labels of a deny child that did not match are not released",
            json!({"type": "permit", "provision": [{"securityLabel": [{"system": ACT_CODE, "code": "ETH"}]}]}),
            vec![],
        ),
    ];
    for (rule, provision, expect) in cases {
        let mut req = Req::new();
        req.resource.security_labels = vec![label(CONF, "R"), psy.clone(), label(ACT_CODE, "HIV")];
        let result = req.run(&[consent("c1", provision)]);
        assert_eq!(result.consented_labels, expect, "{rule}");
    }
}

#[test]
fn a_consent_without_provision_decides_nothing() {
    let mut v = consent_json("c1", json!({}));
    v.as_object_mut().unwrap().remove("provision");
    let c = Consent::from_fhir(&v).unwrap();
    assert!(c.provision().is_none());
    assert_eq!(Req::new().run(&[c]).decision, None_);
}

#[test]
fn an_advance_directive_neither_permits_nor_denies() {
    const SCOPE: &str = "http://terminology.hl7.org/CodeSystem/consentscope";
    let with_scope = |id: &str, codes: &[&str], provision: Value| {
        let mut c = consent_json(id, provision);
        c["scope"] = json!({"coding": codes.iter().map(|code| json!({"system": SCOPE, "code": code})).collect::<Vec<_>>()});
        Consent::from_fhir(&c).unwrap()
    };
    let grant = json!({"type": "permit", "actor": [actor("PRCP", "Organization/o1")]});
    let refusal = json!({"type": "deny", "actor": [actor("PRCP", "Organization/o1")]});
    let req = Req::new();
    let directive = with_scope("adr1", &["adr"], grant.clone());
    assert!(directive.is_advance_directive());
    assert_eq!(req.run(&[directive]).decision, Decision::NotApplicable);
    let privacy = with_scope("p1", &["patient-privacy"], grant);
    let refusing = with_scope("adr2", &["adr"], refusal.clone());
    let result = req.run(&[privacy.clone(), refusing]);
    assert_eq!(result.decision, Decision::Permit);
    assert!(result.deciding.iter().all(|d| d.consent_id == "p1"));
    // A scope naming `adr` beside a privacy code is a privacy consent: its deny holds.
    let mixed = with_scope("m1", &["adr", "patient-privacy"], refusal);
    assert!(!mixed.is_advance_directive());
    assert_eq!(req.run(&[privacy, mixed]).decision, Decision::Deny);
}
