//! `predmon report`: reads events once through the shared [`Pipeline`] and prints one
//! report (contract Section 5) as JSON or as a classification report a person reads.
//! [`scope_json`] is also the body of the daemon's `/api/v1/models`.

use std::fmt::Write as _;
use std::io::Read;
use std::path::PathBuf;

use serde_json::{json, Map, Value};

use crate::config::AlertThresholds;
use crate::config::{parse_duration, Settings, WindowSpec};
use crate::engine::alerts::{Alert, AlertKind};
use crate::engine::calibration::{self, CalibrationStats};
use crate::engine::drift::{self, DriftStats};
use crate::engine::estimate::EstimatedStats;
use crate::engine::ranking::RankingStats;
use crate::engine::stats::{ModelStats, Prf, ScopeCounts};
use crate::engine::{ModelState, ScopeId};
use crate::event::Rejection;
use crate::pipeline::{Mode, Pipeline};
use crate::source::lines::{Line, LineSplitter};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Json,
    Text,
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// The message names `--window` itself.
    #[error("{0}")]
    Window(String),
    /// The io error is the source: `{e:#}` (main) prints it once, after the path.
    #[error("cannot read {path}")]
    Read {
        path: String,
        source: std::io::Error,
    },
}

/// Reads `inputs` (`-` is standard input) as one stream, in order.
pub fn run(
    settings: &Settings,
    window: Option<&str>,
    inputs: &[PathBuf],
    format: Format,
    now_ns: i64,
) -> Result<String, ReportError> {
    let windows = match window {
        None => vec![WindowSpec {
            label: "all".into(),
            buckets: None,
        }],
        Some(w) => {
            let d = parse_duration("--window", w).map_err(ReportError::Window)?;
            let b = settings.metrics.bucket.as_nanos();
            if d.as_nanos() == 0 || d.as_nanos() % b != 0 {
                return Err(ReportError::Window(format!(
                    "--window: `{w}` is not a positive multiple of metrics.bucket ({}s)",
                    settings.metrics.bucket.as_secs()
                )));
            }
            vec![WindowSpec {
                label: w.to_string(),
                buckets: Some((d.as_nanos() / b) as u32),
            }]
        }
    };
    let scope = if window.is_some() {
        ScopeId::Window(0)
    } else {
        ScopeId::All
    };
    let mut pipeline = Pipeline::new(settings, Mode::Report, Some(windows), &["report"]);
    // Open every input first: an unreadable file fails the run before anything is counted.
    let mut readers: Vec<(String, Box<dyn Read>)> = Vec::new();
    for path in inputs {
        let name = path.display().to_string();
        if name == "-" {
            readers.push((name, Box::new(std::io::stdin().lock())));
        } else {
            let file = std::fs::File::open(path).map_err(|source| ReportError::Read {
                path: name.clone(),
                source,
            })?;
            readers.push((name, Box::new(file)));
        }
    }
    let mut splitter = LineSplitter::new(pipeline.decoder.max_event_bytes());
    let mut chunk = vec![0u8; 1 << 20];
    for (name, mut reader) in readers {
        loop {
            let n = match reader.read(&mut chunk) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(source) => return Err(ReportError::Read { path: name, source }),
            };
            splitter.feed(&chunk[..n], |line| feed(&mut pipeline, line, now_ns));
        }
        // Each file's last line ends with the file, newline or not.
        splitter.finish(|line| feed(&mut pipeline, line, now_ns));
    }
    let report = scope_json(&mut pipeline, scope);
    Ok(match format {
        Format::Json => format!("{}\n", serde_json::to_string_pretty(&report).expect("json")),
        Format::Text => text(&mut pipeline, scope),
    })
}

fn feed(pipeline: &mut Pipeline, line: Line<'_>, now_ns: i64) {
    match line {
        Line::Event(bytes) => {
            let _ = pipeline.ingest(0, bytes, now_ns);
        }
        Line::TooLarge => pipeline.reject(0, Rejection::TooLarge),
    }
}

fn prf_json(p: &Prf) -> Value {
    json!({"precision": p.precision, "recall": p.recall, "f1": p.f1})
}

