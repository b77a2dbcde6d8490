//! Distribution shift without labels (docs/CONTRACT-EXTENSIONS.md, E5): the population
//! stability index (PSI) of the predicted classes and of a score, in each window,
//! against a reference period of the model.
//!
//! Every accepted event with a prediction counts once, when it arrives, labelled or
//! not: its class, and the bin of its score when it carries scores (the positive
//! class's score for a model with one, else the predicted class's). The counts sit in
//! the same buckets and windows as the confusion counts. The reference is the first
//! `drift.reference` of event time from the bucket of the model's first prediction;
//! it is complete (frozen) from the first prediction at or after its end.
//!
//! ```text
//! PSI = Σ_i (a_i - e_i) ln(a_i / e_i),  a_i = max(n_i / n, ε),  e_i = max(r_i / r, ε)
//! ```
//!
//! over the classes (or score bins), n_i and r_i being the counts in the window and in
//! the reference, ε = [`EPSILON`].

use serde::{Deserialize, Serialize};

/// Equal-width score bins over [0, 1].
pub const SCORE_BINS: usize = 10;

/// The floor of a share: an empty bin (or class) on one side would make the PSI
/// infinite. 1e-4 is the value Evidently substitutes for empty bins.
pub const EPSILON: f64 = 1e-4;

/// The lower edge of score bin `i` (the upper edge of bin i - 1), as numpy's
/// `linspace(0, 1, 11)` computes it.
pub fn edge(i: usize) -> f64 {
    super::counts::linspace_edge(i, SCORE_BINS)
}

/// The bin of a score, as `np.histogram(s, bins=np.linspace(0, 1, 11))` puts it: bin i
/// holds [edge(i), edge(i + 1)), the last bin also 1. Scores are in [0, 1] (the decoder
/// rejects others); NaN cannot occur.
pub fn score_bin(s: f64) -> u8 {
    let s = s.clamp(0.0, 1.0);
    let mut b = ((s * SCORE_BINS as f64) as usize).min(SCORE_BINS - 1);
    while b > 0 && s < edge(b) {
        b -= 1;
    }
    while b < SCORE_BINS - 1 && s >= edge(b + 1) {
        b += 1;
    }
    b as u8
}

/// Prediction counts of a window, `all` or the reference: per class (index), per score bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Predictions {
    /// Per class index; grows when a new class is counted.
    pub classes: Vec<u64>,
    pub scores: [u64; SCORE_BINS],
    pub count: u64,
    /// Predictions with scores (the sum of `scores`).
    pub scored: u64,
}

impl Predictions {
    #[inline]
    pub fn add(&mut self, class: u32, bin: Option<u8>) {
        let c = class as usize;
        if c >= self.classes.len() {
            self.classes.resize(c + 1, 0);
        }
        self.classes[c] += 1;
        self.count += 1;
        if let Some(b) = bin {
            self.scores[b as usize] += 1;
            self.scored += 1;
        }
    }

    /// Takes a closed bucket's counts out of a window.
    pub fn sub(&mut self, b: &BucketPredictions) {
        for &(c, n) in &b.classes {
            self.classes[c as usize] -= n as u64;
            self.count -= n as u64;
        }
        for &(bin, n) in &b.scores {
            self.scores[bin as usize] -= n as u64;
            self.scored -= n as u64;
        }
    }

    /// The counts as a closed bucket keeps them (sparse), leaving these at zero.
    pub fn take_sparse(&mut self) -> BucketPredictions {
        let mut out = BucketPredictions::default();
        if self.count == 0 {
            return out;
        }
        for (c, n) in self.classes.iter_mut().enumerate() {
            if *n > 0 {
                out.classes.push((c as u16, std::mem::take(n) as u32));
            }
        }
        for (b, n) in self.scores.iter_mut().enumerate() {
            if *n > 0 {
                out.scores.push((b as u8, std::mem::take(n) as u32));
            }
        }
        self.count = 0;
        self.scored = 0;
        out
    }
}

