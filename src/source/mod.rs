//! Where event lines come from. Each configured source runs on its own (a task or a
//! thread) and sends [`Batch`]es of lines to the engine over a bounded channel; a
//! batch carries the source's position after its last line, which the daemon stores
//! in its snapshot together with the state those lines produced.
//!
//! - [`lines`]: splits raw bytes into lines under the size limit.
//! - `file`: paths and globs followed like `tail -F`.
//! - `kafka`: an rdkafka consumer.
//! - `generate`: the built-in synthetic stream.

pub mod file;
pub mod generate;
pub mod kafka;
pub mod lines;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use lines::Line;

/// Where one line of a [`Batch`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineRef {
    /// `bytes[start..end]`.
    Event { start: u32, end: u32 },
    /// A line over `limits.max_event_bytes`: counted as `too_large`, its bytes dropped.
    TooLarge,
}

/// Lines from one source, in order. Batches, not single lines, cross the channel: a
/// channel send costs more than decoding a short line.
pub struct Batch {
    /// Index of the source in the configuration (the `source` label's position).
    pub source: usize,
    pub bytes: Vec<u8>,
    pub lines: Vec<LineRef>,
    /// Wall-clock arrival time (ns since the epoch) given to lines without a timestamp.
    pub arrival_ns: i64,
    /// The source's position after this batch, restored into it after a restart.
    pub position: Option<serde_json::Value>,
    /// Called by the engine once every line of the batch is applied (Kafka stores its
    /// offsets here, so nothing is committed before it is counted), and after the
    /// snapshot that [`Batch::snapshot`] asks for.
    pub on_applied: Option<Box<dyn FnOnce() + Send>>,
    /// Write a state snapshot right after applying this batch, before `on_applied` (a
    /// Kafka source giving up partitions in a rebalance, or stopping). Ignored without
    /// `[state]`.
    pub snapshot: bool,
}

/// Lines per batch that sources aim for: large enough to amortise the channel, small
/// enough that a scrape never waits long behind one batch.
pub const BATCH_LINES: usize = 4096;

impl Batch {
    pub fn new(source: usize) -> Batch {
        Batch {
            source,
            bytes: Vec::with_capacity(256 * 1024),
            lines: Vec::with_capacity(BATCH_LINES),
            arrival_ns: 0,
            position: None,
            on_applied: None,
            snapshot: false,
        }
    }

    pub fn push_line(&mut self, line: &[u8]) {
        let start = self.bytes.len() as u32;
        self.bytes.extend_from_slice(line);
        self.lines.push(LineRef::Event {
            start,
            end: self.bytes.len() as u32,
        });
    }

    /// Adds what a [`lines::LineSplitter`] emitted.
    pub fn push(&mut self, line: Line<'_>) {
        match line {
            Line::Event(bytes) => self.push_line(bytes),
            Line::TooLarge => self.lines.push(LineRef::TooLarge),
        }
    }

    pub fn len(&self) -> usize {
        self.lines.len()
    }

    pub fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// Whether the batch should be sent now.
    pub fn is_full(&self) -> bool {
        self.lines.len() >= BATCH_LINES || self.bytes.len() >= 4 << 20
    }

    /// The lines in order.
    pub fn iter(&self) -> impl Iterator<Item = Line<'_>> + '_ {
        self.lines.iter().map(|l| match *l {
            LineRef::Event { start, end } => Line::Event(&self.bytes[start as usize..end as usize]),
            LineRef::TooLarge => Line::TooLarge,
        })
    }
}

/// What a source reports about itself: `predmon_source_up`, `/readyz`, Kafka lag.
#[derive(Debug, Default)]
pub struct SourceStatus {
    up: AtomicBool,
    /// (topic, partition) -> messages behind the high watermark.
    lag: Mutex<BTreeMap<(String, i32), i64>>,
}

impl SourceStatus {
    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::Relaxed);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    pub fn set_lag(&self, topic: &str, partition: i32, lag: i64) {
        self.lag
            .lock()
            .expect("lag lock")
            .insert((topic.to_string(), partition), lag);
    }

    pub fn lag(&self) -> Vec<((String, i32), i64)> {
        self.lag
            .lock()
            .expect("lag lock")
            .iter()
            .map(|(k, v)| (k.clone(), *v))
            .collect()
    }
}

/// Everything a source needs to run.
#[derive(Clone)]
pub struct SourceContext {
    pub index: usize,
    pub name: String,
    pub max_event_bytes: usize,
    pub tx: mpsc::Sender<Batch>,
    /// The position of this source in the restored snapshot, if any.
    pub restored: Option<serde_json::Value>,
    pub status: Arc<SourceStatus>,
    /// Cancelled on SIGTERM/SIGINT: stop reading, send what was read, return.
    pub shutdown: CancellationToken,
    /// With `[state]`: where the engine publishes this source's position as of each
    /// snapshot that reached the disk. `None` without `[state]`.
    pub durable: Option<Arc<Durable>>,
}

/// A source's position as of the last snapshot written to disk (fsynced and renamed),
/// published by the engine after every successful snapshot. The Kafka source commits
/// its consumer group's offsets from here only, so that the group never resumes past
/// what a snapshot holds.
#[derive(Debug, Default)]
pub struct Durable {
    latest: Mutex<Option<serde_json::Value>>,
    fresh: AtomicBool,
}

impl Durable {
    /// Called by the engine after a snapshot holding `position` reached the disk.
    pub fn publish(&self, position: serde_json::Value) {
        *self.latest.lock().expect("durable lock") = Some(position);
        self.fresh.store(true, Ordering::Release);
    }

    /// The position published since the last call, if any.
    pub fn take_fresh(&self) -> Option<serde_json::Value> {
        if !self.fresh.load(Ordering::Acquire) || !self.fresh.swap(false, Ordering::AcqRel) {
            return None;
        }
        self.latest.lock().expect("durable lock").clone()
    }

    /// The last position published, fresh or not.
    pub fn latest(&self) -> Option<serde_json::Value> {
        self.latest.lock().expect("durable lock").clone()
    }
}
