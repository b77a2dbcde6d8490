//! The definitions of contract Section 2, computed from one set of counts (all samples
//! or one window). scikit-learn is the reference: `precision_recall_fscore_support`
//! with `zero_division=0`, `accuracy_score`, `balanced_accuracy_score`.

use super::alerts::{self, Alert};
use super::calibration::{self, Calibration, CalibrationStats};
use super::counts::{Dense, FloatDense};
use super::drift::{self, DriftStats, Predictions, Reference};
use super::estimate::{self, EstimatedStats};
use super::multilabel::{self, Counts, MultiLabelStats};
use super::ranking::{self, RankingStats, ScoreHistogram};
use super::thresholds::{self as extra, ThresholdStats};
use crate::config::AlertThresholds;

/// Precision, recall and F1.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Prf {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ClassStats {
    /// Index into the model's class names.
    pub class: u32,
    pub prf: Prf,
    pub support: u64,
    pub predicted: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    pub label_share: f64,
    pub prediction_share: f64,
}

/// Everything predmon reports for one model over one scope.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelStats {
    pub samples: u64,
    pub accuracy: f64,
    pub balanced_accuracy: f64,
    pub majority_baseline_accuracy: f64,
    /// `None` when no sample in scope carried scores.
    pub log_loss: Option<f64>,
    pub samples_per_second: f64,
    pub imbalance_ratio: f64,
    pub micro: Prf,
    pub macro_: Prf,
    pub weighted: Prf,
    /// One entry per class of L: configured order, else sorted by name.
    pub classes: Vec<ClassStats>,
    /// Non-zero cells as (actual, predicted, count).
    pub confusion: Vec<(u32, u32, u64)>,
    pub alerts: Vec<Alert>,
    /// The estimate before labels (extension E1).
    pub estimated: EstimatedStats,
    /// Calibration of the samples with scores (extension E2).
    pub calibration: CalibrationStats,
    /// ROC AUC and PR AUC, for a model with a positive class (extension E3).
    pub ranking: Option<RankingStats>,
    /// The positive class at each extra threshold (extension E6).
    pub thresholds: Vec<ThresholdStats>,
    /// Samples average and Hamming loss, for a multi-label model (extension E7).
    pub multi_label: Option<MultiLabelStats>,
    /// Distribution shift against the reference (extension E5).
    pub drift: DriftStats,
}

/// The counts of one scope, borrowed from the engine.
pub struct Scope<'a> {
    pub cells: &'a Dense,
    /// Number of interned classes of the model.
    pub classes: usize,
    /// Classes `0..configured` are the configured ones; 0 when L comes from the data.
    pub configured: usize,
    /// Class names by index: L from the data is summed in name order, as scikit-learn
    /// sorts its labels, so float results do not depend on the order classes appeared.
    pub names: &'a [String],
    pub samples: u64,
    pub scored: u64,
    pub loss_sum: f64,
    /// Denominator of samples_per_second: the window length, or the `all` time span.
    pub seconds: f64,
    /// Expected cells of the unlabelled predictions in scope, and how many there are.
    pub expected: &'a FloatDense,
    pub unlabelled: u64,
    pub calibration: &'a Calibration,
    /// The positive class's score histogram and index, for a model with one.
    pub ranking: Option<(&'a ScoreHistogram, u32)>,
    /// The model's extra thresholds and their (tp, fp, fn) counts.
    pub thresholds: (&'a [f64], &'a [[u64; 3]]),
    /// A multi-label model's counts (extension E7); its `cells` are then empty.
    pub multi: Option<&'a Counts>,
    /// Predictions counted on arrival in scope, and the model's reference.
    pub drift: (&'a Predictions, Option<&'a Reference>),
}

