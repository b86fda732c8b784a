//! One patient's bundle: demographics, the visit schedule, and the ordinary visits.
//!
//! A patient is an adult with a primary-care practice, a few chronic conditions drawn by age,
//! maybe an allergy, and 3–8 encounters spread over 2015–2025. The first encounter is always a
//! check-up, where the chronic problems and the allergy are recorded; later ones are check-ups,
//! acute visits, chronic follow-ups, emergency visits, admissions, or one of the sensitive
//! visits in [`super::sensitive`].

use rand::Rng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use time::macros::date;
use time::{Date, Duration, PrimitiveDateTime};
use uuid::Uuid;

use super::codes::{
    self, ACT_CODE, ALLERGIES, Acute, Allergy, CHRONIC, Chronic, ChronicKind, Code, IDENTIFIER_TYPE,
    MARITAL_STATUS, MRN, PARTICIPATION_TYPE, SSN,
};
use super::directory::{Clinician, Directory, Org, OrgKey, Specialty};
use super::fhir::{self, age_on, entry, minutes, pick, pick_slice, reference_to};
use super::names::{self, TOWNS};
use super::sensitive::{self, Sensitive};

/// Everything is dated relative to this day, never to the wall clock.
pub(super) const REFERENCE_DATE: Date = date!(2026 - 01 - 01);
/// First day an encounter may start.
const FIRST_VISIT: Date = date!(2015 - 01 - 01);
/// Last day an encounter may start; late enough for 2025 data, early enough that recoveries
/// and inpatient stays still end before [`REFERENCE_DATE`].
const LAST_VISIT: Date = date!(2025 - 09 - 30);
/// Minimum days between visit starts; longer than the longest hospital stay.
const MIN_GAP_DAYS: i64 = 8;
/// Birth dates span these days, so every patient is an adult (18–90) throughout 2015–2025.
const EARLIEST_BIRTH: Date = date!(1935 - 01 - 01);
const LATEST_BIRTH: Date = date!(1996 - 12 - 31);

/// Fixed facts about the patient, decided before any encounter.
pub(super) struct Person<'d> {
    pub(super) id: Uuid,
    pub(super) display: String,
    pub(super) female: bool,
    pub(super) birth: Date,
    pub(super) height_cm: f64,
    pub(super) weight_kg: f64,
    pub(super) org: &'d Org,
    pub(super) gp: &'d Clinician,
    pub(super) allergy: Option<&'static Allergy>,
    pub(super) chronic: Vec<ChronicState>,
}

/// A chronic condition of this patient and what has been recorded about it so far.
pub(super) struct ChronicState {
    pub(super) def: &'static Chronic,
    /// The Condition's id once diagnosed.
    pub(super) condition: Option<Uuid>,
    /// The standing prescription, chosen once so refills stay on the same drug.
    pub(super) med: Option<Code>,
}

impl Person<'_> {
    /// Whether the patient has `kind`.
    pub(super) fn has(&self, kind: ChronicKind) -> bool {
        self.chronic.iter().any(|c| c.def.kind == kind)
    }

    /// Whether a drug must be withheld because of a recorded penicillin allergy.
    pub(super) fn must_avoid(&self, med: &Code) -> bool {
        self.allergy.is_some_and(|a| a.code == codes::PENICILLIN_ALLERGY)
            && codes::PENICILLIN_CLASS.contains(med)
    }
}

/// One encounter in progress: its id, period, clinician and organisation.
pub(super) struct Enc<'d> {
    pub(super) id: Uuid,
    pub(super) start: PrimitiveDateTime,
    pub(super) end: PrimitiveDateTime,
    pub(super) clinician: &'d Clinician,
    pub(super) org: &'d Org,
    pub(super) kind: Code,
    /// Diagnoses made, for the visit note.
    pub(super) assessment: Vec<&'static str>,
    /// Orders and advice, for the visit note.
    pub(super) plan: Vec<String>,
}

