//! The demo alliance (`continuum demo load`, `continuum serve --demo`): a deterministic,
//! seeded, **illustrative** data set — the two members with Connecticut sites, community
//! practices, the announcement's programmes and common specialties, clinicians with licences,
//! schedules with slots for the coming weeks, and synthetic patients aged 0–26 at real
//! Connecticut ZIP codes. Every resource carries the `illustrative` tag; no record describes a
//! real person, and site positions are their ZIP code's centroid.

use crate::app::App as FhirApi;
use anyhow::{Context, Result, bail};
use care::profile as ext;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{Value, json};

/// The tag on every demo resource.
pub use care::profile::DATA_ORIGIN as TAG_SYSTEM;
use care::profile::PROGRAM as PROGRAM_SYSTEM;
const SNOMED: &str = "http://snomed.info/sct";
/// Practice setting codes (SNOMED CT, the FHIR R4 `c80-practice-codes` value set).
const PRACTICE: &str = "http://snomed.info/sct";

/// (id, name, pediatric member?)
const MEMBERS: &[(&str, &str)] = &[
    ("cc", "Connecticut Children's"),
    ("hhc", "Hartford HealthCare"),
];

/// (id, name, ZIP) of the community practices.
const PRACTICES: &[(&str, &str, &str)] = &[
    ("shoreline-peds", "Shoreline Pediatrics", "06475"),
    ("norwich-peds", "Pediatric Associates of Norwich", "06360"),
    ("litchfield-fm", "Litchfield Hills Family Medicine", "06790"),
    ("fairfield-peds", "Fairfield County Pediatrics", "06880"),
    ("quiet-corner-peds", "Quiet Corner Pediatrics", "06260"),
];

