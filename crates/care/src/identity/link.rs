//! Linking record sets: blocking on several keys (their union, so that one noisy field does
//! not lose a match), comparing the candidate pairs, estimating the model from the data (u
//! from random pairs, m and λ by EM), scoring with term-frequency adjustment, and grading.
//! Pairs that share an identifier are certain. Two files may be linked one-to-one (each record
//! in at most one link, best scores first), as for registries that hold each person once.
//! Comparison runs on every core (rayon); everything is deterministic for a given input.

use std::collections::HashMap;

use rayon::prelude::*;

use super::compare::{FIELDS, Field, Prepared, Vector, compare, share_identifier, share_mother};
use super::model::{Grade, Model, Thresholds, anchored_m, estimate_m_holding, estimate_u};

/// How to link.
#[derive(Debug, Clone)]
pub struct LinkConfig {
    pub thresholds: Thresholds,
    /// Blocks with more records than this are skipped for that key (the other keys still
    /// bring their pairs together): common values would otherwise compare everyone.
    pub max_block: usize,
    /// Random pairs drawn to estimate u.
    pub random_pairs: usize,
    pub em_iterations: usize,
    /// Two files: each record in at most one link.
    pub one_to_one: bool,
    /// The least grade reported.
    pub report: Grade,
    /// Hold back pairs that look like twins or siblings (given names different outright,
    /// family name and birth date the same) at possible — on by default, as for any
    /// population with children; off only for a registry known to hold no twins, where a
    /// replaced given name is noise (FEBRL's synthetic adults).
    pub twin_guard: bool,
    /// Score with this model instead of estimating one from the records (too few to estimate
    /// from: a small import, a new server).
    pub model: Option<Model>,
    pub seed: u64,
}

impl Default for LinkConfig {
    fn default() -> Self {
        LinkConfig {
            thresholds: Thresholds::default(),
            max_block: 60,
            random_pairs: 20_000,
            em_iterations: 100,
            one_to_one: true,
            report: Grade::Probable,
            twin_guard: true,
            model: None,
            seed: 42,
        }
    }
}

/// A scored pair (indexes into the left and right sets).
#[derive(Debug, Clone, PartialEq)]
pub struct Link {
    pub left: usize,
    pub right: usize,
    /// Sum of the fields' weights, term-frequency adjusted (bits).
    pub score: f64,
    pub probability: f64,
    pub grade: Grade,
}

/// What a run found.
#[derive(Debug, Clone)]
pub struct Linked {
    pub links: Vec<Link>,
    pub model: Model,
    pub candidates: usize,
}

/// The blocking keys of a record, hashed (kind-prefixed, so keys of different kinds never
/// meet) with 64-bit FNV-1a over the key's bytes — stable across builds and machines, since
/// the server stores them (`identity_key`) to find the candidates of a Patient write.
pub fn blocking_keys(r: &Prepared) -> Vec<u64> {
    let mut keys: Vec<String> = Vec::with_capacity(12);
    let b = &r.birth;
    let year = b.year.map(|y| y.to_string());
    if let (Some(y), Some(m), Some(d)) = (b.year, b.month, b.day) {
        // day and month unordered: a transposition stays in the block
        keys.push(format!("b|{y}|{}|{}", m.min(d), m.max(d)));
    }
    let (g, f) = (&r.given_code.0, &r.family_code.0);
    if !g.is_empty() && !f.is_empty() {
        // names unordered: a swap stays in the block
        let (x, y) = if g <= f { (g, f) } else { (f, g) };
        keys.push(format!("n|{x}|{y}"));
    }
    if let Some(y) = &year {
        if !f.is_empty() {
            keys.push(format!("fy|{f}|{y}"));
        }
        if !g.is_empty() {
            keys.push(format!("gy|{g}|{y}"));
        }
    }
    if !r.postcode.is_empty() {
        if !f.is_empty() {
            keys.push(format!("pf|{}|{f}", r.postcode));
        }
        if !g.is_empty() {
            keys.push(format!("pg|{}|{g}", r.postcode));
        }
        if !r.street_number.is_empty() {
            keys.push(format!("ps|{}|{}", r.postcode, r.street_number));
        }
        if let (Some(m), Some(d)) = (b.month, b.day) {
            keys.push(format!("pb|{}|{m}|{d}", r.postcode));
        }
    }
    if !r.street_number.is_empty() && !r.address_1.is_empty() {
        keys.push(format!("sa|{}|{}", r.street_number, r.address_1));
    }
    if !r.locality.is_empty() && !r.address_1.is_empty() {
        keys.push(format!("al|{}|{}", r.address_1, r.locality));
    }
    if !r.address_1.is_empty() && !r.address_2.is_empty() {
        // address lines unordered: lines written the other way round stay in the block
        let (x, y) = if r.address_1 <= r.address_2 {
            (&r.address_1, &r.address_2)
        } else {
            (&r.address_2, &r.address_1)
        };
        keys.push(format!("aa|{x}|{y}"));
    }
    if !r.locality.is_empty()
        && let Some(y) = &year
    {
        keys.push(format!("ly|{}|{y}", r.locality));
    }
    if r.phone.len() >= 7 {
        keys.push(format!("t|{}", &r.phone[r.phone.len() - 7..]));
    }
    for i in &r.identifiers {
        keys.push(format!("i|{i}"));
    }
    if !b.is_empty() {
        for i in &r.mother_identifiers {
            keys.push(format!("m|{i}|{}", b.key()));
        }
    }
    let mut hashed: Vec<u64> = keys.iter().map(|k| crate::fnv1a(k.as_bytes())).collect();
    hashed.sort_unstable();
    hashed.dedup();
    hashed
}

