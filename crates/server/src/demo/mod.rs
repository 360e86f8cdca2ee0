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

mod clinical;
mod data;
mod family;
mod referrals;
mod transition;
use data::*;

pub use care::profile::DATA_ORIGIN as TAG_SYSTEM;
use care::profile::PROGRAM as PROGRAM_SYSTEM;

fn tag() -> Value {
    json!({"tag": [{"system": TAG_SYSTEM, "code": "illustrative", "display": "Illustrative demo data, not a real record"}]})
}

fn zip_point(zip: &str) -> Result<(f64, f64)> {
    let (p, _) = care::geo::zip_centroid(zip).with_context(|| format!("ZIP {zip} is unknown"))?;
    Ok((p.lat, p.lng))
}

/// The demo alliance's resources, in load order (referenced resources first).
pub fn alliance(seed: u64, patients: usize, now_ms: i64) -> Result<Vec<Value>> {
    let mut rng = StdRng::seed_from_u64(seed);
    let mut out: Vec<Value> = Vec::new();
    for (id, name) in MEMBERS {
        // the facility name its HL7 v2 messages are sent under (MSH-4), and its record numbers'
        // assigning authority (PID-3.4): CC → urn:mrn:cc
        out.push(json!({"resourceType": "Organization", "id": id, "meta": tag(), "active": true, "name": name,
            "identifier": [{"system": care::profile::HL7_FACILITY, "value": id.to_ascii_uppercase()}],
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
    let mut people: Vec<(String, i64, &'static str, bool)> = Vec::with_capacity(patients);
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
        people.push((id.clone(), birth - birth.rem_euclid(day), org, is_child));
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
    let clinicians: Vec<(String, String)> = out
        .iter()
        .filter(|r| r["resourceType"] == "PractitionerRole")
        .filter_map(|r| {
            let dr = r["practitioner"]["reference"]
                .as_str()?
                .strip_prefix("Practitioner/")?;
            let org = r["organization"]["reference"]
                .as_str()?
                .strip_prefix("Organization/")?;
            Some((dr.to_string(), org.to_string()))
        })
        .collect();
    let people: Vec<clinical::Person> = people
        .iter()
        .map(|(id, birth_ms, org, has_parent)| clinical::Person {
            id,
            birth_ms: *birth_ms,
            org,
            has_parent: *has_parent,
        })
        .collect();
    clinical::add(&mut out, &mut rng, &people, &clinicians, now_ms);
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
    clinical::named_people(&mut out, &clinicians, now_ms);
    family::people(&mut out, now_ms);
    referrals::add(&mut out, &mut rng, now_ms);
    transition::add(&mut out, &mut rng, now_ms);
    // the README's `$match` example: Ana María Núñez, registered at Connecticut Children's and,
    // after her family moved across New London, at Hartford HealthCare as "Ana Nunez"
    out.push(json!({"resourceType": "Patient", "id": "demo-ana", "meta": tag(),
        "identifier": [{"system": "urn:mrn:cc", "value": "D-ANA"}],
        "name": [{"use": "official", "family": "Núñez", "given": ["Ana", "María"]}],
        "gender": "female", "birthDate": "2013-05-02",
        "address": [{"use": "home", "line": ["12 Ocean Avenue"], "city": "New London", "state": "CT", "postalCode": "06320", "country": "US"}],
        "managingOrganization": {"reference": "Organization/cc"}}));
    out.push(json!({"resourceType": "Patient", "id": "demo-ana-hhc", "meta": tag(),
        "identifier": [{"system": "urn:mrn:hhc", "value": "H-ANA"}],
        "name": [{"family": "Nunez", "given": ["Ana"]}],
        "gender": "female", "birthDate": "2013-05-02",
        "address": [{"use": "home", "line": ["48 Bank Street"], "city": "New London", "state": "CT", "postalCode": "06320", "country": "US"}],
        "managingOrganization": {"reference": "Organization/hhc"}}));
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
    family::appointments(api).await?;
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
        // a parent per child, and Maya's mother, Leo's guardian, Nora's mother and Sam's
        assert_eq!(count("RelatedPerson"), children + 4);
        // clinical life: encounters at both organisations, conditions with onset ages,
        // allergies, care teams, consents, minor-consented care with its labels
        let at = |org: &str| {
            a.iter()
                .filter(|r| r["resourceType"] == "Encounter")
                .filter(|r| r["serviceProvider"]["reference"] == format!("Organization/{org}"))
                .count()
        };
        assert!(
            at("cc") > 1000 && at("hhc") > 500,
            "{} {}",
            at("cc"),
            at("hhc")
        );
        assert!(count("Condition") > 250, "{}", count("Condition"));
        // referrals in every state, with their ServiceRequests and consult notes; the transition
        // elements recorded for the young people (Tasks of their own kind)
        let element =
            |r: &&Value| r["code"]["coding"][0]["system"] == care::profile::TRANSITION_ELEMENT;
        let elements = a
            .iter()
            .filter(|r| r["resourceType"] == "Task")
            .filter(element)
            .count();
        assert!(elements > 3000, "{elements}");
        assert!(count("Task") - elements >= 300, "{}", count("Task"));
        assert_eq!(count("ServiceRequest"), count("Task") - elements);
        for status in [
            "requested",
            "accepted",
            "in-progress",
            "completed",
            "rejected",
            "cancelled",
        ] {
            let n = a
                .iter()
                .filter(|r| r["resourceType"] == "Task" && r["status"] == status)
                .count();
            assert!(n >= 5, "{n} referrals {status}");
        }
        let overdue = a
            .iter()
            .filter(|r| r["resourceType"] == "Task" && r["status"] == "requested")
            .filter(|t| care::referral::Due::of(t).is_some_and(|d| d.accept_ms < now))
            .count();
        assert!(overdue >= 5, "{overdue} overdue");
        assert!(
            a.iter()
                .filter(|r| r["resourceType"] == "Condition")
                .all(|r| r["onsetAge"]["unit"] == "a")
        );
        assert!(
            count("AllergyIntolerance") > 50,
            "{}",
            count("AllergyIntolerance")
        );
        assert!(count("CareTeam") > 20, "{}", count("CareTeam"));
        assert_eq!(count("Consent"), 1);
        let sensitive: Vec<&Value> = a
            .iter()
            .filter(|r| r["resourceType"] == "Encounter")
            .filter(|r| r.to_string().contains("minor-consented-care"))
            .collect();
        assert!(sensitive.len() > 5, "{}", sensitive.len());
        assert!(
            sensitive
                .iter()
                .all(|e| e.to_string().contains("v3-Confidentiality"))
        );
        let guardian = a.iter().find(|r| r["id"] == "demo-leo-guardian").unwrap();
        assert!(guardian.to_string().contains("GUARD"));
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
