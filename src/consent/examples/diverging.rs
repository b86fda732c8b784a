//! The four examples whose encoding does not carry their narrative under the fail-safe rule
//! (an untyped root denies, whatever `policyRule` says). All four diverge by withholding:
//! the gateway denies (or says nothing) where the narrative grants, never the reverse. Each
//! test asserts what the gateway decides (`DIVERGES`) and then the smallest correction of the
//! JSON that gives the narrative's meaning; for basic, grantor and signature that is the
//! explicit root `type: permit` that consents written for the gateway always state.

use serde_json::json;

use super::*;
use Decision::{Deny, NotApplicable, Permit};

/// "Authorize Normal access for Treatment. Patient ... wishes to have all of the PHI collected
/// at the Good Health Psychiatric Hospital available for normal treatment use." OPTIN; the
/// untyped root states only a period, 1964-01-01..2016-01-01 (the shape of notTime, which
/// withholds).
#[test]
fn basic_authorizes_treatment_access() {
    let c = load("basic");
    assert!(c.untyped_root_under_opt_in());
    let clinic = requester(&["Organization/f001"], &["PRCP"]);
    let obs = resource("Observation", "o1");
    // DIVERGES, by withholding: the untyped root denies within the period.
    let r = ask(&clinic).at("2015-06-01T00:00:00Z").on(&c, &obs);
    assert_eq!(r.decision, Deny);
    assert_eq!(paths(&r), ["provision"]);
    // Correction: the root typed permit.
    let fixed = corrected("basic", |v| v["provision"]["type"] = json!("permit"));
    let r = ask(&clinic).at("2015-06-01T00:00:00Z").on(&fixed, &obs);
    assert_eq!(r.decision, Permit);
    assert_eq!(paths(&r), ["provision"]);
    // A general permit names no sensitive label, so psychiatric (PSY) data still needs a
    // consent that names it (DESIGN.md section 4, step 2).
    assert!(r.consented_labels.is_empty());
    // The end is inclusive at its precision (all of 2016-01-01); after it the consent says
    // nothing, corrected or not.
    let r = ask(&clinic).at("2016-01-01T23:59:59Z").on(&fixed, &obs);
    assert_eq!(r.decision, Permit);
    for consent in [&c, &fixed] {
        let r = ask(&clinic).at("2016-01-02T00:00:00Z").on(consent, &obs);
        assert_eq!(r.decision, NotApplicable);
    }
}

/// "Patient wishes to provide XXX with read-only access to the data at Good Health
/// Psychiatric Hospital available for patient requested access use." OPTOUT, untyped root,
/// actors CST Organization/f001 and PRCP Patient/example, action access.
#[test]
fn grantor_gives_read_only_access() {
    let c = load("grantor");
    let xxx = requester(&["Patient/example"], &["PRCP"]);
    let obs = resource("Observation", "o1");
    // DIVERGES, by withholding: the root (the grant) is untyped, so it denies. Out has the
    // same shape and means deny, so no rule can read both as their narratives say.
    let r = ask(&xxx).purpose("PATRQT").on(&c, &obs);
    assert_eq!(r.decision, Deny);
    // Correction: the root typed permit. Read is permitted; correcting is not covered
    // (read-only); nobody else is covered.
    let fixed = corrected("grantor", |v| v["provision"]["type"] = json!("permit"));
    let r = ask(&xxx).purpose("PATRQT").on(&fixed, &obs);
    assert_eq!(r.decision, Permit);
    assert_eq!(paths(&r), ["provision"]);
    let r = ask(&xxx)
        .purpose("PATRQT")
        .action("correct")
        .on(&fixed, &obs);
    assert_eq!(r.decision, NotApplicable);
    let stranger = requester(&["Patient/other"], &["PRCP"]);
    let r = ask(&stranger).purpose("PATRQT").on(&fixed, &obs);
    assert_eq!(r.decision, NotApplicable);
}

