//! The demo alliance's seed tables: the two members and the community practices, their sites
//! (Connecticut towns and ZIP codes), the specialties and programmes each offers, the streets
//! and names synthetic patients are drawn from, the pediatric-onset conditions some carry and
//! the holidays clinics close. Illustrative, not real people or real schedules.

pub(super) const SNOMED: &str = "http://snomed.info/sct";
/// Practice setting codes (SNOMED CT, the FHIR R4 `c80-practice-codes` value set).
pub(super) const PRACTICE: &str = "http://snomed.info/sct";

/// (id, name, pediatric member?)
pub(super) const MEMBERS: &[(&str, &str)] = &[
    ("cc", "Connecticut Children's"),
    ("hhc", "Hartford HealthCare"),
];

/// (id, name, ZIP) of the community practices.
pub(super) const PRACTICES: &[(&str, &str, &str)] = &[
    ("shoreline-peds", "Shoreline Pediatrics", "06475"),
    ("norwich-peds", "Pediatric Associates of Norwich", "06360"),
    ("litchfield-fm", "Litchfield Hills Family Medicine", "06790"),
    ("fairfield-peds", "Fairfield County Pediatrics", "06880"),
    ("quiet-corner-peds", "Quiet Corner Pediatrics", "06260"),
];

/// (id, organisation, name, town, ZIP)
pub(super) const SITES: &[(&str, &str, &str, &str, &str)] = &[
    (
        "cc-hartford",
        "cc",
        "Connecticut Children's Hartford",
        "Hartford",
        "06106",
    ),
    (
        "cc-farmington",
        "cc",
        "Connecticut Children's Farmington",
        "Farmington",
        "06032",
    ),
    (
        "cc-glastonbury",
        "cc",
        "Connecticut Children's Glastonbury",
        "Glastonbury",
        "06033",
    ),
    (
        "cc-danbury",
        "cc",
        "Connecticut Children's Danbury",
        "Danbury",
        "06810",
    ),
    (
        "cc-shelton",
        "cc",
        "Connecticut Children's Shelton",
        "Shelton",
        "06484",
    ),
    (
        "cc-waterford",
        "cc",
        "Connecticut Children's Waterford",
        "Waterford",
        "06385",
    ),
    (
        "cc-westport",
        "cc",
        "Connecticut Children's Westport",
        "Westport",
        "06880",
    ),
    (
        "cc-south-windsor",
        "cc",
        "Connecticut Children's South Windsor",
        "South Windsor",
        "06074",
    ),
    (
        "cc-enfield",
        "cc",
        "Connecticut Children's Enfield",
        "Enfield",
        "06082",
    ),
    (
        "hhc-hartford",
        "hhc",
        "Hartford Hospital",
        "Hartford",
        "06106",
    ),
    (
        "hhc-new-britain",
        "hhc",
        "The Hospital of Central Connecticut",
        "New Britain",
        "06052",
    ),
    (
        "hhc-meriden",
        "hhc",
        "MidState Medical Center",
        "Meriden",
        "06451",
    ),
    ("hhc-norwich", "hhc", "Backus Hospital", "Norwich", "06360"),
    (
        "hhc-torrington",
        "hhc",
        "Charlotte Hungerford Hospital",
        "Torrington",
        "06790",
    ),
    (
        "hhc-bridgeport",
        "hhc",
        "St. Vincent's Medical Center",
        "Bridgeport",
        "06606",
    ),
    (
        "hhc-willimantic",
        "hhc",
        "Windham Hospital",
        "Willimantic",
        "06226",
    ),
    (
        "hhc-glastonbury",
        "hhc",
        "Hartford HealthCare Glastonbury",
        "Glastonbury",
        "06033",
    ),
    (
        "hhc-farmington",
        "hhc",
        "Hartford HealthCare Farmington",
        "Farmington",
        "06032",
    ),
    (
        "hhc-mystic",
        "hhc",
        "Hartford HealthCare Mystic",
        "Mystic",
        "06355",
    ),
    (
        "hhc-old-saybrook",
        "hhc",
        "Hartford HealthCare Old Saybrook",
        "Old Saybrook",
        "06475",
    ),
    (
        "hhc-southington",
        "hhc",
        "Hartford HealthCare Southington",
        "Southington",
        "06489",
    ),
    (
        "hhc-avon",
        "hhc",
        "Hartford HealthCare Avon",
        "Avon",
        "06001",
    ),
    (
        "hhc-westport",
        "hhc",
        "Hartford HealthCare Westport",
        "Westport",
        "06880",
    ),
];

