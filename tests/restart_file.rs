//! `kill -9` at random points while a file source ingests, three times in a row, each
//! time restarting from the state snapshot: the final counters must equal one
//! uninterrupted `predmon report` over the same lines (nothing lost, nothing twice).

#[path = "support/daemon.rs"]
mod daemon;

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::time::Duration;

use daemon::{assert_metrics_match_report, report, Daemon};

fn lines(from: u64, n: u64, base_ts: f64) -> String {
    let mut out = String::new();
    for i in from..from + n {
        let model = ["fraud", "churn", "ranker"][(i % 3) as usize];
        let actual = (i * 7 + i / 5) % 4;
        let predicted = if i % 10 < 7 { actual } else { (i / 3) % 4 };
        let ts = base_ts + i as f64 * 0.001;
        if i % 4 == 0 {
            // A split sample: the label follows its prediction a little later.
            out.push_str(&format!("{{\"model\":\"{model}\",\"id\":{i},\"prediction\":\"c{predicted}\",\"timestamp\":{ts}}}\n"));
            out.push_str(&format!("{{\"model\":\"{model}\",\"id\":\"{i}\",\"label\":\"c{actual}\",\"timestamp\":{}}}\n", ts + 0.5));
        } else if i % 97 == 0 {
            out.push_str("{not json\n");
        } else {
            out.push_str(&format!(
                "{{\"model\":\"{model}\",\"prediction\":\"c{predicted}\",\"label\":\"c{actual}\",\"timestamp\":{ts}}}\n"
            ));
        }
    }
    out
}

