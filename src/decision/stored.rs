//! The facts a decision reads of a resource, derived when a version is written and stored
//! beside its body (`resources.facts`, written by `records::ingest::put_as`), so that a
//! recipient's read or search decides without parsing the body, and sends an unshaped body
//! as its stored text without parsing it at all (`docs/PERFORMANCE.md`, fifteenth step).
//!
//! The facts are a function of the stored body alone: [`StoredFacts::of`] of the body read
//! back is what was stored (a property test below). A row written before this column, or
//! by another derivation ([`FACTS_VERSION`]), has none that [`StoredFacts::decode`] accepts,
//! and its body is parsed and its facts derived as before.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock, Mutex};

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

    /// [`StoredFacts::decode`], shared: the facts of a text decoded before are those decoded
    /// then ([`DECODED_LIMIT`]).
    pub fn decode_shared(text: &str) -> Option<Arc<StoredFacts>> {
        DECODED.get_or_decode(text)
    }
}

/// Most stored texts whose decoded facts are kept; all are dropped when it is full (a miss
/// costs one decoding, as without them). About a kilobyte and a half each.
pub const DECODED_LIMIT: usize = 4096;

/// Decoded facts by their stored text. Decoding is a function of the text alone, so a text
/// seen before needs no decoding: a hash and a comparison of the text instead of a JSON parse
/// and a score of allocations, which was a tenth of a consent-checked search's CPU
/// (`docs/PERFORMANCE.md`, sixteenth step). Keyed by the whole text, not by the resource,
/// so a new version of a resource, whose facts are another text, is never answered with
/// the old one's.
static DECODED: LazyLock<DecodedFacts> = LazyLock::new(DecodedFacts::default);

#[derive(Default)]
struct DecodedFacts {
    kept: Mutex<HashMap<Box<str>, Arc<StoredFacts>, foldhash::fast::RandomState>>,
}

impl DecodedFacts {
    fn get_or_decode(&self, text: &str) -> Option<Arc<StoredFacts>> {
        if let Some(found) = self.kept.lock().ok().and_then(|k| k.get(text).cloned()) {
            return Some(found);
        }
        let facts = Arc::new(StoredFacts::decode(text)?);
        if let Ok(mut kept) = self.kept.lock() {
            if kept.len() >= DECODED_LIMIT {
                kept.clear();
            }
            kept.insert(text.into(), facts.clone());
        }
        Some(facts)
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
    /// The facts stored with it (shared: [`StoredFacts::decode_shared`]).
    Facts(Arc<StoredFacts>),
    /// Its body, parsed from the text.
    Parsed(Value),
}

impl StoredResource {
    /// The resource of a stored row: its facts when they are of this derivation, its parse
    /// otherwise; `None` when the facts are not usable and the text is not JSON.
    pub fn of_row(text: String, facts: Option<&str>) -> Option<StoredResource> {
        let known = match facts.and_then(StoredFacts::decode_shared) {
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

    /// Facts decoded before are shared, by their text: the same text answers the same
    /// decoding, another text (another version's facts) its own; a text that does not decode
    /// is never kept; and past the limit the kept ones go, and decode alike again.
    #[test]
    fn decoded_facts_are_shared_by_their_text_alone() {
        let decoded = DecodedFacts::default();
        let first = StoredFacts::of(&plain_observation());
        let mut second_body = plain_observation();
        second_body["status"] = json!("amended");
        second_body["code"]["coding"][0]["code"] = json!("8462-4");
        let second = StoredFacts::of(&second_body);
        assert_ne!(first, second);

        let a = decoded.get_or_decode(&first.encode()).expect("decodes");
        let again = decoded.get_or_decode(&first.encode()).expect("decodes");
        assert!(
            Arc::ptr_eq(&a, &again),
            "the same text: the facts decoded before"
        );
        assert_eq!(*a, first);
        let b = decoded.get_or_decode(&second.encode()).expect("decodes");
        assert_eq!(*b, second, "another text: its own facts");
        let mut stale = first.clone();
        stale.v = FACTS_VERSION + 1;
        assert!(decoded.get_or_decode(&stale.encode()).is_none());
        assert!(decoded.get_or_decode("not json").is_none());
        assert_eq!(
            decoded.kept.lock().unwrap().len(),
            2,
            "only what decoded is kept"
        );

        for i in 0..DECODED_LIMIT {
            let mut other = first.clone();
            other.facts.id = format!("o{i}");
            decoded.get_or_decode(&other.encode()).expect("decodes");
        }
        assert!(decoded.kept.lock().unwrap().len() <= DECODED_LIMIT);
        let after = decoded.get_or_decode(&first.encode()).expect("decodes");
        assert!(!Arc::ptr_eq(&a, &after), "dropped past the limit");
        assert_eq!(*after, first, "and decoded alike again");
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
            Some((Known::Facts(f), Some(owner))) if *f == facts && owner == "p1"
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
