//! The raw storage ceiling: the same kind of inserts and point reads Continuum does, straight
//! against SQLite from Rust — no HTTP, no validation, no index rows, no audit — to compare
//! Continuum's figures with.
//!
//! `cargo run --release -p bench --bin ceiling -- --rows 50000 --readers 2 --seconds 5`
//!
//! Prints: inserts/s one row per transaction (like one create per request), inserts/s 1,000
//! rows per transaction (like an import), and point reads/s by (type, id) from `--readers`
//! threads.

use std::time::{Duration, Instant};

use rusqlite::{Connection, params};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

fn open(path: &std::path::Path) -> Connection {
    let c = Connection::open(path).expect("open");
    c.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA cache_size = -65536; PRAGMA mmap_size = 268435456;").expect("pragmas");
    c
}

fn body(n: u64) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"p-{n}","meta":{{"versionId":"1","lastUpdated":"2026-11-28T00:00:00.000Z"}},"name":[{{"family":"Bench","given":["Load"]}}],"gender":"female","birthDate":"2014-05-06","address":[{{"city":"Hartford","state":"CT","postalCode":"06106"}}],"identifier":[{{"system":"urn:mrn:bench","value":"B{n}"}}]}}"#
    )
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let rows: u64 = arg(&args, "--rows", "50000").parse().expect("--rows N");
    let readers: usize = arg(&args, "--readers", "2").parse().expect("--readers N");
    let seconds: u64 = arg(&args, "--seconds", "5").parse().expect("--seconds N");
    let dir = std::env::temp_dir().join(format!("continuum-ceiling-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let path = dir.join("ceiling.db");
    let c = open(&path);
    c.execute_batch(
        "CREATE TABLE resources (rid INTEGER PRIMARY KEY, rtype TEXT NOT NULL, id TEXT NOT NULL, version INTEGER NOT NULL, last_updated INTEGER NOT NULL, body TEXT, UNIQUE (rtype, id));",
    )
    .expect("schema");

    // one row per transaction, like one create per request
    let single = rows / 5;
    let start = Instant::now();
    for n in 0..single {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        c.prepare_cached("INSERT INTO resources (rtype, id, version, last_updated, body) VALUES ('Patient', ?1, 1, 0, ?2)")
            .unwrap()
            .execute(params![format!("p-{n}"), body(n)])
            .unwrap();
        c.execute_batch("COMMIT").unwrap();
    }
    let single_rate = single as f64 / start.elapsed().as_secs_f64();

    // 1,000 rows per transaction, like an import
    let start = Instant::now();
    for chunk in (single..rows).collect::<Vec<_>>().chunks(1000) {
        c.execute_batch("BEGIN IMMEDIATE").unwrap();
        {
            let mut s = c.prepare_cached("INSERT INTO resources (rtype, id, version, last_updated, body) VALUES ('Patient', ?1, 1, 0, ?2)").unwrap();
            for n in chunk {
                s.execute(params![format!("p-{n}"), body(*n)]).unwrap();
            }
        }
        c.execute_batch("COMMIT").unwrap();
    }
    let batch_rate = (rows - single) as f64 / start.elapsed().as_secs_f64();

    // point reads by key from several threads, each its own connection
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let handles: Vec<_> = (0..readers)
        .map(|t| {
            let path = path.clone();
            std::thread::spawn(move || {
                let c = open(&path);
                let mut s = c.prepare("SELECT rid, version, last_updated, body FROM resources WHERE rtype = 'Patient' AND id = ?1").unwrap();
                let mut n: u64 = t as u64 * 7919;
                let mut done = 0u64;
                while Instant::now() < deadline {
                    for _ in 0..256 {
                        n = (n * 6364136223846793005 + 1442695040888963407) % rows;
                        let body: String = s.query_row(params![format!("p-{n}")], |r| r.get(3)).unwrap();
                        std::hint::black_box(body);
                        done += 1;
                    }
                }
                done
            })
        })
        .collect();
    let reads: u64 = handles.into_iter().map(|h| h.join().unwrap()).sum();
    let read_rate = reads as f64 / seconds as f64;
    println!(
        "ceiling  inserts/s (1 per transaction) {single_rate:.0}  inserts/s (1000 per transaction) {batch_rate:.0}  point reads/s ({readers} threads) {read_rate:.0}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}
