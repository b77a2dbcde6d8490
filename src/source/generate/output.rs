//! `predmon generate`: the synthetic stream written to a file (appended), standard output
//! or a Kafka topic, paced in real time or as fast as possible.

use std::io::{ErrorKind, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rdkafka::client::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};

use super::{label_delay, run_token, Generator, Sink, TICK};
use crate::cli::GenerateArgs;
use crate::config::raw::GenerateSource;
use crate::config::{Settings, SourceConfig};

/// Events generated between two writes when unpaced: about a megabyte, so a write system
/// call is amortised over thousands of events.
const CHUNK: usize = 8192;

/// How long the broker has to answer at start, and to take the last events at the end.
const KAFKA_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const KAFKA_FLUSH_TIMEOUT: Duration = Duration::from_secs(30);

pub fn run(args: GenerateArgs) -> anyhow::Result<()> {
    let stop = Arc::new(AtomicBool::new(false));
    watch_signals(stop.clone())?;
    generate(args, stop)
}

/// [`run`] without the signal handlers: stops when `stop` is set.
fn generate(args: GenerateArgs, stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    if !(args.rate.is_finite() && args.rate >= 0.0) {
        bail!(
            "--rate: `{}` is not allowed; give events per second >= 0 (0: as fast as possible)",
            args.rate
        );
    }
    let mut scenario = scenario(args.config.as_deref())?;
    scenario.rate = args.rate;
    label_delay(&scenario)?;
    let target = Target::parse(&args.output)?;
    let mut gen = Generator::new(&scenario).with_run_token(&run_token(&scenario.name));
    if let Some(n) = args.count {
        gen = gen.with_limit(n);
    }
    tracing::info!(
        rate = args.rate,
        count = ?args.count,
        models = ?gen.model_names(),
        label_delay = %scenario.label_delay,
        "generating to {}",
        args.output
    );
    let paced = args.rate > 0.0;
    match target {
        Target::Stdout => drive(
            &mut gen,
            &mut Stream::new(std::io::stdout().lock()),
            paced,
            &stop,
        ),
        Target::File(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .with_context(|| format!("cannot open {} for appending", path.display()))?;
            drive(&mut gen, &mut Stream::new(file), paced, &stop)
                .with_context(|| format!("cannot write to {}", path.display()))
        }
        Target::Kafka { brokers, topic } => {
            let mut out = Kafka::connect(&brokers, &topic, stop.clone())?;
            drive(&mut gen, &mut out, paced, &stop)
        }
    }?;
    tracing::info!(events = gen.emitted(), "done");
    Ok(())
}