fn alert_json(model: &(impl ClassNames + ?Sized), a: &Alert) -> Value {
    json!({"alert": a.kind.code(), "class": a.class.map_or("", |c| model.class_name(c))})
}

/// The `estimated` object (extension E1): Section 2 on labelled + expected cells.
fn estimated_json(model: &(impl ClassNames + ?Sized), e: &EstimatedStats) -> Value {
    let mut classes = Map::new();
    for (c, prf) in &e.classes {
        classes.insert(model.class_name(*c).to_string(), prf_json(prf));
    }
    json!({
        "samples": e.samples,
        "unlabelled": e.unlabelled,
        "accuracy": e.accuracy,
        "micro": prf_json(&e.micro),
        "macro": prf_json(&e.macro_),
        "weighted": prf_json(&e.weighted),
        "classes": classes,
    })
}

/// The `calibration` object (extension E2).
fn calibration_json(c: &CalibrationStats) -> Value {
    let ratio = |x: f64, n: u64| (n > 0).then(|| x / n as f64);
    let bins: Vec<Value> = c
        .bins
        .iter()
        .enumerate()
        .map(|(i, b)| {
            json!({
                "lower": calibration::edge(i), "upper": calibration::edge(i + 1),
                "samples": b.samples,
                "confidence": ratio(b.confidence.value(), b.samples),
                "accuracy": ratio(b.correct as f64, b.samples),
            })
        })
        .collect();
    json!({"samples": c.samples, "ece": c.ece, "brier": c.brier, "bins": bins})
}

/// The `ranking` object (extension E3), `null` for a model without a positive class.
fn ranking_json(model: &(impl ClassNames + ?Sized), r: &Option<RankingStats>) -> Value {
    match r {
        None => Value::Null,
        Some(r) => json!({
            "positive_class": model.class_name(r.positive),
            "samples": r.samples, "positives": r.positives,
            "roc_auc": r.roc_auc, "pr_auc": r.pr_auc,
        }),
    }
}

/// The `drift` object (extension E5): predictions on arrival against the reference.
fn drift_json(model: &(impl ClassNames + ?Sized), d: &DriftStats) -> Value {
    let mut classes = Map::new();
    for &(c, n, r) in &d.classes {
        classes.insert(
            model.class_name(c).to_string(),
            json!({"predictions": n, "reference": r}),
        );
    }
    let bins: Vec<Value> = d
        .score_bins
        .iter()
        .enumerate()
        .map(|(i, &(n, r))| {
            json!({"lower": drift::edge(i), "upper": drift::edge(i + 1),
                   "predictions": n, "reference": r})
        })
        .collect();
    let seconds = |ns: i64| ns.div_euclid(1_000_000_000);
    json!({
        "predictions": d.predictions,
        "scored": d.scored,
        "prediction_psi": d.prediction_psi,
        "score_psi": d.score_psi,
        "reference": d.reference.map(|(start, end, complete, n, scored)| json!({
            "start": seconds(start), "end": seconds(end), "complete": complete,
            "predictions": n, "scored": scored,
        })),
        "classes": classes,
        "score_bins": bins,
    })
}

