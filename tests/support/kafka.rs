//! Real-broker helpers for integration tests: a tansu broker as a child process, topics,
//! a keyed producer, a reader of a whole topic, and a TCP proxy that can cut the broker off.
//!
//! Include it from a test file with
//!
//! ```ignore
//! #[path = "support/kafka.rs"]
//! mod kafka;
//! ```
//!
//! (`tests/support/` is not a test crate of its own; each test binary compiles its copy,
//! so unused items are allowed.) The API:
//!
//! - [`tansu`]: `$PREDMON_TANSU` (exported by `source scripts/test-env.sh`). When it is
//!   missing it panics under `CI=true` and otherwise prints a notice and returns `None`:
//!   `let Some(tansu) = kafka::tansu() else { return };` skips the test.
//! - [`broker_with_topic`]`(prefix, partitions)`: the two below in one step, as
//!   `let Some((broker, topic)) = kafka::broker_with_topic("x", 4) else { return };`.
//! - [`Broker::start`]`(&tansu)`: tansu on a free port, killed on drop (memory storage:
//!   its topics die with it). [`Broker::start_behind_proxy`] puts a [`Proxy`] in front and
//!   advertises the proxy's address, so clients (re)connect only through it.
//!   `broker.bootstrap()` is the `host:port` clients use; `broker.create_topic(name, n)`;
//!   `broker.proxy()`; `broker.log()` is tansu's output, for failure messages;
//!   `broker.pause()`/`broker.resume()` stop and continue the process (SIGSTOP/SIGCONT):
//!   its connections stay open and its listening socket still completes handshakes, but
//!   nothing answers, as with a hung broker or a silent network partition.
//! - [`S3::start`]`()`: a local S3 server (moto, `$PREDMON_MOTO`, exported by
//!   `scripts/test-env.sh`; skipped or panicking like [`tansu`]) with a fresh bucket;
//!   [`Broker::start_on_s3`]`(&tansu, &s3)` keeps the broker's topics and messages there,
//!   so they outlive the process: `broker.kill()` (SIGKILL) then `broker.restart()` (same
//!   port, same storage) is a broker crash and recovery.
//! - [`Proxy`]: `cut()` drops every open connection (with a reset) and refuses new ones
//!   until `restore()`; `accepted()` counts connections forwarded so far.
//! - [`Producer::new`]`(bootstrap)`: `send(topic, key, payload)`, `send_tombstone(topic,
//!   key)`, `flush()` (panics naming any delivery failure), `delivered()`: (partition,
//!   offset) of every delivered message. librdkafka's partitioner sends equal keys to one
//!   partition.
//! - [`read_topic`]`(bootstrap, topic)`: every message the topic holds now, in
//!   (partition, offset) order, for comparing what a consumer got with what the log holds.
//! - [`split_events`]`(n, seed)`: `2n` (key, JSON line) pairs: a prediction and a label
//!   per id, keyed by id, so both halves land on one partition.
//! - [`unique`]`(prefix)`: a topic or group name unique to this process and call.
//! - [`wait_until`]`(timeout, what, cond)`: polls `cond` every 20 ms, panics naming `what`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer as _, ProducerContext, ThreadedProducer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::ClientContext;
use tokio::sync::watch;

/// The tansu binary, or `None` (after a notice) to skip a test outside CI.
pub fn tansu() -> Option<PathBuf> {
    tool("PREDMON_TANSU", "the tansu broker")
}

/// moto's S3 server (`moto_server`), or `None` (after a notice) to skip a test outside CI.
pub fn moto() -> Option<PathBuf> {
    tool("PREDMON_MOTO", "moto's S3 server")
}

fn tool(var: &str, what: &str) -> Option<PathBuf> {
    match std::env::var_os(var) {
        Some(p) if Path::new(&p).is_file() => Some(PathBuf::from(p)),
        other => {
            let why = match other {
                Some(p) => format!("{var}={} is not a file", Path::new(&p).display()),
                None => format!("{var} is not set"),
            };
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!(
                    "{why}: Kafka tests need {what} under CI; \
                     run `source scripts/test-env.sh` first"
                );
            }
            eprintln!(
                "SKIPPED: {why}; run `source scripts/test-env.sh` to get {what} \
                 and run the Kafka tests"
            );
            None
        }
    }
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// A name unique to this process and call, e.g. for topics and groups.
/// What most tests start from: a broker ([`Broker::start`]) with a fresh topic named
/// after `prefix` ([`unique`]). `None` where [`tansu`] is `None`: the test is skipped.
pub fn broker_with_topic(prefix: &str, partitions: u32) -> Option<(Broker, String)> {
    let tansu = tansu()?;
    let broker = Broker::start(&tansu);
    let topic = unique(prefix);
    broker.create_topic(&topic, partitions);
    Some((broker, topic))
}

