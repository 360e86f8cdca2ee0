//! Normalisation of the fields record linkage compares: names (case, accents, punctuation,
//! nicknames), dates of birth (several layouts, kept in parts so that an impossible or
//! transposed date still agrees in part), addresses (tokens, abbreviations), postcodes and
//! phone numbers (digits).

use unicode_normalization::UnicodeNormalization;

/// Lower case, accents removed, every character that is not a letter or digit turned into a
/// space, runs of spaces collapsed.
pub fn fold(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut space = true;
    for c in s.nfkd() {
        if unicode_normalization::char::is_combining_mark(c) {
            continue;
        }
        if c.is_alphanumeric() {
            for l in c.to_lowercase() {
                out.push(l);
            }
            space = false;
        } else if c == '\'' || c == '\u{2019}' {
            // O'Brien → obrien
        } else if !space {
            out.push(' ');
            space = true;
        }
    }
    if out.ends_with(' ') {
        out.pop();
    }
    out
}

/// A name for comparison: folded, with the hyphens and spaces of a compound name removed
/// (`Smith-Jones` and `smith jones` agree).
pub fn name(s: &str) -> String {
    fold(s).replace(' ', "")
}

/// Common given-name nicknames and their formal names.
const NICKNAMES: &[(&str, &str)] = &[
    ("abby", "abigail"),
    ("al", "albert"),
    ("alex", "alexander"),
    ("allie", "alison"),
    ("andy", "andrew"),
    ("angie", "angela"),
    ("ben", "benjamin"),
    ("beth", "elizabeth"),
    ("betty", "elizabeth"),
    ("bill", "william"),
    ("billy", "william"),
    ("bob", "robert"),
    ("bobby", "robert"),
    ("cathy", "catherine"),
    ("charlie", "charles"),
    ("chris", "christopher"),
    ("chuck", "charles"),
    ("dan", "daniel"),
    ("danny", "daniel"),
    ("dave", "david"),
    ("debbie", "deborah"),
    ("dick", "richard"),
    ("don", "donald"),
    ("ed", "edward"),
    ("eddie", "edward"),
    ("fred", "frederick"),
    ("gabe", "gabriel"),
    ("greg", "gregory"),
    ("hank", "henry"),
    ("jack", "john"),
    ("jake", "jacob"),
    ("jen", "jennifer"),
    ("jenny", "jennifer"),
    ("jess", "jessica"),
    ("jim", "james"),
    ("jimmy", "james"),
    ("joe", "joseph"),
    ("joey", "joseph"),
    ("johnny", "john"),
    ("jon", "jonathan"),
    ("josh", "joshua"),
    ("kate", "katherine"),
    ("kathy", "katherine"),
    ("katie", "katherine"),
    ("ken", "kenneth"),
    ("kim", "kimberly"),
    ("larry", "lawrence"),
    ("liz", "elizabeth"),
    ("lizzie", "elizabeth"),
    ("maggie", "margaret"),
    ("matt", "matthew"),
    ("meg", "margaret"),
    ("mickey", "michael"),
    ("mike", "michael"),
    ("nate", "nathan"),
    ("nick", "nicholas"),
    ("pam", "pamela"),
    ("pat", "patricia"),
    ("peggy", "margaret"),
    ("pete", "peter"),
    ("phil", "philip"),
    ("rich", "richard"),
    ("rick", "richard"),
    ("rob", "robert"),
    ("ron", "ronald"),
    ("sam", "samuel"),
    ("sandy", "sandra"),
    ("steve", "steven"),
    ("sue", "susan"),
    ("susie", "susan"),
    ("ted", "theodore"),
    ("tim", "timothy"),
    ("tom", "thomas"),
    ("tommy", "thomas"),
    ("tony", "anthony"),
    ("vicky", "victoria"),
    ("will", "william"),
    ("zach", "zachary"),
];

/// The formal form of a (normalised) given name, when it is a known nickname.
pub fn formal_given(name: &str) -> &str {
    NICKNAMES
        .binary_search_by(|(nick, _)| nick.cmp(&name))
        .map(|i| NICKNAMES[i].1)
        .unwrap_or(name)
}

