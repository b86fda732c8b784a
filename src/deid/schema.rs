//! Typed navigation of FHIR JSON over the generated element table.
//!
//! JSON does not say what type a value has; the StructureDefinitions do. A *base* is the
//! table path under which an object's children are listed: a resource type (`Patient`), a
//! datatype (`HumanName`), a primitive type (for the `_birthDate` sibling) or, for an inline
//! backbone element, its own path (`Patient.contact`).

use std::cmp::Ordering;
use std::sync::OnceLock;

use serde_json::Value;

use super::element_types::{DATATYPES, ELEMENT_TYPES, PRIMITIVE_TYPES, REPEATING};
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

/// The types the walks single out, so that they compare a tag rather than a type name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Tag {
    HumanName,
    Identifier,
    ContactPoint,
    Address,
    Extension,
    /// `date`, `dateTime` or `instant`.
    Date,
    /// `code`.
    Code,
    /// `id`, `uri`, `url`, `canonical`, `oid`, `uuid` or `base64Binary`.
    IdLike,
    /// Anything else.
    Other,
}

impl Tag {
    fn of(type_code: &str) -> Tag {
        match type_code {
            "HumanName" => Tag::HumanName,
            "Identifier" => Tag::Identifier,
            "ContactPoint" => Tag::ContactPoint,
            "Address" => Tag::Address,
            "Extension" => Tag::Extension,
            "date" | "dateTime" | "instant" => Tag::Date,
            "code" => Tag::Code,
            "id" | "uri" | "url" | "canonical" | "oid" | "uuid" | "base64Binary" => Tag::IdLike,
            _ => Tag::Other,
        }
    }
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
    /// What kind of value it holds, worked out once per row.
    kind: TypeKind,
    /// The type's tag, worked out once per row.
    pub tag: Tag,
    /// The row's index in the table.
    pub row: usize,
}

impl ElementDef {
    /// The element's name as it appears in JSON (`valueQuantity`).
    pub fn name(&self) -> &'static str {
        self.path.rsplit('.').next().unwrap_or(self.path)
    }

    /// For a choice row, the name without the type suffix (`value`), as FHIRPath names it.
    pub fn choice_stem(&self) -> Option<&'static str> {
        if !self.choice {
            return None;
        }
        let name = self.name();
        name.get(..name.len().checked_sub(self.type_code.len())?)
    }

    /// Whether the element may repeat (an array in JSON, even when written as one object).
    pub fn repeats(&self) -> bool {
        REPEATING.binary_search(&self.path).is_ok()
    }

    /// What kind of value the element holds.
    pub fn kind(&self) -> TypeKind {
        self.kind
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
/// Every walk calls this once per element (three walks per exported resource), so it goes
/// through a hash index of the table and never builds the joined `base.name` string.
pub(super) fn child(base: &str, name: &str) -> Option<ElementDef> {
    let (base, name) = (base.as_bytes(), name.as_bytes());
    let row = Index::get().find(hash_joined(base, name), |path| {
        cmp_joined(path.as_bytes(), base, name) == Ordering::Equal
    })?;
    row_def(row)
}

/// The row of a full table path (`Observation.component.code`).
pub(super) fn row_of(path: &str) -> Option<usize> {
    Index::get().find(hash_joined(path.as_bytes(), &[]), |p| p == path)
}

/// The definition at `row` of the table.
fn row_def(row: usize) -> Option<ElementDef> {
    let index = Index::get();
    let (path, type_code, choice) = *ELEMENT_TYPES.get(row)?;
    let (kind, tag) = *index.types.get(row)?;
    Some(ElementDef {
        path,
        type_code,
        choice,
        kind,
        tag,
        row,
    })
}

/// An open-addressing hash index over [`ELEMENT_TYPES`], built on first use, with each row's
/// [`TypeKind`] and [`Tag`] worked out once.
struct Index {
    /// Row index + 1 per slot, 0 when empty; a power of two, at most a quarter full.
    slots: Box<[u32]>,
    mask: usize,
    types: Box<[(TypeKind, Tag)]>,
}

impl Index {
    fn get() -> &'static Index {
        static INDEX: OnceLock<Index> = OnceLock::new();
        INDEX.get_or_init(|| {
            let size = (ELEMENT_TYPES.len() * 4).next_power_of_two();
            let mask = size - 1;
            let mut slots = vec![0u32; size].into_boxed_slice();
            for (row, (path, _, _)) in ELEMENT_TYPES.iter().enumerate() {
                let mut slot = (hash_joined(path.as_bytes(), &[]) as usize) & mask;
                while slots[slot] != 0 {
                    slot = (slot + 1) & mask;
                }
                // The table has fewer than 2^32 rows.
                slots[slot] = u32::try_from(row + 1).unwrap_or(u32::MAX);
            }
            let types = ELEMENT_TYPES
                .iter()
                .map(|(_, type_code, _)| (type_kind(type_code), Tag::of(type_code)))
                .collect();
            Index { slots, mask, types }
        })
    }

    /// The row whose path hashes to `hash` and satisfies `is_it`.
    fn find(&self, hash: u64, is_it: impl Fn(&str) -> bool) -> Option<usize> {
        let mut slot = (hash as usize) & self.mask;
        loop {
            let row = usize::try_from(*self.slots.get(slot)?)
                .ok()?
                .checked_sub(1)?;
            if is_it(ELEMENT_TYPES.get(row)?.0) {
                return Some(row);
            }
            slot = (slot + 1) & self.mask;
        }
    }
}