/// A closed bucket's prediction counts: (class, count) and (score bin, count).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BucketPredictions {
    pub classes: Vec<(u16, u32)>,
    pub scores: Vec<(u8, u32)>,
}

impl BucketPredictions {
    pub fn is_empty(&self) -> bool {
        self.classes.is_empty()
    }

    pub fn add(&mut self, class: u32, bin: Option<u8>) {
        let c = class as u16;
        match self.classes.iter_mut().find(|x| x.0 == c) {
            Some(x) => x.1 += 1,
            None => self.classes.push((c, 1)),
        }
        if let Some(b) = bin {
            match self.scores.iter_mut().find(|x| x.0 == b) {
                Some(x) => x.1 += 1,
                None => self.scores.push((b, 1)),
            }
        }
    }
}

/// A model's reference period and its counts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// [start, end) in event time (ns); start is the bucket of the first prediction.
    pub start_ns: i64,
    pub end_ns: i64,
    /// Set by the first prediction at or after `end_ns`; nothing is added after.
    pub complete: bool,
    pub counts: Predictions,
}

impl Reference {
    /// The reference in `slot`, begun at the bucket of `bucket` (index, `bucket_ns` long)
    /// and `length_ns` long if there was none yet.
    pub fn begin_or_get(
        slot: &mut Option<Reference>,
        bucket: i64,
        bucket_ns: i64,
        length_ns: i64,
    ) -> &mut Reference {
        slot.get_or_insert_with(|| {
            let start_ns = bucket.saturating_mul(bucket_ns);
            Reference {
                start_ns,
                end_ns: start_ns.saturating_add(length_ns),
                complete: false,
                counts: Default::default(),
            }
        })
    }

    /// Counts a prediction at `time_ns` if the reference still takes it.
    #[inline]
    pub fn observe(&mut self, time_ns: i64, class: u32, bin: Option<u8>) {
        if self.complete {
            return;
        }
        if time_ns >= self.end_ns {
            self.complete = true;
        } else if time_ns >= self.start_ns {
            self.counts.add(class, bin);
        }
    }
}

/// The drift figures of one model and scope.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DriftStats {
    pub predictions: u64,
    pub scored: u64,
    /// PSI of the predicted classes; `None` until the reference is complete, or when
    /// the scope or the reference has no prediction.
    pub prediction_psi: Option<f64>,
    /// PSI of the score bins; `None` as above, for predictions with scores.
    pub score_psi: Option<f64>,
    /// (start ns, end ns, complete, predictions, scored) of the reference, once begun.
    pub reference: Option<(i64, i64, bool, u64, u64)>,
    /// (class, predictions in scope, in the reference) for every class counted in either.
    pub classes: Vec<(u32, u64, u64)>,
    /// (predictions in scope, in the reference) per score bin.
    pub score_bins: [(u64, u64); SCORE_BINS],
}

/// `Σ_i (a_i - e_i) ln(a_i / e_i)` with shares floored at [`EPSILON`]; `None` when
/// either side is empty.
pub fn psi(current: impl Iterator<Item = (u64, u64)>, n: u64, r: u64) -> Option<f64> {
    if n == 0 || r == 0 {
        return None;
    }
    let (nf, rf) = (n as f64, r as f64);
    let mut sum = 0.0;
    for (a, e) in current {
        if a == 0 && e == 0 {
            continue; // both shares are ε: the term is 0
        }
        let a = (a as f64 / nf).max(EPSILON);
        let e = (e as f64 / rf).max(EPSILON);
        sum += (a - e) * (a / e).ln();
    }
    Some(sum)
}

