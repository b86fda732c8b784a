//! The patient's accounting of disclosures: what left about one patient, when, to whom, why
//! and under which consents, each entry with what the patient needs to check that it is in
//! the signed log (leaf index, leaf hash, canonical bytes, the newest checkpoint and the
//! inclusion proof URL at its size).
//!
//! It lists successful `read`, `search`, `export` and `disclose` entries by recipients and by
//! operators (marked `operator`), and leaves out the patient's own reads (entries by the
//! patient page's client id): HIPAA's accounting covers disclosures to others, and the
//! patient knows what they read.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde_json::{Value, json};

use super::entries::{self, Decoded};
use super::query::{LogQuery, url_with};
use super::{DISCLOSURE_ACTIONS, Viewer};
use crate::audit::{
    AuditEntry, AuditOutcome, DELEGATE_CLIENT, OPERATOR_CLIENT, PATIENT_CLIENT, leaf_hash,
};
use crate::error::DomainError;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::dates::format_instant;
use crate::store::audit::{CheckpointRow, EntryFilter};
use crate::store::identity::ClientRow;

/// Whose access log `viewer` may read: a patient their own only (403 otherwise), checked
/// before the id's form so that a patient learns nothing from the error.
pub fn log_subject(viewer: &Viewer, patient: &str) -> Result<PatientId, DomainError> {
    if let Viewer::Patient(own) = viewer
        && own.as_str() != patient
    {
        return Err(DomainError::forbidden(
            "forbidden",
            "a patient may read only their own access log",
        ));
    }
    PatientId::parse(patient)
        .map_err(|_| DomainError::invalid("invalid_patient_id", "the patient id is not a FHIR id"))
}

/// One page of a patient's access log, ready to render as JSON or CSV.
#[derive(Debug)]
pub struct AccessLog {
    patient: PatientId,
    entries: Vec<Decoded>,
    clients: HashMap<String, ClientRow>,
    checkpoint: Option<CheckpointRow>,
    verifier_key: String,
    base: String,
    /// The URL of the next page, when there is one.
    pub next: Option<String>,
}

/// Reads one page of `patient`'s access log. Takes the gateway by `Arc` because the newest
/// checkpoint may be signed on the blocking pool.
pub async fn access_log(
    gateway: &Arc<Gateway>,
    patient: &PatientId,
    q: &LogQuery,
) -> Result<AccessLog, DomainError> {
    let filter = EntryFilter {
        patient_id: Some(patient.to_string()),
        client_id: q.recipient.clone(),
        exclude_clients: vec![PATIENT_CLIENT.into()],
        actions: DISCLOSURE_ACTIONS.iter().map(|a| a.to_string()).collect(),
        outcomes: vec![AuditOutcome::Success.as_str().into()],
        since: q.since,
        until: q.until,
        before_seq: q.before,
        limit: (q.count + 1) as i64,
    };
    let page = entries::page(gateway, filter, q.count).await?;
    // Read after the entries, so that it covers them whenever this instance signs.
    let checkpoint = entries::newest_checkpoint(gateway).await?;
    let next = match page.entries.last() {
        Some(last) if page.more => {
            let mut params = q.echo.clone();
            params.push(("_count", q.count.to_string()));
            params.push(("before", last.row.seq.to_string()));
            let path = format!("/api/v1/patients/{patient}/access-log");
            Some(url_with(&gateway.base_url, &path, &params))
        }
        _ => None,
    };
    Ok(AccessLog {
        patient: patient.clone(),
        entries: page.entries,
        clients: page.clients,
        checkpoint,
        verifier_key: gateway.checkpoints.verifier_key(),
        base: gateway.base_url.clone(),
        next,
    })
}

/// Who received a disclosure, as the access log shows it.
pub(super) struct Recipient<'a> {
    /// `client`, `operator` for the gateway's operators, `delegate` for the patient's, or
    /// `share_link` for whoever opened one of the patient's SMART Health Links.
    pub kind: &'static str,
    /// The client's display name, when registered.
    pub client_name: Option<&'a str>,
    /// The client's organisation, when registered.
    pub organisation: Option<&'a str>,
}

impl AccessLog {
    /// The entries on this page, newest first.
    pub(super) fn entries(&self) -> &[Decoded] {
        &self.entries
    }

