//! What the daemon shows the world: `/metrics` ([`metrics`]), `/api/v1/models` ([`api`]),
//! the landing page ([`page`]), served by [`http`] with the TLS and authentication of
//! [`web_config`].

pub mod api;
pub mod http;
pub mod metrics;
pub mod page;
pub mod web_config;

use std::collections::BTreeMap;

use crate::pipeline::Pipeline;

/// The engine and what must be saved with it, behind the one lock ingestion and
/// scrapes share.
pub struct Shared {
    pub pipeline: Pipeline,
    /// Each source's position after the last applied batch, by source name.
    pub positions: BTreeMap<String, serde_json::Value>,
    pub snapshot_failures: u64,
    /// Unix seconds of the last successful snapshot.
    pub snapshot_last_success: Option<f64>,
}

impl Shared {
    pub fn new(pipeline: Pipeline) -> Shared {
        Shared {
            pipeline,
            positions: BTreeMap::new(),
            snapshot_failures: 0,
            snapshot_last_success: None,
        }
    }
}
