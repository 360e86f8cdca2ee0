//! Writes a large synthetic alliance directory as NDJSON for the `$find-care` benchmark:
//! Organizations (the two members and community practices), Locations at real Connecticut ZIP
//! centroids, HealthcareServices across the specialties, PractitionerRoles with licences and
//! Schedules (in person per service and site, and video). `continuum slots generate` then
//! makes the Slots. Deterministic for a seed.
//!
//! Usage: directory [--locations 300] [--services 1500] [--seed 7] [--out directory.ndjson]

use std::io::{BufWriter, Write};

use bench::Rng;
use care::profile as ext;
use serde_json::{Value, json};

/// SNOMED CT practice-setting codes the services are spread over: (code, display, pediatric?).
pub const SPECIALTIES: &[(&str, &str, bool)] = &[
    ("408459003", "Pediatric cardiology", true),
    ("419610006", "Pediatric endocrinology", true),
    ("418058008", "Pediatric gastroenterology", true),
    ("419365004", "Pediatric nephrology", true),
    ("419170002", "Pediatric pulmonology", true),
    ("418652005", "Pediatric hematology", true),
    ("418002000", "Pediatric oncology", true),
    ("419472004", "Pediatric rheumatology", true),
    (
        "394588006",
        "Pediatric (Child and adolescent) psychiatry",
        true,
    ),
    ("394539006", "Pediatric surgery", true),
    ("419983000", "Pediatric ophthalmology", true),
    ("418862001", "Pediatric infectious diseases", true),
    ("420208008", "Pediatric genetics", true),
    ("394579002", "Cardiology", false),
    ("394583002", "Endocrinology", false),
    ("394584008", "Gastroenterology", false),
    ("394589003", "Nephrology", false),
    ("418112009", "Pulmonary medicine", false),
    ("394803006", "Clinical hematology", false),
    ("394593009", "Medical oncology", false),
    ("394810000", "Rheumatology", false),
    ("394587001", "Psychiatry", false),
    ("394591006", "Neurology", false),
    ("394801008", "Surgery-Trauma and orthopedics", false),
    ("419192003", "Internal medicine", false),
    ("408443003", "General medical practice", false),
    ("419772000", "Family practice", false),
    ("394582007", "Dermatology", false),
    ("394586005", "Gynecology", false),
    ("408439002", "Allergy - specialty", false),
];

