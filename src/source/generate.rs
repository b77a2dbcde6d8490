//! The built-in synthetic stream: a `generate` source in the daemon, and `predmon generate`.
//!
//! It exists so that `predmon run` with no configuration shows live, meaningful metrics
//! with nothing else installed, and so that tests, demos and benchmarks have a realistic
//! stream on tap.
//!
//! # The scenario
//!
//! - Models, in order: `fraud-v3` (binary: `legit`, `fraud`), `churn-v2` and
//!   `intent-router` (`classes` classes each), then `model-4`, `model-5`, ... Each sample
//!   belongs to a model drawn uniformly.
//! - True classes follow a Zipf law: class i (from 0) has weight 1/(i+1)^`imbalance`, so
//!   the first class of each model is its majority class.
//! - With `collapse`, `fraud-v3` predicts its majority class (`legit`) 97% of the time
//!   whatever the truth, so its `recall_collapse` (on `fraud`), `prediction_collapse`
//!   (on `legit`) and `near_chance` alerts fire. The other models are right with
//!   probability `accuracy`, each class alike, and wrong uniformly over the other classes,
//!   so their per-class recall is about `accuracy`.
//! - A share `scores_share` of the predictions carries `scores`: an object with every
//!   class of the model, in [0, 1] with four decimals, summing to exactly 1, the predicted
//!   class strictly highest. Healthy models are calibrated by construction: a confidence c
//!   (around `accuracy`, +-0.1) is drawn first, the prediction is right with probability
//!   c, and the predicted class gets p = c. The collapsed model gives each class its prior.
//!
//! # Event format
//!
//! One JSON object per line, fields in this order, timestamps RFC 3339 in UTC with
//! microseconds. With a non-zero `label_delay`, a prediction and its label are two events
//! sharing an id, the label stamped exactly `label_delay` after the prediction:
//!
//! ```text
//! {"model":"fraud-v3","id":"tx-k3f9qa-81","prediction":"legit","scores":{"legit":0.6712,"fraud":0.3288},"timestamp":"2025-06-01T12:00:00.125000Z"}
//! {"model":"fraud-v3","id":"tx-k3f9qa-81","label":"fraud","timestamp":"2025-06-01T12:00:02.125000Z"}
//! ```
//!
//! With `label_delay = "0s"` every sample is one event with both `prediction` and `label`.
//! Ids are `<prefix>-<run>-<n>`: a per-model prefix (`tx`, `cust`, `msg`, `req`), a token
//! made from the start time, the process and the source name, and a sequence number. The
//! token keeps ids unique across restarts, so a restarted generator never pairs its new
//! labels with predictions of an earlier run still pending in a restored snapshot.
//!
//! # Time and rate
//!
//! `rate` counts events of every kind. With split events a sample is two events, so
//! samples start at `rate / 2` per second, each at its scheduled time (a label is
//! written when its time has come, from a FIFO queue); the total reaches `rate` once the
//! first labels are due, `label_delay` after the start. A generator that falls more than
//! 5 s behind its schedule (a suspended machine, a consumer that cannot keep up) skips
//! ahead instead of writing the backlog in a burst.
//!
//! `rate = 0` means unpaced: as fast as the consumer takes events. Event time is then the
//! wall clock, read once per batch, except that it jumps ahead when 100,000 samples are
//! waiting for their label: the labels are written (stamped with their own time) rather
//! than waited for. That keeps the label delay exact and the consumer's pending halves
//! bounded however fast the stream is, at the price of timestamps that run ahead of the
//! wall clock when labels are late relative to the throughput.
//!
//! # Position
//!
//! A generator has nothing to resume: its batches carry no position, and after a restart
//! it just continues with fresh ids. Predictions of the previous run still pending in a
//! restored snapshot never get their labels and expire after `join.ttl`.

mod output;

use std::collections::VecDeque;
use std::ops::Range;
use std::time::Duration;

use crate::config::raw::GenerateSource;
use crate::source::{Batch, LineRef, SourceContext, BATCH_LINES};

