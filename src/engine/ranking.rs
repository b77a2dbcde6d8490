//! Ranking quality (docs/CONTRACT-EXTENSIONS.md, E3): ROC AUC and PR AUC (average
//! precision) of the positive class's score, from a fixed-resolution histogram of the
//! scores of positive and negative samples. State per scope is bounded (2 x [`BINS`]
//! counts), an update is O(1), and samples in one bin count as tied.
//!
//! Bins are uniform in logit(s) over [-16, 16]: fine where scores crowd, near 0 and 1,
//! as well as in the middle (width 0.03 in logit, 0.008 in s at s = 0.5).

use serde::{Deserialize, Serialize};

/// Number of score bins.
pub const BINS: usize = 1024;
const LOGIT_RANGE: f64 = 16.0;

/// The bin of a score in [0, 1]; 0 and 1 fall in the end bins.
#[inline]
pub fn bin_of(s: f64) -> u16 {
    let logit = (s / (1.0 - s)).ln();
    let x = (logit + LOGIT_RANGE) / (2.0 * LOGIT_RANGE) * BINS as f64;
    if x.is_nan() {
        0
    } else {
        x.clamp(0.0, (BINS - 1) as f64) as u16
    }
}

/// Counts of positive and negative samples per bin; empty until the first sample.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreHistogram {
    pos: Vec<u64>,
    neg: Vec<u64>,
}

impl ScoreHistogram {
    #[inline]
    pub fn add(&mut self, bin: u16, positive: bool, n: u64) {
        if self.pos.is_empty() {
            self.pos = vec![0; BINS];
            self.neg = vec![0; BINS];
        }
        let v = if positive {
            &mut self.pos
        } else {
            &mut self.neg
        };
        v[bin as usize] += n;
    }

    #[inline]
    pub fn sub(&mut self, bin: u16, positive: bool, n: u64) {
        if self.pos.is_empty() {
            return;
        }
        let v = if positive {
            &mut self.pos
        } else {
            &mut self.neg
        };
        v[bin as usize] -= n;
    }

    pub fn add_all(&mut self, other: &ScoreHistogram) {
        for (i, (&p, &n)) in other.pos.iter().zip(&other.neg).enumerate() {
            if p > 0 {
                self.add(i as u16, true, p);
            }
            if n > 0 {
                self.add(i as u16, false, n);
            }
        }
    }

    /// (bin, positives, negatives) of the non-empty bins, lowest score first.
    pub fn bins(&self) -> impl Iterator<Item = (usize, u64, u64)> + '_ {
        self.pos
            .iter()
            .zip(&self.neg)
            .enumerate()
            .filter(|(_, (&p, &n))| p + n > 0)
            .map(|(i, (&p, &n))| (i, p, n))
    }
}

/// A bucket's histogram entries: (bin, positives, negatives), sorted by bin.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SparseHistogram(pub Vec<(u16, u32, u32)>);

