//! The Kafka source: an rdkafka consumer polled on a dedicated thread, either in a
//! consumer group (`mode = "group"`: partitions balanced across instances) or on every
//! partition of the topics directly (`mode = "assign"`: no group join, starts at once).
//!
//! Exactly-once counting rests on two positions per partition: this instance's, stored
//! in its snapshot beside the counts, and the consumer group's committed offset, where
//! another member takes a partition over.
//! - Every [`Batch`] carries `{"topic": {"partition": next_offset}}` for every partition
//!   this instance reads, and the daemon stores it in the snapshot beside the counts
//!   those lines produced. A restart seeks there (assign mode: in the assignment; group
//!   mode: see the next points), so nothing is lost or counted twice by one instance.
//! - With `[state]`, the group's offsets are committed only as of a durable snapshot:
//!   once a snapshot file is fsynced and renamed, the engine publishes the positions it
//!   holds ([`Durable`]) and the polling thread commits exactly those, for the partitions
//!   it owns and where they are ahead of the group's offset. librdkafka's auto-commit is
//!   off. Hence the group never resumes a partition past what a snapshot counted. These
//!   commits are asynchronous (librdkafka sends commits in order; a synchronous one
//!   would stall polling, and the statistics behind `predmon_source_up`, for as long as
//!   a hung broker leaves it unanswered); the ones on revocation and at shutdown are
//!   synchronous.
//! - On a revocation (rebalance), the lines read from the revoked partitions are sent,
//!   applied (waiting up to `REVOKE_WAIT`, 10 s) and, with `[state]`, written in a
//!   snapshot; then the applied offsets are committed synchronously before the
//!   partitions are given up, so the next owner starts exactly where this instance's
//!   counts end. Their positions then leave this instance's snapshot.
//! - At shutdown (SIGTERM), the last lines are applied and snapshotted and, with
//!   `[state]`, that snapshot's positions committed synchronously before the consumer
//!   leaves the group.
//! - On an assignment, a partition starts at the larger of the group's committed offset
//!   and this instance's restored position for it: the commit is ahead when another
//!   member read on after this instance's snapshot, the snapshot is ahead when this
//!   instance crashed between writing a snapshot and committing it.
//! - Without `[state]`, offsets are stored for librdkafka's auto-commit (every 5 s) once
//!   the engine applied their lines ([`Batch::on_applied`]), and committed synchronously
//!   on revocation. A restart without state starts from zero counts anyway; the commits
//!   only tell where its reading resumes.
//!
//! So when a member dies (SIGKILL, a lost machine), what it applied after its last
//! snapshot dies with it, and the next owner reads those lines again from the offset
//! committed with that snapshot: counted once, by the next owner. What remains (group
//! mode with `[state]`):
//! - between a snapshot reaching the disk and its commit reaching the broker (the next
//!   poll, then one round trip: milliseconds), the group's offset trails the snapshot.
//!   If the instance dies in that instant and another member takes the partition over,
//!   the new owner counts the lines between the previous commit and the snapshot again
//!   (at most one snapshot interval of that partition's lines), while the dead
//!   instance's snapshot, restored later, counted them too: the sum counts them twice.
//!   Restarted before anyone else reads the partition, the instance itself resumes at
//!   its snapshot and nothing is repeated. While commits fail (the broker unreachable),
//!   the same holds for as long as they fail.
//! - the group's committed offset could not be fetched at an assignment (logged): the
//!   partition starts at this instance's snapshot if it has one, which another member
//!   may have read past meanwhile (counted twice), else at librdkafka's own fetch.
//! - a revocation commit that fails (the broker or coordinator unreachable during the
//!   rebalance), or an engine that does not apply the revoked partitions' lines within
//!   `REVOKE_WAIT`, leaves the group's offset behind what this instance counted: the
//!   next owner counts the difference again (logged as a warning).
//! - a split sample whose prediction and label are read by different instances (its
//!   partition moved between the two halves) stays unjoined in both and expires: the
//!   events are counted once each, the sample in neither.
//!
//! Besides the polling thread, a second thread works out consumer lag every few
//! seconds (so it keeps growing even when a slow engine stalls the poller), and the
//! statistics callback (once a second) tells whether the partitions' leaders are
//! connected, for `predmon_source_up`.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, RebalanceProtocol};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{BorrowedMessage, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaRespErr;
use serde::Deserialize;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use crate::config::raw::{is_secret_property, KafkaSource};
use crate::source::lines::Line;
use crate::source::{Batch, Durable, SourceContext, SourceStatus};

/// librdkafka settings predmon picks unless `properties` sets them.
const DEFAULT_PROPERTIES: &[(&str, &str)] = &[
    // A group seen for the first time starts at the beginning of the topics: `latest`
    // would silently skip whatever was produced before predmon first started.
    ("auto.offset.reset", "earliest"),
    ("enable.auto.commit", "true"),
    // librdkafka's default (1000 ms) stalls a fast consumer for a whole second every
    // time its local queue fills up.
    ("fetch.queue.backoff.ms", "10"),
    // Enough prefetched data to keep the engine busy across a fetch round trip, without
    // librdkafka's default 64 MiB per consumer.
    ("queued.max.messages.kbytes", "32768"),
    // An idle partition answers within 100 ms, so a trickle of events is not held back
    // by the broker's long poll.
    ("fetch.wait.max.ms", "100"),
    // Broker connection states for `predmon_source_up`, once a second.
    ("statistics.interval.ms", "1000"),
    // The default backs off up to 10 s between reconnects; 2 s bounds how long a broker
    // that came back stays unused.
    ("reconnect.backoff.max.ms", "2000"),
    // Group mode: a member that died (kill -9, a lost machine) keeps its partitions, and
    // nobody reads them, until the coordinator drops it after the session timeout.
    // With librdkafka's 45 s, an instance restarted right after a kill -9 waited 83 s
    // for an assignment on tansu, with 10 s 19 s (docs/RELIABILITY.md). Heartbeats every
    // 3 s (librdkafka's default), a third of the session, as Kafka recommends.
    ("session.timeout.ms", "10000"),
    ("heartbeat.interval.ms", "3000"),
];

