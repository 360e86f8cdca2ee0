//! Writes a synthetic person file for the record-linkage scaling benchmark: FEBRL's columns,
//! `--records` rows of which a share are noisy duplicates of others (typos, transposed or
//! missing values, swapped names, swapped address lines, nicknames), with the true duplicate
//! pairs in a second file. Names and places are made from syllables, drawn with a long-tailed
//! (Zipf-like) frequency so that some are common and most are rare, as in a real population.
//!
//! `cargo run --release -p bench --bin people -- --records 1000000 --dup-rate 0.2 --seed 7 --out people.csv --truth truth.csv`

use std::io::{BufWriter, Write};

use bench::Rng;

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

const ONSETS: &[&str] = &[
    "b", "br", "c", "ch", "d", "dr", "f", "g", "gr", "h", "j", "k", "l", "m", "n", "p", "pr", "r",
    "s", "sh", "st", "t", "th", "tr", "v", "w", "z",
];
const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ie", "ou", "y"];
const CODAS: &[&str] = &[
    "", "n", "r", "l", "s", "t", "m", "nd", "rk", "ck", "ll", "ss", "ng",
];
const STREET_TYPES: &[&str] = &[
    "street", "road", "avenue", "place", "crescent", "drive", "court",
];
const STATES: &[&str] = &["nsw", "vic", "qld", "sa", "wa", "tas", "nt", "act"];
const NICKNAME_OF: &[(&str, &str)] = &[
    ("william", "bill"),
    ("robert", "bob"),
    ("elizabeth", "liz"),
    ("margaret", "maggie"),
    ("michael", "mike"),
    ("katherine", "kate"),
];

/// `n` distinct made-up words of 2–3 syllables.
fn words(rng: &mut Rng, n: usize) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let syllables = 2 + rng.below(2) as usize;
        let mut w = String::new();
        for _ in 0..syllables {
            w.push_str(rng.pick::<&str>(ONSETS));
            w.push_str(rng.pick::<&str>(VOWELS));
        }
        w.push_str(rng.pick::<&str>(CODAS));
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// Draws from `items` with weight 1/(rank+1)^0.9 (a long tail).
struct Zipf {
    cumulative: Vec<f64>,
}

impl Zipf {
    fn new(n: usize) -> Zipf {
        let mut acc = 0.0;
        let cumulative = (0..n)
            .map(|i| {
                acc += 1.0 / ((i + 1) as f64).powf(0.9);
                acc
            })
            .collect();
        Zipf { cumulative }
    }

    fn draw(&self, rng: &mut Rng) -> usize {
        let total = *self.cumulative.last().unwrap_or(&1.0);
        let x = (rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * total;
        self.cumulative
            .partition_point(|c| *c < x)
            .min(self.cumulative.len() - 1)
    }
}

#[derive(Clone)]
struct Person {
    given: String,
    surname: String,
    street_number: String,
    address_1: String,
    address_2: String,
    suburb: String,
    postcode: String,
    state: String,
    date_of_birth: String,
}

fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 2 {
        return s.to_string();
    }
    let i = rng.below(c.len() as u64 - 1) as usize;
    match rng.below(4) {
        0 => c[i] = (b'a' + rng.below(26) as u8) as char,
        1 => c.swap(i, i + 1),
        2 => {
            c.remove(i);
        }
        _ => c.insert(i, (b'a' + rng.below(26) as u8) as char),
    }
    c.into_iter().collect()
}

