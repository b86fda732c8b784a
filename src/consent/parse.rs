//! [`Consent::from_fhir`]: the R4 checks a Consent passes before the gateway keeps it, and
//! the precomputation the evaluator relies on.
//!
//! Checked, each defect reported with its path (see [`DefectKind`] for the codes):
//! - `resourceType` is `Consent`; `id`, when present, is a FHIR id;
//! - `status` (1..1) is in `consent-state-codes`; `scope` (1..1) and `category` (1..*) exist;
//! - `patient` is `Patient/{id}`: optional in R4, **required here**, because the gateway
//!   stores only a patient's own consents. This also satisfies ppc-2..ppc-5 ("if scope is
//!   privacy / research / adr / treatment there must be a patient"), which in the R4
//!   package test the scope system `'something'` and so could never fire as written;
//! - ppc-1: `policy` or `policyRule` exists; each `policy` has `authority` or `uri`;
//! - `dateTime` and every Period are valid R4 dateTimes, and per-1 holds (start <= end);
//! - every provision: `type` in deny|permit; each `actor` has a `role` with a coding and a
//!   literal `reference`; each `data` has `meaning` in instance|related|dependents|authoredby
//!   and a literal `reference`; condition codings have system and code; ActReason purposes
//!   exist in the code system; nesting is at most [`MAX_PROVISION_DEPTH`] levels;
//! - `implicitRules` and any `modifierExtension` are refused: R4 says a reader that does not
//!   understand them must not act on the resource as if they were absent.
//!
//! R4 says `type` is "not permitted in root rule, required in all nested rules"; the
//! official examples break both halves (consent-example-notOrg types its root, pkb leaves
//! nested rules untyped), so neither is a defect here. An untyped root is `deny` whatever
//! `policyRule` says (fail-safe: the official examples use one `policyRule` and one root shape
//! for both a grant and a withholding); an explicit root `type` wins; an untyped nested rule
//! is the opposite of its parent (see [`mod@super::evaluate`]). The direction `policyRule`
//! states is kept only as information ([`Consent::base_policy`]).

use serde_json::{Map, Value};

use super::dates::{DateError, date_time};
use super::defect::{ConsentDefect, ConsentDefects, DefectKind};
use super::model::{
    Actor, CONFIDENTIALITY_SYSTEM, Coding, Consent, ConsentStatus, DataMeaning, DataReference,
    MAX_PROVISION_DEPTH, Period, Policy, Provision, ProvisionType,
};
use super::purpose::{ACT_REASON_SYSTEM, PurposeHierarchy};

/// The defect of a dateTime that does not parse.
fn date_defect(e: DateError) -> DefectKind {
    match e {
        DateError::Malformed => DefectKind::InvalidDateTime,
        DateError::OutOfRange => DefectKind::DateOutOfRange,
    }
}

impl Consent {
    /// Parses and checks an R4 Consent, listing every defect found if it is not acceptable.
    pub fn from_fhir(resource: &Value) -> Result<Consent, ConsentDefects> {
        let mut p = Parser {
            defects: Vec::new(),
            purposes: PurposeHierarchy::official(),
        };
        let consent = p.consent(resource);
        match consent {
            Some(c) if p.defects.is_empty() => Ok(c),
            _ => Err(ConsentDefects { defects: p.defects }),
        }
    }
}

struct Parser {
    defects: Vec<ConsentDefect>,
    purposes: &'static PurposeHierarchy,
}

/// Joins an element path: `join("provision", "actor")` is `provision.actor`.
fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_owned()
    } else {
        format!("{base}.{name}")
    }
}

/// A FHIR id: 1 to 64 of `A-Z a-z 0-9 - .`.
fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// A reference without its `/_history/{vid}` suffix, so versions do not defeat matching.
fn without_history(reference: &str) -> &str {
    match reference.find("/_history/") {
        Some(i) => &reference[..i],
        None => reference,
    }
}

/// Rank of a confidentiality code in U < L < M < N < R < V.
pub(super) fn confidentiality_rank(code: &str) -> Option<u8> {
    match code {
        "U" => Some(0),
        "L" => Some(1),
        "M" => Some(2),
        "N" => Some(3),
        "R" => Some(4),
        "V" => Some(5),
        _ => None,
    }
}

impl Parser {
    fn defect(&mut self, path: impl Into<String>, kind: DefectKind) {
        self.defects.push(ConsentDefect {
            path: path.into(),
            kind,
        });
    }

