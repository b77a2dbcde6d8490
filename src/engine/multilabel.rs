//! Multi-label models (extension E7): each sample is a predicted set P and a true set T
//! of classes. Counted per class one-vs-rest (tp, fp, fn), plus per sample whether
//! P = T, |P xor T| and the sample's precision, recall and F1, so that the figures are
//! scikit-learn's on indicator matrices (`precision_recall_fscore_support` with
//! `average=None|micro|macro|weighted|samples`, `accuracy_score`, `hamming_loss`).
//!
//! A window adds up its buckets at scrape time, as it does the log loss: the per-sample
//! float sums are never subtracted, so no rounding residue builds up.

use std::collections::VecDeque;

use serde::{Deserialize, Serialize};

use super::counts::Sum;
use super::stats::{class_figures, ratio, ModelStats, Prf};

/// The additive counts of one scope (all samples, one bucket, or a window's sum).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Counts {
    pub samples: u64,
    /// Samples with P = T (subset accuracy).
    pub exact: u64,
    /// Σ |P xor T| (Hamming loss numerator).
    pub hamming: u64,
    /// Σ per-sample |P∩T|/|P|, |P∩T|/|T| and 2|P∩T|/(|P|+|T|), each 0 over 0.
    pub precision: Sum,
    pub recall: Sum,
    pub f1: Sum,
    /// (tp, fp, fn) by class index; shorter when the last classes have none.
    pub classes: Vec<[u64; 3]>,
}

impl Counts {
    /// Adds one sample; `predicted` and `actual` are sorted, without duplicates.
    pub fn add(&mut self, predicted: &[u32], actual: &[u32]) {
        let top = predicted.iter().chain(actual).max().map_or(0, |&c| c + 1);
        if self.classes.len() < top as usize {
            self.classes.resize(top as usize, [0; 3]);
        }
        let (mut i, mut j, mut both) = (0, 0, 0u64);
        while i < predicted.len() || j < actual.len() {
            let (p, a) = (predicted.get(i), actual.get(j));
            match (p, a) {
                (Some(p), Some(a)) if p == a => {
                    self.classes[*p as usize][0] += 1;
                    both += 1;
                    i += 1;
                    j += 1;
                }
                (Some(p), a) if a.is_none_or(|a| p < a) => {
                    self.classes[*p as usize][1] += 1;
                    i += 1;
                }
                (_, Some(a)) => {
                    self.classes[*a as usize][2] += 1;
                    j += 1;
                }
                _ => unreachable!("one side has an element"),
            }
        }
        let (np, na, k) = (predicted.len() as u64, actual.len() as u64, both);
        self.samples += 1;
        if np == k && na == k {
            self.exact += 1;
        }
        self.hamming += np + na - 2 * k;
        self.precision.add(ratio(k as f64, np as f64));
        self.recall.add(ratio(k as f64, na as f64));
        self.f1.add(ratio(2.0 * k as f64, (np + na) as f64));
    }

    pub fn add_all(&mut self, other: &Counts) {
        self.samples += other.samples;
        self.exact += other.exact;
        self.hamming += other.hamming;
        self.precision.add_sum(&other.precision);
        self.recall.add_sum(&other.recall);
        self.f1.add_sum(&other.f1);
        if self.classes.len() < other.classes.len() {
            self.classes.resize(other.classes.len(), [0; 3]);
        }
        for (mine, theirs) in self.classes.iter_mut().zip(&other.classes) {
            for k in 0..3 {
                mine[k] += theirs[k];
            }
        }
    }
}

/// A multi-label model's counts: `all`, and the buckets inside the longest window.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct MultiLabel {
    pub totals: Counts,
    /// Buckets with samples, oldest first: (bucket index, counts).
    buckets: VecDeque<(i64, Counts)>,
}

impl MultiLabel {
    /// Counts a sample of bucket `bucket`, the watermark being in bucket `head` and the
    /// longest window `span` buckets long. Returns false when the sample is older than
    /// the span (it then counts in `all` only, a late sample).
    pub fn record(
        &mut self,
        head: i64,
        span: u32,
        bucket: i64,
        predicted: &[u32],
        actual: &[u32],
    ) -> bool {
        self.totals.add(predicted, actual);
        if span == 0 {
            return true;
        }
        self.prune(head, span);
        if head - bucket >= span as i64 {
            return false;
        }
        let at = self.buckets.partition_point(|b| b.0 < bucket);
        if self.buckets.get(at).is_none_or(|b| b.0 != bucket) {
            self.buckets.insert(at, (bucket, Counts::default()));
        }
        self.buckets[at].1.add(predicted, actual);
        true
    }