/// A [`Scope`]'s counts copied out of the engine, so that a scrape can compute its
/// figures after it has released the engine lock: copying is a few memcpys, computing
/// (every class, the alerts, the score histograms) is what would stall ingestion.
#[derive(Debug, Clone)]
pub struct ScopeCounts {
    cells: Dense,
    classes: usize,
    configured: usize,
    names: Vec<String>,
    samples: u64,
    scored: u64,
    loss_sum: f64,
    seconds: f64,
    expected: FloatDense,
    unlabelled: u64,
    calibration: Calibration,
    ranking: Option<(ScoreHistogram, u32)>,
    threshold_values: Vec<f64>,
    threshold_counts: Vec<[u64; 3]>,
    multi: Option<Counts>,
    drift: Predictions,
    reference: Option<Reference>,
}

impl Scope<'_> {
    pub fn to_counts(&self) -> ScopeCounts {
        ScopeCounts {
            cells: self.cells.clone(),
            classes: self.classes,
            configured: self.configured,
            names: self.names.to_vec(),
            samples: self.samples,
            scored: self.scored,
            loss_sum: self.loss_sum,
            seconds: self.seconds,
            expected: self.expected.clone(),
            unlabelled: self.unlabelled,
            calibration: *self.calibration,
            ranking: self.ranking.map(|(h, p)| (h.clone(), p)),
            threshold_values: self.thresholds.0.to_vec(),
            threshold_counts: self.thresholds.1.to_vec(),
            multi: self.multi.cloned(),
            drift: self.drift.0.clone(),
            reference: self.drift.1.cloned(),
        }
    }
}

impl ScopeCounts {
    pub fn view(&self) -> Scope<'_> {
        Scope {
            cells: &self.cells,
            classes: self.classes,
            configured: self.configured,
            names: &self.names,
            samples: self.samples,
            scored: self.scored,
            loss_sum: self.loss_sum,
            seconds: self.seconds,
            expected: &self.expected,
            unlabelled: self.unlabelled,
            calibration: &self.calibration,
            ranking: self.ranking.as_ref().map(|(h, p)| (h, *p)),
            thresholds: (&self.threshold_values, &self.threshold_counts),
            multi: self.multi.as_ref(),
            drift: (&self.drift, self.reference.as_ref()),
        }
    }

    pub fn compute(&self, thresholds: &AlertThresholds) -> ModelStats {
        compute(&self.view(), thresholds)
    }

    /// The model's class names by index, as they were when copied.
    pub fn names(&self) -> &[String] {
        &self.names
    }
}

/// `num / den`, 0 for 0 / 0 (scikit-learn's `zero_division=0`).
pub(crate) fn ratio(num: f64, den: f64) -> f64 {
    if den == 0.0 {
        0.0
    } else {
        num / den
    }
}

/// The per-class figures of a scope and what is averaged over the classes.
pub(crate) struct ClassFigures {
    pub classes: Vec<ClassStats>,
    pub micro: Prf,
    pub macro_: Prf,
    pub weighted: Prf,
    /// Mean recall over the classes with support.
    pub balanced_accuracy: f64,
    /// Largest support / smallest non-zero support; 0 without support.
    pub imbalance_ratio: f64,
    pub max_support: u64,
}