/// Share of the collapsed model's predictions that are its majority class: above the
/// default `collapse_share` (0.95) by a margin that sampling noise over a 1m window does
/// not cross.
pub const COLLAPSE_SHARE: f64 = 0.97;

/// Unpaced, the most samples waiting for their label before event time jumps ahead. Far
/// below the default `join.max_pending` (1,000,000 halves), so no half ever expires.
pub const MAX_IN_FLIGHT: usize = 100_000;

/// How far a paced generator may fall behind its schedule before it skips ahead.
const MAX_BEHIND_NS: i64 = 5_000_000_000;

/// Scores are written in units of 1/SCORE_UNITS (four decimals), so they sum to exactly 1.
const SCORE_UNITS: u32 = 10_000;

/// Above this many classes four decimals cannot give every class a score: none are written.
const MAX_SCORED_CLASSES: usize = 1_000;

/// How often a paced generator hands over what is due: often enough that metrics move
/// smoothly, rarely enough that low rates do not cost a wake-up per event.
const TICK: Duration = Duration::from_millis(100);

/// Where [`Generator::emit`] writes: lines are appended to [`Sink::buffer`], and
/// [`Sink::line_done`] is told where each one starts and where its id is (a Kafka key).
pub trait Sink {
    fn buffer(&mut self) -> &mut Vec<u8>;
    /// The line `buffer()[start..]` is complete (without a terminator); its id (without
    /// quotes) is `buffer()[id]`.
    fn line_done(&mut self, start: usize, id: Range<usize>);
}

/// JSON lines, each ended by `\n`: what a file or standard output receives.
impl Sink for Vec<u8> {
    fn buffer(&mut self) -> &mut Vec<u8> {
        self
    }

    fn line_done(&mut self, _start: usize, _id: Range<usize>) {
        self.push(b'\n');
    }
}

impl Sink for Batch {
    fn buffer(&mut self) -> &mut Vec<u8> {
        &mut self.bytes
    }

    fn line_done(&mut self, start: usize, _id: Range<usize>) {
        self.lines.push(LineRef::Event {
            start: start as u32,
            end: self.bytes.len() as u32,
        });
    }
}

/// splitmix64: a few lines, statistically sound for a simulation, and the same numbers on
/// every platform, so a seed pins the output.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        mix(self.0)
    }

    /// Uniform in [0, 1).
    fn f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Uniform in [0, n).
    fn below(&mut self, n: u32) -> u32 {
        (((self.next_u64() >> 32) * u64::from(n)) >> 32) as u32
    }
}

fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// One simulated model, with its JSON fragments rendered once.
#[derive(Debug, Clone)]
struct Model {
    name: String,
    id_prefix: &'static str,
    /// `{"model":"<name>","id":"<prefix>-<run>-`: every line starts with it.
    head: Vec<u8>,
    /// Where the id starts in `head`.
    id_at: usize,
    /// Each class as a JSON string, quotes included.
    quoted: Vec<Vec<u8>>,
    prior: Vec<f64>,
    cumulative: Vec<f64>,
    collapsed: bool,
}

impl Model {
    fn new(index: usize, classes: usize, imbalance: f64, collapsed: bool) -> Model {
        const CHURN: [&str; 4] = ["retained", "downgraded", "paused", "cancelled"];
        const INTENT: [&str; 8] = [
            "billing",
            "tech_support",
            "sales",
            "cancel",
            "account",
            "shipping",
            "returns",
            "feedback",
        ];
        let named = |names: &[&str]| -> Vec<String> {
            (0..classes)
                .map(|i| match names.get(i) {
                    Some(n) => n.to_string(),
                    None => format!("class-{}", i + 1),
                })
                .collect()
        };
        let (name, id_prefix, class_names) = match index {
            0 => (
                "fraud-v3".to_string(),
                "tx",
                vec!["legit".into(), "fraud".into()],
            ),
            1 => ("churn-v2".to_string(), "cust", named(&CHURN)),
            2 => ("intent-router".to_string(), "msg", named(&INTENT)),
            i => (format!("model-{}", i + 1), "req", named(&[])),
        };
        let weights: Vec<f64> = (0..class_names.len())
            .map(|i| 1.0 / ((i + 1) as f64).powf(imbalance))
            .collect();
        let total: f64 = weights.iter().sum();
        let prior: Vec<f64> = weights.iter().map(|w| w / total).collect();
        let cumulative = prior
            .iter()
            .scan(0.0, |acc, p| {
                *acc += p;
                Some(*acc)
            })
            .collect();
        Model {
            name,
            id_prefix,
            head: Vec::new(),
            id_at: 0,
            quoted: class_names
                .iter()
                .map(|c| format!("\"{c}\"").into_bytes())
                .collect(),
            prior,
            cumulative,
            collapsed,
        }
    }

