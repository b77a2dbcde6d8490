//! The Prometheus exposition (contract Section 6). Windowed gauges are computed at
//! scrape time: [`EngineCollector::collect`] copies the numbers it needs under a short
//! lock ([`ScrapeData::capture`]) and builds the metric families outside it, so a
//! scrape never holds ingestion up for longer than the copy.

use std::fmt::Write as _;
use std::sync::{Arc, Mutex};

use prometheus::core::{Collector, Desc};
use prometheus::proto::{
    Bucket, Counter, Gauge, Histogram, LabelPair, Metric, MetricFamily, MetricType,
};

use crate::config::AlertThresholds;
use crate::engine::alerts::AlertKind;
use crate::engine::stats::{ModelStats, ScopeCounts};
use crate::engine::{Histogram as DelayHistogram, LABEL_DELAY_BUCKETS};
use crate::event::Rejection;
use crate::pipeline::SourceCounters;
use crate::source::SourceStatus;

use super::Shared;

/// One model as a scrape sees it.
pub struct ModelData {
    pub name: String,
    pub classes: Vec<String>,
    pub samples: u64,
    pub confusion: Vec<(u32, u32, u64)>,
    pub late: u64,
    pub expired: [u64; 2],
    pub pending: [u64; 2],
    pub label_delay: DelayHistogram,
    /// (window label, stats) per configured window.
    pub scopes: Vec<(String, ModelStats)>,
    /// Events whose segment went to `__other__` beyond `limits.max_segments` (E4).
    pub segment_overflow: u64,
}

/// The segments of every model (extension E4) as models of their own, so that the
/// model families render them: `models[i].name` is `i`, an index into `names`.
pub struct SegmentData {
    pub names: Arc<[(String, String)]>,
    pub models: ScrapeData,
}

/// Everything one scrape renders, copied out of the engine.
pub struct ScrapeData {
    pub sources: Vec<SourceCounters>,
    pub up: Vec<bool>,
    pub lag: Vec<((String, i32), i64)>,
    pub models: Vec<ModelData>,
    pub snapshot_failures: u64,
    pub snapshot_last_success: Option<f64>,
    pub segments: Option<Box<SegmentData>>,
    /// The alert kinds evaluated, each with a `predmon_alert` series per scope.
    pub alert_kinds: Vec<AlertKind>,
}

/// What a scrape copies under the engine lock; [`ScrapeCopy::compute`] turns it into
/// [`ScrapeData`] after the lock is released.
pub struct ScrapeCopy {
    data: ScrapeData,
    counts: Vec<Vec<(String, ScopeCounts)>>,
    /// Per segment, in the order of `data.segments` (extension E4).
    segment_counts: Vec<Vec<(String, ScopeCounts)>>,
    alerts: AlertThresholds,
}

impl ScrapeCopy {
    /// Computes every figure and alert of every model and scope.
    pub fn compute(self) -> ScrapeData {
        let ScrapeCopy {
            mut data,
            counts,
            segment_counts,
            alerts,
        } = self;
        let segments = data.segments.as_mut().map(|s| &mut s.models.models[..]);
        let all = data.models.iter_mut().chain(segments.into_iter().flatten());
        for (model, scopes) in all.zip(counts.into_iter().chain(segment_counts)) {
            model.scopes = scopes
                .into_iter()
                .map(|(label, c)| (label, c.compute(&alerts)))
                .collect();
        }
        data
    }
}

impl ScrapeData {
    pub fn capture(shared: &Mutex<Shared>, statuses: &[Arc<SourceStatus>]) -> ScrapeData {
        Self::copy(shared, statuses).compute()
    }

    /// The part of [`ScrapeData::capture`] that holds the engine lock: copies only, so
    /// that a scrape holds up ingestion for as short a time as possible.
    pub fn copy(shared: &Mutex<Shared>, statuses: &[Arc<SourceStatus>]) -> ScrapeCopy {
        let mut guard = super::lock_for_reading(shared);
        let shared = &mut *guard;
        let p = &mut shared.pipeline;
        let scopes = p.engine.scopes();
        let alerts = p.engine.alert_thresholds().clone();
        let mut models = Vec::with_capacity(p.engine.models().len());
        let mut counts = Vec::with_capacity(p.engine.models().len());
        let (mut segment_names, mut segment_models) = (Vec::new(), Vec::new());
        let mut segment_counts = Vec::new();
        for m in 0..p.engine.models().len() as u32 {
            for s in 0..p.engine.model(m).segments().len() as u32 {
                segment_counts.push(
                    scopes
                        .iter()
                        .map(|(label, scope)| {
                            (label.clone(), p.engine.segment_counts(m, s, *scope))
                        })
                        .collect::<Vec<_>>(),
                );
                let state = p.engine.model(m);
                let segment = &state.segments()[s as usize];
                segment_models.push(ModelData {
                    name: segment_names.len().to_string(),
                    classes: state.class_names().to_vec(),
                    samples: segment.samples(),
                    confusion: Vec::new(),
                    late: 0,
                    expired: [0; 2],
                    pending: [0; 2],
                    label_delay: DelayHistogram::default(),
                    scopes: Vec::new(),
                    segment_overflow: 0,
                });
                segment_names.push((state.name.clone(), segment.name.clone()));
            }
            counts.push(
                scopes
                    .iter()
                    .map(|(label, scope)| (label.clone(), p.engine.scope_counts(m, *scope)))
                    .collect::<Vec<_>>(),
            );
            let state = p.engine.model(m);
            models.push(ModelData {
                name: state.name.clone(),
                classes: state.class_names().to_vec(),
                samples: state.samples(),
                confusion: state.confusion_totals().collect(),
                late: state.late_samples,
                expired: state.join_expired,
                pending: p.join.pending_of(m),
                label_delay: state.label_delay.clone(),
                scopes: Vec::new(),
                segment_overflow: state.segment_overflow,
            });
        }
        let segments = (!segment_names.is_empty()).then(|| {
            Box::new(SegmentData {
                names: segment_names.into(),
                models: ScrapeData {
                    sources: Vec::new(),
                    up: Vec::new(),
                    lag: Vec::new(),
                    models: segment_models,
                    snapshot_failures: 0,
                    snapshot_last_success: None,
                    segments: None,
                    alert_kinds: AlertKind::evaluated(&alerts).collect(),
                },
            })
        });
        let data = ScrapeData {
            sources: p.sources.clone(),
            up: statuses.iter().map(|s| s.is_up()).collect(),
            lag: statuses.iter().flat_map(|s| s.lag()).collect(),
            models,
            snapshot_failures: shared.snapshot_failures,
            snapshot_last_success: shared.snapshot_last_success,
            segments,
            alert_kinds: AlertKind::evaluated(&alerts).collect(),
        };
        ScrapeCopy {
            data,
            counts,
            segment_counts,
            alerts,
        }
    }
}