/// Precision, recall and F1 of each class of `labels` from its (tp, predicted, support)
/// over `n` samples, with the micro, macro and weighted averages (scikit-learn's
/// `precision_recall_fscore_support`): one definition for single- and multi-label
/// scopes.
pub(crate) fn class_figures(
    n: u64,
    labels: &[usize],
    counts: impl Fn(usize) -> (u64, u64, u64),
) -> ClassFigures {
    let nf = n as f64;
    let mut classes = Vec::with_capacity(labels.len());
    let (mut tp_sum, mut pred_sum, mut true_sum) = (0u64, 0u64, 0u64);
    let (mut macro_sum, mut weighted_sum) = (Prf::default(), Prf::default());
    let (mut recall_sum, mut recall_classes) = (0.0, 0u64);
    let (mut max_support, mut min_support) = (0u64, u64::MAX);
    for &c in labels {
        let (tp, pred, sup) = counts(c);
        let (fp, fn_) = (pred - tp, sup - tp);
        let prf = Prf {
            precision: ratio(tp as f64, pred as f64),
            recall: ratio(tp as f64, sup as f64),
            f1: ratio(2.0 * tp as f64, (2 * tp + fp + fn_) as f64),
        };
        tp_sum += tp;
        pred_sum += pred;
        true_sum += sup;
        macro_sum.precision += prf.precision;
        macro_sum.recall += prf.recall;
        macro_sum.f1 += prf.f1;
        let w = sup as f64;
        weighted_sum.precision += prf.precision * w;
        weighted_sum.recall += prf.recall * w;
        weighted_sum.f1 += prf.f1 * w;
        if sup > 0 {
            recall_sum += prf.recall;
            recall_classes += 1;
            max_support = max_support.max(sup);
            min_support = min_support.min(sup);
        }
        classes.push(ClassStats {
            class: c as u32,
            prf,
            support: sup,
            predicted: pred,
            tp,
            fp,
            fn_,
            tn: n - tp - fp - fn_,
            label_share: ratio(sup as f64, nf),
            prediction_share: ratio(pred as f64, nf),
        });
    }
    let l = labels.len() as f64;
    let tw = true_sum as f64;
    ClassFigures {
        classes,
        micro: Prf {
            precision: ratio(tp_sum as f64, pred_sum as f64),
            recall: ratio(tp_sum as f64, tw),
            f1: ratio(2.0 * tp_sum as f64, (true_sum + pred_sum) as f64),
        },
        macro_: Prf {
            precision: ratio(macro_sum.precision, l),
            recall: ratio(macro_sum.recall, l),
            f1: ratio(macro_sum.f1, l),
        },
        weighted: Prf {
            precision: ratio(weighted_sum.precision, tw),
            recall: ratio(weighted_sum.recall, tw),
            f1: ratio(weighted_sum.f1, tw),
        },
        balanced_accuracy: ratio(recall_sum, recall_classes as f64),
        imbalance_ratio: if recall_classes > 0 {
            max_support as f64 / min_support as f64
        } else {
            0.0
        },
        max_support,
    }
}

pub fn compute(scope: &Scope, thresholds: &AlertThresholds) -> ModelStats {
    let k = scope.classes;
    let mut support = vec![0u64; k];
    let mut predicted = vec![0u64; k];
    let mut correct = 0u64;
    let mut confusion = Vec::new();
    for (a, support_a) in support.iter_mut().enumerate() {
        for (p, predicted_p) in predicted.iter_mut().enumerate() {
            let n = scope.cells.get(a, p);
            if n > 0 {
                *support_a += n;
                *predicted_p += n;
                if a == p {
                    correct += n;
                }
                confusion.push((a as u32, p as u32, n));
            }
        }
    }
    let n = scope.samples;
    let nf = n as f64;
    let labels: Vec<usize> = if scope.configured > 0 {
        (0..scope.configured).collect()
    } else {
        let mut seen: Vec<usize> = (0..k)
            .filter(|&c| support[c] > 0 || predicted[c] > 0)
            .collect();
        seen.sort_by(|&a, &b| scope.names[a].cmp(&scope.names[b]));
        seen
    };

    let figures = class_figures(n, &labels, |c| {
        (scope.cells.get(c, c), predicted[c], support[c])
    });
    let mut stats = ModelStats {
        samples: n,
        accuracy: ratio(correct as f64, nf),
        balanced_accuracy: figures.balanced_accuracy,
        majority_baseline_accuracy: ratio(figures.max_support as f64, nf),
        log_loss: (scope.scored > 0).then(|| scope.loss_sum / scope.scored as f64),
        samples_per_second: ratio(nf, scope.seconds),
        imbalance_ratio: figures.imbalance_ratio,
        micro: figures.micro,
        macro_: figures.macro_,
        weighted: figures.weighted,
        classes: figures.classes,
        confusion,
        alerts: Vec::new(),
        estimated: estimate::compute(
            scope.cells,
            scope.expected,
            scope.unlabelled,
            k,
            scope.configured,
            scope.names,
        ),
        calibration: calibration::compute(scope.calibration),
        ranking: scope
            .ranking
            .map(|(h, positive)| ranking::compute(h, positive)),
        thresholds: extra::compute(scope.thresholds.0, scope.thresholds.1),
        multi_label: None,
        drift: drift::compute(scope.drift.0, scope.drift.1),
    };
    if let Some(c) = scope.multi {
        multilabel::apply(&mut stats, c, scope.configured, scope.names);
        stats.samples_per_second = ratio(stats.samples as f64, scope.seconds);
    }
    stats.alerts = alerts::evaluate(&stats, thresholds);
    stats
}