/// How long a batch may wait for more lines before it is sent.
const LINGER: Duration = Duration::from_millis(20);
/// Poll timeout while no batch is open: bounds how late shutdown is noticed.
const IDLE_POLL: Duration = Duration::from_millis(100);
/// How long a revocation (or shutdown) waits for the engine to apply the batches in
/// flight, so that their offsets are committed before another instance takes over.
const REVOKE_WAIT: Duration = Duration::from_secs(10);
const SHUTDOWN_WAIT: Duration = Duration::from_secs(2);
/// librdkafka's close leaves the group (and, without `[state]`, commits the stored
/// offsets); it can hang on a dead broker.
const CLOSE_WAIT: Duration = Duration::from_secs(10);
const LAG_INTERVAL: Duration = Duration::from_secs(5);
/// How long an assignment waits for the group's committed offsets.
const COMMITTED_TIMEOUT: Duration = Duration::from_secs(10);
const METADATA_TIMEOUT: Duration = Duration::from_secs(2);
/// Assign mode looks for new partitions this often (sooner while a topic is missing).
const DISCOVERY_INTERVAL: Duration = Duration::from_secs(30);
const DISCOVERY_RETRY: Duration = Duration::from_secs(2);
const LOG_EVERY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Group,
    Assign,
}

/// (topic, partition) -> the next offset to read.
type Offsets = HashMap<(String, i32), i64>;

/// Reads until `ctx.shutdown` is cancelled, then sends what it read, gives the engine
/// a moment to apply it (so that its offsets are committed), closes and returns Ok.
/// Errors: an invalid mode or restored position, a consumer librdkafka refuses to
/// create, a failed subscription, or a fatal consumer error.
pub async fn run(config: KafkaSource, ctx: SourceContext) -> anyhow::Result<()> {
    let mode = match config.mode.as_str() {
        "group" => Mode::Group,
        "assign" => Mode::Assign,
        other => anyhow::bail!(
            "kafka source `{}`: mode `{other}` is not allowed; use \"group\" or \"assign\"",
            config.name
        ),
    };
    let restored = parse_position(ctx.restored.as_ref()).map_err(|e| {
        anyhow::anyhow!(
            "kafka source `{}`: the restored position {e}; it must be {{\"topic\": \
             {{\"partition\": offset}}}}: fix or remove the state file",
            config.name
        )
    })?;
    let client_config = client_config(&config, ctx.durable.is_some());
    info!(
        source = %config.name,
        mode = %config.mode,
        topics = ?config.topics,
        restored_partitions = restored.len(),
        config = %describe(&client_config),
        "starting kafka consumer"
    );

    // Dropping this future (the task was aborted) stops the thread as shutdown does.
    let stop = ctx.shutdown.child_token();
    let _stop_on_drop = stop.clone().drop_guard();
    let (done_tx, done_rx) = oneshot::channel();
    let name = config.name.clone();
    thread::Builder::new()
        .name(format!("kafka-{name}"))
        .spawn(move || {
            let result = consume(config, mode, client_config, restored, ctx, stop);
            let _ = done_tx.send(result);
        })
        .with_context(|| format!("kafka source `{name}`: cannot start its thread"))?;
    match done_rx.await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("kafka source `{name}`: its thread panicked"),
    }
}

/// `with_state`: `[state]` is configured, so offsets are committed by the source from
/// durable snapshots only, never by librdkafka's auto-commit.
fn client_config(config: &KafkaSource, with_state: bool) -> ClientConfig {
    let mut cc = ClientConfig::new();
    for (k, v) in DEFAULT_PROPERTIES {
        cc.set(*k, *v);
    }
    cc.set("client.id", format!("predmon-{}", config.name));
    for (k, v) in &config.properties {
        cc.set(k, v);
    }
    // Set last: these are what the source's own keys and its commit discipline mean.
    let mut forced = vec![
        (
            "bootstrap.servers",
            config.brokers.as_str(),
            "set `brokers` instead",
        ),
        (
            "group.id",
            config.group_id.as_str(),
            "set `group_id` instead",
        ),
        (
            "enable.auto.offset.store",
            "false",
            "offsets are stored only after the engine counted their events",
        ),
    ];
    if with_state {
        forced.push((
            "enable.auto.commit",
            "false",
            "with [state], offsets are committed only as of a snapshot on disk",
        ));
    }
    for (key, value, why) in forced {
        if let Some(user) = config.properties.get(key) {
            if user != value {
                warn!(
                    source = %config.name,
                    "kafka source `{}`: properties.{key} = `{}` is ignored: {why}",
                    config.name,
                    if is_secret_property(key) { "<redacted>" } else { user }
                );
            }
        }
        cc.set(key, value);
    }
    // librdkafka formats only the log lines at this level or above; ours are rate
    // limited in `KafkaContext::log`.
    cc.set_log_level(
        if tracing::enabled!(target: "librdkafka", tracing::Level::DEBUG) {
            RDKafkaLogLevel::Debug
        } else {
            RDKafkaLogLevel::Warning
        },
    );
    cc
}

