//! One audit log entry, shaped after IHE Basic Audit Log Patterns (BALP), and the canonical
//! bytes that the Merkle log hashes as its leaf.
//!
//! # Ids only
//!
//! An entry records *who, for what, about whom, what, why and how it ended* as identifiers
//! and codes: client and organisation ids, a `Practitioner/…` reference, purpose-of-use codes,
//! `Type/id` resource references, consent and policy ids. It never holds patient data: no
//! names, values, identifiers such as MRNs, or resource bodies. The log is append-only and
//! shown to third parties as proofs, so anything written here can never be taken back;
//! [`AuditEntry::validate`] enforces the id syntax of every field that has one. The
//! `break_glass` justification and `detail` values are free text and must be written by
//! the gateway (a reason code, a count), never copied from a request.
//!
//! # Canonical bytes
//!
//! [`AuditEntry::canonical_bytes`] is a JSON object in UTF-8 with these members:
//!
//! | key | JSON type | present |
//! | --- | --- | --- |
//! | `action` | string: `read`, `search`, `export`, `disclose`, `decision`, `grant`, `revoke`, `token`, `refusal`, `request`, `approve`, `decline` | always |
//! | `break_glass` | string | only when break-glass access was claimed |
//! | `client_id` | string | always |
//! | `consents` | array of strings, in entry order | always (maybe `[]`) |
//! | `detail` | object, string values | only when non-empty |
//! | `organisation` | string | always |
//! | `outcome` | string: `success`, `denied`, `error` | always |
//! | `patient_id` | string | only when about one patient |
//! | `policies` | array of strings, in entry order | always |
//! | `purpose_of_use` | string | always |
//! | `recorded_micros` | integer: microseconds since 1970-01-01T00:00:00Z | always |
//! | `request_id` | string | always |
//! | `resources` | array of `Type/id` strings, in entry order | always |
//! | `sequence` | integer: the entry's 0-based leaf index in the log | always |
//! | `user` | string | only when a person acted |
//! | `v` | integer `1`: this format's version | always |
//!
//! Serialization rules, which make the bytes the RFC 8785 (JCS) canonical form of the object
//! whenever both integers lie within ±2^53 (until the year 2255 for `recorded_micros`):
//!
//! * no whitespace anywhere; members separated by `,`, keys from values by `:`;
//! * object members (also inside `detail`) sorted by key, comparing keys as sequences of
//!   UTF-16 code units; absent members are omitted, never `null`;
//! * strings in double quotes; `"` and `\` escaped as `\"` and `\\`; U+0008, U+0009, U+000A,
//!   U+000C, U+000D as `\b`, `\t`, `\n`, `\f`, `\r`; other characters below U+0020 as
//!   `\u00xx` with lower-case hex; every other character (including `/`, U+007F and all
//!   non-ASCII) as its own UTF-8 bytes;
//! * integers in decimal, `-` for negatives, no leading zeros, no fraction or exponent.
//!
//! The leaf hash is RFC 9162's `SHA-256(0x00 || canonical bytes)`. For example, this entry
//!
//! ```text
//! {"action":"read","client_id":"clinic-app","consents":["consent-9"],"organisation":"Organization/northside","outcome":"success","patient_id":"pat-1","policies":["baseline-permit"],"purpose_of_use":"TREAT","recorded_micros":1767225600000000,"request_id":"req-0001","resources":["Observation/obs-7","Condition/c-2"],"sequence":42,"user":"Practitioner/dr-lee","v":1}
//! ```
//!
//! has the leaf hash `2b74703f3ba4249a67c5f7670020908bc22580b6608838dc5dc048861cee7342`
//! (checked by this module's tests). The canonical bytes also deserialize back into the
//! entry (the `v` member is ignored), so they can serve as the stored form.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::merkle::{Hash, leaf_hash};

/// The version written as the `v` member of the canonical bytes.
pub const ENTRY_FORMAT_VERSION: u32 = 1;

/// Longest identifier or code accepted in an entry, in characters.
const MAX_TOKEN_CHARS: usize = 256;
/// Longest FHIR id (FHIR R4 `id` datatype).
const MAX_FHIR_ID_CHARS: usize = 64;
/// Longest free-text value (break-glass justification, detail value), in characters.
const MAX_TEXT_CHARS: usize = 1024;