/// (code, display, short id, organisation, video?) — specialties, SNOMED CT practice codes.
pub(super) const SPECIALTIES: &[(&str, &str, &str, &str, bool)] = &[
    (
        "408459003",
        "Pediatric cardiology",
        "peds-cardiology",
        "cc",
        true,
    ),
    (
        "419610006",
        "Pediatric endocrinology",
        "peds-endocrinology",
        "cc",
        true,
    ),
    (
        "418058008",
        "Pediatric gastroenterology",
        "peds-gastroenterology",
        "cc",
        true,
    ),
    (
        "419365004",
        "Pediatric nephrology",
        "peds-nephrology",
        "cc",
        true,
    ),
    (
        "419170002",
        "Pediatric pulmonology",
        "peds-pulmonology",
        "cc",
        true,
    ),
    (
        "418652005",
        "Pediatric hematology",
        "peds-hematology",
        "cc",
        false,
    ),
    (
        "418002000",
        "Pediatric oncology",
        "peds-oncology",
        "cc",
        false,
    ),
    (
        "419472004",
        "Pediatric rheumatology",
        "peds-rheumatology",
        "cc",
        true,
    ),
    (
        "394588006",
        "Pediatric (Child and adolescent) psychiatry",
        "peds-psychiatry",
        "cc",
        true,
    ),
    (
        "394539006",
        "Pediatric surgery",
        "peds-surgery",
        "cc",
        false,
    ),
    (
        "419983000",
        "Pediatric ophthalmology",
        "peds-ophthalmology",
        "cc",
        false,
    ),
    (
        "418862001",
        "Pediatric infectious diseases",
        "peds-infectious",
        "cc",
        true,
    ),
    (
        "420208008",
        "Pediatric genetics",
        "peds-genetics",
        "cc",
        true,
    ),
    ("394579002", "Cardiology", "cardiology", "hhc", true),
    ("394583002", "Endocrinology", "endocrinology", "hhc", true),
    (
        "394584008",
        "Gastroenterology",
        "gastroenterology",
        "hhc",
        true,
    ),
    ("394589003", "Nephrology", "nephrology", "hhc", true),
    (
        "418112009",
        "Pulmonary medicine",
        "pulmonology",
        "hhc",
        true,
    ),
    (
        "394803006",
        "Clinical hematology",
        "hematology",
        "hhc",
        false,
    ),
    ("394593009", "Medical oncology", "oncology", "hhc", false),
    ("394810000", "Rheumatology", "rheumatology", "hhc", true),
    ("394587001", "Psychiatry", "psychiatry", "hhc", true),
    ("394591006", "Neurology", "neurology", "hhc", true),
    (
        "394801008",
        "Surgery-Trauma and orthopedics",
        "orthopedics",
        "hhc",
        false,
    ),
    (
        "419192003",
        "Internal medicine",
        "internal-medicine",
        "hhc",
        true,
    ),
];

/// Flagship services held at fixed outreach sites besides the main campus.
pub(super) const OUTREACH: &[(&str, &[&str])] = &[
    (
        "peds-cardiology",
        &["cc-waterford", "cc-danbury", "cc-shelton", "cc-enfield"],
    ),
    (
        "peds-endocrinology",
        &["cc-waterford", "cc-glastonbury", "cc-westport"],
    ),
    (
        "cardiology",
        &[
            "hhc-norwich",
            "hhc-bridgeport",
            "hhc-mystic",
            "hhc-farmington",
        ],
    ),
];

