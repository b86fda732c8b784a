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

use super::care::{self, ALLERGIES, Allergy, CHRONIC, Chronic, ChronicKind};
use super::codes::{
    self, ACT_CODE, Code, IDENTIFIER_TYPE, MARITAL_STATUS, MRN, PARTICIPATION_TYPE, SSN,
};
use super::directory::{Clinician, Directory, Org, OrgKey, Specialty};
use super::fhir::{self, age_on, entry, pick, pick_slice, reference_to};
use super::names::{self, TOWNS};
use super::sensitive::{self, Sensitive};

/// The birth-place extension of a patient who moved into the demo region.
const BIRTH_PLACE: &str = "http://hl7.org/fhir/StructureDefinition/patient-birthPlace";
/// Everything is dated relative to this day, never to the wall clock.
pub(super) const REFERENCE_DATE: Date = date!(2026 - 01 - 01);
/// First day an encounter may start.
const FIRST_VISIT: Date = date!(2015 - 01 - 01);
/// Last day a visit date is drawn for. Spacing visits apart can push the last of eight up to
/// 56 days later, which still ends the longest hospital stay inside 2025; illnesses that would
/// outlast [`REFERENCE_DATE`] are simply left active.
const LAST_VISIT: Date = date!(2025 - 09 - 30);
/// Minimum days between visit starts; longer than the longest hospital stay.
const MIN_GAP_DAYS: i64 = 8;
/// Birth dates span these days; visits start once the patient is an adult, so everyone is
/// 18–90 at their visits.
const EARLIEST_BIRTH: Date = date!(1935 - 01 - 01);
const LATEST_BIRTH: Date = date!(2005 - 12 - 31);
/// Days from birth until certainly past the 18th birthday (18 years hold at most five leap days).
const ADULT_AFTER_DAYS: i64 = 18 * 365 + 5;
/// Upper bound on a patient bundle's entries; optional items are dropped to stay under it.
const MAX_ENTRIES: usize = 120;
/// Entries kept in reserve for each visit still to come (an ordinary visit's required items).
const VISIT_RESERVE: usize = 12;
/// Entries kept in reserve for the rest of the current visit (refills, note).
const TAIL_RESERVE: usize = 6;