    fn render_head(&mut self, run: &str) {
        let run = if run.is_empty() {
            String::new()
        } else {
            format!("{run}-")
        };
        let model = format!("{{\"model\":\"{}\",\"id\":\"", self.name);
        self.id_at = model.len();
        self.head = format!("{model}{}-{run}", self.id_prefix).into_bytes();
    }

    fn classes(&self) -> usize {
        self.quoted.len()
    }
}

/// A label waiting for its time.
#[derive(Debug, Clone, Copy)]
struct PendingLabel {
    due_ns: i64,
    model: u32,
    label: u32,
    seq: u64,
}

/// What the next sample may be, given the event limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    /// A prediction now and its label `label_delay` later.
    Split,
    /// Prediction and label in one event.
    Complete,
    /// No new sample: only queued labels remain within the limit.
    Nothing,
}

/// One drawn sample.
struct Drawn {
    model: usize,
    label: u32,
    predicted: u32,
    confidence: f64,
    scored: bool,
}

/// `YYYY-MM-DDTHH:MM:SS` of the last second formatted: consecutive events mostly share it.
#[derive(Debug, Clone)]
struct StampCache {
    second: i64,
    text: [u8; 19],
}

impl StampCache {
    fn new() -> StampCache {
        StampCache {
            second: i64::MIN,
            text: [b'0'; 19],
        }
    }

    /// Appends `"timestamp":"<RFC 3339 with microseconds>Z"`.
    fn write(&mut self, out: &mut Vec<u8>, t_ns: i64) {
        let second = t_ns.div_euclid(1_000_000_000);
        if second != self.second {
            self.second = second;
            let dt = time::OffsetDateTime::from_unix_timestamp(second)
                .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
            let mut text = Vec::with_capacity(19);
            push_padded(&mut text, dt.year().max(0) as u64, 4);
            text.push(b'-');
            push_padded(&mut text, u64::from(u8::from(dt.month())), 2);
            text.push(b'-');
            push_padded(&mut text, u64::from(dt.day()), 2);
            text.push(b'T');
            push_padded(&mut text, u64::from(dt.hour()), 2);
            text.push(b':');
            push_padded(&mut text, u64::from(dt.minute()), 2);
            text.push(b':');
            push_padded(&mut text, u64::from(dt.second()), 2);
            self.text.copy_from_slice(&text[..19]);
        }
        out.extend_from_slice(b"\"timestamp\":\"");
        out.extend_from_slice(&self.text);
        out.push(b'.');
        push_padded(out, (t_ns.rem_euclid(1_000_000_000) / 1_000) as u64, 6);
        out.extend_from_slice(b"Z\"");
    }
}

/// Appends `v` in decimal.
fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

/// Appends the last `width` decimal digits of `v`, zero-padded.
fn push_padded(out: &mut Vec<u8>, mut v: u64, width: usize) {
    let start = out.len();
    out.resize(start + width, b'0');
    for slot in out[start..].iter_mut().rev() {
        *slot = b'0' + (v % 10) as u8;
        v /= 10;
    }
}

/// The label delay of a scenario, or a message naming the bad value.
pub fn label_delay(config: &GenerateSource) -> anyhow::Result<Duration> {
    crate::config::parse_duration("generate.label_delay", &config.label_delay)
        .map_err(anyhow::Error::msg)
}

