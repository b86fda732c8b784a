//! The eight examples whose encoding withholds what their narrative withholds and grants what
//! it grants, under the fail-safe rule (an untyped root denies). "Withholds" means `deny`, or
//! `none` where no consent permits (step 2 then releases nothing). Out, notAuthor and notTime
//! withhold part of what they mean by `none` rather than `deny`, which a second, permitting
//! consent of the same patient would override; their tests show that and the robust form
//! (a root typed `deny` on the right element).

use serde_json::json;

use super::*;
use Decision::{Deny, NotApplicable, Permit};

/// A consent of the same patient that permits everything: the general opt-in that a
/// withholding consent must win against.
fn general_permit() -> Consent {
    corrected("basic", |v| v["provision"] = json!({"type": "permit"}))
}

/// "Patient wishes to have no data at the Good Health Psychiatric Hospital available for
/// normal treatment use." OPTOUT, untyped root, actor CST Organization/f001.
#[test]
fn out_withholds_good_health_data_from_treatment() {
    let c = load("Out");
    let obs = resource("Observation", "o1");
    // Good Health is named as custodian (CST); the gateway matches actors against the
    // requester, so the untyped root (deny) holds for Good Health asking without a stated
    // role.
    let good_health = requester(&["Organization/f001"], &[]);
    let r = ask(&good_health).on(&c, &obs);
    assert_eq!(r.decision, Deny);
    assert_eq!(paths(&r), ["provision"]);
    // A requester asking as primary recipient does not match a custodian entry; no consent
    // permits, so nothing is released either.
    let as_recipient = requester(&["Organization/f001"], &["PRCP"]);
    let r = ask(&as_recipient).on(&c, &obs);
    assert_eq!(r.decision, NotApplicable);
    // As with notAuthor, `none` is not `deny`: a general permit beside it releases Good
    // Health's data to other readers (the gateway matches actors against the requester, so it
    // has no way to say "data held by").
    let other = requester(&["Organization/f002"], &["PRCP"]);
    let r = ask(&other).on_all(&[c, general_permit()], &obs);
    assert_eq!(r.decision, Permit);
}

/// "Withhold or withdraw consent for disclosure of records that were authored by a specific
/// organization ... Patient wishes to have all of the PHI collected at the Good Health
/// Psychiatric Hospital restricted from disclosure to every provider." OPTIN, untyped root,
/// actor CST Organization/f001 (the same root as Out).
#[test]
fn not_author_withholds_good_health_records() {
    let c = load("notAuthor");
    assert!(c.untyped_root_under_opt_in());
    let mut authored = resource("Observation", "o1");
    authored.author_references = vec!["Organization/f001".into()];
    let good_health = requester(&["Organization/f001"], &[]);
    let other = requester(&["Organization/f002"], &["PRCP"]);
    // The untyped root denies Good Health itself; other providers are not named, so the
    // consent says nothing and nothing is released: withheld.
    let r = ask(&good_health).on(&c, &authored);
    assert_eq!(r.decision, Deny);
    assert_eq!(paths(&r), ["provision"]);
    let r = ask(&other).on(&c, &authored);
    assert_eq!(r.decision, NotApplicable);
    // But `none` is not `deny`: beside a general permit the Good Health records reach other
    // providers. The robust form says "authored by" with `data` `authoredby` in a root typed
    // deny, and wins against the permit.
    let r = ask(&other).on_all(&[c, general_permit()], &authored);
    assert_eq!(r.decision, Permit);
    let robust = corrected("notAuthor", |v| {
        v["provision"] = json!({"type": "deny", "data": [
            {"meaning": "authoredby", "reference": {"reference": "Organization/f001"}}
        ]});
    });
    let r = ask(&other).on_all(&[robust.clone(), general_permit()], &authored);
    assert_eq!(r.decision, Deny);
    let elsewhere = resource("Observation", "o2");
    let r = ask(&other).on(&robust, &elsewhere);
    assert_eq!(r.decision, NotApplicable);
}