/// What happened, in the words of the gateway's flows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditAction {
    /// A recipient read one resource.
    Read,
    /// A recipient searched; the entry lists what was returned.
    Search,
    /// A bulk export ran for a study or group.
    Export,
    /// A disclosure package was created or fetched.
    Disclose,
    /// A decision was asked for through the decisions API.
    Decision,
    /// A consent was created or widened.
    Grant,
    /// A consent was revoked or narrowed.
    Revoke,
    /// An access token was issued, refused or revoked.
    Token,
    /// A request was refused before any decision (authentication, role or scope).
    Refusal,
    /// A recipient asked the patient for access.
    Request,
    /// The patient approved an access request.
    Approve,
    /// The patient declined an access request.
    Decline,
    /// A step of a request to amend a record (`detail.step`: requested, extended, accepted,
    /// denied, overdue).
    Amend,
    /// A data source wrote records (`resources`: what it stored).
    Write,
}

impl AuditAction {
    /// The code written in the canonical bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Search => "search",
            Self::Export => "export",
            Self::Disclose => "disclose",
            Self::Decision => "decision",
            Self::Grant => "grant",
            Self::Revoke => "revoke",
            Self::Token => "token",
            Self::Refusal => "refusal",
            Self::Request => "request",
            Self::Approve => "approve",
            Self::Decline => "decline",
            Self::Amend => "amend",
            Self::Write => "write",
        }
    }
}

/// How the action ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditOutcome {
    /// Done as asked.
    Success,
    /// Refused by consent, policy or authorization.
    Denied,
    /// Failed for a reason other than a refusal.
    Error,
}

impl AuditOutcome {
    /// The code written in the canonical bytes.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Denied => "denied",
            Self::Error => "error",
        }
    }
}

/// One audited event: who, for what, about whom, what, why, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Position in the log: the 0-based Merkle leaf index, so an entry cannot be moved.
    pub sequence: u64,
    /// When the gateway recorded the event, in microseconds since the Unix epoch (UTC).
    pub recorded_micros: i64,
    /// What happened.
    pub action: AuditAction,
    /// How it ended.
    pub outcome: AuditOutcome,
    /// The registered client that asked (or the patient page's own client id).
    pub client_id: String,
    /// The organisation the client acts for, as an id or `Organization/id`.
    pub organisation: String,
    /// The person at the client when one acted, as a reference such as `Practitioner/id`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// The v3 ActReason purpose-of-use code asked for, such as `TREAT` or `HRESCH`.
    pub purpose_of_use: String,
    /// The FHIR id of the patient the event is about, when it is about one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient_id: Option<String>,
    /// The resources touched, as `Type/id`, in the order they were handled.
    pub resources: Vec<String>,
    /// Ids of the consents that decided.
    pub consents: Vec<String>,
    /// Ids of the institution policies that decided.
    pub policies: Vec<String>,
    /// The justification given for break-the-glass access, when it was claimed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub break_glass: Option<String>,
    /// The id of the HTTP request, to join the entry with operational logs.
    pub request_id: String,
    /// Further facts the gateway wrote (a count, a study id); never patient data.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub detail: BTreeMap<String, String>,
}

/// The client id the gateway writes for a patient acting for themself.
pub const PATIENT_CLIENT: &str = "patient";
/// The client id the gateway writes for an operator.
pub const OPERATOR_CLIENT: &str = "operator";
/// The client id the gateway writes for a delegate acting for a patient (the delegate is the
/// entry's `user`, the patient its `patient_id`).
pub const DELEGATE_CLIENT: &str = "delegate";

/// An organisation name as an audit token (the display name stays in the client registry).
pub fn organisation_token(name: &str) -> String {
    let token: String = name
        .split_whitespace()
        .collect::<Vec<_>>()
        .join("-")
        .chars()
        .filter(|c| !c.is_control())
        .take(200)
        .collect();
    if token.is_empty() {
        "unknown".into()
    } else {
        token
    }
}

impl AuditEntry {
    /// An entry recorded now, with nothing filled in beyond what happened: the caller sets
    /// who (see `auth::Principal::audit_entry`), about whom and what.
    pub fn new(action: AuditAction, outcome: AuditOutcome, request_id: String) -> AuditEntry {
        AuditEntry {
            sequence: 0,
            recorded_micros: crate::fhir_time::now_micros(),
            action,
            outcome,
            client_id: "unknown".into(),
            organisation: "unknown".into(),
            user: None,
            purpose_of_use: "unknown".into(),
            patient_id: None,
            resources: Vec::new(),
            consents: Vec::new(),
            policies: Vec::new(),
            break_glass: None,
            request_id,
            detail: BTreeMap::new(),
        }
    }

