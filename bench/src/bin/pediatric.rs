//! Writes a synthetic pediatric person file for the identity benchmark: children registered
//! at two organisations, with the ways a children's hospital's records differ — families who
//! moved (another street in the same or the nearest town), nicknames, hyphenated or changed
//! surnames (one parent's, both parents'), day and month swapped, partial addresses (no street,
//! no postcode or no town), a typo, newborns registered as "Baby Girl" and named later — and
//! twins (same family, birth date, home and phone; another given name; sometimes a birth
//! order, sometimes unnamed as "Baby A"/"Baby B"), who are different people.
//!
//! Three files: the records (`--out`, FEBRL-like columns plus `sex`, `phone`, `birth_order`),
//! the true duplicate pairs (`--truth`) and the twin pairs (`--twins`, which must never link).
//!
//! `cargo run --release -p bench --bin pediatric -- --children 8000 --seed 11 --out p.csv --truth t.csv --twins w.csv`

use std::io::{BufWriter, Write};

use bench::{CT_TOWNS, FAMILY, GIVEN, Rng};

fn arg(args: &[String], name: &str, default: &str) -> String {
    args.windows(2)
        .find(|w| w[0] == name)
        .map(|w| w[1].clone())
        .unwrap_or_else(|| default.to_string())
}

const STREETS: &[&str] = &[
    "Main",
    "Church",
    "Elm",
    "Oak",
    "Maple",
    "Park",
    "Washington",
    "High",
    "Prospect",
    "Pleasant",
    "Walnut",
    "Spring",
    "Grove",
    "Cedar",
    "Chestnut",
    "Winter",
    "Summer",
    "Hillside",
    "Lake",
    "River",
    "Forest",
    "Ridge",
    "Highland",
    "Orchard",
    "Mill",
    "Bridge",
    "Center",
    "North",
    "Franklin",
    "Jefferson",
    "Lincoln",
    "Madison",
    "Laurel",
    "Birch",
    "Willow",
    "Sunset",
];
const TYPES: &[&str] = &[
    "Street", "Road", "Avenue", "Lane", "Drive", "Court", "Place",
];
/// (formal, nickname) — the common ones a registration clerk writes.
const NICKNAMES: &[(&str, &str)] = &[
    ("William", "Will"),
    ("Alexander", "Alex"),
    ("Benjamin", "Ben"),
    ("Elizabeth", "Liz"),
    ("Samuel", "Sam"),
    ("Daniel", "Danny"),
    ("Matthew", "Matt"),
    ("Joseph", "Joe"),
    ("Nicholas", "Nick"),
    ("Katherine", "Katie"),
    ("Abigail", "Abby"),
    ("Jacob", "Jake"),
    ("Michael", "Mike"),
    ("James", "Jimmy"),
    ("Zachary", "Zach"),
    ("Thomas", "Tommy"),
];

#[derive(Clone)]
struct Child {
    given: String,
    family: String,
    dob: (u16, u8, u8),
    sex: &'static str,
    number: u32,
    street: String,
    town: usize,
    phone: String,
    birth_order: Option<u8>,
}

struct Row {
    given: String,
    family: String,
    number: String,
    street: String,
    town: String,
    postcode: String,
    dob: String,
    sex: String,
    phone: String,
    birth_order: String,
}

/// Draws with weight 1/(rank+1)^0.8: a few names common (the commonest about 2 % of
/// children, as the commonest US given names and surnames are), most rare.
fn zipf<'a>(rng: &mut Rng, items: &'a [String]) -> &'a str {
    let weight = |i: usize| 1.0 / ((i + 1) as f64).powf(0.8);
    let total: f64 = (0..items.len()).map(weight).sum();
    let mut r = (rng.below(1 << 30) as f64 / (1u64 << 30) as f64) * total;
    for (i, item) in items.iter().enumerate() {
        r -= weight(i);
        if r <= 0.0 {
            return item;
        }
    }
    &items[items.len() - 1]
}

/// `n` made-up names of two or three syllables (capitalised), none in `taken`.
fn made_up(rng: &mut Rng, n: usize, taken: &[String]) -> Vec<String> {
    const ONSETS: &[&str] = &[
        "b", "br", "c", "d", "f", "g", "h", "j", "k", "l", "m", "n", "p", "r", "s", "sh", "t", "v",
        "w", "z",
    ];
    const VOWELS: &[&str] = &["a", "e", "i", "o", "u", "ai", "ea", "ie", "ou"];
    const CODAS: &[&str] = &["", "n", "r", "l", "s", "t", "m", "nd", "rk", "ll", "ng"];
    let mut seen: std::collections::HashSet<String> = taken.iter().cloned().collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let mut w = String::new();
        for _ in 0..2 + rng.below(2) {
            w.push_str(rng.pick::<&str>(ONSETS));
            w.push_str(rng.pick::<&str>(VOWELS));
        }
        w.push_str(rng.pick::<&str>(CODAS));
        let mut c = w.chars();
        let w: String = c
            .next()
            .map(|f| f.to_ascii_uppercase())
            .into_iter()
            .chain(c)
            .collect();
        if seen.insert(w.clone()) {
            out.push(w);
        }
    }
    out
}

