//! "Share my summary" on the patient page, as a browser without JavaScript drives it: the
//! link and its QR code shown once (inline SVG under the page's strict policy), CSRF on every
//! form, the link opening for a receiver and that opening under Who looked, deactivation.
//! Both backends.

use reqwest::Method;
use serde_json::json;

use crate::both_backends;
use crate::helpers::{Backend, load_records, spawn_app};
use crate::share_links::{gone, open, payload};
use crate::web::{Browser, assert_secure_headers};

async fn the_page_shows_a_new_link_once_and_deactivates_it(backend: Backend) {
    let Some(app) = spawn_app(backend).await else {
        return;
    };
    load_records(&app).await;
    let mut browser = Browser::new(&app);
    browser.sign_in("pat").await;
    let empty = browser.get("/summary-links").await;
    assert_eq!(empty.status, 200, "{}", empty.body);
    assert_secure_headers(&empty);
    assert!(empty.body.contains("You have no links to your summary."));
    assert!(
        empty
            .body
            .contains("aria-current=\"page\">Share my summary")
    );
    let csrf = empty.hidden("csrf");
    let choices = [
        ("csrf", csrf.as_str()),
        ("label", "Trip to Lisbon"),
        ("passcode", "1357"),
        ("days", "7"),
        ("uses", "2"),
    ];
    let forged = browser.post("/summary-links", &choices[1..]).await;
    assert_eq!(forged.status, 403, "{}", forged.body);

    // Made: the link and its QR code, inline SVG under the same strict policy.
    let made = browser.post("/summary-links", &choices).await;
    assert_eq!(made.status, 200, "{}", made.body);
    assert_secure_headers(&made);
    let svg_at = made.body.find("<svg").expect("the QR code is on the page");
    let svg = &made.body[svg_at..made.body[svg_at..].find("</svg>").unwrap() + svg_at];
    assert!(!svg.contains("script") && !svg.contains("style="), "{svg}");
    let start = made.body.find("shlink:/").expect("the link is on the page");
    let end = made.body[start..].find('<').unwrap() + start;
    let link = made.body[start..end].trim().to_string();
    let p = payload(&link);
    assert_eq!(
        (&p["label"], &p["flag"]),
        (&json!("Trip to Lisbon"), &json!("P"))
    );
    assert!(
        made.body
            .contains("for 2 openings, with the passcode you chose.")
    );

    // Shown once: the list has the link, not its key.
    let listed = browser.get("/summary-links").await;
    assert!(!listed.body.contains("shlink:/") && !listed.body.contains("<svg"));
    assert!(listed.body.contains("Trip to Lisbon") && listed.body.contains("Opened 0 times of 2"));
    let url = p["url"].as_str().unwrap();
    let opened = open(
        &app,
        Method::POST,
        url,
        Some(json!({"recipient": "Clínica Lisboa", "passcode": "1357"})),
    )
    .await;
    assert_eq!(opened.status, 200, "{}", opened.body);
    let looked = browser.get("/looked").await;
    assert!(
        looked
            .body
            .contains("“Clínica Lisboa”, through a link to your health summary"),
        "{}",
        looked.body
    );

    // Deactivate, with the form's CSRF token; the next fetch is 404.
    let marker = "action=\"/summary-links/";
    let at = listed.body.find(marker).unwrap() + marker.len();
    let action = format!(
        "/summary-links/{}",
        &listed.body[at..listed.body[at..].find('"').unwrap() + at]
    );
    assert_eq!(browser.post(&action, &[]).await.status, 403);
    let done = browser.post(&action, &[("csrf", csrf.as_str())]).await;
    assert_eq!(
        (done.status, done.location()),
        (303, "/summary-links".to_string())
    );
    gone(
        &open(
            &app,
            Method::POST,
            url,
            Some(json!({"recipient": "x", "passcode": "1357"})),
        )
        .await,
    );
    let after = browser.get("/summary-links").await;
    assert!(after.body.contains("deactivated") && !after.body.contains(&action));
}

both_backends!(the_page_shows_a_new_link_once_and_deactivates_it);