/// The candidate pairs of the union of the blocks: (left, right) indexes, each once. With
/// `right` `None`, the pairs within `left` (i < j).
pub fn candidates(
    left: &[Prepared],
    right: Option<&[Prepared]>,
    max_block: usize,
) -> Vec<(u32, u32)> {
    // (key, side, index), sorted by key: each run is a block
    let mut entries: Vec<(u64, u8, u32)> = left
        .par_iter()
        .enumerate()
        .flat_map_iter(|(i, r)| {
            blocking_keys(r)
                .into_iter()
                .map(move |k| (k, 0u8, i as u32))
        })
        .collect();
    if let Some(right) = right {
        entries.par_extend(right.par_iter().enumerate().flat_map_iter(|(i, r)| {
            blocking_keys(r)
                .into_iter()
                .map(move |k| (k, 1u8, i as u32))
        }));
    }
    entries.par_sort_unstable();
    let mut blocks: Vec<&[(u64, u8, u32)]> = Vec::new();
    let mut start = 0;
    for i in 1..=entries.len() {
        if i == entries.len() || entries[i].0 != entries[start].0 {
            let block = &entries[start..i];
            if block.len() > 1 && block.len() <= max_block {
                blocks.push(block);
            }
            start = i;
        }
    }
    let linking = right.is_some();
    let mut pairs: Vec<u64> = blocks
        .par_iter()
        .flat_map_iter(|block| {
            let mut out = Vec::new();
            for (x, a) in block.iter().enumerate() {
                for b in &block[x + 1..] {
                    if linking {
                        if a.1 != b.1 {
                            let (l, r) = if a.1 == 0 { (a.2, b.2) } else { (b.2, a.2) };
                            out.push(((l as u64) << 32) | r as u64);
                        }
                    } else if a.2 != b.2 {
                        let (l, r) = (a.2.min(b.2), a.2.max(b.2));
                        out.push(((l as u64) << 32) | r as u64);
                    }
                }
            }
            out
        })
        .collect();
    pairs.par_sort_unstable();
    pairs.dedup();
    pairs
        .into_iter()
        .map(|p| ((p >> 32) as u32, p as u32))
        .collect()
}

/// Uniformly random pairs (deterministic for a seed), for u.
fn random_pairs(n_left: usize, n_right: usize, count: usize, seed: u64) -> Vec<(u32, u32)> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut next = || {
        // xorshift64*
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    (0..count)
        .filter_map(|_| {
            let l = (next() % n_left as u64) as u32;
            let r = (next() % n_right as u64) as u32;
            (l != r || n_left != n_right).then_some((l, r))
        })
        .collect()
}

