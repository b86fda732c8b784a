//! The facts a decision reads of a resource, derived when a version is written and stored
//! beside its body (`resources.facts`, written by `records::ingest::put_as`), so that a
//! recipient's read or search decides without parsing the body, and sends an unshaped body
//! as its stored text without parsing it at all (`docs/PERFORMANCE.md`, fifteenth step).
//!
//! The facts are a function of the stored body alone: [`StoredFacts::of`] of the body read
//! back is what was stored (a property test below). A row written before this column, or
//! by another derivation ([`FACTS_VERSION`]), has none that [`StoredFacts::decode`] accepts,
//! and its body is parsed and its facts derived as before.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::consent::{Coding, ResourceFacts};
use crate::records::{index, internal};

/// The derivation's version, stored with each row's facts. Raise it whenever what
/// [`StoredFacts::of`] derives changes: rows stored by the old derivation are then derived
/// from their bodies again on each read until written anew.
pub const FACTS_VERSION: u32 = 1;

/// What a decision and a scope check read of one stored resource version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredFacts {
    /// [`FACTS_VERSION`] of the derivation that stored them.
    pub v: u32,
    /// A gateway-internal record (`records::internal`): never released to a recipient.
    pub internal: bool,
    /// The patient who owns the resource (`index::patient_of`), if any.
    pub owner: Option<String>,
    /// The category codings a SMART scope's `?category=` is matched against
    /// (`index::extract`'s `category` terms).
    pub scope_categories: Vec<Coding>,
    /// What the consent evaluator matches on ([`super::resource_facts`]).
    pub facts: ResourceFacts,
}

impl StoredFacts {
    /// The facts of `resource`, a body as stored (`id` and `meta` stamped).
    pub fn of(resource: &Value) -> StoredFacts {
        let facts = super::resource_facts(resource);
        let owner = index::patient_of(&facts.resource_type, &facts.id, resource);
        StoredFacts {
            v: FACTS_VERSION,
            internal: internal::is_gateway_internal(resource),
            owner,
            scope_categories: scope_categories(&facts.resource_type, resource),
            facts,
        }
    }

