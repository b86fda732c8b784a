//! An interpreter of the Microsoft FHIR anonymizer's configuration files
//! (`fhirPathRules` + `parameters`), for all its methods: `keep`, `redact`, `dateShift`,
//! `cryptoHash`, `encrypt`, `substitute` (primitive or complex `replaceWith`), `perturb` and
//! `generalize`.
//!
//! Rule paths and `generalize` cases are FHIRPath in the subset of [`super::fhirpath`]
//! (`nodesByType`, `nodesByName`, `ofType`, `as`, `|`, `where` with `and`/`or`/`=`/`!=`/
//! comparisons/`in`/`contains`/`matches`, `exists`, string functions, resource-type prefixes).
//! Anything outside it, a method parameter out of range, an unknown method or an
//! `encryptKey` that is not 128, 192 or 256 bits is refused at load with
//! [`DeidError::AnonymizerConfig`] naming the file and the rule index.
//!
//! Semantics follow the anonymizer (see [`super::run`]): rules run in order for each resource
//! (nested resources in document order, each with the rules for its type); a rule applies its
//! method to the selected elements and everything below them (not into nested resources), and
//! an element handled by an earlier rule is not touched again. `dateShiftScope` `resource`
//! seeds the shift with the resource id; `file` and `folder` both mean our export unit, one
//! study's export: every resource of it moves by the same days. `fhirVersion` must be empty,
//! null or `R4`. A method that cannot apply to what a rule selected (`perturb` on a string,
//! an object `replaceWith` on a primitive, `encrypt` without a usable key, a `generalize` case
//! that gives no single value) fails the resource with [`DeidError::MethodNotApplicable`]
//! under `processingError` `raise` (the default); under `skip` the element is removed
//! instead, never left as it was.

use std::collections::HashMap;

use regex::Regex;
use serde_json::Value;
use time::Date;

use super::super::DeidError;
use super::RedactSettings;
use super::fhirpath::{self, Expr, Function};

/// A parsed anonymizer configuration.
#[derive(Debug, Clone)]
pub struct AnonymizerConfig {
    pub(super) rules: Vec<Rule>,
    /// Every regular expression the rules use, compiled at load.
    pub(super) regexes: HashMap<String, Regex>,
    pub(super) date_shift_key: String,
    pub(super) date_shift_per_export: bool,
    pub(super) crypto_hash_key: String,
    pub(super) encrypt_key: String,
    pub(super) redact: RedactSettings,
    /// `processingError` `raise` (the default): a method that cannot apply fails the
    /// resource; `skip`: the element is removed instead.
    pub(super) raise_errors: bool,
}

/// What a rule does to what it selects.
#[derive(Debug, Clone)]
pub(super) enum Method {
    Keep,
    Redact,
    DateShift,
    CryptoHash,
    Encrypt,
    /// A primitive `replaceWith` (its text) for primitive elements.
    SubstitutePrimitive(String),
    /// A JSON object `replaceWith` for complex elements.
    SubstituteComplex(serde_json::Map<String, Value>),
    Perturb(Perturb),
    Generalize(Generalize),
}

/// The settings of a `perturb` rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Perturb {
    /// The width of the noise range.
    pub span: f64,
    /// `rangeType` `proportional`: the range is `span * value` wide.
    pub proportional: bool,
    /// Decimal places kept; `None` for the anonymizer's default (0 for integers, 2 otherwise).
    pub round_to: Option<u32>,
}

/// The settings of a `generalize` rule.
#[derive(Debug, Clone)]
pub(super) struct Generalize {
    /// `(condition, replacement)` in the order written; the first true condition wins.
    pub cases: Vec<(Expr, Expr)>,
    /// `otherValues` `keep` (else values matching no case are redacted).
    pub keep_others: bool,
}

#[derive(Debug, Clone)]
pub(super) struct Rule {
    pub path: Expr,
    pub method: Method,
}

/// The keys an anonymizer run uses: the configuration's own, or, where it leaves one empty,
/// one derived from the study key (see [`AnonymizerConfig::keys_for`]).
#[derive(Clone)]
pub struct AnonymizerKeys {
    pub(super) date_shift: String,
    /// With an export-wide date-shift scope, what stands for the resource id.
    pub(super) date_shift_prefix: Option<String>,
    pub(super) crypto_hash: String,
    pub(super) encrypt: Vec<u8>,
}