/// Builds one metric family at a time, keeping label values beside their names.
struct Family {
    /// Name, help and type; the metrics too in [`Format::Proto`].
    mf: MetricFamily,
    format: Format,
    /// The sample lines in [`Format::Text`].
    text: String,
    samples: usize,
    /// For a segment family (extension E4): the (model, segment) names that the
    /// `model` label's value (an index) stands for.
    segments: Option<Arc<[(String, String)]>>,
}

fn label(name: &str, value: &str) -> LabelPair {
    let mut l = LabelPair::default();
    l.set_name(name.to_string());
    l.set_value(value.to_string());
    l
}

/// What a [`Family`] builds: protobuf metrics for the [`Collector`] interface, or the
/// text exposition lines directly. `/metrics` uses text: at 20 models x 20 classes x
/// 4 windows (~21,000 samples) the protobuf messages, with two `String`s per label,
/// took most of the render time and left megabytes of freed memory behind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    Proto,
    Text,
}

/// The families built so far, and in which format.
struct Out {
    format: Format,
    families: Vec<Family>,
    /// Set while the model families are built over segments (extension E4).
    segments: Option<Arc<[(String, String)]>>,
}

impl Out {
    fn new(format: Format) -> Out {
        Out {
            format,
            families: Vec::new(),
            segments: None,
        }
    }

    fn family(&self, name: &str, help: &str, kind: MetricType) -> Family {
        match &self.segments {
            None => Family::new(self.format, name, help, kind),
            Some(names) => {
                let name = name.replacen("predmon_", "predmon_segment_", 1);
                let help = format!("Per segment: {help}");
                let mut f = Family::new(self.format, &name, &help, kind);
                f.segments = Some(names.clone());
                f
            }
        }
    }
}

impl Family {
    fn new(format: Format, name: &str, help: &str, kind: MetricType) -> Family {
        let mut mf = MetricFamily::default();
        mf.set_name(name.to_string());
        mf.set_help(help.to_string());
        mf.set_field_type(kind);
        Family {
            mf,
            format,
            text: String::new(),
            samples: 0,
            segments: None,
        }
    }