/// The first `generate` source of the configuration, else the built-in scenario.
fn scenario(config: Option<&Path>) -> anyhow::Result<GenerateSource> {
    let Some(path) = config else {
        return Ok(GenerateSource::default());
    };
    let settings = Settings::load(Some(path))?;
    let first = settings.sources.iter().find_map(|s| match s {
        SourceConfig::Generate(g) => Some(g.clone()),
        _ => None,
    });
    Ok(first.unwrap_or_else(|| {
        tracing::info!(
            "{} has no generate source: using the built-in scenario",
            path.display()
        );
        GenerateSource::default()
    }))
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Target {
    Stdout,
    File(PathBuf),
    Kafka { brokers: String, topic: String },
}

impl Target {
    fn parse(output: &str) -> anyhow::Result<Target> {
        if output == "-" {
            return Ok(Target::Stdout);
        }
        let Some(rest) = output.strip_prefix("kafka://") else {
            if output.is_empty() {
                bail!("--output: give a file, - for standard output, or kafka://broker:port/topic");
            }
            return Ok(Target::File(PathBuf::from(output)));
        };
        match rest.split_once('/') {
            Some((brokers, topic))
                if !brokers.is_empty() && !topic.is_empty() && !topic.contains('/') =>
            {
                Ok(Target::Kafka {
                    brokers: brokers.to_string(),
                    topic: topic.to_string(),
                })
            }
            _ => bail!(
                "--output: `{output}` is not a Kafka target; write it like kafka://broker:9092/topic"
            ),
        }
    }
}

/// Where the events go.
trait Output {
    type Buf: Sink;
    fn buf(&mut self) -> &mut Self::Buf;
    /// Hands over what is in the buffer and empties it. `Ok(false)`: the reader has gone
    /// (a closed pipe), stop quietly.
    fn write(&mut self) -> anyhow::Result<bool>;
    /// Waits until everything written is delivered.
    fn finish(&mut self) -> anyhow::Result<()>;
}

/// Generates until the limit, a signal or a closed pipe.
fn drive<O: Output>(
    gen: &mut Generator,
    out: &mut O,
    paced: bool,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    while !gen.is_done() && !stop.load(Ordering::Relaxed) {
        if paced {
            // Everything due now, in chunks; the schedule, not the sleep, sets the rate.
            while gen.emit(crate::now_ns(), CHUNK, out.buf()) == CHUNK {
                if !out.write()? {
                    return Ok(());
                }
            }
            if !out.write()? {
                return Ok(());
            }
            if !gen.is_done() {
                std::thread::sleep(TICK);
            }
        } else {
            gen.emit(crate::now_ns(), CHUNK, out.buf());
            if !out.write()? {
                return Ok(());
            }
        }
    }
    out.finish()
}

/// A file or standard output: JSON lines, flushed at every write so a reader sees them live.
struct Stream<W: Write> {
    w: W,
    buf: Vec<u8>,
}

impl<W: Write> Stream<W> {
    fn new(w: W) -> Stream<W> {
        Stream {
            w,
            buf: Vec::with_capacity(2 << 20),
        }
    }
}

impl<W: Write> Output for Stream<W> {
    type Buf = Vec<u8>;

    fn buf(&mut self) -> &mut Vec<u8> {
        &mut self.buf
    }

    fn write(&mut self) -> anyhow::Result<bool> {
        let result = self.w.write_all(&self.buf).and_then(|()| self.w.flush());
        self.buf.clear();
        match result {
            Ok(()) => Ok(true),
            // `predmon generate | head`: the reader has what it wanted.
            Err(e) if e.kind() == ErrorKind::BrokenPipe => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        Ok(())
    }
}

/// Lines and their ids, for one Kafka message each.
#[derive(Default)]
struct Messages {
    bytes: Vec<u8>,
    /// (line, id) ranges into `bytes`.
    spans: Vec<(Range<usize>, Range<usize>)>,
}

impl Sink for Messages {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn line_done(&mut self, start: usize, id: Range<usize>) {
        self.spans.push((start..self.bytes.len(), id));
    }
}

/// Delivery failures and client errors, reported by librdkafka from `poll`.
#[derive(Default)]
struct Reports {
    failed: AtomicU64,
    first_failure: Mutex<Option<String>>,
    last_error: Mutex<Option<String>>,
    last_warning: Mutex<Option<Instant>>,
}

impl Reports {
    /// Logs at most every 10 s: a broker that is down reports every second.
    fn warn(&self, message: &str) {
        let mut last = self.last_warning.lock().expect("warning lock");
        if last.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
            *last = Some(Instant::now());
            tracing::warn!("kafka: {message}");
        }
    }
}

impl ClientContext for Reports {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        tracing::debug!(target: "librdkafka", ?level, "{fac}: {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        *self.last_error.lock().expect("error lock") = Some(format!("{error}: {reason}"));
        self.warn(&format!("{error}: {reason}"));
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        if let Err((e, _)) = result {
            self.failed.fetch_add(1, Ordering::Relaxed);
            let mut first = self.first_failure.lock().expect("failure lock");
            first.get_or_insert_with(|| e.to_string());
            self.warn(&format!("an event was not delivered: {e}"));
        }
    }
}

/// A Kafka topic: one message per event, keyed by the event id so that a prediction and
/// its label land on the same partition, in order.
struct Kafka {
    producer: BaseProducer<Reports>,
    brokers: String,
    topic: String,
    buf: Messages,
    stop: Arc<AtomicBool>,
}

impl Kafka {
    fn connect(brokers: &str, topic: &str, stop: Arc<AtomicBool>) -> anyhow::Result<Kafka> {
        let producer: BaseProducer<Reports> = ClientConfig::new()
            .set("bootstrap.servers", brokers)
            .set("linger.ms", "20")
            // Give up on an event after 30 s rather than librdkafka's 5 minutes, so a broker
            // gone for good is reported while someone is still watching.
            .set("message.timeout.ms", "30000")
            .create_with_context(Reports::default())
            .with_context(|| format!("cannot create a Kafka producer for {brokers}"))?;
        // librdkafka connects lazily and retries forever: ask for metadata so that an
        // unreachable broker is an error now, not silence.
        match producer
            .client()
            .fetch_metadata(Some(topic), KAFKA_CONNECT_TIMEOUT)
        {
            Err(e) => {
                // Client errors (connection refused, no such host) arrive as events.
                producer.poll(Duration::from_millis(100));
                let detail = producer
                    .context()
                    .last_error
                    .lock()
                    .expect("error lock")
                    .clone();
                bail!(
                    "cannot reach the Kafka broker at {brokers} within {}s: {e}{}",
                    KAFKA_CONNECT_TIMEOUT.as_secs(),
                    detail.map(|d| format!(" ({d})")).unwrap_or_default()
                );
            }
            Ok(md) => {
                if let Some(err) = md.topics().first().and_then(|t| t.error()) {
                    tracing::warn!(
                        "kafka topic {topic}: {}; writing anyway (the broker may create it)",
                        RDKafkaErrorCode::from(err)
                    );
                }
            }
        }
        Ok(Kafka {
            producer,
            brokers: brokers.to_string(),
            topic: topic.to_string(),
            buf: Messages::default(),
            stop,
        })
    }
}

impl Output for Kafka {
    type Buf = Messages;

    fn buf(&mut self) -> &mut Messages {
        &mut self.buf
    }

    fn write(&mut self) -> anyhow::Result<bool> {
        let Messages { bytes, spans } = &mut self.buf;
        for (line, id) in spans.drain(..) {
            let mut record = BaseRecord::to(&self.topic)
                .key(&bytes[id])
                .payload(&bytes[line]);
            loop {
                match self.producer.send(record) {
                    Ok(()) => break,
                    // The local queue is full (a slow or absent broker): serve delivery
                    // reports until there is room, unless asked to stop.
                    Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                        if self.stop.load(Ordering::Relaxed) {
                            bytes.clear();
                            return Ok(true);
                        }
                        record = r;
                        self.producer.poll(Duration::from_millis(50));
                    }
                    Err((e, _)) => bail!("cannot produce to Kafka topic {}: {e}", self.topic),
                }
            }
        }
        bytes.clear();
        self.producer.poll(Duration::ZERO);
        Ok(true)
    }

    fn finish(&mut self) -> anyhow::Result<()> {
        let flushed = self.producer.flush(KAFKA_FLUSH_TIMEOUT);
        self.producer.poll(Duration::ZERO);
        let r = self.producer.context();
        let failed = r.failed.load(Ordering::Relaxed);
        if failed > 0 {
            let first = r.first_failure.lock().expect("failure lock").clone();
            bail!(
                "{failed} events were not delivered to Kafka topic {} at {}: {}",
                self.topic,
                self.brokers,
                first.unwrap_or_default()
            );
        }
        flushed.with_context(|| {
            format!(
                "not every event reached Kafka topic {} at {} within {}s",
                self.topic,
                self.brokers,
                KAFKA_FLUSH_TIMEOUT.as_secs()
            )
        })
    }
}

