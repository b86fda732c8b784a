//! The de-identifier: walks a resource with the element table and keeps only what the
//! profile allows, transformed (see the module documentation of [`super`] for the rules).

use serde_json::{Map, Value, json};
use time::Date;

use super::dates::{self, FhirDate};
use super::leak::{IdentifierSet, ScanContext};
use super::profile::{AllowList, Profile};
use super::schema::{self, ElementDef, TypeKind, is_fhir_id, is_uuid};
use super::{DeidError, StudyKey};

/// The extension on `_birthDate` that says "aged 90 or older" (`valueAge` with `>=`).
pub const AGE_EXTENSION_URL: &str = "https://consentgate.dev/fhir/StructureDefinition/deid-age";

const DATA_ABSENT_REASON_URL: &str = "http://hl7.org/fhir/StructureDefinition/data-absent-reason";
const UCUM: &str = "http://unitsofmeasure.org";

/// Applies a profile with a study key; one value per study and export run.
///
/// `Copy`, `Send` and `Sync`, with no state of its own: share one across threads, and for
/// each patient take a [`PatientDeidentifier`] ([`Deidentifier::patient`]) so that the
/// patient's date offset and identifier matchers are made once for all its resources.
#[derive(Debug, Clone, Copy)]
pub struct Deidentifier<'a> {
    profile: &'a Profile,
    key: &'a StudyKey,
    /// "Now" for age limits: the day the export is made.
    reference_date: Date,
}

/// A [`Deidentifier`] bound to one patient: its offset computed once, its source identifiers
/// compiled once (by the caller, [`IdentifierSet::from_sources`]).
#[derive(Debug, Clone, Copy)]
pub struct PatientDeidentifier<'d> {
    deid: Deidentifier<'d>,
    patient_id: &'d str,
    offset: i64,
    sources: &'d IdentifierSet,
}

impl<'a> Deidentifier<'a> {
    /// A de-identifier for `profile` and `key`, judging ages on `reference_date`.
    pub fn new(profile: &'a Profile, key: &'a StudyKey, reference_date: Date) -> Self {
        Deidentifier {
            profile,
            key,
            reference_date,
        }
    }

    /// This de-identifier for the resources of `patient_id` (the source patient's id), whose
    /// identifying values `sources` holds.
    pub fn patient<'p>(
        &self,
        patient_id: &'p str,
        sources: &'p IdentifierSet,
    ) -> PatientDeidentifier<'p>
    where
        'a: 'p,
    {
        PatientDeidentifier {
            deid: *self,
            patient_id,
            offset: self.date_offset_days(patient_id),
            sources,
        }
    }

    /// De-identifies one resource of `patient_id` (the source patient's id). Default-deny:
    /// elements not allowed by the profile are dropped. No leak scan: see
    /// [`Self::deidentify_checked`].
    pub fn deidentify(&self, resource: &Value, patient_id: &str) -> Result<Value, DeidError> {
        self.shape(resource, patient_id, self.date_offset_days(patient_id))
            .map(|(output, _)| output)
    }

    /// [`Self::deidentify`], then the leak scan against the patient's source identifiers: the
    /// first hit is an error ([`DeidError::Leak`]), never a silent pass. For many resources
    /// of one patient, [`Self::patient`] saves recomputing the patient's offset.
    pub fn deidentify_checked(
        &self,
        resource: &Value,
        patient_id: &str,
        sources: &IdentifierSet,
    ) -> Result<Value, DeidError> {
        self.patient(patient_id, sources)
            .deidentify_checked(resource)
    }

    /// The output and how its dates were shifted.
    fn shape(
        &self,
        resource: &Value,
        patient_id: &str,
        offset: i64,
    ) -> Result<(Value, ScanContext), DeidError> {
        let _ = patient_id;
        if let Some(config) = self.profile.anonymizer() {
            let keys = config.keys_for(self.key);
            let output = config
                .anonymize_with(resource, &keys, self.reference_date)
                .map_err(|e| match e {
                    // The configuration names the resource by type; the study by pseudonym.
                    DeidError::MethodNotApplicable { path, method, .. } => {
                        let (resource_type, reference) = self.reference_of(resource);
                        DeidError::MethodNotApplicable {
                            resource_type,
                            reference,
                            path,
                            method,
                        }
                    }
                    other => other,
                })?;
            let context = ScanContext {
                date_shift_days: config.date_shift_days(&keys, resource),
            };
            return Ok((output, context));
        }
        let walk = Walk { deid: self, offset };
        let output = walk.resource(resource, false)?;
        Ok((
            output,
            ScanContext {
                date_shift_days: Some(offset),
            },
        ))
    }

    /// `Type/pseudonym` of a source resource, as failures name it.
    fn reference_of(&self, resource: &Value) -> (String, String) {
        let resource_type = resource
            .get("resourceType")
            .and_then(Value::as_str)
            .unwrap_or("Resource");
        let reference = match resource.get("id").and_then(Value::as_str) {
            Some(id) => format!("{resource_type}/{}", self.pseudonym(resource_type, id)),
            None => resource_type.to_string(),
        };
        (resource_type.to_string(), reference)
    }

    /// The pseudonym that replaces the id of `resource_type/id`.
    pub fn pseudonym(&self, resource_type: &str, id: &str) -> String {
        self.key.pseudonym(resource_type, id)
    }

    /// The days every date of `patient_id` moves by.
    pub fn date_offset_days(&self, patient_id: &str) -> i64 {
        self.key
            .date_offset_days(patient_id, self.profile.date_shift_max_days())
    }

    /// The pseudonymised form of a `Reference.reference`, or `None` when it has no form that
    /// can be pseudonymised (conditional references, other URLs), so it is dropped.
    pub fn pseudonymise_reference(&self, reference: &str) -> Option<String> {
        if reference == "#" {
            return Some(reference.to_string());
        }
        if let Some(local) = reference.strip_prefix('#') {
            return is_fhir_id(local).then(|| format!("#{}", self.key.contained_pseudonym(local)));
        }
        if let Some(uuid) = reference.strip_prefix("urn:uuid:") {
            return is_uuid(uuid).then(|| format!("urn:uuid:{}", self.key.uuid_pseudonym(uuid)));
        }
        if reference.contains('?') {
            return None;
        }
        let unversioned = reference.split("/_history/").next().unwrap_or(reference);
        let mut parts = unversioned.rsplit('/');
        let id = parts.next()?;
        let resource_type = parts.next()?;
        if !(schema::is_resource_type(resource_type) && is_fhir_id(id)) {
            return None;
        }
        let mut out = String::with_capacity(resource_type.len() + 33);
        out.push_str(resource_type);
        out.push('/');
        self.key.push_pseudonym(&mut out, resource_type, id);
        Some(out)
    }
}

