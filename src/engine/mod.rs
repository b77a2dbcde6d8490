//! The aggregation engine: interned models and classes, the `all` totals and the
//! windows of each model, the watermark, and the per-model operational counters.
//! One owner mutates it; readers take [`Engine::model_stats`] snapshots.

pub mod alerts;
pub mod calibration;
pub mod counts;
pub mod drift;
pub mod estimate;
pub mod multilabel;
pub mod ranking;
pub mod stats;
pub mod thresholds;
pub mod window;

use rustc_hash::FxHashMap;
use serde::{Deserialize, Serialize};

use crate::config::{AlertThresholds, Settings, WindowSpec};
use crate::event::{ClassSets, Rejection, Side};
use calibration::{Calibrated, Calibration, ScoreFacts};
use counts::{Dense, FloatDense, Sum};
use estimate::{EstimateTag, OUTSIDE_RING};
use stats::{ModelStats, Scope, ScopeCounts};
use window::{Placement, Ring};

/// Upper bounds (seconds) of the label-delay histogram buckets.
pub const LABEL_DELAY_BUCKETS: [f64; 14] = [
    0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 86400.0,
];

/// A cumulative-ready histogram: per-bucket counts (last is +Inf), sum and count.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Histogram {
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn observe(&mut self, v: f64) {
        if self.counts.is_empty() {
            self.counts = vec![0; LABEL_DELAY_BUCKETS.len() + 1];
        }
        let i = LABEL_DELAY_BUCKETS.partition_point(|&b| b < v);
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

/// One joined sample, ready to be counted.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    pub model: u32,
    pub actual: u32,
    pub predicted: u32,
    pub time_ns: i64,
    /// The log-loss term, when the sample carried scores.
    pub loss: Option<f64>,
    /// The calibration terms, when the sample carried scores (extension E2).
    pub calibration: Option<Calibrated>,
    /// The positive class's score and whether the sample is positive, when the model
    /// has a positive class and the sample carried scores (extensions E3, E6).
    pub positive: Option<(f64, bool)>,
}

/// The segment of a sample without one (extension E4).
pub const NO_SEGMENT: u32 = u32::MAX;

/// The segment that takes every segment beyond `limits.max_segments` (extension E4).
pub const OVERFLOW_SEGMENT: &str = "__other__";

/// Totals over every sample since start (or the restored state).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Totals {
    cells: Dense,
    samples: u64,
    scored: u64,
    loss: Sum,
    first_ns: Option<i64>,
    last_ns: Option<i64>,
    /// Expected cells of every unlabelled prediction with scores, and their number.
    #[serde(default)]
    estimate: FloatDense,
    #[serde(default)]
    estimated: u64,
    #[serde(default)]
    calibration: Calibration,
    #[serde(default)]
    ranking: ranking::ScoreHistogram,
    /// (tp, fp, fn) of the positive class at each of the model's extra thresholds.
    #[serde(default)]
    thresholds: Vec<[u64; 3]>,
    /// Every prediction counted on arrival (extension E5).
    #[serde(default)]
    drift: drift::Predictions,
}

/// One segment of a model (extension E4): the same counts as the model's own, over the
/// samples (and estimates) whose event carried this segment value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Segment {
    pub name: String,
    totals: Totals,
    /// The segment's own drift reference (E5), begun at its first prediction.
    #[serde(default)]
    reference: Option<drift::Reference>,
    ring: Ring,
}

