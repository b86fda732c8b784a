//! Property tests: arbitrary FHIR date, dateTime and instant strings (with and without search
//! prefixes) through every parser and range builder that takes one from outside. None may
//! panic; every range that comes back is ordered; the strict grammar never accepts what the
//! lenient one refuses.

use proptest::prelude::*;
use proptest::string::string_regex;
use serde_json::{Value, json};

use crate::fhir_time::{self, Grammar};

/// Date-like text weighted towards the edges: years 0000/0001/9998/9999, months and days
/// just outside their ranges, hours 24, minutes 60, zones ±14:00 and beyond, long fractions.
fn date_like() -> impl Strategy<Value = String> {
    let year = "(0000|0001|0002|1970|2024|9998|9999|[0-9]{4}|[0-9]{1,5})";
    let month = "(00|01|02|12|13|[0-9]{1,2})";
    let day = "(00|01|28|29|30|31|32|[0-9]{1,2})";
    let time =
        "(00|12|23|24|[0-9]{1,2}):(00|59|60|[0-9]{1,2})(:(00|59|60|[0-9]{2})(\\.[0-9]{0,12})?)?";
    let zone = "(Z|[+-](00|01|13|14|15|99):(00|30|59|60))?";
    prop_oneof![
        4 => string_regex(&format!("{year}(-{month}(-{day}(T{time}{zone})?)?)?"))
            .expect("a valid pattern"),
        1 => string_regex("[0-9T:.Z+-]{0,30}").expect("a valid pattern"),
        1 => any::<String>(),
    ]
}

fn prefixed() -> impl Strategy<Value = String> {
    ("(eq|ne|gt|lt|ge|le|sa|eb|ap)?", date_like()).prop_map(|(p, d)| format!("{p}{d}"))
}

fn limits() -> crate::config::Limits {
    crate::config::Settings::load_from(None, Vec::<(String, String)>::new())
        .expect("default settings")
        .limits
}

fn observation_with(date: &str) -> Value {
    json!({"resourceType": "Observation", "id": "o", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": "Patient/p"},
           "effectiveDateTime": date, "issued": date,
           "effectivePeriod": {"start": date, "end": date}})
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn fhir_time_never_panics_and_orders_its_ranges(text in date_like()) {
        let strict = fhir_time::parse(&text, Grammar::DateTime);
        let lenient = fhir_time::parse(&text, Grammar::Search);
        if let Ok((start, end)) = lenient {
            prop_assert!(start <= end, "{text}: {start} > {end}");
        }
        if let Ok(range) = strict {
            prop_assert_eq!(lenient, Ok(range), "{} is strict but not lenient", text);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn search_parameters_never_panic(value in prefixed()) {
        let limits = limits();
        let encoded: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
        for name in ["date", "_lastUpdated"] {
            let _ = crate::records::search::parse(
                "Observation",
                &format!("patient=p&{name}={encoded}"),
                &limits,
            );
        }
        let _ = crate::accounting::date_bound(&value);
        for name in ["since", "until"] {
            let _ = crate::accounting::parse_log_query(&format!("{name}={encoded}"), &limits);
        }
        let _ = crate::export::ExportRequest::from_query(&format!("_since={encoded}"), false, &limits);
    }

    #[test]
    fn stored_dates_never_panic(date in date_like()) {
        let resource = observation_with(&date);
        let _ = crate::records::index::extract("Observation", "o", &resource);
        let _ = crate::records::index::check_dates(&resource);
        let _ = crate::decision::resource_facts(&resource);
        let consent = json!({
            "resourceType": "Consent", "status": "active",
            "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "patient-privacy"}]},
            "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
            "patient": {"reference": "Patient/p"}, "dateTime": date,
            "policyRule": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]},
            "provision": {"type": "permit", "period": {"start": date, "end": date},
                          "dataPeriod": {"start": date}},
        });
        let _ = crate::consent::Consent::from_fhir(&consent);
    }

    #[test]
    fn deidentification_shifts_any_date_without_panicking(date in date_like(), secret in any::<[u8; 32]>()) {
        let profile = crate::deid::Profile::safe_harbor();
        let key = crate::deid::StudyKey::from_bytes(&secret).expect("a 32-byte key");
        let today = time::macros::date!(2026 - 12 - 03);
        let deid = crate::deid::Deidentifier::new(&profile, &key, today);
        let patient = json!({"resourceType": "Patient", "id": "p", "birthDate": date,
                             "deceasedDateTime": date});
        let _ = deid.deidentify(&patient, "p");
        let _ = deid.deidentify(&observation_with(&date), "p");
    }
}
