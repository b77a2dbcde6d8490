//! predmon watches the quality of machine-learning classifiers in production: it reads
//! prediction and label events, joins them by id, keeps rolling confusion matrices per
//! model and class, and exports precision, recall, F1 and friends to Prometheus.
//!
//! # Layout
//!
//! Data flows one way, and the modules follow it:
//!
//! ```text
//! source -> decode -> join -> aggregate (windows) -> export
//! ```
//!
//! - [`config`]: the TOML file and environment, validated into [`config::Settings`].
//! - [`source`]: where lines come from: a tailed file, Kafka, the built-in generator;
//!   [`source::lines`] splits bytes into lines under the size limit.
//! - [`event`]: a line's bytes to an [`event::Event`] or a [`event::Rejection`].
//! - [`join`]: pending halves of split samples, keyed by (model, id).
//! - [`engine`]: interned models and classes, confusion counts, windows, the
//!   definitions of contract Section 2 ([`engine::stats`]) and the alerts; the contract
//!   extensions of docs/CONTRACT-EXTENSIONS.md: the estimate before labels
//!   ([`engine::estimate`]), calibration ([`engine::calibration`]), ROC and PR AUC
//!   ([`engine::ranking`]), the positive class at extra thresholds
//!   ([`engine::thresholds`]); `[[models]] threshold` predicts from scores in the decoder.
//! - [`pipeline`]: decode -> join -> engine for one line, shared by `report` and `run`.
//! - [`report`]: `predmon report`, and the JSON shape of `/api/v1/models`.
//! - [`export`]: `/metrics` (a scrape-time collector), `/api/v1/models`, the landing
//!   page, and the hyper server that serves them.
//! - [`state`]: snapshots of the engine with the sources' positions.
//! - [`app`]: `predmon run`, which wires all of the above together.
//! - [`cli`]: the command line.

pub mod app;
pub mod cli;
pub mod config;
pub mod engine;
pub mod event;
pub mod export;
pub mod join;
pub mod pipeline;
pub mod report;
pub mod source;
pub mod state;

/// Nanoseconds since the Unix epoch, from the wall clock.
pub fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    d.as_nanos().min(i64::MAX as u128) as i64
}