    /// Drops the buckets older than the span ending at `head`.
    pub fn prune(&mut self, head: i64, span: u32) {
        let oldest = head - span as i64 + 1;
        while self.buckets.front().is_some_and(|b| b.0 < oldest) {
            self.buckets.pop_front();
        }
    }

    /// The counts of the window of `len` buckets ending with bucket `head`.
    pub fn window(&self, head: Option<i64>, len: u32) -> Counts {
        let mut out = Counts::default();
        let Some(head) = head else { return out };
        let start = head - len as i64 + 1;
        let first = self.buckets.partition_point(|b| b.0 < start);
        for (index, c) in self.buckets.iter().skip(first) {
            if *index <= head {
                out.add_all(c);
            }
        }
        out
    }
}

/// The multi-label figures beside Section 2's (extension E7).
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct MultiLabelStats {
    /// scikit-learn's `average="samples"`: the mean of the per-sample figures.
    pub samples_average: Prf,
    /// Σ |P xor T| / (samples × |L|).
    pub hamming_loss: f64,
}

/// Fills `stats` (computed on the model's empty confusion cells) with the multi-label
/// figures of `c`. L is the configured classes (`0..configured`), else every class with
/// a tp, fp or fn in `c`, in name order.
pub fn apply(stats: &mut ModelStats, c: &Counts, configured: usize, names: &[String]) {
    let n = c.samples;
    let nf = n as f64;
    let at = |k: usize| c.classes.get(k).copied().unwrap_or([0; 3]);
    let labels: Vec<usize> = if configured > 0 {
        (0..configured).collect()
    } else {
        let mut seen: Vec<usize> = (0..c.classes.len()).filter(|&k| at(k) != [0; 3]).collect();
        seen.sort_by(|&a, &b| names[a].cmp(&names[b]));
        seen
    };
    let figures = class_figures(n, &labels, |k| {
        let [tp, fp, fn_] = at(k);
        (tp, tp + fp, tp + fn_)
    });
    stats.samples = n;
    stats.accuracy = ratio(c.exact as f64, nf);
    stats.balanced_accuracy = figures.balanced_accuracy;
    // No single-label baseline exists for sets: never exported, near_chance never fires.
    stats.majority_baseline_accuracy = 0.0;
    stats.imbalance_ratio = figures.imbalance_ratio;
    stats.micro = figures.micro;
    stats.macro_ = figures.macro_;
    stats.weighted = figures.weighted;
    stats.classes = figures.classes;
    stats.confusion.clear();
    stats.multi_label = Some(MultiLabelStats {
        samples_average: Prf {
            precision: ratio(c.precision.value(), nf),
            recall: ratio(c.recall.value(), nf),
            f1: ratio(c.f1.value(), nf),
        },
        hamming_loss: ratio(c.hamming as f64, nf * labels.len() as f64),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// P and T of [{0,1}, {}, {2}, {0}] vs [{0}, {}, {1}, {0,2}]; by hand and scikit-learn.
    #[test]
    fn one_vs_rest_counts_and_per_sample_sums() {
        let mut c = Counts::default();
        for (p, t) in [
            (&[0u32, 1][..], &[0u32][..]),
            (&[], &[]),
            (&[2], &[1]),
            (&[0], &[0, 2]),
        ] {
            c.add(p, t);
        }
        assert_eq!(c.classes, [[2, 0, 0], [0, 1, 1], [0, 1, 1]]);
        assert_eq!((c.samples, c.exact, c.hamming), (4, 1, 4));
        // precision 1/2 + 0 + 0 + 1; recall 1 + 0 + 0 + 1/2; f1 2/3 + 0 + 0 + 2/3
        assert_eq!(c.precision.value(), 1.5);
        assert_eq!(c.recall.value(), 1.5);
        assert!((c.f1.value() - 4.0 / 3.0).abs() < 1e-15);
        let mut twice = c.clone();
        twice.add_all(&c);
        assert_eq!(twice.classes[1], [0, 2, 2]);
        assert_eq!(twice.hamming, 8);
    }

    #[test]
    fn windows_add_their_buckets_and_late_samples_stay_out() {
        let mut m = MultiLabel::default();
        assert!(m.record(10, 3, 10, &[0], &[0]));
        assert!(m.record(10, 3, 8, &[1], &[0]));
        assert!(!m.record(10, 3, 7, &[1], &[1]), "older than the span");
        assert_eq!(m.window(Some(10), 3).samples, 2);
        assert_eq!(m.window(Some(10), 1).samples, 1);
        assert!(m.record(12, 3, 12, &[], &[]));
        assert_eq!(m.totals.samples, 4);
        assert_eq!(m.window(Some(12), 3).samples, 2, "bucket 8 left at head 12");
        assert_eq!(m.window(Some(12), 1).samples, 1);
        assert_eq!(m.window(None, 3).samples, 0);
    }
}