/// The town nearest to `t` (a move to the next town).
fn neighbour(t: usize) -> usize {
    let (_, _, la, lo) = CT_TOWNS[t];
    (0..CT_TOWNS.len())
        .filter(|&i| i != t)
        .min_by(|&a, &b| {
            let d = |i: usize| (CT_TOWNS[i].2 - la).powi(2) + (CT_TOWNS[i].3 - lo).powi(2);
            d(a).total_cmp(&d(b))
        })
        .unwrap_or(t)
}

fn chance(rng: &mut Rng, p: f64) -> bool {
    (rng.below(1_000_000) as f64) < p * 1_000_000.0
}

fn street(rng: &mut Rng) -> String {
    format!("{} {}", rng.pick(STREETS), rng.pick(TYPES))
}

/// The real given names first (the common ones), then made-up ones for the long tail.
fn given_names(rng: &mut Rng) -> Vec<String> {
    let mut all: Vec<String> = GIVEN.iter().map(|s| s.to_string()).collect();
    for (formal, _) in NICKNAMES {
        if !all.iter().any(|g| g == formal) {
            all.push(formal.to_string());
        }
    }
    let tail = made_up(rng, 600, &all);
    all.extend(tail);
    all
}

fn family_names(rng: &mut Rng) -> Vec<String> {
    let mut all: Vec<String> = FAMILY.iter().map(|s| s.to_string()).collect();
    let tail = made_up(rng, 4000, &all);
    all.extend(tail);
    all
}

fn row(c: &Child) -> Row {
    let (town, zip, _, _) = CT_TOWNS[c.town];
    Row {
        given: c.given.clone(),
        family: c.family.clone(),
        number: c.number.to_string(),
        street: c.street.clone(),
        town: town.to_string(),
        postcode: zip.to_string(),
        dob: format!("{:04}{:02}{:02}", c.dob.0, c.dob.1, c.dob.2),
        sex: c.sex.to_string(),
        phone: c.phone.clone(),
        birth_order: c.birth_order.map(|n| n.to_string()).unwrap_or_default(),
    }
}

/// One edit: a letter replaced, dropped or two swapped.
fn typo(rng: &mut Rng, s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if c.len() < 4 {
        return s.to_string();
    }
    let i = 1 + rng.below(c.len() as u64 - 2) as usize;
    match rng.below(3) {
        0 => c[i] = (b'a' + rng.below(26) as u8) as char,
        1 => {
            c.remove(i);
        }
        _ => c.swap(i, i + 1),
    }
    c.into_iter().collect()
}

