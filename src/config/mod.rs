//! Configuration: the TOML file plus `PREDMON__SECTION__KEY` environment overrides,
//! read into plain serde structs ([`raw`]) and validated into [`Settings`], the only
//! form the rest of predmon sees. Validation reports every problem at once.

pub mod raw;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use raw::{FileSource, GenerateSource, KafkaSource, RawConfig, SourceConfig, StartAt};

/// A window length as configured: its label (`"5m"`, `"all"`) is exported verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WindowSpec {
    pub label: String,
    /// Number of buckets, or `None` for `all`.
    pub buckets: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowBy {
    /// The later of the two halves' times (the default).
    Completion,
    /// The prediction's time.
    Prediction,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampUnit {
    Seconds,
    Millis,
    Micros,
    Nanos,
}

impl TimestampUnit {
    pub fn nanos_per_unit(self) -> i64 {
        match self {
            TimestampUnit::Seconds => 1_000_000_000,
            TimestampUnit::Millis => 1_000_000,
            TimestampUnit::Micros => 1_000,
            TimestampUnit::Nanos => 1,
        }
    }
}

/// JSON Pointers to the event fields, already split into unescaped segments.
#[derive(Debug, Clone)]
pub struct FieldSettings {
    pub model: Vec<String>,
    pub id: Vec<String>,
    pub prediction: Vec<String>,
    pub label: Vec<String>,
    pub scores: Vec<String>,
    pub timestamp: Vec<String>,
    pub timestamp_unit: TimestampUnit,
    pub default_model: String,
    /// `None` when `segment` is empty: events have no segment (extension E4).
    pub segment: Option<Vec<String>>,
}

#[derive(Debug, Clone)]
pub struct MetricsSettings {
    pub windows: Vec<WindowSpec>,
    pub bucket: Duration,
    pub window_by: WindowBy,
}

#[derive(Debug, Clone)]
pub struct JoinSettings {
    pub ttl: Duration,
    pub max_pending: usize,
    pub max_pending_bytes: usize,
}

#[derive(Debug, Clone)]
pub struct Limits {
    pub max_event_bytes: usize,
    pub max_classes: usize,
    pub max_models: usize,
    /// Segments per model (extension E4); beyond, new segments count as `__other__`.
    pub max_segments: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct AlertThresholds {
    pub min_support: u64,
    pub min_samples: u64,
    pub recall_floor: f64,
    pub collapse_share: f64,
    pub imbalance_ratio: f64,
    pub chance_margin: f64,
    /// distribution_shift: prediction PSI >= this (extension E5).
    /// `None`: extension E5's `distribution_shift` is off (opt-in, so that a contract-only
    /// configuration gets exactly the contract's four alerts).
    pub psi_threshold: Option<f64>,
}

/// Distribution shift (extension E5).
#[derive(Debug, Clone)]
pub struct DriftSettings {
    /// Length of each model's reference period; a multiple of `metrics.bucket`.
    pub reference: Duration,
}

#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub name: String,
    pub classes: Option<Vec<String>>,
    /// `positive_class`, else the second of exactly two configured classes.
    pub positive_class: Option<String>,
    /// Predicts events with scores and no prediction (extension E6).
    pub threshold: Option<f64>,
    /// Extra thresholds for the positive class's precision, recall and F1, ascending.
    pub thresholds: Vec<f64>,
    /// Predictions and labels are sets of classes (extension E7).
    pub multi_label: bool,
}

#[derive(Debug, Clone)]
pub struct StateSettings {
    pub path: PathBuf,
    pub interval: Duration,
}

#[derive(Debug, Clone)]
pub struct ServerSettings {
    pub listen_address: String,
    pub telemetry_path: String,
}

/// The validated configuration.
#[derive(Debug, Clone)]
pub struct Settings {
    pub fields: FieldSettings,
    pub metrics: MetricsSettings,
    pub join: JoinSettings,
    pub limits: Limits,
    pub alerts: AlertThresholds,
    pub drift: DriftSettings,
    pub models: Vec<ModelSettings>,
    pub sources: Vec<SourceConfig>,
    pub state: Option<StateSettings>,
    pub server: ServerSettings,
    /// The raw form, kept for `check-config` output.
    pub raw: RawConfig,
}

/// Every problem found in a configuration, each naming the key, the bad value and what is allowed.
#[derive(Debug, thiserror::Error)]
pub struct ConfigError {
    pub origin: String,
    pub problems: Vec<String>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid configuration ({}): ", self.origin)?;
        write!(f, "{}", self.problems.join("; "))
    }
}

impl Default for Settings {
    fn default() -> Self {
        Settings::from_raw(RawConfig::default()).expect("the built-in defaults are valid")
    }
}

/// The paths the HTTP server answers itself; `/metrics` may move, these may not.
pub const RESERVED_PATHS: [&str; 4] = ["/", "/healthz", "/readyz", "/api/v1/models"];