impl Enc<'_> {
    /// The instant a fraction `frac` (0..=1) of the way through the encounter, to the minute,
    /// so that everything recorded in it falls inside its period.
    pub(super) fn at(&self, frac: f64) -> PrimitiveDateTime {
        let total = (self.end - self.start).whole_minutes();
        self.start + minutes((total as f64 * frac.clamp(0.0, 1.0)).round() as i64)
    }

    /// The calendar day the encounter starts on.
    pub(super) fn day(&self) -> Date {
        self.start.date()
    }
}

/// The generator state for one patient.
pub(super) struct Gen<'d> {
    pub(super) rng: ChaCha8Rng,
    pub(super) dir: &'d Directory,
    pub(super) person: Person<'d>,
    pub(super) entries: Vec<Value>,
    /// Vaccines given so far, to keep once-only vaccines once-only.
    pub(super) vaccines: Vec<&'static str>,
    pub(super) colonoscopy_done: bool,
}

/// What kind of visit a scheduled slot becomes.
#[derive(Clone, Copy, Debug)]
enum Visit {
    CheckUp,
    Acute,
    FollowUp,
    Emergency,
    Inpatient,
    Sensitive(Sensitive),
}

/// The bundle for patient `index` under `seed`.
pub(super) fn bundle(dir: &Directory, seed: u64, index: usize) -> Value {
    let mut rng = super::patient_rng(seed, index);
    let person = new_person(&mut rng, dir);
    let mut g = Gen { rng, dir, person, entries: Vec::with_capacity(96), vaccines: Vec::new(), colonoscopy_done: false };
    g.patient_resource(seed, index);

    let schedule = g.schedule();
    for (n, (start, visit)) in schedule.into_iter().enumerate() {
        match visit {
            Visit::CheckUp => g.check_up(start, n == 0),
            Visit::Acute => g.acute_visit(start),
            Visit::FollowUp => g.follow_up(start),
            Visit::Emergency => g.emergency(start),
            Visit::Inpatient => g.admission(start),
            Visit::Sensitive(kind) => sensitive::visit(&mut g, kind, start),
        }
    }
    fhir::transaction(g.entries)
}

fn new_person<'d>(rng: &mut ChaCha8Rng, dir: &'d Directory) -> Person<'d> {
    let female = rng.random_bool(0.5);
    let given = if female { *pick(rng, &names::GIVEN_FEMALE) } else { *pick(rng, &names::GIVEN_MALE) };
    let family = *pick(rng, &names::FAMILY);
    let birth = EARLIEST_BIRTH + Duration::days(rng.random_range(0..=(LATEST_BIRTH - EARLIEST_BIRTH).whole_days()));
    let height_cm = if female { fhir::sample(rng, 152.0, 176.0, 1) } else { fhir::sample(rng, 164.0, 192.0, 1) };
    let bmi = rng.random_range(19.0..33.0);
    let weight_kg = fhir::round(bmi * (height_cm / 100.0).powi(2), 1);
    let org = dir.org(if rng.random_bool(0.5) { OrgKey::FamilyPractice } else { OrgKey::MedicalGroup });
    let local: Vec<&Clinician> = dir
        .clinicians
        .iter()
        .filter(|c| c.org == org.key && matches!(c.specialty, Specialty::FamilyPractice | Specialty::GeneralMedicine))
        .collect();
    let gp = pick_slice(rng, &local).copied().unwrap_or_else(|| dir.specialist(Specialty::FamilyPractice));
    // Prevalence doubles for the over-50s (age taken at the reference date), a coarse but
    // recognisable age gradient.
    let older = age_on(birth, REFERENCE_DATE) >= 50;
    let mut chronic = Vec::new();
    for def in &CHRONIC {
        if rng.random_bool(if older { def.prevalence * 2.0 } else { def.prevalence }) {
            let med = pick_slice(rng, def.meds).copied();
            chronic.push(ChronicState { def, condition: None, med });
        }
    }
    let allergy = if rng.random_bool(0.2) { Some(pick(rng, &ALLERGIES)) } else { None };
    Person {
        id: fhir::new_id(rng),
        display: format!("{given} {family}"),
        female,
        birth,
        height_cm,
        weight_kg,
        org,
        gp,
        allergy,
        chronic,
    }
}