    /// The label pairs as exported: in a segment family, `model` (an index) becomes
    /// the model's name and the segment's.
    fn expand<'p>(&'p self, pairs: &[(&'p str, &'p str)]) -> Vec<(&'p str, &'p str)> {
        let mut out = Vec::with_capacity(pairs.len() + 1);
        for &(name, value) in pairs {
            match (&self.segments, name) {
                (Some(names), "model") => {
                    let (model, segment) = &names[value.parse::<usize>().expect("an index")];
                    out.push(("model", model.as_str()));
                    out.push(("segment", segment.as_str()));
                }
                _ => out.push((name, value)),
            }
        }
        out
    }

    fn labels(&self, pairs: &[(&str, &str)]) -> Vec<LabelPair> {
        self.expand(pairs)
            .iter()
            .map(|(n, v)| label(n, v))
            .collect()
    }

    /// One sample line, exactly as prometheus' `TextEncoder` writes it.
    fn line(&mut self, suffix: &str, pairs: &[(&str, &str)], le: Option<&str>, v: f64) {
        if self.segments.is_some() {
            let expanded: Vec<(String, String)> = self
                .expand(pairs)
                .into_iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
            let expanded: Vec<(&str, &str)> = expanded
                .iter()
                .map(|(n, v)| (n.as_str(), v.as_str()))
                .collect();
            let segments = self.segments.take();
            self.line(suffix, &expanded, le, v);
            self.segments = segments;
            return;
        }
        let t = &mut self.text;
        t.push_str(self.mf.name());
        t.push_str(suffix);
        if !pairs.is_empty() || le.is_some() {
            let mut sep = '{';
            for (name, value) in pairs.iter().chain(le.map(|le| ("le", le)).iter()) {
                t.push(sep);
                t.push_str(name);
                t.push_str("=\"");
                escape_into(t, value, true);
                t.push('"');
                sep = ',';
            }
            t.push('}');
        }
        let _ = write!(t, " {v}");
        t.push('\n');
    }

    fn gauge(&mut self, pairs: &[(&str, &str)], v: f64) {
        self.samples += 1;
        if self.format == Format::Text {
            return self.line("", pairs, None, v);
        }
        let mut g = Gauge::default();
        g.set_value(v);
        let mut m = Metric::from_label(self.labels(pairs));
        m.set_gauge(g);
        self.mf.mut_metric().push(m);
    }

    fn counter(&mut self, pairs: &[(&str, &str)], v: f64) {
        self.samples += 1;
        if self.format == Format::Text {
            return self.line("", pairs, None, v);
        }
        let mut c = Counter::default();
        c.set_value(v);
        let mut m = Metric::from_label(self.labels(pairs));
        m.set_counter(c);
        self.mf.mut_metric().push(m);
    }

    fn histogram(&mut self, pairs: &[(&str, &str)], h: &DelayHistogram) {
        self.samples += 1;
        if self.format == Format::Text {
            let mut cumulative = 0;
            for (i, bound) in LABEL_DELAY_BUCKETS.iter().enumerate() {
                cumulative += h.counts.get(i).copied().unwrap_or(0);
                self.line(
                    "_bucket",
                    pairs,
                    Some(&bound.to_string()),
                    cumulative as f64,
                );
            }
            self.line("_bucket", pairs, Some("+Inf"), h.count as f64);
            self.line("_sum", pairs, None, h.sum);
            return self.line("_count", pairs, None, h.count as f64);
        }
        let mut out = Histogram::default();
        let mut cumulative = 0;
        let mut buckets = Vec::with_capacity(LABEL_DELAY_BUCKETS.len());
        for (i, bound) in LABEL_DELAY_BUCKETS.iter().enumerate() {
            cumulative += h.counts.get(i).copied().unwrap_or(0);
            let mut b = Bucket::default();
            b.set_upper_bound(*bound);
            b.set_cumulative_count(cumulative);
            buckets.push(b);
        }
        out.set_bucket(buckets);
        out.set_sample_count(h.count);
        out.set_sample_sum(h.sum);
        let mut m = Metric::from_label(self.labels(pairs));
        m.set_histogram(out);
        self.mf.mut_metric().push(m);
    }

    fn done(self, out: &mut Out) {
        let wanted = self.segments.is_none() || SEGMENT_FAMILIES.contains(&self.mf.name());
        if self.samples > 0 && wanted {
            out.families.push(self);
        }
    }

    /// The family's `# HELP`, `# TYPE` and sample lines (text format only).
    fn write_text(&self, buf: &mut String) {
        if !self.mf.help().is_empty() {
            buf.push_str("# HELP ");
            buf.push_str(self.mf.name());
            buf.push(' ');
            escape_into(buf, self.mf.help(), false);
            buf.push('\n');
        }
        buf.push_str("# TYPE ");
        buf.push_str(self.mf.name());
        buf.push_str(match self.mf.get_field_type() {
            MetricType::COUNTER => " counter\n",
            MetricType::GAUGE => " gauge\n",
            MetricType::HISTOGRAM => " histogram\n",
            MetricType::SUMMARY => " summary\n",
            MetricType::UNTYPED => " untyped\n",
        });
        buf.push_str(&self.text);
    }
}

/// Appends `v` escaped as the text format wants: `\\`, `\n`, and `\"` in label values.
fn escape_into(buf: &mut String, v: &str, quote: bool) {
    let special = |c: char| c == '\\' || c == '\n' || (quote && c == '"');
    if !v.contains(special) {
        buf.push_str(v);
        return;
    }
    for c in v.chars() {
        match c {
            '\\' => buf.push_str("\\\\"),
            '\n' => buf.push_str("\\n"),
            '"' if quote => buf.push_str("\\\""),
            c => buf.push(c),
        }
    }
}

/// The families of contract Section 6 (besides build info and process metrics).
pub fn families(d: &ScrapeData) -> Vec<MetricFamily> {
    build(d, Format::Proto).into_iter().map(|f| f.mf).collect()
}

fn build(d: &ScrapeData, format: Format) -> Vec<Family> {
    use MetricType::{COUNTER, GAUGE};
    let mut out = Out::new(format);

    let mut events = out.family(
        "predmon_events_total",
        "Events read, accepted or rejected.",
        COUNTER,
    );
    let mut rejected = out.family(
        "predmon_events_rejected_total",
        "Events rejected, by reason.",
        COUNTER,
    );
    for s in &d.sources {
        events.counter(&[("source", &s.name)], s.read as f64);
        for r in Rejection::ALL {
            rejected.counter(
                &[("source", &s.name), ("reason", r.code())],
                s.rejected[r.index()] as f64,
            );
        }
    }
    events.done(&mut out);
    rejected.done(&mut out);

    let mut up = out.family(
        "predmon_source_up",
        "1 while the source is open and connected.",
        GAUGE,
    );
    for (s, is_up) in d.sources.iter().zip(&d.up) {
        up.gauge(&[("source", &s.name)], if *is_up { 1.0 } else { 0.0 });
    }
    up.done(&mut out);
    let mut lag = out.family(
        "predmon_kafka_consumer_lag",
        "Messages behind the partition's high watermark.",
        GAUGE,
    );
    for ((topic, partition), v) in &d.lag {
        lag.gauge(
            &[("topic", topic), ("partition", &partition.to_string())],
            *v as f64,
        );
    }
    lag.done(&mut out);

    let mut samples = out.family("predmon_samples_total", "Joined samples counted.", COUNTER);
    let mut confusion = out.family(
        "predmon_confusion_total",
        "Samples by actual and predicted class.",
        COUNTER,
    );
    let mut expired = out.family(
        "predmon_join_expired_total",
        "Pending halves that expired unmatched.",
        COUNTER,
    );
    let mut late = out.family(
        "predmon_late_samples_total",
        "Samples older than the longest window.",
        COUNTER,
    );
    let mut pending = out.family(
        "predmon_join_pending",
        "Halves waiting for their other half.",
        GAUGE,
    );
    let mut delay = out.family(
        "predmon_label_delay_seconds",
        "Label time minus prediction time.",
        MetricType::HISTOGRAM,
    );
    for m in &d.models {
        let model = m.name.as_str();
        samples.counter(&[("model", model)], m.samples as f64);
        for &(a, p, n) in &m.confusion {
            confusion.counter(
                &[
                    ("model", model),
                    ("actual", &m.classes[a as usize]),
                    ("predicted", &m.classes[p as usize]),
                ],
                n as f64,
            );
        }
        for (i, side) in ["prediction", "label"].iter().enumerate() {
            expired.counter(&[("model", model), ("side", side)], m.expired[i] as f64);
            pending.gauge(&[("model", model), ("side", side)], m.pending[i] as f64);
        }
        late.counter(&[("model", model)], m.late as f64);
        delay.histogram(&[("model", model)], &m.label_delay);
    }
    for f in [samples, confusion, expired, late, pending, delay] {
        f.done(&mut out);
    }

    window_families(d, &mut out);
    segment_families(d, &mut out);

    let mut failures = out.family(
        "predmon_state_snapshot_failures_total",
        "State snapshots that could not be written.",
        COUNTER,
    );
    failures.counter(&[], d.snapshot_failures as f64);
    failures.done(&mut out);
    if let Some(t) = d.snapshot_last_success {
        let mut last = out.family(
            "predmon_state_snapshot_last_success_timestamp_seconds",
            "When the last state snapshot was written.",
            GAUGE,
        );
        last.gauge(&[], t);
        last.done(&mut out);
    }
    out.families
}