/// The value whose equality is a field's exact level.
fn exact_value(r: &Prepared, field: Field) -> String {
    match field {
        Field::Given => r.given_formal.clone(),
        Field::Family => r.family.clone(),
        Field::Birth => {
            if r.birth.is_empty() {
                String::new()
            } else {
                r.birth.key()
            }
        }
        Field::StreetNumber => r.street_number.clone(),
        Field::Address1 => r.address_1.clone(),
        Field::Address2 => r.address_2.clone(),
        Field::Place => {
            if r.postcode.is_empty() || r.locality.is_empty() {
                String::new()
            } else {
                format!("{}|{}", r.postcode, r.locality)
            }
        }
        Field::Phone => r.phone.clone(),
        Field::Sex => r.sex.clone(),
    }
}

/// How often each value of each field occurs in one record set, with how many records have
/// the field — counted once, for both the exact-level u and the term frequencies.
struct ValueCounts(Vec<(HashMap<String, f64>, f64)>);

impl ValueCounts {
    fn of(set: &[Prepared]) -> ValueCounts {
        ValueCounts(
            Field::ALL
                .iter()
                .map(|&field| {
                    let mut counts: HashMap<String, f64> = HashMap::new();
                    let mut n = 0.0;
                    for r in set {
                        let v = exact_value(r, field);
                        if !v.is_empty() {
                            *counts.entry(v).or_default() += 1.0;
                            n += 1.0;
                        }
                    }
                    (counts, n)
                })
                .collect(),
        )
    }
}

/// Replaces each field's exact-level u with the chance that two random records with the
/// field have the same value — Σ p(v)·q(v) over the values' shares on each side — which is
/// exact where a sample of random pairs sees a rare agreement a handful of times; the other
/// levels keep their sampled proportions.
fn exact_u_from_values(u: &mut [Vec<f64>; FIELDS], left: &ValueCounts, right: &ValueCounts) {
    for (f, ((p, np), (q, nq))) in left.0.iter().zip(&right.0).enumerate() {
        let agree: f64 = p
            .iter()
            .filter_map(|(v, cp)| q.get(v).map(|cq| (cp / np) * (cq / nq)))
            .sum::<f64>()
            .clamp(1e-7, 0.999);
        let exact = u[f].len() - 1;
        let rest: f64 = u[f][..exact].iter().sum();
        if rest > 0.0 {
            for x in &mut u[f][..exact] {
                *x *= (1.0 - agree) / rest;
            }
        }
        u[f][exact] = agree;
    }
}

/// How often each value of the term-frequency fields occurs (shares of all records).
struct TermFrequencies {
    fields: Vec<(usize, HashMap<String, f64>)>,
}

impl TermFrequencies {
    const FIELDS: [Field; 3] = [Field::Given, Field::Family, Field::Place];

    /// From the value counts of the record sets, which hold `total` records together.
    fn new(sets: &[&ValueCounts], total: usize) -> TermFrequencies {
        let fields = Self::FIELDS
            .iter()
            .map(|&field| {
                let f = Field::ALL.iter().position(|x| *x == field).unwrap_or(0);
                let mut shares: HashMap<String, f64> = HashMap::new();
                for set in sets {
                    for (v, c) in &set.0[f].0 {
                        *shares.entry(v.clone()).or_default() += c;
                    }
                }
                for c in shares.values_mut() {
                    *c /= total.max(1) as f64;
                }
                (f, shares)
            })
            .collect();
        TermFrequencies { fields }
    }

    /// The adjustment of a pair's score for its exact agreements on common or rare values.
    fn adjustment(&self, model: &Model, v: &Vector, a: &Prepared) -> f64 {
        let mut adj = 0.0;
        for (f, counts) in &self.fields {
            let exact = (Field::ALL[*f].levels() - 1) as u8;
            if v[*f] == Some(exact)
                && let Some(share) = counts.get(&exact_value(a, Field::ALL[*f]))
            {
                adj += model.tf_adjustment(*f, *share);
            }
        }
        adj
    }
}

/// What the model was estimated from: the candidate pairs, their comparison vectors, and the
/// value counts (for term frequencies).
struct Estimated {
    pairs: Vec<(u32, u32)>,
    vectors: Vec<Vector>,
    model: Model,
    left_counts: ValueCounts,
    right_counts: Option<ValueCounts>,
}

/// Estimates the model from the data (what [`link`] scores with, without scoring): the
/// `identity:model` job's work.
pub fn estimate(left: &[Prepared], right: Option<&[Prepared]>, config: &LinkConfig) -> Model {
    estimated(left, right, config).model
}

