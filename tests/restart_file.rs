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
        let mut d = Daemon::start(&config, daemon::free_port());
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
    let d = Daemon::start(&config, daemon::free_port());
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