impl Segment {
    pub fn samples(&self) -> u64 {
        self.totals.samples
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelState {
    pub name: String,
    classes: Vec<String>,
    #[serde(skip)]
    class_index: FxHashMap<String, u32>,
    #[serde(skip)]
    key_cache: estimate::KeyCache,
    /// The positive class of ROC AUC and PR AUC, from the configuration, and its
    /// index once the class has been seen.
    #[serde(skip)]
    positive_name: Option<String>,
    #[serde(skip)]
    positive: Option<u32>,
    /// Extra thresholds of the positive class (extension E6), as the counts were made.
    #[serde(default)]
    thresholds: Vec<f64>,
    configured: usize,
    totals: Totals,
    /// The reference period of the distribution shift (extension E5), once begun.
    #[serde(default)]
    reference: Option<drift::Reference>,
    ring: Ring,
    pub late_samples: u64,
    /// Expired pending halves, indexed by [`Side`] (prediction, label).
    pub join_expired: [u64; 2],
    pub label_delay: Histogram,
    /// The counts of a multi-label model (extension E7); its confusion cells stay empty.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    multi: Option<Box<multilabel::MultiLabel>>,
    /// Segments in order of first appearance (extension E4); their index is the id that
    /// samples and pending halves carry.
    #[serde(default)]
    segments: Vec<Segment>,
    #[serde(skip)]
    segment_index: FxHashMap<String, u32>,
    /// Events whose segment was new beyond `limits.max_segments` and went to
    /// [`OVERFLOW_SEGMENT`].
    #[serde(default)]
    pub segment_overflow: u64,
}

impl ModelState {
    /// The counts an estimate of segment `segment` goes into: the model's, then the
    /// segment's when `segment` is one of its segments.
    fn scopes_mut(&mut self, segment: u32) -> impl Iterator<Item = (&mut Totals, &mut Ring)> {
        let segment = self.segments.get_mut(segment as usize);
        [Some((&mut self.totals, &mut self.ring))]
            .into_iter()
            .chain([segment.map(|s| (&mut s.totals, &mut s.ring))])
            .flatten()
    }

    pub fn class_name(&self, class: u32) -> &str {
        &self.classes[class as usize]
    }

    pub fn class_names(&self) -> &[String] {
        &self.classes
    }

    pub fn samples(&self) -> u64 {
        self.totals.samples
    }

    /// Whether predictions and labels are class sets (extension E7).
    pub fn is_multi_label(&self) -> bool {
        self.multi.is_some()
    }

    pub fn segments(&self) -> &[Segment] {
        &self.segments
    }

    /// The `all` confusion cells (actual, predicted, count), for the counter metric.
    pub fn confusion_totals(&self) -> impl Iterator<Item = (u32, u32, u64)> + '_ {
        self.totals.cells.nonzero()
    }

    fn intern(&mut self, class: &str) -> u32 {
        if let Some(&i) = self.class_index.get(class) {
            return i;
        }
        let i = self.classes.len() as u32;
        self.classes.push(class.to_string());
        self.class_index.insert(class.to_string(), i);
        let needed = self.classes.len();
        let stride = self.totals.cells.stride();
        if needed > stride {
            let grown = needed.max(stride + stride / 2).max(4);
            self.totals.cells.grow(grown);
            self.totals.estimate.grow(grown);
            self.ring.grow(grown);
            for s in &mut self.segments {
                s.totals.cells.grow(grown);
                s.totals.estimate.grow(grown);
                s.ring.grow(grown);
            }
        }
        i
    }
}

/// What the engine is: windows, thresholds, limits. Shared by `report` and `run`.
#[derive(Debug, Clone)]
pub struct EngineSettings {
    pub windows: Vec<WindowSpec>,
    pub bucket_ns: i64,
    pub alerts: AlertThresholds,
    pub max_models: usize,
    pub max_classes: usize,
    /// Segments per model before the rest go to [`OVERFLOW_SEGMENT`] (extension E4).
    pub max_segments: usize,
    pub configured: FxHashMap<String, Vec<String>>,
    /// Each model's positive class, where it has one (extension E3).
    pub positive: FxHashMap<String, String>,
    /// Each model's extra thresholds, where it has some (extension E6).
    pub thresholds: FxHashMap<String, Vec<f64>>,
    /// The multi-label models (extension E7).
    pub multi_label: rustc_hash::FxHashSet<String>,
    /// Length of the drift reference period (extension E5).
    pub reference_ns: i64,
}

impl EngineSettings {
    pub fn new(settings: &Settings, windows: Vec<WindowSpec>) -> EngineSettings {
        EngineSettings {
            windows,
            bucket_ns: settings.metrics.bucket.as_nanos() as i64,
            alerts: settings.alerts.clone(),
            max_models: settings.limits.max_models,
            max_classes: settings.limits.max_classes,
            reference_ns: settings.drift.reference.as_nanos() as i64,
            max_segments: settings.limits.max_segments,
            thresholds: settings
                .models
                .iter()
                .filter(|m| !m.thresholds.is_empty())
                .map(|m| (m.name.clone(), m.thresholds.clone()))
                .collect(),
            multi_label: settings.multi_label_models(),
            positive: settings
                .models
                .iter()
                .filter_map(|m| m.positive_class.clone().map(|p| (m.name.clone(), p)))
                .collect(),
            configured: settings
                .models
                .iter()
                .filter_map(|m| m.classes.clone().map(|c| (m.name.clone(), c)))
                .collect(),
        }
    }

