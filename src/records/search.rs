//! FHIR search parameters turned into a storage query, and the searchset Bundle back.
//!
//! Supported on every type: `_id`, `patient` (also `subject`), `date`, `code`, `category`,
//! `identifier`, `_security`, `_lastUpdated`, `_count`, and `_cursor` (the paging token the
//! `next` link carries). An unknown parameter is refused rather than ignored: a filter that
//! is silently dropped returns more records than the caller meant to ask for.
//!
//! Dates follow FHIR's prefixes over ranges: `eq` (default) the resource's range lies within
//! the parameter's, `ne` is refused, `gt`/`ge` it ends after / at or after, `lt`/`le` it
//! starts before / at or before, `sa` it starts after, `eb` it ends before.

use serde_json::{Value, json};

use super::{RecordError, dates, index, validate};
use crate::config::Limits;
use crate::fhir_time::DateError;
use crate::store::DbConn;
use crate::store::resources::{
    self as rows, Cmp, DateBound, RangeEdge, ResourceQuery, TokenFilter,
};

/// A parsed search: the storage query and the parameters to echo in links.
#[derive(Debug, Clone)]
pub struct Search {
    /// What to ask storage.
    pub query: ResourceQuery,
    /// Page size.
    pub count: usize,
    /// The parameters as given, minus paging, for `self` and `next` links.
    pub echo: Vec<(String, String)>,
}

/// Parses the query string of `GET /fhir/{type}`.
pub fn parse(resource_type: &str, raw_query: &str, limits: &Limits) -> Result<Search, RecordError> {
    validate::resource_type(resource_type)?;
    let mut query = ResourceQuery {
        resource_type: resource_type.to_string(),
        ..Default::default()
    };
    let mut count = limits.default_page_size;
    let mut echo = Vec::new();
    for (name, value) in form_urlencoded::parse(raw_query.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        match name.as_str() {
            "_count" => {
                let n: usize = value.parse().map_err(|_| {
                    RecordError::invalid("invalid_search_value", "`_count` must be a whole number")
                })?;
                count = n.clamp(1, limits.max_page_size);
                continue;
            }
            "_cursor" => {
                if !validate::is_valid_id(&value) {
                    return Err(RecordError::invalid(
                        "invalid_search_value",
                        "`_cursor` is not a paging token of this server",
                    ));
                }
                query.after_id = Some(value);
                continue;
            }
            "_format" if value.contains("json") => continue,
            "_id" => query.ids.extend(split_or(&value).map(str::to_string)),
            "patient" | "subject" => {
                for v in split_or(&value) {
                    let id = if v.contains('/') {
                        index::patient_id_from_reference(v).ok_or_else(|| {
                            RecordError::invalid(
                                "invalid_search_value",
                                "`patient` must be an id or a Patient reference",
                            )
                        })?
                    } else {
                        v.to_string()
                    };
                    query.patient_ids.push(id);
                }
            }
            "date" => query.clinical.extend(date_bounds(&value)?),
            "_lastUpdated" => query.last_updated.extend(date_bounds(&value)?),
            "code" | "category" | "identifier" | "_security" => {
                let kind = name.trim_start_matches('_');
                query.tokens.push(token_filter(kind, &value));
            }
            other => {
                return Err(RecordError::invalid(
                    "unsupported_search_parameter",
                    format!(
                        "search parameter `{}` is not supported; see /fhir/metadata",
                        validate::printable(other, 40)
                    ),
                ));
            }
        }
        echo.push((name, value));
    }
    // One more than a page tells whether there is a next page without counting.
    query.limit = i64::try_from(count + 1).unwrap_or(i64::MAX);
    Ok(Search { query, count, echo })
}

/// Narrows a search to one patient's compartment: a search for other patients finds nothing.
pub fn restrict_to_patient(search: &mut Search, patient_id: &str) {
    let asked_for_others = !search.query.patient_ids.is_empty()
        && !search.query.patient_ids.iter().any(|p| p == patient_id);
    search.query.patient_ids = vec![patient_id.to_string()];
    if asked_for_others {
        search.query.limit = 0;
    }
}

