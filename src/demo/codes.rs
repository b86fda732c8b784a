//! The terminology the generator draws from: code-system URIs and the concrete codes.
//!
//! Every code/display pair here is a real concept of its code system, written out by hand for
//! this project. The sensitive codes are grouped at the end so that a reader can see at a glance
//! what the gateway's ingest labeller is expected to find.

/// SNOMED CT.
pub(super) const SNOMED: &str = "http://snomed.info/sct";
/// ICD-10-CM, the US clinical modification used for billing diagnoses.
pub(super) const ICD10CM: &str = "http://hl7.org/fhir/sid/icd-10-cm";
/// LOINC, for observations, reports and document types.
pub(super) const LOINC: &str = "http://loinc.org";
/// RxNorm, for prescribed medications.
pub(super) const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";
/// CDC vaccine codes.
pub(super) const CVX: &str = "http://hl7.org/fhir/sid/cvx";
/// UCUM, the units of every `valueQuantity`.
pub(super) const UCUM: &str = "http://unitsofmeasure.org";
/// HL7 v3 ActCode, for `Encounter.class`.
pub(super) const ACT_CODE: &str = "http://terminology.hl7.org/CodeSystem/v3-ActCode";
/// HL7 v2 table 0203, identifier types (MR, SS, ...).
pub(super) const IDENTIFIER_TYPE: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";
/// HL7 v2 table 0074, diagnostic service sections for `DiagnosticReport.category`.
pub(super) const DIAGNOSTIC_SERVICE: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
/// FHIR condition clinical status.
pub(super) const CONDITION_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/condition-clinical";
/// FHIR condition verification status.
pub(super) const CONDITION_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/condition-ver-status";
/// FHIR condition category.
pub(super) const CONDITION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/condition-category";
/// FHIR observation category.
pub(super) const OBSERVATION_CATEGORY: &str =
    "http://terminology.hl7.org/CodeSystem/observation-category";
/// FHIR allergy clinical status.
pub(super) const ALLERGY_CLINICAL: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical";
/// FHIR allergy verification status.
pub(super) const ALLERGY_VERIFICATION: &str =
    "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification";
/// US Core document category (`clinical-note`).
pub(super) const DOCUMENT_CATEGORY: &str =
    "http://hl7.org/fhir/us/core/CodeSystem/us-core-documentreference-category";
/// HL7 v3 participation type, for `Encounter.participant.type`.
pub(super) const PARTICIPATION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";
/// FHIR organization type.
pub(super) const ORGANIZATION_TYPE: &str =
    "http://terminology.hl7.org/CodeSystem/organization-type";
/// FHIR practitioner role.
pub(super) const PRACTITIONER_ROLE: &str =
    "http://terminology.hl7.org/CodeSystem/practitioner-role";
/// HL7 discharge disposition, for inpatient stays.
pub(super) const DISCHARGE_DISPOSITION: &str =
    "http://terminology.hl7.org/CodeSystem/discharge-disposition";
/// HL7 v3 marital status.
pub(super) const MARITAL_STATUS: &str = "http://terminology.hl7.org/CodeSystem/v3-MaritalStatus";
/// US national provider identifiers.
pub(super) const NPI: &str = "http://hl7.org/fhir/sid/us-npi";
/// US social security numbers.
pub(super) const SSN: &str = "http://hl7.org/fhir/sid/us-ssn";
/// The project's own medical record numbers.
pub(super) const MRN: &str = "https://consentgate.example/mrn";
/// The project's own organisation identifiers.
pub(super) const ORG_ID: &str = "https://consentgate.example/org";

/// One coded concept: system, code and display.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Code {
    pub(super) system: &'static str,
    pub(super) code: &'static str,
    pub(super) display: &'static str,
}

const fn sct(code: &'static str, display: &'static str) -> Code {
    Code { system: SNOMED, code, display }
}

const fn loinc(code: &'static str, display: &'static str) -> Code {
    Code { system: LOINC, code, display }
}

const fn rx(code: &'static str, display: &'static str) -> Code {
    Code { system: RXNORM, code, display }
}

const fn cvx(code: &'static str, display: &'static str) -> Code {
    Code { system: CVX, code, display }
}

/// A diagnosis coded both ways, as US records carry it: SNOMED CT for the problem list and
/// ICD-10-CM for billing. Labellers commonly key on either, so both are always present.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dx {
    pub(super) snomed: Code,
    pub(super) icd: Code,
}

