//! criterion benchmarks of the hot paths: decoding one line, a line through the whole
//! pipeline (combined and split events), `Engine::record`, and the window roll.
//!
//! `cargo bench --bench engine` (`-- decode` etc. to pick a group). The end-to-end
//! figures are `scripts/bench.sh`'s; the scaling tables are `benches/scaling.rs`'s.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use predmon::config::{RawConfig, Settings};
use predmon::engine::window::Ring;
use predmon::engine::{Engine, EngineSettings, Sample};
use predmon::pipeline::{Mode, Pipeline};

const BASE_NS: i64 = 1_795_773_600_000_000_000;

fn settings() -> Settings {
    Settings::from_raw(RawConfig::default()).expect("default config")
}

/// A line of the benchmark files' shape (see benches/gen_events.rs).
fn line(i: u64, k: u64, parts: (bool, bool), scores: bool) -> String {
    let (actual, predicted) = (
        i * 7 % k,
        if i.is_multiple_of(5) {
            i * 3 % k
        } else {
            i * 7 % k
        },
    );
    let mut s = format!(
        "{{\"model\": \"m{}\", \"id\": \"tx-{i}\"",
        ["fraud-v3", "churn-v2", "spam-v7", "intent-v1"][(i % 4) as usize]
    );
    if parts.0 {
        s += &format!(", \"prediction\": \"class-{predicted}\"");
    }
    if parts.1 {
        s += &format!(", \"label\": \"class-{actual}\"");
    }
    if scores {
        s += ", \"scores\": {";
        for c in 0..k.min(10) {
            let p = if c == predicted { 0.7 } else { 0.3 / 9.0 };
            s += &format!("{}\"class-{c}\": {p:.4}", if c > 0 { ", " } else { "" });
        }
        s += "}";
    }
    let ms = i % 1000;
    let secs = i / 1000;
    s += &format!(
        ", \"timestamp\": \"2026-11-27T10:{:02}:{:02}.{ms:03}Z\"}}",
        secs / 60 % 60,
        secs % 60
    );
    s
}

fn decode(c: &mut Criterion) {
    let s = settings();
    let pipeline = Pipeline::new(&s, Mode::Report, None, &["bench"]);
    let mut g = c.benchmark_group("decode");
    for (name, l) in [
        ("combined", line(1, 10, (true, true), false)),
        ("scored", line(1, 10, (true, true), true)),
        ("prediction_half", line(1, 10, (true, false), false)),
    ] {
        g.throughput(Throughput::Bytes(l.len() as u64));
        g.bench_function(name, |b| {
            b.iter(|| {
                black_box(pipeline.decoder.decode(black_box(l.as_bytes())).is_ok());
            })
        });
    }
    g.finish();
}

fn ingest(c: &mut Criterion) {
    let s = settings();
    let n = 10_000u64;
    let combined: Vec<String> = (0..n)
        .map(|i| line(i, 10, (true, true), i.is_multiple_of(7)))
        .collect();
    // Each sample as a prediction and, 100 lines later, its label.
    let mut split = Vec::new();
    for i in 0..n / 2 {
        split.push(line(i, 10, (true, false), i.is_multiple_of(7)));
        if i >= 100 {
            split.push(line(i - 100, 10, (false, true), false));
        }
    }
    let mut g = c.benchmark_group("pipeline");
    for (name, lines) in [("combined", &combined), ("split", &split)] {
        g.throughput(Throughput::Elements(lines.len() as u64));
        g.bench_function(name, |b| {
            b.iter_batched_ref(
                || Pipeline::new(&s, Mode::Report, None, &["bench"]),
                |p| {
                    for l in lines.iter() {
                        let _ = p.ingest(0, l.as_bytes(), BASE_NS);
                    }
                },
                criterion::BatchSize::LargeInput,
            )
        });
    }
    g.finish();
}

fn record(c: &mut Criterion) {
    let s = settings();
    let mut g = c.benchmark_group("engine_record");
    g.throughput(Throughput::Elements(1));
    for k in [2u32, 10, 50, 100] {
        let mut engine = Engine::new(EngineSettings::new(&s, s.metrics.windows.clone()));
        let names: Vec<String> = (0..k).map(|c| format!("class-{c}")).collect();
        for a in &names {
            for p in &names {
                engine.admit("m", [Some(p), Some(a)]).expect("admitted");
            }
        }
        let mut i = 0u64;
        g.bench_with_input(BenchmarkId::from_parameter(k), &k, |b, &k| {
            b.iter(|| {
                i += 1;
                // 1 ms of event time per sample: buckets roll as in a live stream.
                engine.record(Sample {
                    model: 0,
                    actual: (i.wrapping_mul(0x9E37_79B9) % k as u64) as u32,
                    predicted: (i % k as u64) as u32,
                    time_ns: BASE_NS + i as i64 * 1_000_000,
                    loss: None,
                    calibration: None,
                    positive: None,
                });
            })
        });
    }
    g.finish();
}

/// One bucket roll (close the head, subtract the buckets leaving each window) with
/// every one of the k x k cells non-zero, at 1 and at 10 samples per cell.
fn roll(c: &mut Criterion) {
    let mut g = c.benchmark_group("window_roll");
    for k in [2u32, 10, 50, 100] {
        for per_cell in [1u32, 10] {
            let id = BenchmarkId::new(format!("k{k}"), format!("{per_cell}_per_cell"));
            g.bench_function(id, |b| {
                // 1m, 5m, 1h of 10 s buckets.
                let mut ring = Ring::new(&[6, 30, 360], k as usize);
                let mut head = 0i64;
                b.iter_custom(|iters| {
                    let mut spent = Duration::ZERO;
                    for _ in 0..iters {
                        fill(&mut ring, head, k, per_cell);
                        head += 1;
                        let t = Instant::now();
                        ring.advance_to(head);
                        spent += t.elapsed();
                    }
                    spent
                })
            });
        }
    }
    g.finish();
}

/// Puts `per_cell` samples into every cell of bucket `bucket`.
pub fn fill(ring: &mut Ring, bucket: i64, k: u32, per_cell: u32) {
    for a in 0..k {
        for p in 0..k {
            for _ in 0..per_cell {
                ring.record(bucket, a, p, None);
            }
        }
    }
}

criterion_group! {
    name = benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2));
    targets = decode, ingest, record, roll
}
criterion_main!(benches);
