//! State that survives restarts: the engine, the pending joins, the event counters and
//! every source's position, captured together under the engine lock so they always
//! agree. Written to a temporary file, fsynced, then renamed over the old snapshot, so
//! a crash at any point leaves the previous or the new snapshot, never a torn one.
//!
//! The daemon streams a snapshot straight into the temporary file ([`write_snapshot`]):
//! with 1,000,000 pending halves the JSON is ~140 MB, which built in memory first
//! doubled the daemon's peak RSS. Restores read the file through a buffer, for the
//! same reason.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::io::{BufReader, BufWriter, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::engine::Engine;
use crate::export::Shared;
use crate::join::Join;
use crate::pipeline::SourceCounters;

/// Bumped whenever the layout changes; a newer snapshot is refused, not misread.
pub const FORMAT_VERSION: u32 = 1;
const FORMAT_NAME: &str = "predmon-state";

#[derive(Serialize)]
struct SnapshotRef<'a> {
    format: &'static str,
    version: u32,
    bucket_ns: i64,
    engine: &'a Engine,
    join: &'a Join,
    sources: &'a [SourceCounters],
    positions: &'a BTreeMap<String, serde_json::Value>,
}

#[derive(Deserialize)]
struct Header {
    format: String,
    version: u32,
}

#[derive(Deserialize)]
struct Snapshot {
    format: String,
    version: u32,
    bucket_ns: i64,
    engine: Engine,
    join: Join,
    sources: Vec<SourceCounters>,
    positions: BTreeMap<String, serde_json::Value>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("cannot read state snapshot {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("state snapshot {path} is corrupt ({why}); start fresh with --state.discard-unreadable (the file is kept aside)")]
    Corrupt { path: PathBuf, why: String },
    #[error("state snapshot {path} has format version {found}, newer than this predmon understands ({FORMAT_VERSION}); upgrade predmon, or start fresh with --state.discard-unreadable")]
    TooNew { path: PathBuf, found: u32 },
    #[error("state snapshot {path} does not fit the configuration ({why}); restore the old configuration, or start fresh with --state.discard-unreadable")]
    Mismatch { path: PathBuf, why: String },
    #[error("cannot write state snapshot {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Serializes the shared state whole, in memory: the reference the streamed
/// [`write_snapshot`] is tested against byte for byte, and what the fuzz harness
/// round-trips. The daemon never builds it.
pub fn capture(shared: &Shared) -> Vec<u8> {
    let p = &shared.pipeline;
    let snapshot = SnapshotRef {
        format: FORMAT_NAME,
        version: FORMAT_VERSION,
        bucket_ns: p.engine.settings().bucket_ns,
        engine: &p.engine,
        join: &p.join,
        sources: &p.sources,
        positions: &shared.positions,
    };
    serde_json::to_vec(&snapshot).expect("the state serializes to JSON")
}

/// Pending halves serialized per hold of the engine lock (~2 MB of JSON, a few ms).
const HALVES_PER_HOLD: usize = 16_384;

/// What writing one snapshot took.
#[derive(Debug, Clone, Default)]
pub struct SnapshotStats {
    /// Bytes written.
    pub bytes: u64,
    /// Times the engine lock was taken, and the longest and total time it was held.
    pub holds: u32,
    pub longest_hold: Duration,
    pub held: Duration,
    /// From start to the rename (fsync included).
    pub total: Duration,
    /// The pending halves changed between two holds, so the snapshot was written again
    /// in one hold. Never in the daemon, whose engine thread both ingests and snapshots.
    pub rewritten: bool,
}

/// Writes a snapshot of `shared` to `path` atomically (temp file, fsync, rename, fsync
/// the directory), streaming the JSON into the file instead of building it in memory.
/// The same bytes as [`capture`] then [`write`].
///
/// Call it from the thread that ingests (the engine thread): the engine, the counters,
/// the positions and the first halves are serialized in one hold of the engine lock, the
/// rest of the pending halves a chunk per hold, so that scrapes get the lock between
/// chunks. That is consistent because only ingestion changes the pending halves (scrapes
/// read them), and it waits meanwhile; should they change all the same (checked by
/// [`Join::generation`]), the snapshot is written again in one hold.
pub fn write_snapshot(path: &Path, shared: &Mutex<Shared>) -> Result<SnapshotStats, StateError> {
    write_snapshot_with(path, shared, HALVES_PER_HOLD, &mut || {})
}

/// [`write_snapshot`] with `per_hold` halves per hold, calling `between_holds` while
/// the lock is released (tests change the halves there).
fn write_snapshot_with(
    path: &Path,
    shared: &Mutex<Shared>,
    per_hold: usize,
    between_holds: &mut dyn FnMut(),
) -> Result<SnapshotStats, StateError> {
    let started = Instant::now();
    let mut stats = replace_file(path, |file| {
        let mut w = BufWriter::with_capacity(1 << 20, &mut *file);
        let mut stats = SnapshotStats::default();
        if !stream(shared, &mut w, per_hold, &mut stats, between_holds)? {
            w.flush()?;
            w.get_mut().set_len(0)?;
            w.seek(SeekFrom::Start(0))?;
            stats.rewritten = true;
            let whole = stream(shared, &mut w, usize::MAX, &mut stats, &mut || {})?;
            debug_assert!(whole, "one hold cannot see a change");
        }
        w.flush()?;
        drop(w);
        stats.bytes = file.stream_position()?;
        Ok(stats)
    })?;
    stats.total = started.elapsed();
    Ok(stats)
}

/// Replaces `path` atomically with what `fill` writes into a new file: a temporary file
/// beside it, fsynced, renamed over `path`, then the directory fsynced.
fn replace_file<T>(
    path: &Path,
    fill: impl FnOnce(&mut File) -> std::io::Result<T>,
) -> Result<T, StateError> {
    let tmp = path.with_extension("tmp");
    let written = File::create(&tmp).and_then(|mut file| {
        let filled = fill(&mut file)?;
        file.sync_all()?;
        Ok(filled)
    });
    match written.and_then(|filled| fs::rename(&tmp, path).map(|()| filled)) {
        Ok(filled) => {
            sync_dir(path);
            Ok(filled)
        }
        Err(source) => {
            // On a full disk, a half-written temporary file would keep the space taken.
            let _ = fs::remove_file(&tmp);
            Err(StateError::Write {
                path: path.to_path_buf(),
                source,
            })
        }
    }
}

/// Holds of the engine lock, timed.
struct Hold<'a> {
    shared: &'a Mutex<Shared>,
    guard: Option<(MutexGuard<'a, Shared>, Instant)>,
}

impl<'a> Hold<'a> {
    fn take(shared: &'a Mutex<Shared>) -> Hold<'a> {
        let guard = shared.lock().expect("engine lock poisoned");
        Hold {
            shared,
            guard: Some((guard, Instant::now())),
        }
    }

    fn get(&self) -> &Shared {
        &self.guard.as_ref().expect("held").0
    }

    fn release(&mut self, stats: &mut SnapshotStats) {
        if let Some((guard, since)) = self.guard.take() {
            drop(guard);
            let held = since.elapsed();
            stats.holds += 1;
            stats.held += held;
            stats.longest_hold = stats.longest_hold.max(held);
        }
    }

    /// Lets waiting readers go first, then takes the lock again.
    fn again(&mut self, stats: &mut SnapshotStats, between_holds: &mut dyn FnMut()) {
        self.release(stats);
        between_holds();
        crate::export::yield_to_readers();
        let guard = self.shared.lock().expect("engine lock poisoned");
        self.guard = Some((guard, Instant::now()));
    }
}

/// Writes the snapshot JSON to `w`, releasing the lock after every `per_hold` pending
/// halves. False when the halves changed between two holds (`w` then holds a partial
/// snapshot). The layout of [`SnapshotRef`], byte for byte.
fn stream(
    shared: &Mutex<Shared>,
    w: &mut impl Write,
    per_hold: usize,
    stats: &mut SnapshotStats,
    between_holds: &mut dyn FnMut(),
) -> std::io::Result<bool> {
    let mut hold = Hold::take(shared);
    let result = (|| -> std::io::Result<bool> {
        let s = hold.get();
        let p = &s.pipeline;
        w.write_all(b"{\"format\":")?;
        serde_json::to_writer(&mut *w, FORMAT_NAME)?;
        write!(w, ",\"version\":{FORMAT_VERSION},\"bucket_ns\":")?;
        serde_json::to_writer(&mut *w, &p.engine.settings().bucket_ns)?;
        w.write_all(b",\"engine\":")?;
        serde_json::to_writer(&mut *w, &p.engine)?;
        // Counters and positions as they are now, with the engine; written last.
        let mut tail = b",\"sources\":".to_vec();
        serde_json::to_writer(&mut tail, &p.sources)?;
        tail.extend_from_slice(b",\"positions\":");
        serde_json::to_writer(&mut tail, &s.positions)?;
        tail.push(b'}');
        let (generation, slots) = (p.join.generation(), p.join.slots());
        w.write_all(b",\"join\":[")?;
        let (mut at, mut first) = (0usize, true);
        loop {
            let end = at.saturating_add(per_hold).min(slots);
            for half in hold.get().pipeline.join.halves_in(at..end) {
                if !first {
                    w.write_all(b",")?;
                }
                first = false;
                serde_json::to_writer(&mut *w, half)?;
            }
            at = end;
            if at == slots {
                break;
            }
            hold.again(stats, between_holds);
            if hold.get().pipeline.join.generation() != generation {
                return Ok(false);
            }
        }
        w.write_all(b"]")?;
        w.write_all(&tail)?;
        Ok(true)
    })();
    hold.release(stats);
    result
}

fn sync_dir(path: &Path) {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
}

/// Writes bytes atomically: temp file, fsync, rename, fsync the directory. Tests write
/// edited snapshots with it; the daemon streams through [`write_snapshot`].
#[cfg(test)]
fn write(path: &Path, bytes: &[u8]) -> Result<(), StateError> {
    replace_file(path, |f| f.write_all(bytes))
}

/// Loads a snapshot into `shared` (whose pipeline is freshly built from the current
/// configuration). Returns false when there is no snapshot yet.
/// The file is read through a buffer, never whole: with 1,000,000 pending halves it is
/// ~170 MB.
pub fn restore(path: &Path, shared: &mut Shared) -> Result<bool, StateError> {
    let read_err = |source| StateError::Read {
        path: path.to_path_buf(),
        source,
    };
    let open = || File::open(path).map(|f| BufReader::with_capacity(1 << 20, f));
    let reader = match open() {
        Ok(r) => r,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
        Err(source) => return Err(read_err(source)),
    };
    let parse_err = |e: serde_json::Error| match e.io_error_kind() {
        Some(kind) => read_err(std::io::Error::new(kind, e)),
        None => StateError::Corrupt {
            path: path.to_path_buf(),
            why: e.to_string(),
        },
    };
    let snapshot = match serde_json::from_reader::<_, Snapshot>(reader) {
        Ok(s) => s,
        Err(e) => {
            // A snapshot of another format or a newer version says so, rather than
            // where it stopped fitting this one: read its header alone.
            let header: Header =
                serde_json::from_reader(open().map_err(read_err)?).map_err(parse_err)?;
            check_header(path, &header.format, header.version)?;
            return Err(parse_err(e));
        }
    };
    apply(path, snapshot, shared)?;
    Ok(true)
}

/// [`restore`] from bytes already read; `path` only names them in errors. On error
/// `shared` is unchanged.
pub fn restore_bytes(path: &Path, bytes: &[u8], shared: &mut Shared) -> Result<(), StateError> {
    let corrupt = |e: serde_json::Error| StateError::Corrupt {
        path: path.to_path_buf(),
        why: e.to_string(),
    };
    let snapshot = match serde_json::from_slice::<Snapshot>(bytes) {
        Ok(s) => s,
        Err(e) => {
            let header: Header = serde_json::from_slice(bytes).map_err(corrupt)?;
            check_header(path, &header.format, header.version)?;
            return Err(corrupt(e));
        }
    };
    apply(path, snapshot, shared)
}

fn check_header(path: &Path, format: &str, version: u32) -> Result<(), StateError> {
    let corrupt = |why: String| StateError::Corrupt {
        path: path.to_path_buf(),
        why,
    };
    if format != FORMAT_NAME {
        return Err(corrupt(format!("format is `{format}`, not {FORMAT_NAME}")));
    }
    if version > FORMAT_VERSION {
        return Err(StateError::TooNew {
            path: path.to_path_buf(),
            found: version,
        });
    }
    Ok(())
}

/// Moves a parsed snapshot into `shared` if it is one of ours and fits the configuration.
fn apply(path: &Path, snapshot: Snapshot, shared: &mut Shared) -> Result<(), StateError> {
    check_header(path, &snapshot.format, snapshot.version)?;
    let mismatch = |why: String| StateError::Mismatch {
        path: path.to_path_buf(),
        why,
    };
    let p = &mut shared.pipeline;
    let settings = p.engine.settings().clone();
    if snapshot.bucket_ns != settings.bucket_ns {
        return Err(mismatch(format!(
            "metrics.bucket was {}s, is {}s",
            snapshot.bucket_ns / 1_000_000_000,
            settings.bucket_ns / 1_000_000_000
        )));
    }
    let engine = snapshot.engine.restored(settings).map_err(mismatch)?;
    if engine.models().len() > p.engine.settings().max_models {
        return Err(mismatch(format!(
            "{} models exceed limits.max_models",
            engine.models().len()
        )));
    }
    for m in engine.models() {
        if let Some(classes) = p.engine.settings().configured.get(&m.name) {
            if !m.class_names().starts_with(classes) {
                return Err(mismatch(format!(
                    "the configured classes of model `{}` changed",
                    m.name
                )));
            }
        }
    }
    p.engine = engine;
    p.join = snapshot.join;
    // Counters follow sources by name: a renamed or new source starts at zero.
    for counters in &mut p.sources {
        if let Some(old) = snapshot.sources.iter().find(|s| s.name == counters.name) {
            *counters = old.clone();
        }
    }
    shared.positions = snapshot.positions;
    Ok(())
}

/// Moves an unreadable snapshot aside (never deletes it) and returns where it went.
pub fn set_aside(path: &Path) -> std::io::Result<PathBuf> {
    let stamp = crate::now_ns() / 1_000_000_000;
    // Never over an earlier one set aside within the same second.
    let aside = (0..)
        .map(|n| match n {
            0 => path.with_extension(format!("unreadable-{stamp}")),
            n => path.with_extension(format!("unreadable-{stamp}-{n}")),
        })
        .find(|p| !p.exists())
        .expect("some name is free");
    fs::rename(path, &aside)?;
    Ok(aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Settings;
    use crate::engine::ScopeId;
    use crate::pipeline::{Mode, Pipeline};
    use crate::report::scope_json;

    const T: i64 = 1_700_000_000;

    fn fresh() -> Shared {
        Shared::new(Pipeline::new(
            &Settings::default(),
            Mode::Report,
            None,
            &["s"],
        ))
    }

    fn feed(shared: &mut Shared, lines: &[String]) {
        for l in lines {
            shared.pipeline.ingest(0, l.as_bytes(), 0).unwrap();
        }
    }

    fn predictions() -> Vec<String> {
        (0..40)
            .map(|i| {
                let q = (i % 9) as f64 / 10.0 + 0.05;
                format!(
                    r#"{{"model": "m", "id": {i}, "prediction": "{}", "scores": {{"a": {q}, "b": {}}}, "timestamp": {}}}"#,
                    if q >= 0.5 { "a" } else { "b" },
                    1.0 - q,
                    T + i * 7
                )
            })
            .collect()
    }

    fn labels() -> Vec<String> {
        (0..40)
            .map(|i| {
                format!(
                    r#"{{"model": "m", "id": {i}, "label": "{}", "timestamp": {}}}"#,
                    if i % 3 == 0 { "a" } else { "b" },
                    T + 300 + i
                )
            })
            .collect()
    }

    fn close(a: &serde_json::Value, b: &serde_json::Value) {
        use serde_json::Value;
        match (a, b) {
            (Value::Number(x), Value::Number(y)) => {
                assert!(
                    (x.as_f64().unwrap() - y.as_f64().unwrap()).abs() < 1e-12,
                    "{x} {y}"
                )
            }
            (Value::Object(x), Value::Object(y)) => {
                assert_eq!(x.len(), y.len());
                for (k, v) in x {
                    close(v, &y[k]);
                }
            }
            (Value::Array(x), Value::Array(y)) => {
                assert_eq!(x.len(), y.len());
                x.iter().zip(y).for_each(|(x, y)| close(x, y));
            }
            _ => assert_eq!(a, b),
        }
    }

    fn roundtrip(shared: &Shared, edit: impl FnOnce(&mut serde_json::Value)) -> Shared {
        roundtrip_into(shared, fresh(), edit)
    }

    fn roundtrip_into(
        shared: &Shared,
        mut restored: Shared,
        edit: impl FnOnce(&mut serde_json::Value),
    ) -> Shared {
        let mut doc: serde_json::Value = serde_json::from_slice(&capture(shared)).unwrap();
        edit(&mut doc);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &serde_json::to_vec(&doc).unwrap()).unwrap();
        assert!(restore(&path, &mut restored).unwrap());
        restored
    }

    /// A pipeline whose events carry a segment at /seg, at most 2 per model (E4).
    fn segmented() -> Shared {
        let mut raw = crate::config::RawConfig::default();
        raw.fields.segment = "/seg".into();
        raw.limits.max_segments = 2;
        Shared::new(Pipeline::new(
            &Settings::from_raw(raw).unwrap(),
            Mode::Report,
            None,
            &["s"],
        ))
    }

    /// The predictions with a segment on most (three names: one goes to __other__),
    /// and the labels with a segment on some.
    fn segmented_lines() -> (Vec<String>, Vec<String>) {
        let with = |line: &String, i: usize, names: [&str; 4]| {
            let name = names[i % 4];
            if name.is_empty() {
                line.clone()
            } else {
                line.replacen('{', &format!(r#"{{"seg": "{name}", "#), 1)
            }
        };
        let p = predictions().into_iter().enumerate();
        let predictions = p.map(|(i, l)| with(&l, i, ["x", "y", "", "z"])).collect();
        let l = labels().into_iter().enumerate();
        let labels = l.map(|(i, l)| with(&l, i, ["", "", "w", "x"])).collect();
        (predictions, labels)
    }

    /// A snapshot streamed a few halves per hold of the lock is byte for byte the
    /// snapshot serialized at once (the layout every earlier snapshot has), holes left
    /// by completed pairs included; it restores.
    #[test]
    fn a_streamed_snapshot_is_the_captured_one() {
        let mut shared = fresh();
        feed(&mut shared, &predictions());
        feed(&mut shared, &labels()[10..25]);
        shared
            .positions
            .insert("s".into(), serde_json::json!({"offset": 12}));
        let expected = capture(&shared);
        assert!(
            shared.pipeline.join.slots() > shared.pipeline.join.len(),
            "holes"
        );
        let shared = Mutex::new(shared);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        for per_hold in [1, 3, 7, 1000, usize::MAX] {
            let mut between = 0;
            let stats =
                write_snapshot_with(&path, &shared, per_hold, &mut || between += 1).unwrap();
            let written = fs::read(&path).unwrap();
            assert_eq!(
                String::from_utf8(written).unwrap(),
                String::from_utf8(expected.clone()).unwrap(),
                "{per_hold} per hold"
            );
            assert_eq!(stats.bytes, expected.len() as u64);
            assert_eq!(stats.holds, between + 1);
            assert!(!stats.rewritten);
            assert!(!path.with_extension("tmp").exists());
        }
        let mut restored = fresh();
        assert!(restore(&path, &mut restored).unwrap());
        assert_eq!(capture(&restored), expected);
    }

    /// Should the halves change between two holds (in the daemon only the engine thread
    /// changes them, and it is the one writing), the snapshot is written again in one
    /// hold: it is the state after the change, never a mix.
    #[test]
    fn halves_that_change_between_holds_are_written_again_at_once() {
        let mut shared = fresh();
        feed(&mut shared, &predictions());
        let shared = Mutex::new(shared);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut left = labels()[..5].to_vec();
        let stats = write_snapshot_with(&path, &shared, 4, &mut || {
            if let Some(l) = left.pop() {
                let mut s = shared.lock().unwrap();
                s.pipeline.ingest(0, l.as_bytes(), 0).unwrap();
                s.positions
                    .insert("s".into(), serde_json::json!(left.len()));
            }
        })
        .unwrap();
        assert!(stats.rewritten);
        assert_eq!(left.len(), 4, "one change, then one hold");
        let after = capture(&shared.lock().unwrap());
        assert_eq!(fs::read(&path).unwrap(), after);
        assert_eq!(stats.bytes, after.len() as u64);
    }

    /// Segments, their estimates and the segments of pending halves survive a restart:
    /// the restored pipeline ends where an uninterrupted one does.
    #[test]
    fn segments_survive_a_snapshot() {
        let (predictions, labels) = segmented_lines();
        let mut shared = segmented();
        feed(&mut shared, &predictions[..30]);
        let before = scope_json(&mut shared.pipeline, ScopeId::All);
        assert_eq!(
            before["models"]["m"]["segments"]
                .as_object()
                .unwrap()
                .keys()
                .collect::<Vec<_>>(),
            ["__other__", "x", "y"]
        );
        let mut restored = roundtrip_into(&shared, segmented(), |_| {});
        close(&scope_json(&mut restored.pipeline, ScopeId::All), &before);
        for s in [&mut shared, &mut restored] {
            feed(s, &predictions[30..]);
            feed(s, &labels);
        }
        for scope in [ScopeId::All, ScopeId::Window(2)] {
            let r = scope_json(&mut restored.pipeline, scope);
            close(&r, &scope_json(&mut shared.pipeline, scope));
            let segments = r["models"]["m"]["segments"].as_object().unwrap();
            let samples: u64 = segments
                .values()
                .map(|s| s["samples"].as_u64().unwrap())
                .sum();
            // Every sample has a segment: its prediction's, else its label's (w, which
            // like z is beyond max_segments: __other__).
            assert_eq!(samples, 40);
            assert_eq!(segments["__other__"]["samples"].as_u64().unwrap(), 20);
            for s in segments.values() {
                assert_eq!(s["estimated"]["unlabelled"], 0);
            }
        }
    }

    /// A snapshot written before segments existed restores into a configuration with a
    /// segment pointer: its models start without segments.
    #[test]
    fn a_snapshot_without_segments_restores() {
        let mut shared = fresh();
        feed(&mut shared, &predictions());
        let mut restored = roundtrip_into(&shared, segmented(), |doc| {
            fn strip(v: &mut serde_json::Value) {
                match v {
                    serde_json::Value::Object(o) => {
                        for k in ["segments", "segment", "segment_overflow"] {
                            o.remove(k);
                        }
                        o.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            strip(doc);
        });
        let (_, labels) = segmented_lines();
        feed(&mut restored, &labels);
        let r = scope_json(&mut restored.pipeline, ScopeId::All);
        let m = &r["models"]["m"];
        assert_eq!(m["samples"], 40);
        assert_eq!(m["estimated"]["unlabelled"], 0);
        // Only the labels carried segments (w, x): their samples count there.
        let segments = m["segments"].as_object().unwrap();
        assert_eq!(segments.keys().collect::<Vec<_>>(), ["w", "x"]);
        assert_eq!(segments["w"]["samples"].as_u64().unwrap(), 10);
        assert_eq!(segments["x"]["samples"].as_u64().unwrap(), 10);
    }

    /// Unlabelled predictions' estimates survive a restart, and their labels still take
    /// them back out: the estimate ends equal to the realised value.
    #[test]
    fn estimates_survive_a_snapshot() {
        let mut shared = fresh();
        feed(&mut shared, &predictions()[..30]);
        let before = scope_json(&mut shared.pipeline, ScopeId::All);
        let mut restored = roundtrip(&shared, |_| {});
        // serde_json reads floats back to within an ulp, not always exactly.
        close(&scope_json(&mut restored.pipeline, ScopeId::All), &before);
        feed(&mut restored, &predictions()[30..]);
        feed(&mut restored, &labels());
        for scope in [ScopeId::All, ScopeId::Window(2)] {
            let r = scope_json(&mut restored.pipeline, scope);
            let m = &r["models"]["m"];
            assert_eq!(m["samples"], 40);
            assert_eq!(m["estimated"]["unlabelled"], 0);
            assert_eq!(m["estimated"]["accuracy"], m["accuracy"]);
            assert_eq!(m["estimated"]["macro"], m["macro"]);
        }
    }

    /// A version 1 snapshot, written before estimates existed, restores: its pending
    /// predictions have no estimate, and their labels take none out.
    #[test]
    fn a_version_1_snapshot_without_estimates_restores() {
        let mut shared = fresh();
        feed(&mut shared, &predictions());
        let mut restored = roundtrip(&shared, |doc| {
            fn strip(v: &mut serde_json::Value) {
                match v {
                    serde_json::Value::Object(o) => {
                        for k in [
                            "estimate",
                            "estimated",
                            "head_estimate",
                            "head_estimate_touched",
                            "head_estimated",
                        ] {
                            o.remove(k);
                        }
                        o.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            strip(doc);
            assert_eq!(doc["version"], 1);
        });
        let mid = scope_json(&mut restored.pipeline, ScopeId::All);
        assert_eq!(mid["models"]["m"]["estimated"]["unlabelled"], 0);
        feed(&mut restored, &labels());
        let r = scope_json(&mut restored.pipeline, ScopeId::All);
        let m = &r["models"]["m"];
        assert_eq!(m["estimated"]["accuracy"], m["accuracy"]);
        assert_eq!(m["estimated"]["samples"], 40);
    }

    fn multi_label_settings() -> Settings {
        let mut raw = crate::config::RawConfig::default();
        raw.models.push(crate::config::raw::RawModel {
            name: "tags".into(),
            multi_label: true,
            ..Default::default()
        });
        Settings::from_raw(raw).unwrap()
    }

    fn fresh_multi() -> Shared {
        Shared::new(Pipeline::new(
            &multi_label_settings(),
            Mode::Report,
            None,
            &["s"],
        ))
    }

    /// Multi-label events (extension E7): complete samples in several buckets and
    /// halves, both sides, with class sets drawn from 4 classes.
    fn multi_events() -> (Vec<String>, Vec<String>) {
        let set = |i: i64, salt: i64| -> String {
            let cs: Vec<String> = (0..4)
                .filter(|c| (i * 7 + c * 3 + salt) % 5 < 2)
                .map(|c| format!("\"k{c}\""))
                .collect();
            format!("[{}]", cs.join(","))
        };
        let (mut first, mut rest) = (Vec::new(), Vec::new());
        for i in 0..60 {
            let t = T + i * 13;
            let (p, l) = (set(i, 0), set(i, 1));
            if i % 3 == 0 {
                first.push(format!(
                    r#"{{"model":"tags","id":{i},"prediction":{p},"timestamp":{t}}}"#
                ));
                rest.push(format!(
                    r#"{{"model":"tags","id":{i},"label":{l},"timestamp":{}}}"#,
                    t + 5
                ));
            } else if i % 3 == 1 {
                first.push(format!(
                    r#"{{"model":"tags","id":{i},"label":{l},"timestamp":{t}}}"#
                ));
                rest.push(format!(
                    r#"{{"model":"tags","id":{i},"prediction":{p},"timestamp":{}}}"#,
                    t + 5
                ));
            } else {
                first.push(format!(
                    r#"{{"model":"tags","prediction":{p},"label":{l},"timestamp":{t}}}"#
                ));
            }
        }
        (first, rest)
    }

    /// Multi-label counts (all, every bucket) and pending class sets survive a restart:
    /// the report after it equals the report of one uninterrupted run.
    #[test]
    fn multi_label_counts_and_pending_sets_survive_a_snapshot() {
        let (first, rest) = multi_events();
        let mut whole = fresh_multi();
        feed(&mut whole, &first);
        feed(&mut whole, &rest);
        let mut shared = fresh_multi();
        feed(&mut shared, &first);
        let before = scope_json(&mut shared.pipeline, ScopeId::Window(1));
        let mut doc: serde_json::Value = serde_json::from_slice(&capture(&shared)).unwrap();
        // A snapshot from before the reason not_a_class_set existed has 13 counters.
        doc["sources"][0]["rejected"]
            .as_array_mut()
            .unwrap()
            .truncate(13);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        write(&path, &serde_json::to_vec(&doc).unwrap()).unwrap();
        let mut restored = fresh_multi();
        assert!(restore(&path, &mut restored).unwrap());
        close(
            &scope_json(&mut restored.pipeline, ScopeId::Window(1)),
            &before,
        );
        feed(&mut restored, &rest);
        for scope in [ScopeId::All, ScopeId::Window(1), ScopeId::Window(2)] {
            let r = scope_json(&mut restored.pipeline, scope);
            assert_eq!(r["models"]["tags"]["multi_label"], true);
            close(&r, &scope_json(&mut whole.pipeline, scope));
        }
        // A configuration without multi_label does not misread it.
        let mut single = fresh();
        let err = restore(&path, &mut single).unwrap_err().to_string();
        assert!(err.contains("multi_label for `tags`"), "{err}");
    }

    /// Two hours of predictions, one every 10 s (some halves never labelled): class a
    /// in the first hour (the default 1h reference), b after; then predictions dated
    /// inside the reference, arriving after it was frozen.
    fn drifting() -> Vec<String> {
        let mut out: Vec<String> = (0..720)
            .map(|i| {
                let class = if i < 360 { ["a", "a", "b"][i % 3] } else { ["b", "b", "a"][i % 3] };
                let q = if class == "a" { 0.8 } else { 0.3 };
                let t = T + 10 * i as i64;
                if i % 4 == 0 {
                    format!(r#"{{"model":"d","id":{i},"prediction":"{class}","scores":{{"a":{q}}},"timestamp":{t}}}"#)
                } else {
                    format!(r#"{{"model":"d","prediction":"{class}","label":"a","scores":{{"a":{q}}},"timestamp":{t}}}"#)
                }
            })
            .collect();
        for i in 0..20 {
            out.push(format!(
                r#"{{"model":"d","prediction":"b","label":"b","timestamp":{}}}"#,
                T + 100 + i
            ));
        }
        out
    }

    /// The frozen reference survives a restart: the restored daemon goes on comparing
    /// against it (late predictions dated inside it stay out), and every PSI equals an
    /// uninterrupted run's.
    #[test]
    fn the_frozen_reference_survives_a_snapshot() {
        let lines = drifting();
        // distribution_shift is opt-in: on here, so that the restored daemon's fires.
        let shifting = || {
            let mut settings = Settings::default();
            settings.alerts.psi_threshold = Some(0.2);
            Shared::new(Pipeline::new(&settings, Mode::Report, None, &["s"]))
        };
        let mut whole = shifting();
        feed(&mut whole, &lines);
        let mut shared = shifting();
        feed(&mut shared, &lines[..400]);
        let before = scope_json(&mut shared.pipeline, ScopeId::All);
        let reference = before["models"]["d"]["drift"]["reference"].clone();
        assert_eq!(reference["complete"], true);
        assert_eq!(reference["predictions"], 360);
        let mut restored = roundtrip_into(&shared, shifting(), |_| {});
        close(&scope_json(&mut restored.pipeline, ScopeId::All), &before);
        feed(&mut restored, &lines[400..]);
        for scope in [ScopeId::All, ScopeId::Window(1), ScopeId::Window(2)] {
            let r = scope_json(&mut restored.pipeline, scope);
            let d = &r["models"]["d"]["drift"];
            close(
                d,
                &scope_json(&mut whole.pipeline, scope)["models"]["d"]["drift"],
            );
            assert_eq!(
                d["reference"], reference,
                "frozen: the late predictions stay out"
            );
        }
        let d = &scope_json(&mut restored.pipeline, ScopeId::Window(2))["models"]["d"]["drift"];
        assert!(d["prediction_psi"].as_f64().unwrap() > 0.4, "{d}");
        let r = scope_json(&mut restored.pipeline, ScopeId::Window(2));
        let alerts = r["models"]["d"]["alerts"].as_array().unwrap();
        assert!(
            alerts.iter().any(|a| a["alert"] == "distribution_shift"),
            "{alerts:?}"
        );
    }

    /// A snapshot written before E5 restores: the reference begins at the next prediction.
    #[test]
    fn a_snapshot_without_drift_restores() {
        let lines = drifting();
        let mut shared = fresh();
        feed(&mut shared, &lines[..100]);
        let mut restored = roundtrip(&shared, |doc| {
            fn strip(v: &mut serde_json::Value) {
                match v {
                    serde_json::Value::Object(o) => {
                        for k in ["drift", "head_drift", "reference"] {
                            o.remove(k);
                        }
                        o.values_mut().for_each(strip);
                    }
                    serde_json::Value::Array(a) => a.iter_mut().for_each(strip),
                    _ => {}
                }
            }
            strip(doc);
        });
        let d = &scope_json(&mut restored.pipeline, ScopeId::All)["models"]["d"]["drift"];
        assert_eq!(
            (d["predictions"].clone(), d["reference"].clone()),
            (0.into(), serde_json::Value::Null)
        );
        feed(&mut restored, &lines[100..200]);
        let d = &scope_json(&mut restored.pipeline, ScopeId::Window(0))["models"]["d"]["drift"];
        assert_eq!(d["reference"]["start"], T + 1000);
        assert_eq!(d["predictions"], 6, "the 1m window");
    }
}