    fn consent(&mut self, resource: &Value) -> Option<Consent> {
        let Some(obj) = resource.as_object() else {
            self.defect("", DefectKind::NotConsent);
            return None;
        };
        if obj.get("resourceType").and_then(Value::as_str) != Some("Consent") {
            self.defect("resourceType", DefectKind::NotConsent);
        }
        let id = self.string(obj, "id", "");
        if id.is_some_and(|id| !is_fhir_id(id)) {
            self.defect("id", DefectKind::InvalidId);
        }
        if obj.contains_key("implicitRules") {
            self.defect("implicitRules", DefectKind::UnsupportedImplicitRules);
        }
        self.no_modifier_extension(obj, "");

        let status = match self.string(obj, "status", "") {
            None if !obj.contains_key("status") => {
                self.defect("status", DefectKind::Required);
                None
            }
            None => None,
            Some(code) => {
                let status = ConsentStatus::from_code(code);
                if status.is_none() {
                    self.defect("status", DefectKind::InvalidCode);
                }
                status
            }
        };

        let scope = match obj.get("scope") {
            None => {
                self.defect("scope", DefectKind::Required);
                Vec::new()
            }
            Some(v) => self.concept(v, "scope", false),
        };
        let mut categories = Vec::new();
        if !obj.contains_key("category") {
            self.defect("category", DefectKind::Required);
        }
        for (i, v) in self.array(obj, "category", "").iter().enumerate() {
            categories.extend(self.concept(v, &format!("category[{i}]"), false));
        }

        let patient_id = self.patient(obj);
        let written = self.string(obj, "dateTime", "").map(str::to_owned);
        if let Some(Err(e)) = written.as_deref().map(date_time) {
            self.defect("dateTime", date_defect(e));
        }

        let mut policies = Vec::new();
        for (i, v) in self.array(obj, "policy", "").iter().enumerate() {
            let path = format!("policy[{i}]");
            let Some(o) = self.object(v, &path) else {
                continue;
            };
            self.no_modifier_extension(o, &path);
            let authority = self.string(o, "authority", &path).map(str::to_owned);
            let uri = self.string(o, "uri", &path).map(str::to_owned);
            if authority.is_none() && uri.is_none() {
                self.defect(path, DefectKind::PolicyEmpty);
            }
            policies.push(Policy { authority, uri });
        }
        let policy_rule = obj
            .get("policyRule")
            .map(|v| self.concept(v, "policyRule", false));
        if !obj.contains_key("policy") && !obj.contains_key("policyRule") {
            self.defect("", DefectKind::PolicyRequired);
        }
        for (i, v) in self.array(obj, "verification", "").iter().enumerate() {
            if let Some(o) = self.object(v, &format!("verification[{i}]")) {
                self.no_modifier_extension(o, &format!("verification[{i}]"));
            }
        }

        let base_policy = policy_rule
            .as_deref()
            .and_then(ProvisionType::from_policy_rule);
        // Fail-safe: an untyped root never permits, whatever `policyRule` says.
        let provision = obj
            .get("provision")
            .and_then(|v| self.provision(v, "provision".to_owned(), 1, ProvisionType::Deny, &[]));

        Some(Consent {
            id: id.map(str::to_owned),
            status: status?,
            patient_id: patient_id?,
            date_time: written,
            scope,
            categories,
            policies,
            policy_rule,
            base_policy,
            provision,
        })
    }

    fn patient(&mut self, obj: &Map<String, Value>) -> Option<String> {
        let Some(v) = obj.get("patient") else {
            self.defect("patient", DefectKind::PatientRequired);
            return None;
        };
        let reference = self.reference(v, "patient")?;
        match reference.split_once('/') {
            Some(("Patient", id)) if is_fhir_id(id) => Some(id.to_owned()),
            _ => {
                self.defect("patient.reference", DefectKind::PatientReferenceInvalid);
                None
            }
        }
    }