/// (id, organisation, name, town, ZIP)
const SITES: &[(&str, &str, &str, &str, &str)] = &[
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
const SPECIALTIES: &[(&str, &str, &str, &str, bool)] = &[
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
const OUTREACH: &[(&str, &[&str])] = &[
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
const WAITLISTED: &[&str] = &["peds-ophthalmology", "orthopedics"];

/// An age range in whole years (either end open).
type Ages = (Option<i32>, Option<i32>);

/// One of the announcement's programmes.
struct Program {
    code: &'static str,
    name: &'static str,
    organizations: &'static [&'static str],
    specialty: &'static str,
    ages: Ages,
    video: bool,
}

/// The announcement's programmes.
const PROGRAMS: &[Program] = &[
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
const STREETS: &[&str] = &[
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

const FAMILY: &[&str] = &[
    "Smith", "Johnson", "Garcia", "Rivera", "Nguyen", "Patel", "Kim", "Rossi", "Lopez", "Clark",
    "Walker", "Young", "Allen", "King", "Wright", "Scott", "Torres", "Hill", "Flores", "Green",
    "Adams", "Baker", "Nelson", "Carter", "Mitchell", "Perez", "Roberts", "Turner", "Phillips",
    "Campbell", "Parker", "Evans", "Edwards", "Collins", "Stewart", "Sanchez", "Morris", "Rogers",
];
const GIVEN_F: &[&str] = &[
    "Ava", "Mia", "Sofia", "Emma", "Olivia", "Isabella", "Aaliyah", "Chloe", "Grace", "Layla",
    "Zoe", "Nora", "Lucia", "Maya", "Hannah", "Priya", "Amara", "Elena",
];
const GIVEN_M: &[&str] = &[
    "Liam", "Noah", "Mateo", "Elijah", "Lucas", "Mason", "Ethan", "Leo", "Jayden", "Caleb", "Omar",
    "Arjun", "Diego", "Samuel", "Owen", "Isaac", "Kai", "Malik",
];

/// Pediatric-onset conditions given to some young people: (SNOMED code, display).
const ONSET: &[(&str, &str)] = &[
    ("13213009", "Congenital heart disease"),
    ("190905008", "Cystic fibrosis"),
    ("46635009", "Diabetes mellitus type 1"),
    ("127040003", "Sickle cell-hemoglobin SS disease"),
];

fn tag() -> Value {
    json!({"tag": [{"system": TAG_SYSTEM, "code": "illustrative", "display": "Illustrative demo data, not a real record"}]})
}

fn zip_point(zip: &str) -> Result<(f64, f64)> {
    let (p, _) = care::geo::zip_centroid(zip).with_context(|| format!("ZIP {zip} is unknown"))?;
    Ok((p.lat, p.lng))
}

/// Holidays the demo's services close on (US federal holidays the members observe), 2026–2028.
const HOLIDAYS: &[&str] = &[
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

/// The demo alliance's resources, in load order (referenced resources first).
pub fn alliance(seed: u64, patients: usize, now_ms: i64) -> Result<Vec<Value>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Value> = Vec::new();
    for (id, name) in MEMBERS {
        out.push(json!({"resourceType": "Organization", "id": id, "meta": tag(), "active": true, "name": name,
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}]}],
            "address": [{"state": "CT", "country": "US"}]}));
    }
    for (id, name, zip) in PRACTICES {
        out.push(json!({"resourceType": "Organization", "id": id, "meta": tag(), "active": true, "name": name,
            "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov", "display": "Healthcare Provider"}]}],
            "address": [{"postalCode": zip, "state": "CT", "country": "US"}]}));
    }
    let hours = |open: &str, close: &str| json!([{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"], "availableStartTime": open, "availableEndTime": close}]);
    let location = |id: &str, org: &str, name: &str, town: &str, zip: &str| -> Result<Value> {
        let (lat, lng) = zip_point(zip)?;
        Ok(
            json!({"resourceType": "Location", "id": id, "meta": tag(), "status": "active", "name": name,
            "description": "Illustrative site; its position is the centroid of its ZIP code",
            "mode": "instance",
            "physicalType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "bu", "display": "Building"}]},
            "address": {"city": town, "state": "CT", "postalCode": zip, "country": "US"},
            "position": {"latitude": lat, "longitude": lng},
            "managingOrganization": {"reference": format!("Organization/{org}")},
            "hoursOfOperation": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"], "openingTime": "08:00:00", "closingTime": "17:00:00"}]}),
        )
    };
    for (id, org, name, town, zip) in SITES {
        out.push(location(id, org, name, town, zip)?);
    }
    for (id, name, zip) in PRACTICES {
        let town = care::geo::zip_city(zip).unwrap_or_default();
        out.push(location(&format!("{id}-office"), id, name, &town, zip)?);
    }
    let not_available: Vec<Value> = HOLIDAYS
        .iter()
        .map(|d| json!({"description": "Holiday (closed)", "during": {"start": d, "end": d}}))
        .collect();
    // services: (id, org, name, specialty (code, display), program, sites, ages, video)
    struct Svc {
        id: String,
        org: String,
        name: String,
        specialty: (String, String),
        program: Option<(String, String)>,
        sites: Vec<String>,
        ages: (Option<i32>, Option<i32>),
        video: bool,
        accepting: bool,
    }
    let sites_of =
        |org: &str| -> Vec<&str> { SITES.iter().filter(|s| s.1 == org).map(|s| s.0).collect() };
    let mut services: Vec<Svc> = Vec::new();
    for (code, display, short, org, video) in SPECIALTIES {
        let all = sites_of(org);
        // the main campus plus two to four others, chosen by the seed; a few flagship
        // services have fixed outreach sites across the state
        let mut sites = vec![all[0].to_string()];
        if let Some((_, fixed)) = OUTREACH.iter().find(|(s, _)| s == short) {
            sites.extend(fixed.iter().map(|s| s.to_string()));
        }
        let extra = rng.random_range(2..=4);
        while sites.len() < 1 + extra {
            let s = all[rng.random_range(1..all.len())].to_string();
            if !sites.contains(&s) {
                sites.push(s);
            }
        }
        let ages = if *org == "cc" {
            (Some(0), Some(17))
        } else {
            (Some(18), None)
        };
        services.push(Svc {
            id: format!("{org}-{short}"),
            org: org.to_string(),
            name: format!(
                "{} — {display}",
                if *org == "cc" {
                    "Connecticut Children's"
                } else {
                    "Hartford HealthCare"
                }
            ),
            specialty: (code.to_string(), display.to_string()),
            program: None,
            sites,
            ages,
            video: *video,
            accepting: !WAITLISTED.contains(short),
        });
    }
    for Program {
        code,
        name,
        organizations: orgs,
        specialty,
        ages,
        video,
    } in PROGRAMS
    {
        for org in orgs.iter() {
            let all = sites_of(org);
            services.push(Svc {
                id: format!("{org}-{code}"),
                org: org.to_string(),
                name: format!(
                    "{} — {name}",
                    if *org == "cc" {
                        "Connecticut Children's"
                    } else {
                        "Hartford HealthCare"
                    }
                ),
                specialty: (specialty.to_string(), name.to_string()),
                program: Some((code.to_string(), name.to_string())),
                sites: all.iter().take(2).map(|s| s.to_string()).collect(),
                ages: if ages.0.is_none() && ages.1.is_none() {
                    if *org == "cc" {
                        (Some(0), Some(17))
                    } else {
                        (Some(18), None)
                    }
                } else {
                    *ages
                },
                video: *video,
                accepting: true,
            });
        }
    }
    for (id, name, _) in PRACTICES {
        let family = id.ends_with("-fm");
        services.push(Svc {
            id: format!("{id}-primary"),
            org: id.to_string(),
            name: format!(
                "{name} — {}",
                if family {
                    "Family medicine"
                } else {
                    "Pediatric primary care"
                }
            ),
            specialty: if family {
                ("419772000".into(), "Family practice".into())
            } else {
                ("408443003".into(), "General medical practice".into())
            },
            program: None,
            sites: vec![format!("{id}-office")],
            ages: if family {
                (None, None)
            } else {
                (Some(0), Some(21))
            },
            video: false,
            accepting: true,
        });
    }
    for s in &services {
        let mut extensions = vec![json!({"url": ext::ACCEPTING, "valueBoolean": s.accepting})];
        if s.ages.0.is_some() || s.ages.1.is_some() {
            let mut range = json!({});
            if let Some(l) = s.ages.0 {
                range["low"] = json!({"value": l, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"});
            }
            if let Some(h) = s.ages.1 {
                range["high"] = json!({"value": h, "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"});
            }
            extensions.push(json!({"url": ext::AGE_RANGE, "valueRange": range}));
        }
        if s.id.ends_with("psychiatry") {
            // mental-health care: what is booked in it is labelled PSY and restricted
            extensions.push(json!({"url": care::labels::SERVICE_SENSITIVITY, "valueCode": "PSY"}));
        }
        extensions.push(json!({"url": ext::MODALITY, "valueCode": "in-person"}));
        if s.video {
            extensions.push(json!({"url": ext::MODALITY, "valueCode": "video"}));
        }
        let (open, close) = match rng.random_range(0..3) {
            0 => ("08:00:00", "12:00:00"),
            1 => ("09:00:00", "16:00:00"),
            _ => ("13:00:00", "17:00:00"),
        };
        let mut hs = json!({"resourceType": "HealthcareService", "id": s.id, "meta": tag(),
            "extension": extensions, "active": true,
            "providedBy": {"reference": format!("Organization/{}", s.org)},
            "specialty": [{"coding": [{"system": PRACTICE, "code": s.specialty.0, "display": s.specialty.1}], "text": s.specialty.1}],
            "location": s.sites.iter().map(|l| json!({"reference": format!("Location/{l}")})).collect::<Vec<_>>(),
            "name": s.name,
            "referralMethod": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/service-referral-method", "code": "elec", "display": "Secure Messaging"}]}],
            "appointmentRequired": true,
            "availableTime": hours(open, close),
            "notAvailable": not_available});
        if let Some((code, name)) = &s.program {
            hs["program"] = json!([{"coding": [{"system": PROGRAM_SYSTEM, "code": code, "display": name}], "text": name}]);
        }
        out.push(hs);
    }
    // clinicians: two or three per service, licensed in CT and some in neighbouring states
    let mut n = 0;
    for s in &services {
        for _ in 0..rng.random_range(2..=3) {
            n += 1;
            let female = rng.random_bool(0.5);
            let given = if female { GIVEN_F } else { GIVEN_M };
            let family = FAMILY[rng.random_range(0..FAMILY.len())];
            let first = given[rng.random_range(0..given.len())];
            let pid = format!("pr-{n}");
            out.push(
                json!({"resourceType": "Practitioner", "id": pid, "meta": tag(), "active": true,
                "name": [{"family": family, "given": [first], "prefix": ["Dr."]}],
                "gender": if female { "female" } else { "male" }}),
            );
            let mut exts = vec![json!({"url": ext::LICENSED_STATE, "valueCode": "CT"})];
            for (state, p) in [("NY", 0.25), ("MA", 0.2), ("RI", 0.15)] {
                if rng.random_bool(p) {
                    exts.push(json!({"url": ext::LICENSED_STATE, "valueCode": state}));
                }
            }
            exts.push(json!({"url": ext::MODALITY, "valueCode": "in-person"}));
            if s.video {
                exts.push(json!({"url": ext::MODALITY, "valueCode": "video"}));
            }
            out.push(json!({"resourceType": "PractitionerRole", "id": format!("role-{n}"), "meta": tag(),
                "extension": exts, "active": true,
                "practitioner": {"reference": format!("Practitioner/{pid}"), "display": format!("Dr. {first} {family}")},
                "organization": {"reference": format!("Organization/{}", s.org)},
                "location": s.sites.iter().map(|l| json!({"reference": format!("Location/{l}")})).collect::<Vec<_>>(),
                "healthcareService": [{"reference": format!("HealthcareService/{}", s.id)}],
                "specialty": [{"coding": [{"system": PRACTICE, "code": s.specialty.0, "display": s.specialty.1}]}]}));
        }
    }
    // schedules: one per service and site in person, and one for video
    for s in &services {
        for site in &s.sites {
            out.push(json!({"resourceType": "Schedule", "id": format!("sch-{}-{}", s.id, site.trim_start_matches(&format!("{}-", s.org))),
                "meta": tag(), "active": true,
                "extension": [{"url": ext::MODALITY, "valueCode": "in-person"}, {"url": ext::SLOT_MINUTES, "valueInteger": 30}],
                "serviceType": [{"text": s.specialty.1}],
                "actor": [{"reference": format!("HealthcareService/{}", s.id)}, {"reference": format!("Location/{site}")}]}));
        }
        if s.video {
            out.push(json!({"resourceType": "Schedule", "id": format!("sch-{}-video", s.id),
                "meta": tag(), "active": true,
                "extension": [{"url": ext::MODALITY, "valueCode": "video"}, {"url": ext::SLOT_MINUTES, "valueInteger": 20}],
                "serviceType": [{"text": s.specialty.1}],
                "actor": [{"reference": format!("HealthcareService/{}", s.id)}]}));
        }
    }
    // patients aged 0–26 at real Connecticut ZIP codes; some young people with a
    // pediatric-onset condition
    let zips = care::geo::zips_in_state("CT");
    if zips.is_empty() {
        bail!("no Connecticut ZIP codes in the ZIP database");
    }
    let day = 86_400_000i64;
    for i in 0..patients {
        let female = rng.random_bool(0.5);
        let given = if female { GIVEN_F } else { GIVEN_M };
        let age_days = rng.random_range(0..(27 * 365));
        let birth = now_ms - age_days as i64 * day;
        let (y, m, d) = care::slots::civil_from_days(birth.div_euclid(day));
        let zip = &zips[rng.random_range(0..zips.len())];
        let city = care::geo::zip_city(zip).unwrap_or_default();
        let id = format!("demo-pat-{i}");
        let org = if age_days < 18 * 365 { "cc" } else { "hhc" };
        let drawn = FAMILY[rng.random_range(0..FAMILY.len())];
        // a third of the families carry a double name (more names, as in a real population)
        let family = if i % 3 == 0 {
            format!("{drawn}-{}", FAMILY[(i * 37 + 11) % FAMILY.len()])
        } else {
            drawn.to_string()
        };
        let first = given[rng.random_range(0..given.len())];
        out.push(json!({"resourceType": "Patient", "id": id, "meta": tag(),
            "identifier": [{"system": format!("urn:mrn:{org}"), "value": format!("D{i:05}")}],
            "name": [{"family": family, "given": [first]}],
            "gender": if female { "female" } else { "male" },
            "birthDate": format!("{y:04}-{m:02}-{d:02}"),
            "address": [{"use": "home", "line": [format!("{} {}", rng.random_range(1..200), STREETS[(i * 7 + 3) % STREETS.len()])], "city": city, "state": "CT", "postalCode": zip, "country": "US"}],
            "managingOrganization": {"reference": format!("Organization/{org}")}}));
        let birth_date = format!("{y:04}-{m:02}-{d:02}");
        let is_child = care::access::BirthDate::parse(&birth_date)
            .is_some_and(|b| care::access::age_on(b, now_ms) < 18);
        if is_child {
            // a parent, who may sign in as the child's proxy and receives the family's messages
            let (relationship, parent) = if i % 2 == 0 {
                ("MTH", GIVEN_F[i % GIVEN_F.len()])
            } else {
                ("FTH", GIVEN_M[i % GIVEN_M.len()])
            };
            out.push(json!({"resourceType": "RelatedPerson", "id": format!("demo-parent-{i}"), "meta": tag(),
                "active": true, "patient": {"reference": format!("Patient/{id}")},
                "relationship": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-RoleCode", "code": relationship}]}],
                "name": [{"family": family, "given": [parent]}],
                "telecom": [{"system": "email", "value": format!("parent-of-{id}@example.org")}]}));
        }
        if age_days > 12 * 365 && rng.random_range(0..20) == 0 {
            let (code, display) = ONSET[rng.random_range(0..ONSET.len())];
            out.push(json!({"resourceType": "Condition", "id": format!("demo-cond-{i}"), "meta": tag(),
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
                "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "confirmed"}]},
                "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
                "code": {"coding": [{"system": SNOMED, "code": code, "display": display}], "text": display},
                "subject": {"reference": format!("Patient/{id}")},
                "onsetAge": {"value": rng.random_range(0..6), "unit": "a", "system": "http://unitsofmeasure.org", "code": "a"}}));
        }
    }
    // the same child registered at the other organisation too (another MRN, a nickname or a
    // typo, the street written shorter), and twins (same family, birth date and home, another
    // given name): the linkage links the first and sends the second to review
    let patients: Vec<Value> = out
        .iter()
        .filter(|r| r["resourceType"] == "Patient")
        .cloned()
        .collect();
    for k in 0..24usize {
        let original = &patients[(k * 83 + 5) % patients.len()];
        let mut copy = original.clone();
        let id = format!("demo-dup-{k}");
        copy["id"] = json!(id);
        let other_org = if original["managingOrganization"]["reference"] == "Organization/cc" {
            "hhc"
        } else {
            "cc"
        };
        copy["identifier"] =
            json!([{"system": format!("urn:mrn:{other_org}"), "value": format!("X{k:04}")}]);
        copy["managingOrganization"] = json!({"reference": format!("Organization/{other_org}")});
        let given = original["name"][0]["given"][0]
            .as_str()
            .unwrap_or("")
            .to_string();
        let family = original["name"][0]["family"]
            .as_str()
            .unwrap_or("")
            .to_string();
        match k % 3 {
            // a typo in the family name
            0 if family.len() > 3 => {
                let mut c: Vec<char> = family.chars().collect();
                c.swap(1, 2);
                copy["name"][0]["family"] = json!(c.into_iter().collect::<String>());
            }
            // the given name in capitals, the family name without accents
            1 => {
                copy["name"][0]["given"] = json!([given.to_uppercase()]);
            }
            // the street written shorter
            _ => {
                if let Some(line) = copy["address"][0]["line"][0].as_str() {
                    copy["address"][0]["line"][0] = json!(
                        line.replace("Street", "St")
                            .replace("Avenue", "Ave")
                            .replace("Road", "Rd")
                            .replace("Lane", "Ln")
                            .replace("Drive", "Dr")
                    );
                }
            }
        }
        out.push(copy);
    }
    for k in 0..6usize {
        let original = &patients[(k * 131 + 11) % patients.len()];
        let mut twin = original.clone();
        twin["id"] = json!(format!("demo-twin-{k}"));
        twin["identifier"] = json!([{"system": original["identifier"][0]["system"].clone(), "value": format!("T{k:04}")}]);
        let given = original["name"][0]["given"][0].as_str().unwrap_or("");
        let other = if given.starts_with('Z') {
            "Yara"
        } else {
            "Zoe"
        };
        twin["name"][0]["given"] = json!([other]);
        out.push(twin);
    }
    Ok(out)
}

/// What loading did.
pub struct Loaded {
    pub resources: usize,
    pub slots: crate::slots::SlotReport,
    /// The identity linkage run over the demo's Patients.
    pub identity: crate::app::linkage::LinkReport,
}

/// Loads the demo alliance (if Organization/cc is not there yet) and its slots for `weeks`
/// weeks; returns `None` when it was already loaded (slots are still topped up).
pub async fn load(api: &FhirApi, weeks: u32) -> Result<Option<Loaded>> {
    let present = api
        .store()
        .read(|tx| tx.current("Organization", "cc", false))
        .await?
        .is_some();
    let mut resources = 0;
    if !present {
        let now = api.store().clock().now_ms();
        let all = alliance(7, 2000, now)?;
        for chunk in all.chunks(2000) {
            let items: Vec<(String, Value)> = chunk
                .iter()
                .map(|r| {
                    (
                        format!("demo {}", r["resourceType"].as_str().unwrap_or("")),
                        r.clone(),
                    )
                })
                .collect();
            let report = api
                .import_chunk(items)
                .await
                .map_err(|e| anyhow::anyhow!("loading the demo failed: {e}"))?;
            if let Some(r) = report.rejected.first() {
                bail!(
                    "the demo data has an invalid resource ({}): {}",
                    r.origin,
                    r.reason
                );
            }
            resources += report.stored;
        }
    }
    let slots = crate::slots::generate(api, weeks)
        .await
        .map_err(|e| anyhow::anyhow!("generating slots failed: {e}"))?;
    if present {
        return Ok(None);
    }
    let identity = crate::app::linkage::link_all_patients(api)
        .await
        .map_err(|e| anyhow::anyhow!("linking the demo's patients failed: {e}"))?;
    Ok(Some(Loaded {
        resources,
        slots,
        identity,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_is_deterministic_and_large_enough() {
        let now = care::access::age::day_ms(2026, 11, 28);
        let a = alliance(7, 2000, now).unwrap();
        let b = alliance(7, 2000, now).unwrap();
        assert_eq!(a, b, "same seed, same data");
        let count = |rt: &str| a.iter().filter(|r| r["resourceType"] == rt).count();
        assert!(count("Location") >= 25, "{}", count("Location"));
        assert!(count("Patient") >= 2000);
        assert!(count("HealthcareService") >= 15 + PROGRAMS.len());
        assert!(count("Condition") > 0);
        // every child has a parent (a RelatedPerson of that child); adults have none
        let children = a
            .iter()
            .filter(|r| r["resourceType"] == "Patient")
            .filter(|r| r["id"].as_str().unwrap().starts_with("demo-pat-"))
            .filter(|r| {
                let birth =
                    care::access::BirthDate::parse(r["birthDate"].as_str().unwrap()).unwrap();
                care::access::age_on(birth, now) < 18
            })
            .count();
        assert!(children > 1000, "{children}");
        assert_eq!(count("RelatedPerson"), children);
        assert!(
            a.iter()
                .all(|r| r["meta"]["tag"][0]["code"] == "illustrative")
        );
        // every resource is valid FHIR R4
        for r in &a {
            assert!(
                fhir::validate_resource(r).is_ok(),
                "{}: {:?}",
                r["id"],
                fhir::validate_resource(r).err()
            );
        }
    }
}