/// The model families also exported per segment (extension E4): every windowed gauge
/// of contract Section 6, and the extensions' gauges without a per-class, per-bin or
/// per-threshold label, which would multiply the series by more than the segments.
const SEGMENT_FAMILIES: [&str; 29] = [
    "predmon_segment_window_samples",
    "predmon_segment_accuracy",
    "predmon_segment_balanced_accuracy",
    "predmon_segment_majority_baseline_accuracy",
    "predmon_segment_log_loss",
    "predmon_segment_samples_per_second",
    "predmon_segment_imbalance_ratio",
    "predmon_segment_precision",
    "predmon_segment_recall",
    "predmon_segment_f1",
    "predmon_segment_class_precision",
    "predmon_segment_class_recall",
    "predmon_segment_class_f1",
    "predmon_segment_class_support",
    "predmon_segment_class_predicted",
    "predmon_segment_class_true_positives",
    "predmon_segment_alert",
    "predmon_segment_estimated_samples",
    "predmon_segment_estimated_unlabelled_samples",
    "predmon_segment_estimated_accuracy",
    "predmon_segment_estimated_precision",
    "predmon_segment_estimated_recall",
    "predmon_segment_estimated_f1",
    "predmon_segment_calibration_error",
    "predmon_segment_brier_score",
    "predmon_segment_roc_auc",
    "predmon_segment_pr_auc",
    "predmon_segment_prediction_psi",
    "predmon_segment_score_psi",
];

/// Extension E4: the segment counters, and [`SEGMENT_FAMILIES`] built by the model
/// families over the segments, with a `segment` label after `model`.
fn segment_families(d: &ScrapeData, out: &mut Out) {
    use MetricType::COUNTER;
    let mut overflow = out.family(
        "predmon_segment_overflow_total",
        "Events whose segment was new beyond limits.max_segments, counted as __other__.",
        COUNTER,
    );
    let Some(segments) = &d.segments else { return };
    for m in &d.models {
        overflow.counter(&[("model", &m.name)], m.segment_overflow as f64);
    }
    overflow.done(out);
    let mut inner = Out {
        format: out.format,
        families: Vec::new(),
        segments: Some(segments.names.clone()),
    };
    let mut samples = inner.family("predmon_samples_total", "Joined samples counted.", COUNTER);
    for m in &segments.models.models {
        samples.counter(&[("model", &m.name)], m.samples as f64);
    }
    // Not a windowed family: kept whatever the list says.
    if samples.samples > 0 {
        inner.families.push(samples);
    }
    window_families(&segments.models, &mut inner);
    out.families.append(&mut inner.families);
}

/// (metric name, help, value): one table row per gauge family.
type GaugeSpec<T> = (&'static str, &'static str, fn(&T) -> f64);

/// [`GaugeSpec`] whose value may be absent (no sample then).
type OptionalGaugeSpec<T> = (&'static str, &'static str, fn(&T) -> Option<f64>);

/// One family per row of `table`, with a sample per model and window where the row's
/// accessor, applied to `part` of that scope's figures, gives a value.
fn scope_gauges<T>(
    d: &ScrapeData,
    out: &mut Out,
    table: &[OptionalGaugeSpec<T>],
    part: impl Fn(&ModelStats) -> Option<&T>,
) {
    for &(name, help, value) in table {
        let mut f = out.family(name, help, MetricType::GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                if let Some(v) = part(s).and_then(value) {
                    f.gauge(&[("model", &m.name), ("window", window)], v);
                }
            }
        }
        f.done(out);
    }
}

