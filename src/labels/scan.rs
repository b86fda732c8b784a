//! Finding every coding a resource states about its patient.
//!
//! Walking the whole resource, rather than a list of elements, means a new resource type or an
//! extension is covered without a code change. It cannot mislabel on its own: the value sets
//! hold only clinical codes, which appear in clinical elements. What is skipped is what could
//! carry a clinical code without stating anything about this patient.

use serde_json::{Map, Value};

/// One coding and where it was found.
pub(super) struct Found<'a> {
    /// The innermost resource holding it (a contained resource or Bundle entry counts as its
    /// own resource).
    pub(super) resource_type: &'a str,
    /// That resource's top-level element holding it, e.g. `code` or `category`.
    pub(super) element: &'a str,
    /// `Coding.system`.
    pub(super) system: &'a str,
    /// `Coding.code`.
    pub(super) code: &'a str,
}

/// Top-level resource types that state nothing about a patient's health: directories,
/// definitions and catalogues, whose codes describe what a thing is for, not whom it concerns.
/// A stand-alone Medication is a catalogue entry; contained in a prescription it is scanned.
/// A Consent's codes name what the patient restricts; it is governed by the consent evaluator
/// and not labelled.
const NOT_PATIENT_DATA: &[&str] = &[
    "ActivityDefinition",
    "CapabilityStatement",
    "CodeSystem",
    "ConceptMap",
    "Consent",
    "Endpoint",
    "HealthcareService",
    "ImplementationGuide",
    "Library",
    "Location",
    "Measure",
    "Medication",
    "NamingSystem",
    "ObservationDefinition",
    "OperationDefinition",
    "Organization",
    "PlanDefinition",
    "Practitioner",
    "PractitionerRole",
    "Questionnaire",
    "SearchParameter",
    "SpecimenDefinition",
    "StructureDefinition",
    "StructureMap",
    "ValueSet",
];

/// Whether resources of this type are labelled at all.
pub(super) fn is_patient_data(resource_type: &str) -> bool {
    !NOT_PATIENT_DATA.contains(&resource_type)
}

/// Calls `visit` for every coding in `resource`, unless its type holds no patient data.
pub(super) fn codings<'a>(resource: &'a Value, visit: &mut dyn FnMut(Found<'a>)) {
    let Some(fields) = resource.as_object() else {
        return;
    };
    if is_patient_data(resource_type(fields)) {
        walk_resource(fields, visit);
    }
}

/// Calls `visit` for every coding in `resource`, whatever its type.
pub(super) fn all_codings<'a>(resource: &'a Value, visit: &mut dyn FnMut(Found<'a>)) {
    if let Some(fields) = resource.as_object() {
        walk_resource(fields, visit);
    }
}

fn resource_type(fields: &Map<String, Value>) -> &str {
    fields
        .get("resourceType")
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn walk_resource<'a>(fields: &'a Map<String, Value>, visit: &mut dyn FnMut(Found<'a>)) {
    let resource_type = resource_type(fields);
    for (element, value) in fields {
        // `meta` holds the labels themselves; `text` is narrative, never read for codes.
        if element != "meta" && element != "text" {
            walk(value, resource_type, element, visit);
        }
    }
}

fn walk<'a>(
    value: &'a Value,
    resource_type: &'a str,
    element: &'a str,
    visit: &mut dyn FnMut(Found<'a>),
) {
    match value {
        Value::Object(fields) => {
            // Contained resources, Bundle entries and Parameters resources are resources of
            // their own, with their own top-level elements.
            if fields.get("resourceType").is_some_and(Value::is_string) {
                walk_resource(fields, visit);
                return;
            }
            if let (Some(Value::String(system)), Some(Value::String(code))) =
                (fields.get("system"), fields.get("code"))
            {
                visit(Found {
                    resource_type,
                    element,
                    system,
                    code,
                });
            }
            for child in fields.values() {
                walk(child, resource_type, element, visit);
            }
        }
        Value::Array(items) => {
            for item in items {
                walk(item, resource_type, element, visit);
            }
        }
        _ => {}
    }
}
