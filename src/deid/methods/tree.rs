//! A typed element tree of one resource, the shape the anonymizer's rules work on: every
//! element is a node (a primitive and its `_name` sibling are one node with children), so a
//! rule can mark nodes as processed and later rules skip them.

use serde_json::{Map, Value};

use super::super::DeidError;
use super::super::schema::{self, TypeKind};

/// One element.
#[derive(Debug, Clone)]
pub(super) struct Node {
    /// The JSON property name (`valueQuantity`).
    pub name: String,
    /// The FHIR type; empty for an element the table does not know (kept as raw JSON).
    pub type_code: String,
    /// For a choice element, its name without the type (`value`), which FHIRPath uses.
    pub choice_stem: Option<&'static str>,
    /// The primitive value (or the raw JSON of an unknown element).
    pub value: Option<Value>,
    pub children: Vec<usize>,
    pub parent: Option<usize>,
    /// Whether it is written as a JSON array (it came from one, or its element repeats).
    pub in_array: bool,
    /// For a resource node, its `resourceType`.
    pub resource_type: Option<String>,
}

impl Node {
    fn is_primitive(&self) -> bool {
        self.type_code.is_empty() || schema::type_kind(&self.type_code) == TypeKind::Primitive
    }
}

/// The tree; node 0 is the resource.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Builds the tree of a resource.
    pub fn from_resource(resource: &Value) -> Result<Tree, DeidError> {
        let mut tree = Tree { nodes: Vec::new() };
        tree.add_resource(resource, "", None, false)?;
        Ok(tree)
    }

    /// Adds a node under `parent` and returns its index.
    pub fn add(&mut self, parent: Option<usize>, node: Node) -> usize {
        let index = self.nodes.len();
        self.nodes.push(Node { parent, ..node });
        if let Some(parent) = parent {
            self.nodes[parent].children.push(index);
        }
        index
    }

    /// A fresh node with no children.
    pub fn node(name: &str, type_code: &str, value: Option<Value>, in_array: bool) -> Node {
        Node {
            name: name.to_string(),
            type_code: type_code.to_string(),
            choice_stem: None,
            value,
            children: Vec::new(),
            parent: None,
            in_array,
            resource_type: None,
        }
    }

    /// The children of `index` called `name`.
    pub fn children_named<'t>(
        &'t self,
        index: usize,
        name: &'t str,
    ) -> impl Iterator<Item = usize> + 't {
        self.nodes[index]
            .children
            .iter()
            .copied()
            .filter(move |&c| self.nodes[c].name == name)
    }

    fn add_resource(
        &mut self,
        resource: &Value,
        name: &str,
        parent: Option<usize>,
        in_array: bool,
    ) -> Result<usize, DeidError> {
        let object = resource.as_object().ok_or(DeidError::NotAResource)?;
        let resource_type = object
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(DeidError::NotAResource)?;
        let mut node = Tree::node(name, resource_type, None, in_array);
        node.resource_type = Some(resource_type.to_string());
        let index = self.add(parent, node);
        self.add_children(object, resource_type, index)?;
        Ok(index)
    }

    /// Adds the elements of a JSON object of type `base` under `parent`.
    pub fn add_children(
        &mut self,
        object: &Map<String, Value>,
        base: &str,
        parent: usize,
    ) -> Result<(), DeidError> {
        for key in object.keys() {
            let name = key.strip_prefix('_').unwrap_or(key);
            if name == "resourceType" || (key.starts_with('_') && object.contains_key(name)) {
                continue;
            }
            let value = object.get(name);
            let sibling = object.get(&format!("_{name}"));
            let Some(def) = schema::child(base, name) else {
                if let Some(raw) = value {
                    self.add(Some(parent), Tree::node(name, "", Some(raw.clone()), false));
                }
                continue;
            };
            let template = Node {
                choice_stem: def.choice_stem(),
                ..Tree::node(name, def.type_code, None, false)
            };
            match def.kind() {
                TypeKind::Primitive => {
                    let array = def.repeats()
                        || matches!(value, Some(Value::Array(_)))
                        || matches!(sibling, Some(Value::Array(_)));
                    let values = as_list(value);
                    let siblings = as_list(sibling);
                    for index in 0..values.len().max(siblings.len()) {
                        let primitive = values
                            .get(index)
                            .filter(|v| !v.is_null())
                            .map(|v| (*v).clone());
                        let node = self.add(
                            Some(parent),
                            Node {
                                value: primitive,
                                in_array: array,
                                ..template.clone()
                            },
                        );
                        if let Some(Value::Object(extra)) = siblings.get(index) {
                            self.add_children(extra, def.type_code, node)?;
                        }
                    }
                }
                TypeKind::Resource => {
                    let array = def.repeats() || matches!(value, Some(Value::Array(_)));
                    for item in as_list(value) {
                        self.add_resource(item, name, Some(parent), array)?;
                    }
                }
                TypeKind::Datatype | TypeKind::Backbone => {
                    let array = def.repeats() || matches!(value, Some(Value::Array(_)));
                    for item in as_list(value) {
                        let node = self.add(
                            Some(parent),
                            Node {
                                in_array: array,
                                ..template.clone()
                            },
                        );
                        if let Some(inner) = item.as_object() {
                            self.add_children(inner, def.child_base(), node)?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The JSON of the tree, leaving out every element without a value and without kept children.
    pub fn to_json(&self) -> Value {
        self.object_of(0).map_or(Value::Null, Value::Object)
    }

    fn object_of(&self, index: usize) -> Option<Map<String, Value>> {
        let node = &self.nodes[index];
        let mut out = Map::new();
        if let Some(resource_type) = &node.resource_type {
            out.insert("resourceType".into(), Value::String(resource_type.clone()));
        }
        let mut names: Vec<&str> = Vec::new();
        for &child in &node.children {
            let name = self.nodes[child].name.as_str();
            if !names.contains(&name) {
                names.push(name);
            }
        }
        for name in names {
            let group: Vec<usize> = self.children_named(index, name).collect();
            let in_array = group.iter().any(|&c| self.nodes[c].in_array);
            if self.nodes[group[0]].is_primitive() {
                let pairs: Vec<(Value, Value)> = group
                    .iter()
                    .map(|&c| {
                        let value = self.nodes[c].value.clone().unwrap_or(Value::Null);
                        let extra = self.object_of(c).map_or(Value::Null, Value::Object);
                        (value, extra)
                    })
                    .filter(|(value, extra)| !value.is_null() || !extra.is_null())
                    .collect();
                let (values, extras): (Vec<Value>, Vec<Value>) = pairs.into_iter().unzip();
                put(&mut out, name, values, in_array);
                put(&mut out, &format!("_{name}"), extras, in_array);
            } else {
                let items: Vec<Value> = group
                    .iter()
                    .filter_map(|&c| self.object_of(c))
                    .map(Value::Object)
                    .collect();
                put(&mut out, name, items, in_array);
            }
        }
        (!out.is_empty() || node.resource_type.is_some()).then_some(out)
    }
}

/// Writes `items` under `name`: an array when the element repeats, else the single item;
/// nothing when no item is left.
fn put(out: &mut Map<String, Value>, name: &str, items: Vec<Value>, in_array: bool) {
    if items.iter().all(Value::is_null) {
        return;
    }
    if in_array {
        out.insert(name.to_string(), Value::Array(items));
    } else if let Some(item) = items.into_iter().find(|v| !v.is_null()) {
        out.insert(name.to_string(), item);
    }
}

fn as_list(value: Option<&Value>) -> Vec<&Value> {
    match value {
        Some(Value::Array(items)) => items.iter().collect(),
        Some(other) => vec![other],
        None => Vec::new(),
    }
}