fn window_families(d: &ScrapeData, out: &mut Out) {
    use MetricType::GAUGE;
    let model_gauges: [OptionalGaugeSpec<ModelStats>; 8] = [
        ("predmon_window_samples", "Samples in the window.", |s| {
            Some(s.samples as f64)
        }),
        (
            "predmon_accuracy",
            "Correct / samples (multi-label: predicted set = true set).",
            |s| Some(s.accuracy),
        ),
        (
            "predmon_balanced_accuracy",
            "Mean recall over classes with support.",
            |s| Some(s.balanced_accuracy),
        ),
        (
            "predmon_majority_baseline_accuracy",
            "Accuracy of always predicting the most frequent true class.",
            // Undefined for class sets (extension E7).
            |s| {
                s.multi_label
                    .is_none()
                    .then_some(s.majority_baseline_accuracy)
            },
        ),
        (
            "predmon_log_loss",
            "Mean log loss over samples with scores.",
            |s| s.log_loss,
        ),
        (
            "predmon_samples_per_second",
            "Samples per second in the window.",
            |s| Some(s.samples_per_second),
        ),
        (
            "predmon_imbalance_ratio",
            "Max support / min support over classes with support.",
            |s| Some(s.imbalance_ratio),
        ),
        (
            "predmon_hamming_loss",
            "Multi-label models: wrongly predicted or missed classes / (samples x classes).",
            |s| s.multi_label.map(|m| m.hamming_loss),
        ),
    ];
    scope_gauges(d, out, &model_gauges, |s| Some(s));
    let averages: [GaugeSpec<crate::engine::stats::Prf>; 3] = [
        (
            "predmon_precision",
            "Precision by average (micro, macro, weighted; samples for multi-label models).",
            |p| p.precision,
        ),
        (
            "predmon_recall",
            "Recall by average (micro, macro, weighted; samples for multi-label models).",
            |p| p.recall,
        ),
        (
            "predmon_f1",
            "F1 by average (micro, macro, weighted; samples for multi-label models).",
            |p| p.f1,
        ),
    ];
    for (name, help, value) in averages {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                let samples = s
                    .multi_label
                    .as_ref()
                    .map(|m| ("samples", &m.samples_average));
                for (avg, prf) in [
                    ("micro", &s.micro),
                    ("macro", &s.macro_),
                    ("weighted", &s.weighted),
                ]
                .into_iter()
                .chain(samples)
                {
                    f.gauge(
                        &[("model", &m.name), ("window", window), ("average", avg)],
                        value(prf),
                    );
                }
            }
        }
        f.done(out);
    }
    let per_class: [GaugeSpec<crate::engine::stats::ClassStats>; 6] = [
        ("predmon_class_precision", "Precision of the class.", |c| {
            c.prf.precision
        }),
        ("predmon_class_recall", "Recall of the class.", |c| {
            c.prf.recall
        }),
        ("predmon_class_f1", "F1 of the class.", |c| c.prf.f1),
        (
            "predmon_class_support",
            "True samples of the class (additive).",
            |c| c.support as f64,
        ),
        (
            "predmon_class_predicted",
            "Samples predicted as the class (additive).",
            |c| c.predicted as f64,
        ),
        (
            "predmon_class_true_positives",
            "Correctly predicted samples of the class (additive).",
            |c| c.tp as f64,
        ),
    ];
    for (name, help, value) in per_class {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                for c in &s.classes {
                    f.gauge(
                        &[
                            ("model", &m.name),
                            ("window", window),
                            ("class", &m.classes[c.class as usize]),
                        ],
                        value(c),
                    );
                }
            }
        }
        f.done(out);
    }
    estimated_families(d, out);
    calibration_families(d, out);
    ranking_families(d, out);
    threshold_families(d, out);
    drift_families(d, out);
    let mut alerts = out.family(
        "predmon_alert",
        "1 while the alert fires for the model, window and class.",
        GAUGE,
    );
    for m in &d.models {
        for (window, s) in &m.scopes {
            for &kind in &d.alert_kinds {
                let firing = |class: Option<u32>| {
                    s.alerts.iter().any(|a| a.kind == kind && a.class == class)
                };
                if kind.per_class() {
                    for c in &s.classes {
                        let v = if firing(Some(c.class)) { 1.0 } else { 0.0 };
                        alerts.gauge(
                            &[
                                ("model", &m.name),
                                ("window", window),
                                ("alert", kind.code()),
                                ("class", &m.classes[c.class as usize]),
                            ],
                            v,
                        );
                    }
                } else {
                    let v = if firing(None) { 1.0 } else { 0.0 };
                    alerts.gauge(
                        &[
                            ("model", &m.name),
                            ("window", window),
                            ("alert", kind.code()),
                            ("class", ""),
                        ],
                        v,
                    );
                }
            }
        }
    }
    alerts.done(out);
}