/// Checks a metrics path (`server.telemetry_path` or `--web.telemetry-path`).
pub fn check_telemetry_path(path: &str) -> Result<(), String> {
    if !path.starts_with('/') {
        return Err(format!("`{path}` must start with /, e.g. /metrics"));
    }
    if RESERVED_PATHS.contains(&path) {
        return Err(format!(
            "`{path}` is already served by predmon (reserved: {}); choose another, e.g. /metrics",
            RESERVED_PATHS.join(", ")
        ));
    }
    Ok(())
}

impl Settings {
    /// The models configured `multi_label = true` (extension E7).
    pub fn multi_label_models(&self) -> rustc_hash::FxHashSet<String> {
        self.models
            .iter()
            .filter(|m| m.multi_label)
            .map(|m| m.name.clone())
            .collect()
    }

    /// Loads a TOML file (if given) with environment overrides from the process environment.
    pub fn load(path: Option<&Path>) -> Result<Settings, ConfigError> {
        Self::load_with_env(path, None)
    }

    /// As [`Settings::load`], with the environment given explicitly (tests) instead of the process's.
    pub fn load_with_env(
        path: Option<&Path>,
        env: Option<BTreeMap<String, String>>,
    ) -> Result<Settings, ConfigError> {
        let origin = path
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "built-in defaults".to_string());
        let fail = |problem: String| ConfigError {
            origin: origin.clone(),
            problems: vec![problem],
        };
        let mut builder = config::Config::builder();
        if let Some(path) = path {
            let text = std::fs::read_to_string(path)
                .map_err(|e| fail(format!("cannot read config file {}: {e}", path.display())))?;
            // Syntax errors are reported here, by position only: the toml crate's message
            // quotes the offending line, which may be a Kafka password.
            if let Err(e) = text.parse::<toml::Table>() {
                let at = e.span().map_or(0, |s| s.start).min(text.len());
                let line = text[..at].matches('\n').count() + 1;
                let column = at - text[..at].rfind('\n').map_or(0, |i| i + 1) + 1;
                return Err(fail(format!(
                    "TOML syntax error at line {line}, column {column}: {}",
                    e.message()
                )));
            }
            builder = builder.add_source(config::File::from_str(&text, config::FileFormat::Toml));
        }
        for (key, value) in environment_overrides(env).map_err(fail)? {
            builder = builder
                .set_override(key.as_str(), value)
                .map_err(|e| fail(format!("{}: {e}", env_name(&key))))?;
        }
        let built = builder.build().map_err(|e| fail(e.to_string()))?;
        let raw: RawConfig = built.try_deserialize().map_err(|e| fail(e.to_string()))?;
        Settings::from_raw(raw).map_err(|problems| ConfigError { origin, problems })
    }

    /// Validates a raw configuration, collecting every problem.
    pub fn from_raw(raw: RawConfig) -> Result<Settings, Vec<String>> {
        let mut problems = Vec::new();
        let mut pointer = |key: &str, value: &str| -> Vec<String> {
            match parse_pointer(value) {
                Ok(p) => p,
                Err(why) => {
                    problems.push(format!(
                        "fields.{key}: `{value}` is not a JSON Pointer ({why}); write it like \"/label\" or \"/feedback/actual\""
                    ));
                    Vec::new()
                }
            }
        };
        let f = &raw.fields;
        let model = pointer("model", &f.model);
        let id = pointer("id", &f.id);
        let prediction = pointer("prediction", &f.prediction);
        let label = pointer("label", &f.label);
        let scores = pointer("scores", &f.scores);
        let timestamp = pointer("timestamp", &f.timestamp);
        let segment = (!f.segment.is_empty()).then(|| pointer("segment", &f.segment));
        let timestamp_unit = match f.timestamp_unit.as_str() {
            "s" => TimestampUnit::Seconds,
            "ms" => TimestampUnit::Millis,
            "us" => TimestampUnit::Micros,
            "ns" => TimestampUnit::Nanos,
            other => {
                problems.push(format!(
                    "fields.timestamp_unit: `{other}` is not a unit; allowed: s, ms, us, ns"
                ));
                TimestampUnit::Seconds
            }
        };
        if f.default_model.is_empty() {
            problems.push("fields.default_model: must not be empty".to_string());
        }

        let bucket = match parse_duration("metrics.bucket", &raw.metrics.bucket) {
            Ok(d) if d.as_nanos() > 0 && d.subsec_nanos() == 0 => d,
            Ok(_) => {
                problems.push(format!(
                    "metrics.bucket: `{}` must be a whole number of seconds, at least 1s",
                    raw.metrics.bucket
                ));
                Duration::from_secs(10)
            }
            Err(e) => {
                problems.push(e);
                Duration::from_secs(10)
            }
        };
        let mut windows = Vec::new();
        if raw.metrics.windows.is_empty() {
            problems.push(
                "metrics.windows: must list at least one window, e.g. [\"5m\", \"all\"]".into(),
            );
        }
        for w in &raw.metrics.windows {
            if windows.iter().any(|x: &WindowSpec| &x.label == w) {
                problems.push(format!("metrics.windows: `{w}` is listed twice"));
                continue;
            }
            if w == "all" {
                windows.push(WindowSpec {
                    label: w.clone(),
                    buckets: None,
                });
                continue;
            }
            match parse_duration("metrics.windows", w) {
                Ok(d) => {
                    let (dn, bn) = (d.as_nanos(), bucket.as_nanos());
                    if dn == 0 || dn % bn != 0 {
                        problems.push(format!(
                            "metrics.windows: `{w}` is not a positive multiple of metrics.bucket ({}); use a multiple such as {} or `all`",
                            raw.metrics.bucket,
                            humantime::format_duration(bucket * 6)
                        ));
                    } else if dn / bn > 1_000_000 {
                        problems.push(format!(
                            "metrics.windows: `{w}` holds {} buckets of {}; at most 1000000 are allowed: use a larger bucket",
                            dn / bn, raw.metrics.bucket
                        ));
                    } else {
                        windows.push(WindowSpec {
                            label: w.clone(),
                            buckets: Some((dn / bn) as u32),
                        });
                    }
                }
                Err(e) => problems.push(e),
            }
        }
        let window_by = match raw.metrics.window_by.as_str() {
            "completion" => WindowBy::Completion,
            "prediction" => WindowBy::Prediction,
            other => {
                problems.push(format!(
                    "metrics.window_by: `{other}` is not allowed; use \"completion\" or \"prediction\""
                ));
                WindowBy::Completion
            }
        };

        let ttl = parse_duration("join.ttl", &raw.join.ttl).unwrap_or_else(|e| {
            problems.push(e);
            Duration::from_secs(3600)
        });
        let positive = |problems: &mut Vec<String>, key: &str, v: i64| -> usize {
            if v < 1 {
                problems.push(format!("{key}: `{v}` must be a positive integer"));
                1
            } else {
                v as usize
            }
        };
        let max_pending = positive(&mut problems, "join.max_pending", raw.join.max_pending);
        let max_pending_bytes = positive(
            &mut problems,
            "join.max_pending_bytes",
            raw.join.max_pending_bytes,
        );
        let max_event_bytes = positive(
            &mut problems,
            "limits.max_event_bytes",
            raw.limits.max_event_bytes,
        );
        let max_classes = positive(&mut problems, "limits.max_classes", raw.limits.max_classes);
        let max_models = positive(&mut problems, "limits.max_models", raw.limits.max_models);
        let max_segments = positive(
            &mut problems,
            "limits.max_segments",
            raw.limits.max_segments,
        );
        // A pending half keeps its segment in 16 bits.
        if max_segments > 10_000 {
            problems.push(format!(
                "limits.max_segments: `{max_segments}` is too large; at most 10000 segments per model"
            ));
        }
        // Closed window buckets store class indices as u16, and the dense matrices cost
        // max_classes^2 cells per model and window.
        if max_classes > 10_000 {
            problems.push(format!(
                "limits.max_classes: `{max_classes}` is too large; at most 10000 classes per model"
            ));
        }

        let a = &raw.alerts;
        if a.min_support < 0 {
            problems.push(format!(
                "alerts.min_support: `{}` must be >= 0",
                a.min_support
            ));
        }
        if a.min_samples < 0 {
            problems.push(format!(
                "alerts.min_samples: `{}` must be >= 0",
                a.min_samples
            ));
        }
        for (key, v, lo, hi) in [
            ("alerts.recall_floor", a.recall_floor, 0.0, 1.0),
            ("alerts.collapse_share", a.collapse_share, 0.0, 1.0),
            ("alerts.chance_margin", a.chance_margin, 0.0, 1.0),
            ("alerts.imbalance_ratio", a.imbalance_ratio, 1.0, f64::MAX),
        ]
        .into_iter()
        .chain(
            a.psi_threshold
                .map(|v| ("alerts.psi_threshold", v, 0.0, f64::MAX)),
        ) {
            if !(v.is_finite() && v >= lo && v <= hi) {
                problems.push(format!("{key}: `{v}` must be a number in [{lo}, {hi}]"));
            }
        }

        // Whole buckets: `bucket` has whole seconds (checked above, else 10 s).
        let whole_buckets = |d: Duration| {
            let b = bucket.as_secs().max(1);
            Duration::from_secs(d.as_secs().div_ceil(b).max(1) * b)
        };
        let reference = match raw.drift.reference.as_deref() {
            // Unset, the hour rounds up to whole buckets, so that no bucket is refused
            // for a key its configuration never mentions.
            None => whole_buckets(Duration::from_secs(3600)),
            Some(text) => match parse_duration("drift.reference", text) {
                Ok(d) if d.as_nanos() > 0 && d.as_nanos() % bucket.as_nanos() == 0 => d,
                Ok(d) => {
                    problems.push(format!(
                        "drift.reference: `{text}` is not a positive multiple of metrics.bucket ({}); use a multiple such as {}",
                        raw.metrics.bucket,
                        humantime::format_duration(whole_buckets(d))
                    ));
                    Duration::from_secs(3600)
                }
                Err(e) => {
                    problems.push(e);
                    Duration::from_secs(3600)
                }
            },
        };

        let mut models: Vec<ModelSettings> = Vec::new();
        for (i, m) in raw.models.iter().enumerate() {
            if m.name.is_empty() {
                problems.push(format!("models[{i}].name: must not be empty"));
            }
            if models.iter().any(|x| x.name == m.name) {
                problems.push(format!(
                    "models[{i}].name: `{}` is configured twice",
                    m.name
                ));
            }
            if let Some(classes) = &m.classes {
                if classes.is_empty() {
                    problems.push(format!(
                        "models[{i}].classes: the list for `{}` is empty; omit it to learn classes from the data",
                        m.name
                    ));
                }
                let mut seen = std::collections::HashSet::new();
                for c in classes {
                    if !seen.insert(c) {
                        problems.push(format!("models[{i}].classes: `{c}` is listed twice"));
                    }
                }
                if classes.len() > max_classes {
                    problems.push(format!(
                        "models[{i}].classes: {} classes exceed limits.max_classes ({max_classes})",
                        classes.len()
                    ));
                }
            }
            if let Some(p) = &m.positive_class {
                if p.is_empty() {
                    problems.push(format!("models[{i}].positive_class: must not be empty"));
                } else if m.classes.as_ref().is_some_and(|c| !c.contains(p)) {
                    problems.push(format!(
                        "models[{i}].positive_class: `{p}` is not one of the configured classes of `{}`",
                        m.name
                    ));
                }
            }
            if m.multi_label {
                // Ranking, thresholds and derived predictions read one class per sample.
                for (key, set) in [
                    ("positive_class", m.positive_class.is_some()),
                    ("threshold", m.threshold.is_some()),
                    ("thresholds", !m.thresholds.is_empty()),
                ] {
                    if set {
                        problems.push(format!(
                            "models[{i}].{key}: `{}` is multi_label; {key} applies to single-label models only",
                            m.name
                        ));
                    }
                }
            }
            let positive_class = m.positive_class.clone().or_else(|| match &m.classes {
                Some(c) if c.len() == 2 && !m.multi_label => Some(c[1].clone()),
                _ => None,
            });
            let in_unit = |v: f64| v.is_finite() && (0.0..=1.0).contains(&v);
            if let Some(t) = m.threshold {
                if !in_unit(t) {
                    problems.push(format!("models[{i}].threshold: `{t}` must be in [0, 1]"));
                }
                if m.classes.as_ref().is_none_or(|c| c.len() != 2) {
                    problems.push(format!(
                        "models[{i}].threshold: `{}` needs exactly two configured classes, the positive and the negative one",
                        m.name
                    ));
                }
            }
            if !m.thresholds.is_empty() && positive_class.is_none() {
                problems.push(format!(
                    "models[{i}].thresholds: `{}` has no positive class; set positive_class or two classes",
                    m.name
                ));
            }
            if m.thresholds.len() > 16 {
                problems.push(format!(
                    "models[{i}].thresholds: {} thresholds; at most 16",
                    m.thresholds.len()
                ));
            }
            for &t in &m.thresholds {
                if !in_unit(t) {
                    problems.push(format!("models[{i}].thresholds: `{t}` must be in [0, 1]"));
                }
            }
            let mut thresholds = m.thresholds.clone();
            thresholds.sort_by(f64::total_cmp);
            thresholds.dedup();
            models.push(ModelSettings {
                name: m.name.clone(),
                classes: m.classes.clone(),
                positive_class,
                threshold: m.threshold,
                thresholds,
                multi_label: m.multi_label,
            });
        }
        if models.len() > max_models {
            problems.push(format!(
                "models: {} configured models exceed limits.max_models ({max_models})",
                models.len()
            ));
        }

        let state = match &raw.state {
            Some(s) => {
                let interval = parse_duration("state.interval", &s.interval).unwrap_or_else(|e| {
                    problems.push(e);
                    Duration::from_secs(10)
                });
                if interval.is_zero() {
                    problems.push(format!(
                        "state.interval: `{}` must be longer than 0s",
                        s.interval
                    ));
                }
                if s.path.as_os_str().is_empty() {
                    problems.push("state.path: must not be empty".into());
                }
                Some(StateSettings {
                    path: s.path.clone(),
                    interval,
                })
            }
            None => None,
        };
        for (i, s) in raw.sources.iter().enumerate() {
            s.validate(i, &mut problems);
        }
        // predmon_kafka_consumer_lag is labelled {topic, partition} (contract Section 6):
        // two sources reading one topic name would export the same series twice.
        let mut topics: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, s) in raw.sources.iter().enumerate() {
            let raw::SourceConfig::Kafka(k) = s else {
                continue;
            };
            for t in &k.topics {
                if let Some(first) = topics.insert(t, i) {
                    if first != i {
                        problems.push(format!(
                            "sources[{i}].topics: topic `{t}` is also read by sources[{first}]; \
                             predmon_kafka_consumer_lag{{topic, partition}} would collide; read each topic from one source (run a second predmon for a second cluster)"
                        ));
                    }
                }
            }
        }
        if let Err(why) = check_telemetry_path(&raw.server.telemetry_path) {
            problems.push(format!("server.telemetry_path: {why}"));
        }

        if !problems.is_empty() {
            return Err(problems);
        }
        Ok(Settings {
            fields: FieldSettings {
                model,
                id,
                prediction,
                label,
                scores,
                timestamp,
                timestamp_unit,
                default_model: f.default_model.clone(),
                segment,
            },
            metrics: MetricsSettings {
                windows,
                bucket,
                window_by,
            },
            join: JoinSettings {
                ttl,
                max_pending,
                max_pending_bytes,
            },
            limits: Limits {
                max_event_bytes,
                max_classes,
                max_models,
                max_segments,
            },
            alerts: AlertThresholds {
                min_support: a.min_support.max(0) as u64,
                min_samples: a.min_samples.max(0) as u64,
                recall_floor: a.recall_floor,
                collapse_share: a.collapse_share,
                imbalance_ratio: a.imbalance_ratio,
                chance_margin: a.chance_margin,
                psi_threshold: a.psi_threshold,
            },
            drift: DriftSettings { reference },
            models,
            sources: raw.sources.clone(),
            state,
            server: ServerSettings {
                listen_address: raw.server.listen_address.clone(),
                telemetry_path: raw.server.telemetry_path.clone(),
            },
            // check-config prints the reference in effect, rounded up or as written.
            raw: RawConfig {
                drift: raw::RawDrift {
                    reference: Some(humantime::format_duration(reference).to_string()),
                },
                ..raw
            },
        })
    }

    /// The effective configuration as TOML, with secrets redacted.
    pub fn to_toml_redacted(&self) -> String {
        let mut raw = self.raw.clone();
        for s in &mut raw.sources {
            s.redact();
        }
        toml::to_string_pretty(&raw).unwrap_or_else(|e| format!("# cannot render: {e}\n"))
    }
}