impl std::fmt::Debug for AnonymizerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AnonymizerKeys(..)")
    }
}

impl AnonymizerConfig {
    /// Parses a configuration file's text (a UTF-8 byte-order mark is allowed); errors name
    /// the configuration `<inline>`.
    pub fn from_json(text: &str) -> Result<AnonymizerConfig, DeidError> {
        AnonymizerConfig::parse(text, "<inline>")
    }

    /// Parses the text of the configuration file `file`; anything this module cannot
    /// interpret is refused here, with the file and the index of the rule at fault.
    pub fn parse(text: &str, file: &str) -> Result<AnonymizerConfig, DeidError> {
        AnonymizerConfig::parse_unnamed(text).map_err(|e| match e {
            DeidError::AnonymizerConfig { rule, reason, .. } => DeidError::AnonymizerConfig {
                file: file.to_string(),
                rule,
                reason,
            },
            other => other,
        })
    }

    /// The keys for a run under `study`: a key the configuration leaves empty (or out) is
    /// HMAC(study key, `anonymizer:{parameter}`) in hex, so that studies sharing one
    /// configuration file stay unlinkable; a key written in the file is used as it is. The
    /// derived encryption key is the first 32 hex digits (AES-256).
    pub fn keys_for(&self, study: &crate::deid::StudyKey) -> AnonymizerKeys {
        let key = |given: &str, parameter: &str| {
            if given.is_empty() {
                study.derived_text(&format!("anonymizer:{parameter}"))
            } else {
                given.to_string()
            }
        };
        let mut encrypt = key(&self.encrypt_key, "encryptKey").into_bytes();
        if self.encrypt_key.is_empty() {
            encrypt.truncate(32);
        }
        AnonymizerKeys {
            date_shift: key(&self.date_shift_key, "dateShiftKey"),
            date_shift_prefix: self
                .date_shift_per_export
                .then(|| study.derived_text("anonymizer:dateShiftScope")),
            crypto_hash: key(&self.crypto_hash_key, "cryptoHashKey"),
            encrypt,
        }
    }

    /// The configuration's own keys (an empty one stays empty; an empty `encryptKey` makes
    /// `encrypt` leave values as they are and count nothing).
    pub fn own_keys(&self) -> AnonymizerKeys {
        AnonymizerKeys {
            date_shift: self.date_shift_key.clone(),
            date_shift_prefix: self.date_shift_per_export.then(String::new),
            crypto_hash: self.crypto_hash_key.clone(),
            encrypt: self.encrypt_key.clone().into_bytes(),
        }
    }

    /// Whether a rule shifts dates, so that the leak scan knows every full date moved.
    pub fn shifts_dates(&self) -> bool {
        self.rules
            .iter()
            .any(|r| matches!(r.method, Method::DateShift))
    }

    /// The days the dates of `resource` move under `keys`, when the configuration shifts
    /// dates (the anonymizer's offset depends on the resource's id, or on the export).
    pub fn date_shift_days(&self, keys: &AnonymizerKeys, resource: &Value) -> Option<i64> {
        let id = resource.get("id").and_then(Value::as_str).unwrap_or("");
        let seed = keys.date_shift_prefix.as_deref().unwrap_or(id);
        self.shifts_dates()
            .then(|| super::date_shift_offset(&keys.date_shift, seed))
    }

    /// Anonymizes one resource (a Bundle's entries and contained resources included) with
    /// the configuration's own keys, judging ages against `today`.
    pub fn anonymize(&self, resource: &Value, today: Date) -> Result<Value, DeidError> {
        self.anonymize_with(resource, &self.own_keys(), today)
    }

