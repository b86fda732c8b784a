//! The sensitive visits: substance use, HIV, mental health, reproductive and sexual health,
//! and genetic testing.
//!
//! Each is an ordinary-looking encounter whose content is recognisable as sensitive from its
//! codes alone; the codes are listed first below, so a reader sees at a glance what the
//! gateway's labeller must find. No `meta.security` labels are set here: the gateway labels at
//! ingest.

use rand::Rng;
use time::{Duration, PrimitiveDateTime};

use super::clinical::ObsValue;
use super::codes::{self, Code, Dx, ENC_CONSULT, dx, loinc, rx, sct};
use super::directory::{OrgKey, Specialty};
use super::patient::{AMBULATORY, Gen};

// The codes a consent labeller must recognise without any other hint. All are real codes of
// their systems, and none is used outside the sensitive visits.

/// Alcohol use disorder.
const ALCOHOLISM: Dx = dx(
    "7200002",
    "Alcoholism",
    "F10.20",
    "Alcohol dependence, uncomplicated",
);
/// Opioid use disorder.
const OPIOID_DEPENDENCE: Dx = dx(
    "75544000",
    "Opioid dependence",
    "F11.20",
    "Opioid dependence, uncomplicated",
);
/// Medication for opioid use disorder.
const BUPRENORPHINE_NALOXONE: Code = rx(
    "1010600",
    "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film",
);
/// HIV infection.
const HIV: Dx = dx(
    "86406008",
    "Human immunodeficiency virus infection",
    "B20",
    "Human immunodeficiency virus [HIV] disease",
);
/// HIV screening test.
const HIV_SCREEN: Code = loinc(
    "75622-1",
    "HIV 1 and 2 Ag+Ab [Presence] in Serum or Plasma by Immunoassay",
);
/// Antiretroviral therapy: the generic clinical drug (SCD) of Biktarvy, as listed in the VSAC
/// HIV integrase-inhibitor value set 2.16.840.1.113762.1.4.1146.1600.
const BICTEGRAVIR_COMBINATION: Code = rx(
    "1999667",
    "bictegravir 50 MG / emtricitabine 200 MG / tenofovir alafenamide 25 MG Oral Tablet",
);
/// Qualitative result "Positive".
const RESULT_POSITIVE: Code = sct("10828004", "Positive");
/// Depression.
const DEPRESSION: Dx = dx(
    "35489007",
    "Depressive disorder",
    "F32.9",
    "Major depressive disorder, single episode, unspecified",
);
/// Anxiety.
const ANXIETY: Dx = dx(
    "197480006",
    "Anxiety disorder",
    "F41.9",
    "Anxiety disorder, unspecified",
);
/// Psychotherapy, both the procedure and the category of its note.
const PSYCHOTHERAPY: Code = sct("75516001", "Psychotherapy");
/// Specific type of the psychotherapy note. (LOINC 34746-8, sometimes quoted for this, is
/// "Nurse note".)
const NOTE_PSYCHIATRY_CONSULT: Code = loinc("34788-0", "Psychiatry Consult note");
/// Generic type of the psychotherapy note, listed alongside the specific one.
const NOTE_CONSULT: Code = loinc("11488-4", "Consult note");
/// Pregnancy.
const PREGNANCY: Dx = dx(
    "72892002",
    "Normal pregnancy",
    "Z34.90",
    "Encounter for supervision of normal pregnancy, unspecified, unspecified trimester",
);
/// Gonorrhoea.
const GONORRHEA: Dx = dx(
    "15628003",
    "Gonorrhea",
    "A54.9",
    "Gonococcal infection, unspecified",
);
/// Termination of pregnancy.
const TERMINATION_OF_PREGNANCY: Code = sct("386639001", "Termination of pregnancy");
/// BRCA1 genetic test result.
const BRCA1: Code = loinc(
    "21636-6",
    "BRCA1 gene mutations found [Identifier] in Blood or Tissue by Molecular genetics method",
);
/// Genetic analysis report.
const GENETIC_REPORT: Code = loinc("51969-4", "Genetic analysis report");

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
    pub(super) const ALL: [Self; 5] = [
        Self::SubstanceUse,
        Self::Hiv,
        Self::MentalHealth,
        Self::Reproductive,
        Self::Genetic,
    ];

    /// The share of patients with a visit of this kind: well above real prevalence, so that a
    /// ten-patient demo already exercises most consent rules. Reproductive-health visits are
    /// far more common for women of child-bearing age (`childbearing`).
    pub(super) fn share(self, childbearing: bool) -> f64 {
        match self {
            Self::SubstanceUse => 0.2,
            Self::Hiv => 0.1,
            Self::MentalHealth => 0.3,
            Self::Reproductive if childbearing => 0.5,
            Self::Reproductive => 0.12,
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
    let doctor = dir.staff(OrgKey::BehavioralHealth, Specialty::Psychiatry);
    let clinic = dir.org(OrgKey::BehavioralHealth);
    let mut enc = g.open(
        start,
        Duration::minutes(45),
        AMBULATORY,
        ENC_CONSULT,
        doctor,
        clinic,
    );
    // 0..45 alcohol only, 45..60 both, 60..100 opioids only.
    let roll = g.rng.random_range(0..100u32);
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    if roll < 60 {
        g.condition(&mut enc, &ALCOHOLISM, None);
    }
    if roll >= 45 {
        let dependence = g.condition(&mut enc, &OPIOID_DEPENDENCE, None);
        g.prescription(&mut enc, &BUPRENORPHINE_NALOXONE, Some(dependence), true);
    }
    enc.plan
        .push("Referred to the outpatient recovery programme.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// A positive HIV screen at the infectious-diseases clinic, the diagnosis, and antiretroviral
/// therapy.
fn hiv(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.staff(OrgKey::Hospital, Specialty::InfectiousDisease);
    let hospital = dir.org(OrgKey::Hospital);
    let mut enc = g.open(
        start,
        Duration::minutes(40),
        AMBULATORY,
        codes::ENC_PROBLEM,
        doctor,
        hospital,
    );
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    let at = enc.at(0.3);
    g.observation(
        &enc,
        "laboratory",
        &HIV_SCREEN,
        ObsValue::Coded(RESULT_POSITIVE),
        at,
    );
    enc.plan.push(format!("{}: positive.", HIV_SCREEN.display));
    let infection = g.condition(&mut enc, &HIV, None);
    g.prescription(&mut enc, &BICTEGRAVIR_COMBINATION, Some(infection), true);
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// Depression and/or anxiety, treated with psychotherapy, documented in a psychotherapy note.
fn mental_health(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.staff(OrgKey::BehavioralHealth, Specialty::Psychiatry);
    let clinic = dir.org(OrgKey::BehavioralHealth);
    let mut enc = g.open(
        start,
        Duration::minutes(55),
        AMBULATORY,
        ENC_CONSULT,
        doctor,
        clinic,
    );
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    // 0: depression, 1: anxiety, 2: both.
    let which = g.rng.random_range(0..3u32);
    let mut reason = None;
    if which != 1 {
        reason = Some(g.condition(&mut enc, &DEPRESSION, None));
    }
    if which != 0 {
        let anxiety = g.condition(&mut enc, &ANXIETY, None);
        reason.get_or_insert(anxiety);
    }
    g.procedure(&mut enc, &PSYCHOTHERAPY, reason);
    let body = format!(
        "Reason for visit: psychotherapy session (cognitive behavioural therapy, 50 minutes).\n\
         Subjective: low mood, poor sleep and worry over the past weeks; no thoughts of self-harm.\n\
         Assessment: {}.\n\
         Plan: weekly psychotherapy sessions; review in four weeks.",
        enc.assessment.join("; ")
    );
    g.note(
        &enc,
        &[NOTE_PSYCHIATRY_CONSULT, NOTE_CONSULT],
        Some((&PSYCHOTHERAPY, "Psychotherapy note")),
        Some(body),
    );
}

/// Pregnancy (rarely ending in a termination) for women of child-bearing age, otherwise a
/// sexually transmitted infection.
fn reproductive(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let age = g.age(start.date());
    if g.person.female && (18..=44).contains(&age) && g.rng.random_bool(0.8) {
        if g.rng.random_bool(0.2) {
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
    let doctor = dir.staff(OrgKey::WomensHealth, Specialty::ObstetricsGynecology);
    let clinic = dir.org(OrgKey::WomensHealth);
    let mut enc = g.open(
        start,
        Duration::minutes(45),
        AMBULATORY,
        codes::ENC_PRENATAL,
        doctor,
        clinic,
    );
    g.blood_pressure(&enc);
    let weight = g.current_weight();
    g.vital(&enc, &codes::WEIGHT, Some(weight));
    // Delivery some 27-36 weeks after a first visit around weeks 4-13 ends the pregnancy.
    let delivery = enc.end + Duration::days(g.rng.random_range(190..=250));
    g.condition(&mut enc, &PREGNANCY, Some(delivery));
    g.panel(&mut enc, &codes::CBC);
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

fn termination(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.staff(OrgKey::WomensHealth, Specialty::ObstetricsGynecology);
    let clinic = dir.org(OrgKey::WomensHealth);
    let mut enc = g.open(
        start,
        Duration::hours(3),
        AMBULATORY,
        ENC_CONSULT,
        doctor,
        clinic,
    );
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    // The pregnancy ends when the procedure does (see `Gen::procedure`'s timing).
    let ended = enc.at(0.7);
    let pregnancy = g.condition(&mut enc, &PREGNANCY, Some(ended));
    g.procedure(&mut enc, &TERMINATION_OF_PREGNANCY, Some(pregnancy));
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

fn gonorrhea(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let (doctor, clinic) = (g.person.gp, g.person.org);
    let mut enc = g.open(
        start,
        Duration::minutes(20),
        AMBULATORY,
        codes::ENC_SYMPTOM,
        doctor,
        clinic,
    );
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    g.vital(&enc, &codes::RESPIRATORY_RATE, None);
    g.vital(&enc, &codes::TEMPERATURE, None);
    let cleared = enc.end + Duration::days(g.rng.random_range(7..=14));
    g.condition(&mut enc, &GONORRHEA, Some(cleared));
    enc.plan
        .push("Treated per current STI guidelines; partner notification discussed.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}

/// BRCA1 testing with a genetic analysis report; about a third of those tested carry the
/// common founder variant.
fn genetic(g: &mut Gen<'_>, start: PrimitiveDateTime) {
    let dir = g.dir;
    let doctor = dir.staff(OrgKey::Hospital, Specialty::GeneralMedicine);
    let hospital = dir.org(OrgKey::Hospital);
    let mut enc = g.open(
        start,
        Duration::minutes(60),
        AMBULATORY,
        ENC_CONSULT,
        doctor,
        hospital,
    );
    g.blood_pressure(&enc);
    g.vital(&enc, &codes::HEART_RATE, None);
    let (finding, conclusion) = if g.rng.random_bool(0.3) {
        (
            "NM_007294.4(BRCA1):c.68_69del (p.Glu23ValfsTer17)",
            "Pathogenic BRCA1 variant detected: hereditary breast and ovarian cancer risk",
        )
    } else {
        (
            "No pathogenic BRCA1 variant detected",
            "No pathogenic BRCA1 variant detected",
        )
    };
    let at = enc.at(0.3);
    let result = g.observation(
        &enc,
        "laboratory",
        &BRCA1,
        ObsValue::Text(finding.into()),
        at,
    );
    g.report(
        &enc,
        &GENETIC_REPORT,
        ("GE", "Genetics"),
        &[result],
        at,
        Some(conclusion),
    );
    enc.assessment.push(conclusion);
    enc.plan
        .push("Genetic counselling provided; results discussed.".into());
    g.note(&enc, &[codes::NOTE_PROGRESS], None, None);
}