    fn window_lengths(&self) -> Vec<u32> {
        self.windows.iter().filter_map(|w| w.buckets).collect()
    }
}

/// The positive-class score bin of a sample and its hits at the extra thresholds.
struct Ranked {
    bin: u16,
    positive: bool,
    hits: Vec<[bool; 3]>,
}

/// Counts one sample into one scope's totals and ring: the model's, or a segment's.
#[inline(always)]
fn count(
    t: &mut Totals,
    ring: &mut Ring,
    head: i64,
    bucket: i64,
    s: &Sample,
    ranked: &Option<Ranked>,
) -> Placement {
    t.cells.add(s.actual, s.predicted, 1);
    t.samples += 1;
    if let Some(l) = s.loss {
        t.scored += 1;
        t.loss.add(l);
    }
    t.first_ns = Some(t.first_ns.map_or(s.time_ns, |f| f.min(s.time_ns)));
    t.last_ns = Some(t.last_ns.map_or(s.time_ns, |l| l.max(s.time_ns)));
    ring.advance_to(head);
    let placement = ring.record(bucket, s.actual, s.predicted, s.loss);
    if let Some(c) = &s.calibration {
        t.calibration.add(c);
        if placement == Placement::InRing {
            ring.record_calibration(bucket, c);
        }
    }
    if let Some(r) = ranked {
        t.ranking.add(r.bin, r.positive, 1);
        thresholds::add(&mut t.thresholds, &r.hits, 1);
        if placement == Placement::InRing {
            ring.record_ranking(bucket, r.bin, r.positive, &r.hits);
        }
    }
    placement
}

/// A scope of [`Engine::model_stats`]: `all`, or the i-th configured window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScopeId {
    All,
    Window(usize),
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Engine {
    #[serde(skip)]
    settings: Option<EngineSettings>,
    models: Vec<ModelState>,
    #[serde(skip)]
    model_index: FxHashMap<String, u32>,
    /// Bucket index of the newest sample time (or wall clock), one for all models.
    watermark_bucket: Option<i64>,
    watermark_ns: Option<i64>,
    /// Scratch space of [`estimate::column`].
    #[serde(skip)]
    scratch: (Vec<f64>, Vec<(u32, f64)>),
}

impl Engine {
    pub fn new(settings: EngineSettings) -> Engine {
        Engine {
            settings: Some(settings),
            models: Vec::new(),
            model_index: FxHashMap::default(),
            watermark_bucket: None,
            watermark_ns: None,
            scratch: Default::default(),
        }
    }

    pub fn settings(&self) -> &EngineSettings {
        self.settings
            .as_ref()
            .expect("engine settings are set at construction and restore")
    }

    /// Re-attaches settings and rebuilds indexes after deserializing a snapshot.
    pub fn restored(mut self, settings: EngineSettings) -> Result<Engine, String> {
        let lengths = settings.window_lengths();
        for m in &mut self.models {
            if m.ring.windows.iter().map(|w| w.buckets).collect::<Vec<_>>() != lengths {
                return Err(
                    "the snapshot was written with other metrics.windows or metrics.bucket".into(),
                );
            }
            if m.multi.is_some() != settings.multi_label.contains(&m.name) {
                return Err(format!(
                    "the snapshot was written with another models.multi_label for `{}`",
                    m.name
                ));
            }
            m.positive_name = settings.positive.get(&m.name).cloned();
            let thresholds = settings
                .thresholds
                .get(&m.name)
                .cloned()
                .unwrap_or_default();
            if m.thresholds != thresholds {
                // Counts made at other thresholds mean nothing at these: start them afresh.
                m.thresholds = thresholds;
                m.totals.thresholds.clear();
                m.ring.clear_thresholds();
                for s in &mut m.segments {
                    s.totals.thresholds.clear();
                    s.ring.clear_thresholds();
                }
            }
            if m.reference
                .as_ref()
                .is_some_and(|r| r.end_ns - r.start_ns != settings.reference_ns)
            {
                // A reference of another length is not the one configured: begin anew.
                m.reference = None;
            }
            for s in &mut m.segments {
                if s.reference
                    .as_ref()
                    .is_some_and(|r| r.end_ns - r.start_ns != settings.reference_ns)
                {
                    s.reference = None;
                }
            }
            let stride = m.totals.cells.stride();
            m.totals.estimate.ensure(stride);
            m.ring.ensure_layout();
            for s in &mut m.segments {
                if s.ring.windows.len() != lengths.len() {
                    return Err("a segment's windows do not match its model's".into());
                }
                s.totals.estimate.ensure(stride);
                s.ring.ensure_layout();
            }
            m.segment_index = m
                .segments
                .iter()
                .enumerate()
                .map(|(i, s)| (s.name.clone(), i as u32))
                .collect();
            m.class_index = m
                .classes
                .iter()
                .enumerate()
                .map(|(i, c)| (c.clone(), i as u32))
                .collect();
        }
        self.model_index = self
            .models
            .iter()
            .enumerate()
            .map(|(i, m)| (m.name.clone(), i as u32))
            .collect();
        self.settings = Some(settings);
        Ok(self)
    }

