//! Conditions and their care: procedures, medications, illnesses, chronic diseases, vaccines
//! and allergies — the ordinary clinical background of every patient.
//!
//! Like [`super::codes`], every code/display pair is a real concept of its code system, written
//! out by hand for this project.

use super::codes::{Code, Dx, cvx, dx, rx, sct};

// ---------------------------------------------------------------------------------------------
// Procedures
// ---------------------------------------------------------------------------------------------

/// Medication reconciliation, done whenever a patient has standing prescriptions.
pub(super) const MED_RECONCILIATION: Code = sct("430193006", "Medication reconciliation");
/// Colonoscopy, offered as screening from age 50.
pub(super) const COLONOSCOPY: Code = sct("73761001", "Colonoscopy");
/// Spirometry, for asthma follow-up.
pub(super) const SPIROMETRY: Code = sct("127783003", "Spirometry");
const THROAT_CULTURE: Code = sct("117015009", "Throat culture");
const CHEST_XRAY: Code = sct("399208008", "Plain chest X-ray");
const CORONARY_STENT: Code = sct("36969009", "Placement of stent in coronary artery");
const APPENDECTOMY: Code = sct("80146002", "Appendectomy");

// ---------------------------------------------------------------------------------------------
// Medications
// ---------------------------------------------------------------------------------------------

const LISINOPRIL: Code = rx("314076", "lisinopril 10 MG Oral Tablet");
const AMLODIPINE: Code = rx("197361", "amlodipine 5 MG Oral Tablet");
const HYDROCHLOROTHIAZIDE: Code = rx("310798", "hydrochlorothiazide 25 MG Oral Tablet");
const METFORMIN: Code = rx(
    "860975",
    "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet",
);
const ATORVASTATIN: Code = rx("259255", "atorvastatin 80 MG Oral Tablet");
const SIMVASTATIN: Code = rx("312961", "simvastatin 20 MG Oral Tablet");
const ALBUTEROL: Code = rx(
    "745679",
    "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler",
);
const FLUTICASONE: Code = rx(
    "895994",
    "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler",
);
const ACETAMINOPHEN: Code = rx("313782", "acetaminophen 325 MG Oral Tablet");
const IBUPROFEN: Code = rx("310965", "ibuprofen 200 MG Oral Tablet");
const AMOXICILLIN: Code = rx("308182", "amoxicillin 250 MG Oral Capsule");
const PENICILLIN_V: Code = rx("834061", "penicillin V potassium 250 MG Oral Tablet");
const AMOXICILLIN_CLAVULANATE: Code = rx(
    "562251",
    "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet",
);
const ASPIRIN: Code = rx("243670", "aspirin 81 MG Oral Tablet");
const CLOPIDOGREL: Code = rx("309362", "clopidogrel 75 MG Oral Tablet");

/// Penicillin-class drugs, withheld from patients with a recorded penicillin allergy.
pub(super) const PENICILLIN_CLASS: &[Code] = &[AMOXICILLIN, PENICILLIN_V, AMOXICILLIN_CLAVULANATE];

// ---------------------------------------------------------------------------------------------
// Conditions
// ---------------------------------------------------------------------------------------------

/// A short-lived illness treated at one encounter.
#[derive(Clone, Copy, Debug)]
pub(super) struct Acute {
    pub(super) dx: Dx,
    /// Candidate prescriptions; one is chosen.
    pub(super) meds: &'static [Code],
    pub(super) procedure: Option<Code>,
    /// Whether the patient presents with a temperature.
    pub(super) fever: bool,
    /// How many days the illness lasts after the visit, for `abatementDateTime`.
    pub(super) lasts_days: (i64, i64),
}

