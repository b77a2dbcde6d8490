//! decode -> join -> engine for one line at a time, with the event counters. `report`
//! and `run` both feed lines through a [`Pipeline`], so they cannot disagree.

use serde::{Deserialize, Serialize};

use crate::config::{Settings, WindowBy, WindowSpec};
use crate::engine::calibration::ScoreFacts;
use crate::engine::stats::log_loss_term;
use crate::engine::{Engine, EngineSettings, Sample, NO_SEGMENT};
use crate::event::{Decoder, Event, Rejection, Scores, Side};
use crate::join::{Join, Pending};

/// Counters of one source: every line read is either accepted or rejected once.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SourceCounters {
    pub name: String,
    pub read: u64,
    /// Indexed by [`Rejection::index`]. Snapshots from before a reason was added have
    /// fewer entries: the missing ones are 0.
    #[serde(deserialize_with = "rejected_counts")]
    pub rejected: [u64; Rejection::ALL.len()],
}

fn rejected_counts<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<[u64; Rejection::ALL.len()], D::Error> {
    let counts: Vec<u64> = Deserialize::deserialize(d)?;
    let mut out = [0; Rejection::ALL.len()];
    if counts.len() > out.len() {
        return Err(serde::de::Error::custom(format!(
            "{} rejection reasons; this predmon knows {}",
            counts.len(),
            out.len()
        )));
    }
    out[..counts.len()].copy_from_slice(&counts);
    Ok(out)
}

impl SourceCounters {
    pub fn accepted(&self) -> u64 {
        self.read - self.rejected.iter().sum::<u64>()
    }
}

/// How the daemon differs from `report`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One pass over finite input: nothing expires, times are taken as given.
    Report,
    /// Live: pending halves expire, and timestamps ahead of the wall clock are taken as now.
    Daemon,
}

pub struct Pipeline {
    pub decoder: Decoder,
    pub join: Join,
    pub engine: Engine,
    pub sources: Vec<SourceCounters>,
    mode: Mode,
    window_by: WindowBy,
    max_pending: usize,
    max_pending_bytes: usize,
    ttl_ns: i64,
    log: RejectionLog,
}

/// How often each rejection reason may be logged: rejections are per event, and a
/// flood of them (a producer gone wrong, a model or class explosion) must not become
/// a flood of log lines. The counters count every one.
pub const REJECTION_LOG_EVERY: std::time::Duration = std::time::Duration::from_secs(60);
/// Longest excerpt of a line, model, class or id quoted in a log line.
const EXCERPT_BYTES: usize = 80;

/// When each reason was last logged, and how many went unlogged since.
#[derive(Debug, Default)]
struct RejectionLog {
    last: [Option<std::time::Instant>; Rejection::ALL.len()],
    suppressed: [u64; Rejection::ALL.len()],
    /// When a full join was last logged, and the halves it expired since.
    capacity_logged: Option<std::time::Instant>,
    capacity_expired: u64,
}

impl RejectionLog {
    /// Whether `why` may be logged now; if so, how many were not logged before it.
    fn due(&mut self, why: Rejection) -> Option<u64> {
        let now = std::time::Instant::now();
        let i = why.index();
        match self.last[i] {
            Some(at) if now.duration_since(at) < REJECTION_LOG_EVERY => {
                self.suppressed[i] += 1;
                None
            }
            _ => {
                self.last[i] = Some(now);
                Some(std::mem::take(&mut self.suppressed[i]))
            }
        }
    }
}

/// `text` cut to [`EXCERPT_BYTES`] at a character boundary, saying how long it was.
pub fn excerpt(text: &str) -> String {
    if text.len() <= EXCERPT_BYTES {
        return text.to_string();
    }
    let mut end = EXCERPT_BYTES;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &text[..end], text.len())
}