/// The words of a given name that say a newborn has not been named yet ("Baby Boy", "Baby
/// Girl", "Infant", "Newborn", "Twin B", "BB", "BG"): no evidence either way. The default list
/// of [`NameRules`]; an alliance adds its own registration conventions.
pub const PLACEHOLDER_WORDS: &[&str] = &[
    "babe",
    "baby",
    "bb",
    "bg",
    "boy",
    "female",
    "girl",
    "infant",
    "male",
    "nb",
    "newborn",
    "noname",
    "quadruplet",
    "triplet",
    "twin",
    "unk",
    "unknown",
    "unnamed",
];

/// Words that say a newborn is one of a multiple birth.
const MULTIPLE_WORDS: &[&str] = &["quadruplet", "triplet", "twin"];

/// How a newborn's given name is read: the placeholder words (lower case, folded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameRules {
    pub placeholders: Vec<String>,
}

impl Default for NameRules {
    fn default() -> Self {
        NameRules {
            placeholders: PLACEHOLDER_WORDS.iter().map(|w| w.to_string()).collect(),
        }
    }
}

impl NameRules {
    /// The rules with `extra` placeholder words added to the default list.
    pub fn with_extra<I: IntoIterator<Item = S>, S: AsRef<str>>(extra: I) -> NameRules {
        let mut rules = NameRules::default();
        for w in extra {
            let w = fold(w.as_ref());
            if !w.is_empty() && !rules.placeholders.contains(&w) {
                rules.placeholders.push(w);
            }
        }
        rules
    }
}

/// What a newborn's placeholder given name says: the birth order its marker gives ("Baby A",
/// "Twin 2", "Baby B Girl" → 1, 2, 2), whether it names a multiple birth, and the sex its words
/// give ("boy"/"male", "girl"/"female").
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Placeholder {
    pub birth_order: Option<u8>,
    pub multiple: bool,
    pub sex: Option<&'static str>,
}

/// A birth-order marker: a letter a–h, a digit 1–9, a Roman numeral to iv, or a word.
fn birth_marker(t: &str) -> Option<u8> {
    const WORDS: &[(&str, u8)] = &[
        ("i", 1),
        ("ii", 2),
        ("iii", 3),
        ("iv", 4),
        ("one", 1),
        ("two", 2),
        ("three", 3),
        ("first", 1),
        ("second", 2),
        ("third", 3),
    ];
    if let Some((_, n)) = WORDS.iter().find(|(w, _)| *w == t) {
        return Some(*n);
    }
    match t.as_bytes() {
        [c @ b'a'..=b'h'] => Some(c - b'a' + 1),
        [c @ b'1'..=b'9'] => Some(c - b'0'),
        _ => None,
    }
}

/// Whether the given names (`given`, all of them) are a newborn's placeholder — every word a
/// placeholder word or a birth-order marker (or the family name, as in "Baby Boy Smith"), and
/// at least one a placeholder word — and if so what it says.
pub fn placeholder(given: &str, family: &str, rules: &NameRules) -> Option<Placeholder> {
    let folded = fold(given);
    let family = fold(family);
    let mut found = Placeholder::default();
    let mut words = 0;
    for t in folded.split(' ').filter(|t| !t.is_empty()) {
        if rules.placeholders.iter().any(|w| w == t) {
            words += 1;
            found.multiple |= MULTIPLE_WORDS.contains(&t);
            match t {
                "boy" | "male" => found.sex = Some("male"),
                "girl" | "female" => found.sex = Some("female"),
                _ => {}
            }
        } else if let Some(n) = birth_marker(t) {
            found.birth_order = Some(n);
            found.multiple = true;
        } else if t != family {
            return None;
        }
    }
    (words > 0).then_some(found)
}

/// A date of birth in parts. Each part is kept even when the whole is not a valid date (a
/// 31st of February or a 13th month still agrees on its year).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct DateParts {
    pub year: Option<u16>,
    pub month: Option<u8>,
    pub day: Option<u8>,
}

