//! The committed corpus of nasty lines (tests/nasty/, written by
//! scripts/nasty_corpus.py): deep nesting, NUL bytes, invalid UTF-8, duplicate keys,
//! huge numbers, NaN/Infinity, ids that never join, long names, too many classes and
//! models. Each file has valid lines before and after its nasty ones; `predmon report`
//! must count every line under the outcome in tests/nasty/expected.json, and the valid
//! lines around them exactly. The daemon, reading the same files with its file source,
//! must count them the same. The huge cases (a 100 MB line, 1,000,000 names) are
//! scripts/reliability.sh.

#[path = "support/daemon.rs"]
mod daemon;
#[path = "support/fuzz_harness.rs"]
mod harness;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

fn corpus() -> (PathBuf, serde_json::Map<String, Value>) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/nasty");
    let expected: Value =
        serde_json::from_slice(&std::fs::read(dir.join("expected.json")).unwrap()).unwrap();
    (dir, expected.as_object().unwrap().clone())
}

fn report(path: &Path) -> Value {
    let out = Command::new(daemon::BIN)
        .args(["report", "--format", "json"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "predmon report {} failed: {}",
        path.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn report_counts_every_nasty_line_and_the_valid_lines_around_it() {
    let (dir, expected) = corpus();
    assert!(expected.len() >= 25);
    let mut failures = Vec::new();
    for (file, want) in &expected {
        let got = report(&dir.join(file));
        let mut check = |what: &str, got: &Value, want: &Value| {
            if got != want {
                failures.push(format!("{file}: {what}: got {got}, want {want}"));
            }
        };
        check("events", &got["events"], &want["events"]);
        check(
            "valid lines around",
            &got["models"]["ok"]["samples"],
            &want["ok_samples"],
        );
        if let Some(n) = want.get("nasty_samples") {
            check("nasty samples", &got["models"]["nasty"]["samples"], n);
        }
        if let Some(c) = want.get("nasty_confusion") {
            check("nasty confusion", &got["models"]["nasty"]["confusion"], c);
        }
        if let Some(u) = want.get("nasty_unmatched") {
            check(
                "nasty unmatched",
                &json!([
                    got["models"]["nasty"]["join"]["unmatched_predictions"],
                    got["models"]["nasty"]["join"]["unmatched_labels"]
                ]),
                u,
            );
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every line of the corpus through the decoder fuzz target's checks.
#[test]
fn nasty_lines_pass_the_decoder_oracle() {
    let (dir, expected) = corpus();
    for file in expected.keys() {
        let bytes = std::fs::read(dir.join(file)).unwrap();
        for line in bytes.split(|&b| b == b'\n') {
            harness::decode(line);
        }
        harness::stream(&bytes);
    }
}

/// The daemon's file source reads the same bytes as `report` and counts them the same.
/// The two limit cases are left out: which of their events take the last slots depends
/// on the order in which the daemon reads the files.
#[test]
fn the_daemon_counts_the_corpus_like_report() {
    let (dir, expected) = corpus();
    let files: Vec<&String> = expected
        .keys()
        .filter(|f| !f.starts_with("many_"))
        .collect();
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("predmon.toml");
    let paths: Vec<String> = files
        .iter()
        .map(|f| format!("{:?}", dir.join(f).display().to_string()))
        .collect();
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"file\"\nname = \"nasty\"\nstart_at = \"beginning\"\npoll_interval = \"50ms\"\npaths = [{}]\n",
            paths.join(", ")
        ),
    )
    .unwrap();
    let mut read = 0.0;
    let mut rejected = std::collections::BTreeMap::<String, f64>::new();
    for f in &files {
        let events = &expected[*f]["events"];
        read += events["read"].as_f64().unwrap();
        for (reason, n) in events["rejected"].as_object().unwrap() {
            *rejected.entry(reason.clone()).or_default() += n.as_f64().unwrap();
        }
    }
    let d = daemon::Daemon::start(&config, &[]);
    let m = d.wait_for(Duration::from_secs(60), "every line read", |m| {
        m.sum("predmon_events_total", &[]) >= read
    });
    std::thread::sleep(Duration::from_millis(300));
    let m2 = d.metrics();
    assert_eq!(m2.sum("predmon_events_total", &[]), read, "{}", m.0);
    for (labels, v) in m2.samples("predmon_events_rejected_total") {
        let reason = &labels.iter().find(|(k, _)| k == "reason").unwrap().1;
        assert_eq!(
            v,
            rejected.get(reason).copied().unwrap_or(0.0),
            "rejected as {reason}"
        );
    }
    let ok_samples = files.len() as f64 * 4.0;
    assert_eq!(
        m2.sum("predmon_samples_total", &[("model", "ok")]),
        ok_samples
    );
}
