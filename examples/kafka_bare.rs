//! Throughput baseline for the Kafka source: a bare rdkafka consumer that reads a topic
//! and parses each message with serde_json into a borrowed struct, against the same
//! topic read through `predmon::source::kafka::run` with the same parse done by the
//! receiver of its batches (where the engine would decode them).
//!
//! ```text
//! cargo run --release --example kafka_bare -- produce BROKERS TOPIC COUNT
//! cargo run --release --example kafka_bare -- bare    BROKERS TOPIC COUNT
//! cargo run --release --example kafka_bare -- predmon BROKERS TOPIC COUNT
//! cargo run --release --example kafka_bare -- compare BROKERS TOPIC COUNT [ROUNDS]
//! ```
//!
//! The topic must exist (e.g. `tansu topic create --broker tcp://HOST:PORT TOPIC
//! --partitions 4`) and hold COUNT messages (`produce`). Both consumers read COUNT
//! messages from the beginning with the same fetch tuning (predmon's defaults), and
//! the clock starts at the first message, so connection setup is not measured.
//! `compare` alternates the two ROUNDS times (default 3) and prints the medians and
//! their ratio.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::Message;
use serde::Deserialize;
use serde_json::value::RawValue;

/// The fields predmon reads, borrowed from the message.
#[derive(Deserialize)]
#[allow(dead_code)]
struct Event<'a> {
    #[serde(borrow)]
    model: Option<&'a str>,
    #[serde(borrow)]
    id: Option<&'a RawValue>,
    #[serde(borrow)]
    prediction: Option<&'a RawValue>,
    #[serde(borrow)]
    label: Option<&'a RawValue>,
    #[serde(borrow)]
    scores: Option<&'a RawValue>,
    #[serde(borrow)]
    timestamp: Option<&'a RawValue>,
}

fn parse(bytes: &[u8]) -> bool {
    serde_json::from_slice::<Event<'_>>(bytes).is_ok()
}

/// predmon's fetch tuning (src/source/kafka.rs), so that only the client side differs.
fn tuned(brokers: &str) -> ClientConfig {
    let mut cc = ClientConfig::new();
    cc.set("bootstrap.servers", brokers)
        .set("group.id", format!("kafka-bare-{}", std::process::id()))
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .set("queued.max.messages.kbytes", "32768")
        .set("fetch.wait.max.ms", "100");
    cc
}

