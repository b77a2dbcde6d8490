//! The file source under a daemon, while a writer keeps appending: the file is rotated by
//! rename, deleted and recreated, rotated again, and truncated in place (copytruncate).
//! Each phase writes its own model, so the counts say exactly what was lost: nothing,
//! except the lines that copytruncate itself destroys before they are read (inherent to
//! copytruncate, and documented); no line is torn, counted twice or misread.

#[path = "support/daemon.rs"]
mod daemon;

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use daemon::Daemon;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Fault {
    Rename,
    Delete,
    CopyTruncate,
}

/// Writes phase after phase to `path`, each ending with `fault`; returns the lines
/// written per phase.
fn writer(path: &Path, faults: &[Fault], per_phase: Duration) -> Vec<u64> {
    let open = |p: &Path| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .unwrap()
    };
    let mut f = open(path);
    let mut written = Vec::new();
    let mut rotated = 0;
    for phase in 0..=faults.len() {
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < per_phase {
            // Bursts of 400 lines every 5 ms: about 80,000 lines a second.
            let mut burst = String::with_capacity(400 * 80);
            for _ in 0..400 {
                burst += &format!(
                    "{{\"model\":\"p{phase}\",\"prediction\":\"c{}\",\"label\":\"c{}\"}}\n",
                    n % 3,
                    n % 5
                );
                n += 1;
            }
            f.write_all(burst.as_bytes()).unwrap();
            std::thread::sleep(Duration::from_millis(5));
        }
        written.push(n);
        match faults.get(phase) {
            None => {}
            Some(Fault::Rename) => {
                rotated += 1;
                std::fs::rename(path, path.with_extension(format!("log.{rotated}"))).unwrap();
                f = open(path);
            }
            Some(Fault::Delete) => {
                std::fs::remove_file(path).unwrap();
                f = open(path);
            }
            Some(Fault::CopyTruncate) => {
                std::fs::copy(path, path.with_extension("log.copy")).unwrap();
                f.set_len(0).unwrap();
            }
        }
    }
    written
}

#[test]
fn rotation_deletion_and_truncation_under_load_lose_nothing_they_need_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("app.log");
    File::create(&path).unwrap();
    let config = dir.path().join("predmon.toml");
    std::fs::write(
        &config,
        format!(
            "[[sources]]\ntype = \"file\"\nname = \"app\"\npaths = [{:?}]\nstart_at = \"beginning\"\npoll_interval = \"50ms\"\n",
            path.display().to_string()
        ),
    )
    .unwrap();
    let d = Daemon::start(&config, &[]);
    let faults = [
        Fault::Rename,
        Fault::Delete,
        Fault::Rename,
        Fault::CopyTruncate,
    ];
    let written = writer(&path, &faults, Duration::from_millis(1200));
    let total: u64 = written.iter().sum();
    eprintln!("written per phase: {written:?}");
    // Wait for the last phase in full, and for the rotated files' grace period to end.
    let last = format!("p{}", faults.len());
    d.wait_for(Duration::from_secs(120), "the last phase read", |m| {
        m.sum("predmon_samples_total", &[("model", &last)]) as u64 >= written[faults.len()]
    });
    std::thread::sleep(Duration::from_millis(600));
    let m = d.metrics();
    let counted: Vec<u64> = (0..=faults.len())
        .map(|p| m.sum("predmon_samples_total", &[("model", &format!("p{p}"))]) as u64)
        .collect();
    eprintln!("counted per phase: {counted:?}");
    assert_eq!(
        m.sum("predmon_events_rejected_total", &[]),
        0.0,
        "a line was torn or misread:\n{}",
        d.log()
    );
    for (phase, fault) in faults.iter().enumerate() {
        if *fault == Fault::CopyTruncate {
            assert!(
                counted[phase] <= written[phase],
                "phase {phase} counted twice"
            );
        } else {
            assert_eq!(
                counted[phase], written[phase],
                "phase {phase} before {fault:?}"
            );
        }
    }
    assert_eq!(
        counted[faults.len()],
        written[faults.len()],
        "after the truncation"
    );
    assert!(m.sum("predmon_events_total", &[]) as u64 <= total);
    assert_eq!(m.sum("predmon_source_up", &[("source", "app")]), 1.0);
    let log = d.log();
    assert!(log.contains("file truncated"), "{log}");
    assert!(log.contains("rotated away or deleted"), "{log}");
}
