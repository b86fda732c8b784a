//! Evaluates a parsed [`Expr`] over the element [`Tree`] of one resource.
//!
//! FHIRPath is forgiving: a comparison of things that cannot be compared, or of dates whose
//! precisions leave the answer open, gives the empty collection, which counts as false in a
//! `where` and in a `generalize` case. A path's first identifier names the resource when it
//! is the resource's type (or `Resource`, `DomainResource`), otherwise a child, so that
//! `Patient.name` selects nothing in an Observation.

use std::cmp::Ordering;
use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;
use time::{Date, Month};

use super::fhirpath::{BinaryOp, Expr, Function, Literal};
use super::tree::Tree;

/// One item of a collection.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Item {
    /// An element of the tree, by index.
    Node(usize),
    String(String),
    Number(f64),
    Boolean(bool),
    /// A date, dateTime or instant, as written (without `@`).
    Date(String),
}

impl Item {
    /// The item as the text of a primitive value.
    pub fn to_text(&self) -> Option<String> {
        match self {
            Item::Node(_) => None,
            Item::String(s) | Item::Date(s) => Some(s.clone()),
            Item::Boolean(b) => Some(b.to_string()),
            Item::Number(n) if n.fract() == 0.0 && n.abs() < 1e15 => Some(format!("{n:.0}")),
            Item::Number(n) => Some(n.to_string()),
        }
    }
}

/// An evaluator over one tree, with the regular expressions compiled at load.
pub(super) struct Evaluator<'a> {
    pub tree: &'a Tree,
    pub regexes: &'a HashMap<String, Regex>,
}

