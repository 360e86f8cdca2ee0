//! `continuum link`: batch record linkage of two files (or the duplicates within one) with the
//! identity engine (`care::identity`). Input is CSV with a header — FEBRL's column names by
//! default, others mapped with `--columns` — or NDJSON of FHIR Patients; output is CSV
//! `left_id,right_id,score,grade` for the pairs graded probable or certain.

use std::collections::HashMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use care::identity::{Grade, LinkConfig, Prepared, Record, prepare};
use clap::Args;
use rayon::prelude::*;

/// The record fields a column can fill.
const FIELDS: &[&str] = &[
    "id",
    "given",
    "family",
    "birth_date",
    "street_number",
    "address_1",
    "address_2",
    "locality",
    "postcode",
    "state",
    "phone",
    "sex",
    "identifier",
    "middle",
    "birth_order",
    "mother_identifier",
];

/// FEBRL's column names.
const FEBRL_COLUMNS: &[(&str, &str)] = &[
    ("id", "rec_id"),
    ("given", "given_name"),
    ("family", "surname"),
    ("street_number", "street_number"),
    ("address_1", "address_1"),
    ("address_2", "address_2"),
    ("locality", "suburb"),
    ("postcode", "postcode"),
    ("state", "state"),
    ("birth_date", "date_of_birth"),
    ("identifier", "soc_sec_id"),
    // not FEBRL's, read when a column has the field's own name
    ("phone", "phone"),
    ("sex", "sex"),
    ("middle", "middle"),
    ("birth_order", "birth_order"),
    ("mother_identifier", "mother_identifier"),
];

#[derive(Debug, Args)]
pub struct LinkArgs {
    /// The first file: CSV with a header, or NDJSON of Patients (`.ndjson`).
    #[arg(long, value_name = "FILE")]
    pub left: PathBuf,
    /// The second file; without it, the duplicates within `--left` are found.
    #[arg(long, value_name = "FILE")]
    pub right: Option<PathBuf>,
    /// Where to write `left_id,right_id,score,grade` (CSV).
    #[arg(long, value_name = "FILE")]
    pub out: PathBuf,
    /// Column names for the fields, `field=column,…` (fields: id, given, family, birth_date,
    /// street_number, address_1, address_2, locality, postcode, state, phone, sex,
    /// identifier, middle, birth_order, mother_identifier); FEBRL's names by default (rec_id, given_name, surname, …, soc_sec_id).
    /// `field=` leaves a field out.
    #[arg(long, value_name = "MAP")]
    pub columns: Option<String>,
    /// Also report possible matches (default: probable and certain).
    #[arg(long)]
    pub possible: bool,
    /// Link pairs that look like twins or siblings (given names different outright, family
    /// name and birth date the same) like any other — only for a registry known to hold no
    /// twins, where a replaced given name is noise (FEBRL's synthetic adults). By default they
    /// are held at possible.
    #[arg(long)]
    pub no_twin_guard: bool,
    /// Between two files, allow a record in several links (default: one-to-one).
    #[arg(long)]
    pub many_to_many: bool,
    /// Match-probability threshold for certain (default 0.99).
    #[arg(long, value_name = "P")]
    pub upper: Option<f64>,
    /// Match-probability threshold below which a pair is certainly not a match (default 0.2).
    #[arg(long, value_name = "P")]
    pub lower: Option<f64>,
}

/// Which column holds each field.
fn column_map(spec: Option<&str>) -> Result<HashMap<String, String>> {
    let mut map: HashMap<String, String> = FEBRL_COLUMNS
        .iter()
        .map(|(f, c)| (f.to_string(), c.to_string()))
        .collect();
    if let Some(spec) = spec {
        for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let (field, column) = part
                .split_once('=')
                .with_context(|| format!("--columns: '{part}' is not field=column"))?;
            let field = field.trim();
            if !FIELDS.contains(&field) {
                bail!(
                    "--columns: '{field}' is not a field ({})",
                    FIELDS.join(", ")
                );
            }
            if column.trim().is_empty() {
                map.remove(field);
            } else {
                map.insert(field.to_string(), column.trim().to_string());
            }
        }
    }
    Ok(map)
}

