//! A real `predmon run` process for tests: spawned on 127.0.0.1:0 with a configuration
//! file, its log drained and kept, scraped over plain HTTP, measured through /proc, and
//! stopped with SIGTERM or SIGKILL.

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

/// A minimal HTTP/1.1 GET, enough for predmon's own server.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(10)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: predmon\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).expect("read response");
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").expect("http response");
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, body)
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
