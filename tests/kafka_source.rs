//! The Kafka source against a real broker (tansu, see tests/support/kafka.rs), driven
//! through `predmon::source::kafka::run` with a channel standing in for the engine:
//! exactly-once delivery and positions in assign mode, restart from a position, a broker
//! outage through a proxy, a paused broker, a broker killed and restarted on durable
//! storage, a consumer group, and consumer lag.
//!
//! Needs `PREDMON_TANSU` (`source scripts/test-env.sh`); without it the tests print a
//! notice and pass, except under `CI=true` where they fail.

#[path = "support/kafka.rs"]
mod kafka;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use kafka::{wait_until, Broker, Producer};
use predmon::config::raw::KafkaSource;
use predmon::source::lines::Line;
use predmon::source::{Batch, SourceContext, SourceStatus};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// What the stand-in engine received.
#[derive(Default)]
struct Got {
    lines: Vec<Vec<u8>>,
    too_large: usize,
    batches: usize,
    /// Position of every applied batch, in order.
    positions: Vec<Value>,
    /// Batches received after `max_batches` and dropped unapplied.
    dropped: usize,
}

impl Got {
    fn events(&self) -> usize {
        self.lines.len() + self.too_large
    }
}

#[derive(Clone)]
struct Options {
    mode: &'static str,
    group: String,
    restored: Option<Value>,
    max_event_bytes: usize,
    capacity: usize,
    /// Apply this many batches, then drop the rest unapplied (a crash before the engine
    /// got to them).
    max_batches: usize,
    properties: Vec<(&'static str, &'static str)>,
    /// More topics for the same source, after the one `start` is given.
    more_topics: Vec<String>,
}

impl Options {
    fn new(mode: &'static str) -> Options {
        Options {
            mode,
            group: kafka::unique("group"),
            restored: None,
            max_event_bytes: 1 << 20,
            capacity: 8,
            max_batches: usize::MAX,
            properties: Vec::new(),
            more_topics: Vec::new(),
        }
    }
}

/// A running source and the task applying its batches.
struct Running {
    got: Arc<Mutex<Got>>,
    status: Arc<SourceStatus>,
    shutdown: CancellationToken,
    /// Milliseconds the stand-in engine spends on each batch.
    delay_ms: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<anyhow::Result<()>>,
    collector: tokio::task::JoinHandle<()>,
}

fn runtime() -> tokio::runtime::Runtime {
    // The source's logs, with RUST_LOG=predmon=debug etc.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_test_writer()
        .try_init();
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

fn start(rt: &tokio::runtime::Runtime, bootstrap: &str, topic: &str, o: Options) -> Running {
    let config = KafkaSource {
        name: "kafka-test".into(),
        brokers: bootstrap.into(),
        topics: std::iter::once(topic.to_string())
            .chain(o.more_topics.iter().cloned())
            .collect(),
        group_id: o.group.clone(),
        mode: o.mode.into(),
        properties: o
            .properties
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
    };
    let (tx, mut rx) = mpsc::channel::<Batch>(o.capacity);
    let status = Arc::new(SourceStatus::default());
    let shutdown = CancellationToken::new();
    let ctx = SourceContext {
        index: 0,
        name: config.name.clone(),
        max_event_bytes: o.max_event_bytes,
        tx,
        restored: o.restored.clone(),
        status: status.clone(),
        shutdown: shutdown.clone(),
        durable: None,
    };
    let got = Arc::new(Mutex::new(Got::default()));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let task = rt.spawn(predmon::source::kafka::run(config, ctx));
    let collector = {
        let got = got.clone();
        let delay_ms = delay_ms.clone();
        let max_batches = o.max_batches;
        rt.spawn(async move {
            while let Some(mut batch) = rx.recv().await {
                let delay = delay_ms.load(Ordering::Relaxed);
                if delay > 0 {
                    tokio::time::sleep(Duration::from_millis(delay)).await;
                }
                let mut g = got.lock().unwrap();
                if g.batches >= max_batches {
                    g.dropped += 1;
                    continue;
                }
                for line in batch.iter() {
                    match line {
                        Line::Event(b) => g.lines.push(b.to_vec()),
                        Line::TooLarge => g.too_large += 1,
                    }
                }
                g.batches += 1;
                g.positions
                    .push(batch.position.clone().expect("every batch has a position"));
                drop(g);
                if let Some(applied) = batch.on_applied.take() {
                    applied();
                }
            }
        })
    };
    Running {
        got,
        status,
        shutdown,
        delay_ms,
        task,
        collector,
    }
}

impl Running {
    fn events(&self) -> usize {
        self.got.lock().unwrap().events()
    }

    /// Cancels the shutdown token; the source must return Ok promptly and close its channel.
    fn stop(self, rt: &tokio::runtime::Runtime) -> Got {
        self.shutdown.cancel();
        let t = Instant::now();
        let result = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(20), self.task).await })
            .expect("the source did not return within 20 s of shutdown")
            .expect("the source task panicked");
        result.expect("the source returned an error");
        rt.block_on(async { tokio::time::timeout(Duration::from_secs(5), self.collector).await })
            .expect("the source's channel stayed open after it returned")
            .unwrap();
        eprintln!("  source stopped in {:?}", t.elapsed());
        Arc::try_unwrap(self.got)
            .ok()
            .expect("collector still holds the results")
            .into_inner()
            .unwrap()
    }
}

