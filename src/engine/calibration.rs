//! Calibration (docs/CONTRACT-EXTENSIONS.md, E2): expected calibration error over 15
//! equal-width bins of the confidence (the score of the predicted class), the reliability
//! histogram behind it, and the Brier score, over the labelled samples that carry scores.
//!
//! Per sample: the confidence's bin, whether the prediction was right, and the Brier
//! term. Per bucket and for `all`: per bin the samples, the correct ones and the sum of
//! confidences, plus the sum of Brier terms; a window adds up its buckets at scrape
//! time, as it does the log loss.

use serde::{Deserialize, Serialize};

use super::counts::Sum;

/// Number of equal-width confidence bins.
pub const BINS: usize = 15;

/// The upper edge of bin `i`, as numpy's `linspace(0, 1, 16)` computes it (so that
/// scikit-learn's `calibration_curve(strategy="uniform")` bins every value alike).
pub fn edge(i: usize) -> f64 {
    super::counts::linspace_edge(i, BINS)
}

/// The bin of a confidence: bin i holds (edge(i), edge(i + 1)], bin 0 also 0, as
/// `np.searchsorted(edges[1:-1], confidence)` (side left) assigns them.
pub fn bin_of(confidence: f64) -> usize {
    let mut b = ((confidence * BINS as f64) as usize).min(BINS - 1);
    while b > 0 && confidence <= edge(b) {
        b -= 1;
    }
    while b < BINS - 1 && confidence > edge(b + 1) {
        b += 1;
    }
    b
}

/// What calibration takes from one labelled sample with scores.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Calibrated {
    /// The score of the predicted class (0 when it has none).
    pub confidence: f64,
    pub correct: bool,
    /// `Σ_c (p_c - [c = actual])²` over the classes of the scores and the actual class.
    pub brier: f64,
}

/// What a sample's scores say of its actual and predicted classes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScoreFacts {
    pub p_actual: f64,
    pub p_predicted: f64,
    /// `Σ p²` over the distinct classes of the scores (the last of duplicates).
    pub sum_squares: f64,
    /// The score of the model's positive class and whether the actual class is it, for
    /// models with one (extension E3).
    pub positive: Option<(f64, bool)>,
}

impl ScoreFacts {
    pub fn calibrated(&self, correct: bool) -> Calibrated {
        Calibrated {
            confidence: self.p_predicted,
            correct,
            brier: (self.sum_squares - 2.0 * self.p_actual + 1.0).max(0.0),
        }
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Bin {
    pub samples: u64,
    pub correct: u64,
    pub confidence: Sum,
}

/// Additive calibration sums of a bucket, a window or `all`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Calibration {
    pub bins: [Bin; BINS],
    pub brier: Sum,
    pub samples: u64,
}

impl Calibration {
    #[inline]
    pub fn add(&mut self, c: &Calibrated) {
        let b = &mut self.bins[bin_of(c.confidence)];
        b.samples += 1;
        b.correct += c.correct as u64;
        b.confidence.add(c.confidence);
        self.brier.add(c.brier);
        self.samples += 1;
    }

    pub fn add_all(&mut self, other: &Calibration) {
        for (b, o) in self.bins.iter_mut().zip(&other.bins) {
            b.samples += o.samples;
            b.correct += o.correct;
            b.confidence.add_sum(&o.confidence);
        }
        self.brier.add_sum(&other.brier);
        self.samples += other.samples;
    }
}

/// The calibration figures of one scope; `None` where no sample carried scores.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationStats {
    pub samples: u64,
    /// `Σ_b |correct_b - Σ confidence_b| / samples`.
    pub ece: Option<f64>,
    /// Mean Brier term.
    pub brier: Option<f64>,
    pub bins: [Bin; BINS],
}

/// The `bin` label of bin `i`: its upper edge, to three decimals.
pub fn bin_label(i: usize) -> String {
    format!("{:.3}", edge(i + 1))
}

pub fn compute(c: &Calibration) -> CalibrationStats {
    let n = c.samples as f64;
    let gap: f64 = c
        .bins
        .iter()
        .map(|b| (b.correct as f64 - b.confidence.value()).abs())
        .sum();
    CalibrationStats {
        samples: c.samples,
        ece: (c.samples > 0).then(|| gap / n),
        brier: (c.samples > 0).then(|| c.brier.value() / n),
        bins: c.bins,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_are_open_below_closed_above_like_searchsorted() {
        assert_eq!(bin_of(0.0), 0);
        assert_eq!(bin_of(edge(1)), 0);
        assert_eq!(bin_of(edge(1) + 1e-12), 1);
        assert_eq!(bin_of(0.2), 2); // 0.2 <= 3 * (1/15)
        assert_eq!(bin_of(edge(14)), 13);
        assert_eq!(bin_of(0.99), 14);
        assert_eq!(bin_of(1.0), 14);
    }

    /// Two samples at confidence 0.9, one right: ECE = |1 - 1.8| / 2 = 0.4.
    #[test]
    fn ece_and_brier() {
        let mut c = Calibration::default();
        for correct in [true, false] {
            c.add(&Calibrated {
                confidence: 0.9,
                correct,
                brier: if correct { 0.02 } else { 1.62 },
            });
        }
        let s = compute(&c);
        assert!((s.ece.unwrap() - 0.4).abs() < 1e-15);
        assert!((s.brier.unwrap() - 0.82).abs() < 1e-15);
        assert_eq!(s.bins[13].samples, 2);
        assert_eq!(compute(&Calibration::default()).ece, None);
    }
}