/// The second registration of a child: one to three of the ways records differ.
fn second(rng: &mut Rng, c: &Child, families: &[String]) -> Row {
    let mut r = row(c);
    let changes = 1 + rng.below(3);
    for _ in 0..changes {
        match rng.below(9) {
            // moved: another street, same town (or the next one on the list)
            0 | 1 => {
                r.number = (1 + rng.below(300)).to_string();
                r.street = street(rng);
                if chance(rng, 0.25) {
                    let t = neighbour(c.town);
                    r.town = CT_TOWNS[t].0.to_string();
                    r.postcode = CT_TOWNS[t].1.to_string();
                }
                if chance(rng, 0.5) {
                    r.phone = format!("860555{:04}", rng.below(10_000));
                }
            }
            2 => {
                if let Some((_, nick)) = NICKNAMES.iter().find(|(f, _)| *f == c.given) {
                    r.given = nick.to_string();
                } else {
                    r.given = typo(rng, &r.given);
                }
            }
            // a compound surname: both parents' names, or the other parent's added
            3 => {
                let other = rng.pick(families);
                r.family = if chance(rng, 0.5) {
                    format!("{}-{other}", c.family)
                } else {
                    format!("{other}-{}", c.family)
                };
            }
            4 => {
                let (y, m, d) = c.dob;
                if d <= 12 && d != m {
                    r.dob = format!("{y:04}{d:02}{m:02}");
                } else {
                    r.dob = format!("{y:04}{m:02}{:02}", if d > 1 { d - 1 } else { d + 1 });
                }
            }
            5 => match rng.below(3) {
                0 => {
                    r.number.clear();
                    r.street.clear();
                }
                1 => r.postcode.clear(),
                _ => r.town.clear(),
            },
            6 => {
                if chance(rng, 0.5) {
                    r.given = typo(rng, &r.given);
                } else {
                    r.family = typo(rng, &r.family);
                }
            }
            7 => {
                r.phone.clear();
            }
            _ => {
                r.sex.clear();
                r.number.clear();
            }
        }
    }
    r
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let children: usize = arg(&args, "--children", "8000").parse().unwrap_or(8000);
    let seed: u64 = arg(&args, "--seed", "11").parse().unwrap_or(11);
    let out = arg(&args, "--out", "pediatric.csv");
    let truth = arg(&args, "--truth", "pediatric-truth.csv");
    let twins_out = arg(&args, "--twins", "pediatric-twins.csv");
    let mut rng = Rng::new(seed);
    let given = given_names(&mut rng);
    let families = family_names(&mut rng);
    let mut rows: Vec<(String, Row)> = Vec::new();
    let mut true_pairs: Vec<(String, String)> = Vec::new();
    let mut twin_pairs: Vec<(String, String)> = Vec::new();
    for n in 0..children {
        let year = 2008 + rng.below(19) as u16;
        let month = 1 + rng.below(12) as u8;
        let day = 1 + rng.below(28) as u8;
        let sex = if chance(&mut rng, 0.5) {
            "female"
        } else {
            "male"
        };
        let mut child = Child {
            given: zipf(&mut rng, &given).to_string(),
            family: zipf(&mut rng, &families).to_string(),
            dob: (year, month, day),
            sex,
            number: 1 + rng.below(300) as u32,
            street: street(&mut rng),
            town: rng.below(CT_TOWNS.len() as u64) as usize,
            phone: format!("860555{:04}", rng.below(10_000)),
            birth_order: None,
        };
        let id = format!("c{n}");
        let twin = chance(&mut rng, 0.04);
        let newborn = year == 2026 && chance(&mut rng, 0.6);
        let mut sibling = None;
        if twin {
            let mut other = Child {
                given: zipf(&mut rng, &given).to_string(),
                sex: if chance(&mut rng, 0.5) {
                    "female"
                } else {
                    "male"
                },
                ..child.clone()
            };
            while other.given == child.given {
                other.given = zipf(&mut rng, &given).to_string();
            }
            if chance(&mut rng, 0.3) {
                child.birth_order = Some(1);
                other.birth_order = Some(2);
            }
            sibling = Some(other);
        }
        let mut first = row(&child);
        if newborn {
            // registered at birth before being named
            first.given = if twin {
                "Baby A".into()
            } else if sex == "female" {
                "Baby Girl".into()
            } else {
                "Baby Boy".into()
            };
            if twin {
                first.birth_order = "1".into();
            }
        }
        rows.push((id.clone(), first));
        if chance(&mut rng, 0.35) {
            let dup = format!("c{n}-dup");
            rows.push((dup.clone(), second(&mut rng, &child, &families)));
            true_pairs.push((id.clone(), dup));
        }
        if let Some(other) = sibling {
            let tid = format!("c{n}-twin");
            let mut r = row(&other);
            if newborn {
                r.given = "Baby B".into();
                r.birth_order = "2".into();
            }
            rows.push((tid.clone(), r));
            twin_pairs.push((id.clone(), tid.clone()));
            if chance(&mut rng, 0.35) {
                let dup = format!("c{n}-twin-dup");
                let r = second(&mut rng, &other, &families);
                rows.push((dup.clone(), r));
                true_pairs.push((tid.clone(), dup.clone()));
                twin_pairs.push((id.clone(), dup));
            }
        }
    }
    let mut w = BufWriter::new(std::fs::File::create(&out)?);
    writeln!(
        w,
        "rec_id,given_name,surname,street_number,address_1,address_2,suburb,postcode,state,date_of_birth,sex,phone,birth_order"
    )?;
    for (id, r) in &rows {
        writeln!(
            w,
            "{id},{},{},{},{},,{},{},CT,{},{},{},{}",
            r.given,
            r.family,
            r.number,
            r.street,
            r.town,
            r.postcode,
            r.dob,
            r.sex,
            r.phone,
            r.birth_order
        )?;
    }
    let mut t = BufWriter::new(std::fs::File::create(&truth)?);
    writeln!(t, "left_id,right_id")?;
    for (a, b) in &true_pairs {
        writeln!(t, "{a},{b}")?;
    }
    let mut tw = BufWriter::new(std::fs::File::create(&twins_out)?);
    writeln!(tw, "left_id,right_id")?;
    for (a, b) in &twin_pairs {
        writeln!(tw, "{a},{b}")?;
    }
    eprintln!(
        "{} records of {children} children: {} true pairs, {} twin pairs",
        rows.len(),
        true_pairs.len(),
        twin_pairs.len()
    );
    Ok(())
}