fn payload(i: usize) -> String {
    format!(r#"{{"id":"{i}","prediction":"a","label":"b"}}"#)
}

fn produce(producer: &Producer, topic: &str, range: std::ops::Range<usize>) -> Vec<String> {
    let out: Vec<String> = range.map(payload).collect();
    for (i, p) in out.iter().enumerate() {
        producer.send(topic, &format!("k{i}"), p.as_bytes());
    }
    producer.flush();
    out
}

/// Every expected line arrived exactly once and nothing else did.
/// Produces `n` keyed payloads at about 2,000 a second from a thread (so a fault can be
/// injected meanwhile); the thread returns the producer's acknowledged ends.
fn produce_paced(
    bootstrap: &str,
    topic: &str,
    n: usize,
) -> std::thread::JoinHandle<BTreeMap<i32, i64>> {
    let (bootstrap, topic) = (bootstrap.to_string(), topic.to_string());
    std::thread::spawn(move || {
        let producer = Producer::new(&bootstrap);
        for i in 0..n {
            let p = payload(i);
            producer.send(&topic, &format!("k{i}"), p.as_bytes());
            if i % 20 == 0 {
                std::thread::sleep(Duration::from_millis(10));
            }
        }
        producer.flush();
        producer.ends()
    })
}

/// What the topic really holds (payloads in log order) and its end offset per partition:
/// after a fault the producer may have retried a request whose answer was lost, and such
/// a duplicate is in the log, to be delivered like any other message.
fn topic_contents(bootstrap: &str, topic: &str) -> (Vec<String>, BTreeMap<i32, i64>) {
    let records = kafka::read_topic(bootstrap, topic);
    let mut ends = BTreeMap::new();
    for r in &records {
        ends.insert(r.partition, r.offset + 1);
    }
    let log = records
        .iter()
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    (log, ends)
}

fn assert_exactly_once(got: &[Vec<u8>], expected: &[String]) {
    let mut counts: HashMap<&[u8], i64> = HashMap::new();
    for e in expected {
        *counts.entry(e.as_bytes()).or_default() += 1;
    }
    for g in got {
        *counts.entry(g.as_slice()).or_default() -= 1;
    }
    let missing: Vec<_> = counts.iter().filter(|(_, c)| **c > 0).collect();
    let extra: Vec<_> = counts.iter().filter(|(_, c)| **c < 0).collect();
    let show = |v: &[(&&[u8], &i64)]| {
        v.iter()
            .take(5)
            .map(|(l, c)| format!("{} x{}", String::from_utf8_lossy(l), c.abs()))
            .collect::<Vec<_>>()
    };
    assert!(
        missing.is_empty() && extra.is_empty(),
        "{} lines missing (e.g. {:?}), {} lines duplicated or unexpected (e.g. {:?}); got {} of {}",
        missing.len(),
        show(&missing),
        extra.len(),
        show(&extra),
        got.len(),
        expected.len()
    );
}

/// What the topic holds once `producing` (n messages) has finished through a fault: at
/// least the n messages, and whatever the producer retried after a request whose answer
/// the fault swallowed (such a duplicate is in the log, and must be delivered like any
/// message). The topic's ends must be the producer's.
fn topic_after_fault(
    bootstrap: &str,
    topic: &str,
    producing: std::thread::JoinHandle<BTreeMap<i32, i64>>,
    n: usize,
) -> (Vec<String>, BTreeMap<i32, i64>) {
    let produced_ends = producing.join().expect("producer thread");
    let (log, ends) = topic_contents(bootstrap, topic);
    assert!(
        log.len() >= n,
        "the topic holds {} of {n} messages",
        log.len()
    );
    assert_eq!(
        ends, produced_ends,
        "the topic's ends and the producer's differ"
    );
    (log, ends)
}

/// Stops `run` once it has read as many events as `log` holds, and checks that it
/// delivered each message exactly once, with positions that only move forward and end
/// at `ends`.
fn stop_with_every_message(
    rt: &tokio::runtime::Runtime,
    run: Running,
    topic: &str,
    log: &[String],
    ends: &BTreeMap<i32, i64>,
) {
    wait_until(Duration::from_secs(30), "every event in the topic", || {
        run.events() >= log.len()
    });
    // Time for a last batch's positions to reach the snapshot side.
    std::thread::sleep(Duration::from_millis(1500));
    let got = run.stop(rt);
    assert_exactly_once(&got.lines, log);
    assert_positions_monotonic(&got.positions, topic);
    assert_eq!(got.positions.last().unwrap(), &position_of(topic, ends));
}

fn position_of(topic: &str, ends: &BTreeMap<i32, i64>) -> Value {
    let parts: serde_json::Map<String, Value> = ends
        .iter()
        .map(|(p, o)| (p.to_string(), json!(o)))
        .collect();
    json!({ topic: parts })
}

/// Offsets never go back, and every batch's position covers the partitions of the ones
/// before it (positions are cumulative). A topic is absent only until its first message.
fn assert_positions_monotonic(positions: &[Value], topic: &str) {
    let mut last: BTreeMap<String, i64> = BTreeMap::new();
    for pos in positions {
        let Some(parts) = pos[topic].as_object() else {
            assert!(last.is_empty(), "the position lost topic {topic}: {pos}");
            continue;
        };
        for (p, o) in &last {
            let now = parts
                .get(p)
                .and_then(Value::as_i64)
                .expect("position lost a partition");
            assert!(now >= *o, "partition {p} went back from {o} to {now}");
        }
        for (p, o) in parts {
            last.insert(p.clone(), o.as_i64().unwrap());
        }
    }
}

#[test]
fn assign_mode_delivers_every_message_once_with_positions() {
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("assign", 4) else {
        return;
    };
    let producer = Producer::new(&broker.bootstrap());
    let n = 20_000;
    let expected = produce(&producer, &topic, 0..n);
    // A tombstone is no event; an oversized value is one, counted as too large.
    producer.send_tombstone(&topic, "tomb");
    producer.send(&topic, "big", &vec![b'x'; 5000]);
    producer.flush();
    let ends = producer.ends();
    assert_eq!(
        ends.len(),
        4,
        "keys should spread over all 4 partitions: {ends:?}"
    );

    let rt = runtime();
    let mut o = Options::new("assign");
    o.max_event_bytes = 1000;
    let run = start(&rt, &broker.bootstrap(), &topic, o);
    wait_until(Duration::from_secs(30), "all events", || run.events() > n);
    wait_until(Duration::from_secs(5), "source up", || run.status.is_up());
    // Anything extra would show up now.
    std::thread::sleep(Duration::from_millis(1500));
    let got = run.stop(&rt);

    assert_exactly_once(&got.lines, &expected);
    assert_eq!(got.too_large, 1);
    assert_positions_monotonic(&got.positions, &topic);
    assert_eq!(got.positions.last().unwrap(), &position_of(&topic, &ends));
    eprintln!(
        "assign: {n} messages in {} batches, {:?} in all",
        got.batches,
        t0.elapsed()
    );
}

/// One source reading two topics: every message of both once, and the position keeps
/// each topic's partitions apart (partition numbers repeat across topics).
#[test]
fn two_topics_in_one_source_deliver_every_message_once_with_positions() {
    let t0 = Instant::now();
    let Some((broker, first)) = kafka::broker_with_topic("two-a", 2) else {
        return;
    };
    let second = kafka::unique("two-b");
    broker.create_topic(&second, 3);
    let (pa, pb) = (
        Producer::new(&broker.bootstrap()),
        Producer::new(&broker.bootstrap()),
    );
    let mut expected = produce(&pa, &first, 0..5_000);
    expected.extend(produce(&pb, &second, 5_000..12_000));
    let (ends_a, ends_b) = (pa.ends(), pb.ends());
    assert_eq!(
        (ends_a.len(), ends_b.len()),
        (2, 3),
        "{ends_a:?} {ends_b:?}"
    );

    let rt = runtime();
    let mut o = Options::new("assign");
    o.more_topics = vec![second.clone()];
    let run = start(&rt, &broker.bootstrap(), &first, o);
    wait_until(Duration::from_secs(30), "all events", || {
        run.events() >= expected.len()
    });
    // Anything extra would show up now.
    std::thread::sleep(Duration::from_millis(1500));
    let got = run.stop(&rt);

    assert_exactly_once(&got.lines, &expected);
    assert_positions_monotonic(&got.positions, &first);
    assert_positions_monotonic(&got.positions, &second);
    let mut want = position_of(&first, &ends_a);
    want[&second] = position_of(&second, &ends_b)[&second].clone();
    assert_eq!(got.positions.last().unwrap(), &want);
    eprintln!(
        "two topics: {} messages in {} batches, {:?} in all",
        expected.len(),
        got.batches,
        t0.elapsed()
    );
}

#[test]
fn restart_from_the_applied_position_loses_and_repeats_nothing() {
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("restore", 4) else {
        return;
    };
    let producer = Producer::new(&broker.bootstrap());
    let mut expected = produce(&producer, &topic, 0..30_000);
    let rt = runtime();

    // First run: the engine applies 3 batches, then "crashes": later batches are never
    // applied, so their offsets must not count.
    let mut o = Options::new("assign");
    o.max_batches = 3;
    let group = o.group.clone();
    let run = start(&rt, &broker.bootstrap(), &topic, o);
    wait_until(Duration::from_secs(30), "3 batches", || {
        let g = run.got.lock().unwrap();
        g.batches >= 3 && g.dropped >= 1
    });
    let first = run.stop(&rt);
    assert_eq!(first.batches, 3);
    let position = first.positions.last().unwrap().clone();
    assert!(
        first.lines.len() < expected.len(),
        "the first run should stop early"
    );

    // More arrives while predmon is down.
    expected.extend(
        (30_000..35_000)
            .map(payload)
            .inspect(|p| producer.send(&topic, p, p.as_bytes()))
            .collect::<Vec<_>>(),
    );
    producer.flush();

    // Second run, same group, from the position of the last applied batch.
    let mut o = Options::new("assign");
    o.group = group;
    o.restored = Some(position.clone());
    let run = start(&rt, &broker.bootstrap(), &topic, o);
    let want = expected.len() - first.lines.len();
    wait_until(Duration::from_secs(30), "the rest of the events", || {
        run.events() >= want
    });
    std::thread::sleep(Duration::from_millis(1500));
    let second = run.stop(&rt);

    let mut all = first.lines.clone();
    all.extend(second.lines.iter().cloned());
    assert_exactly_once(&all, &expected);
    // The second run's positions start from the restored ones.
    assert_positions_monotonic(
        &std::iter::once(position)
            .chain(second.positions.iter().cloned())
            .collect::<Vec<_>>(),
        &topic,
    );
    assert_eq!(
        second.positions.last().unwrap(),
        &position_of(&topic, &producer.ends())
    );
    eprintln!(
        "restore: {} + {} lines over two runs in {:?}",
        first.lines.len(),
        second.lines.len(),
        t0.elapsed()
    );
}

#[test]
fn broker_outage_marks_down_and_loses_nothing() {
    let Some(tansu) = kafka::tansu() else { return };
    let t0 = Instant::now();
    let broker = Broker::start_behind_proxy(&tansu);
    let topic = kafka::unique("outage");
    broker.create_topic(&topic, 4);
    let rt = runtime();
    let run = start(&rt, &broker.bootstrap(), &topic, Options::new("assign"));
    wait_until(Duration::from_secs(20), "source up", || run.status.is_up());

    // Produce through the proxy at about 2000/s while the broker goes away and back.
    let n = 10_000;
    let producing = produce_paced(&broker.bootstrap(), &topic, n);
    wait_until(Duration::from_secs(30), "a quarter of the events", || {
        run.events() >= n / 4
    });
    let cut_at = run.events();
    broker.proxy().cut();
    let t_cut = Instant::now();
    wait_until(Duration::from_secs(15), "source down", || {
        !run.status.is_up()
    });
    eprintln!(
        "outage: down after {:?} ({cut_at} events before the cut)",
        t_cut.elapsed()
    );
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        !run.status.is_up(),
        "the source came up while the broker was unreachable"
    );
    let during = run.events();
    broker.proxy().restore();
    let t_restore = Instant::now();
    wait_until(Duration::from_secs(30), "source up again", || {
        run.status.is_up()
    });
    eprintln!(
        "outage: up {:?} after restore ({} events arrived during the outage, from the local queue)",
        t_restore.elapsed(),
        during - cut_at
    );
    let (log, ends) = topic_after_fault(&broker.bootstrap(), &topic, producing, n);
    stop_with_every_message(&rt, run, &topic, &log, &ends);
    eprintln!("outage: {} messages, {:?} in all", log.len(), t0.elapsed());
}

