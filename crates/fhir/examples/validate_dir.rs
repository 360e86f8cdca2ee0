//! Validates every `*.json` FHIR resource in a folder and prints the ones rejected, with why:
//! `cargo run -p fhir --example validate_dir -- DIR [--supported]`.

use std::collections::BTreeMap;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let dir = args.first().expect("usage: validate_dir DIR [--supported]");
    let only_supported = args.iter().any(|a| a == "--supported");
    let mut entries: Vec<_> = std::fs::read_dir(dir)
        .expect("readable dir")
        .flatten()
        .collect();
    entries.sort_by_key(|e| e.file_name());
    let (mut ok, mut bad) = (0, 0);
    let mut by_type: BTreeMap<String, usize> = BTreeMap::new();
    for e in entries {
        let path = e.path();
        if path.extension().is_none_or(|x| x != "json") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else {
            continue;
        };
        let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        let Some(rt) = value.get("resourceType").and_then(|v| v.as_str()) else {
            continue;
        };
        if only_supported && !fhir::SUPPORTED_RESOURCE_TYPES.contains(&rt) {
            continue;
        }
        match fhir::validate_resource(&value) {
            Ok(_) => {
                ok += 1;
                *by_type.entry(rt.to_string()).or_default() += 1;
            }
            Err(issues) => {
                bad += 1;
                println!("{}", path.file_name().unwrap().to_string_lossy());
                for i in issues.iter().take(5) {
                    println!(
                        "    {} {}: {}",
                        i.code.code(),
                        i.expression.clone().unwrap_or_default(),
                        i.diagnostics
                    );
                }
            }
        }
    }
    println!("accepted {ok}, rejected {bad}");
}
