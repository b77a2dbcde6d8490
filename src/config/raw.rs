//! The configuration file as written: plain serde data with defaults. Every key is
//! documented in `config/predmon.toml`; [`super::Settings::from_raw`] validates it.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawConfig {
    pub fields: RawFields,
    pub metrics: RawMetrics,
    pub join: RawJoin,
    pub limits: RawLimits,
    pub alerts: RawAlerts,
    pub drift: RawDrift,
    pub models: Vec<RawModel>,
    pub sources: Vec<SourceConfig>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<RawState>,
    pub server: RawServer,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawFields {
    pub model: String,
    pub id: String,
    pub prediction: String,
    pub label: String,
    pub scores: String,
    pub timestamp: String,
    pub timestamp_unit: String,
    pub default_model: String,
    /// JSON Pointer to the segment of an event (extension E4); empty: no segments.
    pub segment: String,
}

impl Default for RawFields {
    fn default() -> Self {
        RawFields {
            model: "/model".into(),
            id: "/id".into(),
            prediction: "/prediction".into(),
            label: "/label".into(),
            scores: "/scores".into(),
            timestamp: "/timestamp".into(),
            timestamp_unit: "s".into(),
            default_model: "default".into(),
            segment: String::new(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawMetrics {
    pub windows: Vec<String>,
    pub bucket: String,
    pub window_by: String,
}

impl Default for RawMetrics {
    fn default() -> Self {
        RawMetrics {
            windows: ["1m", "5m", "1h", "all"].map(String::from).to_vec(),
            bucket: "10s".into(),
            window_by: "completion".into(),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawJoin {
    pub ttl: String,
    #[serde(deserialize_with = "whole_number")]
    pub max_pending: i64,
    /// Estimated memory of the pending halves (ids and held scores included) beyond
    /// which the oldest expires first, like `max_pending`: a bound whatever the halves carry.
    #[serde(deserialize_with = "whole_number")]
    pub max_pending_bytes: i64,
}

impl Default for RawJoin {
    fn default() -> Self {
        RawJoin {
            ttl: "1h".into(),
            max_pending: 1_000_000,
            max_pending_bytes: 256 << 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawLimits {
    #[serde(deserialize_with = "whole_number")]
    pub max_event_bytes: i64,
    #[serde(deserialize_with = "whole_number")]
    pub max_classes: i64,
    #[serde(deserialize_with = "whole_number")]
    pub max_models: i64,
    #[serde(deserialize_with = "whole_number")]
    pub max_segments: i64,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_event_bytes: 1_048_576,
            max_classes: 100,
            max_models: 100,
            max_segments: 20,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawAlerts {
    #[serde(deserialize_with = "whole_number")]
    pub min_support: i64,
    #[serde(deserialize_with = "whole_number")]
    pub min_samples: i64,
    pub recall_floor: f64,
    pub collapse_share: f64,
    pub imbalance_ratio: f64,
    pub chance_margin: f64,
    /// Unset: `distribution_shift` is not evaluated (contract Section 4 has four alerts).
    pub psi_threshold: Option<f64>,
}

impl Default for RawAlerts {
    fn default() -> Self {
        RawAlerts {
            min_support: 30,
            min_samples: 100,
            recall_floor: 0.1,
            collapse_share: 0.95,
            imbalance_ratio: 10.0,
            chance_margin: 0.02,
            psi_threshold: None,
        }
    }
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawDrift {
    /// Length of the reference period (extension E5): event time from the bucket of a
    /// model's first prediction. Unset: 1h, rounded up to whole `metrics.bucket`s;
    /// [`super::Settings::from_raw`] writes the effective value back.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModel {
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub classes: Option<Vec<String>>,
    /// The class whose score ranks samples for ROC AUC and PR AUC (extension E3);
    /// default: the second of two configured classes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub positive_class: Option<String>,
    /// For a binary model that logs only scores: an event with scores and no prediction
    /// is predicted positive when p(positive) >= threshold (extension E6).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<f64>,
    /// Extra thresholds at which the positive class's precision, recall and F1 are also
    /// exported (extension E6).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub thresholds: Vec<f64>,
    /// Predictions and labels are arrays of classes (extension E7).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub multi_label: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawState {
    pub path: PathBuf,
    #[serde(default = "default_state_interval")]
    pub interval: String,
}

fn default_state_interval() -> String {
    "10s".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawServer {
    /// `host:port`; overridden by `--web.listen-address`.
    pub listen_address: String,
    /// Overridden by `--web.telemetry-path`.
    pub telemetry_path: String,
}

impl Default for RawServer {
    fn default() -> Self {
        RawServer {
            listen_address: "0.0.0.0:9835".into(),
            telemetry_path: "/metrics".into(),
        }
    }
}

/// One `[[sources]]` table, selected by its `type`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum SourceConfig {
    File(FileSource),
    Kafka(KafkaSource),
    Generate(GenerateSource),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StartAt {
    Beginning,
    End,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSource {
    /// The `source` label of this source's metrics.
    #[serde(default = "default_file_name")]
    pub name: String,
    /// Paths or globs; files matching later are picked up too.
    pub paths: Vec<String>,
    /// Where to start in a file seen for the first time (and not in the state snapshot).
    #[serde(default = "default_start_at")]
    pub start_at: StartAt,
    /// How often to look for new data, new files, rotation and truncation.
    #[serde(default = "default_poll_interval")]
    pub poll_interval: String,
}

fn default_file_name() -> String {
    "file".into()
}
fn default_start_at() -> StartAt {
    StartAt::Beginning
}
fn default_poll_interval() -> String {
    "250ms".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSource {
    #[serde(default = "default_kafka_name")]
    pub name: String,
    /// `host:port[,host:port...]`.
    pub brokers: String,
    pub topics: Vec<String>,
    #[serde(default = "default_group_id")]
    pub group_id: String,
    /// `group` (subscribe, partitions balanced across instances) or `assign` (every
    /// partition of the topics, no group coordination: starts in milliseconds).
    #[serde(default = "default_kafka_mode")]
    pub mode: String,
    /// Passed to librdkafka as is (security.protocol, sasl.*, ssl.*, tuning).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

fn default_kafka_name() -> String {
    "kafka".into()
}
fn default_group_id() -> String {
    "predmon".into()
}
fn default_kafka_mode() -> String {
    "group".into()
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GenerateSource {
    pub name: String,
    /// Number of models; the first one is the collapsed model when `collapse` is true.
    #[serde(deserialize_with = "whole_number")]
    pub models: u32,
    #[serde(deserialize_with = "whole_number")]
    pub classes: u32,
    /// Events per second over all models (0: as fast as possible).
    pub rate: f64,
    /// Zipf exponent of the true class distribution (0: uniform).
    pub imbalance: f64,
    /// Whether the first model predicts its majority class almost always.
    pub collapse: bool,
    /// Accuracy of the healthy models.
    pub accuracy: f64,
    /// Send predictions and labels as separate events, the label this much later.
    pub label_delay: String,
    /// Share of events that carry class scores.
    pub scores_share: f64,
    #[serde(deserialize_with = "whole_number")]
    pub seed: u64,
}

fn default_generate_name() -> String {
    "generate".into()
}

impl Default for GenerateSource {
    fn default() -> Self {
        GenerateSource {
            name: default_generate_name(),
            models: 3,
            classes: 4,
            rate: 200.0,
            imbalance: 1.0,
            collapse: true,
            accuracy: 0.85,
            label_delay: "2s".into(),
            scores_share: 0.5,
            seed: 42,
        }
    }
}

const REDACTED: &str = "<redacted>";

/// Whether a librdkafka property holds a secret (passwords, keys, tokens).
pub fn is_secret_property(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    [
        "password",
        "secret",
        "token",
        ".key.pem",
        "ssl.key",
        "sasl.jaas",
        "oauthbearer.config",
    ]
    .iter()
    .any(|s| k.contains(s))
}

impl SourceConfig {
    pub fn name(&self) -> &str {
        match self {
            SourceConfig::File(f) => &f.name,
            SourceConfig::Kafka(k) => &k.name,
            SourceConfig::Generate(g) => &g.name,
        }
    }

    pub(super) fn validate(&self, i: usize, problems: &mut Vec<String>) {
        let at = format!("sources[{i}]");
        match self {
            SourceConfig::File(f) => {
                if f.paths.is_empty() {
                    problems.push(format!("{at}.paths: list at least one path or glob"));
                }
                for p in &f.paths {
                    if let Err(e) = glob::Pattern::new(p) {
                        problems.push(format!("{at}.paths: `{p}` is not a valid glob ({e})"));
                    }
                }
                if let Err(e) =
                    super::parse_duration(&format!("{at}.poll_interval"), &f.poll_interval)
                {
                    problems.push(e);
                }
            }
            SourceConfig::Kafka(k) => {
                if k.brokers.trim().is_empty() {
                    problems.push(format!("{at}.brokers: must name at least one host:port"));
                }
                if k.topics.is_empty() {
                    problems.push(format!("{at}.topics: list at least one topic"));
                }
                if k.mode != "group" && k.mode != "assign" {
                    problems.push(format!(
                        "{at}.mode: `{}` is not allowed; use \"group\" or \"assign\"",
                        k.mode
                    ));
                }
            }
            SourceConfig::Generate(g) => {
                if g.models == 0 || g.classes < 2 {
                    problems.push(format!(
                        "{at}: models ({}) must be >= 1 and classes ({}) >= 2",
                        g.models, g.classes
                    ));
                }
                if !(g.rate.is_finite() && g.rate >= 0.0) {
                    problems.push(format!("{at}.rate: `{}` must be >= 0", g.rate));
                }
                for (key, v) in [("accuracy", g.accuracy), ("scores_share", g.scores_share)] {
                    if !(0.0..=1.0).contains(&v) {
                        problems.push(format!("{at}.{key}: `{v}` must be in [0, 1]"));
                    }
                }
                if let Err(e) = super::parse_duration(&format!("{at}.label_delay"), &g.label_delay)
                {
                    problems.push(e);
                }
            }
        }
        if self.name().is_empty() {
            problems.push(format!("{at}.name: must not be empty"));
        }
    }

    /// Replaces secret values so the config can be printed or logged.
    pub fn redact(&mut self) {
        if let SourceConfig::Kafka(k) = self {
            for (key, value) in k.properties.iter_mut() {
                if is_secret_property(key) {
                    *value = REDACTED.to_string();
                }
            }
        }
    }
}

/// Deserializes an integer key strictly. The `config` crate would round `1.5` to 2 and
/// read `true` as 1; a limit or a count written that way is a mistake worth naming. Also
/// reads the decimal strings that environment overrides arrive as.
fn whole_number<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: TryFrom<i128>,
{
    use serde::de::{Error, Unexpected, Visitor};
    struct Whole;
    impl Visitor<'_> for Whole {
        type Value = i128;
        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("a whole number")
        }
        fn visit_i64<E: Error>(self, v: i64) -> Result<i128, E> {
            Ok(v.into())
        }
        fn visit_u64<E: Error>(self, v: u64) -> Result<i128, E> {
            Ok(v.into())
        }
        fn visit_i128<E: Error>(self, v: i128) -> Result<i128, E> {
            Ok(v)
        }
        fn visit_u128<E: Error>(self, v: u128) -> Result<i128, E> {
            i128::try_from(v)
                .map_err(|_| E::invalid_value(Unexpected::Other("a huge number"), &self))
        }
        fn visit_f64<E: Error>(self, v: f64) -> Result<i128, E> {
            Err(E::invalid_type(Unexpected::Float(v), &self))
        }
        fn visit_bool<E: Error>(self, v: bool) -> Result<i128, E> {
            Err(E::invalid_type(Unexpected::Bool(v), &self))
        }
        fn visit_str<E: Error>(self, v: &str) -> Result<i128, E> {
            v.trim()
                .parse()
                .map_err(|_| E::invalid_value(Unexpected::Str(v), &self))
        }
    }
    let n = deserializer.deserialize_any(Whole)?;
    T::try_from(n).map_err(|_| {
        D::Error::invalid_value(
            serde::de::Unexpected::Other(&format!("{n}, out of range")),
            &"a whole number in range",
        )
    })
}