impl Pipeline {
    /// `windows` overrides `metrics.windows` (report's `--window`).
    pub fn new(
        settings: &Settings,
        mode: Mode,
        windows: Option<Vec<WindowSpec>>,
        sources: &[&str],
    ) -> Pipeline {
        let windows = windows.unwrap_or_else(|| settings.metrics.windows.clone());
        Pipeline {
            decoder: Decoder::new(settings),
            join: Join::default(),
            engine: Engine::new(EngineSettings::new(settings, windows)),
            sources: sources
                .iter()
                .map(|s| SourceCounters {
                    name: s.to_string(),
                    ..Default::default()
                })
                .collect(),
            mode,
            window_by: settings.metrics.window_by,
            max_pending: match mode {
                Mode::Report => usize::MAX,
                Mode::Daemon => settings.join.max_pending,
            },
            max_pending_bytes: match mode {
                Mode::Report => usize::MAX,
                Mode::Daemon => settings.join.max_pending_bytes,
            },
            ttl_ns: settings.join.ttl.as_nanos().min(i64::MAX as u128) as i64,
            log: RejectionLog::default(),
        }
    }

    /// Logs a rejection, at most once per reason per [`REJECTION_LOG_EVERY`], in the
    /// daemon only (`report` prints its counts). `what` names the offending value.
    fn log_rejection(&mut self, source: usize, why: Rejection, what: impl FnOnce() -> String) {
        if self.mode != Mode::Daemon {
            return;
        }
        let Some(suppressed) = self.log.due(why) else {
            return;
        };
        let source = &self.sources[source].name;
        let what = what();
        let limits = self.engine.settings();
        match why {
            Rejection::ModelLimit | Rejection::ClassLimit => tracing::warn!(
                source = %source, reason = why.code(), suppressed,
                max_models = limits.max_models, max_classes = limits.max_classes,
                "event rejected over a cardinality limit: {what}; counted in predmon_events_rejected_total, logged at most once a minute per reason"
            ),
            _ => tracing::warn!(
                source = %source, reason = why.code(), suppressed,
                "event rejected: {what}; counted in predmon_events_rejected_total, logged at most once a minute per reason"
            ),
        }
    }

    /// Counts a line rejected before decoding (a line over the size limit, cut by the reader).
    pub fn reject(&mut self, source: usize, why: Rejection) {
        let c = &mut self.sources[source];
        c.read += 1;
        c.rejected[why.index()] += 1;
        let max = self.decoder.max_event_bytes();
        self.log_rejection(source, why, || {
            format!("a line over limits.max_event_bytes ({max} bytes) was skipped")
        });
    }

    /// Feeds one line (without its terminator). `now_ns` is the arrival time.
    pub fn ingest(&mut self, source: usize, line: &[u8], now_ns: i64) -> Result<(), Rejection> {
        let outcome = match self.decoder.decode(line) {
            Ok(e) => self.apply(source, e, now_ns),
            Err(why) => {
                self.log_rejection(source, why, || {
                    format!("line {:?}", excerpt(&String::from_utf8_lossy(line)))
                });
                Err(why)
            }
        };
        self.sources[source].read += 1;
        if let Err(why) = outcome {
            self.sources[source].rejected[why.index()] += 1;
        }
        outcome
    }

