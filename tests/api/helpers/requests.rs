//! Requests with a bearer token other than the operator's (a patient's, a client's), and the
//! checks on their answers.

use reqwest::{Method, RequestBuilder};
use serde_json::{Value, json};

use super::{TestApp, decode, json_or_text};

/// A request as `token`'s bearer to `path` on this gateway, or to a full `https://` URL (a
/// `next` link, a status URL).
pub fn request(app: &TestApp, token: &str, method: Method, path: &str) -> RequestBuilder {
    let url = if path.starts_with("https://") {
        path.to_string()
    } else {
        app.url(path)
    };
    app.client.request(method, url).bearer_auth(token)
}

/// A request with an optional JSON body (`application/json`); the status and the body
/// (JSON, or the text as a JSON string).
pub async fn call(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let answer = call_full(app, token, method, path, body).await;
    (answer.status, answer.body)
}

/// A GET as `token`'s bearer: status and body.
pub async fn get_as(app: &TestApp, token: &str, path: &str) -> (u16, Value) {
    call(app, token, Method::GET, path, None).await
}

/// What the gateway answered, all of it.
#[derive(Debug)]
pub struct Answer {
    /// The HTTP status.
    pub status: u16,
    /// The `content-type` header (empty when absent).
    pub media: String,
    /// The body as sent.
    pub bytes: Vec<u8>,
    /// The body as JSON (`Null` when empty, a JSON string when it is not JSON).
    pub body: Value,
}

/// As [`call`], with the media type and the raw body too.
pub async fn call_full(
    app: &TestApp,
    token: &str,
    method: Method,
    path: &str,
    body: Option<&Value>,
) -> Answer {
    let mut req = request(app, token, method, path);
    if let Some(b) = body {
        req = req.json(b);
    }
    send_full(req).await
}

/// Sends `req` (built with [`request`] and whatever headers the test needs): all of the answer.
pub async fn send_full(req: RequestBuilder) -> Answer {
    let resp = req.send().await.expect("the request is answered");
    let status = resp.status().as_u16();
    let media = resp
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let bytes = resp.bytes().await.expect("the body arrives").to_vec();
    let body = json_or_text(&bytes);
    Answer {
        status,
        media,
        bytes,
        body,
    }
}

/// Asserts a problem+json answer (`/api/v1`) with this status and stable code.
pub fn assert_problem(answer: &Answer, status: u16, code: &str) {
    assert_eq!(
        (answer.status, answer.body["code"].as_str()),
        (status, Some(code)),
        "{}",
        answer.body
    );
    assert_eq!(answer.media, "application/problem+json", "{}", answer.body);
}

impl TestApp {
    /// A request as `token`'s bearer with a FHIR JSON body (`application/fhir+json`).
    pub async fn send_as(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> (u16, Value) {
        let mut req = request(self, token, method, path);
        if let Some(body) = body {
            req = req
                .header("content-type", "application/fhir+json")
                .body(body.to_string());
        }
        decode(req.send().await.expect("the request is answered")).await
    }

    /// Every page of a search as `token`'s bearer, following `next` links.
    pub async fn search_pages_as(&self, token: &str, path: &str) -> Vec<Value> {
        let mut pages = Vec::new();
        let mut next = Some(self.url(path));
        while let Some(url) = next.take() {
            assert!(pages.len() < 10_000, "paging does not end");
            let (status, bundle) = call(self, token, Method::GET, &url, None).await;
            assert_eq!(status, 200, "{url}: {bundle}");
            next = bundle["link"]
                .as_array()
                .into_iter()
                .flatten()
                .find(|l| l["relation"] == "next")
                .and_then(|l| l["url"].as_str())
                .map(str::to_string);
            pages.push(bundle);
        }
        pages
    }
}

/// The resources of the entries of search pages, in order.
pub fn resources_of(pages: &[Value]) -> Vec<Value> {
    pages
        .iter()
        .flat_map(|bundle| bundle["entry"].as_array().into_iter().flatten())
        .map(|e| e["resource"].clone())
        .collect()
}

/// Asks the decisions API (as the operator) about a stored resource of patient `pat`;
/// returns (decision, obligations, whole answer).
pub async fn ask_decision(
    app: &TestApp,
    client: &str,
    purpose: &str,
    resource: &str,
    justification: Option<&str>,
) -> (String, Vec<String>, Value) {
    let mut body = json!({"client_id": client, "purpose": purpose, "patient": "pat", "resource": {"reference": resource}});
    if let Some(j) = justification {
        body["justification"] = json!(j);
    }
    let (status, answer) = app.post_json("/api/v1/decisions", &body).await;
    assert_eq!(status, 200, "{answer}");
    let obligations = answer["obligations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o.as_str().unwrap().to_string())
        .collect();
    (
        answer["decision"].as_str().unwrap().to_string(),
        obligations,
        answer,
    )
}