/// One model's report object (Section 5) for one scope.
pub fn model_json(
    model: &(impl ClassNames + ?Sized),
    stats: &ModelStats,
    pending: [u64; 2],
) -> Value {
    let mut classes = Map::new();
    for c in &stats.classes {
        classes.insert(
            model.class_name(c.class).to_string(),
            json!({
                "precision": c.prf.precision, "recall": c.prf.recall, "f1": c.prf.f1,
                "support": c.support, "predicted": c.predicted,
                "tp": c.tp, "fp": c.fp, "fn": c.fn_, "tn": c.tn,
                "label_share": c.label_share, "prediction_share": c.prediction_share,
            }),
        );
    }
    let mut confusion = Map::new();
    for &(a, p, n) in &stats.confusion {
        let row = confusion
            .entry(model.class_name(a).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        row.as_object_mut()
            .expect("row")
            .insert(model.class_name(p).to_string(), json!(n));
    }
    let mut out = json!({
        "samples": stats.samples,
        "accuracy": stats.accuracy,
        "balanced_accuracy": stats.balanced_accuracy,
        "majority_baseline_accuracy": stats.majority_baseline_accuracy,
        "log_loss": stats.log_loss,
        "samples_per_second": stats.samples_per_second,
        "imbalance_ratio": stats.imbalance_ratio,
        "micro": prf_json(&stats.micro),
        "macro": prf_json(&stats.macro_),
        "weighted": prf_json(&stats.weighted),
        "classes": classes,
        "confusion": confusion,
        "alerts": stats.alerts.iter().map(|a| alert_json(model, a)).collect::<Vec<_>>(),
        "join": {"unmatched_predictions": pending[0], "unmatched_labels": pending[1]},
        "estimated": estimated_json(model, &stats.estimated),
        "calibration": calibration_json(&stats.calibration),
        "ranking": ranking_json(model, &stats.ranking),
        "thresholds": stats.thresholds.iter().map(|t| json!({
            "threshold": t.threshold,
            "precision": t.prf.precision, "recall": t.prf.recall, "f1": t.prf.f1,
            "tp": t.tp, "fp": t.fp, "fn": t.fn_,
        })).collect::<Vec<_>>(),
        "drift": drift_json(model, &stats.drift),
    });
    if let Some(m) = &stats.multi_label {
        // Extension E7: the same object, marked, with the multi-label figures.
        let o = out.as_object_mut().expect("object");
        o.insert("multi_label".into(), json!(true));
        o.insert("majority_baseline_accuracy".into(), Value::Null);
        o.insert("samples_average".into(), prf_json(&m.samples_average));
        o.insert("hamming_loss".into(), json!(m.hamming_loss));
    }
    out
}

/// Class names by index: a model's, or a copy of them ([`ReportCopy`]).
pub trait ClassNames {
    fn class_name(&self, class: u32) -> &str;
}

impl ClassNames for ModelState {
    fn class_name(&self, class: u32) -> &str {
        ModelState::class_name(self, class)
    }
}

impl ClassNames for [String] {
    fn class_name(&self, class: u32) -> &str {
        &self[class as usize]
    }
}

/// The inputs of the `/api/v1/models` document (every scope's [`scope_json`]), copied
/// under the engine lock: each model's counts per scope and segment, its pending
/// halves, each scope's `window` and `events`. Computing the figures and building the
/// JSON ([`ReportCopy::to_value`], [`ReportCopy::write_json`]) then holds no lock; at
/// 20 models x 20 classes x 4 windows that was 40 ms to 130 ms of the lock per request.
/// The same figures as [`scope_json`] of the same state: `model_stats` is
/// `compute` over the very view `scope_counts` copies.
pub struct ReportCopy {
    alerts: AlertThresholds,
    /// In the engine's order of scopes.
    scopes: Vec<ScopeCopy>,
}

struct ScopeCopy {
    label: String,
    window: Value,
    events: Value,
    /// By model index.
    models: Vec<ModelCopy>,
}

struct ModelCopy {
    name: String,
    counts: ScopeCounts,
    pending: [u64; 2],
    /// Segment name and counts, by segment index.
    segments: Vec<(String, ScopeCounts)>,
}

impl ReportCopy {
    /// Copies; call with the engine lock held.
    pub fn take(pipeline: &mut Pipeline) -> ReportCopy {
        let scopes = pipeline.engine.scopes();
        let scopes = scopes
            .into_iter()
            .map(|(label, scope)| {
                let (window, events) = scope_head(pipeline, scope);
                let models = (0..pipeline.engine.models().len() as u32)
                    .map(|m| {
                        let counts = pipeline.engine.scope_counts(m, scope);
                        let segments = (0..pipeline.engine.model(m).segments().len() as u32)
                            .map(|s| {
                                let counts = pipeline.engine.segment_counts(m, s, scope);
                                let name =
                                    pipeline.engine.model(m).segments()[s as usize].name.clone();
                                (name, counts)
                            })
                            .collect();
                        ModelCopy {
                            name: pipeline.engine.model(m).name.clone(),
                            counts,
                            pending: pipeline.join.pending_of(m),
                            segments,
                        }
                    })
                    .collect();
                ScopeCopy {
                    label,
                    window,
                    events,
                    models,
                }
            })
            .collect();
        ReportCopy {
            alerts: pipeline.engine.alert_thresholds().clone(),
            scopes,
        }
    }

    /// `{"windows": {label: <scope_json>, ...}}`.
    pub fn to_value(&self) -> Value {
        let mut windows = Map::new();
        for scope in &self.scopes {
            let mut models = Map::new();
            for m in &scope.models {
                models.insert(m.name.clone(), self.model_value(m));
            }
            windows.insert(
                scope.label.clone(),
                json!({
                    "window": scope.window,
                    "events": scope.events,
                    "models": models,
                }),
            );
        }
        let mut out = Map::new();
        out.insert("windows".into(), Value::Object(windows));
        Value::Object(out)
    }

    /// [`ReportCopy::to_value`] as JSON text, byte for byte, building one model's
    /// object at a time: at the limits (100 models, 100 classes) the whole object takes
    /// several times the memory of its text.
    pub fn write_json(&self, out: &mut Vec<u8>) {
        // Keys in serde_json's Map order (sorted), as `to_value` serializes them.
        let mut scopes: Vec<&ScopeCopy> = self.scopes.iter().collect();
        scopes.sort_by(|a, b| a.label.cmp(&b.label));
        out.extend_from_slice(b"{\"windows\":{");
        for (i, scope) in scopes.into_iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            serde_json::to_writer(&mut *out, &scope.label).expect("json");
            out.extend_from_slice(b":{\"events\":");
            serde_json::to_writer(&mut *out, &scope.events).expect("json");
            out.extend_from_slice(b",\"models\":{");
            let mut models: Vec<&ModelCopy> = scope.models.iter().collect();
            models.sort_by(|a, b| a.name.cmp(&b.name));
            for (i, m) in models.into_iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                serde_json::to_writer(&mut *out, &m.name).expect("json");
                out.push(b':');
                serde_json::to_writer(&mut *out, &self.model_value(m)).expect("json");
            }
            out.extend_from_slice(b"},\"window\":");
            serde_json::to_writer(&mut *out, &scope.window).expect("json");
            out.push(b'}');
        }
        out.extend_from_slice(b"}}");
    }

    /// [`model_value`] from the copy.
    fn model_value(&self, m: &ModelCopy) -> Value {
        let stats = m.counts.compute(&self.alerts);
        let mut object = model_json(m.counts.names(), &stats, m.pending);
        let mut segments = Map::new();
        for (name, counts) in &m.segments {
            let stats = counts.compute(&self.alerts);
            let mut object = model_json(counts.names(), &stats, [0, 0]);
            if let Some(o) = object.as_object_mut() {
                o.remove("join");
            }
            segments.insert(name.clone(), object);
        }
        object["segments"] = Value::Object(segments);
        object
    }
}