impl<'d> Gen<'d> {
    /// A fresh resource id from this patient's stream.
    pub(super) fn new_id(&mut self) -> Uuid {
        fhir::new_id(&mut self.rng)
    }

    /// Appends a resource as a transaction entry.
    pub(super) fn push(&mut self, resource_type: &str, id: Uuid, resource: Value) {
        self.entries.push(entry(resource_type, id, resource));
    }

    /// The patient's age on `day`.
    pub(super) fn age(&self, day: Date) -> i32 {
        age_on(self.person.birth, day)
    }

    fn patient_resource(&mut self, seed: u64, index: usize) {
        let p = &self.person;
        let (given, family) = p.display.split_once(' ').unwrap_or((p.display.as_str(), ""));
        let town = *pick(&mut self.rng, &TOWNS);
        let line = format!(
            "{} {} {}",
            self.rng.random_range(10..9999u32),
            pick(&mut self.rng, &names::STREET),
            pick(&mut self.rng, &names::STREET_KIND)
        );
        let marital = *pick(&mut self.rng, &[("M", "Married"), ("S", "Never Married"), ("D", "Divorced"), ("W", "Widowed")]);
        // MRNs and SSNs follow the patient index, so they are unique within a data set; the MRN
        // also carries the seed so two data sets can share a database.
        let mrn = format!("{:04}-{:07}", seed % 10_000, index + 1);
        let ssn = format!("999-{:02}-{:04}", 1 + (index / 9_999) % 99, 1 + index % 9_999);
        let resource = json!({
            "resourceType": "Patient",
            "id": p.id.to_string(),
            "identifier": [
                {
                    "use": "usual",
                    "type": fhir::simple_concept(IDENTIFIER_TYPE, "MR", "Medical record number"),
                    "system": MRN,
                    "value": mrn,
                    "assigner": reference_to(p.org.id, p.org.name),
                },
                {
                    "use": "official",
                    "type": fhir::simple_concept(IDENTIFIER_TYPE, "SS", "Social Security number"),
                    "system": SSN,
                    "value": ssn,
                },
            ],
            "active": true,
            "name": [{ "use": "official", "family": family, "given": [given] }],
            "telecom": [{ "system": "phone", "value": fhir::phone(&mut self.rng, &town), "use": "home" }],
            "gender": if p.female { "female" } else { "male" },
            "birthDate": fhir::date(p.birth),
            "address": [fhir::address("home", &line, &town)],
            "maritalStatus": fhir::simple_concept(MARITAL_STATUS, marital.0, marital.1),
            "generalPractitioner": [reference_to(p.gp.id, &p.gp.display)],
            "managingOrganization": reference_to(p.org.id, p.org.name),
        });
        let id = self.person.id;
        self.push("Patient", id, resource);
    }

    /// Draws the encounter dates and what each becomes, in chronological order.
    fn schedule(&mut self) -> Vec<(PrimitiveDateTime, Visit)> {
        let sensitive: Vec<Sensitive> =
            Sensitive::ALL.into_iter().filter(|s| self.rng.random_bool(s.share())).collect();
        // Room for every sensitive visit after the intake check-up, without exceeding eight.
        let count = self.rng.random_range(3..=8usize).max(sensitive.len() + 1);
        let span = (LAST_VISIT - FIRST_VISIT).whole_days();
        let mut starts: Vec<PrimitiveDateTime> = (0..count)
            .map(|_| {
                let day = FIRST_VISIT + Duration::days(self.rng.random_range(0..=span));
                // Office hours, on the quarter hour.
                day.midnight() + minutes(8 * 60 + 15 * self.rng.random_range(0..36i64))
            })
            .collect();
        starts.sort();
        // At least a week between visits, so no visit falls inside an earlier hospital stay.
        for n in 1..starts.len() {
            let earliest = starts[n - 1] + Duration::days(MIN_GAP_DAYS);
            if let Some(start) = starts.get_mut(n)
                && *start < earliest
            {
                *start = earliest;
            }
        }

        let has_chronic = !self.person.chronic.is_empty();
        let mut visits: Vec<Visit> = (0..count)
            .map(|n| {
                if n == 0 {
                    return Visit::CheckUp;
                }
                match self.rng.random_range(0..100u32) {
                    0..35 => Visit::CheckUp,
                    35..65 => Visit::Acute,
                    65..85 if has_chronic => Visit::FollowUp,
                    65..85 => Visit::CheckUp,
                    85..95 => Visit::Emergency,
                    _ => Visit::Inpatient,
                }
            })
            .collect();
        let mut slots: Vec<usize> = (1..count).collect();
        slots.shuffle(&mut self.rng);
        for (slot, kind) in slots.into_iter().zip(sensitive) {
            if let Some(v) = visits.get_mut(slot) {
                *v = Visit::Sensitive(kind);
            }
        }
        starts.into_iter().zip(visits).collect()
    }