/// Services that are not taking new patients in the demo (shown as exclusions).
pub(super) const WAITLISTED: &[&str] = &["peds-ophthalmology", "orthopedics"];

/// An age range in whole years (either end open).
pub(super) type Ages = (Option<i32>, Option<i32>);

/// One of the announcement's programmes.
pub(super) struct Program {
    pub(super) code: &'static str,
    pub(super) name: &'static str,
    pub(super) organizations: &'static [&'static str],
    pub(super) specialty: &'static str,
    pub(super) ages: Ages,
    pub(super) video: bool,
}

/// The announcement's programmes.
pub(super) const PROGRAMS: &[Program] = &[
    Program {
        code: "kidney-transplant",
        name: "Kidney transplant",
        organizations: &["cc", "hhc"],
        specialty: "408477008",
        ages: (None, None),
        video: true,
    },
    Program {
        code: "adult-congenital-heart",
        name: "Adult congenital heart disease",
        organizations: &["hhc"],
        specialty: "394579002",
        ages: (Some(18), None),
        video: true,
    },
    Program {
        code: "injury-prevention",
        name: "Injury prevention",
        organizations: &["cc"],
        specialty: "394576009",
        ages: (Some(0), Some(21)),
        video: true,
    },
    Program {
        code: "neonatal-care",
        name: "Neonatal care",
        organizations: &["cc", "hhc"],
        specialty: "408478003",
        ages: (Some(0), Some(1)),
        video: false,
    },
];

/// Street names for the demo's home addresses.
pub(super) const STREETS: &[&str] = &[
    "Maple Avenue",
    "Oak Street",
    "Elm Street",
    "Church Street",
    "Main Street",
    "High Street",
    "Park Road",
    "Hillside Avenue",
    "Prospect Street",
    "Washington Street",
    "Grove Street",
    "Cedar Lane",
    "Pleasant Street",
    "Spring Street",
    "Ridge Road",
    "Orchard Lane",
    "Highland Avenue",
    "Walnut Street",
    "Chestnut Street",
    "River Road",
    "Lake Drive",
    "Meadow Lane",
    "Forest Avenue",
    "Summer Street",
    "Winter Street",
    "Union Street",
];

pub(super) const FAMILY: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Rivera", "Nguyen", "Patel", "Kim", "Rossi", "Lopez", "Clark",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Hill", "Flores", "Green",
    "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Perez", "Roberts", "Turner", "Phillips",
    "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart", "Sanchez", "Morris", "Rogers",
];
pub(super) const GIVEN_F: &[&str] = &[
    "Ava", "Mia", "Sofia", "Emma", "Olivia", "Isabella", "Aaliyah", "Chloe", "Grace", "Layla",
    "Zoe", "Nora", "Lucia", "Maya", "Hannah", "Priya", "Amara", "Elena",
];
pub(super) const GIVEN_M: &[&str] = &[
    "Liam", "Noah", "Mateo", "Elijah", "Lucas", "Mason", "Ethan", "Leo", "Jayden", "Caleb", "Omar",
    "Arjun", "Diego", "Samuel", "Owen", "Isaac", "Kai", "Malik",
];

/// Pediatric-onset conditions given to some young people: (SNOMED code, display).
pub(super) const ONSET: &[(&str, &str)] = &[
    ("13213009", "Congenital heart disease"),
    ("190905008", "Cystic fibrosis"),
    ("46635009", "Diabetes mellitus type 1"),
    ("127040003", "Sickle cell-hemoglobin SS disease"),
];

/// Holidays the demo's services close on (US federal holidays the members observe), 2026–2028.
pub(super) const HOLIDAYS: &[&str] = &[
    "2026-11-26",
    "2026-12-25",
    "2027-01-01",
    "2027-01-18",
    "2027-02-15",
    "2027-05-31",
    "2027-07-05",
    "2027-09-06",
    "2027-11-25",
    "2027-12-24",
    "2027-12-31",
    "2028-01-17",
    "2028-05-29",
    "2028-07-04",
    "2028-09-04",
    "2028-11-23",
    "2028-12-25",
];
