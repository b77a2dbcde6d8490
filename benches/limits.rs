//! The two reference points of `scripts/bench.sh`, in-process, on one core:
//!
//! - `limits lines FILE`: the floor: read the file in 1 MiB chunks and find every
//!   newline with memchr, as predmon's line splitter does; nothing else.
//! - `limits serde FILE`: the parse limit: the floor plus `serde_json::from_slice`
//!   of each line into a borrowed struct with the contract's fields, and one hash-map
//!   count per line keyed by (model, prediction, label). What any Rust program that
//!   reads these events with serde_json must at least spend.
//!
//! Prints `lines=N seconds=S events_per_second=R` on standard output.

use std::io::Read;
use std::time::Instant;

use rustc_hash::FxHashMap;

#[path = "support/serde_event.rs"]
mod serde_event;
use serde_event::{key, Event};

/// Reads `path` in 1 MiB chunks and calls `f` on every line (without its newline).
fn for_each_line(path: &str, mut f: impl FnMut(&[u8])) -> std::io::Result<()> {
    let mut file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 1 << 20];
    let mut filled = 0;
    loop {
        let n = file.read(&mut buf[filled..])?;
        let end = filled + n;
        let mut start = 0;
        for nl in memchr::memchr_iter(b'\n', &buf[filled..end]) {
            f(&buf[start..filled + nl]);
            start = filled + nl + 1;
        }
        if n == 0 {
            if start < end {
                f(&buf[start..end]);
            }
            return Ok(());
        }
        // Keep the partial line at the front; grow if one line fills the buffer.
        buf.copy_within(start..end, 0);
        filled = end - start;
        if filled == buf.len() {
            buf.resize(buf.len() * 2, 0);
        }
    }
}

fn main() -> std::io::Result<()> {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    let (mode, path) = match args.as_slice() {
        [m, p] if m == "lines" || m == "serde" => (m.as_str(), p.as_str()),
        _ => {
            eprintln!("usage: limits lines|serde FILE");
            std::process::exit(2);
        }
    };
    let started = Instant::now();
    let mut lines = 0u64;
    let mut invalid = 0u64;
    let mut counts: FxHashMap<u64, u64> = FxHashMap::default();
    match mode {
        "lines" => for_each_line(path, |l| {
            lines += 1;
            std::hint::black_box(l);
        })?,
        _ => for_each_line(path, |l| {
            lines += 1;
            match serde_json::from_slice::<Event<'_>>(l) {
                Ok(e) => *counts.entry(key(&e)).or_default() += 1,
                Err(_) => invalid += 1,
            }
        })?,
    }
    let seconds = started.elapsed().as_secs_f64();
    std::hint::black_box((&counts, invalid));
    println!(
        "lines={lines} seconds={seconds:.4} events_per_second={:.0} invalid={invalid}",
        lines as f64 / seconds
    );
    Ok(())
}