/// The synthetic stream as a pure function of the scenario (seed included), the run token
/// and the times at which it is asked for events: the testable core of the source and of
/// `predmon generate`.
#[derive(Debug, Clone)]
pub struct Generator {
    models: Vec<Model>,
    rng: Rng,
    accuracy: f64,
    scores_share: f64,
    delay_ns: i64,
    /// Paced: nanoseconds between sample starts. `None`: unpaced.
    interval_ns: Option<f64>,
    /// Paced: sample number `.1` is due at `.0`; set by the first call.
    schedule: Option<(i64, u64)>,
    /// Unpaced: the event time, which never goes back.
    clock_ns: i64,
    /// Samples started; the last one's sequence number.
    started: u64,
    emitted: u64,
    limit: Option<u64>,
    queue: VecDeque<PendingLabel>,
    stamp: StampCache,
    /// Scratch for the score units of one event.
    shares: Vec<u32>,
}

impl Generator {
    /// # Panics
    /// On a `label_delay` that is not a duration: [`crate::config::Settings`] rejects such
    /// a configuration, and [`run`] and `predmon generate` check it first with [`label_delay`].
    pub fn new(config: &GenerateSource) -> Generator {
        let delay = label_delay(config).expect("generate.label_delay is validated with the config");
        let clean = |v: f64, lo: f64, hi: f64| if v.is_nan() { lo } else { v.clamp(lo, hi) };
        let imbalance = clean(config.imbalance, 0.0, 100.0);
        let models = (0..config.models.max(1) as usize)
            .map(|i| {
                let mut m = Model::new(
                    i,
                    config.classes.max(2) as usize,
                    imbalance,
                    i == 0 && config.collapse,
                );
                m.render_head("");
                m
            })
            .collect();
        let delay_ns = delay.as_nanos().min(i64::MAX as u128 / 4) as i64;
        let rate = clean(config.rate, 0.0, 1e12);
        let events_per_sample = if delay_ns > 0 { 2.0 } else { 1.0 };
        Generator {
            models,
            rng: Rng(mix(config.seed)),
            accuracy: clean(config.accuracy, 0.0, 1.0),
            scores_share: clean(config.scores_share, 0.0, 1.0),
            delay_ns,
            interval_ns: (rate > 0.0).then(|| events_per_sample * 1e9 / rate),
            schedule: None,
            clock_ns: i64::MIN,
            started: 0,
            emitted: 0,
            limit: None,
            queue: VecDeque::new(),
            stamp: StampCache::new(),
            shares: Vec::new(),
        }
    }

    /// Puts `run` into every id, so that ids of separate runs never meet.
    pub fn with_run_token(mut self, run: &str) -> Generator {
        for m in &mut self.models {
            m.render_head(run);
        }
        self
    }

    /// Stops after exactly `events` events. Samples stop starting early enough that every
    /// prediction gets its label within the limit (with an odd limit and split events, the
    /// last sample is one complete event).
    pub fn with_limit(mut self, events: u64) -> Generator {
        self.limit = Some(events);
        self
    }

    /// The model names, in order; the first is the collapsed one when `collapse` is set.
    pub fn model_names(&self) -> Vec<&str> {
        self.models.iter().map(|m| m.name.as_str()).collect()
    }

    /// Events written so far.
    pub fn emitted(&self) -> u64 {
        self.emitted
    }

    /// Whether the limit is reached (never without one).
    pub fn is_done(&self) -> bool {
        self.limit.is_some_and(|l| self.emitted >= l)
    }

    /// Samples whose label is still to be written.
    pub fn in_flight(&self) -> usize {
        self.queue.len()
    }

    /// Appends at most `max` events and returns how many. Paced (`rate` > 0): the events
    /// due by `now_ns`, the first call starting the schedule. Unpaced: `max` events (fewer
    /// only at the limit), `now_ns` being the wall clock.
    pub fn emit<S: Sink>(&mut self, now_ns: i64, max: usize, out: &mut S) -> usize {
        match self.interval_ns {
            Some(interval) => self.emit_paced(now_ns, interval, max, out),
            None => self.emit_unpaced(now_ns, max, out),
        }
    }

