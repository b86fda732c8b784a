//! Creating a package: check, select, decide (twice), freeze, sign, store, audit.

use std::collections::BTreeMap;

use serde::Serialize;

use super::package::{self, Terms};
use super::request::{self, NewDisclosure};
use super::selection::{self, Chosen};
use super::{MAX_SELECTED, sign};
use crate::audit::{AuditAction, AuditOutcome};
use crate::auth::Principal;
use crate::auth::jws::sha256_hex;
use crate::auth::registry;
use crate::decision::Requester;
use crate::error::DomainError;
use crate::fhir_time::now_micros;
use crate::gateway::Gateway;
use crate::ids::PatientId;
use crate::records::{consents, ingest};
use crate::store::disclosures::{self as rows, DisclosureRow};
use crate::store::{identity, write_tx};

/// How many withheld references a refusal names.
const NAMED_IN_REFUSAL: usize = 20;

/// A package just created, as its creator sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[schema(as = DisclosureCreated)]
pub struct Created {
    /// The disclosure id (also the Bundle's).
    pub id: String,
    /// The Consent recorded for it.
    pub consent: String,
    /// The recipient client.
    pub recipient: String,
    /// The authorized purpose of use.
    pub purpose: String,
    /// The authorization's URI.
    pub policy: String,
    /// SHA-256 of the bundle's bytes, lowercase hex.
    pub bundle_sha256: String,
    /// `Type/id` of every resource in the bundle.
    pub resources: Vec<String>,
    /// `Type/id` of the filter's matches that were not permitted and were left out.
    pub withheld: Vec<String>,
    /// The expiry as the patient wrote it.
    pub expires: String,
    /// How many fetches the recipient gets.
    pub max_retrievals: i64,
}

/// Creates a package of `patient`'s records for the recipient `ask` names, and records who
/// did it (`principal`, within request `request_id`) durably before answering.
pub async fn create(
    gateway: &Gateway,
    principal: &Principal,
    request_id: &str,
    patient: &PatientId,
    ask: NewDisclosure,
) -> Result<Created, DomainError> {
    let now = now_micros();
    let ask = request::check(ask, now)?;
    let is_list = matches!(ask.chosen, Chosen::Listed(_));
    let (recipient, chosen, p) = (ask.recipient.clone(), ask.chosen, patient.clone());
    let (client, candidates, existing) = gateway
        .store
        .run(move |conn| {
            let client = identity::active_client(conn, recipient.as_str())?
                .ok_or_else(request::unknown_recipient)?;
            let candidates = selection::candidates(conn, chosen, &p)?;
            Ok::<_, DomainError>((client, candidates, consents::for_patient(conn, p.as_str())?))
        })
        .await?;
    let client = registry::from_row(client)?;
    request::check_recipient(
        &client,
        &ask.purpose,
        gateway.purposes,
        &gateway.settings.roles,
    )?;
    if candidates.is_empty() {
        return Err(DomainError::unprocessable(
            "empty_selection",
            "none of the patient's records matches the selection",
        ));
    }
    if candidates.len() > MAX_SELECTED {
        return Err(DomainError::unprocessable(
            "selection_too_large",
            format!("a disclosure holds at most {MAX_SELECTED} resources"),
        ));
    }
    let requester = Requester::of(&client);
    let terms = Terms {
        consent_id: ingest::new_id(),
        patient: patient.clone(),
        recipient: ask.recipient.clone(),
        purpose: ask.purpose.clone(),
        policy: ask.policy.clone(),
        start: now,
        expires: ask.expires_text.clone(),
    };
    let decide = |consents: &[_], resources: &[_]| {
        package::decide_all(
            gateway,
            &requester,
            consents,
            patient,
            &ask.purpose,
            resources,
        )
    };
    // First pass: what institution policy and the patient's other consents let through.
    let all = package::with_consent(&existing, &terms.grant(&candidates).to_fhir())?;
    let decisions = decide(&all, &candidates);
    let (mut chosen, mut withheld) = (Vec::new(), Vec::new());
    for (resource, d) in candidates.into_iter().zip(&decisions) {
        if package::releasable(d) {
            chosen.push(resource)
        } else {
            withheld.push(super::reference_of(&resource))
        }
    }
    // An explicit list is all or nothing: the patient picked each resource, so a package that
    // silently lacked one would misrepresent the evidence. A filter leaves withheld ones out.
    if chosen.is_empty() || (is_list && !withheld.is_empty()) {
        let named: Vec<&str> = withheld
            .iter()
            .take(NAMED_IN_REFUSAL)
            .map(String::as_str)
            .collect();
        return Err(DomainError::unprocessable(
            "selection_not_permitted",
            format!(
                "policy or the patient's other consents do not permit disclosing: {}",
                named.join(", ")
            ),
        ));
    }
    // Second pass: the consent names exactly what is sent.
    let consent = terms.grant(&chosen).to_fhir();
    let all = package::with_consent(&existing, &consent)?;
    let decisions = decide(&all, &chosen);
    if !decisions.iter().all(package::releasable) {
        return Err(DomainError::internal(
            "a disclosure's own consent does not permit its selection",
        ));
    }
    let refs = selection::references(&chosen);
    let shaped = package::shaped(chosen, &decisions);
    let id = uuid::Uuid::now_v7().to_string();
    let bytes = package::freeze(&gateway.fhir_base(), &id, now, &shaped);
    let row = DisclosureRow {
        id: id.clone(),
        patient_id: patient.to_string(),
        recipient: client.id.clone(),
        purpose: ask.purpose.clone(),
        policy_uri: ask.policy.clone(),
        consent_id: terms.consent_id.clone(),
        created: now,
        expires: ask.expires,
        max_retrievals: ask.max_retrievals,
        retrievals: 0,
        resources: serde_json::Value::from(refs.clone()).to_string(),
        bundle_sha256: sha256_hex(&bytes),
        signature: sign(gateway, &bytes)?,
        bundle: String::from_utf8(bytes).map_err(DomainError::internal)?,
    };
    let (stored, consent_id) = (row.clone(), terms.consent_id.clone());
    gateway
        .store
        .run(move |conn| {
            write_tx(conn, |conn| {
                ingest::put(conn, "Consent", &consent_id, consent)?;
                rows::insert(conn, &stored)?;
                Ok::<_, DomainError>(())
            })
        })
        .await?;
    let mut entry = principal.audit_entry(
        AuditAction::Disclose,
        AuditOutcome::Success,
        request_id.to_string(),
    );
    entry.patient_id = Some(patient.to_string());
    entry.resources = refs.clone();
    entry.consents = vec![row.consent_id.clone()];
    entry.policies = package::policies_of(&decisions);
    entry.detail = BTreeMap::from([
        ("phase".into(), "grant".into()),
        ("disclosure".into(), id.clone()),
        ("recipient".into(), row.recipient.clone()),
        ("bundle_sha256".into(), row.bundle_sha256.clone()),
        ("count".into(), refs.len().to_string()),
    ]);
    gateway.record(entry).await?;
    tracing::info!(disclosure = %id, recipient = %row.recipient, count = refs.len(), "disclosure created");
    Ok(Created {
        id,
        consent: row.consent_id,
        recipient: row.recipient,
        purpose: row.purpose,
        policy: row.policy_uri,
        bundle_sha256: row.bundle_sha256,
        resources: refs,
        withheld,
        expires: ask.expires_text,
        max_retrievals: row.max_retrievals,
    })
}