const PRACTICES: usize = 40;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_else(|| default.to_string())
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let locations: usize = arg(&args, "--locations", "300")
        .parse()
        .expect("--locations N");
    let services: usize = arg(&args, "--services", "1500")
        .parse()
        .expect("--services N");
    let seed: u64 = arg(&args, "--seed", "7").parse().expect("--seed N");
    let out = arg(&args, "--out", "directory.ndjson");
    let mut rng = Rng::new(seed);
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    let mut counts = std::collections::BTreeMap::<&str, usize>::new();
    let mut emit = |w: &mut BufWriter<std::fs::File>, v: Value| -> std::io::Result<()> {
        *counts
            .entry(match v["resourceType"].as_str().unwrap_or("") {
                "Organization" => "Organization",
                "Location" => "Location",
                "HealthcareService" => "HealthcareService",
                "PractitionerRole" => "PractitionerRole",
                _ => "Schedule",
            })
            .or_default() += 1;
        writeln!(w, "{v}")
    };
    let mut orgs: Vec<String> = vec!["cc".into(), "hhc".into()];
    orgs.extend((0..PRACTICES).map(|i| format!("practice-{i}")));
    for o in &orgs {
        emit(
            &mut w,
            json!({"resourceType": "Organization", "id": o, "active": true,
            "name": format!("{o} (synthetic)")}),
        )?;
    }
    let zips = care::geo::zips_in_state("CT");
    // (location id, organisation)
    let mut sites: Vec<(String, String)> = Vec::new();
    for l in 0..locations {
        let zip = rng.pick(&zips).clone();
        let (point, _) = care::geo::zip_centroid(&zip).expect("a known ZIP");
        let org = match l % 10 {
            0..=3 => "cc".to_string(),
            4..=7 => "hhc".to_string(),
            _ => orgs[2 + rng.below(PRACTICES as u64) as usize].clone(),
        };
        let id = format!("loc-{l}");
        emit(
            &mut w,
            json!({"resourceType": "Location", "id": id, "status": "active",
            "name": format!("Site {l} ({zip})"),
            "address": {"state": "CT", "postalCode": zip},
            "position": {"latitude": point.lat, "longitude": point.lng},
            "managingOrganization": {"reference": format!("Organization/{org}")}}),
        )?;
        sites.push((id, org));
    }
    for s in 0..services {
        let (code, display, pediatric) = SPECIALTIES[s % SPECIALTIES.len()];
        let org = if pediatric {
            "cc".to_string()
        } else if rng.below(3) == 0 {
            orgs[2 + rng.below(PRACTICES as u64) as usize].clone()
        } else {
            "hhc".to_string()
        };
        // one to three of the organisation's sites (any site for a practice with none)
        let own: Vec<&(String, String)> = sites.iter().filter(|(_, o)| *o == org).collect();
        let pool: Vec<&(String, String)> = if own.is_empty() {
            sites.iter().collect()
        } else {
            own
        };
        let mut at: Vec<String> = Vec::new();
        for _ in 0..1 + rng.below(3) {
            let site = rng.pick(&pool).0.clone();
            if !at.contains(&site) {
                at.push(site);
            }
        }
        let video = rng.below(10) < 6;
        let id = format!("svc-{s}");
        let mut extensions = vec![
            json!({"url": ext::ACCEPTING, "valueBoolean": rng.below(20) != 0}),
            json!({"url": ext::MODALITY, "valueCode": "in-person"}),
        ];
        if video {
            extensions.push(json!({"url": ext::MODALITY, "valueCode": "video"}));
        }
        let ages = if pediatric {
            json!({"low": {"value": 0}, "high": {"value": 17}})
        } else {
            json!({"low": {"value": 18}})
        };
        extensions.push(json!({"url": ext::AGE_RANGE, "valueRange": ages}));
        let start = 8 + rng.below(2);
        emit(
            &mut w,
            json!({"resourceType": "HealthcareService", "id": id, "active": true,
            "extension": extensions,
            "providedBy": {"reference": format!("Organization/{org}")},
            "specialty": [{"coding": [{"system": "http://snomed.info/sct", "code": code, "display": display}], "text": display}],
            "location": at.iter().map(|l| json!({"reference": format!("Location/{l}")})).collect::<Vec<_>>(),
            "name": format!("{display} {s}"),
            "availableTime": [{"daysOfWeek": ["mon", "tue", "wed", "thu", "fri"],
                "availableStartTime": format!("{start:02}:00:00"), "availableEndTime": format!("{:02}:00:00", start + 8)}]}),
        )?;
        for r in 0..2 {
            let mut role_ext = vec![json!({"url": ext::LICENSED_STATE, "valueCode": "CT"})];
            for state in ["NY", "MA", "RI"] {
                if rng.below(4) == 0 {
                    role_ext.push(json!({"url": ext::LICENSED_STATE, "valueCode": state}));
                }
            }
            if video {
                role_ext.push(json!({"url": ext::MODALITY, "valueCode": "video"}));
            }
            emit(
                &mut w,
                json!({"resourceType": "PractitionerRole", "id": format!("role-{s}-{r}"), "active": true,
                "extension": role_ext,
                "organization": {"reference": format!("Organization/{org}")},
                "healthcareService": [{"reference": format!("HealthcareService/{id}")}],
                "location": at.iter().map(|l| json!({"reference": format!("Location/{l}")})).collect::<Vec<_>>()}),
            )?;
        }
        for l in &at {
            emit(
                &mut w,
                json!({"resourceType": "Schedule", "id": format!("sch-{s}-{l}"), "active": true,
                "extension": [{"url": ext::MODALITY, "valueCode": "in-person"}, {"url": ext::SLOT_MINUTES, "valueInteger": 30}],
                "actor": [{"reference": format!("HealthcareService/{id}")}, {"reference": format!("Location/{l}")}]}),
            )?;
        }
        if video {
            emit(
                &mut w,
                json!({"resourceType": "Schedule", "id": format!("sch-{s}-video"), "active": true,
                "extension": [{"url": ext::MODALITY, "valueCode": "video"}, {"url": ext::SLOT_MINUTES, "valueInteger": 30}],
                "actor": [{"reference": format!("HealthcareService/{id}")}]}),
            )?;
        }
    }
    w.flush()?;
    eprintln!("wrote {out}: {counts:?}");
    Ok(())
}