    fn emit_paced<S: Sink>(
        &mut self,
        now_ns: i64,
        interval: f64,
        max: usize,
        out: &mut S,
    ) -> usize {
        let mut schedule = *self.schedule.get_or_insert((now_ns, self.started));
        let due_at = |(base_ns, base_k): (i64, u64), k: u64| {
            base_ns + ((k - base_k) as f64 * interval) as i64
        };
        if now_ns - due_at(schedule, self.started) > MAX_BEHIND_NS {
            schedule = (now_ns, self.started);
            self.schedule = Some(schedule);
        }
        let due = |k: u64| due_at(schedule, k);
        let mut n = 0;
        while n < max {
            let label_ns = self
                .queue
                .front()
                .map(|p| p.due_ns)
                .filter(|&t| t <= now_ns);
            let next = self.next();
            let sample_ns =
                Some(due(self.started)).filter(|&t| t <= now_ns && next != Next::Nothing);
            match (label_ns, sample_ns) {
                // On a tie the label goes first: the older sample completes first.
                (Some(l), Some(s)) if s < l => self.start_sample(out, s, next),
                (Some(_), _) => self.write_label(out),
                (None, Some(s)) => self.start_sample(out, s, next),
                (None, None) => break,
            }
            n += 1;
        }
        n
    }

    fn emit_unpaced<S: Sink>(&mut self, now_ns: i64, max: usize, out: &mut S) -> usize {
        self.clock_ns = self.clock_ns.max(now_ns);
        let mut n = 0;
        while n < max {
            let front = self.queue.front().map(|p| p.due_ns);
            if front.is_some_and(|t| t <= self.clock_ns) {
                self.write_label(out);
            } else {
                match self.next() {
                    Next::Split if self.queue.len() < MAX_IN_FLIGHT => {
                        self.start_sample(out, self.clock_ns, Next::Split)
                    }
                    Next::Complete => self.start_sample(out, self.clock_ns, Next::Complete),
                    // Labels are due later than now, and no sample may start: move event
                    // time to the next label rather than wait for it.
                    _ => match front {
                        Some(t) => {
                            self.clock_ns = t;
                            self.write_label(out);
                        }
                        None => break,
                    },
                }
            }
            n += 1;
        }
        n
    }

    fn next(&self) -> Next {
        let split = self.delay_ns > 0;
        let Some(limit) = self.limit else {
            return if split { Next::Split } else { Next::Complete };
        };
        let remaining = limit.saturating_sub(self.emitted);
        let queued = self.queue.len() as u64;
        if !split {
            if remaining > 0 {
                Next::Complete
            } else {
                Next::Nothing
            }
        } else if remaining >= queued + 2 {
            Next::Split
        } else if remaining == queued + 1 {
            Next::Complete
        } else {
            Next::Nothing
        }
    }

    fn draw(&mut self) -> Drawn {
        let model = match self.models.len() {
            1 => 0,
            n => self.rng.below(n as u32) as usize,
        };
        let m = &self.models[model];
        let k = m.classes() as u32;
        let u = self.rng.f64();
        let label = (m.cumulative.partition_point(|&c| c <= u) as u32).min(k - 1);
        let other = |rng: &mut Rng, not: u32| {
            let o = rng.below(k - 1);
            if o >= not {
                o + 1
            } else {
                o
            }
        };
        let (predicted, confidence) = if m.collapsed {
            let predicted = if self.rng.f64() < COLLAPSE_SHARE {
                0
            } else {
                other(&mut self.rng, 0)
            };
            // A model that has collapsed onto the prior says the prior.
            let jitter = 0.05 * (2.0 * self.rng.f64() - 1.0);
            (predicted, m.prior[predicted as usize] + jitter)
        } else {
            // Symmetric around `accuracy` and inside [0, 1], so the mean stays `accuracy`.
            let spread = 0.1f64.min(self.accuracy).min(1.0 - self.accuracy);
            let c = self.accuracy + spread * (2.0 * self.rng.f64() - 1.0);
            let predicted = if self.rng.f64() < c {
                label
            } else {
                other(&mut self.rng, label)
            };
            (predicted, c)
        };
        let scored = m.classes() <= MAX_SCORED_CLASSES
            && self.scores_share > 0.0
            && (self.scores_share >= 1.0 || self.rng.f64() < self.scores_share);
        Drawn {
            model,
            label,
            predicted,
            confidence,
            scored,
        }
    }