    /// The JSON stored in `resources.facts`.
    pub fn encode(&self) -> String {
        // Strings, numbers and lists only: always serialises.
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Stored facts of this derivation; `None` for any other text (an older derivation, a
    /// damaged column), whose body is then parsed instead.
    pub fn decode(text: &str) -> Option<StoredFacts> {
        serde_json::from_str::<StoredFacts>(text)
            .ok()
            .filter(|f| f.v == FACTS_VERSION)
    }

    /// `Type/id` of the resource.
    pub fn reference(&self) -> String {
        format!("{}/{}", self.facts.resource_type, self.facts.id)
    }
}

/// A current resource as a recipient's read or search finds it: its stored text and either
/// the facts stored with it (`decision::stored`) or, for a row without facts of this
/// derivation, its parse.
#[derive(Debug, Clone)]
pub struct StoredResource {
    /// The stored text.
    pub text: String,
    /// What the decision reads of it.
    pub known: Known,
}

/// What is known of a [`StoredResource`] before it is decided.
#[derive(Debug, Clone)]
pub enum Known {
    /// The facts stored with it.
    Facts(StoredFacts),
    /// Its body, parsed from the text.
    Parsed(Value),
}

impl StoredResource {
    /// The resource of a stored row: its facts when they are of this derivation, its parse
    /// otherwise; `None` when the facts are not usable and the text is not JSON.
    pub fn of_row(text: String, facts: Option<&str>) -> Option<StoredResource> {
        let known = match facts.and_then(StoredFacts::decode) {
            Some(facts) => Known::Facts(facts),
            None => Known::Parsed(serde_json::from_str(&text).ok()?),
        };
        Some(StoredResource { text, known })
    }

    /// The patient who owns it (`index::patient_of` of the body, as the facts recorded it).
    pub fn owner(&self, resource_type: &str, id: &str) -> Option<String> {
        match &self.known {
            Known::Facts(facts) => facts.owner.clone(),
            Known::Parsed(body) => index::patient_of(resource_type, id, body),
        }
    }
}

/// The `category` terms of `resource` a scope's `?category=` narrowing is matched against.
pub fn scope_categories(resource_type: &str, resource: &Value) -> Vec<Coding> {
    index::extract(resource_type, "", resource)
        .terms
        .into_iter()
        .filter(|t| t.kind == "category")
        .map(|t| Coding::new(t.system, t.code))
        .collect()
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use serde_json::json;

    use super::*;

    /// A resource of one of the shapes the decision reads, from generated parts.
    fn resource(
        ty: &'static str,
        id: String,
        category: Option<(String, String)>,
        code: (String, String),
        labels: Vec<String>,
        internal_tag: bool,
        date: Option<u32>,
    ) -> Value {
        let mut r = json!({
            "resourceType": ty, "id": id,
            "meta": {"versionId": "1", "lastUpdated": "2026-12-05T10:00:00Z",
                     "security": labels.iter().map(|l| json!({
                         "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": l}))
                         .collect::<Vec<_>>()},
            "status": "final",
            "subject": {"reference": "Patient/p1"},
            "performer": [{"reference": "Practitioner/dr-1"}],
            "code": {"coding": [{"system": code.0, "code": code.1}]},
        });
        if let Some((system, code)) = category {
            r["category"] = json!([{"coding": [{"system": system, "code": code}]}]);
        }
        if internal_tag {
            r["meta"]["tag"] = json!([{"system": internal::TAG_SYSTEM,
                                       "code": internal::INTERNAL_TAG_CODE}]);
        }
        if let Some(day) = date {
            let d = time::Date::from_ordinal_date(1990 + (day % 40) as i32, 1 + (day % 365) as u16)
                .expect("a date");
            r["effectiveDateTime"] = json!(d.to_string());
        }
        r
    }

    fn word() -> impl Strategy<Value = String> {
        "[a-zA-Z0-9\\-\\.]{1,12}"
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]

        /// Stored and read back, the facts are those of the body read back, which is what
        /// a read without stored facts derives: deciding on either is deciding on the same.
        #[test]
        fn stored_facts_are_the_bodys_after_a_round_trip(
            ty in prop::sample::select(vec!["Observation", "Condition", "DiagnosticReport",
                                             "Consent", "Procedure"]),
            id in word(),
            category in prop::option::of((word(), word())),
            code in (word(), word()),
            labels in prop::collection::vec(
                prop::sample::select(vec!["HIV", "PSY", "ETH", "R", "N"]).prop_map(str::to_string), 0..3),
            internal_tag in any::<bool>(),
            date in prop::option::of(0u32..20_000),
        ) {
            let body = resource(ty, id, category, code, labels, internal_tag, date);
            let text = body.to_string();
            let stored = StoredFacts::of(&body).encode();
            let read_back: Value = serde_json::from_str(&text).expect("stored text parses");
            prop_assert_eq!(StoredFacts::decode(&stored), Some(StoredFacts::of(&read_back)));
        }
    }

    /// An unlabelled Observation of Patient/p1 with one code.
    fn plain_observation() -> Value {
        resource(
            "Observation",
            "o1".into(),
            None,
            ("http://loinc.org".into(), "8480-6".into()),
            vec![],
            false,
            None,
        )
    }

    #[test]
    fn facts_of_another_derivation_are_not_used() {
        let body = plain_observation();
        let mut facts = StoredFacts::of(&body);
        assert!(StoredFacts::decode(&facts.encode()).is_some());
        facts.v = FACTS_VERSION + 1;
        assert_eq!(StoredFacts::decode(&facts.encode()), None);
        assert_eq!(StoredFacts::decode("{}"), None);
        assert_eq!(StoredFacts::decode("not json"), None);
    }

    /// A row is decided on its facts only when they are of this derivation; otherwise on
    /// its parse, and a row whose text is not JSON is not read at all. The owner is the
    /// body's either way.
    #[test]
    fn a_row_without_usable_facts_is_parsed() {
        let body = plain_observation();
        let text = body.to_string();
        let facts = StoredFacts::of(&body);
        let mut stale = facts.clone();
        stale.v = FACTS_VERSION + 1;
        let known = |facts: Option<String>| {
            StoredResource::of_row(text.clone(), facts.as_deref()).map(|r| {
                let owner = r.owner("Observation", "o1");
                (r.known, owner)
            })
        };
        assert!(matches!(
            known(Some(facts.encode())),
            Some((Known::Facts(f), Some(owner))) if f == facts && owner == "p1"
        ));
        for unusable in [None, Some(stale.encode()), Some("{}".into())] {
            assert!(matches!(
                known(unusable),
                Some((Known::Parsed(v), Some(owner))) if v == body && owner == "p1"
            ));
        }
        assert!(StoredResource::of_row("not json".into(), None).is_none());
    }

    #[test]
    fn the_internal_flag_and_owner_are_the_bodys() {
        let body = resource(
            "Observation",
            "o1".into(),
            Some((
                "http://terminology.hl7.org/CodeSystem/observation-category".into(),
                "vital-signs".into(),
            )),
            ("http://loinc.org".into(), "8480-6".into()),
            vec!["PSY".into()],
            true,
            Some(100),
        );
        let facts = StoredFacts::of(&body);
        assert!(facts.internal);
        assert_eq!(facts.owner.as_deref(), Some("p1"));
        assert_eq!(facts.reference(), "Observation/o1");
        assert!(
            facts
                .scope_categories
                .iter()
                .any(|c| c.code == "vital-signs")
        );
        assert!(facts.facts.clinical_period.is_some());
    }
}
