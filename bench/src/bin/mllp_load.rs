//! HL7 v2 over MLLP under load: `CONNECTIONS` senders, each on its own connection, each
//! sending its share of `MESSAGES` ADT messages one after another (MLLP is synchronous: the
//! next after the ACK), cycling A01 → A08 → A03 per visit over `PATIENTS` patients whose
//! records are `urn:mrn:bh|B<n>`, sent from facility BH. Prints the messages per second, the
//! ACK latency (p50, p99, max) and the ACK codes.
//!
//! Usage: mllp_load HOST:PORT MESSAGES CONNECTIONS PATIENTS [RUN-TAG]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

fn message(tag: &str, lane: usize, i: usize, patients: usize) -> String {
    let visit = i / 3;
    let event = ["A01", "A08", "A03"][i % 3];
    let patient = (lane * 7919 + visit) % patients;
    let discharge = if event == "A03" {
        "|||||||||||||||||01||||||||20261202080000|20261204093000"
    } else {
        "|||||||||||||||||||||||||20261202080000"
    };
    format!(
        "MSH|^~\\&|EPIC|BH|CONTINUUM|ALLIANCE|20261202101500||ADT^{event}^ADT_A01|{tag}-{lane}-{i}|P|2.5.1\r\
         EVN|{event}|20261202101500\r\
         PID|1||B{patient}^^^BH^MR||Bench^Pat{patient}||20120101|F\r\
         PV1|1|I|4N^{lane}^A^BH||||1234^Ruiz^Ana^^^Dr|||MED||||7|||||{tag}V{lane}x{visit}^^^BH^VN{discharge}\r"
    )
}

fn exchange(conn: &mut TcpStream, text: &str, buf: &mut Vec<u8>) -> String {
    let mut frame = Vec::with_capacity(text.len() + 3);
    frame.push(0x0b);
    frame.extend_from_slice(text.as_bytes());
    frame.extend_from_slice(&[0x1c, 0x0d]);
    conn.write_all(&frame).expect("send");
    buf.clear();
    let mut chunk = [0u8; 2048];
    while !buf.ends_with(&[0x1c, 0x0d]) {
        let n = conn.read(&mut chunk).expect("read");
        assert!(n > 0, "the listener closed the connection");
        buf.extend_from_slice(&chunk[..n]);
    }
    let ack = String::from_utf8_lossy(buf);
    ack.split('\r')
        .find(|s| s.starts_with("MSA|"))
        .and_then(|s| s.split('|').nth(1))
        .unwrap_or("?")
        .to_string()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: mllp_load HOST:PORT MESSAGES CONNECTIONS PATIENTS [RUN-TAG]");
        std::process::exit(2);
    }
    let addr = args[1].clone();
    let messages: usize = args[2].parse().expect("MESSAGES");
    let connections: usize = args[3].parse().expect("CONNECTIONS");
    let patients: usize = args[4].parse().expect("PATIENTS");
    let tag = args.get(5).cloned().unwrap_or_else(|| "R".into());
    let per = messages / connections;
    let started = Instant::now();
    let lanes: Vec<_> = (0..connections)
        .map(|lane| {
            let (addr, tag) = (addr.clone(), tag.clone());
            std::thread::spawn(move || {
                let mut conn = TcpStream::connect(&addr).expect("connect");
                conn.set_nodelay(true).ok();
                conn.set_read_timeout(Some(Duration::from_secs(60))).ok();
                let mut buf = Vec::new();
                let mut out = Vec::with_capacity(per);
                for i in 0..per {
                    let text = message(&tag, lane, i, patients);
                    let t = Instant::now();
                    let code = exchange(&mut conn, &text, &mut buf);
                    out.push((t.elapsed(), code));
                }
                out
            })
        })
        .collect();
    let mut all: Vec<(Duration, String)> = Vec::new();
    for l in lanes {
        all.extend(l.join().expect("a sender"));
    }
    let wall = started.elapsed();
    let mut lat: Vec<Duration> = all.iter().map(|(d, _)| *d).collect();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    let mut codes: std::collections::BTreeMap<String, usize> = Default::default();
    for (_, c) in &all {
        *codes.entry(c.clone()).or_default() += 1;
    }
    println!(
        "{} messages on {connections} connection(s) in {:.2} s: {:.0} messages/s; ACK p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; {codes:?}",
        all.len(),
        wall.as_secs_f64(),
        all.len() as f64 / wall.as_secs_f64(),
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3,
    );
}