    /// Fills `self.shares` with score units summing to SCORE_UNITS, the predicted class
    /// strictly highest and every class at least one unit (so a log loss stays finite).
    fn draw_shares(&mut self, classes: usize, predicted: usize, confidence: f64) {
        let k = classes as u32;
        let units = SCORE_UNITS;
        // Above units/k, an even split of the rest stays strictly below the top.
        let floor = units.div_ceil(k) + 1;
        let top = ((confidence * f64::from(units)).round() as u32).clamp(floor, units - (k - 1));
        let rest = units - top;
        self.shares.clear();
        self.shares.resize(classes, 0);
        // Random weights in [500, 1500) first, turned into units below.
        let mut total_w = 0u64;
        let others = (0..classes).filter(|&i| i != predicted);
        for i in others.clone() {
            let w = 500 + self.rng.below(1000);
            total_w += u64::from(w);
            self.shares[i] = w;
        }
        let extra = u64::from(rest - (k - 1));
        let mut given = 0;
        for i in others.clone() {
            let s = 1 + (extra * u64::from(self.shares[i]) / total_w) as u32;
            self.shares[i] = s;
            given += s;
        }
        // Rounding leaves fewer than k units: one each to the first others.
        for i in others.clone().take((rest - given) as usize) {
            self.shares[i] += 1;
        }
        if others.clone().any(|i| self.shares[i] >= top) {
            let (each, more) = (rest / (k - 1), rest % (k - 1));
            for (j, i) in others.enumerate() {
                self.shares[i] = each + u32::from((j as u32) < more);
            }
        }
        self.shares[predicted] = top;
    }

    fn start_sample<S: Sink>(&mut self, out: &mut S, t_ns: i64, next: Next) {
        let d = self.draw();
        self.started += 1;
        let seq = self.started;
        let complete = next == Next::Complete;
        if d.scored {
            let classes = self.models[d.model].classes();
            self.draw_shares(classes, d.predicted as usize, d.confidence);
        }
        let m = &self.models[d.model];
        let buf = out.buffer();
        let start = buf.len();
        buf.extend_from_slice(&m.head);
        let id_start = start + m.id_at;
        push_u64(buf, seq);
        let id_end = buf.len();
        buf.extend_from_slice(b"\",\"prediction\":");
        buf.extend_from_slice(&m.quoted[d.predicted as usize]);
        if complete {
            buf.extend_from_slice(b",\"label\":");
            buf.extend_from_slice(&m.quoted[d.label as usize]);
        }
        if d.scored {
            buf.extend_from_slice(b",\"scores\":{");
            for (i, &units) in self.shares.iter().enumerate() {
                if i > 0 {
                    buf.push(b',');
                }
                buf.extend_from_slice(&m.quoted[i]);
                buf.push(b':');
                if units >= SCORE_UNITS {
                    buf.extend_from_slice(b"1.0");
                } else {
                    buf.extend_from_slice(b"0.");
                    push_padded(buf, u64::from(units), 4);
                }
            }
            buf.push(b'}');
        }
        buf.push(b',');
        self.stamp.write(buf, t_ns);
        buf.push(b'}');
        out.line_done(start, id_start..id_end);
        self.emitted += 1;
        if !complete {
            self.queue.push_back(PendingLabel {
                due_ns: t_ns.saturating_add(self.delay_ns),
                model: d.model as u32,
                label: d.label,
                seq,
            });
        }
    }

