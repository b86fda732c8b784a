//! The shared directory: organisations, practitioners and their roles.
//!
//! The layout (which organisations exist, which specialties work where) is fixed so that every
//! seed yields a usable care network; names, NPIs, phone numbers and ids come from the seed.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use serde_json::{Value, json};
use uuid::Uuid;

use super::codes::{self, Code, NPI, ORG_ID, ORGANIZATION_TYPE, PRACTITIONER_ROLE};
use super::fhir::{self, address, concept, entry, phone, pick, reference_to};
use super::names::{self, TOWNS, Town};

/// The organisations of the demo care network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum OrgKey {
    /// Hospital with the emergency department, inpatient wards and specialist clinics.
    Hospital,
    /// Primary-care practice.
    FamilyPractice,
    /// Second primary-care practice.
    MedicalGroup,
    /// Obstetrics and gynaecology clinic.
    WomensHealth,
    /// Mental-health and addiction clinic.
    BehavioralHealth,
}

/// Fixed organisation layout: key, name, street line and town.
const ORG_LAYOUT: [(OrgKey, &str, &str, Town); 5] = [
    (
        OrgKey::Hospital,
        "Riverbend Community Hospital",
        "1200 Riverbend Parkway",
        TOWNS[0],
    ),
    (
        OrgKey::FamilyPractice,
        "Maple Hill Family Practice",
        "48 Maple Hill Road",
        TOWNS[1],
    ),
    (
        OrgKey::MedicalGroup,
        "Stonebridge Medical Group",
        "310 Stonebridge Avenue",
        TOWNS[4],
    ),
    (
        OrgKey::WomensHealth,
        "Cedar Valley Women's Health",
        "77 Cedar Valley Drive",
        TOWNS[3],
    ),
    (
        OrgKey::BehavioralHealth,
        "Willow Creek Behavioral Health",
        "15 Willow Creek Lane",
        TOWNS[2],
    ),
];

/// A clinician's specialty, which decides the encounters they staff.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Specialty {
    FamilyPractice,
    GeneralMedicine,
    Emergency,
    Cardiology,
    InfectiousDisease,
    ObstetricsGynecology,
    Psychiatry,
}

impl Specialty {
    /// The SNOMED CT practice-setting code for `PractitionerRole.specialty`.
    fn code(self) -> Code {
        let (code, display) = match self {
            Self::FamilyPractice => ("419772000", "Family practice"),
            Self::GeneralMedicine => ("394802001", "General medicine"),
            Self::Emergency => ("773568002", "Emergency medicine"),
            Self::Cardiology => ("394579002", "Cardiology"),
            Self::InfectiousDisease => ("394807007", "Infectious diseases"),
            Self::ObstetricsGynecology => ("394585009", "Obstetrics and gynecology"),
            Self::Psychiatry => ("394587001", "Psychiatry"),
        };
        Code {
            system: codes::SNOMED,
            code,
            display,
        }
    }
}

/// Fixed clinician layout: who works where.
const CLINICIAN_LAYOUT: [(Specialty, OrgKey); 10] = [
    (Specialty::FamilyPractice, OrgKey::FamilyPractice),
    (Specialty::FamilyPractice, OrgKey::FamilyPractice),
    (Specialty::FamilyPractice, OrgKey::MedicalGroup),
    (Specialty::GeneralMedicine, OrgKey::MedicalGroup),
    (Specialty::GeneralMedicine, OrgKey::Hospital),
    (Specialty::Emergency, OrgKey::Hospital),
    (Specialty::Cardiology, OrgKey::Hospital),
    (Specialty::InfectiousDisease, OrgKey::Hospital),
    (Specialty::ObstetricsGynecology, OrgKey::WomensHealth),
    (Specialty::Psychiatry, OrgKey::BehavioralHealth),
];

/// One organisation, with the ids and contact details drawn for this seed.
#[derive(Clone, Debug)]
pub(super) struct Org {
    pub(super) key: OrgKey,
    pub(super) id: Uuid,
    pub(super) name: &'static str,
    line: &'static str,
    town: Town,
    phone: String,
}

/// One practitioner and the id of their single `PractitionerRole`.
#[derive(Clone, Debug)]
pub(super) struct Clinician {
    pub(super) id: Uuid,
    role_id: Uuid,
    /// Display form, e.g. "Dr. Grace Okafor".
    pub(super) display: String,
    given: &'static str,
    family: &'static str,
    gender: &'static str,
    npi: String,
    phone: String,
    pub(super) specialty: Specialty,
    pub(super) org: OrgKey,
}

/// The whole directory; patient bundles refer into it by id.
#[derive(Clone, Debug)]
pub(super) struct Directory {
    orgs: [Org; 5],
    pub(super) clinicians: [Clinician; 10],
    seed: u64,
}

impl Directory {
    /// Draws the directory for `seed`.
    pub(super) fn new(seed: u64) -> Self {
        let mut rng = super::directory_rng(seed);
        let orgs = ORG_LAYOUT.map(|(key, name, line, town)| Org {
            key,
            id: fhir::new_id(&mut rng),
            name,
            line,
            town,
            phone: phone(&mut rng, &town),
        });
        let clinicians =
            CLINICIAN_LAYOUT.map(|(specialty, org)| new_clinician(&mut rng, specialty, org));
        Self {
            orgs,
            clinicians,
            seed,
        }
    }

