//! The real daemon following files like `tail -F` (append, a partial line, rotation by
//! rename, copytruncate, a file appearing after start): its `/metrics` must then equal
//! `predmon report` over the same lines.

#[path = "support/daemon.rs"]
mod daemon;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::Duration;

use daemon::{assert_metrics_match_report, report, Daemon};

/// Deterministic events: complete samples, split halves (some never joined), bad lines.
struct Events {
    state: u64,
    next_id: u64,
    base_ts: f64,
    /// Every line written anywhere, in order: the report's input.
    all: Vec<String>,
}

impl Events {
    fn new() -> Events {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        Events {
            state: 0x2545_F491_4F6C_DD1D,
            next_id: 0,
            base_ts: now - 3000.0,
            all: Vec::new(),
        }
    }

    fn rand(&mut self, n: u64) -> u64 {
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        self.state % n
    }

    fn lines(&mut self, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        while out.len() < n {
            let model = ["fraud", "churn"][self.rand(2) as usize];
            let actual = self.rand(4);
            let predicted = if self.rand(10) < 7 {
                actual
            } else {
                self.rand(4)
            };
            self.base_ts += 0.25;
            let ts = self.base_ts;
            match self.rand(10) {
                0 => out.push("{\"prediction\": oops".to_string()),
                1..=3 => {
                    let id = self.next_id;
                    self.next_id += 1;
                    out.push(format!(r#"{{"model":"{model}","id":{id},"prediction":"c{predicted}","timestamp":{ts}}}"#));
                    if self.rand(8) != 0 {
                        out.push(format!(r#"{{"model":"{model}","id":"{id}","label":"c{actual}","timestamp":{}}}"#, ts + 1.5));
                    }
                }
                _ => out.push(format!(
                    r#"{{"model":"{model}","prediction":"c{predicted}","label":"c{actual}","scores":{{"c{actual}":0.6}},"timestamp":{ts}}}"#
                )),
            }
        }
        self.all.extend(out.iter().cloned());
        out
    }
}

fn append(path: &Path, text: &str) {
    let mut f = OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

fn append_lines(path: &Path, lines: &[String]) {
    append(
        path,
        &lines.iter().map(|l| format!("{l}\n")).collect::<String>(),
    );
}

#[test]
fn metrics_equal_report_across_append_rotation_truncation_and_new_files() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("app.log");
    let config = dir.path().join("predmon.toml");
    fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"file\"\npaths = [\"{}/*.log\"]\npoll_interval = \"20ms\"\n",
            dir.path().display()
        ),
    )
    .unwrap();
    let mut ev = Events::new();
    append_lines(&log, &ev.lines(1000));
    let d = Daemon::start(&config, &[]);
    d.wait_for_events(ev.all.len() as u64, Duration::from_secs(20));

    // A partial line is not an event until its newline arrives.
    let more = ev.lines(301);
    append_lines(&log, &more[..300]);
    let (head, tail) = more[300].split_at(more[300].len() / 2);
    append(&log, head);
    let before = d.wait_for_events(ev.all.len() as u64 - 1, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(200));
    assert_eq!(
        d.metrics().sum("predmon_events_total", &[]),
        before.sum("predmon_events_total", &[]),
        "a partial line was read early"
    );
    append(&log, &format!("{tail}\n"));
    d.wait_for_events(ev.all.len() as u64, Duration::from_secs(20));

    // Rotation by rename: lines written to the old file after the rename are still read,
    // then the new file.
    fs::rename(&log, dir.path().join("app.log.1")).unwrap();
    append_lines(&dir.path().join("app.log.1"), &ev.lines(50));
    append_lines(&log, &ev.lines(400));
    d.wait_for_events(ev.all.len() as u64, Duration::from_secs(20));

    // copytruncate, after the daemon caught up (as logrotate assumes).
    fs::copy(&log, dir.path().join("app.log.2")).unwrap();
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&log)
        .unwrap();
    append_lines(&log, &ev.lines(200));
    // A file that appears after start.
    append_lines(&dir.path().join("other.log"), &ev.lines(150));

    let m = d.wait_for_events(ev.all.len() as u64, Duration::from_secs(20));
    std::thread::sleep(Duration::from_millis(300));
    let m2 = d.metrics();
    assert_eq!(
        m2.sum("predmon_events_total", &[]),
        m.sum("predmon_events_total", &[]),
        "nothing read twice"
    );

    let input = dir.path().join("all-lines.jsonl.txt");
    fs::write(
        &input,
        ev.all.iter().map(|l| format!("{l}\n")).collect::<String>(),
    )
    .unwrap();
    let r = report(None, &[&input]);
    assert_eq!(r["events"]["read"].as_u64().unwrap(), ev.all.len() as u64);
    assert_metrics_match_report(&m2, &r);
}