    /// Writes the Encounter resource and returns its context for the resources recorded in it.
    pub(super) fn open(
        &mut self,
        start: PrimitiveDateTime,
        duration: Duration,
        class: (&str, &str),
        kind: Code,
        clinician: &'d Clinician,
        org: &'d Org,
    ) -> Enc<'d> {
        let enc = Enc { id: self.new_id(), start, end: start + duration, clinician, org, kind, assessment: Vec::new(), plan: Vec::new() };
        let mut resource = json!({
            "resourceType": "Encounter",
            "id": enc.id.to_string(),
            "status": "finished",
            "class": { "system": ACT_CODE, "code": class.0, "display": class.1 },
            "type": [fhir::concept(&kind)],
            "subject": reference_to(self.person.id, &self.person.display),
            "participant": [{
                "type": [fhir::simple_concept(PARTICIPATION_TYPE, "PPRF", "primary performer")],
                "period": fhir::period(enc.start, enc.end),
                "individual": reference_to(clinician.id, &clinician.display),
            }],
            "period": fhir::period(enc.start, enc.end),
            "serviceProvider": reference_to(org.id, org.name),
        });
        if class == INPATIENT
            && let Some(fields) = resource.as_object_mut()
        {
            fields.insert(
                "hospitalization".into(),
                json!({ "dischargeDisposition": fhir::simple_concept(codes::DISCHARGE_DISPOSITION, "home", "Home") }),
            );
        }
        self.push("Encounter", enc.id, resource);
        enc
    }

    /// An ambulatory visit with the patient's own GP.
    fn open_office(&mut self, start: PrimitiveDateTime, minutes_long: i64, kind: Code) -> Enc<'d> {
        let (gp, org) = (self.person.gp, self.person.org);
        self.open(start, minutes(minutes_long), AMBULATORY, kind, gp, org)
    }

    fn check_up(&mut self, start: PrimitiveDateTime, intake: bool) {
        let mut enc = self.open_office(start, if intake { 45 } else { 30 }, codes::ENC_CHECK_UP);
        self.full_vitals(&enc);
        if intake {
            if let Some(allergy) = self.person.allergy {
                self.allergy(&mut enc, allergy);
            }
            // The intake visit puts the chronic problems on the list; later visits renew them.
            self.diagnose_chronic(&mut enc);
        } else {
            self.refill_chronic(&mut enc);
        }
        let age = self.age(enc.day());
        if age >= 35 && self.rng.random_bool(0.4) {
            self.panel(&mut enc, &codes::LIPIDS);
        } else if self.rng.random_bool(0.2) {
            self.panel(&mut enc, &codes::CBC);
        }
        if self.person.has(ChronicKind::Diabetes) {
            self.hba1c(&mut enc);
        }
        self.vaccinate(&mut enc);
        if age >= 50 && !self.colonoscopy_done && self.rng.random_bool(0.15) {
            self.colonoscopy_done = true;
            self.procedure(&mut enc, &codes::COLONOSCOPY, None);
        }
        let note = if intake { codes::NOTE_HISTORY_PHYSICAL } else { codes::NOTE_PROGRESS };
        self.note(&enc, &[note], None, None);
    }

    fn acute_visit(&mut self, start: PrimitiveDateTime) {
        let minutes_long = self.rng.random_range(15..=30);
        let mut enc = self.open_office(start, minutes_long, codes::ENC_SYMPTOM);
        let illness = *pick(&mut self.rng, &codes::ACUTE_OFFICE);
        self.treat_acute(&mut enc, &illness, false);
        self.note(&enc, &[codes::NOTE_PROGRESS], None, None);
    }

    fn follow_up(&mut self, start: PrimitiveDateTime) {
        let mut enc = self.open_office(start, 25, codes::ENC_FOLLOW_UP);
        self.blood_pressure(&enc);
        self.vital(&enc, &codes::HEART_RATE, None);
        let weight = self.current_weight();
        self.vital(&enc, &codes::WEIGHT, Some(weight));
        if self.person.has(ChronicKind::Diabetes) {
            self.hba1c(&mut enc);
        }
        if self.person.has(ChronicKind::Hypertension) && self.rng.random_bool(0.4) {
            self.panel(&mut enc, &codes::BMP);
        }
        if self.person.has(ChronicKind::Hyperlipidemia) && self.rng.random_bool(0.3) {
            self.panel(&mut enc, &codes::LIPIDS);
        }
        if self.person.has(ChronicKind::Asthma) && self.rng.random_bool(0.3) {
            self.procedure(&mut enc, &codes::SPIROMETRY, None);
        }
        self.refill_chronic(&mut enc);
        self.note(&enc, &[codes::NOTE_PROGRESS], None, None);
    }

    fn emergency(&mut self, start: PrimitiveDateTime) {
        let hours = self.rng.random_range(2..=6);
        let doctor = self.dir.specialist(Specialty::Emergency);
        let hospital = self.dir.org(OrgKey::Hospital);
        let mut enc = self.open(start, Duration::hours(hours), EMERGENCY, codes::ENC_EMERGENCY, doctor, hospital);
        let illness = *pick(&mut self.rng, &codes::ACUTE_EMERGENCY);
        self.treat_acute(&mut enc, &illness, true);
        if self.rng.random_bool(0.5) {
            self.panel(&mut enc, &codes::CBC);
        }
        self.note(&enc, &[codes::NOTE_EMERGENCY], None, None);
    }

    fn admission(&mut self, start: PrimitiveDateTime) {
        let illness = *pick(&mut self.rng, &codes::ACUTE_INPATIENT);
        let specialty = if illness.dx.snomed.code == "22298006" { Specialty::Cardiology } else { Specialty::GeneralMedicine };
        let doctor = self.dir.specialist(specialty);
        let hospital = self.dir.org(OrgKey::Hospital);
        let hours = self.rng.random_range(2..=6) * 24 + self.rng.random_range(0..8);
        let mut enc = self.open(start, Duration::hours(hours), INPATIENT, codes::ENC_ADMISSION, doctor, hospital);
        self.treat_acute(&mut enc, &illness, true);
        self.panel(&mut enc, &codes::CBC);
        self.panel(&mut enc, &codes::BMP);
        self.note(&enc, &[codes::NOTE_DISCHARGE], None, None);
    }

    /// Diagnoses, examines and treats an acute illness; `hospital` adds SpO2 and the
    /// illness's full treatment rather than a single prescription.
    fn treat_acute(&mut self, enc: &mut Enc<'d>, illness: &Acute, hospital: bool) {
        let days = self.rng.random_range(illness.lasts_days.0..=illness.lasts_days.1);
        let condition = self.condition(enc, &illness.dx, Some(enc.end + Duration::days(days)));
        self.blood_pressure(enc);
        self.vital(enc, &codes::HEART_RATE, None);
        self.vital(enc, &codes::RESPIRATORY_RATE, None);
        let temperature = if illness.fever { fhir::sample(&mut self.rng, 37.8, 39.2, 1) } else { fhir::sample(&mut self.rng, 36.2, 37.3, 1) };
        self.vital(enc, &codes::TEMPERATURE, Some(temperature));
        if hospital {
            self.vital(enc, &codes::SPO2, None);
        }
        if let Some(code) = illness.procedure {
            self.procedure(enc, &code, Some(condition));
        }
        let allowed: Vec<Code> = illness.meds.iter().copied().filter(|m| !self.person.must_avoid(m)).collect();
        if hospital {
            for med in &allowed {
                self.prescription(enc, med, Some(condition), false);
            }
        } else if let Some(med) = pick_slice(&mut self.rng, &allowed).copied() {
            self.prescription(enc, &med, Some(condition), false);
        }
    }

    /// Records each chronic condition not yet on the problem list, with its first prescription.
    fn diagnose_chronic(&mut self, enc: &mut Enc<'d>) {
        for n in 0..self.person.chronic.len() {
            let Some(state) = self.person.chronic.get(n) else { continue };
            if state.condition.is_some() {
                continue;
            }
            let (dx, med) = (state.def.dx, state.med);
            let id = self.condition(enc, &dx, None);
            if let Some(med) = med {
                self.prescription(enc, &med, Some(id), true);
            }
            if let Some(state) = self.person.chronic.get_mut(n) {
                state.condition = Some(id);
            }
        }
    }

    /// Renews the standing prescription of every diagnosed chronic condition.
    fn refill_chronic(&mut self, enc: &mut Enc<'d>) {
        let due: Vec<(Code, Uuid)> = self
            .person
            .chronic
            .iter()
            .filter_map(|c| Some((c.med?, c.condition?)))
            .collect();
        if due.is_empty() {
            return;
        }
        for (med, reason) in &due {
            self.prescription(enc, med, Some(*reason), true);
        }
        self.procedure(enc, &codes::MED_RECONCILIATION, None);
    }

    /// Height, weight, BMI, blood pressure, heart rate, respiratory rate and temperature.
    fn full_vitals(&mut self, enc: &Enc<'d>) {
        let weight = self.current_weight();
        let height = self.person.height_cm;
        self.vital(enc, &codes::HEIGHT, Some(height));
        self.vital(enc, &codes::WEIGHT, Some(weight));
        let bmi = fhir::round(weight / (height / 100.0).powi(2), 1);
        self.vital(enc, &codes::BMI, Some(bmi));
        self.blood_pressure(enc);
        self.vital(enc, &codes::HEART_RATE, None);
        self.vital(enc, &codes::RESPIRATORY_RATE, None);
        self.vital(enc, &codes::TEMPERATURE, None);
    }

    /// The patient's weight today: their baseline give or take a few kilograms.
    pub(super) fn current_weight(&mut self) -> f64 {
        let base = self.person.weight_kg;
        fhir::sample(&mut self.rng, base - 3.0, base + 3.0, 1)
    }

    /// Gives the vaccines due at this check-up, by season, age and licensing date.
    fn vaccinate(&mut self, enc: &mut Enc<'d>) {
        let day = enc.day();
        let age = self.age(day);
        let flu_season = matches!(u8::from(day.month()), 1..=3 | 9..=12);
        if flu_season && self.rng.random_bool(0.7) {
            self.immunization(enc, &codes::VACCINE_FLU);
        }
        let once: [(Code, bool, f64); 3] = [
            (codes::VACCINE_TDAP, true, 0.15),
            (codes::VACCINE_PNEUMOCOCCAL, age >= 65, 0.5),
            (codes::VACCINE_ZOSTER, age >= 50 && day >= date!(2018 - 01 - 01), 0.3),
        ];
        for (vaccine, eligible, chance) in once {
            if eligible && !self.vaccines.contains(&vaccine.code) && self.rng.random_bool(chance) {
                self.immunization(enc, &vaccine);
            }
        }
        let covid_doses = self.vaccines.iter().filter(|c| **c == codes::VACCINE_COVID.code).count();
        if day >= date!(2021 - 01 - 01) && covid_doses < 2 && self.rng.random_bool(0.5) {
            self.immunization(enc, &codes::VACCINE_COVID);
        }
    }
}

/// `Encounter.class` codes.
pub(super) const AMBULATORY: (&str, &str) = ("AMB", "ambulatory");
const EMERGENCY: (&str, &str) = ("EMER", "emergency");
const INPATIENT: (&str, &str) = ("IMP", "inpatient encounter");