/// Blocking, comparison, u from random pairs and the values' frequencies, m held from the
/// anchor pairs, then EM.
fn estimated(left: &[Prepared], right: Option<&[Prepared]>, config: &LinkConfig) -> Estimated {
    let other = right.unwrap_or(left);
    let pairs = candidates(left, right, config.max_block);
    let vectors: Vec<Vector> = pairs
        .par_iter()
        .map(|&(l, r)| compare(&left[l as usize], &other[r as usize]))
        .collect();
    let sample: Vec<Vector> =
        random_pairs(left.len(), other.len(), config.random_pairs, config.seed)
            .par_iter()
            .map(|&(l, r)| compare(&left[l as usize], &other[r as usize]))
            .collect();
    let left_counts = ValueCounts::of(left);
    let right_counts = right.map(ValueCounts::of);
    let other_counts = right_counts.as_ref().unwrap_or(&left_counts);
    let mut u = estimate_u(&sample);
    exact_u_from_values(&mut u, &left_counts, other_counts);
    // at most about one true pair per record of the smaller side (two per record within one
    // file, where a person may appear three or more times)
    let most_pairs = match right {
        Some(r) => left.len().min(r.len()),
        None => 2 * left.len(),
    } as f64;
    let max_lambda = (most_pairs / vectors.len().max(1) as f64).min(1.0);
    // the address, phone and sex of true pairs, read from the pairs that agree exactly on both
    // names and the birth date (almost all of them the same person): how often families moved
    // — which EM over every candidate would take for the mark of another person
    let anchors = pairs.iter().zip(&vectors).filter(|((l, r), v)| {
        v[0] == Some(3)
            && v[1] == Some(3)
            && v[2] == Some(3)
            && !left[*l as usize].multiple
            && !other[*r as usize].multiple
    });
    let located: Vec<usize> = [
        Field::StreetNumber,
        Field::Address1,
        Field::Address2,
        Field::Place,
        Field::Phone,
        Field::Sex,
    ]
    .iter()
    .map(|f| f.index())
    .collect();
    let held = anchored_m(anchors.map(|(_, v)| v), &located, 30);
    let model = match &config.model {
        Some(m) => m.clone(),
        None => estimate_m_holding(&vectors, &u, &held, config.em_iterations, max_lambda),
    };
    Estimated {
        pairs,
        vectors,
        model,
        left_counts,
        right_counts,
    }
}

/// Links `left` with `right` (or, with `right` `None`, finds the duplicates within `left`).
pub fn link(left: &[Prepared], right: Option<&[Prepared]>, config: &LinkConfig) -> Linked {
    let other = right.unwrap_or(left);
    let Estimated {
        pairs,
        vectors,
        model,
        left_counts,
        right_counts,
    } = estimated(left, right, config);
    let tf = match &right_counts {
        Some(r) => TermFrequencies::new(&[&left_counts, r], left.len() + other.len()),
        None => TermFrequencies::new(&[&left_counts], left.len()),
    };
    let mut links: Vec<Link> = pairs
        .par_iter()
        .zip(vectors.par_iter())
        .filter_map(|(&(l, r), v)| {
            let (a, b) = (&left[l as usize], &other[r as usize]);
            let score = model.score(v, tf.adjustment(&model, v, a));
            let (probability, grade) = judge(
                &config.thresholds,
                config.twin_guard,
                v,
                model.probability(score),
                a,
                b,
            );
            (grade >= config.report).then_some(Link {
                left: l as usize,
                right: r as usize,
                score,
                probability,
                grade,
            })
        })
        .collect();
    links.sort_by(|a, b| {
        b.grade
            .cmp(&a.grade)
            .then(b.score.total_cmp(&a.score))
            .then((a.left, a.right).cmp(&(b.left, b.right)))
    });
    if right.is_some() && config.one_to_one {
        let (mut used_l, mut used_r) = (vec![false; left.len()], vec![false; other.len()]);
        links.retain(|k| {
            if used_l[k.left] || used_r[k.right] {
                return false;
            }
            used_l[k.left] = true;
            used_r[k.right] = true;
            true
        });
    }
    Linked {
        links,
        model,
        candidates: pairs.len(),
    }
}