/// Extension E1: the estimate before labels, per model and window.
fn estimated_families(d: &ScrapeData, out: &mut Out) {
    use crate::engine::estimate::EstimatedStats;
    use MetricType::GAUGE;
    let model_gauges: [OptionalGaugeSpec<EstimatedStats>; 3] = [
        (
            "predmon_estimated_samples",
            "Labelled samples plus unlabelled predictions with scores in the estimate.",
            |e| Some(e.samples as f64),
        ),
        (
            "predmon_estimated_unlabelled_samples",
            "Predictions with scores still waiting for their label, counted by expectation.",
            |e| Some(e.unlabelled as f64),
        ),
        (
            "predmon_estimated_accuracy",
            "Estimated accuracy: labelled samples plus the expected cells of unlabelled ones.",
            |e| Some(e.accuracy),
        ),
    ];
    scope_gauges(d, out, &model_gauges, |s| Some(&s.estimated));
    let averages: [GaugeSpec<crate::engine::stats::Prf>; 3] = [
        (
            "predmon_estimated_precision",
            "Estimated precision by average (micro, macro, weighted).",
            |p| p.precision,
        ),
        (
            "predmon_estimated_recall",
            "Estimated recall by average (micro, macro, weighted).",
            |p| p.recall,
        ),
        (
            "predmon_estimated_f1",
            "Estimated F1 by average (micro, macro, weighted).",
            |p| p.f1,
        ),
    ];
    for (name, help, value) in averages {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                let e = &s.estimated;
                for (avg, prf) in [
                    ("micro", &e.micro),
                    ("macro", &e.macro_),
                    ("weighted", &e.weighted),
                ] {
                    f.gauge(
                        &[("model", &m.name), ("window", window), ("average", avg)],
                        value(prf),
                    );
                }
            }
        }
        f.done(out);
    }
    let per_class: [GaugeSpec<crate::engine::stats::Prf>; 3] = [
        (
            "predmon_estimated_class_precision",
            "Estimated precision of the class.",
            |p| p.precision,
        ),
        (
            "predmon_estimated_class_recall",
            "Estimated recall of the class.",
            |p| p.recall,
        ),
        (
            "predmon_estimated_class_f1",
            "Estimated F1 of the class.",
            |p| p.f1,
        ),
    ];
    for (name, help, value) in per_class {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                for (c, prf) in &s.estimated.classes {
                    f.gauge(
                        &[
                            ("model", &m.name),
                            ("window", window),
                            ("class", &m.classes[*c as usize]),
                        ],
                        value(prf),
                    );
                }
            }
        }
        f.done(out);
    }
}

/// Extension E2: calibration per model and window, with the reliability histogram as
/// additive per-bin sums.
fn calibration_families(d: &ScrapeData, out: &mut Out) {
    use crate::engine::calibration::{bin_label, Bin, CalibrationStats, BINS};
    use MetricType::GAUGE;
    let model_gauges: [OptionalGaugeSpec<CalibrationStats>; 2] = [
        (
            "predmon_calibration_error",
            "Expected calibration error over 15 equal-width confidence bins.",
            |c| c.ece,
        ),
        (
            "predmon_brier_score",
            "Mean multi-class Brier score over samples with scores.",
            |c| c.brier,
        ),
    ];
    scope_gauges(d, out, &model_gauges, |s| Some(&s.calibration));
    let labels: Vec<String> = (0..BINS).map(bin_label).collect();
    let per_bin: [GaugeSpec<Bin>; 3] = [
        (
            "predmon_calibration_bin_samples",
            "Samples with scores whose confidence falls in the bin (additive).",
            |b| b.samples as f64,
        ),
        (
            "predmon_calibration_bin_correct",
            "Correct predictions among the bin's samples (additive).",
            |b| b.correct as f64,
        ),
        (
            "predmon_calibration_bin_summed_confidence",
            "Sum of the confidences of the bin's samples (additive).",
            |b| b.confidence.value(),
        ),
    ];
    for (name, help, value) in per_bin {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                if s.calibration.samples == 0 {
                    continue;
                }
                for (i, b) in s.calibration.bins.iter().enumerate() {
                    f.gauge(
                        &[("model", &m.name), ("window", window), ("bin", &labels[i])],
                        value(b),
                    );
                }
            }
        }
        f.done(out);
    }
}

/// Extension E3: ROC AUC and PR AUC per model and window, for models with a positive
/// class and windows with both positive and negative scored samples.
fn ranking_families(d: &ScrapeData, out: &mut Out) {
    use crate::engine::ranking::RankingStats;
    let gauges: [OptionalGaugeSpec<RankingStats>; 2] = [
        (
            "predmon_roc_auc",
            "Area under the ROC curve of the positive class's score.",
            |r| r.roc_auc,
        ),
        (
            "predmon_pr_auc",
            "Average precision (area under the precision-recall curve) of the positive class's score.",
            |r| r.pr_auc,
        ),
    ];
    scope_gauges(d, out, &gauges, |s| s.ranking.as_ref());
}

/// Extension E6: the positive class at each extra threshold, labelled `threshold`.
fn threshold_families(d: &ScrapeData, out: &mut Out) {
    use crate::engine::thresholds::ThresholdStats;
    use MetricType::GAUGE;
    let gauges: [GaugeSpec<ThresholdStats>; 6] = [
        (
            "predmon_threshold_precision",
            "Precision of the positive class when predicted at p >= threshold.",
            |t| t.prf.precision,
        ),
        (
            "predmon_threshold_recall",
            "Recall of the positive class when predicted at p >= threshold.",
            |t| t.prf.recall,
        ),
        (
            "predmon_threshold_f1",
            "F1 of the positive class when predicted at p >= threshold.",
            |t| t.prf.f1,
        ),
        (
            "predmon_threshold_true_positives",
            "Positives with p >= threshold (additive).",
            |t| t.tp as f64,
        ),
        (
            "predmon_threshold_predicted",
            "Samples with p >= threshold (additive).",
            |t| (t.tp + t.fp) as f64,
        ),
        (
            "predmon_threshold_support",
            "Positive samples with scores (additive).",
            |t| (t.tp + t.fn_) as f64,
        ),
    ];
    for (name, help, value) in gauges {
        let mut f = out.family(name, help, GAUGE);
        for m in &d.models {
            for (window, s) in &m.scopes {
                for t in &s.thresholds {
                    let label = t.threshold.to_string();
                    f.gauge(
                        &[
                            ("model", &m.name),
                            ("window", window),
                            ("threshold", &label),
                        ],
                        value(t),
                    );
                }
            }
        }
        f.done(out);
    }
}