    pub fn models(&self) -> &[ModelState] {
        &self.models
    }

    pub fn model(&self, model: u32) -> &ModelState {
        &self.models[model as usize]
    }

    pub fn model_id(&self, name: &str) -> Option<u32> {
        self.model_index.get(name).copied()
    }

    pub fn watermark_ns(&self) -> Option<i64> {
        self.watermark_ns
    }

    /// Admits an accepted event's model and classes, or says which limit it would break.
    /// A rejected event takes no slot.
    pub fn admit(
        &mut self,
        model: &str,
        classes: [Option<&str>; 2],
    ) -> Result<(u32, [u32; 2]), Rejection> {
        let existing = self.model_index.get(model).copied();
        // The common case: a known model and known classes, one lookup each.
        if let Some(m) = existing {
            let state = &self.models[m as usize];
            let known = |c: Option<&str>| match c {
                None => Some(u32::MAX),
                Some(c) => state.class_index.get(c).copied(),
            };
            if let (Some(p), Some(a)) = (known(classes[0]), known(classes[1])) {
                return Ok((m, [p, a]));
            }
        }
        let settings = self.settings.as_ref().expect("settings");
        if existing.is_none() && self.models.len() >= settings.max_models {
            return Err(Rejection::ModelLimit);
        }
        if let Some(m) = existing {
            let state = &self.models[m as usize];
            let mut new = 0;
            for (i, c) in classes.iter().enumerate() {
                if let Some(c) = c {
                    let repeated = i == 1 && classes[0] == Some(*c);
                    if !repeated && !state.class_index.contains_key(*c) {
                        new += 1;
                    }
                }
            }
            if state.classes.len() + new > settings.max_classes {
                return Err(Rejection::ClassLimit);
            }
        } else {
            let configured = settings.configured.get(model).map_or(0, Vec::len);
            let new = match classes {
                [Some(a), Some(b)] if a != b => 2,
                [None, None] => 0,
                _ => 1,
            };
            if configured == 0 && new > settings.max_classes {
                return Err(Rejection::ClassLimit);
            }
        }
        let m = match existing {
            Some(m) => m,
            None => self.create_model(model),
        };
        let state = &mut self.models[m as usize];
        let ids = [
            classes[0].map_or(u32::MAX, |c| state.intern(c)),
            classes[1].map_or(u32::MAX, |c| state.intern(c)),
        ];
        Ok((m, ids))
    }

    fn create_model(&mut self, name: &str) -> u32 {
        let settings = self.settings.as_ref().expect("settings");
        let configured = settings.configured.get(name).cloned().unwrap_or_default();
        let stride = configured.len().max(4);
        let mut state = ModelState {
            name: name.to_string(),
            classes: Vec::new(),
            class_index: FxHashMap::default(),
            key_cache: Default::default(),
            positive_name: settings.positive.get(name).cloned(),
            positive: None,
            thresholds: settings.thresholds.get(name).cloned().unwrap_or_default(),
            configured: configured.len(),
            reference: None,
            totals: Totals {
                cells: Dense::with_stride(stride),
                estimate: FloatDense::with_stride(stride),
                ..Default::default()
            },
            ring: Ring::new(&settings.window_lengths(), stride),
            late_samples: 0,
            join_expired: [0; 2],
            label_delay: Histogram::default(),
            multi: settings.multi_label.contains(name).then(Default::default),
            segments: Vec::new(),
            segment_index: FxHashMap::default(),
            segment_overflow: 0,
        };
        for c in &configured {
            state.intern(c);
        }
        let id = self.models.len() as u32;
        self.model_index.insert(name.to_string(), id);
        self.models.push(state);
        id
    }