impl PatientDeidentifier<'_> {
    /// De-identifies one resource of this patient, then scans it; the first leak is an error
    /// ([`DeidError::Leak`] with the resource's type, pseudonymous reference, path and kind).
    pub fn deidentify_checked(&self, resource: &Value) -> Result<Value, DeidError> {
        let (output, context) = self.deid.shape(resource, self.patient_id, self.offset)?;
        match self.sources.first_leak(&output, &context) {
            None => Ok(output),
            Some(leak) => {
                let (resource_type, reference) = self.deid.reference_of(resource);
                Err(DeidError::Leak {
                    resource_type,
                    reference,
                    path: leak.path,
                    kind: leak.kind,
                })
            }
        }
    }

    /// De-identifies one resource of this patient without the scan.
    pub fn deidentify(&self, resource: &Value) -> Result<Value, DeidError> {
        self.deid
            .shape(resource, self.patient_id, self.offset)
            .map(|(output, _)| output)
    }
}

/// Where the walk is: the allow-list that applies, the type its paths are relative to, and
/// the base under which children are listed.
struct Scope<'s> {
    root: &'s str,
    base: &'s str,
    rules: &'s AllowList,
    /// At the top of a resource: whether it is a contained one (its id is local).
    resource: Option<bool>,
}

/// What becomes of one primitive value.
enum Primitive {
    Keep(Value),
    Drop,
    /// A date showing an age over the profile's limit.
    TooOld,
}

struct Walk<'d, 'a> {
    deid: &'d Deidentifier<'a>,
    offset: i64,
}

impl Walk<'_, '_> {
    fn resource(&self, resource: &Value, contained: bool) -> Result<Value, DeidError> {
        let object = resource.as_object().ok_or(DeidError::NotAResource)?;
        let resource_type = object
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(DeidError::NotAResource)?;
        let rules = self
            .deid
            .profile
            .resource_rules(resource_type)
            .ok_or_else(|| DeidError::ResourceTypeNotInProfile {
                resource_type: resource_type.to_string(),
            })?;
        let scope = Scope {
            root: resource_type,
            base: resource_type,
            rules,
            resource: Some(contained),
        };
        let mut out = Map::new();
        out.insert(
            "resourceType".into(),
            Value::String(resource_type.to_string()),
        );
        match self.object(object, &scope, &mut out) {
            Ok(()) => Ok(Value::Object(out)),
            // A nested resource's failure is named by the outer resource, whose path it extends.
            Err(e) if contained => Err(e),
            Err(e) => {
                let (resource_type, reference) = self.deid.reference_of(resource);
                Err(e.in_resource(&resource_type, &reference))
            }
        }
    }