/// Variables named `PREDMON__SECTION__KEY` override `section.key`.
const ENV_PREFIX: &str = "PREDMON__";
/// Keys whose environment value is a comma-separated list.
const ENV_LIST_KEYS: [&str; 1] = ["metrics.windows"];

fn env_name(key: &str) -> String {
    format!("{ENV_PREFIX}{}", key.replace('.', "__").to_uppercase())
}

/// The `PREDMON__SECTION__KEY` variables as (key, value), every value as written: the
/// `config` crate's own `Environment` source guesses types first (`try_parsing`), which
/// turns a string key's `007` into `7` and `TRUE` into `true`; here a value stays the
/// text it was, and each typed key parses it (integers strictly, see `raw::whole_number`).
fn environment_overrides(
    env: Option<BTreeMap<String, String>>,
) -> Result<Vec<(String, config::ValueKind)>, String> {
    let vars: Vec<(String, String)> = match env {
        Some(map) => map.into_iter().collect(),
        None => {
            let mut vars = Vec::new();
            for (name, value) in std::env::vars_os() {
                let Some(name) = name.to_str().filter(|n| n.starts_with(ENV_PREFIX)) else {
                    continue;
                };
                let value = value.into_string().map_err(|_| {
                    format!("{name}: the value is not valid UTF-8; unset it or write it in UTF-8")
                })?;
                vars.push((name.to_string(), value));
            }
            vars
        }
    };
    let mut out = Vec::new();
    for (name, value) in vars {
        let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
            continue;
        };
        let parts: Vec<String> = rest.split("__").map(str::to_lowercase).collect();
        if parts.iter().any(String::is_empty) {
            return Err(format!(
                "{name}: not a configuration key; write PREDMON__SECTION__KEY, e.g. PREDMON__LIMITS__MAX_CLASSES"
            ));
        }
        let key = parts.join(".");
        let value = if ENV_LIST_KEYS.contains(&key.as_str()) {
            config::ValueKind::Array(
                value
                    .split(',')
                    .map(|item| config::Value::new(None, item.trim().to_string()))
                    .collect(),
            )
        } else {
            config::ValueKind::String(value)
        };
        out.push((key, value));
    }
    Ok(out)
}

