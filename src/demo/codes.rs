//! The terminology the generator draws from: code-system URIs, the coded-value types, and the
//! codes for encounters, vital signs, laboratory results and clinical notes.
//!
//! Every code/display pair here is a real concept of its code system, written out by hand for
//! this project. Conditions and treatments are in [`super::care`]; the sensitive codes sit with
//! the visits that use them in [`super::sensitive`], so a reader can see at a glance what the
//! gateway's ingest labeller is expected to find.

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

pub(super) const fn sct(code: &'static str, display: &'static str) -> Code {
    Code {
        system: SNOMED,
        code,
        display,
    }
}

pub(super) const fn loinc(code: &'static str, display: &'static str) -> Code {
    Code {
        system: LOINC,
        code,
        display,
    }
}

pub(super) const fn rx(code: &'static str, display: &'static str) -> Code {
    Code {
        system: RXNORM,
        code,
        display,
    }
}

pub(super) const fn cvx(code: &'static str, display: &'static str) -> Code {
    Code {
        system: CVX,
        code,
        display,
    }
}

/// A diagnosis coded both ways, as US records carry it: SNOMED CT for the problem list and
/// ICD-10-CM for billing. Labellers commonly key on either, so both are always present.
#[derive(Clone, Copy, Debug)]
pub(super) struct Dx {
    pub(super) snomed: Code,
    pub(super) icd: Code,
}

pub(super) const fn dx(
    sct_code: &'static str,
    sct_display: &'static str,
    icd: &'static str,
    icd_display: &'static str,
) -> Dx {
    Dx {
        snomed: sct(sct_code, sct_display),
        icd: Code {
            system: ICD10CM,
            code: icd,
            display: icd_display,
        },
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

const fn measure(
    code: Code,
    unit: &'static str,
    ucum: &'static str,
    low: f64,
    high: f64,
    decimals: i32,
) -> Measure {
    Measure {
        code,
        unit,
        ucum,
        low,
        high,
        decimals,
    }
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
pub(super) const HEIGHT: Measure =
    measure(loinc("8302-2", "Body height"), "cm", "cm", 152.0, 192.0, 1);
/// Body weight.
pub(super) const WEIGHT: Measure =
    measure(loinc("29463-7", "Body weight"), "kg", "kg", 50.0, 115.0, 1);
/// Body mass index, computed from height and weight.
pub(super) const BMI: Measure = measure(
    loinc("39156-5", "Body mass index (BMI) [Ratio]"),
    "kg/m2",
    "kg/m2",
    18.5,
    35.0,
    1,
);
/// Heart rate.
pub(super) const HEART_RATE: Measure = measure(
    loinc("8867-4", "Heart rate"),
    "beats/minute",
    "/min",
    58.0,
    96.0,
    0,
);
/// Respiratory rate.
pub(super) const RESPIRATORY_RATE: Measure = measure(
    loinc("9279-1", "Respiratory rate"),
    "breaths/minute",
    "/min",
    12.0,
    20.0,
    0,
);
/// Body temperature.
pub(super) const TEMPERATURE: Measure = measure(
    loinc("8310-5", "Body temperature"),
    "Cel",
    "Cel",
    36.2,
    37.3,
    1,
);
/// Arterial oxygen saturation.
pub(super) const SPO2: Measure = measure(
    loinc("2708-6", "Oxygen saturation in Arterial blood"),
    "%",
    "%",
    94.0,
    99.0,
    0,
);
/// The blood-pressure panel; systolic and diastolic are its components, as the profile requires.
pub(super) const BP_PANEL: Code =
    loinc("85354-9", "Blood pressure panel with all children optional");
/// Systolic blood pressure (a component of [`BP_PANEL`]).
pub(super) const SYSTOLIC: Measure = measure(
    loinc("8480-6", "Systolic blood pressure"),
    "mm[Hg]",
    "mm[Hg]",
    104.0,
    132.0,
    0,
);
/// Diastolic blood pressure (a component of [`BP_PANEL`]).
pub(super) const DIASTOLIC: Measure = measure(
    loinc("8462-4", "Diastolic blood pressure"),
    "mm[Hg]",
    "mm[Hg]",
    64.0,
    84.0,
    0,
);

// ---------------------------------------------------------------------------------------------
// Laboratory
// ---------------------------------------------------------------------------------------------

/// Haemoglobin A1c.
pub(super) const HBA1C: Measure = measure(
    loinc("4548-4", "Hemoglobin A1c/Hemoglobin.total in Blood"),
    "%",
    "%",
    4.6,
    5.6,
    1,
);
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
    loinc(
        "2085-9",
        "Cholesterol in HDL [Mass/volume] in Serum or Plasma",
    ),
    "mg/dL",
    "mg/dL",
    40.0,
    75.0,
    0,
);
/// LDL cholesterol.
pub(super) const LDL: Measure = measure(
    loinc(
        "2089-1",
        "Cholesterol in LDL [Mass/volume] in Serum or Plasma",
    ),
    "mg/dL",
    "mg/dL",
    70.0,
    129.0,
    0,
);
const LEUKOCYTES: Measure = measure(
    loinc(
        "6690-2",
        "Leukocytes [#/volume] in Blood by Automated count",
    ),
    "10*3/uL",
    "10*3/uL",
    4.5,
    10.5,
    1,
);
const ERYTHROCYTES: Measure = measure(
    loinc(
        "789-8",
        "Erythrocytes [#/volume] in Blood by Automated count",
    ),
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
