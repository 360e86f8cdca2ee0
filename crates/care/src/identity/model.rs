//! The Fellegi–Sunter model: for each field and agreement level, the probability of that level
//! among true matches (m) and among non-matches (u). u is estimated from random record pairs
//! (almost all of them non-matches); m and the share of matches among the candidate pairs (λ)
//! by expectation–maximisation over the candidates' comparison vectors, with u held. A pair's
//! score is the sum of log2(m/u) over its fields, adjusted for how common an exactly agreeing
//! name or place is (term frequency); its grade follows from the match probability.

use std::collections::HashMap;

use super::compare::{FIELDS, Field, Vector};

/// m and u per field and level, and λ.
#[derive(Debug, Clone, PartialEq)]
pub struct Model {
    pub m: [Vec<f64>; FIELDS],
    pub u: [Vec<f64>; FIELDS],
    /// The share of candidate pairs that match.
    pub lambda: f64,
    /// EM iterations run.
    pub iterations: usize,
}

/// The smallest probability a level may have (keeps weights finite).
const FLOOR: f64 = 1e-6;

fn level_counts(vectors: &[(Vector, f64)]) -> [Vec<f64>; FIELDS] {
    let mut counts: [Vec<f64>; FIELDS] = std::array::from_fn(|f| vec![0.0; Field::ALL[f].levels()]);
    for (v, weight) in vectors {
        for (f, level) in v.iter().enumerate() {
            if let Some(l) = level {
                counts[f][*l as usize] += weight;
            }
        }
    }
    counts
}

fn normalise(counts: &[f64], smoothing: f64) -> Vec<f64> {
    let total: f64 = counts.iter().sum::<f64>() + smoothing * counts.len() as f64;
    counts
        .iter()
        .map(|c| ((c + smoothing) / total).max(FLOOR))
        .collect()
}

/// u from the comparison vectors of random pairs (Laplace-smoothed).
pub fn estimate_u(random_pairs: &[Vector]) -> [Vec<f64>; FIELDS] {
    let weighted: Vec<(Vector, f64)> = random_pairs.iter().map(|v| (*v, 1.0)).collect();
    let counts = level_counts(&weighted);
    std::array::from_fn(|f| normalise(&counts[f], 1.0))
}

/// The starting m: most matches agree exactly, a few partly.
fn initial_m() -> [Vec<f64>; FIELDS] {
    std::array::from_fn(|f| {
        let n = Field::ALL[f].levels();
        let mut m = vec![0.05 / (n - 1) as f64; n];
        m[n - 1] = 0.95;
        m
    })
}

/// Estimates m and λ by EM over the candidates (identical vectors are counted once, with
/// their multiplicity), holding `u`. Stops when no probability moves by more than 1e-6, or
/// after `max_iterations`.
///
/// `max_lambda` bounds the share of matches: there cannot be more true pairs than records
/// have duplicates, and without the bound a crowd of similar non-matches (neighbours with a
/// common name) can be taken for the match class.
pub fn estimate_m(
    candidates: &[Vector],
    u: &[Vec<f64>; FIELDS],
    max_iterations: usize,
    max_lambda: f64,
) -> Model {
    estimate_m_holding(
        candidates,
        u,
        &std::array::from_fn(|_| None),
        max_iterations,
        max_lambda,
    )
}

/// m of a field among the pairs of `anchors` (pairs agreeing on other fields so strongly that
/// almost all are matches), Laplace-smoothed; `None` with fewer than `min` pairs having it.
pub fn anchored_m<'a>(
    anchors: impl Iterator<Item = &'a Vector>,
    fields: &[usize],
    min: usize,
) -> [Option<Vec<f64>>; FIELDS] {
    let weighted: Vec<(Vector, f64)> = anchors.map(|v| (*v, 1.0)).collect();
    let counts = level_counts(&weighted);
    std::array::from_fn(|f| {
        let n: f64 = counts[f].iter().sum();
        (fields.contains(&f) && n >= min as f64).then(|| normalise(&counts[f], 1.0))
    })
}

