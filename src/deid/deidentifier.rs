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
            offset: self.date_offset_days(patient_id),
            sources,
        }
    }

    /// De-identifies one resource of `patient_id` (the source patient's id). Default-deny:
    /// elements not allowed by the profile are dropped. No leak scan: see
    /// [`Self::deidentify_checked`].
    pub fn deidentify(&self, resource: &Value, patient_id: &str) -> Result<Value, DeidError> {
        self.shape(
            resource.clone(),
            &Source::of(resource),
            self.date_offset_days(patient_id),
        )
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

    /// [`Self::deidentify_checked`] on a resource the caller gives up: the walk edits it in
    /// place instead of building a copy (the export and release paths).
    pub fn deidentify_checked_owned(
        &self,
        resource: Value,
        patient_id: &str,
        sources: &IdentifierSet,
    ) -> Result<Value, DeidError> {
        self.patient(patient_id, sources)
            .deidentify_checked_owned(resource)
    }

    /// The output and how its dates were shifted; failures name `source`.
    fn shape(
        &self,
        resource: Value,
        source: &Source,
        offset: i64,
    ) -> Result<(Value, ScanContext), DeidError> {
        if let Some(config) = self.profile.anonymizer() {
            let keys = config.keys_for(self.key);
            let output = config
                .anonymize_with(&resource, &keys, self.reference_date)
                .map_err(|e| match e {
                    // The configuration names the resource by type; the study by pseudonym.
                    DeidError::MethodNotApplicable { path, method, .. } => {
                        let (resource_type, reference) = self.reference_for(source);
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
                date_shift_days: config.date_shift_days(&keys, &resource),
            };
            return Ok((output, context));
        }
        let walk = Walk { deid: self, offset };
        let mut output = resource;
        walk.resource(&mut output, false)
            .map_err(|e| e.in_resource(|| self.reference_for(source)))?;
        Ok((
            output,
            ScanContext {
                date_shift_days: Some(offset),
            },
        ))
    }

    /// `Type/pseudonym` of a source resource, as failures name it.
    fn reference_for(&self, source: &Source) -> (String, String) {
        let resource_type = &source.resource_type;
        let reference = match &source.id {
            Some(id) => format!("{resource_type}/{}", self.pseudonym(resource_type, id)),
            None => resource_type.clone(),
        };
        (resource_type.clone(), reference)
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
        self.deidentify_checked_owned(resource.clone())
    }

    /// [`Self::deidentify_checked`] on a resource the caller gives up: the walk edits it in
    /// place instead of building a copy.
    pub fn deidentify_checked_owned(&self, resource: Value) -> Result<Value, DeidError> {
        let source = Source::of(&resource);
        let (output, context) = self.deid.shape(resource, &source, self.offset)?;
        match self.sources.first_leak(&output, &context) {
            None => Ok(output),
            Some(leak) => {
                let (resource_type, reference) = self.deid.reference_for(&source);
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
            .shape(resource.clone(), &Source::of(resource), self.offset)
            .map(|(output, _)| output)
    }
}

/// The source resource's type and id, taken before the walk replaces the id: failures name
/// the source by pseudonym.
struct Source {
    resource_type: String,
    id: Option<String>,
}

impl Source {
    fn of(resource: &Value) -> Self {
        Source {
            resource_type: resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("Resource")
                .to_string(),
            id: resource
                .get("id")
                .and_then(Value::as_str)
                .map(str::to_string),
        }
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
    /// Kept, as changed in place (or unchanged).
    Keep,
    Drop,
    /// A date showing an age over the profile's limit.
    TooOld,
}

/// The walk edits the resource in place: a dropped member or array item is first set to
/// `null` and then removed, a kept one keeps its allocation. Building a copy instead cost a
/// new map, key and string per kept element (`docs/PERFORMANCE.md`, "Export").
struct Walk<'d, 'a> {
    deid: &'d Deidentifier<'a>,
    offset: i64,
}

impl Walk<'_, '_> {
    fn resource(&self, resource: &mut Value, contained: bool) -> Result<(), DeidError> {
        let Value::Object(object) = resource else {
            return Err(DeidError::NotAResource);
        };
        let resource_type = object
            .get("resourceType")
            .and_then(Value::as_str)
            .ok_or(DeidError::NotAResource)?
            .to_string();
        let rules = self
            .deid
            .profile
            .resource_rules(&resource_type)
            .ok_or_else(|| DeidError::ResourceTypeNotInProfile {
                resource_type: resource_type.clone(),
            })?;
        let scope = Scope {
            root: &resource_type,
            base: &resource_type,
            rules,
            resource: Some(contained),
        };
        // The caller names a failure by the source resource (`Deidentifier::shape`).
        self.object(object, &scope)
    }

    fn object(&self, object: &mut Map<String, Value>, scope: &Scope) -> Result<(), DeidError> {
        let mut siblings = take_siblings(object);
        let mut kept_siblings = Vec::new();
        let mut failure = None;
        for (key, value) in object.iter_mut() {
            let sibling = siblings
                .iter()
                .position(|(k, _)| &k[1..] == key.as_str())
                .map(|i| siblings.swap_remove(i).1);
            match self.member(key, value, sibling, scope) {
                Ok(None) => {}
                Ok(Some(extensions)) => kept_siblings.push((format!("_{key}"), extensions)),
                Err(e) => {
                    failure = Some(e.within(&format!(".{key}")));
                    break;
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        // A `_name` without its primitive: the primitive's extensions alone.
        for (key, sibling) in siblings {
            let name = &key[1..];
            let mut absent = Value::Null;
            let kept = self
                .member(name, &mut absent, Some(sibling), scope)
                .map_err(|e| e.within(&format!(".{key}")))?;
            if let Some(extensions) = kept {
                kept_siblings.push((key, extensions));
            }
        }
        object.retain(|_, v| !v.is_null());
        object.extend(kept_siblings);
        Ok(())
    }

    /// One member `key` of an object, with its `_key` sibling if it had one: leaves `value`
    /// as kept, or `null` to drop it; returns the `_key` sibling to put back.
    fn member(
        &self,
        key: &str,
        value: &mut Value,
        sibling: Option<Value>,
        scope: &Scope,
    ) -> Result<Option<Value>, DeidError> {
        if key == "resourceType" {
            // Kept at the top of a resource (its walk checked it), dropped anywhere else.
            if scope.resource.is_none() {
                *value = Value::Null;
            }
            return Ok(None);
        }
        if key == "extension" || key == "modifierExtension" {
            *value = self
                .extensions(value, key == "modifierExtension")?
                .unwrap_or(Value::Null);
            return Ok(None);
        }
        let Some(def) = schema::child(scope.base, key).filter(|def| scope.rules.allows(def)) else {
            *value = Value::Null;
            return Ok(None);
        };
        if let (Some(contained), "id") = (scope.resource, key) {
            *value = match value.as_str() {
                Some(id) => {
                    let key = &self.deid.key;
                    Value::String(if contained {
                        key.contained_pseudonym(id)
                    } else {
                        key.pseudonym(scope.root, id)
                    })
                }
                None => Value::Null,
            };
            return Ok(None);
        }
        match def.kind() {
            TypeKind::Primitive => return self.primitive(value, sibling, &def),
            TypeKind::Datatype => self.complex(value, |item| self.datatype(item, def.type_code))?,
            TypeKind::Backbone => {
                let inner = Scope {
                    root: scope.root,
                    base: def.child_base(),
                    rules: scope.rules,
                    resource: None,
                };
                self.complex(value, |item| self.backbone(item, &inner))?;
            }
            TypeKind::Resource => {
                let contained = key == "contained";
                self.complex(value, |item| self.resource(item, contained).map(|()| true))?;
            }
        }
        // A complex element has no `_name` sibling in FHIR JSON: one is dropped.
        Ok(None)
    }

    /// Walks the items of a complex element (one object or an array of them) in place;
    /// `walk` says whether an item is kept. Leaves `null` when nothing is.
    fn complex(
        &self,
        value: &mut Value,
        walk: impl Fn(&mut Value) -> Result<bool, DeidError>,
    ) -> Result<(), DeidError> {
        match value {
            Value::Array(items) => {
                for (index, item) in items.iter_mut().enumerate() {
                    if !walk(item).map_err(|e| e.within(&format!("[{index}]")))? {
                        *item = Value::Null;
                    }
                }
                items.retain(|item| !item.is_null());
                if items.is_empty() {
                    *value = Value::Null;
                }
            }
            Value::Null => {}
            item => {
                if !walk(item)? {
                    *item = Value::Null;
                }
            }
        }
        Ok(())
    }

    fn datatype(&self, item: &mut Value, datatype: &str) -> Result<bool, DeidError> {
        let (Value::Object(object), Some(rules)) =
            (item, self.deid.profile.datatype_rules(datatype))
        else {
            return Ok(false);
        };
        let scope = Scope {
            root: datatype,
            base: datatype,
            rules,
            resource: None,
        };
        self.object(object, &scope)?;
        if datatype == "Age" {
            self.cap_age(object);
        }
        Ok(!object.is_empty())
    }

    fn backbone(&self, item: &mut Value, scope: &Scope) -> Result<bool, DeidError> {
        let Value::Object(object) = item else {
            return Ok(false);
        };
        self.object(object, scope)?;
        Ok(!object.is_empty())
    }

    /// A primitive element with its `_name` sibling, in place; returns the sibling to keep.
    /// Arrays keep their pairing by index.
    fn primitive(
        &self,
        value: &mut Value,
        sibling: Option<Value>,
        def: &ElementDef,
    ) -> Result<Option<Value>, DeidError> {
        if value.is_array() || sibling.as_ref().is_some_and(Value::is_array) {
            let values = match std::mem::take(value) {
                Value::Array(values) => values,
                _ => Vec::new(),
            };
            let siblings = match sibling {
                Some(Value::Array(siblings)) => siblings,
                _ => Vec::new(),
            };
            let count = values.len().max(siblings.len());
            let (mut values, mut siblings) = (values.into_iter(), siblings.into_iter());
            let (mut kept_values, mut kept_siblings) = (Vec::new(), Vec::new());
            for _ in 0..count {
                let kept = match values.next() {
                    Some(mut v) if !v.is_null() => {
                        matches!(self.transform(&mut v, def), Primitive::Keep).then_some(v)
                    }
                    _ => None,
                };
                let extensions = match siblings.next() {
                    Some(s) => self.primitive_extensions(&s)?,
                    None => None,
                };
                if kept.is_some() || extensions.is_some() {
                    kept_values.push(kept.unwrap_or(Value::Null));
                    kept_siblings.push(extensions.unwrap_or(Value::Null));
                }
            }
            if kept_values.iter().any(|v| !v.is_null()) {
                *value = Value::Array(kept_values);
            }
            return Ok(kept_siblings
                .iter()
                .any(|v| !v.is_null())
                .then_some(Value::Array(kept_siblings)));
        }
        let mut extensions = match &sibling {
            Some(s) => self.primitive_extensions(s)?,
            None => None,
        };
        match self.transform(value, def) {
            Primitive::Keep => {}
            Primitive::TooOld if def.path == "Patient.birthDate" => {
                *value = Value::Null;
                extensions = Some(self.masked_birth_date(extensions));
            }
            Primitive::TooOld | Primitive::Drop => *value = Value::Null,
        }
        Ok(extensions)
    }

    /// A primitive value by its type and place, changed in place when kept; anything but a
    /// scalar (malformed input that could carry nested data) is dropped.
    fn transform(&self, value: &mut Value, def: &ElementDef) -> Primitive {
        if !(value.is_string() || value.is_number() || value.is_boolean()) {
            return Primitive::Drop;
        }
        let replaced = match (def.type_code, def.path) {
            ("date" | "dateTime" | "instant", _) => match value.as_str().map(|t| self.date(t)) {
                Some(Ok(shifted)) => Some(shifted),
                Some(Err(verdict)) => return verdict,
                None => None,
            },
            (_, "Address.postalCode") => value.as_str().and_then(|t| self.zip3(t)),
            (_, "Reference.reference") => value
                .as_str()
                .and_then(|t| self.deid.pseudonymise_reference(t)),
            _ => return Primitive::Keep,
        };
        match replaced {
            Some(text) => {
                *value = Value::String(text);
                Primitive::Keep
            }
            None => Primitive::Drop,
        }
    }

    /// Shifts a full date by the patient's offset (keeping time and zone); keeps only the year
    /// of a partial one; refuses a date that shows an age over the limit.
    fn date(&self, text: &str) -> Result<String, Primitive> {
        let Some(date) = FhirDate::parse_strict(text) else {
            return Err(Primitive::Drop);
        };
        let Some(start) = date.first_day() else {
            return Err(Primitive::Drop);
        };
        let (shifted, shifted_start) = match date.full_date() {
            Some(day) => match dates::shift(day, self.offset) {
                Some(moved) => {
                    let mut text = dates::format_date(moved);
                    text.push_str(date.rest);
                    (text, moved)
                }
                None => return Err(Primitive::Drop),
            },
            None => (date.year_text(), start),
        };
        // The earlier of the true and the shifted date: neither may reveal an age over the limit.
        if dates::full_years(start.min(shifted_start), self.deid.reference_date)
            > self.deid.profile.max_age()
        {
            Err(Primitive::TooOld)
        } else {
            Ok(shifted)
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
        // Extensions are few, so their values are walked as copies.
        for (key, value) in object.iter().filter(|(k, _)| k.starts_with("value")) {
            let Some(def) = schema::child("Extension", key) else {
                continue;
            };
            let mut value = value.clone();
            let mut sibling = None;
            match def.kind() {
                TypeKind::Primitive => {
                    sibling =
                        self.primitive(&mut value, object.get(&format!("_{key}")).cloned(), &def)?;
                }
                _ => self.complex(&mut value, |item| self.datatype(item, def.type_code))?,
            }
            if !value.is_null() {
                out.insert(key.clone(), value);
            }
            if let Some(sibling) = sibling {
                out.insert(format!("_{key}"), sibling);
            }
        }
        Ok((out.len() > 1).then_some(Value::Object(out)))
    }
}

/// Takes the `_name` members (primitive extensions) out of `object`, in order, so that each
/// can be walked with its primitive; most objects have none, and then nothing is allocated.
fn take_siblings(object: &mut Map<String, Value>) -> Vec<(String, Value)> {
    if !object.keys().any(|k| k.starts_with('_')) {
        return Vec::new();
    }
    let keys: Vec<String> = object
        .keys()
        .filter(|k| k.starts_with('_') && k.len() > 1)
        .cloned()
        .collect();
    keys.into_iter()
        .filter_map(|k| object.shift_remove(&k).map(|v| (k, v)))
        .collect()
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
