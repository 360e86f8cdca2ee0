//! Prints the query plans of the searches the benchmarks run, as the engine picks them on a
//! loaded database: `cargo run --release -p bench --bin explain -- --database URL`.

use std::sync::Arc;

use fhir::search::{ParseOptions, parse_search, registry};
use store::{DatabaseUrl, Store, StoreError, StoreOptions};

/// The ten searches of the benchmark mixes and worklists.
const QUERIES: &[&str] = &[
    "Patient?identifier=M17",
    "Patient?identifier=urn:mrn:cc|M17",
    "Patient?name=Rivera&_count=20",
    "Patient?family:exact=Rivera",
    "Patient?birthdate=ge2010-03-01&birthdate=lt2010-03-08&_count=20",
    "Task?owner=Organization/cc&status=requested&_count=20",
    "Task?patient=pat-17",
    "Appointment?actor=Location/loc-3&date=2026-12-05&_count=20",
    "Encounter?subject=Patient/pat-17&_sort=-date",
    "Observation?subject:Patient.name=Rivera",
];

fn main() -> Result<(), StoreError> {
    let args: Vec<String> = std::env::args().collect();
    let url = args
        .windows(2)
        .find(|w| w[0] == "--database")
        .map(|w| w[1].clone())
        .expect("--database URL");
    let store = Store::open(
        &DatabaseUrl::parse(&url)?,
        &StoreOptions {
            connections: 1,
            migrate: false,
        },
        Arc::new(care::SystemClock),
    )?;
    // `--query Q` (repeatable) explains these searches instead of the benchmark's ten
    let asked: Vec<&str> = args
        .windows(2)
        .filter(|w| w[0] == "--query")
        .map(|w| w[1].as_str())
        .collect();
    let queries: Vec<&str> = if asked.is_empty() {
        QUERIES.to_vec()
    } else {
        asked
    };
    for q in queries {
        let (rt, query) = q.split_once('?').expect("a search");
        let pairs: Vec<(String, String)> = form_pairs(query);
        let req = parse_search(
            registry(),
            rt,
            &pairs,
            &ParseOptions {
                lenient: false,
                base_url: "",
                limits: Default::default(),
            },
        )
        .expect("a valid search");
        let timed = req.clone();
        let started = std::time::Instant::now();
        let found = store.read_blocking(move |tx| tx.search(&timed).map(|p| p.matches.len()))?;
        let took = started.elapsed();
        let plan = store.read_blocking(move |tx| tx.explain_search(&req))?;
        println!(
            "### `{q}`\n({found} found in {:.1} ms)\n```",
            took.as_secs_f64() * 1000.0
        );
        for line in plan {
            println!("{line}");
        }
        println!("```");
    }
    Ok(())
}

fn form_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}
