//! Faults around the state snapshot, against the real binary: SIGKILL in the middle of
//! snapshot writes, a corrupt, truncated, future-version or mismatched snapshot, a state
//! directory that stops being writable or fills up, and SIGTERM under full load.

#[path = "support/daemon.rs"]
mod daemon;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use daemon::Daemon;
use predmon::config::Settings;
use predmon::export::Shared;
use predmon::pipeline::{Mode, Pipeline};

fn write_config(dir: &Path, events: &Path, state_dir: &Path, interval: &str) -> PathBuf {
    let path = dir.join("predmon.toml");
    std::fs::write(
        &path,
        format!(
            "[[sources]]\ntype = \"file\"\nname = \"events\"\npaths = [{:?}]\nstart_at = \"beginning\"\npoll_interval = \"20ms\"\n\n[state]\npath = {:?}\ninterval = {interval:?}\n",
            events.display().to_string(),
            state_dir.join("state.json").display().to_string()
        ),
    )
    .unwrap();
    path
}

/// Loads the configured snapshot the way `predmon run` does.
fn load_snapshot(config: &Path) -> Result<Shared, predmon::state::StateError> {
    let settings = Settings::load(Some(config)).unwrap();
    let names: Vec<&str> = settings.sources.iter().map(|s| s.name()).collect();
    let mut shared = Shared::new(Pipeline::new(&settings, Mode::Daemon, None, &names));
    let path = &settings.state.as_ref().unwrap().path;
    assert!(
        predmon::state::restore(path, &mut shared)?,
        "no snapshot at {}",
        path.display()
    );
    Ok(shared)
}

/// The snapshot's file offset and its event counter must describe the same lines.
fn assert_position_matches_counters(shared: &Shared, events: &Path) {
    let offset = shared.positions["events"]["files"][0]["offset"]
        .as_u64()
        .unwrap_or(0);
    let bytes = std::fs::read(events).unwrap();
    let lines = bytes[..offset as usize]
        .split(|&b| b == b'\n')
        .filter(|l| !l.iter().all(u8::is_ascii_whitespace))
        .count() as u64;
    assert_eq!(
        shared.pipeline.sources[0].read, lines,
        "the snapshot counted {} lines but its position is after {lines}",
        shared.pipeline.sources[0].read
    );
}

