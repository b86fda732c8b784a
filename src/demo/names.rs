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