/// Illnesses seen in a primary-care office.
pub(super) const ACUTE_OFFICE: [Acute; 5] = [
    Acute {
        dx: dx(
            "10509002",
            "Acute bronchitis",
            "J20.9",
            "Acute bronchitis, unspecified",
        ),
        meds: &[ACETAMINOPHEN],
        procedure: None,
        fever: true,
        lasts_days: (7, 21),
    },
    Acute {
        dx: dx(
            "444814009",
            "Viral sinusitis",
            "J01.90",
            "Acute sinusitis, unspecified",
        ),
        meds: &[IBUPROFEN],
        procedure: None,
        fever: false,
        lasts_days: (7, 14),
    },
    Acute {
        dx: dx(
            "195662009",
            "Acute viral pharyngitis",
            "J02.9",
            "Acute pharyngitis, unspecified",
        ),
        meds: &[IBUPROFEN, ACETAMINOPHEN],
        procedure: Some(THROAT_CULTURE),
        fever: true,
        lasts_days: (5, 10),
    },
    Acute {
        dx: dx(
            "43878008",
            "Streptococcal sore throat",
            "J02.0",
            "Streptococcal pharyngitis",
        ),
        meds: &[PENICILLIN_V, AMOXICILLIN],
        procedure: Some(THROAT_CULTURE),
        fever: true,
        lasts_days: (5, 10),
    },
    Acute {
        dx: dx(
            "68566005",
            "Urinary tract infectious disease",
            "N39.0",
            "Urinary tract infection, site not specified",
        ),
        meds: &[],
        procedure: None,
        fever: false,
        lasts_days: (3, 10),
    },
];

/// Reasons for an emergency-department visit.
pub(super) const ACUTE_EMERGENCY: [Acute; 3] = [
    Acute {
        dx: dx(
            "10509002",
            "Acute bronchitis",
            "J20.9",
            "Acute bronchitis, unspecified",
        ),
        meds: &[ACETAMINOPHEN],
        procedure: Some(CHEST_XRAY),
        fever: true,
        lasts_days: (7, 21),
    },
    Acute {
        dx: dx(
            "44465007",
            "Sprain of ankle",
            "S93.409A",
            "Sprain of unspecified ligament of unspecified ankle, initial encounter",
        ),
        meds: &[IBUPROFEN],
        procedure: None,
        fever: false,
        lasts_days: (14, 42),
    },
    Acute {
        dx: dx(
            "68566005",
            "Urinary tract infectious disease",
            "N39.0",
            "Urinary tract infection, site not specified",
        ),
        meds: &[ACETAMINOPHEN],
        procedure: None,
        fever: true,
        lasts_days: (3, 10),
    },
];

/// Heart attack, the one admission handled by cardiology.
pub(super) const MYOCARDIAL_INFARCTION: Dx = dx(
    "22298006",
    "Myocardial infarction",
    "I21.9",
    "Acute myocardial infarction, unspecified",
);

/// Reasons for an inpatient admission.
pub(super) const ACUTE_INPATIENT: [Acute; 3] = [
    Acute {
        dx: dx(
            "233604007",
            "Pneumonia",
            "J18.9",
            "Pneumonia, unspecified organism",
        ),
        meds: &[AMOXICILLIN_CLAVULANATE],
        procedure: Some(CHEST_XRAY),
        fever: true,
        lasts_days: (10, 28),
    },
    Acute {
        dx: MYOCARDIAL_INFARCTION,
        meds: &[ASPIRIN, CLOPIDOGREL],
        procedure: Some(CORONARY_STENT),
        fever: false,
        lasts_days: (28, 56),
    },
    Acute {
        dx: dx(
            "74400008",
            "Appendicitis",
            "K37",
            "Unspecified appendicitis",
        ),
        meds: &[ACETAMINOPHEN],
        procedure: Some(APPENDECTOMY),
        fever: true,
        lasts_days: (14, 28),
    },
];

/// Which chronic condition a [`Chronic`] is, so vitals and labs can follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum ChronicKind {
    Hypertension,
    Diabetes,
    Hyperlipidemia,
    Asthma,
}

/// A long-term condition: diagnosed once, then followed up with standing prescriptions.
#[derive(Clone, Copy, Debug)]
pub(super) struct Chronic {
    pub(super) kind: ChronicKind,
    pub(super) dx: Dx,
    /// Candidate standing prescriptions; one is chosen at diagnosis and kept.
    pub(super) meds: &'static [Code],
    /// Share of adults under 50 who have it; doubled from 50 on.
    pub(super) prevalence: f64,
}