fn produce(brokers: &str, topic: &str, count: u64) {
    let producer: ThreadedProducer<_> = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.size", "1000000")
        .create()
        .expect("cannot create the producer");
    let classes = ["legit", "fraud", "review"];
    let start = Instant::now();
    for i in 0..count {
        let key = format!("id-{i}");
        let line = format!(
            r#"{{"model":"fraud-v3","id":"{key}","prediction":"{}","label":"{}","scores":{{"legit":0.7,"fraud":0.2,"review":0.1}},"timestamp":{}}}"#,
            classes[(i % 3) as usize],
            classes[((i / 3) % 3) as usize],
            1_700_000_000 + i / 1000
        );
        let mut record = BaseRecord::to(topic).key(&key).payload(&line);
        loop {
            match producer.send(record) {
                Ok(()) => break,
                Err((_, r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
    }
    producer.flush(Duration::from_secs(300)).expect("flush");
    let s = start.elapsed().as_secs_f64();
    println!(
        "produced {count} messages in {s:.2}s ({:.0} msgs/s)",
        count as f64 / s
    );
}

/// Messages per second of a bare consumer that parses each message.
/// CPU time of this process's threads so far (Linux: the kernel's per-thread run time).
fn cpu_seconds() -> f64 {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return f64::NAN;
    };
    let ns: u64 = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("schedstat")).ok())
        .filter_map(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .sum();
    ns as f64 / 1e9
}

/// Messages per second from the first message, and CPU microseconds per message (all
/// threads, librdkafka's included) over the same span.
fn bare(brokers: &str, topic: &str, count: u64) -> (f64, f64) {
    let consumer: BaseConsumer = tuned(brokers).create().expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for p in md.topics()[0].partitions() {
        tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let (mut n, mut bad) = (0u64, 0u64);
    let mut start = None;
    let mut cpu_start = 0.0;
    while n < count {
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                start.get_or_insert_with(|| {
                    cpu_start = cpu_seconds();
                    Instant::now()
                });
                if !m.payload().is_some_and(parse) {
                    bad += 1;
                }
                n += 1;
            }
            Some(Err(e)) => eprintln!("bare: {e}"),
            None => {}
        }
    }
    let s = start.expect("read something").elapsed().as_secs_f64();
    let cpu = cpu_seconds() - cpu_start;
    if bad > 0 {
        eprintln!("bare: {bad} messages did not parse");
    }
    (count as f64 / s, cpu * 1e6 / count as f64)
}

/// Messages per second through predmon's Kafka source, parsed by the batch receiver.
fn predmon(brokers: &str, topic: &str, count: u64) -> f64 {
    use predmon::source::lines::Line;
    use predmon::source::{Batch, SourceContext, SourceStatus};

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Batch>(16);
    let shutdown = tokio_util::sync::CancellationToken::new();
    let config = predmon::config::raw::KafkaSource {
        name: "bench".into(),
        brokers: brokers.into(),
        topics: vec![topic.into()],
        // A new group each time: a group that read the topic before has committed its
        // end and would start there.
        group_id: format!(
            "kafka-bare-predmon-{}-{}",
            std::process::id(),
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos()
        ),
        mode: "assign".into(),
        properties: Default::default(),
    };
    let ctx = SourceContext {
        index: 0,
        name: "bench".into(),
        max_event_bytes: 1 << 20,
        tx,
        restored: None,
        status: Arc::new(SourceStatus::default()),
        shutdown: shutdown.clone(),
        durable: None,
    };
    let task = rt.spawn(predmon::source::kafka::run(config, ctx));
    let (mut n, mut bad) = (0u64, 0u64);
    let mut start = None;
    let mut report = Instant::now();
    while n < count {
        if report.elapsed() >= Duration::from_secs(5) {
            eprintln!("predmon: {n} of {count} so far");
            report = Instant::now();
        }
        let Some(mut batch) = rx.blocking_recv() else {
            panic!("the source stopped after {n} messages");
        };
        start.get_or_insert_with(Instant::now);
        for line in batch.iter() {
            match line {
                Line::Event(b) if parse(b) => {}
                _ => bad += 1,
            }
            n += 1;
        }
        if let Some(applied) = batch.on_applied.take() {
            applied();
        }
    }
    let s = start.expect("read something").elapsed().as_secs_f64();
    shutdown.cancel();
    while rx.blocking_recv().is_some() {}
    rt.block_on(task).unwrap().expect("the source failed");
    if bad > 0 {
        eprintln!("predmon: {bad} messages did not parse");
    }
    n as f64 / s
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // The source's logs with RUST_LOG=predmon=debug.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let usage = "usage: kafka_bare produce|bare|predmon|compare BROKERS TOPIC COUNT [ROUNDS]";
    let (Some(mode), Some(brokers), Some(topic), Some(count)) =
        (args.first(), args.get(1), args.get(2), args.get(3))
    else {
        eprintln!("{usage}");
        std::process::exit(2);
    };
    let count: u64 = count.parse().unwrap_or_else(|_| {
        eprintln!("COUNT `{count}` is not a number; {usage}");
        std::process::exit(2)
    });
    match mode.as_str() {
        "produce" => produce(brokers, topic, count),
        "bare" => {
            let (rate, cpu) = bare(brokers, topic, count);
            println!("bare    {rate:.0} msgs/s, {cpu:.3} us CPU per message");
        }
        "predmon" => println!("predmon {:.0} msgs/s", predmon(brokers, topic, count)),
        "compare" => {
            let rounds: usize = args.get(4).and_then(|r| r.parse().ok()).unwrap_or(3);
            let (mut b, mut p) = (Vec::new(), Vec::new());
            for round in 0..rounds {
                b.push(bare(brokers, topic, count).0);
                p.push(predmon(brokers, topic, count));
                println!(
                    "round {round}: bare {:.0} msgs/s, predmon {:.0} msgs/s",
                    b[round], p[round]
                );
            }
            let (b, p) = (median(b), median(p));
            println!(
                "median: bare {b:.0} msgs/s, predmon {p:.0} msgs/s, ratio {:.2}",
                p / b
            );
        }
        other => {
            eprintln!("unknown mode `{other}`; {usage}");
            std::process::exit(2);
        }
    }
}