impl DateParts {
    /// Whether the parts make a real calendar date.
    pub fn is_valid(&self) -> bool {
        match (self.year, self.month, self.day) {
            (Some(y), Some(m), Some(d)) => {
                (1..=12).contains(&m) && d >= 1 && d <= days_in_month(y, m)
            }
            _ => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.year.is_none() && self.month.is_none() && self.day.is_none()
    }

    /// `YYYYMMDD` with `?` for a missing part (a blocking key).
    pub fn key(&self) -> String {
        let y = self.year.map_or("????".into(), |y| format!("{y:04}"));
        let m = self.month.map_or("??".into(), |m| format!("{m:02}"));
        let d = self.day.map_or("??".into(), |d| format!("{d:02}"));
        format!("{y}{m}{d}")
    }
}

fn days_in_month(y: u16, m: u8) -> u8 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400) => 29,
        2 => 28,
        _ => 0,
    }
}

/// Parses a date of birth: `YYYYMMDD`, `YYYY-MM-DD` (and a FHIR partial `YYYY-MM`, `YYYY`),
/// `MM/DD/YYYY` (US order) or `DD.MM.YYYY`. Parts that are not numbers are missing.
pub fn date(s: &str) -> DateParts {
    let s = s.trim();
    let num = |t: &str| -> Option<u32> {
        (!t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_digit()))
            .then(|| t.parse().ok())
            .flatten()
    };
    let parts = |y: Option<u32>, m: Option<u32>, d: Option<u32>| DateParts {
        year: y.filter(|y| (1000..=9999).contains(y)).map(|y| y as u16),
        month: m.filter(|m| *m <= 99).map(|m| m as u8),
        day: d.filter(|d| *d <= 99).map(|d| d as u8),
    };
    if s.len() == 8 && s.bytes().all(|b| b.is_ascii_digit()) {
        return parts(num(&s[0..4]), num(&s[4..6]), num(&s[6..8]));
    }
    if s.contains('-') {
        let mut it = s.splitn(3, '-');
        let y = it.next().and_then(num);
        let m = it.next().and_then(num);
        let d = it.next().map(|t| t.get(..2).unwrap_or(t)).and_then(num);
        return parts(y, m, d);
    }
    if s.contains('/') {
        let p: Vec<&str> = s.split('/').collect();
        if p.len() == 3 {
            return parts(num(p[2]), num(p[0]), num(p[1]));
        }
    }
    if s.contains('.') {
        let p: Vec<&str> = s.split('.').collect();
        if p.len() == 3 {
            return parts(num(p[2]), num(p[1]), num(p[0]));
        }
    }
    if s.len() == 4 {
        return parts(num(s), None, None);
    }
    DateParts::default()
}

/// Street-type and other address words in their usual short form.
const ADDRESS_WORDS: &[(&str, &str)] = &[
    ("apartment", "apt"),
    ("avenue", "ave"),
    ("boulevard", "blvd"),
    ("circle", "cir"),
    ("circuit", "cct"),
    ("close", "cl"),
    ("court", "ct"),
    ("crescent", "cres"),
    ("drive", "dr"),
    ("east", "e"),
    ("highway", "hwy"),
    ("lane", "ln"),
    ("north", "n"),
    ("parade", "pde"),
    ("place", "pl"),
    ("road", "rd"),
    ("south", "s"),
    ("square", "sq"),
    ("street", "st"),
    ("suite", "ste"),
    ("terrace", "tce"),
    ("west", "w"),
];