/// "Withhold or withdraw consent for disclosure to a specific provider organization ... P.
/// would like to withdraw/withhold consent to disclose any instance of his health
/// information to Good Health Clinic." OPTIN, root `type: deny`, actor PRCP
/// Organization/f001, actions access and correct.
#[test]
fn not_org_withholds_everything_from_good_health() {
    let c = load("notOrg");
    let obs = resource("Observation", "o1");
    let clinic = requester(&["Organization/f001"], &["PRCP"]);
    // The explicit root type wins.
    for action in ["access", "correct"] {
        let r = ask(&clinic).action(action).on(&c, &obs);
        assert_eq!(r.decision, Deny, "{action}");
        assert_eq!(r.deciding[0].consent_id, "consent-example-notOrg");
    }
    // Other organisations are not this consent's business.
    let other = requester(&["Organization/f002"], &["PRCP"]);
    let r = ask(&other).on(&c, &obs);
    assert_eq!(r.decision, NotApplicable);
}

/// "Withhold or withdraw consent for disclosure to a specific provider agent ... she does
/// not want her ex-spouse to have any access to her IIHI." OPTIN, untyped root, actor PRCP
/// Practitioner/f204, actions access and correct.
#[test]
fn not_them_withholds_everything_from_the_ex_spouse() {
    let c = load("notThem");
    assert!(c.untyped_root_under_opt_in());
    let obs = resource("Observation", "o1");
    let ex = requester(&["Practitioner/f204", "Organization/f001"], &["PRCP"]);
    for action in ["access", "correct"] {
        let r = ask(&ex).action(action).on(&c, &obs);
        assert_eq!(r.decision, Deny, "{action}");
        assert_eq!(paths(&r), ["provision"]);
    }
    // Deny wins over the patient's general opt-in.
    let r = ask(&ex).on_all(&[c.clone(), general_permit()], &obs);
    assert_eq!(r.decision, Deny);
    // Colleagues are not this consent's business.
    let colleague = requester(&["Practitioner/f205", "Organization/f001"], &["PRCP"]);
    let r = ask(&colleague).on(&c, &obs);
    assert_eq!(r.decision, NotApplicable);
}

/// "Withhold or withdraw consent for disclosure of a specific record (e.g. Lab
/// Order/Result) ... he would like withhold consent to disclose the order and all results
/// associated with that specific order from all other providers." OPTIN, untyped root,
/// data related Task/example3.
#[test]
fn not_this_withholds_one_order_and_its_results() {
    let c = load("notThis");
    let provider = requester(&["Organization/f002"], &["PRCP"]);
    let order = resource("Task", "example3");
    let mut result = resource("Observation", "r1");
    result.references = vec!["Task/example3".into(), "Patient/f001".into()];
    for (what, res) in [("the order", &order), ("a result of it", &result)] {
        let r = ask(&provider).on(&c, res);
        assert_eq!(r.decision, Deny, "{what}");
        let r = ask(&provider).on_all(&[c.clone(), general_permit()], res);
        assert_eq!(r.decision, Deny, "{what} beside a general permit");
    }
    // Other records are left to the patient's other consents.
    let other = resource("Observation", "r2");
    let r = ask(&provider).on(&c, &other);
    assert_eq!(r.decision, NotApplicable);
}

/// "Withhold or withdraw consent for disclosure of records related published during a
/// timeframe ... Patient wishes to withhold disclosure of all data from a timeframe to any
/// provider." OPTIN, untyped root, period 2015-01-01..2015-02-01.
#[test]
fn not_time_withholds_data_from_a_timeframe() {
    let c = load("notTime");
    let provider = requester(&["Organization/f002"], &["PRCP"]);
    let mut from_then = resource("Observation", "o1");
    from_then.clinical_period = parse_date_time("2015-01-15");
    // During the period everything is denied.
    let r = ask(&provider).at("2015-01-20T00:00:00Z").on(&c, &from_then);
    assert_eq!(r.decision, Deny);
    // `period` is when the rule is in force, not the data's time (that is `dataPeriod`), so
    // January-2015 data read today is not covered: nothing is released on this consent, but
    // a general permit beside it releases the data.
    let r = ask(&provider).on(&c, &from_then);
    assert_eq!(r.decision, NotApplicable);
    let r = ask(&provider).on_all(&[c, general_permit()], &from_then);
    assert_eq!(r.decision, Permit);
    // The robust form: the timeframe as the `dataPeriod` of a root typed deny.
    let robust = corrected("notTime", |v| {
        let period = v["provision"]["period"].take();
        v["provision"] = json!({"type": "deny", "dataPeriod": period});
    });
    let r = ask(&provider).on_all(&[robust.clone(), general_permit()], &from_then);
    assert_eq!(r.decision, Deny);
    let mut later = resource("Observation", "o2");
    later.clinical_period = parse_date_time("2020-01-01");
    let r = ask(&provider).on(&robust, &later);
    assert_eq!(r.decision, NotApplicable);
}