/// The effective librdkafka configuration, secrets redacted, for the log.
fn describe(cc: &ClientConfig) -> String {
    let mut kv: Vec<_> = cc.config_map().iter().collect();
    kv.sort();
    kv.iter()
        .map(|(k, v)| {
            if is_secret_property(k) {
                format!("{k}=<redacted>")
            } else {
                format!("{k}={v}")
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads a position as written by [`State::position`].
fn parse_position(value: Option<&serde_json::Value>) -> Result<Offsets, String> {
    let mut out = Offsets::new();
    let Some(value) = value else {
        return Ok(out);
    };
    let topics = value
        .as_object()
        .ok_or_else(|| format!("`{value}` is not an object"))?;
    for (topic, partitions) in topics {
        let partitions = partitions
            .as_object()
            .ok_or_else(|| format!("of topic `{topic}` ({partitions}) is not an object"))?;
        for (partition, offset) in partitions {
            let p: i32 = partition
                .parse()
                .ok()
                .filter(|p| *p >= 0)
                .ok_or_else(|| format!("names partition `{partition}` of `{topic}`"))?;
            let o = offset
                .as_i64()
                .filter(|o| *o >= 0)
                .ok_or_else(|| format!("has offset `{offset}` for `{topic}`/{partition}"))?;
            out.insert((topic.clone(), p), o);
        }
    }
    Ok(out)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic elsewhere must not take the consumer down with a poisoned lock: the data
    // behind these locks is valid after every statement.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// One partition this instance reads.
struct Part {
    topic: Arc<str>,
    partition: i32,
    /// The offset after the last message read (or the restored start).
    next: i64,
    /// Read from since the current batch was opened.
    in_batch: bool,
}

/// What the polling thread and the rebalance callback share.
struct State {
    batch: Batch,
    /// A batch is open (has a line or a position change not sent yet).
    open: bool,
    parts: Vec<Part>,
    /// Index into `parts` of the last message's partition: messages come in runs.
    last: usize,
    /// The current assignment.
    assigned: Vec<(Arc<str>, i32)>,
    /// Restored offsets not yet used (each is used once, by the first assignment of its
    /// partition). Group mode starts a partition at the larger of this and the group's
    /// committed offset.
    restored: Option<Offsets>,
    /// Batches sent so far.
    sent: u64,
}

impl State {
    fn part_index(&mut self, topic: &str, partition: i32) -> usize {
        if let Some(p) = self.parts.get(self.last) {
            if p.partition == partition && &*p.topic == topic {
                return self.last;
            }
        }
        self.last = match self
            .parts
            .iter()
            .position(|p| p.partition == partition && &*p.topic == topic)
        {
            Some(i) => i,
            None => {
                self.parts.push(Part {
                    topic: topic.into(),
                    partition,
                    next: 0,
                    in_batch: false,
                });
                self.parts.len() - 1
            }
        };
        self.last
    }

    /// Starts a partition's position at a restored offset, so that the next snapshot
    /// keeps it even if nothing is read from it before.
    fn seed(&mut self, topic: &str, partition: i32, next: i64) {
        let i = self.part_index(topic, partition);
        self.parts[i].next = next;
    }

    fn position_of(&self, topic: &str, partition: i32) -> Option<i64> {
        self.parts
            .iter()
            .find(|p| p.partition == partition && &*p.topic == topic)
            .map(|p| p.next)
    }

    /// `{"topic": {"partition": next_offset}}` over every partition read.
    fn position(&self) -> serde_json::Value {
        let mut out = serde_json::Map::new();
        for p in &self.parts {
            let topic = out
                .entry(p.topic.to_string())
                .or_insert_with(|| serde_json::Value::Object(serde_json::Map::new()));
            if let serde_json::Value::Object(m) = topic {
                m.insert(p.partition.to_string(), p.next.into());
            }
        }
        serde_json::Value::Object(out)
    }
}

/// Offsets the engine has applied, per partition this instance owns (the engine calls
/// `on_applied` from its own thread). Without `[state]` the polling thread stores them
/// for librdkafka's auto-commit; in any mode a revocation commits the revoked
/// partitions' entries before they go.
#[derive(Default)]
struct Applied {
    inner: Mutex<AppliedInner>,
    /// Batches applied (of any generation).
    batches: AtomicU64,
    dirty: AtomicBool,
}

#[derive(Default)]
struct AppliedInner {
    /// Bumped on every revocation: a batch read before it must not store offsets for a
    /// partition that may since have been counted by another instance.
    generation: u64,
    /// The highest offset applied per partition, until the partition is revoked.
    offsets: HashMap<(Arc<str>, i32), i64>,
}

impl Applied {
    fn record(&self, generation: u64, offsets: Vec<(Arc<str>, i32, i64)>) {
        {
            let mut inner = lock(&self.inner);
            if inner.generation == generation && !offsets.is_empty() {
                for (topic, partition, next) in offsets {
                    let e = inner.offsets.entry((topic, partition)).or_insert(next);
                    *e = (*e).max(next);
                }
                self.dirty.store(true, Ordering::Release);
            }
        }
        self.batches.fetch_add(1, Ordering::AcqRel);
    }
}

/// Lets one message per key through every [`LOG_EVERY`], counting the others.
#[derive(Default)]
struct RateLimit(Mutex<HashMap<String, (Instant, u64)>>);

impl RateLimit {
    /// `Some(n)`: log now; `n` similar messages were held back since the last one.
    fn allow(&self, key: &str) -> Option<u64> {
        let mut m = lock(&self.0);
        let now = Instant::now();
        match m.get_mut(key) {
            Some((at, held)) if now.duration_since(*at) < LOG_EVERY => {
                *held += 1;
                None
            }
            Some((at, held)) => {
                *at = now;
                Some(std::mem::take(held))
            }
            None => {
                m.insert(key.to_string(), (now, 0));
                Some(0)
            }
        }
    }
}

/// The consumer's context: librdkafka calls it back (rebalances, statistics, errors,
/// logs) from inside `poll` on the polling thread, and from the closing thread.
struct KafkaContext {
    name: String,
    index: usize,
    mode: Mode,
    max_event_bytes: usize,
    tx: mpsc::Sender<Batch>,
    status: Arc<SourceStatus>,
    state: Mutex<State>,
    applied: Arc<Applied>,
    /// The engine's channel is closed: nothing more can be delivered.
    closed: AtomicBool,
    /// The consumer is being closed (shutdown), not rebalanced.
    closing: AtomicBool,
    /// Per partition, the end of the log as the last fetch response told it.
    ends: Mutex<HashMap<(Arc<str>, i32), i64>>,
    limit: RateLimit,
    /// With `[state]`: the positions of the snapshots on disk, the only offsets committed.
    durable: Option<Arc<Durable>>,
    /// With `[state]`, per assigned partition: the group's committed offset as far as
    /// this instance knows it (found at assignment, or committed since). Commits at or
    /// below it are skipped, so that a snapshot taken before a rebalance never moves the
    /// group's offset back.
    marks: Mutex<Offsets>,
}

type Kafka = BaseConsumer<KafkaContext>;

impl KafkaContext {
    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// Adds one message to the open batch. Returns (the batch is full, this message
    /// opened it).
    fn push(&self, msg: &BorrowedMessage<'_>) -> (bool, bool) {
        let mut st = self.state();
        let st = &mut *st;
        let opened = !st.open;
        if opened {
            st.open = true;
            st.batch.arrival_ns = crate::now_ns();
        }
        let i = st.part_index(msg.topic(), msg.partition());
        let part = &mut st.parts[i];
        part.next = msg.offset() + 1;
        part.in_batch = true;
        match msg.payload() {
            // A message without a value (a tombstone) is no event; its offset still counts
            // as read.
            None => {}
            Some(p) if p.len() > self.max_event_bytes => st.batch.push(Line::TooLarge),
            Some(p) => st.batch.push_line(p),
        }
        (st.batch.is_full(), opened)
    }

    /// Sends the open batch, if any. Blocks while the engine's channel is full: that is
    /// the backpressure that keeps librdkafka's queue, not ours, holding the backlog.
    fn flush(&self) {
        self.send_batch(false, false)
    }

    /// Sends the open batch; with `position_only`, even when it holds no lines, so that
    /// the snapshot learns a changed position; with `snapshot` (and `[state]`), asks the
    /// engine to write a snapshot after applying it, before it counts as applied.
    fn send_batch(&self, position_only: bool, snapshot: bool) {
        let batch = {
            let mut st = self.state();
            let touched: Vec<(Arc<str>, i32, i64)> = st
                .parts
                .iter_mut()
                .filter(|p| p.in_batch)
                .map(|p| {
                    p.in_batch = false;
                    (p.topic.clone(), p.partition, p.next)
                })
                .collect();
            if touched.is_empty() && st.batch.is_empty() && !position_only && !snapshot {
                return;
            }
            let mut batch = std::mem::replace(&mut st.batch, Batch::new(self.index));
            batch.position = Some(st.position());
            let generation = lock(&self.applied.inner).generation;
            let applied = self.applied.clone();
            batch.on_applied = Some(Box::new(move || applied.record(generation, touched)));
            batch.snapshot = snapshot && self.durable.is_some();
            st.open = false;
            st.sent += 1;
            batch
        };
        if self.tx.blocking_send(batch).is_err() {
            self.closed.store(true, Ordering::Release);
        }
    }

    /// Waits until the engine applied every batch sent, at most `limit`.
    fn wait_applied(&self, limit: Duration) -> bool {
        let target = self.state().sent;
        let start = Instant::now();
        loop {
            if self.applied.batches.load(Ordering::Acquire) >= target {
                return true;
            }
            if start.elapsed() >= limit || self.tx.is_closed() {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Once per poll. Without `[state]`: hands the applied offsets to librdkafka, which
    /// commits them with the next auto-commit (or when the consumer closes). With
    /// `[state]`: commits the positions of a snapshot that reached the disk since.
    fn after_poll(&self, consumer: &Kafka) {
        if self.durable.is_some() {
            self.commit_durable(consumer, false);
        } else {
            self.store_applied(consumer);
        }
    }

    fn store_applied(&self, consumer: &Kafka) {
        // A plain load first: this runs once per poll, and the engine's thread writes it.
        if !self.applied.dirty.load(Ordering::Acquire)
            || !self.applied.dirty.swap(false, Ordering::AcqRel)
        {
            return;
        }
        let offsets = lock(&self.applied.inner).offsets.clone();
        let mut tpl = TopicPartitionList::with_capacity(offsets.len());
        for ((topic, partition), next) in &offsets {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                debug!(source = %self.name, "cannot list offset {topic}/{partition}@{next}: {e}");
            }
        }
        // Fails for partitions revoked meanwhile: they are someone else's to commit.
        if let Err(e) = consumer.store_offsets(&tpl) {
            debug!(source = %self.name, "storing offsets: {e}");
        }
    }

    /// With `[state]`: commits the positions of the last snapshot on disk, for the
    /// partitions assigned now and only where they are ahead of the group's offset.
    /// `at_close`: the last one, synchronous, whether or not it was committed before;
    /// otherwise only a fresh one, asynchronously (a synchronous commit would hold up
    /// polling, and the statistics that tell whether the broker is up, for as long as a
    /// hung broker leaves it unanswered; librdkafka sends commits in order).
    fn commit_durable(&self, consumer: &Kafka, at_close: bool) {
        let Some(durable) = &self.durable else {
            return;
        };
        let position = if at_close {
            durable.latest()
        } else {
            durable.take_fresh()
        };
        let Some(position) = position else {
            return;
        };
        let offsets = match parse_position(Some(&position)) {
            Ok(o) => o,
            Err(e) => {
                error!(source = %self.name, "kafka source `{}`: the snapshot's position {e}", self.name);
                return;
            }
        };
        let tpl = {
            let st = self.state();
            let marks = lock(&self.marks);
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &offsets {
                let assigned = st
                    .assigned
                    .iter()
                    .any(|(t, p)| p == partition && &**t == topic);
                let ahead = marks
                    .get(&(topic.clone(), *partition))
                    .is_none_or(|m| next > m);
                if assigned && ahead {
                    let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
                }
            }
            tpl
        };
        if tpl.count() == 0 {
            return;
        }
        let mode = if at_close {
            CommitMode::Sync
        } else {
            CommitMode::Async
        };
        match consumer.commit(&tpl, mode) {
            Ok(()) if at_close => self.committed(&tpl),
            Ok(()) => {} // `commit_callback` records it
            Err(e) => self.commit_failed(&e),
        }
    }

    /// Records offsets the group now holds.
    fn committed(&self, tpl: &TopicPartitionList) {
        let mut marks = lock(&self.marks);
        for e in tpl.elements() {
            if let Offset::Offset(o) = e.offset() {
                let m = marks
                    .entry((e.topic().to_string(), e.partition()))
                    .or_insert(o);
                *m = (*m).max(o);
            }
        }
    }

    fn commit_failed(&self, e: &KafkaError) {
        // Nothing new to commit is reported as an error too.
        if e.rdkafka_error_code() == Some(RDKafkaErrorCode::NoOffset) {
            return;
        }
        if let Some(held) = self.limit.allow("commit") {
            warn!(
                source = %self.name, held,
                "kafka source `{}`: committing offsets failed: {e}; retried with the next commit",
                self.name
            );
        }
    }

    /// Commits synchronously what the engine applied from `revoked`, before another
    /// instance takes them over (or, without `[state]`, before the consumer closes).
    fn commit_applied(&self, consumer: &Kafka, revoked: &HashSet<(String, i32)>) {
        let tpl = {
            let inner = lock(&self.applied.inner);
            let mut tpl = TopicPartitionList::new();
            for ((topic, partition), next) in &inner.offsets {
                if revoked.contains(&(topic.to_string(), *partition)) {
                    let _ = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next));
                }
            }
            tpl
        };
        if tpl.count() == 0 {
            return;
        }
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => self.committed(&tpl),
            Err(e) => self.commit_failed(&e),
        }
    }

    /// Group mode, partitions assigned: each starts at the larger of the group's
    /// committed offset and this instance's restored position. The commit is ahead when
    /// another member read the partition after this instance's snapshot; the snapshot is
    /// ahead when this instance stopped (crashed) between writing it and committing it.
    fn on_assign(&self, consumer: &Kafka, tpl: &mut TopicPartitionList) {
        let got: Vec<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        let committed: Option<Offsets> = if got.is_empty() {
            Some(Offsets::new())
        } else {
            let mut ask = TopicPartitionList::with_capacity(got.len());
            for (topic, partition) in &got {
                ask.add_partition(topic, *partition);
            }
            match consumer.committed_offsets(ask, COMMITTED_TIMEOUT) {
                Ok(tpl) => Some(
                    tpl.elements()
                        .iter()
                        .filter_map(|e| match e.offset() {
                            Offset::Offset(o) if o >= 0 => {
                                Some(((e.topic().to_string(), e.partition()), o))
                            }
                            _ => None,
                        })
                        .collect(),
                ),
                Err(e) => {
                    warn!(
                        source = %self.name,
                        "kafka source `{}`: cannot fetch the group's committed offsets: {e};                          partitions with a snapshot position start there, the others at                          librdkafka's own fetch of them",
                        self.name
                    );
                    None
                }
            }
        };
        let mut st = self.state();
        let mut marks = lock(&self.marks);
        let (mut from_snapshot, mut from_group) = (Vec::new(), Vec::new());
        for (topic, partition) in &got {
            let key = (topic.clone(), *partition);
            let restored = st.restored.as_mut().and_then(|r| r.remove(&key));
            let group = committed.as_ref().and_then(|c| c.get(&key).copied());
            let start = match (restored, group) {
                (Some(r), Some(c)) if r > c => {
                    from_snapshot.push((key.clone(), c, r));
                    Some(r)
                }
                (Some(r), Some(c)) => {
                    from_group.push((key.clone(), c, r));
                    Some(c)
                }
                (Some(r), None) => Some(r),
                (None, c) => c,
            };
            match group {
                Some(c) => marks.insert(key.clone(), c),
                None => marks.remove(&key),
            };
            if let Some(next) = start {
                if let Err(e) = tpl.set_partition_offset(topic, *partition, Offset::Offset(next)) {
                    warn!(source = %self.name, "cannot start {topic}/{partition} at {next}: {e}");
                } else {
                    st.seed(topic, *partition, next);
                }
            }
            if !st
                .assigned
                .iter()
                .any(|(t, p)| p == partition && &**t == topic)
            {
                st.assigned.push((topic.as_str().into(), *partition));
            }
        }
        info!(
            source = %self.name,
            partitions = ?got,
            // (partition, committed, snapshot): this instance's snapshot is ahead of the
            // group (it stopped before committing it), or behind (another member read on).
            snapshot_ahead = ?from_snapshot,
            group_ahead = ?from_group,
            "kafka partitions assigned"
        );
    }

    /// Group mode, partitions revoked: everything read from them is sent and, as far as
    /// the engine keeps up, applied; with `[state]` a snapshot holding it is written;
    /// then what was applied from them is committed synchronously, so that the next
    /// owner starts exactly where this instance's counts end.
    fn on_revoke(&self, consumer: &Kafka, tpl: &TopicPartitionList) {
        let closing = self.closing.load(Ordering::Acquire);
        let with_state = self.durable.is_some();
        // On close with `[state]`, the shutdown already sent, snapshotted and committed.
        self.send_batch(false, with_state && !closing);
        if !self.wait_applied(REVOKE_WAIT) && !self.tx.is_closed() {
            warn!(
                source = %self.name,
                "kafka source `{}`: the engine did not apply the last batches within {:?} \
                 of a rebalance; their events may be counted again by the partitions' next owner",
                self.name, REVOKE_WAIT
            );
        }
        let revoked: HashSet<(String, i32)> = tpl
            .elements()
            .iter()
            .map(|e| (e.topic().to_string(), e.partition()))
            .collect();
        if with_state && closing {
            // Commits come from snapshots only: the final one was committed before close.
        } else {
            if !with_state {
                self.store_applied(consumer);
            }
            self.commit_applied(consumer, &revoked);
        }
        {
            let mut inner = lock(&self.applied.inner);
            inner.generation += 1;
            inner
                .offsets
                .retain(|(t, p), _| !revoked.contains(&(t.to_string(), *p)));
        }
        lock(&self.marks).retain(|k, _| !revoked.contains(k));
        let mut st = self.state();
        let gone = |t: &str, p: i32| revoked.contains(&(t.to_string(), p));
        st.assigned.retain(|(t, p)| !gone(t, *p));
        for (topic, partition) in &revoked {
            // Another instance reports these now; a stale value here would be summed.
            self.status.set_lag(topic, *partition, 0);
        }
        if st.assigned.is_empty() {
            self.status.set_up(false);
        }
        // A rebalance hands these partitions to another instance, which resumes at the
        // offsets just committed: their positions leave the snapshot (were they to return
        // here, they start at the group's offset then). On close they stay: this
        // instance's snapshot is then the truth for them (a failed final commit must not
        // cost events: the restart starts at the larger of it and the group's offset).
        let moving = !closing && !revoked.is_empty();
        if moving {
            st.parts.retain(|p| !gone(&p.topic, p.partition));
            st.last = 0;
        }
        drop(st);
        if moving {
            self.send_batch(true, false);
        }
        info!(source = %self.name, partitions = ?revoked, "kafka partitions revoked");
    }

    /// Assign mode: assigns the partitions of the topics not assigned yet. Returns
    /// whether every topic was found.
    fn discover(&self, consumer: &Kafka, config: &KafkaSource, seen: &mut HashSet<String>) -> bool {
        let mut complete = true;
        let mut tpl = TopicPartitionList::new();
        let mut added = Vec::new();
        for topic in &config.topics {
            let md = match consumer.fetch_metadata(Some(topic), METADATA_TIMEOUT) {
                Ok(md) => md,
                Err(e) => {
                    self.status.set_up(false);
                    if let Some(held) = self.limit.allow("metadata") {
                        warn!(
                            source = %self.name, held,
                            "kafka source `{}`: cannot fetch metadata of topic `{topic}` from `{}`: \
                             {e}; retrying (check `brokers` and the network)",
                            self.name, config.brokers
                        );
                    }
                    return false;
                }
            };
            let partitions: Vec<i32> = md
                .topics()
                .iter()
                .filter(|t| t.name() == topic && t.error().is_none())
                .flat_map(|t| t.partitions().iter().map(|p| p.id()))
                .collect();
            if partitions.is_empty() {
                complete = false;
                if let Some(held) = self.limit.allow(&format!("missing {topic}")) {
                    warn!(
                        source = %self.name, held,
                        "kafka source `{}`: topic `{topic}` does not exist on the brokers; \
                         create it or fix `topics` (checking again every {:?})",
                        self.name, DISCOVERY_RETRY
                    );
                }
                continue;
            }
            let first_time = seen.insert(topic.clone());
            let mut st = self.state();
            for p in partitions {
                if st.assigned.iter().any(|(t, q)| *q == p && &**t == topic) {
                    continue;
                }
                let restored = st
                    .restored
                    .as_mut()
                    .and_then(|r| r.remove(&(topic.clone(), p)));
                let offset = match restored {
                    Some(next) => {
                        st.seed(topic, p, next);
                        Offset::Offset(next)
                    }
                    // Partitions there at start resume from the group's commits (or
                    // auto.offset.reset); ones created later hold only new messages.
                    None if first_time => Offset::Stored,
                    None => Offset::Beginning,
                };
                if tpl.add_partition_offset(topic, p, offset).is_ok() {
                    added.push((topic.clone(), p, offset));
                }
            }
        }
        if added.is_empty() {
            return complete;
        }
        match consumer.incremental_assign(&tpl) {
            Ok(()) => {
                let mut st = self.state();
                for (topic, p, _) in &added {
                    st.assigned.push((topic.as_str().into(), *p));
                }
                info!(source = %self.name, partitions = ?added, "kafka partitions assigned");
            }
            Err(e) => {
                error!(
                    source = %self.name,
                    "kafka source `{}`: cannot assign {added:?}: {e}; retrying", self.name
                );
                return false;
            }
        }
        complete
    }

    fn on_stats(&self, stats: Stats) {
        // Up: partitions assigned, and the leader of each is connected.
        let st = self.state();
        let up = !st.assigned.is_empty()
            && st.assigned.iter().all(|(topic, partition)| {
                let leader = stats
                    .topics
                    .get(&**topic)
                    .and_then(|t| t.partitions.get(&partition.to_string()))
                    .map_or(-1, |p| p.leader);
                leader >= 0
                    && stats
                        .brokers
                        .values()
                        .any(|b| b.nodeid == leader && b.state == "UP")
            });
        let mut ends = lock(&self.ends);
        for (topic, partition) in &st.assigned {
            let p = stats
                .topics
                .get(&**topic)
                .and_then(|t| t.partitions.get(&partition.to_string()));
            if let Some(end) = p.map(|p| p.ls_offset.max(p.hi_offset)).filter(|e| *e >= 0) {
                ends.insert((topic.clone(), *partition), end);
            }
        }
        drop(ends);
        drop(st);
        if up != self.status.is_up() {
            info!(source = %self.name, up, "kafka source connection state changed");
        }
        self.status.set_up(up);
    }

    fn consume_error(&self, e: &KafkaError) {
        if e.rdkafka_error_code().is_some_and(is_connection_error) {
            return; // `error` below already reported it
        }
        if let Some(held) = self.limit.allow("consume") {
            warn!(source = %self.name, held, "kafka source `{}`: consuming: {e}", self.name);
        }
    }
}

fn is_connection_error(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::Resolve
            | RDKafkaErrorCode::Authentication
            | RDKafkaErrorCode::SSL
    )
}

/// The part of librdkafka's statistics JSON the source reads.
#[derive(Deserialize, Default)]
struct Stats {
    #[serde(default)]
    brokers: HashMap<String, StatsBroker>,
    #[serde(default)]
    topics: HashMap<String, StatsTopic>,
}

#[derive(Deserialize)]
struct StatsBroker {
    #[serde(default = "minus_one")]
    nodeid: i32,
    #[serde(default)]
    state: String,
}

#[derive(Deserialize)]
struct StatsTopic {
    #[serde(default)]
    partitions: HashMap<String, StatsPartition>,
}

#[derive(Deserialize)]
struct StatsPartition {
    #[serde(default = "minus_one")]
    leader: i32,
    #[serde(default = "invalid_offset")]
    hi_offset: i64,
    /// Last stable offset: the end a read_committed consumer (librdkafka's default) sees.
    #[serde(default = "invalid_offset")]
    ls_offset: i64,
}

fn minus_one() -> i32 {
    -1
}

fn invalid_offset() -> i64 {
    -1001
}

impl ClientContext for KafkaContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error
            | RDKafkaLogLevel::Warning => match self.limit.allow(fac) {
                Some(held) => warn!(source = %self.name, held, "librdkafka {fac}: {message}"),
                None => debug!(source = %self.name, "librdkafka {fac}: {message}"),
            },
            RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
                info!(source = %self.name, "librdkafka {fac}: {message}")
            }
            RDKafkaLogLevel::Debug => debug!(source = %self.name, "librdkafka {fac}: {message}"),
        }
    }

    fn stats_raw(&self, statistics: &[u8]) {
        match serde_json::from_slice::<Stats>(statistics) {
            Ok(stats) => self.on_stats(stats),
            Err(e) => debug!(source = %self.name, "unreadable librdkafka statistics: {e}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        let code = error.rdkafka_error_code();
        if code.is_some_and(is_connection_error) {
            if self.status.is_up() {
                info!(source = %self.name, up = false, "kafka source connection state changed");
            }
            self.status.set_up(false);
            if let Some(held) = self.limit.allow("connection") {
                warn!(
                    source = %self.name, held,
                    "kafka source `{}`: cannot reach the brokers: {reason}; librdkafka keeps \
                     retrying (check `brokers`, the network and the security properties)",
                    self.name
                );
            }
        } else if code == Some(RDKafkaErrorCode::Fatal) {
            error!(source = %self.name, "kafka source `{}`: fatal: {reason}", self.name);
        } else if let Some(held) = self.limit.allow("error") {
            warn!(source = %self.name, held, "kafka source `{}`: {error}: {reason}", self.name);
        }
    }
}

impl ConsumerContext for KafkaContext {
    // Overridden as a whole (not via pre/post_rebalance) because the assignment must
    // carry the restored offsets before it is applied, and the default hands hooks only
    // a shared reference to it.
    fn rebalance(&self, consumer: &Kafka, err: RDKafkaRespErr, tpl: &mut TopicPartitionList) {
        let cooperative = matches!(
            consumer.rebalance_protocol(),
            RebalanceProtocol::Cooperative
        );
        let result = match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.on_assign(consumer, tpl);
                if cooperative {
                    consumer.incremental_assign(tpl)
                } else {
                    consumer.assign(tpl)
                }
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.on_revoke(consumer, tpl);
                if cooperative {
                    consumer.incremental_unassign(tpl)
                } else {
                    consumer.unassign()
                }
            }
            other => {
                warn!(source = %self.name, "kafka rebalance failed: {other:?}; rejoining");
                // librdkafka requires clearing the assignment to resynchronise.
                self.on_revoke(consumer, &TopicPartitionList::new());
                consumer.unassign()
            }
        };
        if let Err(e) = result {
            error!(source = %self.name, "kafka source `{}`: applying a rebalance: {e}", self.name);
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.committed(offsets),
            Err(e) => self.commit_failed(&e),
        }
    }
}