    fn apply(&mut self, source: usize, e: Event<'_>, now_ns: i64) -> Result<(), Rejection> {
        if e.sets.is_some() {
            return self.apply_multi(e, now_ns);
        }
        let mut time_ns = e.timestamp_ns.unwrap_or(now_ns);
        if self.mode == Mode::Daemon {
            time_ns = time_ns.min(now_ns);
        }
        let half_side = match (&e.prediction, &e.label) {
            (Some(_), Some(_)) => None,
            (Some(_), None) => Some(Side::Prediction),
            _ => Some(Side::Label),
        };
        // Only a half can be a duplicate: complete events skip the model lookup.
        if let Some(side) = half_side {
            if let Some(model) = self.engine.model_id(&e.model) {
                let id =
                    e.id.as_deref()
                        .expect("the decoder requires an id on halves");
                if self.join.pending_side(model, id) == Some(side) {
                    self.log_rejection(source, Rejection::DuplicateId, || {
                        format!(
                            "model {:?}, id {:?}: a {} is already pending",
                            excerpt(&e.model),
                            excerpt(id),
                            side.label()
                        )
                    });
                    return Err(Rejection::DuplicateId);
                }
            }
        }
        let classes = [e.prediction.as_deref(), e.label.as_deref()];
        let (model, [predicted, actual]) = match self.engine.admit(&e.model, classes) {
            Ok(admitted) => admitted,
            Err(why) => {
                self.log_rejection(source, why, || match why {
                    Rejection::ModelLimit => format!("new model {:?}", excerpt(&e.model)),
                    _ => format!(
                        "model {:?}, classes {:?}",
                        excerpt(&e.model),
                        classes
                            .iter()
                            .flatten()
                            .map(|c| excerpt(c))
                            .collect::<Vec<_>>()
                    ),
                });
                return Err(why);
            }
        };
        let classes = self.decoder.classes_of(&e.model);
        let segment = match e.segment.as_deref() {
            None => NO_SEGMENT,
            Some(name) => self.engine.segment_id(model, name),
        };
        let Some(side) = half_side else {
            let facts = e
                .scores
                .as_ref()
                .map(|s| borrowed_facts(&mut self.engine, model, actual, predicted, s, classes));
            let sample = Sample {
                model,
                actual,
                predicted,
                time_ns,
                loss: facts.map(|f| log_loss_term(f.p_actual)),
                calibration: facts.map(|f| f.calibrated(actual == predicted)),
                positive: facts.and_then(|f| f.positive),
            };
            self.engine.record_in(sample, segment);
            self.engine.record_prediction(
                model,
                segment,
                predicted,
                time_ns,
                facts.map(drift_score),
            );
            return Ok(());
        };
        let id =
            e.id.as_deref()
                .expect("the decoder requires an id on halves");
        let Some(other) = self.join.take(model, id) else {
            let class = if side == Side::Prediction {
                predicted
            } else {
                actual
            };
            let mut half = Pending::new(
                model,
                id,
                side,
                class,
                time_ns,
                now_ns,
                e.scores.as_ref().map(|s| s.to_owned_scores(classes)),
            );
            if side == Side::Prediction {
                // One linear pass over the scores (no per-key lookup): a half may carry
                // thousands of keys.
                let score = e.scores.as_ref().map(|s| match s {
                    Scores::Object(pairs) => self.engine.drift_score(
                        model,
                        class,
                        pairs.iter().map(|(k, p)| (k.as_ref(), *p)),
                    ),
                    Scores::Array(ps) => self.engine.drift_score(
                        model,
                        class,
                        classes
                            .unwrap_or(&[])
                            .iter()
                            .map(String::as_str)
                            .zip(ps.iter().copied()),
                    ),
                });
                self.engine
                    .record_prediction(model, segment, class, time_ns, score);
            }
            half.set_segment(segment);
            if let (Side::Prediction, Some(scores)) = (side, &e.scores) {
                // The borrowed scores are the held ones, and cheaper to read.
                half.estimate = match scores {
                    Scores::Object(pairs) => self.engine.hold_estimate(
                        model,
                        segment,
                        class,
                        time_ns,
                        pairs.iter().map(|(k, p)| (k.as_ref(), *p)),
                    ),
                    Scores::Array(ps) => self.engine.hold_estimate(
                        model,
                        segment,
                        class,
                        time_ns,
                        classes
                            .unwrap_or(&[])
                            .iter()
                            .map(String::as_str)
                            .zip(ps.iter().copied()),
                    ),
                };
            }
            self.join.hold(half);
            if self.join.len() > self.max_pending || self.join.bytes() > self.max_pending_bytes {
                self.over_capacity();
            }
            return Ok(());
        };
        if let (Side::Prediction, Some(scores)) = (other.side, &other.scores) {
            self.engine.release_estimate(
                model,
                other.segment(),
                other.class,
                other.time_ns,
                other.estimate,
                scores.iter(),
            );
        }
        let (pred_class, pred_ns, label_class, label_ns) = match side {
            Side::Prediction => (predicted, time_ns, other.class, other.time_ns),
            Side::Label => (other.class, other.time_ns, actual, time_ns),
        };
        // The prediction's segment, else the label's (extension E4).
        let (pred_segment, label_segment) = match side {
            Side::Prediction => (segment, other.segment()),
            Side::Label => (other.segment(), segment),
        };
        let segment = if pred_segment != NO_SEGMENT {
            pred_segment
        } else {
            label_segment
        };
        // The prediction's scores first, the label's if only it carried some.
        let (a, p) = (label_class, pred_class);
        let arriving_first = match side {
            Side::Prediction => e.scores.is_some(),
            Side::Label => other.scores.is_none(),
        };
        let facts = match (&e.scores, &other.scores) {
            (Some(s), _) if arriving_first => {
                Some(borrowed_facts(&mut self.engine, model, a, p, s, classes))
            }
            (_, Some(s)) => Some(self.engine.score_facts(model, a, p, s.iter())),
            _ => None,
        };
        let time_ns = match self.window_by {
            WindowBy::Completion => pred_ns.max(label_ns),
            WindowBy::Prediction => pred_ns,
        };
        self.engine
            .observe_label_delay(model, (label_ns - pred_ns) as f64 / 1e9);
        let sample = Sample {
            model,
            actual: label_class,
            predicted: pred_class,
            time_ns,
            loss: facts.map(|f| log_loss_term(f.p_actual)),
            calibration: facts.map(|f| f.calibrated(a == p)),
            positive: facts.and_then(|f| f.positive),
        };
        self.engine.record_in(sample, segment);
        if side == Side::Prediction {
            // Scores only the prediction carried (the facts above are from them then),
            // in the prediction's own segment, as when it arrives before its label.
            let score = e.scores.as_ref().and(facts).map(drift_score);
            self.engine
                .record_prediction(model, pred_segment, pred_class, pred_ns, score);
        }
        Ok(())
    }