pub fn unique(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub fn wait_until(timeout: Duration, what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn free_port() -> u16 {
    StdListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("cannot bind a local port")
        .port()
}

/// A tansu broker, killed on drop.
pub struct Broker {
    tansu: PathBuf,
    child: Child,
    /// Where tansu listens.
    port: u16,
    /// Where tansu tells clients to connect (the proxy's port behind one).
    advertised: u16,
    log: PathBuf,
    proxy: Option<Proxy>,
    /// `--storage-engine` and the environment it needs (memory storage when `None`).
    storage: Option<(String, Vec<(String, String)>)>,
}

impl Broker {
    pub fn start(tansu: &Path) -> Broker {
        Broker::launch(tansu, false, None)
    }

    /// Behind a [`Proxy`], advertised at the proxy's address.
    pub fn start_behind_proxy(tansu: &Path) -> Broker {
        Broker::launch(tansu, true, None)
    }

    /// With its topics and messages in `s3`'s bucket: they survive [`Broker::kill`].
    pub fn start_on_s3(tansu: &Path, s3: &S3) -> Broker {
        Broker::launch(tansu, false, Some(s3.storage()))
    }

    fn launch(
        tansu: &Path,
        behind_proxy: bool,
        storage: Option<(String, Vec<(String, String)>)>,
    ) -> Broker {
        // A port picked free can be taken before tansu binds it: try a few.
        let mut last_log = String::new();
        for _ in 0..5 {
            let port = free_port();
            let proxy =
                behind_proxy.then(|| Proxy::start(SocketAddr::from(([127, 0, 0, 1], port))));
            let advertised = match &proxy {
                Some(p) => p.addr().port(),
                None => port,
            };
            let log = std::env::temp_dir()
                .join(format!("predmon-tansu-{}-{port}.log", std::process::id()));
            let child = spawn_tansu(tansu, port, advertised, storage.as_ref(), &log);
            let mut broker = Broker {
                tansu: tansu.to_path_buf(),
                child,
                port,
                advertised,
                log,
                proxy,
                storage: storage.clone(),
            };
            if broker.wait_listening() {
                return broker;
            }
            last_log = broker.log();
        }
        panic!("tansu did not start listening; its output:\n{last_log}");
    }

    /// Waits up to 15 s for tansu to accept connections; false if it exits or does not.
    fn wait_listening(&mut self) -> bool {
        let start = Instant::now();
        while start.elapsed() < Duration::from_secs(15) {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            if StdStream::connect(("127.0.0.1", self.port)).is_ok() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    /// SIGKILL: a broker crash. Its connections close; nothing listens on its port.
    pub fn kill(&mut self) {
        self.child.kill().expect("cannot kill tansu");
        self.child.wait().expect("cannot reap tansu");
    }

    /// Starts tansu again after [`Broker::kill`], on the same port and storage (its log
    /// goes on in the same file).
    pub fn restart(&mut self) {
        assert!(
            self.storage.is_some(),
            "restarting a broker on memory storage: its topics are gone"
        );
        self.child = spawn_tansu(
            &self.tansu,
            self.port,
            self.advertised,
            self.storage.as_ref(),
            &self.log,
        );
        assert!(
            self.wait_listening(),
            "tansu did not start listening again on port {}; its output:\n{}",
            self.port,
            self.log()
        );
    }

    /// `host:port` for clients: the proxy when there is one.
    pub fn bootstrap(&self) -> String {
        match &self.proxy {
            Some(p) => p.addr().to_string(),
            None => format!("127.0.0.1:{}", self.port),
        }
    }

    /// tansu's own address, bypassing the proxy (only for the first request: metadata
    /// sends clients to the advertised address).
    pub fn direct(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn proxy(&self) -> &Proxy {
        self.proxy
            .as_ref()
            .expect("this broker was started without a proxy")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGSTOP: the broker stops answering without closing anything.
    pub fn pause(&self) {
        self.signal("STOP");
    }

    /// SIGCONT after [`Broker::pause`].
    pub fn resume(&self) {
        self.signal("CONT");
    }

    fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("cannot run kill");
        assert!(status.success(), "kill -{name} tansu failed: {status}");
    }

    pub fn create_topic(&self, name: &str, partitions: u32) {
        let out = Command::new(&self.tansu)
            .args(["topic", "create", "--broker"])
            .arg(format!("tcp://127.0.0.1:{}", self.port))
            .arg(name)
            .arg("--partitions")
            .arg(partitions.to_string())
            .output()
            .expect("cannot run tansu topic create");
        assert!(
            out.status.success(),
            "tansu topic create {name} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

fn spawn_tansu(
    tansu: &Path,
    port: u16,
    advertised: u16,
    storage: Option<&(String, Vec<(String, String)>)>,
    log: &Path,
) -> Child {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .expect("cannot open tansu's log file");
    let mut cmd = Command::new(tansu);
    cmd.arg("broker")
        .arg("--listener-url")
        .arg(format!("tcp://127.0.0.1:{port}"))
        .arg("--advertised-listener-url")
        .arg(format!("tcp://127.0.0.1:{advertised}"));
    if let Some((url, env)) = storage {
        cmd.arg("--storage-engine").arg(url);
        cmd.envs(env.iter().map(|(k, v)| (k, v)));
    }
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone().expect("log file handle"))
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", tansu.display()))
}

/// A local S3 server (moto) with one bucket, killed on drop with everything in it.
pub struct S3 {
    child: Child,
    port: u16,
    bucket: String,
}

impl S3 {
    /// `None` (after a notice) when moto is missing outside CI.
    pub fn start() -> Option<S3> {
        let moto = moto()?;
        for _ in 0..5 {
            let port = free_port();
            let mut child = Command::new(&moto)
                .args(["-H", "127.0.0.1", "-p"])
                .arg(port.to_string())
                .stdin(Stdio::null())
                // It logs every request.
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap_or_else(|e| panic!("cannot run {}: {e}", moto.display()));
            let start = Instant::now();
            while start.elapsed() < Duration::from_secs(30) {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if StdStream::connect(("127.0.0.1", port)).is_ok() {
                    let s3 = S3 {
                        child,
                        port,
                        bucket: unique("tansu"),
                    };
                    s3.create_bucket();
                    return Some(s3);
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("moto's S3 server did not start listening");
    }

    /// moto does not check signatures: a bare PUT makes a bucket.
    fn create_bucket(&self) {
        use std::io::{Read, Write};
        let mut conn = StdStream::connect(("127.0.0.1", self.port)).expect("connect to moto");
        write!(
            conn,
            "PUT /{} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
            self.bucket, self.port
        )
        .expect("send to moto");
        let mut reply = String::new();
        let _ = conn.read_to_string(&mut reply);
        assert!(
            reply.starts_with("HTTP/1.1 200") || reply.starts_with("HTTP/1.0 200"),
            "moto refused to create bucket {}: {reply}",
            self.bucket
        );
    }

    /// tansu's `--storage-engine` and the environment object_store reads.
    fn storage(&self) -> (String, Vec<(String, String)>) {
        let env = [
            ("AWS_ENDPOINT", format!("http://127.0.0.1:{}", self.port)),
            ("AWS_ALLOW_HTTP", "true".into()),
            ("AWS_ACCESS_KEY_ID", "predmon".into()),
            ("AWS_SECRET_ACCESS_KEY", "predmon".into()),
            ("AWS_REGION", "us-east-1".into()),
        ];
        (
            format!("s3://{}/", self.bucket),
            env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
        )
    }
}

impl Drop for S3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A paused broker dies of SIGKILL all the same.
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.log);
    }
}

/// A TCP proxy in front of the broker, on its own runtime thread.
pub struct Proxy {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    cut: watch::Sender<u64>,
    accepted: Arc<AtomicUsize>,
    rt: Option<tokio::runtime::Runtime>,
}

impl Proxy {
    // `set_linger` is deprecated because a lingering close blocks; a zero linger never
    // does, it resets the connection, which is the point.
    #[allow(deprecated)]
    pub fn start(upstream: SocketAddr) -> Proxy {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .expect("proxy runtime");
        let std_listener = StdListener::bind("127.0.0.1:0").expect("cannot bind the proxy");
        std_listener.set_nonblocking(true).expect("nonblocking");
        let addr = std_listener.local_addr().expect("proxy address");
        let listener = {
            let _in_rt = rt.enter();
            tokio::net::TcpListener::from_std(std_listener).expect("proxy listener")
        };
        let open = Arc::new(AtomicBool::new(true));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (cut, _) = watch::channel(0u64);
        let (open2, accepted2, cut2) = (open.clone(), accepted.clone(), cut.clone());
        rt.spawn(async move {
            loop {
                let Ok((client, _)) = listener.accept().await else {
                    continue;
                };
                if !open2.load(Ordering::SeqCst) {
                    // Refused: a reset before the first byte, as a dead host would give.
                    let _ = client.set_linger(Some(Duration::ZERO));
                    drop(client);
                    continue;
                }
                accepted2.fetch_add(1, Ordering::SeqCst);
                let mut cut_rx = cut2.subscribe();
                tokio::spawn(async move {
                    let mut client = client;
                    let Ok(mut server) = tokio::net::TcpStream::connect(upstream).await else {
                        return;
                    };
                    let _ = client.set_nodelay(true);
                    let _ = server.set_nodelay(true);
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                        _ = cut_rx.changed() => {
                            let _ = client.set_linger(Some(Duration::ZERO));
                            let _ = server.set_linger(Some(Duration::ZERO));
                        }
                    }
                });
            }
        });
        Proxy {
            addr,
            open,
            cut,
            accepted,
            rt: Some(rt),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Drops every open connection and refuses new ones.
    pub fn cut(&self) {
        self.open.store(false, Ordering::SeqCst);
        self.cut.send_modify(|g| *g += 1);
    }

    pub fn restore(&self) {
        self.open.store(true, Ordering::SeqCst);
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        if let Some(rt) = self.rt.take() {
            rt.shutdown_background();
        }
    }
}

#[derive(Default)]
struct Deliveries {
    ok: Mutex<Vec<(i32, i64)>>,
    failed: Mutex<Vec<String>>,
}

struct ProduceContext(Arc<Deliveries>);

impl ClientContext for ProduceContext {}

impl ProducerContext for ProduceContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(m) => self.0.ok.lock().unwrap().push((m.partition(), m.offset())),
            Err((e, _)) => self.0.failed.lock().unwrap().push(e.to_string()),
        }
    }
}

/// A producer of keyed messages.
pub struct Producer {
    inner: ThreadedProducer<ProduceContext>,
    deliveries: Arc<Deliveries>,
}

impl Producer {
    pub fn new(bootstrap: &str) -> Producer {
        Producer::with(bootstrap, &[])
    }

    /// With extra librdkafka properties.
    pub fn with(bootstrap: &str, properties: &[(&str, &str)]) -> Producer {
        let deliveries = Arc::new(Deliveries::default());
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", bootstrap)
            .set("linger.ms", "5")
            // Long enough to ride out a test's broker outage.
            .set("message.timeout.ms", "120000")
            .set("reconnect.backoff.max.ms", "500");
        for (k, v) in properties {
            cc.set(*k, *v);
        }
        let inner = cc
            .create_with_context(ProduceContext(deliveries.clone()))
            .expect("cannot create the producer");
        Producer { inner, deliveries }
    }

    pub fn send(&self, topic: &str, key: &str, payload: &[u8]) {
        self.enqueue(BaseRecord::to(topic).key(key).payload(payload));
    }

    /// A message without a value.
    pub fn send_tombstone(&self, topic: &str, key: &str) {
        self.enqueue(BaseRecord::<str, [u8]>::to(topic).key(key));
    }

    fn enqueue<K, P>(&self, mut record: BaseRecord<'_, K, P>)
    where
        K: rdkafka::message::ToBytes + ?Sized,
        P: rdkafka::message::ToBytes + ?Sized,
    {
        loop {
            match self.inner.send(record) {
                Ok(()) => return,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err((e, _)) => panic!("cannot produce: {e}"),
            }
        }
    }

    /// Waits for every message to be delivered; panics on any failure.
    pub fn flush(&self) {
        self.inner
            .flush(Duration::from_secs(120))
            .expect("producer flush timed out");
        let failed = self.deliveries.failed.lock().unwrap();
        assert!(
            failed.is_empty(),
            "{} deliveries failed, e.g. {:?}",
            failed.len(),
            failed.first()
        );
    }

    /// (partition, offset) of every message delivered so far.
    pub fn delivered(&self) -> Vec<(i32, i64)> {
        self.deliveries.ok.lock().unwrap().clone()
    }

    /// Per partition, the offset after the last delivered message.
    pub fn ends(&self) -> BTreeMap<i32, i64> {
        let mut out = BTreeMap::new();
        for (p, o) in self.delivered() {
            let e = out.entry(p).or_insert(0);
            *e = (*e).max(o + 1);
        }
        out
    }
}

/// One message as stored in the topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    pub payload: Option<Vec<u8>>,
}

/// Every message the topic holds now, ordered by (partition, offset). Takes a second
/// longer than the reading itself: see the comment on tansu's watermarks inside.
pub fn read_topic(bootstrap: &str, topic: &str) -> Vec<Record> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", unique("read-topic"))
        .set("enable.auto.commit", "false")
        .set("fetch.queue.backoff.ms", "10")
        .create()
        .expect("cannot create the reader");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let partitions: Vec<i32> = md.topics()[0].partitions().iter().map(|p| p.id()).collect();
    assert!(!partitions.is_empty(), "topic {topic} has no partitions");
    let watermarks = |consumer: &BaseConsumer| -> BTreeMap<i32, i64> {
        partitions
            .iter()
            .map(|&p| {
                let (_, high) = consumer
                    .fetch_watermarks(topic, p, Duration::from_secs(10))
                    .expect("watermarks");
                (p, high)
            })
            .collect()
    };
    let mut tpl = TopicPartitionList::new();
    for &p in &partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .unwrap();
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut next: BTreeMap<i32, i64> = partitions.iter().map(|p| (*p, 0)).collect();
    let start = Instant::now();
    let mut last_message = Instant::now();
    // tansu's high watermark can trail the last batch it acknowledged by a few messages,
    // so read past it until the topic has been quiet for a second.
    let ends = watermarks(&consumer);
    loop {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "reading {topic} back timed out at {next:?} of {ends:?}"
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(m)) => {
                last_message = Instant::now();
                next.insert(m.partition(), m.offset() + 1);
                out.push(Record {
                    partition: m.partition(),
                    offset: m.offset(),
                    key: m.key().map(<[u8]>::to_vec),
                    payload: m.payload().map(<[u8]>::to_vec),
                });
            }
            Some(Err(e)) => eprintln!("read_topic {topic}: {e}"),
            None => {
                let reached = next.iter().all(|(p, o)| *o >= ends[p]);
                if reached && last_message.elapsed() >= Duration::from_secs(1) {
                    break;
                }
            }
        }
    }
    out.sort_by_key(|r| (r.partition, r.offset));
    out
}

/// `2n` (key, line) pairs: per id a prediction then a label, keyed by the id. Classes,
/// models and correctness vary deterministically with `seed`; timestamps are recent.
pub fn split_events(n: usize, seed: u64) -> Vec<(String, String)> {
    let classes = ["cat", "dog", "bird"];
    let mut x = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let mut next = move || {
        x = x
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (x >> 33) as usize
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let mut out = Vec::with_capacity(2 * n);
    for i in 0..n {
        let id = format!("{seed}-{i}");
        let model = if i % 3 == 0 { "m-a" } else { "m-b" };
        let label = classes[next() % classes.len()];
        let prediction = if next() % 4 == 0 {
            classes[next() % classes.len()]
        } else {
            label
        };
        let ts = now - 30.0 + (i as f64) * 1e-4;
        out.push((
            id.clone(),
            format!(r#"{{"model":"{model}","id":"{id}","prediction":"{prediction}","timestamp":{ts:.4}}}"#),
        ));
        out.push((
            id.clone(),
            format!(r#"{{"model":"{model}","id":"{id}","label":"{label}","timestamp":{ts:.4}}}"#),
        ));
    }
    out
}
