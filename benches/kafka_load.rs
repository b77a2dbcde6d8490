//! The Kafka reference point of `scripts/bench.sh`: a bare rdkafka consumer that
//! parses each message with serde_json (the borrowed struct of `benches/limits.rs`)
//! and keeps one hash-map count, and the loader that puts a file on a topic.
//!
//! ```text
//! kafka_bare produce BROKERS TOPIC FILE     one message per line, then flush
//! kafka_bare consume BROKERS TOPIC COUNT    every partition from the start, until COUNT
//! ```
//!
//! `consume` prints `messages=N seconds=S events_per_second=R`, timed from the
//! consumer's creation to the COUNT-th message, as predmon's run is timed from start.

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};
use rdkafka::{Message, Offset, TopicPartitionList};
use rustc_hash::FxHashMap;

#[path = "support/serde_event.rs"]
mod serde_event;
use serde_event::{key, Event};

fn produce(brokers: &str, topic: &str, path: &str) -> anyhow::Result<()> {
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("linger.ms", "20")
        .set("batch.num.messages", "10000")
        .set("queue.buffering.max.messages", "1000000")
        .set("queue.buffering.max.kbytes", "1048576")
        .create()?;
    let started = Instant::now();
    let mut n = 0u64;
    for line in BufReader::with_capacity(1 << 20, std::fs::File::open(path)?).split(b'\n') {
        let line = line?;
        loop {
            match producer.send(BaseRecord::<(), [u8]>::to(topic).payload(&line)) {
                Ok(()) => break,
                Err((e, _)) => {
                    if !matches!(
                        e.rdkafka_error_code(),
                        Some(rdkafka::types::RDKafkaErrorCode::QueueFull)
                    ) {
                        anyhow::bail!("produce: {e}");
                    }
                    producer.poll(Duration::from_millis(10));
                }
            }
        }
        n += 1;
        if n.is_multiple_of(10_000) {
            producer.poll(Duration::ZERO);
        }
    }
    producer.flush(Duration::from_secs(120))?;
    eprintln!(
        "kafka_bare: produced {n} messages to {topic} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn consume(brokers: &str, topic: &str, count: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", "bench-bare")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "false")
        .create()?;
    let meta = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut tpl = TopicPartitionList::new();
    for t in meta.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)?;
        }
    }
    consumer.assign(&tpl)?;
    let (mut n, mut invalid) = (0u64, 0u64);
    let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
    while n < count {
        if started.elapsed() > Duration::from_secs(300) {
            anyhow::bail!("consume: only {n} of {count} messages after 300 s");
        }
        let Some(msg) = consumer.poll(Duration::from_millis(100)) else {
            continue;
        };
        let msg = msg?;
        n += 1;
        match serde_json::from_slice::<Event<'_>>(msg.payload().unwrap_or_default()) {
            Ok(e) => *counts.entry(key(&e)).or_default() += 1,
            Err(_) => invalid += 1,
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    std::hint::black_box(&counts);
    println!(
        "messages={n} seconds={seconds:.4} events_per_second={:.0} invalid={invalid}",
        n as f64 / seconds
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [m, b, t, f] if m == "produce" => produce(b, t, f),
        [m, b, t, n] if m == "consume" => consume(b, t, n.parse()?),
        _ => {
            eprintln!("usage: kafka_bare produce BROKERS TOPIC FILE | consume BROKERS TOPIC COUNT");
            std::process::exit(2)
        }
    }
}