impl SparseHistogram {
    #[inline]
    pub fn add(&mut self, bin: u16, positive: bool) {
        let at = match self.0.binary_search_by_key(&bin, |e| e.0) {
            Ok(i) => i,
            Err(i) => {
                self.0.insert(i, (bin, 0, 0));
                i
            }
        };
        if positive {
            self.0[at].1 += 1;
        } else {
            self.0[at].2 += 1;
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// ROC AUC and PR AUC of one scope; `None` without both a positive and a negative.
#[derive(Debug, Clone, PartialEq)]
pub struct RankingStats {
    /// The positive class's index.
    pub positive: u32,
    pub samples: u64,
    pub positives: u64,
    pub roc_auc: Option<f64>,
    pub pr_auc: Option<f64>,
}

/// ROC AUC: the probability that a positive outranks a negative, a tie counting one
/// half (the trapezoidal area under the ROC curve, as scikit-learn's
/// `roc_auc_score`). PR AUC: average precision, `Σ_t (R_t - R_t-1) P_t` over the
/// thresholds t from the top (scikit-learn's `average_precision_score`), a bin's
/// samples taken as evenly interleaved.
pub fn compute(h: &ScoreHistogram, positive: u32) -> RankingStats {
    let (p_total, n_total) = (h.pos.iter().sum::<u64>(), h.neg.iter().sum::<u64>());
    let mut out = RankingStats {
        positive,
        samples: p_total + n_total,
        positives: p_total,
        roc_auc: None,
        pr_auc: None,
    };
    if p_total == 0 || n_total == 0 {
        return out;
    }
    let (mut auc, mut neg_below) = (0.0, 0u64);
    for (_, p, n) in h.bins() {
        auc += p as f64 * (neg_below as f64 + n as f64 / 2.0);
        neg_below += n;
    }
    // Average precision, the samples of a bin taken as evenly interleaved (not as one
    // tie, which would always rank a bin's negatives first): the k-th of its p
    // positives has tp = a + k and n (k - 1/2) / p of its n negatives before it, a and
    // c being the true positives and samples of the bins above.
    let (mut ap, mut tp, mut fp) = (0.0, 0u64, 0u64);
    let bins: Vec<_> = h.bins().collect();
    for &(_, p, n) in bins.iter().rev() {
        if p > 0 {
            let (a, c) = (tp as f64, (tp + fp) as f64);
            let (pf, nf) = (p as f64, n as f64);
            let precision_sum = if p <= 64 {
                (1..=p)
                    .map(|k| {
                        let k = k as f64;
                        (a + k) / (c + k + nf * (k - 0.5) / pf)
                    })
                    .sum::<f64>()
            } else {
                // The midpoint rule over k in [1/2, p + 1/2]: with tp + fp = c' + r k,
                // ∫ (a + k) / (c' + r k) dk = k / r + (a r - c') / r² ln(c' + r k).
                let r = 1.0 + nf / pf;
                let c1 = c - nf / (2.0 * pf);
                let f = |k: f64| k / r + (a * r - c1) / (r * r) * (c1 + r * k).ln();
                f(pf + 0.5) - f(0.5)
            };
            ap += precision_sum / p_total as f64;
        }
        tp += p;
        fp += n;
    }
    out.roc_auc = Some(auc / (p_total as f64 * n_total as f64));
    out.pr_auc = Some(ap);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_monotone_and_bounded() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(1.0), BINS as u16 - 1);
        assert_eq!(bin_of(0.5), BINS as u16 / 2);
        let mut last = 0;
        for i in 0..=1000 {
            let b = bin_of(i as f64 / 1000.0);
            assert!(b >= last);
            last = b;
        }
    }

    /// y = [0, 0, 1, 1], s = [0.1, 0.4, 0.35, 0.8]: roc_auc_score 0.75,
    /// average_precision_score 0.8333333333333333 (scikit-learn 1.9).
    #[test]
    fn matches_scikit_learn_without_ties() {
        let mut h = ScoreHistogram::default();
        for (y, s) in [(false, 0.1), (false, 0.4), (true, 0.35), (true, 0.8)] {
            h.add(bin_of(s), y, 1);
        }
        let r = compute(&h, 1);
        assert!((r.roc_auc.unwrap() - 0.75).abs() < 1e-15);
        assert!((r.pr_auc.unwrap() - 0.8333333333333333).abs() < 1e-15);
        assert_eq!((r.samples, r.positives), (4, 2));
        assert_eq!(compute(&ScoreHistogram::default(), 1).roc_auc, None);
    }

    /// Above 64 positives a bin's precisions are integrated, not summed: the two agree.
    #[test]
    fn large_bins_integrate_what_small_ones_sum() {
        let ap = |p: u64| {
            let mut h = ScoreHistogram::default();
            h.add(900, true, 40);
            h.add(900, false, 25);
            h.add(500, true, p);
            h.add(500, false, 3 * p);
            h.add(100, false, 400);
            compute(&h, 1).pr_auc.unwrap()
        };
        let exact = |p: u64| {
            // the evenly interleaved sum, computed directly
            let (pf, nf, a, c) = (p as f64, 3.0 * p as f64, 40.0, 65.0);
            let below: f64 = (1..=p)
                .map(|k| (a + k as f64) / (c + k as f64 + nf * (k as f64 - 0.5) / pf))
                .sum();
            let top: f64 = (1..=40)
                .map(|k| k as f64 / (k as f64 + 25.0 * (k as f64 - 0.5) / 40.0))
                .sum();
            (top + below) / (40 + p) as f64
        };
        assert!((ap(64) - exact(64)).abs() < 1e-12);
        for p in [65, 200, 5000] {
            assert!(
                (ap(p) - exact(p)).abs() < 2e-5,
                "{p}: {} {}",
                ap(p),
                exact(p)
            );
        }
    }
}