/// Extension E5: PSI per model and window, the additive prediction counts behind it
/// (so that rules can recompute it over instances), and the model's reference.
fn drift_families(d: &ScrapeData, out: &mut Out) {
    use crate::engine::drift::{edge, DriftStats, SCORE_BINS};
    use MetricType::GAUGE;
    let gauges: [OptionalGaugeSpec<DriftStats>; 2] = [
        (
            "predmon_prediction_psi",
            "Population stability index of the predicted classes against the model's reference period.",
            |s| s.prediction_psi,
        ),
        (
            "predmon_score_psi",
            "Population stability index of the score (positive class's, else predicted class's; 10 bins) against the reference period.",
            |s| s.score_psi,
        ),
    ];
    scope_gauges(d, out, &gauges, |s| Some(&s.drift));
    let bins: Vec<String> = (0..SCORE_BINS)
        .map(|i| format!("{:.1}", edge(i + 1)))
        .collect();
    let mut classes = out.family(
        "predmon_drift_predictions",
        "Predictions counted on arrival, labelled or not, by predicted class (additive).",
        GAUGE,
    );
    let mut scores = out.family(
        "predmon_drift_score_predictions",
        "Predictions with scores counted on arrival, by score bin (upper edge; additive).",
        GAUGE,
    );
    for m in &d.models {
        for (window, s) in &m.scopes {
            let dr = &s.drift;
            for &(c, n, _) in &dr.classes {
                classes.gauge(
                    &[
                        ("model", &m.name),
                        ("window", window),
                        ("class", &m.classes[c as usize]),
                    ],
                    n as f64,
                );
            }
            if dr.scored > 0 || dr.reference.is_some_and(|r| r.4 > 0) {
                for (i, &(n, _)) in dr.score_bins.iter().enumerate() {
                    scores.gauge(
                        &[("model", &m.name), ("window", window), ("bin", &bins[i])],
                        n as f64,
                    );
                }
            }
        }
    }
    classes.done(out);
    scores.done(out);
    let mut complete = out.family(
        "predmon_drift_reference_complete",
        "1 once the model's reference period is complete (PSI is computed against it), 0 while it fills.",
        GAUGE,
    );
    let mut reference = out.family(
        "predmon_drift_reference_predictions",
        "Predictions of the complete reference period, by predicted class (additive).",
        GAUGE,
    );
    let mut reference_scores = out.family(
        "predmon_drift_reference_score_predictions",
        "Predictions with scores of the complete reference period, by score bin (additive).",
        GAUGE,
    );
    for m in &d.models {
        // The reference is the model's, the same in every scope.
        let Some((_, s)) = m.scopes.first() else {
            continue;
        };
        let dr = &s.drift;
        let Some((_, _, done, _, scored)) = dr.reference else {
            continue;
        };
        complete.gauge(&[("model", &m.name)], if done { 1.0 } else { 0.0 });
        if !done {
            continue;
        }
        // Every class counted in any window too, so that each window's series has a
        // reference series to match in PromQL.
        let mut counts = std::collections::BTreeMap::new();
        for (_, s) in &m.scopes {
            for &(c, _, r) in &s.drift.classes {
                counts.insert(c, r);
            }
        }
        for (c, r) in counts {
            reference.gauge(
                &[("model", &m.name), ("class", &m.classes[c as usize])],
                r as f64,
            );
        }
        if scored > 0 {
            for (i, &(_, r)) in dr.score_bins.iter().enumerate() {
                reference_scores.gauge(&[("model", &m.name), ("bin", &bins[i])], r as f64);
            }
        }
    }
    complete.done(out);
    reference.done(out);
    reference_scores.done(out);
}

/// The engine as a Prometheus collector (usable with any registry).
pub struct EngineCollector {
    shared: Arc<Mutex<Shared>>,
    statuses: Vec<Arc<SourceStatus>>,
    descs: Vec<Desc>,
}

impl EngineCollector {
    pub fn new(shared: Arc<Mutex<Shared>>, statuses: Vec<Arc<SourceStatus>>) -> EngineCollector {
        EngineCollector {
            shared,
            statuses,
            descs: Vec::new(),
        }
    }
}

impl Collector for EngineCollector {
    fn desc(&self) -> Vec<&Desc> {
        // Label values are dynamic (models, classes): described by the families themselves.
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        families(&ScrapeData::capture(&self.shared, &self.statuses))
    }
}

/// Renders the whole exposition: our families, build info, process metrics, sorted by
/// name. Ours are written as text directly; the registry's go through `TextEncoder`.
pub fn render(
    collector: &EngineCollector,
    registry: &prometheus::Registry,
) -> Result<String, prometheus::Error> {
    let data = ScrapeData::capture(&collector.shared, &collector.statuses);
    let ours = build(&data, Format::Text);
    let theirs = registry.gather();
    let mut order: Vec<(&str, Result<&Family, &MetricFamily>)> = ours
        .iter()
        .map(|f| (f.mf.name(), Ok(f)))
        .chain(theirs.iter().map(|mf| (mf.name(), Err(mf))))
        .collect();
    order.sort_by(|a, b| a.0.cmp(b.0));
    let size: usize = ours.iter().map(|f| f.text.len() + 256).sum();
    let mut buf = String::with_capacity(size + (16 << 10));
    let encoder = prometheus::TextEncoder::new();
    for (_, family) in order {
        match family {
            Ok(f) => f.write_text(&mut buf),
            Err(mf) => encoder.encode_utf8(std::slice::from_ref(mf), &mut buf)?,
        }
    }
    Ok(buf)
}