/// Reads a CSV file into records (values trimmed; FEBRL's own files, with ", " separators,
/// read as they are).
fn read_csv(path: &Path, columns: &HashMap<String, String>) -> Result<Vec<Record>> {
    let mut reader = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(false)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = reader
        .headers()
        .with_context(|| format!("{}: no header row", path.display()))?
        .iter()
        .map(str::to_string)
        .collect();
    let index = |field: &str| -> Result<Option<usize>> {
        match columns.get(field) {
            None => Ok(None),
            Some(col) => match headers.iter().position(|h| h == col) {
                Some(i) => Ok(Some(i)),
                None if field == "id" => bail!(
                    "{}: no column '{col}' for the record id (columns: {}); map it with --columns id=NAME",
                    path.display(),
                    headers.join(", ")
                ),
                None => Ok(None),
            },
        }
    };
    let at: HashMap<&str, Option<usize>> = FIELDS
        .iter()
        .map(|f| Ok((*f, index(f)?)))
        .collect::<Result<_>>()?;
    let mut out = Vec::new();
    for (n, row) in reader.records().enumerate() {
        let row = row.with_context(|| format!("{}: row {}", path.display(), n + 2))?;
        let get = |f: &str| -> String { at[f].and_then(|i| row.get(i)).unwrap_or("").to_string() };
        let identifier = get("identifier");
        out.push(Record {
            id: get("id"),
            given: get("given"),
            family: get("family"),
            birth_date: get("birth_date"),
            street_number: get("street_number"),
            address_1: get("address_1"),
            address_2: get("address_2"),
            locality: get("locality"),
            postcode: get("postcode"),
            state: get("state"),
            phone: get("phone"),
            sex: get("sex"),
            identifiers: if identifier.is_empty() {
                Vec::new()
            } else {
                vec![format!("{}|{identifier}", columns["identifier"])]
            },
            middle: get("middle"),
            // a birth order makes the record one of a multiple birth (`prepare_with`)
            birth_order: get("birth_order").parse().ok().filter(|n| *n >= 1),
            multiple_birth: false,
            mother_identifiers: match get("mother_identifier") {
                m if m.is_empty() => Vec::new(),
                m => vec![format!("mother|{m}")],
            },
        });
    }
    Ok(out)
}

/// Reads NDJSON of Patients into records.
fn read_ndjson(path: &Path) -> Result<Vec<Record>> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut out = Vec::new();
    for (n, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let v: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{}: line {} is not JSON", path.display(), n + 1))?;
        if v.get("resourceType").and_then(|t| t.as_str()) != Some("Patient") {
            continue;
        }
        let id = v
            .get("id")
            .and_then(|i| i.as_str())
            .unwrap_or("")
            .to_string();
        out.push(server::app::linkage::patient_record(&id, &v));
    }
    Ok(out)
}

fn read(path: &Path, columns: &HashMap<String, String>) -> Result<Vec<Record>> {
    if path.extension().and_then(|e| e.to_str()) == Some("ndjson") {
        read_ndjson(path)
    } else {
        read_csv(path, columns)
    }
}

