//! The sensitive visits: substance use, HIV, mental health, reproductive and sexual health,
//! and genetic testing.
//!
//! Each is an ordinary-looking encounter whose content is recognisable as sensitive from its
//! codes alone (see the sensitive section of [`super::codes`]). No `meta.security` labels are
//! set here: the gateway's labeller is expected to derive them at ingest.

use rand::Rng;
use time::{Duration, PrimitiveDateTime};

use super::clinical::ObsValue;
use super::codes::{self, ENC_CONSULT};
use super::directory::{OrgKey, Specialty};
use super::patient::{AMBULATORY, Gen};

/// The categories of sensitive information the generator produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Sensitive {
    SubstanceUse,
    Hiv,
    MentalHealth,
    Reproductive,
    Genetic,
}

impl Sensitive {
    /// Every category, in a fixed order so draws stay reproducible.
    pub(super) const ALL: [Self; 5] =
        [Self::SubstanceUse, Self::Hiv, Self::MentalHealth, Self::Reproductive, Self::Genetic];

    /// The share of patients with a visit of this kind: well above real prevalence, so that a
    /// ten-patient demo already exercises most consent rules.
    pub(super) fn share(self) -> f64 {
        match self {
            Self::SubstanceUse => 0.2,
            Self::Hiv => 0.1,
            Self::MentalHealth => 0.3,
            Self::Reproductive => 0.25,
            Self::Genetic => 0.15,
        }
    }
}

/// Writes a sensitive visit of `kind` starting at `start`.
pub(super) fn visit(g: &mut Gen<'_>, kind: Sensitive, start: PrimitiveDateTime) {
    match kind {
        Sensitive::SubstanceUse => substance_use(g, start),
        Sensitive::Hiv => hiv(g, start),
        Sensitive::MentalHealth => mental_health(g, start),
        Sensitive::Reproductive => reproductive(g, start),
        Sensitive::Genetic => genetic(g, start),
    }
}

/// Alcohol and/or opioid use disorder at the behavioural-health clinic; opioid use disorder
/// is treated with buprenorphine/naloxone.
fn substance_use(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::Psychiatry);
    let clinic = dir.org(OrgKey::BehavioralHealth);
    let mut enc = g.open(start, Duration::minutes(45), AMBULATORY, ENC_CONSULT, doctor, clinic);
    // 0..45 alcohol only, 45..60 both, 60..100 opioids only.
    let roll = g.rng.random_range(0..100u32);
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    if roll < 60 {
        g.condition(&mut enc, &codes::ALCOHOLISM, None);
    }
    if roll >= 45 {
        let dependence = g.condition(&mut enc, &codes::OPIOID_DEPENDENCE, None);
        g.prescription(&mut enc, &codes::BUPRENORPHINE_NALOXONE, Some(dependence), true);
    }
    enc.plan.push("Referred to the outpatient recovery programme.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// A positive HIV screen at the infectious-diseases clinic, the diagnosis, and antiretroviral
/// therapy.
fn hiv(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::InfectiousDisease);
    let hospital = dir.org(OrgKey::Hospital);
    let mut enc = g.open(start, Duration::minutes(40), AMBULATORY, codes::ENC_PROBLEM, doctor, hospital);
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    let at = enc.at(0.3);
    g.observation(&enc, "laboratory", &codes::HIV_SCREEN, ObsValue::Coded(codes::RESULT_POSITIVE), at);
    enc.plan.push(format!("{}: positive.", codes::HIV_SCREEN.display));
    let infection = g.condition(&mut enc, &codes::HIV, None);
    g.prescription(&mut enc, &codes::BICTEGRAVIR_COMBINATION, Some(infection), true);
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// Depression and/or anxiety, treated with psychotherapy, documented in a psychotherapy note.
fn mental_health(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::Psychiatry);
    let clinic = dir.org(OrgKey::BehavioralHealth);
    let mut enc = g.open(start, Duration::minutes(55), AMBULATORY, ENC_CONSULT, doctor, clinic);
    // 0: depression, 1: anxiety, 2: both.
    let which = g.rng.random_range(0..3u32);
    let mut reason = None;
    if which != 1 {
        reason = Some(g.condition(&mut enc, &codes::DEPRESSION, None));
    }
    if which != 0 {
        let anxiety = g.condition(&mut enc, &codes::ANXIETY, None);
        reason.get_or_insert(anxiety);
    }
    g.procedure(&mut enc, &codes::PSYCHOTHERAPY, reason);
    let body = format!(
        "Reason for visit: psychotherapy session (cognitive behavioural therapy, 50 minutes).\n\
         Subjective: low mood, poor sleep and worry over the past weeks; no thoughts of self-harm.\n\
         Assessment: {}.\n\
         Plan: weekly psychotherapy sessions; review in four weeks.",
        enc.assessment.join("; ")
    );
    g.note(
        &enc,
        &[codes::NOTE_PSYCHIATRY_CONSULT, codes::NOTE_CONSULT],
        Some((&codes::PSYCHOTHERAPY, "Psychotherapy note")),
        Some(body),
    );
}

