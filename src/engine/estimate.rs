//! Estimated performance before labels arrive (docs/CONTRACT-EXTENSIONS.md, E1):
//! confidence-based performance estimation, NannyML's CBPE done incrementally.
//!
//! A prediction of class p that carries scores and waits for its label adds its
//! expected confusion cells at once: column p gets `q(a)` in every row a, q being the
//! scores over the model's known classes, normalized to sum to 1. When the label joins,
//! exactly that column is taken back out and the real cell counts instead, so the
//! estimated matrix of a scope is always
//!
//! ```text
//! E = (confusion of the labelled samples) + (expected cells of the unlabelled predictions)
//! ```
//!
//! and the estimated figures are the contract's Section 2 definitions applied to E.
//! With calibrated scores, `E[a][p]` is an unbiased estimate of the counts the labels
//! will bring. With no unlabelled prediction in scope, the estimate equals the realised
//! value.

use serde::{Deserialize, Serialize};

use super::counts::{Dense, FloatDense};
use super::stats::Prf;

/// What a pending prediction half keeps to take its estimate back out when its label
/// joins: how many of the model's classes were known when it was held (the column is
/// recomputed from the held scores over exactly those classes) and how many buckets
/// before its own the estimate was placed. `known == 0`: no estimate was added.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EstimateTag {
    pub known: u16,
    /// `OUTSIDE_RING`: counted in `all` only.
    pub offset: u16,
}

/// [`EstimateTag::offset`] of an estimate that is in `all` only.
pub const OUTSIDE_RING: u16 = u16::MAX;

impl EstimateTag {
    pub fn is_some(&self) -> bool {
        self.known > 0
    }
}

/// The expected column of one prediction: `(actual class, q)` for every known class
/// (index below `known`) with a positive score, q normalized to sum to 1. Scores of the
/// same class given twice: the last wins, as everywhere. Empty when no known class has
/// a positive score.
pub fn column<'a>(
    pairs: impl Iterator<Item = (&'a str, f64)>,
    mut index_of: impl FnMut(usize, &str) -> Option<u32>,
    known: u32,
    scratch: &mut Vec<f64>,
    out: &mut Vec<(u32, f64)>,
) {
    out.clear();
    scratch.clear();
    scratch.resize(known as usize, -1.0);
    for (i, (name, p)) in pairs.enumerate() {
        if let Some(c) = index_of(i, name).filter(|&c| c < known) {
            scratch[c as usize] = p;
        }
    }
    let total: f64 = scratch.iter().filter(|&&p| p > 0.0).sum();
    if total <= 0.0 {
        return;
    }
    for (c, &p) in scratch.iter().enumerate() {
        if p > 0.0 {
            out.push((c as u32, p / total));
        }
    }
}

/// The class indices of the score keys of a model's last scored prediction, by position:
/// producers write the same keys in the same order event after event, so a key is
/// usually matched by one comparison instead of a hash lookup.
#[derive(Debug, Clone, Default)]
pub struct KeyCache {
    /// The model's number of classes when the cache was filled: a new class may be one
    /// of the keys cached as unknown.
    classes: usize,
    keys: Vec<(Box<str>, Option<u32>)>,
}

impl KeyCache {
    /// The index of the class named `name`, the `i`-th key of the scores.
    #[inline]
    pub fn index(
        &mut self,
        i: usize,
        name: &str,
        classes: usize,
        lookup: impl Fn(&str) -> Option<u32>,
    ) -> Option<u32> {
        if self.classes != classes {
            self.keys.clear();
            self.classes = classes;
        }
        if let Some((k, id)) = self.keys.get(i) {
            if **k == *name {
                return *id;
            }
        }
        let id = lookup(name);
        if i < self.keys.len() {
            self.keys[i] = (name.into(), id);
        } else if i == self.keys.len() && i < 1024 {
            self.keys.push((name.into(), id));
        }
        id
    }
}

/// The estimated figures of one model over one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct EstimatedStats {
    /// Labelled samples plus unlabelled predictions with an estimate.
    pub samples: u64,
    pub unlabelled: u64,
    pub accuracy: f64,
    pub micro: Prf,
    pub macro_: Prf,
    pub weighted: Prf,
    /// (class index, precision/recall/f1) per class of the estimated label set.
    pub classes: Vec<(u32, Prf)>,
}

fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// Expected mass below this is rounding residue of released estimates, not a class.
const RESIDUE: f64 = 1e-9;

