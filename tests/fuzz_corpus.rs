//! Replays the committed fuzz corpus and the regression cases (inputs that once made a
//! fuzz target fail) through the fuzz targets' own bodies, on stable, in every
//! `cargo test`. The fuzzing itself is scripts/fuzz.sh.

#[path = "support/fuzz_harness.rs"]
mod harness;

use std::path::Path;

/// Runs `target` on every file under fuzz/corpus/<name> and fuzz/regressions/<name>.
fn replay(name: &str, target: fn(&[u8])) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut n = 0;
    for dir in ["corpus", "regressions"] {
        let Ok(entries) = std::fs::read_dir(root.join(dir).join(name)) else {
            continue;
        };
        let mut paths: Vec<_> = entries.map(|e| e.unwrap().path()).collect();
        paths.sort();
        for path in paths {
            let data = std::fs::read(&path).unwrap();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "fuzz input {} fails", path.display());
            n += 1;
        }
    }
    assert!(n > 0, "no corpus for the {name} target");
}

#[test]
fn decode_corpus() {
    replay("decode", harness::decode);
}

#[test]
fn join_corpus() {
    replay("join", harness::join);
}

#[test]
fn stream_corpus() {
    replay("stream", harness::stream);
}