    /// The organisation for `key`.
    pub(super) fn org(&self, key: OrgKey) -> &Org {
        // Constant indexes into a fixed-size array: checked at compile time.
        match key {
            OrgKey::Hospital => &self.orgs[0],
            OrgKey::FamilyPractice => &self.orgs[1],
            OrgKey::MedicalGroup => &self.orgs[2],
            OrgKey::WomensHealth => &self.orgs[3],
            OrgKey::BehavioralHealth => &self.orgs[4],
        }
    }

    /// The first clinician with `specialty` (the layout has one of each).
    pub(super) fn specialist(&self, specialty: Specialty) -> &Clinician {
        self.clinicians
            .iter()
            .find(|c| c.specialty == specialty)
            .unwrap_or(&self.clinicians[0])
    }

    /// A clinician with `specialty` at `org`, or failing that anywhere in the network.
    pub(super) fn staff(&self, org: OrgKey, specialty: Specialty) -> &Clinician {
        self.clinicians
            .iter()
            .find(|c| c.org == org && c.specialty == specialty)
            .unwrap_or_else(|| self.specialist(specialty))
    }

    /// The directory as a FHIR `transaction` Bundle.
    pub(super) fn bundle(&self) -> Value {
        let mut entries = Vec::with_capacity(self.orgs.len() + 2 * self.clinicians.len());
        for (n, org) in self.orgs.iter().enumerate() {
            entries.push(entry("Organization", org.id, self.organization(n, org)));
        }
        for c in &self.clinicians {
            entries.push(entry("Practitioner", c.id, practitioner(c)));
        }
        for c in &self.clinicians {
            entries.push(entry("PractitionerRole", c.role_id, self.role(c)));
        }
        fhir::transaction(entries)
    }

    fn organization(&self, n: usize, org: &Org) -> Value {
        json!({
            "resourceType": "Organization",
            "id": org.id.to_string(),
            // Seed-qualified so two demo data sets loaded side by side do not share identifiers.
            "identifier": [{
                "use": "official",
                "system": ORG_ID,
                "value": format!("ORG-{}-{:02}", self.seed % 10_000, n + 1),
            }],
            "active": true,
            "type": [fhir::simple_concept(ORGANIZATION_TYPE, "prov", "Healthcare Provider")],
            "name": org.name,
            "telecom": [{ "system": "phone", "value": org.phone, "use": "work" }],
            "address": [address("work", org.line, &org.town)],
        })
    }

    fn role(&self, c: &Clinician) -> Value {
        let org = self.org(c.org);
        json!({
            "resourceType": "PractitionerRole",
            "id": c.role_id.to_string(),
            "active": true,
            "practitioner": reference_to(c.id, &c.display),
            "organization": reference_to(org.id, org.name),
            "code": [fhir::simple_concept(PRACTITIONER_ROLE, "doctor", "Doctor")],
            "specialty": [concept(&c.specialty.code())],
            "telecom": [{ "system": "phone", "value": c.phone, "use": "work" }],
        })
    }
}

fn new_clinician(rng: &mut ChaCha8Rng, specialty: Specialty, org: OrgKey) -> Clinician {
    let female = rng.random_bool(0.5);
    let given = if female {
        *pick(rng, &names::GIVEN_FEMALE)
    } else {
        *pick(rng, &names::GIVEN_MALE)
    };
    let family = *pick(rng, &names::FAMILY);
    let town = ORG_LAYOUT[0].3;
    Clinician {
        id: fhir::new_id(rng),
        role_id: fhir::new_id(rng),
        display: format!("Dr. {given} {family}"),
        given,
        family,
        gender: if female { "female" } else { "male" },
        npi: npi(rng.random_range(100_000_000..200_000_000u32)),
        phone: phone(rng, &town),
        specialty,
        org,
    }
}

fn practitioner(c: &Clinician) -> Value {
    json!({
        "resourceType": "Practitioner",
        "id": c.id.to_string(),
        "identifier": [{ "use": "official", "system": NPI, "value": c.npi }],
        "active": true,
        "name": [{ "use": "official", "family": c.family, "given": [c.given], "prefix": ["Dr."] }],
        "telecom": [{ "system": "phone", "value": c.phone, "use": "work" }],
        "gender": c.gender,
    })
}

/// A ten-digit NPI whose last digit is the Luhn check digit over `80840` + the nine-digit base,
/// as the NPI standard specifies; so the numbers pass format validation like real ones.
pub(super) fn npi(base: u32) -> String {
    let digits = format!("{base:09}");
    // The constant 24 accounts for the "80840" prefix of the card-issuer form.
    let mut sum = 24;
    for (i, ch) in digits.bytes().rev().enumerate() {
        let d = u32::from(ch - b'0');
        sum += if i % 2 == 0 {
            let doubled = d * 2;
            doubled / 10 + doubled % 10
        } else {
            d
        };
    }
    format!("{digits}{}", (10 - sum % 10) % 10)
}