/// The `segments` object of a model (extension E4): segment name -> the model object's
/// figures over the segment's samples. Pending halves are joined per model, so a
/// segment has no `join`; nor does it nest segments.
fn segments_json(pipeline: &mut Pipeline, model: u32, scope: ScopeId) -> Value {
    let mut segments = Map::new();
    for s in 0..pipeline.engine.model(model).segments().len() as u32 {
        let stats = pipeline.engine.segment_stats(model, s, scope);
        let state = pipeline.engine.model(model);
        let mut object = model_json(state, &stats, [0, 0]);
        if let Some(o) = object.as_object_mut() {
            o.remove("join");
        }
        segments.insert(state.segments()[s as usize].name.clone(), object);
    }
    Value::Object(segments)
}

/// The whole report object for one scope: window, events, models.
pub fn scope_json(pipeline: &mut Pipeline, scope: ScopeId) -> Value {
    let (window, events) = scope_head(pipeline, scope);
    let mut models = Map::new();
    for m in 0..pipeline.engine.models().len() as u32 {
        let name = pipeline.engine.model(m).name.clone();
        models.insert(name, model_value(pipeline, m, scope));
    }
    json!({
        "window": window,
        "events": events,
        "models": models,
    })
}

/// Writes [`scope_json`] as JSON text, byte for byte, building one model's object at a
/// time: at the limits (100 models, 100 classes) the whole object takes several times
/// the memory of its text.
pub fn write_scope_json(pipeline: &mut Pipeline, scope: ScopeId, out: &mut Vec<u8>) {
    let (window, events) = scope_head(pipeline, scope);
    // Keys in serde_json's Map order (sorted), as `scope_json` serializes them.
    let mut order: Vec<u32> = (0..pipeline.engine.models().len() as u32).collect();
    order.sort_by(|&a, &b| {
        let e = &pipeline.engine;
        e.model(a).name.cmp(&e.model(b).name)
    });
    out.extend_from_slice(b"{\"events\":");
    serde_json::to_writer(&mut *out, &events).expect("json");
    out.extend_from_slice(b",\"models\":{");
    for (i, &m) in order.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        serde_json::to_writer(&mut *out, &pipeline.engine.model(m).name).expect("json");
        out.push(b':');
        let model = model_value(pipeline, m, scope);
        serde_json::to_writer(&mut *out, &model).expect("json");
    }
    out.extend_from_slice(b"},\"window\":");
    serde_json::to_writer(&mut *out, &window).expect("json");
    out.push(b'}');
}

