//! The ordinary visits: check-ups, acute illness, chronic follow-up, emergency and inpatient
//! care, and the chronic-disease, vaccination and lab logic they share.
//!
//! Optional items (extra panels, vaccines, screening procedures) go through
//! [`Gen::room_for`], so a patient with many visits still fits the bundle size budget.

use rand::Rng;
use time::macros::date;
use time::{Duration, PrimitiveDateTime};
use uuid::Uuid;

use super::care::{self, Acute, ChronicKind};
use super::codes::{self, Code, Panel};
use super::directory::{OrgKey, Specialty};
use super::fhir::{self, pick, pick_slice};
use super::patient::{AMBULATORY, EMERGENCY, Enc, Gen, INPATIENT};

impl<'d> Gen<'d> {
    /// An ambulatory visit with the patient's own GP.
    fn open_office(&mut self, start: PrimitiveDateTime, minutes_long: i64, kind: Code) -> Enc<'d> {
        let (gp, org) = (self.person.gp, self.person.org);
        self.open(
            start,
            Duration::minutes(minutes_long),
            AMBULATORY,
            kind,
            gp,
            org,
        )
    }

    /// A check-up; the `intake` one (always the first visit) records the problem list and
    /// allergy and draws baseline bloods.
    pub(super) fn check_up(&mut self, start: PrimitiveDateTime, intake: bool) {
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
        if intake {
            // Baseline bloods for a new patient: a blood count, and lipids from 35.
            self.optional_panel(&mut enc, &codes::CBC);
            self.optional_panel(
                &mut enc,
                if age >= 35 {
                    &codes::LIPIDS
                } else {
                    &codes::BMP
                },
            );
        } else if age >= 35 && self.rng.random_bool(0.4) {
            self.optional_panel(&mut enc, &codes::LIPIDS);
        } else if self.rng.random_bool(0.2) {
            self.optional_panel(&mut enc, &codes::CBC);
        }
        if self.person.has(ChronicKind::Diabetes) && self.room_for(1) {
            self.hba1c(&mut enc);
        }
        self.vaccinate(&mut enc);
        if age >= 50 && !self.colonoscopy_done && self.room_for(1) && self.rng.random_bool(0.15) {
            self.colonoscopy_done = true;
            self.procedure(&mut enc, &care::COLONOSCOPY, None);
        }
        let note = if intake {
            codes::NOTE_HISTORY_PHYSICAL
        } else {
            codes::NOTE_PROGRESS
        };
        self.note(&enc, &[note], None, None);
    }

    /// An office visit for a short illness.
    pub(super) fn acute_visit(&mut self, start: PrimitiveDateTime) {
        let minutes_long = self.rng.random_range(15..=30);
        let mut enc = self.open_office(start, minutes_long, codes::ENC_SYMPTOM);
        let illness = *pick(&mut self.rng, &care::ACUTE_OFFICE);
        self.treat_acute(&mut enc, &illness, false);
        self.note(&enc, &[codes::NOTE_PROGRESS], None, None);
    }

    /// A chronic-disease follow-up: monitoring labs and prescription renewals.
    pub(super) fn follow_up(&mut self, start: PrimitiveDateTime) {
        let mut enc = self.open_office(start, 25, codes::ENC_FOLLOW_UP);
        self.blood_pressure(&enc);
        self.vital(&enc, &codes::HEART_RATE, None);
        let weight = self.current_weight();
        self.vital(&enc, &codes::WEIGHT, Some(weight));
        if self.person.has(ChronicKind::Diabetes) && self.room_for(1) {
            self.hba1c(&mut enc);
        }
        if self.person.has(ChronicKind::Hypertension) && self.rng.random_bool(0.4) {
            self.optional_panel(&mut enc, &codes::BMP);
        }
        if self.person.has(ChronicKind::Hyperlipidemia) && self.rng.random_bool(0.3) {
            self.optional_panel(&mut enc, &codes::LIPIDS);
        }
        if self.person.has(ChronicKind::Asthma) && self.room_for(1) && self.rng.random_bool(0.3) {
            self.procedure(&mut enc, &care::SPIROMETRY, None);
        }
        self.refill_chronic(&mut enc);
        self.note(&enc, &[codes::NOTE_PROGRESS], None, None);
    }

    /// An emergency-department visit at the hospital.
    pub(super) fn emergency(&mut self, start: PrimitiveDateTime) {
        let hours = self.rng.random_range(2..=6);
        let doctor = self.dir.staff(OrgKey::Hospital, Specialty::Emergency);
        let hospital = self.dir.org(OrgKey::Hospital);
        let mut enc = self.open(
            start,
            Duration::hours(hours),
            EMERGENCY,
            codes::ENC_EMERGENCY,
            doctor,
            hospital,
        );
        let illness = *pick(&mut self.rng, &care::ACUTE_EMERGENCY);
        self.treat_acute(&mut enc, &illness, true);
        if self.rng.random_bool(0.5) {
            self.optional_panel(&mut enc, &codes::CBC);
        }
        self.note(&enc, &[codes::NOTE_EMERGENCY], None, None);
    }

    /// An inpatient stay of two to six days at the hospital.
    pub(super) fn admission(&mut self, start: PrimitiveDateTime) {
        let illness = *pick(&mut self.rng, &care::ACUTE_INPATIENT);
        let specialty = if illness.dx.snomed == care::MYOCARDIAL_INFARCTION.snomed {
            Specialty::Cardiology
        } else {
            Specialty::GeneralMedicine
        };
        let doctor = self.dir.staff(OrgKey::Hospital, specialty);
        let hospital = self.dir.org(OrgKey::Hospital);
        let hours = self.rng.random_range(2..=6) * 24 + self.rng.random_range(0..8);
        let mut enc = self.open(
            start,
            Duration::hours(hours),
            INPATIENT,
            codes::ENC_ADMISSION,
            doctor,
            hospital,
        );
        self.treat_acute(&mut enc, &illness, true);
        self.optional_panel(&mut enc, &codes::CBC);
        self.optional_panel(&mut enc, &codes::BMP);
        self.note(&enc, &[codes::NOTE_DISCHARGE], None, None);
    }

    /// Diagnoses, examines and treats an acute illness; `hospital` adds SpO2 and the
    /// illness's full treatment rather than a single prescription.
    fn treat_acute(&mut self, enc: &mut Enc<'d>, illness: &Acute, hospital: bool) {
        let days = self
            .rng
            .random_range(illness.lasts_days.0..=illness.lasts_days.1);
        let condition = self.condition(enc, &illness.dx, Some(enc.end + Duration::days(days)));
        self.blood_pressure(enc);
        self.vital(enc, &codes::HEART_RATE, None);
        self.vital(enc, &codes::RESPIRATORY_RATE, None);
        let temperature = if illness.fever {
            fhir::sample(&mut self.rng, 37.8, 39.2, 1)
        } else {
            fhir::sample(&mut self.rng, 36.2, 37.3, 1)
        };
        self.vital(enc, &codes::TEMPERATURE, Some(temperature));
        if hospital {
            self.vital(enc, &codes::SPO2, None);
        }
        if let Some(code) = illness.procedure {
            self.procedure(enc, &code, Some(condition));
        }
        let allowed: Vec<Code> = illness
            .meds
            .iter()
            .copied()
            .filter(|m| !self.person.must_avoid(m))
            .collect();
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
            let Some(state) = self.person.chronic.get(n) else {
                continue;
            };
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
        self.procedure(enc, &care::MED_RECONCILIATION, None);
    }

    /// A laboratory panel, if the bundle's size budget allows it.
    fn optional_panel(&mut self, enc: &mut Enc<'d>, panel: &Panel) {
        if self.room_for(panel.members.len() + 1) {
            self.panel(enc, panel);
        }
    }

    /// Height, weight, BMI, blood pressure, heart rate, respiratory rate and temperature.
    fn full_vitals(&mut self, enc: &Enc<'d>) {
        let weight = self.current_weight();
        let height = self.person.height_cm;
        self.vital(enc, &codes::HEIGHT, Some(height));
        self.vital(enc, &codes::WEIGHT, Some(weight));
        let height_m = height / 100.0;
        let bmi = fhir::round(weight / (height_m * height_m), 1);
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
        if flu_season && self.room_for(1) && self.rng.random_bool(0.7) {
            self.immunization(enc, &care::VACCINE_FLU);
        }
        let once: [(Code, bool, f64); 3] = [
            (care::VACCINE_TDAP, true, 0.15),
            (care::VACCINE_PNEUMOCOCCAL, age >= 65, 0.5),
            (
                care::VACCINE_ZOSTER,
                age >= 50 && day >= date!(2018 - 01 - 01),
                0.3,
            ),
        ];
        for (vaccine, eligible, chance) in once {
            if eligible
                && !self.vaccines.contains(&vaccine.code)
                && self.room_for(1)
                && self.rng.random_bool(chance)
            {
                self.immunization(enc, &vaccine);
            }
        }
        let covid_doses = self
            .vaccines
            .iter()
            .filter(|c| **c == care::VACCINE_COVID.code)
            .count();
        if day >= date!(2021 - 01 - 01)
            && covid_doses < 2
            && self.room_for(1)
            && self.rng.random_bool(0.5)
        {
            self.immunization(enc, &care::VACCINE_COVID);
        }
    }
}