/// Pregnancy (rarely ending in a termination) for women of child-bearing age, otherwise a
/// sexually transmitted infection.
fn reproductive(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let age = g.age(start.date());
    if g.person.female && (18..=44).contains(&age) && g.rng.random_bool(0.65) {
        if g.rng.random_bool(0.15) {
            termination(g, start);
        } else {
            prenatal(g, start);
        }
    } else {
        gonorrhea(g, start);
    }
}

fn prenatal(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::ObstetricsGynecology);
    let clinic = dir.org(OrgKey::WomensHealth);
    let mut enc = g.open(start, Duration::minutes(45), AMBULATORY, codes::ENC_PRENATAL, doctor, clinic);
    g.blood_pressure(&enc);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    // Delivery some 27-36 weeks after a first visit around weeks 4-13 ends the pregnancy.
    let delivery = enc.end + Duration::days(g.rng.random_range(190..=250));
    g.condition(&mut enc, &codes::PREGNANCY, Some(delivery));
    g.panel(&mut enc, &codes::CBC);
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

fn termination(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::ObstetricsGynecology);
    let clinic = dir.org(OrgKey::WomensHealth);
    let mut enc = g.open(start, Duration::hours(3), AMBULATORY, ENC_CONSULT, doctor, clinic);
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    // The pregnancy ends when the procedure does (see `Gen::procedure`'s timing).
    let ended = enc.at(0.7);
    let pregnancy = g.condition(&mut enc, &codes::PREGNANCY, Some(ended));
    g.procedure(&mut enc, &codes::TERMINATION_OF_PREGNANCY, Some(pregnancy));
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

fn gonorrhea(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let (doctor, clinic) = (g.person.gp, g.person.org);
    let mut enc = g.open(start, Duration::minutes(20), AMBULATORY, codes::ENC_SYMPTOM, doctor, clinic);
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::TEMPERATURE, None);
    let cleared = enc.end + Duration::days(g.rng.random_range(7..=14));
    g.condition(&mut enc, &codes::GONORRHEA, Some(cleared));
    enc.plan.push("Treated per current STI guidelines; partner notification discussed.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// BRCA1 testing with a genetic analysis report; about a third of those tested carry the
/// common founder variant.
fn genetic(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.specialist(Specialty::GeneralMedicine);
    let hospital = dir.org(OrgKey::Hospital);
    let mut enc = g.open(start, Duration::minutes(60), AMBULATORY, ENC_CONSULT, doctor, hospital);
    let (finding, conclusion) = if g.rng.random_bool(0.3) {
        (
            "NM_007294.4(BRCA1):c.68_69del (p.Glu23ValfsTer17)",
            "Pathogenic BRCA1 variant detected: hereditary breast and ovarian cancer risk",
        )
    } else {
        ("No pathogenic BRCA1 variant detected", "No pathogenic BRCA1 variant detected")
    };
    let at = enc.at(0.3);
    let result = g.observation(&enc, "laboratory", &codes::BRCA1, ObsValue::Text(finding.into()), at);
    g.report(&enc, &codes::GENETIC_REPORT, ("GE", "Genetics"), &[result], at, Some(conclusion));
    enc.assessment.push(conclusion);
    enc.plan.push("Genetic counselling provided; results discussed.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}