    fn object(
        &self,
        object: &Map<String, Value>,
        scope: &Scope,
        out: &mut Map<String, Value>,
    ) -> Result<(), DeidError> {
        for key in object.keys() {
            self.member(object, key, scope, out)
                .map_err(|e| e.within(&format!(".{key}")))?;
        }
        Ok(())
    }

    /// One member `key` of `object` (a `_name` sibling is handled with its primitive).
    fn member(
        &self,
        object: &Map<String, Value>,
        key: &str,
        scope: &Scope,
        out: &mut Map<String, Value>,
    ) -> Result<(), DeidError> {
        let name = key.strip_prefix('_').unwrap_or(key);
        if name == "resourceType" || (key.starts_with('_') && object.contains_key(name)) {
            return Ok(());
        }
        let value = object.get(name);
        if name == "extension" || name == "modifierExtension" {
            if let Some(kept) = value
                .map(|v| self.extensions(v, name == "modifierExtension"))
                .transpose()?
                .flatten()
            {
                out.insert(name.to_string(), kept);
            }
            return Ok(());
        }
        let Some(def) = schema::child(scope.base, name) else {
            return Ok(());
        };
        if !scope.rules.allows(&def) {
            return Ok(());
        }
        if let (Some(contained), "id") = (scope.resource, name) {
            if let Some(id) = value.and_then(Value::as_str) {
                let key = &self.deid.key;
                let pseudonym = if contained {
                    key.contained_pseudonym(id)
                } else {
                    key.pseudonym(scope.root, id)
                };
                out.insert("id".into(), Value::String(pseudonym));
            }
            return Ok(());
        }
        match def.kind() {
            TypeKind::Primitive => {
                let sibling = sibling_of(object, name);
                self.primitive(name, value, sibling, &def, out)
            }
            TypeKind::Datatype => {
                self.complex(name, value, out, |item| self.datatype(item, def.type_code))
            }
            TypeKind::Backbone => {
                let inner = Scope {
                    root: scope.root,
                    base: def.child_base(),
                    rules: scope.rules,
                    resource: None,
                };
                self.complex(name, value, out, |item| self.backbone(item, &inner))
            }
            TypeKind::Resource => {
                let contained = name == "contained";
                self.complex(name, value, out, |item| {
                    self.resource(item, contained).map(Some)
                })
            }
        }
    }

    /// Puts the kept items of a complex element (one object or an array of them) into `out`.
    fn complex(
        &self,
        name: &str,
        value: Option<&Value>,
        out: &mut Map<String, Value>,
        walk: impl Fn(&Value) -> Result<Option<Value>, DeidError>,
    ) -> Result<(), DeidError> {
        match value {
            Some(Value::Array(items)) => {
                let mut kept = Vec::new();
                for (index, item) in items.iter().enumerate() {
                    kept.extend(walk(item).map_err(|e| e.within(&format!("[{index}]")))?);
                }
                if !kept.is_empty() {
                    out.insert(name.to_string(), Value::Array(kept));
                }
            }
            Some(item) => {
                if let Some(kept) = walk(item)? {
                    out.insert(name.to_string(), kept);
                }
            }
            None => {}
        }
        Ok(())
    }