impl Evaluator<'_> {
    /// The element nodes `expr` selects from the resource node `resource`.
    pub fn select(&self, expr: &Expr, resource: usize) -> Vec<usize> {
        let root = Item::Node(resource);
        self.eval(expr, std::slice::from_ref(&root), &root)
            .into_iter()
            .filter_map(|item| match item {
                Item::Node(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// Evaluates `expr` with `$this` bound to `this` (a `generalize` case).
    pub fn eval_on(&self, expr: &Expr, this: &Item) -> Vec<Item> {
        self.eval(expr, std::slice::from_ref(this), this)
    }

    /// Whether a collection is `true` as a condition.
    pub fn is_true(&self, items: &[Item]) -> bool {
        self.truth(items) == Some(true)
    }

    fn eval(&self, expr: &Expr, focus: &[Item], this: &Item) -> Vec<Item> {
        match expr {
            Expr::This => vec![this.clone()],
            Expr::Literal(literal) => vec![match literal {
                Literal::String(s) => Item::String(s.clone()),
                Literal::Number(n) => Item::Number(n.parse().unwrap_or(f64::NAN)),
                Literal::Boolean(b) => Item::Boolean(*b),
                Literal::Date(d) => Item::Date(d.clone()),
            }],
            Expr::Member(on, name) => {
                let input = self.input(on.as_deref(), focus, this);
                let at_start = on.is_none();
                input
                    .iter()
                    .filter_map(|item| match item {
                        Item::Node(n) => Some(*n),
                        _ => None,
                    })
                    .flat_map(|n| self.member(n, name, at_start))
                    .map(Item::Node)
                    .collect()
            }
            Expr::Call(on, function) => {
                let input = self.input(on.as_deref(), focus, this);
                self.call(function, input, this)
            }
            Expr::As(inner, type_name) => {
                let input = self.eval(inner, focus, this);
                self.of_type(input, type_name)
            }
            Expr::Binary(op, left, right) => {
                let left = self.eval(left, focus, this);
                let right = self.eval(right, focus, this);
                self.binary(*op, left, right)
            }
        }
    }

    fn input(&self, on: Option<&Expr>, focus: &[Item], this: &Item) -> Vec<Item> {
        match on {
            Some(on) => self.eval(on, focus, this),
            None => focus.to_vec(),
        }
    }

    fn member(&self, node: usize, name: &str, at_start: bool) -> Vec<usize> {
        let n = &self.tree.nodes[node];
        if at_start
            && let Some(resource_type) = &n.resource_type
            && name.starts_with(|c: char| c.is_ascii_uppercase())
        {
            let matches = name == resource_type || name == "Resource" || name == "DomainResource";
            return if matches { vec![node] } else { Vec::new() };
        }
        n.children
            .iter()
            .copied()
            .filter(|&c| {
                let child = &self.tree.nodes[c];
                child.name == name || child.choice_stem == Some(name)
            })
            .collect()
    }

    /// Every node below `index` in document order, stopping at (but including) nested resources.
    pub fn descendants(&self, index: usize) -> Vec<usize> {
        let mut found = Vec::new();
        for &child in &self.tree.nodes[index].children {
            found.push(child);
            if self.tree.nodes[child].resource_type.is_none() {
                found.extend(self.descendants(child));
            }
        }
        found
    }

    fn nodes_of(items: &[Item]) -> impl Iterator<Item = usize> + '_ {
        items.iter().filter_map(|item| match item {
            Item::Node(n) => Some(*n),
            _ => None,
        })
    }

    fn call(&self, function: &Function, input: Vec<Item>, this: &Item) -> Vec<Item> {
        let single_text = |input: &[Item]| match input {
            [item] => self.primitive(item).and_then(|p| match p {
                Item::String(s) | Item::Date(s) => Some(s),
                _ => None,
            }),
            _ => None,
        };
        let text_arg = |arg: &Expr, input: &[Item]| single_text(&self.eval(arg, input, this));
        match function {
            Function::NodesByType(type_code) => Self::nodes_of(&input)
                .flat_map(|n| self.descendants(n))
                .filter(|&d| self.tree.nodes[d].type_code == *type_code)
                .map(Item::Node)
                .collect(),
            Function::NodesByName(name) => Self::nodes_of(&input)
                .flat_map(|n| self.descendants(n))
                .filter(|&d| {
                    let node = &self.tree.nodes[d];
                    node.name == *name || node.choice_stem == Some(name.as_str())
                })
                .map(Item::Node)
                .collect(),
            Function::OfType(type_name) | Function::As(type_name) => self.of_type(input, type_name),
            Function::Where(criteria) => input
                .into_iter()
                .filter(|item| self.is_true(&self.eval(criteria, std::slice::from_ref(item), item)))
                .collect(),
            Function::Exists(criteria) => {
                let found = match criteria {
                    None => !input.is_empty(),
                    Some(criteria) => input.iter().any(|item| {
                        self.is_true(&self.eval(criteria, std::slice::from_ref(item), item))
                    }),
                };
                vec![Item::Boolean(found)]
            }
            Function::Empty => vec![Item::Boolean(input.is_empty())],
            Function::Not => self
                .truth(&input)
                .map(|b| vec![Item::Boolean(!b)])
                .unwrap_or_default(),
            Function::StartsWith(arg) | Function::EndsWith(arg) | Function::Contains(arg) => {
                let (Some(text), Some(part)) = (single_text(&input), text_arg(arg, &input)) else {
                    return Vec::new();
                };
                let answer = match function {
                    Function::StartsWith(_) => text.starts_with(&part),
                    Function::EndsWith(_) => text.ends_with(&part),
                    _ => text.contains(&part),
                };
                vec![Item::Boolean(answer)]
            }
            Function::Matches(arg) => {
                let (Some(text), Some(pattern)) = (single_text(&input), text_arg(arg, &input))
                else {
                    return Vec::new();
                };
                self.regexes
                    .get(&pattern)
                    .map(|regex| vec![Item::Boolean(regex.is_match(&text))])
                    .unwrap_or_default()
            }
            Function::ReplaceMatches(pattern, substitution) => {
                let (Some(text), Some(pattern), Some(substitution)) = (
                    single_text(&input),
                    text_arg(pattern, &input),
                    text_arg(substitution, &input),
                ) else {
                    return Vec::new();
                };
                self.regexes
                    .get(&pattern)
                    .map(|regex| {
                        vec![Item::String(
                            regex.replace_all(&text, substitution.as_str()).into_owned(),
                        )]
                    })
                    .unwrap_or_default()
            }
            Function::Substring(start, length) => {
                let number = |arg: &Expr| match self.eval(arg, &input, this).as_slice() {
                    [Item::Number(n)] if *n >= 0.0 && n.fract() == 0.0 => Some(*n as usize),
                    _ => None,
                };
                let (Some(text), Some(start)) = (single_text(&input), number(start)) else {
                    return Vec::new();
                };
                let chars: Vec<char> = text.chars().collect();
                if start >= chars.len() {
                    return Vec::new();
                }
                let end = match length.as_deref().map(number) {
                    None => chars.len(),
                    Some(Some(length)) => chars.len().min(start.saturating_add(length)),
                    Some(None) => return Vec::new(),
                };
                vec![Item::String(chars[start..end].iter().collect())]
            }
        }
    }

    fn of_type(&self, input: Vec<Item>, type_name: &str) -> Vec<Item> {
        let type_name = type_name
            .strip_prefix("FHIR.")
            .or_else(|| type_name.strip_prefix("System."))
            .unwrap_or(type_name);
        input
            .into_iter()
            .filter(|item| match item {
                Item::Node(n) => self.tree.nodes[*n].type_code == type_name,
                Item::String(_) => type_name.eq_ignore_ascii_case("string"),
                Item::Boolean(_) => type_name.eq_ignore_ascii_case("boolean"),
                Item::Number(_) => type_name.eq_ignore_ascii_case("decimal"),
                Item::Date(_) => type_name.eq_ignore_ascii_case("dateTime"),
            })
            .collect()
    }

    /// The primitive value of an item (an element's value, typed by its FHIR type).
    fn primitive(&self, item: &Item) -> Option<Item> {
        let Item::Node(n) = item else {
            return Some(item.clone());
        };
        let node = &self.tree.nodes[*n];
        let value = node.value.as_ref()?;
        Some(match (node.type_code.as_str(), value) {
            (_, Value::Bool(b)) => Item::Boolean(*b),
            (_, Value::Number(n)) => Item::Number(n.as_f64()?),
            ("date" | "dateTime" | "instant", Value::String(s)) => Item::Date(s.clone()),
            (
                "decimal" | "integer" | "unsignedInt" | "positiveInt" | "integer64",
                Value::String(s),
            ) => Item::Number(s.parse().ok()?),
            (_, Value::String(s)) => Item::String(s.clone()),
            _ => return None,
        })
    }

    /// FHIRPath's singleton evaluation of a collection as a boolean.
    fn truth(&self, items: &[Item]) -> Option<bool> {
        match items {
            [] => None,
            [item] => match self.primitive(item) {
                Some(Item::Boolean(b)) => Some(b),
                _ => Some(true),
            },
            _ => Some(true),
        }
    }

    fn binary(&self, op: BinaryOp, left: Vec<Item>, right: Vec<Item>) -> Vec<Item> {
        let boolean = |b: Option<bool>| b.map(|b| vec![Item::Boolean(b)]).unwrap_or_default();
        match op {
            BinaryOp::Union => {
                let mut out = left;
                for item in right {
                    if !out.contains(&item) {
                        out.push(item);
                    }
                }
                out
            }
            BinaryOp::And => boolean(match (self.truth(&left), self.truth(&right)) {
                (Some(false), _) | (_, Some(false)) => Some(false),
                (Some(true), Some(true)) => Some(true),
                _ => None,
            }),
            BinaryOp::Or => boolean(match (self.truth(&left), self.truth(&right)) {
                (Some(true), _) | (_, Some(true)) => Some(true),
                (Some(false), Some(false)) => Some(false),
                _ => None,
            }),
            BinaryOp::Xor => boolean(match (self.truth(&left), self.truth(&right)) {
                (Some(a), Some(b)) => Some(a != b),
                _ => None,
            }),
            BinaryOp::Equal | BinaryOp::NotEqual => {
                let equal = self.equal(&left, &right);
                boolean(if op == BinaryOp::Equal {
                    equal
                } else {
                    equal.map(|e| !e)
                })
            }
            BinaryOp::Less
            | BinaryOp::LessOrEqual
            | BinaryOp::Greater
            | BinaryOp::GreaterOrEqual => {
                let ordering = match (left.as_slice(), right.as_slice()) {
                    ([a], [b]) => self.compare(a, b),
                    _ => None,
                };
                boolean(ordering.map(|o| match op {
                    BinaryOp::Less => o == Ordering::Less,
                    BinaryOp::LessOrEqual => o != Ordering::Greater,
                    BinaryOp::Greater => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinaryOp::In | BinaryOp::Contains => {
                let (element, collection) = if op == BinaryOp::In {
                    (left, right)
                } else {
                    (right, left)
                };
                match element.as_slice() {
                    [] => Vec::new(),
                    [one] => boolean(Some(collection.iter().any(|c| {
                        self.equal(std::slice::from_ref(one), std::slice::from_ref(c)) == Some(true)
                    }))),
                    _ => Vec::new(),
                }
            }
            BinaryOp::Concatenate => {
                let text = |items: &[Item]| match items {
                    [] => Some(String::new()),
                    [item] => self.primitive(item).and_then(|p| p.to_text()),
                    _ => None,
                };
                match (text(&left), text(&right)) {
                    (Some(a), Some(b)) => vec![Item::String(a + &b)],
                    _ => Vec::new(),
                }
            }
            _ => self.arithmetic(op, &left, &right),
        }
    }

    fn arithmetic(&self, op: BinaryOp, left: &[Item], right: &[Item]) -> Vec<Item> {
        let ([a], [b]) = (left, right) else {
            return Vec::new();
        };
        match (self.primitive(a), self.primitive(b), op) {
            (Some(Item::String(a)), Some(Item::String(b)), BinaryOp::Add) => {
                vec![Item::String(a + &b)]
            }
            (Some(Item::Number(a)), Some(Item::Number(b)), op) => {
                let result = match op {
                    BinaryOp::Add => a + b,
                    BinaryOp::Subtract => a - b,
                    BinaryOp::Multiply => a * b,
                    BinaryOp::Divide if b != 0.0 => a / b,
                    BinaryOp::Div if b != 0.0 => (a / b).trunc(),
                    BinaryOp::Mod if b != 0.0 => a % b,
                    _ => return Vec::new(),
                };
                vec![Item::Number(result)]
            }
            _ => Vec::new(),
        }
    }

    fn equal(&self, left: &[Item], right: &[Item]) -> Option<bool> {
        if left.is_empty() || right.is_empty() {
            return None;
        }
        if left.len() != right.len() {
            return Some(false);
        }
        let mut all = Some(true);
        for (a, b) in left.iter().zip(right) {
            let (Some(pa), Some(pb)) = (self.primitive(a), self.primitive(b)) else {
                // Complex elements are equal only when they are the same element.
                if a != b {
                    return Some(false);
                }
                continue;
            };
            match (&pa, &pb) {
                (Item::Boolean(x), Item::Boolean(y)) if x != y => return Some(false),
                (Item::Boolean(_), Item::Boolean(_)) => {}
                _ => match self.compare(&pa, &pb) {
                    Some(Ordering::Equal) => {}
                    Some(_) => return Some(false),
                    None if matches!((&pa, &pb), (Item::Date(_), Item::Date(_))) => all = None,
                    None => return Some(false),
                },
            }
        }
        all
    }

    fn compare(&self, a: &Item, b: &Item) -> Option<Ordering> {
        match (self.primitive(a)?, self.primitive(b)?) {
            (Item::Number(x), Item::Number(y)) => x.partial_cmp(&y),
            (Item::String(x), Item::String(y)) => Some(x.cmp(&y)),
            (Item::Date(x), Item::Date(y))
            | (Item::Date(x), Item::String(y))
            | (Item::String(x), Item::Date(y)) => compare_dates(&x, &y),
            _ => None,
        }
    }
}

/// The parts of a FHIR date or dateTime: year, month, day, hour, minute, then seconds (as
/// milliseconds) and the zone offset in minutes.
#[derive(Debug)]
struct DateParts {
    parts: Vec<i64>,
    offset_minutes: Option<i64>,
}

fn date_parts(text: &str) -> Option<DateParts> {
    let (date, time) = match text.split_once('T') {
        Some((date, time)) => (date, Some(time)),
        None => (text, None),
    };
    // Bounded parts keep the arithmetic below from overflowing on hostile text.
    let bounded = |text: &str, max: i64| {
        let digits =
            !text.is_empty() && text.len() <= 4 && text.bytes().all(|b| b.is_ascii_digit());
        digits
            .then(|| text.parse::<i64>().ok())
            .flatten()
            .filter(|v| *v <= max)
    };
    let mut parts: Vec<i64> = date
        .split('-')
        .zip([9999, 12, 31])
        .map(|(p, max)| bounded(p, max))
        .collect::<Option<_>>()?;
    if date.split('-').count() > 3 || (time.is_some() && parts.len() != 3) {
        return None;
    }
    let mut offset_minutes = None;
    if let Some(time) = time.filter(|t| !t.is_empty()) {
        let (clock, zone) = match time.find(['Z', '+', '-']) {
            Some(at) => time.split_at(at),
            None => (time, ""),
        };
        let mut fields = clock.split(':');
        for max in [24, 59] {
            if let Some(field) = fields.next() {
                parts.push(bounded(field, max)?);
            }
        }
        if let Some(seconds) = fields.next() {
            let seconds: f64 = seconds.parse().ok().filter(|s| (0.0..61.0).contains(s))?;
            parts.push((seconds * 1000.0).round() as i64);
        }
        offset_minutes = match zone {
            "" => None,
            "Z" => Some(0),
            zone => {
                let sign = if zone.starts_with('-') { -1 } else { 1 };
                let (h, m) = zone.get(1..)?.split_once(':')?;
                Some(sign * (bounded(h, 14)? * 60 + bounded(m, 59)?))
            }
        };
    }
    Some(DateParts {
        parts,
        offset_minutes,
    })
}

/// Compares two dates as FHIRPath does: part by part down to the coarser precision, and no
/// answer when they agree that far but one is more precise. Times with zones are compared
/// in UTC.
pub(super) fn compare_dates(a: &str, b: &str) -> Option<Ordering> {
    let (a, b) = (date_parts(a)?, date_parts(b)?);
    let (a, b) = if a.parts.len() >= 5 && b.parts.len() >= 5 {
        (in_utc(a)?, in_utc(b)?)
    } else {
        (a.parts, b.parts)
    };
    for (x, y) in a.iter().zip(&b) {
        match x.cmp(y) {
            Ordering::Equal => {}
            other => return Some(other),
        }
    }
    (a.len() == b.len()).then_some(Ordering::Equal)
}

/// The parts of a time with minutes moved to UTC: `[minutes since the epoch, milliseconds]`.
fn in_utc(date: DateParts) -> Option<Vec<i64>> {
    let parts = date.parts;
    let month = Month::try_from(u8::try_from(parts[1]).ok()?).ok()?;
    let day = Date::from_calendar_date(
        i32::try_from(parts[0]).ok()?,
        month,
        u8::try_from(parts[2]).ok()?,
    )
    .ok()?;
    let minutes = i64::from(day.to_julian_day()) * 1440 + parts[3] * 60 + parts[4]
        - date.offset_minutes.unwrap_or(0);
    let mut out = vec![minutes];
    out.extend(&parts[5..]);
    Some(out)
}