/// The polling thread: everything from creating the consumer to closing it.
fn consume(
    config: KafkaSource,
    mode: Mode,
    client_config: ClientConfig,
    restored: Offsets,
    ctx: SourceContext,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let context = KafkaContext {
        name: config.name.clone(),
        index: ctx.index,
        mode,
        max_event_bytes: ctx.max_event_bytes,
        tx: ctx.tx.clone(),
        status: ctx.status.clone(),
        state: Mutex::new(State {
            batch: Batch::new(ctx.index),
            open: false,
            parts: Vec::new(),
            last: 0,
            assigned: Vec::new(),
            restored: Some(restored),
            sent: 0,
        }),
        applied: Arc::default(),
        closed: AtomicBool::new(false),
        closing: AtomicBool::new(false),
        ends: Mutex::default(),
        limit: RateLimit::default(),
        durable: ctx.durable.clone(),
        marks: Mutex::default(),
    };
    ctx.status.set_up(false);
    let consumer: Arc<Kafka> = Arc::new(client_config.create_with_context(context).with_context(
        || {
            format!(
                "kafka source `{}`: cannot create the consumer; check `brokers` and `properties`",
                config.name
            )
        },
    )?);
    let lag_stop = stop.child_token();
    let lag = {
        let consumer = consumer.clone();
        let lag_stop = lag_stop.clone();
        thread::Builder::new()
            .name(format!("kafka-{}-lag", config.name))
            .spawn(move || lag_loop(&consumer, &lag_stop))
            .with_context(|| format!("kafka source `{}`: cannot start its thread", config.name))?
    };

    let result = poll_loop(&consumer, &config, &stop);

    // Shutdown (or a fatal error): deliver what was read, give the engine a moment to
    // apply it (with `[state]`: and to write a snapshot holding it, whose positions are
    // committed now; without: its offsets are committed on close), then close.
    let kc = consumer.context().clone();
    let with_state = kc.durable.is_some();
    kc.send_batch(false, with_state);
    kc.wait_applied(SHUTDOWN_WAIT);
    if with_state {
        kc.commit_durable(&consumer, true);
    } else {
        kc.store_applied(&consumer);
    }
    lag_stop.cancel();
    let _ = lag.join();
    kc.closing.store(true, Ordering::Release);
    let (closed_tx, closed_rx) = std::sync::mpsc::channel();
    let closer = thread::Builder::new()
        .name(format!("kafka-{}-close", config.name))
        .spawn(move || {
            // Leaves the group; without `[state]`, commits the stored offsets.
            drop(consumer);
            let _ = closed_tx.send(());
        });
    if closer.is_ok() && closed_rx.recv_timeout(CLOSE_WAIT).is_err() {
        warn!(
            source = %config.name,
            "kafka source `{}`: closing the consumer took over {CLOSE_WAIT:?}; leaving it",
            config.name
        );
    }
    kc.status.set_up(false);
    result
}