pub fn compute(current: &Predictions, reference: Option<&Reference>) -> DriftStats {
    let empty = Predictions::default();
    let r = reference.map_or(&empty, |r| &r.counts);
    let k = current.classes.len().max(r.classes.len());
    let at = |v: &[u64], c: usize| v.get(c).copied().unwrap_or(0);
    let classes: Vec<(u32, u64, u64)> = (0..k)
        .map(|c| (c as u32, at(&current.classes, c), at(&r.classes, c)))
        .filter(|&(_, a, e)| a > 0 || e > 0)
        .collect();
    let mut score_bins = [(0, 0); SCORE_BINS];
    for (i, b) in score_bins.iter_mut().enumerate() {
        *b = (current.scores[i], r.scores[i]);
    }
    let complete = reference.is_some_and(|r| r.complete);
    DriftStats {
        predictions: current.count,
        scored: current.scored,
        prediction_psi: complete
            .then(|| psi(classes.iter().map(|c| (c.1, c.2)), current.count, r.count))
            .flatten(),
        score_psi: complete
            .then(|| psi(score_bins.iter().copied(), current.scored, r.scored))
            .flatten(),
        reference: reference.map(|r| {
            (
                r.start_ns,
                r.end_ns,
                r.complete,
                r.counts.count,
                r.counts.scored,
            )
        }),
        classes,
        score_bins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_closed_below_like_numpy_histogram() {
        assert_eq!(score_bin(0.0), 0);
        assert_eq!(score_bin(0.1), 1);
        assert_eq!(score_bin(0.1 - 1e-12), 0);
        // linspace(0, 1, 11)[3] is 0.30000000000000004: 0.3 is still in bin 2, as
        // np.histogram([0.3, 0.7], bins=np.linspace(0, 1, 11)) puts it (and 0.7 in 6)
        assert_eq!(score_bin(0.3), 2);
        assert_eq!(score_bin(edge(3)), 3);
        assert_eq!(score_bin(0.7), 6);
        assert_eq!(score_bin(0.8), 8);
        assert_eq!(score_bin(0.99), 9);
        assert_eq!(score_bin(1.0), 9);
    }

    /// Shares (0.5, 0.5, 0) against (0.25, 0.25, 0.5): the empty class is floored at ε.
    #[test]
    fn psi_by_hand() {
        let got = psi([(2, 1), (2, 1), (0, 2)].into_iter(), 4, 4).unwrap();
        let t = |a: f64, e: f64| (a - e) * (a / e).ln();
        let want = 2.0 * t(0.5, 0.25) + t(EPSILON, 0.5);
        assert!((got - want).abs() < 1e-15, "{got} {want}");
        assert_eq!(psi([(1, 1)].into_iter(), 1, 1), Some(0.0));
        assert_eq!(psi([(1, 0)].into_iter(), 1, 0), None);
    }

    #[test]
    fn the_reference_freezes_at_its_end() {
        let mut r = Reference {
            start_ns: 100,
            end_ns: 200,
            complete: false,
            counts: Predictions::default(),
        };
        r.observe(150, 0, Some(3));
        r.observe(50, 1, None); // before the start: not in the reference
        r.observe(199, 1, None);
        assert!(!r.complete);
        r.observe(200, 2, None);
        r.observe(150, 2, None); // out of order, after the freeze
        assert!(r.complete);
        assert_eq!(
            (r.counts.classes.as_slice(), r.counts.count),
            (&[1, 1][..], 2)
        );
        assert_eq!(r.counts.scored, 1);
    }

    #[test]
    fn sparse_buckets_round_trip() {
        let mut p = Predictions::default();
        p.add(3, Some(9));
        p.add(3, None);
        p.add(0, Some(0));
        let mut w = p.clone();
        let b = p.take_sparse();
        assert_eq!(p.count, 0);
        assert_eq!(b.classes, [(0, 1), (3, 2)]);
        w.sub(&b);
        assert_eq!(
            (w.count, w.scored, w.classes.iter().sum::<u64>()),
            (0, 0, 0)
        );
    }
}