    /// [`Pipeline::apply`] for a multi-label event (extension E7): the same kinds, join
    /// and times, with class sets in place of classes.
    fn apply_multi(&mut self, e: Event<'_>, now_ns: i64) -> Result<(), Rejection> {
        let sets = e.sets.as_deref().expect("a multi-label event");
        let mut time_ns = e.timestamp_ns.unwrap_or(now_ns);
        if self.mode == Mode::Daemon {
            time_ns = time_ns.min(now_ns);
        }
        let half_side = match sets {
            [Some(_), Some(_)] => None,
            [Some(_), None] => Some(Side::Prediction),
            _ => Some(Side::Label),
        };
        let id = e.id.as_deref();
        if let (Some(side), Some(model)) = (half_side, self.engine.model_id(&e.model)) {
            let id = id.expect("the decoder requires an id on halves");
            if self.join.pending_side(model, id) == Some(side) {
                return Err(Rejection::DuplicateId);
            }
        }
        let (model, [predicted, actual]) = self.engine.admit_sets(&e.model, sets)?;
        let Some(side) = half_side else {
            let (p, a) = (predicted.unwrap_or_default(), actual.unwrap_or_default());
            self.engine.record_multi(model, time_ns, &p, &a);
            return Ok(());
        };
        let id = id.expect("the decoder requires an id on halves");
        let set = predicted.or(actual).unwrap_or_default();
        let Some(other) = self.join.take(model, id) else {
            let mut half = Pending::new(model, id, side, u32::MAX, time_ns, now_ns, None);
            half.set = Some(Box::new(set.into_boxed_slice()));
            self.join.hold(half);
            if self.join.len() > self.max_pending || self.join.bytes() > self.max_pending_bytes {
                self.over_capacity();
            }
            return Ok(());
        };
        let other_set = other.set.map(|s| *s).unwrap_or_default();
        let (pred, pred_ns, label, label_ns) = match side {
            Side::Prediction => (&set[..], time_ns, &other_set[..], other.time_ns),
            Side::Label => (&other_set[..], other.time_ns, &set[..], time_ns),
        };
        let time_ns = match self.window_by {
            WindowBy::Completion => pred_ns.max(label_ns),
            WindowBy::Prediction => pred_ns,
        };
        self.engine
            .observe_label_delay(model, (label_ns - pred_ns) as f64 / 1e9);
        self.engine.record_multi(model, time_ns, pred, label);
        Ok(())
    }

