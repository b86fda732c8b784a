//! The OpenAPI document against the routes the application really mounts.
//!
//! The routes are not a list kept here: [`mounted_routes`] builds an actix app with
//! [`api::routes`] (what `startup` mounts), reads actix's own resource tree from it, and asks
//! the router which methods each resource answers. A route added without a document entry,
//! or a document entry without a route, fails [`document_covers_every_route`].

use std::collections::BTreeSet;

use actix_web::http::Method;
use actix_web::{App, test};
use consentgate::api;
use serde_json::Value;

use crate::both_backends;
use crate::helpers::{Backend, spawn_app};

/// A route: method and path, with path parameters written `{name}` (no regex).
type Route = (String, String);

/// A value of Rust's `Debug` notation, enough of it to read actix's `ResourceMap`.
#[derive(Debug)]
enum Debugged {
    /// `Name { field: value, .. }`.
    Struct(String, Vec<(String, Debugged)>),
    /// `Name(value, ..)`, `[value, ..]` (empty name) or `{key: value, ..}` (as pairs).
    Tuple(String, Vec<Debugged>),
    /// A string literal.
    Text(String),
    /// A number, `true`, `None`, `(Weak)`, ...: nothing this test reads.
    Atom,
}

struct Reader<'a> {
    text: &'a [u8],
    at: usize,
}

impl Reader<'_> {
    fn skip_space(&mut self) {
        while self.at < self.text.len() && self.text[self.at].is_ascii_whitespace() {
            self.at += 1;
        }
    }

    fn peek(&mut self) -> u8 {
        self.skip_space();
        self.text.get(self.at).copied().unwrap_or(0)
    }

    fn eat(&mut self, c: u8) -> bool {
        if self.peek() == c {
            self.at += 1;
            true
        } else {
            false
        }
    }

    fn word(&mut self) -> String {
        self.skip_space();
        let start = self.at;
        while self.at < self.text.len()
            && (self.text[self.at].is_ascii_alphanumeric() || b"_.-".contains(&self.text[self.at]))
        {
            self.at += 1;
        }
        String::from_utf8_lossy(&self.text[start..self.at]).into_owned()
    }

    fn string(&mut self) -> String {
        assert!(self.eat(b'"'));
        let mut out = String::new();
        loop {
            let c = self.text[self.at];
            self.at += 1;
            match c {
                b'"' => return out,
                b'\\' => {
                    out.push(self.text[self.at] as char);
                    self.at += 1;
                }
                _ => out.push(c as char),
            }
        }
    }

    fn list(&mut self, close: u8) -> Vec<Debugged> {
        let mut items = Vec::new();
        while !self.eat(close) {
            items.push(self.value());
            if self.peek() == b':' {
                // A map entry: keep the value, the key is of no use here.
                self.at += 1;
                items.pop();
                items.push(self.value());
            }
            self.eat(b',');
        }
        items
    }

    fn value(&mut self) -> Debugged {
        match self.peek() {
            b'"' => Debugged::Text(self.string()),
            b'[' => {
                self.at += 1;
                Debugged::Tuple(String::new(), self.list(b']'))
            }
            b'{' => {
                self.at += 1;
                Debugged::Tuple(String::new(), self.list(b'}'))
            }
            b'(' => {
                self.at += 1;
                Debugged::Tuple(String::new(), self.list(b')'))
            }
            _ => {
                let name = self.word();
                assert!(
                    !name.is_empty(),
                    "unreadable Debug output at byte {}",
                    self.at
                );
                if self.eat(b'(') {
                    Debugged::Tuple(name, self.list(b')'))
                } else if self.eat(b'{') {
                    let mut fields = Vec::new();
                    while !self.eat(b'}') {
                        let field = self.word();
                        assert!(self.eat(b':'), "a field name is followed by a colon");
                        fields.push((field, self.value()));
                        self.eat(b',');
                    }
                    Debugged::Struct(name, fields)
                } else {
                    Debugged::Atom
                }
            }
        }
    }
}

impl Debugged {
    fn field(&self, name: &str) -> &Debugged {
        match self {
            Debugged::Struct(_, fields) => fields
                .iter()
                .find(|(f, _)| f == name)
                .map(|(_, v)| v)
                .unwrap_or_else(|| panic!("no field {name} in {self:?}")),
            _ => panic!("{self:?} is not a struct"),
        }
    }
}

/// The full patterns of the leaf resources under one `ResourceMap` node.
fn leaf_patterns(node: &Debugged, prefix: &str, out: &mut Vec<String>) {
    assert!(
        matches!(node, Debugged::Struct(name, _) if name == "ResourceMap"),
        "not a resource map node: {node:?}"
    );
    let pattern = match node.field("pattern").field("patterns") {
        Debugged::Tuple(kind, items) if kind == "Single" => match &items[..] {
            [Debugged::Text(p)] => p.clone(),
            other => panic!("unexpected pattern {other:?}"),
        },
        other => panic!("resource with several patterns: {other:?}"),
    };
    let full = format!("{prefix}{pattern}");
    match node.field("nodes") {
        Debugged::Tuple(some, children) if some == "Some" => match &children[..] {
            [Debugged::Tuple(_, children)] => {
                for child in children {
                    leaf_patterns(child, &full, out);
                }
            }
            other => panic!("unexpected children {other:?}"),
        },
        _ => out.push(full),
    }
}