fn model_value(pipeline: &mut Pipeline, m: u32, scope: ScopeId) -> Value {
    let stats = pipeline.engine.model_stats(m, scope);
    let mut object = model_json(
        pipeline.engine.model(m),
        &stats,
        pipeline.join.pending_of(m),
    );
    object["segments"] = segments_json(pipeline, m, scope);
    object
}

/// The `window` and `events` objects of a scope.
fn scope_head(pipeline: &Pipeline, scope: ScopeId) -> (Value, Value) {
    let window = match scope {
        ScopeId::All => Value::Null,
        ScopeId::Window(w) => {
            let settings = pipeline.engine.settings();
            let bucket_ns = settings.bucket_ns;
            let length = settings
                .windows
                .iter()
                .filter_map(|w| w.buckets)
                .nth(w)
                .unwrap_or(0) as i64
                * bucket_ns;
            let end = pipeline.engine.watermark_bucket_end_ns();
            json!({
                "length_seconds": length / 1_000_000_000,
                "bucket_seconds": bucket_ns / 1_000_000_000,
                "end": end.map(|e| e.div_euclid(1_000_000_000)),
            })
        }
    };
    let (mut read, mut rejected) = (0u64, [0u64; Rejection::ALL.len()]);
    for s in &pipeline.sources {
        read += s.read;
        for (total, n) in rejected.iter_mut().zip(s.rejected) {
            *total += n;
        }
    }
    let mut reasons = Map::new();
    for r in Rejection::ALL {
        if rejected[r.index()] > 0 {
            reasons.insert(r.code().to_string(), json!(rejected[r.index()]));
        }
    }
    let events =
        json!({"read": read, "accepted": read - rejected.iter().sum::<u64>(), "rejected": reasons});
    (window, events)
}

/// One alert in a sentence an on-call person understands.
pub fn describe_alert(
    model: &ModelState,
    stats: &ModelStats,
    a: &Alert,
    t: &crate::config::AlertThresholds,
) -> String {
    let class = a
        .class
        .and_then(|c| stats.classes.iter().find(|s| s.class == c));
    let name = a.class.map_or("", |c| model.class_name(c));
    match (a.kind, class) {
        (AlertKind::RecallCollapse, Some(c)) => format!(
            "recall collapse: recall of class {name} is {:.2} over {} true samples (floor {:.2}); the model rarely finds this class",
            c.prf.recall, c.support, t.recall_floor
        ),
        (AlertKind::PredictionCollapse, Some(c)) => format!(
            "prediction collapse: model predicts class {name} for {:.0}% of samples while {:.0}% are class {name}",
            c.prediction_share * 100.0,
            c.label_share * 100.0
        ),
        (AlertKind::LabelImbalance, _) => format!(
            "label imbalance: the most frequent true class is {:.1} times the rarest (threshold {:.1}); watch per-class recall, not accuracy",
            stats.imbalance_ratio, t.imbalance_ratio
        ),
        (AlertKind::NearChance, _) => format!(
            "near chance: accuracy {:.3} is within {:.2} of the majority baseline {:.3}; the model has learned little beyond the class prior",
            stats.accuracy, t.chance_margin, stats.majority_baseline_accuracy
        ),
        (AlertKind::DistributionShift, _) => format!(
            "distribution shift: the predicted classes' PSI against the model's reference period is {:.3} over {} predictions (threshold {:.2}); its inputs or its behaviour changed, labels or not",
            stats.drift.prediction_psi.unwrap_or(0.0),
            stats.drift.predictions,
            t.psi_threshold.unwrap_or(f64::NAN)
        ),
        (kind, None) => kind.code().to_string(),
    }
}

