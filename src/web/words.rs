//! Consents and sensitive categories in words a patient reads: "Good Health Clinic may see
//! your records for treatment until 1 March 2027, except mental-health notes".
//!
//! Pure functions over the stored FHIR Consent, so the sentence describes what the engine
//! will enforce, not what a form once said. The root provision names the recipient, purpose,
//! period, classes and data period; a nested permit names the sensitive labels shared
//! (see [`crate::consent::grant`]); every other sensitive category stays hidden.

use std::collections::BTreeMap;

use serde_json::Value;

use crate::consent::model::SENSITIVE_LABELS;
use crate::consent::purpose::PurposeHierarchy;

/// A sensitive category in words: its label code, name and a one-line explanation.
pub const CATEGORIES: &[(&str, &str, &str)] = &[
    (
        "ETH",
        "alcohol and drug treatment",
        "Records of treatment for alcohol or drug use; the law protects them specially.",
    ),
    (
        "PSY",
        "mental health",
        "Diagnoses and care for mental health conditions.",
    ),
    (
        "PSYTHPN",
        "psychotherapy notes",
        "A therapist's own notes from your sessions.",
    ),
    ("HIV", "HIV status", "HIV tests, diagnoses and treatment."),
    (
        "SEX",
        "sexual and reproductive health",
        "Sexual health, contraception, pregnancy and related care.",
    ),
    (
        "GDIS",
        "genetic information",
        "Results of genetic tests and inherited conditions.",
    ),
    (
        "R",
        "restricted records",
        "Records your clinicians marked as restricted.",
    ),
    (
        "V",
        "very restricted records",
        "Records your clinicians marked as very restricted.",
    ),
];

/// A purpose of use the share form offers, in words; the code itself for any other.
pub fn purpose_words(code: &str) -> String {
    match code {
        "TREAT" => "Treatment",
        "ETREAT" => "Emergency treatment",
        "HPAYMT" => "Paying for care",
        "HRESCH" => "Health research",
        "CAREMGT" => "Coordinating my care",
        "PATRQT" => "Something I asked for",
        other => other,
    }
    .to_string()
}

/// The name of sensitive label `code`, or the code itself.
pub fn category_name(code: &str) -> &str {
    CATEGORIES
        .iter()
        .find(|(c, _, _)| *c == code)
        .map(|(_, name, _)| *name)
        .unwrap_or(code)
}

/// The system of sensitive label `code`.
pub fn category_system(code: &str) -> Option<&'static str> {
    SENSITIVE_LABELS
        .iter()
        .find(|(_, c)| *c == code)
        .map(|(system, _)| *system)
}

/// "1 March 2027" from a FHIR date or dateTime; the text itself when it does not parse.
pub fn day(text: &str) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    let parts: Vec<&str> = text.get(..10).unwrap_or(text).split('-').collect();
    match parts.as_slice() {
        [y, m, d] => match (m.parse::<usize>(), d.parse::<u32>()) {
            (Ok(m @ 1..=12), Ok(d)) => format!("{d} {} {y}", MONTHS[m - 1]),
            _ => text.to_string(),
        },
        _ => text.to_string(),
    }
}

/// A consent as the page lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsentLine {
    /// The Consent id.
    pub id: String,
    /// The sentence.
    pub sentence: String,
    /// `active`, `inactive`, ...
    pub status: String,
    /// The status in words.
    pub status_words: String,
    /// Whether a Revoke button makes sense.
    pub revocable: bool,
}

fn codes<'a>(list: &'a Value, key: &str) -> Vec<&'a str> {
    list.as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v[key].as_str())
        .collect()
}