    /// The newest checkpoint, if the log has one.
    pub(super) fn checkpoint(&self) -> Option<&CheckpointRow> {
        self.checkpoint.as_ref()
    }

    pub(super) fn recipient(&self, entry: &AuditEntry) -> Recipient<'_> {
        let client = self.clients.get(&entry.client_id);
        Recipient {
            kind: match entry.client_id.as_str() {
                OPERATOR_CLIENT if client.is_none() => "operator",
                // A delegate acting for the patient; `user` names the RelatedPerson.
                DELEGATE_CLIENT if client.is_none() => "delegate",
                // Whoever opened one of the patient's SMART Health Links.
                crate::shl::SHARE_LINK_CLIENT if client.is_none() => "share_link",
                _ => "client",
            },
            client_name: client.map(|c| c.name.as_str()),
            organisation: client.map(|c| c.organization.as_str()),
        }
    }

    /// The proof URL for a leaf, when the newest checkpoint covers it.
    pub(super) fn proof_url(&self, seq: i64) -> Option<String> {
        let cp = self.checkpoint.as_ref().filter(|c| seq < c.size)?;
        Some(url_with(
            &self.base,
            "/api/v1/audit/proofs/inclusion",
            &[
                ("index", seq.to_string()),
                ("tree_size", cp.size.to_string()),
            ],
        ))
    }

    /// The page as JSON.
    pub fn to_json(&self) -> Value {
        let disclosures: Vec<Value> = self.entries.iter().map(|d| self.entry_json(d)).collect();
        json!({
            "patient_id": self.patient,
            "disclosures": disclosures,
            "checkpoint": self.checkpoint.as_ref().map(|c| json!({
                "size": c.size,
                "note": c.note,
                "verifier_key": self.verifier_key,
                "verifier_key_url": format!("{}/api/v1/audit/verifier-key", self.base),
            })),
            "next": self.next,
        })
    }

    fn entry_json(&self, d: &Decoded) -> Value {
        let e = &d.entry;
        let recipient = self.recipient(e);
        let mut out = json!({
            "date": format_instant(e.recorded_micros),
            "action": e.action.as_str(),
            "recipient": {
                "kind": recipient.kind,
                "client_id": e.client_id,
                "client_name": recipient.client_name,
                "organisation": recipient.organisation,
                "organisation_id": e.organisation,
                "user": e.user,
            },
            "disclosed": {
                "resource_types": type_counts(&e.resources),
                "resources": e.resources,
            },
            "purpose_of_use": e.purpose_of_use,
            "consents": e.consents,
            "policies": e.policies,
            "break_glass": e.break_glass.is_some(),
            "justification": e.break_glass,
            "request_id": e.request_id,
            "inclusion": {
                "leaf_index": d.row.seq,
                "leaf_hash": STANDARD.encode(leaf_hash(d.row.body.as_bytes())),
                "entry": d.row.body,
                "tree_size": self.checkpoint.as_ref().map(|c| c.size),
                "proof_url": self.proof_url(d.row.seq),
            },
        });
        if recipient.kind == "share_link" {
            // What the opener of a SMART Health Link called themself, and which link.
            out["recipient"]["named"] = json!(e.detail.get("recipient"));
            out["recipient"]["share_link"] = json!(e.detail.get("share_link"));
        }
        out
    }
}