    /// [`Engine::admit`] for a multi-label event (extension E7): the classes of both sets
    /// new to the model count once against `limits.max_classes`. Returns each present
    /// set as sorted class indices.
    #[allow(clippy::type_complexity)]
    pub fn admit_sets(
        &mut self,
        model: &str,
        sets: &ClassSets<'_>,
    ) -> Result<(u32, [Option<Vec<u32>>; 2]), Rejection> {
        let settings = self.settings.as_ref().expect("settings");
        let existing = self.model_index.get(model).copied();
        if existing.is_none() && self.models.len() >= settings.max_models {
            return Err(Rejection::ModelLimit);
        }
        let state = existing.map(|m| &self.models[m as usize]);
        let mut new: Vec<&str> = Vec::new();
        for c in sets.iter().flatten().flatten() {
            let known = state.is_some_and(|s| s.class_index.contains_key(c.as_ref()));
            if !known && !new.contains(&c.as_ref()) {
                new.push(c);
            }
        }
        let have = state.map_or(0, |s| s.classes.len());
        if have + new.len() > settings.max_classes {
            return Err(Rejection::ClassLimit);
        }
        let m = match existing {
            Some(m) => m,
            None => self.create_model(model),
        };
        let state = &mut self.models[m as usize];
        let ids = sets.each_ref().map(|set| {
            set.as_ref().map(|set| {
                let mut ids: Vec<u32> = set.iter().map(|c| state.intern(c)).collect();
                ids.sort_unstable();
                ids
            })
        });
        Ok((m, ids))
    }

    /// Counts one multi-label sample (extension E7): class sets as sorted indices.
    pub fn record_multi(&mut self, model: u32, time_ns: i64, predicted: &[u32], actual: &[u32]) {
        self.advance_watermark(time_ns);
        let bucket = self.bucket_of(time_ns);
        let head = self.watermark_bucket.expect("set above");
        let m = &mut self.models[model as usize];
        let t = &mut m.totals;
        t.samples += 1;
        t.first_ns = Some(t.first_ns.map_or(time_ns, |f| f.min(time_ns)));
        t.last_ns = Some(t.last_ns.map_or(time_ns, |l| l.max(time_ns)));
        let span = m.ring.span();
        let multi = m.multi.as_mut().expect("a multi-label model");
        if !multi.record(head, span, bucket, predicted, actual) {
            m.late_samples += 1;
        }
    }

    fn bucket_of(&self, t_ns: i64) -> i64 {
        t_ns.div_euclid(self.settings().bucket_ns)
    }

    /// Moves the watermark forward to `t_ns` (never back): the newest sample time, or in
    /// the daemon also the wall clock.
    pub fn advance_watermark(&mut self, t_ns: i64) {
        if self.watermark_ns.is_none_or(|w| t_ns > w) {
            self.watermark_ns = Some(t_ns);
            self.watermark_bucket = Some(self.bucket_of(t_ns));
        }
    }

    pub fn record(&mut self, s: Sample) {
        self.record_in(s, NO_SEGMENT);
    }

    /// [`Engine::record`] of a sample of segment `segment` (an id from
    /// [`Engine::segment_id`], or [`NO_SEGMENT`]): counted in the model, and once more
    /// in the segment (extension E4).
    pub fn record_in(&mut self, s: Sample, segment: u32) {
        self.advance_watermark(s.time_ns);
        let bucket = self.bucket_of(s.time_ns);
        let head = self.watermark_bucket.expect("set above");
        let m = &mut self.models[s.model as usize];
        let ranked = s.positive.map(|(score, positive)| Ranked {
            bin: ranking::bin_of(score),
            positive,
            hits: thresholds::hits(&m.thresholds, score, positive),
        });
        let placement = count(&mut m.totals, &mut m.ring, head, bucket, &s, &ranked);
        if placement == Placement::Late {
            m.late_samples += 1;
        }
        if let Some(seg) = m.segments.get_mut(segment as usize) {
            count(&mut seg.totals, &mut seg.ring, head, bucket, &s, &ranked);
        }
    }

    /// The id of segment `name` of model `model`, which takes a slot the first time:
    /// beyond `limits.max_segments` a new name goes to [`OVERFLOW_SEGMENT`] instead
    /// (counted in [`ModelState::segment_overflow`], logged rate-limited). Call it for
    /// accepted events only, so that a rejected event takes no slot.
    pub fn segment_id(&mut self, model: u32, name: &str) -> u32 {
        let settings = self.settings.as_ref().expect("settings");
        let m = &mut self.models[model as usize];
        if let Some(&s) = m.segment_index.get(name) {
            return s;
        }
        let name = if m.segments.len() < settings.max_segments {
            name
        } else {
            m.segment_overflow += 1;
            // Powers of two: a handful of lines for any number of events.
            if m.segment_overflow.is_power_of_two() {
                tracing::warn!(
                    model = %m.name,
                    segment = %name,
                    events = m.segment_overflow,
                    max_segments = settings.max_segments,
                    "segments beyond limits.max_segments are counted as {OVERFLOW_SEGMENT}"
                );
            }
            if let Some(&s) = m.segment_index.get(OVERFLOW_SEGMENT) {
                return s;
            }
            OVERFLOW_SEGMENT
        };
        let stride = m.totals.cells.stride();
        let id = m.segments.len() as u32;
        m.segments.push(Segment {
            name: name.to_string(),
            totals: Totals {
                cells: Dense::with_stride(stride),
                estimate: FloatDense::with_stride(stride),
                ..Default::default()
            },
            reference: None,
            ring: Ring::new(&settings.window_lengths(), stride),
        });
        m.segment_index.insert(name.to_string(), id);
        id
    }

