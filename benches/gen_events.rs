//! Seeded event files for the benchmarks (`scripts/bench.sh`): JSON lines of the
//! contract's example shape, written as Python's `json.dumps` writes them.
//!
//! ```text
//! gen_events --output FILE [--count N] [--models M] [--classes K] [--scores 0.15]
//!            [--split] [--no-labels] [--delay-ms 20000] [--seed S] [--start-ms MS]
//!            [--segments N]
//! ```
//!
//! - Combined (default): N events, each a complete sample.
//! - `--split`: N events, each sample as a prediction and, later, its label (label
//!   time = prediction time + a uniform delay below `--delay-ms`); lines stay in time
//!   order, so about `rate x mean delay` halves are pending at any moment.
//! - `--split --no-labels`: N prediction halves that never complete (join memory).
//! - `--segments N`: every line (both halves of a split sample) carries
//!   `"country": "c0"` ... `"c<N-1>"`, drawn from the sample's id, so the other fields
//!   are the same as without it (extension E4's cost, `[fields] segment = "/country"`).
//!
//! Actual classes follow a Zipf law (s = 1.1) over K classes; the prediction is right
//! 80% of the time, else a Zipf draw. A `--scores` share of the samples carries a
//! score object over min(K, 10) classes. Event time advances 1 ms per sample from
//! `--start-ms` (Unix ms, default 2026-11-27T10:00:00Z; the daemon benchmarks start
//! near the wall clock so that the windows hold the samples). Output depends only on
//! the arguments (a fixed PRNG).

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fmt::Write as _;
use std::io::{BufWriter, Write};

const MODELS: [&str; 4] = ["fraud-v3", "churn-v2", "spam-v7", "intent-v1"];
/// 2026-11-27T10:00:00Z in Unix milliseconds.
const BASE_MS: i64 = 1_795_773_600_000;

struct Args {
    output: String,
    count: u64,
    models: usize,
    classes: usize,
    scores: f64,
    split: bool,
    labels: bool,
    delay_ms: u64,
    seed: u64,
    start_ms: i64,
    segments: u64,
}

fn parse_args() -> Args {
    let mut a = Args {
        output: String::new(),
        count: 1_000_000,
        models: 4,
        classes: 10,
        scores: 0.15,
        split: false,
        labels: true,
        delay_ms: 20_000,
        seed: 1,
        start_ms: BASE_MS,
        segments: 0,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || {
            it.next()
                .unwrap_or_else(|| usage(&format!("{flag} needs a value")))
        };
        match flag.as_str() {
            "--output" => a.output = value(),
            "--count" => a.count = num(&value()),
            "--models" => a.models = num(&value()),
            "--classes" => a.classes = num(&value()),
            "--scores" => a.scores = num(&value()),
            "--delay-ms" => a.delay_ms = num(&value()),
            "--seed" => a.seed = num(&value()),
            "--start-ms" => a.start_ms = num(&value()),
            "--segments" => a.segments = num(&value()),
            "--split" => a.split = true,
            "--no-labels" => a.labels = false,
            "--bench" => {} // passed by `cargo bench`
            other => usage(&format!("unknown argument {other}")),
        }
    }
    if a.output.is_empty() {
        usage("--output is required");
    }
    if a.models == 0 || a.classes < 2 {
        usage("--models >= 1 and --classes >= 2");
    }
    a
}

fn num<T: std::str::FromStr>(s: &str) -> T {
    s.parse()
        .unwrap_or_else(|_| usage(&format!("not a number: {s}")))
}

fn usage(why: &str) -> ! {
    eprintln!("gen_events: {why}\nusage: gen_events --output FILE [--count N] [--models M] [--classes K] [--scores P] [--split] [--no-labels] [--delay-ms MS] [--seed S] [--start-ms MS] [--segments N]");
    std::process::exit(2)
}

/// splitmix64: small, fast, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    fn new(k: usize, s: f64) -> Zipf {
        let w: Vec<f64> = (1..=k).map(|r| 1.0 / (r as f64).powf(s)).collect();
        let total: f64 = w.iter().sum();
        let mut acc = 0.0;
        Zipf {
            cdf: w
                .iter()
                .map(|x| {
                    acc += x / total;
                    acc
                })
                .collect(),
        }
    }
    fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf.partition_point(|&c| c < u).min(self.cdf.len() - 1)
    }
}

/// `2026-11-27T10:00:00.123Z` for Unix milliseconds (days from civil, Howard Hinnant).
fn rfc3339(out: &mut String, ms: i64) {
    let secs = ms.div_euclid(1000);
    let days = secs.div_euclid(86_400);
    let tod = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    let _ = write!(
        out,
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        tod / 3600,
        tod / 60 % 60,
        tod % 60,
        ms.rem_euclid(1000)
    );
}

/// A label waiting for its time: (time ms, id, model, actual, predicted).
type DueLabel = (i64, u64, usize, usize, usize);

struct Sample {
    model: usize,
    id: u64,
    actual: usize,
    predicted: usize,
    scored: bool,
    time_ms: i64,
}