const fn dx(sct_code: &'static str, sct_display: &'static str, icd: &'static str, icd_display: &'static str) -> Dx {
    Dx {
        snomed: sct(sct_code, sct_display),
        icd: Code { system: ICD10CM, code: icd, display: icd_display },
    }
}

/// A numeric measurement: its LOINC code, UCUM unit and an ordinary adult range.
#[derive(Clone, Copy, Debug)]
pub(super) struct Measure {
    pub(super) code: Code,
    /// Human-readable unit for `valueQuantity.unit`.
    pub(super) unit: &'static str,
    /// UCUM code for `valueQuantity.code`.
    pub(super) ucum: &'static str,
    pub(super) low: f64,
    pub(super) high: f64,
    /// Decimal places the value is rounded to, as an instrument would report it.
    pub(super) decimals: i32,
}

const fn measure(code: Code, unit: &'static str, ucum: &'static str, low: f64, high: f64, decimals: i32) -> Measure {
    Measure { code, unit, ucum, low, high, decimals }
}

/// A laboratory panel: the report code and the member results it groups.
#[derive(Clone, Copy, Debug)]
pub(super) struct Panel {
    pub(super) code: Code,
    pub(super) members: &'static [Measure],
}

// ---------------------------------------------------------------------------------------------
// Encounters
// ---------------------------------------------------------------------------------------------

/// Routine check-up visit.
pub(super) const ENC_CHECK_UP: Code = sct("185349003", "Encounter for check up");
/// Visit for a new symptom.
pub(super) const ENC_SYMPTOM: Code = sct("185345009", "Encounter for symptom");
/// Visit for a known problem.
pub(super) const ENC_PROBLEM: Code = sct("185347001", "Encounter for problem");
/// Follow-up of a chronic condition.
pub(super) const ENC_FOLLOW_UP: Code = sct("390906007", "Follow-up encounter");
/// Specialist consultation.
pub(super) const ENC_CONSULT: Code = sct("698314001", "Consultation for treatment");
/// First antenatal visit.
pub(super) const ENC_PRENATAL: Code = sct("424441002", "Prenatal initial visit");
/// Emergency department visit.
pub(super) const ENC_EMERGENCY: Code = sct("50849002", "Emergency room admission");
/// Inpatient admission.
pub(super) const ENC_ADMISSION: Code = sct("32485007", "Hospital admission");

// ---------------------------------------------------------------------------------------------
// Vital signs (all in the FHIR vital-signs profile's LOINC set)
// ---------------------------------------------------------------------------------------------

/// Body height.
pub(super) const HEIGHT: Measure = measure(loinc("8302-2", "Body height"), "cm", "cm", 152.0, 192.0, 1);
/// Body weight.
pub(super) const WEIGHT: Measure = measure(loinc("29463-7", "Body weight"), "kg", "kg", 50.0, 115.0, 1);
/// Body mass index, computed from height and weight.
pub(super) const BMI: Measure =
    measure(loinc("39156-5", "Body mass index (BMI) [Ratio]"), "kg/m2", "kg/m2", 18.5, 35.0, 1);
/// Heart rate.
pub(super) const HEART_RATE: Measure =
    measure(loinc("8867-4", "Heart rate"), "beats/minute", "/min", 58.0, 96.0, 0);
/// Respiratory rate.
pub(super) const RESPIRATORY_RATE: Measure =
    measure(loinc("9279-1", "Respiratory rate"), "breaths/minute", "/min", 12.0, 20.0, 0);
/// Body temperature.
pub(super) const TEMPERATURE: Measure =
    measure(loinc("8310-5", "Body temperature"), "Cel", "Cel", 36.2, 37.3, 1);
/// Arterial oxygen saturation.
pub(super) const SPO2: Measure =
    measure(loinc("2708-6", "Oxygen saturation in Arterial blood"), "%", "%", 94.0, 99.0, 0);
/// The blood-pressure panel; systolic and diastolic are its components, as the profile requires.
pub(super) const BP_PANEL: Code = loinc("85354-9", "Blood pressure panel with all children optional");
/// Systolic blood pressure (a component of [`BP_PANEL`]).
pub(super) const SYSTOLIC: Measure =
    measure(loinc("8480-6", "Systolic blood pressure"), "mm[Hg]", "mm[Hg]", 104.0, 132.0, 0);
