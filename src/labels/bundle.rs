//! Labelling a whole Bundle: each entry by its own codes, then along the references through
//! which one resource discloses another.
//!
//! A visit note's codes say only "progress note", yet its text tells everything that happened
//! in the visit; a claim may carry no diagnosis code, yet it bills the visit it references.
//! Within one Bundle those links are visible, so labels flow along them:
//!
//! - an Encounter gets the labels of the conditions it names (`diagnosis.condition`,
//!   `reasonReference`);
//! - a note of a visit (DocumentReference via `context.encounter`, Composition via
//!   `encounter`, a DiagnosticReport with `presentedForm` via `encounter`) gets the labels of
//!   the Encounter and of every resource recorded in it (whose `encounter` or
//!   `context.encounter` names it);
//! - a Composition gets the labels of its section entries, a DiagnosticReport those of its
//!   results;
//! - a Claim or ExplanationOfBenefit gets those of the visits it bills (`item.encounter`, as a
//!   note would), its diagnoses, procedures and prescriptions, and an ExplanationOfBenefit
//!   those of its Claim;
//! - a medication order, statement, dispense or administration gets those of the Medication it
//!   references.
//!
//! Labels flow until nothing changes, so the result does not depend on entry order and
//! applying twice adds nothing. References resolve by `fullUrl` (e.g. `urn:uuid:...`) or by
//! `Type/id`; references to resources outside the Bundle are not followed.

use std::collections::HashMap;

use serde_json::Value;

use super::{LabelError, Labeller, SecurityLabel, Sensitivities, add_missing, scan};

/// The labels added to one Bundle entry.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EntryLabels {
    /// Index into `Bundle.entry`.
    pub entry: usize,
    /// The labels added to that entry's resource.
    pub added: Vec<SecurityLabel>,
}

/// Resource types that record a medication by reference.
const MEDICATION_USES: [&str; 4] = [
    "MedicationAdministration",
    "MedicationDispense",
    "MedicationRequest",
    "MedicationStatement",
];

impl Labeller {
    /// The labels each entry's resource calls for, index-aligned with `Bundle.entry` (empty for
    /// an entry without a resource), including what flows along references.
    pub fn labels_for_bundle(&self, bundle: &Value) -> Result<Vec<Vec<SecurityLabel>>, LabelError> {
        Ok(self
            .bundle_sensitivities(bundle)?
            .iter()
            .map(|found| self.labels_from(found))
            .collect())
    }

    /// Labels every entry of a Bundle as [`Labeller::apply`] does, plus what flows along
    /// references; returns the entries that gained labels.
    pub fn apply_bundle(&self, bundle: &mut Value) -> Result<Vec<EntryLabels>, LabelError> {
        let found = self.bundle_sensitivities(bundle)?;
        let mut changed = Vec::new();
        let entries = bundle
            .get_mut("entry")
            .and_then(Value::as_array_mut)
            .map(|entries| entries.iter_mut())
            .into_iter()
            .flatten();
        for (index, (entry, found)) in entries.zip(&found).enumerate() {
            if let Some(resource) = entry.get_mut("resource").filter(|r| r.is_object()) {
                let added = add_missing(resource, self.labels_from(found))?;
                if !added.is_empty() {
                    changed.push(EntryLabels {
                        entry: index,
                        added,
                    });
                }
            }
        }
        Ok(changed)
    }

    fn bundle_sensitivities(&self, bundle: &Value) -> Result<Vec<Sensitivities>, LabelError> {
        let fields = bundle
            .as_object()
            .ok_or(LabelError::NotAnObject { what: "Bundle" })?;
        if fields.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(LabelError::NotABundle);
        }
        let entries = fields
            .get("entry")
            .and_then(Value::as_array)
            .map(Vec::as_slice)
            .unwrap_or_default();
        let graph = Graph::new(entries);
        let mut found: Vec<Sensitivities> = graph
            .resources
            .iter()
            .map(|r| r.map(|r| self.sensitivities(r)).unwrap_or_default())
            .collect();
        // A catalogue entry (a Medication) is not labelled itself, but what its codes call for
        // still reaches the orders that reference it.
        let catalogue: Vec<Sensitivities> = graph
            .resources
            .iter()
            .map(|r| match r {
                Some(r) if !scan::is_patient_data(type_of(r)) => {
                    self.close(self.matched(r, scan::all_codings))
                }
                _ => Sensitivities::new(),
            })
            .collect();
        let edges = graph.disclosure_edges();
        loop {
            let mut grew = false;
            for &(to, from) in &edges {
                let source = if catalogue[from].is_empty() {
                    found[from].clone()
                } else {
                    catalogue[from].clone()
                };
                if !source.is_subset(&found[to]) {
                    found[to].extend(source);
                    grew = true;
                }
            }
            if !grew {
                return Ok(found);
            }
        }
    }
}

fn type_of(resource: &Value) -> &str {
    resource
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
}

/// The entries of a Bundle and the references between them.
struct Graph<'a> {
    /// Each entry's resource, if it has one.
    resources: Vec<Option<&'a Value>>,
    /// `fullUrl` and `Type/id` -> entry index.
    index: HashMap<String, usize>,
}

impl<'a> Graph<'a> {
    fn new(entries: &'a [Value]) -> Self {
        let resources: Vec<Option<&Value>> = entries
            .iter()
            .map(|entry| entry.get("resource").filter(|r| r.is_object()))
            .collect();
        let mut index = HashMap::new();
        for (i, entry) in entries.iter().enumerate() {
            if let Some(full_url) = entry.get("fullUrl").and_then(Value::as_str) {
                index.insert(full_url.to_string(), i);
            }
            if let Some(resource) = resources[i]
                && let Some(id) = resource.get("id").and_then(Value::as_str)
            {
                index.insert(format!("{}/{id}", type_of(resource)), i);
            }
        }
        Self { resources, index }
    }