/// A registry with `predmon_build_info` and the process collector.
pub fn base_registry() -> prometheus::Registry {
    let registry = prometheus::Registry::new();
    let build = prometheus::IntGaugeVec::new(
        prometheus::Opts::new(
            "predmon_build_info",
            "Always 1; the version label says which predmon runs.",
        ),
        &["version"],
    )
    .expect("valid metric");
    build.with_label_values(&[env!("CARGO_PKG_VERSION")]).set(1);
    registry.register(Box::new(build)).expect("registered once");
    #[cfg(target_os = "linux")]
    registry
        .register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))
        .expect("registered once");
    registry
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{RawConfig, Settings};
    use crate::pipeline::{Mode, Pipeline};

    /// The text written directly is byte for byte what `TextEncoder` makes of the
    /// protobuf families, escapes, histograms and absent values included.
    #[test]
    fn text_render_equals_the_text_encoder() {
        let settings = Settings::from_raw(RawConfig::default()).unwrap();
        let mut p = Pipeline::new(&settings, Mode::Daemon, None, &["a \"src\"", "b"]);
        let now = 1_795_773_600_000_000_000;
        let lines = [
            r#"{"model":"m\\1","prediction":"x\"y","label":"new\nline","timestamp":1795773599.5}"#,
            r#"{"model":"m\\1","prediction":"a","label":"a","scores":{"a":0.25},"timestamp":1795773590}"#,
            r#"{"model":"two","id":7,"prediction":1,"timestamp":1795773500}"#,
            r#"{"model":"two","id":7,"label":2,"timestamp":1795773530.25}"#,
            r#"{"model":"two","id":8,"label":2}"#,
            r#"{"model":"two","prediction":true,"label":false}"#,
            "not json",
        ];
        for l in lines {
            let _ = p.ingest(0, l.as_bytes(), now);
        }
        p.reject(1, Rejection::TooLarge);
        let mut shared = Shared::new(p);
        shared.snapshot_last_success = Some(1.5e9);
        let shared = Arc::new(Mutex::new(shared));
        let status = Arc::new(SourceStatus::default());
        status.set_up(true);
        status.set_lag("t", 3, 42);
        let collector = EngineCollector::new(shared.clone(), vec![status.clone(), status]);
        // The build info, without the process metrics (their values change between calls).
        let registry = prometheus::Registry::new();
        let build = prometheus::IntGauge::new("predmon_build_info", "Always 1.").unwrap();
        build.set(1);
        registry.register(Box::new(build)).unwrap();

        let text = render(&collector, &registry).unwrap();
        let mut all = collector.collect();
        all.extend(registry.gather());
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let mut expected = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&all, &mut expected)
            .unwrap();
        assert!(text.contains("predmon_label_delay_seconds_bucket{"));
        assert!(text.contains(r#"class="new\nline""#), "{text}");
        assert_eq!(text, expected);
        // The contract's four alerts only: E5's distribution_shift is opt-in.
        assert!(text.contains(r#"alert="near_chance""#));
        assert!(!text.contains("distribution_shift"), "{text}");
    }

    /// Extension E4: segment families carry `segment` after `model`, render as the text
    /// encoder would, and leave the model families as they are.
    #[test]
    fn segment_families_render_with_a_segment_label() {
        let mut raw = RawConfig::default();
        raw.fields.segment = "/s".into();
        raw.limits.max_segments = 1;
        let settings = Settings::from_raw(raw).unwrap();
        let mut p = Pipeline::new(&settings, Mode::Daemon, None, &["src"]);
        let now = 1_795_773_600_000_000_000;
        for l in [
            r#"{"model":"m","prediction":"a","label":"a","s":"x\"y","timestamp":1795773599}"#,
            r#"{"model":"m","prediction":"a","label":"b","s":"z","timestamp":1795773599}"#,
            r#"{"model":"m","prediction":"b","label":"b","timestamp":1795773599}"#,
        ] {
            p.ingest(0, l.as_bytes(), now).unwrap();
        }
        let shared = Arc::new(Mutex::new(Shared::new(p)));
        let collector = EngineCollector::new(shared, Vec::new());
        let registry = prometheus::Registry::new();
        let text = render(&collector, &registry).unwrap();
        let mut all = collector.collect();
        all.sort_by(|a, b| a.name().cmp(b.name()));
        let mut expected = String::new();
        prometheus::TextEncoder::new()
            .encode_utf8(&all, &mut expected)
            .unwrap();
        assert!(text == expected, "text and protobuf renderings differ");
        for want in [
            r#"predmon_segment_samples_total{model="m",segment="x\"y"} 1"#,
            r#"predmon_segment_samples_total{model="m",segment="__other__"} 1"#,
            r#"predmon_segment_overflow_total{model="m"} 1"#,
            r#"predmon_segment_accuracy{model="m",segment="__other__",window="all"} 0"#,
            r#"predmon_segment_f1{model="m",segment="x\"y",window="5m",average="macro"} 1"#,
            r#"predmon_segment_class_support{model="m",segment="__other__",window="1m",class="b"} 1"#,
            r#"predmon_accuracy{model="m",window="all"} 0.6666666666666666"#,
            r#"predmon_samples_total{model="m"} 3"#,
        ] {
            assert!(text.contains(want), "{want} in\n{text}");
        }
        // Families beyond the list (per bin, per threshold, per class estimates) are not
        // exported per segment.
        assert!(!text.contains("predmon_segment_calibration_bin"));
        assert!(!text.contains("predmon_segment_estimated_class"));
        assert!(!text.contains("predmon_segment_confusion_total"));
    }
}