/// Describes a stored consent; `names` maps actor references (`Device/{client}`) to the
/// organisation a person knows.
pub fn describe(
    consent: &Value,
    names: &BTreeMap<String, String>,
    purposes: &PurposeHierarchy,
) -> ConsentLine {
    let p = &consent["provision"];
    let deny = p["type"] == "deny";
    let actors: Vec<String> = p["actor"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|a| a["reference"]["reference"].as_str())
        .map(|r| names.get(r).cloned().unwrap_or_else(|| r.to_string()))
        .collect();
    let who = if actors.is_empty() {
        "Anyone the gateway trusts".to_string()
    } else {
        actors.join(" and ")
    };
    let what = match codes(&p["class"], "code").as_slice() {
        [] => "your records".to_string(),
        classes => format!("your {}", classes.join(", ")),
    };
    let why: Vec<String> = codes(&p["purpose"], "code")
        .into_iter()
        .map(|c| purposes.display(c).unwrap_or(c).to_lowercase())
        .collect();
    let mut sentence = format!(
        "{who} {} {what}",
        if deny { "may not see" } else { "may see" }
    );
    if !why.is_empty() {
        sentence.push_str(&format!(" for {}", why.join(" or ")));
    }
    if let Some(from) = p["dataPeriod"]["start"].as_str() {
        sentence.push_str(&format!(" dated from {}", day(from)));
    }
    if let Some(to) = p["dataPeriod"]["end"].as_str() {
        sentence.push_str(&format!(" dated up to {}", day(to)));
    }
    match p["period"]["end"].as_str() {
        Some(end) => sentence.push_str(&format!(" until {}", day(end))),
        None if !deny => sentence.push_str(" until you take it back"),
        None => {}
    }
    if !deny {
        let shared: Vec<&str> = p["provision"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|n| n["type"] == "permit")
            .flat_map(|n| codes(&n["securityLabel"], "code"))
            .collect();
        let hidden: Vec<&str> = CATEGORIES
            .iter()
            .filter(|(c, _, _)| !shared.contains(c))
            .map(|(_, name, _)| *name)
            .collect();
        if hidden.len() == CATEGORIES.len() {
            sentence.push_str(", except sensitive records (such as mental health)");
        } else if !hidden.is_empty() {
            sentence.push_str(&format!(", except {}", hidden.join(", ")));
        }
    }
    sentence.push('.');
    let status = consent["status"].as_str().unwrap_or("unknown").to_string();
    let status_words = match status.as_str() {
        "active" => "In effect",
        "inactive" => "Taken back",
        "draft" | "proposed" => "Not yet in effect",
        "rejected" => "Rejected",
        _ => "Unknown",
    }
    .to_string();
    ConsentLine {
        id: consent["id"].as_str().unwrap_or_default().to_string(),
        sentence,
        revocable: status == "active",
        status,
        status_words,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::consent::grant::{Basis, Grant};
    use crate::consent::model::Coding;

    fn grant() -> Grant {
        Grant {
            id: "c1".into(),
            patient: "p1".into(),
            recipient: "Device/clinic".into(),
            purpose: "TREAT".into(),
            action: None,
            classes: Vec::new(),
            instances: Vec::new(),
            data_period: (None, None),
            shared_labels: Vec::new(),
            start: 0,
            end: Some("2027-03-01".into()),
            basis: Basis::OptIn,
            identifier: None,
        }
    }

    fn names() -> BTreeMap<String, String> {
        BTreeMap::from([("Device/clinic".into(), "Good Health Clinic".into())])
    }

    #[test]
    fn a_grant_reads_as_the_issue_says() {
        let mut g = grant();
        g.shared_labels = CATEGORIES
            .iter()
            .filter(|(c, _, _)| *c != "PSY")
            .map(|(c, _, _)| Coding::new(category_system(c).unwrap(), *c))
            .collect();
        let line = describe(&g.to_fhir(), &names(), PurposeHierarchy::official());
        assert_eq!(
            line.sentence,
            "Good Health Clinic may see your records for treatment until 1 March 2027, \
             except mental health."
        );
        assert!(line.revocable);
        assert_eq!(line.status_words, "In effect");
    }

    #[test]
    fn classes_dates_and_hidden_categories_are_named() {
        let mut g = grant();
        g.classes = vec!["Observation".into()];
        g.data_period = (Some("2020-01-01".into()), None);
        g.end = None;
        let mut consent = g.to_fhir();
        consent["status"] = "inactive".into();
        let line = describe(&consent, &BTreeMap::new(), PurposeHierarchy::official());
        assert!(
            line.sentence
                .starts_with("Device/clinic may see your Observation")
        );
        assert!(line.sentence.contains("dated from 1 January 2020"));
        assert!(line.sentence.contains("until you take it back"));
        assert!(line.sentence.contains("except sensitive records"));
        assert!(!line.revocable);
        assert_eq!(line.status_words, "Taken back");
    }

    #[test]
    fn days_are_written_out() {
        assert_eq!(day("2027-03-01"), "1 March 2027");
        assert_eq!(day("2027-12-31T10:00:00Z"), "31 December 2027");
        assert_eq!(day("2027"), "2027");
        assert_eq!(day("2027-13-01"), "2027-13-01");
    }

    #[test]
    fn every_sensitive_label_has_words() {
        for (_, code) in SENSITIVE_LABELS {
            assert_ne!(category_name(code), *code, "{code}");
        }
    }
}
