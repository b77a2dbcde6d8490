//! What the daemon shows the world: `/metrics` ([`metrics`]), `/api/v1/models` ([`api`]),
//! the landing page ([`page`]), served by [`http`] with the TLS and authentication of
//! [`web_config`].

pub mod api;
pub mod http;
pub mod metrics;
pub mod page;
pub mod web_config;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

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

/// Readers (a scrape, the API, the page) waiting for the engine lock. std's `Mutex` is
/// not fair: the engine thread, which releases the lock after each batch and takes it
/// again a moment later, kept winning against the woken reader, and scrapes during
/// full-speed ingestion waited up to a second (docs/BENCHMARKS.md). While this is
/// non-zero the engine lets the reader go first ([`yield_to_readers`]). One counter for
/// the process: a second daemon in the same process (tests) only yields a little more.
static READERS_WAITING: AtomicUsize = AtomicUsize::new(0);

/// Takes the engine lock for reading, ahead of the engine's next batch.
pub fn lock_for_reading(shared: &Mutex<Shared>) -> MutexGuard<'_, Shared> {
    READERS_WAITING.fetch_add(1, Ordering::SeqCst);
    let guard = shared.lock().expect("engine lock poisoned");
    READERS_WAITING.fetch_sub(1, Ordering::SeqCst);
    guard
}

/// Called by the engine thread before it takes the lock for a batch: while a reader
/// waits, give it the lock first (bounded, should a reader be slow to wake).
pub fn yield_to_readers() {
    if READERS_WAITING.load(Ordering::SeqCst) == 0 {
        return;
    }
    let start = Instant::now();
    while READERS_WAITING.load(Ordering::SeqCst) > 0 && start.elapsed() < Duration::from_millis(20)
    {
        std::thread::yield_now();
    }
}