fn poll_loop(
    consumer: &Kafka,
    config: &KafkaSource,
    stop: &CancellationToken,
) -> anyhow::Result<()> {
    let kc = consumer.context();
    let mut seen = HashSet::new();
    let mut next_discovery = Instant::now();
    if kc.mode == Mode::Group {
        let topics: Vec<&str> = config.topics.iter().map(String::as_str).collect();
        consumer.subscribe(&topics).with_context(|| {
            format!(
                "kafka source `{}`: cannot subscribe to {:?}; check the topic names",
                config.name, config.topics
            )
        })?;
    }
    // When the open batch must go, whether or not it is full.
    let mut deadline: Option<Instant> = None;
    let mut polls: u32 = 0;
    loop {
        polls = polls.wrapping_add(1);
        let now = Instant::now();
        // Every 64 messages or when idle: checking the token takes a lock.
        if (polls.is_multiple_of(64) || deadline.is_none())
            && (stop.is_cancelled() || kc.closed.load(Ordering::Acquire))
        {
            break;
        }
        if deadline.is_some_and(|d| now >= d) {
            kc.flush();
            deadline = None;
        }
        if kc.mode == Mode::Assign && now >= next_discovery {
            let complete = kc.discover(consumer, config, &mut seen);
            next_discovery = Instant::now()
                + if complete {
                    DISCOVERY_INTERVAL
                } else {
                    DISCOVERY_RETRY
                };
        }
        kc.after_poll(consumer);
        let timeout = deadline.map_or(IDLE_POLL, |d| d.saturating_duration_since(now));
        match consumer.poll(timeout) {
            Some(Ok(msg)) => {
                let (full, opened) = kc.push(&msg);
                drop(msg);
                if full {
                    kc.flush();
                    deadline = None;
                } else if opened {
                    deadline = Some(Instant::now() + LINGER);
                }
            }
            Some(Err(KafkaError::MessageConsumptionFatal(code))) => anyhow::bail!(
                "kafka source `{}`: the consumer failed for good ({code}); \
                 check the broker and the group's configuration, then restart predmon",
                config.name
            ),
            Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => kc.consume_error(&e),
            None => {}
        }
    }
    Ok(())
}