/// The narrative says only "This example demonstrates how to encode this screen shot"
/// (Patients Know Best sharing settings). OPTOUT, untyped root: PRCP Organization/f001,
/// access, label N; eleven untyped nested rules with the same actor and action, one label
/// each (PSY, SPI, N, PSY, SPI, SEX, N, PSY, SPI, SEX, N). Read as a sharing grid: within
/// normal-confidentiality data the untyped root denies, and each (untyped, so flipped) row grants Good Health access
/// to one kind of data.
#[test]
fn pkb_grants_good_health_access_row_by_row() {
    let c = load("pkb");
    let good_health = requester(&["Organization/f001"], &["PRCP"]);
    let mut normal = resource("Observation", "o1");
    normal.security_labels = vec![Coding::new(CONF, "N")];
    let r = ask(&good_health).on(&c, &normal);
    assert_eq!(r.decision, Permit);
    assert_eq!(
        paths(&r),
        [
            "provision.provision[2]",
            "provision.provision[6]",
            "provision.provision[10]"
        ]
    );
    assert!(r.consented_labels.is_empty(), "N is not a sensitive label");

    let mut psych = normal.clone();
    psych.security_labels.push(Coding::new(ACT_CODE, "PSY"));
    let r = ask(&good_health).on(&c, &psych);
    assert_eq!(r.decision, Permit);
    assert_eq!(r.consented_labels, [Coding::new(ACT_CODE, "PSY")]);

    // Restricted data is above the root's N ceiling: not covered.
    let mut restricted = resource("Observation", "o2");
    restricted.security_labels = vec![Coding::new(CONF, "R")];
    let r = ask(&good_health).on(&c, &restricted);
    assert_eq!(r.decision, NotApplicable);
    // Data without a confidentiality label does not meet the root's label condition (N):
    // the consent says nothing about it.
    let unlabelled = resource("Observation", "o3");
    let r = ask(&good_health).on(&c, &unlabelled);
    assert_eq!(r.decision, NotApplicable);
}

/// Generated narrative: "policyRule: opt-in ... provision period: 23/06/2016 5:02:33 PM -->
/// 23/06/2016 5:32:33 PM; Provisions". The nested rule permits action access on class
/// MedicationRequest. Read as the SMART authorization it encodes: for thirty minutes, the app
/// may read MedicationRequests and nothing else.
#[test]
fn smartonfhir_grants_thirty_minutes_of_medication_requests() {
    let c = load("smartonfhir");
    let app = requester(&["Device/smart-app"], &[]);
    let meds = resource("MedicationRequest", "m1");
    let obs = resource("Observation", "o1");
    // 17:10 at +10:00. The untyped root denies; the nested permit is its exception.
    let during = "2016-06-23T07:10:00Z";
    for (what, res, action, expect, path) in [
        (
            "read medication requests",
            &meds,
            "access",
            Permit,
            "provision.provision[0]",
        ),
        ("read observations", &obs, "access", Deny, "provision"),
        (
            "disclose medication requests",
            &meds,
            "disclose",
            Deny,
            "provision",
        ),
    ] {
        let r = ask(&app).action(action).at(during).on(&c, res);
        assert_eq!(r.decision, expect, "{what}");
        assert_eq!(paths(&r), [path], "{what}");
    }
    // 17:32:33 +10:00 is the last second; 17:33 is outside.
    let r = ask(&app).at("2016-06-23T07:32:33.5Z").on(&c, &meds);
    assert_eq!(r.decision, Permit);
    let r = ask(&app).at("2016-06-23T07:33:00Z").on(&c, &meds);
    assert_eq!(r.decision, NotApplicable);
}
