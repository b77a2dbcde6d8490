//! `/metrics` under load, in-process: 20 models x 20 classes x 4 windows (1m, 5m, 1h,
//! all), with one thread ingesting batches of 4096 combined lines as fast as it can,
//! exactly as the daemon's engine thread does (lock, ingest the batch, unlock), while
//! another renders the exposition every 50 ms.
//!
//! Reports the render time (the whole text exposition, as `/metrics` serves it), the
//! part of it spent holding the engine lock (the copy), and the longest time the
//! ingestion thread waited for the lock: the ingestion stall a scrape causes.
//!
//! Then the same for `/api/v1/models` and the page at `/`, each for SECONDS more: as
//! served (the copy under the lock, computed outside it) and, for comparison, computed
//! whole under the lock as they were before 2026-11-28 (`*_locked`): the time of a
//! request, the part holding the lock, and the longest ingestion stall.
//!
//! `scrape [SECONDS]` (default 5). Prints `key=value` lines.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use predmon::config::{RawConfig, Settings};
use predmon::export::metrics::{base_registry, render, EngineCollector, ScrapeData};
use predmon::export::{api, page, Shared};
use predmon::pipeline::{Mode, Pipeline};

const MODELS: u64 = 20;
const CLASSES: u64 = 20;
const BATCH: usize = 4096;

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(f64::total_cmp);
    v[((v.len() - 1) as f64 * q).round() as usize]
}

/// One batch of combined lines stamped `now_s` (fractional Unix seconds).
fn batch(seq: &mut u64, now_s: f64) -> Vec<String> {
    (0..BATCH)
        .map(|_| {
            *seq += 1;
            let i = *seq;
            // Fibonacci hashing: every (model, actual, predicted) combination comes up.
            let r = i.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 16;
            let actual = r % CLASSES;
            let predicted = if (r / 400).is_multiple_of(5) { r / 20 % CLASSES } else { actual };
            format!(
                "{{\"model\": \"model-{:02}\", \"id\": \"tx-{i}\", \"prediction\": \"class-{predicted}\", \"label\": \"class-{actual}\", \"timestamp\": {now_s:.3}}}",
                r / 2000 % MODELS
            )
        })
        .collect()
}

/// Applies one batch as app::apply_batch does (a waiting reader goes first). Returns the
/// milliseconds spent waiting for the engine lock and holding it.
fn ingest(shared: &Mutex<Shared>, lines: &[String]) -> (f64, f64) {
    let t = Instant::now();
    predmon::export::yield_to_readers();
    let mut s = shared.lock().expect("lock");
    let got = Instant::now();
    let arrival = predmon::now_ns();
    for l in lines {
        let _ = s.pipeline.ingest(0, l.as_bytes(), arrival);
    }
    drop(s);
    (
        (got - t).as_secs_f64() * 1e3,
        got.elapsed().as_secs_f64() * 1e3,
    )
}