/// [`estimate_m`], with the m of some fields held at values estimated elsewhere
/// ([`anchored_m`]) — fields whose disagreement among true pairs is correlated (a family that
/// moved changes street and phone together) and which EM alone would read as the mark of a
/// non-match.
pub fn estimate_m_holding(
    candidates: &[Vector],
    u: &[Vec<f64>; FIELDS],
    held: &[Option<Vec<f64>>; FIELDS],
    max_iterations: usize,
    max_lambda: f64,
) -> Model {
    let mut patterns: HashMap<Vector, f64> = HashMap::new();
    for v in candidates {
        *patterns.entry(*v).or_default() += 1.0;
    }
    let patterns: Vec<(Vector, f64)> = patterns.into_iter().collect();
    let total: f64 = patterns.iter().map(|p| p.1).sum();
    let hold = |m: [Vec<f64>; FIELDS]| -> [Vec<f64>; FIELDS] {
        std::array::from_fn(|f| held[f].clone().unwrap_or_else(|| m[f].clone()))
    };
    let mut model = Model {
        m: hold(initial_m()),
        u: u.clone(),
        lambda: 0.1f64.min(max_lambda / 2.0),
        iterations: 0,
    };
    if total == 0.0 {
        return model;
    }
    for it in 1..=max_iterations {
        // E: the probability that each pattern is a match
        let mut weighted: Vec<(Vector, f64)> = Vec::with_capacity(patterns.len());
        let mut unweighted: Vec<(Vector, f64)> = Vec::with_capacity(patterns.len());
        let mut matches = 0.0;
        for (v, n) in &patterns {
            let (mut pm, mut pu) = (model.lambda, 1.0 - model.lambda);
            for (f, level) in v.iter().enumerate() {
                if let Some(l) = level {
                    pm *= model.m[f][*l as usize];
                    pu *= model.u[f][*l as usize];
                }
            }
            let p = if pm + pu > 0.0 { pm / (pm + pu) } else { 0.0 };
            weighted.push((*v, p * n));
            unweighted.push((*v, (1.0 - p) * n));
            matches += p * n;
        }
        // M: m from the expected matches, u from the expected non-matches among the
        // candidates (blocking makes them more alike than random pairs)
        let counts = level_counts(&weighted);
        let m: [Vec<f64>; FIELDS] = hold(std::array::from_fn(|f| normalise(&counts[f], 0.01)));
        let non = level_counts(&unweighted);
        model.u = std::array::from_fn(|f| normalise(&non[f], 0.01));
        let lambda = (matches / total).clamp(FLOOR, max_lambda.clamp(FLOOR, 1.0 - FLOOR));
        let moved = m
            .iter()
            .zip(&model.m)
            .flat_map(|(a, b)| a.iter().zip(b).map(|(x, y)| (x - y).abs()))
            .fold((lambda - model.lambda).abs(), f64::max);
        model.m = m;
        model.lambda = lambda;
        model.iterations = it;
        if moved < 1e-6 {
            break;
        }
    }
    model
}

impl Model {
    /// The weight of one field's level: log2(m/u).
    pub fn weight(&self, field: usize, level: u8) -> f64 {
        (self.m[field][level as usize] / self.u[field][level as usize]).log2()
    }

    /// The score of a comparison vector: the sum of its fields' weights (missing fields add
    /// nothing), plus `adjustment` (term frequencies).
    pub fn score(&self, v: &Vector, adjustment: f64) -> f64 {
        v.iter()
            .enumerate()
            .filter_map(|(f, l)| l.map(|l| self.weight(f, l)))
            .sum::<f64>()
            + adjustment
    }

    /// The match probability of a candidate pair with this score.
    pub fn probability(&self, score: f64) -> f64 {
        let prior = self.lambda / (1.0 - self.lambda);
        let odds = prior * score.exp2();
        odds / (1.0 + odds)
    }

    /// The term-frequency adjustment of an exact agreement on a value that `share` of records
    /// have, for `field`: log2(u(exact) / share), bounded to ±`TF_BOUND` bits.
    pub fn tf_adjustment(&self, field: usize, share: f64) -> f64 {
        let exact = self.u[field].len() - 1;
        (self.u[field][exact] / share.max(FLOOR))
            .log2()
            .clamp(-TF_BOUND, TF_BOUND)
    }
}

/// The most a term-frequency adjustment moves a score, in bits.
pub const TF_BOUND: f64 = 5.0;

/// FHIR `match-grade`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Grade {
    CertainlyNot,
    Possible,
    Probable,
    Certain,
}

impl Grade {
    pub fn code(self) -> &'static str {
        match self {
            Grade::Certain => "certain",
            Grade::Probable => "probable",
            Grade::Possible => "possible",
            Grade::CertainlyNot => "certainly-not",
        }
    }
}

/// The two match-probability thresholds: at or above `upper` a pair is certain; below `lower`
/// certainly not; between, probable in the upper half (on the log-odds scale) and possible in
/// the lower.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Thresholds {
    pub upper: f64,
    pub lower: f64,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            upper: 0.99,
            lower: 0.2,
        }
    }
}

fn logit(p: f64) -> f64 {
    (p / (1.0 - p)).ln()
}

impl Thresholds {
    /// The probability between possible and probable (the two thresholds' midpoint on the
    /// log-odds scale).
    pub fn midpoint(&self) -> f64 {
        1.0 / (1.0 + (-self.mid_logit()).exp())
    }