/// The text report: a scikit-learn style classification report per model.
fn text(pipeline: &mut Pipeline, scope: ScopeId) -> String {
    let mut out = String::new();
    let read: u64 = pipeline.sources.iter().map(|s| s.read).sum();
    let accepted: u64 = pipeline.sources.iter().map(|s| s.accepted()).sum();
    let _ = write!(out, "events: {read} read, {accepted} accepted");
    let mut reasons = Vec::new();
    for r in Rejection::ALL {
        let n: u64 = pipeline.sources.iter().map(|s| s.rejected[r.index()]).sum();
        if n > 0 {
            reasons.push(format!("{} {n}", r.code()));
        }
    }
    if !reasons.is_empty() {
        let _ = write!(out, ", rejected: {}", reasons.join(", "));
    }
    out.push('\n');
    if let ScopeId::Window(_) = scope {
        let w = scope_json(pipeline, scope)["window"].clone();
        let _ = writeln!(
            out,
            "window: {}s ending at {} (epoch seconds)",
            w["length_seconds"], w["end"]
        );
    }
    let thresholds = pipeline.engine.settings().alerts.clone();
    let mut order: Vec<u32> = (0..pipeline.engine.models().len() as u32).collect();
    order.sort_by(|a, b| {
        pipeline
            .engine
            .model(*a)
            .name
            .cmp(&pipeline.engine.model(*b).name)
    });
    for m in order {
        let stats = pipeline.engine.model_stats(m, scope);
        let model = pipeline.engine.model(m);
        let pending = pipeline.join.pending_of(m);
        let width = stats
            .classes
            .iter()
            .map(|c| model.class_name(c.class).chars().count())
            .chain([12])
            .max()
            .unwrap_or(12);
        let _ = writeln!(out, "\nmodel {}: {} samples", model.name, stats.samples);
        let _ = writeln!(
            out,
            "{:>width$}  {:>9} {:>9} {:>9} {:>9}",
            "", "precision", "recall", "f1-score", "support"
        );
        out.push('\n');
        // In the configured order, as classification_report(labels=L) lists them; else by name.
        let configured = pipeline.engine.settings().configured.get(&model.name);
        let mut rows: Vec<_> = stats.classes.iter().collect();
        rows.sort_by_key(|c| {
            let name = model.class_name(c.class);
            let at = configured.and_then(|l| l.iter().position(|x| x == name));
            (at, name)
        });
        for c in rows {
            let _ = writeln!(
                out,
                "{:>width$}  {:>9.2} {:>9.2} {:>9.2} {:>9}",
                model.class_name(c.class),
                c.prf.precision,
                c.prf.recall,
                c.prf.f1,
                c.support
            );
        }
        out.push('\n');
        match &stats.multi_label {
            None => {
                let _ = writeln!(
                    out,
                    "{:>width$}  {:>9} {:>9} {:>9.2} {:>9}   majority baseline {:.2}",
                    "accuracy",
                    "",
                    "",
                    stats.accuracy,
                    stats.samples,
                    stats.majority_baseline_accuracy
                );
            }
            Some(m) => {
                let _ = writeln!(
                    out,
                    "{:>width$}  {:>9} {:>9} {:>9.2} {:>9}   hamming loss {:.4}",
                    "subset acc", "", "", stats.accuracy, stats.samples, m.hamming_loss
                );
            }
        }
        let samples_avg = stats
            .multi_label
            .as_ref()
            .map(|m| ("samples avg", &m.samples_average));
        // As classification_report: a single-label model's micro average is its accuracy
        // (L covers every class), so only the accuracy row is printed.
        let micro_avg = stats
            .multi_label
            .as_ref()
            .map(|_| ("micro avg", &stats.micro));
        for (name, p) in micro_avg
            .into_iter()
            .chain([
                ("macro avg", &stats.macro_),
                ("weighted avg", &stats.weighted),
            ])
            .chain(samples_avg)
        {
            let _ = writeln!(
                out,
                "{:>width$}  {:>9.2} {:>9.2} {:>9.2} {:>9}",
                name, p.precision, p.recall, p.f1, stats.samples
            );
        }
        let log_loss = stats
            .log_loss
            .map_or("n/a".to_string(), |l| format!("{l:.4}"));
        let _ = writeln!(
            out,
            "\nbalanced accuracy {:.4}, log loss {log_loss}, {:.3} samples/s, imbalance ratio {:.2}",
            stats.balanced_accuracy, stats.samples_per_second, stats.imbalance_ratio
        );
        let d = &stats.drift;
        if let Some((start, end, complete, n, _)) = d.reference {
            let psi = |p: Option<f64>| p.map_or("n/a".to_string(), |p| format!("{p:.4}"));
            let _ = writeln!(
                out,
                "drift: {} predictions, prediction PSI {}, score PSI {} against the reference {}..{} (epoch seconds, {} predictions{})",
                d.predictions,
                psi(d.prediction_psi),
                psi(d.score_psi),
                start.div_euclid(1_000_000_000),
                end.div_euclid(1_000_000_000),
                n,
                if complete { "" } else { ", still filling" }
            );
        }
        if stats.alerts.is_empty() {
            let _ = writeln!(out, "alerts: none");
        } else {
            let _ = writeln!(out, "alerts:");
            for a in &stats.alerts {
                let _ = writeln!(out, "  - {}", describe_alert(model, &stats, a, &thresholds));
            }
        }
        if pending != [0, 0] {
            let _ = writeln!(
                out,
                "join: {} predictions and {} labels unmatched",
                pending[0], pending[1]
            );
        }
        segments_text(&mut out, pipeline, m, scope);
    }
    out
}

