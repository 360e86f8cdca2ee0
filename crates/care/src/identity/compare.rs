//! Records prepared for comparison, and the comparison of two records: one agreement level
//! per field (or nothing when either side is missing), from exact agreement down to
//! disagreement, using Jaro–Winkler and Damerau–Levenshtein (`strsim`), Double Metaphone
//! (`rphonetic`), nicknames, partial and transposed dates, and postcode/locality agreement.

use rphonetic::DoubleMetaphone;
use strsim::{jaro_winkler, osa_distance};

/// Damerau–Levenshtein distance in its restricted form (optimal string alignment: edits and
/// adjacent transpositions, each substring edited once) — what typing errors are — without the
/// alphabet map the unrestricted form needs.
pub(crate) fn edits(a: &str, b: &str) -> usize {
    osa_distance(a, b)
}

use super::normalize::{self, DateParts, NameRules};

/// A person's record as it arrives (a Patient, or a CSV row).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Record {
    pub id: String,
    pub given: String,
    pub family: String,
    pub birth_date: String,
    pub street_number: String,
    pub address_1: String,
    pub address_2: String,
    pub locality: String,
    pub postcode: String,
    pub state: String,
    pub phone: String,
    pub sex: String,
    /// Identifiers (`system|value`) that name one person wherever they appear (a national
    /// or member id, a medical record number within its system — a birth MRN among them): a
    /// shared one links deterministically.
    pub identifiers: Vec<String>,
    /// The given names after the first (a middle name; with the first, what tells a newborn's
    /// placeholder name such as "Baby Boy").
    pub middle: String,
    /// The child's place in a multiple birth (FHIR `multipleBirthInteger`).
    pub birth_order: Option<u8>,
    /// One of a multiple birth (`multipleBirthBoolean` true, or a birth order).
    pub multiple_birth: bool,
    /// The mother's identifiers (`system|value`) — on a newborn's record, with the birth date,
    /// they name the child of a single birth.
    pub mother_identifiers: Vec<String>,
}

/// A record normalised once, for many comparisons.
#[derive(Debug, Clone, Default)]
pub struct Prepared {
    pub id: String,
    pub given: String,
    pub given_formal: String,
    pub given_code: (String, String),
    pub family: String,
    pub family_code: (String, String),
    pub birth: DateParts,
    pub street_number: String,
    pub address_1: String,
    pub address_2: String,
    pub locality: String,
    pub postcode: String,
    pub state: String,
    pub phone: String,
    pub sex: String,
    pub identifiers: Vec<String>,
    /// The given name was a newborn's placeholder ("Baby Girl", "Twin B"): compared as missing.
    pub placeholder: bool,
    /// The place in a multiple birth, from the record or the placeholder's marker.
    pub birth_order: Option<u8>,
    /// One of a multiple birth (twins, triplets).
    pub multiple: bool,
    /// The parts of a compound family name, sorted (`lopez garcia` → `garcia`, `lopez`); empty
    /// for a simple one.
    pub family_parts: Vec<String>,
    pub mother_identifiers: Vec<String>,
}

fn codes(encoder: &DoubleMetaphone, s: &str) -> (String, String) {
    if s.is_empty() {
        return (String::new(), String::new());
    }
    let r = encoder.double_metaphone(s);
    (r.primary(), r.alternate())
}

/// Normalises a record with the default [`NameRules`].
pub fn prepare(r: &Record) -> Prepared {
    prepare_with(r, &NameRules::default())
}

fn identifiers(list: &[String]) -> Vec<String> {
    list.iter()
        .map(|i| i.trim().to_ascii_lowercase())
        .filter(|i| !i.is_empty())
        .collect()
}