/// Sets `stop` on SIGINT or SIGTERM, from a thread of its own: the generating loop
/// checks it at least every tick, then flushes and exits 0.
fn watch_signals(stop: Arc<AtomicBool>) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the signal handler")?;
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            runtime.block_on(async move {
                #[cfg(unix)]
                {
                    use tokio::signal::unix::{signal, SignalKind};
                    let (mut int, mut term) = match (
                        signal(SignalKind::interrupt()),
                        signal(SignalKind::terminate()),
                    ) {
                        (Ok(i), Ok(t)) => (i, t),
                        (Err(e), _) | (_, Err(e)) => {
                            let _ = ready_tx.send(Err(e));
                            return;
                        }
                    };
                    let _ = ready_tx.send(Ok(()));
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                #[cfg(not(unix))]
                {
                    let _ = ready_tx.send(Ok(()));
                    let _ = tokio::signal::ctrl_c().await;
                }
                stop.store(true, Ordering::Relaxed);
            })
        })
        .context("cannot start the signal handler")?;
    ready_rx
        .recv()
        .context("the signal handler stopped")?
        .context("cannot install the SIGINT/SIGTERM handlers")
}

#[cfg(test)]
mod tests {
    use super::*;

    // Tests call `generate`, not `run`: signal handlers would outlive the test and
    // swallow the Ctrl-C of whoever runs the suite.
    fn no_stop() -> Arc<AtomicBool> {
        Arc::new(AtomicBool::new(false))
    }

    #[test]
    fn targets() {
        assert_eq!(Target::parse("-").unwrap(), Target::Stdout);
        assert_eq!(
            Target::parse("/tmp/x.jsonl").unwrap(),
            Target::File("/tmp/x.jsonl".into())
        );
        assert_eq!(
            Target::parse("kafka://kafka:9092/predmon-events").unwrap(),
            Target::Kafka {
                brokers: "kafka:9092".into(),
                topic: "predmon-events".into()
            }
        );
        assert_eq!(
            Target::parse("kafka://a:1,b:2/t").unwrap(),
            Target::Kafka {
                brokers: "a:1,b:2".into(),
                topic: "t".into()
            }
        );
        for bad in [
            "kafka://",
            "kafka://host:9092",
            "kafka://host:9092/",
            "kafka:///t",
            "kafka://h/t/u",
            "",
        ] {
            let e = Target::parse(bad).unwrap_err().to_string();
            assert!(e.starts_with("--output:"), "{bad}: {e}");
        }
    }

