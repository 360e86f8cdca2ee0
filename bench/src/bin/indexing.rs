//! What one resource costs before it is stored — validation and search-index extraction — by
//! its size, from 10 KB to 10 MB (the largest arrays the server takes: 10,000 items), for three
//! shapes: many identifiers, many names, many addresses. The cost must grow linearly with the
//! size: ms per MB flat across the row.
//!
//! `cargo run --release -p bench --bin indexing`

use std::time::Instant;

use fhir::search::{extract, registry};
use fhir::validate_resource;
use serde_json::{Value, json};

/// Bytes of the resources measured.
const SIZES: &[usize] = &[10_000, 100_000, 1_000_000, 10_000_000];

fn patient(shape: &str, bytes: usize) -> Value {
    // items of about `item` bytes; at most 10,000 of them, each longer for the larger sizes
    let items = (bytes / 100).clamp(1, 10_000);
    let pad = (bytes / items).saturating_sub(60).max(1);
    let text = |i: usize| format!("{i:06}{}", "x".repeat(pad));
    let list: Vec<Value> = (0..items)
        .map(|i| match shape {
            "identifiers" => json!({"system": "urn:bench", "value": text(i)}),
            "names" => json!({"family": text(i), "given": ["Ana"]}),
            _ => json!({"line": [text(i)], "city": "New London", "postalCode": "06320"}),
        })
        .collect();
    let key = match shape {
        "identifiers" => "identifier",
        "names" => "name",
        _ => "address",
    };
    json!({"resourceType": "Patient", key: list})
}

fn main() {
    println!(
        "| shape | {} |",
        SIZES
            .iter()
            .map(|s| format!("{} KB", s / 1000))
            .collect::<Vec<_>>()
            .join(" | ")
    );
    println!("|---|{}", "---|".repeat(SIZES.len()));
    for shape in ["identifiers", "names", "addresses"] {
        let mut cells = Vec::new();
        for &size in SIZES {
            let p = patient(shape, size);
            let bytes = serde_json::to_vec(&p).unwrap().len();
            // the median of five runs
            let mut times: Vec<f64> = (0..5)
                .map(|_| {
                    let t = Instant::now();
                    validate_resource(&p).expect("valid");
                    let index = extract(registry(), &p);
                    std::hint::black_box(index.len());
                    t.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            times.sort_by(|a, b| a.total_cmp(b));
            let ms = times[2];
            cells.push(format!(
                "{ms:.1} ms = {:.0} ms/MB",
                ms / (bytes as f64 / 1e6)
            ));
        }
        println!("| {shape} | {} |", cells.join(" | "));
    }
}