/// Normalises a record: a newborn's placeholder given name (by `rules`) becomes no given name,
/// its marker the birth order and its boy/girl the sex when the record has none.
pub fn prepare_with(r: &Record, rules: &NameRules) -> Prepared {
    let encoder = DoubleMetaphone::default();
    let all_given = if r.middle.is_empty() {
        r.given.clone()
    } else {
        format!("{} {}", r.given, r.middle)
    };
    let newborn = normalize::placeholder(&all_given, &r.family, rules);
    let given = if newborn.is_some() {
        String::new()
    } else {
        normalize::name(&r.given)
    };
    let family = normalize::name(&r.family);
    let mut family_parts: Vec<String> = normalize::fold(&r.family)
        .split(' ')
        .filter(|t| t.len() >= 2)
        .map(str::to_string)
        .collect();
    family_parts.sort();
    if family_parts.len() < 2 {
        family_parts.clear();
    }
    let mut sex = normalize::fold(&r.sex);
    if sex.is_empty()
        && let Some(s) = newborn.and_then(|n| n.sex)
    {
        sex = s.to_string();
    }
    let birth_order = r.birth_order.or(newborn.and_then(|n| n.birth_order));
    Prepared {
        id: r.id.clone(),
        given_formal: normalize::formal_given(&given).to_string(),
        given_code: codes(&encoder, &given),
        family_code: codes(&encoder, &family),
        given,
        family,
        birth: normalize::date(&r.birth_date),
        street_number: normalize::digits(&r.street_number, true),
        address_1: normalize::address(&r.address_1),
        address_2: normalize::address(&r.address_2),
        locality: normalize::fold(&r.locality),
        postcode: normalize::digits(&r.postcode, false),
        state: normalize::fold(&r.state),
        phone: normalize::digits(&r.phone, false),
        sex,
        identifiers: identifiers(&r.identifiers),
        placeholder: newborn.is_some(),
        birth_order,
        multiple: r.multiple_birth || birth_order.is_some() || newborn.is_some_and(|n| n.multiple),
        family_parts,
        mother_identifiers: identifiers(&r.mother_identifiers),
    }
}

/// The fields compared, in the order of a comparison vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Field {
    Given,
    Family,
    Birth,
    StreetNumber,
    /// The street (first address line). When the street number and both lines all disagree —
    /// another street: a family that moved, or another family — the move is counted once, at
    /// this field's "different" level (the number and the second line are then left out):
    /// EM learns its weight from how often true pairs moved.
    Address1,
    Address2,
    /// Where: postcode and locality together (they say one thing; counting them, and the
    /// state, apart would count that evidence three times).
    Place,
    Phone,
    Sex,
}

impl Field {
    pub const ALL: [Field; 9] = [
        Field::Given,
        Field::Family,
        Field::Birth,
        Field::StreetNumber,
        Field::Address1,
        Field::Address2,
        Field::Place,
        Field::Phone,
        Field::Sex,
    ];

    /// How many agreement levels the field has (0 = disagree … `levels − 1` = exact).
    pub fn levels(self) -> usize {
        match self {
            Field::Given | Field::Family | Field::Birth | Field::Place => 4,
            Field::StreetNumber | Field::Sex => 2,
            Field::Address1 | Field::Address2 | Field::Phone => 3,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Field::Given => "given",
            Field::Family => "family",
            Field::Birth => "birth",
            Field::StreetNumber => "street_number",
            Field::Address1 => "address_1",
            Field::Address2 => "address_2",
            Field::Place => "place",
            Field::Phone => "phone",
            Field::Sex => "sex",
        }
    }