/// Sleeps `d` in short steps; true when stopped.
fn sleep_or_stop(stop: &CancellationToken, d: Duration) -> bool {
    let until = Instant::now() + d;
    while Instant::now() < until {
        if stop.is_cancelled() {
            return true;
        }
        thread::sleep(Duration::from_millis(50));
    }
    stop.is_cancelled()
}

/// Every [`LAG_INTERVAL`]: the end of each partition minus our position in it.
///
/// The end is the larger of a ListOffsets answer (fresh even while the poller is blocked
/// behind a slow engine, so lag keeps growing then) and the high watermark of the last
/// fetch response from the statistics (some brokers, tansu among them, answer
/// ListOffsets with a stale end). Both only ever grow on a healthy partition.
fn lag_loop(consumer: &Kafka, stop: &CancellationToken) {
    let kc = consumer.context();
    let mut wait = Duration::from_secs(1); // the first figures soon after assignment
    while !sleep_or_stop(stop, wait) {
        wait = LAG_INTERVAL;
        let parts: Vec<(Arc<str>, i32, Option<i64>)> = {
            let st = kc.state();
            st.assigned
                .iter()
                .map(|(t, p)| (t.clone(), *p, st.position_of(t, *p)))
                .collect()
        };
        if parts.is_empty() {
            continue;
        }
        let mut ends = TopicPartitionList::new();
        // Partitions not read from yet start at the group's committed offset.
        let mut unknown = TopicPartitionList::new();
        for (t, p, pos) in &parts {
            let _ = ends.add_partition_offset(t, *p, Offset::End);
            if pos.is_none() {
                unknown.add_partition(t, *p);
            }
        }
        // One request per broker for all partitions: ListOffsets at "latest".
        let listed = match consumer.offsets_for_times(ends, METADATA_TIMEOUT) {
            Ok(tpl) => tpl.to_topic_map(),
            Err(e) => {
                debug!(source = %kc.name, "listing partition ends: {e}");
                HashMap::new()
            }
        };
        let (committed, starts) = if unknown.count() > 0 {
            let mut starts = unknown.clone();
            let _ = starts.set_all_offsets(Offset::Beginning);
            (
                consumer
                    .committed_offsets(unknown, METADATA_TIMEOUT)
                    .map(|tpl| tpl.to_topic_map())
                    .unwrap_or_default(),
                consumer
                    .offsets_for_times(starts, METADATA_TIMEOUT)
                    .map(|tpl| tpl.to_topic_map())
                    .unwrap_or_default(),
            )
        } else {
            (HashMap::new(), HashMap::new())
        };
        let fetched = lock(&kc.ends).clone();
        for (topic, partition, pos) in parts {
            let key = (topic.to_string(), partition);
            let listed = match listed.get(&key) {
                Some(Offset::Offset(o)) => Some(*o),
                _ => None,
            };
            let fetched = fetched.get(&(topic.clone(), partition)).copied();
            let Some(end) = listed.max(fetched) else {
                continue; // nothing known yet
            };
            let pos = match (pos, committed.get(&key), starts.get(&key)) {
                (Some(pos), _, _) => pos,
                (None, Some(Offset::Offset(o)), _) => *o,
                // Nothing committed: auto.offset.reset=earliest starts at the log start.
                (None, _, Some(Offset::Offset(o))) => *o,
                (None, _, _) => continue,
            };
            debug!(source = %kc.name, %topic, partition, ?listed, ?fetched, pos, "consumer lag");
            kc.status.set_lag(&topic, partition, (end - pos).max(0));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[test]
    fn position_round_trips() {
        let mut st = State {
            batch: Batch::new(0),
            open: false,
            parts: Vec::new(),
            last: 0,
            assigned: Vec::new(),
            restored: None,
            sent: 0,
        };
        st.seed("a", 1, 10);
        st.seed("a", 0, 3);
        st.seed("b", 0, 7);
        let pos = st.position();
        assert_eq!(
            pos,
            serde_json::json!({"a": {"0": 3, "1": 10}, "b": {"0": 7}})
        );
        let back = parse_position(Some(&pos)).unwrap();
        assert_eq!(back.len(), 3);
        assert_eq!(back[&("a".to_string(), 1)], 10);
    }

    #[test]
    fn malformed_positions_are_rejected() {
        for bad in [
            serde_json::json!([1]),
            serde_json::json!({"a": 1}),
            serde_json::json!({"a": {"x": 1}}),
            serde_json::json!({"a": {"0": -5}}),
            serde_json::json!({"a": {"0": "5"}}),
        ] {
            assert!(parse_position(Some(&bad)).is_err(), "{bad}");
        }
        assert!(parse_position(None).unwrap().is_empty());
    }

    #[test]
    fn secrets_are_redacted_and_forced_keys_win() {
        let config = KafkaSource {
            name: "k".into(),
            brokers: "b:9092".into(),
            topics: vec!["t".into()],
            group_id: "g".into(),
            mode: "assign".into(),
            properties: BTreeMap::from([
                ("sasl.password".to_string(), "hunter2".to_string()),
                ("enable.auto.offset.store".to_string(), "true".to_string()),
                ("fetch.wait.max.ms".to_string(), "7".to_string()),
            ]),
        };
        let cc = client_config(&config, false);
        assert_eq!(cc.get("enable.auto.commit"), Some("true"));
        let with_state = client_config(&config, true);
        assert_eq!(with_state.get("enable.auto.commit"), Some("false"));
        assert_eq!(cc.get("enable.auto.offset.store"), Some("false"));
        assert_eq!(cc.get("fetch.wait.max.ms"), Some("7"));
        // Defaults that `properties` did not override.
        assert_eq!(cc.get("session.timeout.ms"), Some("10000"));
        assert_eq!(cc.get("heartbeat.interval.ms"), Some("3000"));
        assert_eq!(cc.get("bootstrap.servers"), Some("b:9092"));
        let text = describe(&cc);
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("sasl.password=<redacted>"), "{text}");
    }

    #[test]
    fn rate_limit_holds_back_repeats() {
        let limit = RateLimit::default();
        assert_eq!(limit.allow("x"), Some(0));
        assert_eq!(limit.allow("x"), None);
        assert_eq!(limit.allow("y"), Some(0));
    }
}
