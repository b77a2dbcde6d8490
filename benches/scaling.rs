//! How the engine's costs scale, as two small tables (`scripts/bench.sh` prints them):
//!
//! 1. Per-event cost against the number of classes k: `Engine::record` alone, and a
//!    combined line through the whole `Pipeline` (decode, admit, record). Both should be
//!    flat in k: counts are dense arrays indexed by interned class ids.
//! 2. The window roll (closing the head bucket and subtracting the buckets that leave
//!    each window) against k, with every one of the k x k cells non-zero, at 1 and at
//!    10 samples per cell: it should grow with k^2 (the cells) and not with the samples.
//!
//! Each figure is the median of 5 timed rounds.

use std::hint::black_box;
use std::time::Instant;

use predmon::config::{RawConfig, Settings};
use predmon::engine::window::Ring;
use predmon::engine::{Engine, EngineSettings, Sample};
use predmon::pipeline::{Mode, Pipeline};

const BASE_NS: i64 = 1_795_773_600_000_000_000;
const KS: [u32; 4] = [2, 10, 50, 100];

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// splitmix64, so that class pairs are not a pattern the branch predictor learns.
fn mix(i: u64) -> u64 {
    let mut z = i.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// ns per `Engine::record` with k classes, 1 ms of event time per sample.
fn record_ns(s: &Settings, k: u32) -> f64 {
    let mut engine = Engine::new(EngineSettings::new(s, s.metrics.windows.clone()));
    let names: Vec<String> = (0..k).map(|c| format!("class-{c}")).collect();
    for a in &names {
        for p in &names {
            engine.admit("m", [Some(p), Some(a)]).expect("admitted");
        }
    }
    let n = 2_000_000u64;
    let pairs: Vec<(u32, u32)> = (0..n)
        .map(|i| {
            let r = mix(i);
            ((r % k as u64) as u32, ((r >> 32) % k as u64) as u32)
        })
        .collect();
    let mut t = 0i64;
    let rounds = (0..5)
        .map(|_| {
            let start = Instant::now();
            for &(actual, predicted) in &pairs {
                t += 1_000_000;
                engine.record(Sample {
                    model: 0,
                    actual,
                    predicted,
                    time_ns: BASE_NS + t,
                    loss: None,
                    calibration: None,
                    positive: None,
                });
            }
            start.elapsed().as_nanos() as f64 / n as f64
        })
        .collect();
    black_box(&engine);
    median(rounds)
}

/// ns per combined line through `Pipeline::ingest`, k classes, 4 models.
fn ingest_ns(s: &Settings, k: u32) -> f64 {
    let n = 400_000u64;
    let lines: Vec<String> = (0..n)
        .map(|i| {
            let r = mix(i);
            let ms = i as i64;
            format!(
                "{{\"model\": \"model-{}\", \"id\": \"tx-{i}\", \"prediction\": \"class-{}\", \"label\": \"class-{}\", \"timestamp\": {}.{:03}}}",
                r % 4,
                (r >> 8) % k as u64,
                (r >> 32) % k as u64,
                1_795_773_600 + ms / 1000,
                ms % 1000
            )
        })
        .collect();
    let rounds = (0..5)
        .map(|_| {
            let mut p = Pipeline::new(s, Mode::Report, None, &["bench"]);
            let start = Instant::now();
            for l in &lines {
                let _ = p.ingest(0, l.as_bytes(), BASE_NS);
            }
            let ns = start.elapsed().as_nanos() as f64 / n as f64;
            assert_eq!(p.sources[0].accepted(), n, "every line is accepted");
            ns
        })
        .collect();
    median(rounds)
}

/// µs per window roll with every cell of k x k non-zero, `per_cell` samples each.
fn roll_us(k: u32, per_cell: u32) -> f64 {
    // The default windows: 1m, 5m, 1h of 10 s buckets.
    let mut ring = Ring::new(&[6, 30, 360], k as usize);
    let mut head = 0i64;
    let mut times = Vec::new();
    // 360 rolls to fill the ring, then the timed ones, in steady state.
    let rolls = 360 + (200_000 / (k * k)).clamp(50, 2000) as i64;
    for r in 0..rolls {
        for a in 0..k {
            for p in 0..k {
                for _ in 0..per_cell {
                    ring.record(head, a, p, None);
                }
            }
        }
        head += 1;
        let t = Instant::now();
        ring.advance_to(head);
        let e = t.elapsed();
        if r >= 360 {
            times.push(e.as_nanos() as f64 / 1e3);
        }
    }
    black_box(&ring);
    median(times)
}

fn main() {
    let s = Settings::from_raw(RawConfig::default()).expect("default config");
    println!("### Per-event cost against classes (ns/event, median of 5 rounds)");
    println!();
    println!("| classes k | Engine::record | Pipeline::ingest (combined line) |");
    println!("|---:|---:|---:|");
    for k in KS {
        println!(
            "| {k} | {:.1} | {:.1} |",
            record_ns(&s, k),
            ingest_ns(&s, k)
        );
    }
    println!();
    println!("### Window roll against classes (windows 1m, 5m, 1h of 10 s buckets; all k^2 cells non-zero)");
    println!();
    println!("| classes k | cells k^2 | roll, 1 sample/cell (µs) | roll, 10 samples/cell (µs) | ns per cell |");
    println!("|---:|---:|---:|---:|---:|");
    for k in KS {
        let one = roll_us(k, 1);
        let ten = roll_us(k, 10);
        println!(
            "| {k} | {} | {one:.2} | {ten:.2} | {:.2} |",
            k * k,
            one * 1e3 / (k * k) as f64
        );
    }
}