    fn expire_oldest(&mut self) {
        if let Some(old) = self.join.pop_oldest() {
            self.engine.count_expired(old.model, old.side);
        }
    }

    /// The join holds more than `join.max_pending` halves or `join.max_pending_bytes`:
    /// the oldest expire (counted) until it fits, and that is logged once a minute.
    fn over_capacity(&mut self) {
        let mut expired = 0u64;
        while self.join.len() > self.max_pending || self.join.bytes() > self.max_pending_bytes {
            self.expire_oldest();
            expired += 1;
        }
        self.log.capacity_expired += expired;
        let now = std::time::Instant::now();
        if self
            .log
            .capacity_logged
            .is_none_or(|at| now.duration_since(at) >= REJECTION_LOG_EVERY)
        {
            self.log.capacity_logged = Some(now);
            tracing::warn!(
                pending = self.join.len(), pending_bytes = self.join.bytes(),
                max_pending = self.max_pending, max_pending_bytes = self.max_pending_bytes,
                expired = std::mem::take(&mut self.log.capacity_expired),
                "the join is full: the oldest pending halves expire early (predmon_join_expired_total); logged at most once a minute"
            );
        }
    }

    /// Daemon housekeeping: expires halves older than the TTL and moves the watermark
    /// with the wall clock.
    pub fn tick(&mut self, now_ns: i64) {
        let cutoff = now_ns.saturating_sub(self.ttl_ns);
        while self.join.oldest_arrival_ns().is_some_and(|t| t < cutoff) {
            self.expire_oldest();
        }
        self.engine.advance_watermark(now_ns);
    }

    pub fn mode(&self) -> Mode {
        self.mode
    }
}

/// The score whose distribution E5 compares: the positive class's, for a model with one,
/// else the predicted class's.
fn drift_score(f: ScoreFacts) -> f64 {
    f.positive.map_or(f.p_predicted, |p| p.0)
}