/// One line per segment (extension E4), by name: the figures to compare them by.
fn segments_text(out: &mut String, pipeline: &mut Pipeline, model: u32, scope: ScopeId) {
    let count = pipeline.engine.model(model).segments().len() as u32;
    if count == 0 {
        return;
    }
    let mut rows = Vec::new();
    for s in 0..count {
        let stats = pipeline.engine.segment_stats(model, s, scope);
        let state = pipeline.engine.model(model);
        let alerts: Vec<String> = stats
            .alerts
            .iter()
            .map(|a| match a.class {
                Some(c) => format!("{} ({})", a.kind.code(), state.class_name(c)),
                None => a.kind.code().to_string(),
            })
            .collect();
        rows.push((state.segments()[s as usize].name.clone(), stats, alerts));
    }
    rows.sort_by(|a, b| a.0.cmp(&b.0));
    let width = rows
        .iter()
        .map(|r| r.0.chars().count())
        .chain([7])
        .max()
        .unwrap_or(7);
    let _ = writeln!(
        out,
        "\n{:<width$} {:>9} {:>9} {:>9} {:>9}   alerts",
        "segment", "samples", "accuracy", "macro f1", "baseline"
    );
    for (name, s, alerts) in rows {
        let _ = writeln!(
            out,
            "{:<width$} {:>9} {:>9.4} {:>9.4} {:>9.4}   {}",
            name,
            s.samples,
            s.accuracy,
            s.macro_.f1,
            s.majority_baseline_accuracy,
            if alerts.is_empty() {
                "none".to_string()
            } else {
                alerts.join(", ")
            }
        );
    }
}