    fn mid_logit(&self) -> f64 {
        (logit(self.upper) + logit(self.lower)) / 2.0
    }

    pub fn grade(&self, probability: f64) -> Grade {
        if probability >= self.upper {
            Grade::Certain
        } else if probability < self.lower {
            Grade::CertainlyNot
        } else {
            if logit(probability.clamp(1e-12, 1.0 - 1e-12)) >= self.mid_logit() {
                Grade::Probable
            } else {
                Grade::Possible
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny deterministic generator (the tests need no crate).
    struct Lcg(u64);
    impl Lcg {
        fn next(&mut self) -> f64 {
            self.0 = self
                .0
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (self.0 >> 11) as f64 / (1u64 << 53) as f64
        }
        fn pick(&mut self, probs: &[f64]) -> u8 {
            let r = self.next();
            let mut acc = 0.0;
            for (i, p) in probs.iter().enumerate() {
                acc += p;
                if r < acc {
                    return i as u8;
                }
            }
            (probs.len() - 1) as u8
        }
    }

    /// EM recovers known m and λ from synthetic comparison vectors drawn from them.
    #[test]
    fn em_converges_to_the_true_m_and_lambda() {
        let true_m: [Vec<f64>; FIELDS] = std::array::from_fn(|f| {
            let n = Field::ALL[f].levels();
            let mut m = vec![0.15 / (n - 1) as f64; n];
            m[n - 1] = 0.85;
            m
        });
        let true_u: [Vec<f64>; FIELDS] = std::array::from_fn(|f| {
            let n = Field::ALL[f].levels();
            let mut u = vec![0.1 / (n - 1) as f64; n];
            u[0] = 0.9;
            u
        });
        let lambda = 0.2;
        let mut rng = Lcg(7);
        let draw = |rng: &mut Lcg, probs: &[Vec<f64>; FIELDS]| -> Vector {
            std::array::from_fn(|f| Some(rng.pick(&probs[f])))
        };
        let candidates: Vec<Vector> = (0..40_000)
            .map(|_| {
                if rng.next() < lambda {
                    draw(&mut rng, &true_m)
                } else {
                    draw(&mut rng, &true_u)
                }
            })
            .collect();
        let random: Vec<Vector> = (0..40_000).map(|_| draw(&mut rng, &true_u)).collect();
        let u = estimate_u(&random);
        let model = estimate_m(&candidates, &u, 200, 1.0);
        assert!((model.lambda - lambda).abs() < 0.01, "λ {}", model.lambda);
        for (f, (got, truth)) in model.m.iter().zip(&true_m).enumerate() {
            for (l, m) in got.iter().enumerate() {
                assert!(
                    (m - truth[l]).abs() < 0.02,
                    "m[{}][{l}] = {m}, true {}",
                    Field::ALL[f].name(),
                    truth[l]
                );
            }
        }
        assert!(model.iterations < 200, "converged in {}", model.iterations);
        // scores order agreement above disagreement
        let all_exact: Vector = std::array::from_fn(|f| Some((Field::ALL[f].levels() - 1) as u8));
        let none: Vector = [Some(0); FIELDS];
        assert!(model.score(&all_exact, 0.0) > 20.0);
        assert!(model.score(&none, 0.0) < -20.0);
        assert!(model.probability(model.score(&all_exact, 0.0)) > 0.999);
    }

    #[test]
    fn grades_follow_the_two_thresholds() {
        let t = Thresholds::default();
        assert_eq!(t.grade(0.999), Grade::Certain);
        assert_eq!(t.grade(0.99), Grade::Certain);
        assert_eq!(t.grade(0.95), Grade::Probable);
        assert_eq!(t.grade(0.5), Grade::Possible);
        assert_eq!(t.grade(0.19), Grade::CertainlyNot);
        assert!(Grade::Certain > Grade::Probable && Grade::Possible > Grade::CertainlyNot);
    }

    #[test]
    fn common_names_weigh_less_than_rare_ones() {
        let u: [Vec<f64>; FIELDS] = std::array::from_fn(|f| {
            let n = Field::ALL[f].levels();
            let mut u = vec![0.1 / (n - 1) as f64; n];
            u[0] = 0.9;
            u
        });
        let model = Model {
            m: initial_m(),
            u,
            lambda: 0.1,
            iterations: 0,
        };
        // the exact level's u is 1/30 here: a name 1 in 10 people have weighs less, 1 in 1,000 more
        assert!(model.tf_adjustment(1, 0.1) < 0.0);
        assert!(model.tf_adjustment(1, 0.001) > 0.0);
        assert_eq!(model.tf_adjustment(1, 1e-12), TF_BOUND);
    }
}
