//! The four alerts of contract Section 4 and `distribution_shift` (extension E5),
//! evaluated per model and scope. Comparisons are exactly as the contract writes them:
//! `>=` fires at the threshold, `<` does not.

use super::stats::ModelStats;
use crate::config::AlertThresholds;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AlertKind {
    RecallCollapse,
    PredictionCollapse,
    LabelImbalance,
    NearChance,
    DistributionShift,
}

impl AlertKind {
    pub const ALL: [AlertKind; 5] = [
        AlertKind::RecallCollapse,
        AlertKind::PredictionCollapse,
        AlertKind::LabelImbalance,
        AlertKind::NearChance,
        AlertKind::DistributionShift,
    ];

    pub fn code(self) -> &'static str {
        match self {
            AlertKind::RecallCollapse => "recall_collapse",
            AlertKind::PredictionCollapse => "prediction_collapse",
            AlertKind::LabelImbalance => "label_imbalance",
            AlertKind::NearChance => "near_chance",
            AlertKind::DistributionShift => "distribution_shift",
        }
    }

    /// The kinds evaluated under `t`: the contract's four, and `distribution_shift` when
    /// its threshold is configured.
    pub fn evaluated(t: &AlertThresholds) -> impl Iterator<Item = AlertKind> {
        let shift = t.psi_threshold.is_some();
        Self::ALL
            .into_iter()
            .filter(move |&k| shift || k != AlertKind::DistributionShift)
    }

    /// Whether the alert is about one class (else its class label is "").
    pub fn per_class(self) -> bool {
        matches!(
            self,
            AlertKind::RecallCollapse | AlertKind::PredictionCollapse
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Alert {
    pub kind: AlertKind,
    /// The class index for per-class alerts.
    pub class: Option<u32>,
}

/// Sums of floats such as `baseline + margin` carry rounding error; a mathematically
/// equal accuracy must still fire.
const SUM_TOLERANCE: f64 = 1e-12;

pub fn evaluate(s: &ModelStats, t: &AlertThresholds) -> Vec<Alert> {
    let mut out = Vec::new();
    for c in &s.classes {
        if c.support >= t.min_support && c.prf.recall < t.recall_floor {
            out.push(Alert {
                kind: AlertKind::RecallCollapse,
                class: Some(c.class),
            });
        }
    }
    let enough = s.samples >= t.min_samples && s.samples > 0;
    if enough {
        for c in &s.classes {
            if c.prediction_share >= t.collapse_share && c.label_share < t.collapse_share {
                out.push(Alert {
                    kind: AlertKind::PredictionCollapse,
                    class: Some(c.class),
                });
            }
        }
        if s.imbalance_ratio >= t.imbalance_ratio {
            out.push(Alert {
                kind: AlertKind::LabelImbalance,
                class: None,
            });
        }
        // A multi-label model has no majority baseline (extension E7).
        if s.multi_label.is_none()
            && s.accuracy <= s.majority_baseline_accuracy + t.chance_margin + SUM_TOLERANCE
        {
            out.push(Alert {
                kind: AlertKind::NearChance,
                class: None,
            });
        }
    }
    // Unlabelled predictions count here: the shift is visible before any label.
    let d = &s.drift;
    let reference = d.reference.map_or(0, |r| r.3);
    if let (Some(psi), Some(threshold)) = (d.prediction_psi, t.psi_threshold) {
        if psi >= threshold && d.predictions >= t.min_samples && reference >= t.min_samples {
            out.push(Alert {
                kind: AlertKind::DistributionShift,
                class: None,
            });
        }
    }
    out
}