    /// One provision; `untyped_effect` is what it does without a `type`: `deny` at the root,
    /// the parent's effect flipped below it.
    fn provision(
        &mut self,
        value: &Value,
        path: String,
        depth: usize,
        untyped_effect: ProvisionType,
        inherited_labels: &[Coding],
    ) -> Option<Provision> {
        if depth > MAX_PROVISION_DEPTH {
            self.defect(path, DefectKind::TooDeep);
            return None;
        }
        let obj = self.object(value, &path)?;
        self.no_modifier_extension(obj, &path);
        let declared_type = self.code(obj, "type", &path, ProvisionType::from_code);
        let effect = declared_type.unwrap_or(untyped_effect);
        let period = self.period(obj, "period", &path);

        let mut actors = Vec::new();
        for (i, v) in self.array(obj, "actor", &path).iter().enumerate() {
            let at = format!("{path}.actor[{i}]");
            let Some(o) = self.object(v, &at) else {
                continue;
            };
            self.no_modifier_extension(o, &at);
            let roles = match o.get("role") {
                Some(r) => self.concept(r, &join(&at, "role"), true),
                None => {
                    self.defect(join(&at, "role"), DefectKind::Required);
                    Vec::new()
                }
            };
            let reference = match o.get("reference") {
                Some(r) => self.reference(r, &join(&at, "reference")),
                None => {
                    self.defect(join(&at, "reference"), DefectKind::Required);
                    None
                }
            };
            if let Some(reference) = reference {
                actors.push(Actor { roles, reference });
            }
        }

        let actions = self.concepts(obj, "action", &path);
        let security_labels = self.codings(obj, "securityLabel", &path);
        let purposes = self.codings(obj, "purpose", &path);
        let mut purpose_ids = Vec::new();
        for (i, c) in purposes.iter().enumerate() {
            if c.system == ACT_REASON_SYSTEM {
                match self.purposes.id(&c.code) {
                    Some(id) => purpose_ids.push(id),
                    None => self.defect(
                        format!("{path}.purpose[{i}].code"),
                        DefectKind::UnknownPurpose,
                    ),
                }
            }
        }
        let classes = self.codings(obj, "class", &path);
        let codes = self.concepts(obj, "code", &path);
        let data_period = self.period(obj, "dataPeriod", &path);

        let mut data = Vec::new();
        for (i, v) in self.array(obj, "data", &path).iter().enumerate() {
            let at = format!("{path}.data[{i}]");
            let Some(o) = self.object(v, &at) else {
                continue;
            };
            self.no_modifier_extension(o, &at);
            let meaning = self.code(o, "meaning", &at, DataMeaning::from_code);
            if !o.contains_key("meaning") {
                self.defect(join(&at, "meaning"), DefectKind::Required);
            }
            let reference = match o.get("reference") {
                Some(r) => self.reference(r, &join(&at, "reference")),
                None => {
                    self.defect(join(&at, "reference"), DefectKind::Required);
                    None
                }
            };
            if let (Some(meaning), Some(reference)) = (meaning, reference) {
                data.push(DataReference { meaning, reference });
            }
        }

        let label_ranks = security_labels
            .iter()
            .map(|c| {
                (c.system == CONFIDENTIALITY_SYSTEM)
                    .then(|| confidentiality_rank(&c.code))
                    .flatten()
            })
            .collect();
        let mut named_sensitive_labels = inherited_labels.to_vec();
        for label in &security_labels {
            if label.is_sensitive_label() && !named_sensitive_labels.contains(label) {
                named_sensitive_labels.push(label.clone());
            }
        }

        let mut provisions = Vec::new();
        for (i, v) in self.array(obj, "provision", &path).iter().enumerate() {
            let child = self.provision(
                v,
                format!("{path}.provision[{i}]"),
                depth + 1,
                effect.flipped(),
                &named_sensitive_labels,
            );
            provisions.extend(child);
        }

        Some(Provision {
            path,
            declared_type,
            effect,
            period,
            actors,
            actions,
            security_labels,
            label_ranks,
            purposes,
            purpose_ids,
            classes,
            codes,
            data_period,
            data,
            named_sensitive_labels,
            provisions,
        })
    }

    fn no_modifier_extension(&mut self, obj: &Map<String, Value>, path: &str) {
        if obj.contains_key("modifierExtension") {
            self.defect(
                join(path, "modifierExtension"),
                DefectKind::UnsupportedModifierExtension,
            );
        }
    }