pub fn run(args: LinkArgs) -> Result<()> {
    let start = Instant::now();
    let columns = column_map(args.columns.as_deref())?;
    let bar = indicatif::ProgressBar::new_spinner();
    bar.enable_steady_tick(std::time::Duration::from_millis(120));
    bar.set_message("reading");
    let left = read(&args.left, &columns)?;
    let right = match &args.right {
        Some(p) => Some(read(p, &columns)?),
        None => None,
    };
    bar.set_message(format!(
        "preparing {} records",
        left.len() + right.as_ref().map_or(0, Vec::len)
    ));
    let left_p: Vec<Prepared> = left.par_iter().map(prepare).collect();
    let right_p: Option<Vec<Prepared>> =
        right.as_ref().map(|r| r.par_iter().map(prepare).collect());
    bar.set_message("blocking, comparing, estimating the model, scoring");
    let mut config = LinkConfig {
        one_to_one: !args.many_to_many,
        twin_guard: !args.no_twin_guard,
        report: if args.possible {
            Grade::Possible
        } else {
            Grade::Probable
        },
        ..Default::default()
    };
    if let Some(u) = args.upper {
        config.thresholds.upper = u;
    }
    if let Some(l) = args.lower {
        config.thresholds.lower = l;
    }
    if !(0.0 < config.thresholds.lower
        && config.thresholds.lower < config.thresholds.upper
        && config.thresholds.upper < 1.0)
    {
        bail!("thresholds must satisfy 0 < lower < upper < 1");
    }
    let linked = care::identity::link(&left_p, right_p.as_deref(), &config);
    bar.finish_and_clear();
    let other = right_p.as_ref().unwrap_or(&left_p);
    let mut out = std::io::BufWriter::new(
        std::fs::File::create(&args.out)
            .with_context(|| format!("cannot write {}", args.out.display()))?,
    );
    writeln!(out, "left_id,right_id,score,grade")?;
    let mut by_grade: HashMap<&str, usize> = HashMap::new();
    for l in &linked.links {
        writeln!(
            out,
            "{},{},{:.6},{}",
            csv_field(&left_p[l.left].id),
            csv_field(&other[l.right].id),
            l.probability,
            l.grade.code()
        )?;
        *by_grade.entry(l.grade.code()).or_default() += 1;
    }
    out.flush()?;
    let records = left_p.len() + right_p.as_ref().map_or(0, Vec::len);
    let secs = start.elapsed().as_secs_f64();
    eprintln!(
        "{records} records, {} candidate pairs, {} links ({} certain, {} probable, {} possible) in {secs:.2} s ({:.0} records/s); λ {:.4}, EM {} iterations → {}",
        linked.candidates,
        linked.links.len(),
        by_grade.get("certain").unwrap_or(&0),
        by_grade.get("probable").unwrap_or(&0),
        by_grade.get("possible").unwrap_or(&0),
        records as f64 / secs,
        linked.model.lambda,
        linked.model.iterations,
        args.out.display()
    );
    Ok(())
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_default_to_febrl_and_can_be_mapped() {
        let m = column_map(None).unwrap();
        assert_eq!(m["given"], "given_name");
        assert_eq!(m["identifier"], "soc_sec_id");
        let m = column_map(Some("given=first, family=last,identifier=")).unwrap();
        assert_eq!(m["given"], "first");
        assert_eq!(m["family"], "last");
        assert!(!m.contains_key("identifier"));
        assert!(column_map(Some("nonsense=x")).is_err());
        assert!(column_map(Some("given")).is_err());
    }

    #[test]
    fn febrl_files_read_as_they_ship() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.csv");
        std::fs::write(
            &p,
            "rec_id, given_name, surname, street_number, address_1, address_2, suburb, postcode, state, date_of_birth, soc_sec_id\n\
             rec-1-org, michaela, neumann, 8, stanley street, miami, winston hills, 4223, nsw, 19151111, 5304218\n\
             rec-1-dup-0, , neumann, 8, stanley street,  , winston hills, 4223, nsw, 19151111, 5304218\n",
        )
        .unwrap();
        let recs = read(&p, &column_map(None).unwrap()).unwrap();
        assert_eq!(recs.len(), 2);
        assert_eq!(recs[0].given, "michaela");
        assert_eq!(recs[1].given, "");
        assert_eq!(recs[1].address_2, "");
        assert_eq!(recs[0].identifiers, vec!["soc_sec_id|5304218"]);
        let none = read(&p, &column_map(Some("identifier=")).unwrap()).unwrap();
        assert!(none[0].identifiers.is_empty());
        assert_eq!(csv_field("a,b"), "\"a,b\"");
    }
}