/// Parses `10s`, `1m`, `5m`, `1h`, `2d` (and humantime's combinations such as `1h30m`).
pub fn parse_duration(key: &str, text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        format!("{key}: `{text}` is not a duration ({e}); write it like 10s, 5m, 1h or 2d")
    })
}

/// Splits an RFC 6901 JSON Pointer into unescaped segments.
pub fn parse_pointer(text: &str) -> Result<Vec<String>, String> {
    if text.is_empty() {
        return Err("it is empty: the whole document cannot be a field".into());
    }
    let Some(rest) = text.strip_prefix('/') else {
        return Err("it must start with /".into());
    };
    rest.split('/')
        .map(|seg| {
            let mut out = String::with_capacity(seg.len());
            let mut chars = seg.chars();
            while let Some(c) = chars.next() {
                if c == '~' {
                    match chars.next() {
                        Some('0') => out.push('~'),
                        Some('1') => out.push('/'),
                        _ => return Err("`~` must be followed by 0 or 1".to_string()),
                    }
                } else {
                    out.push(c);
                }
            }
            Ok(out)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load_toml(text: &str) -> Result<Settings, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(&path, text).unwrap();
        Settings::load_with_env(Some(&path), Some(BTreeMap::new()))
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::default();
        let labels: Vec<_> = s.metrics.windows.iter().map(|w| w.label.as_str()).collect();
        assert_eq!(labels, ["1m", "5m", "1h", "all"]);
        assert_eq!(s.metrics.windows[1].buckets, Some(30));
        assert_eq!(s.metrics.bucket, Duration::from_secs(10));
        assert_eq!(s.join.ttl, Duration::from_secs(3600));
        assert_eq!(s.join.max_pending, 1_000_000);
        assert_eq!(s.join.max_pending_bytes, 256 << 20);
        assert_eq!(s.limits.max_event_bytes, 1_048_576);
        assert_eq!((s.limits.max_classes, s.limits.max_models), (100, 100));
        assert_eq!(s.alerts.min_support, 30);
        assert_eq!(s.alerts.recall_floor, 0.1);
        assert_eq!(s.fields.label, ["label"]);
        assert_eq!(s.fields.default_model, "default");
        assert_eq!(s.server.listen_address, "0.0.0.0:19835");
    }

    #[test]
    fn window_not_a_multiple_of_bucket_is_named() {
        let err =
            load_toml("[metrics]\nwindows = [\"15s\", \"all\"]\nbucket = \"10s\"\n").unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                "metrics.windows: `15s` is not a positive multiple of metrics.bucket (10s)"
            ),
            "{msg}"
        );
    }

    #[test]
    fn every_problem_is_reported_at_once() {
        let err = load_toml(
            "[fields]\nlabel = \"label\"\ntimestamp_unit = \"hours\"\n[metrics]\nwindow_by = \"arrival\"\n[limits]\nmax_classes = 0\n",
        )
        .unwrap_err();
        assert_eq!(err.problems.len(), 4, "{err}");
        let msg = err.to_string();
        assert!(
            msg.contains("fields.label: `label` is not a JSON Pointer"),
            "{msg}"
        );
        assert!(msg.contains("fields.timestamp_unit: `hours`"), "{msg}");
        assert!(msg.contains("metrics.window_by: `arrival`"), "{msg}");
        assert!(
            msg.contains("limits.max_classes: `0` must be a positive integer"),
            "{msg}"
        );
    }

    #[test]
    fn unknown_keys_are_rejected() {
        let err = load_toml("[limits]\nmax_clases = 5\n").unwrap_err();
        assert!(err.to_string().contains("max_clases"), "{err}");
    }

    #[test]
    fn environment_overrides_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.toml");
        std::fs::write(
            &path,
            "[limits]\nmax_classes = 7\n[alerts]\nrecall_floor = 0.2\n",
        )
        .unwrap();
        let env = BTreeMap::from([
            ("PREDMON__LIMITS__MAX_CLASSES".to_string(), "9".to_string()),
            (
                "PREDMON__METRICS__WINDOWS".to_string(),
                "5m,all".to_string(),
            ),
            (
                "PREDMON__FIELDS__LABEL".to_string(),
                "/feedback/actual".to_string(),
            ),
        ]);
        let s = Settings::load_with_env(Some(&path), Some(env)).unwrap();
        assert_eq!(s.limits.max_classes, 9);
        assert_eq!(s.alerts.recall_floor, 0.2);
        assert_eq!(s.metrics.windows.len(), 2);
        assert_eq!(s.fields.label, ["feedback", "actual"]);
    }

    fn load_env(vars: &[(&str, &str)]) -> Result<Settings, ConfigError> {
        let env = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Settings::load_with_env(None, Some(env))
    }

    #[test]
    fn environment_values_stay_as_written() {
        let s = load_env(&[
            ("PREDMON__FIELDS__DEFAULT_MODEL", "007"),
            ("PREDMON__SERVER__LISTEN_ADDRESS", "127.0.0.1:9"),
            ("PREDMON__ALERTS__PSI_THRESHOLD", "0.25"),
            ("PREDMON__ALERTS__MIN_SUPPORT", " 12 "),
            ("PREDMON__METRICS__WINDOWS", "1m, 5m,all"),
        ])
        .unwrap();
        assert_eq!(s.fields.default_model, "007");
        assert_eq!(s.server.listen_address, "127.0.0.1:9");
        assert_eq!(s.alerts.psi_threshold, Some(0.25));
        assert_eq!(s.alerts.min_support, 12);
        assert_eq!(s.metrics.windows.len(), 3);
        let s = load_env(&[("PREDMON__FIELDS__DEFAULT_MODEL", "TRUE")]).unwrap();
        assert_eq!(s.fields.default_model, "TRUE");
        let err = load_env(&[("PREDMON____MAX", "1")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("PREDMON____MAX: not a configuration key"),
            "{err}"
        );
    }

    #[test]
    fn integer_keys_refuse_fractions_and_booleans() {
        for (text, shown) in [
            ("[limits]\nmax_classes = 1.5\n", "floating point `1.5`"),
            ("[alerts]\nmin_support = true\n", "boolean `true`"),
            ("[join]\nmax_pending = \"many\"\n", "\"many\""),
        ] {
            let err = load_toml(text).unwrap_err().to_string();
            assert!(
                err.contains(shown) && err.contains("a whole number"),
                "{text}: {err}"
            );
        }
        let err = load_env(&[("PREDMON__LIMITS__MAX_CLASSES", "2.9")])
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("\"2.9\"") && err.contains("a whole number"),
            "{err}"
        );
        let err = load_toml("[[sources]]\ntype = \"generate\"\nmodels = -1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("-1, out of range"), "{err}");
        let s = load_toml("[limits]\nmax_classes = 7\n").unwrap();
        assert_eq!(s.limits.max_classes, 7);
    }

    #[test]
    fn kafka_property_values_never_appear_in_errors() {
        let secret = "hunter2-secret";
        let source = "[[sources]]\ntype = \"kafka\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\n[sources.properties]\n";
        let syntax = format!("{source}\"sasl.password\" = \"{secret}\" x\n");
        let err = load_toml(&syntax).unwrap_err().to_string();
        assert!(
            err.contains("TOML syntax error at line 6, column 36: expected newline"),
            "{err}"
        );
        assert!(!err.contains(secret), "{err}");
        let kind = format!("{source}\"sasl.password\" = [\"{secret}\"]\n");
        let err = load_toml(&kind).unwrap_err().to_string();
        assert!(
            err.contains("properties.sasl.password: write the value as a string"),
            "{err}"
        );
        assert!(!err.contains(secret), "{err}");
        // numbers and booleans are text to librdkafka
        let s = load_toml(&format!(
            "{source}\"session.timeout.ms\" = 6000\n\"enable.idempotence\" = true\n"
        ))
        .unwrap();
        let raw::SourceConfig::Kafka(k) = &s.sources[0] else {
            panic!("not a kafka source")
        };
        assert_eq!(k.properties["session.timeout.ms"], "6000");
        assert_eq!(k.properties["enable.idempotence"], "true");
    }

    #[test]
    fn a_topic_is_read_by_one_kafka_source() {
        let two = "[[sources]]\ntype = \"kafka\"\nname = \"a\"\nbrokers = \"a:9092\"\ntopics = [\"p\", \"t\"]\n\
                   [[sources]]\ntype = \"kafka\"\nname = \"b\"\nbrokers = \"b:9092\"\ntopics = [\"t\"]\n";
        let err = load_toml(two).unwrap_err().to_string();
        assert!(
            err.contains("sources[1].topics: topic `t` is also read by sources[0]"),
            "{err}"
        );
        assert!(load_toml(&two.replace("[\"t\"]\n", "[\"u\"]\n")).is_ok());
    }

    #[test]
    fn the_annotated_example_is_the_defaults() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/predmon.toml");
        let example = Settings::load_with_env(Some(&path), Some(BTreeMap::new())).unwrap();
        assert_eq!(
            toml::to_string(&example.raw).unwrap(),
            toml::to_string(&Settings::default().raw).unwrap()
        );
    }

    #[test]
    fn positive_class_defaults_to_the_second_of_two_classes() {
        let s = load_toml(
            "[[models]]\nname = \"a\"\nclasses = [\"legit\", \"fraud\"]\n[[models]]\nname = \"b\"\npositive_class = \"yes\"\n[[models]]\nname = \"c\"\nclasses = [\"x\", \"y\", \"z\"]\n",
        )
        .unwrap();
        let p: Vec<_> = s
            .models
            .iter()
            .map(|m| m.positive_class.as_deref())
            .collect();
        assert_eq!(p, [Some("fraud"), Some("yes"), None]);
        let err = load_toml(
            "[[models]]\nname = \"a\"\nclasses = [\"n\", \"y\"]\npositive_class = \"Y\"\n",
        )
        .unwrap_err();
        assert!(
            err.to_string().contains(
                "models[0].positive_class: `Y` is not one of the configured classes of `a`"
            ),
            "{err}"
        );
    }

    #[test]
    fn thresholds_are_checked() {
        let err = load_toml("[[models]]\nname = \"a\"\nthreshold = 1.5\nthresholds = [0.2]\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("models[0].threshold: `1.5` must be in [0, 1]"),
            "{msg}"
        );
        assert!(
            msg.contains("models[0].threshold: `a` needs exactly two configured classes"),
            "{msg}"
        );
        assert!(
            msg.contains("models[0].thresholds: `a` has no positive class"),
            "{msg}"
        );
        let s = load_toml(
            "[[models]]\nname = \"a\"\nclasses = [\"n\", \"y\"]\nthreshold = 0.4\nthresholds = [0.7, 0.3, 0.7]\n",
        )
        .unwrap();
        assert_eq!(s.models[0].threshold, Some(0.4));
        assert_eq!(s.models[0].thresholds, [0.3, 0.7]);
    }

    #[test]
    fn drift_keys_are_checked() {
        let s = Settings::default();
        assert_eq!(s.drift.reference, Duration::from_secs(3600));
        assert_eq!(s.alerts.psi_threshold, None, "distribution_shift is opt-in");
        let err = load_toml("[drift]\nreference = \"15s\"\n[alerts]\npsi_threshold = -1.0\n")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(
                "drift.reference: `15s` is not a positive multiple of metrics.bucket (10s)"
            ),
            "{msg}"
        );
        assert!(
            msg.contains("alerts.psi_threshold: `-1` must be a number in [0,"),
            "{msg}"
        );
        let err = load_toml("[drift]\nreference = \"soon\"\n").unwrap_err();
        assert!(
            err.to_string()
                .contains("drift.reference: `soon` is not a duration"),
            "{err}"
        );
        let s = load_toml("[drift]\nreference = \"30m\"\n").unwrap();
        assert_eq!(s.drift.reference, Duration::from_secs(1800));
        let err = load_toml(
            "[metrics]\nbucket = \"7s\"\nwindows = [\"70s\"]\n[drift]\nreference = \"1h\"\n",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "not a positive multiple of metrics.bucket (7s); use a multiple such as 1h 5s"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unset_drift_reference_fits_any_bucket() {
        let s = load_toml("[metrics]\nbucket = \"7s\"\nwindows = [\"70s\", \"all\"]\n").unwrap();
        assert_eq!(
            s.drift.reference,
            Duration::from_secs(3605),
            "515 buckets of 7 s"
        );
        assert!(s.to_toml_redacted().contains("reference = \"1h 5s\""));
        let s = load_toml("[metrics]\nbucket = \"2h\"\nwindows = [\"2h\"]\n").unwrap();
        assert_eq!(s.drift.reference, Duration::from_secs(7200));
        assert!(Settings::default()
            .to_toml_redacted()
            .contains("reference = \"1h\""));
    }

    #[test]
    fn pointers_unescape() {
        assert_eq!(parse_pointer("/a~1b/c~0d").unwrap(), ["a/b", "c~d"]);
        assert!(parse_pointer("label").is_err());
        assert!(parse_pointer("/a~2").is_err());
    }

    #[test]
    fn models_and_classes_are_checked() {
        let err = load_toml(
            "[[models]]\nname = \"m\"\nclasses = [\"a\", \"a\"]\n[[models]]\nname = \"m\"\n",
        )
        .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("models[0].classes: `a` is listed twice"),
            "{msg}"
        );
        assert!(
            msg.contains("models[1].name: `m` is configured twice"),
            "{msg}"
        );
    }

    #[test]
    fn a_zero_state_interval_is_refused() {
        // tokio's interval panics on a zero period: caught here, with the key named.
        let mut raw = RawConfig::default();
        raw.state = Some(raw::RawState {
            path: "state.json".into(),
            interval: "0s".into(),
        });
        let e = Settings::from_raw(raw).unwrap_err();
        assert!(
            e.iter()
                .any(|p| p == "state.interval: `0s` must be longer than 0s"),
            "{e:?}"
        );
    }
}