    /// The position of the field in a comparison vector.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Number of fields.
pub const FIELDS: usize = Field::ALL.len();

/// The agreement level of each field; `None` when either record lacks it.
pub type Vector = [Option<u8>; FIELDS];

/// Name agreement: 3 exact (or the same formal name), 2 very close (Jaro–Winkler ≥ 0.92 or
/// one edit), 1 alike (Jaro–Winkler ≥ 0.80 or the same Double Metaphone code), 0 different.
fn name_level(a: &str, b: &str, a_code: &(String, String), b_code: &(String, String)) -> u8 {
    if a == b {
        return 3;
    }
    let jw = jaro_winkler(a, b);
    // one edit says little about a name of two or three letters
    if jw >= 0.92 || (a.len().min(b.len()) >= 4 && edits(a, b) <= 1) {
        return 2;
    }
    let phonetic = !a_code.0.is_empty()
        && (a_code.0 == b_code.0
            || a_code.0 == b_code.1
            || (!a_code.1.is_empty() && a_code.1 == b_code.0));
    if jw >= 0.80 || phonetic { 1 } else { 0 }
}

/// Whether two dates' `YYYYMMDD` digits are one substitution or one adjacent transposition
/// apart (without building the strings).
fn digits_one_edit(a: &DateParts, b: &DateParts) -> bool {
    let digits = |d: &DateParts| -> Option<[u8; 8]> {
        let (y, m, dd) = (d.year?, d.month?, d.day?);
        Some([
            (y / 1000 % 10) as u8,
            (y / 100 % 10) as u8,
            (y / 10 % 10) as u8,
            (y % 10) as u8,
            m / 10 % 10,
            m % 10,
            dd / 10 % 10,
            dd % 10,
        ])
    };
    let (Some(x), Some(y)) = (digits(a), digits(b)) else {
        return false;
    };
    let diff: Vec<usize> = (0..8).filter(|&i| x[i] != y[i]).collect();
    match diff.as_slice() {
        [_] => true,
        [i, j] => *j == i + 1 && x[*i] == y[*j] && x[*j] == y[*i],
        _ => false,
    }
}

/// Date agreement: 3 identical; 2 a typo (one edit of the 8 digits), day and month
/// transposed, or the month or year alone different; 1 another day of the same month (how
/// namesakes' birth dates differ more often than a typo does), the same year, or the year off
/// by one with day and month equal; 0 different.
fn date_level(a: &DateParts, b: &DateParts) -> u8 {
    if a == b {
        return 3;
    }
    let same = [a.year == b.year, a.month == b.month, a.day == b.day];
    let agree = same.iter().filter(|s| **s).count();
    let transposed = a.year == b.year && a.month == b.day && a.day == b.month;
    if (agree == 2 && a.day == b.day) || transposed || digits_one_edit(a, b) {
        return 2;
    }
    let near_year = match (a.year, b.year) {
        (Some(x), Some(y)) => x.abs_diff(y) <= 1 && a.month == b.month && a.day == b.day,
        _ => false,
    };
    if agree == 2 || a.year.is_some() && a.year == b.year || near_year {
        1
    } else {
        0
    }
}

/// Text agreement in three levels: 2 equal, 1 Jaro–Winkler ≥ `close`, 0 different.
fn text_level(a: &str, b: &str, close: f64) -> u8 {
    if a == b {
        2
    } else if jaro_winkler(a, b) >= close {
        1
    } else {
        0
    }
}

/// Place agreement, over what both records have (a postcode or a locality missing on either
/// side is no evidence): 3 every part both have equal, 2 one equal and the other different,
/// 1 a neighbouring place — the postcode one edit away or with the same first three digits,
/// or the locality alike (Jaro–Winkler ≥ 0.88) — 0 neither. The state adds nothing a
/// postcode does not say.
fn place_level(a: &Prepared, b: &Prepared) -> u8 {
    let both = |x: &str, y: &str| !x.is_empty() && !y.is_empty();
    let postcode = both(&a.postcode, &b.postcode).then(|| a.postcode == b.postcode);
    let locality = both(&a.locality, &b.locality).then(|| a.locality == b.locality);
    match (postcode, locality) {
        (Some(true), Some(true)) | (Some(true), None) | (None, Some(true)) => 3,
        (Some(true), _) | (_, Some(true)) => 2,
        _ => {
            let near_postcode = postcode.is_some()
                && (edits(&a.postcode, &b.postcode) <= 1
                    || (a.postcode.len() >= 4 && a.postcode.get(..3) == b.postcode.get(..3)));
            let near_locality =
                locality.is_some() && jaro_winkler(&a.locality, &b.locality) >= 0.88;
            (near_postcode || near_locality) as u8
        }
    }
}

/// Family-name agreement: the name levels, and for a compound (hyphenated or two-word) name,
/// 3 the same parts in another order, 2 one name one of the other's parts (a parent's
/// surname beside both parents'), 1 a part in common.
fn family_level(a: &Prepared, b: &Prepared) -> u8 {
    let level = name_level(&a.family, &b.family, &a.family_code, &b.family_code);
    if level == 3 || (a.family_parts.is_empty() && b.family_parts.is_empty()) {
        return level;
    }
    // the parts are sorted when prepared; a simple name is its own one part
    fn parts(p: &Prepared) -> &[String] {
        if p.family_parts.is_empty() {
            std::slice::from_ref(&p.family)
        } else {
            &p.family_parts
        }
    }
    let (x, y) = (parts(a), parts(b));
    let common = x.iter().filter(|p| y.contains(p)).count();
    let compound = if x == y {
        3
    } else if common > 0 && common == x.len().min(y.len()) {
        2
    } else if common > 0 {
        1
    } else {
        0
    };
    level.max(compound)
}

fn present(s: &str) -> bool {
    !s.is_empty()
}

/// Compares two prepared records. Names are also compared swapped (given ↔ family); the
/// better reading counts. A placeholder given name is compared as missing.
pub fn compare(a: &Prepared, b: &Prepared) -> Vector {
    let mut v: Vector = [None; FIELDS];
    let both = |x: &str, y: &str| present(x) && present(y);
    let given = |a: &Prepared, b: &Prepared| -> u8 {
        if a.given_formal == b.given_formal {
            3
        } else {
            name_level(&a.given, &b.given, &a.given_code, &b.given_code)
        }
    };
    if both(&a.given, &b.given) {
        v[0] = Some(given(a, b));
    }
    if both(&a.family, &b.family) {
        v[1] = Some(family_level(a, b));
    }
    // given and family swapped (looked at only when the names do not already agree, and the
    // swapped names start alike — most candidate pairs are strangers)
    let initial = |x: &str, y: &str| x.as_bytes().first() == y.as_bytes().first();
    if v[0].unwrap_or(0) + v[1].unwrap_or(0) < 6
        && both(&a.given, &b.family)
        && both(&a.family, &b.given)
        && (initial(&a.given, &b.family) || a.given_code.0 == b.family_code.0)
        && (initial(&a.family, &b.given) || a.family_code.0 == b.given_code.0)
    {
        let g = name_level(&a.given, &b.family, &a.given_code, &b.family_code);
        let f = name_level(&a.family, &b.given, &a.family_code, &b.given_code);
        if g + f > v[0].unwrap_or(0) + v[1].unwrap_or(0) && g >= 2 && f >= 2 {
            v[0] = Some(g);
            v[1] = Some(f);
        }
    }
    if !a.birth.is_empty() && !b.birth.is_empty() {
        v[2] = Some(date_level(&a.birth, &b.birth));
    }
    if both(&a.street_number, &b.street_number) {
        v[3] = Some((a.street_number == b.street_number) as u8);
    }
    if both(&a.address_1, &b.address_1) {
        v[4] = Some(text_level(&a.address_1, &b.address_1, 0.85));
    }
    if both(&a.address_2, &b.address_2) {
        v[5] = Some(text_level(&a.address_2, &b.address_2, 0.85));
    }
    // the two address lines the other way round
    if v[4].unwrap_or(0) + v[5].unwrap_or(0) < 4
        && both(&a.address_1, &b.address_2)
        && both(&a.address_2, &b.address_1)
        && initial(&a.address_1, &b.address_2)
        && initial(&a.address_2, &b.address_1)
    {
        let x = text_level(&a.address_1, &b.address_2, 0.85);
        let y = text_level(&a.address_2, &b.address_1, 0.85);
        if x + y > v[4].unwrap_or(0) + v[5].unwrap_or(0) && x >= 1 && y >= 1 {
            v[4] = Some(x);
            v[5] = Some(y);
        }
    }
    if both(&a.postcode, &b.postcode) || both(&a.locality, &b.locality) {
        v[6] = Some(place_level(a, b));
    }
    // another street in the same or a neighbouring place (a family that moved): one event,
    // counted at the street line's level, not three (the number and second line say nothing
    // more); a street both records do not have is no evidence
    let (number, line_1, line_2) = (
        Field::StreetNumber.index(),
        Field::Address1.index(),
        Field::Address2.index(),
    );
    if v[Field::Place.index()].is_some_and(|p| p >= 1)
        && v[line_1] == Some(0)
        && v[number].is_none_or(|l| l == 0)
        && v[line_2].is_none_or(|l| l == 0)
    {
        v[number] = None;
        v[line_2] = None;
    }
    if both(&a.phone, &b.phone) {
        let tail = |p: &str| p[p.len().saturating_sub(7)..].to_string();
        v[7] = Some(if a.phone == b.phone {
            2
        } else if tail(&a.phone) == tail(&b.phone) {
            1
        } else {
            0
        });
    }
    if both(&a.sex, &b.sex) {
        v[8] = Some((a.sex == b.sex) as u8);
    }
    v
}

/// Whether two records share an identifier (the deterministic shortcut).
pub fn share_identifier(a: &Prepared, b: &Prepared) -> bool {
    a.identifiers.iter().any(|i| b.identifiers.contains(i))
}

/// Whether two records share a mother's identifier.
pub fn share_mother(a: &Prepared, b: &Prepared) -> bool {
    a.mother_identifiers
        .iter()
        .any(|i| b.mother_identifiers.contains(i))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(given: &str, family: &str, dob: &str) -> Prepared {
        prepare(&Record {
            id: "x".into(),
            given: given.into(),
            family: family.into(),
            birth_date: dob.into(),
            ..Default::default()
        })
    }

    #[test]
    fn names_agree_by_level() {
        let v = |a: (&str, &str), b: (&str, &str)| {
            let x = compare(&rec(a.0, a.1, ""), &rec(b.0, b.1, ""));
            (x[0], x[1])
        };
        assert_eq!(v(("Ana", "Núñez"), ("ana", "NUNEZ")), (Some(3), Some(3)));
        // a nickname is the formal name
        assert_eq!(v(("Bill", "Smith"), ("William", "Smith")).0, Some(3));
        // one typo
        assert_eq!(
            v(("michaela", "neumann"), ("michaela", "neumqnn")).1,
            Some(2)
        );
        // sounds alike
        assert_eq!(v(("stephen", "x"), ("steven", "x")).0, Some(1));
        assert_eq!(v(("jon", "x"), ("john", "x")).0, Some(2), "one edit");
        assert_eq!(
            v(("x", "h0"), ("x", "h1")).1,
            Some(0),
            "one edit of two letters is not close"
        );
        assert_eq!(v(("catherine", "x"), ("kathryn", "x")).0, Some(1));
        // different
        assert_eq!(v(("john", "x"), ("mary", "x")).0, Some(0));
        // swapped given and family
        assert_eq!(v(("smith", "john"), ("john", "smith")), (Some(3), Some(3)));
        // missing on one side
        assert_eq!(v(("", "smith"), ("john", "smith")).0, None);
    }

    #[test]
    fn dates_agree_in_part() {
        let d = |a: &str, b: &str| compare(&rec("", "", a), &rec("", "", b))[2];
        assert_eq!(d("19560910", "1956-09-10"), Some(3));
        assert_eq!(d("19560910", "19560911"), Some(2), "one digit");
        assert_eq!(
            d("19561009", "19560910"),
            Some(2),
            "day and month transposed"
        );
        assert_eq!(
            d("19371233", "19371223"),
            Some(2),
            "an impossible date still agrees in part"
        );
        assert_eq!(d("19560910", "19560101"), Some(1), "same year");
        assert_eq!(d("19560910", "19570910"), Some(2), "one digit of the year");
        assert_eq!(d("19560910", "19820304"), Some(0));
        assert_eq!(d("", "19820304"), None);
    }

    #[test]
    fn addresses_postcodes_and_phones() {
        let mut a = rec("a", "b", "");
        let mut b = a.clone();
        a.address_1 = normalize::address("12 Pinkerton Circuit");
        b.address_1 = normalize::address("12 pinkerton cct");
        a.postcode = "4560".into();
        b.postcode = "4506".into();
        a.phone = "18605550100".into();
        b.phone = "5550100".into();
        a.locality = "richlands".into();
        b.locality = "richland".into();
        let v = compare(&a, &b);
        assert_eq!(v[4], Some(2));
        assert_eq!(v[6], Some(1), "postcode one edit away, locality alike");
        assert_eq!(v[7], Some(1), "same local number");
        b.locality = "richlands".into();
        assert_eq!(compare(&a, &b)[6], Some(2), "the locality equal");
        b.postcode = "4560".into();
        assert_eq!(compare(&a, &b)[6], Some(3), "both equal");
        for f in Field::ALL {
            assert!(f.levels() >= 2, "{}", f.name());
        }
    }

    #[test]
    fn shared_identifiers_are_found() {
        let mut a = rec("a", "b", "");
        let mut b = rec("c", "d", "");
        a.identifiers = vec!["urn:ssn|123".into()];
        b.identifiers = vec!["urn:mrn|9".into(), "urn:ssn|123".into()];
        assert!(share_identifier(&a, &b));
        b.identifiers.pop();
        assert!(!share_identifier(&a, &b));
    }
}