fn main() {
    let seconds: f64 = std::env::args()
        .skip(1)
        .find(|a| a != "--bench")
        .map_or(5.0, |a| a.parse().expect("SECONDS"));
    let settings = Settings::from_raw(RawConfig::default()).expect("default config");
    let shared = Arc::new(Mutex::new(Shared::new(Pipeline::new(
        &settings,
        Mode::Daemon,
        None,
        &["bench"],
    ))));
    let now = || predmon::now_ns() as f64 / 1e9;
    // Every cell of every model, so that each scrape renders the full size.
    let mut seq = 0;
    {
        let mut s = shared.lock().expect("lock");
        for _ in 0..(MODELS * CLASSES * CLASSES * 3 / BATCH as u64 + 1) {
            for l in batch(&mut seq, now()) {
                s.pipeline.ingest(0, l.as_bytes(), predmon::now_ns()).ok();
            }
        }
    }
    // Pre-made batches, re-stamped only by the arrival clock (Daemon mode takes the
    // earlier of the two), so that ingestion runs at full speed.
    let batches: Vec<Vec<String>> = (0..64).map(|_| batch(&mut seq, now() + 3600.0)).collect();

    // Without ingestion, the minimum of many tries is the CPU cost even on a busy
    // machine: the lock-holding copy against the whole capture (copy + compute).
    let (mut idle_copy, mut idle_capture) = (Vec::new(), Vec::new());
    for _ in 0..50 {
        let t = Instant::now();
        std::hint::black_box(ScrapeData::copy(&shared, &[]));
        idle_copy.push(t.elapsed().as_secs_f64() * 1e3);
        let t = Instant::now();
        std::hint::black_box(ScrapeData::capture(&shared, &[]));
        idle_capture.push(t.elapsed().as_secs_f64() * 1e3);
    }
    println!(
        "idle_copy_ms_min={:.3} idle_capture_ms_min={:.3}",
        quantile(&mut idle_copy, 0.0),
        quantile(&mut idle_capture, 0.0)
    );

    let stop = Arc::new(AtomicBool::new(false));
    let ingester = {
        let (shared, stop, batches) = (shared.clone(), stop.clone(), batches.clone());
        std::thread::spawn(move || {
            let (mut lines, mut waits, mut holds) = (0u64, Vec::new(), Vec::new());
            let started = Instant::now();
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let b = &batches[i % batches.len()];
                i += 1;
                let (wait, hold) = ingest(&shared, b);
                waits.push(wait);
                holds.push(hold);
                lines += b.len() as u64;
            }
            (lines as f64 / started.elapsed().as_secs_f64(), waits, holds)
        })
    };
    let collector = EngineCollector::new(shared.clone(), Vec::new());
    let registry = base_registry();
    let (mut renders, mut captures) = (Vec::new(), Vec::new());
    let mut bytes = 0;
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    while Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        let t = Instant::now();
        let text = render(&collector, &registry).expect("render");
        renders.push(t.elapsed().as_secs_f64() * 1e3);
        bytes = text.len();
        let t = Instant::now();
        // The copy is the part that holds the engine lock; computing follows without it.
        std::hint::black_box(ScrapeData::copy(&shared, &[]));
        captures.push(t.elapsed().as_secs_f64() * 1e3);
    }
    stop.store(true, Ordering::Relaxed);
    let (rate, mut waits, mut holds) = ingester.join().expect("ingester");
    let s = shared.lock().expect("lock");
    let models = s.pipeline.engine.models().len();
    let classes = s.pipeline.engine.models()[0].class_names().len();
    println!("models={models} classes={classes} windows=4 exposition_bytes={bytes}");
    println!(
        "scrapes={} ingest_events_per_second={rate:.0}",
        renders.len()
    );
    eprintln!("render times (ms, in order): {renders:.1?}");
    println!(
        "render_ms_median={:.2} render_ms_max={:.2}",
        quantile(&mut renders, 0.5),
        quantile(&mut renders, 1.0)
    );
    println!(
        "capture_ms_median={:.2} capture_ms_max={:.2}",
        quantile(&mut captures, 0.5),
        quantile(&mut captures, 1.0)
    );
    println!(
        "batch_hold_ms_median={:.2} ingest_lock_wait_ms_max={:.2} ingest_lock_wait_ms_p99={:.3}",
        quantile(&mut holds, 0.5),
        quantile(&mut waits, 1.0),
        quantile(&mut waits, 0.99)
    );
    drop(s);

    // /api/v1/models and the page: a request every 50 ms during full-speed ingestion.
    let page_of = |doc: &serde_json::Value| page::render_index(doc, "bench", "5m", "/metrics");
    type Request<'a> = Box<dyn Fn() -> Duration + 'a>;
    let phases: [(&str, Request); 4] = [
        (
            "api",
            Box::new(|| {
                let t = Instant::now();
                let copy = api::copy(&shared);
                let held = t.elapsed();
                let mut out = Vec::new();
                copy.write_json(&mut out);
                std::hint::black_box(out);
                held
            }),
        ),
        (
            "api_locked",
            Box::new(|| {
                let t = Instant::now();
                std::hint::black_box(predmon::export::api::locked_reference_bytes(&shared));
                t.elapsed()
            }),
        ),
        (
            "page",
            Box::new(|| {
                let t = Instant::now();
                let copy = api::copy(&shared);
                let held = t.elapsed();
                std::hint::black_box(page_of(&copy.to_value()));
                held
            }),
        ),
        (
            "page_locked",
            Box::new(|| {
                let t = Instant::now();
                let doc = predmon::export::api::locked_reference_value(&shared);
                let held = t.elapsed();
                std::hint::black_box(page_of(&doc));
                held
            }),
        ),
    ];
    for (name, request) in phases {
        let (mut times, mut held, mut waits) = (Vec::new(), Vec::new(), Vec::new());
        let deadline = Instant::now() + Duration::from_secs_f64(seconds);
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let ingester = scope.spawn(|| {
                let mut waits = Vec::new();
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) {
                    let b = &batches[i % batches.len()];
                    i += 1;
                    waits.push(ingest(&shared, b).0);
                }
                waits
            });
            while Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
                let t = Instant::now();
                held.push(request().as_secs_f64() * 1e3);
                times.push(t.elapsed().as_secs_f64() * 1e3);
            }
            stop.store(true, Ordering::Relaxed);
            waits = ingester.join().expect("ingester");
        });
        println!(
            "{name}_requests={} {name}_ms_median={:.2} {name}_ms_max={:.2} {name}_lock_ms_median={:.2} {name}_lock_ms_max={:.2} {name}_ingest_lock_wait_ms_max={:.2}",
            times.len(),
            quantile(&mut times, 0.5),
            quantile(&mut times, 1.0),
            quantile(&mut held, 0.5),
            quantile(&mut held, 1.0),
            quantile(&mut waits, 1.0)
        );
    }
}
