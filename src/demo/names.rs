//! Small built-in word lists for names and addresses.
//!
//! Written for this project: common given names and surnames, invented street and organisation
//! names, and a handful of Oregon towns with their ZIP and area codes so that every address is
//! internally consistent. Phone numbers use the 555-01xx range reserved for fiction.

/// Given names for patients and clinicians recorded as female.
pub(super) const GIVEN_FEMALE: [&str; 32] = [
    "Amelia", "Ava", "Beatriz", "Camila", "Chloe", "Claire", "Diana", "Elena", "Emily", "Fatima",
    "Grace", "Hannah", "Ines", "Isabel", "Julia", "Keiko", "Laura", "Leah", "Lucia", "Maya", "Mei",
    "Nadia", "Nora", "Olivia", "Priya", "Rosa", "Ruth", "Sara", "Sofia", "Tessa", "Valeria", "Zoe",
];

/// Given names for patients and clinicians recorded as male.
pub(super) const GIVEN_MALE: [&str; 32] = [
    "Aaron", "Adam", "Ahmed", "Andre", "Benjamin", "Carlos", "Daniel", "David", "Diego", "Elias",
    "Ethan", "Felix", "Gabriel", "Hiro", "Isaac", "Jacob", "James", "Jonah", "Kenji", "Leon",
    "Liam", "Lucas", "Marcus", "Mateo", "Noah", "Omar", "Owen", "Peter", "Rafael", "Samuel",
    "Thomas", "Victor",
];

/// Family names.
pub(super) const FAMILY: [&str; 40] = [
    "Abbott", "Alvarez", "Baker", "Bennett", "Brooks", "Chen", "Clarke", "Cohen", "Delgado",
    "Dunn", "Ellis", "Fischer", "Foster", "Garcia", "Gupta", "Hale", "Hayes", "Ibrahim", "Jensen",
    "Kim", "Larsen", "Lopez", "Marsh", "Medina", "Morgan", "Nakamura", "Novak", "Okafor", "Olsen",
    "Patel", "Quinn", "Reyes", "Romero", "Sato", "Shaw", "Silva", "Tran", "Walsh", "Young",
    "Zimmer",
];

/// Street names, combined with a number and a [`STREET_KIND`].
pub(super) const STREET: [&str; 24] = [
    "Alder",
    "Aspen",
    "Birch",
    "Brookside",
    "Cascade",
    "Cedar",
    "Chestnut",
    "Cottonwood",
    "Elm",
    "Fern",
    "Hawthorn",
    "Hillcrest",
    "Juniper",
    "Lakeview",
    "Laurel",
    "Madrona",
    "Maple",
    "Meadow",
    "Oak",
    "Orchard",
    "Pine",
    "Riverside",
    "Spruce",
    "Willow",
];

/// Street suffixes.
pub(super) const STREET_KIND: [&str; 6] = ["Street", "Avenue", "Road", "Lane", "Drive", "Court"];

/// A town: name, state, ZIP code and telephone area code.
#[derive(Clone, Copy, Debug)]
pub(super) struct Town {
    pub(super) city: &'static str,
    pub(super) state: &'static str,
    pub(super) zip: &'static str,
    pub(super) area_code: &'static str,
}

/// The demo region: one state, so that patients plausibly use the same organisations.
pub(super) const TOWNS: [Town; 7] = [
    Town {
        city: "Portland",
        state: "OR",
        zip: "97201",
        area_code: "503",
    },
    Town {
        city: "Salem",
        state: "OR",
        zip: "97301",
        area_code: "503",
    },
    Town {
        city: "Albany",
        state: "OR",
        zip: "97321",
        area_code: "541",
    },
    Town {
        city: "Corvallis",
        state: "OR",
        zip: "97330",
        area_code: "541",
    },
    Town {
        city: "Eugene",
        state: "OR",
        zip: "97401",
        area_code: "541",
    },
    Town {
        city: "Medford",
        state: "OR",
        zip: "97501",
        area_code: "541",
    },
    Town {
        city: "Bend",
        state: "OR",
        zip: "97701",
        area_code: "541",
    },
];

/// Where a patient who moved to the demo population from another state was born, and the
/// town they live in now: a town whose name shares words with (or starts like) the birth
/// state, the pattern that once made the leak scan mistake a kept birth state for the
/// removed city of residence.
#[derive(Clone, Copy, Debug)]
pub(super) struct Hometown {
    /// `Patient.extension[birthPlace].valueAddress.state` (a state's name, kept by Safe Harbor).
    pub(super) birth_state: &'static str,
    /// The birth city (removed by Safe Harbor).
    pub(super) birth_city: &'static str,
    /// Where the patient lives now.
    pub(super) town: Town,
}

/// Born in a state, living in a town named after it (Kansas / Kansas City), named like it
/// (Indiana / Indiana, Pennsylvania; New York / New York) or starting like it (Indiana /
/// Indianapolis).
pub(super) const HOMETOWNS: [Hometown; 9] = [
    Hometown {
        birth_state: "Kansas",
        birth_city: "Wichita",
        town: Town {
            city: "Kansas City",
            state: "KS",
            zip: "66101",
            area_code: "913",
        },
    },
    Hometown {
        birth_state: "Iowa",
        birth_city: "Des Moines",
        town: Town {
            city: "Iowa City",
            state: "IA",
            zip: "52240",
            area_code: "319",
        },
    },
    Hometown {
        birth_state: "Oklahoma",
        birth_city: "Tulsa",
        town: Town {
            city: "Oklahoma City",
            state: "OK",
            zip: "73102",
            area_code: "405",
        },
    },
    Hometown {
        birth_state: "Virginia",
        birth_city: "Richmond",
        town: Town {
            city: "Virginia Beach",
            state: "VA",
            zip: "23451",
            area_code: "757",
        },
    },
    Hometown {
        birth_state: "Nevada",
        birth_city: "Reno",
        town: Town {
            city: "Nevada City",
            state: "CA",
            zip: "95959",
            area_code: "530",
        },
    },
    Hometown {
        birth_state: "Indiana",
        birth_city: "Fort Wayne",
        town: Town {
            city: "Indianapolis",
            state: "IN",
            zip: "46204",
            area_code: "317",
        },
    },
    Hometown {
        birth_state: "Indiana",
        birth_city: "Gary",
        town: Town {
            city: "Indiana",
            state: "PA",
            zip: "15701",
            area_code: "724",
        },
    },
    Hometown {
        birth_state: "Oregon",
        birth_city: "Pendleton",
        town: Town {
            city: "Oregon City",
            state: "OR",
            zip: "97045",
            area_code: "503",
        },
    },
    Hometown {
        birth_state: "New York",
        birth_city: "Buffalo",
        town: Town {
            city: "New York",
            state: "NY",
            zip: "10001",
            area_code: "212",
        },
    },
];