/// Fixed facts about the patient, decided before any encounter.
pub(super) struct Person<'d> {
    pub(super) id: Uuid,
    given: &'static str,
    family: &'static str,
    /// "Given Family", for reference displays.
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
        self.allergy
            .is_some_and(|a| a.code == care::PENICILLIN_ALLERGY)
            && care::PENICILLIN_CLASS.contains(med)
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
        self.start + Duration::minutes((total as f64 * frac.clamp(0.0, 1.0)).round() as i64)
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
    /// Visits still to come after the current one, for the size budget.
    pub(super) visits_left: usize,
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
    let mut g = Gen {
        rng,
        dir,
        person,
        entries: Vec::with_capacity(MAX_ENTRIES),
        vaccines: Vec::new(),
        colonoscopy_done: false,
        visits_left: 0,
    };
    g.patient_resource(seed, index);

    let schedule = g.schedule();
    let count = schedule.len();
    for (n, (start, visit)) in schedule.into_iter().enumerate() {
        g.visits_left = count - n - 1;
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
    let given = if female {
        *pick(rng, &names::GIVEN_FEMALE)
    } else {
        *pick(rng, &names::GIVEN_MALE)
    };
    let family = *pick(rng, &names::FAMILY);
    let birth = EARLIEST_BIRTH
        + Duration::days(rng.random_range(0..=(LATEST_BIRTH - EARLIEST_BIRTH).whole_days()));
    let height_cm = if female {
        fhir::sample(rng, 152.0, 176.0, 1)
    } else {
        fhir::sample(rng, 164.0, 192.0, 1)
    };
    let bmi = rng.random_range(19.0..33.0);
    let height_m = height_cm / 100.0;
    let weight_kg = fhir::round(bmi * height_m * height_m, 1);
    let org = dir.org(if rng.random_bool(0.5) {
        OrgKey::FamilyPractice
    } else {
        OrgKey::MedicalGroup
    });
    let local: Vec<&Clinician> = dir
        .clinicians
        .iter()
        .filter(|c| {
            c.org == org.key
                && matches!(
                    c.specialty,
                    Specialty::FamilyPractice | Specialty::GeneralMedicine
                )
        })
        .collect();
    let gp = pick_slice(rng, &local)
        .copied()
        .unwrap_or_else(|| dir.specialist(Specialty::FamilyPractice));
    // Prevalence doubles for the over-50s (age taken at the reference date), a coarse but
    // recognisable age gradient.
    let older = age_on(birth, REFERENCE_DATE) >= 50;
    let mut chronic = Vec::new();
    for def in &CHRONIC {
        if rng.random_bool(if older {
            def.prevalence * 2.0
        } else {
            def.prevalence
        }) {
            let med = pick_slice(rng, def.meds).copied();
            chronic.push(ChronicState {
                def,
                condition: None,
                med,
            });
        }
    }
    let allergy = if rng.random_bool(0.2) {
        Some(pick(rng, &ALLERGIES))
    } else {
        None
    };
    Person {
        id: fhir::new_id(rng),
        given,
        family,
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

    /// Whether an optional item of `size` entries still fits the bundle's size budget, keeping
    /// room for the rest of this visit and for every visit still to come.
    pub(super) fn room_for(&self, size: usize) -> bool {
        self.entries.len() + size + TAIL_RESERVE + self.visits_left * VISIT_RESERVE <= MAX_ENTRIES
    }

    /// The patient's age on `day`.
    pub(super) fn age(&self, day: Date) -> i32 {
        age_on(self.person.birth, day)
    }

    fn patient_resource(&mut self, seed: u64, index: usize) {
        let p = &self.person;
        let mut town = *pick(&mut self.rng, &TOWNS);
        // Decided on a stream of its own, after the draw above, so that every other value of
        // every patient is what it was before moved patients existed.
        let hometown = super::hometown(seed, index);
        if let Some(moved) = hometown {
            town = moved.town;
        }
        let line = format!(
            "{} {} {}",
            self.rng.random_range(10..9999u32),
            pick(&mut self.rng, &names::STREET),
            pick(&mut self.rng, &names::STREET_KIND)
        );
        let marital = *pick(
            &mut self.rng,
            &[
                ("M", "Married"),
                ("S", "Never Married"),
                ("D", "Divorced"),
                ("W", "Widowed"),
            ],
        );
        // MRNs and SSNs follow the patient index, so they are unique within a data set; the MRN
        // also carries the seed so two data sets can share a database.
        let mrn = format!("{:04}-{:07}", seed % 10_000, index + 1);
        let ssn = format!(
            "999-{:02}-{:04}",
            1 + (index / 9_999) % 99,
            1 + index % 9_999
        );
        let mut resource = json!({
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
            "name": [{ "use": "official", "family": p.family, "given": [p.given] }],
            "telecom": [{ "system": "phone", "value": fhir::phone(&mut self.rng, &town), "use": "home" }],
            "gender": if p.female { "female" } else { "male" },
            "birthDate": fhir::date(p.birth),
            "address": [fhir::address("home", &line, &town)],
            "maritalStatus": fhir::simple_concept(MARITAL_STATUS, marital.0, marital.1),
            "generalPractitioner": [reference_to(p.gp.id, &p.gp.display)],
            "managingOrganization": reference_to(p.org.id, p.org.name),
        });
        if let (Some(moved), Some(fields)) = (hometown, resource.as_object_mut()) {
            fields.shift_insert(
                2,
                "extension".into(),
                json!([{
                    "url": BIRTH_PLACE,
                    "valueAddress": {
                        "city": moved.birth_city,
                        "state": moved.birth_state,
                        "country": "US",
                    },
                }]),
            );
        }
        let id = self.person.id;
        self.push("Patient", id, resource);
    }

    /// Draws the encounter dates and what each becomes, in chronological order.
    fn schedule(&mut self) -> Vec<(PrimitiveDateTime, Visit)> {
        let childbearing = self.person.female && age_on(self.person.birth, FIRST_VISIT) <= 44;
        let sensitive: Vec<Sensitive> = Sensitive::ALL
            .into_iter()
            .filter(|s| self.rng.random_bool(s.share(childbearing)))
            .collect();
        // Room for every sensitive visit after the intake check-up, without exceeding eight.
        let count = self.rng.random_range(3..=8usize).max(sensitive.len() + 1);
        let first = FIRST_VISIT.max(self.person.birth + Duration::days(ADULT_AFTER_DAYS));
        let span = (LAST_VISIT - first).whole_days();
        let mut starts: Vec<PrimitiveDateTime> = (0..count)
            .map(|_| {
                let day = first + Duration::days(self.rng.random_range(0..=span));
                // Office hours, on the quarter hour.
                day.midnight() + Duration::minutes(8 * 60 + 15 * self.rng.random_range(0..36i64))
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
        for kind in sensitive {
            // Reproductive-health visits go, where possible, to a date on which a pregnancy is
            // plausible; every other kind takes the next free slot.
            let fits = |slot: &usize| {
                kind == Sensitive::Reproductive
                    && self.person.female
                    && starts
                        .get(*slot)
                        .is_some_and(|s| (18..=44).contains(&age_on(self.person.birth, s.date())))
            };
            let chosen = slots.iter().position(fits).unwrap_or(0);
            if chosen < slots.len() {
                let slot = slots.remove(chosen);
                if let Some(v) = visits.get_mut(slot) {
                    *v = Visit::Sensitive(kind);
                }
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
        let enc = Enc {
            id: self.new_id(),
            start,
            end: start + duration,
            clinician,
            org,
            kind,
            assessment: Vec::new(),
            plan: Vec::new(),
        };
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
}

/// `Encounter.class` codes.
pub(super) const AMBULATORY: (&str, &str) = ("AMB", "ambulatory");
pub(super) const EMERGENCY: (&str, &str) = ("EMER", "emergency");
pub(super) const INPATIENT: (&str, &str) = ("IMP", "inpatient encounter");