    /// Counts an accepted prediction of class `predicted` at `time_ns` on arrival, with
    /// its drift score (see [`drift`]): in `all`, the windows and the reference, of the
    /// model and of its segment `segment` (unless [`NO_SEGMENT`]). Call it after
    /// recording the sample the event completes, if any.
    pub fn record_prediction(
        &mut self,
        model: u32,
        segment: u32,
        predicted: u32,
        time_ns: i64,
        score: Option<f64>,
    ) {
        let bucket = self.bucket_of(time_ns);
        let settings = self.settings.as_ref().expect("settings");
        let head = self.watermark_bucket;
        let bin = score.map(drift::score_bin);
        let (bucket_ns, reference_ns) = (settings.bucket_ns, settings.reference_ns);
        let m = &mut self.models[model as usize];
        let count = |totals: &mut Totals, ring: &mut Ring, reference: &mut Option<_>| {
            totals.drift.add(predicted, bin);
            drift::Reference::begin_or_get(reference, bucket, bucket_ns, reference_ns)
                .observe(time_ns, predicted, bin);
            if let Some(head) = head {
                ring.advance_to(head);
                ring.record_prediction(bucket, predicted, bin);
            }
        };
        count(&mut m.totals, &mut m.ring, &mut m.reference);
        if let Some(s) = m.segments.get_mut(segment as usize) {
            count(&mut s.totals, &mut s.ring, &mut s.reference);
        }
    }

    /// The drift score of a prediction of class `predicted` with scores `pairs`: the
    /// positive class's score for a model with one, else the predicted class's; 0 when
    /// absent; duplicates: the last wins (as [`Engine::score_facts`] reads them).
    pub fn drift_score<'a>(
        &self,
        model: u32,
        predicted: u32,
        pairs: impl Iterator<Item = (&'a str, f64)>,
    ) -> f64 {
        let m = &self.models[model as usize];
        let target = m
            .positive_name
            .as_deref()
            .unwrap_or_else(|| m.class_name(predicted));
        pairs
            .filter(|(k, _)| *k == target)
            .last()
            .map_or(0.0, |(_, p)| p)
    }

    /// Adds the expected cells of an unlabelled prediction of class `predicted` at
    /// `time_ns` with scores `pairs` (class name, p); see [`estimate`]. Returns the tag
    /// the pending half keeps, which says nothing was added when no known class has a
    /// positive score.
    pub fn hold_estimate<'a>(
        &mut self,
        model: u32,
        segment: u32,
        predicted: u32,
        time_ns: i64,
        pairs: impl Iterator<Item = (&'a str, f64)>,
    ) -> EstimateTag {
        let bucket = self.bucket_of(time_ns);
        let m = &mut self.models[model as usize];
        let known = m.classes.len().min(u16::MAX as usize - 1) as u32;
        let (scratch, column) = &mut self.scratch;
        let (index, cache, n) = (&m.class_index, &mut m.key_cache, m.classes.len());
        let id = |i, c: &str| cache.index(i, c, n, |c| index.get(c).copied());
        estimate::column(pairs, id, known, scratch, column);
        if column.is_empty() {
            return EstimateTag::default();
        }
        let mut offset = OUTSIDE_RING;
        // The model and its segment: their rings share the head (the watermark's
        // bucket), so the one offset places the estimate alike in both.
        for (t, ring) in m.scopes_mut(segment) {
            if let Some(head) = self.watermark_bucket {
                ring.advance_to(head);
            }
            for &(a, v) in column.iter() {
                t.estimate.add(a, predicted, v);
            }
            t.estimated += 1;
            offset = match ring.estimate_placement(bucket) {
                Some(placed) if bucket - placed < OUTSIDE_RING as i64 => {
                    ring.add_estimate(placed, predicted, column, 1.0);
                    (bucket - placed) as u16
                }
                _ => OUTSIDE_RING,
            };
        }
        EstimateTag {
            known: known as u16,
            offset,
        }
    }