    fn datatype(&self, item: &Value, datatype: &str) -> Result<Option<Value>, DeidError> {
        let (Some(object), Some(rules)) =
            (item.as_object(), self.deid.profile.datatype_rules(datatype))
        else {
            return Ok(None);
        };
        let scope = Scope {
            root: datatype,
            base: datatype,
            rules,
            resource: None,
        };
        let mut out = Map::new();
        self.object(object, &scope, &mut out)?;
        if datatype == "Age" {
            self.cap_age(&mut out);
        }
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    fn backbone(&self, item: &Value, scope: &Scope) -> Result<Option<Value>, DeidError> {
        let Some(object) = item.as_object() else {
            return Ok(None);
        };
        let mut out = Map::new();
        self.object(object, scope, &mut out)?;
        Ok((!out.is_empty()).then_some(Value::Object(out)))
    }

    /// A primitive element with its `_name` sibling; arrays keep their pairing by index.
    fn primitive(
        &self,
        name: &str,
        value: Option<&Value>,
        sibling: Option<&Value>,
        def: &ElementDef,
        out: &mut Map<String, Value>,
    ) -> Result<(), DeidError> {
        if let (Some(Value::Array(_)), _) | (_, Some(Value::Array(_))) = (value, sibling) {
            let values = value
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let siblings = sibling
                .and_then(Value::as_array)
                .map(Vec::as_slice)
                .unwrap_or_default();
            let (mut kept_values, mut kept_siblings) = (Vec::new(), Vec::new());
            for index in 0..values.len().max(siblings.len()) {
                let kept = match values
                    .get(index)
                    .filter(|v| !v.is_null())
                    .map(|v| self.transform(v, def))
                {
                    Some(Primitive::Keep(v)) => Some(v),
                    _ => None,
                };
                let extensions = match siblings.get(index) {
                    Some(s) => self.primitive_extensions(s)?,
                    None => None,
                };
                if kept.is_some() || extensions.is_some() {
                    kept_values.push(kept.unwrap_or(Value::Null));
                    kept_siblings.push(extensions.unwrap_or(Value::Null));
                }
            }
            if kept_values.iter().any(|v| !v.is_null()) {
                out.insert(name.to_string(), Value::Array(kept_values));
            }
            if kept_siblings.iter().any(|v| !v.is_null()) {
                out.insert(format!("_{name}"), Value::Array(kept_siblings));
            }
            return Ok(());
        }
        let mut extensions = match sibling {
            Some(s) => self.primitive_extensions(s)?,
            None => None,
        };
        match value.map(|v| self.transform(v, def)) {
            Some(Primitive::Keep(kept)) => {
                out.insert(name.to_string(), kept);
            }
            Some(Primitive::TooOld) if def.path == "Patient.birthDate" => {
                extensions = Some(self.masked_birth_date(extensions));
            }
            _ => {}
        }
        if let Some(extensions) = extensions {
            out.insert(format!("_{name}"), extensions);
        }
        Ok(())
    }

    /// A primitive value by its type and place; anything but a scalar (malformed input that
    /// could carry nested data) is dropped.
    fn transform(&self, value: &Value, def: &ElementDef) -> Primitive {
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Primitive::Drop;
        }
        let text = value.as_str();
        let kept_string = |kept: Option<String>| {
            kept.map_or(Primitive::Drop, |t| Primitive::Keep(Value::String(t)))
        };
        match (def.type_code, def.path) {
            ("date" | "dateTime" | "instant", _) => text.map_or(Primitive::Drop, |t| self.date(t)),
            (_, "Address.postalCode") => kept_string(text.and_then(|t| self.zip3(t))),
            (_, "Reference.reference") => {
                kept_string(text.and_then(|t| self.deid.pseudonymise_reference(t)))
            }
            _ => Primitive::Keep(value.clone()),
        }
    }

    /// Shifts a full date by the patient's offset (keeping time and zone); keeps only the year
    /// of a partial one; refuses a date that shows an age over the limit.
    fn date(&self, text: &str) -> Primitive {
        let Some(date) = FhirDate::parse_strict(text) else {
            return Primitive::Drop;
        };
        let Some(start) = date.first_day() else {
            return Primitive::Drop;
        };
        let (shifted, shifted_start) = match date.full_date() {
            Some(day) => match dates::shift(day, self.offset) {
                Some(moved) => {
                    let mut text = dates::format_date(moved);
                    text.push_str(date.rest);
                    (text, moved)
                }
                None => return Primitive::Drop,
            },
            None => (date.year_text(), start),
        };
        // The earlier of the true and the shifted date: neither may reveal an age over the limit.
        if dates::full_years(start.min(shifted_start), self.deid.reference_date)
            > self.deid.profile.max_age()
        {
            Primitive::TooOld
        } else {
            Primitive::Keep(Value::String(shifted))
        }
    }

    fn zip3(&self, postal_code: &str) -> Option<String> {
        let prefix = postal_code
            .get(..3)
            .filter(|p| p.bytes().all(|b| b.is_ascii_digit()))?;
        let kept = if self.deid.profile.is_restricted_zip3(prefix) {
            "000"
        } else {
            prefix
        };
        Some(kept.to_string())
    }

    fn masked_birth_date(&self, extensions: Option<Value>) -> Value {
        let mut list = extensions
            .as_ref()
            .and_then(|e| e.get("extension"))
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        list.push(json!({ "url": DATA_ABSENT_REASON_URL, "valueCode": "masked" }));
        list.push(json!({ "url": AGE_EXTENSION_URL, "valueAge": self.aged_over_limit() }));
        json!({ "extension": list })
    }

    fn aged_over_limit(&self) -> Value {
        let limit = self.deid.profile.max_age() + 1;
        json!({ "value": limit, "comparator": ">=", "unit": "a", "system": UCUM, "code": "a" })
    }