    fn object<'v>(&mut self, value: &'v Value, path: &str) -> Option<&'v Map<String, Value>> {
        match value.as_object() {
            Some(o) if o.is_empty() => {
                self.defect(path, DefectKind::InvalidValue);
                None
            }
            Some(o) => Some(o),
            None => {
                self.defect(path, DefectKind::InvalidType);
                None
            }
        }
    }

    /// A non-empty string element, if present; wrong types and empty strings are defects.
    fn string<'v>(
        &mut self,
        obj: &'v Map<String, Value>,
        name: &str,
        base: &str,
    ) -> Option<&'v str> {
        match obj.get(name)? {
            Value::String(s) if s.trim().is_empty() => {
                self.defect(join(base, name), DefectKind::InvalidValue);
                None
            }
            Value::String(s) => Some(s),
            _ => {
                self.defect(join(base, name), DefectKind::InvalidType);
                None
            }
        }
    }

    /// A code element read with `from_code`; an unknown code is a defect.
    fn code<T>(
        &mut self,
        obj: &Map<String, Value>,
        name: &str,
        base: &str,
        from_code: fn(&str) -> Option<T>,
    ) -> Option<T> {
        let text = self.string(obj, name, base)?;
        let value = from_code(text);
        if value.is_none() {
            self.defect(join(base, name), DefectKind::InvalidCode);
        }
        value
    }

    /// An array element, if present; a non-array or an empty array is a defect.
    fn array<'v>(&mut self, obj: &'v Map<String, Value>, name: &str, base: &str) -> &'v [Value] {
        match obj.get(name) {
            None => &[],
            Some(Value::Array(a)) if a.is_empty() => {
                self.defect(join(base, name), DefectKind::InvalidValue);
                &[]
            }
            Some(Value::Array(a)) => a,
            Some(_) => {
                self.defect(join(base, name), DefectKind::InvalidType);
                &[]
            }
        }
    }

    fn coding(&mut self, value: &Value, path: &str) -> Option<Coding> {
        let obj = self.object(value, path)?;
        let system = self.string(obj, "system", path);
        let code = self.string(obj, "code", path);
        match (system, code) {
            (Some(system), Some(code)) => Some(Coding::new(system, code)),
            _ => {
                self.defect(path, DefectKind::CodingIncomplete);
                None
            }
        }
    }

    /// An array of Codings (`securityLabel`, `purpose`, `class`).
    fn codings(&mut self, obj: &Map<String, Value>, name: &str, base: &str) -> Vec<Coding> {
        let mut out = Vec::new();
        for (i, v) in self.array(obj, name, base).iter().enumerate() {
            out.extend(self.coding(v, &format!("{}[{i}]", join(base, name))));
        }
        out
    }

    /// The codings of a CodeableConcept; `need_coding` when it is a matching condition.
    fn concept(&mut self, value: &Value, path: &str, need_coding: bool) -> Vec<Coding> {
        let Some(obj) = self.object(value, path) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        for (i, v) in self.array(obj, "coding", path).iter().enumerate() {
            out.extend(self.coding(v, &format!("{path}.coding[{i}]")));
        }
        if need_coding && !obj.contains_key("coding") {
            self.defect(path, DefectKind::CodingRequired);
        }
        out
    }

    /// The flattened codings of an array of CodeableConcepts (`action`, `code`).
    fn concepts(&mut self, obj: &Map<String, Value>, name: &str, base: &str) -> Vec<Coding> {
        let mut out = Vec::new();
        for (i, v) in self.array(obj, name, base).iter().enumerate() {
            out.extend(self.concept(v, &format!("{}[{i}]", join(base, name)), true));
        }
        out
    }

    /// The literal reference of a Reference, `/_history/{vid}` removed.
    fn reference(&mut self, value: &Value, path: &str) -> Option<String> {
        let obj = self.object(value, path)?;
        match self.string(obj, "reference", path) {
            Some(r) => Some(without_history(r).to_owned()),
            None => {
                if !obj.contains_key("reference") {
                    self.defect(path, DefectKind::ReferenceNotLiteral);
                }
                None
            }
        }
    }

    fn period(&mut self, obj: &Map<String, Value>, name: &str, base: &str) -> Option<Period> {
        let path = join(base, name);
        let o = self.object(obj.get(name)?, &path)?;
        let start = self.string(o, "start", &path).map(str::to_owned);
        let end = self.string(o, "end", &path).map(str::to_owned);
        let mut bound = |text: &Option<String>, field: &str| match text {
            None => Some(None),
            Some(t) => match date_time(t) {
                Ok(r) => Some(Some(r)),
                Err(e) => {
                    self.defect(join(&path, field), date_defect(e));
                    None
                }
            },
        };
        let start_range = bound(&start, "start")?;
        let end_range = bound(&end, "end")?;
        let range = (
            start_range.map_or(i64::MIN, |r| r.0),
            end_range.map_or(i64::MAX, |r| r.1),
        );
        // per-1 compares at the values' own precision; only a start that begins after the
        // end has finished is certainly reversed.
        if let (Some(s), Some(e)) = (start_range, end_range)
            && s.0 > e.1
        {
            self.defect(path, DefectKind::PeriodReversed);
            return None;
        }
        Some(Period { start, end, range })
    }
}