/// A duplicate with one to three corruptions.
fn corrupt(rng: &mut Rng, p: &Person) -> Person {
    let mut d = p.clone();
    for _ in 0..1 + rng.below(3) {
        match rng.below(11) {
            0 => d.given = typo(rng, &d.given),
            1 => d.surname = typo(rng, &d.surname),
            2 => std::mem::swap(&mut d.given, &mut d.surname),
            3 => {
                let b = d.date_of_birth.clone();
                if b.len() == 8 {
                    // day and month transposed, or one digit changed
                    d.date_of_birth = if rng.below(2) == 0 {
                        format!("{}{}{}", &b[..4], &b[6..8], &b[4..6])
                    } else {
                        let i = rng.below(8) as usize;
                        let mut c: Vec<char> = b.chars().collect();
                        c[i] = (b'0' + rng.below(10) as u8) as char;
                        c.into_iter().collect()
                    };
                }
            }
            4 => d.date_of_birth.clear(),
            5 => d.postcode = typo(rng, &d.postcode),
            6 => std::mem::swap(&mut d.address_1, &mut d.address_2),
            7 => d.address_1 = typo(rng, &d.address_1),
            8 => d.street_number.clear(),
            9 => d.suburb = typo(rng, &d.suburb),
            _ => {
                if let Some((_, nick)) = NICKNAME_OF.iter().find(|(f, _)| *f == d.given) {
                    d.given = nick.to_string();
                } else {
                    d.given.clear();
                }
            }
        }
    }
    d
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let records: usize = arg(&args, "--records", "1000000")
        .parse()
        .expect("--records N");
    let dup_rate: f64 = arg(&args, "--dup-rate", "0.2")
        .parse()
        .expect("--dup-rate R");
    let seed: u64 = arg(&args, "--seed", "7").parse().expect("--seed N");
    let out = arg(&args, "--out", "people.csv");
    let truth = arg(&args, "--truth", "people-truth.csv");
    let mut rng = Rng::new(seed);
    let mut given = words(&mut rng, 6_000);
    for (formal, _) in NICKNAME_OF {
        given.insert(0, formal.to_string());
    }
    let family = words(&mut rng, 60_000);
    let streets = words(&mut rng, 20_000);
    let places = words(&mut rng, 9_000);
    let (zg, zf, zs, zp) = (
        Zipf::new(given.len()),
        Zipf::new(family.len()),
        Zipf::new(streets.len()),
        Zipf::new(places.len()),
    );
    let originals = ((records as f64) / (1.0 + dup_rate)).round() as usize;
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    let mut t = BufWriter::new(std::fs::File::create(&truth)?);
    writeln!(
        w,
        "rec_id,given_name,surname,street_number,address_1,address_2,suburb,postcode,state,date_of_birth"
    )?;
    writeln!(t, "left_id,right_id")?;
    let write = |w: &mut BufWriter<std::fs::File>, id: &str, p: &Person| {
        writeln!(
            w,
            "{id},{},{},{},{},{},{},{},{},{}",
            p.given,
            p.surname,
            p.street_number,
            p.address_1,
            p.address_2,
            p.suburb,
            p.postcode,
            p.state,
            p.date_of_birth
        )
    };
    let mut written = 0;
    let mut entity = 0;
    while written < records {
        let place = zp.draw(&mut rng);
        let year = 1930 + rng.below(95);
        let month = 1 + rng.below(12);
        let day = 1 + rng.below(28);
        let p = Person {
            given: given[zg.draw(&mut rng)].clone(),
            surname: family[zf.draw(&mut rng)].clone(),
            street_number: (1 + rng.below(400)).to_string(),
            address_1: format!("{} {}", streets[zs.draw(&mut rng)], rng.pick(STREET_TYPES)),
            address_2: if rng.below(3) == 0 {
                format!("{} house", places[zp.draw(&mut rng)])
            } else {
                String::new()
            },
            suburb: places[place].clone(),
            postcode: format!("{:04}", 2000 + place % 7000),
            state: STATES[place % STATES.len()].to_string(),
            date_of_birth: format!("{year:04}{month:02}{day:02}"),
        };
        let org = format!("rec-{entity}-org");
        write(&mut w, &org, &p)?;
        written += 1;
        // duplicates: on average dup_rate per original
        let mut k = 0;
        while written < records
            && entity < originals * 2
            && (rng.below(1_000_000) as f64) < dup_rate * 1_000_000.0 / (1.0 + k as f64)
        {
            let id = format!("rec-{entity}-dup-{k}");
            write(&mut w, &id, &corrupt(&mut rng, &p))?;
            writeln!(t, "{org},{id}")?;
            for j in 0..k {
                let (a, b) = (format!("rec-{entity}-dup-{j}"), id.clone());
                let (a, b) = if a < b { (a, b) } else { (b, a) };
                writeln!(t, "{a},{b}")?;
            }
            written += 1;
            k += 1;
        }
        entity += 1;
    }
    w.flush()?;
    t.flush()?;
    eprintln!("{written} records of {entity} people → {out} (true pairs → {truth})");
    Ok(())
}