    /// An entry for an event with no authenticated principal (a refused token request): the
    /// client id it claimed when that is a plain token, else `unknown`.
    pub fn anonymous(
        client_id: Option<&str>,
        action: AuditAction,
        outcome: AuditOutcome,
        request_id: String,
    ) -> AuditEntry {
        let client = client_id
            .filter(|c| {
                !c.is_empty()
                    && c.len() <= 256
                    && !c.chars().any(|ch| ch.is_whitespace() || ch.is_control())
            })
            .unwrap_or("unknown");
        AuditEntry {
            client_id: client.to_string(),
            ..AuditEntry::new(action, outcome, request_id)
        }
    }
}

/// Why an entry was refused by [`AuditEntry::validate`]; never carries the offending value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    /// A field breaks the syntax of its kind of identifier or text.
    #[error("audit entry field {field}{} must be {rule}", .position.map(|p| format!("[{p}]")).unwrap_or_default())]
    InvalidField {
        /// The canonical key of the field.
        field: &'static str,
        /// The position within a list or map (in key order), when the field is one.
        position: Option<usize>,
        /// What the value must look like.
        rule: &'static str,
    },
}

impl EntryError {
    /// The stable snake_case code of this error.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidField { .. } => "invalid_audit_entry",
        }
    }
}

impl AuditEntry {
    /// The canonical bytes defined in the module doc.
    pub fn canonical_bytes(&self) -> Vec<u8> {
        let mut members: Vec<(&str, Member<'_>)> = vec![
            ("action", Member::Text(self.action.as_str())),
            ("client_id", Member::Text(&self.client_id)),
            ("consents", Member::List(&self.consents)),
            ("organisation", Member::Text(&self.organisation)),
            ("outcome", Member::Text(self.outcome.as_str())),
            ("policies", Member::List(&self.policies)),
            ("purpose_of_use", Member::Text(&self.purpose_of_use)),
            (
                "recorded_micros",
                Member::Integer(self.recorded_micros.into()),
            ),
            ("request_id", Member::Text(&self.request_id)),
            ("resources", Member::List(&self.resources)),
            ("sequence", Member::Integer(self.sequence.into())),
            ("v", Member::Integer(ENTRY_FORMAT_VERSION.into())),
        ];
        let optional = [
            ("break_glass", &self.break_glass),
            ("patient_id", &self.patient_id),
            ("user", &self.user),
        ];
        for (key, value) in optional {
            if let Some(value) = value {
                members.push((key, Member::Text(value)));
            }
        }
        if !self.detail.is_empty() {
            members.push(("detail", Member::Map(&self.detail)));
        }
        members.sort_by(|a, b| utf16_order(a.0, b.0));

        let mut out = Vec::with_capacity(512);
        write_object(&mut out, &members);
        out
    }

    /// The Merkle leaf hash of this entry: `SHA-256(0x00 || canonical bytes)`.
    pub fn leaf_hash(&self) -> Hash {
        leaf_hash(&self.canonical_bytes())
    }

    /// Checks that every id-shaped field is an id, so that no patient data slips into the log.
    pub fn validate(&self) -> Result<(), EntryError> {
        use Syntax::{FhirId, Reference, Text, Token};
        let single = [
            ("client_id", Some(self.client_id.as_str()), Token),
            ("organisation", Some(&self.organisation), Token),
            ("purpose_of_use", Some(&self.purpose_of_use), Token),
            ("request_id", Some(&self.request_id), Token),
            ("user", self.user.as_deref(), Token),
            ("patient_id", self.patient_id.as_deref(), FhirId),
            ("break_glass", self.break_glass.as_deref(), Text),
        ];
        for (field, value, syntax) in single {
            if let Some(value) = value {
                syntax.check(value, field, None)?;
            }
        }
        let lists = [
            ("resources", &self.resources, Reference),
            ("consents", &self.consents, FhirId),
            ("policies", &self.policies, Token),
        ];
        for (field, values, syntax) in lists {
            for (i, value) in values.iter().enumerate() {
                syntax.check(value, field, Some(i))?;
            }
        }
        for (i, (key, value)) in self.detail.iter().enumerate() {
            Token.check(key, "detail", Some(i))?;
            Text.check(value, "detail", Some(i))?;
        }
        Ok(())
    }
}