/// Section 2 on E = `real` + `expected`. The label set: the configured classes, else
/// every class that is actual or predicted in E (mass above rounding residue), in name
/// order, as scikit-learn sorts labels.
pub fn compute(
    real: &Dense,
    expected: &FloatDense,
    unlabelled: u64,
    classes: usize,
    configured: usize,
    names: &[String],
) -> EstimatedStats {
    let k = classes;
    // With no unlabelled prediction in scope only rounding residue is left: ignore it,
    // so the estimate is exactly the realised value.
    let weight = if unlabelled > 0 { 1.0 } else { 0.0 };
    let cell = |a: usize, p: usize| real.get(a, p) as f64 + weight * expected.get(a, p);
    let mut support = vec![0.0; k];
    let mut predicted = vec![0.0; k];
    let mut real_n = 0u64;
    for (a, support_a) in support.iter_mut().enumerate() {
        for (p, predicted_p) in predicted.iter_mut().enumerate() {
            let v = cell(a, p);
            *support_a += v;
            *predicted_p += v;
            real_n += real.get(a, p);
        }
    }
    let labels: Vec<usize> = if configured > 0 {
        (0..configured).collect()
    } else {
        let mut seen: Vec<usize> = (0..k)
            .filter(|&c| support[c] > RESIDUE || predicted[c] > RESIDUE)
            .collect();
        seen.sort_by(|&a, &b| names[a].cmp(&names[b]));
        seen
    };
    let n = real_n + unlabelled;
    let nf = n as f64;
    let (mut tp_sum, mut pred_sum, mut true_sum, mut correct) = (0.0, 0.0, 0.0, 0.0);
    let (mut macro_sum, mut weighted_sum) = (Prf::default(), Prf::default());
    let mut out = Vec::with_capacity(labels.len());
    for c in 0..k {
        correct += cell(c, c);
    }
    for &c in &labels {
        let tp = cell(c, c);
        let (sup, pred) = (support[c], predicted[c]);
        let prf = Prf {
            precision: ratio(tp, pred),
            recall: ratio(tp, sup),
            f1: ratio(2.0 * tp, sup + pred),
        };
        tp_sum += tp;
        pred_sum += pred;
        true_sum += sup;
        macro_sum.precision += prf.precision;
        macro_sum.recall += prf.recall;
        macro_sum.f1 += prf.f1;
        weighted_sum.precision += prf.precision * sup;
        weighted_sum.recall += prf.recall * sup;
        weighted_sum.f1 += prf.f1 * sup;
        out.push((c as u32, prf));
    }
    let l = labels.len() as f64;
    EstimatedStats {
        samples: n,
        unlabelled,
        accuracy: ratio(correct, nf),
        micro: Prf {
            precision: ratio(tp_sum, pred_sum),
            recall: ratio(tp_sum, true_sum),
            f1: ratio(2.0 * tp_sum, true_sum + pred_sum),
        },
        macro_: Prf {
            precision: ratio(macro_sum.precision, l),
            recall: ratio(macro_sum.recall, l),
            f1: ratio(macro_sum.f1, l),
        },
        weighted: Prf {
            precision: ratio(weighted_sum.precision, true_sum),
            recall: ratio(weighted_sum.recall, true_sum),
            f1: ratio(weighted_sum.f1, true_sum),
        },
        classes: out,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(k: usize) -> Vec<String> {
        (0..k).map(|c| format!("c{c}")).collect()
    }

    #[test]
    fn column_normalizes_over_known_classes_last_duplicate_wins() {
        let index = |_, n: &str| n.strip_prefix('c').and_then(|d| d.parse().ok());
        let (mut scratch, mut out) = (Vec::new(), Vec::new());
        let pairs = [
            ("c0", 0.1),
            ("c1", 0.5),
            ("c0", 0.3),
            ("zz", 0.9),
            ("c2", 0.2),
        ];
        column(pairs.into_iter(), index, 2, &mut scratch, &mut out);
        assert_eq!(out, [(0, 0.3 / 0.8), (1, 0.5 / 0.8)]);
        column([("c1", 0.0)].into_iter(), index, 2, &mut scratch, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn key_cache_follows_key_order_and_new_classes() {
        let mut cache = KeyCache::default();
        let known = |n: &str| ["a", "b"].iter().position(|k| *k == n).map(|i| i as u32);
        assert_eq!(cache.index(0, "b", 2, known), Some(1));
        assert_eq!(cache.index(1, "z", 2, known), None);
        // the same keys again: served from the cache
        assert_eq!(cache.index(0, "b", 2, |_| panic!("cached")), Some(1));
        // another order: looked up again
        assert_eq!(cache.index(0, "a", 2, known), Some(0));
        // a class interned since: "z" cached as unknown must be looked up again
        assert_eq!(cache.index(1, "z", 3, |_| Some(2)), Some(2));
    }

    /// Without unlabelled predictions the estimate is the realised value.
    #[test]
    fn equals_the_counts_without_unlabelled_predictions() {
        let mut d = Dense::with_stride(3);
        for (a, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (2, 0)] {
            d.add(a, p, 1);
        }
        let real = super::super::stats::compute(
            &super::super::stats::Scope {
                cells: &d,
                classes: 3,
                configured: 0,
                names: &names(3),
                samples: 6,
                scored: 0,
                loss_sum: 0.0,
                seconds: 1.0,
                expected: &FloatDense::with_stride(3),
                unlabelled: 0,
                calibration: &Default::default(),
                ranking: None,
                thresholds: (&[], &[]),
                multi: None,
                drift: (&Default::default(), None),
            },
            &crate::config::Settings::default().alerts,
        );
        let e = compute(&d, &FloatDense::with_stride(3), 0, 3, 0, &names(3));
        assert_eq!(e.accuracy, real.accuracy);
        assert_eq!(e.micro, real.micro);
        assert_eq!(e.macro_, real.macro_);
        assert_eq!(e.weighted, real.weighted);
        for (c, prf) in &e.classes {
            assert_eq!(*prf, real.classes[*c as usize].prf);
        }
    }

    /// One unlabelled prediction of class 0 with scores (0.75, 0.25): E = [[.75, 0], [.25, 0]].
    #[test]
    fn an_unlabelled_prediction_spreads_its_column() {
        let mut e = FloatDense::with_stride(2);
        e.add(0, 0, 0.75);
        e.add(1, 0, 0.25);
        let s = compute(&Dense::with_stride(2), &e, 1, 2, 0, &names(2));
        assert_eq!(s.samples, 1);
        assert_eq!(s.accuracy, 0.75);
        assert_eq!(s.classes[0].1.precision, 0.75);
        assert_eq!(s.classes[0].1.recall, 1.0);
        assert_eq!(s.classes[1].1, Prf::default());
    }
}