    #[test]
    fn writes_exactly_count_complete_samples_to_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events.jsonl");
        std::fs::write(&path, "{\"already\":\"here\"}\n").unwrap();
        let args = GenerateArgs {
            rate: 0.0,
            output: path.display().to_string(),
            count: Some(10_001),
            config: None,
        };
        generate(args, no_stop()).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        // Appended, not truncated.
        assert_eq!(lines[0], "{\"already\":\"here\"}");
        assert_eq!(lines.len(), 1 + 10_001);
        let mut open = std::collections::HashSet::new();
        for line in &lines[1..] {
            let v: serde_json::Value = serde_json::from_str(line).unwrap();
            let key = format!("{}/{}", v["model"], v["id"]);
            match (v.get("prediction").is_some(), v.get("label").is_some()) {
                (true, true) => assert!(!open.contains(&key)),
                (true, false) => assert!(open.insert(key)),
                (false, true) => assert!(open.remove(&key)),
                _ => panic!("neither half: {line}"),
            }
        }
        assert!(open.is_empty(), "every prediction has its label");
    }

    #[test]
    fn paced_output_follows_the_rate() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("paced.jsonl");
        let started = Instant::now();
        generate(
            GenerateArgs {
                rate: 400.0,
                output: path.display().to_string(),
                count: Some(200),
                config: None,
            },
            no_stop(),
        )
        .unwrap();
        // 200 events at 400/s: 100 samples over ~0.5 s, then the last labels 2 s later.
        let took = started.elapsed();
        assert!(took >= Duration::from_millis(2_300), "{took:?}");
        assert!(took < Duration::from_secs(5), "{took:?}");
        assert_eq!(std::fs::read_to_string(&path).unwrap().lines().count(), 200);
    }

    #[test]
    fn without_a_count_it_runs_until_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endless.jsonl");
        let stop = no_stop();
        let flag = stop.clone();
        let stopper = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(300));
            flag.store(true, Ordering::Relaxed);
        });
        let args = GenerateArgs {
            rate: 0.0,
            output: path.display().to_string(),
            count: None,
            config: None,
        };
        generate(args, stop).unwrap();
        stopper.join().unwrap();
        assert!(std::fs::metadata(&path).unwrap().len() > 0);
    }

    #[test]
    fn a_closed_pipe_ends_the_stream_quietly() {
        struct Closed;
        impl Write for Closed {
            fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
                Err(ErrorKind::BrokenPipe.into())
            }
            fn flush(&mut self) -> std::io::Result<()> {
                Ok(())
            }
        }
        let mut gen = Generator::new(&GenerateSource {
            rate: 0.0,
            ..GenerateSource::default()
        });
        let stop = AtomicBool::new(false);
        drive(&mut gen, &mut Stream::new(Closed), false, &stop).unwrap();
        assert_eq!(
            gen.emitted(),
            CHUNK as u64,
            "stopped at the first failed write"
        );
    }

    #[test]
    fn scenario_comes_from_the_first_generate_source() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("predmon.toml");
        std::fs::write(
            &path,
            "[[sources]]\ntype = \"file\"\npaths = [\"/tmp/x\"]\n\n\
             [[sources]]\ntype = \"generate\"\nmodels = 5\nclasses = 3\nseed = 7\n\n\
             [[sources]]\ntype = \"generate\"\nname = \"second\"\nmodels = 2\n",
        )
        .unwrap();
        let s = scenario(Some(&path)).unwrap();
        assert_eq!((s.models, s.classes, s.seed), (5, 3, 7));
        assert_eq!(
            scenario(None).unwrap().models,
            GenerateSource::default().models
        );
    }

    #[test]
    fn bad_arguments_are_named() {
        let args = |rate: f64, output: &str| GenerateArgs {
            rate,
            output: output.into(),
            count: Some(1),
            config: None,
        };
        let e = generate(args(-1.0, "-"), no_stop())
            .unwrap_err()
            .to_string();
        assert!(e.contains("--rate"), "{e}");
        let e = generate(args(1.0, "kafka://nowhere"), no_stop())
            .unwrap_err()
            .to_string();
        assert!(e.contains("kafka://broker:9092/topic"), "{e}");
    }
}
