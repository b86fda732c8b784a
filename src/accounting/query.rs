//! The query strings of the two views, parsed strictly: each parameter once, known names
//! only, dates through the one date parser, page sizes clamped to the configured limits.

use std::collections::BTreeMap;

use crate::config::Limits;
use crate::error::DomainError;
use crate::ids::PatientId;
use crate::records::dates::{self, DateError};
use crate::records::validate::printable;

/// How the access log is wanted, when the query says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// JSON.
    Json,
    /// CSV (RFC 4180).
    Csv,
}

/// A query of the access log (`since`, `until`, `recipient`, `_count`, `before`, `format`).
#[derive(Debug, Default)]
pub struct LogQuery {
    /// Recorded at or after (micros).
    pub since: Option<i64>,
    /// Recorded at or before (micros, inclusive).
    pub until: Option<i64>,
    /// Only disclosures to this client.
    pub recipient: Option<String>,
    /// Page size, within the configured limits.
    pub count: usize,
    /// Keyset paging: entries below this sequence.
    pub before: Option<i64>,
    /// The format asked for in the query; the `Accept` header decides otherwise.
    pub format: Option<Format>,
    /// The parameters to repeat in a `next` link.
    pub echo: Vec<(&'static str, String)>,
}

/// A search of AuditEvents (`patient`, `agent`, `date`, `_count`, `_cursor`).
#[derive(Debug, Default)]
pub struct EventQuery {
    /// Only entries about this patient.
    pub patient: Option<PatientId>,
    /// Only entries by this client.
    pub agent: Option<String>,
    /// Recorded at or after (micros).
    pub since: Option<i64>,
    /// Recorded at or before (micros, inclusive).
    pub until: Option<i64>,
    /// Page size, within the configured limits.
    pub count: usize,
    /// Keyset paging: entries below this sequence.
    pub before: Option<i64>,
    /// The parameters to repeat in `self` and `next` links.
    pub echo: Vec<(&'static str, String)>,
}

fn bad_query(code: &'static str, message: impl Into<String>) -> DomainError {
    DomainError::invalid(code, message)
}

/// Each parameter at most once, so a request means one thing.
fn single_params(raw: &str) -> Result<BTreeMap<String, String>, DomainError> {
    let mut params = BTreeMap::new();
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let name = name.into_owned();
        if params.insert(name.clone(), value.into_owned()).is_some() {
            return Err(bad_query(
                "repeated_parameter",
                format!("the parameter `{}` may appear once", printable(&name, 40)),
            ));
        }
    }
    Ok(params)
}

fn page_size(value: &str, limits: &Limits) -> Option<usize> {
    let n: usize = value.parse().ok()?;
    Some(n.clamp(1, limits.max_page_size))
}

/// A log sequence number as a paging token: digits only.
pub(super) fn cursor(value: &str) -> Option<i64> {
    value
        .parse::<i64>()
        .ok()
        .filter(|n| *n >= 0 && value.bytes().all(|b| b.is_ascii_digit()))
}

fn is_token(value: &str) -> bool {
    (1..=256).contains(&value.len()) && !value.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Parses the access log's query string.
pub fn parse_log_query(raw: &str, limits: &Limits) -> Result<LogQuery, DomainError> {
    let params = single_params(raw)?;
    let mut q = LogQuery {
        count: limits.default_page_size,
        ..LogQuery::default()
    };
    for (name, value) in params {
        match name.as_str() {
            "since" | "until" => {
                let (start, end) = dates::parse(&value).map_err(|e| match e {
                    DateError::Malformed => bad_query(
                        "invalid_date",
                        "`since` and `until` must be FHIR dates or dateTimes",
                    ),
                    DateError::OutOfRange => bad_query(e.code(), e.to_string()),
                })?;
                if name == "since" {
                    q.since = Some(start);
                    q.echo.push(("since", value));
                } else {
                    q.until = Some(end);
                    q.echo.push(("until", value));
                }
            }
            "recipient" => {
                if !is_token(&value) {
                    return Err(bad_query(
                        "invalid_recipient",
                        "`recipient` must be a client id",
                    ));
                }
                q.recipient = Some(value.clone());
                q.echo.push(("recipient", value));
            }
            "_count" => {
                q.count = page_size(&value, limits)
                    .ok_or_else(|| bad_query("invalid_count", "`_count` must be a whole number"))?;
            }
            "before" => {
                q.before = Some(cursor(&value).ok_or_else(|| {
                    bad_query("invalid_cursor", "`before` must be a log sequence number")
                })?);
            }
            "format" | "_format" => {
                q.format = Some(match value.as_str() {
                    "json" | "application/json" => Format::Json,
                    "csv" | "text/csv" => Format::Csv,
                    _ => {
                        return Err(bad_query(
                            "unsupported_format",
                            "`format` is `json` or `csv`",
                        ));
                    }
                });
                q.echo.push(("format", value));
            }
            other => {
                return Err(bad_query(
                    "unknown_parameter",
                    format!(
                        "the parameter `{}` is not supported here",
                        printable(other, 40)
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// Parses the query string of an AuditEvent search.
pub fn parse_event_query(raw: &str, limits: &Limits) -> Result<EventQuery, DomainError> {
    let mut q = EventQuery {
        count: limits.default_page_size,
        ..EventQuery::default()
    };
    let bad = |message: &str| bad_query("invalid_search_value", message.to_string());
    for (name, value) in form_urlencoded::parse(raw.as_bytes()) {
        let (name, value) = (name.into_owned(), value.into_owned());
        match name.as_str() {
            "patient" => {
                let id = PatientId::parse(value.strip_prefix("Patient/").unwrap_or(&value));
                let (Ok(id), None) = (id, &q.patient) else {
                    return Err(bad("`patient` must be one patient id or Patient reference"));
                };
                q.patient = Some(id);
                q.echo.push(("patient", value));
            }
            "agent" => {
                if !is_token(&value) || q.agent.is_some() {
                    return Err(bad("`agent` must be one client id"));
                }
                q.agent = Some(value.clone());
                q.echo.push(("agent", value));
            }
            "date" => {
                let (since, until) = date_bound(&value)?;
                q.since = q.since.max(since);
                q.until = match (q.until, until) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
                q.echo.push(("date", value));
            }
            "_count" => {
                q.count = page_size(&value, limits)
                    .ok_or_else(|| bad("`_count` must be a whole number"))?;
            }
            "_cursor" => {
                q.before = Some(
                    cursor(&value)
                        .ok_or_else(|| bad("`_cursor` is not a paging token of this server"))?,
                );
            }
            "_format" if value.contains("json") => {}
            other => {
                return Err(bad_query(
                    "unsupported_search_parameter",
                    format!(
                        "search parameter `{}` is not supported on AuditEvent",
                        printable(other, 40)
                    ),
                ));
            }
        }
    }
    Ok(q)
}

/// `[since, until]` (inclusive micros) of one `date` value with FHIR's prefixes.
pub fn date_bound(value: &str) -> Result<(Option<i64>, Option<i64>), DomainError> {
    let (prefix, date) = match value.get(..2) {
        Some(p) if p.bytes().all(|b| b.is_ascii_lowercase()) => (p, &value[2..]),
        _ => ("eq", value),
    };
    let (start, end) = dates::parse(date).map_err(|e| match e {
        DateError::Malformed => bad_query(
            "invalid_search_value",
            "`date` must be a FHIR date or dateTime, optionally after eq, ge, gt, le or lt",
        ),
        DateError::OutOfRange => bad_query(e.code(), e.to_string()),
    })?;
    Ok(match prefix {
        "eq" => (Some(start), Some(end)),
        "ge" => (Some(start), None),
        "gt" => (Some(end + 1), None),
        "le" => (None, Some(end)),
        "lt" => (None, Some(start - 1)),
        _ => {
            return Err(bad_query(
                "unsupported_search_value",
                "on AuditEvent.date only the prefixes eq, ge, gt, le and lt are supported",
            ));
        }
    })
}

/// `echo` with the page size and, when paging on, the cursor.
pub(super) fn with_count(
    echo: &[(&'static str, String)],
    count: usize,
    cursor: Option<i64>,
) -> Vec<(&'static str, String)> {
    let mut params = echo.to_vec();
    params.push(("_count", count.to_string()));
    if let Some(c) = cursor {
        params.push(("_cursor", c.to_string()));
    }
    params
}

/// A URL on this gateway with a query string.
pub(super) fn url_with(base: &str, path: &str, params: &[(&str, String)]) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    for (k, v) in params {
        query.append_pair(k, v);
    }
    let query = query.finish();
    if query.is_empty() {
        format!("{base}{path}")
    } else {
        format!("{base}{path}?{query}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> Limits {
        crate::config::Settings::load_from(None, Vec::<(String, String)>::new())
            .unwrap()
            .limits
    }

    #[test]
    fn date_prefixes_become_bounds() {
        let (start, end) = dates::parse_range("2026-01").unwrap();
        let cases = [
            ("2026-01", (Some(start), Some(end))),
            ("eq2026-01", (Some(start), Some(end))),
            ("ge2026-01", (Some(start), None)),
            ("gt2026-01", (Some(end + 1), None)),
            ("le2026-01", (None, Some(end))),
            ("lt2026-01", (None, Some(start - 1))),
        ];
        for (value, want) in cases {
            assert_eq!(date_bound(value).unwrap(), want, "{value}");
        }
        for bad in ["ne2026", "sa2026", "yesterday", "ge"] {
            assert!(date_bound(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn access_log_queries_are_strict() {
        let limits = limits();
        let q = parse_log_query(
            "since=2026-01&until=2026-02-03&recipient=c1&_count=5000&before=9",
            &limits,
        )
        .unwrap();
        assert_eq!(q.count, limits.max_page_size);
        assert_eq!(q.before, Some(9));
        assert_eq!(q.since, Some(dates::parse_range("2026-01").unwrap().0));
        assert_eq!(q.until, Some(dates::parse_range("2026-02-03").unwrap().1));
        for (raw, code) in [
            ("since=yesterday", "invalid_date"),
            ("_count=x", "invalid_count"),
            ("before=-1", "invalid_cursor"),
            ("before=1e3", "invalid_cursor"),
            ("format=xml", "unsupported_format"),
            ("recipient=a%20b", "invalid_recipient"),
            ("since=2026&since=2027", "repeated_parameter"),
            ("nope=1", "unknown_parameter"),
        ] {
            let e = parse_log_query(raw, &limits).unwrap_err();
            assert_eq!(e.code, code, "{raw}");
        }
    }

    #[test]
    fn access_log_format_and_echo() {
        let q = parse_log_query("format=csv&recipient=c1", &limits()).unwrap();
        assert_eq!(q.format, Some(Format::Csv));
        assert_eq!(
            q.echo,
            [
                ("format", "csv".to_string()),
                ("recipient", "c1".to_string())
            ]
        );
        assert_eq!(parse_log_query("", &limits()).unwrap().format, None);
    }

    #[test]
    fn event_searches_narrow_and_refuse() {
        let limits = limits();
        let q = parse_event_query(
            "patient=Patient/p1&agent=c1&date=ge2026-01&date=lt2026-03&_count=3&_cursor=40",
            &limits,
        )
        .unwrap();
        assert_eq!(q.patient.as_ref().map(PatientId::as_str), Some("p1"));
        assert_eq!(q.agent.as_deref(), Some("c1"));
        assert_eq!(q.since, Some(dates::parse_range("2026-01").unwrap().0));
        assert_eq!(q.until, Some(dates::parse_range("2026-03").unwrap().0 - 1));
        assert_eq!((q.count, q.before), (3, Some(40)));
        assert!(parse_event_query("_format=json", &limits).is_ok());
        for (raw, code) in [
            ("patient=a/b", "invalid_search_value"),
            ("patient=p1&patient=p2", "invalid_search_value"),
            ("agent=a%20b", "invalid_search_value"),
            ("agent=a&agent=b", "invalid_search_value"),
            ("date=ne2026", "unsupported_search_value"),
            ("_cursor=x", "invalid_search_value"),
            ("_format=xml", "unsupported_search_parameter"),
            ("outcome=0", "unsupported_search_parameter"),
        ] {
            let e = parse_event_query(raw, &limits).unwrap_err();
            assert_eq!(e.code, code, "{raw}");
        }
    }

    #[test]
    fn links_repeat_the_query() {
        let params = with_count(&[("agent", "c 1".to_string())], 5, Some(9));
        assert_eq!(
            url_with("https://gw", "/fhir/AuditEvent", &params),
            "https://gw/fhir/AuditEvent?agent=c+1&_count=5&_cursor=9"
        );
        assert_eq!(url_with("https://gw", "/x", &[]), "https://gw/x");
    }
}