/// An address line as tokens: folded, street words abbreviated.
pub fn address(s: &str) -> String {
    fold(s)
        .split(' ')
        .filter(|t| !t.is_empty())
        .map(|t| {
            ADDRESS_WORDS
                .binary_search_by(|(long, _)| long.cmp(&t))
                .map(|i| ADDRESS_WORDS[i].1)
                .unwrap_or(t)
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// The digits of a value (phone numbers, postcodes, street numbers), without leading zeros
/// when `strip_zeros`.
pub fn digits(s: &str, strip_zeros: bool) -> String {
    let d: String = s.chars().filter(char::is_ascii_digit).collect();
    if strip_zeros {
        let t = d.trim_start_matches('0');
        if t.is_empty() && !d.is_empty() {
            "0".into()
        } else {
            t.to_string()
        }
    } else {
        d
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_fold_case_accents_and_punctuation() {
        for (raw, folded) in [
            ("Núñez", "nunez"),
            ("  O'Brien ", "obrien"),
            ("Smith-Jones", "smith jones"),
            ("JOSÉ   LUIS", "jose luis"),
            ("Zoë", "zoe"),
            ("", ""),
        ] {
            assert_eq!(fold(raw), folded, "{raw}");
        }
        assert_eq!(name("Smith-Jones"), "smithjones");
        assert_eq!(name("smith jones"), "smithjones");
    }

    #[test]
    fn newborn_placeholders_are_recognised() {
        let r = NameRules::default();
        let p = |g: &str| placeholder(g, "Smith", &r);
        assert_eq!(
            p("Baby Boy"),
            Some(Placeholder {
                birth_order: None,
                multiple: false,
                sex: Some("male")
            })
        );
        assert_eq!(p("Baby Girl Smith").and_then(|p| p.sex), Some("female"));
        assert_eq!(p("INFANT").map(|p| p.multiple), Some(false));
        assert_eq!(
            p("Baby A"),
            Some(Placeholder {
                birth_order: Some(1),
                multiple: true,
                sex: None
            })
        );
        assert_eq!(p("Twin 2").and_then(|p| p.birth_order), Some(2));
        assert_eq!(p("Twin").map(|p| p.multiple), Some(true));
        assert_eq!(p("Baby B Girl").and_then(|p| p.birth_order), Some(2));
        // real names, and a marker alone, are not placeholders
        for real in ["Ana", "Liam Boyd", "A", "Babette", ""] {
            assert_eq!(p(real), None, "{real}");
        }
        // an alliance's own word
        let extra = NameRules::with_extra(["Bebe"]);
        assert!(placeholder("Bebe", "x", &extra).is_some());
        assert!(placeholder("Bebe", "x", &r).is_none());
    }

    #[test]
    fn nicknames_become_formal_names() {
        assert!(NICKNAMES.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert!(ADDRESS_WORDS.windows(2).all(|w| w[0].0 < w[1].0), "sorted");
        assert_eq!(formal_given("bill"), "william");
        assert_eq!(formal_given("liz"), "elizabeth");
        assert_eq!(formal_given("william"), "william");
        assert_eq!(formal_given("zoe"), "zoe");
    }

    #[test]
    fn dates_parse_in_parts_even_when_impossible() {
        let d = |y, m, d| DateParts {
            year: Some(y),
            month: Some(m),
            day: Some(d),
        };
        assert_eq!(date("19560910"), d(1956, 9, 10));
        assert_eq!(date("1956-09-10"), d(1956, 9, 10));
        assert_eq!(date("09/10/1956"), d(1956, 9, 10));
        assert_eq!(date("10.09.1956"), d(1956, 9, 10));
        assert!(date("19560910").is_valid());
        // FEBRL's corrupted dates keep their parts
        let bad = date("19371233");
        assert_eq!(bad, d(1937, 12, 33));
        assert!(!bad.is_valid());
        assert!(!date("20230229").is_valid());
        assert!(date("20240229").is_valid());
        assert_eq!(
            date("2013-05"),
            DateParts {
                year: Some(2013),
                month: Some(5),
                day: None
            }
        );
        assert!(date("").is_empty());
        assert!(date("unknown").is_empty());
        assert_eq!(date("19560910").key(), "19560910");
    }

    #[test]
    fn addresses_and_digits() {
        assert_eq!(address("12 Pinkerton Circuit"), "12 pinkerton cct");
        assert_eq!(address("Light  Street, North"), "light st n");
        assert_eq!(digits("(860) 555-0100", false), "8605550100");
        assert_eq!(digits("0042", true), "42");
        assert_eq!(digits("000", true), "0");
        assert_eq!(digits("", true), "");
    }
}