/// Diastolic blood pressure (a component of [`BP_PANEL`]).
pub(super) const DIASTOLIC: Measure =
    measure(loinc("8462-4", "Diastolic blood pressure"), "mm[Hg]", "mm[Hg]", 64.0, 84.0, 0);

// ---------------------------------------------------------------------------------------------
// Laboratory
// ---------------------------------------------------------------------------------------------

/// Haemoglobin A1c.
pub(super) const HBA1C: Measure =
    measure(loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"), "%", "%", 4.6, 5.6, 1);
/// Glucose.
pub(super) const GLUCOSE: Measure = measure(
    loinc("2345-7", "Glucose [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    72.0,
    99.0,
    0,
);
const UREA_NITROGEN: Measure = measure(
    loinc("3094-0", "Urea nitrogen [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    8.0,
    20.0,
    0,
);
const CREATININE: Measure = measure(
    loinc("2160-0", "Creatinine [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    0.6,
    1.2,
    2,
);
const SODIUM: Measure = measure(
    loinc("2951-2", "Sodium [Moles/volume] in Serum or Plasma"),
    "mmol/L",
    "mmol/L",
    136.0,
    144.0,
    0,
);
const POTASSIUM: Measure = measure(
    loinc("2823-3", "Potassium [Moles/volume] in Serum or Plasma"),
    "mmol/L",
    "mmol/L",
    3.6,
    5.0,
    1,
);
/// Total cholesterol.
pub(super) const CHOLESTEROL: Measure = measure(
    loinc("2093-3", "Cholesterol [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    150.0,
    199.0,
    0,
);
const TRIGLYCERIDE: Measure = measure(
    loinc("2571-8", "Triglyceride [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    60.0,
    149.0,
    0,
);
const HDL: Measure = measure(
    loinc("2085-9", "Cholesterol in HDL [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    40.0,
    75.0,
    0,
);
/// LDL cholesterol.
pub(super) const LDL: Measure = measure(
    loinc("2089-1", "Cholesterol in LDL [Mass/volume] in Serum or Plasma"),
    "mg/dL",
    "mg/dL",
    70.0,
    129.0,
    0,
);
const LEUKOCYTES: Measure = measure(
    loinc("6690-2", "Leukocytes [#/volume] in Blood by Automated count"),
    "10*3/uL",
    "10*3/uL",
    4.5,
    10.5,
    1,
);
const ERYTHROCYTES: Measure = measure(
    loinc("789-8", "Erythrocytes [#/volume] in Blood by Automated count"),
    "10*6/uL",
    "10*6/uL",
    4.2,
    5.6,
    2,
);
const HEMOGLOBIN: Measure = measure(
    loinc("718-7", "Hemoglobin [Mass/volume] in Blood"),
    "g/dL",
    "g/dL",
    12.5,
    16.5,
    1,
);
const PLATELETS: Measure = measure(
    loinc("777-3", "Platelets [#/volume] in Blood by Automated count"),
    "10*3/uL",
    "10*3/uL",
    160.0,
    380.0,
    0,
);

/// Basic metabolic panel.
pub(super) const BMP: Panel = Panel {
    code: loinc("51990-0", "Basic metabolic panel - Blood"),
    members: &[GLUCOSE, UREA_NITROGEN, CREATININE, SODIUM, POTASSIUM],
};
/// Lipid panel.
pub(super) const LIPIDS: Panel = Panel {
    code: loinc("24331-1", "Lipid 1996 panel - Serum or Plasma"),
    members: &[CHOLESTEROL, TRIGLYCERIDE, HDL, LDL],
};
/// Complete blood count.
pub(super) const CBC: Panel = Panel {
    code: loinc("58410-2", "CBC panel - Blood by Automated count"),
    members: &[LEUKOCYTES, ERYTHROCYTES, HEMOGLOBIN, PLATELETS],
};

// ---------------------------------------------------------------------------------------------
// Documents
// ---------------------------------------------------------------------------------------------

/// Progress note.
pub(super) const NOTE_PROGRESS: Code = loinc("11506-3", "Progress note");
/// History and physical.
pub(super) const NOTE_HISTORY_PHYSICAL: Code = loinc("34117-2", "History and physical note");
/// Emergency department note.
pub(super) const NOTE_EMERGENCY: Code = loinc("34111-5", "Emergency department Note");
/// Discharge summary.
pub(super) const NOTE_DISCHARGE: Code = loinc("18842-5", "Discharge summary");

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
const METFORMIN: Code = rx("860975", "24 HR metformin hydrochloride 500 MG Extended Release Oral Tablet");
const ATORVASTATIN: Code = rx("259255", "atorvastatin 80 MG Oral Tablet");
const SIMVASTATIN: Code = rx("312961", "simvastatin 20 MG Oral Tablet");
const ALBUTEROL: Code = rx("745679", "200 ACTUAT albuterol 0.09 MG/ACTUAT Metered Dose Inhaler");
const FLUTICASONE: Code =
    rx("895994", "120 ACTUAT fluticasone propionate 0.044 MG/ACTUAT Metered Dose Inhaler");
const ACETAMINOPHEN: Code = rx("313782", "acetaminophen 325 MG Oral Tablet");
const IBUPROFEN: Code = rx("310965", "ibuprofen 200 MG Oral Tablet");
const AMOXICILLIN: Code = rx("308182", "amoxicillin 250 MG Oral Capsule");
const PENICILLIN_V: Code = rx("834061", "penicillin V potassium 250 MG Oral Tablet");
const AMOXICILLIN_CLAVULANATE: Code = rx("562251", "amoxicillin 250 MG / clavulanate 125 MG Oral Tablet");
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
        dx: dx("10509002", "Acute bronchitis", "J20.9", "Acute bronchitis, unspecified"),
        meds: &[ACETAMINOPHEN],
        procedure: None,
        fever: true,
        lasts_days: (7, 21),
    },
    Acute {
        dx: dx("444814009", "Viral sinusitis", "J01.90", "Acute sinusitis, unspecified"),
        meds: &[IBUPROFEN],
        procedure: None,
        fever: false,
        lasts_days: (7, 14),
    },
    Acute {
        dx: dx("195662009", "Acute viral pharyngitis", "J02.9", "Acute pharyngitis, unspecified"),
        meds: &[IBUPROFEN, ACETAMINOPHEN],
        procedure: Some(THROAT_CULTURE),
        fever: true,
        lasts_days: (5, 10),
    },
    Acute {
        dx: dx("43878008", "Streptococcal sore throat", "J02.0", "Streptococcal pharyngitis"),
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
        dx: dx("10509002", "Acute bronchitis", "J20.9", "Acute bronchitis, unspecified"),
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

/// Reasons for an inpatient admission.
pub(super) const ACUTE_INPATIENT: [Acute; 3] = [
    Acute {
        dx: dx("233604007", "Pneumonia", "J18.9", "Pneumonia, unspecified organism"),
        meds: &[AMOXICILLIN_CLAVULANATE],
        procedure: Some(CHEST_XRAY),
        fever: true,
        lasts_days: (10, 28),
    },
    Acute {
        dx: dx("22298006", "Myocardial infarction", "I21.9", "Acute myocardial infarction, unspecified"),
        meds: &[ASPIRIN, CLOPIDOGREL],
        procedure: Some(CORONARY_STENT),
        fever: false,
        lasts_days: (28, 56),
    },
    Acute {
        dx: dx("74400008", "Appendicitis", "K37", "Unspecified appendicitis"),
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
        dx: dx("38341003", "Hypertensive disorder, systemic arterial", "I10", "Essential (primary) hypertension"),
        meds: &[LISINOPRIL, AMLODIPINE, HYDROCHLOROTHIAZIDE],
        prevalence: 0.18,
    },
    Chronic {
        kind: ChronicKind::Diabetes,
        dx: dx("44054006", "Diabetes mellitus type 2", "E11.9", "Type 2 diabetes mellitus without complications"),
        meds: &[METFORMIN],
        prevalence: 0.08,
    },
    Chronic {
        kind: ChronicKind::Hyperlipidemia,
        dx: dx("55822004", "Hyperlipidemia", "E78.5", "Hyperlipidemia, unspecified"),
        meds: &[ATORVASTATIN, SIMVASTATIN],
        prevalence: 0.14,
    },
    Chronic {
        kind: ChronicKind::Asthma,
        dx: dx("195967001", "Asthma", "J45.909", "Unspecified asthma, uncomplicated"),
        meds: &[ALBUTEROL, FLUTICASONE],
        prevalence: 0.08,
    },
];

// ---------------------------------------------------------------------------------------------
// Immunizations and allergies
// ---------------------------------------------------------------------------------------------

/// Seasonal influenza vaccine.
pub(super) const VACCINE_FLU: Code = cvx("140", "Influenza, seasonal, injectable, preservative free");
/// Tetanus, diphtheria and pertussis booster.
pub(super) const VACCINE_TDAP: Code = cvx("115", "Tdap");
/// Pneumococcal polysaccharide vaccine, from age 65.
pub(super) const VACCINE_PNEUMOCOCCAL: Code = cvx("33", "pneumococcal polysaccharide vaccine, 23 valent");
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
    Allergy { code: PENICILLIN_ALLERGY, category: "medication", reaction: sct("271807003", "Eruption of skin") },
    Allergy { code: sct("91935009", "Allergy to peanuts"), category: "food", reaction: sct("39579001", "Anaphylaxis") },
    Allergy { code: sct("300913006", "Shellfish allergy"), category: "food", reaction: sct("271807003", "Eruption of skin") },
    Allergy { code: sct("300916003", "Latex allergy"), category: "environment", reaction: sct("271807003", "Eruption of skin") },
    Allergy { code: sct("232350006", "House dust mite allergy"), category: "environment", reaction: sct("76067001", "Sneezing") },
    Allergy { code: sct("418689008", "Allergy to grass pollen"), category: "environment", reaction: sct("76067001", "Sneezing") },
];

// ---------------------------------------------------------------------------------------------
// Sensitive items: the codes a consent labeller must recognise without any other hint
// ---------------------------------------------------------------------------------------------

/// Alcohol use disorder.
pub(super) const ALCOHOLISM: Dx = dx("7200002", "Alcoholism", "F10.20", "Alcohol dependence, uncomplicated");
/// Opioid use disorder.
pub(super) const OPIOID_DEPENDENCE: Dx =
    dx("75544000", "Opioid dependence", "F11.20", "Opioid dependence, uncomplicated");
/// Medication for opioid use disorder.
pub(super) const BUPRENORPHINE_NALOXONE: Code =
    rx("1010600", "buprenorphine 2 MG / naloxone 0.5 MG Sublingual Film");
/// HIV infection.
pub(super) const HIV: Dx = dx(
    "86406008",
    "Human immunodeficiency virus infection",
    "B20",
    "Human immunodeficiency virus [HIV] disease",
);
/// HIV screening test.
pub(super) const HIV_SCREEN: Code =
    loinc("75622-1", "HIV 1 and 2 Ag+Ab [Presence] in Serum or Plasma by Immunoassay");
/// Antiretroviral therapy (the generic clinical drug; code taken from the CSTE HIV INSTI value set).
pub(super) const BICTEGRAVIR_COMBINATION: Code = rx(
    "1999667",
    "bictegravir 50 MG / emtricitabine 200 MG / tenofovir alafenamide 25 MG Oral Tablet",
);
/// Qualitative result "Positive".
pub(super) const RESULT_POSITIVE: Code = sct("10828004", "Positive");
/// Depression.
pub(super) const DEPRESSION: Dx = dx(
    "35489007",
    "Depressive disorder",
    "F32.9",
    "Major depressive disorder, single episode, unspecified",
);
/// Anxiety.
pub(super) const ANXIETY: Dx = dx("197480006", "Anxiety disorder", "F41.9", "Anxiety disorder, unspecified");
/// Psychotherapy, both the procedure and the category of its note.
pub(super) const PSYCHOTHERAPY: Code = sct("75516001", "Psychotherapy");
/// Specific type of the psychotherapy note.
pub(super) const NOTE_PSYCHIATRY_CONSULT: Code = loinc("34788-0", "Psychiatry Consult note");
/// Generic type of the psychotherapy note, listed alongside the specific one.
pub(super) const NOTE_CONSULT: Code = loinc("11488-4", "Consult note");
/// Pregnancy.
pub(super) const PREGNANCY: Dx = dx(
    "72892002",
    "Normal pregnancy",
    "Z34.90",
    "Encounter for supervision of normal pregnancy, unspecified, unspecified trimester",
);
/// Gonorrhoea.
pub(super) const GONORRHEA: Dx = dx("15628003", "Gonorrhea", "A54.9", "Gonococcal infection, unspecified");
/// Termination of pregnancy.
pub(super) const TERMINATION_OF_PREGNANCY: Code = sct("386639001", "Termination of pregnancy");
/// BRCA1 genetic test result.
pub(super) const BRCA1: Code = loinc(
    "21636-6",
    "BRCA1 gene mutations found [Identifier] in Blood or Tissue by Molecular genetics method",
);
/// Genetic analysis report.
pub(super) const GENETIC_REPORT: Code = loinc("51969-4", "Genetic analysis report");