/// FNV-1a over `base`, then (when `name` is not empty) `.` and `name`: the hash of the joined
/// path, computed without joining (a full path hashes the same with an empty `name`).
fn hash_joined(base: &[u8], name: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0100_0000_01b3;
    let step = |hash: u64, byte: &u8| (hash ^ u64::from(*byte)).wrapping_mul(PRIME);
    let hash = base.iter().fold(OFFSET, step);
    if name.is_empty() {
        return hash;
    }
    name.iter().fold(step(hash, &b'.'), step)
}

/// `path` compared with `base.name`, as strings compare.
fn cmp_joined(path: &[u8], base: &[u8], name: &[u8]) -> Ordering {
    let Some((head, rest)) = path.split_at_checked(base.len()) else {
        // Shorter than `base`: it is less, unless it already differs.
        return path.cmp(&base[..path.len()]).then(Ordering::Less);
    };
    head.cmp(base).then_with(|| match rest.split_first() {
        None => Ordering::Less,
        Some((dot, tail)) => dot.cmp(&b'.').then_with(|| tail.cmp(name)),
    })
}
/// Some row of the choice element `base.stem[x]` (e.g. `Observation` and `value`).
pub(super) fn choice_of(base: &str, stem: &str) -> Option<ElementDef> {
    let prefix = format!("{base}.{stem}");
    let start = ELEMENT_TYPES.partition_point(|(p, _, _)| *p < prefix.as_str());
    ELEMENT_TYPES[start..]
        .iter()
        .take_while(|(p, _, _)| p.starts_with(&prefix))
        .enumerate()
        .filter_map(|(offset, _)| row_def(start + offset))
        .find(|def| !def.path[prefix.len()..].contains('.') && def.choice_stem() == Some(stem))
}

/// The JSON names of every type of the choice element `base.stem[x]` (`valueQuantity`, ...).
pub(super) fn choices_of<'a>(
    base: &'a str,
    stem: &'a str,
) -> impl Iterator<Item = &'static str> + 'a {
    let prefix = format!("{base}.{stem}");
    let start = ELEMENT_TYPES.partition_point(|(p, _, _)| *p < prefix.as_str());
    ELEMENT_TYPES[start..]
        .iter()
        .take_while(move |(p, _, _)| p.starts_with(&prefix))
        .filter_map(move |&(path, type_code, choice)| {
            let name = path.rsplit('.').next()?;
            let def_stem = name.get(..name.len().checked_sub(type_code.len())?)?;
            (choice && !path[base.len() + 1..].contains('.') && def_stem == stem).then_some(name)
        })
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

#[cfg(test)]
mod tests {
    use std::cmp::Ordering;

    use super::cmp_joined;

    #[test]
    fn joined_comparison_is_string_comparison() {
        let samples = [
            "",
            "A",
            "Address",
            "Address.",
            "Address.city",
            "Address.cityx",
            "Address-city",
            "Addresses.a",
            "B",
        ];
        for path in samples {
            for base in ["", "Address", "Addr", "B"] {
                for name in ["", "city", "c"] {
                    let joined = format!("{base}.{name}");
                    let expected: Ordering = path.cmp(joined.as_str());
                    assert_eq!(
                        cmp_joined(path.as_bytes(), base.as_bytes(), name.as_bytes()),
                        expected,
                        "{path:?} vs {joined:?}"
                    );
                }
            }
        }
    }
}