    fn write_label<S: Sink>(&mut self, out: &mut S) {
        let Some(p) = self.queue.pop_front() else {
            return;
        };
        let m = &self.models[p.model as usize];
        let buf = out.buffer();
        let start = buf.len();
        buf.extend_from_slice(&m.head);
        let id_start = start + m.id_at;
        push_u64(buf, p.seq);
        let id_end = buf.len();
        buf.extend_from_slice(b"\",\"label\":");
        buf.extend_from_slice(&m.quoted[p.label as usize]);
        buf.push(b',');
        self.stamp.write(buf, p.due_ns);
        buf.push(b'}');
        out.line_done(start, id_start..id_end);
        self.emitted += 1;
    }
}

/// A token for ids, distinct per run: the start time, the process and the source name,
/// mixed and written in base 36 (six characters).
pub fn run_token(name: &str) -> String {
    let mut x = crate::now_ns() as u64 ^ (u64::from(std::process::id()) << 40);
    for b in name.bytes() {
        x = mix(x ^ u64::from(b));
    }
    let mut x = mix(x);
    let mut token = String::with_capacity(6);
    for _ in 0..6 {
        token.push(char::from(
            b"0123456789abcdefghijklmnopqrstuvwxyz"[(x % 36) as usize],
        ));
        x /= 36;
    }
    token
}

/// The `generate` source of the daemon: batches of lines at `config.rate` events/s (every
/// ~100 ms, or full batches sooner at high rates), or as fast as the channel accepts
/// them at rate 0. Returns when `ctx.shutdown` is cancelled, after sending what it has.
pub async fn run(config: GenerateSource, ctx: SourceContext) -> anyhow::Result<()> {
    label_delay(&config)?;
    let mut gen = Generator::new(&config).with_run_token(&run_token(&config.name));
    ctx.status.set_up(true);
    tracing::info!(
        source = %ctx.name,
        rate = config.rate,
        models = ?gen.model_names(),
        label_delay = %config.label_delay,
        "generating a synthetic stream"
    );
    let paced = config.rate > 0.0;
    let mut tick = tokio::time::interval(TICK);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut batch = Batch::new(ctx.index);
    'run: loop {
        if paced {
            tokio::select! {
                biased;
                _ = ctx.shutdown.cancelled() => break,
                _ = tick.tick() => {}
            }
        } else {
            // The channel's back-pressure is the only brake: let the other tasks of this
            // worker run between batches.
            tokio::task::yield_now().await;
            if ctx.shutdown.is_cancelled() {
                break;
            }
        }
        loop {
            let room = BATCH_LINES - batch.len();
            let full = gen.emit(crate::now_ns(), room, &mut batch) == room || batch.is_full();
            if (full || paced && !batch.is_empty()) && !send(&ctx, &mut batch).await {
                break 'run;
            }
            if !full || !paced {
                break;
            }
        }
    }
    if !batch.is_empty() && !ctx.tx.is_closed() {
        batch.arrival_ns = crate::now_ns();
        // The engine drains the channel while shutting down; the timeout only guards
        // against one that stopped reading.
        let _ = tokio::time::timeout(Duration::from_secs(1), ctx.tx.send(batch)).await;
    }
    ctx.status.set_up(false);
    Ok(())
}

/// Sends the batch and replaces it with an empty one. `false`: stop (shutdown, with the
/// batch kept for the final send, or the receiver is gone).
async fn send(ctx: &SourceContext, batch: &mut Batch) -> bool {
    let permit = tokio::select! {
        biased;
        _ = ctx.shutdown.cancelled() => return false,
        permit = ctx.tx.reserve() => match permit {
            Ok(p) => p,
            Err(_) => {
                *batch = Batch::new(ctx.index);
                return false;
            }
        },
    };
    let mut full = std::mem::replace(batch, Batch::new(ctx.index));
    full.arrival_ns = crate::now_ns();
    permit.send(full);
    true
}

/// `predmon generate --rate N --output FILE|-|kafka://broker:port/topic [--count N] [--config FILE]`.
pub fn cli(args: crate::cli::GenerateArgs) -> anyhow::Result<()> {
    output::run(args)
}

#[cfg(test)]
mod tests;
