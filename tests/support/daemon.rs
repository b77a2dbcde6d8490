//! Helpers for tests that run the real `predmon` binary: `predmon run` spawned on
//! 127.0.0.1:0 with a configuration file, its log drained and kept, scraped over plain
//! HTTP, measured through /proc, stopped with SIGTERM or SIGKILL; `predmon report`; and
//! the comparison of a scrape with a report.
//!
//! Include with `#[path = "support/daemon.rs"] mod daemon;`.

#![allow(dead_code)] // each test file uses part of this

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_predmon");

pub struct Daemon {
    pub child: Child,
    pub addr: SocketAddr,
    log: Arc<Mutex<String>>,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Daemon {
    /// Starts `predmon run --config <config> <args>`; panics with the log if it does not
    /// serve within 60 s.
    pub fn start(config: &Path, args: &[&str]) -> Daemon {
        Daemon::try_start(config, args)
            .unwrap_or_else(|log| panic!("predmon did not start serving; its log:\n{log}"))
    }

    /// Like [`Daemon::start`], but returns the log when predmon exits or does not serve.
    pub fn try_start(config: &Path, args: &[&str]) -> Result<Daemon, String> {
        let mut child = Command::new(BIN)
            .arg("run")
            .arg("--config")
            .arg(config)
            .args(["--web.listen-address", "127.0.0.1:0"])
            .args(args)
            .env("PREDMON_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn predmon");
        let log = Arc::new(Mutex::new(String::new()));
        let (tx, rx) = std::sync::mpsc::channel();
        let stderr = child.stderr.take().unwrap();
        let sink = log.clone();
        // Drain stderr for the whole run so the daemon never blocks on it.
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(addr) = line
                    .contains("serving metrics")
                    .then(|| line.split_once("address=").map(|(_, a)| a))
                    .flatten()
                    .and_then(|a| a.split_whitespace().next())
                    .and_then(|a| a.parse::<SocketAddr>().ok())
                {
                    let _ = tx.send(addr);
                }
                let mut log = sink.lock().unwrap();
                log.push_str(&line);
                log.push('\n');
            }
        });
        match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(addr) => Ok(Daemon { child, addr, log }),
            Err(_) => {
                let _ = child.kill();
                let _ = child.wait();
                std::thread::sleep(Duration::from_millis(100));
                let log = log.lock().unwrap().clone();
                Err(log)
            }
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// GET `path`: (status, body).
    pub fn get(&self, path: &str) -> (u16, String) {
        http_get(self.addr, path)
    }

    pub fn metrics(&self) -> Metrics {
        let (status, body) = self.get("/metrics");
        assert_eq!(status, 200, "{body}");
        Metrics(body)
    }

    /// Scrapes until `done` holds; panics after `timeout` with the last scrape and the log.
    pub fn wait_for(
        &self,
        timeout: Duration,
        what: &str,
        done: impl Fn(&Metrics) -> bool,
    ) -> Metrics {
        let deadline = Instant::now() + timeout;
        loop {
            let m = self.metrics();
            if done(&m) {
                return m;
            }
            if Instant::now() > deadline {
                panic!(
                    "timed out waiting for {what}; last scrape:\n{}\nlog:\n{}",
                    m.0,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// A field of /proc/<pid>/status in kB (`VmHWM`, `VmRSS`).
    pub fn proc_status_kb(&self, field: &str) -> u64 {
        proc_status_kb(self.pid(), field)
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} {}", self.pid());
    }

    /// SIGKILL, and reaps the process.
    pub fn kill9(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.log()
    }

    /// Waits until `predmon_events_total` (all sources) reaches `n`.
    pub fn wait_for_events(&self, n: u64, timeout: Duration) -> Metrics {
        self.wait_for(timeout, &format!("{n} events read"), |m| {
            m.sum("predmon_events_total", &[]) as u64 >= n
        })
    }

    /// SIGTERM, then waits for a successful exit; returns how long it took.
    pub fn terminate(&mut self) -> Duration {
        let start = Instant::now();
        self.signal("TERM");
        let status = self.child.wait().unwrap();
        assert!(
            status.success(),
            "predmon exited with {status} after SIGTERM; log:\n{}",
            self.log()
        );
        start.elapsed()
    }

    /// Waits up to `timeout` for the process to exit; its exit code (None: signalled).
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<Option<i32>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return Some(status.code());
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

pub fn proc_status_kb(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// A minimal HTTP/1.1 GET, enough for predmon's own server: (status, body).
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|| panic!("GET {path} from {addr} failed"))
}

/// Like [`http_get`], `None` when the connection or the response fails.
pub fn try_http_get(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: predmon\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).ok()?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n")?;
    let status = head.split_whitespace().nth(1)?.parse().ok()?;
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

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A scrape in the Prometheus text format.
pub struct Metrics(pub String);

impl Metrics {
    /// Every sample of `name` as (labels, value).
    pub fn samples(&self, name: &str) -> Vec<(Vec<(String, String)>, f64)> {
        let mut out = Vec::new();
        for line in self.0.lines() {
            if line.starts_with('#') {
                continue;
            }
            let Some(rest) = line.strip_prefix(name) else {
                continue;
            };
            let (labels, value) = match rest.strip_prefix('{') {
                Some(r) => {
                    let end = r.rfind('}').expect("closing brace");
                    (parse_labels(&r[..end]), r[end + 1..].trim())
                }
                None if rest.starts_with(' ') => (Vec::new(), rest.trim()),
                None => continue, // another metric with this prefix
            };
            let value = value.split_whitespace().next().unwrap_or("");
            out.push((labels, value.parse().expect("sample value")));
        }
        out
    }

    /// The sum of `name` over the samples whose labels include every pair of `filter`.
    pub fn sum(&self, name: &str, filter: &[(&str, &str)]) -> f64 {
        self.samples(name)
            .into_iter()
            .filter(|(labels, _)| {
                filter
                    .iter()
                    .all(|(k, v)| labels.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
            .sum()
    }

    /// The one sample of `name` with exactly these labels.
    pub fn get(&self, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
        self.samples(name)
            .into_iter()
            .find(|(l, _)| {
                l.len() == labels.len()
                    && labels
                        .iter()
                        .all(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, v)| v)
    }

    /// `predmon_confusion_total` as model -> actual -> predicted -> count.
    pub fn confusion(&self) -> std::collections::BTreeMap<(String, String, String), u64> {
        let mut out = std::collections::BTreeMap::new();
        for (labels, v) in self.samples("predmon_confusion_total") {
            let get = |k: &str| {
                labels
                    .iter()
                    .find(|(lk, _)| lk == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            out.insert((get("model"), get("actual"), get("predicted")), v as u64);
        }
        out
    }
}

fn parse_labels(s: &str) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        assert_eq!(chars.next(), Some('"'));
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => match chars.next() {
                    Some('n') => value.push('\n'),
                    Some(c) => value.push(c),
                    None => break,
                },
                '"' => break,
                c => value.push(c),
            }
        }
        out.push((key.trim_start_matches(',').trim().to_string(), value));
        if chars.peek() == Some(&',') {
            chars.next();
        }
    }
    out
}

/// `predmon report --format json [--config C] FILES...` -> the parsed JSON.
pub fn report(config: Option<&Path>, files: &[&Path]) -> serde_json::Value {
    let mut cmd = Command::new(BIN);
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