#[test]
fn three_kill_9_restarts_lose_and_double_count_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events.log");
    let config = dir.path().join("predmon.toml");
    fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"file\"\npaths = [\"{}\"]\npoll_interval = \"10ms\"\n[state]\npath = \"{}\"\ninterval = \"50ms\"\n",
            log.display(),
            dir.path().join("state.json").display()
        ),
    )
    .unwrap();
    let base_ts = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
        - 600.0;
    let mut written = 0u64;
    let mut append = |n: u64| {
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log)
            .unwrap();
        f.write_all(lines(written, n, base_ts).as_bytes()).unwrap();
        written += n;
    };
    append(50_000);
    // A fixed seed of kill delays: reproducible, and each lands mid-ingestion or mid-snapshot.
    let mut kills_during_ingestion = 0;
    for (round, delay_ms) in [90u64, 15, 40].into_iter().enumerate() {
        let mut d = Daemon::start(&config, &[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        // A burst the daemon cannot finish before the kill: it dies mid-ingestion.
        append(150_000);
        std::thread::sleep(Duration::from_millis(delay_ms / 3 + 5));
        let read_before_kill = d.metrics().sum("predmon_events_total", &[]);
        d.child.kill().unwrap(); // SIGKILL
        d.child.wait().unwrap();
        let total_lines = fs::read_to_string(&log).unwrap().lines().count() as f64;
        if read_before_kill < total_lines {
            kills_during_ingestion += 1;
        }
        eprintln!("round {round}: killed at {read_before_kill} of {total_lines} lines");
    }
    let d = Daemon::start(&config, &[]);
    let total = fs::read_to_string(&log).unwrap().lines().count() as u64;
    d.wait_for_events(total, Duration::from_secs(60));
    std::thread::sleep(Duration::from_millis(300));
    let m = d.metrics();
    assert_eq!(
        m.sum("predmon_events_total", &[]) as u64,
        total,
        "every line counted once"
    );
    assert_metrics_match_report(&m, &report(None, &[&log]));
    eprintln!("kills during ingestion: {kills_during_ingestion} of 3");
    assert!(
        kills_during_ingestion >= 1,
        "no kill landed mid-ingestion: the test proved nothing"
    );
}

/// A file that grows while the daemon is killed with SIGKILL at random moments and
/// restarted three times (writes that often end inside a line, labels up to 2,000 lines
/// after their predictions, duplicate halves): once read to its end, every counter
/// equals that of one uninterrupted `predmon run` over the same file.
mod growing {
    use std::collections::BTreeMap;
    use std::io::Write;
    use std::path::Path;
    use std::time::{Duration, Instant};

    use super::daemon::{Daemon, Metrics};

    /// splitmix64: a reproducible stream from a seed.
    struct Rng(u64);

    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }

        fn below(&mut self, n: u64) -> u64 {
            self.next() % n
        }
    }

    const MODELS: [&str; 3] = ["fraud", "churn", "spam"];
    const CLASSES: [&str; 4] = ["a", "b", "c", "d"];

    /// The workload: complete events, predictions whose labels come up to 2,000 lines later,
    /// junk, and duplicate halves, in a fixed order.
    fn workload(n: usize, seed: u64) -> Vec<String> {
        let mut rng = Rng(seed);
        let mut out = Vec::with_capacity(n + n / 2);
        let mut due: BTreeMap<usize, Vec<String>> = BTreeMap::new();
        let mut last_pending: Option<(usize, String)> = None;
        for i in 0..n {
            while let Some(entry) = due.first_entry() {
                if *entry.key() > i {
                    break;
                }
                out.extend(entry.remove());
            }
            let model = MODELS[rng.below(3) as usize];
            let actual = CLASSES[rng.below(4) as usize];
            let predicted = if rng.below(3) == 0 {
                CLASSES[rng.below(4) as usize]
            } else {
                actual
            };
            let t = 1_700_000_000.0 + i as f64 / 1000.0;
            match rng.below(10) {
                0..=4 => out.push(format!(
                    r#"{{"model":"{model}","prediction":"{predicted}","label":"{actual}","timestamp":{t}}}"#
                )),
                5..=7 => {
                    out.push(format!(
                        r#"{{"model":"{model}","id":"s{i}","prediction":"{predicted}","scores":{{"{predicted}":0.75}},"timestamp":{t}}}"#
                    ));
                    let later = i + 1 + rng.below(2000) as usize;
                    due.entry(later).or_default().push(format!(
                        r#"{{"model":"{model}","id":"s{i}","label":"{actual}","timestamp":{}}}"#,
                        t + 3.0
                    ));
                    last_pending = Some((i, model.to_string()));
                }
                8 => out.push(if rng.below(2) == 0 {
                    r#"{"model":"fraud","prediction":"#.to_string()
                } else {
                    format!(r#"{{"model":"{model}","prediction":"{predicted}"}}"#)
                }),
                _ => {
                    // A second prediction for an id that is probably still pending.
                    if let Some((j, m)) = &last_pending {
                        out.push(format!(r#"{{"model":"{m}","id":"s{j}","prediction":"a"}}"#));
                    }
                }
            }
        }
        for (_, lines) in due {
            out.extend(lines);
        }
        out
    }

    fn config(dir: &Path, events: &Path, state: bool) -> std::path::PathBuf {
        let path = dir.join("predmon.toml");
        let mut text = format!(
            "[[sources]]\ntype = \"file\"\nname = \"events\"\npaths = [{:?}]\nstart_at = \"beginning\"\npoll_interval = \"20ms\"\n",
            events.display().to_string()
        );
        if state {
            text += &format!(
                "\n[state]\npath = {:?}\ninterval = \"300ms\"\n",
                dir.join("state.json").display().to_string()
            );
        }
        std::fs::write(&path, text).unwrap();
        path
    }

    /// Everything that must agree between the runs.
    #[derive(Debug, PartialEq)]
    struct Counts {
        events: u64,
        rejected: BTreeMap<String, u64>,
        samples: BTreeMap<String, u64>,
        confusion: BTreeMap<(String, String, String), u64>,
        pending: BTreeMap<String, u64>,
        label_delays: u64,
    }

    fn counts(m: &Metrics) -> Counts {
        let by = |name: &str, label: &str| -> BTreeMap<String, u64> {
            m.samples(name)
                .into_iter()
                .filter(|(_, v)| *v > 0.0)
                .map(|(labels, v)| {
                    let key: Vec<String> = labels
                        .iter()
                        .filter(|(k, _)| label.split(',').any(|l| l == k))
                        .map(|(_, v)| v.clone())
                        .collect();
                    (key.join("/"), v as u64)
                })
                .collect()
        };
        Counts {
            events: m.sum("predmon_events_total", &[]) as u64,
            rejected: by("predmon_events_rejected_total", "reason"),
            samples: by("predmon_samples_total", "model"),
            confusion: m.confusion(),
            pending: by("predmon_join_pending", "model,side"),
            label_delays: m.sum("predmon_label_delay_seconds_count", &[]) as u64,
        }
    }

    /// Waits until the daemon has read `lines` events, then a little longer to catch extra.
    fn settle(d: &Daemon, lines: u64) -> Counts {
        d.wait_for(Duration::from_secs(180), &format!("{lines} events"), |m| {
            m.sum("predmon_events_total", &[]) as u64 >= lines
        });
        std::thread::sleep(Duration::from_millis(500));
        counts(&d.metrics())
    }

    #[test]
    fn three_kills_and_restarts_count_exactly_what_one_run_counts() {
        let lines = workload(
            if cfg!(debug_assertions) {
                40_000
            } else {
                150_000
            },
            7,
        );
        let total = lines.len() as u64;
        let text: String = lines.iter().map(|l| format!("{l}\n")).collect();

        // One uninterrupted run over the whole file.
        let single = {
            let dir = tempfile::tempdir().unwrap();
            let events = dir.path().join("events.jsonl");
            std::fs::write(&events, &text).unwrap();
            let d = Daemon::start(&config(dir.path(), &events, false), &[]);
            settle(&d, total)
        };
        assert_eq!(single.events, total);
        assert!(
            single.rejected.contains_key("duplicate_id")
                && single.rejected.contains_key("invalid_json")
        );
        assert!(single.confusion.len() > 20, "{single:?}");

        // The same file written while the daemon runs, with three SIGKILLs.
        let dir = tempfile::tempdir().unwrap();
        let events = dir.path().join("events.jsonl");
        let cfg = config(dir.path(), &events, true);
        std::fs::File::create(&events).unwrap();
        let writer = {
            let events = events.clone();
            let bytes = text.into_bytes();
            std::thread::spawn(move || {
                let mut f = std::fs::OpenOptions::new()
                    .append(true)
                    .open(&events)
                    .unwrap();
                let mut rng = Rng(11);
                let mut at = 0;
                let started = Instant::now();
                // About 8 seconds of writing, in pieces that often end inside a line.
                let piece = bytes.len() / 400 + 1;
                while at < bytes.len() {
                    let end = (at + piece / 2 + rng.below(piece as u64) as usize).min(bytes.len());
                    f.write_all(&bytes[at..end]).unwrap();
                    at = end;
                    std::thread::sleep(Duration::from_millis(20));
                }
                started.elapsed()
            })
        };
        let mut rng = Rng(3);
        let mut kills = Vec::new();
        let mut d = Daemon::start(&cfg, &[]);
        for round in 0..3 {
            std::thread::sleep(Duration::from_millis(700 + rng.below(1300)));
            let before = d.metrics().sum("predmon_events_total", &[]) as u64;
            let log = d.kill9();
            assert!(!log.contains("panicked"), "{log}");
            assert!(
                dir.path().join("state.json").exists(),
                "round {round}: no snapshot written before the kill; log:\n{log}"
            );
            kills.push(before);
            d = Daemon::start(&cfg, &[]);
            assert!(
                d.log().contains("restored state"),
                "round {round}: not restored:\n{}",
                d.log()
            );
        }
        let wrote_for = writer.join().unwrap();
        let after = settle(&d, total);
        eprintln!(
            "events read before each kill: {kills:?} of {total}; the writer took {wrote_for:?}"
        );
        assert!(
            kills.iter().any(|&k| k > 0 && k < total),
            "no kill happened mid-stream: {kills:?}"
        );
        assert_eq!(after, single, "three kills and restarts against one run");
    }
}
