//! Writes a deterministic synthetic data set as NDJSON for `continuum import`:
//! organisations, sites, clinicians, and per patient (aged 0–26, living at a Connecticut
//! address) two encounters, one appointment and, for every other patient, a referral Task.
//!
//! `cargo run --release -p bench --bin synth -- --patients 64000 --seed 7 --out data.ndjson`
//!
//! Ids are predictable (`pat-17`, `enc-17-1`, `appt-17`, `task-16`, `loc-3`, `pr-12`) so load
//! scripts can address them; every identifier is `urn:mrn:<org>|M<n>`.

use std::io::{BufWriter, Write};

use bench::{CT_TOWNS, FAMILY, GIVEN, LOCATIONS, ORGS, PRACTITIONERS, Rng};
use serde_json::{Value, json};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

fn date(year: i64, day_of_year: u64) -> String {
    let days = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31];
    let mut d = day_of_year % 365;
    let mut month = 0;
    while d >= days[month] {
        d -= days[month];
        month += 1;
    }
    format!("{year:04}-{:02}-{:02}", month + 1, d + 1)
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let patients: u64 = arg(&args, "--patients", "1000")
        .parse()
        .expect("--patients N");
    let seed: u64 = arg(&args, "--seed", "7").parse().expect("--seed N");
    let out = arg(&args, "--out", "data.ndjson");
    let mut rng = Rng::new(seed);
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    let mut n_written = 0u64;
    let mut emit = |w: &mut BufWriter<std::fs::File>, v: Value| -> std::io::Result<()> {
        n_written += 1;
        writeln!(w, "{v}")
    };
    for org in ORGS {
        emit(
            &mut w,
            json!({"resourceType": "Organization", "id": org, "name": format!("{org} (synthetic)"), "active": true}),
        )?;
    }
    for l in 0..LOCATIONS {
        let (town, zip, lat, lng) = CT_TOWNS[l % CT_TOWNS.len()];
        emit(
            &mut w,
            json!({"resourceType": "Location", "id": format!("loc-{l}"), "name": format!("{town} site {l}"),
            "address": {"city": town, "state": "CT", "postalCode": zip},
            "position": {"latitude": lat, "longitude": lng},
            "managingOrganization": {"reference": format!("Organization/{}", ORGS[l % 2])}}),
        )?;
    }
    for p in 0..PRACTITIONERS {
        emit(
            &mut w,
            json!({"resourceType": "Practitioner", "id": format!("pr-{p}"),
            "name": [{"family": rng.pick(FAMILY), "given": [rng.pick(GIVEN)], "prefix": ["Dr."]}]}),
        )?;
    }
    let statuses = [
        "requested",
        "received",
        "accepted",
        "in-progress",
        "completed",
    ];
    for n in 0..patients {
        let (town, zip, _, _) = *rng.pick(CT_TOWNS);
        let org = if rng.below(3) == 0 { "hhc" } else { "cc" };
        // never in the future (a birth date after today is refused): born 2000–2025
        let born = date(2000 + rng.below(26) as i64, rng.below(365));
        let family = rng.pick(FAMILY);
        let given = rng.pick(GIVEN);
        emit(
            &mut w,
            json!({"resourceType": "Patient", "id": format!("pat-{n}"),
            "identifier": [{"system": format!("urn:mrn:{org}"), "value": format!("M{n}")}],
            "name": [{"family": family, "given": [given]}],
            "gender": if rng.below(2) == 0 { "female" } else { "male" },
            "birthDate": born,
            "telecom": [{"system": "phone", "value": format!("860-555-{:04}", n % 10000)}],
            "address": [{"line": [format!("{} Main Street", 1 + rng.below(900))], "city": town, "state": "CT", "postalCode": zip}],
            "managingOrganization": {"reference": format!("Organization/{org}")}}),
        )?;
        for k in 0..2 {
            let day = rng.below(365);
            emit(
                &mut w,
                json!({"resourceType": "Encounter", "id": format!("enc-{n}-{k}"), "status": "finished",
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "subject": {"reference": format!("Patient/pat-{n}")},
                "period": {"start": format!("{}T09:00:00Z", date(2025, day)), "end": format!("{}T09:30:00Z", date(2025, day))},
                "serviceProvider": {"reference": format!("Organization/{org}")}}),
            )?;
        }
        let loc = rng.below(LOCATIONS as u64);
        let day = rng.below(120);
        let hour = 8 + rng.below(9);
        emit(
            &mut w,
            json!({"resourceType": "Appointment", "id": format!("appt-{n}"), "status": "booked",
            "start": format!("{}T{hour:02}:00:00Z", date(2026, 330 + day)),
            "end": format!("{}T{hour:02}:30:00Z", date(2026, 330 + day)),
            "participant": [
                {"actor": {"reference": format!("Patient/pat-{n}")}, "status": "accepted"},
                {"actor": {"reference": format!("Location/loc-{loc}")}, "status": "accepted"},
                {"actor": {"reference": format!("Practitioner/pr-{}", rng.below(PRACTITIONERS as u64))}, "status": "accepted"}]}),
        )?;
        if n % 2 == 0 {
            emit(
                &mut w,
                json!({"resourceType": "Task", "id": format!("task-{n}"), "status": statuses[rng.below(5) as usize], "intent": "order",
                "for": {"reference": format!("Patient/pat-{n}")},
                "owner": {"reference": format!("Organization/{}", ORGS[rng.below(2) as usize])},
                "requester": {"reference": format!("Organization/{}", ORGS[2 + rng.below(ORGS.len() as u64 - 2) as usize])},
                "authoredOn": format!("{}T10:00:00Z", date(2026, rng.below(330)))}),
            )?;
        }
    }
    w.flush()?;
    eprintln!("wrote {n_written} resources for {patients} patients to {out}");
    Ok(())
}