fn halves(from: usize, n: usize) -> String {
    (from..from + n)
        .map(|i| {
            format!(r#"{{"model":"m{}","id":"never-{i}","prediction":"c{}","scores":{{"c1":0.5,"c2":0.5}}}}"#, i % 3, i % 7) + "\n"
        })
        .collect()
}

#[test]
fn sigkill_during_snapshot_writes_always_leaves_a_loadable_snapshot() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    // Halves that never join: a big state (every one is in the snapshot).
    let n = if cfg!(debug_assertions) {
        60_000
    } else {
        200_000
    };
    std::fs::write(&events, halves(0, n)).unwrap();
    let cfg = write_config(dir.path(), &events, dir.path(), "50ms");
    let tmp = dir.path().join("state.tmp");
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(
        Duration::from_secs(120),
        "the file read and a snapshot",
        |m| {
            m.sum("predmon_join_pending", &[]) as usize >= n
                && m.sum("predmon_state_snapshot_last_success_timestamp_seconds", &[]) > 0.0
        },
    );
    let mut rng = 0x1234_5678u64;
    let (mut kills, mut mid_write) = (0, 0);
    for round in 0..8 {
        rng = rng
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        std::thread::sleep(Duration::from_millis(200 + (rng >> 33) % 600));
        if round % 2 == 1 {
            // Every other kill waits for a write to begin, then strikes in the middle.
            let deadline = Instant::now() + Duration::from_secs(10);
            while !tmp.exists() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        let _ = d.kill9();
        kills += 1;
        if tmp.exists() {
            mid_write += 1;
        }
        // Every kill leaves a snapshot that loads, with its position and counters in step.
        let shared = load_snapshot(&cfg).expect("the snapshot loads after SIGKILL");
        assert!(shared.pipeline.join.len() <= n);
        assert_position_matches_counters(&shared, &events);
        // Restarted from it, the daemon reads on to exactly the same state.
        d = Daemon::start(&cfg, &[]);
        assert!(d.log().contains("restored state"), "{}", d.log());
        d.wait_for(Duration::from_secs(60), "every line, once", |m| {
            m.sum("predmon_join_pending", &[]) as usize >= n
        });
        let m = d.metrics();
        assert_eq!(m.sum("predmon_events_total", &[]) as usize, n);
        assert_eq!(m.sum("predmon_join_pending", &[]) as usize, n);
    }
    eprintln!("{kills} SIGKILLs, {mid_write} of them with a snapshot write in progress");
    assert!(
        mid_write > 0,
        "no kill hit a snapshot write; the test did not test what it says"
    );
}

#[test]
fn unreadable_snapshots_are_refused_and_discard_keeps_them_aside() {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, halves(0, 100)).unwrap();
    let cfg = write_config(dir.path(), &events, dir.path(), "10s");
    let state = dir.path().join("state.json");
    // A real snapshot to cut short.
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(Duration::from_secs(30), "lines read", |m| {
        m.sum("predmon_events_total", &[]) >= 100.0
    });
    d.signal("TERM");
    assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(Some(0)));
    let good = std::fs::read(&state).unwrap();

    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("garbage", b"\x00\xffnot json at all".to_vec(), "is corrupt"),
        ("empty", Vec::new(), "is corrupt"),
        ("truncated", good[..good.len() / 2].to_vec(), "is corrupt"),
        (
            "another format",
            br#"{"format":"something-else","version":1}"#.to_vec(),
            "is corrupt",
        ),
        (
            "future version",
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("\"version\":1", "\"version\":999", 1)
                .into_bytes(),
            "has format version 999, newer than this predmon understands",
        ),
        (
            "other bucket",
            String::from_utf8(good.clone())
                .unwrap()
                .replacen("\"bucket_ns\":10000000000", "\"bucket_ns\":5000000000", 1)
                .into_bytes(),
            "does not fit the configuration",
        ),
    ];
    for (what, bytes, message) in cases {
        std::fs::write(&state, &bytes).unwrap();
        // Refused, with a message that says what and how to go on; the file untouched.
        match Daemon::try_start(&cfg, &[]) {
            Ok(d) => panic!("{what}: started on an unreadable snapshot:\n{}", d.log()),
            Err(log) => {
                assert!(
                    log.contains(message),
                    "{what}: expected `{message}` in:\n{log}"
                );
                assert!(
                    log.contains("--state.discard-unreadable"),
                    "{what}: the way out is not named:\n{log}"
                );
            }
        }
        assert_eq!(
            std::fs::read(&state).unwrap(),
            bytes,
            "{what}: file changed"
        );
        // With --state.discard-unreadable: a fresh start, the old file kept aside as it was.
        let before: Vec<PathBuf> = aside_files(dir.path());
        let mut d = Daemon::start(&cfg, &["--state.discard-unreadable"]);
        let m = d.wait_for(Duration::from_secs(30), "lines read again", |m| {
            m.sum("predmon_events_total", &[]) >= 100.0
        });
        assert_eq!(
            m.sum("predmon_events_total", &[]),
            100.0,
            "{what}: started fresh"
        );
        assert!(d.log().contains("starting fresh"), "{}", d.log());
        let after = aside_files(dir.path());
        assert_eq!(after.len(), before.len() + 1, "{what}: kept aside once");
        let kept = after.iter().find(|p| !before.contains(p)).unwrap();
        assert_eq!(
            std::fs::read(kept).unwrap(),
            bytes,
            "{what}: kept as it was"
        );
        assert!(d.log().contains(&kept.display().to_string()), "{}", d.log());
        d.signal("TERM");
        assert_eq!(d.wait_exit(Duration::from_secs(10)), Some(Some(0)));
        load_snapshot(&cfg).expect("a fresh snapshot was written");
    }
}

fn aside_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.display().to_string().contains("unreadable"))
        .collect();
    v.sort();
    v
}

/// How the state directory is made unwritable and full: with a tmpfs (root, where
/// mounting is allowed: the real thing) or without privileges (a read-only directory, or
/// the temporary file pointing at /dev/full).
struct StateDir {
    path: PathBuf,
    tmpfs: bool,
}

impl StateDir {
    fn new(parent: &Path) -> StateDir {
        let path = parent.join("state");
        std::fs::create_dir(&path).unwrap();
        let tmpfs = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=4m", "predmon-test"])
            .arg(&path)
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        StateDir { path, tmpfs }
    }