/// Resource types with how many resources of each an entry names.
pub(super) fn type_counts(resources: &[String]) -> BTreeMap<&str, usize> {
    let mut counts = BTreeMap::new();
    for r in resources {
        let ty = r.split_once('/').map_or(r.as_str(), |(t, _)| t);
        *counts.entry(ty).or_insert(0) += 1;
    }
    counts
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;
    use crate::audit::{AuditAction, AuditEntry};
    use crate::store::audit::EntryRow;

    #[test]
    fn type_counts_group_references() {
        let refs = ["Observation/a", "Condition/b", "Observation/c"].map(String::from);
        let counts = type_counts(&refs);
        assert_eq!(
            counts.into_iter().collect::<Vec<_>>(),
            vec![("Condition", 1), ("Observation", 2)]
        );
    }

    #[test]
    fn a_patient_reads_only_their_own_log() {
        let pat = Viewer::Patient(PatientId::parse("pat").unwrap());
        assert_eq!(log_subject(&pat, "pat").unwrap().as_str(), "pat");
        // Forbidden comes before the id's form, for a patient.
        assert_eq!(log_subject(&pat, "other").unwrap_err().code, "forbidden");
        assert_eq!(log_subject(&pat, "a b").unwrap_err().code, "forbidden");
        assert_eq!(
            log_subject(&Viewer::Operator, "a b").unwrap_err().code,
            "invalid_patient_id"
        );
        assert!(log_subject(&Viewer::Operator, "other").is_ok());
    }

    /// A page of two entries: a read by a registered client (sequence 4) and one by an
    /// operator (sequence 9), with a checkpoint of size 5.
    pub(in crate::accounting) fn sample() -> AccessLog {
        let mut read = AuditEntry::new(AuditAction::Read, AuditOutcome::Success, "r1".into());
        read.client_id = "c1".into();
        read.organisation = "org-1".into();
        read.purpose_of_use = "TREAT".into();
        read.patient_id = Some("pat".into());
        read.resources = vec!["Observation/o1".into(), "Observation/o2".into()];
        read.consents = vec!["k1".into()];
        read.recorded_micros = 1_767_225_600_000_000;
        let mut by_operator = read.clone();
        by_operator.client_id = OPERATOR_CLIENT.into();
        by_operator.break_glass = Some("=cmd,\"x\"".into());
        let decoded = |seq: i64, entry: AuditEntry| Decoded {
            row: EntryRow {
                seq,
                recorded: entry.recorded_micros,
                action: "read".into(),
                outcome: "success".into(),
                client_id: entry.client_id.clone(),
                patient_id: entry.patient_id.clone(),
                body: serde_json::to_string(&entry).unwrap(),
                notice: None,
            },
            entry,
        };
        let client: crate::auth::clients::Client = serde_json::from_value(json!({
            "id": "c1", "name": "clinic, app", "organization": "clinic", "role": "clinician",
            "purposes": ["TREAT"], "resources": ["*"], "created_at": 0,
        }))
        .unwrap();
        let client = crate::auth::registry::to_row(&client);
        AccessLog {
            patient: PatientId::parse("pat").unwrap(),
            entries: vec![decoded(9, by_operator), decoded(4, read)],
            clients: HashMap::from([("c1".to_string(), client)]),
            checkpoint: Some(CheckpointRow {
                size: 5,
                root: vec![0; 32],
                note: "gw\n5\nroot\n\n— gw sig\n".into(),
                signed_at: 0,
            }),
            verifier_key: "gw+key".into(),
            base: "https://gw".into(),
            next: None,
        }
    }

    #[test]
    fn entries_carry_what_checks_them() {
        let log = sample();
        let json = log.to_json();
        let [operator, client] = json["disclosures"].as_array().unwrap().as_slice() else {
            panic!("two entries: {json}");
        };
        assert_eq!(client["recipient"]["kind"], "client");
        assert_eq!(client["recipient"]["client_name"], "clinic, app");
        assert_eq!(
            client["disclosed"]["resource_types"],
            json!({"Observation": 2})
        );
        assert_eq!(client["inclusion"]["leaf_index"], 4);
        assert_eq!(
            client["inclusion"]["proof_url"],
            "https://gw/api/v1/audit/proofs/inclusion?index=4&tree_size=5"
        );
        let body = client["inclusion"]["entry"].as_str().unwrap();
        assert_eq!(
            client["inclusion"]["leaf_hash"],
            STANDARD.encode(leaf_hash(body.as_bytes()))
        );
        assert_eq!(operator["recipient"]["kind"], "operator");
        assert_eq!(operator["break_glass"], true);
        assert!(
            operator["inclusion"]["proof_url"].is_null(),
            "the checkpoint does not cover sequence 9 yet"
        );
        assert_eq!(json["checkpoint"]["size"], 5);
        assert_eq!(
            json["checkpoint"]["verifier_key_url"],
            "https://gw/api/v1/audit/verifier-key"
        );
        assert_eq!(json["patient_id"], "pat");
    }
}