/// `{id:\d+}` becomes `{id}`, as OpenAPI writes a path parameter.
fn without_regex(pattern: &str) -> String {
    let mut out = String::new();
    let mut in_param = false;
    let mut skipping = false;
    for c in pattern.chars() {
        match c {
            '{' if !in_param => in_param = true,
            '}' if in_param => {
                in_param = false;
                skipping = false;
            }
            ':' if in_param => {
                skipping = true;
                continue;
            }
            _ if skipping => continue,
            _ => {}
        }
        out.push(c);
    }
    out
}

/// A concrete path the pattern matches: every parameter `1` (which `\d+` also takes).
fn sample(pattern: &str) -> String {
    let mut out = String::new();
    let mut depth = 0;
    for c in without_regex(pattern).chars() {
        match c {
            '{' => {
                depth += 1;
                out.push('1');
            }
            '}' => depth -= 1,
            _ if depth > 0 => {}
            _ => out.push(c),
        }
    }
    out
}

/// The names of a pattern's parameters, in order.
fn parameters(pattern: &str) -> Vec<String> {
    without_regex(pattern)
        .split('{')
        .skip(1)
        .filter_map(|rest| rest.split_once('}').map(|(name, _)| name.to_string()))
        .collect()
}

/// Every route of the application, enumerated from actix's resource tree and router.
async fn mounted_routes() -> BTreeSet<Route> {
    let app = test::init_service(App::new().configure(api::routes)).await;
    let res = test::call_service(&app, test::TestRequest::get().uri("/").to_request()).await;
    let tree = format!("{:?}", res.request().resource_map());
    let root = Reader {
        text: tree.as_bytes(),
        at: 0,
    }
    .value();
    let mut patterns = Vec::new();
    leaf_patterns(&root, "", &mut patterns);
    assert!(
        patterns.len() > 40,
        "the resource tree was read: {patterns:?}"
    );

    let mut routes = BTreeSet::new();
    for pattern in patterns {
        let mut answered = false;
        for method in [
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::DELETE,
            Method::PATCH,
        ] {
            let req = test::TestRequest::default()
                .method(method.clone())
                .uri(&sample(&pattern))
                .to_request();
            // The handlers run without the gateway's state and fail; what matters is that the
            // router reached one rather than the fallback (`no_such_endpoint`) or a 405.
            let res = test::call_service(&app, req).await;
            let status = res.status().as_u16();
            let captured: Vec<String> = res
                .request()
                .match_info()
                .iter()
                .map(|(name, _)| name.to_string())
                .collect();
            let body = test::read_body(res).await;
            let fallback = String::from_utf8_lossy(&body).contains("no_such_endpoint");
            // A generic route can take the sample path of a literal one (`POST /fhir/{type}`
            // takes `/fhir/metadata`): the parameters the router captured say which it was.
            if status != 405 && !fallback && captured == parameters(&pattern) {
                routes.insert((method.as_str().to_lowercase(), without_regex(&pattern)));
                answered = true;
            }
        }
        assert!(
            answered,
            "no method reached {pattern} at {}",
            sample(&pattern)
        );
    }
    routes
}

/// Every (method, path) the document describes.
fn documented_routes(doc: &Value) -> BTreeSet<Route> {
    let mut routes = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for method in item.as_object().expect("a path item").keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                routes.insert((method.clone(), path.clone()));
            }
        }
    }
    routes
}

/// The document names every route the application mounts, and nothing else; every operation
/// has a unique id, a tag, responses, and the shared Problem schema for `/api/v1` errors.
#[actix_web::test]
async fn document_covers_every_route() {
    let doc = serde_json::to_value(api::openapi::document()).unwrap();
    assert_eq!(doc["openapi"], "3.1.0");
    let mounted = mounted_routes().await;
    let documented = documented_routes(&doc);
    let undocumented: Vec<_> = mounted.difference(&documented).collect();
    assert!(
        undocumented.is_empty(),
        "routes without an OpenAPI entry: {undocumented:?}"
    );
    let phantom: Vec<_> = documented.difference(&mounted).collect();
    assert!(
        phantom.is_empty(),
        "OpenAPI entries without a route: {phantom:?}"
    );

    let mut ids = BTreeSet::new();
    for (method, path) in &documented {
        let op = &doc["paths"][path][method];
        let id = op["operationId"].as_str().unwrap_or_default();
        assert!(ids.insert(id.to_string()), "duplicate operationId {id}");
        assert!(op["tags"][0].is_string(), "{method} {path} has no tag");
        for (status, response) in op["responses"].as_object().unwrap() {
            if !path.starts_with("/api/v1") || !status.starts_with(['4', '5']) {
                continue;
            }
            let schema = &response["content"]["application/problem+json"]["schema"]["$ref"];
            assert_eq!(
                schema, "#/components/schemas/Problem",
                "{method} {path} {status} is not problem+json"
            );
        }
    }
}

/// The served document is the generated one, and a caller needs no token for it.
async fn served_without_token(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    let resp = app
        .client
        .get(app.url("/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let served: Value = resp.json().await.unwrap();
    assert_eq!(
        served,
        serde_json::to_value(api::openapi::document()).unwrap()
    );
    assert_eq!(
        served["components"]["securitySchemes"]["patient"]["scheme"],
        "bearer"
    );
}

both_backends!(served_without_token);