/// The chronic conditions the generator knows.
pub(super) const CHRONIC: [Chronic; 4] = [
    Chronic {
        kind: ChronicKind::Hypertension,
        dx: dx(
            "38341003",
            "Hypertensive disorder, systemic arterial",
            "I10",
            "Essential (primary) hypertension",
        ),
        meds: &[LISINOPRIL, AMLODIPINE, HYDROCHLOROTHIAZIDE],
        prevalence: 0.18,
    },
    Chronic {
        kind: ChronicKind::Diabetes,
        dx: dx(
            "44054006",
            "Diabetes mellitus type 2",
            "E11.9",
            "Type 2 diabetes mellitus without complications",
        ),
        meds: &[METFORMIN],
        prevalence: 0.08,
    },
    Chronic {
        kind: ChronicKind::Hyperlipidemia,
        dx: dx(
            "55822004",
            "Hyperlipidemia",
            "E78.5",
            "Hyperlipidemia, unspecified",
        ),
        meds: &[ATORVASTATIN, SIMVASTATIN],
        prevalence: 0.14,
    },
    Chronic {
        kind: ChronicKind::Asthma,
        dx: dx(
            "195967001",
            "Asthma",
            "J45.909",
            "Unspecified asthma, uncomplicated",
        ),
        meds: &[ALBUTEROL, FLUTICASONE],
        prevalence: 0.08,
    },
];

// ---------------------------------------------------------------------------------------------
// Immunizations and allergies
// ---------------------------------------------------------------------------------------------

/// Seasonal influenza vaccine.
pub(super) const VACCINE_FLU: Code =
    cvx("140", "Influenza, seasonal, injectable, preservative free");
/// Tetanus, diphtheria and pertussis booster.
pub(super) const VACCINE_TDAP: Code = cvx("115", "Tdap");
/// Pneumococcal polysaccharide vaccine, from age 65.
pub(super) const VACCINE_PNEUMOCOCCAL: Code =
    cvx("33", "pneumococcal polysaccharide vaccine, 23 valent");
/// Recombinant zoster vaccine, from age 50 (licensed late 2017).
pub(super) const VACCINE_ZOSTER: Code = cvx("187", "zoster vaccine recombinant");
/// mRNA COVID-19 vaccine (available from December 2020).
pub(super) const VACCINE_COVID: Code = cvx(
    "208",
    "SARS-COV-2 (COVID-19) vaccine, mRNA, spike protein, LNP, preservative free, 30 mcg/0.3mL dose",
);

/// An allergy a patient may carry, with its FHIR category and typical reaction.
#[derive(Clone, Copy, Debug)]
pub(super) struct Allergy {
    pub(super) code: Code,
    /// `food`, `medication`, `environment` or `biologic`.
    pub(super) category: &'static str,
    pub(super) reaction: Code,
}

/// The allergy recorded for penicillin, which also steers prescribing.
pub(super) const PENICILLIN_ALLERGY: Code = sct("91936005", "Allergy to penicillin");

/// The allergies the generator knows.
pub(super) const ALLERGIES: [Allergy; 6] = [
    Allergy {
        code: PENICILLIN_ALLERGY,
        category: "medication",
        reaction: sct("271807003", "Eruption of skin"),
    },
    Allergy {
        code: sct("91935009", "Allergy to peanuts"),
        category: "food",
        reaction: sct("39579001", "Anaphylaxis"),
    },
    Allergy {
        code: sct("300913006", "Shellfish allergy"),
        category: "food",
        reaction: sct("271807003", "Eruption of skin"),
    },
    Allergy {
        code: sct("300916003", "Latex allergy"),
        category: "environment",
        reaction: sct("271807003", "Eruption of skin"),
    },
    Allergy {
        code: sct("232350006", "House dust mite allergy"),
        category: "environment",
        reaction: sct("76067001", "Sneezing"),
    },
    Allergy {
        code: sct("418689008", "Allergy to grass pollen"),
        category: "environment",
        reaction: sct("76067001", "Sneezing"),
    },
];
