//! Helpers for tests that run the real `predmon` binary: spawn `predmon run` on a free
//! port with a config, scrape and parse `/metrics`, run `predmon report`.
//!
//! Include with `#[path = "support/daemon.rs"] mod daemon;`.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_predmon")
}

/// A `predmon run` child process, killed on drop.
pub struct Daemon {
    pub child: Child,
    pub port: u16,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

impl Daemon {
    /// Starts `predmon run --config <config>` on `port` and waits until `/healthz` answers.
    pub fn start(config: &Path, port: u16) -> Daemon {
        let child = Command::new(binary())
            .args(["run", "--config"])
            .arg(config)
            .args(["--web.listen-address", &format!("127.0.0.1:{port}")])
            .env("PREDMON_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn predmon");
        let mut d = Daemon { child, port };
        let deadline = Instant::now() + Duration::from_secs(20);
        while http_get(port, "/healthz").map(|(s, _)| s) != Some(200) {
            if let Ok(Some(status)) = d.child.try_wait() {
                panic!("predmon exited early: {status}");
            }
            assert!(
                Instant::now() < deadline,
                "predmon did not answer /healthz within 20 s"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        d
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = http_get(self.port, "/metrics").expect("scrape");
        assert_eq!(status, 200, "{body}");
        Metrics::parse(&body)
    }

    /// Waits until `predmon_events_total` (all sources) reaches `n`.
    pub fn wait_for_events(&self, n: u64, timeout: Duration) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            let read = m.sum("predmon_events_total", &[]) as u64;
            if read >= n {
                return m;
            }
            assert!(
                Instant::now() < deadline,
                "only {read} of {n} events read within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// SIGTERM, then waits for the exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        unsafe_kill(self.child.id(), "TERM");
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "predmon exited with {status} after SIGTERM"
        );
        start.elapsed()
    }
}

fn unsafe_kill(pid: u32, signal: &str) {
    Command::new("kill")
        .args([&format!("-{signal}"), &pid.to_string()])
        .status()
        .unwrap();
}

/// A minimal HTTP/1.1 GET over a fresh connection: (status, body).
pub fn http_get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw);
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
    // Bodies are small enough to be sent whole; chunked encoding would need decoding.
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    Some((status, body))
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = &rest[n + 2..];
    }
    out
}

/// A sample's labels, name -> value.
pub type Labels = BTreeMap<String, String>;

/// Parsed samples of one scrape: name -> [(labels, value)].
pub struct Metrics {
    pub samples: BTreeMap<String, Vec<(Labels, f64)>>,
}

impl Metrics {
    pub fn parse(text: &str) -> Metrics {
        let mut samples: BTreeMap<String, Vec<_>> = BTreeMap::new();
        for line in text
            .lines()
            .filter(|l| !l.starts_with('#') && !l.is_empty())
        {
            let (series, value) = line.rsplit_once(' ').expect("sample line");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.trim_end_matches('}'))),
                None => (series, BTreeMap::new()),
            };
            let v = match value {
                "+Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v.parse().expect("sample value"),
            };
            samples
                .entry(name.to_string())
                .or_default()
                .push((labels, v));
        }
        Metrics { samples }
    }

    /// Sum of the samples of `name` whose labels include every pair of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples
            .get(name)
            .map(|v| {
                v.iter()
                    .filter(|(l, _)| {
                        filter
                            .iter()
                            .all(|(k, want)| l.get(*k).map(String::as_str) == Some(*want))
                    })
                    .map(|(_, x)| x)
                    .sum()
            })
            .unwrap_or(0.0)
    }

    /// The one sample of `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        let want: BTreeMap<String, String> = labels
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.samples
            .get(name)?
            .iter()
            .find(|(l, _)| *l == want)
            .map(|(_, v)| *v)
    }
}