/// Generated narrative: "policyRule: opt-in ... provision period: 10/10/2015 --> 10/10/2016;
/// Actors: primary information recipient Practitioner/13; Provisions". The nested rule is a
/// `permit` for actor AUT Practitioner/xcda-author, class CDA, codes LOINC 34133-9 and
/// 18842-5. Meaning: Practitioner/13 is opted in for the period (the root of notThem, which
/// withholds, has the same shape).
#[test]
fn signature_opts_practitioner_13_in_for_its_period() {
    let c = load("signature");
    assert!(c.untyped_root_under_opt_in());
    let p13 = requester(&["Practitioner/13"], &["PRCP"]);
    let mut summary = resource("DocumentReference", "d1");
    summary
        .classes
        .push(Coding::new("urn:ietf:bcp:13", "application/hl7-cda+xml"));
    summary.codes = vec![Coding::new("http://loinc.org", "18842-5")];
    summary.author_references = vec!["Practitioner/xcda-author".into()];
    let note = resource("Observation", "o1");
    // DIVERGES, by withholding: the untyped root denies Practitioner/13 in the period. The
    // nested permit's actor is the documents' author (AUT), which the gateway matches against
    // the requester, so it does not apply to Practitioner/13.
    for doc in [&summary, &note] {
        let r = ask(&p13).at("2016-01-01T00:00:00Z").on(&c, doc);
        assert_eq!(r.decision, Deny, "{}", doc.id);
        assert_eq!(paths(&r), ["provision"], "{}", doc.id);
    }
    // Correction: the root typed permit. (A permit inside a permit restricts nothing.)
    let fixed = corrected("signature", |v| v["provision"]["type"] = json!("permit"));
    for doc in [&summary, &note] {
        let r = ask(&p13).at("2016-01-01T00:00:00Z").on(&fixed, doc);
        assert_eq!(r.decision, Permit, "{}", doc.id);
    }
    // Outside the period, and for anyone else, the consent says nothing.
    let r = ask(&p13).at("2017-01-01T00:00:00Z").on(&fixed, &summary);
    assert_eq!(r.decision, NotApplicable);
    let other = requester(&["Practitioner/14"], &["PRCP"]);
    let r = ask(&other).at("2016-01-01T00:00:00Z").on(&fixed, &summary);
    assert_eq!(r.decision, NotApplicable);
}

/// "Patient wishes to have no data at the Good Health Psychiatric Hospital available rule
/// for Emergency treatment use. An overall Deny consent Directive, with an exception
/// 'Permit' of purposeOfUse 'ETREAT' at 'Good Health' hospital, and exception 'Deny' all
/// other purposeOfUse from good health hospital." OPTOUT, untyped root (actor CST
/// Organization/f001, purpose ETREAT), one nested `deny` with the same actor.
#[test]
fn emergency_permits_only_emergency_treatment() {
    let c = load("Emergency");
    let good_health = requester(&["Organization/f001"], &[]);
    let obs = resource("Observation", "o1");
    // DIVERGES, by withholding: the ETREAT "exception" is the untyped root (deny), and the
    // nested deny has the root's actor and no other condition; nothing in the encoding
    // permits. ETREAT (and BTG below it) is denied; other purposes are outside the root.
    for purpose in ["ETREAT", "BTG"] {
        let r = ask(&good_health).purpose(purpose).on(&c, &obs);
        assert_eq!(r.decision, Deny, "{purpose}");
        assert_eq!(paths(&r), ["provision.provision[0]"]);
    }
    let r = ask(&good_health).on(&c, &obs);
    assert_eq!(r.decision, NotApplicable);
    // Correction: the ETREAT purpose moves from the root into the nested rule, whose type
    // becomes `permit`: an overall deny at Good Health (the untyped root) with ETREAT as the
    // exception.
    let fixed = corrected("Emergency", |v| {
        let purpose = v["provision"]["purpose"].take();
        let root = v["provision"].as_object_mut().unwrap();
        root.remove("purpose");
        v["provision"]["provision"][0]["type"] = json!("permit");
        v["provision"]["provision"][0]["purpose"] = purpose;
    });
    for (purpose, expect) in [
        ("ETREAT", Permit),
        ("BTG", Permit),
        ("TREAT", Deny),
        ("HRESCH", Deny),
    ] {
        let r = ask(&good_health).purpose(purpose).on(&fixed, &obs);
        assert_eq!(r.decision, expect, "{purpose}");
    }
}
