//! The positive class's precision, recall and F1 at extra thresholds
//! (docs/CONTRACT-EXTENSIONS.md, E6): per threshold t, the labelled samples with scores
//! are predicted positive when p(positive) >= t, and (tp, fp, fn) are counted per
//! bucket, window and `all`, additive like the confusion counts.

use super::stats::Prf;

/// A sample's (tp, fp, fn) indicators at each threshold.
pub fn hits(thresholds: &[f64], score: f64, positive: bool) -> Vec<[bool; 3]> {
    thresholds
        .iter()
        .map(|&t| {
            let predicted = score >= t;
            [
                predicted && positive,
                predicted && !positive,
                !predicted && positive,
            ]
        })
        .collect()
}

/// Adds `n` times the indicators `hits` to per-threshold counts (laid out on first use).
pub fn add<T: Copy + Default + std::ops::AddAssign + TryFrom<u64>>(
    counts: &mut Vec<[T; 3]>,
    hits: &[[bool; 3]],
    n: u64,
) {
    if hits.is_empty() {
        return;
    }
    if counts.len() < hits.len() {
        counts.resize(hits.len(), [T::default(); 3]);
    }
    let one = T::try_from(n).ok().expect("counts fit");
    for (c, h) in counts.iter_mut().zip(hits) {
        for i in 0..3 {
            if h[i] {
                c[i] += one;
            }
        }
    }
}

/// The positive class at one threshold.
#[derive(Debug, Clone, PartialEq)]
pub struct ThresholdStats {
    pub threshold: f64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub prf: Prf,
}

pub fn compute(thresholds: &[f64], counts: &[[u64; 3]]) -> Vec<ThresholdStats> {
    let ratio = |a: u64, b: u64| if b == 0 { 0.0 } else { a as f64 / b as f64 };
    thresholds
        .iter()
        .enumerate()
        .map(|(i, &threshold)| {
            let [tp, fp, fn_] = counts.get(i).copied().unwrap_or_default();
            ThresholdStats {
                threshold,
                tp,
                fp,
                fn_,
                prf: Prf {
                    precision: ratio(tp, tp + fp),
                    recall: ratio(tp, tp + fn_),
                    f1: ratio(2 * tp, 2 * tp + fp + fn_),
                },
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// y = [1, 1, 0, 0], p = [0.9, 0.4, 0.6, 0.1] at 0.5: tp 1, fp 1, fn 1.
    #[test]
    fn counts_and_ratios() {
        let mut c: Vec<[u64; 3]> = Vec::new();
        for (p, y) in [(0.9, true), (0.4, true), (0.6, false), (0.1, false)] {
            add(&mut c, &hits(&[0.5, 0.95], p, y), 1);
        }
        let s = compute(&[0.5, 0.95], &c);
        assert_eq!((s[0].tp, s[0].fp, s[0].fn_), (1, 1, 1));
        assert_eq!(s[0].prf.f1, 0.5);
        assert_eq!((s[1].tp, s[1].fp, s[1].fn_), (0, 0, 2));
        assert_eq!(s[1].prf, Prf::default());
        // p >= t: a score equal to the threshold is positive
        assert_eq!(hits(&[0.5], 0.5, false), [[false, true, false]]);
    }
}