/// The shapes an entry's values may take.
#[derive(Clone, Copy)]
enum Syntax {
    /// An identifier or code: no whitespace, no control characters.
    Token,
    /// A FHIR R4 `id`.
    FhirId,
    /// A FHIR relative reference `Type/id`.
    Reference,
    /// A short free text on one line.
    Text,
}

impl Syntax {
    fn check(
        self,
        value: &str,
        field: &'static str,
        position: Option<usize>,
    ) -> Result<(), EntryError> {
        let (holds, rule) = match self {
            Self::Token => (
                is_token(value),
                "1 to 256 characters without whitespace or control characters",
            ),
            Self::FhirId => (is_fhir_id(value), "a FHIR id: 1 to 64 of A-Z a-z 0-9 - ."),
            Self::Reference => (is_reference(value), "a FHIR reference Type/id"),
            Self::Text => (
                is_text(value),
                "1 to 1024 characters without control characters",
            ),
        };
        if holds {
            Ok(())
        } else {
            Err(EntryError::InvalidField {
                field,
                position,
                rule,
            })
        }
    }
}

/// A member value of the canonical object.
enum Member<'a> {
    Integer(i128),
    Text(&'a str),
    List(&'a [String]),
    Map(&'a BTreeMap<String, String>),
}

fn write_object(out: &mut Vec<u8>, members: &[(&str, Member<'_>)]) {
    out.push(b'{');
    for (i, (key, value)) in members.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_string(out, key);
        out.push(b':');
        match value {
            Member::Integer(n) => out.extend_from_slice(n.to_string().as_bytes()),
            Member::Text(s) => write_string(out, s),
            Member::List(items) => {
                out.push(b'[');
                for (j, item) in items.iter().enumerate() {
                    if j > 0 {
                        out.push(b',');
                    }
                    write_string(out, item);
                }
                out.push(b']');
            }
            Member::Map(map) => {
                // BTreeMap orders by UTF-8 bytes; JCS orders by UTF-16 code units.
                let mut entries: Vec<(&str, Member<'_>)> = map
                    .iter()
                    .map(|(k, v)| (k.as_str(), Member::Text(v)))
                    .collect();
                entries.sort_by(|a, b| utf16_order(a.0, b.0));
                write_object(out, &entries);
            }
        }
    }
    out.push(b'}');
}

/// `s` as a JCS string (RFC 8785, section 3.2.2.2): `"` and `\` escaped, the controls with
/// a short form as `\b \t \n \f \r`, the others as `\u00xx` in lower-case hex, everything
/// else as it is. Runs between escapes are copied whole: a byte below 0x80 is never part of
/// a longer UTF-8 character, so the scan can go byte by byte.
fn write_string(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let bytes = s.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let mut copied = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            0x08 => b"\\b",
            b'\t' => b"\\t",
            b'\n' => b"\\n",
            0x0c => b"\\f",
            b'\r' => b"\\r",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.extend_from_slice(&bytes[copied..i]);
        if short.is_empty() {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.extend_from_slice(short);
        }
        copied = i + 1;
    }
    out.extend_from_slice(&bytes[copied..]);
    out.push(b'"');
}

/// JCS member order: by UTF-16 code units. For ASCII (every fixed member name) that is the
/// order of the bytes.
fn utf16_order(a: &str, b: &str) -> Ordering {
    if a.is_ascii() && b.is_ascii() {
        return a.as_bytes().cmp(b.as_bytes());
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn is_token(s: &str) -> bool {
    let count = s.chars().count();
    (1..=MAX_TOKEN_CHARS).contains(&count)
        && !s.chars().any(|c| c.is_whitespace() || c.is_control())
}

fn is_text(s: &str) -> bool {
    let count = s.chars().count();
    (1..=MAX_TEXT_CHARS).contains(&count) && !s.chars().any(char::is_control)
}

fn is_fhir_id(s: &str) -> bool {
    (1..=MAX_FHIR_ID_CHARS).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn is_reference(s: &str) -> bool {
    let Some((resource_type, id)) = s.split_once('/') else {
        return false;
    };
    let mut type_chars = resource_type.chars();
    let starts_upper = type_chars.next().is_some_and(|c| c.is_ascii_uppercase());
    starts_upper
        && resource_type.len() <= MAX_FHIR_ID_CHARS
        && type_chars.all(|c| c.is_ascii_alphabetic())
        && is_fhir_id(id)
}

#[cfg(test)]
mod tests;