    fn parse_unnamed(text: &str) -> Result<AnonymizerConfig, DeidError> {
        let config: Value = serde_json::from_str(text.trim_start_matches('\u{feff}'))
            .map_err(|e| unsupported(format!("not JSON: {e}")))?;
        match config.get("fhirVersion") {
            None | Some(Value::Null) => {}
            Some(Value::String(v)) if v.is_empty() || v.eq_ignore_ascii_case("R4") => {}
            Some(other) => {
                return Err(unsupported(format!(
                    "fhirVersion {other} (this gateway holds FHIR R4)"
                )));
            }
        }
        let mut raise_errors = true;
        for name in ["processingError", "processingErrors"] {
            match config.get(name).and_then(Value::as_str) {
                None => {}
                Some(v) if v.eq_ignore_ascii_case("raise") => {}
                Some(v) if v.eq_ignore_ascii_case("skip") => raise_errors = false,
                Some(v) => return Err(unsupported(format!("{name} {v}"))),
            }
        }
        let parameters = config.get("parameters").cloned().unwrap_or(Value::Null);
        let text_of = |name: &str| {
            parameters
                .get(name)
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string()
        };
        let flag = |name: &str| {
            parameters
                .get(name)
                .and_then(Value::as_bool)
                .unwrap_or(false)
        };
        let scope = text_of("dateShiftScope").to_ascii_lowercase();
        let date_shift_per_export = match scope.as_str() {
            "" | "resource" => false,
            "file" | "folder" => true,
            other => return Err(unsupported(format!("dateShiftScope {other}"))),
        };
        let encrypt_key = text_of("encryptKey");
        if !encrypt_key.is_empty() && ![16, 24, 32].contains(&encrypt_key.len()) {
            return Err(unsupported(
                "encryptKey must be 128, 192 or 256 bits (16, 24 or 32 bytes)",
            ));
        }
        let restricted_zip3 = parameters
            .get("restrictedZipCodeTabulationAreas")
            .and_then(Value::as_array)
            .map(|list| {
                list.iter()
                    .filter_map(Value::as_str)
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default();
        let mut regexes = HashMap::new();
        let rules = config
            .get("fhirPathRules")
            .and_then(Value::as_array)
            .ok_or_else(|| unsupported("no fhirPathRules"))?
            .iter()
            .enumerate()
            .map(|(index, rule)| {
                parse_rule(rule, &mut regexes).map_err(|reason| DeidError::AnonymizerConfig {
                    file: String::new(),
                    rule: Some(index),
                    reason,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(AnonymizerConfig {
            rules,
            regexes,
            date_shift_key: text_of("dateShiftKey"),
            date_shift_per_export,
            crypto_hash_key: text_of("cryptoHashKey"),
            encrypt_key,
            redact: RedactSettings {
                partial_dates: flag("enablePartialDatesForRedact"),
                partial_ages: flag("enablePartialAgesForRedact"),
                partial_zip_codes: flag("enablePartialZipCodesForRedact"),
                restricted_zip3,
            },
            raise_errors,
        })
    }
}

fn unsupported(reason: impl Into<String>) -> DeidError {
    DeidError::AnonymizerConfig {
        file: String::new(),
        rule: None,
        reason: reason.into(),
    }
}

/// Parses one FHIRPath expression of a rule and compiles the regular expressions it names.
fn expression(
    text: &str,
    what: &str,
    regexes: &mut HashMap<String, Regex>,
) -> Result<Expr, String> {
    let expr = fhirpath::parse(text).map_err(|e| format!("{what} {text:?}: {e}"))?;
    collect_regexes(&expr, regexes).map_err(|e| format!("{what} {text:?}: {e}"))?;
    Ok(expr)
}

fn collect_regexes(expr: &Expr, regexes: &mut HashMap<String, Regex>) -> Result<(), String> {
    match expr {
        Expr::This | Expr::Literal(_) => Ok(()),
        Expr::Member(on, _) => on
            .as_deref()
            .map_or(Ok(()), |on| collect_regexes(on, regexes)),
        Expr::As(inner, _) => collect_regexes(inner, regexes),
        Expr::Binary(_, left, right) => {
            collect_regexes(left, regexes)?;
            collect_regexes(right, regexes)
        }
        Expr::Call(on, function) => {
            if let Some(on) = on {
                collect_regexes(on, regexes)?;
            }
            match function {
                Function::Matches(pattern) => compile(pattern, regexes),
                Function::ReplaceMatches(pattern, substitution) => {
                    compile(pattern, regexes)?;
                    collect_regexes(substitution, regexes)
                }
                Function::Where(e)
                | Function::Exists(Some(e))
                | Function::StartsWith(e)
                | Function::EndsWith(e)
                | Function::Contains(e)
                | Function::Substring(e, None) => collect_regexes(e, regexes),
                Function::Substring(a, Some(b)) => {
                    collect_regexes(a, regexes)?;
                    collect_regexes(b, regexes)
                }
                Function::NodesByType(_)
                | Function::NodesByName(_)
                | Function::OfType(_)
                | Function::As(_)
                | Function::Exists(None)
                | Function::Empty
                | Function::Not => Ok(()),
            }
        }
    }
}

fn compile(pattern: &Expr, regexes: &mut HashMap<String, Regex>) -> Result<(), String> {
    match pattern {
        Expr::Literal(fhirpath::Literal::String(p)) => {
            if !regexes.contains_key(p) {
                let regex = Regex::new(p).map_err(|_| format!("the regular expression {p:?}"))?;
                regexes.insert(p.clone(), regex);
            }
            Ok(())
        }
        _ => Err("a regular expression that is not a quoted literal".to_string()),
    }
}

fn parse_rule(rule: &Value, regexes: &mut HashMap<String, Regex>) -> Result<Rule, String> {
    let path_text = rule
        .get("path")
        .and_then(Value::as_str)
        .ok_or("a rule without a path")?;
    let path = expression(path_text, "path", regexes)?;
    let method_name = rule.get("method").and_then(Value::as_str).unwrap_or("");
    let method = match method_name.to_ascii_lowercase().as_str() {
        "keep" => Method::Keep,
        "redact" => Method::Redact,
        "dateshift" => Method::DateShift,
        "cryptohash" => Method::CryptoHash,
        "encrypt" => Method::Encrypt,
        "substitute" => match rule.get("replaceWith") {
            Some(Value::String(text)) => Method::SubstitutePrimitive(text.clone()),
            Some(Value::Number(n)) => Method::SubstitutePrimitive(n.to_string()),
            Some(Value::Bool(b)) => Method::SubstitutePrimitive(b.to_string()),
            Some(Value::Object(fragment)) => Method::SubstituteComplex(fragment.clone()),
            Some(Value::Array(_)) => return Err("substitute with an array replaceWith".into()),
            None | Some(Value::Null) => return Err("substitute without replaceWith".into()),
        },
        "perturb" => Method::Perturb(perturb(rule)?),
        "generalize" => Method::Generalize(generalize(rule, regexes)?),
        _ => return Err(format!("method {method_name:?}")),
    };
    Ok(Rule { path, method })
}

fn perturb(rule: &Value) -> Result<Perturb, String> {
    let span = match rule.get("span") {
        Some(Value::Number(n)) => n.as_f64().filter(|s| *s >= 0.0 && s.is_finite()),
        Some(Value::String(s)) => s.parse::<f64>().ok().filter(|s| *s >= 0.0 && s.is_finite()),
        _ => None,
    }
    .ok_or("perturb needs a non-negative span")?;
    let proportional = match rule.get("rangeType").and_then(Value::as_str) {
        None => false,
        Some(t) if t.eq_ignore_ascii_case("fixed") => false,
        Some(t) if t.eq_ignore_ascii_case("proportional") => true,
        Some(t) => return Err(format!("perturb rangeType {t:?}")),
    };
    let round_to = match rule.get("roundTo") {
        None | Some(Value::Null) => None,
        Some(value) => Some(
            value
                .as_u64()
                .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
                .and_then(|d| u32::try_from(d).ok())
                .filter(|d| *d <= 28)
                .ok_or("perturb roundTo must be an integer from 0 to 28")?,
        ),
    };
    Ok(Perturb {
        span,
        proportional,
        round_to,
    })
}

fn generalize(rule: &Value, regexes: &mut HashMap<String, Regex>) -> Result<Generalize, String> {
    let cases = rule
        .get("cases")
        .and_then(Value::as_object)
        .filter(|cases| !cases.is_empty())
        .ok_or("generalize needs cases")?
        .iter()
        .map(|(condition, replacement)| {
            let replacement = replacement
                .as_str()
                .ok_or("a generalize case whose value is not an expression")?;
            Ok((
                expression(condition, "case", regexes)?,
                expression(replacement, "case value", regexes)?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let keep_others = match rule.get("otherValues").and_then(Value::as_str) {
        None => false,
        Some(v) if v.eq_ignore_ascii_case("redact") => false,
        Some(v) if v.eq_ignore_ascii_case("keep") => true,
        Some(v) => return Err(format!("generalize otherValues {v:?}")),
    };
    Ok(Generalize { cases, keep_others })
}