/// The highest probability a grade below certain may show: a pair held back by a guard shows
/// the probability at the top of the grade it was given, never more (a twin pair never shows
/// 1.0 beside the word "probable").
fn band_top(thresholds: &Thresholds, grade: Grade) -> f64 {
    match grade {
        Grade::Certain => 1.0,
        Grade::Probable => thresholds.upper - 1e-4,
        Grade::Possible => thresholds.midpoint() - 1e-4,
        Grade::CertainlyNot => thresholds.lower - 1e-4,
    }
}

/// What a machine may decide alone, in this order:
/// 1. a shared person-level identifier (or medical record number in its system — a birth MRN)
///    is certain, unless the records name two children of one multiple birth;
/// 2. two children of one multiple birth (different birth orders, or two unnamed newborns of
///    different sex) are certainly not one person, and so are an unnamed newborn and a record
///    whose family name disagrees (no name agrees at all) unless they share the mother;
/// 3. a shared mother's identifier with the same birth date is certain for a single birth;
/// 4. two records whose given names are two names (different outright, or alike but more
///    than two edits apart — Scarlett and Charlotte, not a typo) while family name and birth date agree (or nearly: a typo or transposition) —
///    twins, or siblings — are at most possible (with `twin_guard`), and so is a newborn of a
///    multiple birth whose place in it is not known on both sides, and an unnamed newborn
///    whose birth date is not the other record's exactly;
/// 5. a pair whose given names are missing (a newborn's placeholder) or disagree, whose family
///    names disagree (a changed name looks like another person), or whose birth dates are
///    missing or agree in no more than the year (namesakes), is at most probable.
///
/// Returns the probability shown — at most the top of the grade given — and the grade.
pub fn judge(
    thresholds: &Thresholds,
    twin_guard: bool,
    v: &Vector,
    probability: f64,
    a: &Prepared,
    b: &Prepared,
) -> (f64, Grade) {
    let (given, family, birth) = (v[0], v[1], v[2]);
    let multiple = a.multiple || b.multiple;
    let unnamed = a.placeholder || b.placeholder;
    let same_order = matches!((a.birth_order, b.birth_order), (Some(x), Some(y)) if x == y);
    // two children of one birth: different birth orders, or unnamed newborns of another sex
    let apart = matches!((a.birth_order, b.birth_order), (Some(x), Some(y)) if x != y)
        || (a.placeholder && b.placeholder && v[Field::Sex.index()] == Some(0));
    let by_identifier = share_identifier(a, b) && !(multiple && apart);
    let by_mother = !apart && share_mother(a, b) && birth == Some(3) && (!multiple || same_order);
    if by_identifier || by_mother {
        return (probability.max(thresholds.upper), Grade::Certain);
    }
    // given names that are two names, not one name mistyped (more than two edits apart)
    let two_names = given == Some(0)
        || (given == Some(1) && super::compare::edits(&a.given, &b.given) > 2)
        // Oliver and Olivia: a boy and a girl
        || (given.is_some_and(|g| g <= 2) && v[Field::Sex.index()] == Some(0));
    let twins =
        twin_guard && two_names && family.is_some_and(|f| f >= 2) && birth.is_some_and(|b| b >= 2);
    // an unnamed newborn has no name to agree on but the family's: with that disagreeing,
    // nothing says the two records are one child (neighbours born the same day share the rest)
    let cap = if apart || (unnamed && family.is_some_and(|f| f <= 1) && !share_mother(a, b)) {
        Grade::CertainlyNot
    } else if twins || (multiple && !same_order) || (unnamed && birth != Some(3)) {
        Grade::Possible
    } else if given.is_none_or(|g| g <= 1)
        || family.is_some_and(|f| f <= 1)
        || birth.is_none_or(|b| b <= 1)
    {
        Grade::Probable
    } else {
        Grade::Certain
    };
    let grade = thresholds.grade(probability).min(cap);
    (probability.min(band_top(thresholds, grade)), grade)
}

