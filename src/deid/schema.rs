//! Typed navigation of FHIR JSON over the generated element table.
//!
//! JSON does not say what type a value has; the StructureDefinitions do. A *base* is the
//! table path under which an object's children are listed: a resource type (`Patient`), a
//! datatype (`HumanName`), a primitive type (for the `_birthDate` sibling) or, for an inline
//! backbone element, its own path (`Patient.contact`).

use serde_json::Value;

use super::element_types::{DATATYPES, ELEMENT_TYPES, PRIMITIVE_TYPES};
use crate::records::resource_types::R4_RESOURCE_TYPES;

/// How the children of an element are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum TypeKind {
    /// A primitive value (`date`, `string`, ...); children only in its `_name` sibling.
    Primitive,
    /// A complex datatype; children under the datatype's name.
    Datatype,
    /// A backbone element defined inline; children under the element's own path.
    Backbone,
    /// A nested resource (`contained`, `Bundle.entry.resource`); children under its `resourceType`.
    Resource,
}

/// One element definition of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct ElementDef {
    /// The full table path, e.g. `Observation.component.valueQuantity`.
    pub path: &'static str,
    /// The FHIR type code, or `#path` for a content reference.
    pub type_code: &'static str,
    /// Whether the row is one type of a choice element (`value[x]`).
    pub choice: bool,
}

impl ElementDef {
    /// The element's name as it appears in JSON (`valueQuantity`).
    pub fn name(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }

    /// For a choice row, the name with the `[x]` put back (`value[x]`).
    pub fn choice_name(&self) -> Option<String> {
        if !self.choice {
            return None;
        }
        let name = self.name();
        let stem = name.len().checked_sub(self.type_code.len())?;
        Some(format!("{}[x]", name.get(..stem)?))
    }

    /// For a choice row, the name without the type suffix (`value`), as FHIRPath names it.
    pub fn choice_stem(&self) -> Option<&'static str> {
        if !self.choice {
            return None;
        }
        let name = self.name();
        name.get(..name.len().checked_sub(self.type_code.len())?)
    }

    /// What kind of value the element holds.
    pub fn kind(&self) -> TypeKind {
        type_kind(self.type_code)
    }

    /// The base under which this element's children are listed (for a nested resource the
    /// caller uses its `resourceType` instead).
    pub fn child_base(&self) -> &'static str {
        match self.kind() {
            TypeKind::Backbone => self.type_code.strip_prefix('#').unwrap_or(self.path),
            _ => self.type_code,
        }
    }
}

/// The kind of a type code.
pub(super) fn type_kind(type_code: &str) -> TypeKind {
    if type_code.starts_with('#') || type_code == "BackboneElement" || type_code == "Element" {
        TypeKind::Backbone
    } else if PRIMITIVE_TYPES.binary_search(&type_code).is_ok() {
        TypeKind::Primitive
    } else if type_code == "Resource"
        || type_code == "DomainResource"
        || is_resource_type(type_code)
    {
        TypeKind::Resource
    } else {
        TypeKind::Datatype
    }
}

/// Whether `name` is a concrete FHIR R4 resource type (the gateway's one list of them).
pub(super) fn is_resource_type(name: &str) -> bool {
    R4_RESOURCE_TYPES.binary_search(&name).is_ok()
}

/// Whether `name` is a complex datatype of FHIR R4.
pub(super) fn is_datatype(name: &str) -> bool {
    DATATYPES.binary_search(&name).is_ok()
}

/// Looks up the child `name` (a JSON property name, without a leading `_`) of `base`.
///
/// Every walk calls this once per element, so it compares table paths with `base.name`
/// piecewise instead of building the joined string.
pub(super) fn child(base: &str, name: &str) -> Option<ElementDef> {
    let joined = || {
        base.bytes()
            .chain(std::iter::once(b'.'))
            .chain(name.bytes())
    };
    let index = ELEMENT_TYPES
        .binary_search_by(|(p, _, _)| p.bytes().cmp(joined()))
        .ok()?;
    let (path, type_code, choice) = ELEMENT_TYPES[index];
    Some(ElementDef {
        path,
        type_code,
        choice,
    })
}

/// Some row of the choice element `base.stem[x]` (e.g. `Observation` and `value`).
pub(super) fn choice_of(base: &str, stem: &str) -> Option<ElementDef> {
    let prefix = format!("{base}.{stem}");
    let start = ELEMENT_TYPES.partition_point(|(p, _, _)| *p < prefix.as_str());
    ELEMENT_TYPES[start..]
        .iter()
        .take_while(|(p, _, _)| p.starts_with(&prefix))
        .map(|&(path, type_code, choice)| ElementDef {
            path,
            type_code,
            choice,
        })
        .find(|def| !def.path[prefix.len()..].contains('.') && def.choice_stem() == Some(stem))
}

/// One typed value met by [`visit_resource`].
pub(super) struct Visited<'v> {
    /// The element's definition.
    pub def: ElementDef,
    /// Its JSON value: an object for complex types, a scalar for primitives.
    pub value: &'v Value,
}

/// Calls `f` on every typed element of `resource` (nested resources included), depth first.
/// Primitive values are visited once per array item; `_name` siblings are walked for their
/// extensions. Elements unknown to the table are skipped.
pub(super) fn visit_resource<'v>(resource: &'v Value, f: &mut dyn FnMut(&Visited<'v>)) {
    if let Some(resource_type) = resource.get("resourceType").and_then(Value::as_str) {
        visit_object(resource, resource_type, f);
    }
}

fn visit_object<'v>(object: &'v Value, base: &str, f: &mut dyn FnMut(&Visited<'v>)) {
    let Some(map) = object.as_object() else {
        return;
    };
    for (key, value) in map {
        let name = key.strip_prefix('_').unwrap_or(key);
        let Some(def) = child(base, name) else {
            continue;
        };
        let sibling = key.starts_with('_');
        for item in items(value) {
            if sibling {
                visit_object(item, def.type_code, f);
                continue;
            }
            f(&Visited { def, value: item });
            match def.kind() {
                TypeKind::Primitive => {}
                TypeKind::Resource => visit_resource(item, f),
                TypeKind::Datatype | TypeKind::Backbone => visit_object(item, def.child_base(), f),
            }
        }
    }
}

/// The items of a JSON value that may be an array (a single value is one item; nulls, which
/// only pad primitive arrays, are skipped).
pub(super) fn items(value: &Value) -> impl Iterator<Item = &Value> {
    let slice = match value {
        Value::Array(items) => items.as_slice(),
        other => std::slice::from_ref(other),
    };
    slice.iter().filter(|v| !v.is_null())
}

/// Whether `id` is a valid FHIR id: 1 to 64 of `[A-Za-z0-9-.]`.
pub(super) fn is_fhir_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// Whether `text` is a UUID in its 8-4-4-4-12 hex form.
pub(super) fn is_uuid(text: &str) -> bool {
    text.len() == 36
        && text.bytes().enumerate().all(|(i, b)| match i {
            8 | 13 | 18 | 23 => b == b'-',
            _ => b.is_ascii_hexdigit(),
        })
}