/// The broker stops answering without closing anything (SIGSTOP for 12 s): a hung
/// broker, or a silent network partition. No connection breaks, so librdkafka notices
/// only when a request times out: its fetches wait `socket.timeout.ms` (60 s by
/// default), but the source's lag check asks for the partitions' ends every 5 s with a
/// 2 s timeout, and a timed-out request closes the connection. So a source with the
/// defaults goes down within about 10 s, one with `socket.timeout.ms = 2000` within
/// about 4; neither comes up before SIGCONT, both do soon after, and both deliver every
/// event exactly once.
#[test]
fn broker_paused_marks_down_and_loses_nothing() {
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("paused", 4) else {
        return;
    };
    let rt = runtime();
    let mut o = Options::new("assign");
    o.properties = vec![("socket.timeout.ms", "2000")];
    let fast = start(&rt, &broker.bootstrap(), &topic, o);
    let default = start(&rt, &broker.bootstrap(), &topic, Options::new("assign"));
    wait_until(Duration::from_secs(20), "both sources up", || {
        fast.status.is_up() && default.status.is_up()
    });

    let n = 10_000;
    let producing = produce_paced(&broker.bootstrap(), &topic, n);
    wait_until(Duration::from_secs(30), "a quarter of the events", || {
        fast.events() >= n / 4 && default.events() >= n / 4
    });
    let paused_at = fast.events();
    broker.pause();
    let t_pause = Instant::now();
    // (source, when it went down, whether it came up again before SIGCONT)
    let mut seen = [(&fast, None, false), (&default, None, false)];
    while t_pause.elapsed() < Duration::from_secs(12) {
        for (run, down, flapped) in seen.iter_mut() {
            let up = run.status.is_up();
            match down {
                None if !up => *down = Some(t_pause.elapsed()),
                Some(_) if up => *flapped = true,
                _ => {}
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let [(_, fast_down, fast_flapped), (_, default_down, default_flapped)] = seen;
    let fast_down = fast_down.expect("the source with socket.timeout.ms = 2000 stayed up");
    let default_down = default_down.expect("the source with the defaults stayed up");
    assert!(
        !fast_flapped && !default_flapped,
        "a source came up while the broker was stopped"
    );
    // Expected: ~4 s (2 s fetch timeout, 1 s timeout scan, 1 s statistics) and at most
    // ~9 s (5 s lag interval, 2 s timeout, the same 2 s); slack for a loaded machine.
    assert!(
        fast_down < Duration::from_secs(7),
        "socket.timeout.ms = 2000: down only {fast_down:?} after the pause"
    );
    assert!(
        default_down < Duration::from_secs(11),
        "defaults: down only {default_down:?} after the pause"
    );
    let during = fast.events();
    broker.resume();
    let t_resume = Instant::now();
    wait_until(Duration::from_secs(30), "source up again", || {
        fast.status.is_up()
    });
    wait_until(
        Duration::from_secs(30),
        "the default source up again",
        || default.status.is_up(),
    );
    eprintln!(
        "paused: down {fast_down:?} (socket.timeout.ms = 2000) and {default_down:?} \
         (defaults) after SIGSTOP; {paused_at} events before, {} from the local queue \
         meanwhile; up again {:?} after SIGCONT",
        during - paused_at,
        t_resume.elapsed(),
    );
    let (log, ends) = topic_after_fault(&broker.bootstrap(), &topic, producing, n);
    for run in [fast, default] {
        wait_until(Duration::from_secs(10), "source up", || run.status.is_up());
        stop_with_every_message(&rt, run, &topic, &log, &ends);
    }
    eprintln!("paused: {} messages, {:?} in all", log.len(), t0.elapsed());
}

/// The broker crashes (SIGKILL) mid-stream and comes back on the same port and the same
/// durable storage (S3, served locally by moto): the source goes down at once (connections
/// refused), comes up when the broker is back, and delivers every message the topic holds
/// exactly once, resuming at its own positions.
#[test]
fn broker_killed_and_restarted_on_durable_storage_loses_nothing() {
    let Some(tansu) = kafka::tansu() else { return };
    let Some(s3) = kafka::S3::start() else { return };
    let t0 = Instant::now();
    let mut broker = Broker::start_on_s3(&tansu, &s3);
    let topic = kafka::unique("killed");
    broker.create_topic(&topic, 4);
    let rt = runtime();
    let run = start(&rt, &broker.bootstrap(), &topic, Options::new("assign"));
    wait_until(Duration::from_secs(20), "source up", || run.status.is_up());

    let n = 6_000;
    let producing = produce_paced(&broker.bootstrap(), &topic, n);
    wait_until(Duration::from_secs(30), "a quarter of the events", || {
        run.events() >= n / 4
    });
    wait_until(Duration::from_secs(10), "source up before the kill", || {
        run.status.is_up()
    });
    let killed_at = run.events();
    let t_kill = Instant::now();
    broker.kill();
    wait_until(Duration::from_secs(10), "source down", || {
        !run.status.is_up()
    });
    let down = t_kill.elapsed();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        !run.status.is_up(),
        "the source came up while the broker was dead"
    );
    let during = run.events();
    broker.restart();
    let t_restart = Instant::now();
    wait_until(Duration::from_secs(30), "source up again", || {
        run.status.is_up()
    });
    eprintln!(
        "killed: down {down:?} after SIGKILL ({killed_at} events before, {} from the local \
         queue meanwhile), up {:?} after the restart",
        during - killed_at,
        t_restart.elapsed()
    );
    let (log, ends) = topic_after_fault(&broker.bootstrap(), &topic, producing, n);
    stop_with_every_message(&rt, run, &topic, &log, &ends);
    eprintln!(
        "killed: {} messages ({} more than produced: retried by the producer), {:?} in all",
        log.len(),
        log.len() - n,
        t0.elapsed()
    );
}

#[test]
fn group_mode_single_member_gets_every_partition() {
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("group", 4) else {
        return;
    };
    let producer = Producer::new(&broker.bootstrap());
    let n = 8_000;
    let expected = produce(&producer, &topic, 0..n);
    let ends = producer.ends();

    let rt = runtime();
    let run = start(&rt, &broker.bootstrap(), &topic, Options::new("group"));
    // tansu's group join takes 20-60 s.
    wait_until(Duration::from_secs(120), "all events via the group", || {
        run.events() >= n
    });
    let joined = t0.elapsed();
    wait_until(Duration::from_secs(5), "source up", || run.status.is_up());
    std::thread::sleep(Duration::from_millis(1500));
    let got = run.stop(&rt);
    assert_exactly_once(&got.lines, &expected);
    assert_eq!(got.positions.last().unwrap(), &position_of(&topic, &ends));
    eprintln!(
        "group: all {n} events after {joined:?}, {:?} in all",
        t0.elapsed()
    );
}

#[test]
fn consumer_lag_is_reported_and_drains_to_zero() {
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("lag", 2) else {
        return;
    };
    let producer = Producer::new(&broker.bootstrap());
    let n = 40_000;
    produce(&producer, &topic, 0..n);

    let rt = runtime();
    let mut o = Options::new("assign");
    o.capacity = 1;
    let run = start(&rt, &broker.bootstrap(), &topic, o);
    // A slow engine: the source falls behind.
    run.delay_ms.store(1000, Ordering::Relaxed);
    wait_until(Duration::from_secs(20), "a positive lag", || {
        run.status.lag().iter().any(|(_, lag)| *lag > 0)
    });
    let lag = run.status.lag();
    eprintln!("lag: {lag:?} after {:?}", t0.elapsed());
    assert!(lag
        .iter()
        .all(|((t, p), l)| t == &topic && (0..2).contains(p) && *l <= n as i64));

    run.delay_ms.store(0, Ordering::Relaxed);
    wait_until(Duration::from_secs(30), "all events", || run.events() >= n);
    wait_until(
        Duration::from_secs(15),
        "zero lag on both partitions",
        || {
            let lag = run.status.lag();
            lag.len() == 2 && lag.iter().all(|(_, l)| *l == 0)
        },
    );
    run.stop(&rt);
    eprintln!("lag: {:?} in all", t0.elapsed());
}

/// Group mode: an assigned partition starts at the larger of the group's committed
/// offset and the restored (snapshot) position. Partition 0: committed 10, snapshot 30
/// (the instance died between its snapshot and its commit): starts at 30. Partition 1:
/// committed 60, snapshot 30 (another member read on after the snapshot): starts at 60.
/// ~10-30 s (a group join on tansu).
#[test]
fn group_mode_starts_at_the_larger_of_commit_and_snapshot() {
    use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
    use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
    let t0 = Instant::now();
    let Some((broker, topic)) = kafka::broker_with_topic("start", 2) else {
        return;
    };
    let producer = Producer::new(&broker.bootstrap());
    produce(&producer, &topic, 0..600);
    let ends = producer.ends();
    assert!(
        ends.len() == 2 && ends.values().all(|e| *e > 60),
        "{ends:?}"
    );

    let group = kafka::unique("group");
    let committer: BaseConsumer = rdkafka::config::ClientConfig::new()
        .set("bootstrap.servers", broker.bootstrap())
        .set("group.id", &group)
        .set("enable.auto.commit", "false")
        .create()
        .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(&topic, 0, Offset::Offset(10))
        .unwrap();
    tpl.add_partition_offset(&topic, 1, Offset::Offset(60))
        .unwrap();
    committer.commit(&tpl, CommitMode::Sync).unwrap();
    drop(committer);

    let log = kafka::read_topic(&broker.bootstrap(), &topic);
    let expected: Vec<String> = log
        .iter()
        .filter(|r| r.offset >= if r.partition == 0 { 30 } else { 60 })
        .map(|r| String::from_utf8(r.payload.clone().unwrap()).unwrap())
        .collect();
    let rt = runtime();
    let mut o = Options::new("group");
    o.group = group;
    o.restored = Some(json!({ topic.clone(): {"0": 30, "1": 30} }));
    let run = start(&rt, &broker.bootstrap(), &topic, o);
    wait_until(Duration::from_secs(120), "the group's assignment", || {
        run.events() >= expected.len()
    });
    std::thread::sleep(Duration::from_millis(1500));
    let got = run.stop(&rt);
    assert_exactly_once(&got.lines, &expected);
    eprintln!(
        "group start: {} of {} messages, from 30 and 60; {:?}",
        got.lines.len(),
        log.len(),
        t0.elapsed()
    );
}