/// A pair compared and graded against a model already estimated (for `$match` and linkage on
/// write, where a few pairs are scored at a time): the score, the probability shown (after
/// the guards of [`judge`], the twin guard on) and the grade.
pub fn score_pair(
    model: &Model,
    thresholds: &Thresholds,
    a: &Prepared,
    b: &Prepared,
) -> (f64, f64, Grade) {
    let v = compare(a, b);
    let score = model.score(&v, 0.0);
    let (probability, grade) = judge(thresholds, true, &v, model.probability(score), a, b);
    (score, probability, grade)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::compare::{Record, prepare};
    use crate::identity::model::Model;

    fn person(
        id: &str,
        given: &str,
        family: &str,
        dob: &str,
        postcode: &str,
        street: &str,
    ) -> Prepared {
        prepare(&Record {
            id: id.into(),
            given: given.into(),
            family: family.into(),
            birth_date: dob.into(),
            postcode: postcode.into(),
            street_number: "12".into(),
            address_1: street.into(),
            locality: "hartford".into(),
            state: "ct".into(),
            ..Default::default()
        })
    }

    /// A small registry pair: typos, a swap, a transposed date and a missing field are linked;
    /// twins (same family, address and birth date, different given names) are not.
    #[test]
    fn links_noisy_duplicates_and_not_twins() {
        let given = [
            "olivia", "liam", "emma", "noah", "ava", "elijah", "sophia", "lucas", "mia", "mason",
            "isabella", "logan", "amelia", "ethan", "harper", "james", "evelyn", "aiden",
            "abigail", "jacob",
        ];
        let family = [
            "garcia", "nguyen", "kowalski", "okafor", "rossi", "haddad", "schmidt", "tanaka",
            "silva", "murphy", "kim", "patel", "novak", "dubois", "larsen", "moreno", "fischer",
            "ivanova", "obrien", "cohen",
        ];
        let mut left = Vec::new();
        let mut right = Vec::new();
        for i in 0..200 {
            let g = given[i % 20];
            let f = family[(i * 7 + i / 20) % 20];
            let dob = format!("20{:02}{:02}{:02}", 5 + i % 15, 1 + i % 12, 1 + i % 28);
            let pc = format!("06{:03}", 100 + i % 50);
            let street = format!("{} street", ["main", "elm", "oak", "park"][i % 4]);
            left.push(person(&format!("a{i}"), g, f, &dob, &pc, &street));
            // the same person, noisily
            let (g2, f2, dob2) = match i % 5 {
                0 => (g.to_string(), f.to_string(), dob.clone()),
                1 => (format!("{g}h"), f.to_string(), dob.clone()),
                2 => (f.to_string(), g.to_string(), dob.clone()),
                3 => (
                    g.to_string(),
                    f.to_string(),
                    format!("{}{}{}", &dob[..4], &dob[6..8], &dob[4..6]),
                ),
                _ => (g.to_string(), String::new(), dob.clone()),
            };
            right.push(person(&format!("b{i}"), &g2, &f2, &dob2, &pc, &street));
        }
        // twins of a0: same family, birth date and address, another given name
        let twin = person(
            "twin",
            "zachary",
            &left[0].family.clone(),
            "20050101",
            &left[0].postcode.clone(),
            "main street",
        );
        right.push(twin);
        let linked = link(&left, Some(&right), &LinkConfig::default());
        let found: Vec<(usize, usize)> = linked.links.iter().map(|k| (k.left, k.right)).collect();
        let correct = found.iter().filter(|(l, r)| l == r).count();
        assert!(correct >= 195, "found {correct} of 200 true links");
        assert_eq!(
            found.len(),
            correct,
            "no false links: {:?}",
            linked
                .links
                .iter()
                .filter(|k| k.left != k.right)
                .collect::<Vec<_>>()
        );
        assert!(
            !found.iter().any(|&(_, r)| r == 200),
            "the twin is not linked"
        );
        assert!(
            linked.candidates < 200 * 201,
            "blocking keeps the candidates few: {}",
            linked.candidates
        );
    }

    #[test]
    fn blocking_survives_one_noisy_field() {
        let a = person(
            "a",
            "michaela",
            "neumann",
            "19151111",
            "4223",
            "stanley street",
        );
        // a different postcode, a typo in the family name, the birth date transposed
        let b = person(
            "b",
            "michaela",
            "neumqnn",
            "19151111",
            "4232",
            "stanley street",
        );
        let c = person("c", "michaela", "neumann", "19151111", "9999", "other road");
        let pairs = candidates(&[a], Some(&[b, c]), 100);
        assert_eq!(pairs, vec![(0, 0), (0, 1)]);
    }

    /// A child's record: given, family, birth date, street line; Hartford 06105, phone, sex.
    fn child(given: &str, family: &str, dob: &str, street: &str) -> Record {
        Record {
            id: given.into(),
            given: given.into(),
            family: family.into(),
            birth_date: dob.into(),
            street_number: "12".into(),
            address_1: street.into(),
            locality: "hartford".into(),
            postcode: "06105".into(),
            state: "ct".into(),
            phone: "8605550100".into(),
            sex: "female".into(),
            ..Default::default()
        }
    }

    /// A model in which every field's exact agreement weighs much more than disagreement.
    fn strong_model() -> Model {
        let mut m = crate::identity::model::estimate_m(
            &[],
            &std::array::from_fn(|f| {
                let n = Field::ALL[f].levels();
                let mut u = vec![0.1 / (n - 1) as f64; n];
                u[0] = 0.9;
                u
            }),
            1,
            0.5,
        );
        m.lambda = 0.05;
        m
    }

    fn judged(a: &Record, b: &Record) -> (f64, Grade) {
        let (a, b) = (prepare(a), prepare(b));
        let (_, p, g) = score_pair(&strong_model(), &Thresholds::default(), &a, &b);
        (p, g)
    }

    #[test]
    fn twins_and_renamed_people_are_never_certain() {
        let ana = child("ana", "smith", "20150302", "main street");
        assert_eq!(judged(&ana, &ana.clone()).1, Grade::Certain);
        // a typo in the given name is still certain
        assert_eq!(
            judged(&ana, &child("anna", "smith", "20150302", "main street")).1,
            Grade::Certain
        );
        // twins: another given name, everything else the same — at most possible, and the
        // probability shown stays inside that grade
        let (p, g) = judged(&ana, &child("zoe", "smith", "20150302", "main street"));
        assert_eq!(g, Grade::Possible);
        assert!(p < Thresholds::default().midpoint(), "shown {p}");
        // a changed family name, namesakes born the same year, no birth date: at most probable
        assert_eq!(
            judged(&ana, &child("ana", "jones", "20150302", "main street")).1,
            Grade::Probable
        );
        assert_eq!(
            judged(&ana, &child("ana", "smith", "20151109", "main street")).1,
            Grade::Probable
        );
        let (p, g) = judged(&ana, &child("ana", "smith", "", "main street"));
        assert_eq!(g, Grade::Probable);
        assert!(
            p < 0.99,
            "a probable pair never shows a certain's probability: {p}"
        );
    }

    #[test]
    fn newborns_twins_and_the_mothers_identifier() {
        let baby = |given: &str| child(given, "okafor", "20261201", "main street");
        // an unnamed newborn and the same child named later: to a person, never automatic
        assert_eq!(
            judged(&baby("Baby Girl"), &baby("Amara")).1,
            Grade::Probable
        );
        // two unnamed newborns: the placeholder is no evidence; one birth or two?
        assert!(judged(&baby("Baby Girl"), &baby("Baby Girl")).1 <= Grade::Probable);
        // unnamed, another family: nothing agrees but the day and the street
        let other = child("Baby Girl", "lindqvist", "20261201", "main street");
        assert_eq!(judged(&baby("Baby Girl"), &other).1, Grade::CertainlyNot);
        // twins by their markers, or unnamed newborns of another sex: certainly not
        assert_eq!(
            judged(&baby("Baby A"), &baby("Baby B")).1,
            Grade::CertainlyNot
        );
        assert_eq!(
            judged(&baby("Twin 1"), &baby("Twin 2")).1,
            Grade::CertainlyNot
        );
        let mut boy = baby("Baby Boy");
        boy.sex = String::new();
        let mut girl = baby("Baby Girl");
        girl.sex = String::new();
        assert_eq!(judged(&boy, &girl).1, Grade::CertainlyNot);
        // a twin whose place in the birth one side does not know: at most possible
        assert!(judged(&baby("Twin A"), &baby("Baby Girl")).1 <= Grade::Possible);
        // the same twin on both sides (same marker): probable, not certain
        assert_eq!(judged(&baby("Twin A"), &baby("Twin A")).1, Grade::Probable);
        // the record's own multipleBirthInteger counts like a marker
        let (mut x, mut y) = (baby("Amara"), baby("Amara"));
        x.birth_order = Some(1);
        y.birth_order = Some(2);
        assert_eq!(judged(&x, &y).1, Grade::CertainlyNot);
        // a mother's identifier with the birth date links a single birth's newborn
        let (mut m1, mut m2) = (baby("Baby Girl"), baby("Baby Girl"));
        m1.mother_identifiers = vec!["urn:mrn:cc|M77".into()];
        m2.mother_identifiers = vec!["urn:mrn:cc|M77".into()];
        m2.address_1 = "other road".into();
        assert_eq!(judged(&m1, &m2).1, Grade::Certain);
        // … but not twins of that mother
        let (mut t1, mut t2) = (baby("Baby A"), baby("Baby B"));
        t1.mother_identifiers = m1.mother_identifiers.clone();
        t2.mother_identifiers = m1.mother_identifiers.clone();
        assert_eq!(judged(&t1, &t2).1, Grade::CertainlyNot);
        // a birth MRN on both records: certain, unless they name two children of one birth
        let (mut r1, mut r2) = (baby("Baby Girl"), baby("Amara"));
        r1.identifiers = vec!["urn:mrn:birth-hospital|B123".into()];
        r2.identifiers = r1.identifiers.clone();
        assert_eq!(judged(&r1, &r2).1, Grade::Certain);
    }

    #[test]
    fn movers_partial_addresses_and_compound_surnames() {
        let ana = child("ana", "smith", "20150302", "main street");
        // moved within the town: names and birth date agree, another street
        let mut moved = ana.clone();
        moved.street_number = "40".into();
        moved.address_1 = "oak avenue".into();
        let v = compare(&prepare(&ana), &prepare(&moved));
        assert_eq!(
            v[Field::Address1.index()],
            Some(0),
            "another street, one event"
        );
        assert_eq!(
            (v[Field::StreetNumber.index()], v[Field::Address2.index()]),
            (None, None)
        );
        assert_eq!(v[Field::Place.index()], Some(3));
        assert_eq!(judged(&ana, &moved).1, Grade::Certain);
        // the address only in part on one side agrees as far as it goes
        let mut partial = ana.clone();
        partial.locality = String::new();
        partial.street_number = String::new();
        partial.address_1 = String::new();
        let v = compare(&prepare(&ana), &prepare(&partial));
        assert_eq!(
            v[Field::Place.index()],
            Some(3),
            "the postcode alone, equal"
        );
        assert_eq!(v[Field::Address1.index()], None, "no street: no evidence");
        assert_eq!(v[Field::StreetNumber.index()], None);
        // a compound surname beside one of its parts
        let hyphen = child("ana", "Smith-Garcia", "20150302", "main street");
        let v = compare(&prepare(&ana), &prepare(&hyphen));
        assert_eq!(v[Field::Family.index()], Some(2));
        let swapped = child("ana", "Garcia Smith", "20150302", "main street");
        assert_eq!(compare(&prepare(&hyphen), &prepare(&swapped))[1], Some(3));
        assert_eq!(judged(&ana, &hyphen).1, Grade::Certain);
    }

    /// Adding a field that agrees never lowers the score, and a field missing on either side
    /// adds nothing.
    #[test]
    fn agreeing_fields_only_add() {
        let model = strong_model();
        let t = Thresholds::default();
        let full = prepare(&child("ana", "smith", "20150302", "main street"));
        let mut query = Record {
            given: "ana".into(),
            family: "smith".into(),
            birth_date: "2015-03-02".into(),
            ..Default::default()
        };
        let mut last = score_pair(&model, &t, &prepare(&query), &full).0;
        for step in 0..4 {
            match step {
                0 => query.postcode = "06105".into(),
                1 => query.locality = "Hartford".into(),
                2 => query.sex = "female".into(),
                _ => query.address_1 = "Main St".into(),
            }
            let score = score_pair(&model, &t, &prepare(&query), &full).0;
            assert!(score >= last, "step {step}: {score} < {last}");
            last = score;
        }
    }

    #[test]
    fn shared_identifiers_are_certain() {
        let mut a = person("a", "x", "y", "", "", "");
        let mut b = person("b", "p", "q", "", "", "");
        a.identifiers = vec!["urn:ssn|1".into()];
        b.identifiers = vec!["urn:ssn|1".into()];
        let linked = link(&[a], Some(&[b]), &LinkConfig::default());
        assert_eq!(linked.links.len(), 1);
        assert_eq!(linked.links[0].grade, Grade::Certain);
    }
}