fn split_or(value: &str) -> impl Iterator<Item = &str> {
    value.split(',').map(str::trim).filter(|v| !v.is_empty())
}

fn token_filter(kind: &str, value: &str) -> TokenFilter {
    let mut filter = TokenFilter {
        kind: kind.to_string(),
        ..Default::default()
    };
    for v in split_or(value) {
        match v.split_once('|') {
            Some((system, code)) => filter.tokens.push(format!("{system}|{code}")),
            None => filter.codes.push(v.to_string()),
        }
    }
    filter
}

/// The storage comparisons for one date parameter value.
fn date_bounds(value: &str) -> Result<Vec<DateBound>, RecordError> {
    let prefixes = ["eq", "ne", "gt", "ge", "lt", "le", "sa", "eb", "ap"];
    let (prefix, date) = match value.get(..2) {
        Some(p) if prefixes.contains(&p) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (start, end) = dates::parse(date).map_err(|e| match e {
        DateError::Malformed => RecordError::invalid(
            "invalid_search_value",
            "a date parameter must be a FHIR date or dateTime, optionally after a prefix (ge, le, ...)",
        ),
        DateError::OutOfRange => RecordError::invalid(e.code(), e.to_string()),
    })?;
    let bound = |edge, cmp, value| DateBound { edge, cmp, value };
    Ok(match prefix {
        "eq" => vec![
            bound(RangeEdge::Start, Cmp::Ge, start),
            bound(RangeEdge::End, Cmp::Le, end),
        ],
        "gt" => vec![bound(RangeEdge::End, Cmp::Gt, end)],
        "ge" => vec![bound(RangeEdge::End, Cmp::Ge, start)],
        "lt" => vec![bound(RangeEdge::Start, Cmp::Lt, start)],
        "le" => vec![bound(RangeEdge::Start, Cmp::Le, end)],
        "sa" => vec![bound(RangeEdge::Start, Cmp::Gt, end)],
        "eb" => vec![bound(RangeEdge::End, Cmp::Lt, start)],
        _ => {
            return Err(RecordError::invalid(
                "unsupported_search_parameter",
                format!("the date prefix `{prefix}` is not supported"),
            ));
        }
    })
}

/// A searchset entry for a resource found by a search, its `fullUrl` under `base`.
pub fn match_entry(base: &str, resource: Value) -> Value {
    let url = format!(
        "{base}/{}/{}",
        resource["resourceType"].as_str().unwrap_or_default(),
        resource["id"].as_str().unwrap_or_default()
    );
    object([
        ("fullUrl", Value::String(url)),
        ("resource", resource),
        ("search", json!({"mode": "match"})),
    ])
}

/// A JSON object of `fields`, in their order, the values moved in. `json!` would copy each
/// interpolated `Value` through serde (`to_value`), a deep copy of every resource of a
/// search page: most of the 12 % of a page's CPU that building its Bundle took
/// (`docs/PERFORMANCE.md`, "Third step").
pub fn object<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Object(
        fields
            .into_iter()
            .map(|(key, value)| (key.to_string(), value))
            .collect(),
    )
}