    fn cap_age(&self, age: &mut Map<String, Value>) {
        let Some(value) = age.get("value").and_then(Value::as_f64) else {
            return;
        };
        let unit = age
            .get("code")
            .or_else(|| age.get("unit"))
            .and_then(Value::as_str)
            .unwrap_or("a");
        if value * years_per_unit(unit) > f64::from(self.deid.profile.max_age())
            && let Value::Object(capped) = self.aged_over_limit()
        {
            *age = capped;
        }
    }

    fn primitive_extensions(&self, sibling: &Value) -> Result<Option<Value>, DeidError> {
        let Some(list) = sibling.get("extension") else {
            return Ok(None);
        };
        Ok(self
            .extensions(list, false)?
            .map(|kept| json!({ "extension": kept })))
    }

    /// Keeps the extensions whose URL the profile lists (with their value and the nested
    /// extensions it names); an unlisted modifier extension is an error.
    fn extensions(&self, list: &Value, modifier: bool) -> Result<Option<Value>, DeidError> {
        let mut kept = Vec::new();
        let items = match list {
            Value::Array(items) => items.as_slice(),
            single => std::slice::from_ref(single),
        };
        for (index, item) in items.iter().enumerate() {
            let Some(url) = item.get("url").and_then(Value::as_str) else {
                continue;
            };
            let Some(nested) = self.deid.profile.extension_rules(url) else {
                if modifier {
                    return Err(DeidError::ModifierExtensionNotAllowed {
                        resource_type: String::new(),
                        reference: String::new(),
                        path: if list.is_array() {
                            format!("[{index}]")
                        } else {
                            String::new()
                        },
                        url: url.to_string(),
                    });
                }
                continue;
            };
            let mut inner = Vec::new();
            for sub in schema::items(item.get("extension").unwrap_or(&Value::Null)) {
                let Some(sub_url) = sub
                    .get("url")
                    .and_then(Value::as_str)
                    .filter(|u| nested.contains(*u))
                else {
                    continue;
                };
                inner.extend(self.extension_value(sub_url, sub, None)?);
            }
            let inner = (!inner.is_empty()).then_some(Value::Array(inner));
            kept.extend(self.extension_value(url, item, inner)?);
        }
        Ok((!kept.is_empty()).then_some(Value::Array(kept)))
    }

    /// One kept extension: its URL, its `value[x]` walked by its type, and the nested
    /// extensions already kept; `None` when neither a value nor a nested extension is left.
    fn extension_value(
        &self,
        url: &str,
        extension: &Value,
        nested: Option<Value>,
    ) -> Result<Option<Value>, DeidError> {
        let mut out = Map::new();
        out.insert("url".into(), Value::String(url.to_string()));
        if let Some(nested) = nested {
            out.insert("extension".into(), nested);
        }
        let Some(object) = extension.as_object() else {
            return Ok(None);
        };
        for key in object.keys().filter(|k| k.starts_with("value")) {
            let Some(def) = schema::child("Extension", key) else {
                continue;
            };
            match def.kind() {
                TypeKind::Primitive => {
                    let sibling = sibling_of(object, key);
                    self.primitive(key, object.get(key), sibling, &def, &mut out)?;
                }
                _ => self.complex(key, object.get(key), &mut out, |item| {
                    self.datatype(item, def.type_code)
                })?,
            }
        }
        Ok((out.len() > 1).then_some(Value::Object(out)))
    }
}

/// The `_name` sibling of a primitive element, found without allocating for the usual short
/// names (the walk asks for one per primitive).
fn sibling_of<'o>(object: &'o Map<String, Value>, name: &str) -> Option<&'o Value> {
    let mut buffer = [0u8; 64];
    match buffer.get_mut(1..=name.len()) {
        Some(rest) => {
            rest.copy_from_slice(name.as_bytes());
            buffer[0] = b'_';
            let key = std::str::from_utf8(&buffer[..=name.len()]).ok()?;
            object.get(key)
        }
        None => object.get(&format!("_{name}")),
    }
}

/// How many years one unit of an age is (UCUM codes and the common words); unknown units
/// count as years, the cautious reading.
fn years_per_unit(unit: &str) -> f64 {
    match unit {
        "mo" | "month" | "months" => 1.0 / 12.0,
        "wk" | "week" | "weeks" => 7.0 / 365.25,
        "d" | "day" | "days" => 1.0 / 365.25,
        "h" | "hour" | "hours" => 1.0 / 8766.0,
        "min" | "minute" | "minutes" => 1.0 / 525_960.0,
        _ => 1.0,
    }
}
