//! Search parameters: `records::search::parse` on query strings built from real parameter
//! names with bent values, and on arbitrary text.

use consentgate::config::Settings;
use consentgate::records::{outcome, search};
use proptest::prelude::*;

use crate::cases;
use crate::values::nasty_string;

fn param() -> impl Strategy<Value = (String, String)> {
    let name = prop_oneof![
        prop::sample::select(vec![
            "patient",
            "subject",
            "date",
            "category",
            "code",
            "_count",
            "_cursor",
            "_id",
            "_lastUpdated",
            "identifier",
            "status",
            "_sort",
            "_include",
            "date:missing",
            "code:text",
            "patient.name",
            "_format",
            "",
        ])
        .prop_map(str::to_string),
        "[a-z_:.]{0,12}",
    ];
    let value = prop_oneof![
        prop::sample::select(vec![
            "ge2019-01-01",
            "lt2021",
            "eq2020-02-30",
            "sa2019-13-01T25:61:00Z",
            "p1",
            "Patient/p1",
            "http://loinc.org|1234-5",
            "|",
            "||",
            "1000000000000000000000",
            "-1",
            "0",
            "vital-signs,laboratory",
            "ap2020",
        ])
        .prop_map(str::to_string),
        nasty_string(),
    ];
    (name, value)
}

proptest! {
    #![proptest_config(cases(512))]

    #[test]
    fn built_queries(
        ty in prop::sample::select(vec!["Observation", "Patient", "Condition", "Consent", "Nope"]),
        params in prop::collection::vec(param(), 0..6),
    ) {
        let limits = Settings::load_from(None, Vec::<(String, String)>::new()).unwrap().limits;
        let query: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params.iter())
            .finish();
        match search::parse(ty, &query, &limits) {
            Ok(parsed) => prop_assert!(parsed.count >= 1 && parsed.count <= limits.max_page_size),
            Err(e) => {
                let (status, ..) = outcome::describe(&e);
                prop_assert!((400..500).contains(&status), "{status}: {e}");
            }
        }
    }

    #[test]
    fn raw_text(query in "\\PC{0,200}") {
        let limits = Settings::load_from(None, Vec::<(String, String)>::new()).unwrap().limits;
        if let Err(e) = search::parse("Observation", &query, &limits) {
            let (status, ..) = outcome::describe(&e);
            prop_assert!((400..500).contains(&status), "{status}: {e}");
        }
    }
}