struct Gen {
    models: Vec<String>,
    classes: Vec<String>,
    zipf: Zipf,
    rng: Rng,
    scores: f64,
    start_ms: i64,
    segments: u64,
}

impl Gen {
    fn sample(&mut self, i: u64) -> Sample {
        let model = self.rng.below(self.models.len() as u64) as usize;
        let actual = self.zipf.draw(&mut self.rng);
        let predicted = if self.rng.unit() < 0.8 {
            actual
        } else {
            self.zipf.draw(&mut self.rng)
        };
        Sample {
            model,
            id: i,
            actual,
            predicted,
            scored: self.rng.unit() < self.scores,
            time_ms: self.start_ms + i as i64,
        }
    }

    /// `, "scores": {...}` over min(K, 10) classes, the predicted one most likely.
    fn write_scores(&mut self, out: &mut String, s: &Sample) {
        let k = self.classes.len().min(10);
        let top = 0.5 + 0.4 * self.rng.unit();
        let rest = (1.0 - top) / (k - 1) as f64;
        out.push_str(", \"scores\": {");
        // The predicted class is always among the scored ones.
        let shown: Vec<usize> = if s.predicted < k {
            (0..k).collect()
        } else {
            (0..k - 1).chain([s.predicted]).collect()
        };
        for (j, &c) in shown.iter().enumerate() {
            if j > 0 {
                out.push_str(", ");
            }
            let p = if c == s.predicted { top } else { rest };
            let _ = write!(out, "\"{}\": {:.4}", self.classes[c], p);
        }
        out.push('}');
    }

    fn write(&mut self, out: &mut String, s: &Sample, prediction: bool, label: bool, ms: i64) {
        let _ = write!(
            out,
            "{{\"model\": \"{}\", \"id\": \"tx-{}\"",
            self.models[s.model], s.id
        );
        if self.segments > 0 {
            // From the id, not the stream: the other fields stay those of the plain file.
            let country = Rng(s.id ^ 0x5EED).next() % self.segments;
            let _ = write!(out, ", \"country\": \"c{country}\"");
        }
        if prediction {
            let _ = write!(out, ", \"prediction\": \"{}\"", self.classes[s.predicted]);
        }
        if label {
            let _ = write!(out, ", \"label\": \"{}\"", self.classes[s.actual]);
        }
        if prediction && s.scored {
            self.write_scores(out, s);
        }
        out.push_str(", \"timestamp\": \"");
        rfc3339(out, ms);
        out.push_str("\"}\n");
    }
}

fn main() -> std::io::Result<()> {
    let a = parse_args();
    let models = (0..a.models)
        .map(|m| match MODELS.get(m) {
            Some(name) if a.models <= MODELS.len() => name.to_string(),
            _ => format!("model-{m:02}"),
        })
        .collect();
    let mut g = Gen {
        models,
        classes: (0..a.classes).map(|c| format!("class-{c}")).collect(),
        zipf: Zipf::new(a.classes, 1.1),
        rng: Rng(a.seed),
        scores: a.scores,
        start_ms: a.start_ms,
        segments: a.segments,
    };
    let file = std::fs::File::create(&a.output)?;
    let mut w = BufWriter::with_capacity(1 << 20, file);
    let mut line = String::with_capacity(512);
    let mut written = 0u64;
    let emit = |line: &mut String, w: &mut BufWriter<std::fs::File>, written: &mut u64| {
        w.write_all(line.as_bytes())?;
        line.clear();
        *written += 1;
        Ok::<_, std::io::Error>(())
    };
    if !a.split {
        for i in 0..a.count {
            let s = g.sample(i);
            g.write(&mut line, &s, true, true, s.time_ms);
            emit(&mut line, &mut w, &mut written)?;
        }
    } else {
        // Labels wait in a heap keyed by their time (then sample index).
        let mut due: BinaryHeap<Reverse<DueLabel>> = BinaryHeap::new();
        let mut i = 0u64;
        while written < a.count {
            let next_ms = a.start_ms + i as i64;
            let label_first = due.peek().is_some_and(|r| r.0 .0 <= next_ms);
            if label_first {
                let Reverse((ms, id, model, actual, predicted)) = due.pop().expect("peeked");
                let s = Sample {
                    model,
                    id,
                    actual,
                    predicted,
                    scored: false,
                    time_ms: ms,
                };
                g.write(&mut line, &s, false, true, ms);
            } else {
                let s = g.sample(i);
                i += 1;
                g.write(&mut line, &s, true, false, s.time_ms);
                if a.labels {
                    let delay = g.rng.below(a.delay_ms.max(1)) as i64;
                    due.push(Reverse((
                        s.time_ms + delay,
                        s.id,
                        s.model,
                        s.actual,
                        s.predicted,
                    )));
                }
            }
            emit(&mut line, &mut w, &mut written)?;
        }
    }
    w.flush()?;
    eprintln!("gen_events: wrote {written} lines to {}", a.output);
    Ok(())
}