/// Runs a search and builds the searchset Bundle. `base` is the server's `/fhir` URL.
/// The Bundle carries no `total`: counting is left out so that a count can never reveal
/// more than the page shows.
pub fn run(conn: &mut DbConn, search: &Search, base: &str) -> Result<Value, RecordError> {
    let mut rows = rows::search(conn, &search.query)?;
    let has_next = rows.len() > search.count;
    rows.truncate(search.count);
    let link = |extra: Option<(&str, &str)>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &search.echo {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &search.count.to_string());
        if let Some((k, v)) = extra {
            q.append_pair(k, v);
        }
        format!("{base}/{}?{}", search.query.resource_type, q.finish())
    };
    let mut links = vec![
        json!({"relation": "self", "url": link(search.query.after_id.as_deref().map(|a| ("_cursor", a)))}),
    ];
    if has_next && let Some((last, _, _)) = rows.last() {
        links.push(json!({"relation": "next", "url": link(Some(("_cursor", last)))}));
    }
    let mut entries = Vec::with_capacity(rows.len());
    for (id, body, _) in rows {
        let resource: Value = serde_json::from_str(&body).map_err(|_| {
            RecordError::Store(crate::store::StoreError::Task(format!(
                "stored body of {}/{id} is not JSON",
                search.query.resource_type
            )))
        })?;
        entries.push(match_entry(base, resource));
    }
    Ok(object([
        ("resourceType", json!("Bundle")),
        ("id", Value::String(super::ingest::new_id())),
        ("type", json!("searchset")),
        ("link", Value::Array(links)),
        ("entry", Value::Array(entries)),
    ]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_match_entry_is_the_resource_moved_in_under_its_full_url() {
        let resource = json!({"resourceType": "Observation", "id": "o1", "status": "final"});
        let entry = match_entry("https://gw/fhir", resource.clone());
        assert_eq!(
            entry,
            json!({"fullUrl": "https://gw/fhir/Observation/o1", "resource": resource,
                   "search": {"mode": "match"}})
        );
        let keys: Vec<&String> = entry.as_object().expect("object").keys().collect();
        assert_eq!(
            keys,
            ["fullUrl", "resource", "search"],
            "FHIR's order, kept"
        );
    }

    fn limits() -> Limits {
        Limits {
            max_body_bytes: 1 << 20,
            max_json_depth: 64,
            max_bundle_entries: 3,
            default_page_size: 10,
            max_page_size: 100,
        }
    }

    #[test]
    fn parses_the_supported_parameters() {
        let s = parse(
            "Observation",
            "patient=Patient/p1,p2&date=ge2020-01-01&date=le2020-12-31&code=http://loinc.org|8867-4,abc&category=vital-signs&_count=5000&_cursor=x1",
            &limits(),
        )
        .unwrap();
        assert_eq!(s.query.patient_ids, vec!["p1", "p2"]);
        assert_eq!(s.query.clinical.len(), 2);
        assert_eq!(s.query.tokens[0].tokens, vec!["http://loinc.org|8867-4"]);
        assert_eq!(s.query.tokens[0].codes, vec!["abc"]);
        assert_eq!(s.query.tokens[1].kind, "category");
        assert_eq!(s.count, 100, "_count is capped");
        assert_eq!(s.query.limit, 101);
        assert_eq!(s.query.after_id.as_deref(), Some("x1"));
        assert!(s.echo.iter().all(|(k, _)| k != "_count" && k != "_cursor"));
    }

    #[test]
    fn date_prefixes() {
        let (s, e) = dates::parse_range("2020").unwrap();
        let b = |edge, cmp, value| DateBound { edge, cmp, value };
        assert_eq!(
            date_bounds("2020").unwrap(),
            vec![
                b(RangeEdge::Start, Cmp::Ge, s),
                b(RangeEdge::End, Cmp::Le, e)
            ]
        );
        assert_eq!(
            date_bounds("ge2020").unwrap(),
            vec![b(RangeEdge::End, Cmp::Ge, s)]
        );
        assert_eq!(
            date_bounds("le2020").unwrap(),
            vec![b(RangeEdge::Start, Cmp::Le, e)]
        );
        assert_eq!(
            date_bounds("gt2020").unwrap(),
            vec![b(RangeEdge::End, Cmp::Gt, e)]
        );
        assert_eq!(
            date_bounds("lt2020").unwrap(),
            vec![b(RangeEdge::Start, Cmp::Lt, s)]
        );
    }

    #[test]
    fn refuses_what_it_does_not_support() {
        for q in [
            "name=x",
            "date=ne2020",
            "date=yesterday",
            "_count=-1",
            "_cursor=a%20b",
            "patient=Group/1",
        ] {
            match parse("Observation", q, &limits()) {
                Err(RecordError::Invalid { .. }) => {}
                other => panic!("{q}: {other:?}"),
            }
        }
        match parse("Nope", "", &limits()) {
            Err(RecordError::Invalid { code, .. }) => assert_eq!(code, "unknown_resource_type"),
            other => panic!("an unknown type: {other:?}"),
        }
    }
}