    /// The entry a reference string points to, if it is in the Bundle.
    fn resolve(&self, reference: &str) -> Option<usize> {
        if let Some(&i) = self.index.get(reference) {
            return Some(i);
        }
        // An absolute or versioned reference still names `Type/id` in its last two segments.
        let unversioned = reference
            .split_once("/_history/")
            .map_or(reference, |(base, _)| base);
        let mut segments = unversioned.rsplit('/');
        let id = segments.next()?;
        let resource_type = segments.next()?;
        self.index.get(&format!("{resource_type}/{id}")).copied()
    }

    /// Entries referenced from `resource` along `path`, e.g. `["item", "encounter"]`.
    fn targets(&self, resource: &Value, path: &[&str]) -> Vec<usize> {
        let mut references = Vec::new();
        collect_references(resource, path, &mut references);
        references
            .into_iter()
            .filter_map(|r| self.resolve(r))
            .collect()
    }

    fn is_type(&self, entry: usize, resource_type: &str) -> bool {
        self.resources[entry].is_some_and(|r| type_of(r) == resource_type)
    }

    /// The Encounters among `resource`'s targets along `path`.
    fn encounters(&self, resource: &Value, path: &[&str]) -> Vec<usize> {
        let mut found = self.targets(resource, path);
        found.retain(|&e| self.is_type(e, "Encounter"));
        found
    }

    /// `(to, from)`: entry `to` discloses what entry `from` holds.
    fn disclosure_edges(&self) -> Vec<(usize, usize)> {
        // Who was recorded in which visit.
        let mut members: HashMap<usize, Vec<usize>> = HashMap::new();
        for (i, resource) in self.resources.iter().enumerate() {
            let Some(resource) = resource else { continue };
            let mut visits = self.encounters(resource, &["encounter"]);
            visits.extend(self.encounters(resource, &["context", "encounter"]));
            for visit in visits {
                members.entry(visit).or_default().push(i);
            }
        }
        let visit_of = |encounter: usize| {
            let mut sources = vec![encounter];
            sources.extend(members.get(&encounter).into_iter().flatten());
            sources
        };

        let mut edges = Vec::new();
        for (to, resource) in self.resources.iter().enumerate() {
            let Some(resource) = resource else { continue };
            if !scan::is_patient_data(type_of(resource)) {
                continue;
            }
            let mut from = Vec::new();
            match type_of(resource) {
                "Encounter" => {
                    from.extend(self.targets(resource, &["diagnosis", "condition"]));
                    from.extend(self.targets(resource, &["reasonReference"]));
                }
                "DocumentReference" => {
                    for visit in self.encounters(resource, &["context", "encounter"]) {
                        from.extend(visit_of(visit));
                    }
                }
                "Composition" => {
                    for visit in self.encounters(resource, &["encounter"]) {
                        from.extend(visit_of(visit));
                    }
                    let mut references = Vec::new();
                    collect_section_entries(resource, &mut references);
                    from.extend(references.into_iter().filter_map(|r| self.resolve(r)));
                }
                "DiagnosticReport" => {
                    // A report with a rendered form narrates its visit like a note does.
                    if resource.get("presentedForm").is_some() {
                        for visit in self.encounters(resource, &["encounter"]) {
                            from.extend(visit_of(visit));
                        }
                    }
                    from.extend(self.targets(resource, &["result"]));
                }
                kind @ ("Claim" | "ExplanationOfBenefit") => {
                    for visit in self.encounters(resource, &["item", "encounter"]) {
                        from.extend(visit_of(visit));
                    }
                    from.extend(self.targets(resource, &["diagnosis", "diagnosisReference"]));
                    from.extend(self.targets(resource, &["procedure", "procedureReference"]));
                    from.extend(self.targets(resource, &["prescription"]));
                    from.extend(self.targets(resource, &["originalPrescription"]));
                    if kind == "ExplanationOfBenefit" {
                        from.extend(self.targets(resource, &["claim"]));
                    }
                }
                kind if MEDICATION_USES.contains(&kind) => {
                    from.extend(self.targets(resource, &["medicationReference"]));
                }
                _ => {}
            }
            edges.extend(from.into_iter().filter(|&f| f != to).map(|f| (to, f)));
        }
        edges
    }
}

/// Pushes every `reference` string found by following `path` from `value`, through arrays.
fn collect_references<'a>(value: &'a Value, path: &[&str], out: &mut Vec<&'a str>) {
    match (value, path.split_first()) {
        (Value::Array(items), _) => {
            for item in items {
                collect_references(item, path, out);
            }
        }
        (Value::Object(fields), None) => {
            if let Some(reference) = fields.get("reference").and_then(Value::as_str) {
                out.push(reference);
            }
        }
        (Value::Object(fields), Some((first, rest))) => {
            if let Some(child) = fields.get(*first) {
                collect_references(child, rest, out);
            }
        }
        _ => {}
    }
}

/// Pushes the `entry` references of every section of a Composition, nested sections included.
fn collect_section_entries<'a>(value: &'a Value, out: &mut Vec<&'a str>) {
    for section in value
        .get("section")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        collect_references(section, &["entry"], out);
        collect_section_entries(section, out);
    }
}
