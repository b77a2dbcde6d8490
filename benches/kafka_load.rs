//! Puts a file on a Kafka topic, one message per line, for the Kafka stage of
//! `scripts/bench.sh` (the same events as every other row of its table). The bare
//! consumer it is compared with is `examples/kafka_bare.rs`.
//!
//! ```text
//! kafka_load BROKERS TOPIC FILE
//! ```

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

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
        "kafka_load: produced {n} messages to {topic} in {:.2} s",
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.as_slice() {
        [b, t, f] => produce(b, t, f),
        _ => {
            eprintln!("usage: kafka_load BROKERS TOPIC FILE");
            std::process::exit(2)
        }
    }
}