    /// Takes back the estimate [`Engine::hold_estimate`] added for a prediction whose
    /// label has now joined: the same `predicted`, `time_ns`, scores and tag.
    pub fn release_estimate<'a>(
        &mut self,
        model: u32,
        segment: u32,
        predicted: u32,
        time_ns: i64,
        tag: EstimateTag,
        pairs: impl Iterator<Item = (&'a str, f64)>,
    ) {
        if !tag.is_some() {
            return;
        }
        let bucket = self.bucket_of(time_ns);
        let m = &mut self.models[model as usize];
        let (scratch, column) = &mut self.scratch;
        let (index, cache, n) = (&m.class_index, &mut m.key_cache, m.classes.len());
        let id = |i, c: &str| cache.index(i, c, n, |c| index.get(c).copied());
        estimate::column(pairs, id, tag.known as u32, scratch, column);
        if column.is_empty() {
            return;
        }
        for (t, ring) in m.scopes_mut(segment) {
            if let Some(head) = self.watermark_bucket {
                ring.advance_to(head);
            }
            for &(a, v) in column.iter() {
                t.estimate.add(a, predicted, -v);
            }
            t.estimated = t.estimated.saturating_sub(1);
            if tag.offset != OUTSIDE_RING {
                // A bucket that has left the ring since took its estimate out of every
                // window.
                ring.add_estimate(bucket - tag.offset as i64, predicted, column, -1.0);
            }
        }
    }

    /// The probabilities `pairs` (class name, p) give the actual and the predicted
    /// class, and their sum of squares; duplicates: the last wins.
    pub fn score_facts<'a>(
        &mut self,
        model: u32,
        actual: u32,
        predicted: u32,
        pairs: impl Iterator<Item = (&'a str, f64)>,
    ) -> ScoreFacts {
        let m = &mut self.models[model as usize];
        let n = m.classes.len();
        let scratch = &mut self.scratch.0;
        scratch.clear();
        scratch.resize(n, -1.0);
        // Keys that are no class of the model (yet): rare, compared by name.
        let mut unknown: Vec<(&str, f64)> = Vec::new();
        let (index, cache) = (&m.class_index, &mut m.key_cache);
        for (i, (name, p)) in pairs.enumerate() {
            match cache.index(i, name, n, |c| index.get(c).copied()) {
                Some(c) => scratch[c as usize] = p,
                None => match unknown.iter_mut().find(|(k, _)| *k == name) {
                    Some(u) => u.1 = p,
                    None => unknown.push((name, p)),
                },
            }
        }
        let at = |c: u32| scratch[c as usize].max(0.0);
        let squares = |ps: &mut dyn Iterator<Item = f64>| ps.map(|p| p * p).sum::<f64>();
        if m.positive.is_none() {
            if let Some(name) = &m.positive_name {
                m.positive = m.class_index.get(name).copied();
            }
        }
        let positive = match (m.positive, &m.positive_name) {
            (Some(c), _) => Some((at(c), c == actual)),
            (None, Some(name)) => {
                let p = unknown.iter().find(|(k, _)| *k == name.as_str());
                Some((p.map_or(0.0, |u| u.1), false))
            }
            (None, None) => None,
        };
        ScoreFacts {
            positive,
            p_actual: at(actual),
            p_predicted: at(predicted),
            sum_squares: squares(&mut scratch.iter().copied().filter(|&p| p >= 0.0))
                + squares(&mut unknown.iter().map(|u| u.1)),
        }
    }

    pub fn observe_label_delay(&mut self, model: u32, seconds: f64) {
        self.models[model as usize].label_delay.observe(seconds);
    }

    pub fn count_expired(&mut self, model: u32, side: Side) {
        self.models[model as usize].join_expired[side as usize] += 1;
    }

    /// The end (exclusive, ns) of the watermark's bucket.
    pub fn watermark_bucket_end_ns(&self) -> Option<i64> {
        self.watermark_bucket
            .map(|b| (b + 1) * self.settings().bucket_ns)
    }

    /// Computes every Section 2 figure and the alerts for one model and scope.
    pub fn model_stats(&mut self, model: u32, scope: ScopeId) -> ModelStats {
        let alerts = self.settings.as_ref().expect("settings").alerts.clone();
        self.with_scope(model, NO_SEGMENT, scope, |view| {
            stats::compute(view, &alerts)
        })
    }

    /// [`Engine::model_stats`] over the samples of one segment of the model (E4).
    pub fn segment_stats(&mut self, model: u32, segment: u32, scope: ScopeId) -> ModelStats {
        let alerts = self.settings.as_ref().expect("settings").alerts.clone();
        self.with_scope(model, segment, scope, |view| stats::compute(view, &alerts))
    }