    fn set_writable(&self, writable: bool) {
        if self.tmpfs {
            let opt = if writable { "remount,rw" } else { "remount,ro" };
            let ok = Command::new("mount")
                .args(["-o", opt])
                .arg(&self.path)
                .status()
                .unwrap()
                .success();
            assert!(ok);
        } else {
            use std::os::unix::fs::PermissionsExt;
            let mode = if writable { 0o755 } else { 0o555 };
            std::fs::set_permissions(&self.path, std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }

    /// Fills the file system (or makes the next write hit ENOSPC).
    fn fill(&self) {
        if self.tmpfs {
            let mut f = std::fs::File::create(self.path.join("filler")).unwrap();
            let block = vec![0u8; 64 << 10];
            while f.write_all(&block).is_ok() {}
            let _ = f.sync_all();
        } else {
            std::os::unix::fs::symlink("/dev/full", self.path.join("state.tmp")).unwrap();
        }
    }

    fn unfill(&self) {
        let _ = std::fs::remove_file(self.path.join("filler"));
        let _ = std::fs::remove_file(self.path.join("state.tmp"));
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        if self.tmpfs {
            let _ = Command::new("umount").arg(&self.path).status();
        } else {
            self.set_writable(true);
        }
    }
}

#[test]
fn ingestion_goes_on_while_the_state_directory_is_unwritable_or_full() {
    let dir = tempfile::tempdir().unwrap();
    let state = StateDir::new(dir.path());
    // Only unprivileged tricks need the process not to be root: root ignores permissions.
    let is_root = std::fs::read_to_string("/proc/self/status")
        .unwrap()
        .lines()
        .any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"));
    if !state.tmpfs && is_root {
        eprintln!(
            "root without mount: the unwritable case is simulated by the /dev/full symlink only"
        );
    }
    eprintln!(
        "state directory: {}",
        if state.tmpfs {
            "tmpfs"
        } else {
            "plain directory"
        }
    );
    let events = dir.path().join("events.jsonl");
    std::fs::write(&events, "").unwrap();
    let cfg = write_config(dir.path(), &events, &state.path, "100ms");
    let snapshot = state.path.join("state.json");
    let d = Daemon::start(&cfg, &[]);
    let mut written = 0usize;
    let mut write = |n: usize| {
        let mut f = std::fs::OpenOptions::new()
            .append(true)
            .open(&events)
            .unwrap();
        f.write_all(halves(written, n).as_bytes()).unwrap();
        written += n;
        written
    };
    let failures = |m: &daemon::Metrics| m.sum("predmon_state_snapshot_failures_total", &[]);
    let last_ok =
        |m: &daemon::Metrics| m.sum("predmon_state_snapshot_last_success_timestamp_seconds", &[]);
    let total = write(1000);
    let m = d.wait_for(Duration::from_secs(30), "a snapshot of 1000 events", |m| {
        m.sum("predmon_events_total", &[]) as usize == total && last_ok(m) > 0.0
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(failures(&m), 0.0);

    let mut phases = vec!["full"];
    if state.tmpfs || !is_root {
        phases.insert(0, "unwritable");
    }
    for phase in phases {
        let f0 = failures(&d.metrics());
        match phase {
            "unwritable" => state.set_writable(false),
            _ => state.fill(),
        }
        // Let a snapshot that was already being written finish.
        std::thread::sleep(Duration::from_millis(300));
        let good = std::fs::read(&snapshot).unwrap();
        let total = write(500);
        let m = d.wait_for(Duration::from_secs(30), "failures while ingesting", |m| {
            m.sum("predmon_events_total", &[]) as usize == total && failures(m) >= f0 + 3.0
        });
        assert_eq!(
            m.sum("predmon_join_pending", &[]) as usize,
            total,
            "{phase}: ingestion went on"
        );
        // The last good snapshot is still there, unchanged and loadable.
        assert_eq!(std::fs::read(&snapshot).unwrap(), good, "{phase}");
        let shared = load_snapshot(&cfg).expect("the last good snapshot loads");
        assert_position_matches_counters(&shared, &events);
        assert!(
            d.log().contains("state snapshot failed"),
            "{phase}: not logged:\n{}",
            d.log()
        );
        // Writable again: snapshots resume by themselves.
        match phase {
            "unwritable" => state.set_writable(true),
            _ => state.unfill(),
        }
        let t = last_ok(&m);
        let m = d.wait_for(Duration::from_secs(30), "snapshots resumed", |m| {
            last_ok(m) > t
        });
        let resumed = load_snapshot(&cfg).unwrap();
        assert_eq!(resumed.pipeline.join.len(), total);
        assert!(
            !state.path.join("state.tmp").exists() || phase == "unwritable",
            "a failed write left its temporary file"
        );
        eprintln!(
            "{phase}: {} failed snapshots, none lost an event",
            failures(&m) - f0
        );
    }
    // Each run of failures is logged once (then at most once a minute), and its end.
    let log = d.log();
    let logged = log.matches("state snapshot failed").count();
    let phases = if state.tmpfs || !is_root { 2 } else { 1 };
    assert_eq!(logged, phases, "{log}");
    assert_eq!(
        log.matches("state snapshots succeed again").count(),
        phases,
        "{log}"
    );
    drop(d);
    drop(state);
}

#[test]
fn sigterm_under_full_load_exits_within_5s_with_a_final_snapshot() {
    stop_under_full_load(
        "TERM",
        if cfg!(debug_assertions) {
            600_000
        } else {
            3_000_000
        },
    );
}

/// Ctrl-C at a terminal: the same shutdown as SIGTERM (a smaller file: the load only has
/// to be under way when the signal arrives).
#[test]
fn sigint_under_full_load_exits_within_5s_with_a_final_snapshot() {
    stop_under_full_load("INT", 1_000_000);
}

/// `n` lines are being read when SIGNAL arrives: exit 0 within 5 s, a final snapshot in
/// step with the file position, and a restart reads the rest exactly once.
fn stop_under_full_load(signal: &str, n: usize) {
    let dir = tempfile::tempdir().unwrap();
    let events = dir.path().join("events.jsonl");
    {
        // Complete events, with one in ten a prediction that stays pending.
        let mut f = std::io::BufWriter::new(std::fs::File::create(&events).unwrap());
        for i in 0..n {
            if i % 10 == 0 {
                writeln!(
                    f,
                    r#"{{"model":"m{}","id":"p{i}","prediction":"c{}"}}"#,
                    i % 5,
                    i % 9
                )
                .unwrap();
            } else {
                writeln!(
                    f,
                    r#"{{"model":"m{}","prediction":"c{}","label":"c{}","timestamp":{}}}"#,
                    i % 5,
                    i % 9,
                    (i / 3) % 9,
                    1_700_000_000 + i / 1000
                )
                .unwrap();
            }
        }
    }
    let cfg = write_config(dir.path(), &events, dir.path(), "1h");
    let mut d = Daemon::start(&cfg, &[]);
    d.wait_for(Duration::from_secs(30), "ingestion under way", |m| {
        m.sum("predmon_events_total", &[]) >= 50_000.0
    });
    let before = d.metrics().sum("predmon_events_total", &[]);
    assert!(
        before < n as f64,
        "the file was read before the signal: no load"
    );
    let start = Instant::now();
    d.signal(signal);
    let code = d.wait_exit(Duration::from_secs(30));
    let took = start.elapsed();
    eprintln!("SIG{signal} after {before} of {n} events: exited in {took:?} ({code:?})");
    assert_eq!(code, Some(Some(0)), "{}", d.log());
    assert!(took < Duration::from_secs(5), "shutdown took {took:?}");
    // The final snapshot has what was read, position and counters in step.
    let shared = load_snapshot(&cfg).expect("a final snapshot");
    let read = shared.pipeline.sources[0].read;
    assert!(read as f64 >= before, "{read} < {before}");
    assert_position_matches_counters(&shared, &events);
    // Restarted, it reads on from there: every line exactly once.
    let d = Daemon::start(&cfg, &[]);
    let m = d.wait_for(Duration::from_secs(300), "the rest read", |m| {
        m.sum("predmon_events_total", &[]) as usize >= n
    });
    std::thread::sleep(Duration::from_millis(300));
    let m2 = d.metrics();
    assert_eq!(m2.sum("predmon_events_total", &[]) as usize, n, "{}", m.0);
    assert_eq!(m2.sum("predmon_samples_total", &[]) as usize, n - n / 10);
    assert_eq!(m2.sum("predmon_join_pending", &[]) as usize, n / 10);
}