/// [`Engine::score_facts`] of scores still borrowed from the line.
fn borrowed_facts(
    engine: &mut Engine,
    model: u32,
    actual: u32,
    predicted: u32,
    scores: &Scores<'_>,
    classes: Option<&[String]>,
) -> ScoreFacts {
    match scores {
        Scores::Object(pairs) => engine.score_facts(
            model,
            actual,
            predicted,
            pairs.iter().map(|(k, p)| (k.as_ref(), *p)),
        ),
        Scores::Array(ps) => engine.score_facts(
            model,
            actual,
            predicted,
            classes
                .unwrap_or(&[])
                .iter()
                .map(String::as_str)
                .zip(ps.iter().copied()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::RawConfig;

    fn daemon(edit: impl FnOnce(&mut RawConfig)) -> Pipeline {
        let mut raw = RawConfig::default();
        edit(&mut raw);
        Pipeline::new(
            &Settings::from_raw(raw).unwrap(),
            Mode::Daemon,
            None,
            &["t"],
        )
    }

    const SECOND: i64 = 1_000_000_000;

    #[test]
    fn halves_expire_after_the_ttl_and_are_counted_by_side() {
        let mut p = daemon(|r| r.join.ttl = "10s".into());
        let t0 = 1_700_000_000 * SECOND;
        p.ingest(0, br#"{"model":"m","id":1,"prediction":"a"}"#, t0)
            .unwrap();
        p.ingest(0, br#"{"model":"m","id":2,"label":"a"}"#, t0 + 5 * SECOND)
            .unwrap();
        p.tick(t0 + 10 * SECOND);
        assert_eq!(p.join.len(), 2, "not older than the ttl yet");
        p.tick(t0 + 10 * SECOND + 1);
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (1, [1, 0]));
        p.tick(t0 + 16 * SECOND);
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (0, [1, 1]));
        // An expired half never becomes a sample: its late partner waits on its own.
        p.ingest(0, br#"{"model":"m","id":1,"label":"a"}"#, t0 + 17 * SECOND)
            .unwrap();
        assert_eq!(
            (p.engine.model(0).samples(), p.join.pending_of(0)),
            (0, [0, 1])
        );
    }

    #[test]
    fn beyond_max_pending_the_oldest_half_expires_first() {
        let mut p = daemon(|r| r.join.max_pending = 3);
        let t0 = 1_700_000_000 * SECOND;
        for id in 0..5 {
            let line = format!(r#"{{"model":"m","id":{id},"prediction":"a"}}"#);
            p.ingest(0, line.as_bytes(), t0 + id).unwrap();
        }
        assert_eq!((p.join.len(), p.engine.model(0).join_expired), (3, [2, 0]));
        // Ids 0 and 1 expired; 2..4 still join.
        p.ingest(0, br#"{"model":"m","id":2,"label":"a"}"#, t0 + 10)
            .unwrap();
        p.ingest(0, br#"{"model":"m","id":0,"label":"a"}"#, t0 + 10)
            .unwrap();
        assert_eq!(p.engine.model(0).samples(), 1);
        assert_eq!(
            p.join.pending_of(0),
            [2, 1],
            "id 0's label waits: its prediction expired"
        );
    }

    /// Extension E4: when every prediction carries a segment, the segments partition
    /// the model: per scope their confusion cells, samples and unlabelled estimates add
    /// up to the model's, whatever the order of halves, the window or the overflow.
    #[test]
    fn segments_add_up_to_their_model_in_every_scope() {
        let mut raw = RawConfig::default();
        raw.fields.segment = "/s".into();
        raw.limits.max_segments = 3;
        raw.metrics.windows = vec!["1m".into(), "5m".into(), "all".into()];
        let mut p = Pipeline::new(
            &Settings::from_raw(raw).unwrap(),
            Mode::Report,
            None,
            &["t"],
        );
        let mut x = 7u64;
        let mut next = |m: u64| {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) % m
        };
        let mut held: Vec<(u64, String)> = Vec::new();
        for i in 0..3000u64 {
            let t = 1_700_000_000 + i / 3;
            let (a, pr) = (next(3), next(3));
            let seg = next(6);
            let scores = r#""scores":{"0":0.2,"1":0.5,"2":0.3}"#;
            let line = match next(4) {
                0 => format!(r#"{{"prediction":{pr},"label":{a},"s":"g{seg}","timestamp":{t}}}"#),
                1 | 2 => {
                    held.push((
                        i,
                        format!(
                            r#"{{"id":{i},"label":{a},"s":"g{}","timestamp":{}}}"#,
                            next(6),
                            t + next(90)
                        ),
                    ));
                    format!(
                        r#"{{"id":{i},"prediction":{pr},"s":"g{seg}",{scores},"timestamp":{t}}}"#
                    )
                }
                _ if !held.is_empty() => held.swap_remove(next(held.len() as u64) as usize).1,
                _ => continue,
            };
            p.ingest(0, line.as_bytes(), 0).unwrap();
            if i % 97 != 0 {
                continue;
            }
            let segments = p.engine.model(0).segments().len() as u32;
            assert!(segments <= 4, "3 and __other__");
            for (_, scope) in p.engine.scopes() {
                let model = p.engine.model_stats(0, scope);
                let mut cells = std::collections::BTreeMap::new();
                let (mut samples, mut unlabelled) = (0, 0);
                for s in 0..segments {
                    let seg = p.engine.segment_stats(0, s, scope);
                    for (a, pr, n) in seg.confusion {
                        *cells.entry((a, pr)).or_insert(0) += n;
                    }
                    samples += seg.samples;
                    unlabelled += seg.estimated.unlabelled;
                }
                let whole: std::collections::BTreeMap<_, _> = model
                    .confusion
                    .iter()
                    .map(|&(a, pr, n)| ((a, pr), n))
                    .collect();
                assert_eq!(cells, whole, "event {i}, {scope:?}");
                assert_eq!(samples, model.samples, "event {i}, {scope:?}");
                assert_eq!(
                    unlabelled, model.estimated.unlabelled,
                    "event {i}, {scope:?}"
                );
            }
        }
        assert!(p.engine.model(0).segment_overflow > 0);
    }

    #[test]
    fn report_mode_never_expires() {
        let mut p = Pipeline::new(&Settings::default(), Mode::Report, None, &["t"]);
        p.ingest(0, br#"{"id":1,"prediction":"a","timestamp":0}"#, 0)
            .unwrap();
        p.ingest(0, br#"{"id":1,"label":"a","timestamp":100000}"#, 0)
            .unwrap();
        assert_eq!(p.engine.model(0).samples(), 1);
    }

    #[test]
    fn daemon_takes_future_timestamps_as_now() {
        let mut p = daemon(|_| {});
        let now = 1_700_000_000 * SECOND;
        p.ingest(
            0,
            br#"{"prediction":"a","label":"a","timestamp":1800000000}"#,
            now,
        )
        .unwrap();
        assert_eq!(p.engine.watermark_ns(), Some(now));
    }

    #[test]
    fn pending_halves_are_bounded_in_bytes_as_well_as_in_number() {
        let mut p = daemon(|r| r.join.max_pending_bytes = 64 << 10);
        let id = "i".repeat(1000);
        for n in 0..500 {
            let line = format!(r#"{{"id":"{id}-{n}","prediction":"a"}}"#);
            assert_eq!(p.ingest(0, line.as_bytes(), 1), Ok(()));
            assert!(
                p.join.bytes() <= 64 << 10,
                "{} bytes pending",
                p.join.bytes()
            );
        }
        let expired = p.engine.model(0).join_expired[0];
        assert!(
            p.join.len() > 30 && expired > 400,
            "{} {expired}",
            p.join.len()
        );
        assert_eq!(p.join.len() as u64 + expired, 500);
        // The newest are the ones kept: the last id still joins.
        let line = format!(r#"{{"id":"{id}-499","label":"a"}}"#);
        assert_eq!(p.ingest(0, line.as_bytes(), 2), Ok(()));
        assert_eq!(p.engine.model(0).samples(), 1);
    }

    #[test]
    fn a_report_holds_every_half() {
        let mut raw = RawConfig::default();
        raw.join.max_pending = 2;
        raw.join.max_pending_bytes = 1;
        let s = Settings::from_raw(raw).unwrap();
        let mut p = Pipeline::new(&s, Mode::Report, None, &["t"]);
        for n in 0..10 {
            let line = format!(r#"{{"id":{n},"prediction":"a"}}"#);
            assert_eq!(p.ingest(0, line.as_bytes(), 1), Ok(()));
        }
        assert_eq!(p.join.len(), 10);
    }

    #[test]
    fn excerpts_are_cut_at_a_character_boundary() {
        assert_eq!(excerpt("short"), "short");
        let long = "\u{e9}".repeat(100);
        let e = excerpt(&long);
        assert!(e.ends_with("... (200 bytes)"), "{e}");
        assert!(e.len() < 100);
    }
}