    /// Copies one model's counts in one scope, for [`ScopeCounts::compute`] outside the
    /// engine lock.
    pub fn scope_counts(&mut self, model: u32, scope: ScopeId) -> ScopeCounts {
        self.with_scope(model, NO_SEGMENT, scope, |view| view.to_counts())
    }

    /// [`Engine::scope_counts`] of one segment of the model (E4).
    pub fn segment_counts(&mut self, model: u32, segment: u32, scope: ScopeId) -> ScopeCounts {
        self.with_scope(model, segment, scope, |view| view.to_counts())
    }

    /// The alert thresholds [`ScopeCounts::compute`] needs.
    pub fn alert_thresholds(&self) -> &AlertThresholds {
        &self.settings.as_ref().expect("settings").alerts
    }

    /// Calls `f` with one scope of the model, or of its segment `segment` when that is
    /// not [`NO_SEGMENT`].
    fn with_scope<R>(
        &mut self,
        model: u32,
        segment: u32,
        scope: ScopeId,
        f: impl FnOnce(&Scope) -> R,
    ) -> R {
        let settings = self.settings.as_ref().expect("settings");
        let bucket_secs = settings.bucket_ns as f64 / 1e9;
        let m = &mut self.models[model as usize];
        if let Some(head) = self.watermark_bucket {
            m.ring.advance_to(head);
            if let Some(s) = m.segments.get_mut(segment as usize) {
                s.ring.advance_to(head);
            }
        }
        let in_segment = m.segments.get(segment as usize).is_some();
        let (totals, ring) = match m.segments.get(segment as usize) {
            Some(s) => (&s.totals, &s.ring),
            None => (&m.totals, &m.ring),
        };
        let classes = m.classes.len();
        if m.positive.is_none() {
            if let Some(name) = &m.positive_name {
                m.positive = m.class_index.get(name).copied();
            }
        }
        let positive = m.positive;
        let reference = match m.segments.get(segment as usize) {
            Some(s) => s.reference.as_ref(),
            None => m.reference.as_ref(),
        };
        let window_calibration;
        let window_multi;
        let view = match scope {
            ScopeId::All => {
                let t = totals;
                let span = match (t.first_ns, t.last_ns) {
                    (Some(f), Some(l)) => (l - f) as f64 / 1e9,
                    _ => 0.0,
                };
                Scope {
                    cells: &t.cells,
                    classes,
                    configured: m.configured,
                    names: &m.classes,
                    samples: t.samples,
                    scored: t.scored,
                    loss_sum: t.loss.value(),
                    seconds: span,
                    expected: &t.estimate,
                    unlabelled: t.estimated,
                    calibration: &t.calibration,
                    ranking: positive.map(|p| (&t.ranking, p)),
                    thresholds: (&m.thresholds, &t.thresholds),
                    multi: m.multi.as_ref().filter(|_| !in_segment).map(|x| &x.totals),
                    drift: (&t.drift, reference),
                }
            }
            ScopeId::Window(w) => {
                let s = ring.window_stats(w);
                window_calibration = ring.window_calibration(w);
                let sums = &ring.windows[w];
                // Multi-label counts are per model only, not per segment (E4, E7).
                window_multi = m
                    .multi
                    .as_ref()
                    .filter(|_| !in_segment)
                    .map(|x| x.window(self.watermark_bucket, sums.buckets));
                Scope {
                    cells: &sums.cells,
                    classes,
                    configured: m.configured,
                    names: &m.classes,
                    samples: s.samples,
                    scored: s.scored,
                    loss_sum: s.loss.value(),
                    seconds: sums.buckets as f64 * bucket_secs,
                    expected: &sums.estimate,
                    unlabelled: sums.estimated,
                    calibration: &window_calibration,
                    ranking: positive.map(|p| (&sums.ranking, p)),
                    thresholds: (&m.thresholds, &sums.thresholds),
                    multi: window_multi.as_ref(),
                    drift: (&sums.drift, reference),
                }
            }
        };
        f(&view)
    }

    /// The scope of each configured window label, in configuration order.
    pub fn scopes(&self) -> Vec<(String, ScopeId)> {
        let mut windowed = 0;
        self.settings()
            .windows
            .iter()
            .map(|w| {
                let scope = if w.buckets.is_some() {
                    windowed += 1;
                    ScopeId::Window(windowed - 1)
                } else {
                    ScopeId::All
                };
                (w.label.clone(), scope)
            })
            .collect()
    }
}
