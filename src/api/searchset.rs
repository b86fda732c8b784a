//! The searchset Bundles of FHIR searches and `$everything`, as a `Value` and, for a
//! recipient's page, written straight into bytes around the stored texts.

use serde_json::{Value, json};

use crate::records::search;
use crate::release::{Payload, SearchPage};

/// The JSON text of [`searchset`] with `links`, written straight into bytes: a stored
/// resource goes in as its stored text ([`Payload::Stored`]), without being serialised
/// again.
pub(super) fn searchset_json(base: &str, resources: &[Payload], links: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    out.extend_from_slice(br#"{"resourceType":"Bundle","type":"searchset","entry":["#);
    for (i, resource) in resources.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(br#"{"fullUrl":"#);
        // A string and a list of `Value`s always serialise.
        let _ = serde_json::to_writer(&mut out, &format!("{base}/{}", resource.reference()));
        out.extend_from_slice(br#","resource":"#);
        resource.write_json(&mut out);
        out.extend_from_slice(br#","search":{"mode":"match"}}"#);
    }
    out.extend_from_slice(br#"],"link":"#);
    let _ = serde_json::to_writer(&mut out, links);
    out.push(b'}');
    out
}

/// A searchset Bundle of `resources` (no total: a count could reveal more than is shown).
pub(super) fn searchset(base: &str, resources: Vec<Value>, links: Option<Vec<Value>>) -> Value {
    let entries: Vec<Value> = resources
        .into_iter()
        .map(|r| search::match_entry(base, r))
        .collect();
    let mut bundle = search::object([
        ("resourceType", json!("Bundle")),
        ("type", json!("searchset")),
        ("entry", Value::Array(entries)),
    ]);
    if let Some(links) = links {
        bundle["link"] = Value::Array(links);
    }
    bundle
}

/// The `self` and (when there is one) `next` links of a recipient's search page.
pub(super) fn page_links(base: &str, page: &SearchPage) -> Vec<Value> {
    let link = |cursor: Option<&str>| {
        let mut q = form_urlencoded::Serializer::new(String::new());
        for (k, v) in &page.echo {
            q.append_pair(k, v);
        }
        q.append_pair("_count", &page.page_size.to_string());
        if let Some(c) = cursor {
            q.append_pair("_cursor", c);
        }
        format!("{base}/{}?{}", page.resource_type, q.finish())
    };
    let mut links = vec![json!({"relation": "self", "url": link(None)})];
    if let Some(cursor) = &page.next_cursor {
        links.push(json!({"relation": "next", "url": link(Some(cursor))}));
    }
    links
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// The searchset written straight into bytes is the Bundle [`searchset`] builds, byte for
    /// byte, whether its resources go in as stored text or as values, with characters JSON
    /// must escape in the base URL and the resources.
    #[test]
    fn searchset_bytes_are_the_bundle() {
        let base = "https://gw.test/fhir \"quoted\"";
        let resources = [
            json!({"resourceType": "Observation", "id": "o1", "status": "final",
                   "code": {"text": "tab\tand \u{2028} and é"}, "valueQuantity": {"value": 1.5}}),
            json!({"resourceType": "Condition", "id": "c-2", "note": [{"text": "line\nbreak"}]}),
        ];
        let links =
            vec![json!({"relation": "self", "url": "https://gw.test/fhir/Observation?_count=2"})];
        let want =
            serde_json::to_vec(&searchset(base, resources.to_vec(), Some(links.clone()))).unwrap();
        let shaped: Vec<Payload> = resources.iter().cloned().map(Payload::Shaped).collect();
        assert_eq!(
            String::from_utf8(searchset_json(base, &shaped, &links)).unwrap(),
            String::from_utf8(want.clone()).unwrap()
        );
        let stored: Vec<Payload> = resources
            .iter()
            .map(|r| Payload::Stored {
                reference: format!(
                    "{}/{}",
                    r["resourceType"].as_str().unwrap(),
                    r["id"].as_str().unwrap()
                ),
                text: r.to_string(),
            })
            .collect();
        assert_eq!(searchset_json(base, &stored, &links), want);
        assert_eq!(searchset_json(base, &[], &links), {
            serde_json::to_vec(&searchset(base, Vec::new(), Some(links.clone()))).unwrap()
        });
    }
}