/// The log-loss term of one sample: `-ln(clamp(p_actual, 1e-15, 1 - 1e-15))`.
pub fn log_loss_term(p_actual: f64) -> f64 {
    const EPS: f64 = 1e-15;
    -p_actual.clamp(EPS, 1.0 - EPS).ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scope_of(cells: &Dense, classes: usize, configured: usize) -> ModelStats {
        let samples = cells.nonzero().map(|c| c.2).sum();
        let names: Vec<String> = (0..classes).map(|c| format!("c{c}")).collect();
        let expected = FloatDense::with_stride(classes);
        let scope = Scope {
            cells,
            classes,
            configured,
            names: &names,
            samples,
            scored: 0,
            loss_sum: 0.0,
            seconds: 10.0,
            expected: &expected,
            unlabelled: 0,
            calibration: &Calibration::default(),
            ranking: None,
            thresholds: (&[], &[]),
            multi: None,
            drift: (&Predictions::default(), None),
        };
        compute(&scope, &crate::config::Settings::default().alerts)
    }

    /// y_true = [0,0,0,1,1,2], y_pred = [0,0,1,1,0,0]; values from scikit-learn 1.5:
    /// precision_recall_fscore_support(..., zero_division=0).
    #[test]
    fn matches_scikit_learn_on_a_small_case() {
        let mut d = Dense::with_stride(3);
        for (a, p) in [(0, 0), (0, 0), (0, 1), (1, 1), (1, 0), (2, 0)] {
            d.add(a, p, 1);
        }
        let s = scope_of(&d, 3, 0);
        let p: Vec<f64> = s.classes.iter().map(|c| c.prf.precision).collect();
        let r: Vec<f64> = s.classes.iter().map(|c| c.prf.recall).collect();
        assert_eq!(p, [0.5, 0.5, 0.0]);
        assert!((r[0] - 2.0 / 3.0).abs() < 1e-15 && r[1] == 0.5 && r[2] == 0.0);
        assert!((s.accuracy - 0.5).abs() < 1e-15);
        assert!((s.micro.f1 - 0.5).abs() < 1e-15);
        // macro f1 = mean(4/7, 1/2, 0)
        assert!((s.macro_.f1 - (4.0 / 7.0 + 0.5) / 3.0).abs() < 1e-15);
        // balanced accuracy = mean(2/3, 1/2, 0)
        assert!((s.balanced_accuracy - (2.0 / 3.0 + 0.5) / 3.0).abs() < 1e-15);
        assert_eq!(s.majority_baseline_accuracy, 0.5);
        assert_eq!(s.imbalance_ratio, 3.0);
        assert_eq!(s.samples_per_second, 0.6);
    }

    #[test]
    fn configured_classes_without_samples_are_zero_rows() {
        let mut d = Dense::with_stride(3);
        d.add(0, 0, 4);
        let s = scope_of(&d, 3, 3);
        assert_eq!(s.classes.len(), 3);
        assert_eq!(s.classes[2].support, 0);
        assert!((s.macro_.f1 - 1.0 / 3.0).abs() < 1e-15);
        let learned = scope_of(&d, 3, 0);
        assert_eq!(learned.classes.len(), 1);
    }

    #[test]
    fn log_loss_clamps() {
        assert!((log_loss_term(0.0) - 34.538776394910684).abs() < 1e-12);
        assert_eq!(log_loss_term(1.0), -(1.0f64 - 1e-15).ln());
        assert!(log_loss_term(1.0) > 0.0 && log_loss_term(1.0) < 1.2e-15);
    }
}