fn parse_labels(text: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut rest = text;
    while let Some((key, after)) = rest.split_once("=\"") {
        let mut value = String::new();
        let mut chars = after.char_indices();
        let mut end = after.len();
        while let Some((i, c)) = chars.next() {
            match c {
                '\\' => {
                    if let Some((_, e)) = chars.next() {
                        value.push(match e {
                            'n' => '\n',
                            other => other,
                        });
                    }
                }
                '"' => {
                    end = i + 1;
                    break;
                }
                c => value.push(c),
            }
        }
        out.insert(key.trim_start_matches(',').trim().to_string(), value);
        rest = &after[end..];
    }
    out
}

/// `predmon report --format json [--config C] FILES...` -> the parsed JSON.
pub fn report(config: Option<&Path>, files: &[&Path]) -> serde_json::Value {
    let mut cmd = Command::new(binary());
    cmd.args(["report", "--format", "json"]);
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(files);
    let out = cmd.output().expect("run predmon report");
    assert!(
        out.status.success(),
        "report failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("report JSON")
}

/// Asserts the daemon's `all` numbers equal the report's: counters, confusion cells,
/// and every `window="all"` gauge the report also has.
pub fn assert_metrics_match_report(m: &Metrics, report: &serde_json::Value) {
    let models = report["models"].as_object().expect("models");
    for (name, r) in models {
        let model = name.as_str();
        assert_eq!(
            m.sum("predmon_samples_total", &[("model", model)]),
            r["samples"].as_f64().unwrap(),
            "samples of {model}"
        );
        let mut cells = 0.0;
        for (actual, row) in r["confusion"].as_object().unwrap() {
            for (predicted, n) in row.as_object().unwrap() {
                let got = m.get(
                    "predmon_confusion_total",
                    &[
                        ("model", model),
                        ("actual", actual),
                        ("predicted", predicted),
                    ],
                );
                assert_eq!(got, n.as_f64(), "confusion {model} {actual}->{predicted}");
                cells += n.as_f64().unwrap();
            }
        }
        assert_eq!(
            m.sum("predmon_confusion_total", &[("model", model)]),
            cells,
            "no extra cells for {model}"
        );
        for (metric, key) in [
            ("predmon_accuracy", "accuracy"),
            ("predmon_balanced_accuracy", "balanced_accuracy"),
            (
                "predmon_majority_baseline_accuracy",
                "majority_baseline_accuracy",
            ),
            ("predmon_imbalance_ratio", "imbalance_ratio"),
        ] {
            let got = m
                .get(metric, &[("model", model), ("window", "all")])
                .unwrap();
            assert!(
                (got - r[key].as_f64().unwrap()).abs() < 1e-9,
                "{metric} of {model}: {got} vs {}",
                r[key]
            );
        }
        for (avg, _) in [("micro", 0), ("macro", 1), ("weighted", 2)] {
            let got = m
                .get(
                    "predmon_f1",
                    &[("model", model), ("window", "all"), ("average", avg)],
                )
                .unwrap();
            assert!(
                (got - r[avg]["f1"].as_f64().unwrap()).abs() < 1e-9,
                "{avg} f1 of {model}"
            );
        }
        for (class, c) in r["classes"].as_object().unwrap() {
            let got = m
                .get(
                    "predmon_class_recall",
                    &[("model", model), ("window", "all"), ("class", class)],
                )
                .unwrap();
            assert!(
                (got - c["recall"].as_f64().unwrap()).abs() < 1e-9,
                "recall of {model}/{class}"
            );
        }
        let pending = m
            .get(
                "predmon_join_pending",
                &[("model", model), ("side", "prediction")],
            )
            .unwrap();
        assert_eq!(
            pending,
            r["join"]["unmatched_predictions"].as_f64().unwrap(),
            "pending predictions of {model}"
        );
    }
    let accepted = report["events"]["accepted"].as_f64().unwrap();
    let read = report["events"]["read"].as_f64().unwrap();
    assert_eq!(m.sum("predmon_events_total", &[]), read, "events read");
    assert_eq!(
        m.sum("predmon_events_rejected_total", &[]),
        read - accepted,
        "events rejected"
    );
}
